"""What the panes know about one run: plain data owned by the UI thread (no textual here)."""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:  # pragma: no cover
    from moe_tui.cache.run import Run
    from moe_tui.core.analysis.options import ReportOptions
    from moe_tui.core.analysis.view import RunView

__all__ = ["AnalysisData", "report_options_from_env", "REPORT_OPTIONS_ENV"]

REPORT_OPTIONS_ENV = "MOE_TUI_REPORT_OPTIONS"


@dataclass
class AnalysisData:
    """The report tables of one run as far as they are computed, and the job computing more."""

    run: "Run"
    options: "ReportOptions"
    view: "RunView | None" = None                  # moe_tui.core.analysis.view.RunView, once built
    tables: dict = field(default_factory=dict)     # stem -> moe_tui.core.analysis.report table, as report_tables returns
    probe_done: bool = False
    controls_done: bool = False
    information_done: bool = False                 # the information tables (conditional, mdl, ...) are in tables
    base_loading: bool = False                     # the routing tables are being computed
    running: str | None = None                     # "probe" | "information" | "report" while a job runs
    job: Any = None                                # the running job's textual Worker
    progress: tuple[str, int, int] = ("", 0, 0)    # (stage, done, total) of the running job
    started: float = 0.0                           # time.monotonic() when it started
    error: str | None = None

    @property
    def run_id(self) -> str:
        return self.run.run_id

    @property
    def probe_running(self) -> bool:
        """A job of the probe pane (the probes and controls, or the information measures) is running."""
        return self.running in ("probe", "information")

    def tables_ready(self) -> bool:
        return "spec_layer" in self.tables and self.view is not None


def report_options_from_env() -> tuple["ReportOptions", str | None]:
    """The panes' report options: ``$MOE_TUI_REPORT_OPTIONS`` (JSON of ReportOptions fields, e.g.
    ``{"max_iter": 100, "n_boot": 50}``) if set and valid, else the defaults ``moe-tui report`` uses.
    Returns ``(options, warning)``; the warning says why the variable was ignored."""
    from moe_tui.core.analysis.options import ReportOptions

    env = os.environ.get(REPORT_OPTIONS_ENV)
    if not env:
        return ReportOptions(), None
    try:
        kw = json.loads(env)
        mlp = kw.get("mlp_kwargs") or {}
        if isinstance(mlp.get("hidden_layer_sizes"), list):
            mlp["hidden_layer_sizes"] = tuple(mlp["hidden_layer_sizes"])
        return ReportOptions(**kw), None
    except (ValueError, TypeError, AttributeError) as exc:
        return ReportOptions(), f"{REPORT_OPTIONS_ENV} ignored: {exc}"
