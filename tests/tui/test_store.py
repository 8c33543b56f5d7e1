"""Write a real run with moe_tui.cache.store.RunWriter, then list and open it from the TUI (no model load)."""

from __future__ import annotations

import csv

import numpy as np
import pytest

from tests.tui_fakes import fake_inspect, fake_run, screen_text

store = pytest.importorskip("moe_tui.cache.store")


def write_real_run(root, fake) -> str:
    identity = {"model": {"name_or_path": "fake/moe-tiny"}, "corpus": {"path": "/data/tiny.conllu"}, "tagset": "upos"}
    run_id = store.run_id_for(identity)
    w = store.RunWriter(root / run_id, identity)
    w.begin()
    off = fake.sentence_offsets
    arrays = {k: np.asarray(getattr(fake, k)) for k in store.SHARD_ARRAYS if k not in ("lengths", "sentence_index")}
    arrays["lengths"] = np.diff(off).astype(np.int64)
    arrays["sentence_index"] = np.arange(len(off) - 1, dtype=np.int64)
    w.write_shard(0, arrays)
    model = {"name_or_path": "fake/moe-tiny", "moe_layers": fake.moe_layers, "num_experts": fake.num_experts,
             "top_k": fake.top_k}
    w.finalize(1, fake.sentences, {"model": model, "tagset": {"name": "upos", "tags": list(fake.tags)},
                                   "corpus": {"path": "/data/tiny.conllu"}})
    return run_id


@pytest.mark.slow
async def test_real_run_lists_and_opens_in_grid(tmp_path, monkeypatch):
    from moe_tui.tui.app import MoeTuiApp
    from moe_tui.tui.screens.grid import GridScreen
    from moe_tui.tui.settings import Settings
    from moe_tui.tui.widgets.routing_grid import RoutingGrid

    root = tmp_path / "runs"
    monkeypatch.setenv("MOE_TUI_CACHE", str(root))
    fake = fake_run()
    run_id = write_real_run(store.cache_root(), fake)
    app = MoeTuiApp(settings=Settings(export_dir=str(tmp_path)), inspect_fn=fake_inspect, scan_hf_cache=False)
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
        assert grid.n_layers == len(fake.moe_layers) and grid.n_tokens == int(fake.sentence_offsets[1])
        await pilot.press("l", "l", "e")
        rows = list(csv.reader(screen.last_export.open()))
        assert rows[1 + 2 * len(fake.moe_layers)][:3] == ["Ġcat", "cat", "NOUN"]
