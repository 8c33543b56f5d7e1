"""Result pages of the docs (``docs/results/*.md``): Markdown written from a real run, never typed by hand.

A page is a header (what wrote it, the commands, the precision) and named sections. Each section sits between
``<!-- --8<-- [start:NAME] -->`` and ``<!-- --8<-- [end:NAME] -->``, so another page includes it with the line
``--8<-- "results/PAGE.md:NAME"`` (pymdownx.snippets, in mkdocs.yml). The modules that write the pages:
``benchmarks.demo_results`` (``docs/results/demo.md``) and ``benchmarks.measure_corpus``
(``docs/results/corpus.md``); ``tests/test_docs.py`` regenerates each and fails when the committed page differs.
"""

from __future__ import annotations

import csv
import difflib
import math
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
RESULTS = REPO / "docs" / "results"


def section(name: str, body: str) -> str:
    """``body`` between the snippet markers of section ``name``."""
    return f"<!-- --8<-- [start:{name}] -->\n{body.rstrip()}\n<!-- --8<-- [end:{name}] -->\n"


def number(value, decimals: int) -> str:
    """A cell as the page prints it: a number to ``decimals`` places (Python's format: the nearest, ties to even),
    '' when empty or not finite; integers (and integral strings) whole; other text as it is."""
    if value is None or value == "":
        return ""
    if isinstance(value, str):
        try:
            value = int(value)
        except ValueError:
            try:
                value = float(value)
            except ValueError:
                return value   # text (a name, a tag, true / false) as written
    if isinstance(value, int) or isinstance(value, bool):
        return str(int(value))
    if not math.isfinite(value):
        return ""
    text = f"{value:.{decimals}f}"
    return "0" + text[2:] if text.startswith("-0") and float(text) == 0 else text   # no "-0.000"


def table(columns: list[str], rows: list[list[str]]) -> str:
    """A Markdown table (cells already text; '|' escaped)."""
    def cell(c) -> str:
        return str(c).replace("|", "\\|")

    lines = ["| " + " | ".join(cell(c) for c in columns) + " |", "|" + "---|" * len(columns)]
    lines += ["| " + " | ".join(cell(c) for c in row) + " |" for row in rows]
    return "\n".join(lines)


def read_csv(path: Path) -> tuple[list[str], list[dict[str, str]]]:
    """A report CSV: its header and its rows as dicts of text (exactly as written)."""
    with open(path, newline="", encoding="utf-8") as fh:
        reader = csv.DictReader(fh)
        return list(reader.fieldnames or []), list(reader)


def differences(expected: str, actual: str, name: str) -> str:
    """A unified diff of two versions of a page ('' when equal)."""
    if expected == actual:
        return ""
    return "".join(difflib.unified_diff(expected.splitlines(True), actual.splitlines(True),
                                        f"{name} (committed)", f"{name} (regenerated)", n=1))
