"""The memory a GPU needs for each real-data recipe, estimated from its training step on a CPU.

  .venv/bin/python -m benchmarks.recipe_memory [PART ...]  # measures what is missing, then writes
  .venv/bin/python -m semiseg_tf.paper.recipes && .venv/bin/python -m semiseg_tf.paper.beyond_recipes

Recipes of one network, crop and method need the same memory per image; each such family is
measured once, in a process of its own: the recipe's model built as the trainer builds it
(`benchmarks/recipe_step.py`, random weights, float32) takes two training steps on one, then on
two images per GPU, and the process's peak resident memory is read after them. The recipes'
headers (semiseg_tf/paper/recipes.py, beyond_recipes.py) extrapolate the two linearly to their own
images per GPU. A CPU process holds what a GPU holds (weights, optimiser state, the activations
kept for the gradients) plus TensorFlow's runtime, and allocates differently, so the figure is an
estimate until a GPU measures it; `benchmarks/gpu.sh` does where one is lent. The results go to
semiseg_tf/paper/gpu_memory.json with the commit, date, machine and command.
"""
import glob
import json
import os
import subprocess
import sys
import time

from benchmarks import harness

from semiseg_tf.paper import memory_estimates

RECIPES = ("flags/paper/*/*_*.flags", "flags/beyond/*/*_*.flags")
BATCHES = (1, 2)
OUTPUT = os.path.relpath(memory_estimates.FILE, harness.REPO)
# Families whose two-image step does not fit a 24 GiB machine: measured at one image, their second
# image's share is a sibling's (the same network and method on another dataset's crop) scaled by
# the ratio of the same two datasets' shares on the smaller network:
# {family: (sibling, family on the smaller network, sibling on the smaller network)}.
SCALED = {"flags/beyond/pascal_classic_dinov2_base/unimatch_v2": (
    "flags/beyond/cityscapes_dinov2_base/unimatch_v2",
    "flags/beyond/pascal_classic_dinov2_small/unimatch_v2",
    "flags/beyond/cityscapes_dinov2_small/unimatch_v2")}


def scaled_share(known, family):
    """The second image's GiB of `family` (SCALED) from the measured families in `known`."""
    def share(key):
        return known[key]["2"] - known[key]["1"]
    sibling, small, small_sibling = SCALED[family]
    return share(sibling) * share(small) / share(small_sibling)


def measure(flagfile, batch):
    """Peak resident memory (GiB) of a process that takes two training steps of the recipe at
    `batch` images (and as many unlabelled ones)."""
    child = ("import json, sys\n"
             "import tensorflow as tf\n"
             "from benchmarks import recipe_step\n"
             f"step, data, _ = recipe_step.build_step({flagfile!r}, 'float32', {batch}, "
             "['--split_file=', '--n_sup=4'])\n"
             "for k in range(2):\n"
             "    float(step(data, tf.constant(k, tf.int64))['sup_loss'])\n"
             "from benchmarks import harness\n"
             "print(json.dumps(harness.peak_gib()))\n")
    done = subprocess.run([sys.executable, "-c", child], cwd=harness.REPO, capture_output=True,
                          text=True, env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2",
                                          "PYTHONPATH": harness.REPO})
    if done.returncode:
        raise SystemExit(f"error: {flagfile} at {batch} image(s): {done.stderr[-2000:]}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def main(argv):
    """Measures each family not measured yet; with arguments, only those whose name holds one of
    them (e.g. `pascal_classic_dinov2_base`)."""
    known = memory_estimates.load()["families"]
    families = {}
    for pattern in RECIPES:
        for path in sorted(glob.glob(os.path.join(harness.REPO, pattern))):
            flagfile = os.path.relpath(path, harness.REPO)
            key = memory_estimates.key_of(flagfile)
            if not argv or any(part in key for part in argv):
                families.setdefault(key, flagfile)
    for key, flagfile in families.items():
        if key in known:
            continue
        start = time.time()
        if key in SCALED:
            one = measure(flagfile, 1)
            known[key] = {"1": round(one, 2), "2": round(one + scaled_share(known, key), 2),
                          "second_image_from": SCALED[key][0]}
        else:
            known[key] = {str(b): round(measure(flagfile, b), 2) for b in BATCHES}
        print(f"{key} ({flagfile}): {known[key]} GiB, {time.time() - start:.0f} s", flush=True)
        with open(memory_estimates.FILE, "w") as f:    # after each: a stopped run resumes
            json.dump({"how": provenance(), "families": known}, f, indent=1, sort_keys=True)
    return 0


def provenance():
    info = harness.machine()
    return (f"estimated {time.strftime('%Y-%m-%d')} at code commit {harness.code_commit(OUTPUT)} on "
            f"{info['cpu']} ({info['vector']}), {info['cores']} cores, TensorFlow "
            f"{info['tensorflow']}: the peak memory of a CPU process taking two training steps at "
            "1 and at 2 images, float32 (`python -m benchmarks.recipe_memory`)")


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
