"""Probe pane: MLP probes and controls, confusion matrices, layer ablation, t-SNE (paper Table 1, Figs. 2-3), and
the information measures (``report --information``): the gains in bits per token by POS, the per-layer curve."""

from __future__ import annotations

import time

from rich.text import Text
from textual.app import ComposeResult
from textual.containers import Horizontal
from textual.widgets import ProgressBar, Static

from moe_tui.core.analysis.tables import PROBE_ROWS, probe_rows
from moe_tui.tui.screens.panes.base import PaneScreen, fmt, rows_as_dicts
from moe_tui.tui.widgets.plots import Plot
from moe_tui.tui.widgets.table import ShadedTable


def _not_converged(tables: dict) -> str:
    """The probes of probe.csv / ablation.csv that stopped at max_iter (``converged`` false), as short text."""
    out = []
    for stem, key in (("probe", "variant"), ("ablation", None)):
        t = tables.get(stem)
        if t and "converged" in t["columns"]:
            c = t["columns"].index("converged")
            out += [str(r[0]) if key else f"ablation {r[0]} {r[1]}" for r in t["rows"] if r[c] is False]
    if not out:
        return ""
    return f"{len(out)} stopped at max_iter: " + ", ".join(out[:2]) + ("…" if len(out) > 2 else "")


#: probe.csv columns shown first in the pane (the others follow in file order; exports keep the file's order)
_FIRST = ("variant", "accuracy", "converged", "n_iter", "accuracy_sd")


def _probe_display_columns(columns: list[str]) -> list[int]:
    """Column positions of probe.csv in display order: whether a probe converged sits beside its accuracy."""
    first = [columns.index(c) for c in _FIRST if c in columns]
    return first + [i for i in range(len(columns)) if i not in first]


def _converged(x) -> str:
    """``converged`` cell: ``yes``, ``max_iter`` (stopped at max_iter, not by the tol rule) or a dash."""
    return "–" if x is None else "yes" if x else "max_iter"


