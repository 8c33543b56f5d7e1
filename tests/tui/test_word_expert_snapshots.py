"""SVG snapshots of the word view, the expert card and the grid's diff overlay (120x36, real runs of
tests/runs.py: word_run; workers finished and toasts cleared before the picture).

Update after reviewing snapshot_report.html:
``.venv/bin/python -m pytest tests/tui/test_word_expert_snapshots.py --snapshot-update``.
"""

from __future__ import annotations

from contextlib import suppress

import pytest
from textual.widgets import Input
from textual.worker import WorkerCancelled, WorkerFailed

from tests.runs import word_run as build_run
from tests.tui.helpers import app_on_run

SIZE = (120, 36)


async def settle(pilot) -> None:
    app = pilot.app
    for _ in range(3):
        with suppress(WorkerCancelled, WorkerFailed):
            await app.workers.wait_for_complete()
        await pilot.pause()
    for inp in app.screen.query(Input):
        inp.cursor_blink = False
    app.clear_notifications()
    await pilot.pause()


@pytest.mark.slow
def test_snapshot_word_view(snap_compare, tmp_path):
    app = app_on_run(tmp_path, build_run(tmp_path / "runs"))

    async def before(pilot):
        await settle(pilot)
        await pilot.press("l", "l", "l", "w")
        await settle(pilot)
        await pilot.press("j")
        await settle(pilot)

    assert snap_compare(app, terminal_size=SIZE, run_before=before)


@pytest.mark.slow
def test_snapshot_expert_card(snap_compare, tmp_path):
    app = app_on_run(tmp_path, build_run(tmp_path / "runs"))

    async def before(pilot):
        await settle(pilot)
        await pilot.press("l", "X")
        await settle(pilot)

    assert snap_compare(app, terminal_size=SIZE, run_before=before)


@pytest.mark.slow
def test_snapshot_grid_diff_overlay(snap_compare, tmp_path):
    a = build_run(tmp_path / "runs")
    b = build_run(tmp_path / "runs", shift=1, model="org/m-b")
    app = app_on_run(tmp_path, a, diff=b)

    async def before(pilot):
        await settle(pilot)
        await pilot.press("l", "l", "l", "j")
        await pilot.pause(0.1)
        await settle(pilot)

    assert snap_compare(app, terminal_size=SIZE, run_before=before)
