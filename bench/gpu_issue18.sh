#!/usr/bin/env bash
# Issue 18's GPU measurements in one call of about 9 minutes on one H100 (the device tool's limit is 10):
#   OUT=/some/folder bash bench/gpu_issue18.sh
# A smoke test of the same stages on a CPU, in a few minutes:
#   PYTHON=.venv/bin/python OUT=/tmp/gpu18 EXTRA="--device cpu --tiny" BIG="--n-layer 2 --n-head 2 --n-embd 64 --batch-size 2" \
#       bash bench/gpu_issue18.sh
# Each stage appends JSON lines to $OUT/<stage>.jsonl and is cut by its own timeout, so a slow stage costs
# only its own numbers. Needs the CUDA torch build and torchao (pip install -e ".[test]" installs both with
# LIGHTNING_LLM_TORCH pointing at a CUDA build).
set -uo pipefail
cd "$(dirname "$0")/.."
OUT="${OUT:-bench/out}"
mkdir -p "$OUT"
EXTRA="${EXTRA:-}"  # more gpu.py flags for every stage
BIG="${BIG:---n-layer 20 --n-head 16 --n-embd 2048 --batch-size 8}"  # stage 4's shape
PYTHON="${PYTHON:-python}"  # one with the CUDA torch build, torchao and this package installed
gpu="$PYTHON bench/gpu.py $EXTRA"
nvidia-smi --query-gpu=name,memory.total,clocks.max.sm --format=csv > "$OUT/device.csv" 2>&1

# 1. The preset after the chunked loss and the deferred NaN guard: loop, framework, framework under FSDP.
timeout 170 $gpu --mode plain,framework,framework_fsdp --steps 10 --warmup 3 --out "$OUT/preset.jsonl"

# 2. The framework's FSDP gap: kernel tables and every host sync with its Python stack, 3 steps each.
timeout 120 $gpu --mode framework,framework_fsdp --steps 5 --warmup 3 \
    --profile "$OUT/profile" --sync-debug "$OUT/syncs" --out "$OUT/fsdp_gap.jsonl"

# 3. float8 against bf16 at the preset: tokens/s, and the training loss over 150 steps (summary line:
#    ratio_framework+float8_over_framework, the loss gaps and final losses).
timeout 150 $gpu --mode framework,framework+float8 --steps 150 --warmup 10 --out "$OUT/float8_preset.jsonl"

# 4. float8 at a ~1.2B shape (20 x 2048, 16 heads), 8 x 1024 tokens a step: tokens/s of the loop, bf16 and
#    float8 (the loss is on random tokens here: speed only).
timeout 100 $gpu --mode plain,plain+float8 $BIG --grad-accum 1 --steps 20 --warmup 5 --out "$OUT/float8_1b.jsonl"

ls -la "$OUT"
