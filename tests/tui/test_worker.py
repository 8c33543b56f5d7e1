"""The extraction driver against a stand-in child process that prints the progress events' JSON lines."""

from __future__ import annotations

import asyncio
import os
import sys
import time

import pytest

from moe_tui.cache.store import RunStore
from moe_tui.core.extract.events import Progress, Stage, parse_event
from moe_tui.core.extract.options import ExtractOptions
from moe_tui.tui.app import MoeTuiApp
from moe_tui.tui.messages import ExtractionDone, ExtractionEvent, ExtractionFailed
from moe_tui.tui.screens.home import HomeScreen
from moe_tui.tui.screens.modals import ErrorModal
from moe_tui.tui.screens.progress import ProgressScreen
from moe_tui.tui.settings import Settings
from moe_tui.tui.worker import build_extract_command, drive_extraction
from tests.runs import model_facts
from tests.tui.helpers import screen_text

CHILD = r"""
import json, os, sys, time
mode, pidfile = sys.argv[1], sys.argv[2]
open(pidfile, "w").write(str(os.getpid()))
def ev(**kw):
    sys.stderr.write(json.dumps(kw) + "\n"); sys.stderr.flush()
ev(event="stage", stage="loading-model")
sys.stderr.write("some warning from transformers\n")
ev(event="stage", stage="extracting")
n = 200
for i in range(1, n + 1):
    ev(event="progress", sentences_done=i, sentences_total=n, tokens_done=i * 10, tokens_total=n * 10,
       tokens_per_s=1234.5, eta_s=(n - i) * 0.01)
    if mode == "slow" and i == 5:
        ev(event="notice", message="CUDA out of memory: batch halved to 8")
        time.sleep(60)
if mode == "error":
    ev(event="error", message="model [bold]x[/bold] has no router")
    sys.exit(2)
ev(event="done", run_dir="/tmp/runs/abc123", run_id="abc123")
print("/tmp/runs/abc123")
"""


class Collector:
    def __init__(self):
        self.messages = []

    def post_message(self, m):
        self.messages.append(m)
        return True


def child_cmd(mode: str, pidfile) -> list[str]:
    return [sys.executable, "-c", CHILD, mode, str(pidfile)]


def test_parse_event_and_command():
    assert parse_event('{"event": "stage", "stage": "x"}') == Stage("x")
    assert parse_event('{"event": "stage", "stage": "x"}').to_dict() == {"event": "stage", "stage": "x"}
    assert parse_event("Loading weights 50%") is None
    assert parse_event("{broken") is None
    cmd = build_extract_command(ExtractOptions(model="m", data="d.conllu", sample=100, trust_remote_code=True))
    assert cmd[:4] == [sys.executable, "-m", "moe_tui.cli", "extract"]
    assert cmd[cmd.index("--progress") + 1] == "json"
    assert "--trust-remote-code" in cmd and cmd[cmd.index("--sample") + 1] == "100"
    assert "--trust-remote-code" not in build_extract_command(ExtractOptions(model="m", data="d"))


async def test_driver_done_throttles_progress(tmp_path):
    c = Collector()
    rc = await drive_extraction(c, child_cmd("ok", tmp_path / "pid"))
    assert rc == 0
    prog = [m.event for m in c.messages if isinstance(m, ExtractionEvent) and isinstance(m.event, Progress)]
    assert 1 <= len(prog) < 200, "producer-side throttle"
    assert prog[-1].sentences_done == 200
    assert isinstance(c.messages[-1], ExtractionDone) and c.messages[-1].run_id == "abc123"
    assert ExtractionEvent(Progress()).can_replace(ExtractionEvent(Progress()))
    assert not ExtractionEvent(Progress()).can_replace(ExtractionEvent(Stage("x")))


async def test_driver_error_keeps_message_and_stderr_tail(tmp_path):
    c = Collector()
    rc = await drive_extraction(c, child_cmd("error", tmp_path / "pid"))
    assert rc == 2
    fail = c.messages[-1]
    assert isinstance(fail, ExtractionFailed)
    assert fail.message == "model [bold]x[/bold] has no router"
    assert "some warning from transformers" in fail.detail and "exit code: 2" in fail.detail


