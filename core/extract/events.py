"""Extraction progress events: one typed definition, one JSON line format.

:func:`moe_tui.core.extract.extract` reports what it does through a callback that receives these
events; ``moe-tui extract --progress json`` writes each as one JSON object per line on stderr
(:meth:`Event.to_json`), and the TUI's extraction driver reads them back with :func:`parse_event`.
Nothing else builds or parses the JSON. Only the standard library is imported here.

Wire format (one object per line; ``event`` names the kind)::

    {"event": "stage", "stage": "loading-model" | "aligning" | "extracting" | "finalizing" | "cache-hit"
                                | "generating" | "verifying"}  (the last two: moe-tui generate)
    {"event": "progress", "sentences_done": int, "sentences_total": int, "tokens_done": int,
     "tokens_total": int, "tokens_per_s": float, "eta_s": float | null}
    {"event": "notice", "message": str}
    {"event": "error", "message": str}            (then the process exits non-zero)
    {"event": "done", "run_dir": str, "run_id": str}
"""

from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass
from typing import Callable, ClassVar, Union

__all__ = ["Stage", "Progress", "Notice", "Error", "Done", "Event", "EventSink", "parse_event", "from_dict"]

STAGES = ("loading-model", "aligning", "extracting", "finalizing", "cache-hit", "generating", "verifying")


@dataclass(frozen=True)
class _Event:
    kind: ClassVar[str] = ""

    def to_dict(self) -> dict:
        """The wire form: ``{"event": kind, **fields}``."""
        return {"event": self.kind, **dataclasses.asdict(self)}

    def to_json(self) -> str:
        return json.dumps(self.to_dict())


@dataclass(frozen=True)
class Stage(_Event):
    """The extraction entered a stage (one of :data:`STAGES`)."""

    kind: ClassVar[str] = "stage"
    stage: str


@dataclass(frozen=True)
class Progress(_Event):
    """Sentences and tokens done so far; ``eta_s`` is None until a rate is known."""

    kind: ClassVar[str] = "progress"
    sentences_done: int = 0
    sentences_total: int = 0
    tokens_done: int = 0
    tokens_total: int = 0
    tokens_per_s: float = 0.0
    eta_s: float | None = None

    @property
    def finished(self) -> bool:
        return bool(self.sentences_total) and self.sentences_done >= self.sentences_total


@dataclass(frozen=True)
class Notice(_Event):
    """Something the user should know that does not stop the job (batch halved, waiting for a lock)."""

    kind: ClassVar[str] = "notice"
    message: str


@dataclass(frozen=True)
class Error(_Event):
    """The job failed; ``message`` is the one-line error."""

    kind: ClassVar[str] = "error"
    message: str


@dataclass(frozen=True)
class Done(_Event):
    """The run is complete (extracted now or found in the cache)."""

    kind: ClassVar[str] = "done"
    run_dir: str
    run_id: str


Event = Union[Stage, Progress, Notice, Error, Done]
EventSink = Callable[[Event], None]

_KINDS: dict[str, type] = {cls.kind: cls for cls in (Stage, Progress, Notice, Error, Done)}
_CASTS: dict[str, Callable] = {"int": int, "float": float, "str": str}


def from_dict(obj: dict) -> Event | None:
    """The event of a wire dict, or None when it is not one (unknown kind, missing or mistyped fields).

    Unknown extra keys are ignored (a newer producer may add some)."""
    cls = _KINDS.get(obj.get("event")) if isinstance(obj, dict) else None
    if cls is None:
        return None
    kwargs = {}
    for f in dataclasses.fields(cls):
        if f.name not in obj:
            if f.default is dataclasses.MISSING:
                return None
            continue
        value = obj[f.name]
        if value is None and "None" in str(f.type):
            kwargs[f.name] = None
            continue
        cast = _CASTS[str(f.type).split(" ")[0]]
        try:
            kwargs[f.name] = cast(value)
        except (TypeError, ValueError):
            return None
    return cls(**kwargs)


def parse_event(line: str) -> Event | None:
    """The event on one line of a child's stderr, or None for any other line (warnings, tracebacks)."""
    line = line.strip()
    if not line.startswith("{"):
        return None
    try:
        obj = json.loads(line)
    except ValueError:
        return None
    return from_dict(obj)
