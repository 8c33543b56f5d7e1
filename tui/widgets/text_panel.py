"""Cheap text panes for the grid screen (side panel, legend, title), drawn with the Line API.

``Static.update()`` re-measures its content and asks the screen for a full layout on every call, which is what made
each keystroke on the grid screen cost hundreds of milliseconds. These panes take pre-built lines of
``(text, style)`` fragments, turn them into ``Strip``s once, and only *repaint* when the content changed. They ask for
a layout only when their number of lines changes, and the grid screen arranges for that to be rare.
"""

from __future__ import annotations

from typing import Iterable, Optional, Sequence

from rich.cells import cell_len
from rich.segment import Segment
from rich.style import Style
from rich.text import Text
from textual.cache import LRUCache
from textual.geometry import Region, Size
from textual.scroll_view import ScrollView
from textual.strip import Strip
from textual.widget import Widget

Fragment = tuple[str, Optional[Style]]
Line = Sequence[Fragment]


_WRAPPED: LRUCache[tuple, list[Strip]] = LRUCache(256)


def line_strips(line: Line, width: int, base: Style, console) -> list[Strip]:
    """One logical line as one or more Strips of at most ``width`` cells (word-wrapped, long words folded)."""
    key = (tuple(line), width, base)
    got = _WRAPPED.get(key)
    if got is None:
        got = _WRAPPED[key] = _line_strips(line, width, base, console)
    return got


def _line_strips(line: Line, width: int, base: Style, console) -> list[Strip]:
    length = sum(cell_len(t) for t, _ in line)
    if length <= width or width <= 0:
        segs = [Segment(t, base + s if s is not None else base) for t, s in line if t]
        return [Strip(segs, length)]
    text = Text.assemble(*[(t, s) if s is not None else t for t, s in line], end="")
    out = []
    for part in text.wrap(console, width, overflow="fold", no_wrap=False):
        part.rstrip()
        segs = list(Segment.apply_style(part.render(console, end=""), base))
        out.append(Strip(segs, part.cell_len))
    return out or [Strip([], 0)]


def wrapped_height(lines: Iterable[Line], width: int, console) -> int:
    return sum(len(line_strips(line, width, Style(), console)) for line in lines)


class _StripsMixin:
    """Shared state: logical lines, the width they were wrapped to, and the resulting strips."""

    def _init_strips(self) -> None:
        self._lines: list[tuple[Fragment, ...]] = []
        self._strips: list[Strip] | None = None
        self._wrap_width = -1
        self._base: Style | None = None

    def _base_style(self) -> Style:
        if self._base is None:
            self._base = self.rich_style  # type: ignore[attr-defined]
        return self._base

    def _build(self, width: int) -> list[Strip]:
        base = self._base_style()
        console = self.app.console  # type: ignore[attr-defined]
        strips: list[Strip] = []
        for line in self._lines:
            strips.extend(line_strips(line, width, base, console))
        return strips

    def _store(self, lines: Iterable[Line]) -> bool:
        new = [tuple(line) for line in lines]
        if new == self._lines:
            return False
        self._lines = new
        self._strips = None
        return True


class TextBox(_StripsMixin, Widget):
    """A fixed-size (by CSS or by its owner) pane of wrapped lines; updates repaint it, never re-layout it."""

    DEFAULT_CSS = "TextBox { height: 1; }"

    def __init__(self, *, name: str | None = None, id: str | None = None, classes: str | None = None) -> None:
        super().__init__(name=name, id=id, classes=classes)
        self._init_strips()
        self._sizing: list[tuple[Fragment, ...]] | None = None
        self._heights: dict[int, int] = {}

    @property
    def plain(self) -> str:
        return "\n".join("".join(t for t, _ in line) for line in self._lines)

    def set_lines(self, lines: Iterable[Line], sizing: Iterable[Line] | None = None) -> bool:
        """Replace the content; returns whether anything changed (and so was repainted).

        With ``height: auto`` the pane is as tall as the larger of ``lines`` and ``sizing`` wrapped to its width:
        give as ``sizing`` the largest content the pane will show, and content changes never re-layout the screen.
        """
        sizing_t = [tuple(x) for x in sizing] if sizing is not None else None
        changed_sizing = sizing_t != self._sizing
        if changed_sizing:
            self._sizing = sizing_t
        if not self._store(lines) and not changed_sizing:
            return False
        width = self.size.width
        old = self._heights.get(width)
        self._heights.clear()
        if old is not None and self._content_lines(width) != old:
            self.refresh(layout=True)
        else:
            self.refresh()
        return True

    def _content_lines(self, width: int) -> int:
        h = self._heights.get(width)
        if h is None:
            console = self.app.console
            h = wrapped_height(self._lines, width, console)
            if self._sizing is not None:
                h = max(h, wrapped_height(self._sizing, width, console))
            self._heights[width] = h
        return h

    def get_content_height(self, container: Size, viewport: Size, width: int) -> int:
        return self._content_lines(width)

    def strips(self) -> list[Strip]:
        width = self.size.width
        if self._strips is None or self._wrap_width != width:
            self._strips = self._build(width)
            self._wrap_width = width
        return self._strips

    def notify_style_update(self) -> None:
        super().notify_style_update()
        self._base = None
        self._strips = None

    def render_line(self, y: int) -> Strip:
        width = self.size.width
        strips = self.strips()
        base = self._base_style()
        if y >= len(strips):
            return Strip.blank(width, base)
        return strips[y].crop_extend(0, width, base)


