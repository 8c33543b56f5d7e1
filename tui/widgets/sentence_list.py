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
from textual.geometry import Region
from textual.message import Message
from textual.strip import Strip

from moe_tui.tui.widgets.virtual import CursorList


class SentenceList(CursorList):
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
    CURSOR_CLASS, STATUS_CLASS = "sentence-list--cursor", "sentence-list--status"
    BINDINGS = [
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

    def __init__(self, *, name: str | None = None, id: str | None = None, classes: str | None = None) -> None:
        super().__init__(name=name, id=id, classes=classes)
        self.texts = None                       # anything with len() and [i] -> str (a run's text table)
        self.rows: np.ndarray | None = None     # shown sentence indices, ascending; None = all
        self._n_all = 0
        self._digits = 1
        self._cache: LRUCache[tuple, Strip] = LRUCache(1024)

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

    def highlighted(self, pos: int) -> Message:
        return self.Highlighted(self, self.sentence_at(pos))

    def action_select(self) -> None:
        if self.n_rows:
            self.post_message(self.Selected(self, self.sentence_at(self.cursor)))

    def on_click(self, event: Click) -> None:
        pos = self.clicked_row(event)
        if pos is not None:
            self.cursor = pos
            self.post_message(self.Selected(self, self.sentence_at(pos)))

    # ---- rendering --------------------------------------------------------------------------------------------
    def clear_cache(self) -> None:
        self._cache.clear()

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
            base = self.style_of("base")
            strip = Strip([Segment(number, base + self.style_of("sentence-list--number")), Segment(text, base)])
            strip = strip.crop_extend(0, width, base)
            self._cache[key] = strip
        return strip

    def row_strip(self, pos: int, width: int) -> Strip:
        return self._line(self.sentence_at(pos), width)
