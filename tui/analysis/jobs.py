"""The analysis jobs, run in thread workers. They compute with :mod:`moe_tui.core` and only post messages.

Each job gets ``post`` (the target's ``post_message``: thread-safe) and ``cancelled`` (polled between steps;
a cancelled job stops at the next step, raising :class:`moe_tui.errors.Cancelled` inside core's progress
callback). scikit-learn and the probes are imported by core only inside the probe and report jobs.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import TYPE_CHECKING, Callable

from moe_tui.tui.analysis.messages import (
    CompareReady,
    CompareRuns,
    JobCancelled,
    JobFailed,
    JobProgress,
    ReportWritten,
    TablesReady,
)

if TYPE_CHECKING:  # pragma: no cover
    from textual.message import Message

    from moe_tui.cache.run import Run
    from moe_tui.cache.store import RunStore
    from moe_tui.core.analysis.options import ReportOptions
    from moe_tui.core.analysis.view import RunView

Post = Callable[["Message"], object]
IsCancelled = Callable[[], bool]


def _one_line(exc: BaseException) -> str:
    from moe_tui.errors import MoeTuiError

    if isinstance(exc, MoeTuiError):  # already one line for the user
        return str(exc)
    return f"{type(exc).__name__}: {' '.join(str(exc).split())}"


def tables_job(post: Post, cancelled: IsCancelled, run: "Run", view: "RunView | None",
               options: "ReportOptions") -> None:
    """The routing tables of one run (no probes): ``TablesReady(kind="base")`` or ``JobFailed``."""
    from moe_tui.core.analysis.report import report_tables
    from moe_tui.core.analysis.view import RunView

    t0 = time.monotonic()
    try:
        view = view or RunView.from_run(run)
        if cancelled():
            return
        tables = report_tables(view, options=options, by_origin=view.origin is not None)
    except Exception as exc:  # noqa: BLE001 - shown to the user in one line
        post(JobFailed(run.run_id, "base", _one_line(exc)))
        return
    post(TablesReady(run.run_id, tables, view, "base", time.monotonic() - t0))


def _training_job(kind: str, compute, post: Post, cancelled: IsCancelled, run: "Run", view: "RunView | None",
                  *, stage_label=str) -> None:
    """Run ``compute(view, progress)`` for one run in a thread, posting ``JobProgress`` (cancel is checked at
    every progress step), then ``TablesReady(kind=kind)``, ``JobCancelled`` or ``JobFailed``."""
    from moe_tui.core.analysis.view import RunView
    from moe_tui.errors import Cancelled

    t0 = time.monotonic()

    def progress(stage: str, done: int, total: int) -> None:
        if cancelled():
            raise Cancelled(f"{kind} cancelled")
        post(JobProgress(run.run_id, kind, stage_label(stage), int(done), int(total)))

    try:
        view = view or RunView.from_run(run)
        tables = compute(view, progress)
    except Cancelled:
        post(JobCancelled(run.run_id, kind))
        return
    except Exception as exc:  # noqa: BLE001 - shown to the user in one line
        post(JobFailed(run.run_id, kind, _one_line(exc)))
        return
    if cancelled():
        post(JobCancelled(run.run_id, kind))
        return
    post(TablesReady(run.run_id, tables, view, kind, time.monotonic() - t0))


def probe_job(post: Post, cancelled: IsCancelled, run: "Run", view: "RunView | None",
              options: "ReportOptions") -> None:
    """Probes and controls of one run, with progress: ``TablesReady(kind="probe")``, ``JobCancelled`` or
    ``JobFailed``."""
    from moe_tui.core.analysis.report import report_tables

    _training_job("probe", lambda v, progress: report_tables(v, probe=True, controls=True, options=options,
                                                             progress=progress, by_origin=v.origin is not None),
                  post, cancelled, run, view, stage_label=lambda stage: str(stage).split(": ", 1)[-1])


def information_job(post: Post, cancelled: IsCancelled, run: "Run", view: "RunView | None",
                    options: "ReportOptions") -> None:
    """The information measures of one run (``report --information``), with progress:
    ``TablesReady(kind="information")``, ``JobCancelled`` or ``JobFailed``."""
    from moe_tui.core.analysis.tables import information_tables

    _training_job("information", lambda v, progress: information_tables(v, options, progress=progress),
                  post, cancelled, run, view)


def report_job(post: Post, cancelled: IsCancelled, run_id: str, views: list, out: Path, probe: bool,
               controls: bool, options: "ReportOptions", spreadsheet_safe: bool = False,
               figures: bool = False, information: bool = False) -> None:
    """``moe-tui report`` of the views into ``out``: ``ReportWritten``, ``JobCancelled`` or ``JobFailed``."""
    from moe_tui.core.analysis.writer import write_report
    from moe_tui.errors import Cancelled

    def progress(stage: str, done: int, total: int) -> None:
        if cancelled():
            raise Cancelled("report cancelled")
        post(JobProgress(run_id, "report", str(stage), int(done), int(total)))

    try:
        res = write_report(views, out, probe=probe, controls=controls, options=options, progress=progress,
                           spreadsheet_safe=spreadsheet_safe, figures=figures, information=information)
    except Cancelled:
        post(JobCancelled(run_id, "report"))
        return
    except Exception as exc:  # noqa: BLE001
        post(JobFailed(run_id, "report", _one_line(exc)))
        return
    post(ReportWritten(run_id, str(out.resolve()), len(res["files"])))


def compare_list_job(post: Post, run: "Run", store: "RunStore") -> None:
    """The runs comparable with ``run`` (:func:`moe_tui.core.inspect.explore.comparable_runs`): ``CompareRuns``."""
    from moe_tui.core.inspect.explore import comparable_runs

    try:
        runs = comparable_runs(run, store)
    except Exception as exc:  # noqa: BLE001
        post(CompareRuns([], _one_line(exc)))
        return
    post(CompareRuns(runs))


def compare_job(post: Post, cancelled: IsCancelled, run: "Run", ids: list[str], known: dict,
                options: "ReportOptions", store: "RunStore") -> None:
    """Cross-run Tables 1, 3, 5 of the runs ``ids`` (``known``: run id -> (view, tables) already computed):
    ``CompareReady`` or ``JobFailed``."""
    from moe_tui.core.analysis.report import compare_tables, report_tables
    from moe_tui.core.analysis.view import RunView

    views, per_run = [], {}
    try:
        for rid in ids:
            if cancelled():
                return
            if rid in known:
                view, tables = known[rid]
            else:
                view = RunView.from_run(run if rid == run.run_id else store.open(rid))
                tables = report_tables(view, options=options)
            views.append(view)
            per_run[view.run_id] = tables
        out = compare_tables(views, per_run)
    except Exception as exc:  # noqa: BLE001
        post(JobFailed(run.run_id, "compare", _one_line(exc)))
        return
    post(CompareReady(ids, views, per_run, out))
