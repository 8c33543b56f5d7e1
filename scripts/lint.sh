#!/usr/bin/env bash
# Static checks CI runs before the tests: ruff, the import contracts of pyproject.toml (import-linter), and the
# strict build of the documentation site (mkdocs.yml: every page in the nav, every link, anchor and snippet resolved).
# import-linter reads packages from disk, so it runs over a non-editable install of the package in a temp
# folder (the editable install maps moe_tui.core to ./core, which its scanner does not follow); that install
# is also what a wheel holds, so the check covers the packaging too.
set -euo pipefail
cd "$(dirname "$0")/.."
if [ -n "${VIRTUAL_ENV:-}" ]; then PY="$VIRTUAL_ENV/bin/python"; else PY=.venv/bin/python; fi
bindir=$(cd "$(dirname "$PY")" && pwd)
repo=$(pwd)
"$PY" -m ruff check .
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
"$PY" -m pip install -q --no-deps --no-build-isolation --target "$tmp/site" . >/dev/null 2>&1 \
  || { echo "lint: the package does not build" >&2; exit 1; }
top=$(ls "$tmp/site" | grep -v -E '\.dist-info$|^bin$' | tr '\n' ' ')
[ "$top" = "moe_tui " ] || { echo "lint: the wheel installs more than moe_tui at top level: $top" >&2; exit 1; }
(cd "$tmp" && PYTHONPATH="$tmp/site" "$bindir/lint-imports" "$repo/pyproject.toml")
"$bindir/mkdocs" build --strict --quiet --site-dir "$tmp/site-docs" \
  || { echo "lint: the documentation does not build (mkdocs build --strict)" >&2; exit 1; }
