"""KL pane: KL(expert ‖ corpus) per expert and layer, μMin/μMax/μMean, one expert's POS bars (paper Table 3, Fig. 5)."""

from __future__ import annotations

from textual import on
from textual.app import ComposeResult
from textual.containers import Horizontal, Vertical
from textual.widgets import DataTable

from moe_tui.tui.screens.panes.base import PaneScreen, fmt
from moe_tui.tui.widgets.plots import Plot
from moe_tui.tui.widgets.table import ShadedTable


class KLScreen(PaneScreen):
    KIND = "kl"
    FOCUS = "#kl-heat"
    PANE_TITLE = "KL(expert ‖ corpus), nats (Table 3, Fig. 5)"

    def compose_body(self) -> ComposeResult:
        with Horizontal(id="kl-main"):
            with Vertical(id="kl-left"):
                yield ShadedTable(id="kl-summary")
                yield ShadedTable(id="kl-heat")
            yield Plot(id="kl-bars")

    def default_table(self) -> dict | None:
        return self.tables.get("kl_layer_expert")

    def redraw(self) -> None:
        self._title("rows: experts, columns: decoder layers; cursor: POS bars")
        tabs = self.tables
        if self.data is None or not self.data.tables_ready() or "kl_layer_expert" not in tabs:
            return
        view = self.data.view
        s = tabs["kl_summary"]
        self.query_one("#kl-summary", ShadedTable).set_data(
            ["μMin", "μMax", "μMean"], s["rows"], formats={i: fmt(3) for i in range(3)}, report_table=s)
        t = tabs["kl_layer_expert"]
        ki = t["columns"].index("kl")
        by = {(r[0], r[1]): r[ki] for r in t["rows"]}
        rows = [[e, *[by.get((layer, e)) for layer in view.moe_layers]] for e in range(view.n_experts)]
        L = len(view.moe_layers)
        self.query_one("#kl-heat", ShadedTable).set_data(
            ["expert", *[f"L{layer}" for layer in view.moe_layers]], rows,
            shade=range(1, L + 1), formats={c: fmt(2) for c in range(1, L + 1)}, report_table=t, fixed_columns=1)
        self._update_bars()

    @on(DataTable.CellHighlighted, "#kl-heat")
    def _heat_moved(self) -> None:
        self._update_bars()

    def selected_cell(self) -> tuple[int, int] | None:
        """(MoE-layer position, expert) under the heatmap cursor."""
        h = self.query_one("#kl-heat", ShadedTable)
        view = self.data.view if self.data else None
        if view is None or not h.row_count:
            return None
        raw = h.cursor_raw_index()
        li = max(0, h.cursor_coordinate.column - 1)
        if raw is None or li >= len(view.moe_layers):
            return None
        return li, int(h.raw_rows[raw][0])

    def expert_target(self) -> tuple[int, int] | None:
        return self.selected_cell()

    def _update_bars(self) -> None:
        from moe_tui.core.analysis.tables import table_kl_expert_pos

        cell = self.selected_cell()
        if cell is None:
            return
        li, e = cell
        view = self.data.view
        t = table_kl_expert_pos(view, li, e)
        h = self.query_one("#kl-heat", ShadedTable)
        kl = h.raw_rows[h.cursor_raw_index()][li + 1]
        klt = "–" if kl is None else f"{kl:.3f}"
        self.query_one("#kl-bars", Plot).bars(
            list(view.tags), [(f"expert {e}", [r[1] for r in t["rows"]]), ("corpus", [r[2] for r in t["rows"]])],
            title=f"expert {e} @ layer {view.moe_layers[li]}: KL {klt} nats", report_table=t)
