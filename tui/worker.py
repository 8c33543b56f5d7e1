"""Extraction driver: runs ``python -m moe_tui.cli extract ... --progress json`` as a child process.

The child writes one JSON event per line on stderr (:mod:`moe_tui.core.extract.events`, read back with its
``parse_event``). This module posts messages (:mod:`moe_tui.tui.messages`) to a target (the App): an
:class:`ExtractionEvent` per stage, notice and (throttled, coalesced) progress event, then exactly one of
ExtractionDone / ExtractionFailed / ExtractionCancelled. Cancel = cancel the asyncio task: the child gets
SIGTERM (SIGKILL after a grace period). Only the App decides whether a second extraction may start.
"""

from __future__ import annotations

import asyncio
import os
import sys
import time
from collections import deque
from typing import Callable, Protocol

from moe_tui.core.extract.events import Done, Error, Notice, Progress, Stage, parse_event
from moe_tui.core.extract.options import ExtractOptions, GenerateOptions, to_argv
from moe_tui.tui.messages import ExtractionCancelled, ExtractionDone, ExtractionEvent, ExtractionFailed

PROGRESS_MIN_INTERVAL_S = 0.1   # producer-side throttle: at most 10 progress messages a second
TERM_GRACE_S = 5.0


class _Poster(Protocol):
    def post_message(self, message) -> bool: ...


def build_extract_command(opts: ExtractOptions) -> list[str]:
    """The child command line: the headless CLI (it shares the core with everything else) with ``opts``."""
    return [sys.executable, "-m", "moe_tui.cli", "extract", *to_argv(opts), "--progress", "json"]


def build_generate_command(opts: GenerateOptions) -> list[str]:
    """The child command line of a generation: ``moe-tui generate`` with ``opts`` (same events as extraction)."""
    return [sys.executable, "-m", "moe_tui.cli", "generate", *to_argv(opts), "--progress", "json"]


async def drive_extraction(
    target: _Poster,
    cmd: list[str],
    *,
    env: dict[str, str] | None = None,
    cwd: str | None = None,
    clock: Callable[[], float] = time.monotonic,
) -> int | None:
    """Run the child to completion, posting messages to ``target``. Returns its exit code (None if cancelled)."""
    t0 = clock()
    full_env = {**os.environ, **(env or {}), "PYTHONUNBUFFERED": "1"}
    try:
        proc = await asyncio.create_subprocess_exec(
            *cmd, stdin=asyncio.subprocess.DEVNULL, stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE, env=full_env, cwd=cwd,
        )
    except OSError as exc:
        target.post_message(ExtractionFailed(f"cannot start extraction: {exc}", " ".join(cmd)))
        return None

    tail: deque[str] = deque(maxlen=40)        # non-JSON stderr lines, for the error modal
    stdout_lines: deque[str] = deque(maxlen=5)
    state: dict = {"done": None, "error": None, "last_progress": 0.0, "pending": None}

    async def read_stdout() -> None:
        assert proc.stdout is not None
        async for raw in proc.stdout:
            stdout_lines.append(raw.decode("utf-8", "replace").rstrip("\n"))

    async def read_stderr() -> None:
        assert proc.stderr is not None
        async for raw in proc.stderr:
            line = raw.decode("utf-8", "replace").rstrip("\n")
            ev = parse_event(line)
            if ev is None:
                if line.strip():
                    tail.append(line)
                continue
            if isinstance(ev, Progress):
                msg = ExtractionEvent(ev)
                now = clock()
                if ev.finished or now - state["last_progress"] >= PROGRESS_MIN_INTERVAL_S:
                    state["last_progress"] = now
                    state["pending"] = None
                    target.post_message(msg)
                else:
                    state["pending"] = msg
            elif isinstance(ev, (Stage, Notice)):
                target.post_message(ExtractionEvent(ev))
            elif isinstance(ev, Error):
                state["error"] = ev.message
            elif isinstance(ev, Done):
                state["done"] = (ev.run_dir, ev.run_id)

    try:
        await asyncio.gather(read_stdout(), read_stderr())
        rc = await proc.wait()
    except asyncio.CancelledError:
        await _terminate(proc)
        target.post_message(ExtractionCancelled())
        raise
    if state["pending"] is not None:
        target.post_message(state["pending"])
    elapsed = clock() - t0
    if rc == 0 and state["done"] is not None:
        target.post_message(ExtractionDone(state["done"][0], state["done"][1], elapsed))
    elif rc == 0 and stdout_lines:
        run_dir = stdout_lines[-1].strip()
        target.post_message(ExtractionDone(run_dir, os.path.basename(run_dir), elapsed))
    elif rc in (130, -2, -15) and state["error"] is None:
        target.post_message(ExtractionCancelled())
    else:
        message = state["error"] or (tail[-1] if tail else f"extraction exited with code {rc}")
        detail = "\n".join([f"exit code: {rc}", "command: " + " ".join(cmd), *tail])
        target.post_message(ExtractionFailed(message, detail))
    return rc


async def _terminate(proc: asyncio.subprocess.Process) -> None:
    if proc.returncode is not None:
        return
    try:
        proc.terminate()
    except ProcessLookupError:
        return
    try:
        await asyncio.wait_for(asyncio.shield(proc.wait()), TERM_GRACE_S)
    except (asyncio.TimeoutError, asyncio.CancelledError):
        try:
            proc.kill()
        except ProcessLookupError:
            pass
