"""`moe-tui demo` (and a first `moe-tui`) opens on something real: the demo model is extracted, then shown."""

from __future__ import annotations

import pytest

from moe_tui.cache.store import RunStore
from moe_tui.core.demo import demo_corpus_path, demo_model_path
from moe_tui.tui.app import MoeTuiApp

pytestmark = pytest.mark.slow  # seconds per test: child processes, training, full flows


async def test_demo_extracts_and_opens_the_grid():
    app = MoeTuiApp(demo=True)
    async with app.run_test(size=(140, 45)) as pilot:
        from moe_tui.tui.widgets.routing_grid import RoutingGrid

        def grid_shown() -> bool:  # pushed, mounted and filled (not only pushed)
            grids = list(app.screen.query(RoutingGrid)) if type(app.screen).__name__ == "GridScreen" else []
            return bool(grids) and grids[0].data is not None

        for _ in range(6000):  # the real child process (torch import + 2,000 sentences): a hang guard, not a time limit
            await pilot.pause(0.1)
            if grid_shown():
                break
        assert type(app.screen).__name__ == "GridScreen", app.screen
        assert grid_shown()
        await pilot.pause()          # let the grid finish mounting before the app closes
    [info] = RunStore().list_runs()
    run = RunStore().open(info.run_id)
    assert run.manifest["model"]["name_or_path"] == str(demo_model_path())
    assert run.manifest["corpus"]["path"] == str(demo_corpus_path().resolve())
    assert len(run.sentences) == 2000


def test_first_launch_without_runs_picks_the_demo(monkeypatch):
    import moe_tui.cli
    import moe_tui.tui.app

    seen = {}

    def fake_run_app(models=None, data=None, demo=False):
        seen.update(models=models, data=data, demo=demo)
        return 0

    monkeypatch.setattr(moe_tui.tui.app, "run_app", fake_run_app)
    assert moe_tui.cli.main([]) == 0
    assert seen["demo"] is True
    assert moe_tui.cli.main(["--model", "some/folder"]) == 0
    assert seen["demo"] is False and seen["models"] == ["some/folder"]
