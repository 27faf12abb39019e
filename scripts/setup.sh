#!/usr/bin/env bash
# Idempotent set-up: a virtual environment, a CPU torch where there is no CUDA GPU, the kit with
# its test extra, and graphviz's `dot` binary. Re-running it does nothing when nothing changed.
set -euo pipefail
cd "$(dirname "$0")/.."
VENV="${VENV:-.venv}"
PYTHON="${PYTHON:-python3}"

if [ ! -x "$VENV/bin/python" ]; then
  echo "setup: creating $VENV with $($PYTHON --version)"
  "$PYTHON" -m venv "$VENV"
fi
PIP=("$VENV/bin/python" -m pip install --quiet --disable-pip-version-check)

if ! "$VENV/bin/python" -c "import torch" 2>/dev/null; then
  if command -v nvidia-smi >/dev/null 2>&1 && nvidia-smi -L >/dev/null 2>&1; then
    echo "setup: CUDA GPU found, installing torch with CUDA"
    "${PIP[@]}" "torch>=2.2,<3"
  else
    echo "setup: no CUDA GPU, installing a CPU build of torch"
    # torch==2.13.0 is a CPU wheel on this course's reference machines; elsewhere PyTorch's CPU index.
    "${PIP[@]}" "torch==2.13.0" 2>/dev/null \
      || "${PIP[@]}" torch --index-url https://download.pytorch.org/whl/cpu
  fi
fi

stamp="$VENV/.course-lib-installed"
want="$(cat pyproject.toml | sha256sum | cut -c1-16)"
if [ "$(cat "$stamp" 2>/dev/null || true)" != "$want" ]; then
  echo "setup: installing course_lib with its test extra"
  "${PIP[@]}" -e ".[test]"
  echo "$want" > "$stamp"
fi

if ! command -v dot >/dev/null 2>&1; then
  if [ "$(id -u)" = "0" ] && command -v apt-get >/dev/null 2>&1; then
    echo "setup: installing graphviz (dot) with apt-get"
    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq graphviz >/dev/null
  else
    echo "setup: graphviz's 'dot' binary is missing; mind maps will show as DOT text until you install it:" >&2
    echo "       sudo apt-get install graphviz   |   brew install graphviz   |   conda install -c conda-forge graphviz" >&2
  fi
fi
echo "setup: ready ($("$VENV/bin/python" -c 'import torch, transformers; print(f"torch {torch.__version__}, transformers {transformers.__version__}")'))"
