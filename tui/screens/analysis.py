"""Analysis panes of one run (issue "TUI II"): specialisation, KL, probe, comparison.

Every number comes from :mod:`moe_tui.core.report` (``report_tables`` / ``compare_tables`` / ``write_report``):
the panes pivot, sort, shade and plot those tables, and export them with ``moe_tui.core.report.write_csv``, so an
exported CSV is the ``moe-tui report`` CSV of the same run.

Threading: the heavy jobs (building the ``RunView``, the routing tables, the probes + controls, writing
the report) run in thread workers owned by the App, so a probe keeps running while the user browses other
panes. Workers never touch widgets: they post :class:`AnalysisEvent` messages to the App, whose
``on_analysis_event`` calls :func:`handle_event` (here), which updates the per-run :class:`AnalysisData`
and tells the pane on screen to redraw. Long jobs poll ``worker.is_cancelled`` in core's progress callback
and raise :class:`moe_tui.errors.Cancelled`. scikit-learn is imported by core only inside the probe job.
"""

from __future__ import annotations

import json
import os
import time
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from typing import Any

import numpy as np
from rich.text import Text
from textual import on, work
from textual.app import ComposeResult
from textual.containers import Horizontal, Vertical
from textual.message import Message
from textual.screen import ModalScreen, Screen
from textual.widgets import DataTable, Footer, ProgressBar, SelectionList, Static
from textual.worker import get_current_worker

from moe_tui.tui import actions
from moe_tui.tui.runview import run_title
from moe_tui.tui.widgets.plots import Plot
from moe_tui.tui.widgets.table import ShadedTable

PROBE_VARIANTS = ("top_k", "top_1", "onehot_top_k", "baseline")


# ---------------------------------------------------------------------------------------------------
# Per-run state (owned by the UI thread)


@dataclass
class AnalysisData:
    run: Any
    options: Any                                   # moe_tui.core.report.ReportOptions
    view: Any = None                               # moe_tui.core.report.RunView, once built
    tables: dict = field(default_factory=dict)     # stem -> moe_tui.core.report table, as report_tables returns
    probe_done: bool = False
    controls_done: bool = False
    base_loading: bool = False
    running: str | None = None                     # "probe" | "report" while a job runs
    job: Any = None                                # the Worker
    progress: tuple[str, int, int] = ("", 0, 0)
    started: float = 0.0
    error: str | None = None

    @property
    def run_id(self) -> str:
        return str(getattr(self.run, "run_id", "run"))


def report_options(app):
    """``app.report_options`` if set (tests), else ``$MOE_TUI_REPORT_OPTIONS`` (JSON of
    moe_tui.core.report.ReportOptions fields, e.g. ``{"max_iter": 100, "n_boot": 50}``), else the defaults
    ``moe-tui report`` uses."""
    opts = getattr(app, "report_options", None)
    if opts is not None:
        return opts
    from moe_tui.core.report import ReportOptions

    env = os.environ.get("MOE_TUI_REPORT_OPTIONS")
    if env:
        try:
            kw = json.loads(env)
            if isinstance(kw.get("mlp_kwargs", {}).get("hidden_layer_sizes"), list):
                kw["mlp_kwargs"]["hidden_layer_sizes"] = tuple(kw["mlp_kwargs"]["hidden_layer_sizes"])
            return ReportOptions(**kw)
        except (ValueError, TypeError, AttributeError) as exc:
            app.notify(f"MOE_TUI_REPORT_OPTIONS ignored: {exc}", severity="warning", markup=False)
    return ReportOptions()


def get_data(app, run) -> AnalysisData:
    store = app.__dict__.setdefault("analysis", {}) if not hasattr(app, "analysis") else app.analysis
    rid = str(getattr(run, "run_id", "run"))
    data = store.get(rid)
    if data is None:
        data = AnalysisData(run=run, options=report_options(app))
        store[rid] = data
    return data


def export_base(app) -> Path:
    settings = getattr(app, "settings", None)
    return Path(getattr(settings, "export_dir", None) or os.getcwd()).expanduser()


# ---------------------------------------------------------------------------------------------------
# Messages (posted by workers to the App; App.on_analysis_event -> handle_event)


@dataclass
class AnalysisEvent(Message):
    """Base of the pane workers' messages; every subclass is handled by ``App.on_analysis_event``."""

    run_id: str

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        cls.handler_name = "on_analysis_event"


