"""Pilot tests of the analysis panes (specialisation, KL, probe, compare) on small real runs.

Every export is checked against ``moe_tui.core.analysis.writer.write_report`` (what ``moe-tui report`` writes) byte for byte.
"""

from __future__ import annotations

import subprocess
import sys
from contextlib import suppress
from pathlib import Path

import numpy as np
import pytest
from textual.worker import WorkerCancelled, WorkerFailed

from moe_tui.cache.store import RunStore
from moe_tui.tui import actions
from moe_tui.tui.app import MoeTuiApp
from moe_tui.tui.settings import Settings
from tests.runs import model_facts
from tests.tui.helpers import fast_options, screen_text

SIZE = (120, 36)
REPO = Path(__file__).resolve().parents[2]


def make_app(tmp_path, runs) -> MoeTuiApp:
    """The app over the cache root of ``runs`` (session fixture runs, alone in their root)."""
    root = runs[0].path.parent
    assert {r.path.parent for r in runs} == {root}
    app = MoeTuiApp(models=[str(tmp_path / "model-a")], settings=Settings(export_dir=str(tmp_path / "exports")),
                    inspect_fn=model_facts, run_store=lambda: RunStore(root), scan_hf_cache=False)
    app.report_options = fast_options()
    return app


async def until(pilot, cond, timeout: float = 30.0, step: float = 0.02) -> None:
    n = int(timeout / step)
    for _ in range(n):
        if cond():
            return
        await pilot.pause(step)
    raise AssertionError(f"condition not met after {timeout}s:\n{screen_text(pilot.app)}")


async def open_from_home(pilot, key: str, kind: str, run_id: str | None = None):
    """Home -> Runs tab -> (the row of ``run_id``, else the first) -> ``key``: the pane of that run."""
    app = pilot.app
    await pilot.pause()
    with suppress(WorkerCancelled, WorkerFailed):
        await app.workers.wait_for_complete()
    await pilot.press("f7")
    await until(pilot, lambda: bool(getattr(app.screen, "runs", None)))
    if run_id is not None:
        row = [r.run_id for r in app.screen.runs].index(run_id)
        app.screen.query_one("#runs-table").move_cursor(row=row)
        await pilot.pause()
    await pilot.press(key)
    await until(pilot, lambda: getattr(app.screen, "KIND", "") == kind)
    screen = app.screen
    await until(pilot, lambda: "spec_layer" in screen.tables and screen.data.view is not None)
    await pilot.pause()
    return screen


def reference(tmp_path, runs, **kw) -> Path:
    from moe_tui.core.analysis.view import RunView
    from moe_tui.core.analysis.writer import write_report

    out = tmp_path / "reference"
    write_report([RunView.from_run(r) for r in runs], out, options=fast_options(), **kw)
    return out


def exported(app_screen) -> bytes:
    assert app_screen.last_export is not None and app_screen.last_export.is_absolute()
    return app_screen.last_export.read_bytes()


