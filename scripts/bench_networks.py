"""Benchmark: training-step time and peak memory of the paper's networks, supervised and CutMix.

  .venv/bin/python scripts/bench_networks.py --batch 2 --steps 3 \
      deeplab2_resnet101:321 deeplab3plus_resnet101:321 pspnet_resnet101:321 dense_unet_densenet161:224

Each ARCH:CROP runs twice, supervised (`--cons_weight=0`: one student pass) and CutMix mean teacher
(student on the labelled and the mixed batch, teacher on both unlabelled batches), through the real
`MeanTeacher.train_step` compiled as in training (Adam, backbone at 0.1 of the rate), on random
images. Each measurement is its own process, so its peak resident memory (and peak GPU memory, when
there is a GPU) is its own. The first step (tracing) is not timed; the table gives the median of the
next `--steps`.
"""
import argparse
import json
import os
import resource
import statistics
import subprocess
import sys
import time


def measure(arch, crop, batch, steps, cutmix):
    """Runs in the child process: returns {seconds per step, peak memory}."""
    import keras
    import tensorflow as tf

    from semiseg_tf import models
    from semiseg_tf.augment import boxmask
    from semiseg_tf.semisup import mean_teacher, optim, perturbations

    keras.utils.set_random_seed(0)
    student, teacher = models.build(arch, 21), models.build(arch, 21)
    model = mean_teacher.MeanTeacher(
        student, teacher, perturbation=perturbations.build("cutmix") if cutmix else None,
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
            "rss_gib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2 ** 20,
            "gpu_gib": gpu_peak}


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("networks", nargs="*", help="ARCH:CROP pairs")
    parser.add_argument("--batch", type=int, default=2, help="labelled batch (and each unlabelled)")
    parser.add_argument("--steps", type=int, default=3, help="timed steps after the first")
    parser.add_argument("--child", help=argparse.SUPPRESS)  # ARCH:CROP:cutmix|supervised
    args = parser.parse_args()
    if args.child:
        arch, crop, mode = args.child.split(":")
        print(json.dumps(measure(arch, int(crop), args.batch, args.steps, mode == "cutmix")))
        return
    print(f"| network | crop | batch | supervised s/step | CutMix s/step | CutMix / supervised "
          f"| peak RSS supervised / CutMix (GiB) |")
    print("|---|---|---|---|---|---|---|")
    repo = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2",
           "PYTHONPATH": os.pathsep.join(filter(None, [repo, os.environ.get("PYTHONPATH")]))}
    for network in args.networks:
        arch, crop = network.split(":")
        results = {}
        for mode in ("supervised", "cutmix"):
            proc = subprocess.run([sys.executable, __file__, f"--child={arch}:{crop}:{mode}",
                                   f"--batch={args.batch}", f"--steps={args.steps}"],
                                  capture_output=True, text=True, env=env)
            if proc.returncode != 0:
                sys.exit(f"{arch} {mode} failed:\n{proc.stderr[-3000:]}")
            results[mode] = json.loads(proc.stdout.strip().splitlines()[-1])
            print(f"{arch} {mode}: {results[mode]}", file=sys.stderr, flush=True)
        sup, mix = results["supervised"], results["cutmix"]
        memory = f"{sup['rss_gib']:.1f} / {mix['rss_gib']:.1f}"
        if sup["gpu_gib"] is not None:
            memory += f" (GPU {sup['gpu_gib']:.1f} / {mix['gpu_gib']:.1f})"
        print(f"| {arch} | {crop} | {args.batch} | {sup['seconds']:.2f} | {mix['seconds']:.2f} "
              f"| {mix['seconds'] / sup['seconds']:.2f}x | {memory} |", flush=True)


if __name__ == "__main__":
    main()