@dataclass
class TablesReady(AnalysisEvent):
    tables: dict
    view: Any
    kind: str = "base"            # base | probe
    elapsed_s: float = 0.0


@dataclass
class JobProgress(AnalysisEvent):
    kind: str
    stage: str
    done: int
    total: int

    def can_replace(self, message: Message) -> bool:
        return isinstance(message, JobProgress) and message.run_id == self.run_id and message.kind == self.kind


@dataclass
class JobFailed(AnalysisEvent):
    kind: str
    message: str


@dataclass
class JobCancelled(AnalysisEvent):
    kind: str


@dataclass
class ReportWritten(AnalysisEvent):
    path: str
    files: int


@dataclass
class PaneRunOpened(AnalysisEvent):
    run: Any
    kind: str


# ---------------------------------------------------------------------------------------------------
# Jobs (thread workers owned by the App)


def _base_job(app, run, view, options) -> None:
    from moe_tui.core.report import RunView, report_tables

    rid = str(getattr(run, "run_id", "run"))
    worker = get_current_worker()
    t0 = time.monotonic()
    try:
        view = view or RunView.from_run(run)
        if worker.is_cancelled:
            return
        tables = report_tables(view, options=options)
    except Exception as exc:  # noqa: BLE001 - shown to the user in one line
        app.post_message(JobFailed(rid, "base", f"{type(exc).__name__}: {exc}"))
        return
    app.post_message(TablesReady(rid, tables, view, "base", time.monotonic() - t0))


def _probe_job(app, run, view, options) -> None:
    from moe_tui.core.report import RunView, report_tables
    from moe_tui.errors import Cancelled

    rid = str(getattr(run, "run_id", "run"))
    worker = get_current_worker()
    t0 = time.monotonic()

    def progress(stage: str, done: int, total: int) -> None:
        if worker.is_cancelled:
            raise Cancelled("probe cancelled")
        app.post_message(JobProgress(rid, "probe", str(stage).split(": ", 1)[-1], int(done), int(total)))

    try:
        view = view or RunView.from_run(run)
        tables = report_tables(view, probe=True, controls=True, options=options, progress=progress)
    except Cancelled:
        app.post_message(JobCancelled(rid, "probe"))
        return
    except Exception as exc:  # noqa: BLE001
        app.post_message(JobFailed(rid, "probe", f"{type(exc).__name__}: {exc}"))
        return
    if worker.is_cancelled:
        app.post_message(JobCancelled(rid, "probe"))
        return
    app.post_message(TablesReady(rid, tables, view, "probe", time.monotonic() - t0))


def _report_job(app, rid: str, views: list, out: Path, probe: bool, controls: bool, options,
                spreadsheet_safe: bool = False) -> None:
    from moe_tui.core.report import write_report
    from moe_tui.errors import Cancelled

    worker = get_current_worker()

    def progress(stage: str, done: int, total: int) -> None:
        if worker.is_cancelled:
            raise Cancelled("report cancelled")
        app.post_message(JobProgress(rid, "report", str(stage), int(done), int(total)))

    try:
        res = write_report(views, out, probe=probe, controls=controls, options=options, progress=progress,
                           spreadsheet_safe=spreadsheet_safe)
    except Cancelled:
        app.post_message(JobCancelled(rid, "report"))
        return
    except Exception as exc:  # noqa: BLE001
        app.post_message(JobFailed(rid, "report", f"{type(exc).__name__}: {exc}"))
        return
    app.post_message(ReportWritten(rid, str(out.resolve()), len(res["files"])))


def _open_run_job(app, run_id: str, kind: str) -> None:
    from moe_tui.tui.messages import RunOpenFailed

    try:
        run = app.run_store().open(run_id)
    except Exception as exc:  # noqa: BLE001
        app.post_message(RunOpenFailed(f"{type(exc).__name__}: {exc}"))
        return
    app.post_message(PaneRunOpened(run_id, run, kind))


def ensure_base(app, data: AnalysisData) -> None:
    """Start the routing-table job of a run unless its tables exist or are being computed."""
    if "spec_layer" in data.tables or data.base_loading:
        return
    data.base_loading = True
    app.run_worker(partial(_base_job, app, data.run, data.view, data.options), thread=True,
                   name=f"tables:{data.run_id}", group=f"tables-{data.run_id}", exit_on_error=False,
                   description="routing tables")


