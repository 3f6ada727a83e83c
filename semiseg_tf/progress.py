"""Progress lines for long work: done/total, rate and time left, at most one every few seconds."""
import sys
import time

_BAR_WIDTH = 24


class Progress:
    """`update(done)` prints `  WHAT: [#####.....] done/total (p%), R UNIT/s, Ns left` to `out` when
    `every` seconds have passed since the last line, and always at the end (`total`: None when it is
    not known; the line then counts without a bar).

    The rate is measured from the first update on, so start-up work before it (tracing a graph,
    opening files) does not make the time left look longer than it is.
    """

    def __init__(self, what, total, unit, out=sys.stderr, every=5.0, bar=True):
        self.what, self.total, self.unit, self.out, self.every = what, total, unit, out, every
        self.bar = bar
        self.start = self.last = time.perf_counter()
        self.done = 0
        self.skipped = 0     # of `done`: items that could not be processed, shown on the line
        self._first = None   # (time, done) of the first update

    @property
    def rate(self):
        """Units done per second (since the first update, once there are two)."""
        now = time.perf_counter()
        if self._first is not None and self.done > self._first[1] and now > self._first[0]:
            return (self.done - self._first[1]) / (now - self._first[0])
        return self.done / max(now - self.start, 1e-9)

    def update(self, done):
        self.done = done
        now = time.perf_counter()
        if self._first is None:
            self._first = (now, done)
        if done == self.total or now - self.last >= self.every:
            self.last = now
            print(f"  {self.what}: {self.line()}", file=self.out, flush=True)

    def line(self):
        """The progress text, without the leading name."""
        rate = self.rate
        if not self.total:
            return f"{self.done} {self.unit}, {rate:.1f} {self.unit}/s"
        share = self.done / self.total
        left = (self.total - self.done) / rate if rate > 0 else 0
        bar = ""
        if self.bar:
            filled = int(round(share * _BAR_WIDTH))
            bar = "[" + "#" * filled + "." * (_BAR_WIDTH - filled) + "] "
        skipped = f", {self.skipped} skipped" if self.skipped else ""
        return (f"{bar}{self.done}/{self.total} ({100 * share:.0f}%){skipped}, "
                f"{rate:.1f} {self.unit}/s, {left:.0f}s left")
