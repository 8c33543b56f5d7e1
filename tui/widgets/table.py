"""A small sortable table with cells shaded by value (numbers always printed: readable without colour).

Built on Textual's ``DataTable``: use it for small tables only (≤ a few thousand cells — layers × POS,
experts × layers, P × P confusion); DataTable measures every cell on first paint.

The widget keeps the raw values (``rows``) next to what it shows, so sorting, copying (TSV) and
exporting (the ``report_table`` it was built from, :mod:`moe_tui.core.analysis.report` format) never parse display text.
"""

from __future__ import annotations

import math
from typing import Any, Callable, Iterable, Sequence

from rich.color import Color
from rich.style import Style
from rich.text import Text
from textual.widgets import DataTable

# Sequential ramp (dark blue -> teal -> yellow), readable in 256 colours; text colour follows luminance.
_RAMP = ((38, 52, 110), (33, 110, 140), (40, 160, 120), (150, 200, 70), (250, 230, 80))
_N_SHADES = 16


def _ramp(t: float) -> tuple[int, int, int]:
    t = min(1.0, max(0.0, t)) * (len(_RAMP) - 1)
    i = min(int(t), len(_RAMP) - 2)
    f = t - i
    a, b = _RAMP[i], _RAMP[i + 1]
    return tuple(int(round(a[j] + (b[j] - a[j]) * f)) for j in range(3))  # type: ignore[return-value]


def shade_style(t: float) -> Style:
    """Background for a value at relative position ``t`` in [0, 1] (quantised to 16 steps)."""
    q = round(min(1.0, max(0.0, t)) * (_N_SHADES - 1)) / (_N_SHADES - 1)
    r, g, b = _ramp(q)
    lum = 0.2126 * r + 0.7152 * g + 0.0722 * b
    fg = Color.from_rgb(0, 0, 0) if lum > 140 else Color.from_rgb(255, 255, 255)
    return Style(bgcolor=Color.from_rgb(r, g, b), color=fg)


def is_number(x: Any) -> bool:
    if isinstance(x, bool) or x is None:
        return False
    if isinstance(x, (int, float)):
        return not (isinstance(x, float) and math.isnan(x))
    try:
        import numpy as np

        return isinstance(x, (np.integer, np.floating)) and not (isinstance(x, np.floating) and math.isnan(float(x)))
    except ImportError:  # pragma: no cover
        return False


def default_format(x: Any) -> str:
    if x is None or (isinstance(x, float) and math.isnan(x)):
        return "–"
    if isinstance(x, float):
        return f"{x:.3f}" if abs(x) < 100 else f"{x:.1f}"
    return str(x)


def _sort_key(x: Any) -> tuple:
    if x is None or (isinstance(x, float) and math.isnan(x)):
        return (2, 0.0, "")        # missing values last, whatever the direction
    if is_number(x):
        return (0, float(x), "")
    return (1, 0.0, str(x))


