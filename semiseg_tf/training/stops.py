"""Stop requests: SIGTERM and Ctrl-C end a training after the step in progress."""
import os
import signal
import sys
import threading


class StopRequests:
    """SIGTERM (what job schedulers and spot machines send) and Ctrl-C (SIGINT) ask the training
    loop to stop at the end of the current step, with a checkpoint, instead of killing it mid-step;
    a second Ctrl-C ends the process at once (exit status 130). `signal_name` is the request, or None.

    Python runs a signal's handler in the main thread only, and only once that thread is back in
    the interpreter: during a step of minutes the main thread is inside one TensorFlow call, so a
    handler there would be late by that step (and a second Ctrl-C could not stop anything). The C
    part of Python's handler does run at once, in whichever thread the signal reaches, and writes
    the signal's number to the wakeup file descriptor; a watcher thread waits on it and answers.
    TensorFlow releases the interpreter lock while it computes, so the watcher runs within
    moments. Installed only from the main thread (the only one that may set handlers)."""

    def __init__(self, out):
        self.out = out
        self.signal_name = None
        self._previous = {}
        self._previous_wakeup = None
        self._pipe = None
        self._watcher = None

    def __enter__(self):
        if threading.current_thread() is not threading.main_thread():
            return self
        read_end, write_end = os.pipe()
        os.set_blocking(write_end, False)    # set_wakeup_fd wants it so: a handler never blocks
        self._pipe = (read_end, write_end)
        self._previous_wakeup = signal.set_wakeup_fd(write_end, warn_on_full_buffer=False)
        for signum in (signal.SIGTERM, signal.SIGINT):
            # The Python-level handler has nothing left to do: the watcher answered already.
            self._previous[signum] = signal.signal(signum, lambda *_: None)
        self._watcher = threading.Thread(target=self._watch, name="stop-requests", daemon=True)
        self._watcher.start()
        return self

    def __exit__(self, *exc):
        for signum, handler in self._previous.items():
            signal.signal(signum, handler)
        if self._pipe:
            signal.set_wakeup_fd(self._previous_wakeup)
            os.write(self._pipe[1], b"\0")       # no signal has number 0: the watcher's end
            self._watcher.join()
            for fd in self._pipe:
                os.close(fd)
        return False

    def _watch(self):
        while True:
            for signum in os.read(self._pipe[0], 64):
                if signum == 0:
                    return
                if signum in (signal.SIGTERM, signal.SIGINT):
                    self.request(signum)

    def request(self, signum):
        """Answers one signal: the first is noted and acknowledged in one flushed line; a second
        Ctrl-C ends the process now (the kernel releases the run folder's lock)."""
        name = signal.Signals(signum).name
        if self.signal_name is not None and signum == signal.SIGINT:
            print(f"\n{name} again: stopping now, without a checkpoint; the same command resumes "
                  "from the last one", file=self.out, flush=True)
            sys.stderr.flush()
            os._exit(128 + signal.SIGINT)
        if self.signal_name is not None:
            return
        self.signal_name = name
        print(f"\n{name}: stopping at the end of this step, with a checkpoint"
              + (" (Ctrl-C again stops at once)" if signum == signal.SIGINT else ""),
              file=self.out, flush=True)
