"""Line-API lists: setting a widget's virtual size without a screen layout, and a virtual list with a cursor.

``Widget.virtual_size`` is a reactive with ``layout=True``: assigning it lays out the whole screen (tens of
milliseconds on the grid screen), although a scroll view whose scrollbars stay as they are only needs its scroll
range and a repaint. :func:`set_virtual_size` updates the size and the scrollbars quietly; Textual still lays out
the screen when a scrollbar appears or disappears (its ``show_*_scrollbar`` reactives do that themselves).
"""

from __future__ import annotations

from rich.segment import Segment
from textual.binding import Binding
from textual.events import Click
from textual.geometry import Region, Size
from textual.message import Message
from textual.reactive import var
from textual.scroll_view import ScrollView
from textual.strip import Strip
from textual.widget import Widget


def set_virtual_size(widget: Widget, size: Size) -> None:
    if widget.virtual_size == size:
        return
    if not widget.is_mounted or not widget.size:
        widget.virtual_size = size
        return
    widget.set_reactive(Widget.virtual_size, size)
    widget._scroll_update(size)  # scroll range + scrollbar visibility (a layout only if that changes)
    widget.refresh()


class CursorList(ScrollView, can_focus=True):
    """A virtual list of ``n_rows`` lines (Line API) with a cursor drawn as an overlay and an optional dim status
    line after the rows. Subclasses give ``n_rows``, :meth:`row_strip` (one row's Strip for a width, cached by
    them) and :meth:`highlighted` (the message posted when the cursor moves), and name their component classes in
    ``CURSOR_CLASS`` / ``STATUS_CLASS``. Moving the cursor repaints two lines; leaving the screen scrolls."""

    CURSOR_CLASS = "cursor-list--cursor"
    STATUS_CLASS = "cursor-list--status"
    BINDINGS = [
        Binding("up,k", "move(-1)", "Up", show=False),
        Binding("down,j", "move(1)", "Down", show=False),
        Binding("pageup", "page(-1)", "Page up", show=False),
        Binding("pagedown", "page(1)", "Page down", show=False),
    ]

    cursor: var[int] = var(0, always_update=False)   # position in the shown rows

    def __init__(self, *, name: str | None = None, id: str | None = None, classes: str | None = None) -> None:
        super().__init__(name=name, id=id, classes=classes)
        self.status = ""                   # a last, dim line ("searching…", "no match")
        self._styles: dict | None = None

    n_rows: int = 0

    def row_strip(self, pos: int, width: int) -> Strip:
        raise NotImplementedError

    def highlighted(self, pos: int) -> Message | None:
        return None

    def clear_cache(self) -> None:
        """Forget rendered rows (styles changed)."""

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
            message = self.highlighted(new)
            if message is not None:
                self.post_message(message)

    def move_to(self, pos: int) -> None:
        if self.n_rows:
            self.cursor = max(0, min(self.n_rows - 1, pos))

    def action_move(self, step: int) -> None:
        self.move_to(self.cursor + step)

    def action_page(self, direction: int) -> None:
        self.move_to(self.cursor + direction * max(1, self.size.height - 1))

    def action_edge(self, last: int) -> None:
        self.move_to(self.n_rows - 1 if last else 0)

    def clicked_row(self, event: Click) -> int | None:
        """The row under a click, or None."""
        off = event.get_content_offset(self)
        if off is None:
            return None
        pos = int(self.scroll_offset.y) + off[1]
        return pos if 0 <= pos < self.n_rows else None

    # ---- rendering --------------------------------------------------------------------------------------------
    def _resize(self) -> None:
        set_virtual_size(self, Size(self.size.width or 1, self.n_rows + (1 if self.status else 0)))

    def on_resize(self) -> None:
        self._resize()

    def notify_style_update(self) -> None:
        super().notify_style_update()
        self._styles = None
        self.clear_cache()

    def style_of(self, name: str):
        """``base``, ``cursor``, ``status`` or another component class of the subclass, as a rich Style."""
        st = self._styles
        if st is None:
            st = self._styles = {"base": self.rich_style}
        if name not in st:
            cls = {"cursor": self.CURSOR_CLASS, "status": self.STATUS_CLASS}.get(name, name)
            st[name] = self.get_component_rich_style(cls)
        return st[name]

    def render_line(self, y: int) -> Strip:
        width = self.scrollable_content_region.width  # without the vertical scrollbar
        base = self.style_of("base")
        pos = int(self.scroll_offset.y) + y
        n = self.n_rows
        if pos < n:
            strip = self.row_strip(pos, width)
            if pos == self.cursor:
                strip = strip.apply_style(self.style_of("cursor"))
            return strip
        if pos == n and self.status:
            return Strip([Segment(self.status, base + self.style_of("status"))]).crop_extend(0, width, base)
        return Strip.blank(width, base)
