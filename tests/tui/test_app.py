"""Pilot tests: drive the app with keys against small real runs (no torch, no model)."""

from __future__ import annotations

import csv
import re
from contextlib import suppress

import pytest
from textual.worker import WorkerCancelled, WorkerFailed

from moe_tui.cache.store import RunStore
from moe_tui.tui.app import MoeTuiApp
from moe_tui.tui.screens.grid import GridScreen
from moe_tui.tui.screens.home import HomeScreen
from moe_tui.tui.screens.modals import ErrorModal, HelpScreen, TooSmallScreen
from moe_tui.tui.settings import Settings
from moe_tui.tui.widgets.routing_grid import RoutingGrid
from tests.runs import model_facts
from tests.tui.helpers import screen_text

SIZE = (120, 40)


def make_app(tmp_path, run, **kw) -> MoeTuiApp:
    """The app over the cache root of ``run`` (a session fixture run, alone in its root)."""
    settings = kw.pop("settings", None) or Settings(export_dir=str(tmp_path / "exports"))
    return MoeTuiApp(models=kw.pop("models", [str(tmp_path / "model-a")]), settings=settings,
                     inspect_fn=kw.pop("inspect_fn", model_facts),
                     run_store=kw.pop("run_store", lambda: RunStore(run.path.parent)),
                     scan_hf_cache=False, **kw)


def empty_store(tmp_path) -> RunStore:
    return RunStore(tmp_path / "no-runs")


async def wait_workers(app) -> None:
    with suppress(WorkerCancelled, WorkerFailed):
        await app.workers.wait_for_complete()


async def open_grid(app, pilot) -> GridScreen:
    await pilot.pause()
    await wait_workers(app)
    await pilot.press("f7")          # Runs tab
    await pilot.pause()
    await pilot.press("enter")       # open the highlighted run
    for _ in range(50):
        await pilot.pause(0.02)
        if isinstance(app.screen, GridScreen):
            break
    assert isinstance(app.screen, GridScreen)
    await pilot.pause()
    return app.screen


@pytest.mark.slow
async def test_model_pane_shows_facts_after_thread_inspect(tmp_path, tiny_run):
    calls = []

    def slow_inspect(path):
        import time

        calls.append(path)
        time.sleep(0.2)
        return model_facts(path)

    app = make_app(tmp_path, tiny_run, inspect_fn=slow_inspect)
    async with app.run_test(size=SIZE) as pilot:
        await pilot.pause(0.05)
        details = app.screen.query_one("#model-details")
        assert details.loading, "a loading state while inspect_model runs in its thread"
        await wait_workers(app)
        await pilot.pause()
        assert not details.loading
        text = screen_text(app)
        assert "Qwen3MoeForCausalLM" in text and "123.46M" in text and "bfloat16" in text
        assert calls == [str(tmp_path / "model-a")]
        assert app.selected_model == str(tmp_path / "model-a")


@pytest.mark.slow
async def test_model_typed_into_input_is_added_and_inspect_error_shown(tmp_path, tiny_run):
    def failing(path):
        raise ValueError("no config.json in [bold]x[/bold]")

    app = make_app(tmp_path, tiny_run, inspect_fn=failing)
    async with app.run_test(size=SIZE) as pilot:
        await wait_workers(app)
        app.screen.query_one("#model-path").focus()
        await pilot.press(*"/tmp/other-model")
        await pilot.press("enter")
        await pilot.pause()
        await wait_workers(app)
        await pilot.pause()
        assert app.selected_model == "/tmp/other-model"
        assert "no config.json in [bold]x[/bold]" in screen_text(app)   # escaped, not eaten as markup


@pytest.mark.slow
async def test_corpus_picker_completion_and_trust_warning(tmp_path, tiny_run):
    corpus = tmp_path / "corpora" / "tiny-dev.conllu"
    corpus.parent.mkdir()
    corpus.write_text("# text = a\n1\ta\ta\tDET\tDT\t_\t0\troot\t_\t_\n\n")
    app = make_app(tmp_path, tiny_run)
    async with app.run_test(size=SIZE) as pilot:
        await wait_workers(app)
        await pilot.press("f6")
        inp = app.screen.query_one("#corpus-path")
        assert app.focused is inp
        await pilot.press(*str(tmp_path / "corpora" / "ti"))
        await pilot.pause(0.1)
        assert inp._suggestion == str(corpus)
        await pilot.press("right")          # accept the suggestion
        assert inp.value == str(corpus)
        app.screen.query_one("#opt-trust-remote-code").value = True
        await pilot.pause()
        assert "trust remote code runs Python" in screen_text(app)
        fields = app.screen.extract_form()
        assert fields["data"] == str(corpus) and fields["trust_remote_code"] is True
        assert fields["tagset"] == "upos" and fields["batch_size"] == 16


