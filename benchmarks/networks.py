"""Benchmark: training-step time and peak memory of the paper's networks, supervised and CutMix.

  .venv/bin/python -m benchmarks.networks --batch 2 --steps 3 \
      deeplab2_resnet101:321 deeplab3plus_resnet101:321 pspnet_resnet101:321 dense_unet_densenet161:224

Each ARCH:CROP runs twice, supervised (`--cons_weight=0`: one student pass) and CutMix mean teacher
(student on the labelled and the mixed batch, teacher on both unlabelled batches), through the real
`MeanTeacher.train_step` compiled as in training (Adam, backbone at 0.1 of the rate), on random
images. Each measurement is its own process, so its peak resident memory (and peak GPU memory, when
there is a GPU) is its own. The first step (tracing) is not timed; the table gives the median of the
next `--steps`. With `--max_rss_gib` a measurement whose resident memory passes that ceiling is
stopped and reported as not fitting (Linux: read from /proc), instead of meeting the kernel's
out-of-memory killer.
"""
import argparse
import json
import statistics
import subprocess
import sys
import time

from benchmarks import harness


def measure(arch, crop, batch, steps, cutmix):
    """Runs in the child process: returns {seconds per step, peak memory}."""
    import keras
    import tensorflow as tf

    from semiseg_tf import models
    from semiseg_tf.augment import boxmask
    from semiseg_tf.semisup import mean_teacher, methods, optim

    keras.utils.set_random_seed(0)
    student, teacher = models.build(arch, 21), models.build(arch, 21)
    model = mean_teacher.MeanTeacher(
        student, teacher, perturbation=methods.base.build("cutmix") if cutmix else None,
        cons_weight=1.0 if cutmix else 0.0)
    optimizer = optim.build_optimizer("adam", 1e-5)
    model.compile(optimizer=optimizer)
    model.initialise((crop, crop, 3))
    optimizer.scale_learning_rate(models.backbone_of(student).trainable_variables, 0.1)

    def unlabelled(seed):
        masks = tf.stack([boxmask.box_mask(tf.constant([seed, i], tf.int64), crop, crop,
                                           boxmask.BoxMaskParams(prop_range=(0.5, 0.5)))
                          for i in range(batch)])
        return {"image": tf.random.normal((batch, crop, crop, 3)),
                "valid": tf.ones((batch, crop, crop, 1)), "mix_mask": masks}
    data = {"labelled": {"image": tf.random.normal((batch, crop, crop, 3)),
                         "label": tf.random.uniform((batch, crop, crop), 0, 21, tf.int32)},
            "unlabelled": (unlabelled(1), unlabelled(2))}
    step = tf.function(model.train_step)
    times = []
    for _ in range(steps + 1):
        start = time.perf_counter()
        result = step(data)
        float(result["sup_loss"])   # waits for the step
        times.append(time.perf_counter() - start)
    gpu_peak = None
    if tf.config.list_physical_devices("GPU"):
        gpu_peak = tf.config.experimental.get_memory_info("GPU:0")["peak"] / 2 ** 30
    return {"seconds": statistics.median(times[1:]), "first": times[0],
            "rss_gib": harness.peak_gib(),
            "gpu_gib": gpu_peak}


def resident_gib(pid):
    """Resident memory of a live process in GiB, from /proc (None where there is no /proc)."""
    try:
        with open(f"/proc/{pid}/status") as status:
            for line in status:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1]) / 2 ** 20
    except OSError:
        return None
    return None


def run_child(command, env, max_rss_gib):
    """Runs one measurement; returns (result dict or None, peak RSS seen when stopped, stderr)."""
    with subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                          env=env) as proc:
        # Pipes are drained by communicate(); the polling only reads /proc, so the child cannot
        # block on a full pipe while the parent watches its memory.
        if not max_rss_gib:
            stdout, stderr = proc.communicate()
        else:
            peak = 0.0
            while True:
                try:
                    stdout, stderr = proc.communicate(timeout=0.5)
                    break
                except subprocess.TimeoutExpired:
                    peak = max(peak, resident_gib(proc.pid) or 0.0)
                    if peak > max_rss_gib:
                        proc.kill()
                        proc.communicate()
                        return None, peak, ""
    if proc.returncode != 0:
        return None, None, stderr
    return json.loads(stdout.strip().splitlines()[-1]), None, stderr


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("networks", nargs="*", help="ARCH:CROP pairs")
    parser.add_argument("--batch", type=int, default=2, help="labelled batch (and each unlabelled)")
    parser.add_argument("--steps", type=int, default=3, help="timed steps after the first")
    parser.add_argument("--max_rss_gib", type=float, default=0,
                        help="stop a measurement whose resident memory passes this (0: no ceiling)")
    parser.add_argument("--child", help=argparse.SUPPRESS)  # ARCH:CROP:cutmix|supervised
    args = parser.parse_args()
    if args.child:
        arch, crop, mode = args.child.split(":")
        print(json.dumps(measure(arch, int(crop), args.batch, args.steps, mode == "cutmix")))
        return
    print("| network | crop | batch | supervised s/step | CutMix s/step | CutMix / supervised "
          "| peak RSS supervised / CutMix (GiB) |")
    print("|---|---|---|---|---|---|---|")
    env = harness.child_env()
    for network in args.networks:
        arch, crop = network.split(":")
        results = {}
        for mode in ("supervised", "cutmix"):
            result, stopped_at, stderr = run_child(
                [sys.executable, "-m", "benchmarks.networks", f"--child={arch}:{crop}:{mode}",
                 f"--batch={args.batch}", f"--steps={args.steps}"], env, args.max_rss_gib)
            if stopped_at is not None:
                print(f"{arch} {mode}: stopped at {stopped_at:.1f} GiB resident "
                      f"(ceiling {args.max_rss_gib:g} GiB)", file=sys.stderr, flush=True)
            elif result is None:
                sys.exit(f"{arch} {mode} failed:\n{stderr[-3000:]}")
            else:
                print(f"{arch} {mode}: {result}", file=sys.stderr, flush=True)
            results[mode] = result
        sup, mix = results["supervised"], results["cutmix"]
        over = f"does not fit (> {args.max_rss_gib:g} GiB)"
        seconds = [f"{r['seconds']:.2f}" if r else over for r in (sup, mix)]
        ratio = f"{mix['seconds'] / sup['seconds']:.2f}x" if sup and mix else "-"
        memory = " / ".join(f"{r['rss_gib']:.1f}" if r else "-" for r in (sup, mix))
        if any(r and r["gpu_gib"] is not None for r in (sup, mix)):
            memory += " (GPU " + " / ".join(
                f"{r['gpu_gib']:.1f}" if r else "-" for r in (sup, mix)) + ")"
        print(f"| {arch} | {crop} | {args.batch} | {seconds[0]} | {seconds[1]} | {ratio} "
              f"| {memory} |", flush=True)

if __name__ == "__main__":
    main()
