"""Word view, expert card and the grid's diff overlay, driven with Pilot on small real runs whose routing is known
by construction (tests/runs.py: word_run, every token's experts are a formula of its global index)."""

from __future__ import annotations

import csv

import numpy as np
import pytest

from moe_tui.tui.screens.grid import GridScreen
from moe_tui.tui.widgets.routing_grid import RoutingGrid
from moe_tui.tui.widgets.row_list import RowList
from tests.runs import word_run as build_run
from tests.runs import word_run_experts as expected_experts
from tests.tui.helpers import app_on_run, screen_text


async def until(pilot, cond, what: str = "condition", n: int = 300) -> None:
    for _ in range(n):
        await pilot.pause(0.02)
        if cond():
            return
    raise AssertionError(f"timed out waiting for {what}")


@pytest.mark.slow
async def test_word_view_from_the_grid_sort_and_jump(tmp_path):
    run = build_run(tmp_path / "runs")
    app = app_on_run(tmp_path, run)
    async with app.run_test(size=(140, 40)) as pilot:
        await pilot.pause()
        grid_screen = app.screen
        assert isinstance(grid_screen, GridScreen)
        # sentence 1 ("I know that he left ."): token 3 is "that"; layer row 1 = decoder layer 2
        await pilot.press("l", "l", "l", "j")
        await pilot.press("w")
        await until(pilot, lambda: getattr(app.screen, "SCOPE", "") == "word" and app.screen.conc is not None,
                    "the concordance")
        word = app.screen
        assert word.query_text == "that" and word.by == "form" and word.conc.layer == 2
        assert word.conc.tokens.tolist() == [3, 8, 15, 21]
        await pilot.pause()
        text = screen_text(app)
        assert "4 occurrences in 4 sentences" in text
        # POS groups: SCONJ 2 (50.0%), then DET and PRON
        assert "SCONJ" in text and "50.0%" in text
        # the first row: its experts at layer 2 are those of global token 3
        lst = word.query_one(RowList)
        row0 = "".join(seg.text for seg in word._row(0, 120)._segments)
        assert "that" in row0 and " ".join(map(str, expected_experts(3, 1))) in row0
        # sort by POS group: the SCONJ occurrences (sentences 0 and 3) first
        await pilot.press("o")
        await pilot.pause()
        assert word.sort_key == "pos" and word.conc.take(word.order).sentence.tolist() == [0, 3, 1, 2]
        # expert, then left context (computed by the worker after the lookup), then back to POS
        await pilot.press("o", "o")
        await until(pilot, lambda: "left" in word.orders and word.sort_key == "left", "the left-context order")
        await pilot.pause()
        assert word.conc.take(word.order).sentence.tolist() == [1, 3, 2, 0]
        assert "sorted by left" in screen_text(app)
        await pilot.press("o", "o", "o")   # right, sentence, pos
        assert word.sort_key == "pos"
        await pilot.pause()
        # Enter on the second row jumps back to the grid at sentence 4, token 4 ("that"), layer row 1
        await pilot.press("j")
        assert lst.cursor == 1
        await pilot.press("enter")
        await until(pilot, lambda: app.screen is grid_screen, "the grid")
        assert grid_screen.sentence_index == 3 and grid_screen.grid.cursor == (1, 4)
        # a typed word: W, then the input
        await pilot.press("W")
        await until(pilot, lambda: getattr(app.screen, "SCOPE", "") == "word", "the word view")
        await pilot.press(*"dog", "enter")
        await until(pilot, lambda: app.screen.conc is not None, "the concordance")
        assert app.screen.conc.tokens.tolist() == [9]
        # export: the rows as the CLI writes them
        await pilot.press("e")
        await pilot.pause()
        with open(app.screen.last_export, newline="") as fh:
            rows = list(csv.reader(fh))
        assert rows[1] == ["1", "2", "That ", "dog", " runs .", "NOUN", "2",
                           " ".join(map(str, expected_experts(9, 1)))]