@pytest.mark.slow
async def test_open_run_grid_navigation_side_panel(tmp_path, tiny_run):
    run = tiny_run
    app = make_app(tmp_path, run)
    async with app.run_test(size=SIZE) as pilot:
        screen = await open_grid(app, pilot)
        grid = screen.query_one(RoutingGrid)
        assert app.focused is grid
        assert grid.cursor == (0, 0)
        await pilot.press("l", "l", "right", "j", "down")
        assert grid.cursor == (2, 3)
        await pilot.press("h", "k")
        assert grid.cursor == (1, 2)
        await pilot.press("G")
        assert grid.cursor[1] == grid.n_tokens - 1
        await pilot.press("g")
        assert grid.cursor[1] == 0
        await pilot.press("pagedown")
        assert grid.cursor[0] == grid.n_layers - 1
        await pilot.press("pageup")
        assert grid.cursor[0] == 0
        await pilot.press("l", "l")            # token "cat" (NOUN)
        await pilot.pause()
        text = screen_text(app)
        assert "'Ġcat'" in text and "word cat" in text and "POS NOUN" in text
        e = int(run.experts[2, 0, 0])
        assert f"expert {e} @ layer 1" in text
        assert "routes" in text and "of NOUN tokens" in text
        # next / previous sentence
        await pilot.press("n")
        assert screen.sentence_index == 1 and "Dogs bark" in screen_text(app)
        await pilot.press("p")
        assert screen.sentence_index == 0
        # mouse: click a cell
        await pilot.click(RoutingGrid, offset=(grid._label_w + grid.cell_width * 4 + 1, 2 + 3))
        assert grid.cursor == (3, 4)


@pytest.mark.slow
async def test_grid_toggles_highlight_and_export(tmp_path, tiny_run):
    run = tiny_run
    app = make_app(tmp_path, run)
    async with app.run_test(size=SIZE) as pilot:
        screen = await open_grid(app, pilot)
        grid = screen.query_one(RoutingGrid)
        w1 = grid.cell_width
        await pilot.press("t")
        assert grid.show_all_k and grid.cell_width >= w1
        line = "".join(s.text for s in grid.render_line(2))
        e0, e1 = (int(x) for x in run.experts[0, 0])
        assert f"{e0} {e1}" in line, line
        await pilot.press("c")
        assert grid.colour_mode == "pos"
        assert "POS:" in screen_text(app) and "NOUN" in screen_text(app)
        await pilot.press("c")
        assert grid.colour_mode == "expert"
        await pilot.press("x")
        assert grid.highlight == int(run.experts[0, 0, 0])
        assert f"highlight: expert {grid.highlight}" in screen_text(app)
        await pilot.press("right_square_bracket")
        assert grid.highlight == (int(run.experts[0, 0, 0]) + 1) % run.num_experts
        await pilot.press("x")
        assert grid.highlight is None
        # export (all k shown -> k rows per cell)
        await pilot.press("e")
        await pilot.pause()
        path = screen.last_export
        assert path.parent == tmp_path / "exports" and path.exists()
        rows = list(csv.reader(path.open()))
        assert rows[0] == ["token", "word", "pos", "layer", "rank", "expert", "weight"]
        n_tok = int(run.sentence_offsets[1])
        assert len(rows) - 1 == n_tok * len(run.moe_layers) * run.top_k
        assert rows[1][:6] == ["<s>", "", "", "1", "0", str(int(run.experts[0, 0, 0]))]
        cat = [r for r in rows if r[0] == "Ġcat" and r[3] == "2" and r[4] == "1"][0]
        assert cat[1:3] == ["cat", "NOUN"] and cat[5] == str(int(run.experts[2, 1, 1]))
        assert float(cat[6]) == float(run.weights[2, 1, 1])  # unrounded
        assert not list(path.parent.glob("*.tmp-*"))
        assert str(path.resolve()) in "".join(n.message for n in app._notifications)
        # top-1 only after toggling back
        await pilot.press("t", "e")
        rows = list(csv.reader(screen.last_export.open()))
        assert len(rows) - 1 == n_tok * len(run.moe_layers)


