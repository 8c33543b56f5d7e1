"""Routing grid screen: sentence list + search, the tokens × MoE-layers grid, legend, side panel."""

from __future__ import annotations

import csv
import io
import os
import re
import tempfile
from pathlib import Path

from rich.style import Style
from rich.text import Text
from textual import on
from textual.app import ComposeResult
from textual.containers import Horizontal, Vertical, VerticalScroll
from textual.screen import Screen
from textual.widgets import Footer, Input, OptionList, Static
from textual.widgets.option_list import Option

from core.inspect import LayerStatsCache, token_path
from tui import actions
from tui.runview import SentenceData, display_token, n_sentences, run_title, sentence_data
from tui.widgets.palette import expert_style, pos_style
from tui.widgets.routing_grid import RoutingGrid

SIDE_PANEL_DELAY_S = 0.04
CSV_HEADER = ("token", "word", "pos", "layer", "rank", "expert", "weight")


def sentence_rows(data: SentenceData, moe_layers: list[int], ranks: int) -> list[tuple]:
    """The rows of what the grid shows for one sentence (token order, then layer, then rank)."""
    rows = []
    for i in range(data.n_tokens):
        for li, layer in enumerate(moe_layers):
            for r in range(ranks):
                rows.append((data.tokens[i], data.words[i], data.pos[i], int(layer), r,
                             int(data.experts[i, li, r]), f"{float(data.weights[i, li, r]):.4f}"))
    return rows


def write_csv_atomic(path: Path, header: tuple, rows: list[tuple]) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=path.name + ".tmp-", dir=str(path.parent))
    try:
        with os.fdopen(fd, "w", encoding="utf-8", newline="") as fh:
            w = csv.writer(fh)
            w.writerow(header)
            w.writerows(rows)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        try:
            os.unlink(tmp)
        except OSError:
            pass
        raise
    return path


