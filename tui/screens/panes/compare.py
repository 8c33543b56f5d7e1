"""Compare pane: several runs on the same sentences, paper Tables 1, 3 and 5 side by side."""

from __future__ import annotations

from functools import partial

from textual import on
from textual.app import ComposeResult
from textual.containers import Horizontal, Vertical
from textual.widgets import SelectionList
from textual.worker import get_current_worker

from moe_tui.tui.analysis import jobs
from moe_tui.tui.analysis.messages import CompareReady, CompareRuns
from moe_tui.tui.screens.panes.base import PaneScreen, fmt
from moe_tui.tui.widgets.table import ShadedTable

#: columns of the compare tables that are labels, not numbers (not shaded)
_LABELS = ("model", "run_id", "k_n", "pos", "moe_layers", "max_layer")


def _cancelled() -> bool:
    return get_current_worker().is_cancelled


class CompareScreen(PaneScreen):
    KIND = "compare"
    PANE_TITLE = "Compare runs on one corpus (Tables 1, 3, 5)"

    def __init__(self, run) -> None:
        super().__init__(run)
        self.compare: dict = {}
        self.compare_views: list = []
        self.candidates: list = []

    def compose_body(self) -> ComposeResult:
        with Horizontal(id="compare-main"):
            yield SelectionList[str](id="compare-runs")
            with Vertical(id="compare-tables"):
                yield ShadedTable(id="compare-t1")
                yield ShadedTable(id="compare-t3")
                yield ShadedTable(id="compare-t5")

    def export_prefix(self) -> str:
        return "moe-tui"

    def default_table(self) -> dict | None:
        return self.compare.get("compare_table1")

    def on_mount(self) -> None:
        super().on_mount()
        self.run_worker(partial(jobs.compare_list_job, self.post_message, self.run, self.app.run_store()),
                        thread=True, exclusive=True, group="compare-list", exit_on_error=False)

    def on_compare_runs(self, msg: CompareRuns) -> None:
        self.candidates = msg.runs
        sel = self.query_one("#compare-runs", SelectionList)
        sel.clear_options()
        sel.add_option((f"{self.run.run_id[:10]} {self.run.model_name}", self.run.run_id, True))
        for r in msg.runs:
            sel.add_option((f"{r.run_id[:10]} {r.model}", r.run_id, False))
        if msg.error:
            self.notify(f"runs: {msg.error}", severity="error", markup=False)
        self._recompute()

    @on(SelectionList.SelectedChanged, "#compare-runs")
    def _runs_chosen(self) -> None:
        self._recompute()

    def _recompute(self) -> None:
        ids = list(self.query_one("#compare-runs", SelectionList).selected)
        if not ids:
            return
        known = {rid: (d.view, dict(d.tables)) for rid, d in self.app.analysis.items()
                 if rid in ids and d.view is not None and "spec_pos" in d.tables}
        self.run_worker(partial(jobs.compare_job, self.post_message, _cancelled, self.run, ids, known,
                                self.app.analysis_data(self.run).options, self.app.run_store()),
                        thread=True, exclusive=True, group="compare", exit_on_error=False)

    def on_compare_ready(self, msg: CompareReady) -> None:
        from moe_tui.core.analysis.paper import compare_rows, with_paper_rows
        from moe_tui.errors import MoeTuiError

        self.compare = msg.tables
        self.compare_views = msg.views
        try:  # a "paper" row beside each run of one of the paper's models
            paper_rows, note = compare_rows(msg.views)
        except MoeTuiError as exc:  # a damaged figures file: no paper rows, say why
            paper_rows, note = {stem: [] for stem in msg.tables}, str(exc)
        for wid, stem in (("#compare-t1", "compare_table1"), ("#compare-t3", "compare_table3"),
                          ("#compare-t5", "compare_table5")):
            t = msg.tables[stem]
            numeric = [i for i, c in enumerate(t["columns"]) if c not in _LABELS]
            self.query_one(wid, ShadedTable).set_data(t["columns"], with_paper_rows(t, paper_rows[stem]),
                                                      shade=numeric, formats={i: fmt(3) for i in numeric},
                                                      report_table=t)
        self._title(f"{len(msg.views)} run(s) · space toggles a run in the list" + (f" · {note}" if note else ""))

    def redraw(self) -> None:
        self._title(f"{len(self.compare_views)} run(s) · space toggles a run in the list" if self.compare_views else
                    "space toggles a run in the list")

    def report_views(self) -> tuple[list, bool, bool]:
        ds = [self.app.analysis.get(v.run_id) for v in self.compare_views]
        probe = bool(ds) and all(d is not None and d.probe_done for d in ds)
        return list(self.compare_views), probe, probe