class ScrollingTextBox(_StripsMixin, ScrollView):
    """A vertically scrolling pane of wrapped lines (the grid's side panel).

    Strips are made lazily, for the rows on screen only, and cached by content, so a cursor move that changes a few
    lines of a long description costs a few strips. Its virtual height only grows while one screen lives
    (``grow_only``), so moving from a token with a long description to a shorter one repaints without a layout.
    """

    DEFAULT_CSS = "ScrollingTextBox { overflow-x: hidden; overflow-y: auto; }"

    def __init__(self, *, grow_only: bool = True, name: str | None = None, id: str | None = None,
                 classes: str | None = None) -> None:
        super().__init__(name=name, id=id, classes=classes)
        self._init_strips()
        self.grow_only = grow_only
        self._height = 0
        self._rows: list[tuple[Fragment, ...] | Strip] | None = None   # one entry per visual row
        self._row_cache: LRUCache[tuple, Strip] = LRUCache(1024)

    @property
    def plain(self) -> str:
        return "\n".join("".join(t for t, _ in line) for line in self._lines)

    @property
    def text_width(self) -> int:
        """Columns for text when the vertical scrollbar shows (owners format long lines to fit this)."""
        return max(1, self.size.width - (self.styles.scrollbar_size_vertical or 0))

    def set_lines(self, lines: Iterable[Line]) -> bool:
        if not self._store(lines):
            return False
        old_rows, old_width = self._rows, self._wrap_width
        self._rewrap()
        rows = self._rows
        if old_rows is None or rows is None or old_width != self._wrap_width:
            self.refresh()
            return True
        # repaint only the visible rows whose content changed (a layer move changes a handful of them)
        top = int(self.scroll_offset.y)
        width = self.size.width
        for y in range(self.size.height):
            idx = top + y
            a = old_rows[idx] if idx < len(old_rows) else None
            b = rows[idx] if idx < len(rows) else None
            if a != b:
                self.refresh(Region(0, y, width, 1))
        return True

    def _wrap_rows(self, width: int) -> list:
        rows: list = []
        base = self._base_style()
        console = self.app.console
        for line in self._lines:
            if sum(cell_len(t) for t, _ in line) <= width:
                rows.append(line)
            else:   # rare: a line its owner could not fit (a very long token or word)
                rows.extend(line_strips(line, width, base, console))
        return rows

    def _rewrap(self) -> None:
        full = self.size.width
        if full <= 0:
            return
        sb = self.styles.scrollbar_size_vertical or 0
        width = full - sb if (len(self._lines) > self.size.height and full > sb) else full
        rows = self._wrap_rows(width)
        if width == full and len(rows) > self.size.height and full > sb:
            width = full - sb
            rows = self._wrap_rows(width)
        self._rows, self._wrap_width = rows, width
        h = max(self._height, len(rows)) if self.grow_only else len(rows)
        self._height = h
        size = Size(width, h)
        if self.virtual_size != size:
            self.virtual_size = size

    def on_resize(self) -> None:
        self._rewrap()
        self.refresh()

    def notify_style_update(self) -> None:
        super().notify_style_update()
        self._base = None
        self._row_cache.clear()
        self._rows = None

    def render_line(self, y: int) -> Strip:
        width = self.size.width
        if self._rows is None:
            self._rewrap()
        base = self._base_style()
        idx = y + int(self.scroll_offset.y)
        rows = self._rows or []
        if idx >= len(rows):
            return Strip.blank(width, base)
        row = rows[idx]
        if isinstance(row, Strip):
            return row.crop_extend(0, width, base)
        key = (row, width)
        strip = self._row_cache.get(key)
        if strip is None:
            length = sum(cell_len(t) for t, _ in row)
            segs = [Segment(t, base + st if st is not None else base) for t, st in row if t]
            strip = Strip(segs, length).extend_cell_length(width, base)
            self._row_cache[key] = strip
        return strip
