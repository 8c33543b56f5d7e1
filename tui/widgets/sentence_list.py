"""The grid screen's sentence list: a virtual, line-rendered list (Line API, like the routing grid).

It shows the sentences given by an array of sentence indices (all of them, or a search's matches as they come) and
decodes a sentence's text only when its line is drawn: a run of 100k sentences costs no Python object per sentence.
Rendered lines are kept as strips in an LRU cache; the cursor is an overlay, so moving it repaints two lines.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
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


class SentenceList(ScrollView, can_focus=True):
    """Sentences by number and text; ``rows`` (sorted sentence indices, or None for all) says which are shown.

    Posts :class:`SentenceList.Highlighted` when the user moves the cursor and :class:`SentenceList.Selected` on
    enter or click; :meth:`show_sentence` moves the cursor from code without posting anything.
    """

    DEFAULT_CSS = """
    SentenceList { background: $surface; overflow-x: hidden; overflow-y: scroll; }
    SentenceList > .sentence-list--number { color: $text-muted; }
    SentenceList > .sentence-list--cursor { background: $accent 40%; text-style: bold; }
    SentenceList:focus > .sentence-list--cursor { background: $accent; }
    SentenceList > .sentence-list--status { color: $text-muted; text-style: italic; }
    """
    COMPONENT_CLASSES = {"sentence-list--number", "sentence-list--cursor", "sentence-list--status"}
    BINDINGS = [
        Binding("up,k", "move(-1)", "Up", show=False),
        Binding("down,j", "move(1)", "Down", show=False),
        Binding("pageup", "page(-1)", "Page up", show=False),
        Binding("pagedown", "page(1)", "Page down", show=False),
        Binding("home", "edge(0)", "First", show=False),
        Binding("end", "edge(1)", "Last", show=False),
        Binding("enter", "select", "Open", show=False),
    ]

    @dataclass
    class Highlighted(Message):
        sentence_list: "SentenceList"
        index: int          # sentence index in the run

        @property
        def control(self) -> "SentenceList":
            return self.sentence_list

    @dataclass
    class Selected(Message):
        sentence_list: "SentenceList"
        index: int

        @property
        def control(self) -> "SentenceList":
            return self.sentence_list

    cursor: var[int] = var(0, always_update=False)   # position in the shown rows

    def __init__(self, *, name: str | None = None, id: str | None = None, classes: str | None = None) -> None:
        super().__init__(name=name, id=id, classes=classes)
        self.texts = None                       # anything with len() and [i] -> str (a run's text table)
        self.rows: np.ndarray | None = None     # shown sentence indices, ascending; None = all
        self.status = ""                        # a last, dim line ("searching…", "no sentence matches")
        self._n_all = 0
        self._digits = 1
        self._cache: LRUCache[tuple, Strip] = LRUCache(1024)
        self._styles: dict | None = None

    # ---- content ----------------------------------------------------------------------------------------------
    def set_texts(self, texts) -> None:
        self.texts = texts
        self._n_all = len(texts)
        self._digits = max(4, len(str(self._n_all)))
        self._cache.clear()
        self.set_rows(None)

    @property
    def n_rows(self) -> int:
        return self._n_all if self.rows is None else len(self.rows)

    def sentence_at(self, pos: int) -> int:
        return int(pos) if self.rows is None else int(self.rows[pos])

    def position_of(self, sentence: int) -> int | None:
        """Where sentence ``sentence`` is among the shown rows (None: not shown)."""
        if self.rows is None:
            return sentence if 0 <= sentence < self._n_all else None
        p = int(np.searchsorted(self.rows, sentence))
        return p if p < len(self.rows) and int(self.rows[p]) == sentence else None

    def set_rows(self, rows: np.ndarray | None, status: str = "") -> None:
        """Show these sentences (ascending indices; None = all) and an optional status line."""
        self.rows = None if rows is None else np.asarray(rows, dtype=np.int64)
        self.status = status
        self.set_reactive(SentenceList.cursor, 0)
        self._resize()
        if self.scroll_offset.y:  # a scroll costs the screen a (scroll) layout: only when there is one to undo
            self.scroll_to(0, 0, animate=False, immediate=True)
        self.refresh()

    def append_rows(self, more: np.ndarray, status: str = "") -> None:
        """Add matches at the end (a search's results as they come): repaints only what changed on screen."""
        old = self.n_rows
        if len(more):
            base = self.rows if self.rows is not None else np.zeros(0, dtype=np.int64)
            self.rows = np.concatenate([base, np.asarray(more, dtype=np.int64)])
        changed_status = status != self.status
        self.status = status
        self._resize()
        top = int(self.scroll_offset.y)
        first = old - top
        if first < self.size.height and (len(more) or changed_status):
            y0 = max(0, first)
            self.refresh(Region(0, y0, self.size.width, self.size.height - y0))

    def _resize(self) -> None:
        set_virtual_size(self, Size(self.size.width or 1, self.n_rows + (1 if self.status else 0)))

    # ---- cursor -----------------------------------------------------------------------------------------------
    def show_sentence(self, sentence: int) -> bool:
        """Put the cursor on ``sentence`` if it is shown (no message is posted). Returns whether it is."""
        pos = self.position_of(sentence)
        if pos is None:
            return False
        old = self.cursor
        if pos != old:
            self.set_reactive(SentenceList.cursor, pos)
            self._after_cursor(old)
        return True

    def _after_cursor(self, old: int) -> None:
        top = int(self.scroll_offset.y)
        h = max(1, self.size.height)
        pos = self.cursor
        if pos < top or pos >= top + h:
            new_top = pos if pos < top else pos - h + 1
            self.scroll_to(0, max(0, new_top), animate=False, immediate=True)
            self.refresh()
            return
        w = self.size.width
        for p in {old, pos}:
            if p is not None and 0 <= p - top < h:
                self.refresh(Region(0, p - top, w, 1))

    def watch_cursor(self, old: int, new: int) -> None:
        self._after_cursor(old)
        if self.n_rows:
            self.post_message(self.Highlighted(self, self.sentence_at(new)))

    def _move_to(self, pos: int) -> None:
        if self.n_rows:
            self.cursor = max(0, min(self.n_rows - 1, pos))

    def action_move(self, step: int) -> None:
        self._move_to(self.cursor + step)

    def action_page(self, direction: int) -> None:
        self._move_to(self.cursor + direction * max(1, self.size.height - 1))

    def action_edge(self, last: int) -> None:
        self._move_to(self.n_rows - 1 if last else 0)

    def action_select(self) -> None:
        if self.n_rows:
            self.post_message(self.Selected(self, self.sentence_at(self.cursor)))

    def on_click(self, event: Click) -> None:
        off = event.get_content_offset(self)
        if off is None:
            return
        pos = int(self.scroll_offset.y) + off[1]
        if 0 <= pos < self.n_rows:
            self.cursor = pos
            self.post_message(self.Selected(self, self.sentence_at(pos)))

    # ---- rendering --------------------------------------------------------------------------------------------
    def notify_style_update(self) -> None:
        super().notify_style_update()
        self._styles = None
        self._cache.clear()

    def _style(self, name: str):
        st = self._styles
        if st is None:
            st = self._styles = {
                "base": self.rich_style,
                "number": self.get_component_rich_style("sentence-list--number"),
                "cursor": self.get_component_rich_style("sentence-list--cursor"),
                "status": self.get_component_rich_style("sentence-list--status"),
            }
        return st[name]

    def _line(self, sentence: int, width: int) -> Strip:
        key = (sentence, width)
        strip = self._cache.get(key)
        if strip is None:
            text = self.texts[sentence] if self.texts is not None else ""
            text = " ".join(text.split())   # tabs and newlines would break a line
            number = f"{sentence + 1:>{self._digits}} "
            room = max(0, width - len(number))
            if len(text) > room:
                text = text[: max(0, room - 1)] + "…" if room else ""
            base = self._style("base")
            strip = Strip([Segment(number, base + self._style("number")), Segment(text, base)])
            strip = strip.crop_extend(0, width, base)
            self._cache[key] = strip
        return strip

    def render_line(self, y: int) -> Strip:
        width = self.scrollable_content_region.width  # without the vertical scrollbar
        base = self._style("base")
        pos = int(self.scroll_offset.y) + y
        n = self.n_rows
        if pos < n:
            strip = self._line(self.sentence_at(pos), width)
            if pos == self.cursor:
                strip = strip.apply_style(self._style("cursor"))
            return strip
        if pos == n and self.status:
            return Strip([Segment(self.status, base + self._style("status"))]).crop_extend(0, width, base)
        return Strip.blank(width, base)

    def on_resize(self) -> None:
        self._resize()
