#!/usr/bin/env bash
# Set-up and the main job, on the embedded synthetic dataset: a supervised baseline and a CutMix mean
# teacher, a table of their mIoU, then the CutMix run exported as a SavedModel, scored through it,
# and used to predict a few validation images saved as files, on a CPU: no download, no GPU. Its
# time and memory are in README.md, measured by `python -m benchmarks.tables demo_time`.
#   bash scripts/demo.sh [runs folder, default runs/demo]
# Running it again resumes unfinished runs, reprints the table and reuses the export.
# The export goes to saved_models/RUNS_cutmix/N (saved_models/demo_cutmix/1 for runs/demo).
set -euo pipefail
repo="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
bash "$repo/scripts/setup_env.sh"
runs="${1:-runs/demo}"
cd "$repo"
python=.venv/bin/python
for method in baseline cutmix; do
  echo "== training: $method (flags/demo/$method.flags, workdir $runs/$method)"
  $python -m semiseg_tf.train --flagfile="flags/demo/$method.flags" --workdir="$runs/$method"
done
echo "== results (teacher, full validation images)"
$python -m semiseg_tf.compare_runs "$runs/baseline" "$runs/cutmix"

# The export goes to saved_models/ (TF Serving's MODEL/VERSION layout: saved_models/README.md). The
# latest version is reused when it is this run's (its copy of the run's scores is the same), else
# the next version is written.
export_root="saved_models/$(basename "$runs")_cutmix"
latest=$(ls "$export_root" 2>/dev/null | grep -E '^[0-9]+$' | sort -n | tail -1 || true)
if [ -n "$latest" ] && cmp -s "$runs/cutmix/metrics.json" "$export_root/$latest/assets/metrics.json"; then
  export_dir="$export_root/$latest"
  echo "== export: $export_dir, this run's export, exists already"
else
  export_dir="$export_root/$(( ${latest:-0} + 1 ))"
  echo "== export: the CutMix teacher as a SavedModel that takes raw pixels ($export_dir)"
  $python -m semiseg_tf.export --workdir="$runs/cutmix" --export_dir="$export_dir"
fi
echo "== evaluate: the SavedModel on the validation set (the trainer's final mIoU again)"
$python -m semiseg_tf.evaluate --saved_model="$export_dir" --output_dir="$runs/evaluation/cutmix"
echo "== predict: 8 validation images, saved as files, through the SavedModel"
$python -m semiseg_tf.data.synthetic --split=val --count=8 --output="$runs/val_files"
$python -m semiseg_tf.predict --saved_model="$export_dir" --input="$runs/val_files/images" \
  --output="$runs/predictions"
echo "Overlays of the predictions: $runs/predictions/overlays/ (label maps: $runs/predictions/labels/)"
echo "TensorBoard: .venv/bin/tensorboard --logdir $runs --host 127.0.0.1 --port 6006"
