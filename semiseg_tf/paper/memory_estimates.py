"""What a real-data recipe needs of a GPU, for its header: memory per GPU, estimated from its
training step on a CPU (benchmarks/recipe_memory.py writes gpu_memory.json beside this file).

Recipes of one folder and method (the part of the file name before the labelled count) share a
network, a crop and a method, so they share the memory one image costs; the estimate for a
recipe's images per GPU extrapolates the measurements at 1 and 2 images linearly.
"""
import json
import os
import textwrap

FILE = os.path.join(os.path.dirname(os.path.abspath(__file__)), "gpu_memory.json")


def key_of(path):
    """'flags/paper/pascal_deeplab2/cutmix' for flags/paper/pascal_deeplab2/cutmix_106.flags."""
    folder, name = os.path.split(path)
    return f"{folder}/{name.rsplit('_', 1)[0]}"


def load():
    """gpu_memory.json's contents ({'how': ..., 'families': {key: {'1': GiB, '2': GiB}}}), or an
    empty record where nothing has been measured yet."""
    if not os.path.exists(FILE):
        return {"how": None, "families": {}}
    with open(FILE) as f:
        return json.load(f)


def gib(estimates, path, images):
    """Estimated GiB of one GPU training recipe `path` on `images` images at a time, or None."""
    measured = estimates["families"].get(key_of(path))
    if measured is None:
        return None
    one, two = measured["1"], measured["2"]
    return one + (two - one) * (images - 1)


def images(count):
    return f"{count} image" + ("s" if count != 1 else "")


def comment(text):
    """`text` as flagfile comment lines of at most 100 characters."""
    return textwrap.wrap(text, 100, initial_indent="# ", subsequent_indent="# ",
                         break_on_hyphens=False)


def header_lines(estimates, path, gpus, per_gpu, original, dataset):
    """The header's lines on the GPUs recipe `path` needs (`gpus` of `per_gpu` images, as
    `original` ran it) and on whether it has been run on `dataset`."""
    per_gpu_gib, whole = gib(estimates, path, per_gpu), gib(estimates, path, gpus * per_gpu)
    if per_gpu_gib is None:
        need = (f"GPUs: {gpus}, as {original} ran it, {images(per_gpu)} each; their memory is "
                "not estimated yet (benchmarks/recipe_memory.py).")
    elif gpus > 1:
        need = (f"GPUs: {gpus}, as {original} ran it, each with about {per_gpu_gib:.0f} GiB for its "
                f"{images(per_gpu)} (or one with about {whole:.0f} GiB for the whole batch)")
    else:
        need = (f"GPU: one, as {original} ran it, with about {per_gpu_gib:.0f} GiB for its "
                f"{images(per_gpu)}")
    if per_gpu_gib is not None:
        need += ("; estimated from the training step's peak memory on a CPU "
                 "(benchmarks/recipe_memory.py), not measured on a GPU")
        sibling = estimates["families"][key_of(path)].get("second_image_from")
        need += (f" (each image after the first: {sibling}'s share, scaled; two images did not fit "
                 "the measuring machine)." if sibling and max(per_gpu, gpus * per_gpu) > 1 else ".")
    return comment(need) + comment(
        f"Not run yet with this code on {dataset}: the figure above is the published one "
        "(docs/paper.md, \"What a recipe needs, and checking it against its published "
        "figure\").")
