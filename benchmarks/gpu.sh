#!/bin/bash
# The GPU benchmark: one prepared run that prints BENCHMARKS.md rows (parts 1-3 took under 8 minutes on
# one GPU; part 4 is new and unmeasured: run it alone with BENCH_GPU_PART=dinov2 first).
#
#   bash benchmarks/gpu.sh            # from the repository root, with the venv of scripts/setup_env.sh
#
# 1. The paper's DeepLab v2 CutMix step (flags/paper/pascal_deeplab2/cutmix_106.flags: ResNet-101,
#    crop 321, batch 10, Adam with the backbone at 0.1 of the rate), on synthetic crops drawn through the real input pipeline,
#    in float32, bfloat16 and bfloat16 + XLA: seconds per step, peak GPU memory, and the hours the
#    paper's 40,000 iterations would take (benchmarks/recipe_step.py; each config its own process).
# 2. The input pipeline of that recipe on this machine's cores (benchmarks/input.py: Pascal-sized
#    JPEG stand-ins, 30 images a step): a step of N seconds needs 30/N images/s from it.
# 3. Checks only a GPU can make: tiny synthetic runs with --strategy=mirrored --jit_compile in
#    bfloat16 and in float16 (XLA over the GPUs' replicas, float16 loss scaling under the strategy),
#    each printing its last lines and its exit status.
# 4. UniMatch V2's recipes with DINOv2 (flags/beyond/*dinov2*): the step of Pascal 92 with ViT-S and
#    ViT-B (crop 518, batch 16) and of Cityscapes 186 with ViT-B (crop 504, batch 8), as in 1, and
#    the hours of each recipe's steps.
# No pretrained weights are needed: the step costs the same from random weights.
# Quick check of the script itself on a CPU: BENCH_GPU_QUICK=1 bash benchmarks/gpu.sh
# One part only: BENCH_GPU_PART=deeplab|input|checks|dinov2 bash benchmarks/gpu.sh
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON=${PYTHON:-.venv/bin/python}
PART=${BENCH_GPU_PART:-all}
export TF_CPP_MIN_LOG_LEVEL=2
# (the input benchmark labels 106 images, the Pascal recipe's count, so it needs more than that)
STEPS=10 BATCH=10 IMAGES=300 INPUT_STEPS=20 EXTRA=()
V2_PASCAL_BATCH=16 V2_CITYSCAPES_BATCH=8 V2_EXTRA=(-- --split_file=)
if [[ -n "${BENCH_GPU_QUICK:-}" ]]; then
    STEPS=2 BATCH=2 IMAGES=120 INPUT_STEPS=3 EXTRA=(-- --arch=deeplab2_small --crop_size=65,65)
    V2_PASCAL_BATCH=2 V2_CITYSCAPES_BATCH=2
    V2_EXTRA=(-- --split_file= --arch=dinov2_tiny --crop_size=56,56 --ohem_min_kept=2000)
fi
echo "# $(date -u +%Y-%m-%d) on $(hostname): $(nproc) cores; $(nvidia-smi --query-gpu=name,memory.total --format=csv,noheader 2>/dev/null || echo 'no GPU')"
start=$SECONDS
if [[ $PART == all || $PART == deeplab ]]; then
"$PYTHON" -m benchmarks.recipe_step flags/paper/pascal_deeplab2/cutmix_106.flags \
    --configs float32 bfloat16 bfloat16+xla --batch_size "$BATCH" --steps "$STEPS" \
    --iterations 40000 "${EXTRA[@]}"
fi
if [[ $PART == all || $PART == dinov2 ]]; then
for recipe in pascal_classic_dinov2_small/unimatch_v2_92 pascal_classic_dinov2_base/unimatch_v2_92 \
              cityscapes_dinov2_base/unimatch_v2_186; do
    flagfile=flags/beyond/$recipe.flags
    batch=$V2_PASCAL_BATCH configs=(float32 bfloat16 bfloat16+xla)
    if [[ $recipe == cityscapes* ]]; then batch=$V2_CITYSCAPES_BATCH configs=(bfloat16+xla); fi
    echo
    echo "UniMatch V2, $recipe (batch $batch):"
    "$PYTHON" -m benchmarks.recipe_step "$flagfile" --configs "${configs[@]}" --batch_size "$batch" \
        --steps "$STEPS" --iterations "$(sed -n 's/^--train_steps=//p' "$flagfile")" "${V2_EXTRA[@]}"
done
fi
if [[ $PART == deeplab || $PART == dinov2 ]]; then
    echo "(took $((SECONDS - start)) s)"
    exit 0
fi
if [[ $PART == all || $PART == input ]]; then
echo
echo "Input pipeline (tf.data threads = all $(nproc) cores):"
"$PYTHON" -m benchmarks.input --data_dir=/tmp/bench_gpu_input --images "$IMAGES" \
    --threads "$(nproc)" --steps "$INPUT_STEPS" --warmup 3
fi
if [[ $PART == all || $PART == checks ]]; then
echo
for precision in bfloat16 float16; do
    echo "Check: --strategy=mirrored --jit_compile --mixed_precision=$precision (tiny synthetic run)"
    workdir=$(mktemp -d)
    set +e
    "$PYTHON" -m semiseg_tf.train --flagfile=flags/demo/cutmix.flags --workdir="$workdir" \
        --train_steps=40 --eval_every=40 --log_every=20 --image_every=0 --strategy=mirrored \
        --jit_compile --mixed_precision="$precision" 2>&1 | grep -E "^(step|eval|error|final)" | tail -4
    echo "exit status ${PIPESTATUS[0]}"
    set -e
    rm -rf "$workdir"
done
fi
echo "(took $((SECONDS - start)) s)"
