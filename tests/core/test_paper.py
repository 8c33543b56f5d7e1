"""The paper side by side: the shipped figures of arXiv 2412.16971 (Tables 1, 3, 4, 5), paper_vs_measured.csv,
the compare tables' "paper" rows; and the tags the global Spec averages (summary.csv ``global_pos``, the compare
tables refusing runs whose global Spec averages different tags)."""

from __future__ import annotations

import copy
import csv
import json

import numpy as np
import pytest

from moe_tui.core.analysis import paper
from moe_tui.core.analysis.report import compare_tables, report_tables
from moe_tui.core.analysis.view import RunView, form_keys
from moe_tui.core.analysis.writer import write_report
from moe_tui.core.extract.tagsets import TAGSETS
from moe_tui.errors import ReportError

# The paper's values written out by hand from its tables (arXiv 2412.16971v1; COLING 2025, pp. 6467-6474),
# keyed (table, model, quantity, pos or ""), in the units of moe_tui.core.analysis.paper.UNITS. Every value the package
# ships must be here and equal. It is empty because no stored copy of the tables could be read when the data
# file was written (its "retrieval" notes say what was looked up): the package ships no value.
PAPER_BY_HAND: dict[tuple[str, str, str, str], float] = {}

UPOS = TAGSETS["upos"]
P15 = TAGSETS["paper15"]
# written out by hand: UD's 17 tags less X and SYM; the paper's 15 less X and SYM (AUX and SCONJ folded away)
UPOS_GLOBAL = ("ADJ", "ADP", "ADV", "AUX", "CCONJ", "DET", "INTJ", "NOUN", "NUM", "PART", "PRON", "PROPN", "PUNCT",
               "SCONJ", "VERB")
P15_GLOBAL = ("ADJ", "ADP", "ADV", "CCONJ", "DET", "INTJ", "NOUN", "NUM", "PART", "PRON", "PROPN", "PUNCT", "VERB")


