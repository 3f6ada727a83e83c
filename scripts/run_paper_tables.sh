#!/usr/bin/env bash
# Runs one of the paper's result tables: every cell's recipe (flags/paper/TABLE/) over the paper's
# seeds, one run after another, then writes runs/paper/TABLE/results.md beside the paper's figures.
#
#   bash scripts/run_paper_tables.sh pascal_deeplab2 --data_dir=/data/VOC2012 \
#       --backbone_weights=weights/resnet101.h5
#   bash scripts/run_paper_tables.sh --help      # tables, options (--seeds, --cells, --dry_run, ...)
#
# Runs resume: run the same command again after an interruption and finished runs just report their
# result. Flags it does not know go to every training run.
set -euo pipefail
repo="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
python="${PYTHON:-$repo/.venv/bin/python}"
[ -x "$python" ] || python=python3
cd "$repo"
exec "$python" scripts/paper_tables.py "$@"
