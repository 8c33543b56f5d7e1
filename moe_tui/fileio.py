"""The bottom layer for files: atomic writes (temp file, fsync, rename), canonical JSON, and the CSV writer
shared by every export (text exactly as stored, unrounded numbers; spreadsheet-safe cells on request).

Everything above (the run store, the core, the TUI) writes through these, so a crash leaves either the old
file or the new one, never half of it.
"""

from __future__ import annotations

import contextlib
import csv
import io
import json
import math
import os
from pathlib import Path
from typing import Any, Callable, Iterable, Sequence

import numpy as np

from moe_tui.errors import CacheError


def canonical_json(obj: Any) -> str:
    return json.dumps(obj, sort_keys=True, separators=(",", ":"), ensure_ascii=True, default=str)


def fsync_dir(path: Path) -> None:
    with contextlib.suppress(OSError):
        fd = os.open(path, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)


def atomic_write_bytes(path: Path, data: bytes | Callable[[io.BufferedWriter], None]) -> None:
    """Write ``data`` (bytes, or a callable writing into a binary file) to ``path`` atomically.

    On any error the temporary file is removed and the previous ``path`` (if any) is untouched;
    an ``OSError`` is re-raised as :class:`CacheError` naming the path.
    """
    path = Path(path)
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    try:
        with open(tmp, "wb") as fh:
            if callable(data):
                data(fh)
            else:
                fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except OSError as exc:
        with contextlib.suppress(OSError):
            tmp.unlink()
        raise CacheError(f"cannot write {path}: {exc.strerror or exc}") from exc
    except BaseException:
        with contextlib.suppress(OSError):
            tmp.unlink()
        raise
    fsync_dir(path.parent)


def atomic_write_text(path: Path, text: str) -> None:
    atomic_write_bytes(path, text.encode("utf-8"))


def atomic_write_json(path: Path, obj: Any) -> None:
    atomic_write_text(path, json.dumps(obj, indent=2, sort_keys=True, default=str) + "\n")


_FORMULA_START = ("=", "+", "-", "@", "\t", "\r")


def format_cell(value: Any, *, spreadsheet_safe: bool = False) -> str:
    """CSV text of one cell.

    Ints as ints, floats unrounded (``repr``; NaN and None -> empty), booleans as true/false, text
    exactly as given. With ``spreadsheet_safe``, text that a spreadsheet would run as a formula
    (starting with = + - @, tab or CR) gets a leading ``'`` (this alters the text: opt-in only).
    Numbers are never altered (a negative number is not text).
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
    if spreadsheet_safe and s.startswith(_FORMULA_START):
        return "'" + s
    return s


def safe_cell(value: Any) -> str:
    """:func:`format_cell` with formula neutralisation (``--spreadsheet-safe``)."""
    return format_cell(value, spreadsheet_safe=True)


def write_rows(fh, header: Sequence[str], rows: Iterable[Sequence], *, spreadsheet_safe: bool = False,
               delimiter: str = ",") -> int:
    """Write ``header`` and ``rows`` as CSV (or TSV with ``delimiter="\t"``) into the text file ``fh``;
    return the number of rows. The csv module quotes cells holding the delimiter, quotes or newlines, so
    every text cell reads back exactly."""
    w = csv.writer(fh, lineterminator="\n", delimiter=delimiter)
    w.writerow(header)
    n = 0
    for row in rows:
        w.writerow([format_cell(v, spreadsheet_safe=spreadsheet_safe) for v in row])
        n += 1
    return n


def write_csv(path: str | Path, header: Sequence[str], rows: Iterable[Sequence], *,
              spreadsheet_safe: bool = False) -> Path:
    """Write ``rows`` under ``header`` to ``path`` atomically; return the absolute path."""
    path = Path(path).expanduser().resolve()

    def write(fh):
        text = io.TextIOWrapper(fh, encoding="utf-8", newline="")
        write_rows(text, header, rows, spreadsheet_safe=spreadsheet_safe)
        text.flush()
        text.detach()

    atomic_write_bytes(path, write)
    return path


def tsv_text(header: Sequence[str], rows: Iterable[Sequence], *, spreadsheet_safe: bool = False) -> str:
    """A table as TSV text for the clipboard: the same cells as the CSV files, tab-separated; a cell holding a
    tab, a quote or a newline is quoted (as spreadsheets read it), never altered."""
    buf = io.StringIO()
    write_rows(buf, header, rows, spreadsheet_safe=spreadsheet_safe, delimiter="\t")
    return buf.getvalue()