def view(tags=P15, model="mistralai/Mixtral-8x7B-v0.1", run_id="run_a", absent=(), n_experts=8, top_k=2,
         per_pos=10, L=3) -> RunView:
    """Every POS (but ``absent``) has ``per_pos`` tokens and always goes to the same ``top_k`` experts
    {p mod N, p+1 mod N} at every layer: Spec = 100 for each present POS, by construction."""
    pos = np.repeat([i for i, t in enumerate(tags) if t not in absent], per_pos)
    T = len(pos)
    experts = np.stack([(pos + r) % n_experts for r in range(top_k)], axis=1)[:, None, :].repeat(L, axis=1)
    return RunView(model=model, run_id=run_id, tags=tuple(tags), moe_layers=list(range(L)), n_experts=n_experts,
                   top_k=top_k, experts=experts, pos=pos, **form_keys(np.array([f"w{i}" for i in range(T)])),
                   sentence=np.arange(T) // 5, token_ids=np.arange(T) % 50)


def read(path):
    with open(path, newline="") as fh:
        return list(csv.reader(fh))


def shipped_doc() -> dict:
    return json.loads(paper.figures_path().read_text(encoding="utf-8"))


def write_doc(tmp_path, doc, name="figs.json"):
    p = tmp_path / name
    p.write_text(json.dumps(doc), encoding="utf-8")
    return p


# ---------------------------------------------------------------------------------------------- global_pos


def test_global_pos_is_15_tags_under_upos_and_13_under_paper15():
    for tags, want in ((UPOS, UPOS_GLOBAL), (P15, P15_GLOBAL)):
        v = view(tags)
        assert v.global_pos() == want
        summary = report_tables(v)["summary"]
        row = dict(zip(summary["columns"], summary["rows"][0]))
        assert row["global_pos"] == " ".join(want)
        assert row["spec"] == 100.0  # every POS always on the same k experts
    assert paper.PAPER_GLOBAL_POS == P15_GLOBAL


def test_global_pos_drops_a_pos_without_tokens():
    v = view(P15, absent=("INTJ", "NUM"))
    assert v.global_pos() == tuple(t for t in P15_GLOBAL if t not in ("INTJ", "NUM"))


def test_compare_refuses_runs_whose_global_spec_averages_different_tags(tmp_path):
    a, b = view(UPOS, run_id="run_upos"), view(P15, run_id="run_p15")
    per_run = {v.run_id: report_tables(v) for v in (a, b)}
    with pytest.raises(ReportError) as exc:
        compare_tables([a, b], per_run)
    msg = str(exc.value)
    assert "\n" not in msg and "different tags" in msg
    assert "run_upos: 15 POS" in msg and "run_p15: 13 POS" in msg and "only run_upos has AUX SCONJ" in msg
    # the report refuses before computing or writing anything
    out = tmp_path / "out"
    with pytest.raises(ReportError, match="different tags"):
        write_report([a, b], out, probe=True)
    assert not out.exists()
    # same tagset, but a POS occurs in one corpus only: the global Specs average different tags too
    c = view(P15, run_id="run_c", absent=("INTJ",))
    with pytest.raises(ReportError, match="only run_p15 has INTJ"):
        compare_tables([b, c], {b.run_id: per_run["run_p15"], c.run_id: report_tables(c)})
    # and the same tags compare
    d = view(P15, run_id="run_d", model="org/other")
    out = compare_tables([b, d], {b.run_id: per_run["run_p15"], d.run_id: report_tables(d)})
    assert [r[1] for r in out["compare_table1"]["rows"]] == ["run_p15", "run_d"]


# ------------------------------------------------------------------------------------------- shipped data


def test_shipped_values_are_the_hand_checked_values():
    figs = paper.load_figures()
    shipped = {}
    for table, per_model in figs.values.items():
        for model, cells in per_model.items():
            if table in ("4", "5"):
                for pos, qs in cells.items():
                    shipped.update({(table, model, q, pos): v for q, v in qs.items() if v is not None})
            else:
                shipped.update({(table, model, q, ""): v for q, v in cells.items() if v is not None})
    assert shipped == PAPER_BY_HAND  # nothing shipped that was not read from the paper and checked here
    assert figs.n_values() == len(PAPER_BY_HAND)
    for (table, model, q, pos), v in PAPER_BY_HAND.items():
        assert figs.value(table, model, q, pos or None) == v
        assert figs.read_from[table], f"table {table} holds values without naming where they were read"


def test_shipped_file_names_its_source_and_covers_the_six_models():
    figs = paper.load_figures()
    assert figs.paper["arxiv"] == "2412.16971"
    assert "COLING 2025" in figs.paper["venue"] and "6467-6474" in figs.paper["venue"]
    assert "Part-Of-Speech Sensitivity of Routers" in figs.paper["title"]
    assert figs.retrieval and any("Table" in line for line in figs.retrieval)
    assert set(figs.values) == {"1", "3", "4", "5"}
    assert paper.PAPER_MODELS == ("dbrx-base", "Mixtral-8x7B-v0.1", "Phi-3.5-MoE-instruct", "deepseek-moe-16b-base",
                                  "Qwen1.5-MoE-A2.7B", "OLMoE-1B-7B")
    from moe_tui.cli import PAPER_MODELS as CLI_CHOICES  # the CLI repeats them so that --help stays light

    assert CLI_CHOICES == paper.PAPER_MODELS
    for t in ("1", "3"):
        assert set(figs.values[t]) == set(paper.PAPER_MODELS)
        for cells in figs.values[t].values():
            assert tuple(cells) == paper.QUANTITIES[t]
    for t in ("4", "5"):
        for cells in figs.values[t].values():
            assert tuple(cells) == P15  # per POS, the paper's 15 tags


@pytest.mark.parametrize("mutate, match", [
    (lambda d: d["tables"]["1"]["values"]["dbrx-base"].update(spec=50.0), "does not name where they were read"),
    (lambda d: d["tables"]["3"].update(read_from="Table 3") or d["tables"]["3"]["values"]["OLMoE-1B-7B"].update(
        mu_min="0.5"), "finite number or null"),
    (lambda d: d["tables"]["5"].update(read_from="Table 5") or d["tables"]["5"]["values"]["dbrx-base"]["NOUN"].update(
        mean_spec=float("nan")), "finite number or null"),
    (lambda d: d["tables"]["5"]["values"]["dbrx-base"].update(AUX={"mean_spec": None, "max_spec": None}),
     "POS outside the paper15 tags: AUX"),
    (lambda d: d["models"].pop("OLMoE-1B-7B"), "models must be exactly"),
    (lambda d: d["tables"]["1"]["units"].update(mlp_top_k="fraction"), "units"),
    (lambda d: d.update(tagset="upos"), "tagset"),
    (lambda d: d["tables"]["4"].update(read_from="Table 4") or d["tables"]["4"]["values"]["dbrx-base"]["NOUN"].update(
        tokens=12.5), "a whole number"),
])
def test_loader_refuses_a_bad_figures_file_in_one_line(tmp_path, mutate, match):
    doc = shipped_doc()
    mutate(doc)
    p = write_doc(tmp_path, doc)
    with pytest.raises(ReportError, match=match) as exc:
        paper.load_figures(p)
    assert "\n" not in str(exc.value) and str(p) in str(exc.value)


def test_loader_refuses_unreadable_files(tmp_path):
    bad = tmp_path / "bad.json"
    bad.write_text("{not json", encoding="utf-8")
    with pytest.raises(ReportError, match="not valid JSON"):
        paper.load_figures(bad)
    with pytest.raises(ReportError, match="cannot read"):
        paper.load_figures(tmp_path / "missing.json")


def test_match_model_by_hub_id_path_or_cache_folder():
    cases = {
        "mistralai/Mixtral-8x7B-v0.1": "Mixtral-8x7B-v0.1",
        "databricks/dbrx-base": "dbrx-base",
        "/data/models/DBRX-BASE/": "dbrx-base",
        "microsoft/Phi-3.5-MoE-instruct": "Phi-3.5-MoE-instruct",
        "deepseek-ai/deepseek-moe-16b-base": "deepseek-moe-16b-base",
        "Qwen/Qwen1.5-MoE-A2.7B": "Qwen1.5-MoE-A2.7B",
        "allenai/OLMoE-1B-7B-0924": "OLMoE-1B-7B",
        "/hf/hub/models--allenai--OLMoE-1B-7B-0924/snapshots/0a1b2c": "OLMoE-1B-7B",
        "mistralai/Mixtral-8x7B-Instruct-v0.1": None,
        "databricks/dbrx-instruct": None,
        "allenai/OLMoE-1B-7B-0924-Instruct": None,
        "Qwen/Qwen1.5-MoE-A2.7B-Chat": None,
        "org/tiny-moe": None,
    }
    for model_id, want in cases.items():
        assert paper.match_model(model_id) == want, model_id


def test_tagset_mismatch():
    assert paper.tagset_mismatch(P15) is None
    why = paper.tagset_mismatch(UPOS)
    assert "upos" in why and "17 tags" in why and "--tagset paper15" in why and "\n" not in why


# -------------------------------------------------------------------------------------- paper_vs_measured


def figures_with(tmp_path, values: dict) -> paper.PaperFigures:
    """The shipped file with the given test values set ({(table, model, quantity, pos): value}); these are
    test inputs for the arithmetic, not the paper's numbers."""
    doc = copy.deepcopy(shipped_doc())
    for (t, m, q, p), x in values.items():
        cell = doc["tables"][t]["values"][m]
        (cell[p] if p else cell)[q] = x
        doc["tables"][t]["read_from"] = "test input"
    return paper.load_figures(write_doc(tmp_path, doc))


def hand_tables(global_pos=" ".join(P15_GLOBAL)) -> dict:
    """A run's report tables written out by hand (accuracies as shares, as summary.csv holds them)."""
    def t(cols, rows):
        return {"name": "x", "columns": cols, "rows": rows}

    return {
        "summary": t(["model", "moe_layers", "experts", "top_k", "tokens", "spec", "uniform", "delta", "mlp_top_k",
                      "mlp_top_1", "baseline", "global_pos"],
                     [["m", 32, 8, 2, 1000, 52.5, 25.0, 27.5, 0.875, 0.8, 0.9, global_pos]]),
        "kl_summary": t(["mu_min", "mu_max", "mu_mean"], [[0.25, 1.5, 0.75]]),
        "pos_counts": t(["pos", "tokens", "percent"], [[p, 10 * (i + 1), 100.0 * (i + 1) / 120] for i, p in
                                                        enumerate(P15)]),
        "spec_pos": t(["pos", "mean_spec", "max_spec", "max_layer"],
                      [[p, 40.0 + i, 60.0 + i, i] if p != "X" else [p, None, None, None] for i, p in enumerate(P15)]),
    }


def test_paper_vs_measured_rows_and_differences_by_hand(tmp_path):
    M = "Mixtral-8x7B-v0.1"
    figs = figures_with(tmp_path, {("1", M, "spec", ""): 50.0, ("1", M, "mlp_top_k", ""): 80.0,
                                   ("1", M, "uniform", ""): 25.0, ("3", M, "mu_mean", ""): 1.0,
                                   ("4", M, "percent", "NOUN"): 20.0, ("5", M, "mean_spec", "NOUN"): 45.0,
                                   ("5", M, "max_spec", "X"): 30.0})
    t = paper.paper_vs_measured(M, hand_tables(), figs)
    assert t["columns"] == ["table", "quantity", "pos", "paper", "measured", "difference"]
    rows = {(r[0], r[1], r[2]): r[3:] for r in t["rows"]}
    assert len(t["rows"]) == 5 + 3 + 2 * 15 + 2 * 15
    assert [r[1] for r in t["rows"][:8]] == ["mlp_top_k", "mlp_top_1", "spec", "uniform", "delta", "mu_min", "mu_max",
                                             "mu_mean"]
    assert rows[(1, "spec", "")] == [50.0, 52.5, 2.5]                  # 52.5 - 50
    assert rows[(1, "mlp_top_k", "")] == [80.0, 87.5, 7.5]             # accuracy 0.875 written in percent
    assert rows[(1, "mlp_top_1", "")] == [None, 80.0, None]            # the paper's value is not held
    assert rows[(1, "uniform", "")] == [25.0, 25.0, 0.0]
    assert rows[(1, "delta", "")] == [None, 27.5, None]
    assert rows[(3, "mu_mean", "")] == [1.0, 0.75, -0.25]
    assert rows[(3, "mu_min", "")] == [None, 0.25, None]
    noun = P15.index("NOUN")
    assert rows[(4, "tokens", "NOUN")] == [None, 10 * (noun + 1), None]
    assert isinstance(rows[(4, "tokens", "NOUN")][1], int)  # counts stay whole numbers
    assert rows[(4, "percent", "NOUN")][0] == 20.0
    assert rows[(4, "percent", "NOUN")][2] == pytest.approx(100.0 * (noun + 1) / 120 - 20.0)
    assert rows[(5, "mean_spec", "NOUN")] == [45.0, 40.0 + noun, 40.0 + noun - 45.0]
    assert rows[(5, "max_spec", "X")] == [30.0, None, None]            # the run has no X tokens: no difference
    assert [r[2] for r in t["rows"] if r[0] == 5 and r[1] == "mean_spec"] == list(P15)
    # a run whose global Spec averages other tags: no difference for spec and delta, the rest stays
    t2 = paper.paper_vs_measured(M, hand_tables(" ".join(UPOS_GLOBAL)), figs)
    rows2 = {(r[0], r[1], r[2]): r[3:] for r in t2["rows"]}
    assert rows2[(1, "spec", "")] == [50.0, 52.5, None]
    assert rows2[(1, "mlp_top_k", "")] == [80.0, 87.5, 7.5]
    with pytest.raises(ReportError, match="unknown paper model"):
        paper.paper_vs_measured("Mixtral", hand_tables(), figs)


def test_write_report_sets_a_paper15_run_beside_the_paper(tmp_path):
    v = view(P15)  # Spec 100 for every POS, U = 100 * 2 / 8 = 25, delta 75
    res = write_report([v], tmp_path)
    assert res["paper"] == {"run_a": "Mixtral-8x7B-v0.1"} and res["notices"] == []
    rows = read(tmp_path / "run_a" / "paper_vs_measured.csv")
    assert rows[0] == ["table", "quantity", "pos", "paper", "measured", "difference"]
    got = {(r[0], r[1], r[2]): r[4] for r in rows[1:]}
    assert float(got[("1", "spec", "")]) == 100.0 and float(got[("1", "uniform", "")]) == 25.0
    assert float(got[("1", "delta", "")]) == 75.0
    assert got[("1", "mlp_top_k", "")] == ""  # no probe in this report
    assert float(got[("5", "max_spec", "NOUN")]) == 100.0 and got[("4", "tokens", "NOUN")] == "10"
    # the paper column holds exactly the shipped values (none yet: empty cells, and so are the differences)
    figs = paper.load_figures()
    for r in rows[1:]:
        want = figs.value(r[0], "Mixtral-8x7B-v0.1", r[1], r[2] or None)
        assert r[3] == ("" if want is None else repr(want))
    # off, and named explicitly (the hub id need not match)
    write_report([v], tmp_path / "off", paper_model=None)
    assert not (tmp_path / "off" / "run_a" / "paper_vs_measured.csv").exists()
    other = view(P15, model="/models/my-finetune")
    res = write_report([other], tmp_path / "named", paper_model="OLMoE-1B-7B")
    assert res["paper"] == {"run_a": "OLMoE-1B-7B"}
    assert (tmp_path / "named" / "run_a" / "paper_vs_measured.csv").is_file()


def test_write_report_keeps_runs_of_other_tagsets_apart_from_the_paper(tmp_path):
    v = view(UPOS)  # a Mixtral run extracted with the 17 UD tags
    res = write_report([v], tmp_path)
    assert res["paper"] == {} and not (tmp_path / "run_a" / "paper_vs_measured.csv").exists()
    assert len(res["notices"]) == 1 and "Mixtral-8x7B-v0.1" in res["notices"][0] and "paper15" in res["notices"][0]
    with pytest.raises(ReportError, match="--tagset paper15"):
        write_report([v], tmp_path / "named", paper_model="Mixtral-8x7B-v0.1")
    with pytest.raises(ReportError, match="one run"):
        write_report([view(P15), view(P15, run_id="run_b")], tmp_path / "two", paper_model="Mixtral-8x7B-v0.1")
    with pytest.raises(ReportError, match="unknown paper model"):
        write_report([view(P15)], tmp_path / "bad", paper_model="mixtral")
    assert not (tmp_path / "named").exists() and not (tmp_path / "two").exists()


def test_a_damaged_figures_file_leaves_the_report_without_the_paper(tmp_path, monkeypatch):
    bad = tmp_path / "figs.json"
    bad.write_text("{", encoding="utf-8")
    monkeypatch.setattr(paper, "figures_path", lambda: bad)
    res = write_report([view(P15)], tmp_path / "auto")  # inferred: the report goes on, a notice says why
    assert res["paper"] == {} and "not valid JSON" in res["notices"][0]
    assert (tmp_path / "auto" / "run_a" / "summary.csv").is_file()
    with pytest.raises(ReportError, match="not valid JSON"):  # named: refused before any work
        write_report([view(P15)], tmp_path / "named", paper_model="Mixtral-8x7B-v0.1")
    assert not (tmp_path / "named").exists()


def test_compare_rows_put_a_paper_row_beside_each_matched_run(tmp_path):
    M = "Mixtral-8x7B-v0.1"
    figs = figures_with(tmp_path, {("1", M, "mlp_top_k", ""): 84.0, ("1", M, "spec", ""): 50.0,
                                   ("3", M, "mu_max", ""): 2.0, ("5", M, "mean_spec", "VERB"): 41.0})
    a, b = view(P15, run_id="run_a"), view(P15, run_id="run_b", model="org/other")
    tabs = compare_tables([a, b], {v.run_id: report_tables(v) for v in (a, b)})
    extra, note = paper.compare_rows([a, b], figs)
    assert note is None
    t1 = paper.with_paper_rows(tabs["compare_table1"], extra["compare_table1"])
    assert [r[1] for r in t1] == ["run_a", "paper", "run_b"]
    assert t1[1][0] == M and t1[1][4] == pytest.approx(0.84) and t1[1][6] == 50.0  # accuracy as a share, like run rows
    t3 = paper.with_paper_rows(tabs["compare_table3"], extra["compare_table3"])
    assert [r[1] for r in t3] == ["run_a", "paper", "run_b"] and t3[1][3] == 2.0
    t5 = paper.with_paper_rows(tabs["compare_table5"], extra["compare_table5"])
    assert len(t5) == 3 * 15
    assert [r[2] for r in t5[:4]] == ["run_a", "paper", "run_a", "paper"]
    assert [r[0] for r in t5[:4]] == [P15[0], P15[0], P15[1], P15[1]]
    verb = [r for r in t5 if r[0] == "VERB" and r[2] == "paper"]
    assert verb == [["VERB", M, "paper", 41.0, None, None]]
    # a matched run of another tagset gets no paper row, and a note says why
    c = view(UPOS, run_id="run_c")
    extra, note = paper.compare_rows([c], figs)
    assert all(not rows for rows in extra.values()) and "paper15" in note
