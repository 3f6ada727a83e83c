"""Prints a table of the final mIoU and per-class IoU of finished runs.

  python scripts/compare_runs.py runs/demo/baseline runs/demo/cutmix
"""
import json
import os
import sys


def main(workdirs):
    if not workdirs:
        sys.exit("usage: compare_runs.py WORKDIR [WORKDIR ...]")
    rows = []
    for workdir in workdirs:
        path = os.path.join(workdir, "metrics.json")
        if not os.path.exists(path):
            sys.exit(f"error: {path} does not exist (is the run finished?)")
        with open(path) as f:
            rows.append((os.path.basename(os.path.normpath(workdir)), json.load(f)))
    classes = list(rows[0][1]["per_class_iou"])
    name_width = max(len("run"), *(len(name) for name, _ in rows))
    header = f"{'run':<{name_width}}  {'mIoU':>6}  " + "  ".join(f"{c[:8]:>8}" for c in classes)
    print(header)
    print("-" * len(header))
    for name, metrics in rows:
        ious = "  ".join(f"{100 * metrics['per_class_iou'][c]:>8.1f}" for c in classes)
        print(f"{name:<{name_width}}  {100 * metrics['miou']:>6.2f}  {ious}")
    if len(rows) == 2:
        gain = 100 * (rows[1][1]["miou"] - rows[0][1]["miou"])
        print(f"\n{rows[1][0]} - {rows[0][0]}: {gain:+.2f} mIoU points")


if __name__ == "__main__":
    main(sys.argv[1:])
