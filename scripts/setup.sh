#!/usr/bin/env bash
# Install moe-tui (editable) with its test and docs extras.
#
#   bash scripts/setup.sh            the version ranges of pyproject.toml (what a user gets), into ./.venv
#   bash scripts/setup.sh --locked   the exact versions CI runs (requirements/lock.txt), into ./.venv
#   bash scripts/setup.sh --latest   the newest versions the ranges allow, into ./.venv-latest
#
# An active virtualenv is used instead of ./.venv (so a GPU node's CUDA build of torch is kept); --latest
# always installs into ./.venv-latest, where torch is upgraded to the newest the ranges allow as well.
# torch: a torch already importable there is kept; otherwise torch==2.13.0 is installed first (the CPU
# wheel where one is provided, as on this project's machines).
set -euo pipefail
cd "$(dirname "$0")/.."
mode="${1:-ranges}"
case "$mode" in
  ranges|--locked|--latest) ;;
  *) echo "setup.sh: unknown option $mode (use --locked or --latest)" >&2; exit 2 ;;
esac
venv=.venv
[ "$mode" = "--latest" ] && venv=.venv-latest
# --latest upgrades every package eagerly (torch too): never in the active virtualenv, always in ./.venv-latest
if [ -n "${VIRTUAL_ENV:-}" ] && [ "$mode" != "--latest" ]; then
  PY="$VIRTUAL_ENV/bin/python"
else
  [ -x "$venv/bin/python" ] || python3 -m venv "$venv"
  PY="$venv/bin/python"
fi
if ! "$PY" -c "import torch" >/dev/null 2>&1; then
  "$PY" -m pip install -q "torch==2.13.0"
fi
case "$mode" in
  --locked) "$PY" -m pip install -q -c requirements/lock.txt -e ".[test,docs]" ;;
  --latest) "$PY" -m pip install -q --upgrade --upgrade-strategy eager -e ".[test,docs]" ;;
  *) "$PY" -m pip install -q -e ".[test,docs]" ;;
esac
echo "moe-tui installed in $("$PY" -c 'import sys; print(sys.prefix)')" >&2
