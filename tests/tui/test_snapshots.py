"""SVG snapshots of the main screens (pytest-textual-snapshot; fixed size; blink and toasts frozen).

Update after reviewing snapshot_report.html: ``.venv/bin/python -m pytest tests/tui/test_snapshots.py --snapshot-update``.
"""

from __future__ import annotations

from contextlib import suppress

import pytest
from textual.widgets import Input
from textual.worker import WorkerCancelled, WorkerFailed

from moe_tui.cache.store import RunStore
from moe_tui.tui.app import MoeTuiApp
from moe_tui.tui.settings import Settings
from tests.runs import model_facts

SIZE = (120, 36)


def make_app(run) -> MoeTuiApp:
    return MoeTuiApp(models=["/models/moe-tiny"], settings=Settings(), inspect_fn=model_facts,
                     run_store=lambda: RunStore(run.path.parent), scan_hf_cache=False)


async def settle(pilot) -> None:
    app = pilot.app
    with suppress(WorkerCancelled, WorkerFailed):
        await app.workers.wait_for_complete()
    await pilot.pause()
    for inp in app.screen.query(Input):
        inp.cursor_blink = False
    app.clear_notifications()
    await pilot.pause()


async def to_grid(pilot) -> None:
    await settle(pilot)
    await pilot.press("f7")
    await pilot.pause()
    await pilot.press("enter")
    for _ in range(100):
        await pilot.pause(0.02)
        if getattr(pilot.app.screen, "SCOPE", "") == "grid":
            break
    await pilot.press("l", "l", "j")
    await settle(pilot)


def test_snapshot_home_models(snap_compare, tiny_run):
    assert snap_compare(make_app(tiny_run), terminal_size=SIZE, run_before=settle)


@pytest.mark.slow
def test_snapshot_grid(snap_compare, tiny_run):
    assert snap_compare(make_app(tiny_run), terminal_size=SIZE, run_before=to_grid)


@pytest.mark.slow
def test_snapshot_grid_all_k_highlight(snap_compare, tiny_run):
    async def run_before(pilot):
        await to_grid(pilot)
        await pilot.press("t", "x")
        await settle(pilot)

    assert snap_compare(make_app(tiny_run), terminal_size=SIZE, run_before=run_before)


@pytest.mark.slow
def test_snapshot_help(snap_compare, tiny_run):
    async def run_before(pilot):
        await to_grid(pilot)
        await pilot.press("question_mark")
        await settle(pilot)

    assert snap_compare(make_app(tiny_run), terminal_size=SIZE, run_before=run_before)
