"""Messages posted by workers. Workers never touch widgets; App/Screen handlers own all state."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from textual.message import Message


@dataclass
class ExtractionStage(Message):
    stage: str


@dataclass
class ExtractionProgress(Message):
    """Coalesced: a queued progress message is replaced by a newer one."""

    sentences_done: int = 0
    sentences_total: int = 0
    tokens_done: int = 0
    tokens_total: int = 0
    tokens_per_s: float = 0.0
    eta_s: float | None = None

    def can_replace(self, message: Message) -> bool:
        return isinstance(message, ExtractionProgress)


@dataclass
class ExtractionNotice(Message):
    message: str


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
    run: Any


@dataclass
class RunOpenFailed(Message):
    message: str
