"""`moe-tui report` and the paper: paper_vs_measured.csv, --paper-model, global_pos, and the refusal to put runs
side by side whose global Spec averages different tags (real tiny-model runs of EWT dev)."""

from __future__ import annotations

import csv
import shutil
from pathlib import Path

import pytest

from moe_tui.cli import main
from moe_tui.core.analysis import paper
from tests.factories_model import ewt_tiny_model
from tests.helpers import EWT_DEV, needs_ewt

N_SENT = 12


def run_cli(capsys, *argv) -> tuple[int, str, str]:
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


def rows(path: Path) -> list[dict]:
    with open(path, newline="") as fh:
        return list(csv.DictReader(fh))


@pytest.fixture(scope="module")
def mixtral_named(tmp_path_factory):
    """The tiny EWT Mixtral in a folder named like the paper's Mixtral, so the run's model id matches it."""
    path = tmp_path_factory.mktemp("models") / "Mixtral-8x7B-v0.1"
    shutil.copytree(ewt_tiny_model("mixtral"), path)
    return path


def extract(capsys, model, tagset) -> str:
    code, out, err = run_cli(capsys, "extract", "--model", str(model), "--data", str(EWT_DEV), "--max-sentences",
                             str(N_SENT), "--device", "cpu", "--dtype", "float32", "--progress", "none",
                             "--tagset", tagset)
    assert code == 0, err
    return Path(out.strip().splitlines()[-1]).name


@pytest.mark.slow
@needs_ewt
def test_report_sets_runs_beside_the_paper_and_refuses_mixed_tagsets(mixtral_named, tmp_path, capsys):
    p15 = extract(capsys, mixtral_named, "paper15")
    upos = extract(capsys, mixtral_named, "upos")

    # inferred from the hub id: the paper15 run gets paper_vs_measured.csv
    out = tmp_path / "r1"
    code, stdout, err = run_cli(capsys, "report", p15, "--out", str(out))
    assert code == 0, err
    d = out / p15
    pvm = rows(d / "paper_vs_measured.csv")
    assert (d / "paper_vs_measured.csv").read_text().splitlines()[0] == "table,quantity,pos,paper,measured,difference"
    summary = rows(d / "summary.csv")[0]
    counts = {r["pos"]: r for r in rows(d / "pos_counts.csv")}
    # global_pos: the tags with tokens in pos_counts.csv, less X and SYM
    assert summary["global_pos"].split() == [t for t, r in counts.items() if int(r["tokens"]) > 0
                                             and t not in ("X", "SYM")]
    # one source of numbers: the measured column is the report's own files
    by = {(r["table"], r["quantity"], r["pos"]): r for r in pvm}
    for q in ("spec", "uniform", "delta"):
        assert by[("1", q, "")]["measured"] == summary[q]
    assert by[("1", "mlp_top_k", "")]["measured"] == ""  # no --probe
    kl = rows(d / "kl_summary.csv")[0]
    for q in ("mu_min", "mu_max", "mu_mean"):
        assert by[("3", q, "")]["measured"] == kl[q]
    spec_pos = {r["pos"]: r for r in rows(d / "spec_pos.csv")}
    for pos in spec_pos:
        assert by[("5", "mean_spec", pos)]["measured"] == spec_pos[pos]["mean_spec"]
        assert by[("4", "tokens", pos)]["measured"] == counts[pos]["tokens"]
    figs = paper.load_figures()
    for r in pvm:  # the paper column is the shipped figures (empty where the paper's value is not held)
        want = figs.value(r["table"], "Mixtral-8x7B-v0.1", r["quantity"], r["pos"] or None)
        assert r["paper"] == ("" if want is None else repr(want))

    # the upos run of the same model: no file, one notice line, exit 0
    out = tmp_path / "r2"
    code, _, err = run_cli(capsys, "report", upos, "--out", str(out))
    assert code == 0, err
    assert not (out / upos / "paper_vs_measured.csv").exists()
    notices = [line for line in err.splitlines() if "paper_vs_measured" in line]
    assert len(notices) == 1 and "--tagset paper15" in notices[0]
    # named explicitly on the upos run: refused in one line, exit 2
    code, _, err = run_cli(capsys, "report", upos, "--out", str(tmp_path / "r3"), "--paper-model",
                           "Mixtral-8x7B-v0.1")
    assert code == 2 and err.count("\n") == 1 and "moe-tui: error:" in err and "paper15" in err
    assert not (tmp_path / "r3" / upos).exists()
    # an unknown name: argparse lists the six
    with pytest.raises(SystemExit) as exc:
        main(["report", p15, "--out", str(tmp_path / "r4"), "--paper-model", "mixtral"])
    err = capsys.readouterr().err
    assert exc.value.code == 2 and "OLMoE-1B-7B" in err.splitlines()[-1]

    # the two runs side by side: their global Spec averages different tags -> refused before any work
    out = tmp_path / "r5"
    code, _, err = run_cli(capsys, "report", p15, upos, "--out", str(out), "--probe")
    assert code == 2 and err.count("\n") == 1
    assert "different tags" in err and "AUX" in err
    assert list(out.iterdir()) == []
