#!/usr/bin/env bash
# Create (or refresh) the project's virtual environment in .venv: torch==2.13.0 first, then the exact pins
# of envs/ntkscaling.yaml (its pip list), then this package (editable). Re-runs only when the pins or
# pyproject change.
set -euo pipefail
cd "$(dirname "$0")/.."
VENV=${NTKSCALING_VENV:-.venv}
PY=${PYTHON:-$(command -v python3.11 || command -v python3)}
stamp="$VENV/.ntkscaling-installed"
want=$(cat envs/ntkscaling.yaml pyproject.toml | sha256sum | cut -d' ' -f1)
if [ -f "$stamp" ] && [ "$(cat "$stamp")" = "$want" ]; then
  exit 0
fi
echo "setting up $VENV with $($PY --version) ..." >&2
[ -x "$VENV/bin/python" ] || "$PY" -m venv "$VENV"
"$VENV/bin/python" -m pip install -q --upgrade pip 2>&1 | grep -v "^WARNING: Location" || true
# torch first, pinned: an unpinned torch would pull a multi-GB CUDA build on CPU-only machines
"$VENV/bin/python" -m pip install -q torch==2.13.0 2>&1 | grep -v "^WARNING: Location" || true
pins=$(mktemp)
trap 'rm -f "$pins"' EXIT
sed -n 's/^      - \([A-Za-z0-9_.-]*==[^ ]*\)$/\1/p' envs/ntkscaling.yaml > "$pins"  # the pip list's pins
"$VENV/bin/python" -m pip install -q -r "$pins" 2>&1 | grep -v "^WARNING: Location" || true
"$VENV/bin/python" -m pip install -q --no-deps -e . 2>&1 | grep -v "^WARNING: Location" || true
"$VENV/bin/python" -c "import torch, pytorch_lightning, snakemake, ntkscaling" \
  || { echo "environment set-up failed: see the pip output above" >&2; exit 1; }
echo "$want" > "$stamp"