@pytest.mark.slow
async def test_search_filters_sentences(tmp_path, tiny_run):
    app = make_app(tmp_path, tiny_run)
    async with app.run_test(size=SIZE) as pilot:
        screen = await open_grid(app, pilot)
        await pilot.press("slash")
        assert app.focused is screen.query_one("#search")
        await pilot.press(*"winter")
        for _ in range(100):  # the search runs in a worker; matches arrive as messages
            await pilot.pause(0.02)
            if not screen.searching:
                break
        ol = screen.query_one("#sentence-list")
        assert ol.n_rows == 1 and ol.sentence_at(0) == 3
        assert "1 match" in screen_text(app)
        await pilot.press("enter")
        await pilot.pause()
        assert screen.sentence_index == 3
        assert isinstance(app.focused, RoutingGrid)
        assert "Birds fly south" in screen_text(app)
        await pilot.press("escape")
        await pilot.pause()
        assert isinstance(app.screen, HomeScreen)


@pytest.mark.slow
async def test_help_lists_every_registry_key_and_keymap(tmp_path, tiny_run):
    from moe_tui.tui.actions import ACTIONS

    settings = Settings(keymap={"grid.export": "ctrl+e"}, export_dir=str(tmp_path))
    app = make_app(tmp_path, tiny_run, settings=settings)
    async with app.run_test(size=SIZE) as pilot:
        screen = await open_grid(app, pilot)
        await pilot.press("question_mark")
        await pilot.pause()
        assert isinstance(app.screen, HelpScreen)
        table = app.screen.query_one("#help-table")
        ids = {table.get_row_at(i)[3] for i in range(table.row_count)}
        assert {a.id for a in ACTIONS} <= ids
        row = [table.get_row_at(i) for i in range(table.row_count) if table.get_row_at(i)[3] == "grid.export"][0]
        assert row[1] == "ctrl+e"
        await pilot.press("escape")
        await pilot.pause()
        assert app.screen is screen
        # the user keymap really rebinds: e no longer exports, ctrl+e does
        await pilot.press("e")
        assert not hasattr(screen, "last_export")
        await pilot.press("ctrl+e")
        assert screen.last_export.exists()
        await pilot.press("f1")
        assert isinstance(app.screen, HelpScreen)


@pytest.mark.slow
async def test_command_palette_runs_registry_actions(tmp_path, tiny_run):
    app = make_app(tmp_path, tiny_run)
    async with app.run_test(size=SIZE) as pilot:
        screen = await open_grid(app, pilot)
        await pilot.press("ctrl+p")
        await pilot.pause()
        await pilot.press(*"all k")
        await pilot.pause(0.3)
        await pilot.press("enter")
        await pilot.pause(0.1)
        assert app.screen is screen
        assert screen.query_one(RoutingGrid).show_all_k


@pytest.mark.slow
async def test_open_corrupt_run_shows_copyable_error(tmp_path, tiny_run):
    app = make_app(tmp_path, tiny_run, run_store=lambda: empty_store(tmp_path))
    async with app.run_test(size=SIZE) as pilot:
        await wait_workers(app)
        app.open_run("deadbeef[red]x")
        for _ in range(50):
            await pilot.pause(0.02)
            if isinstance(app.screen, ErrorModal):
                break
        assert isinstance(app.screen, ErrorModal)
        await pilot.pause()
        assert "deadbeef[red]x" in screen_text(app)          # markup escaped
        await pilot.press("c")
        assert "deadbeef[red]x" in app.clipboard
        assert isinstance(app.screen, ErrorModal)
        await pilot.press("q")
        assert isinstance(app.screen, HomeScreen)


@pytest.mark.slow
async def test_too_small_terminal_message(tmp_path, tiny_run):
    app = make_app(tmp_path, tiny_run)
    async with app.run_test(size=(60, 20)) as pilot:
        await pilot.pause()
        await pilot.pause()
        assert isinstance(app.screen, TooSmallScreen)
        assert "Terminal too small" in screen_text(app)
        await pilot.resize_terminal(120, 40)
        await pilot.pause()
        await pilot.pause()
        assert isinstance(app.screen, HomeScreen)


@pytest.mark.slow
async def test_animation_off_by_default_and_theme_saved(tmp_path, monkeypatch):
    from moe_tui.tui.settings import load_settings

    cfg = tmp_path / "cfg" / "config.json"
    monkeypatch.setenv("MOE_TUI_CONFIG", str(cfg))
    app = MoeTuiApp(inspect_fn=model_facts, run_store=lambda: empty_store(tmp_path), scan_hf_cache=False)
    async with app.run_test(size=SIZE) as pilot:
        assert app.animation_level == "none"
        app.theme = "nord"
        await pilot.pause()
    assert load_settings(cfg).theme == "nord"


