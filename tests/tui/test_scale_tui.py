"""The TUI on a run with many sentences (a real run from the run writer): the sentence list is virtual, search runs in
a worker over the stored text and shows its matches as they come, and `moe-tui open RUN` starts on the grid."""

from __future__ import annotations

import numpy as np
import pytest

from moe_tui.cache.columns import StringTable
from moe_tui.cache.store import RunStore
from moe_tui.tui.app import MoeTuiApp
from moe_tui.tui.screens.grid import GridScreen
from moe_tui.tui.settings import Settings
from moe_tui.tui.widgets.routing_grid import RoutingGrid
from moe_tui.tui.widgets.sentence_list import SentenceList
from tests.runs import UPOS, model_facts, write_run
from tests.tui.helpers import screen_text

N_SENT = 6000
WORDS = ["Alpha", "beta", "Gamma", "delta", "ÉCOLE", "straße", "x,y", "ΣΑΣ"]


def many_sentences_run(root) -> object:
    """N_SENT sentences of 3 words (one token each, after a special <s>): sentence i is "w<i> <a> <b>"."""
    rng = np.random.default_rng(0)
    recs, pos = [], []
    for i in range(N_SENT):
        ws = [f"w{i}", WORDS[int(rng.integers(0, len(WORDS)))], WORDS[int(rng.integers(0, len(WORDS)))]]
        text, words, c = " ".join(ws), [], 0
        for w in ws:
            t = UPOS[int(rng.integers(0, len(UPOS)))]
            words.append([w, t, c, c + len(w)])
            pos.append(UPOS.index(t))
            c += len(w) + 1
        recs.append({"id": f"s{i}", "text": text, "words": words, "tokens": ["<s>"] + ws})
    T = 4 * N_SENT
    special = np.zeros(T, bool)
    special[0::4] = True
    p = np.full(T, -1, np.int16)
    p[~special] = pos
    wi = np.tile(np.array([-1, 0, 1, 2], np.int32), N_SENT)
    arrays = {"token_ids": np.arange(T, dtype=np.int32), "sentence_offsets": np.arange(0, T + 1, 4, dtype=np.int64),
              "word_index": wi, "pos": p, "special": special, "crossing": np.zeros(T, bool),
              "offsets": np.zeros((T, 2), np.int32), "experts": rng.integers(0, 8, (T, 3, 2)).astype(np.uint8),
              "weights": rng.random((T, 3, 2)).astype(np.float16)}
    run = write_run(root, arrays, recs, tags=UPOS, moe_layers=[1, 2, 3], num_experts=8, top_k=2, model="fake/many",
                    corpus="/data/many.conllu")
    return run, recs


def make_app(tmp_path, run) -> MoeTuiApp:
    return MoeTuiApp(settings=Settings(export_dir=str(tmp_path)), inspect_fn=model_facts,
                     run_store=lambda: RunStore(run.path.parent), scan_hf_cache=False, open_run=run)


async def wait_search(pilot, screen) -> None:
    for _ in range(300):
        await pilot.pause(0.02)
        if not screen.searching:
            return
    failed = [(w.name, w.state, w.error) for w in screen.app.workers]
    raise AssertionError(f"the search did not finish: {failed}")


@pytest.mark.slow
async def test_open_starts_on_the_grid_and_the_sentence_list_is_virtual(tmp_path, monkeypatch):
    run, recs = many_sentences_run(tmp_path / "runs")
    decoded: list[int] = []
    real_getitem = StringTable.__getitem__

    def counting(self, i):
        decoded.append(i)
        return real_getitem(self, i)

    monkeypatch.setattr(StringTable, "__getitem__", counting)
    app = make_app(tmp_path, run)
    async with app.run_test(size=(120, 40)) as pilot:
        await pilot.pause()
        screen = app.screen
        assert isinstance(screen, GridScreen) and screen.run is run  # `moe-tui open` lands on the grid
        assert screen.query_one(RoutingGrid).data is not None
        lst = screen.query_one(SentenceList)
        assert lst.n_rows == N_SENT
        text = screen_text(app)
        assert f"sentence 1/{N_SENT}" in text and "   1 w0 " in text
        assert len(set(decoded)) < 100, len(set(decoded))  # only the lines on screen were decoded
        # the list follows `n`, jumps to the end, and picks a sentence
        await pilot.press("n", "n")
        assert lst.sentence_at(lst.cursor) == 2 and screen.sentence_index == 2
        lst.focus()
        await pilot.press("end")
        await pilot.pause()
        assert screen.sentence_index == N_SENT - 1
        assert f"{N_SENT} w{N_SENT - 1} " in screen_text(app)
        assert len(set(decoded)) < 200, len(set(decoded))
        await pilot.press("up", "up")
        await pilot.pause()
        assert screen.sentence_index == N_SENT - 3
        assert screen.data.text == recs[N_SENT - 3]["text"]


