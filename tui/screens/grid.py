"""Routing grid screen: sentence list + search, the tokens × MoE-layers grid, legend, side panel."""

from __future__ import annotations

import gc
import os
import re
from pathlib import Path

import numpy as np
from rich.style import Style
from textual import on
from textual.app import ComposeResult
from textual.containers import Horizontal, Vertical
from textual.screen import Screen
from textual.widgets import Footer, Input, OptionList
from textual.widgets.option_list import Option

from moe_tui.core.explore import LayerStatsCache
from moe_tui.tui import actions
from moe_tui.tui.runview import SentenceData, n_sentences, run_title, sentence_data
from moe_tui.tui.widgets.palette import expert_style, pos_style
from moe_tui.tui.widgets.routing_grid import RoutingGrid
from moe_tui.tui.widgets.text_panel import ScrollingTextBox, TextBox

SIDE_PANEL_DELAY_S = 0.04
LEGEND_MAX_IDS = 96
_B = Style(bold=True)
_DIM = Style(dim=True)
_BU = Style(bold=True, underline=True)
_REV = Style(reverse=True)
_HL = Style(bold=True, reverse=True)
CSV_HEADER = ("token", "word", "pos", "layer", "rank", "expert", "weight")


def sentence_rows(data: SentenceData, moe_layers: list[int], ranks: int) -> list[tuple]:
    """The rows of what the grid shows for one sentence (token order, then layer, then rank)."""
    rows = []
    for i in range(data.n_tokens):
        for li, layer in enumerate(moe_layers):
            for r in range(ranks):
                rows.append((data.tokens[i], data.words[i], data.pos[i], int(layer), r,
                             int(data.experts[i, li, r]), float(data.weights[i, li, r])))
    return rows


def write_csv_atomic(path: Path, header: tuple, rows: list[tuple], *, spreadsheet_safe: bool = False) -> Path:
    """The grid's CSV through the one CSV writer (atomic; text exact unless ``spreadsheet_safe``)."""
    from moe_tui.fileio import write_csv

    path.parent.mkdir(parents=True, exist_ok=True)
    return write_csv(path, header, rows, spreadsheet_safe=spreadsheet_safe)