@pytest.mark.slow
async def test_spec_pane_sort_export_plot_and_jump_to_grid(tmp_path, tiny_run):
    run = tiny_run
    app = make_app(tmp_path, [run])
    ref = reference(tmp_path, [run]) / run.run_id
    async with app.run_test(size=SIZE) as pilot:
        screen = await open_from_home(pilot, "s", "spec")
        text = screen_text(app)
        assert "global Spec" in text and "mean_spec" in text
        # beside the global Spec: how many tags it averages, and (end of the title) which
        title = str(screen.query_one("#pane-title").content)
        gpos = " ".join(t for t in run.tags if t in {"ADJ", "ADP", "ADV", "DET", "NOUN", "PRON", "PUNCT", "VERB"})
        assert "(8 POS)" in text and title.endswith(f"global POS: {gpos}")
        m = screen.query_one("#spec-matrix")
        tags = list(run.tags)
        assert m.row_count == len(run.moe_layers) and m.headers == ["layer", *tags, "U"]
        # numbers printed in the cells (readable without colour) and shaded
        assert "100.0" in text
        # export the matrix (its data = spec_layer.csv) and the summary (spec_pos.csv)
        await pilot.press("e")
        assert exported(screen) == (ref / "spec_layer.csv").read_bytes()
        screen.query_one("#spec-summary").focus()
        await pilot.press("e")
        assert exported(screen) == (ref / "spec_pos.csv").read_bytes()
        # sort the summary by mean_spec (descending first for numbers, missing last), then reverse
        summary = screen.query_one("#spec-summary")
        summary.move_cursor(column=1)
        await pilot.press("o")
        means = [summary.raw_rows[i][1] for i in summary.order]
        present = [x for x in means if x is not None]
        assert present == sorted(present, reverse=True) and means[len(present):] == [None] * (len(means) - len(present))
        await pilot.press("o")
        means = [summary.raw_rows[i][1] for i in summary.order if summary.raw_rows[i][1] is not None]
        assert means == sorted(means)
        # copy as TSV (OSC 52)
        await pilot.press("y")
        assert app.clipboard.startswith("pos\tmean_spec\tmax_spec\tmax_layer\n")
        # plot: several POS at once, U line; the plot exports spec_layer
        sel = screen.query_one("#spec-pos")
        sel.select("NOUN")
        sel.select("VERB")
        await pilot.pause()
        plot = screen.query_one("#spec-plot")
        assert [s[0] for s in plot.spec.series] == ["NOUN", "VERB"] and plot.spec.hlines
        plot.focus()
        await pilot.press("e")
        assert exported(screen) == (ref / "spec_layer.csv").read_bytes()
        # Spec / ΔU toggle
        m.focus()
        await pilot.press("d")
        noun_col = 1 + tags.index("NOUN")
        spec_rows = {(r[0], r[1]): r for r in screen.tables["spec_layer"]["rows"]}
        assert m.raw_rows[0][noun_col] == pytest.approx(spec_rows[(run.moe_layers[0], "NOUN")][5])
        await pilot.press("d")
        # sort the matrix by the NOUN column, then Enter on (layer 3, NOUN) jumps to the grid
        m.move_cursor(row=0, column=noun_col)
        await pilot.press("o")
        vals = [m.raw_rows[i][noun_col] for i in m.order]
        assert vals == sorted(vals, reverse=True)
        li = 2
        m.select_raw(li, noun_col)
        await pilot.pause()
        s, li2, tok, expert = screen.jump_target()
        assert li2 == li
        await pilot.press("enter")
        from moe_tui.tui.screens.grid import GridScreen

        await until(pilot, lambda: isinstance(app.screen, GridScreen))
        await pilot.pause()
        gs = app.screen
        assert gs.sentence_index == s
        assert gs.data.pos[tok] == "NOUN"
        assert tuple(gs.grid.cursor) == (li, tok)
        counts = screen.data.view.counts()
        assert gs.grid.highlight == int(np.argmax(counts[li, :, tags.index("NOUN")]))
        # from the grid: K (KL pane), then s (pane to pane), E (whole report)
        await check_grid_to_panes_and_report(pilot, run, ref)


async def check_kl_pane(pilot, run, ref) -> None:
    app = pilot.app
    screen = app.screen
    await until(pilot, lambda: screen.query_one("#kl-heat").row_count > 0)
    await pilot.pause()
    heat = screen.query_one("#kl-heat")
    assert heat.row_count == run.num_experts and heat.headers == ["expert", *[f"L{x}" for x in run.moe_layers]]
    assert app.focused is heat
    await pilot.press("e")
    assert exported(screen) == (ref / "kl_layer_expert.csv").read_bytes()
    screen.query_one("#kl-summary").focus()
    await pilot.press("e")
    assert exported(screen) == (ref / "kl_summary.csv").read_bytes()
    assert "μMean" in screen_text(app)
    # move to (expert 3, layer index 2): the bars follow the cursor
    heat.focus()
    await pilot.press("down", "down", "down", "right", "right", "right")
    await pilot.pause()
    assert screen.selected_cell() == (2, 3)
    bars = screen.query_one("#kl-bars")
    assert bars.report_table["name"] == f"kl_expert_L{run.moe_layers[2]}_E3"
    shares = [r[1] for r in bars.report_table["rows"]]
    assert sum(shares) == pytest.approx(1.0)
    assert "expert 3 @ layer" in bars.spec.title
    # sort the heatmap by that layer's column
    await pilot.press("o")
    col = [heat.raw_rows[i][3] for i in heat.order]
    assert col == sorted(col, reverse=True)


