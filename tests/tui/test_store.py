"""Write a run with moe_tui.cache.store.RunWriter into the user's cache, then list and open it from the TUI
through the default store (no model load)."""

from __future__ import annotations

import csv

import pytest

from moe_tui.cache import store
from tests.runs import model_facts, synthetic_run
from tests.tui.helpers import screen_text


@pytest.mark.slow
async def test_real_run_lists_and_opens_in_grid(tmp_path, monkeypatch):
    from moe_tui.tui.app import MoeTuiApp
    from moe_tui.tui.screens.grid import GridScreen
    from moe_tui.tui.settings import Settings
    from moe_tui.tui.widgets.routing_grid import RoutingGrid

    root = tmp_path / "runs"
    monkeypatch.setenv("MOE_TUI_CACHE", str(root))
    run = synthetic_run(store.cache_root(), corpus="/data/tiny.conllu")
    run_id = run.run_id
    app = MoeTuiApp(settings=Settings(export_dir=str(tmp_path)), inspect_fn=model_facts, scan_hf_cache=False)
    async with app.run_test(size=(120, 40)) as pilot:
        await pilot.pause()
        await pilot.press("f7")
        for _ in range(100):
            await pilot.pause(0.02)
            if app.screen.runs:
                break
        assert run_id in screen_text(app) and "fake/moe-tiny" in screen_text(app)
        await pilot.press("enter")
        for _ in range(100):
            await pilot.pause(0.02)
            if isinstance(app.screen, GridScreen):
                break
        screen = app.screen
        assert isinstance(screen, GridScreen)
        await pilot.pause()
        grid = screen.query_one(RoutingGrid)
        assert grid.n_layers == len(run.moe_layers) and grid.n_tokens == int(run.sentence_offsets[1])
        await pilot.press("l", "l", "e")
        rows = list(csv.reader(screen.last_export.open()))
        assert rows[1 + 2 * len(run.moe_layers)][:3] == ["Ġcat", "cat", "NOUN"]
