"""The routing grid (the paper's Figure 1): one column per token, one row per MoE layer.

Line API (``ScrollView.render_line``) with LRU-cached row strips; the cursor is overlaid at render time so moving
it never invalidates the cache, and only the two affected lines (plus the header) are refreshed.
Rows 0-1 are a sticky header (token text, POS); a sticky left column labels the decoder layer. In a run made by
``moe-tui generate`` a bar (:attr:`RoutingGrid.PROMPT_END`) in the gap after the last prompt token, on every row,
marks where the continuation begins.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from rich.segment import Segment
from rich.style import Style
from textual.cache import LRUCache
from textual.events import Click
from textual.geometry import Region, Size
from textual.message import Message
from textual.reactive import var
from textual.scroll_view import ScrollView
from textual.strip import Strip

from moe_tui.tui.runview import SentenceData, display_token
from moe_tui.tui.widgets.palette import expert_style, pos_fg, pos_style
from moe_tui.tui.widgets.virtual import set_virtual_size

HEADER_ROWS = 2
CHUNK = 16          # tokens per cached strip piece in top-1 mode (~96 cells): only visible pieces are ever built
_PLAIN = Style()
_BOLD = Style(bold=True)
_BOLD_UL = Style(bold=True, underline=True)


class RoutingGrid(ScrollView, can_focus=True):
    DEFAULT_CSS = """
    RoutingGrid { background: $surface; }
    RoutingGrid > .routing-grid--label { color: $text-muted; }
    RoutingGrid > .routing-grid--header { color: $text; text-style: bold; }
    RoutingGrid > .routing-grid--cursor { text-style: reverse bold underline; }
    RoutingGrid > .routing-grid--dim { color: $text-disabled; }
    RoutingGrid > .routing-grid--diff { color: $error; text-style: bold; }
    """
    COMPONENT_CLASSES = {"routing-grid--label", "routing-grid--header", "routing-grid--cursor", "routing-grid--dim",
                         "routing-grid--diff"}
    DIFF_MARK = "≠"
    PROMPT_END = "┃"

    @dataclass
    class CursorMoved(Message):
        grid: "RoutingGrid"
        token: int
        layer: int

        @property
        def control(self) -> "RoutingGrid":
            return self.grid

    cursor: var[tuple[int, int]] = var((0, 0), always_update=False)   # (layer row, token column)
    show_all_k: var[bool] = var(False)
    colour_mode: var[str] = var("expert")          # expert | pos
    highlight: var[int | None] = var(None)

    def __init__(self, *, name: str | None = None, id: str | None = None, classes: str | None = None) -> None:
        super().__init__(name=name, id=id, classes=classes)
        self.data: SentenceData | None = None
        self.moe_layers: list[int] = []
        self.n_experts = 1
        self.top_k = 1
        self._cache: LRUCache[tuple, Strip] = LRUCache(8192)
        # whole screen lines by (sentence, line, scroll x, width, mode, highlight, cursor column): going back to a
        # sentence or a mode gives Textual the same Strip objects, whose filtered and divided forms it has cached
        self._lines: LRUCache[tuple, Strip] = LRUCache(2048)
        self._segs: dict[tuple, Segment] = {}       # one Segment per (mode, slot, expert, emphasis): reused by every cell
        self._style_cache: dict[str, Style] | None = None
        self._digits = 1
        self._label_w = 4
        self._data_key: tuple = ()
        self.diff: np.ndarray | None = None     # bool [n_tokens, n_layers]: expert set differs in the second run

    # ---- data -------------------------------------------------------------------------------------------
    def set_data(self, data: SentenceData, moe_layers: list[int], n_experts: int, top_k: int,
                 diff: np.ndarray | None = None, diff_tag: object = None) -> None:
        """Show one sentence. ``diff`` (``bool [n_tokens, L]``, from a second run named ``diff_tag``) marks the
        cells whose expert set differs with :attr:`DIFF_MARK` in the gap after them."""
        shape = (list(moe_layers), max(1, int(n_experts)), max(1, int(top_k)))
        if shape != (self.moe_layers, self.n_experts, self.top_k):  # another run's shape: nothing cached fits
            self._cache.clear()
            self._segs.clear()
            self._lines.clear()
        self.data = data
        self.diff = None if diff is None else np.asarray(diff, dtype=bool)
        # strips of a sentence stay cached: going back is cheap (the overlaid run is part of the key)
        self._data_key = (data.start, data.n_tokens, diff_tag if diff is not None else None)
        self.moe_layers, self.n_experts, self.top_k = shape
        self._digits = len(str(self.n_experts - 1))
        self._label_w = max(4, len(f"L{max(self.moe_layers, default=0)}") + 1)
        self._update_virtual_size()
        row, col = self.cursor
        self.set_reactive(RoutingGrid.cursor, (min(row, self.n_layers - 1), min(col, max(0, self.n_tokens - 1))))
        self.scroll_to(0, 0, animate=False, immediate=True)
        self._ensure_visible()
        self.refresh()
        self._post_cursor()

    @property
    def n_tokens(self) -> int:
        return self.data.n_tokens if self.data is not None else 0

    @property
    def n_layers(self) -> int:
        return len(self.moe_layers) if self.data is not None else 0

    @property
    def cell_width(self) -> int:
        d = self._digits
        if self.show_all_k:
            return max(6, self.top_k * (d + 1) + 1)
        return max(6, d + 3)

    @property
    def chunk(self) -> int:
        """Tokens per cached strip piece: about 96 cells, so a line joins and crops only a few short pieces."""
        return max(2, CHUNK * 6 // self.cell_width)

    def _update_virtual_size(self) -> None:
        size = Size(self._label_w + self.n_tokens * self.cell_width, self.n_layers + HEADER_ROWS)
        set_virtual_size(self, size)  # no screen layout unless a scrollbar appears or goes

    def notify_style_update(self) -> None:
        super().notify_style_update()
        self._style_cache = None
        self._cache.clear()
        self._lines.clear()
        self._segs.clear()

    def watch_show_all_k(self) -> None:
        self._update_virtual_size()
        self._ensure_visible()
        self.refresh()

    def watch_colour_mode(self) -> None:
        self.refresh()

    def watch_highlight(self) -> None:
        self.refresh()

    # ---- rendering --------------------------------------------------------------------------------------
    def _styles(self) -> dict[str, Style]:
        st = self._style_cache
        if st is None:
            st = self._style_cache = {
                "base": self.rich_style,
                "label": self.get_component_rich_style("routing-grid--label"),
                "header": self.get_component_rich_style("routing-grid--header"),
                "cursor": self.get_component_rich_style("routing-grid--cursor"),
                "dim": self.get_component_rich_style("routing-grid--dim"),
                "diff": self.get_component_rich_style("routing-grid--diff"),
            }
        return st

    def _chunk_range(self, c: int) -> range:
        n = self.chunk
        return range(c * n, min(self.n_tokens, (c + 1) * n))

    def _header_chunk(self, which: int, c: int) -> Strip:
        key = ("h", self._data_key, which, c, self.cell_width, self.colour_mode)
        strip = self._cache.get(key)
        if strip is not None:
            return strip
        assert self.data is not None
        cw = self.cell_width
        pos_mode = self.colour_mode == "pos"
        base = self._styles()["header"]
        tokens, pos = self.data.tokens, self.data.pos
        segs = []
        cells = self._chunk_range(c)
        for i in cells:
            if which == 0:
                text = display_token(tokens[i])
                style = base + pos_fg(pos[i]) if pos_mode else base
            else:
                text = pos[i] or "·"
                style = pos_style(pos[i]) if pos_mode else pos_fg(pos[i])
            end = self.PROMPT_END if i == self._prompt_end() else " "
            segs.append(Segment(text[: cw - 1].center(cw - 1) + end, style))
        strip = Strip(segs, cw * len(cells))
        self._cache[key] = strip
        return strip

    def _prompt_end(self) -> int | None:
        """The last prompt token (the bar goes in the gap after it), None when the sentence has no continuation."""
        g = getattr(self.data, "gen_start", None)
        return g - 1 if g is not None and 0 < g < self.n_tokens else None

    def _expert_seg(self, shown: int, j: int, e: int, emph: int) -> Segment:
        """The piece of a cell that shows expert ``e`` in slot ``j`` of ``shown`` ids (emph: 0 plain, 1 bold, 2 dim)."""
        key = (shown, j, e, emph)
        seg = self._segs.get(key)
        if seg is None:
            d, body_w = self._digits, self.cell_width - 1
            pad_left = (body_w - (shown * (d + 1) - 1)) // 2
            sentinel = e >= self.n_experts  # a rank this layer does not use (per-layer top-k): no expert
            txt = f"{'·' if sentinel else e:>{d}}"
            if j == 0:
                txt = " " * pad_left + txt
            if j < shown - 1:
                txt += " "
            else:
                used = (pad_left if j else 0) + j * (d + 1)
                txt += " " * (body_w - used - len(txt))
            if emph == 2 or sentinel:
                style = self._styles()["dim"]
            elif emph == 1:
                style = expert_style(e, self.n_experts) + _BOLD
            else:
                style = expert_style(e, self.n_experts)
            seg = self._segs[key] = Segment(txt, style)
        return seg

    def _row_chunk(self, layer: int, c: int) -> Strip:
        show_all, colour_mode, hl = self.show_all_k, self.colour_mode, self.highlight
        key = ("r", self._data_key, layer, c, show_all, colour_mode, hl)
        strip = self._cache.get(key)
        if strip is not None:
            return strip
        assert self.data is not None
        cw, d = self.cell_width, self._digits
        cells = self._chunk_range(c)
        block = self.data.experts[cells.start:cells.stop, layer, :]
        rows = block.tolist()
        styles = self._styles()
        gap = self._segs.get(("gap",))
        if gap is None:
            gap = self._segs[("gap",)] = Segment(" ", styles["base"])
        mark = self._segs.get(("mark",))
        if mark is None:
            mark = self._segs[("mark",)] = Segment(self.DIFF_MARK, styles["base"] + styles["diff"])
        gaps = [gap] * len(cells) if self.diff is None else \
            [mark if d else gap for d in self.diff[cells.start:cells.stop, layer].tolist()]
        end = self._prompt_end()
        if end is not None and cells.start <= end < cells.stop and gaps[end - cells.start] is gap:
            bar = self._segs.get(("prompt_end",))
            if bar is None:
                bar = self._segs[("prompt_end",)] = Segment(self.PROMPT_END, styles["base"] + styles["header"])
            gaps[end - cells.start] = bar
        segs: list[Segment] = []
        append = segs.append
        if colour_mode == "pos":
            pos = self.data.pos
            body_w = cw - 1
            dim = styles["dim"]
            emph = _BOLD_UL if hl is not None else _PLAIN
            hit = (block == hl).any(axis=1).tolist() if hl is not None else None
            for n, (i, ids, g) in enumerate(zip(cells, rows, gaps)):
                shown = tuple(ids if show_all else ids[:1])
                dimmed = hit is not None and not hit[n]
                k2 = ("p", shown, pos[i], dimmed, hl is not None)
                seg = self._segs.get(k2)
                if seg is None:
                    text = " ".join(f"{'·' if e >= self.n_experts else e:>{d}}" for e in shown)
                    style = dim if dimmed else pos_style(pos[i]) + emph
                    seg = self._segs[k2] = Segment(text.center(body_w), style)
                append(seg)
                append(g)
        else:
            seg_for = self._expert_seg
            shown = len(rows[0]) if (show_all and rows) else 1
            for ids, g in zip(rows, gaps):
                for j in range(shown):
                    e = ids[j]
                    append(seg_for(shown, j, e, 0 if hl is None else (1 if e == hl else 2)))
                append(g)
        strip = Strip(segs, cw * len(cells))
        self._cache[key] = strip
        return strip

    def _line_body(self, fetch, sx: int, body_w: int) -> Strip:
        n = self.chunk
        span = n * self.cell_width
        first = sx // span
        last = min((sx + max(body_w, 1) - 1) // span, (self.n_tokens - 1) // n)
        pieces = [fetch(c) for c in range(first, last + 1)]
        joined = pieces[0] if len(pieces) == 1 else Strip.join(pieces)
        off = sx - first * span
        return joined.crop_extend(off, off + body_w, self._styles()["base"])

    def _label(self, text: str, cursor: bool) -> Strip:
        key = ("l", text, cursor)
        strip = self._cache.get(key)
        if strip is None:
            st = self._styles()
            style = st["label"] + st["cursor"] if cursor else st["label"]
            strip = self._cache[key] = Strip([Segment(text.ljust(self._label_w), style)], self._label_w)
        return strip

    def _row_line(self, label: Strip, layer: int, sx: int, body_w: int, width: int, cursor_col: int | None) -> Strip:
        """A layer row as one Strip: cached chunk segments cropped to the view, the cursor cell overlaid.

        Row text is ASCII (ids and spaces), so cell positions are string positions and the crop is plain slicing;
        this makes one Strip per line instead of the ~8 that join/crop/divide/apply_style would make.
        """
        st = self._styles()
        cw, n = self.cell_width, self.chunk
        span = n * cw
        first = sx // span
        last = min((sx + max(body_w, 1) - 1) // span, (self.n_tokens - 1) // n)
        x_end = sx + body_w
        if cursor_col is None:
            cx0 = cx1 = -1
        else:
            cx0, cx1 = cursor_col * cw, cursor_col * cw + cw - 1
        cur = st["cursor"]
        out: list[Segment] = list(label._segments)
        used = label.cell_length
        x = first * span
        for c in range(first, last + 1):
            for seg in self._row_chunk(layer, c)._segments:
                text = seg.text
                a = x
                b = x = a + len(text)
                if b <= sx:
                    continue
                if a >= x_end:
                    break
                lo = sx if sx > a else a
                hi = x_end if x_end < b else b
                style = seg.style
                if cx0 < 0 or hi <= cx0 or lo >= cx1:
                    out.append(seg if (lo == a and hi == b) else Segment(text[lo - a:hi - a], style))
                else:
                    p0 = cx0 if cx0 > lo else lo
                    p1 = cx1 if cx1 < hi else hi
                    if lo < p0:
                        out.append(Segment(text[lo - a:p0 - a], style))
                    out.append(Segment(text[p0 - a:p1 - a], cur + style if style is not None else cur))
                    if p1 < hi:
                        out.append(Segment(text[p1 - a:hi - a], style))
                used += hi - lo
        if used < width:
            out.append(Segment(" " * (width - used), st["base"]))
        return Strip(out, max(used, width))

    def render_line(self, y: int) -> Strip:
        width = self.size.width
        if self.data is None or self.n_tokens == 0:
            return Strip.blank(width, self._styles()["base"])
        sx, sy = self.scroll_offset
        row = y if y < HEADER_ROWS else sy + y - HEADER_ROWS + HEADER_ROWS
        on_cursor = y < HEADER_ROWS or row - HEADER_ROWS == self.cursor[0]
        key = (self._data_key, row, sx, width, self.show_all_k, self.colour_mode, self.highlight,
               self.cursor[1] if on_cursor else None, self._label_w)
        strip = self._lines.get(key)
        if strip is None:
            strip = self._lines[key] = self._render_line(y, width)
        return strip

    def _render_line(self, y: int, width: int) -> Strip:
        st = self._styles()
        base = st["base"]
        sx, sy = self.scroll_offset
        lw = self._label_w
        body_w = max(0, width - lw)
        cw = self.cell_width
        row, col = self.cursor
        if y < HEADER_ROWS:
            body = self._line_body(lambda c: self._header_chunk(y, c), sx, body_w)
            label = self._label("tok" if y == 0 else "pos", False)
            hl_row = True
        else:
            layer = sy + y - HEADER_ROWS
            if layer >= self.n_layers:
                return Strip.blank(width, base)
            hl_row = layer == row
            label = self._label(f"L{self.moe_layers[layer]}", hl_row)
            if width > lw:
                return self._row_line(label, layer, sx, body_w, width, col if hl_row else None)
            body = self._line_body(lambda c: self._row_chunk(layer, c), sx, body_w)
        if hl_row:  # the cursor is an overlay: cached strips never contain it
            x0 = col * cw - sx
            x1 = x0 + cw - 1
            if x1 > 0 and x0 < body_w:
                a, b = max(0, x0), min(body_w, x1)
                parts = list(body.divide([a, b, body_w]))
                if len(parts) >= 2:
                    parts[1] = parts[1].apply_style(st["cursor"])
                    body = Strip.join(parts)
        return Strip.join([label, body]).crop_extend(0, width, base)

    # ---- cursor -------------------------------------------------------------------------------------------
    def _line_of(self, layer: int) -> int:
        return layer - int(self.scroll_offset.y) + HEADER_ROWS

    def watch_cursor(self, old: tuple[int, int], new: tuple[int, int]) -> None:
        if self.data is None:
            return
        w = self.size.width
        before = self.scroll_offset
        self._ensure_visible()
        if self.scroll_offset == before:
            for line in {self._line_of(old[0]), self._line_of(new[0]), 0, 1}:
                if 0 <= line < self.size.height:
                    self.refresh(Region(0, line, w, 1))
        self._post_cursor()

    def _ensure_visible(self) -> None:
        if self.data is None or not self.size.width:
            return
        row, col = self.cursor
        cw = self.cell_width
        body_w = max(cw, self.size.width - self._label_w)
        vis_rows = max(1, self.size.height - HEADER_ROWS)
        sx, sy = int(self.scroll_offset.x), int(self.scroll_offset.y)
        x0 = col * cw
        if x0 < sx:
            sx = x0
        elif x0 + cw > sx + body_w:
            sx = x0 + cw - body_w
        if row < sy:
            sy = row
        elif row >= sy + vis_rows:
            sy = row - vis_rows + 1
        if (sx, sy) != (int(self.scroll_offset.x), int(self.scroll_offset.y)):
            self.scroll_to(sx, sy, animate=False, immediate=True)

    def on_resize(self) -> None:
        self._ensure_visible()

    def _post_cursor(self) -> None:
        if self.data is not None and self.n_tokens:
            row, col = self.cursor
            self.post_message(self.CursorMoved(self, col, row))

    def move_cursor(self, d_layer: int = 0, d_token: int = 0) -> None:
        if self.data is None:
            return
        row, col = self.cursor
        row = min(max(0, row + d_layer), self.n_layers - 1)
        col = min(max(0, col + d_token), self.n_tokens - 1)
        self.cursor = (row, col)

    def set_cursor(self, layer: int | None = None, token: int | None = None) -> None:
        row, col = self.cursor
        self.cursor = (
            min(max(0, row if layer is None else layer), max(0, self.n_layers - 1)),
            min(max(0, col if token is None else token), max(0, self.n_tokens - 1)),
        )

    @property
    def page_rows(self) -> int:
        return max(1, self.size.height - HEADER_ROWS - 1)

    def on_click(self, event: Click) -> None:
        if self.data is None:
            return
        off = event.get_content_offset(self)
        if off is None:
            return
        x, y = off
        if x < self._label_w:
            return
        col = (int(self.scroll_offset.x) + x - self._label_w) // self.cell_width
        layer = int(self.scroll_offset.y) + y - HEADER_ROWS if y >= HEADER_ROWS else self.cursor[0]
        if 0 <= col < self.n_tokens and 0 <= layer < self.n_layers:
            self.cursor = (layer, col)
        self.focus()

    # ---- what is on screen, for export ---------------------------------------------------------------------
    def visible_ranks(self) -> int:
        return self.top_k if self.show_all_k else 1
