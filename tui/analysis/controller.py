"""The analysis controller, mixed into the App: starts the jobs, and has one handler per job message.

The App owns the analysis state (``self.analysis``: run id -> :class:`AnalysisData`), so a probe keeps
running while the user browses other panes or the grid. Panes call :meth:`analysis_data`,
:meth:`ensure_tables`, :meth:`start_probe`, :meth:`cancel_job` and :meth:`export_report`; jobs
(:mod:`moe_tui.tui.analysis.jobs`) post messages that land in the ``on_*`` handlers below, which update
the state and post :class:`AnalysisChanged` to the screen on top.
"""

from __future__ import annotations

import time
from functools import partial
from pathlib import Path
from typing import TYPE_CHECKING

from textual.worker import get_current_worker

from moe_tui.tui.analysis import jobs
from moe_tui.tui.analysis.messages import (
    AnalysisChanged,
    JobCancelled,
    JobFailed,
    JobProgress,
    ReportWritten,
    TablesReady,
)
from moe_tui.tui.analysis.state import AnalysisData, report_options_from_env

if TYPE_CHECKING:  # pragma: no cover
    from moe_tui.cache.run import Run
    from moe_tui.core.analysis.options import ReportOptions
    from moe_tui.core.analysis.view import RunView


def _worker_cancelled() -> bool:
    """Inside a thread worker: has the App cancelled it?"""
    return get_current_worker().is_cancelled