@pytest.mark.slow
async def test_probe_pane_information_key_computes_the_report_tables(tmp_path, monkeypatch, tiny_run):
    """``i`` computes the information measures in the background; the pane's gains table and per-layer plot hold
    the very tables ``moe-tui report --information`` writes (their CSV exports are byte for byte the report's)."""
    import threading

    import moe_tui.core.analysis.tables

    real_tables = moe_tui.core.analysis.tables.information_tables
    release = threading.Event()

    def held_until_released(*args, **kw):
        """The job waits here until the test has seen it running (a warm process computes a tiny run's measures
        before the first check)."""
        release.wait(60)
        return real_tables(*args, **kw)

    monkeypatch.setattr(moe_tui.core.analysis.tables, "information_tables", held_until_released)
    run = tiny_run
    app = make_app(tmp_path, [run])
    async with app.run_test(size=SIZE) as pilot:
        screen = await open_from_home(pilot, "P", "probe")
        data = screen.data
        assert screen.query_one("#probe-layers").spec.kind == "empty"
        await pilot.press("i")
        assert data.running == "information" and screen.check_action("run_probe", ()) is None
        assert screen.check_action("cancel_probe", ()) is True
        release.set()
        await until(pilot, lambda: data.information_done, timeout=120)
        await pilot.pause()
        assert data.running is None and not data.probe_done
        ref = reference(tmp_path, [run], information=True) / run.run_id
        for wid, stem in (("#probe-info", "information"), ("#probe-layers", "layer_probe")):
            screen.query_one(wid).focus()
            await pilot.press("e")
            assert exported(screen) == (ref / f"{stem}.csv").read_bytes(), stem
        info = screen.query_one("#probe-info")
        assert info.headers[:3] == ["pos", "routes", "routes|token"] and info.raw_rows[0][0] == "all"
        layers = screen.query_one("#probe-layers").spec
        assert layers.x == list(run.moe_layers) and len(layers.series) == 2


@pytest.mark.slow
async def test_probe_pane_cancel_then_run_and_export(tmp_path, monkeypatch, tiny_run):
    import threading

    import moe_tui.core.analysis.report

    real_tables = moe_tui.core.analysis.report.report_tables
    release = threading.Event()

    def held_until_released(view, *, progress=None, **kw):
        """The first probe job waits here until its worker is cancelled, then reports progress (which
        raises Cancelled), so that cancelling is tested whatever the machine's speed."""
        if progress is not None and not release.is_set():
            from textual.worker import get_current_worker

            worker = get_current_worker()
            while not worker.is_cancelled and not release.is_set():
                release.wait(0.01)
            progress("held by the test", 0, 1)
        return real_tables(view, progress=progress, **kw)

    monkeypatch.setattr(moe_tui.core.analysis.report, "report_tables", held_until_released)
    run = tiny_run
    app = make_app(tmp_path, [run])
    async with app.run_test(size=SIZE) as pilot:
        screen = await open_from_home(pilot, "P", "probe")
        assert "r trains the MLP probes" in screen_text(app)
        data = screen.data
        assert screen.check_action("cancel_probe", ()) is None
        await pilot.press("r")
        assert data.running == "probe" and screen.check_action("run_probe", ()) is None
        await pilot.press("c")
        await until(pilot, lambda: data.running is None)
        release.set()
        assert not data.probe_done and data.progress[0] == "cancelled"
        await pilot.pause()
        assert "last run cancelled" in screen_text(app)
        await pilot.press("r")
        await until(pilot, lambda: data.probe_done, timeout=60)
        await pilot.pause()
        tabs = screen.tables
        for stem in ("probe", "controls", "ablation", "tsne", "confusion_top_k", "spec_null"):
            assert stem in tabs
        text = screen_text(app)
        assert "token_identity" in text and "selectivity" in text and "control_task" in text
        # 30 epochs stop every probe at max_iter: said beside each accuracy (the export keeps the file's order)
        acc = screen.query_one("#probe-acc")
        assert acc.headers[:3] == ["variant", "accuracy", "converged"]
        assert "max_iter" in text and "stopped at max_iter" in text
        assert "hamming_same_token_diff_pos" in text
        # the token-keyed rows below it are reached with the cursor (the information table shares the pane)
        ctl = screen.query_one("#probe-controls")
        ctl.focus()
        for _ in range([r[0] for r in ctl.report_table["rows"]].index("context_effect_p")):
            await pilot.press("down")
        await pilot.pause()
        assert "context_effect_p" in screen_text(app)
        ref = reference(tmp_path, [run], probe=True, controls=True) / run.run_id
        targets = [("#probe-acc", "probe"), ("#probe-controls", "controls"), ("#probe-ablation", "ablation"),
                   ("#probe-tsne", "tsne"), ("#probe-confusion", "confusion_top_k")]
        for wid, stem in targets:
            screen.query_one(wid).focus()
            await pilot.press("e")
            assert exported(screen) == (ref / f"{stem}.csv").read_bytes(), stem
        await pilot.press("v")
        assert screen.query_one("#probe-confusion").report_table["name"] == "confusion_top_1"
        await pilot.press("e")
        assert exported(screen) == (ref / "confusion_top_1.csv").read_bytes()
        tsne = screen.query_one("#probe-tsne")
        assert 0 < tsne.drawn_points <= 600
        # the spec pane now draws the permutation null band
        await pilot.press("s")
        await until(pilot, lambda: getattr(app.screen, "KIND", "") == "spec")
        await pilot.pause()
        assert any("null p95" in s[0] for s in app.screen.query_one("#spec-plot").spec.series)


