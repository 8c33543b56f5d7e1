"""Runs with a per-token origin (what moe-tui generate writes): report --by-origin against runs physically made of
one origin's tokens, cross-origin probes on routes built so the answer is known, and exports with the origin
column (streamed = row by row, values = the origin array)."""

from __future__ import annotations

import csv

import numpy as np
import pytest

from moe_tui.core.analysis.options import ReportOptions
from moe_tui.core.analysis.origin import origin_tables
from moe_tui.core.analysis.report import report_tables
from moe_tui.core.analysis.view import RunView
from moe_tui.core.inspect.export import export_routes, export_routes_rowwise, route_columns, routes_frame
from moe_tui.errors import ReportError
from tests.runs import (
    ORIGIN_TAGGING,
    SENTENCES,
    UPOS,
    origin_run,
    synthetic_arrays,
    synthetic_origin,
    synthetic_run,
    write_run,
)

MLP = {"hidden_layer_sizes": (64,), "learning_rate_init": 0.02}


def _one_origin_run(root, code: int):
    """The synthetic run's tokens of one origin only, written as an ordinary run (no origin array): the tables the
    by-origin report must reproduce for that origin."""
    arrays, records = synthetic_arrays()
    origin = synthetic_origin(arrays["sentence_offsets"])
    keep = origin == code
    off = arrays["sentence_offsets"]
    new = {k: v[keep] for k, v in arrays.items() if k != "sentence_offsets"}
    counts = [int(keep[a:b].sum()) for a, b in zip(off[:-1], off[1:])]
    new["sentence_offsets"] = np.concatenate([[0], np.cumsum(counts)]).astype(np.int64)
    recs = []
    for rec, a, b in zip(records, off[:-1], off[1:]):
        recs.append({**rec, "tokens": [t for t, k in zip(rec["tokens"], keep[a:b]) if k]})
    return write_run(root, new, recs, tags=UPOS, moe_layers=list(range(1, 7)), num_experts=8, top_k=2,
                     model=f"fake/only-{code}", corpus="prompts.txt")


@pytest.fixture(scope="module")
def gen_run(tmp_path_factory):
    return origin_run(tmp_path_factory.mktemp("origin_run"))


def test_by_origin_tables_are_the_tables_of_each_origin_alone(gen_run, tmp_path):
    tables = origin_tables(RunView.from_run(gen_run))
    for code, name in enumerate(("prompt", "generated")):
        alone = report_tables(RunView.from_run(_one_origin_run(tmp_path / name, code)))
        for stem in ("spec_layer", "spec_pos", "kl_layer_expert", "kl_summary"):
            rows = [r[1:-2] for r in tables[f"{stem}_by_origin"]["rows"] if r[0] == name]
            assert rows == alone[stem]["rows"], stem
            assert tables[f"{stem}_by_origin"]["columns"] == ["origin", *alone[stem]["columns"], "tagger",
                                                              "tagger_accuracy"]
        summary = next(r for r in tables["summary_by_origin"]["rows"] if r[0] == name)
        s = dict(zip(alone["summary"]["columns"], alone["summary"]["rows"][0]))
        assert summary[1:6] == [s["tokens"], s["spec"], s["uniform"], s["delta"], s["global_pos"]]
        assert summary[6:] == ["builtin", ORIGIN_TAGGING["accuracy"]["accuracy"]]


def test_table_of_origin_gives_the_plain_tables_columns(gen_run, tmp_path):
    from moe_tui.core.analysis.origin import table_of_origin

    tables = report_tables(RunView.from_run(gen_run), by_origin=True)
    assert table_of_origin(tables, "spec_layer", "all") is tables["spec_layer"]
    alone = report_tables(RunView.from_run(_one_origin_run(tmp_path, 1)))
    for stem in ("spec_layer", "spec_pos", "kl_summary"):
        t = table_of_origin(tables, stem, "generated")
        assert t["columns"] == alone[stem]["columns"] and t["rows"] == alone[stem]["rows"]
    assert table_of_origin(tables, "probe", "prompt") is None  # no probes computed