@pytest.mark.slow
async def test_expert_card_from_the_grid_and_stepping(tmp_path):
    run = build_run(tmp_path / "runs")
    app = app_on_run(tmp_path, run)
    async with app.run_test(size=(140, 50)) as pilot:
        await pilot.pause()
        await pilot.press("l")   # token 1 of sentence 1: global token 1, layer row 0 -> experts [1, 2]
        await pilot.press("X")
        await until(pilot, lambda: getattr(app.screen, "SCOPE", "") == "expert" and app.screen.card is not None,
                    "the card")
        card = app.screen.card
        assert (card.layer, card.expert) == (1, 1)
        analysed = [t for t in range(23) if t not in (0, 7, 12, 17)]
        mine = [t for t in analysed if 1 in expected_experts(t, 0)]
        text = screen_text(app)
        assert f"{len(mine)} of {2 * len(analysed)} top-2 assignments" in text
        assert "POS mix against the corpus" in text and "example contexts" in text
        await pilot.press("right_square_bracket")
        await until(pilot, lambda: app.screen.card is not None and app.screen.card.expert == 2, "expert 2")
        await pilot.press("greater_than_sign")
        await until(pilot, lambda: app.screen.card.layer == 2, "layer 2")
        await pilot.press("e")
        await pilot.pause()
        with open(app.screen.last_export, newline="") as fh:
            first = next(csv.DictReader(fh))
        assert first["section"] == "load" and int(first["count"]) == sum(
            1 for t in analysed if 2 in expected_experts(t, 1))
        await pilot.press("escape")
        await until(pilot, lambda: isinstance(app.screen, GridScreen), "the grid")


@pytest.mark.slow
async def test_expert_card_from_the_kl_and_spec_panes(tmp_path):
    run = build_run(tmp_path / "runs")
    app = app_on_run(tmp_path, run)
    async with app.run_test(size=(140, 45)) as pilot:
        await pilot.pause()
        await pilot.press("K")
        await until(pilot, lambda: getattr(app.screen, "KIND", "") == "kl" and app.screen.selected_cell() is not None,
                    "the KL pane", n=600)
        li, e = app.screen.selected_cell()
        await pilot.press("X")
        await until(pilot, lambda: getattr(app.screen, "SCOPE", "") == "expert" and app.screen.card is not None,
                    "the card")
        assert (app.screen.layer_idx, app.screen.expert) == (li, e)
        # the specialisation pane: the top expert of the cursor's (layer, POS), as its Enter jump highlights
        await pilot.press("escape")
        await until(pilot, lambda: getattr(app.screen, "KIND", "") == "kl", "the KL pane")
        await pilot.press("s")
        await until(pilot, lambda: getattr(app.screen, "KIND", "") == "spec" and "spec_layer" in app.screen.tables,
                    "the Spec pane", n=600)
        await pilot.press("right", "right")   # off the layer column, onto a POS
        await until(pilot, lambda: app.screen.jump_target() is not None, "a POS cell")
        _, li, _, e = app.screen.jump_target()
        await pilot.press("X")
        await until(pilot, lambda: getattr(app.screen, "SCOPE", "") == "expert" and app.screen.card is not None,
                    "the card")
        assert (app.screen.layer_idx, app.screen.expert) == (li, e)


async def test_diff_overlay_marks_differing_cells_and_counts_per_layer(tmp_path):
    a = build_run(tmp_path / "runs")
    b = build_run(tmp_path / "runs", shift=1, model="org/m-b")
    app = app_on_run(tmp_path, a, diff=b)
    async with app.run_test(size=(140, 40)) as pilot:
        await pilot.pause()
        screen = app.screen
        await until(pilot, lambda: screen.diff_table is not None, "the disagreement table")
        grid = screen.query_one(RoutingGrid)
        # sentence 1 = global tokens 0..6; the second run differs at layer row 1 for tokens 0, 3, 6
        np.testing.assert_array_equal(grid.diff[:, 1], [t % 3 == 0 for t in range(7)])
        assert not grid.diff[:, 0].any()
        row1 = "".join(seg.text for seg in grid.render_line(3)._segments)   # header rows 0-1, layer rows 2..
        assert row1.count(RoutingGrid.DIFF_MARK) == 3
        row0 = "".join(seg.text for seg in grid.render_line(2)._segments)
        assert RoutingGrid.DIFF_MARK not in row0
        await pilot.press("j")
        await pilot.pause(0.1)
        side = screen._side.plain
        analysed = [t for t in range(23) if t not in (0, 7, 12, 17)]
        share = sum(1 for t in analysed if t % 3 == 0) / len(analysed)
        assert f"diff vs run {b.run_id[:10]}" in side and f"{share:7.2%}" in side and "set differs" in side
        # D clears the overlay
        await pilot.press("D")
        await pilot.pause()
        assert screen.diff_run is None and grid.diff is None


@pytest.mark.slow
async def test_diff_picked_in_the_grid_and_refused_for_another_tokenizer(tmp_path):
    a = build_run(tmp_path / "runs")
    build_run(tmp_path / "runs", model="org/m-c", token_ids=np.arange(23)[::-1])
    app = app_on_run(tmp_path, a)
    async with app.run_test(size=(140, 40)) as pilot:
        await pilot.pause()
        await pilot.press("D")
        await until(pilot, lambda: type(app.screen).__name__ == "RunPickScreen", "the run list")
        await pilot.press("enter")
        await until(pilot, lambda: type(app.screen).__name__ == "ErrorModal", "the error dialog")
        assert "tokenize the corpus differently" in app.screen.message