def start_probe(app, data: AnalysisData) -> None:
    if data.running:
        app.notify(f"A {data.running} job is already running for this run", severity="warning")
        return
    data.running, data.error, data.started = "probe", None, time.monotonic()
    data.progress = ("starting (importing scikit-learn)", 0, 1)
    data.job = app.run_worker(partial(_probe_job, app, data.run, data.view, data.options), thread=True,
                              name=f"probe:{data.run_id}", group=f"probe-{data.run_id}", exclusive=True,
                              exit_on_error=False, description="probes + controls")


def cancel_job(app, data: AnalysisData) -> None:
    if data.job is not None and data.running:
        data.job.cancel()
        data.progress = ("cancelling after the current step…", *data.progress[1:])


def open_pane(app, kind: str) -> None:
    """``s`` / ``K`` / ``P`` / ``C``: open a pane for the run on screen (grid or pane) or the highlighted run (home)."""
    screen = app.screen
    if isinstance(screen, ModalScreen):
        return
    cls = PANES[kind]
    run = getattr(screen, "run", None)
    if run is not None and not callable(run):
        if isinstance(screen, PaneScreen):
            if screen.KIND != kind:
                app.switch_screen(cls(run))
        else:
            app.push_screen(cls(run))
        return
    from moe_tui.tui.screens.home import HomeScreen

    if isinstance(screen, HomeScreen):
        runs = getattr(screen, "runs", []) or []
        try:
            row = screen.query_one("#runs-table", DataTable).cursor_row
        except Exception:  # noqa: BLE001
            row = 0
        if not runs or row is None or not (0 <= row < len(runs)):
            app.notify("No cached run to analyse: extract one first (ctrl+r)", severity="warning")
            return
        r = runs[row]
        run_id = str(r.get("run_id") if isinstance(r, dict) else getattr(r, "run_id", ""))
        data = getattr(app, "analysis", {}).get(run_id)
        if data is not None:
            app.push_screen(cls(data.run))
            return
        app.run_worker(partial(_open_run_job, app, run_id, kind), thread=True, group="open-run",
                       exclusive=True, exit_on_error=False, description="open run")
        return
    app.notify("Open a run first (F2 home, F7 runs)", severity="warning")


def handle_event(app, msg: AnalysisEvent) -> None:
    """The App's handler for every AnalysisEvent: update the run's state, then the pane on screen."""
    if isinstance(msg, PaneRunOpened):
        data = get_data(app, msg.run)
        app.push_screen(PANES[msg.kind](data.run))
        return
    data = getattr(app, "analysis", {}).get(msg.run_id)
    if isinstance(msg, TablesReady) and data is not None:
        if data.view is None:
            data.view = msg.view
        if msg.kind == "probe":
            data.tables.update(msg.tables)
            data.probe_done = data.controls_done = True
            data.running, data.job = None, None
            data.progress = ("done", 1, 1)
            app.notify(f"Probes and controls done in {msg.elapsed_s:.1f} s", title="Probe", timeout=5)
        else:
            for k, v in msg.tables.items():
                data.tables.setdefault(k, v)
            data.base_loading = False
    elif isinstance(msg, JobProgress) and data is not None:
        data.progress = (msg.stage, msg.done, msg.total)
    elif isinstance(msg, JobFailed):
        if data is not None:
            data.error = msg.message
            if msg.kind == "base":
                data.base_loading = False
            elif data.running == msg.kind:
                data.running, data.job = None, None
        app.show_error(f"{msg.kind.capitalize()} failed", msg.message)
    elif isinstance(msg, JobCancelled):
        if data is not None and data.running == msg.kind:
            data.running, data.job = None, None
            data.progress = ("cancelled", 0, 1)
        app.notify(f"{msg.kind.capitalize()} cancelled", timeout=4)
    elif isinstance(msg, ReportWritten):
        if data is not None and data.running == "report":
            data.running, data.job = None, None
        app.notify(f"Report written ({msg.files} files) to {msg.path}", title="Report export", markup=False,
                   timeout=8)
        app.last_report_dir = msg.path
    screen = app.screen
    if isinstance(screen, PaneScreen):
        screen.data_changed(msg)


# ---------------------------------------------------------------------------------------------------
# Formatting helpers (display only)