def test_gold_prompt_tags_carry_no_tagger_caveat(tmp_path):
    tagging = {**ORIGIN_TAGGING, "prompt_pos": "gold"}
    run = origin_run(tmp_path, tagging=tagging)
    rows = origin_tables(RunView.from_run(run))["kl_summary_by_origin"]["rows"]
    assert [r[-2:] for r in rows] == [["gold", None], ["builtin", 0.9]]


def _coded_routes(permute_generated: bool):
    """Routes that name the POS: at every layer a token's top-1 expert is its tag's code (the 8 tags of the
    synthetic sentences take codes 0..7), the second expert the next code; generated tokens' codes are shifted
    by 3 when ``permute_generated`` (a routing that means something else for them). Origins alternate by token, and
    flip from one repetition of the sentences to the next, so that every word has tokens of both origins."""
    tags_used = sorted({t for _, _, tags in SENTENCES for t in tags}, key=UPOS.index)
    code = {UPOS.index(t): i for i, t in enumerate(tags_used)}

    def hook(arrays):
        pos = arrays["pos"]
        off = arrays["sentence_offsets"]
        sent = np.repeat(np.arange(len(off) - 1), np.diff(off))
        origin = ((np.arange(len(pos)) + sent // len(SENTENCES)) % 2).astype(np.uint8)
        arrays["origin"] = origin
        for t, p in enumerate(pos.tolist()):
            c = code.get(p, 0)
            if permute_generated and origin[t]:
                c = (c + 3) % 8
            arrays["experts"][t, :, 0] = c
            arrays["experts"][t, :, 1] = (c + 1) % 8

    return hook


@pytest.mark.slow
def test_cross_origin_probes_on_routes_whose_meaning_is_known(tmp_path):
    o = ReportOptions(max_iter=300, mlp_kwargs=MLP, probe_engine="torch", probe_device="cpu")
    acc = {}
    for permuted in (False, True):
        run = origin_run(tmp_path / str(permuted), sentences=SENTENCES * 4, arrays_hook=_coded_routes(permuted))
        view = RunView.from_run(run)
        rows = origin_tables(view, o, probe=True)["probe_by_origin"]["rows"]
        acc[permuted] = {(r[0], r[1], r[2]): r[3] for r in rows}
        n = {name: int((np.asarray(view.origin) == c).sum()) for c, name in enumerate(("prompt", "generated"))}
        # every token of one origin trained on, every token of the other tested
        cross = {(r[0], r[1]): (r[4], r[5]) for r in rows if r[0] != r[1]}
        assert cross[("prompt", "generated")] == (n["prompt"], n["generated"])
        assert cross[("generated", "prompt")] == (n["generated"], n["prompt"])
        assert {r[2] for r in rows} == {"top_k", "top_1", "baseline"}
    for direction in (("prompt", "generated"), ("generated", "prompt")):
        assert acc[False][(*direction, "top_1")] == 1.0  # the same code: read right across origins
        assert acc[True][(*direction, "top_1")] == 0.0   # the other origin's code names another POS, always
    for within in (("prompt", "prompt"), ("generated", "generated")):  # each origin's own code is consistent
        for variant in ("top_1", "baseline"):
            assert acc[True][(*within, variant)] == acc[False][(*within, variant)]
        assert acc[False][(*within, "top_1")] >= acc[False][(*within, "baseline")]


def test_by_origin_refuses_a_run_without_origins(tiny_run):
    with pytest.raises(ReportError, match="no token origins"):
        report_tables(RunView.from_run(tiny_run), by_origin=True)


def test_by_origin_refuses_a_run_with_one_origin_only(tmp_path):
    def all_prompt(arrays):
        arrays["origin"][:] = 0

    run = origin_run(tmp_path, arrays_hook=all_prompt)
    with pytest.raises(ReportError, match="no analysed generated token"):
        origin_tables(RunView.from_run(run))


def test_report_cli_writes_the_by_origin_files(gen_run, tmp_path, capsys):
    from moe_tui.cli import main

    out = tmp_path / "rep"
    assert main(["report", str(gen_run.path), "--out", str(out), "--by-origin", "--no-paper"]) == 0
    files = {p.name for p in (out / gen_run.run_id).iterdir()}
    assert {"summary_by_origin.csv", "spec_layer_by_origin.csv", "spec_pos_by_origin.csv",
            "kl_layer_expert_by_origin.csv", "kl_summary_by_origin.csv", "spec_layer.csv"} <= files
    capsys.readouterr()
    assert main(["report", str(synthetic_run(tmp_path / "plain").path), "--out", str(out), "--by-origin"]) == 2
    err = capsys.readouterr().err
    assert "no token origins" in err and len(err.strip().splitlines()) == 1


# ---------------------------------------------------------------------------------------------------- exports
def test_route_exports_carry_the_origin_of_every_token(gen_run, tmp_path):
    assert route_columns(gen_run)[5] == "origin"
    out = export_routes(gen_run, tmp_path / "r.csv")
    with open(out, newline="") as fh:
        rows = list(csv.DictReader(fh))
    off = np.asarray(gen_run.sentence_offsets)
    origin = np.asarray(gen_run.origin)
    for row in rows:
        g = int(off[int(row["sentence"])]) + int(row["token"])
        assert row["origin"] == ("prompt", "generated")[int(origin[g])]
    assert {r["origin"] for r in rows} == {"prompt", "generated"}


@pytest.mark.parametrize("engine", ["arrow", "numpy"])
def test_streamed_origin_csv_is_the_row_by_row_csv(gen_run, tmp_path, engine):
    a = export_routes(gen_run, tmp_path / "a.csv", chunk_rows=7, csv_engine=engine)
    b = export_routes_rowwise(gen_run, tmp_path / "b.csv")
    assert a.read_bytes() == b.read_bytes()


def test_streamed_origin_parquet_and_frame_are_the_row_by_row_table(gen_run, tmp_path):
    pytest.importorskip("pyarrow")
    import pandas as pd

    from moe_tui.core.inspect.export import iter_route_rows

    a = export_routes(gen_run, tmp_path / "a.parquet", row_group_rows=50)
    b = export_routes_rowwise(gen_run, tmp_path / "b.parquet", row_group_rows=50)
    assert a.read_bytes() == b.read_bytes()
    ref = pd.DataFrame.from_records(list(iter_route_rows(gen_run)), columns=list(route_columns(gen_run)))
    pd.testing.assert_frame_equal(routes_frame(gen_run, chunk_tokens=5), ref)


def test_api_run_has_origin_and_routes_have_the_column(gen_run, tiny_run):
    import moe_tui

    run = moe_tui.open_run(gen_run.path)
    assert np.array_equal(run.origin, synthetic_origin(run.sentence_offsets))
    assert "origin" in run.routes().columns
    plain = moe_tui.open_run(tiny_run.path)
    assert plain.origin is None and "origin" not in plain.routes().columns
    tables = moe_tui.report(run, by_origin=True)
    assert list(tables["kl_summary_by_origin"]["origin"]) == ["prompt", "generated"]


@pytest.mark.slow
def test_controls_by_origin_are_the_controls_of_each_origin_alone(gen_run, tmp_path):
    """The quantities that do not depend on how word forms are numbered (the control task maps form ids to random
    labels, and a one-origin run numbers its forms anew) equal those of a run made of that origin's tokens."""
    o = ReportOptions(max_iter=30, mlp_kwargs={"hidden_layer_sizes": (8,)}, n_permutations=3, n_boot=5,
                      probe_device="cpu")
    rows = origin_tables(RunView.from_run(gen_run), o, controls=True)["controls_by_origin"]["rows"]
    same = ("token_identity", "ambiguous_token_ids", "ambiguous_test_tokens", "ambiguous_token_identity",
            "hamming_same_token_same_pos", "hamming_same_token_diff_pos", "context_effect_p", "spec_ci_low",
            "spec_ci_high", "spec_pct_low", "spec_pct_high")
    for code, name in enumerate(("prompt", "generated")):
        alone = report_tables(RunView.from_run(_one_origin_run(tmp_path / name, code)), controls=True, options=o)
        want = {q: v for q, v in alone["controls"]["rows"]}
        got = {r[1]: r[2] for r in rows if r[0] == name}
        assert set(got) == set(want)
        for q in same:
            assert got[q] == want[q] or (got[q] is None and want[q] is None), (name, q)
