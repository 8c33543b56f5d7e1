"""Routing grid screen: sentence list + search, the tokens × MoE-layers grid, legend, side panel."""

from __future__ import annotations

import gc
import os
import re
import time
from dataclasses import dataclass
from functools import partial
from pathlib import Path

import numpy as np
from rich.style import Style
from textual import on
from textual.app import ComposeResult
from textual.containers import Horizontal, Vertical
from textual.message import Message
from textual.screen import Screen
from textual.widgets import Footer, Input
from textual.worker import get_current_worker

from moe_tui.core.inspect.explore import LayerStatsCache
from moe_tui.tui import actions
from moe_tui.tui.runview import SentenceData, n_sentences, run_title, sentence_data, sentence_texts
from moe_tui.tui.widgets.palette import expert_style, pos_style
from moe_tui.tui.widgets.routing_grid import RoutingGrid
from moe_tui.tui.widgets.sentence_list import SentenceList
from moe_tui.tui.widgets.text_panel import ScrollingTextBox, TextBox

SIDE_PANEL_DELAY_S = 0.04
IDLE_GC_S = 1.0     # a full garbage collection runs after this long without a key, when one is coming due
GC_GEN2_THRESHOLD = 100
SEARCH_POST_S = 0.08  # a running search shows its new matches at most this often
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


@dataclass
class SearchHits(Message):
    """Matches of one search, posted by the search worker as it goes (``generation`` tells stale searches apart)."""

    generation: int
    hits: np.ndarray
    done: bool
    error: str = ""


@dataclass
class DiffOpened(Message):
    """The second run for the diff overlay, opened and checked (``run`` None: ``error`` says why not)."""

    run: object
    error: str = ""


@dataclass
class DiffCounted(Message):
    run: object
    table: dict