@pytest.mark.slow
async def test_compare_pane_two_runs(tmp_path, two_runs):
    a, b = two_runs
    app = make_app(tmp_path, [a, b])
    ref = reference(tmp_path, [a, b])
    async with app.run_test(size=SIZE) as pilot:
        screen = await open_from_home(pilot, "C", "compare", a.run_id)
        sel = screen.query_one("#compare-runs")
        await until(pilot, lambda: sel.option_count == 2)
        sel.select(b.run_id)
        t1 = screen.query_one("#compare-t1")
        await until(pilot, lambda: t1.row_count == 2)
        await pilot.pause()
        t1.focus()
        await pilot.press("e")
        assert exported(screen) == (ref / "compare_table1.csv").read_bytes()
        screen.query_one("#compare-t3").focus()
        await pilot.press("e")
        assert exported(screen) == (ref / "compare_table3.csv").read_bytes()
        screen.query_one("#compare-t5").focus()
        await pilot.press("e")
        assert exported(screen) == (ref / "compare_table5.csv").read_bytes()
        assert "fake/moe-other" in screen_text(app)


def paper15_run(root, *, seed: int, model: str, sentences=None):
    """A synthetic run tagged with the paper's 15 tags (its sentences use none of AUX, SCONJ)."""
    from moe_tui.core.extract.tagsets import TAGSETS
    from tests.runs import UPOS, synthetic_arrays, write_run

    arrays, records = synthetic_arrays(sentences=sentences, seed=seed)
    p15 = TAGSETS["paper15"]
    arrays["pos"] = np.array([p15.index(UPOS[p]) if p >= 0 else -1 for p in arrays["pos"]], dtype=np.int16)
    return write_run(root, arrays, records, tags=p15, moe_layers=list(range(1, 7)), num_experts=8, top_k=2,
                     model=model, tagset="paper15")