class AnalysisController:
    """Mixin for :class:`moe_tui.tui.app.MoeTuiApp` (which provides ``run_worker``, ``notify``, ``show_error``,
    ``post_message``, ``screen`` and ``settings``)."""

    #: run id -> the panes' state of that run
    analysis: dict[str, AnalysisData]
    #: report options of the panes (None: $MOE_TUI_REPORT_OPTIONS or the defaults of ``moe-tui report``)
    report_options: "ReportOptions | None"
    #: the folder of the last report written from a pane
    last_report_dir: str | None

    def _init_analysis(self) -> None:
        self.analysis = {}
        self.report_options = None
        self.last_report_dir = None

    # ---- state --------------------------------------------------------------------------------------------
    def _resolved_report_options(self) -> "ReportOptions":
        if self.report_options is None:
            self.report_options, warning = report_options_from_env()
            if warning:
                self.notify(warning, severity="warning", markup=False)
        return self.report_options

    def analysis_data(self, run: "Run") -> AnalysisData:
        """The state of ``run`` (created on first use)."""
        data = self.analysis.get(run.run_id)
        if data is None:
            data = self.analysis[run.run_id] = AnalysisData(run=run, options=self._resolved_report_options())
        return data

    def export_dir(self) -> Path:
        """Where pane exports go: the ``export_dir`` setting, else the current directory."""
        return Path(self.settings.export_dir or Path.cwd()).expanduser()

    def _changed(self, run_id: str) -> None:
        self.screen.post_message(AnalysisChanged(run_id))

    # ---- starting and stopping jobs -----------------------------------------------------------------------
    def ensure_tables(self, data: AnalysisData) -> None:
        """Start the routing-table job of a run unless its tables exist or are being computed."""
        if "spec_layer" in data.tables or data.base_loading:
            return
        data.base_loading = True
        self.run_worker(partial(jobs.tables_job, self.post_message, _worker_cancelled, data.run, data.view,
                                data.options),
                        thread=True, name=f"tables:{data.run_id}", group=f"tables-{data.run_id}",
                        exit_on_error=False, description="routing tables")

    def start_probe(self, data: AnalysisData) -> None:
        """Train the probes and controls of a run in the background (one job per run at a time)."""
        self._start_training(data, "probe", jobs.probe_job, "probes + controls")

    def start_information(self, data: AnalysisData) -> None:
        """Compute the information measures of a run in the background (conditional probes, per-layer probes,
        online code length, paths; one job per run at a time)."""
        self._start_training(data, "information", jobs.information_job, "information measures")

    def _start_training(self, data: AnalysisData, kind: str, job, description: str) -> None:
        if data.running:
            self.notify(f"A {data.running} job is already running for this run", severity="warning")
            return
        data.running, data.error, data.started = kind, None, time.monotonic()
        data.progress = ("starting (importing torch)", 0, 1)
        data.job = self.run_worker(partial(job, self.post_message, _worker_cancelled, data.run, data.view,
                                           data.options),
                                   thread=True, name=f"{kind}:{data.run_id}", group=f"{kind}-{data.run_id}",
                                   exclusive=True, exit_on_error=False, description=description)

    def cancel_job(self, data: AnalysisData) -> None:
        """Cancel the run's job; it stops at its next step."""
        if data.job is not None and data.running:
            data.job.cancel()
            data.progress = ("cancelling after the current step…", *data.progress[1:])

    def export_report(self, data: AnalysisData, views: "list[RunView]", probe: bool, controls: bool,
                      information: bool = False) -> Path | None:
        """Write the report of ``views`` (``moe-tui report``'s files) in the background; returns the folder."""
        if not views:
            self.notify("The routing tables are still being computed", severity="warning")
            return None
        if data.running:
            self.notify(f"A {data.running} job is running for this run; wait or cancel it", severity="warning")
            return None
        name = f"moe-tui-report-{data.run_id}" if len(views) == 1 else "moe-tui-compare-report"
        out = self.export_dir() / name
        data.running, data.progress = "report", ("writing", 0, 1)
        data.job = self.run_worker(partial(jobs.report_job, self.post_message, _worker_cancelled, data.run_id,
                                           views, out, probe, controls, data.options, self.settings.spreadsheet_safe,
                                           self.settings.report_figures, information),
                                   thread=True, name=f"report:{data.run_id}", group=f"report-{data.run_id}",
                                   exclusive=True, exit_on_error=False, description="write report")
        self.notify(f"Writing the report to {out.resolve()} …", timeout=3, markup=False)
        return out

    # ---- one handler per message --------------------------------------------------------------------------
    def on_tables_ready(self, msg: TablesReady) -> None:
        data = self.analysis.get(msg.run_id)
        if data is None:
            return
        if data.view is None:
            data.view = msg.view
        if msg.kind == "probe":
            data.tables.update(msg.tables)
            data.probe_done = data.controls_done = True
            data.running, data.job = None, None
            data.progress = ("done", 1, 1)
            self.notify(f"Probes and controls done in {msg.elapsed_s:.1f} s", title="Probe", timeout=5)
        elif msg.kind == "information":
            data.tables.update(msg.tables)
            data.information_done = True
            data.running, data.job = None, None
            data.progress = ("done", 1, 1)
            self.notify(f"Information measures done in {msg.elapsed_s:.1f} s", title="Information", timeout=5)
        else:
            for k, v in msg.tables.items():
                data.tables.setdefault(k, v)
            data.base_loading = False
        self._changed(msg.run_id)

    def on_job_progress(self, msg: JobProgress) -> None:
        data = self.analysis.get(msg.run_id)
        if data is not None:
            data.progress = (msg.stage, msg.done, msg.total)
            self._changed(msg.run_id)

    def on_job_failed(self, msg: JobFailed) -> None:
        data = self.analysis.get(msg.run_id)
        if data is not None:
            data.error = msg.message
            if msg.kind == "base":
                data.base_loading = False
            elif data.running == msg.kind:
                data.running, data.job = None, None
        self.show_error(f"{msg.kind.capitalize()} failed", msg.message)
        self._changed(msg.run_id)

    def on_job_cancelled(self, msg: JobCancelled) -> None:
        data = self.analysis.get(msg.run_id)
        if data is not None and data.running == msg.kind:
            data.running, data.job = None, None
            data.progress = ("cancelled", 0, 1)
        self.notify(f"{msg.kind.capitalize()} cancelled", timeout=4)
        self._changed(msg.run_id)

    def on_report_written(self, msg: ReportWritten) -> None:
        data = self.analysis.get(msg.run_id)
        if data is not None and data.running == "report":
            data.running, data.job = None, None
        self.last_report_dir = msg.path
        self.notify(f"Report written ({msg.files} files) to {msg.path}", title="Report export", markup=False,
                    timeout=8)
        self._changed(msg.run_id)