class GridScreen(Screen):
    """The routing grid screen.

    Speed: a cursor key repaints only the grid lines it touches (see RoutingGrid). The title, legend and side panel
    are Line-API panes (moe_tui.tui.widgets.text_panel) that repaint without a screen layout; the side panel follows the
    cursor 40 ms after it rests, and is only repainted when its text changed.
    """

    SCOPE = "grid"
    BINDINGS = actions.bindings("grid")
    AUTO_FOCUS = "#grid"

    def __init__(self, run, diff_run=None, *, start: tuple[int, int, int] | None = None) -> None:
        super().__init__()
        self.run = run
        self.diff_run = diff_run          # a second run of the same tokens, overlaid (moe_tui.core.inspect.run_pair)
        self.diff_table: dict | None = None
        self._start = start               # (sentence, token, MoE-layer position) to open on
        self.n_sent = n_sentences(run)
        self.sentence_index = 0
        self.data: SentenceData | None = None
        self.tags = tuple(run.tags)
        self.moe_layers = [int(x) for x in run.moe_layers]
        self.stats = LayerStatsCache(run.experts, run.pos, int(run.num_experts), len(self.tags))
        self._search = ""
        self._search_gen = 0
        self._search_found = 0
        self.searching = False          # a search worker is still finding matches
        self.texts = sentence_texts(run)
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
                yield SentenceList(id="sentence-list")
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
        self._list = self.query_one("#sentence-list", SentenceList)
        self._list.set_texts(self.texts)
        if self._start is not None:
            self.jump_to(*self._start)
        else:
            self.show_sentence(0)
        self._grid.focus()
        if self.diff_run is not None:
            self._start_diff()
        # the side panel's per-layer counts: all layers in one background pass (each chunk holds the GIL briefly)
        self.run_worker(self._fill_stats, thread=True, group="stats", exit_on_error=False, description="layer counts")
        # whoever changes these (keys, the palette, another pane jumping here) gets the legend redrawn
        for attr in ("highlight", "colour_mode", "show_all_k"):
            self.watch(self._grid, attr, self._grid_mode_changed, init=False)
        # Full (generation-2) garbage collections walk every live object — the run, Textual's DOM and caches — and
        # took ~100 ms, landing on random keystrokes. Objects alive now are long-lived: move them out of the
        # collector's way (freed by reference counting as usual; only cycles among them are never collected).
        gc.freeze()
        # Textual's strips cache themselves (reference cycles), so each frame leaves cyclic garbage and Python's
        # default thresholds made a full collection every ~8 keys. Make them ten times rarer, and run them while the
        # user pauses rather than on a keystroke.
        g0, g1, g2 = gc.get_threshold()
        gc.set_threshold(g0, g1, max(g2, GC_GEN2_THRESHOLD))
        self._last_key = time.monotonic()
        self.set_interval(IDLE_GC_S / 2, self._idle_gc)

    def on_key(self, event) -> None:
        self._last_key = time.monotonic()

    def _idle_gc(self) -> None:
        """A full (generation-2) collection takes tens of milliseconds; Python runs one after about ten young ones.
        Run it now, during a pause, once some young collections have happened, so that typing never waits for it."""
        if time.monotonic() - self._last_key >= IDLE_GC_S and gc.get_count()[2] >= 5:
            gc.collect()

    def _fill_stats(self) -> None:
        worker = get_current_worker()
        self.stats.fill(should_stop=lambda: worker.is_cancelled)

    # ---- sentence list / search ----------------------------------------------------------------------------
    # The list is virtual (SentenceList): it holds an array of sentence indices and draws only the lines on screen.
    # A search runs in a thread worker over the stored text (moe_tui.cache.columns.search_strings) and posts its
    # matches chunk by chunk; a newer search makes older results stale (generation) and stops the older worker.
    @on(Input.Changed, "#search")
    def _search_changed(self, event: Input.Changed) -> None:
        self.start_search(event.value.strip())

    def start_search(self, query: str) -> None:
        self._search = query
        self._search_gen += 1
        self._search_found = 0
        self.searching = bool(query)
        search = self.query_one("#search", Input)
        if not query:
            self.workers.cancel_group(self, "search")
            search.border_subtitle = ""
            self._list.set_rows(None)
            self._list.show_sentence(self.sentence_index)
            return
        search.border_subtitle = "searching…"
        self._list.set_rows(np.zeros(0, dtype=np.int64), status="searching…")
        self.run_worker(partial(self._search_job, query, self._search_gen), thread=True, exclusive=True,
                        group="search", exit_on_error=False, description="search sentences")

    def _search_job(self, query: str, generation: int) -> None:
        from moe_tui.cache.columns import search_strings

        worker = get_current_worker()
        pending: list[np.ndarray] = []
        last = 0.0
        try:
            for hits in search_strings(self.texts, query):
                if worker.is_cancelled or generation != self._search_gen:
                    return
                if len(hits):
                    pending.append(hits)
                now = time.monotonic()
                if pending and now - last >= SEARCH_POST_S:  # the list grows a few times a second, not per chunk
                    self.post_message(SearchHits(generation, np.concatenate(pending), False))
                    pending, last = [], now
        except Exception as exc:  # noqa: BLE001 - said on the search box, the matches so far stay listed
            self.post_message(SearchHits(generation, np.zeros(0, dtype=np.int64), True,
                                         f"search failed: {type(exc).__name__}: {exc}"))
            return
        rest = np.concatenate(pending) if pending else np.zeros(0, dtype=np.int64)
        self.post_message(SearchHits(generation, rest, True))

    @on(SearchHits)
    def _search_hits(self, msg: SearchHits) -> None:
        if msg.generation != self._search_gen:
            return
        self._search_found += len(msg.hits)
        n = self._search_found
        if msg.done:
            self.searching = False
            status = "no sentence matches" if n == 0 else f"{n:,} match{'es' if n != 1 else ''}"
            if msg.error:
                status = "search failed"
                self.notify(msg.error, title="Search failed", severity="error", markup=False)
        else:
            status = f"searching… {n:,}"
        self.query_one("#search", Input).border_subtitle = status
        had = self._list.n_rows
        # the list's own last line speaks only while it is empty (the count is on the search box)
        self._list.append_rows(msg.hits, status="" if n else status)
        if had == 0 and self._list.n_rows:
            self._list.show_sentence(self.sentence_index) or self._list.show_sentence(int(msg.hits[0]))

    @on(Input.Submitted, "#search")
    def _search_submitted(self, event: Input.Submitted) -> None:
        lst = self._list
        if lst.n_rows:
            self.show_sentence(lst.sentence_at(lst.cursor))
        self.grid.focus()

    @on(SentenceList.Highlighted, "#sentence-list")
    @on(SentenceList.Selected, "#sentence-list")
    def _sentence_picked(self, event) -> None:
        if event.index != self.sentence_index:
            self.show_sentence(event.index)

    def show_sentence(self, i: int) -> None:
        if self.n_sent == 0:
            return
        i = max(0, min(self.n_sent - 1, i))
        self.sentence_index = i
        self.data = sentence_data(self.run, i)
        grid = self.grid
        diff = None
        if self.diff_run is not None:
            from moe_tui.core.inspect.diff import expert_set_differs

            a, b = self.data.start, self.data.start + self.data.n_tokens
            diff = expert_set_differs(self.data.experts, np.asarray(self.diff_run.experts[a:b]))
        grid.set_data(self.data, self.moe_layers, int(self.run.num_experts), int(self.run.top_k), diff=diff,
                      diff_tag=getattr(self.diff_run, "run_id", None))
        text = self.data.text if len(self.data.text) <= 200 else self.data.text[:199] + "…"
        self._title.set_lines([[(f"sentence {i + 1}/{self.n_sent}  ", _B), (f"[{self.data.sent_id}] ", _DIM),
                                (text, None)]])
        self._list.show_sentence(i)
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

    def jump_to(self, sentence: int, token: int, layer_idx: int) -> None:
        """Show ``sentence`` with the cursor on ``token`` (index in the sentence) at MoE-layer position
        ``layer_idx``."""
        if sentence != self.sentence_index or self.data is None:
            self.show_sentence(sentence)
        self.grid.set_cursor(layer=layer_idx, token=token)

    # ---- word view, expert card, diff ----------------------------------------------------------------------
    def action_word_view(self, typed: bool = False) -> None:
        layer, tok = self.grid.cursor
        query = ""
        if not typed and self.data is not None and self.data.n_tokens:
            if int(self.data.pos_ids[tok]) < 0:
                self.notify("This token is not analysed (special or unaligned): type a word", timeout=3)
            else:
                query = self.data.words[tok]
        self.app.show_word(self.run, query, by="form", layer_idx=layer)

    def action_expert_card(self) -> None:
        if self.data is None or not self.data.n_tokens:
            return
        layer, tok = self.grid.cursor
        expert = self.grid.highlight if self.grid.highlight is not None else int(self.data.experts[tok, layer, 0])
        self.app.show_expert(self.run, layer, expert)

    def action_diff_run(self) -> None:
        if self.diff_run is not None:
            self.set_diff(None)
            self.notify("Diff overlay cleared", timeout=2)
            return
        try:
            runs = [r for r in self.app.run_store().list_runs()
                    if r.status == "complete" and r.run_id != str(getattr(self.run, "run_id", ""))
                    and (r.tokens is None or r.tokens == len(self.run.token_ids))]
        except Exception as exc:  # noqa: BLE001 - a broken cache is said in a dialog
            self.app.show_error("Cannot list runs", f"{type(exc).__name__}: {exc}")
            return
        if not runs:
            self.notify("No other cached run holds as many tokens as this one (same corpus and tokenizer)",
                        severity="warning", timeout=5)
            return
        self.app.pick_run(runs, "Diff against which run? (same corpus and tokenizer)", self._diff_picked)

    def _diff_picked(self, run_id: str | None) -> None:
        if run_id:
            self.run_worker(partial(self._open_diff, run_id), thread=True, exclusive=True, group="diff-open",
                            exit_on_error=False, description="open the second run")

    def _open_diff(self, run_id: str) -> None:
        from moe_tui.core.inspect.run_pair import check_pair

        try:
            other = self.app.run_store().open(run_id)
            check_pair(self.run, other)
        except Exception as exc:  # noqa: BLE001 - one line in an error dialog
            self.post_message(DiffOpened(None, str(exc) if hasattr(exc, "exit_code") else
                                         f"{type(exc).__name__}: {exc}"))
            return
        self.post_message(DiffOpened(other))

    @on(DiffOpened)
    def _diff_opened(self, msg) -> None:
        if msg.run is None:
            self.app.show_error("Cannot diff these runs", msg.error)
            return
        self.set_diff(msg.run)

    def set_diff(self, other) -> None:
        """Overlay ``other`` (None: no overlay) and count its disagreement per layer in the background."""
        self.diff_run = other
        self.diff_table = None
        self.workers.cancel_group(self, "diff")
        if self.n_sent:
            self.show_sentence(self.sentence_index)
            self.grid.set_cursor(*self.grid.cursor)
        if other is not None:
            self._start_diff()
        self._update_side()

    def _start_diff(self) -> None:
        self.run_worker(partial(self._diff_job, self.diff_run), thread=True, exclusive=True, group="diff",
                        exit_on_error=False, description="disagreement per layer")

    def _diff_job(self, other) -> None:
        from moe_tui.core.inspect.run_pair import layer_disagreement

        worker = get_current_worker()
        table = layer_disagreement(self.run, other, should_stop=lambda: worker.is_cancelled)
        if table is not None and not worker.is_cancelled:
            self.post_message(DiffCounted(other, table))

    @on(DiffCounted)
    def _diff_counted(self, msg) -> None:
        if msg.run is self.diff_run:
            self.diff_table = msg.table
            self._update_side()

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
        self.app.back_from(self)

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
            n = int(self.run.num_experts)
            e = e[e < n]  # a rank a layer does not use holds a sentinel id: not an expert
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
        n_experts = int(self.run.num_experts)
        k = len(e[0]) if e else 0
        # "▶L12 " + items 8 wide: two spaces apart when a layer fits on one line, else one, packed, then wrapped
        sep = "  " if 6 + k * 10 - 2 <= width else " "
        per_line = max(1, (width - 6 + len(sep)) // (8 + len(sep)))
        out = []
        for li, layer in enumerate(self.moe_layers):
            items = [f"{x:>3} {y:.2f}" for x, y in zip(e[li], w[li]) if x < n_experts]  # sentinels: no expert
            lines = ["L" + f"{layer:<3} " + sep.join(items[:per_line])]
            for a in range(per_line, len(items), per_line):
                lines.append(" " * 5 + sep.join(items[a:a + per_line]))
            out.append((li, lines, f"L{layer}: " + "  ".join(items)))
        if len(self._paths) > 256:
            self._paths.clear()
        self._paths[key] = out
        return out

    def _diff_lines(self, tok: int, layer: int) -> list[list]:
        """Side panel lines of the diff overlay: the cursor cell in both runs, then the disagreement per layer."""
        d = self.data
        assert d is not None
        other = np.asarray(self.diff_run.experts[d.start + tok, layer]).tolist()
        mine = d.experts[tok, layer].tolist()
        same = sorted(mine) == sorted(other)
        rid = str(getattr(self.diff_run, "run_id", "B"))[:10]
        lines: list[list] = [[], [(f"diff vs run {rid}", _BU)],
                             [("this run ", _DIM), (" ".join(map(str, mine)), None)],
                             [("run B    ", _DIM), (" ".join(map(str, other)), None),
                              ("   same set" if same else "   ≠ set differs", _DIM if same else _B)]]
        t = self.diff_table
        if t is None:
            lines.append([("disagreement per layer: counting…", _DIM)])
            return lines
        lines.append([("layer  set ≠   top-1 ≠", _DIM)])
        for li, row in enumerate(t["rows"]):
            share, top1 = row[3], row[5]
            text = f"L{row[0]:<4} {share:7.2%}  {top1:7.2%}" if share is not None else f"L{row[0]:<4}  –"
            lines.append([(("▶" if li == layer else " ") + text, _REV if li == layer else None)])
        return lines

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
        if self.diff_run is not None:
            lines += self._diff_lines(tok, layer)
        lines += [[], [], [("path (layer: expert weight)", _BU)]]
        copy = []
        for li, texts, plain in self._path_lines(tok, self._side.text_width):
            here = li == layer
            for n, text in enumerate(texts):
                lines.append([(("▶" if here and n == 0 else " ") + text, _REV if here else None)])
            copy.append(plain)
        self._side.set_lines(lines)
        self.side_text = f"{d.tokens[tok]}\tword={d.words[tok]}\tpos={d.pos[tok]}\n" + "\n".join(copy)