class GridScreen(Screen):
    """The routing grid screen.

    Speed: a cursor key repaints only the grid lines it touches (see RoutingGrid). The title, legend and side panel
    are Line-API panes (moe_tui.tui.widgets.text_panel) that repaint without a screen layout; the side panel follows the
    cursor 40 ms after it rests, and is only repainted when its text changed.
    """

    SCOPE = "grid"
    BINDINGS = actions.bindings("grid")
    AUTO_FOCUS = "#grid"

    def __init__(self, run) -> None:
        super().__init__()
        self.run = run
        self.n_sent = n_sentences(run)
        self.sentence_index = 0
        self.data: SentenceData | None = None
        self.tags = tuple(run.tags)
        self.moe_layers = [int(x) for x in run.moe_layers]
        self.stats = LayerStatsCache(run.experts, run.pos, int(run.num_experts), len(self.tags))
        self._search = ""
        self.side_text = ""
        self._side_timer = None
        self._side_pending = False
        self._legend_sizing: list | None = None
        self._legend_ids: dict[tuple[int, int], list[int]] = {}
        self._paths: dict[tuple[int, int, int], list] = {}   # (sentence, token, width) -> path lines (no marker)

    def compose(self) -> ComposeResult:
        with Horizontal(id="grid-main"):
            with Vertical(id="sentence-pane"):
                yield Input(placeholder="/ search sentences", id="search")
                yield OptionList(id="sentence-list")
            with Vertical(id="grid-pane"):
                yield TextBox(id="grid-title")
                yield RoutingGrid(id="grid")
                yield TextBox(id="legend")
            yield ScrollingTextBox(id="side-panel")
        yield Footer()

    def on_mount(self) -> None:
        self.sub_title = run_title(self.run)
        self._grid = self.query_one(RoutingGrid)
        self._side = self.query_one("#side-panel", ScrollingTextBox)
        self._legend = self.query_one("#legend", TextBox)
        self._title = self.query_one("#grid-title", TextBox)
        self._side_timer = self.set_interval(SIDE_PANEL_DELAY_S, self._side_tick, pause=True)
        self._fill_sentences()
        self.show_sentence(0)
        self._grid.focus()
        # whoever changes these (keys, the palette, another pane jumping here) gets the legend redrawn
        for attr in ("highlight", "colour_mode", "show_all_k"):
            self.watch(self._grid, attr, self._grid_mode_changed, init=False)
        # Full (generation-2) garbage collections walk every live object — the run, Textual's DOM and caches — and
        # took ~100 ms, landing on random keystrokes. Objects alive now are long-lived: move them out of the
        # collector's way (freed by reference counting as usual; only cycles among them are never collected).
        gc.freeze()

    # ---- sentence list / search ----------------------------------------------------------------------------
    def _fill_sentences(self) -> None:
        ol = self.query_one("#sentence-list", OptionList)
        ol.clear_options()
        q = self._search.lower()
        opts = []
        for i in range(self.n_sent):
            text = str(self.run.sentences[i].get("text", "")) if i < len(self.run.sentences) else ""
            if q and q not in text.lower():
                continue
            short = text if len(text) <= 60 else text[:59] + "…"
            opts.append(Option(f"{i + 1:>4} {short}", id=str(i)))
        ol.add_options(opts)
        if not opts:
            ol.add_option(Option("no sentence matches", disabled=True))
        else:
            self._highlight_in_list()

    def _highlight_in_list(self) -> None:
        ol = self.query_one("#sentence-list", OptionList)
        try:
            idx = ol.get_option_index(str(self.sentence_index))
        except Exception:  # noqa: BLE001 - filtered out
            return
        if ol.highlighted != idx:
            with ol.prevent(OptionList.OptionHighlighted):
                ol.highlighted = idx

    @on(Input.Changed, "#search")
    def _search_changed(self, event: Input.Changed) -> None:
        self._search = event.value.strip()
        self._fill_sentences()

    @on(Input.Submitted, "#search")
    def _search_submitted(self, event: Input.Submitted) -> None:
        ol = self.query_one("#sentence-list", OptionList)
        if ol.option_count and ol.get_option_at_index(0).id is not None:
            first = ol.get_option_at_index(ol.highlighted or 0)
            if first.id is not None:
                self.show_sentence(int(first.id))
        self.query_one(RoutingGrid).focus()

    @on(OptionList.OptionHighlighted, "#sentence-list")
    @on(OptionList.OptionSelected, "#sentence-list")
    def _sentence_picked(self, event) -> None:
        if event.option.id is not None and int(event.option.id) != self.sentence_index:
            self.show_sentence(int(event.option.id))

    def show_sentence(self, i: int) -> None:
        if self.n_sent == 0:
            return
        i = max(0, min(self.n_sent - 1, i))
        self.sentence_index = i
        self.data = sentence_data(self.run, i)
        grid = self.grid
        grid.set_data(self.data, self.moe_layers, int(self.run.num_experts), int(self.run.top_k))
        text = self.data.text if len(self.data.text) <= 200 else self.data.text[:199] + "…"
        self._title.set_lines([[(f"sentence {i + 1}/{self.n_sent}  ", _B), (f"[{self.data.sent_id}] ", _DIM),
                                (text, None)]])
        self._highlight_in_list()
        self._update_legend()

    # ---- actions -----------------------------------------------------------------------------------------
    @property
    def grid(self) -> RoutingGrid:
        grid = getattr(self, "_grid", None)
        return grid if grid is not None else self.query_one(RoutingGrid)

    def action_move(self, d_layer: int, d_token: int) -> None:
        self.grid.move_cursor(d_layer, d_token)

    def action_first(self) -> None:
        self.grid.set_cursor(token=0)

    def action_last(self) -> None:
        self.grid.set_cursor(token=self.grid.n_tokens - 1)

    def action_page(self, direction: int) -> None:
        self.grid.move_cursor(d_layer=direction * self.grid.page_rows)

    def action_sentence(self, step: int) -> None:
        self.show_sentence(self.sentence_index + step)

    def action_search(self) -> None:
        self.query_one("#search", Input).focus()

    def action_toggle_topk(self) -> None:
        # the legend's status line says which (a toast here cost two screen layouts: mount, then expiry)
        self.grid.show_all_k = not self.grid.show_all_k

    def action_toggle_colour(self) -> None:
        self.grid.colour_mode = "pos" if self.grid.colour_mode == "expert" else "expert"
        self._update_legend()

    def action_highlight(self) -> None:
        grid = self.grid
        if grid.highlight is not None:
            grid.highlight = None
        elif self.data is not None:
            row, col = grid.cursor
            grid.highlight = int(self.data.experts[col, row, 0])
        self._update_legend()
        self._update_side()

    def action_highlight_step(self, step: int) -> None:
        grid = self.grid
        n = int(self.run.num_experts)
        cur = grid.highlight if grid.highlight is not None else (-1 if step > 0 else 0)
        grid.highlight = (cur + step) % n
        self._update_legend()

    def action_export(self) -> None:
        if self.data is None:
            return
        rows = sentence_rows(self.data, self.moe_layers, self.grid.visible_ranks())
        base = Path(self.app.settings.export_dir or os.getcwd()).expanduser()
        safe_id = re.sub(r"[^A-Za-z0-9_.-]+", "_", self.data.sent_id)[:60]
        run_id = re.sub(r"[^A-Za-z0-9_.-]+", "_", str(getattr(self.run, "run_id", "run")))
        path = base / f"moe-tui-{run_id}-s{self.sentence_index + 1}-{safe_id}.csv"
        from moe_tui.errors import MoeTuiError

        try:
            write_csv_atomic(path, CSV_HEADER, rows, spreadsheet_safe=self.app.settings.spreadsheet_safe)
        except (OSError, MoeTuiError) as exc:
            self.app.show_error("Export failed", f"{path}: {exc}")
            return
        self.last_export = path
        self.notify(f"Exported {len(rows)} rows to {path.resolve()}", title="CSV export", markup=False, timeout=6)

    def action_copy_cell(self) -> None:
        if self._side_pending:          # the cursor moved less than 40 ms ago: copy what it is on now
            self._side_tick()
        self.app.copy_to_clipboard(self.side_text)
        self.notify("Copied the token's path (OSC 52)", timeout=2)

    def action_back(self) -> None:
        search = self.query_one("#search", Input)
        if search.has_focus:
            self.grid.focus()
            return
        self.app.pop_screen()

    # ---- legend + side panel -----------------------------------------------------------------------------
    def _grid_mode_changed(self, *_args) -> None:
        self._update_legend()

    def _legend_lines(self, pos_mode: bool, ids: list[int]) -> list[list]:
        if pos_mode:
            line: list = [("POS: ", _B)]
            for tag in self.tags:
                line += [(f" {tag} ", pos_style(tag)), (" ", None)]
            return [line]
        n = int(self.run.num_experts)
        w = len(str(n - 1))
        line = [(f"experts ({len(ids)} of {n} in this sentence): ", _B)]
        for e in ids[:LEGEND_MAX_IDS]:
            line += [(f"{e:>{w}}", expert_style(e, n)), (" ", None)]
        if len(ids) > LEGEND_MAX_IDS:
            line.append((f"… +{len(ids) - LEGEND_MAX_IDS}", None))
        return [line]

    def _update_legend(self) -> None:
        """Legend: colour key + one status line. Its height depends only on the run, the colour mode and the width
        (sized for all N experts), so changing sentence or highlight repaints it without a screen layout."""
        grid = self.grid
        pos_mode = grid.colour_mode == "pos"
        ids: list[int] = []
        if not pos_mode and self.data is not None:
            ids = self._sentence_experts(grid.visible_ranks())
        lines = self._legend_lines(pos_mode, ids) if (pos_mode or self.data is not None) else []
        if grid.highlight is not None:
            status = [(f"highlight: expert {grid.highlight} (x clears, [ ] step)", _HL)]
        else:
            status = [(f"{'all k' if grid.show_all_k else 'top-1'} ids (t) · {'POS' if pos_mode else 'expert'} "
                       "colours (c) · x highlight", _DIM)]
        if pos_mode:
            sizing = lines
        else:
            sizing = self._legend_sizing
            if sizing is None:
                sizing = self._legend_sizing = self._legend_lines(False, list(range(int(self.run.num_experts))))
        self._legend.set_lines(lines + [status], sizing=sizing + [status])

    def _sentence_experts(self, ranks: int) -> list[int]:
        """Sorted distinct expert ids the grid shows for this sentence (numpy; cached per sentence and ranks)."""
        key = (self.sentence_index, ranks)
        got = self._legend_ids.get(key)
        if got is None:
            assert self.data is not None
            e = np.asarray(self.data.experts[:, :, :ranks]).ravel()
            got = np.flatnonzero(np.bincount(e.astype(np.int64), minlength=1)).tolist() if e.size else []
            if len(self._legend_ids) > 64:
                self._legend_ids.clear()
            self._legend_ids[key] = got
        return got

    @on(RoutingGrid.CursorMoved)
    def _cursor_moved(self, msg: RoutingGrid.CursorMoved) -> None:
        # debounced: a held key repaints only the grid; the side panel follows 40 ms after the cursor rests
        self._side_pending = True
        if self._side_timer is not None:
            self._side_timer.reset()

    def _side_tick(self) -> None:
        if self._side_timer is not None:
            self._side_timer.pause()
        self._side_pending = False
        self._update_side()

    def _path_lines(self, tok: int, width: int) -> list[tuple[int, list[str], str]]:
        """Per MoE layer: the text lines of a token's path (experts + gate weights) wrapped to ``width``, and the
        line for the clipboard."""
        key = (self.sentence_index, tok, width)
        got = self._paths.get(key)
        if got is not None:
            return got
        d = self.data
        assert d is not None
        e = d.experts[tok].tolist()
        w = d.weights[tok].astype("float32").tolist()
        k = len(e[0]) if e else 0
        # "▶L12 " + items 8 wide: two spaces apart when a layer fits on one line, else one, packed, then wrapped
        sep = "  " if 6 + k * 10 - 2 <= width else " "
        per_line = max(1, (width - 6 + len(sep)) // (8 + len(sep)))
        out = []
        for li, layer in enumerate(self.moe_layers):
            items = [f"{x:>3} {y:.2f}" for x, y in zip(e[li], w[li])]
            lines = ["L" + f"{layer:<3} " + sep.join(items[:per_line])]
            for a in range(per_line, len(items), per_line):
                lines.append(" " * 5 + sep.join(items[a:a + per_line]))
            out.append((li, lines, f"L{layer}: " + "  ".join(items)))
        if len(self._paths) > 256:
            self._paths.clear()
        self._paths[key] = out
        return out

    def _update_side(self) -> None:
        if self.data is None or not self.data.n_tokens:
            return
        layer, tok = self.grid.cursor
        d = self.data
        expert = int(d.experts[tok, layer, 0])
        pos_name = d.pos[tok] or "(excluded)"
        pid = int(d.pos_ids[tok])
        lines: list[list] = [
            [(f"token {tok + 1}/{d.n_tokens}  ", _B), (repr(d.tokens[tok]), None)],
            [("word ", _B), (f"{d.words[tok] or '–'}   ", None), ("POS ", _B),
             (pos_name, pos_style(d.pos[tok]) if d.pos[tok] else _DIM)],
            [],
            [(f"expert {expert} @ layer {self.moe_layers[layer]}", _BU)],
        ]
        if pid >= 0:
            share = self.stats.share_of_pos(layer, expert, pid)
            lines.append([(f"routes {share:6.1%} of {pos_name} tokens", None)])
        dist = self.stats.distribution(layer, expert).tolist()
        order = sorted(range(len(dist)), key=lambda j: -dist[j])
        lines.append([("its POS mix (all tokens in run):", _DIM)])
        for j in order[:8]:
            if dist[j] <= 0:
                break
            bar = "█" * int(round(dist[j] * 20))
            lines.append([(f" {self.tags[j]:>5} {dist[j]:6.1%} ", None),
                          (bar, Style(color=pos_style(self.tags[j]).bgcolor))])
        lines += [[], [], [("path (layer: expert weight)", _BU)]]
        copy = []
        for li, texts, plain in self._path_lines(tok, self._side.text_width):
            here = li == layer
            for n, text in enumerate(texts):
                lines.append([(("▶" if here and n == 0 else " ") + text, _REV if here else None)])
            copy.append(plain)
        self._side.set_lines(lines)
        self.side_text = f"{d.tokens[tok]}\tword={d.words[tok]}\tpos={d.pos[tok]}\n" + "\n".join(copy)
