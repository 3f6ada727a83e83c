"""A run's checkpoints on disk: the newest readable one restored (unreadable ones set aside), new
ones written whole or not at all."""
import os
import shutil

import tensorflow as tf

from semiseg_tf import checkpoints
from semiseg_tf.errors import ConfigError, RunFolderError
from semiseg_tf.files import atomic_write_bytes


class CheckpointStore:
    """The checkpoints of `run_checkpoint` (a `checkpoints.RunCheckpoint`) in `folder`, at most
    `keep` of them. `read_folder`: where the run's checkpoints are read from (a worker that is not
    the chief writes to a folder of its own but resumes from the chief's); `say`: prints a line."""

    def __init__(self, run_checkpoint, folder, keep, read_folder=None, say=print):
        self.run_checkpoint = run_checkpoint
        self.folder, self.keep = folder, keep
        self.read_folder = read_folder or folder
        self.writes_the_run = self.read_folder == folder
        self.say = say
        self.manager = self._make_manager()

    @property
    def latest(self):
        return self.manager.latest_checkpoint

    def restore(self, workdir):
        """Restores the newest checkpoint that can be read, if there is one; True if one was.
        Unreadable ones (truncated, corrupted, an empty index) are named in a line each, set
        aside (renamed *.unreadable) and the folder's checkpoint list rewritten without them."""
        unreadable = []
        for path in self._newest_first():
            try:
                exact = self.run_checkpoint.restore(path)
            except checkpoints.CheckpointUnreadable as error:
                self.say(f"warning: {path} cannot be read ({error}); trying the one before it")
                unreadable.append(path)
                continue
            except checkpoints.CheckpointMismatch as error:
                raise ConfigError(f"--workdir={workdir}: {error}; resume it with the code that "
                                  "wrote it or use a new --workdir")
            if unreadable and self.writes_the_run:
                self._set_aside(unreadable)
            self.say(f"resuming from {path} (step {int(self.run_checkpoint.checkpoint.step.numpy())})")
            if not exact:
                self.say("  " + checkpoints.FRESH_DROPOUT_NOTE)
            return True
        if unreadable:
            raise ConfigError(
                f"--workdir={workdir}: none of its {len(unreadable)} checkpoint(s) can be read "
                f"(the newest, {unreadable[0]}, as said above); start a new --workdir")
        return False

    def _newest_first(self):
        """The checkpoints the manager lists and any other ckpt-N on disk, those whose files are
        there, newest first."""
        paths = set(self.manager.checkpoints) if self.writes_the_run else set()
        folder = self.read_folder
        for name in (os.listdir(folder) if os.path.isdir(folder) else []):
            if name.startswith("ckpt-") and name.endswith(".index"):
                paths.add(os.path.join(folder, name[:-len(".index")]))

        def number(path):
            tail = os.path.basename(path)[len("ckpt-"):]
            return int(tail) if tail.isdigit() else -1
        return sorted((p for p in paths if number(p) >= 0 and os.path.exists(p + ".index")),
                      key=number, reverse=True)

    def _set_aside(self, unreadable):
        """Renames unreadable checkpoints' files to *.unreadable (for inspection; never read
        again) and makes the manager list only the others."""
        for prefix in unreadable:
            folder, base = os.path.split(prefix)
            for name in os.listdir(folder):
                if name.startswith(base + ".") and not name.endswith(".unreadable"):
                    os.replace(os.path.join(folder, name), os.path.join(folder, name + ".unreadable"))
        kept = list(reversed(self._newest_first()))
        # The manager's state file (a CheckpointState text proto) naming the newest kept one; the
        # save times let the manager go on deleting the oldest beyond --keep_checkpoints.
        state = "".join(
            [f'model_checkpoint_path: "{os.path.basename(kept[-1])}"\n']
            + [f'all_model_checkpoint_paths: "{os.path.basename(p)}"\n' for p in kept]
            + [f"all_model_checkpoint_timestamps: {os.path.getmtime(p + '.index')}\n" for p in kept])
        atomic_write_bytes(os.path.join(self.manager.directory, "checkpoint"), state.encode())
        self.manager = self._make_manager()

    def _make_manager(self):
        """The CheckpointManager. It writes each checkpoint completely, then names it in its state
        file by an atomic rename: a crash mid-save leaves the previous one as the latest. A state
        file that cannot be parsed is set aside (the checkpoints are found on disk)."""
        try:
            return tf.train.CheckpointManager(self.run_checkpoint.checkpoint, self.folder,
                                              max_to_keep=self.keep)
        except Exception as error:  # a damaged state file; what TF raises varies with the damage
            state = os.path.join(self.folder, "checkpoint")
            self.say(f"warning: {state} cannot be read ({checkpoints.first_line(error)}); "
                     "looking for the checkpoints themselves")
            os.replace(state, state + ".unreadable")
            return tf.train.CheckpointManager(self.run_checkpoint.checkpoint, self.folder,
                                              max_to_keep=self.keep)

    def save(self, step):
        """Saves ckpt-`step`. A write that fails (disk full, read-only) leaves no part of it and
        the previous checkpoint as the latest, and raises RunFolderError."""
        try:
            self.manager.save(checkpoint_number=step)
        except (OSError, tf.errors.OpError) as error:
            folder = self.manager.directory
            for name in os.listdir(folder):
                if name.startswith(f"ckpt-{step}.") or name.startswith(f"ckpt-{step}_temp"):
                    path = os.path.join(folder, name)
                    shutil.rmtree(path) if os.path.isdir(path) else os.remove(path)
            raise RunFolderError(
                f"{folder}: cannot write checkpoint ckpt-{step} ({checkpoints.first_line(error)}); "
                f"the latest checkpoint is still {self.latest or 'none'}") from None
