#!/usr/bin/env bash
# Create .venv and install respira with a CPU build of PyTorch (never the CUDA packages).
# Idempotent: re-runs only when pyproject.toml changed. Override the torch source with
# RESPIRA_TORCH_WHEEL=/path/to/torch.whl or RESPIRA_TORCH_INDEX=<index url>.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}
VENV=.venv
stamp="$VENV/.respira-installed"
want=$(cat pyproject.toml scripts/setup.sh | sha256sum | cut -d' ' -f1)
if [ -f "$stamp" ] && [ "$(cat "$stamp")" = "$want" ]; then exit 0; fi

echo "setting up $VENV (one time, about a minute)..." >&2
[ -x "$VENV/bin/python" ] || "$PY" -m venv "$VENV"
pip=("$VENV/bin/python" -m pip install -q --disable-pip-version-check)

if ! "$VENV/bin/python" -c "import torch" 2>/dev/null; then
  wheel=${RESPIRA_TORCH_WHEEL:-$(ls /opt/wheels/torch-*+cpu-*.whl 2>/dev/null | head -n 1 || true)}
  if [ -n "$wheel" ]; then
    "${pip[@]}" "$wheel"
  else
    "${pip[@]}" torch --index-url "${RESPIRA_TORCH_INDEX:-https://download.pytorch.org/whl/cpu}"
  fi
fi
# Pin the torch just installed so no dependency can swap in a CUDA build.
constraints=$(mktemp)
"$VENV/bin/python" -c "import torch; print('torch==' + torch.__version__)" >"$constraints"
"${pip[@]}" -c "$constraints" -e ".[web,dev]"
rm -f "$constraints"
echo "$want" >"$stamp"
