"""moe-tui concordance / expert / open --diff on small real runs with known answers."""

from __future__ import annotations

import csv

import numpy as np

from moe_tui.cli import main
from tests.runs import WORD_RUN_EXPERTS as N_EXPERTS
from tests.runs import word_run as build_run
from tests.runs import word_run_experts as expected_experts


def run_cli(capsys, *argv) -> tuple[int, str, str]:
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


def test_concordance_csv_and_summary(tmp_path, capsys):
    run = build_run(tmp_path)
    out = tmp_path / "that.csv"
    code, stdout, err = run_cli(capsys, "concordance", str(run.path), "that", "--layer", "2", "--out", str(out))
    assert code == 0 and stdout.strip() == str(out.resolve())
    with open(out, newline="") as fh:
        rows = list(csv.reader(fh))
    assert rows[0] == ["sentence", "token", "left", "match", "right", "pos", "layer", "experts"]
    assert [r[:2] for r in rows[1:]] == [["0", "3"], ["1", "1"], ["2", "3"], ["3", "4"]]
    assert [r[7] for r in rows[1:]] == [" ".join(map(str, expected_experts(t, 1))) for t in (3, 8, 15, 21)]
    code, stdout, _ = run_cli(capsys, "concordance", str(run.path), "That", "--by", "token")
    assert code == 0 and stdout.startswith("1 occurrences of 'That' (by token) at layer 1")
    assert "DET\t1\t0:50%  1:50%" in stdout


def test_concordance_and_expert_bad_input_one_line(tmp_path, capsys):
    run = build_run(tmp_path)
    for argv, pattern in (
        (("concordance", str(run.path), "that", "--layer", "9"), "layer 9 is not a MoE layer"),
        (("expert", str(run.path), "--layer", "1", "--expert", "4"), "expert 4 is outside 0..3"),
        (("expert", str(run.path), "--layer", "5", "--expert", "0"), "layer 5 is not a MoE layer"),
        (("concordance", str(tmp_path / "nope"), "that"), "unknown run"),
    ):
        code, out, err = run_cli(capsys, *argv)
        assert code == 2 and out == "", argv
        assert len(err.strip().splitlines()) == 1 and pattern in err, err


def test_expert_csv_layout(tmp_path, capsys):
    run = build_run(tmp_path)
    out = tmp_path / "e.csv"
    code, _, _ = run_cli(capsys, "expert", str(run.path), "--layer", "1", "--expert", "0", "--examples", "2",
                         "--min-count", "2", "--out", str(out))
    assert code == 0
    with open(out, newline="") as fh:
        rows = list(csv.DictReader(fh))
    sections = [r["section"] for r in rows]
    assert sections[:2] == ["load", "load"] and sections.count("example") == 2
    analysed = [t for t in range(23) if t not in (0, 7, 12, 17)]
    mine = [t for t in analysed if 0 in expected_experts(t, 0)]
    assert int(rows[0]["count"]) == len(mine) and int(rows[0]["corpus_count"]) == 2 * len(analysed)
    assert float(rows[0]["corpus_share"]) == 1 / N_EXPERTS
    # lift is empty exactly where the item was seen fewer than --min-count times in the run
    for r in rows:
        if r["section"] in ("token", "word"):
            assert (r["lift"] == "") == (int(r["corpus_count"]) < 2), r
    code, stdout, _ = run_cli(capsys, "expert", str(run.path), "--layer", "1", "--expert", "0")
    assert code == 0 and stdout.startswith(f"expert 0 at layer 1: {len(mine)} of {2 * len(analysed)} assignments")


def test_open_diff_refuses_other_tokenizer_before_the_tui(tmp_path, capsys):
    a = build_run(tmp_path)
    b = build_run(tmp_path, model="org/m-c", token_ids=np.arange(23)[::-1])
    code, out, err = run_cli(capsys, "open", str(a.path), "--diff", str(b.path))
    assert code == 2 and "tokenize the corpus differently" in err and len(err.strip().splitlines()) == 1
