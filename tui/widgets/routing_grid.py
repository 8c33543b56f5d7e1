"""The routing grid (the paper's Figure 1): one column per token, one row per MoE layer.

Line API (``ScrollView.render_line``) with LRU-cached row strips; the cursor is overlaid at render time so moving
it never invalidates the cache, and only the two affected lines (plus the header) are refreshed.
Rows 0-1 are a sticky header (token text, POS); a sticky left column labels the decoder layer.
"""

from __future__ import annotations

from dataclasses import dataclass

from rich.segment import Segment
from rich.style import Style
from textual.cache import LRUCache
from textual.events import Click
from textual.geometry import Region, Size
from textual.message import Message
from textual.reactive import var
from textual.scroll_view import ScrollView
from textual.strip import Strip

from tui.runview import SentenceData, display_token
from tui.widgets.palette import expert_style, pos_fg, pos_style

HEADER_ROWS = 2
CHUNK = 16          # tokens per cached strip piece: only visible pieces are ever built


class RoutingGrid(ScrollView, can_focus=True):
    DEFAULT_CSS = """
    RoutingGrid { background: $surface; }
    RoutingGrid > .routing-grid--label { color: $text-muted; }
    RoutingGrid > .routing-grid--header { color: $text; text-style: bold; }
    RoutingGrid > .routing-grid--cursor { text-style: reverse bold underline; }
    RoutingGrid > .routing-grid--dim { color: $text-disabled; }
    """
    COMPONENT_CLASSES = {"routing-grid--label", "routing-grid--header", "routing-grid--cursor", "routing-grid--dim"}

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
        self._digits = 1
        self._label_w = 4

    # ---- data -------------------------------------------------------------------------------------------
    def set_data(self, data: SentenceData, moe_layers: list[int], n_experts: int, top_k: int) -> None:
        self.data = data
        self.moe_layers = list(moe_layers)
        self.n_experts = max(1, int(n_experts))
        self.top_k = max(1, int(top_k))
        self._digits = len(str(self.n_experts - 1))
        self._label_w = max(4, len(f"L{max(self.moe_layers, default=0)}") + 1)
        self._cache.clear()
        self._update_virtual_size()
        row, col = self.cursor
        self.set_reactive(RoutingGrid.cursor, (min(row, self.n_layers - 1), min(col, max(0, self.n_tokens - 1))))
        self.scroll_to(0, 0, animate=False)
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

    def _update_virtual_size(self) -> None:
        self.virtual_size = Size(self._label_w + self.n_tokens * self.cell_width, self.n_layers + HEADER_ROWS)

    def notify_style_update(self) -> None:
        super().notify_style_update()
        self._cache.clear()

    def watch_show_all_k(self) -> None:
        self._cache.clear()
        self._update_virtual_size()
        self._ensure_visible()
        self.refresh()

    def watch_colour_mode(self) -> None:
        self._cache.clear()
        self.refresh()

    def watch_highlight(self) -> None:
        self._cache.clear()
        self.refresh()

    # ---- rendering --------------------------------------------------------------------------------------
    def _chunk_range(self, c: int) -> range:
        return range(c * CHUNK, min(self.n_tokens, (c + 1) * CHUNK))

    def _header_chunk(self, which: int, c: int) -> Strip:
        key = ("h", which, c, self.cell_width, self.colour_mode)
        strip = self._cache.get(key)
        if strip is not None:
            return strip
        assert self.data is not None
        cw = self.cell_width
        pos_mode = self.colour_mode == "pos"
        base = self.get_component_rich_style("routing-grid--header")
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
            segs.append(Segment(text[: cw - 1].center(cw - 1) + " ", style))
        strip = Strip(segs, cw * len(cells))
        self._cache[key] = strip
        return strip

    def _row_chunk(self, layer: int, c: int) -> Strip:
        show_all, colour_mode, hl = self.show_all_k, self.colour_mode, self.highlight
        key = ("r", layer, c, show_all, colour_mode, hl)
        strip = self._cache.get(key)
        if strip is not None:
            return strip
        assert self.data is not None
        cw, d, n_exp = self.cell_width, self._digits, self.n_experts
        cells = self._chunk_range(c)
        rows = self.data.experts[cells.start:cells.stop, layer, :].tolist()
        pos = self.data.pos
        dim = self.get_component_rich_style("routing-grid--dim")
        gap = Segment(" ", self.rich_style)
        body_w = cw - 1
        bold = Style(bold=True)
        emph = Style(bold=True, underline=True) if hl is not None else Style()
        segs: list[Segment] = []
        for i, ids in zip(cells, rows):
            shown = ids if show_all else ids[:1]
            dimmed = hl is not None and hl not in ids
            if colour_mode == "pos":
                text = " ".join(f"{e:>{d}}" for e in shown)
                style = dim if dimmed else pos_style(pos[i]) + emph
                segs.append(Segment(text.center(body_w), style))
            else:
                pad_left = (body_w - (len(shown) * (d + 1) - 1)) // 2
                used = 0
                last = len(shown) - 1
                for j, e in enumerate(shown):
                    txt = f"{e:>{d}}"
                    if j == 0:
                        txt = " " * pad_left + txt
                    if j < last:
                        txt += " "
                    else:
                        txt += " " * (body_w - used - len(txt))
                    if dimmed:
                        st = dim
                    elif hl is not None:
                        st = expert_style(e, n_exp) + bold if e == hl else dim
                    else:
                        st = expert_style(e, n_exp)
                    segs.append(Segment(txt, st))
                    used += len(txt)
            segs.append(gap)
        strip = Strip(segs, cw * len(cells))
        self._cache[key] = strip
        return strip

    def _line_body(self, fetch, sx: int, body_w: int) -> Strip:
        span = CHUNK * self.cell_width
        first = sx // span
        last = min((sx + max(body_w, 1) - 1) // span, (self.n_tokens - 1) // CHUNK)
        joined = Strip.join([fetch(c) for c in range(first, last + 1)])
        off = sx - first * span
        return joined.crop_extend(off, off + body_w, self.rich_style)

    def render_line(self, y: int) -> Strip:
        width = self.size.width
        base = self.rich_style
        if self.data is None or self.n_tokens == 0:
            return Strip.blank(width, base)
        sx, sy = self.scroll_offset
        lw = self._label_w
        body_w = max(0, width - lw)
        cw = self.cell_width
        row, col = self.cursor
        label_style = self.get_component_rich_style("routing-grid--label")
        cursor_style = self.get_component_rich_style("routing-grid--cursor")
        if y < HEADER_ROWS:
            body = self._line_body(lambda c: self._header_chunk(y, c), sx, body_w)
            label = ("tok" if y == 0 else "pos").ljust(lw)
            hl_row = True
        else:
            layer = sy + y - HEADER_ROWS
            if layer >= self.n_layers:
                return Strip.blank(width, base)
            body = self._line_body(lambda c: self._row_chunk(layer, c), sx, body_w)
            label = f"L{self.moe_layers[layer]}".ljust(lw)
            hl_row = layer == row
        if hl_row:
            x0 = col * cw - sx
            x1 = x0 + cw - 1
            if x1 > 0 and x0 < body_w:
                a, b = max(0, x0), min(body_w, x1)
                parts = list(body.divide([a, b, body_w]))
                if len(parts) >= 2:
                    parts[1] = parts[1].apply_style(cursor_style)
                    body = Strip.join(parts)
        lab_style = label_style + (cursor_style if (y >= HEADER_ROWS and hl_row) else Style())
        return Strip.join([Strip([Segment(label, lab_style)], lw), body]).crop_extend(0, width, base)

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
