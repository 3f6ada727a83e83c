"""Benchmark: input-pipeline throughput of the Pascal VOC recipe, in images per second per core.

  .venv/bin/python -m benchmarks.tables input_pipeline       # the harness's table, alone
  .venv/bin/python -m benchmarks.input --data_dir=/tmp/bench_input_data --threads 1 2

Reads a prepared dataset through the real `InputPipeline` with the Pascal recipe's settings (321x321
crops, Hung et al.'s scale, flips, batch 10) and CutMix's streams: one labelled batch and two
unlabelled batches with box masks per step, 30 images. Without a real dataset it writes a stand-in:
`--images` JPEGs of Pascal's typical 500x375 size and quality, with smooth content so that they
compress like photographs, and PNG masks, in the `--dataset=folder` layout (the same reading path as
Pascal's JPEGs and PNG labels). tf.data's private thread pool is limited to each `--threads` value in
turn; the first `--warmup` steps are not timed.
"""
import argparse
import os
import textwrap
import time

import numpy as np



def write_stand_in(data_dir, count, seed=0):
    """Pascal-sized JPEGs (quality 90) and PNG masks in the folder layout, unless already there."""
    import cv2
    from PIL import Image
    images_dir, masks_dir = os.path.join(data_dir, "images"), os.path.join(data_dir, "masks")
    if os.path.isdir(images_dir) and len(os.listdir(images_dir)) == count:
        return
    os.makedirs(images_dir, exist_ok=True)
    os.makedirs(masks_dir, exist_ok=True)
    os.makedirs(os.path.join(data_dir, "val", "images"), exist_ok=True)
    os.makedirs(os.path.join(data_dir, "val", "masks"), exist_ok=True)
    rng = np.random.default_rng(seed)
    for k in range(count + 10):
        # Smooth colour fields plus a little grain: file sizes near real photographs' (~100 KB).
        low = rng.random((12, 16, 3)).astype(np.float32)
        image = cv2.resize(low, (500, 375), interpolation=cv2.INTER_CUBIC)
        image = np.clip(image * 255 + rng.normal(0, 6, image.shape), 0, 255).astype(np.uint8)
        mask = np.zeros((375, 500), np.uint8)
        y, x = rng.integers(0, 300), rng.integers(0, 400)
        mask[y:y + 80, x:x + 120] = rng.integers(1, 21)
        folder = (images_dir, masks_dir) if k < count else (
            os.path.join(data_dir, "val", "images"), os.path.join(data_dir, "val", "masks"))
        Image.fromarray(image).save(os.path.join(folder[0], f"img_{k:05d}.jpg"), quality=90)
        Image.fromarray(mask).save(os.path.join(folder[1], f"img_{k:05d}.png"))
    with open(os.path.join(data_dir, "classes.txt"), "w") as f:
        f.write("\n".join(f"class_{k}" for k in range(21)) + "\n")


def measure(source, threads, steps, warmup):
    import tensorflow as tf
    from semiseg_tf.augment import geometric
    from semiseg_tf.data import pipeline
    from semiseg_tf.semisup import methods

    labelled, unlabelled = source.labelled_split(106, 12345)
    params = pipeline.PipelineParams(
        batch_size=10, seed=0, geometric=geometric.GeometricParams(
            crop_size=(321, 321), scale_hung=True, hflip=True))
    stream = pipeline.InputPipeline(source, labelled, unlabelled, params,
                                    perturbation=methods.base.build("cutmix")).train_dataset()
    options = tf.data.Options()
    options.threading.private_threadpool_size = threads
    iterator = iter(stream.with_options(options))
    for _ in range(warmup):
        next(iterator)
    start = time.perf_counter()
    for _ in range(steps):
        next(iterator)
    seconds = time.perf_counter() - start
    return steps * 30 / seconds, seconds / steps


def table(command, runs_folder="runs/results", threads=(1, 2), steps=30, warmup=5):
    """Markdown for the results harness: the stand-in (1000 images, under `runs_folder`) read at
    each tf.data thread count."""
    from benchmarks import harness
    from semiseg_tf.data import prepared
    data_dir = os.path.join(runs_folder, "input_stand_in")
    write_stand_in(data_dir, 1000)
    source = prepared.build_prepared_source("folder", data_dir, n_sup=106)
    lines = [textwrap.fill(
        f"Code at commit {harness.code_commit()}; measured {time.strftime('%Y-%m-%d')} on "
        f"{harness.describe_machine(harness.machine())}, alone on the machine: 1000 JPEGs of "
        "Pascal's size (500x375) and their PNG masks, read as the Pascal recipe reads them (crops "
        f"of 321, Hung et al.'s scaling, flips, CutMix's three batches of 10 a step), {steps} "
        f"steps after {warmup}. Regenerate: `{command}`.", 100), "",
        "| tf.data threads | images/s | images/s per thread | ms per step (30 images) |",
        "|---|---|---|---|"]
    for count in threads:
        rate, step = measure(source, count, steps, warmup)
        lines.append(f"| {count} | {rate:.1f} | {rate / count:.1f} | {1000 * step:.0f} |")
    return "\n".join(lines)


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--data_dir", default="/tmp/bench_input_data",
                        help="the dataset's folder (the stand-in is written here)")
    parser.add_argument("--dataset", default="folder", help="folder (the stand-in) or pascal_aug")
    parser.add_argument("--images", type=int, default=1000, help="stand-in training images")
    parser.add_argument("--threads", type=int, nargs="+", default=[1, 2],
                        help="tf.data thread counts to time, one table row each")
    parser.add_argument("--steps", type=int, default=30, help="timed steps of 30 images")
    parser.add_argument("--warmup", type=int, default=5, help="untimed steps first")
    args = parser.parse_args()
    if args.dataset == "folder":
        write_stand_in(args.data_dir, args.images)
    from semiseg_tf.data import prepared
    source = prepared.build_prepared_source(args.dataset, args.data_dir, n_sup=106)
    print("| tf.data threads | images/s | images/s per thread | ms per step (30 images) |")
    print("|---|---|---|---|")
    for threads in args.threads:
        rate, step = measure(source, threads, args.steps, args.warmup)
        print(f"| {threads} | {rate:.1f} | {rate / threads:.1f} | {1000 * step:.0f} |", flush=True)


if __name__ == "__main__":
    main()