@pytest.mark.slow
async def test_search_runs_in_a_worker_and_shows_matches_as_they_come(tmp_path, monkeypatch):

    import time

    import moe_tui.cache.columns as columns

    run, recs = many_sentences_run(tmp_path / "runs")
    real_search = columns.search_strings

    def slowed(table, query, **kw):  # a search that takes a while, as on a large run
        for hits in real_search(table, query, chunk_bytes=4096):
            time.sleep(0.01)
            yield hits

    monkeypatch.setattr(columns, "search_strings", slowed)
    app = make_app(tmp_path, run)
    async with app.run_test(size=(120, 40)) as pilot:
        await pilot.pause()
        screen = app.screen
        batches = []
        real = SentenceList.append_rows

        def spy(self, more, status=""):
            batches.append(len(more))
            return real(self, more, status)

        monkeypatch.setattr(SentenceList, "append_rows", spy)
        lst = screen.query_one(SentenceList)
        await pilot.press("slash", *"école")
        await wait_search(pilot, screen)
        expected = [i for i, r in enumerate(recs) if "école" in r["text"].casefold()]
        assert 0 < len(expected) < N_SENT
        assert lst.rows.tolist() == expected  # case folded: "ÉCOLE" matches
        assert f"{len(expected):,} matches" in screen_text(app)
        assert len([b for b in batches if b]) >= 3  # the matches came in several messages, as they were found
        # case folding beyond ASCII: "STRASSE" finds "straße"; nothing found says so
        for _ in "école":
            await pilot.press("backspace")
        await pilot.press(*"STRASSE")
        await wait_search(pilot, screen)
        assert lst.rows.tolist() == [i for i, r in enumerate(recs) if "strasse" in r["text"].casefold()]
        for _ in "STRASSE":
            await pilot.press("backspace")
        await pilot.press(*"qqq")
        await wait_search(pilot, screen)
        assert lst.n_rows == 0 and "no sentence matches" in screen_text(app)
        for _ in "qqq":
            await pilot.press("backspace")
        await pilot.pause()
        assert lst.rows is None and lst.n_rows == N_SENT  # an empty search shows every sentence again
        # enter opens the first match and gives the grid the keys
        await pilot.press(*"w4999 ")
        await wait_search(pilot, screen)
        await pilot.press("enter")
        await pilot.pause()
        assert screen.sentence_index == 4999 and isinstance(app.focused, RoutingGrid)


@pytest.mark.slow
async def test_a_new_search_stops_the_old_one(tmp_path, monkeypatch):
    """Typing on while a search runs: results of the older search never reach the list."""
    import functools
    import time

    import moe_tui.cache.columns as columns

    run, recs = many_sentences_run(tmp_path / "runs")
    real = columns.search_strings

    def slow(table, query, **kw):
        for hits in real(table, query, chunk_bytes=2048):
            time.sleep(0.002)
            yield hits

    monkeypatch.setattr(columns, "search_strings", functools.partial(slow))
    app = make_app(tmp_path, run)
    async with app.run_test(size=(120, 40)) as pilot:
        await pilot.pause()
        screen = app.screen
        await pilot.press("slash", *"beta")
        await pilot.pause(0.05)
        await pilot.press("backspace", "backspace", "backspace", "backspace", *"gamma")
        await wait_search(pilot, screen)
        assert screen.query_one(SentenceList).rows.tolist() == [
            i for i, r in enumerate(recs) if "gamma" in r["text"].casefold()]


def test_open_command_refuses_a_bad_run_in_one_line(tmp_path, capsys):
    from moe_tui.cli import main

    code = main(["open", "ffffffffffffffff", "--cache-dir", str(tmp_path)])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and len(err) == 1 and err[0].startswith("moe-tui: error: unknown run 'ffffffffffffffff'")


def test_open_command_opens_the_run_before_the_tui(tmp_path, monkeypatch):
    import moe_tui.cli
    import moe_tui.tui.app

    run, _ = many_sentences_run(tmp_path / "runs")
    seen = {}

    def fake_run_app(**kw):
        seen.update(kw)
        return 0

    monkeypatch.setattr(moe_tui.tui.app, "run_app", fake_run_app)
    assert moe_tui.cli.main(["open", run.run_id[:6], "--cache-dir", str(tmp_path / "runs")]) == 0
    assert seen["open_run"].run_id == run.run_id and seen["cache_dir"] == str(tmp_path / "runs")


@pytest.mark.slow
async def test_open_makes_the_home_screen_only_when_asked(tmp_path):
    from moe_tui.tui.screens.home import HomeScreen

    run, _ = many_sentences_run(tmp_path / "runs")
    app = make_app(tmp_path, run)
    async with app.run_test(size=(120, 40)) as pilot:
        await pilot.pause()
        assert not any(isinstance(s, HomeScreen) for s in app.screen_stack)
        await pilot.press("s")            # a pane over the grid: back returns to the grid
        for _ in range(100):
            await pilot.pause(0.02)
            if type(app.screen).__name__ == "SpecScreen":
                break
        await pilot.press("escape")
        await pilot.pause()
        assert isinstance(app.screen, GridScreen)
        await pilot.press("escape")       # back from the grid: home, with the run in its list
        for _ in range(100):
            await pilot.pause(0.02)
            if isinstance(app.screen, HomeScreen):
                break
        assert isinstance(app.screen, HomeScreen)
        assert "Models" in screen_text(app)


@pytest.mark.slow
async def test_a_failing_search_says_so_and_stops(tmp_path, monkeypatch):
    import moe_tui.cache.columns as columns

    run, _ = many_sentences_run(tmp_path / "runs")

    def broken(table, query, **kw):
        yield np.array([0, 1], dtype=np.int64)
        raise OSError(5, "Input/output error")

    monkeypatch.setattr(columns, "search_strings", broken)
    app = make_app(tmp_path, run)
    async with app.run_test(size=(120, 40)) as pilot:
        await pilot.pause()
        screen = app.screen
        await pilot.press("slash", "w")
        await wait_search(pilot, screen)
        assert str(screen.query_one("#search").border_subtitle) == "search failed"
        assert any("OSError" in n.message for n in app._notifications)
        assert screen.query_one(SentenceList).rows.tolist() == [0, 1]  # what was found stays listed