def make_app(tmp_path, mode):
    corpus = tmp_path / "c.conllu"
    corpus.write_text("x")
    pidfile = tmp_path / "pid"
    seen = []

    def cmd(req: ExtractOptions):
        seen.append(req)
        return child_cmd(mode, pidfile)

    app = MoeTuiApp(models=[str(tmp_path / "m")], data=str(corpus), settings=Settings(), inspect_fn=model_facts,
                    run_store=lambda: RunStore(tmp_path / "runs"), scan_hf_cache=False, extract_command=cmd)
    return app, pidfile, seen


async def wait_for(pilot, cond, timeout=15.0):
    t0 = time.monotonic()
    while not cond():
        if time.monotonic() - t0 > timeout:
            raise AssertionError("condition not met in time")
        await pilot.pause(0.05)


@pytest.mark.slow
async def test_extraction_runs_from_the_ui_and_notifies(tmp_path):
    app, pidfile, seen = make_app(tmp_path, "ok")
    async with app.run_test(size=(120, 40)) as pilot:
        await pilot.pause()
        await pilot.press("ctrl+r")
        await wait_for(pilot, lambda: isinstance(app.screen, ProgressScreen))
        assert seen and seen[0].model == str(tmp_path / "m") and seen[0].data == str(tmp_path / "c.conllu")
        await wait_for(pilot, lambda: not app.extracting)
        await pilot.pause()
        st = app.extract_state
        assert st.outcome == "done" and st.run_id == "abc123" and st.sentences_done == 200
        assert any("Extraction done" in (n.title or "") for n in app._notifications)
        text = screen_text(app)
        assert "sentences 200/200" in text and "1,234 tokens/s" in text
        assert app.recent.corpora[0] == str(tmp_path / "c.conllu")


@pytest.mark.slow
async def test_cancel_terminates_child_and_job_survives_leaving_screen(tmp_path):
    app, pidfile, _ = make_app(tmp_path, "slow")
    async with app.run_test(size=(120, 40)) as pilot:
        await pilot.pause()
        await pilot.press("ctrl+r")
        await wait_for(pilot, lambda: app.extract_state and app.extract_state.notices)
        assert app.check_action("run_extraction", ()) is None        # disabled while running
        await pilot.press("escape")                                   # leave the progress screen
        await pilot.pause()
        assert isinstance(app.screen, HomeScreen) and app.extracting
        assert app.screen.query_one("#run-extract").disabled
        assert "extracting" in screen_text(app)
        await pilot.press("ctrl+r")                                   # a second one is refused
        assert app.extracting and app.extract_state.notices == ["CUDA out of memory: batch halved to 8"]
        await pilot.press("f3")
        await wait_for(pilot, lambda: isinstance(app.screen, ProgressScreen))
        await pilot.pause()
        assert "CUDA out of memory" in screen_text(app)
        pid = int(pidfile.read_text())
        await pilot.press("c")
        await wait_for(pilot, lambda: not app.extracting)
        assert app.extract_state.outcome == "cancelled"
        for _ in range(50):
            try:
                os.kill(pid, 0)
            except ProcessLookupError:
                break
            await asyncio.sleep(0.05)
        else:
            raise AssertionError("child still alive after cancel")
        assert app.check_action("run_extraction", ()) is True


@pytest.mark.slow
async def test_failed_extraction_opens_copyable_modal(tmp_path):
    app, _, _ = make_app(tmp_path, "error")
    async with app.run_test(size=(120, 40)) as pilot:
        await pilot.pause()
        await pilot.press("ctrl+r")
        await wait_for(pilot, lambda: isinstance(app.screen, ErrorModal))
        await pilot.pause()
        text = screen_text(app)
        assert "Extraction failed" in text and "model [bold]x[/bold] has no router" in text
        await pilot.press("c")
        assert "some warning from transformers" in app.clipboard
        await pilot.press("escape")
        await pilot.pause()
        assert isinstance(app.screen, ProgressScreen)
        assert app.extract_state.outcome == "failed"
