"""The results harness's `litert` measurement: the demo's CutMix network (seed 0) exported as a
SavedModel, ONNX and every LiteRT variant, each scored on the validation images.

  .venv/bin/python -m benchmarks.tables litert        # alone on the machine: it times

For each format: the file's size, the share of validation pixels labelled as the SavedModel labels
them, the validation mIoU, and the CPU latency of one 64x64 image (median of 200 calls after 20
untimed ones, one image at a time, every runtime with its default threads), and of one 512x512
image (64 validation images side by side) for the formats that take any size (a LiteRT file's
input size is fixed when it is written).
"""
import os
import shutil
import statistics
import textwrap
import time

from benchmarks import harness

WARMUP, CALLS = 20, 200
LARGE = 512


def _latency(call, image, warmup=WARMUP, calls=CALLS):
    for _ in range(warmup):
        call(image)
    times = []
    for _ in range(calls):
        start = time.perf_counter()
        call(image)
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def measure(command, runs_folder="runs/results"):
    """Markdown: the table, its provenance above it."""
    run = harness.Run(runs_folder, "cutmix", "flags/demo/cutmix.flags", 0)
    run.train()
    return table(run.workdir, os.path.join(runs_folder, "litert_export", "1"),
                 f"{harness.provenance([run], command)} The network: the demo's CutMix run, seed 0;")


def table(workdir, export_dir, heading):
    """The table of the run in `workdir` (a run on the embedded dataset), exported to `export_dir`
    (replaced)."""
    import numpy as np
    import onnxruntime
    import tensorflow as tf

    from semiseg_tf import litert, metrics, serving, trained
    from semiseg_tf.data import synthetic
    shutil.rmtree(os.path.dirname(export_dir), ignore_errors=True)
    model = trained.RunModel(workdir)
    source = synthetic.SyntheticSource()
    images, truth = source.val_images, source.val_labels
    size = images.shape[1:3]
    serving.export(model, export_dir, onnx=source.train_images[:8], keras_file=False,
                   out=open(os.devnull, "w"),
                   litert=serving.LiteRT(litert.VARIANTS, size, False, source.train_images[:32]))
    served = tf.saved_model.load(export_dir).signatures["serving_default"]
    reference = served(images=tf.constant(images))["labels"].numpy()
    session = onnxruntime.InferenceSession(os.path.join(export_dir, serving.ONNX_FILE))
    saved_model_files = sum(os.path.getsize(os.path.join(root, name))
                            for root, _, names in os.walk(export_dir) for name in names
                            if not name.endswith((".tflite", ".onnx")))
    formats = [("SavedModel", saved_model_files, reference,
                lambda image: served(images=tf.constant(image))["labels"].numpy(), True),
               ("ONNX (onnxruntime)", os.path.getsize(os.path.join(export_dir, serving.ONNX_FILE)),
                np.concatenate([session.run(["labels"], {"images": im[None]})[0] for im in images]),
                lambda image: session.run(["labels"], {"images": image}), True)]
    for variant in litert.VARIANTS:
        with open(os.path.join(export_dir, litert.file_name(variant)), "rb") as f:
            content = f.read()
        signature = litert.interpreter(content).get_signature_runner()
        formats.append((f"LiteRT {variant}", len(content), litert.run(content, images)["labels"],
                        lambda image, s=signature: s(images=image), False))
    num_classes = len(synthetic.CLASS_NAMES)
    lines = [textwrap.fill(
        f"{heading} scored on its {len(images)} validation images ({size[0]}x{size[1]}); latency: one image "
        f"per call, median of {CALLS} calls after {WARMUP}; at {LARGE}x{LARGE}, 64 validation images "
        f"side by side, median of {CALLS // 10} calls after {WARMUP // 10}.", 100), "",
        "| format | size (MiB) | labels as the SavedModel's (% of pixels) | mIoU | latency (ms) "
        f"| latency at {LARGE}x{LARGE} (ms) |",
        "|---|---|---|---|---|---|"]
    side = LARGE // size[0]
    large = (images[:side * side].reshape(side, side, *images.shape[1:])
             .transpose(0, 2, 1, 3, 4).reshape(1, side * size[0], side * size[1], -1))
    for name, file_size, labels, call, any_size in formats:
        confusion = metrics.confusion_matrix(truth, labels, num_classes).numpy()
        miou = metrics.scores(confusion, synthetic.CLASS_NAMES)["miou"]
        agree = float((labels == reference).mean())
        latency = _latency(call, images[:1])
        at_large = (f"{1000 * _latency(call, large, WARMUP // 10, CALLS // 10):.1f}" if any_size
                    else f"its input is {size[0]}x{size[1]}")
        lines.append(f"| {name} | {file_size / 2 ** 20:.2f} | {100 * agree:.2f} | {100 * miou:.2f} "
                     f"| {1000 * latency:.2f} | {at_large} |")
    per_image = size[0] * size[1]
    lines += ["", textwrap.fill(
        f"On the wire, one {size[0]}x{size[1]} image's labels are {per_image} bytes (uint8) and its "
        f"probabilities {per_image * num_classes * 4} (float32 for {num_classes} classes), "
        f"{num_classes * 4}x more: the LiteRT files return the labels alone unless exported with "
        "--tflite_probabilities.", 100)]
    return "\n".join(lines)
