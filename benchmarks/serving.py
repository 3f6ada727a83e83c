"""Benchmark: export time, SavedModel size, and serving throughput through the loaded SavedModel.

  .venv/bin/python -m benchmarks.serving --archs small_unet deeplab2_resnet101 --size 512 \
      --repeats 3 --tile_image 1024,2048 --tile_size 512,1024

For each network (random weights, 21 classes) a run folder is made (run.json, flags.txt and a
checkpoint of the teacher), then exported by `semiseg_tf.serving.export` as a user's run would be,
three times: plain, with --flip baked in, and with sliding-window tiles. Each SavedModel is loaded
with `tf.saved_model.load` (what TF Serving runs) and fed uint8 images, labels read back:
- throughput: images/s at --size x --size, batch --batch, median of --repeats timed calls after one
  untimed call (tracing);
- the sliding-window cost: seconds per --tile_image image through the tiled export, against one
  pass over the whole image (the plain export), median of --tile_repeats.
Prints one JSON line per network and a Markdown table.
"""
import argparse
import json
import os
import statistics
import tempfile
import time



def make_run(workdir, arch, crop):
    """A run folder holding what export needs: run.json, flags.txt, a teacher checkpoint."""
    import keras
    import tensorflow as tf

    from semiseg_tf import models, run_info, visualise
    from semiseg_tf.data import base
    keras.utils.set_random_seed(0)
    network = models.build(arch, 21)
    info = run_info.RunInfo(
        dataset="benchmark", class_names=tuple(f"class_{k}" for k in range(21)),
        palette=visualise.default_palette(21), rgb_mean=base.IMAGENET_MEAN,
        rgb_std=base.IMAGENET_STD, arch=arch, input_multiple=models.input_multiple(arch),
        crop_size=(crop, crop), network_options={"freeze_bn": True,
                                                 "deeplab2_aspp_two_branches": False})
    os.makedirs(workdir)
    run_info.write(workdir, info)
    with open(os.path.join(workdir, "flags.txt"), "w") as f:
        f.write(f"--arch={arch}\n--workdir={workdir}\n")
    step = tf.Variable(1, dtype=tf.int64)
    tf.train.Checkpoint(teacher=network, step=step).save(os.path.join(workdir, "checkpoints", "ckpt"))


def timed(fn, repeats):
    """Median seconds of `repeats` calls after one untimed call."""
    fn()
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def bench(arch, args, folder):
    import numpy as np
    import tensorflow as tf

    from semiseg_tf import inference, serving, trained
    workdir = os.path.join(folder, arch)
    make_run(workdir, arch, args.size)
    variants = {"plain": inference.InferenceOptions(),
                "flip": inference.InferenceOptions(flip=True),
                "tiles": inference.InferenceOptions(tile_size=args.tile_size)}
    result = {"arch": arch, "size": args.size, "batch": args.batch}
    rng = np.random.default_rng(0)
    images = rng.integers(0, 256, (args.batch, args.size, args.size, 3), dtype=np.uint8)
    for name, options in variants.items():
        export_dir = os.path.join(folder, "exports", arch, name)
        start = time.perf_counter()
        serving.export(trained.RunModel(workdir, options=options), export_dir,
                      out=open(os.devnull, "w"))
        result[f"export_s_{name}"] = time.perf_counter() - start
        result[f"size_mib_{name}"] = (serving.folder_size(export_dir)
                                      - os.path.getsize(os.path.join(export_dir, "network.keras"))
                                      ) / 2 ** 20
        result["keras_mib"] = os.path.getsize(os.path.join(export_dir, "network.keras")) / 2 ** 20
        serve = tf.saved_model.load(export_dir).signatures["serving_default"]
        if name in ("plain", "flip"):
            seconds = timed(lambda: serve(images=tf.constant(images))["labels"].numpy(),
                            args.repeats)
            result[f"images_per_s_{name}"] = args.batch / seconds
        if args.tile_image:
            big = rng.integers(0, 256, (1, *args.tile_image, 3), dtype=np.uint8)
            if name == "tiles":
                result["tiled_s_per_image"] = timed(
                    lambda: serve(images=tf.constant(big))["labels"].numpy(), args.tile_repeats)
                result["tiles_per_image"] = (
                    len(inference.tile_starts(args.tile_image[0], args.tile_size[0], 1 / 3))
                    * len(inference.tile_starts(args.tile_image[1], args.tile_size[1], 1 / 3)))
            elif name == "plain":
                result["whole_s_per_image"] = timed(
                    lambda: serve(images=tf.constant(big))["labels"].numpy(), args.tile_repeats)
    return result


def pair(text):
    height, width = (int(v) for v in text.split(","))
    return height, width


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--archs", nargs="+", default=["small_unet", "deeplab2_resnet101"],
                        help="Registered network names (random weights).")
    parser.add_argument("--size", type=int, default=512, help="Side of the throughput images, px.")
    parser.add_argument("--batch", type=int, default=1, help="Images per serving call.")
    parser.add_argument("--repeats", type=int, default=3, help="Timed serving calls (median).")
    parser.add_argument("--tile_image", type=pair, default=(1024, 2048),
                        help="'H,W' of the sliding-window image (full-resolution Cityscapes).")
    parser.add_argument("--tile_size", type=pair, default=(512, 1024),
                        help="'H,W' of the tiles (a network trained at half resolution).")
    parser.add_argument("--tile_repeats", type=int, default=1,
                        help="Timed calls of the sliding-window image (median).")
    parser.add_argument("--threads", type=int, default=0,
                        help="TensorFlow intra- and inter-op threads (0: TensorFlow's choice).")
    args = parser.parse_args()
    import tensorflow as tf
    if args.threads:
        tf.config.threading.set_intra_op_parallelism_threads(args.threads)
        tf.config.threading.set_inter_op_parallelism_threads(args.threads)
    device = "GPU: " + tf.config.experimental.get_device_details(
        tf.config.list_physical_devices("GPU")[0]).get("device_name", "?") \
        if tf.config.list_physical_devices("GPU") else f"CPU ({os.cpu_count()} cores)"
    rows = []
    with tempfile.TemporaryDirectory() as folder:
        for arch in args.archs:
            result = bench(arch, args, folder)
            result["device"] = device
            print(json.dumps(result), flush=True)
            rows.append(result)
    print(f"\n| network | export (s) | SavedModel (MiB) | images/s at {args.size}x{args.size} "
          f"| images/s with flip | {args.tile_image[0]}x{args.tile_image[1]} tiled (s) | "
          "whole image (s) |")
    print("|---|---|---|---|---|---|---|")
    for r in rows:
        print(f"| {r['arch']} | {r['export_s_plain']:.1f} | {r['size_mib_plain']:.1f} | "
              f"{r['images_per_s_plain']:.2f} | {r['images_per_s_flip']:.2f} | "
              f"{r.get('tiled_s_per_image', float('nan')):.2f} ({r.get('tiles_per_image', 0)} "
              f"tiles) | {r.get('whole_s_per_image', float('nan')):.2f} |")


if __name__ == "__main__":
    main()
