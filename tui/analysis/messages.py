"""Messages of the analysis jobs. Posted by jobs (threads) to the App or a pane; handled on the UI thread."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from textual.message import Message

if TYPE_CHECKING:  # pragma: no cover
    from moe_tui.cache.store import RunInfo
    from moe_tui.core.analysis.view import RunView


@dataclass
class TablesReady(Message):
    """Report tables of a run are computed (``kind``: "base" = routing tables, "probe" = probes + controls)."""

    run_id: str
    tables: dict
    view: "RunView"
    kind: str = "base"
    elapsed_s: float = 0.0


@dataclass
class JobProgress(Message):
    """A step of a long job (coalesced: a queued one is replaced by a newer one of the same job)."""

    run_id: str
    kind: str
    stage: str
    done: int
    total: int

    def can_replace(self, message: Message) -> bool:
        return isinstance(message, JobProgress) and message.run_id == self.run_id and message.kind == self.kind


@dataclass
class JobFailed(Message):
    run_id: str
    kind: str
    message: str


@dataclass
class JobCancelled(Message):
    run_id: str
    kind: str


@dataclass
class ReportWritten(Message):
    run_id: str
    path: str
    files: int


@dataclass
class AnalysisChanged(Message, bubble=False):
    """Posted to the screen on top when a run's analysis state changed (a pane of that run redraws)."""

    run_id: str


@dataclass
class CompareRuns(Message):
    """The runs that can be compared with the compare pane's run."""

    runs: "list[RunInfo]" = field(default_factory=list)
    error: str | None = None


@dataclass
class CompareReady(Message):
    """The cross-run tables of the selected runs."""

    run_ids: list
    views: list
    per_run: dict
    tables: dict
