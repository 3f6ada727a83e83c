"""The memory one inference pass of each network takes on a CPU, for the budgets derived from it.

  .venv/bin/python -m benchmarks.pass_memory [NETWORK ...]   # measures what is missing, then writes

Each measurement is a process of its own: the network built as a run builds it (random weights,
float32), wrapped in the one inference path (`inference.Segmenter`, one pass whatever the size),
run once on a 64x64 image (the process's fixed memory: TensorFlow, the weights, the traced graph),
then on one square image; the process's peak resident memory is read after each. The sides grow
(SIDES) until a pass alone takes more than any budget could give it, at MEASURED_CLASSES classes,
and the pass over a tile is measured again at more classes for the cost of each class. Measured,
not fitted: a pass's memory is not smooth in its size (the convolutions' scratch buffers change
with it), and a vision transformer's grows with the square of its tokens.
semiseg_tf/options/limits.py derives each network's default --max_pass_pixels, --max_image_pixels
and --max_request_pixels from them and the memory bound. The results go to
semiseg_tf/models/pass_memory.json with the commit, date, machine and command, and the budgets
they give to docs/using.md ("Memory").
"""
import json
import os
import subprocess
import sys
import textwrap
import time

from benchmarks import harness

from semiseg_tf.options import limits

OUTPUT = os.path.relpath(limits.PASS_MEMORY_FILE, harness.REPO)
DOC = os.path.join(harness.REPO, "docs", "using.md")
CLASSES, MORE_CLASSES = limits.MEASURED_CLASSES, 101
SIDES = (256, 384, 512, 640, 768, 896, 1024, 1152, 1280, 1408, 1536, 1792, 2048)

CHILD = """
import json, sys
import numpy as np
from semiseg_tf import inference, models
arch, side, classes = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
def peak():
    with open('/proc/self/status') as f:
        return int(f.read().split('VmHWM:')[1].split()[0]) * 1024
network = models.build(arch, classes)
segmenter = inference.Segmenter(network, (0.5,) * 3, (0.25,) * 3, models.input_multiple(arch),
                                inference.InferenceOptions(max_pass_pixels=None))
segmenter.predict_label_maps(np.zeros((1, 64, 64, 3), np.uint8))
fixed = peak()
image = np.random.default_rng(0).integers(0, 256, (1, side, side, 3), dtype=np.uint8)
segmenter.predict_label_maps(image)
print(json.dumps({"fixed": fixed, "peak": peak()}))
"""


def measure(arch, side, classes):
    """{'fixed', 'peak'} bytes of a process running `arch` over one side x side image."""
    done = subprocess.run([sys.executable, "-c", CHILD, arch, str(side), str(classes)],
                          cwd=harness.REPO, capture_output=True, text=True,
                          env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2",
                               "PYTHONPATH": harness.REPO})
    if done.returncode:
        raise SystemExit(f"error: {arch} at {side}x{side}: {done.stderr[-2000:]}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def measure_network(arch):
    """The network's entry of pass_memory.json: its fixed bytes, the bytes each pass adds
    ({side: bytes}, at CLASSES), and the bytes a pixel that each class beyond those adds."""
    room = limits.MEMORY_BOUND_BYTES - limits.PROCESS_BYTES
    passes, fixed = {}, []
    for side in SIDES:
        result = measure(arch, side, CLASSES)
        passes[str(side)] = result["peak"] - result["fixed"]
        fixed.append(result["fixed"])
        if limits.PASS_MARGIN * passes[str(side)] > room:
            break
    tile = limits.TILE_SIDE
    if str(tile) not in passes:         # the budgets' tiles, whatever one pass takes
        result = measure(arch, tile, CLASSES)
        passes[str(tile)] = result["peak"] - result["fixed"]
    more = measure(arch, tile, MORE_CLASSES)
    per_class = ((more["peak"] - more["fixed"]) - passes[str(tile)]) / (
        tile * tile * (MORE_CLASSES - CLASSES))
    return {"fixed_bytes": min(fixed), "pass_bytes": passes,
            "bytes_per_pixel_class": round(max(0.0, per_class), 3)}


def main(argv):
    """Measures each registered network not measured yet (with arguments: only those)."""
    from semiseg_tf import models
    known = limits.pass_memory()["networks"]
    for arch in argv or models.available():
        if arch in known and not argv:
            continue
        start = time.time()
        known[arch] = measure_network(arch)
        print(f"{arch}: {json.dumps(known[arch])} ({time.time() - start:.0f} s)", flush=True)
        with open(limits.PASS_MEMORY_FILE, "w") as f:    # after each: a stopped run resumes
            json.dump({"how": provenance(), "networks": known}, f, indent=1, sort_keys=True)
            f.write("\n")
    harness.replace_region(DOC, "pass_memory", table())
    return 0


def table():
    """What each measured network's pass takes, and the budgets it gets at CLASSES classes."""
    limits.pass_memory.cache_clear()
    record = limits.pass_memory()
    lines = [textwrap.fill(record["how"], 100), "",
             "| network | fixed | one pass of 512x512 / 1024x1024 | --max_pass_pixels | "
             "--max_image_pixels | --max_request_pixels |",
             "|---|---|---|---|---|---|"]
    for arch, cost in sorted(record["networks"].items()):
        budget = limits.network_budget(arch, CLASSES)
        passes = [cost["pass_bytes"].get(str(side)) for side in (512, 1024)]
        shown = " / ".join("not measured: over the bound" if added is None
                           else f"{added / 1e6:.0f} MB" for added in passes)
        lines.append(f"| {arch} | {cost['fixed_bytes'] / 1e9:.2f} GB | {shown} | "
                     f"{budget.max_pass_pixels:,} | {budget.max_image_pixels:,} | "
                     f"{budget.max_request_pixels:,} |")
    return "\n".join(lines)


def provenance():
    info = harness.machine()
    return (f"Measured {time.strftime('%Y-%m-%d')} at code commit {harness.code_commit(OUTPUT)} "
            f"on {info['cpu']} ({info['vector']}), {info['cores']} cores, TensorFlow "
            f"{info['tensorflow']}: the peak memory of a CPU process running one pass of the "
            f"network over one image, float32, {CLASSES} classes "
            "(`python -m benchmarks.pass_memory`).")


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