class ProbeScreen(PaneScreen):
    KIND = "probe"
    PANE_TITLE = "POS probes + controls (Table 1, Figs. 2-3)"

    def __init__(self, run) -> None:
        super().__init__(run)
        self.variant = PROBE_ROWS[0]          # the confusion matrix shown; v steps through the probe rows

    def compose_body(self) -> ComposeResult:
        with Horizontal(id="probe-status-row"):
            yield Static("", id="probe-status")
            yield ProgressBar(id="probe-progress", show_eta=False, total=1)
        with Horizontal(id="probe-row1"):
            yield ShadedTable(id="probe-acc")
            yield ShadedTable(id="probe-controls")
            yield Plot(id="probe-ablation")
        with Horizontal(id="probe-row2"):
            yield ShadedTable(id="probe-confusion")
            yield Plot(id="probe-tsne")
        with Horizontal(id="probe-row3"):
            yield ShadedTable(id="probe-info")
            yield Plot(id="probe-layers")

    def default_table(self) -> dict | None:
        return self.tables.get("probe")

    def redraw(self) -> None:
        self._title()
        d = self.data
        status = self.query_one("#probe-status", Static)
        bar = self.query_one("#probe-progress", ProgressBar)
        if d is None:
            return
        if d.probe_running:
            stage, done, total = d.progress
            stage = f"information: {stage}" if d.running == "information" else stage
            status.update(Text(f"running: {stage} ({done}/{total}) · {time.monotonic() - d.started:.0f} s · c cancels",
                               style="bold"))
            bar.update(total=max(1, total), progress=min(done, max(1, total)))
        elif d.probe_done:
            capped = _not_converged(self.tables)
            warn = Text(f" · {capped}", style="bold yellow") if capped else Text("")
            info = " · i: information" if not d.information_done else ""
            status.update(Text("probes + controls done", style="dim") + warn
                          + Text(f" · v: next confusion variant · r: run again{info}", style="dim"))
            bar.update(total=1, progress=1)
        else:
            last = "last run cancelled · " if d.progress[0] == "cancelled" else ""
            status.update(Text(f"{last}r trains the MLP probes + controls, i the information probes (background, "
                               "minutes on a real run)", style="italic"))
            bar.update(total=1, progress=0)
        tabs = self.tables
        by_origin = self.origin_table("probe") if self.origin != "all" else None
        if by_origin is not None:  # probes trained on the origin shown, tested on each origin
            self.query_one("#probe-acc", ShadedTable).set_data(
                by_origin["columns"], by_origin["rows"], shade=(3,), shade_range=(0.0, 1.0), formats={3: fmt(3)},
                report_table=by_origin)
        elif "probe" in tabs:
            p = tabs["probe"]
            cols = _probe_display_columns(p["columns"])
            conv = [p["columns"][c] for c in cols].index("converged") if "converged" in p["columns"] else -1
            self.query_one("#probe-acc", ShadedTable).set_data(
                [p["columns"][c] for c in cols], [[r[c] for c in cols] for r in p["rows"]], shade=(1,),
                shade_range=(0.0, 1.0), formats={1: fmt(3), conv: _converged}, report_table=p)
        if "controls" in tabs:
            c = tabs["controls"]
            self.query_one("#probe-controls", ShadedTable).set_data(
                ["control", "value"], c["rows"], formats={1: fmt(3)}, report_table=c)
        if "ablation" in tabs:
            self._draw_ablation(tabs["ablation"])
        else:
            self.query_one("#probe-ablation", Plot).empty("ablation: run the probe (r)", title="layer ablation")
        if "tsne" in tabs:
            self._draw_tsne(tabs["tsne"])
        else:
            self.query_one("#probe-tsne", Plot).empty("t-SNE: run the probe (r)", title="t-SNE of routing paths")
        self._draw_confusion()
        if "information" in tabs:
            self._draw_information(tabs["information"])
        else:
            self.query_one("#probe-info", ShadedTable).set_data(
                ["information (bits/token)"], [["i computes it"]])
        if "layer_probe" in tabs:
            self._draw_layers(tabs["layer_probe"])
        else:
            self.query_one("#probe-layers", Plot).empty("per-layer probes: press i", title="POS per MoE layer")

    #: information.csv measures as short column headers of the pane's table
    SHORT = {"gain_routes_bits": "routes", "gain_routes_given_token_bits": "routes|token",
             "gain_logits_bits": "logits", "gain_logits_given_token_bits": "logits|token",
             "gain_logits_over_routes_bits": "logits-routes", "gain_logits_over_routes_given_token_bits": "l-r|token"}

    def _draw_information(self, t: dict) -> None:
        """information.csv pivoted: one row per POS (all tokens first), one column per gain (bits per token)."""
        measures = list(dict.fromkeys(r[0] for r in t["rows"]))
        pos = list(dict.fromkeys(r[1] for r in t["rows"]))
        val = {(r[0], r[1]): r[2] for r in t["rows"]}
        rows = [["all" if p == "" else p, *(val.get((m, p)) for m in measures)] for p in pos]
        cols = ["pos", *(self.SHORT.get(m, m) for m in measures)]
        self.query_one("#probe-info", ShadedTable).set_data(
            cols, rows, shade=range(1, len(cols)), formats={i: fmt(3) for i in range(1, len(cols))}, report_table=t,
            fixed_columns=1)

    def _draw_layers(self, t: dict) -> None:
        rows = rows_as_dicts(t)
        xs = [r["layer"] for r in rows]
        self.query_one("#probe-layers", Plot).lines(
            xs, [("CE of POS given the layer's route", [r["cross_entropy_bits"] for r in rows]),
                 ("gain given the token", [r["gain_given_token_bits"] for r in rows])],
            title="POS per MoE layer (bits per token)", xlabel="MoE layer", report_table=t)

    def _draw_ablation(self, t: dict) -> None:
        rows = rows_as_dicts(t)
        xs = sorted({r["removed"] for r in rows})
        series = []
        for side in ("first", "last"):
            by = {r["removed"]: r["accuracy"] for r in rows if r["side"] == side}
            if by:
                series.append((f"{side} layers removed", [by.get(x) for x in xs]))
        self.query_one("#probe-ablation", Plot).lines(xs, series, title="ablation: accuracy vs MoE layers removed",
                                                      xlabel="layers removed", report_table=t)

    def _draw_tsne(self, t: dict) -> None:
        rows = t["rows"]
        tags = list(self.data.view.tags) if self.data.view is not None else sorted({r[3] for r in rows})
        groups = []
        for tag in tags:
            pts = [r for r in rows if r[3] == tag]
            if pts:
                groups.append((tag, [r[1] for r in pts], [r[2] for r in pts]))
        self.query_one("#probe-tsne", Plot).scatter(groups, title=f"t-SNE of top-k paths ({len(rows)} tokens)",
                                                    report_table=t)

    def _draw_confusion(self) -> None:
        t = self.tables.get(f"confusion_{self.variant}")
        if t is None or self.data is None or self.data.view is None:
            return
        tags = list(self.data.view.tags)
        idx = {tag: i for i, tag in enumerate(tags)}
        m = [[0] * len(tags) for _ in tags]
        for true, pred, n in t["rows"]:
            m[idx[true]][idx[pred]] = n
        rows = [[tag, *m[i]] for i, tag in enumerate(tags)]
        self.query_one("#probe-confusion", ShadedTable).set_data(
            [f"{self.variant} true\\pred", *tags], rows, shade=range(1, len(tags) + 1), report_table=t,
            fixed_columns=1)

    def action_run_probe(self) -> None:
        if self.data is not None:
            self.app.start_probe(self.data)
            self.refresh_bindings()
            self.redraw()

    def action_cancel_probe(self) -> None:
        if self.data is not None:
            self.app.cancel_job(self.data)
            self.redraw()

    def action_run_information(self) -> None:
        if self.data is not None:
            self.app.start_information(self.data)
            self.refresh_bindings()
            self.redraw()

    def action_next_variant(self) -> None:
        rows = probe_rows(self.data.view) if self.data is not None and self.data.view is not None else PROBE_ROWS
        i = rows.index(self.variant) if self.variant in rows else -1
        self.variant = rows[(i + 1) % len(rows)]
        if f"confusion_{self.variant}" in self.tables:
            self._draw_confusion()
        self.notify(f"confusion matrix: {self.variant}", timeout=2)
