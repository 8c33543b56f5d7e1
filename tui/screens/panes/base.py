"""The base of the analysis panes: title line, export / copy / sort, gating from the action registry.

A pane shows one run's :class:`moe_tui.tui.analysis.state.AnalysisData` (owned by the App) and redraws
when the App posts :class:`AnalysisChanged` for that run. Every number comes from :mod:`moe_tui.core.analysis.report`;
a pane's ``e`` writes the focused table (or plot) with ``moe_tui.core.analysis.writer.write_csv``, so an exported
CSV is the ``moe-tui report`` CSV of the same run.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable

import numpy as np
from rich.text import Text
from textual.app import ComposeResult
from textual.screen import Screen
from textual.widgets import Footer, Static

from moe_tui.tui import actions
from moe_tui.tui.analysis.messages import AnalysisChanged
from moe_tui.tui.runview import run_title
from moe_tui.tui.widgets.plots import Plot
from moe_tui.tui.widgets.table import ShadedTable

if TYPE_CHECKING:  # pragma: no cover
    from moe_tui.cache.run import Run
    from moe_tui.tui.analysis.state import AnalysisData


def fmt(nd: int) -> Callable[[Any], str]:
    """Cell formatter: integers as they are, floats with ``nd`` decimals, missing values as an en dash."""
    def f(x: Any) -> str:
        if x is None or (isinstance(x, (float, np.floating)) and math.isnan(float(x))):
            return "–"
        if isinstance(x, (int, np.integer)) and not isinstance(x, bool):
            return str(int(x))
        if isinstance(x, (float, np.floating)):
            return f"{float(x):.{nd}f}"
        return str(x)

    return f


def rows_as_dicts(table: dict) -> list[dict]:
    """The rows of a :mod:`moe_tui.core.analysis.report` table as ``{column: value}`` dicts."""
    return [dict(zip(table["columns"], r)) for r in table["rows"]]


def table_tsv(table: dict, *, spreadsheet_safe: bool = False) -> str:
    from moe_tui.fileio import tsv_text

    return tsv_text(table["columns"], table["rows"], spreadsheet_safe=spreadsheet_safe)


class PaneScreen(Screen):
    SCOPE = "pane"
    KIND = ""                       # "spec" | "kl" | "probe" | "compare": the registry gates actions by it
    PANE_TITLE = ""
    FOCUS = ""                      # selector of the widget focused on open (default: the first table)
    BINDINGS = actions.bindings("pane")

    def __init__(self, run: "Run") -> None:
        super().__init__()
        self.run = run
        self.data: AnalysisData | None = None
        self.last_export: Path | None = None
        self.origin = "all"             # all | prompt | generated (runs made by moe-tui generate)

    def compose(self) -> ComposeResult:
        yield Static("", id="pane-title")
        yield from self.compose_body()
        yield Footer()

    def compose_body(self) -> ComposeResult:  # pragma: no cover - overridden
        yield from ()

    def on_mount(self) -> None:
        self.sub_title = run_title(self.run)
        self.data = self.app.analysis_data(self.run)
        self.app.ensure_tables(self.data)
        self.redraw()
        first = self.query_one(self.FOCUS) if self.FOCUS else next(iter(self.query(ShadedTable)), None)
        if first is not None:
            first.focus()

    def on_screen_resume(self) -> None:
        if self.data is not None:
            self.redraw()

    def on_analysis_changed(self, msg: AnalysisChanged) -> None:
        if msg.run_id == self.run.run_id:
            self.redraw()
            self.refresh_bindings()

    @property
    def tables(self) -> dict:
        return self.data.tables if self.data else {}

    @property
    def probe_running(self) -> bool:
        """Gates ``pane.run`` / ``pane.cancel`` (see :mod:`moe_tui.tui.actions`)."""
        return bool(self.data and self.data.probe_running)

    @property
    def has_origin(self) -> bool:
        """Gates ``pane.origin``: the run records each token's origin (a run made by moe-tui generate)."""
        return "origin" in self.run.manifest.get("arrays", {})

    def origin_table(self, stem: str) -> dict | None:
        """The ``stem`` table of the origin shown (:func:`moe_tui.core.analysis.origin.table_of_origin`)."""
        from moe_tui.core.analysis.origin import table_of_origin

        return table_of_origin(self.tables, stem, self.origin if self.has_origin else "all")

    def action_cycle_origin(self) -> None:
        order = ("all", "prompt", "generated")
        self.origin = order[(order.index(self.origin) + 1) % len(order)]
        self.notify(f"origin: {self.origin} tokens", timeout=2)
        self.redraw()

    def redraw(self) -> None:
        self._title()

    def _title(self, extra: str = "") -> None:
        d = self.data
        t = Text()
        t.append(f"{self.PANE_TITLE}  ", style="bold")
        t.append(f"{self.run.run_id}  ", style="dim")
        if self.has_origin:
            t.append(f"origin: {self.origin} (O)  ", style="bold")
        if d is not None and d.base_loading:
            t.append("computing routing tables…  ", style="italic")
        if d is not None and d.running:
            stage, done, total = d.progress
            t.append(f"[{d.running}: {stage} {done}/{total}]  ", style="bold yellow")
        t.append(extra)
        self.query_one("#pane-title", Static).update(t)

    def check_action(self, action: str, parameters: tuple) -> bool | None:
        return actions.check(self, "pane", action)

    # ---- export / copy / sort ------------------------------------------------------------------
    def default_table(self) -> dict | None:
        return None

    def focused_table(self) -> dict | None:
        """The report table of the focused table or plot (or of its nearest container), else the pane's default."""
        w = self.focused
        while w is not None and w is not self:
            if isinstance(w, (ShadedTable, Plot)) and w.report_table is not None:
                return w.report_table
            w = w.parent
        return self.default_table()

    def export_prefix(self) -> str:
        return f"moe-tui-{self.run.run_id}"

    def action_export(self) -> None:
        from moe_tui.core.analysis.writer import write_csv
        from moe_tui.errors import ReportError

        table = self.focused_table()
        if not table:
            self.notify("Nothing to export yet", severity="warning")
            return
        base = self.app.export_dir()
        path = base / f"{self.export_prefix()}-{table['name']}.csv"
        try:
            base.mkdir(parents=True, exist_ok=True)
            write_csv(path, table, spreadsheet_safe=self.app.settings.spreadsheet_safe)
        except (OSError, ReportError) as exc:
            self.app.show_error("Export failed", f"{path}: {exc}")
            return
        self.last_export = path
        self.notify(f"Exported {len(table['rows'])} rows to {path.resolve()}", title="CSV export", markup=False,
                    timeout=8)

    def report_views(self) -> tuple[list, bool, bool]:
        """(views, probe, controls) of the report ``E`` writes: this run, with probes once they are computed."""
        d = self.data
        return ([d.view] if d and d.view is not None else []), bool(d and d.probe_done), bool(d and d.controls_done)

    def action_export_report(self) -> None:
        if self.data is None:
            return
        views, probe, controls = self.report_views()
        if self.app.export_report(self.data, views, probe, controls,
                                  information=bool(self.data.information_done) and len(views) == 1) is not None:
            self.redraw()

    def action_copy_tsv(self) -> None:
        w = self.focused
        if isinstance(w, ShadedTable) and w.rows:
            text = w.to_tsv(spreadsheet_safe=self.app.settings.spreadsheet_safe)
        else:
            table = self.focused_table()
            if not table:
                self.notify("Nothing to copy yet", severity="warning")
                return
            text = table_tsv(table, spreadsheet_safe=self.app.settings.spreadsheet_safe)
        self.app.copy_to_clipboard(text)
        self.notify(f"Copied {text.count(chr(10)) - 1} rows as TSV (OSC 52)", timeout=3)

    def action_sort(self) -> None:
        w = self.focused
        if isinstance(w, ShadedTable) and w.row_count:
            w.sort_by(w.cursor_coordinate.column)
        else:
            self.notify("Focus a table to sort it (Tab)", severity="warning", timeout=3)

    def expert_target(self) -> tuple[int, int] | None:
        """(MoE-layer position, expert) the expert card opens on (the panes that show experts say which)."""
        return None

    def action_expert_card(self) -> None:
        target = self.expert_target()
        if target is None:
            self.notify("Put the cursor on a cell of a layer (Spec matrix or KL heatmap) first", severity="warning",
                        timeout=3)
            return
        self.app.show_expert(self.run, *target)

    def action_back(self) -> None:
        self.app.pop_screen()
