"""Benchmark: a recipe's training step in several precisions and with XLA, each in its own process.

  .venv/bin/python -m benchmarks.recipe_step flags/paper/pascal_deeplab2/cutmix_106.flags \
      --configs float32 bfloat16 bfloat16+xla --batch_size 10 --steps 10 --iterations 40000

The step is the trainer's own (`training.build_model` from the flagfile: network, optimiser and
learning-rate groups, perturbation, mixed precision, `--jit_compile`), on one batch of the
recipe's crop drawn once through the real input pipeline from the embedded synthetic images (so
no dataset is needed and the input pipeline is not timed: `benchmarks/input.py` times that).
The first step (tracing, XLA compilation) is reported apart; the table gives the median of the
next `--steps`, the peak memory of the process (and of the GPU, where there is one) and the hours
that `--iterations` steps would take. Each config is `PRECISION` or `PRECISION+xla`; flags after
`--` go to every run (e.g. `-- --arch=deeplab2_small` for a quick check on a CPU).
"""
import argparse
import json
import os
import statistics
import subprocess
import sys
import time

from benchmarks import harness


def build_step(flagfile, config, batch_size, extra):
    """The recipe's compiled training step and one batch: (train_step, batch, model). Call once
    per process (the flags are parsed here)."""
    import tensorflow as tf
    from absl import flags

    from semiseg_tf import config as config_lib, training
    from semiseg_tf.data import pipeline, synthetic

    precision, _, xla = config.partition("+")
    flags.FLAGS([sys.argv[0], f"--flagfile={flagfile}", "--dataset=synthetic",
                 f"--mixed_precision={precision}", f"--jit_compile={xla == 'xla'}",
                 f"--batch_size={batch_size}", "--workdir=/nonexistent", *extra])
    cfg = config_lib.from_flags()
    model = training.build_model(cfg, num_classes=21)
    # Images as large as the crop, so that crops are not padding.
    source = synthetic.SyntheticSource(8, 1, max(cfg.augmentation.crop_size), seed=0)
    labelled, unlabelled = source.labelled_split(4, 0)
    batches = pipeline.InputPipeline(
        source, labelled, unlabelled, training.pipeline_params(cfg),
        perturbation=model.perturbation if model.uses_unlabelled else None).train_dataset()
    return tf.function(model.train_step, jit_compile=cfg.distribution.jit_compile), next(iter(batches)), model


def measure(flagfile, config, batch_size, steps, extra):
    """In the child process: {seconds, first, rss_gib, gpu_gib, device}."""
    import tensorflow as tf

    train_step, batch, _ = build_step(flagfile, config, batch_size, extra)
    times = []
    for step in range(steps + 1):
        start = time.perf_counter()
        float(train_step(batch, tf.constant(step, tf.int64))["sup_loss"])   # waits for the step
        times.append(time.perf_counter() - start)
    gpus = tf.config.list_physical_devices("GPU")
    gpu_gib, device = None, f"CPU ({os.cpu_count()} cores)"
    if gpus:
        gpu_gib = tf.config.experimental.get_memory_info("GPU:0")["peak"] / 2 ** 30
        device = tf.config.experimental.get_device_details(gpus[0]).get("device_name", "GPU")
    return {"seconds": statistics.median(times[1:]), "first": times[0], "device": device,
            "rss_gib": harness.peak_gib(),
            "gpu_gib": gpu_gib}


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("flagfile", help="the recipe")
    parser.add_argument("--configs", nargs="+", default=["float32", "bfloat16", "bfloat16+xla"],
                        help="PRECISION or PRECISION+xla, one table row each")
    parser.add_argument("--batch_size", type=int, default=10, help="labelled (and unlabelled) batch")
    parser.add_argument("--steps", type=int, default=10, help="timed steps after the first")
    parser.add_argument("--iterations", type=int, default=40000, help="steps to project the hours for")
    parser.add_argument("--child", help=argparse.SUPPRESS)
    argv, extra = sys.argv[1:], []
    if "--" in argv:
        argv, extra = argv[:argv.index("--")], argv[argv.index("--") + 1:]
    args = parser.parse_args(argv)
    if args.child:
        print(json.dumps(measure(args.flagfile, args.child, args.batch_size, args.steps, extra)))
        return
    env = harness.child_env()
    rows = []
    for config in args.configs:
        done = subprocess.run([sys.executable, "-m", "benchmarks.recipe_step", args.flagfile,
                               f"--child={config}", f"--batch_size={args.batch_size}",
                               f"--steps={args.steps}", "--", *extra],
                              env=env, cwd=harness.REPO, capture_output=True, text=True)
        if done.returncode != 0:
            print(f"{config}: failed\n{done.stderr[-3000:]}", file=sys.stderr, flush=True)
            rows.append((config, None))
            continue
        result = json.loads(done.stdout.strip().splitlines()[-1])
        print(f"{config}: {json.dumps(result)}", file=sys.stderr, flush=True)
        rows.append((config, result))
    reference = next((r["seconds"] for _, r in rows if r), None)
    print(f"\n{os.path.basename(args.flagfile)} {' '.join(extra)}, batch {args.batch_size}, median "
          f"of {args.steps} steps, {time.strftime('%Y-%m-%d')}")
    print(f"| config | device | s/step | speed-up over {args.configs[0]} | first step (s) "
          f"| peak GPU memory (GiB) | peak RSS (GiB) | hours for {args.iterations} steps |")
    print("|---|---|---|---|---|---|---|---|")
    for config, r in rows:
        if r is None:
            print(f"| {config} | - | failed | | | | | |")
            continue
        gpu = f"{r['gpu_gib']:.1f}" if r["gpu_gib"] is not None else "-"
        print(f"| {config} | {r['device']} | {r['seconds']:.3f} | {reference / r['seconds']:.2f}x "
              f"| {r['first']:.0f} | {gpu} | {r['rss_gib']:.1f} "
              f"| {r['seconds'] * args.iterations / 3600:.1f} |", flush=True)


if __name__ == "__main__":
    main()