def _fmt(nd: int):
    def f(x: Any) -> str:
        if x is None or (isinstance(x, float) and np.isnan(x)):
            return "–"
        if isinstance(x, (int, np.integer)) and not isinstance(x, bool):
            return str(int(x))
        if isinstance(x, (float, np.floating)):
            return f"{float(x):.{nd}f}"
        return str(x)

    return f


def _rows_as_dicts(table: dict) -> list[dict]:
    return [dict(zip(table["columns"], r)) for r in table["rows"]]


def table_tsv(table: dict, *, spreadsheet_safe: bool = False) -> str:
    from moe_tui.fileio import tsv_text

    return tsv_text(table["columns"], table["rows"], spreadsheet_safe=spreadsheet_safe)


# ---------------------------------------------------------------------------------------------------
# Base pane


class PaneScreen(Screen):
    SCOPE = "pane"
    KIND = ""
    PANE_TITLE = ""
    FOCUS = ""                      # selector of the widget focused on open (default: the first table)
    BINDINGS = actions.bindings("pane")
    ONLY = {"jump": {"spec"}, "toggle_delta": {"spec"}, "run_probe": {"probe"}, "cancel_probe": {"probe"},
            "next_variant": {"probe"}, "expert_card": {"spec", "kl"}}

    def __init__(self, run) -> None:
        super().__init__()
        self.run = run
        self.data: AnalysisData | None = None
        self.last_export: Path | None = None

    def compose(self) -> ComposeResult:
        yield Static("", id="pane-title")
        yield from self.compose_body()
        yield Footer()

    def compose_body(self) -> ComposeResult:  # pragma: no cover - overridden
        yield from ()

    def on_mount(self) -> None:
        self.sub_title = run_title(self.run)
        self.data = get_data(self.app, self.run)
        ensure_base(self.app, self.data)
        self.redraw()
        first = self.query_one(self.FOCUS) if self.FOCUS else next(iter(self.query(ShadedTable)), None)
        if first is not None:
            first.focus()

    def on_screen_resume(self) -> None:
        if self.data is not None:
            self.redraw()

    def data_changed(self, msg: AnalysisEvent) -> None:
        if msg.run_id == (self.data.run_id if self.data else None):
            self.redraw()
            self.refresh_bindings()

    @property
    def tables(self) -> dict:
        return self.data.tables if self.data else {}

    def redraw(self) -> None:
        self._title()

    def _title(self, extra: str = "") -> None:
        d = self.data
        t = Text()
        t.append(f"{self.PANE_TITLE}  ", style="bold")
        t.append(f"{d.run_id if d else '?'}  ", style="dim")
        if d is not None and d.base_loading:
            t.append("computing routing tables…  ", style="italic")
        if d is not None and d.running:
            stage, done, total = d.progress
            t.append(f"[{d.running}: {stage} {done}/{total}]  ", style="bold yellow")
        t.append(extra)
        self.query_one("#pane-title", Static).update(t)

    # ---- gating --------------------------------------------------------------------------------
    def check_action(self, action: str, parameters: tuple) -> bool | None:
        only = self.ONLY.get(action)
        if only is not None and self.KIND not in only:
            return False
        running = bool(self.data and self.data.running == "probe")
        if action == "cancel_probe":
            return True if running else None
        if action == "run_probe":
            return None if running else True
        return True

    # ---- export / copy / sort ------------------------------------------------------------------
    def default_table(self) -> dict | None:
        return None

    def focused_table(self) -> dict | None:
        w = self.focused
        while w is not None and w is not self:
            t = getattr(w, "report_table", None)
            if t is not None:
                return t
            w = w.parent
        return self.default_table()

    def export_prefix(self) -> str:
        return f"moe-tui-{self.data.run_id if self.data else 'run'}"

    def action_export(self) -> None:
        from moe_tui.core.report import write_csv
        from moe_tui.errors import ReportError

        table = self.focused_table()
        if not table:
            self.notify("Nothing to export yet", severity="warning")
            return
        base = export_base(self.app)
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
        d = self.data
        return ([d.view] if d and d.view is not None else []), bool(d and d.probe_done), bool(d and d.controls_done)

    def action_export_report(self) -> None:
        d = self.data
        views, probe, controls = self.report_views()
        if d is None or not views:
            self.notify("The routing tables are still being computed", severity="warning")
            return
        if d.running:
            self.notify(f"A {d.running} job is running for this run; wait or cancel it", severity="warning")
            return
        out = export_base(self.app) / (f"moe-tui-report-{d.run_id}" if len(views) == 1 else "moe-tui-compare-report")
        d.running, d.progress = "report", ("writing", 0, 1)
        d.job = self.app.run_worker(partial(_report_job, self.app, d.run_id, views, out, probe, controls, d.options,
                                            self.app.settings.spreadsheet_safe),
                                    thread=True, name=f"report:{d.run_id}", group=f"report-{d.run_id}",
                                    exclusive=True, exit_on_error=False, description="write report")
        self.notify(f"Writing the report to {out.resolve()} …", timeout=3, markup=False)
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

    def action_back(self) -> None:
        self.app.pop_screen()

    # pane-specific actions (hidden elsewhere by check_action)
    def action_jump(self) -> None:
        pass

    def action_toggle_delta(self) -> None:
        pass

    def action_run_probe(self) -> None:
        pass

    def action_cancel_probe(self) -> None:
        pass

    def expert_target(self) -> tuple[int, int] | None:
        """(MoE-layer position, expert) the expert card opens on (panes that show experts say which)."""
        return None

    def action_expert_card(self) -> None:
        target = self.expert_target()
        if target is None:
            self.notify("Put the cursor on a cell of a layer (Spec matrix or KL heatmap) first", severity="warning",
                        timeout=3)
            return
        from moe_tui.tui.screens.expert import ExpertScreen

        self.app.push_screen(ExpertScreen(self.run, *target))

    def action_next_variant(self) -> None:
        pass


