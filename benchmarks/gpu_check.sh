#!/usr/bin/env bash
# GPU check of the Triton backends: build the package against the installed torch, run the CUDA tests of
# the ops, print the loss timing table (fwd+bwd, triton vs reference, device time of small batches), the
# encoder tests and timing, both training stages of the packaged demo on the card (bf16 autocast, the
# Triton loss), and a sweep of the loss's tile settings. Needs no network.
# Usage: bash benchmarks/gpu_check.sh   (from anywhere; runs in the repository root; every step has a
# time cap, under 12 minutes in all at worst, expected 4-6 minutes; SKIP_TUNE=1 leaves out the tile sweep,
# which keeps the worst case under 10 minutes)
set -euo pipefail

cd "$(dirname "${BASH_SOURCE[0]}")/.."
PYTHON="${PYTHON:-$(command -v python3 || command -v python)}"

step() { printf '\n==> %s\n' "$*"; }
# Every step runs even when an earlier one failed (a borrowed GPU is short-lived); failures are listed last.
FAILED=()
check() {
  local name="$1"
  shift
  "$@" || FAILED+=("${name} (exit $?)")
}

step "environment"
"${PYTHON}" - <<'PY'
import sys, torch
print("python", sys.version.split()[0], "| torch", torch.__version__, "| cuda", torch.version.cuda)
try:
    import triton
    print("triton", triton.__version__)
except Exception as exc:  # reported, the tests below will fail loudly
    print("triton import failed:", exc)
print("device:", torch.cuda.get_device_name(0) if torch.cuda.is_available() else "NO CUDA DEVICE")
PY
command -v nvidia-smi >/dev/null && nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader || true

step "pip install --no-build-isolation --no-deps -e .  (builds the C++ extension against this torch)"
"${PYTHON}" -m pip install --no-build-isolation --no-deps -e . 2>&1 | tail -n 5

step "pytest -m cuda tests/ops"
check "cuda tests" timeout 150 "${PYTHON}" -m pytest -m cuda tests/ops -q -p no:cacheprovider -rs

step "timing table (benchmarks/gpu_table.py)"
check "loss timing table" timeout 110 "${PYTHON}" benchmarks/gpu_table.py --deadline-s 95

step "encoder: Triton block and encoder tests on the GPU"
check "encoder tests" timeout 100 "${PYTHON}" -m pytest tests/ops/test_dilated_depthwise_block.py tests/test_encoders.py -q -p no:cacheprovider -rs -k "triton or cuda"

step "encoder timing (benchmarks/gpu_encoder.py: B=48, triton bf16 vs reference fp32+autocast bf16)"
check "encoder timing" timeout 100 "${PYTHON}" benchmarks/gpu_encoder.py --batch 48 --steps 5

step "pipeline: both stages of the demo on CUDA (tests/train/test_cuda_stages.py: bf16, Triton loss, predict)"
check "pipeline on CUDA" timeout 150 env HF_HUB_OFFLINE=1 "${PYTHON}" -m pytest -m cuda tests/train -q -p no:cacheprovider -rs

if [[ "${SKIP_TUNE:-0}" != 1 ]]; then
  step "loss tile sweep (benchmarks/gpu_tune.py: bf16 fwd+bwd, candidate TUNING settings vs the defaults)"
  check "tile sweep" timeout 90 "${PYTHON}" benchmarks/gpu_tune.py --deadline-s 75
fi

if ((${#FAILED[@]})); then
  step "FAILED: ${FAILED[*]}"
  exit 1
fi
step "done: every step passed"
