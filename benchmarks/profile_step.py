"""Where a recipe's training step spends its time: TensorFlow's profiler, summed by op type.

  .venv/bin/python -m benchmarks.profile_step flags/paper/pascal_deeplab2/cutmix_106.flags \
      --batch_size 2 [--config float32] [-- --aug_... extra training flags]

Builds the step as benchmarks/recipe_step.py does, runs it once untimed (tracing), then once
under `tf.profiler` and prints the busiest op types (or, with `--by=layer`, the layers whose
forward and backward ops take the most): total milliseconds over every thread, share of the summed
op time, and call count, with the step's wall time. Op times overlap when the
executor runs ops in parallel (2 cores: up to 2x the wall time in all).
"""
import argparse
import collections
import glob
import os
import sys
import tempfile
import time



# Frames of the executor and of functions, not ops.
FRAMES = ("Process", "Run")


def group_key(op_name, op_type, by):
    """The row an op's time goes to: its type, or (by layer) the Keras layer it belongs to: the
    op's name scope below the model's (gradients are named gradient_tape/.../LAYER/...)."""
    if by == "type":
        return op_type
    parts = [p for p in op_name.split("/")
             if p and p not in ("gradient_tape", "StatefulPartitionedCall")]
    layer = next((p for p in parts[1:] if not p.startswith(("mean_teacher", "deeplab", "pspnet",
                                                             "dense_unet", "backbone"))),
                 parts[0] if parts else op_name)
    return f"{layer} ({'backward' if 'gradient_tape' in op_name else 'forward'})"


def op_times(logdir, by="type"):
    """{row: [total ns, count]} from the profile's host plane (TF ops are named NAME:TYPE)."""
    from tensorflow.tsl.profiler.protobuf import xplane_pb2
    totals = collections.defaultdict(lambda: [0, 0])
    for path in glob.glob(os.path.join(logdir, "**", "*.xplane.pb"), recursive=True):
        space = xplane_pb2.XSpace()
        with open(path, "rb") as f:
            space.ParseFromString(f.read())
        for plane in space.planes:
            if not plane.name.startswith("/host:CPU") and "GPU" not in plane.name:
                continue
            names = {key: meta.name for key, meta in plane.event_metadata.items()}
            for line in plane.lines:
                for event in line.events:
                    name = names.get(event.metadata_id, "")
                    if ":" not in name:
                        continue       # Python, executor and function frames: not ops
                    op_name, op_type = name.rsplit(":", 1)
                    if op_type in FRAMES or op_type.strip().startswith("__inference"):
                        continue
                    key = group_key(op_name, op_type, by)
                    totals[key][0] += event.duration_ps // 1000
                    totals[key][1] += 1
    return totals


def main():
    from benchmarks import recipe_step
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("flagfile")
    parser.add_argument("--config", default="float32", help="PRECISION or PRECISION+xla")
    parser.add_argument("--batch_size", type=int, default=2)
    parser.add_argument("--top", type=int, default=25, help="rows to list")
    parser.add_argument("--by", choices=["type", "layer"], default="type",
                        help="sum op times by op type, or by the layer the ops belong to")
    argv, extra = sys.argv[1:], []
    if "--" in argv:
        argv, extra = argv[:argv.index("--")], argv[argv.index("--") + 1:]
    args = parser.parse_args(argv)
    import tensorflow as tf
    train_step, batch, _ = recipe_step.build_step(args.flagfile, args.config,
                                                        args.batch_size, extra)
    float(train_step(batch, tf.constant(0, tf.int64))["sup_loss"])
    with tempfile.TemporaryDirectory() as logdir:
        tf.profiler.experimental.start(logdir)
        start = time.perf_counter()
        float(train_step(batch, tf.constant(1, tf.int64))["sup_loss"])
        wall = time.perf_counter() - start
        tf.profiler.experimental.stop()
        totals = op_times(logdir, args.by)
    summed = sum(ns for ns, _ in totals.values())
    print(f"{os.path.basename(args.flagfile)} {args.config} batch {args.batch_size} "
          f"{' '.join(extra)}: step {wall:.2f} s wall, {summed / 1e9:.2f} s summed over ops")
    print(f"| {'op type' if args.by == 'type' else 'layer'} | ms | share | calls |")
    print("|---|---|---|---|")
    for op_type, (ns, count) in sorted(totals.items(), key=lambda kv: -kv[1][0])[:args.top]:
        print(f"| {op_type} | {ns / 1e6:.0f} | {100 * ns / summed:.1f}% | {count} |")


if __name__ == "__main__":
    main()
