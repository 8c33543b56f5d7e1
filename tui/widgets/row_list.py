"""A virtual list of many rows drawn with the Line API (the word view's occurrences).

The owner gives the number of rows and a function that makes one row's Strip for a width; rows are made only when
drawn and kept in an LRU cache (keyed by the owner's ``generation``, bumped whenever the content or the order
changes). The cursor is an overlay, so moving it repaints two lines.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

from rich.segment import Segment
from textual.binding import Binding
from textual.cache import LRUCache
from textual.events import Click
from textual.geometry import Region, Size
from textual.message import Message
from textual.reactive import var
from textual.scroll_view import ScrollView
from textual.strip import Strip

from moe_tui.tui.widgets.virtual import set_virtual_size

RowFn = Callable[[int, int], Strip]   # (row, width) -> Strip of exactly ``width`` cells


class RowList(ScrollView, can_focus=True):
    DEFAULT_CSS = """
    RowList { background: $surface; overflow-x: hidden; overflow-y: scroll; }
    RowList > .row-list--cursor { background: $accent 40%; text-style: bold; }
    RowList:focus > .row-list--cursor { background: $accent; }
    RowList > .row-list--status { color: $text-muted; text-style: italic; }
    """
    COMPONENT_CLASSES = {"row-list--cursor", "row-list--status"}
    BINDINGS = [
        Binding("up,k", "move(-1)", "Up", show=False),
        Binding("down,j", "move(1)", "Down", show=False),
        Binding("pageup", "page(-1)", "Page up", show=False),
        Binding("pagedown", "page(1)", "Page down", show=False),
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

    cursor: var[int] = var(0, always_update=False)

    def __init__(self, *, name: str | None = None, id: str | None = None, classes: str | None = None) -> None:
        super().__init__(name=name, id=id, classes=classes)
        self.n_rows = 0
        self.status = ""
        self.row_fn: RowFn | None = None
        self.generation = 0
        self._cache: LRUCache[tuple, Strip] = LRUCache(2048)
        self._styles: dict | None = None

    def set_rows(self, n_rows: int, row_fn: RowFn | None, status: str = "", *, keep_cursor: bool = False) -> None:
        """Show ``n_rows`` rows made by ``row_fn`` (and a dim status line after them, if any)."""
        self.n_rows, self.row_fn, self.status = int(n_rows), row_fn, status
        self.generation += 1
        self._cache.clear()
        cur = min(self.cursor, max(0, self.n_rows - 1)) if keep_cursor else 0
        self.set_reactive(RowList.cursor, cur)
        set_virtual_size(self, Size(self.size.width or 1, self.n_rows + (1 if status else 0)))
        if not keep_cursor and self.scroll_offset.y:
            self.scroll_to(0, 0, animate=False, immediate=True)
        self._after_cursor(cur)
        self.refresh()

    # ---- cursor -----------------------------------------------------------------------------------------------
    def _after_cursor(self, old: int) -> None:
        top = int(self.scroll_offset.y)
        h = max(1, self.size.height)
        pos = self.cursor
        if pos < top or pos >= top + h:
            self.scroll_to(0, max(0, pos if pos < top else pos - h + 1), animate=False, immediate=True)
            self.refresh()
            return
        w = self.size.width
        for p in {old, pos}:
            if 0 <= p - top < h:
                self.refresh(Region(0, p - top, w, 1))

    def watch_cursor(self, old: int, new: int) -> None:
        self._after_cursor(old)
        if self.n_rows:
            self.post_message(self.Highlighted(self, new))

    def move_to(self, pos: int) -> None:
        if self.n_rows:
            self.cursor = max(0, min(self.n_rows - 1, pos))

    def action_move(self, step: int) -> None:
        self.move_to(self.cursor + step)

    def action_page(self, direction: int) -> None:
        self.move_to(self.cursor + direction * max(1, self.size.height - 1))

    def action_edge(self, last: int) -> None:
        self.move_to(self.n_rows - 1 if last else 0)

    def on_click(self, event: Click) -> None:
        off = event.get_content_offset(self)
        if off is not None:
            pos = int(self.scroll_offset.y) + off[1]
            if 0 <= pos < self.n_rows:
                self.cursor = pos

    # ---- rendering --------------------------------------------------------------------------------------------
    def notify_style_update(self) -> None:
        super().notify_style_update()
        self._styles = None
        self._cache.clear()

    def _style(self, name: str):
        st = self._styles
        if st is None:
            st = self._styles = {"base": self.rich_style,
                                 "cursor": self.get_component_rich_style("row-list--cursor"),
                                 "status": self.get_component_rich_style("row-list--status")}
        return st[name]

    def render_line(self, y: int) -> Strip:
        width = self.scrollable_content_region.width
        base = self._style("base")
        pos = int(self.scroll_offset.y) + y
        if pos < self.n_rows and self.row_fn is not None:
            key = (self.generation, pos, width)
            strip = self._cache.get(key)
            if strip is None:
                strip = self._cache[key] = self.row_fn(pos, width).crop_extend(0, width, base)
            if pos == self.cursor:
                strip = strip.apply_style(self._style("cursor"))
            return strip
        if pos == self.n_rows and self.status:
            return Strip([Segment(self.status, base + self._style("status"))]).crop_extend(0, width, base)
        return Strip.blank(width, base)

    def on_resize(self) -> None:
        set_virtual_size(self, Size(self.size.width or 1, self.n_rows + (1 if self.status else 0)))
