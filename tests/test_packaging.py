"""The wheel's packages: every folder of the layout with an __init__.py is listed in pyproject.toml."""

from __future__ import annotations

import tomllib

from tests.helpers import REPO


def test_every_package_folder_is_listed():
    cfg = tomllib.loads((REPO / "pyproject.toml").read_text(encoding="utf-8"))["tool"]["setuptools"]
    mapping = cfg["package-dir"]                      # import name -> folder
    found = set()
    for name, folder in mapping.items():
        root = REPO / folder
        for init in root.rglob("__init__.py"):
            rel = init.parent.relative_to(root)
            found.add(".".join([name, *rel.parts]) if rel.parts else name)
    assert found == set(cfg["packages"])
