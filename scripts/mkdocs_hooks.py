"""MkDocs hook: lay out the ``moe_tui`` package as it is installed, for the API reference.

The repository maps ``moe_tui.core`` to ``core/``, ``moe_tui.cache`` to ``cache/`` and ``moe_tui.tui`` to ``tui/``
(``[tool.setuptools.package-dir]``), which a static reader of the source (griffe, under mkdocstrings) cannot
follow. This hook builds ``build/docs-src/moe_tui/`` out of symbolic links to the real files and folders, so the
reference is read from the working tree without importing it. mkdocs.yml points mkdocstrings there.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
SOURCE = REPO / "build" / "docs-src"
MAPPED = {"core": "core", "cache": "cache", "tui": "tui"}   # moe_tui.<name> -> <folder> (pyproject's package-dir)


def on_startup(**kwargs):
    """Before any plugin reads its configuration (mkdocstrings checks its paths when it starts)."""
    package = SOURCE / "moe_tui"
    if package.exists():
        shutil.rmtree(package)
    package.mkdir(parents=True)
    for entry in (REPO / "moe_tui").iterdir():
        if entry.name != "__pycache__":
            os.symlink(entry, package / entry.name)
    for name, folder in MAPPED.items():
        os.symlink(REPO / folder, package / name)