@pytest.mark.slow
async def test_compare_pane_paper_rows_and_refusal(tmp_path):
    from tests.runs import SENTENCES

    root = tmp_path / "runs"
    a = paper15_run(root, seed=0, model="mistralai/Mixtral-8x7B-v0.1")
    b = paper15_run(root, seed=1, model="fake/moe-other")
    # same tagset, but a NUM token: its global Spec averages a tag the other two runs do not have
    c = paper15_run(root, seed=2, model="fake/moe-third",
                    sentences=SENTENCES + [("s5", "It has 3 legs .", ["PRON", "VERB", "NUM", "NOUN", "PUNCT"])])
    app = make_app(tmp_path, [a, b, c])
    ref = reference(tmp_path, [a, b])
    async with app.run_test(size=SIZE) as pilot:
        screen = await open_from_home(pilot, "C", "compare", a.run_id)
        sel = screen.query_one("#compare-runs")
        await until(pilot, lambda: sel.option_count == 3)
        sel.select(b.run_id)
        t1, t3, t5 = (screen.query_one(f"#compare-t{i}") for i in (1, 3, 5))
        await until(pilot, lambda: t1.row_count == 3)
        await pilot.pause()
        # a "paper" row right after the run of the paper's Mixtral (values empty where the paper's are not held)
        assert [r[1] for r in t1.raw_rows] == [a.run_id, "paper", b.run_id]
        assert t1.raw_rows[1][0] == "Mixtral-8x7B-v0.1"
        assert [r[1] for r in t3.raw_rows] == [a.run_id, "paper", b.run_id]
        assert [r[2] for r in t5.raw_rows[:2]] == [a.run_id, "paper"] and t5.raw_rows[0][0] == t5.raw_rows[1][0]
        # exports stay the report's CSVs (the paper rows are in paper_vs_measured.csv)
        t1.focus()
        await pilot.press("e")
        assert exported(screen) == (ref / "compare_table1.csv").read_bytes()
        # a run whose global Spec averages other tags: refused in one line, in an error dialog
        sel.select(c.run_id)
        await until(pilot, lambda: type(app.screen).__name__ == "ErrorModal")
        await until(pilot, lambda: "different tags" in screen_text(app))  # drawn
        assert "Compare failed" in screen_text(app)
        assert f"only {c.run_id} has NUM" in app.screen.message and "\n" not in app.screen.message


async def check_grid_to_panes_and_report(pilot, run, ref) -> None:
    app = pilot.app
    assert getattr(app.screen, "SCOPE", "") == "grid"
    await pilot.press("K")           # from the grid
    await until(pilot, lambda: getattr(app.screen, "KIND", "") == "kl")
    await pilot.press("s")           # pane to pane: replaced, not stacked
    await until(pilot, lambda: getattr(app.screen, "KIND", "") == "spec")
    assert getattr(app.screen_stack[-2], "SCOPE", "") == "grid"      # KL was replaced by spec, not stacked
    screen = app.screen
    await until(pilot, lambda: screen.data.view is not None)
    await pilot.press("E")
    await until(pilot, lambda: app.last_report_dir is not None)
    out = Path(app.last_report_dir)
    assert out.is_absolute() and out == (Path(app.settings.export_dir) / f"moe-tui-report-{run.run_id}").resolve()
    for stem in ("pos_counts", "spec_layer", "spec_pos", "kl_layer_expert", "kl_summary", "summary"):
        assert (out / run.run_id / f"{stem}.csv").read_bytes() == (ref / f"{stem}.csv").read_bytes()
    # the report_figures setting (on by default): the paper's figures beside the tables
    for stem in ("fig_spec_by_layer", "fig_kl_heatmap"):
        assert (out / run.run_id / f"{stem}.png").stat().st_size > 0 and (out / run.run_id / f"{stem}.pdf").exists()
    await pilot.press("K")
    await until(pilot, lambda: getattr(app.screen, "KIND", "") == "kl")
    await check_kl_pane(pilot, run, ref)
    await pilot.press("escape")
    await until(pilot, lambda: getattr(app.screen, "SCOPE", "") == "grid")


def test_registry_has_pane_keys_without_conflicts():
    ids = {a.id for a in actions.ACTIONS}
    assert {"app.spec", "app.kl", "app.probe", "app.compare", "pane.export", "pane.export_report", "pane.copy",
            "pane.sort", "pane.run", "pane.cancel"} <= ids
    app_keys = {k for a in actions.specs("app") for k in a.keys.split(",")}
    for scope in ("home", "grid", "pane", "progress"):
        keys = [k for a in actions.specs(scope) for k in a.keys.split(",")]
        assert len(keys) == len(set(keys)), scope
        assert not (set(keys) & app_keys), (scope, set(keys) & app_keys)
    md = actions.keys_markdown()
    assert "`app.probe`" in md and "`pane.export_report`" in md


def test_panes_import_no_sklearn_or_torch():
    code = ("import sys, moe_tui.tui.app, moe_tui.tui.screens.panes, moe_tui.tui.analysis.jobs, moe_tui.tui.widgets.plots, "
            "moe_tui.tui.widgets.table; "
            "bad = [m for m in ('sklearn', 'torch', 'transformers') if m in sys.modules]; print(bad)")
    out = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"