class GridScreen(Screen):
    SCOPE = "grid"
    BINDINGS = actions.bindings("grid")

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

    def compose(self) -> ComposeResult:
        with Horizontal(id="grid-main"):
            with Vertical(id="sentence-pane"):
                yield Input(placeholder="/ search sentences", id="search")
                yield OptionList(id="sentence-list")
            with Vertical(id="grid-pane"):
                yield Static("", id="grid-title")
                yield RoutingGrid(id="grid")
                yield Static("", id="legend")
            with VerticalScroll(id="side-panel"):
                yield Static("", id="side-token")
                yield Static("", id="side-expert")
                yield Static("", id="side-path")
        yield Footer()

    def on_mount(self) -> None:
        self.sub_title = run_title(self.run)
        self._fill_sentences()
        self.show_sentence(0)
        self.query_one(RoutingGrid).focus()

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
        grid = self.query_one(RoutingGrid)
        grid.set_data(self.data, self.moe_layers, int(self.run.num_experts), int(self.run.top_k))
        self.query_one("#grid-title", Static).update(
            Text.assemble((f"sentence {i + 1}/{self.n_sent}  ", "bold"), (f"[{self.data.sent_id}] ", "dim"),
                          self.data.text if len(self.data.text) <= 200 else self.data.text[:199] + "…")
        )
        self._highlight_in_list()
        self._update_legend()

    # ---- actions -----------------------------------------------------------------------------------------
    @property
    def grid(self) -> RoutingGrid:
        return self.query_one(RoutingGrid)

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
        self.grid.show_all_k = not self.grid.show_all_k
        self.notify(f"cells show {'all k' if self.grid.show_all_k else 'top-1'} expert ids", timeout=2)

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
        try:
            write_csv_atomic(path, CSV_HEADER, rows)
        except OSError as exc:
            self.app.show_error("Export failed", f"{path}: {exc}")
            return
        self.last_export = path
        self.notify(f"Exported {len(rows)} rows to {path.resolve()}", title="CSV export", markup=False, timeout=6)

    def action_copy_cell(self) -> None:
        self.app.copy_to_clipboard(self.side_text)
        self.notify("Copied the token's path (OSC 52)", timeout=2)

    def action_back(self) -> None:
        search = self.query_one("#search", Input)
        if search.has_focus:
            self.grid.focus()
            return
        self.app.pop_screen()

    # ---- legend + side panel -----------------------------------------------------------------------------
    def _update_legend(self) -> None:
        grid = self.grid
        t = Text()
        if grid.colour_mode == "pos":
            t.append("POS: ", style="bold")
            for tag in self.tags:
                t.append(f" {tag} ", style=pos_style(tag))
                t.append(" ")
        elif self.data is not None:
            ids = sorted({int(x) for x in self.data.experts[:, :, : grid.visible_ranks()].ravel().tolist()})
            n = int(self.run.num_experts)
            t.append(f"experts ({len(ids)} of {n} in this sentence): ", style="bold")
            for e in ids[:96]:
                t.append(f"{e:>{len(str(n - 1))}}", style=expert_style(e, n))
                t.append(" ")
            if len(ids) > 96:
                t.append(f"… +{len(ids) - 96}")
        if grid.highlight is not None:
            t.append(f"\nhighlight: expert {grid.highlight} (x clears, [ ] step)", style="bold reverse")
        self.query_one("#legend", Static).update(t)

    @on(RoutingGrid.CursorMoved)
    def _cursor_moved(self, msg: RoutingGrid.CursorMoved) -> None:
        # debounced: a held key repaints only the grid; the side panel follows 40 ms after the cursor rests
        if self._side_timer is not None:
            self._side_timer.stop()
        self._side_timer = self.set_timer(SIDE_PANEL_DELAY_S, self._update_side)

    def _update_side(self) -> None:
        if self.data is None or not self.data.n_tokens:
            return
        layer, tok = self.grid.cursor
        d = self.data
        expert = int(d.experts[tok, layer, 0])
        pos_name = d.pos[tok] or "(excluded)"
        pid = int(d.pos_ids[tok])
        head = Text()
        head.append(f"token {tok + 1}/{d.n_tokens}  ", style="bold")
        head.append(repr(d.tokens[tok]) + "\n")
        head.append("word ", style="bold")
        head.append(f"{d.words[tok] or '–'}   ")
        head.append("POS ", style="bold")
        head.append(pos_name, style=pos_style(d.pos[tok]) if d.pos[tok] else "dim")
        self.query_one("#side-token", Static).update(head)

        ex = Text()
        ex.append(f"\nexpert {expert} @ layer {self.moe_layers[layer]}\n", style="bold underline")
        if pid >= 0:
            share = self.stats.share_of_pos(layer, expert, pid)
            ex.append(f"routes {share:6.1%} of {pos_name} tokens\n")
        dist = self.stats.distribution(layer, expert)
        order = sorted(range(len(dist)), key=lambda j: -dist[j])
        ex.append("its POS mix (all tokens in run):\n", style="dim")
        for j in order[:8]:
            if dist[j] <= 0:
                break
            bar = "█" * int(round(dist[j] * 20))
            ex.append(f" {self.tags[j]:>5} {dist[j]:6.1%} ")
            ex.append(bar + "\n", style=Style(color=pos_style(self.tags[j]).bgcolor))
        self.query_one("#side-expert", Static).update(ex)

        path = token_path(d.experts, d.weights, tok, self.moe_layers)
        pt = Text()
        pt.append("\npath (layer: expert weight)\n", style="bold underline")
        lines = []
        for li, step in enumerate(path):
            parts = "  ".join(f"{e:>3} {w:.2f}" for e, w in zip(step.experts, step.weights))
            marker = "▶" if li == layer else " "
            pt.append(f"{marker}L{step.layer:<3} {parts}\n", style="reverse" if li == layer else "")
            lines.append(f"L{step.layer}: {parts}")
        self.query_one("#side-path", Static).update(pt)
        self.side_text = (f"{d.tokens[tok]}\tword={d.words[tok]}\tpos={d.pos[tok]}\n" + "\n".join(lines))