# ---------------------------------------------------------------------------------------------------
# Specialisation


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
        return self.tables.get("spec_layer")

    def redraw(self) -> None:
        tabs = self.tables
        extra = ""
        if "summary" in tabs:
            s = _rows_as_dicts(tabs["summary"])[0]
            f = _fmt(2)
            extra = (f"global Spec {f(s['spec'])}  U {f(s['uniform'])}  ΔU {f(s['delta'])}  "
                     f"{s['tokens']} tok k={s['top_k']}/N={s['experts']}")
            extra += "  null: " + ("permutation" if "spec_null" in tabs else "run the probe pane")
        self._title(extra)
        if "spec_layer" not in tabs or self.data is None or self.data.view is None:
            return
        view = self.data.view
        sel = self.query_one("#spec-pos", SelectionList)
        if sel.option_count == 0:
            sel.add_options([(t, t) for t in view.tags])
        self._fill_matrix()
        summary = tabs["spec_pos"]
        self.query_one("#spec-summary", ShadedTable).set_data(
            summary["columns"], summary["rows"], shade=(1, 2), formats={1: _fmt(2), 2: _fmt(2)},
            report_table=summary)
        self._update_plot(force=True)

    def _fill_matrix(self) -> None:
        view = self.data.view
        t = self.tables["spec_layer"]
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
        fm = {c: _fmt(1) for c in range(1, P + 2)}
        self.query_one("#spec-matrix", ShadedTable).set_data(
            ["layer", *view.tags, "U"], rows, shade=range(1, P + 1), formats=fm, report_table=t, fixed_columns=1)

    def _cursor_pos(self) -> tuple[int, int] | None:
        """(MoE-layer position, POS index) under the matrix cursor."""
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
            cp = self._cursor_pos()
            chosen = (view.tags[cp[1]] if cp else view.tags[0],)
        if chosen == self._plot_pos and not force:
            return
        self._plot_pos = chosen
        t = self.tables["spec_layer"]
        by = {(r[0], r[1]): r for r in t["rows"]}
        si = t["columns"].index("spec")
        series = [(tag, [by[(layer, tag)][si] for layer in view.moe_layers]) for tag in chosen]
        u = t["rows"][0][t["columns"].index("uniform")] if t["rows"] else None
        report = t
        null = self.tables.get("spec_null")
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
        self.run_worker(self.jump_to_grid(), exclusive=True, group="jump")

    def action_toggle_delta(self) -> None:
        self.show_delta = not self.show_delta
        if "spec_layer" in self.tables:
            self._fill_matrix()
        self.notify("matrix shows " + ("ΔU = Spec − U" if self.show_delta else "Spec"), timeout=2)

    def action_jump(self) -> None:
        self.run_worker(self.jump_to_grid(), exclusive=True, group="jump")

    def jump_target(self) -> tuple[int, int, int, int] | None:
        """(sentence, MoE-layer position, token in sentence, expert) for the matrix cursor: the expert with most
        assignments of this POS at this layer (core counts) and the first token of this POS routed to it."""
        cp = self._cursor_pos()
        if cp is None:
            return None
        li, p = cp
        view = self.data.view
        expert = int(np.argmax(np.asarray(view.counts())[li, :, p]))
        of_pos = np.asarray(view.pos) == p
        hit = np.flatnonzero(of_pos & (np.asarray(view.experts)[:, li, 0] == expert))
        if not hit.size:
            hit = np.flatnonzero(of_pos)
        if not hit.size:
            return None
        t = int(hit[0])
        s = int(view.sentence[t])
        tok = int(np.flatnonzero(np.asarray(self.run.analysis_mask()))[t])
        local = tok - int(np.asarray(self.run.sentence_offsets)[s])
        return s, li, local, expert

    def expert_target(self) -> tuple[int, int] | None:
        target = self.jump_target()
        return None if target is None else (target[1], target[3])

    async def jump_to_grid(self) -> None:
        from moe_tui.tui.screens.grid import GridScreen

        target = self.jump_target()
        if target is None:
            self.notify("Put the cursor on a POS column with tokens (not layer / U)", severity="warning", timeout=3)
            return
        s, li, local, expert = target
        app = self.app
        gs = next((x for x in reversed(app.screen_stack) if isinstance(x, GridScreen) and x.run is self.run), None)
        if gs is None:
            await app.push_screen(GridScreen(self.run))
            gs = app.screen
        else:
            while app.screen is not gs and len(app.screen_stack) > 1:
                await app.pop_screen()
        gs.show_sentence(s)
        gs.grid.set_cursor(layer=li, token=local)
        gs.grid.highlight = expert
        legend = getattr(gs, "_update_legend", None)
        if callable(legend):
            legend()


