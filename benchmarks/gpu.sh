#!/bin/bash
# The GPU benchmark: one short prepared run (under 8 minutes on one GPU) that prints BENCHMARKS.md rows.
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
# No ImageNet weights are needed: the step costs the same from random weights.
# Quick check of the script itself on a CPU: BENCH_GPU_QUICK=1 bash benchmarks/gpu.sh
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON=${PYTHON:-.venv/bin/python}
export TF_CPP_MIN_LOG_LEVEL=2
# (the input benchmark labels 106 images, the Pascal recipe's count, so it needs more than that)
STEPS=10 BATCH=10 IMAGES=300 INPUT_STEPS=20 EXTRA=()
if [[ -n "${BENCH_GPU_QUICK:-}" ]]; then
    STEPS=2 BATCH=2 IMAGES=120 INPUT_STEPS=3 EXTRA=(-- --arch=deeplab2_small --crop_size=65,65)
fi
echo "# $(date -u +%Y-%m-%d) on $(hostname): $(nproc) cores; $(nvidia-smi --query-gpu=name,memory.total --format=csv,noheader 2>/dev/null || echo 'no GPU')"
start=$SECONDS
"$PYTHON" -m benchmarks.recipe_step flags/paper/pascal_deeplab2/cutmix_106.flags \
    --configs float32 bfloat16 bfloat16+xla --batch_size "$BATCH" --steps "$STEPS" \
    --iterations 40000 "${EXTRA[@]}"
echo
echo "Input pipeline (tf.data threads = all $(nproc) cores):"
"$PYTHON" -m benchmarks.input --data_dir=/tmp/bench_gpu_input --images "$IMAGES" \
    --threads "$(nproc)" --steps "$INPUT_STEPS" --warmup 3
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
echo "(took $((SECONDS - start)) s)"
