"""The errors a command reports as one line, and the exit status of each.

Each message names the flag (to a Python caller, the argument: `about`), file or folder and what
is wrong with it. They live here, apart from the modules that raise them, so that a command can
catch them without importing TensorFlow; `options.run_command` reports them for every command
(`report`).
"""
import os
import sys


class ConfigError(ValueError):
    """A flag or argument has a wrong value; the message names it."""


class DataError(ValueError):
    """Bad or missing data; the message is one line that names the file or folder."""


class WeightsError(ValueError):
    """A weights file is missing, unreadable, or does not fit the network; the message says where."""


class RunFolderError(RuntimeError):
    """The run folder cannot be written (disk full, read-only); the message names the path."""


class TrainingDiverged(RuntimeError):
    """A loss, gradient or weight became non-finite; the message names the step and what."""


class WorkerLost(RuntimeError):
    """Another worker of a multi-worker run stopped answering; the message names it, the last
    checkpoint and how to resume."""


def worded(kind, message, command_message):
    """An error of `kind` whose message speaks to a Python caller (arguments), and which a command
    reports in its own words (flags): `report` prints `command_message`."""
    error = kind(message)
    error.command_message = command_message
    return error


def about(kind, argument, value, problem):
    """An error of `kind` about one argument of a library call: `workdir='runs/x': problem` to a
    Python caller; a command, whose flag has the argument's name, reports `--workdir=runs/x: problem`."""
    return worded(kind, f"{argument}={value!r}: {problem}", f"--{argument}={value}: {problem}")


# The exit status of each: 2, what the user gave (flags, files, a folder that cannot be written);
# 3, a training that diverged; 4, a lost worker (then the process leaves at once: TensorFlow's
# cluster runtime may wait for the lost worker at exit). An OSError (a file system that refused a
# read or a write) is 2 too.
EXIT_STATUS = {ConfigError: 2, DataError: 2, WeightsError: 2, RunFolderError: 2,
               TrainingDiverged: 3, WorkerLost: 4, OSError: 2}
REPORTED = tuple(EXIT_STATUS)


def report(error):
    """Prints `error` as one line on stderr; returns its exit status (leaves at once for 4)."""
    if isinstance(error, OSError) and not isinstance(error, REPORTED[:-1]):
        print(f"error: {error.filename or ''}: {error.strerror or error}", file=sys.stderr)
    else:
        print(f"error: {getattr(error, 'command_message', error)}", file=sys.stderr, flush=True)
    status = next(code for kind, code in EXIT_STATUS.items() if isinstance(error, kind))
    if status == 4:
        sys.stdout.flush()
        os._exit(status)
    return status
