"""The TUI with runs made by moe-tui generate: the grid's prompt-end bar, the panes' origin toggle, Home's entry."""

from __future__ import annotations

import pytest

from moe_tui.core.analysis.origin import table_of_origin
from moe_tui.core.extract.options import GenerateOptions
from moe_tui.tui.screens.home import HomeScreen
from moe_tui.tui.widgets.routing_grid import RoutingGrid
from tests.runs import ORIGIN_PROMPT_TOKENS, origin_run
from tests.tui.test_app import SIZE, make_app, open_grid, wait_workers


@pytest.fixture(scope="module")
def gen_run(tmp_path_factory):
    return origin_run(tmp_path_factory.mktemp("gen_runs"))


def _line(grid: RoutingGrid, y: int) -> str:
    return "".join(seg.text for seg in grid.render_line(y))


@pytest.mark.slow
async def test_grid_marks_where_the_prompt_ends(tmp_path, gen_run, tiny_run):
    app = make_app(tmp_path, gen_run)
    async with app.run_test(size=SIZE) as pilot:
        screen = await open_grid(app, pilot)
        grid = screen.query_one(RoutingGrid)
        assert grid.data.gen_start == ORIGIN_PROMPT_TOKENS
        lines = [_line(grid, y) for y in range(2 + grid.n_layers)]
        col = grid._label_w + ORIGIN_PROMPT_TOKENS * grid.cell_width - 1  # the gap after the last prompt token
        assert all(line[col] == RoutingGrid.PROMPT_END for line in lines), lines
        assert all(line.count(RoutingGrid.PROMPT_END) == 1 for line in lines)
        tokens = lines[0]
        assert "sat" in tokens[:col] and "on" in tokens[col:]
    plain = make_app(tmp_path, tiny_run)
    async with plain.run_test(size=SIZE) as pilot:
        grid = (await open_grid(plain, pilot)).query_one(RoutingGrid)
        assert grid.data.gen_start is None
        assert not any(RoutingGrid.PROMPT_END in _line(grid, y) for y in range(2 + grid.n_layers))


async def test_spec_pane_toggles_origin(gen_run):
    from moe_tui.core.analysis.report import report_tables
    from moe_tui.core.analysis.view import RunView
    from tests.tui.helpers import screen_text
    from tests.tui.test_panes_snapshots import PaneApp, settle

    view = RunView.from_run(gen_run)
    tables = report_tables(view, by_origin=True)
    app = PaneApp("spec", gen_run, tables, view)
    async with app.run_test(size=SIZE) as pilot:
        await settle(pilot)
        screen = app.screen
        matrix = screen.query_one("#spec-matrix")
        assert screen.origin == "all" and matrix.report_table is tables["spec_layer"]
        for origin in ("prompt", "generated", "all"):
            await pilot.press("O")
            await pilot.pause()
            assert screen.origin == origin
            assert f"origin: {origin}" in screen_text(app)
            want = table_of_origin(tables, "spec_layer", origin)
            assert matrix.report_table["rows"] == want["rows"]
            summary = screen.query_one("#spec-summary").report_table
            assert summary["rows"] == table_of_origin(tables, "spec_pos", origin)["rows"]


async def test_home_generates_from_the_prompts_file(tmp_path, gen_run):
    prompts = tmp_path / "prompts.txt"
    prompts.write_text("the cat\n")
    app = make_app(tmp_path, gen_run)
    started = []
    app.start_extraction = started.append
    async with app.run_test(size=SIZE) as pilot:
        await pilot.pause()
        await wait_workers(app)
        home = app.screen
        assert isinstance(home, HomeScreen)
        home.query_one("#corpus-path").value = str(prompts)
        home.query_one("#gen-opt-max-new-tokens").value = "7"
        home.query_one("#gen-opt-do-sample").value = True
        await pilot.press("ctrl+g")
        await pilot.pause()
    assert len(started) == 1
    opts = started[0]
    assert isinstance(opts, GenerateOptions)
    assert (opts.prompts, opts.max_new_tokens, opts.do_sample, opts.tagger) == (str(prompts), 7, True, "builtin")
    assert opts.model == app.selected_model


@pytest.mark.slow
async def test_probe_pane_toggles_origin(gen_run):
    from moe_tui.core.analysis.report import report_tables
    from moe_tui.core.analysis.view import RunView
    from tests.tui.test_panes import fast_options
    from tests.tui.test_panes_snapshots import PaneApp, settle

    view = RunView.from_run(gen_run)
    tables = report_tables(view, probe=True, controls=True, by_origin=True, options=fast_options())
    app = PaneApp("probe", gen_run, tables, view)
    async with app.run_test(size=SIZE) as pilot:
        await settle(pilot)
        acc = app.screen.query_one("#probe-acc")
        assert acc.report_table is tables["probe"]
        for origin in ("prompt", "generated"):
            await pilot.press("O")
            await pilot.pause()
            want = table_of_origin(tables, "probe", origin)
            assert acc.report_table["rows"] == want["rows"] and {r[0] for r in want["rows"]} == {origin}
        await pilot.press("O")
        await pilot.pause()
        assert acc.report_table is tables["probe"]
