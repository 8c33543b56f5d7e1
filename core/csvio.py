"""CSV output shared by every export: atomic, unrounded numbers, spreadsheet-safe text cells."""

from __future__ import annotations

import csv
import io
from pathlib import Path
from typing import Iterable, Sequence

_FORMULA_START = ("=", "+", "-", "@", "\t", "\r")


def safe_cell(value):
    """Text that a spreadsheet would run as a formula (= + - @ first) gets a leading quote.

    Numbers are left as numbers (a negative number is not text), floats keep full precision.
    """
    if isinstance(value, str):
        return "'" + value if value.startswith(_FORMULA_START) else value
    if isinstance(value, float):
        return repr(value)
    return value


def write_csv(path: str | Path, header: Sequence[str], rows: Iterable[Sequence]) -> Path:
    """Write ``rows`` under ``header`` to ``path`` atomically; return the absolute path."""
    from cache.store import atomic_write_bytes

    path = Path(path).expanduser().resolve()

    def write(fh):
        text = io.TextIOWrapper(fh, encoding="utf-8", newline="")
        w = csv.writer(text, lineterminator="\n")
        w.writerow(header)
        for row in rows:
            w.writerow([safe_cell(v) for v in row])
        text.flush()
        text.detach()

    atomic_write_bytes(path, write)
    return path
