"""moe_tui.core.analysis.report: RunView.from_run, exact CSV columns, atomic writes, quoting, cross-run tables."""

from __future__ import annotations

import csv
import math

import numpy as np
import pytest

from moe_tui.core.analysis.options import ReportOptions
from moe_tui.core.analysis.probe import VARIANTS as probe_features
from moe_tui.core.analysis.report import report_tables
from moe_tui.core.analysis.tables import CONTROL_ROWS, PROBE_ROWS, PROBE_VARIANTS
from moe_tui.core.analysis.view import RunView
from moe_tui.core.analysis.writer import write_report
from moe_tui.errors import ReportError
from moe_tui.fileio import format_cell

TAGS = ("NOUN", "VERB", "X")
FAST = ReportOptions(seed=0, max_iter=30, ablation_removed=[0, 1], tsne_samples=40, n_permutations=5, n_boot=10,
                     mlp_kwargs={"hidden_layer_sizes": (8,)})


def make_view(run_id="run_a", model="org/tiny-moe", T=240, seed=0) -> RunView:
    rng = np.random.default_rng(seed)
    pos = rng.integers(0, 3, T)
    experts = np.stack([(2 * pos + rng.integers(0, 2, T))[:, None].repeat(3, 1),
                        ((2 * pos + 2) % 8)[:, None].repeat(3, 1)], axis=2)
    return RunView(model=model, run_id=run_id, tags=TAGS, moe_layers=[1, 3, 5], n_experts=8, top_k=2,
                   experts=experts, pos=pos, form_ids=np.arange(T) % 7, form_vocab=tuple(f"w{i}" for i in range(7)),
                   sentence=np.arange(T) // 8, token_ids=rng.integers(0, 50, T))


def summ_spec(d):
    """The global Spec cell of summary.csv in report folder ``d``."""
    return read(d / "summary.csv")[1][5]


def read(path):
    with open(path, newline="") as fh:
        return list(csv.reader(fh))


def test_from_run_uses_mask_words_and_offsets(tmp_path):
    # two sentences; token 0 and 4 are special (pos -1); a real run written by the run writer
    from tests.runs import write_run

    sentences = [{"id": "s1", "text": "The Dog", "words": [["The", "DET", 0, 3], ["Dog", "NOUN", 4, 7]],
                  "tokens": ["<s>", "The", "D", "og"]},
                 {"id": "s2", "text": "runs", "words": [["Runs", "VERB", 0, 4]], "tokens": ["<s>", "runs"]}]
    experts = np.arange(6 * 2 * 1, dtype=np.uint8).reshape(6, 2, 1) % 4
    arrays = {"experts": experts, "weights": np.ones((6, 2, 1), np.float16),
              "pos": np.array([-1, 0, 1, 1, -1, 2], dtype=np.int16),
              "special": np.array([True, False, False, False, True, False]),
              "word_index": np.array([-1, 0, 1, 1, -1, 0], dtype=np.int32),
              "sentence_offsets": np.array([0, 4, 6], dtype=np.int64),
              "token_ids": np.array([1, 10, 11, 12, 1, 13], dtype=np.int32),
              "crossing": np.zeros(6, bool), "offsets": np.zeros((6, 2), np.int32)}
    run = write_run(tmp_path, arrays, sentences, tags=("DET", "NOUN", "VERB"), moe_layers=[0, 2], num_experts=4,
                    top_k=1, model="org/m", tagset="x")
    v = RunView.from_run(run)
    assert v.model == "org/m" and v.run_id == run.run_id and v.moe_layers == [0, 2]
    assert v.form_strings().tolist() == ["the", "dog", "dog", "runs"]
    # integer ids of the lower-cased forms, numbered in sorted order of the forms
    assert list(v.form_vocab) == ["", "dog", "runs", "the"] and v.form_ids.tolist() == [3, 1, 1, 2]
    assert v.sentence.tolist() == [0, 0, 0, 1]
    assert v.pos.tolist() == [0, 1, 1, 2]
    assert v.token_ids.tolist() == [10, 11, 12, 13]
    np.testing.assert_array_equal(v.experts, experts[[1, 2, 3, 5]])
    # the per-token keys are computed when first asked for: routing tables never build them
    lazy = RunView.from_run(run)
    assert not RunView.__dict__["form_ids"].ready(lazy) and not RunView.__dict__["sentence"].ready(lazy)
    tables = report_tables(lazy)
    assert not RunView.__dict__["form_ids"].ready(lazy) and tables["pos_counts"]["rows"][0][:2] == ["DET", 1]
    assert lazy.form_ids.tolist() == [3, 1, 1, 2] and lazy.sentence.tolist() == [0, 0, 0, 1]
    assert RunView.__dict__["form_ids"].ready(lazy) and lazy.token_ids.tolist() == [10, 11, 12, 13]


def test_write_report_basic_columns_and_values(tmp_path):
    v = make_view()
    res = write_report([v], tmp_path)
    d = tmp_path / "run_a"
    expected = {
        "pos_counts.csv": ["pos", "tokens", "percent"],
        "spec_layer.csv": ["layer", "pos", "tokens", "spec", "uniform", "delta"],
        "spec_pos.csv": ["pos", "mean_spec", "max_spec", "max_layer"],
        "kl_layer_expert.csv": ["layer", "expert", "assignments", "kl"],
        "kl_summary.csv": ["mu_min", "mu_max", "mu_mean"],
        "summary.csv": ["model", "moe_layers", "experts", "top_k", "tokens", "spec", "uniform", "delta",
                        "mlp_top_k", "mlp_top_1", "baseline", "global_pos"],
    }
    for name, cols in expected.items():
        assert read(d / name)[0] == cols, name
    assert sorted(p.name for p in d.iterdir()) == sorted(expected)  # no temp files left, no probe files
    assert not list(tmp_path.glob("compare_*"))
    spec_layer = read(d / "spec_layer.csv")
    assert {r[0] for r in spec_layer[1:]} == {"1", "3", "5"}  # decoder-layer indices
    summary = read(d / "summary.csv")[1]
    assert summary[:5] == ["org/tiny-moe", "3", "8", "2", "240"]
    assert summary[8:11] == ["", "", ""]  # probe columns empty without --probe
    assert summary[11] == "NOUN VERB"  # the tags the global Spec averages: X left out
    # unrounded repr floats, identical to the returned tables
    spec = res["runs"]["run_a"]["summary"]["rows"][0][5]
    assert summary[5] == repr(spec) and float(summary[6]) == 25.0
    assert float(summary[7]) == pytest.approx(spec - 25.0)
    # X has no token -> empty spec cells
    rows = {r[0]: r for r in read(d / "spec_pos.csv")[1:]}
    if int(read(d / "pos_counts.csv")[3][1]) == 0:
        assert rows["X"][1] == ""


def test_write_report_probe_controls_and_compare(tmp_path):
    a, b = make_view("run_a"), make_view("run_b", model="=evil()", seed=1)
    seen = []
    res = write_report([a, b], tmp_path, probe=True, controls=True, options=FAST,
                       progress=lambda s, i, n: seen.append(s))
    d = tmp_path / "run_a"
    assert read(d / "probe.csv")[0] == ["variant", "accuracy", "train_tokens", "test_tokens", "accuracy_sd", "seeds",
                                        "n_iter", "converged", "engine", "device"]
    assert [r[0] for r in read(d / "probe.csv")[1:]] == ["top_k", "top_1", "onehot_top_k", "baseline"]
    assert list(PROBE_ROWS) == ["top_k", "top_1", "onehot_top_k", "baseline"]   # the one list the TUI uses too
    assert set(PROBE_VARIANTS) <= set(probe_features)                        # each one a feature the probe builds
    for v in ("top_k", "top_1", "onehot_top_k", "baseline"):
        c = read(d / f"confusion_{v}.csv")
        assert c[0] == ["true", "pred", "count"] and len(c) == 1 + 9
        assert sum(int(r[2]) for r in c[1:]) == 80  # 1/3 of 240 test tokens
    abl = read(d / "ablation.csv")
    assert abl[0] == ["side", "removed", "accuracy", "accuracy_sd", "n_iter", "converged"] and len(abl) == 1 + 4
    ts = read(d / "tsne.csv")
    assert ts[0] == ["token", "x", "y", "pos"] and len(ts) == 41
    null = read(d / "spec_null.csv")
    assert null[0] == ["layer", "pos", "spec", "null_mean", "null_p95", "excess", "p_value", "q_value"]
    for r in null[1:]:  # p in [1/(1+R), 1] (R = 5); q >= p; both empty where the POS has no token
        if r[2]:
            assert 1 / 6 <= float(r[6]) <= 1.0 and float(r[6]) <= float(r[7]) <= 1.0
        else:
            assert r[6] == r[7] == ""
    ctrl = {r[0]: r[1] for r in read(d / "controls.csv")[1:]}
    assert read(d / "controls.csv")[0] == ["quantity", "value"]
    assert [r[0] for r in read(d / "controls.csv")[1:]] == list(CONTROL_ROWS) + [
        f"{v}_ci_{end}" for v in (*PROBE_VARIANTS, "baseline") for end in ("low", "high")]
    for key in ("token_identity", "control_task", "selectivity", "ambiguous_probe", "ambiguous_token_identity",
                "ambiguous_form_baseline", "hamming_same_token_same_pos", "hamming_same_token_diff_pos",
                "context_effect_p", "spec_ci_low", "spec_ci_high", "top_k_ci_low", "top_k_ci_high",
                "baseline_ci_low", "baseline_ci_high"):
        assert key in ctrl, key
    assert int(ctrl["ambiguous_test_tokens"]) > 0 and int(ctrl["ambiguous_token_ids"]) > 0   # integers
    assert float(ctrl["spec_ci_low"]) <= float(summ_spec(d)) <= float(ctrl["spec_ci_high"])
    assert float(ctrl["spec_pct_low"]) <= float(ctrl["spec_pct_high"])   # the percentile interval beside BCa
    summ = read(d / "summary.csv")[1]
    assert all(summ[i] != "" for i in (8, 9, 10))
    assert float(summ[8]) == float(read(d / "probe.csv")[1][1])  # one source of numbers
    t1 = read(tmp_path / "compare_table1.csv")
    assert t1[0] == ["model", "run_id", "k_n", "moe_layers", "mlp_top_k", "mlp_top_1", "spec", "uniform", "delta"]
    assert t1[1][2] == "2/8" and t1[2][0] == "=evil()"  # text exactly as given
    write_report([a, b], tmp_path / "safe", spreadsheet_safe=True)
    assert read(tmp_path / "safe" / "compare_table1.csv")[2][0] == "'=evil()"  # opt-in neutralisation
    assert read(tmp_path / "compare_table3.csv")[0] == ["model", "run_id", "mu_min", "mu_max", "mu_mean"]
    t5 = read(tmp_path / "compare_table5.csv")
    assert t5[0] == ["pos", "model", "run_id", "mean_spec", "max_spec", "max_layer"] and len(t5) == 1 + 6
    assert set(res["compare"]) == {"compare_table1", "compare_table3", "compare_table5"}
    assert any("ablation" in s for s in seen)
    assert not list(tmp_path.rglob("*.tmp-*"))


def test_format_cell():
    assert format_cell(-1.5) == "-1.5" and format_cell(np.float64(0.1)) == "0.1"
    assert format_cell(float("nan")) == "" and format_cell(None) == ""
    assert format_cell(np.int64(3)) == "3"
    # text is exact by default; formula neutralisation is opt-in
    assert format_cell("-x") == "-x" and format_cell("+1") == "+1" and format_cell("@a") == "@a"
    assert format_cell("-x", spreadsheet_safe=True) == "'-x" and format_cell("+1", spreadsheet_safe=True) == "'+1"
    assert format_cell("@a", spreadsheet_safe=True) == "'@a" and format_cell(-1.5, spreadsheet_safe=True) == "-1.5"
    assert format_cell("NOUN") == "NOUN"
    assert format_cell(1 / 3) == repr(1 / 3)


def test_report_tables_kl_reference_and_errors(tmp_path):
    v = make_view()
    t = report_tables(v, kl_reference="uniform")
    t2 = report_tables(make_view(), kl_reference="corpus")
    assert t["kl_summary"]["rows"] != t2["kl_summary"]["rows"]
    with pytest.raises(ReportError):
        write_report([], tmp_path)
    with pytest.raises(ReportError):
        write_report([v, make_view()], tmp_path)  # same run twice
    with pytest.raises(ReportError):
        write_report([v], tmp_path, kl_reference="bogus")
    bad = make_view()
    bad.moe_layers = [1, 2]
    with pytest.raises(ReportError):
        write_report([bad], tmp_path)
    blocker = tmp_path / "file"
    blocker.write_text("x")
    with pytest.raises(ReportError):
        write_report([make_view()], blocker)


def test_values_match_metrics(tmp_path):
    from moe_tui.core.analysis import metrics as M

    v = make_view()
    write_report([v], tmp_path)
    rows = read(tmp_path / "run_a" / "spec_layer.csv")[1:]
    spec = M.spec_layer(v.experts, v.pos, 8, 3)
    for r in rows:
        li = [1, 3, 5].index(int(r[0]))
        p = TAGS.index(r[1])
        if r[3]:
            assert float(r[3]) == spec[li, p]
        else:
            assert math.isnan(spec[li, p])


def test_probe_seeds_engine_columns_and_cancel(tmp_path):
    """--probe-seeds 2: accuracy is the mean of the two seeds' probes and accuracy_sd their spread; the
    engine and convergence are recorded; a progress callback that raises Cancelled stops the training."""
    from dataclasses import replace

    import pytest as _pytest

    from moe_tui.core.analysis.tables import compute_probes
    from moe_tui.errors import Cancelled

    v = make_view()
    opts = replace(FAST, probe_seeds=2)
    write_report([v], tmp_path, probe=True, options=opts)
    rows = {r[0]: r for r in read(tmp_path / "run_a" / "probe.csv")[1:]}
    stats = compute_probes(v, opts, ["top_k", "baseline"])
    accs = [r.accuracy for r in stats["top_k"].runs]
    assert float(rows["top_k"][1]) == _pytest.approx(np.mean(accs))
    assert float(rows["top_k"][4]) == _pytest.approx(np.std(accs, ddof=1))
    assert rows["top_k"][5:] == ["2", "30", "false", "torch", "cpu"]   # max_iter 30: stopped there, not converged
    assert rows["baseline"][6:] == ["", "", "", ""]                     # count-based: no epochs, no engine
    abl = read(tmp_path / "run_a" / "ablation.csv")
    assert all(r[4] == "30" and r[5] == "false" for r in abl[1:])

    calls = []

    def cancel(stage, done, total):
        calls.append(stage)
        if "probes" in stage:
            raise Cancelled("probe cancelled")

    with _pytest.raises(Cancelled):
        report_tables(make_view(run_id="run_c"), probe=True, options=FAST, progress=cancel)
    assert "probes" in calls[-1]


def test_tsne_beside_the_probes_gives_the_sequential_tables(monkeypatch):
    import moe_tui.core.analysis.report as R

    view_a, view_b = make_view(seed=5), make_view(seed=5)
    monkeypatch.setattr(R, "spare_cpus", lambda: 0)
    alone = report_tables(view_a, probe=True, controls=True, options=FAST)
    started = []
    real = R.Beside

    class Spy(real):
        def __init__(self, fn, name):
            started.append(name)
            super().__init__(fn, name)

    monkeypatch.setattr(R, "spare_cpus", lambda: 1)
    monkeypatch.setattr(R, "Beside", Spy)
    beside = report_tables(view_b, probe=True, controls=True, options=FAST)
    assert started == ["moe-tui t-SNE"]
    assert alone.keys() == beside.keys()
    for name in alone:  # every table, the t-SNE coordinates included, cell for cell
        assert alone[name]["rows"] == beside[name]["rows"], name


def test_background_job_result_error_and_cancel():
    import threading
    import time

    from moe_tui.core.analysis.beside import Beside
    from moe_tui.errors import Cancelled

    assert Beside(lambda stop: 41 + 1, "t").result() == 42
    with pytest.raises(ZeroDivisionError):  # the computation's own error reaches the caller
        Beside(lambda stop: 1 / 0, "t").result()
    ended = threading.Event()

    def slow(stop):
        while not stop():
            time.sleep(0.01)
        ended.set()
        return None

    job = Beside(slow, "t")

    def waiting():
        raise Cancelled("cancelled")

    with pytest.raises(Cancelled):  # the caller is cancelled while waiting: the computation is told to stop
        job.result(waiting)
    assert ended.wait(120.0)  # a guard against a hang: a computation never told to stop would never end


def test_cancel_during_the_tsne_ends_the_background_tsne(monkeypatch):
    import threading
    import time

    import moe_tui.core.analysis.report as R
    from moe_tui.errors import Cancelled

    monkeypatch.setattr(R, "spare_cpus", lambda: 1)
    outcome = []
    real_job = R._tsne_job

    def job(view, o):
        run = real_job(view, o)

        def recorded(stop):
            try:
                table = run(stop)
            except Cancelled:
                outcome.append("cancelled")
                raise
            outcome.append("finished")
            return table

        return recorded

    monkeypatch.setattr(R, "_tsne_job", job)
    # 5,000 t-SNE points of random paths (half a minute of Barnes-Hut) beside 5 epochs of tiny probes
    opts = ReportOptions(seed=0, max_iter=5, ablation_removed=[0], tsne_samples=5000,
                         mlp_kwargs={"hidden_layer_sizes": (4,)})
    asked = []

    def progress(stage, done, total):
        if stage.endswith("t-SNE"):
            asked.append(time.monotonic())
            raise Cancelled("cancelled")

    rng = np.random.default_rng(0)
    T = 15000
    view = RunView(model="org/m", run_id="r", tags=TAGS, moe_layers=[0, 1, 2], n_experts=8, top_k=2,
                   experts=np.stack([rng.permutation(8)[:2] for _ in range(3 * T)]).reshape(T, 3, 2),
                   pos=rng.integers(0, 3, T), form_ids=np.arange(T) % 7, form_vocab=tuple(f"w{i}" for i in range(7)),
                   sentence=np.arange(T) // 8, token_ids=rng.integers(0, 50, T))
    with pytest.raises(Cancelled):
        report_tables(view, probe=True, options=opts, progress=progress)
    deadline = asked[0] + 300.0  # only a guard against a hang: the outcome, not the time, is what is checked
    while any(t.name == "moe-tui t-SNE" for t in threading.enumerate()) and time.monotonic() < deadline:
        time.sleep(0.02)
    assert outcome == ["cancelled"]  # stopped part-way by the cancel (the whole embedding would say "finished")
