"""Prints a table of the final mIoU and per-class IoU of finished runs.

  python -m semiseg_tf.compare_runs runs/demo/baseline runs/demo/cutmix
"""
import argparse
import json
import os
import sys

from semiseg_tf import run_files


def main():
    parser = argparse.ArgumentParser(
        description="A table of the final mIoU and per-class IoU (%) of finished training runs, "
                    "read from each run's metrics.json; with two runs, the second's gain over the "
                    "first.")
    parser.add_argument("workdirs", nargs="+", metavar="WORKDIR", help="Run folders (--workdir of "
                        "python -m semiseg_tf.train), in the order of the table's rows.")
    workdirs = parser.parse_args().workdirs
    rows = []
    for workdir in workdirs:
        path = os.path.join(workdir, run_files.METRICS_FILE)
        if not os.path.exists(path):
            sys.exit(f"error: {path} does not exist (is the run finished?)")
        with open(path) as f:
            rows.append((os.path.basename(os.path.normpath(workdir)), json.load(f)))
    print(table(rows))


def table(rows):
    """The text of the table of [(name, metrics.json's dict)]; with two rows, the second's gain."""
    lines = []
    classes = list(rows[0][1]["per_class_iou"])
    name_width = max(len("run"), *(len(name) for name, _ in rows))
    # Each column as wide as its class name (at least a number's width), so no name is cut.
    widths = [max(len(c), 6) for c in classes]
    header = f"{'run':<{name_width}}  {'mIoU':>6}  " + "  ".join(
        f"{c:>{w}}" for c, w in zip(classes, widths))
    lines += [header, "-" * len(header)]
    for name, metrics in rows:
        ious = "  ".join(f"{100 * metrics['per_class_iou'].get(c, 0.0):>{w}.1f}"
                         for c, w in zip(classes, widths))
        lines.append(f"{name:<{name_width}}  {100 * metrics['miou']:>6.2f}  {ious}")
    if len(rows) == 2:
        gain = 100 * (rows[1][1]["miou"] - rows[0][1]["miou"])
        lines += ["", f"{rows[1][0]} - {rows[0][0]}: {gain:+.2f} mIoU points"]
    return "\n".join(lines)


if __name__ == "__main__":
    main()
