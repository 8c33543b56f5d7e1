"""Messages posted by workers. Workers never touch widgets; App/Screen handlers own all state."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from textual.message import Message

from moe_tui.core.extract.events import Event, Progress


@dataclass
class ExtractionEvent(Message):
    """A stage, notice or progress event of the running extraction (:mod:`moe_tui.core.extract.events`).

    Coalesced: a queued progress event is replaced by a newer one."""

    event: Event

    def can_replace(self, message: Message) -> bool:
        return (isinstance(message, ExtractionEvent) and isinstance(message.event, Progress)
                and isinstance(self.event, Progress))


@dataclass
class ExtractionDone(Message):
    run_dir: str
    run_id: str
    elapsed_s: float = 0.0


@dataclass
class ExtractionFailed(Message):
    message: str
    detail: str = ""      # stderr tail, exit code


@dataclass
class ExtractionCancelled(Message):
    pass


@dataclass
class ModelInspected(Message):
    path: str
    facts: Any


@dataclass
class ModelInspectFailed(Message):
    path: str
    message: str


@dataclass
class ModelsFound(Message):
    entries: list = field(default_factory=list)   # list[ModelEntry]


@dataclass
class RunsListed(Message):
    runs: list = field(default_factory=list)
    error: str | None = None


@dataclass
class RunOpened(Message):
    run: Any                      # moe_tui.cache.store.Run
    pane: str | None = None       # open it in this analysis pane (moe_tui.tui.screens.panes.PANES), else the grid


@dataclass
class RunOpenFailed(Message):
    message: str
