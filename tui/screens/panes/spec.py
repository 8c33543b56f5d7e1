"""Specialisation pane: Spec per (layer, POS) with U and dU, the per-POS summary, Spec by layer (paper Table 5, Fig. 4)."""

from __future__ import annotations

from textual import on
from textual.app import ComposeResult
from textual.containers import Horizontal
from textual.widgets import DataTable, SelectionList

from moe_tui.tui.screens.panes.base import PaneScreen, fmt, rows_as_dicts
from moe_tui.tui.widgets.plots import Plot
from moe_tui.tui.widgets.table import ShadedTable


class SpecScreen(PaneScreen):
    KIND = "spec"
    FOCUS = "#spec-matrix"
    PANE_TITLE = "Specialisation (Table 5, Fig. 4)"

    def __init__(self, run) -> None:
        super().__init__(run)
        self.show_delta = False
        self._plot_pos: tuple[str, ...] = ()

    def compose_body(self) -> ComposeResult:
        with Horizontal(id="spec-top"):
            yield SelectionList[str](id="spec-pos")
            yield ShadedTable(id="spec-matrix")
        with Horizontal(id="spec-bottom"):
            yield ShadedTable(id="spec-summary")
            yield Plot(id="spec-plot")

    def default_table(self) -> dict | None:
        return self.origin_table("spec_layer")

    def redraw(self) -> None:
        tabs = self.tables
        extra = ""
        if "summary" in tabs:
            s = rows_as_dicts(tabs["summary"])[0]
            f = fmt(2)
            gpos = str(s.get("global_pos") or "")
            extra = (f"global Spec {f(s['spec'])} ({len(gpos.split())} POS)  U {f(s['uniform'])}  "
                     f"ΔU {f(s['delta'])}  {s['tokens']} tok k={s['top_k']}/N={s['experts']}")
            extra += "  null: " + ("permutation" if "spec_null" in tabs else "run the probe pane")
            extra += f"  global POS: {gpos}"
        self._title(extra)
        if self.data is None or not self.data.tables_ready():
            return
        view = self.data.view
        sel = self.query_one("#spec-pos", SelectionList)
        if sel.option_count == 0:
            sel.add_options([(t, t) for t in view.tags])
        self._fill_matrix()
        summary = self.origin_table("spec_pos") or tabs["spec_pos"]
        self.query_one("#spec-summary", ShadedTable).set_data(
            summary["columns"], summary["rows"], shade=(1, 2), formats={1: fmt(2), 2: fmt(2)},
            report_table=summary)
        self._update_plot(force=True)

    def _fill_matrix(self) -> None:
        """The spec_layer table pivoted: one row per MoE layer, one column per POS, then U."""
        view = self.data.view
        t = self.origin_table("spec_layer") or self.tables["spec_layer"]
        col = "delta" if self.show_delta else "spec"
        ci = t["columns"].index(col)
        ui = t["columns"].index("uniform")
        by = {(r[0], r[1]): r for r in t["rows"]}
        rows = []
        for layer in view.moe_layers:
            vals = [by.get((layer, tag), [None] * 6)[ci] for tag in view.tags]
            u = next((by[(layer, tag)][ui] for tag in view.tags if (layer, tag) in by), None)
            rows.append([layer, *vals, u])
        P = len(view.tags)
        fm = {c: fmt(1) for c in range(1, P + 2)}
        self.query_one("#spec-matrix", ShadedTable).set_data(
            ["layer", *view.tags, "U"], rows, shade=range(1, P + 1), formats=fm, report_table=t, fixed_columns=1)

    def cursor_cell(self) -> tuple[int, int] | None:
        """(MoE-layer position, POS index) under the matrix cursor (None on the layer / U columns)."""
        m = self.query_one("#spec-matrix", ShadedTable)
        view = self.data.view if self.data else None
        if view is None or not m.row_count:
            return None
        raw = m.cursor_raw_index()
        c = m.cursor_coordinate.column
        if raw is None or not (1 <= c <= len(view.tags)):
            return None
        return raw, c - 1

    def _update_plot(self, force: bool = False) -> None:
        view = self.data.view if self.data else None
        if view is None or "spec_layer" not in self.tables:
            return
        chosen = tuple(self.query_one("#spec-pos", SelectionList).selected)
        if not chosen:
            cp = self.cursor_cell()
            chosen = (view.tags[cp[1]] if cp else view.tags[0],)
        if chosen == self._plot_pos and not force:
            return
        self._plot_pos = chosen
        t = self.origin_table("spec_layer") or self.tables["spec_layer"]
        by = {(r[0], r[1]): r for r in t["rows"]}
        si = t["columns"].index("spec")
        series = [(tag, [by[(layer, tag)][si] for layer in view.moe_layers]) for tag in chosen]
        u = t["rows"][0][t["columns"].index("uniform")] if t["rows"] else None
        report = t
        null = self.tables.get("spec_null") if self.origin == "all" else None  # the null is of all tokens
        if null is not None:
            nb = {(r[0], r[1]): r for r in null["rows"]}
            mi, pi = null["columns"].index("null_mean"), null["columns"].index("null_p95")
            tag = chosen[0]
            series.append((f"{tag} null mean", [nb[(layer, tag)][mi] for layer in view.moe_layers]))
            series.append((f"{tag} null p95", [nb[(layer, tag)][pi] for layer in view.moe_layers]))
            report = null
        self.query_one("#spec-plot", Plot).lines(
            view.moe_layers, series, title="Spec by layer (gray line: uniform U)", xlabel="decoder layer",
            hlines=[(u, "U")], report_table=report)

    @on(SelectionList.SelectedChanged, "#spec-pos")
    def _pos_chosen(self) -> None:
        self._update_plot()

    @on(DataTable.CellHighlighted, "#spec-matrix")
    def _matrix_moved(self) -> None:
        if not self.query_one("#spec-pos", SelectionList).selected:
            self._update_plot()

    @on(DataTable.CellSelected, "#spec-matrix")
    def _matrix_selected(self, event: DataTable.CellSelected) -> None:
        event.stop()
        self.action_jump()

    def action_toggle_delta(self) -> None:
        self.show_delta = not self.show_delta
        if "spec_layer" in self.tables:
            self._fill_matrix()
        self.notify("matrix shows " + ("ΔU = Spec − U" if self.show_delta else "Spec"), timeout=2)

    def jump_target(self):
        """Where the matrix cursor leads in the grid (:func:`moe_tui.core.inspect.explore.jump_target`), or None."""
        from moe_tui.core.inspect.explore import jump_target

        cell = self.cursor_cell()
        if cell is None:
            return None
        return jump_target(self.run, self.data.view, *cell)

    def expert_target(self) -> tuple[int, int] | None:
        """The top expert of the cursor's (layer, POS) cell: the one :meth:`jump_target` highlights."""
        target = self.jump_target()
        return None if target is None else (target.layer_idx, target.expert)

    def action_jump(self) -> None:
        target = self.jump_target()
        if target is None:
            self.notify("Put the cursor on a POS column with tokens (not layer / U)", severity="warning", timeout=3)
            return
        self.app.show_in_grid(self.run, target)