async def test_broken_settings_file_shows_error_and_uses_defaults(tmp_path, monkeypatch):
    cfg = tmp_path / "config.json"
    cfg.write_text("{not json")
    monkeypatch.setenv("MOE_TUI_CONFIG", str(cfg))
    app = MoeTuiApp(inspect_fn=model_facts, run_store=lambda: empty_store(tmp_path), scan_hf_cache=False)
    async with app.run_test(size=SIZE) as pilot:
        await pilot.pause()
        assert isinstance(app.screen, ErrorModal)
        assert "invalid settings" in screen_text(app)


@pytest.mark.slow
async def test_runs_tab_shows_provenance(tmp_path):
    import numpy as np

    from tests.runs import UPOS, synthetic_arrays, write_run

    root = tmp_path / "runs"
    arrays, records = synthetic_arrays()
    arrays["logits"] = np.zeros((*arrays["experts"].shape[:2], 8), dtype=np.float16)
    prov = {"python": "3.11.9", "torch": "2.13.0+cpu", "transformers": "5.24.0", "tokenizers": "0.23.3",
            "accelerate": "1.15.0", "model": {"name_or_path": "org/m", "revision": None, "commit_hash": "c0ffee12" * 5}}
    run = write_run(root, arrays, records, tags=UPOS, moe_layers=list(range(1, 7)), num_experts=8, top_k=2,
                    model="org/m", manifest_extra={"provenance": prov})
    arrays.pop("logits")  # made before provenance was recorded, without logits
    old = write_run(root, arrays, records, tags=UPOS, moe_layers=list(range(1, 7)), num_experts=8, top_k=2,
                    model="org/old")
    app = make_app(tmp_path, run)
    async with app.run_test(size=SIZE) as pilot:
        await pilot.pause()
        await wait_workers(app)
        await pilot.press("f7")
        await pilot.pause()
        table = app.screen.query_one("#runs-table")
        row = [r.run_id for r in app.screen.runs].index(run.run_id)
        table.move_cursor(row=row)
        await pilot.pause()
        text = screen_text(app)
        assert "made with python 3.11.9 · torch 2.13.0+cpu · transformers 5.24.0 · tokenizers 0.23.3 · " \
               "accelerate 1.15.0" in text
        assert f"model commit {'c0ffee12' * 5}" in text and "logits saved" in text
        table.move_cursor(row=[r.run_id for r in app.screen.runs].index(old.run_id))
        await pilot.pause()
        text = screen_text(app)
        assert "provenance not recorded" in text and "no logits" in text


@pytest.mark.slow
async def test_grid_shows_an_unused_rank_as_no_expert(tmp_path):
    """Per-layer top-k: the sentinel id (255) in a rank a layer does not use is drawn as a dim '·' of the width of
    an id, and is neither in the legend nor in the token's path."""
    import numpy as np

    from tests.runs import UPOS, synthetic_arrays, write_run

    arrays, recs = synthetic_arrays(n_layers=3, n_experts=8, top_k=2)
    arrays["experts"] = arrays["experts"].copy()
    arrays["experts"][:, 1, 1] = 255
    arrays["weights"] = arrays["weights"].copy()
    arrays["weights"][:, 1, 1] = 0
    run = write_run(tmp_path / "runs", arrays, recs, tags=UPOS, moe_layers=[1, 2, 3], num_experts=8, top_k=2)
    app = make_app(tmp_path, run)
    async with app.run_test(size=SIZE) as pilot:
        screen = await open_grid(app, pilot)
        grid = screen.query_one(RoutingGrid)
        await pilot.press("t")               # all k ids per cell
        await pilot.pause()
        text = screen_text(app)
        first = {m.group(1): (m.group(2), m.group(3)) for m in re.finditer(r"│(L\d)\s+(\S+) (\S+)", text)}
        e = np.asarray(run.experts)
        assert first["L1"] == (str(e[0, 0, 0]), str(e[0, 0, 1]))           # the <s> token's two experts
        assert first["L2"] == (str(e[0, 1, 0]), "·") and "255" not in text
        assert f"L2     {e[0, 1, 0]} " in text                              # its path: the one expert only
        assert len(grid._expert_seg(2, 1, 255, 0).text) == len(grid._expert_seg(2, 1, 3, 0).text)
        assert 255 not in screen._sentence_experts(2)