class ShadedTable(DataTable):
    """Sortable (``sort_by`` / header click), shaded, copyable table of raw cell values.

    ``shade``: column indices whose numeric cells are shaded; ``shade_range``: (lo, hi) for the ramp
    (default: min / max over the shaded cells); ``formats``: per-column formatter.
    ``report_table``: the :mod:`moe_tui.core.analysis.report` table (``{"name", "columns", "rows"}``) an export writes.
    """

    DEFAULT_CSS = """
    ShadedTable { height: 1fr; }
    """

    def __init__(self, *, id: str | None = None, classes: str | None = None, cursor_type: str = "cell") -> None:
        super().__init__(id=id, classes=classes, cursor_type=cursor_type, zebra_stripes=False)
        self.headers: list[str] = []
        self.raw_rows: list[list[Any]] = []
        self.order: list[int] = []
        self.sort_column: int | None = None
        self.sort_reverse = False
        self.shade: set[int] = set()
        self.shade_range: tuple[float, float] | None = None
        self.formats: dict[int, Callable[[Any], str]] = {}
        self.report_table: dict | None = None

    # ---- data ------------------------------------------------------------------------------------
    def set_data(self, headers: Sequence[str], rows: Iterable[Sequence[Any]], *, shade: Iterable[int] = (),
                 shade_range: tuple[float, float] | None = None,
                 formats: dict[int, Callable[[Any], str]] | None = None,
                 report_table: dict | None = None, fixed_columns: int = 0) -> None:
        headers, rows, shade = list(headers), [list(r) for r in rows], set(shade)
        if (headers == self.headers and rows == self.raw_rows and shade == self.shade
                and report_table is self.report_table and self.row_count == len(rows)):
            return                      # unchanged: keep the rendered rows, cursor and sort
        keep_cursor = self.cursor_coordinate if self.raw_rows else None
        self.headers = headers
        self.raw_rows = rows
        self.shade = shade
        self.formats = dict(formats or {})
        self.report_table = report_table
        vals = [float(r[c]) for r in self.raw_rows for c in self.shade if c < len(r) and is_number(r[c])]
        if shade_range is not None:
            self.shade_range = shade_range
        else:
            self.shade_range = (min(vals), max(vals)) if vals else None
        self.fixed_columns = fixed_columns
        self.clear(columns=True)
        for i, h in enumerate(self.headers):
            # explicit widths: auto-width columns were seen rendered at the header's width (cells cut)
            fmt = self.formats.get(i, default_format)
            cells = [len(fmt(r[i])) for r in self.raw_rows if i < len(r)]
            self.add_column(h, key=str(i), width=max([len(h) + 1, *cells]))
        self.order = list(range(len(self.raw_rows)))
        if self.sort_column is not None and self.sort_column < len(self.headers):
            self._apply_sort()
        self._fill()
        if keep_cursor is not None and self.row_count:
            self.move_cursor(row=min(keep_cursor.row, self.row_count - 1),
                             column=min(keep_cursor.column, len(self.headers) - 1), animate=False)

    def _cell(self, c: int, x: Any) -> Text:
        fmt = self.formats.get(c, default_format)
        s = fmt(x)
        numeric = is_number(x)
        style: Style | str = ""
        if c in self.shade and numeric and self.shade_range is not None:
            lo, hi = self.shade_range
            t = 0.5 if hi <= lo else (float(x) - lo) / (hi - lo)
            style = shade_style(t)
        return Text(s, style=style, justify="right" if numeric or s == "–" else "left")

    def _fill(self) -> None:
        for i in self.order:
            r = self.raw_rows[i]
            self.add_row(*[self._cell(c, x) for c, x in enumerate(r)], key=str(i))

    # ---- sorting ---------------------------------------------------------------------------------
    def _apply_sort(self) -> None:
        c = self.sort_column
        assert c is not None
        present = [i for i in range(len(self.raw_rows)) if _sort_key(self.raw_rows[i][c])[0] < 2]
        missing = [i for i in range(len(self.raw_rows)) if _sort_key(self.raw_rows[i][c])[0] == 2]
        present.sort(key=lambda i: _sort_key(self.raw_rows[i][c]), reverse=self.sort_reverse)
        self.order = present + missing

    def sort_by(self, column: int, reverse: bool | None = None) -> None:
        """Sort rows by ``column`` (numbers numerically, missing last); the same column again flips the order."""
        if not (0 <= column < len(self.headers)):
            return
        if reverse is None:
            reverse = (not self.sort_reverse) if self.sort_column == column else is_number(
                next((r[column] for r in self.raw_rows if r[column] is not None), None))
        self.sort_column, self.sort_reverse = column, reverse
        raw = self.cursor_raw_index()
        col = self.cursor_coordinate.column
        self._apply_sort()
        self.clear()
        self._fill()
        if raw is not None and self.row_count:
            self.move_cursor(row=self.order.index(raw), column=col, animate=False)
        arrow = "▼" if reverse else "▲"
        for i, key in enumerate(self.columns):
            self.columns[key].label = Text(self.headers[i] + (arrow if i == column else ""))
        self.refresh()

    def on_data_table_header_selected(self, event: DataTable.HeaderSelected) -> None:
        if event.data_table is self:
            event.stop()
            self.sort_by(event.column_index)

    # ---- access ----------------------------------------------------------------------------------
    def cursor_raw_index(self) -> int | None:
        if not self.row_count:
            return None
        r = self.cursor_coordinate.row
        return self.order[r] if 0 <= r < len(self.order) else None

    def cursor_row_values(self) -> list[Any] | None:
        i = self.cursor_raw_index()
        return None if i is None else self.raw_rows[i]

    def raw_index_at(self, display_row: int) -> int | None:
        return self.order[display_row] if 0 <= display_row < len(self.order) else None

    def select_raw(self, raw: int, column: int | None = None) -> None:
        if raw in self.order:
            self.move_cursor(row=self.order.index(raw),
                             column=self.cursor_coordinate.column if column is None else column, animate=False)

    def to_tsv(self, *, spreadsheet_safe: bool = False) -> str:
        """Header + rows in display order, unrounded and exact (the CSV cell format), tab separated."""
        from moe_tui.fileio import tsv_text

        return tsv_text(self.headers, [self.raw_rows[i] for i in self.order], spreadsheet_safe=spreadsheet_safe)
