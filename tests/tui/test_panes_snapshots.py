"""SVG snapshots of the analysis panes at a fixed size (120x36). Nothing moves: the probe tables are computed
before the app starts (no worker runs while the snapshot is taken), toasts are cleared, animations are off.

Update after reviewing snapshot_report.html: ``.venv/bin/python -m pytest tests/tui/test_panes_snapshots.py --snapshot-update``.
"""

from __future__ import annotations

from contextlib import suppress
from pathlib import Path

import pytest
from textual.worker import WorkerCancelled, WorkerFailed

import moe_tui.tui.app
from moe_tui.cache.store import RunStore
from moe_tui.tui.app import MoeTuiApp
from moe_tui.tui.settings import Settings
from tests.runs import model_facts
from tests.tui.helpers import fast_options

SIZE = (120, 36)


@pytest.fixture(scope="module")
def probed(tiny_run):
    """A small run with every table of `moe-tui report --probe --controls --information` (fast options), computed
    once."""
    from moe_tui.core.analysis.report import report_tables
    from moe_tui.core.analysis.view import RunView

    run = tiny_run
    view = RunView.from_run(run)
    return run, view, report_tables(view, probe=True, controls=True, information=True, options=fast_options())


class PaneApp(MoeTuiApp):
    """The real app, opened straight on one pane (skips composing the home screen)."""

    CSS_PATH = str(Path(moe_tui.tui.app.__file__).with_name("app.tcss"))   # relative paths resolve against this module

    def __init__(self, kind: str, run, tables=None, view=None) -> None:
        super().__init__(models=["/models/moe-tiny"], settings=Settings(), inspect_fn=model_facts,
                         run_store=lambda: RunStore(run.path.parent), scan_hf_cache=False)
        self.report_options = fast_options()
        self.kind, self.pane_run = kind, run
        if tables is not None:
            data = self.analysis_data(run)
            data.view, data.tables = view, dict(tables)
            data.probe_done = data.controls_done = True
            data.information_done = "conditional" in tables
            data.progress = ("done", 1, 1)

    def on_mount(self, event) -> None:
        from moe_tui.tui.screens.panes import PANES

        event.prevent_default()          # MoeTuiApp.on_mount would push the home screen on top

        self.push_screen(PANES[self.kind](self.pane_run))


async def settle(pilot) -> None:
    app = pilot.app
    for _ in range(200):
        data = getattr(app, "analysis", {}).get(app.pane_run.run_id)
        if data is not None and "spec_layer" in data.tables and data.view is not None:
            break
        await pilot.pause(0.02)
    with suppress(WorkerCancelled, WorkerFailed):
        await app.workers.wait_for_complete()
    await pilot.pause()
    app.clear_notifications()
    await pilot.pause()


def test_snapshot_spec_pane(snap_compare, probed):
    run, view, tables = probed

    async def run_before(pilot):
        await settle(pilot)
        await pilot.press("right", "right", "down")        # cursor on (layer 2, ADP): plotted with the null band
        await settle(pilot)

    assert snap_compare(PaneApp("spec", run, tables, view), terminal_size=SIZE, run_before=run_before)


def test_snapshot_kl_pane(snap_compare, tiny_run):
    async def run_before(pilot):
        await settle(pilot)
        await pilot.press("down", "right", "right")
        await settle(pilot)

    assert snap_compare(PaneApp("kl", tiny_run), terminal_size=SIZE, run_before=run_before)


def test_snapshot_probe_pane(snap_compare, probed):
    run, view, tables = probed
    assert snap_compare(PaneApp("probe", run, tables, view), terminal_size=SIZE, run_before=settle)


def test_snapshot_compare_pane(snap_compare, two_runs):
    a, b = two_runs

    async def run_before(pilot):
        await settle(pilot)
        sel = pilot.app.screen.query_one("#compare-runs")
        for _ in range(200):
            if sel.option_count == 2:
                break
            await pilot.pause(0.02)
        sel.select(b.run_id)
        t1 = pilot.app.screen.query_one("#compare-t1")
        for _ in range(200):
            if t1.row_count == 2:
                break
            await pilot.pause(0.02)
        await settle(pilot)

    assert snap_compare(PaneApp("compare", a), terminal_size=SIZE, run_before=run_before)
