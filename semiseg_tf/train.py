"""Train a segmentation model, semi-supervised with a mean teacher, or supervised (--cons_weight=0).

  python -m semiseg_tf.train --flagfile=flags/demo/cutmix.flags --workdir=runs/cutmix

Running the same command again resumes the run from its last checkpoint. `--help` explains every flag.
"""
import os
import signal
import sys

from absl import app, flags, logging

from semiseg_tf import config, options

# The modules that load TensorFlow are imported by main, so that --help
# answers without loading it.


def main(argv):
    from semiseg_tf import training
    if len(argv) > 1:
        raise app.UsageError(f"unexpected arguments: {' '.join(argv[1:])}")
    logging.set_verbosity(logging.WARNING)  # TF's INFO lines would bury the progress output
    try:
        cfg = config.from_flags()
        result = training.Trainer(cfg, config.to_flagfile_text()).run()
    except KeyboardInterrupt:
        print("\ninterrupted: run the same command again to resume from the last checkpoint",
              file=sys.stderr)
        return 130
    if result.stopped_by:
        # Stopped by SIGTERM or Ctrl-C after saving: the shell's status for that signal.
        return 128 + int(getattr(signal, result.stopped_by))
    if not result.finished:
        return 0      # paused on purpose (--stop_at_step): the run said how to continue
    if result.worker:
        print(f"[{result.worker}] trained to step {result.step}; the chief evaluated and wrote "
              f"{result.workdir}")
        return 0
    print(f"final mIoU {100 * result.miou:.2f}%  (metrics in "
          f"{os.path.join(result.workdir, training.METRICS_FILE)})")
    return 0

if __name__ == "__main__":
    flags.FLAGS.set_default("alsologtostderr", False)
    options.run_command(main, config.TRAINING_TOPICS)