# ---------------------------------------------------------------------------------------------------
# KL


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
        if "kl_layer_expert" not in tabs or self.data is None or self.data.view is None:
            return
        view = self.data.view
        s = tabs["kl_summary"]
        self.query_one("#kl-summary", ShadedTable).set_data(
            ["μMin", "μMax", "μMean"], s["rows"], formats={i: _fmt(3) for i in range(3)}, report_table=s)
        t = tabs["kl_layer_expert"]
        ki = t["columns"].index("kl")
        by = {(r[0], r[1]): r[ki] for r in t["rows"]}
        rows = [[e, *[by.get((layer, e)) for layer in view.moe_layers]] for e in range(view.n_experts)]
        self.query_one("#kl-heat", ShadedTable).set_data(
            ["expert", *[f"L{layer}" for layer in view.moe_layers]], rows,
            shade=range(1, len(view.moe_layers) + 1), formats={c: _fmt(2) for c in range(1, len(view.moe_layers) + 1)},
            report_table=t, fixed_columns=1)
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
        c = h.cursor_coordinate.column
        li = max(0, c - 1)
        if raw is None or li >= len(view.moe_layers):
            return None
        return li, int(h.raw_rows[raw][0])

    def expert_target(self) -> tuple[int, int] | None:
        return self.selected_cell()

    def bars_table(self, li: int, expert: int) -> dict:
        """The plotted numbers: the expert's POS shares (moe_tui.core.inspect) against the corpus shares (pos_counts)."""
        view = self.data.view
        row = np.asarray(view.counts())[li, expert].astype(np.float64)  # the view's counts, computed once per run
        dist = row / row.sum() if row.sum() else row
        pc = _rows_as_dicts(self.tables["pos_counts"])
        layer = view.moe_layers[li]
        rows = [[tag, float(dist[p]), (pc[p]["percent"] or 0.0) / 100.0] for p, tag in enumerate(view.tags)]
        return {"name": f"kl_expert_L{layer}_E{expert}", "columns": ["pos", "expert_share", "corpus_share"],
                "rows": rows}

    def _update_bars(self) -> None:
        cell = self.selected_cell()
        if cell is None:
            return
        li, e = cell
        view = self.data.view
        t = self.bars_table(li, e)
        h = self.query_one("#kl-heat", ShadedTable)
        kl = h.raw_rows[h.cursor_raw_index()][li + 1]
        klt = "–" if kl is None else f"{kl:.3f}"
        self.query_one("#kl-bars", Plot).bars(
            list(view.tags), [(f"expert {e}", [r[1] for r in t["rows"]]), ("corpus", [r[2] for r in t["rows"]])],
            title=f"expert {e} @ layer {view.moe_layers[li]}: KL {klt} nats", report_table=t)


