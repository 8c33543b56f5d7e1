"""CSV output shared by every export: atomic, unrounded numbers, spreadsheet-safe text cells."""

from __future__ import annotations

import csv
import io
import math
from pathlib import Path
from typing import Any, Iterable, Sequence

import numpy as np

_FORMULA_START = ("=", "+", "-", "@", "\t", "\r")


def safe_cell(value: Any) -> str:
    """CSV text of one cell.

    Ints as ints, floats unrounded (``repr``; NaN and None -> empty), booleans as true/false, and
    text that a spreadsheet would run as a formula (starting with = + - @, tab or CR) gets a
    leading ``'``. Numbers are never quoted (a negative number is not text).
    """
    if value is None:
        return ""
    if isinstance(value, (bool, np.bool_)):
        return "true" if value else "false"
    if isinstance(value, (int, np.integer)):
        return str(int(value))
    if isinstance(value, (float, np.floating)):
        v = float(value)
        return "" if math.isnan(v) else repr(v)
    s = str(value)
    return "'" + s if s.startswith(_FORMULA_START) else s


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
