#!/usr/bin/env bash
# Install moe-tui (editable) with its test extras into the active virtualenv, or into ./.venv.
# torch: a torch already importable there is kept (e.g. a GPU node's CUDA build); otherwise
# torch==2.13.0 is installed first (the CPU wheel where one is provided, as on this project's machines).
set -euo pipefail
cd "$(dirname "$0")/.."
if [ -n "${VIRTUAL_ENV:-}" ]; then
  PY="$VIRTUAL_ENV/bin/python"
else
  [ -x .venv/bin/python ] || python3 -m venv .venv
  PY=.venv/bin/python
fi
if ! "$PY" -c "import torch" >/dev/null 2>&1; then
  "$PY" -m pip install -q "torch==2.13.0"
fi
"$PY" -m pip install -q -e ".[test]"
echo "moe-tui installed in $("$PY" -c 'import sys; print(sys.prefix)')" >&2