# ---------------------------------------------------------------------------------------------------
# Probe


class ProbeScreen(PaneScreen):
    KIND = "probe"
    PANE_TITLE = "POS probes + controls (Table 1, Figs. 2-3)"

    def __init__(self, run) -> None:
        super().__init__(run)
        self.variant = "top_k"

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

    def default_table(self) -> dict | None:
        return self.tables.get("probe")

    def redraw(self) -> None:
        self._title()
        d = self.data
        status = self.query_one("#probe-status", Static)
        bar = self.query_one("#probe-progress", ProgressBar)
        if d is None:
            return
        if d.running == "probe":
            stage, done, total = d.progress
            status.update(Text(f"running: {stage} ({done}/{total}) · {time.monotonic() - d.started:.0f} s · c cancels",
                               style="bold"))
            bar.update(total=max(1, total), progress=min(done, max(1, total)))
        elif d.probe_done:
            status.update(Text("probes + controls done · v: next confusion variant · r: run again", style="dim"))
            bar.update(total=1, progress=1)
        else:
            last = "last run cancelled · " if d.progress[0] == "cancelled" else ""
            status.update(Text(f"{last}r trains the MLP probes + controls (background, minutes on a real run)",
                               style="italic"))
            bar.update(total=1, progress=0)
        tabs = self.tables
        if "probe" in tabs:
            p = tabs["probe"]
            self.query_one("#probe-acc", ShadedTable).set_data(
                p["columns"], p["rows"], shade=(1,), shade_range=(0.0, 1.0), formats={1: _fmt(3)}, report_table=p)
        if "controls" in tabs:
            c = tabs["controls"]
            self.query_one("#probe-controls", ShadedTable).set_data(
                ["control", "value"], c["rows"], formats={1: _fmt(3)}, report_table=c)
        if "ablation" in tabs:
            self._draw_ablation(tabs["ablation"])
        else:
            self.query_one("#probe-ablation", Plot).empty("ablation: run the probe (r)", title="layer ablation")
        if "tsne" in tabs:
            self._draw_tsne(tabs["tsne"])
        else:
            self.query_one("#probe-tsne", Plot).empty("t-SNE: run the probe (r)", title="t-SNE of routing paths")
        self._draw_confusion()

    def _draw_ablation(self, t: dict) -> None:
        rows = _rows_as_dicts(t)
        xs = sorted({r["removed"] for r in rows})
        series = []
        for side in ("first", "last"):
            by = {r["removed"]: r["accuracy"] for r in rows if r["side"] == side}
            if by:
                series.append((f"{side} layers removed", [by.get(x) for x in xs]))
        self.query_one("#probe-ablation", Plot).lines(xs, series, title="ablation: accuracy vs MoE layers removed",
                                                      xlabel="layers removed", report_table=t)

    def _draw_tsne(self, t: dict) -> None:
        view = self.data.view
        rows = t["rows"]
        groups = []
        tags = list(view.tags) if view is not None else sorted({r[3] for r in rows})
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
            start_probe(self.app, self.data)
            self.refresh_bindings()
            self.redraw()

    def action_cancel_probe(self) -> None:
        if self.data is not None:
            cancel_job(self.app, self.data)
            self.redraw()

    def action_next_variant(self) -> None:
        i = PROBE_VARIANTS.index(self.variant)
        self.variant = PROBE_VARIANTS[(i + 1) % len(PROBE_VARIANTS)]
        if f"confusion_{self.variant}" in self.tables:
            self._draw_confusion()
        self.notify(f"confusion matrix: {self.variant}", timeout=2)


# ---------------------------------------------------------------------------------------------------
# Comparison


@dataclass
class CompareRuns(Message):
    runs: list
    error: str | None = None


