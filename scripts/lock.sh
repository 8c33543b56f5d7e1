#!/usr/bin/env bash
# Rewrite requirements/lock.txt from the newest versions the ranges allow, once the suite passes on them:
#   bash scripts/setup.sh --latest && .venv-latest/bin/python -m pytest -q && bash scripts/lock.sh
set -euo pipefail
cd "$(dirname "$0")/.."
PY="${1:-.venv-latest/bin/python}"
head -n 4 requirements/lock.txt > requirements/lock.txt.new
"$PY" -m pip freeze --exclude-editable | grep -viE '^(torch|triton|nvidia-.*|moe-tui)==' >> requirements/lock.txt.new
mv requirements/lock.txt.new requirements/lock.txt
echo "requirements/lock.txt: $(grep -vc '^#' requirements/lock.txt) packages" >&2
