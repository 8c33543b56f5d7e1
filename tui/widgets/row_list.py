"""A virtual list of many rows drawn with the Line API (the word view's occurrences).

The owner gives the number of rows and a function that makes one row's Strip for a width; rows are made only when
drawn and kept in an LRU cache (keyed by the owner's ``generation``, bumped whenever the content or the order
changes). The cursor is an overlay, so moving it repaints two lines.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

from textual.binding import Binding
from textual.cache import LRUCache
from textual.events import Click
from textual.message import Message
from textual.strip import Strip

from moe_tui.tui.widgets.virtual import CursorList

RowFn = Callable[[int, int], Strip]   # (row, width) -> Strip of exactly ``width`` cells


class RowList(CursorList):
    DEFAULT_CSS = """
    RowList { background: $surface; overflow-x: hidden; overflow-y: scroll; }
    RowList > .row-list--cursor { background: $accent 40%; text-style: bold; }
    RowList:focus > .row-list--cursor { background: $accent; }
    RowList > .row-list--status { color: $text-muted; text-style: italic; }
    """
    COMPONENT_CLASSES = {"row-list--cursor", "row-list--status"}
    CURSOR_CLASS, STATUS_CLASS = "row-list--cursor", "row-list--status"
    BINDINGS = [
        Binding("home,g", "edge(0)", "First", show=False),
        Binding("end,G", "edge(1)", "Last", show=False),
    ]

    @dataclass
    class Highlighted(Message):
        row_list: "RowList"
        row: int

        @property
        def control(self) -> "RowList":
            return self.row_list

    def __init__(self, *, name: str | None = None, id: str | None = None, classes: str | None = None) -> None:
        super().__init__(name=name, id=id, classes=classes)
        self.n_rows = 0
        self.row_fn: RowFn | None = None
        self.generation = 0
        self._cache: LRUCache[tuple, Strip] = LRUCache(2048)

    def set_rows(self, n_rows: int, row_fn: RowFn | None, status: str = "", *, keep_cursor: bool = False) -> None:
        """Show ``n_rows`` rows made by ``row_fn`` (and a dim status line after them, if any)."""
        self.n_rows, self.row_fn, self.status = int(n_rows), row_fn, status
        self.generation += 1
        self._cache.clear()
        cur = min(self.cursor, max(0, self.n_rows - 1)) if keep_cursor else 0
        self.set_reactive(RowList.cursor, cur)
        self._resize()
        if not keep_cursor and self.scroll_offset.y:
            self.scroll_to(0, 0, animate=False, immediate=True)
        self._after_cursor(cur)
        self.refresh()

    def highlighted(self, pos: int) -> Message:
        return self.Highlighted(self, pos)

    def on_click(self, event: Click) -> None:
        pos = self.clicked_row(event)
        if pos is not None:
            self.cursor = pos

    def clear_cache(self) -> None:
        self._cache.clear()

    def row_strip(self, pos: int, width: int) -> Strip:
        if self.row_fn is None:
            return Strip.blank(width, self.style_of("base"))
        key = (self.generation, pos, width)
        strip = self._cache.get(key)
        if strip is None:
            strip = self._cache[key] = self.row_fn(pos, width).crop_extend(0, width, self.style_of("base"))
        return strip