@dataclass
class CompareReady(Message):
    run_ids: list
    views: list
    per_run: dict
    tables: dict


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
        self._list_runs()

    def _corpus_of(self, r) -> str:
        if isinstance(r, dict):
            return str(r.get("corpus", ""))
        return str(getattr(r, "corpus", ""))

    @work(thread=True, exclusive=True, group="compare-list", exit_on_error=False)
    def _list_runs(self) -> None:
        try:
            runs = list(self.app.run_store().list_runs())
        except Exception as exc:  # noqa: BLE001
            self.post_message(CompareRuns([], f"{type(exc).__name__}: {exc}"))
            return
        self.post_message(CompareRuns(runs))

    def on_compare_runs(self, msg: CompareRuns) -> None:
        corpus = str(((getattr(self.run, "manifest", {}) or {}).get("corpus") or {}).get("path", ""))
        mine = str(self.run.run_id)
        cands = [r for r in msg.runs if self._corpus_of(r) == corpus and str(getattr(r, "run_id", "")) != mine
                 and getattr(r, "status", "complete") == "complete"]
        self.candidates = cands
        sel = self.query_one("#compare-runs", SelectionList)
        sel.clear_options()
        sel.add_option((f"{mine[:10]} {self._model_of(self.run)}", mine, True))
        for r in cands:
            sel.add_option((f"{r.run_id[:10]} {getattr(r, 'model', '')}", str(r.run_id), False))
        if msg.error:
            self.notify(f"runs: {msg.error}", severity="error", markup=False)
        self._recompute()

    @staticmethod
    def _model_of(run) -> str:
        return str(((getattr(run, "manifest", {}) or {}).get("model") or {}).get("name_or_path", "?"))

    @on(SelectionList.SelectedChanged, "#compare-runs")
    def _runs_chosen(self) -> None:
        self._recompute()

    def _recompute(self) -> None:
        ids = list(self.query_one("#compare-runs", SelectionList).selected)
        if not ids:
            return
        store = getattr(self.app, "analysis", {})
        known = {rid: (store[rid].view, dict(store[rid].tables)) for rid in ids
                 if rid in store and store[rid].view is not None and "spec_pos" in store[rid].tables}
        self._compute(ids, known, report_options(self.app))

    @work(thread=True, exclusive=True, group="compare", exit_on_error=False)
    def _compute(self, ids: list, known: dict, options) -> None:
        from moe_tui.core.report import RunView, compare_tables, report_tables

        worker = get_current_worker()
        views, per_run = [], {}
        try:
            for rid in ids:
                if worker.is_cancelled:
                    return
                if rid in known:
                    view, tables = known[rid]
                else:
                    run = self.run if rid == str(self.run.run_id) else self.app.run_store().open(rid)
                    view = RunView.from_run(run)
                    tables = report_tables(view, options=options)
                views.append(view)
                per_run[view.run_id] = tables
            out = compare_tables(views, per_run)
        except Exception as exc:  # noqa: BLE001
            self.post_message(JobFailed(str(self.run.run_id), "compare", f"{type(exc).__name__}: {exc}"))
            return
        self.post_message(CompareReady(ids, views, per_run, out))

    def on_compare_ready(self, msg: CompareReady) -> None:
        self.compare = msg.tables
        self.compare_views = msg.views
        fmt = _fmt(3)
        for wid, stem in (("#compare-t1", "compare_table1"), ("#compare-t3", "compare_table3"),
                          ("#compare-t5", "compare_table5")):
            t = msg.tables[stem]
            numeric = [i for i, c in enumerate(t["columns"]) if c not in ("model", "run_id", "k_n", "pos", "moe_layers",
                                                                          "max_layer")]
            self.query_one(wid, ShadedTable).set_data(t["columns"], t["rows"], shade=numeric,
                                                      formats={i: fmt for i in numeric}, report_table=t)
        self._title(f"{len(msg.views)} run(s) · space toggles a run in the list")

    def redraw(self) -> None:
        self._title(f"{len(self.compare_views)} run(s) · space toggles a run in the list" if self.compare_views else
                    "space toggles a run in the list")

    def report_views(self) -> tuple[list, bool, bool]:
        store = getattr(self.app, "analysis", {})
        ds = [store.get(v.run_id) for v in self.compare_views]
        probe = bool(ds) and all(d is not None and d.probe_done for d in ds)
        return list(self.compare_views), probe, probe


PANES = {"spec": SpecScreen, "kl": KLScreen, "probe": ProbeScreen, "compare": CompareScreen}
