"""The headless CLI contract: outputs, CSV columns, and one clear line for every bad input."""

from __future__ import annotations

import csv
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from moe_tui.cache.store import RunStore
from moe_tui.cli import main
from tests.factories_model import ewt_tiny_model
from tests.factories_tok import byte_bpe_tokenizer, ewt_texts
from tests.helpers import EWT_DEV, REPO, needs_ewt

N_SENT = 12


@pytest.fixture(scope="module")
def tiny_olmoe():
    return ewt_tiny_model("olmoe")


@pytest.fixture(scope="module")
def tiny_dense(tmp_path_factory):
    import torch
    from transformers import LlamaConfig, LlamaForCausalLM

    path = tmp_path_factory.mktemp("tiny_llama")
    torch.manual_seed(0)
    cfg = LlamaConfig(vocab_size=512, hidden_size=32, intermediate_size=48, num_hidden_layers=2,
                      num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=128)
    LlamaForCausalLM(cfg).save_pretrained(str(path))
    byte_bpe_tokenizer(ewt_texts()[:800], vocab_size=512).save_pretrained(str(path))
    return path


def run_cli(capsys, *argv) -> tuple[int, str, str]:
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


def extract_args(model, *extra):
    return ["extract", "--model", str(model), "--data", str(EWT_DEV), "--max-sentences", str(N_SENT),
            "--device", "cpu", "--dtype", "float32", "--progress", "none", *extra]


@pytest.mark.slow
@needs_ewt
def test_extract_runs_export(tiny_olmoe, tmp_path, capsys):
    code, out, err = run_cli(capsys, *extract_args(tiny_olmoe))
    assert code == 0, err
    run_dir = Path(out.strip().splitlines()[-1])
    assert (run_dir / "manifest.json").exists()
    code, out, _ = run_cli(capsys, "runs")
    assert code == 0 and run_dir.name in out and "tiny_olmoe" in out
    code, out, _ = run_cli(capsys, "runs", "--json")
    rec = json.loads(out.splitlines()[0])
    assert rec["run_id"] == run_dir.name and rec["status"] == "complete"
    # provenance: the versions this process runs with, read here independently
    import platform
    from importlib.metadata import version

    import torch

    prov = rec["provenance"]
    assert prov["python"] == platform.python_version() and prov["torch"] == torch.__version__
    assert {p: prov[p] for p in ("transformers", "tokenizers", "accelerate")} == {
        p: version(p) for p in ("transformers", "tokenizers", "accelerate")}
    assert prov["model"]["commit_hash"] is None  # a local folder has no hub commit
    assert rec["logits"] is False and prov == json.loads((run_dir / "manifest.json").read_text())["provenance"]

    csv_path = tmp_path / "routes.csv"
    code, out, err = run_cli(capsys, "export-routes", run_dir.name[:8], "--out", str(csv_path))
    assert code == 0, err
    assert Path(out.strip()) == csv_path.resolve()
    run = RunStore().open(run_dir.name)
    with open(csv_path, newline="") as fh:
        rows = list(csv.reader(fh))
    assert rows[0] == ["sentence", "token", "token_text", "word", "pos", "layer", "rank", "expert", "weight"]
    n_tokens = int((~np.asarray(run.special)).sum())
    assert len(rows) - 1 == n_tokens * len(run.moe_layers) * run.top_k
    # spot-check one row against the arrays
    sent, tok, _, word, pos, layer, rank, expert, weight = rows[1 + 5]
    g = int(run.sentence_offsets[int(sent)]) + int(tok)
    li = run.moe_layers.index(int(layer))
    assert int(expert) == int(run.experts[g, li, int(rank)])
    assert float(weight) == float(run.weights[g, li, int(rank)])
    assert pos == run.tags[run.pos[g]]
    assert word == run.sentences[int(sent)]["words"][run.word_index[g]][0]
    assert not any(r[1] == "0" for r in rows[1:])  # token 0 is the BOS: excluded

    pq_path = tmp_path / "routes.parquet"
    assert run_cli(capsys, "export-routes", run_dir.name, "--out", str(pq_path))[0] == 0
    import pyarrow.parquet as pq

    assert pq.read_table(pq_path).num_rows == len(rows) - 1


@pytest.mark.slow
@needs_ewt
def test_hub_model_commit_and_logits_in_runs_json(tiny_olmoe, tmp_path):
    """A model read from the Hugging Face cache (offline) records its commit; --save-logits shows in runs --json."""
    import shutil

    commit = "0123456789abcdef0123456789abcdef01234567"
    repo = tmp_path / "hub" / "models--moe-tui--tiny-olmoe"
    shutil.copytree(tiny_olmoe, repo / "snapshots" / commit)
    (repo / "refs").mkdir()
    (repo / "refs" / "main").write_text(commit)
    env = dict(os.environ, HF_HUB_CACHE=str(tmp_path / "hub"), HF_HUB_OFFLINE="1", MOE_TUI_CACHE=str(tmp_path / "c"))

    def cli(*argv):
        p = subprocess.run([sys.executable, "-m", "moe_tui", *argv], capture_output=True, text=True, env=env,
                           cwd=str(REPO), timeout=300)
        assert p.returncode == 0, p.stderr
        return p.stdout

    cli("extract", "--model", "moe-tui/tiny-olmoe", "--data", str(EWT_DEV), "--max-sentences", "3", "--device", "cpu",
        "--progress", "none", "--save-logits")
    rec = json.loads(cli("runs", "--json").splitlines()[0])
    assert rec["provenance"]["model"] == {"name_or_path": "moe-tui/tiny-olmoe", "revision": None, "commit_hash": commit}
    assert rec["logits"] is True


@pytest.mark.slow
@needs_ewt
def test_extract_twice_is_a_cache_hit(tiny_olmoe, capsys):
    code, out1, _ = run_cli(capsys, *extract_args(tiny_olmoe))
    code, out2, _ = run_cli(capsys, *extract_args(tiny_olmoe, "--batch-size", "3"))
    assert code == 0 and out1.splitlines()[-1] == out2.splitlines()[-1]


@needs_ewt
def test_progress_json_events(tiny_olmoe, tmp_path, capsys):
    code, out, err = run_cli(capsys, *extract_args(tiny_olmoe, "--max-sentences", "4", "--progress", "json"))
    assert code == 0, err
    events = [json.loads(line) for line in err.splitlines() if line.startswith("{")]
    assert events[-1]["event"] == "done" and events[-1]["run_dir"] == out.strip().splitlines()[-1]


def _one_line_error(code, out, err, pattern):
    assert code == 2, (code, err)
    lines = [ln for ln in err.splitlines() if ln.strip()]
    assert len(lines) == 1, err
    assert lines[0].startswith("moe-tui: error: ")
    assert pattern in lines[0], lines[0]
    assert "Traceback" not in err


@needs_ewt
def test_bad_inputs_one_line(tiny_olmoe, tiny_dense, tmp_path, capsys):
    bad = tmp_path / "bad.conllu"
    bad.write_text("# text = a b\n1\ta\ta\tNOUN\t_\t_\t0\troot\t_\t_\n2\tb\tb\tNOUN\t_\n\n")
    cases = [
        (["--data", str(tmp_path / "missing.conllu")], "missing.conllu"),
        (["--data", str(bad)], ":3"),
        (["--tagset", "ptb45"], "ptb45"),
        (["--model", str(tmp_path / "no_such_model")], "no_such_model"),
        (["--model", str(tmp_path)], "config.json"),
        (["--model", str(tiny_dense)], "no MoE router"),
    ]
    for (flag, value), pattern in cases:
        args = extract_args(tiny_olmoe)
        if flag in args:
            args[args.index(flag) + 1] = value
        else:
            args += [flag, value]
        _one_line_error(*run_cli(capsys, *args), pattern)
    assert RunStore().list_runs() == [] or all(r.status == "complete" for r in RunStore().list_runs())


@needs_ewt
def test_remote_code_needed(tmp_path, capsys):
    model = tmp_path / "custom"
    model.mkdir()
    (model / "config.json").write_text(json.dumps({
        "model_type": "deepseek", "architectures": ["DeepseekForCausalLM"],
        "auto_map": {"AutoConfig": "configuration_deepseek.DeepseekConfig",
                     "AutoModelForCausalLM": "modeling_deepseek.DeepseekForCausalLM"}}))
    code, out, err = run_cli(capsys, *extract_args(model))
    _one_line_error(code, out, err, "--trust-remote-code")


def test_unknown_run_and_report_errors(tmp_path, capsys):
    _one_line_error(*run_cli(capsys, "export-routes", "deadbeef", "--out", str(tmp_path / "x.csv")), "unknown run")
    _one_line_error(*run_cli(capsys, "diff", "deadbeef", "cafe"), "unknown run")


@pytest.mark.slow
@needs_ewt
def test_export_to_unwritable_place(tiny_olmoe, tmp_path, capsys):
    code, out, _ = run_cli(capsys, *extract_args(tiny_olmoe))
    run_id = Path(out.strip().splitlines()[-1]).name
    # folders that do not exist yet are created; a folder that cannot be (a regular file in the way) is one line
    (tmp_path / "no").write_text("a file\n")
    target = tmp_path / "no" / "such" / "dir" / "r.csv"
    _one_line_error(*run_cli(capsys, "export-routes", run_id, "--out", str(target)), "cannot write")
    assert not target.parent.exists() and (tmp_path / "no").read_text() == "a file\n"
    made = tmp_path / "new" / "such" / "dir" / "r.csv"
    code, out, err = run_cli(capsys, "export-routes", run_id, "--out", str(made))
    assert code == 0 and made.is_file() and out.strip() == str(made), err


def test_usage_error_exit_code(capsys):
    with pytest.raises(SystemExit) as e:
        main(["extract", "--model"])
    assert e.value.code == 2


@pytest.mark.parametrize("argv, line", [
    (["extract", "--model", "m", "--data", "d", "--max-sentences", "many"],
     "moe-tui: error: argument --max-sentences: 'many' is not an integer (see moe-tui extract --help)"),
    (["extract", "--data", "d"], "moe-tui: error: the following arguments are required: --model "
                                 "(see moe-tui extract --help)"),
    (["report", "r", "--out", "o", "--max-iter", "0"],
     "moe-tui: error: argument --max-iter: '0' must be > 0 (see moe-tui report --help)"),
    (["frobnicate"], "moe-tui: error: argument COMMAND: invalid choice: 'frobnicate' (choose from 'extract', "
                     "'generate', 'open', 'runs', 'export-routes', 'report', 'diff', 'concordance', 'expert', "
                     "'inspect', 'demo', 'tagger') (see moe-tui --help)"),
])
def test_usage_errors_are_one_line(capsys, argv, line):
    with pytest.raises(SystemExit) as e:
        main(argv)
    out, err = capsys.readouterr()
    assert e.value.code == 2 and out == ""
    assert err == line + "\n"  # no usage block


def test_no_progress_bar_left_above_an_error(tiny_olmoe, tmp_path):
    """With the default progress bar (stderr not a terminal), a failing extraction prints the error line only."""
    env = dict(os.environ, MOE_TUI_CACHE=str(tmp_path / "cache"))
    for model in (tmp_path / "no_such_model", tiny_olmoe):
        data = EWT_DEV if model != tiny_olmoe else tmp_path / "missing.conllu"
        p = subprocess.run([sys.executable, "-m", "moe_tui", "extract", "--model", str(model), "--data", str(data),
                            "--max-sentences", "3", "--device", "cpu"],
                           capture_output=True, text=True, env=env, cwd=str(REPO), timeout=300)
        assert p.returncode == 2 and p.stdout == ""
        assert p.stderr.count("\n") == 1 and p.stderr.startswith("moe-tui: error: "), repr(p.stderr)


def _modules_after(code: str) -> set[str]:
    env = dict(os.environ)
    out = subprocess.run([sys.executable, "-c", code + "\nimport sys, json; print(json.dumps(sorted(sys.modules)))"],
                         capture_output=True, text=True, env=env, cwd=str(REPO), check=True)
    return set(json.loads(out.stdout.strip().splitlines()[-1]))


HEAVY = {"torch", "transformers", "sklearn", "accelerate"}


def test_help_and_headless_imports_are_light():
    mods = _modules_after("import contextlib, io\nfrom moe_tui.cli import main\n"
                          "with contextlib.redirect_stdout(io.StringIO()):\n"
                          "    try: main(['--help'])\n    except SystemExit: pass")
    assert not (mods & (HEAVY | {"textual"}))


def test_core_and_cache_never_import_textual():
    mods = []
    for top, pkg in (("core", "moe_tui.core"), ("cache", "moe_tui.cache")):
        for p in sorted((REPO / top).rglob("*.py")):
            parts = p.relative_to(REPO / top).with_suffix("").parts
            mods.append(".".join((pkg, *(parts[:-1] if parts[-1] == "__init__" else parts))))
    assert len(mods) > 40 and "moe_tui.core.analysis.report" in mods  # every module of the engine and the store
    code = "\n".join(f"import {m}" for m in mods)
    mods = _modules_after(code)
    assert "textual" not in mods and not any(m.startswith("textual.") for m in mods)
    assert not (mods & HEAVY), mods & HEAVY


REPORT_FILES = {
    "pos_counts.csv": "pos,tokens,percent",
    "spec_layer.csv": "layer,pos,tokens,spec,uniform,delta",
    "spec_pos.csv": "pos,mean_spec,max_spec,max_layer",
    "kl_layer_expert.csv": "layer,expert,assignments,kl",
    "kl_summary.csv": "mu_min,mu_max,mu_mean",
    "summary.csv": "model,moe_layers,experts,top_k,tokens,spec,uniform,delta,mlp_top_k,mlp_top_1,baseline,global_pos",
    "probe.csv": "variant,accuracy,train_tokens,test_tokens,accuracy_sd,seeds,n_iter,converged,engine,device",
    "confusion_top_k.csv": "true,pred,count",
    "ablation.csv": "side,removed,accuracy,accuracy_sd,n_iter,converged",
    "tsne.csv": "token,x,y,pos",
    "spec_null.csv": "layer,pos,spec,null_mean,null_p95,excess,p_value,q_value",
    "controls.csv": "quantity,value",
}


@pytest.mark.slow
@needs_ewt
def test_report_writes_every_table_from_real_runs(tiny_olmoe, tmp_path, capsys, monkeypatch):
    """`moe-tui report` on two real runs (tiny OLMoE and Mixtral on EWT dev) writes every file of the
    contract (figures included), and its numbers are the metrics computed directly from the run's arrays."""
    from moe_tui.core.analysis import metrics

    ids = []
    for model in (tiny_olmoe, ewt_tiny_model("mixtral")):
        code, out, err = run_cli(capsys, *extract_args(model))
        assert code == 0, err
        ids.append(Path(out.strip().splitlines()[-1]).name)
    out_dir = tmp_path / "report"
    # both runs side by side (routing tables + comparison), then the probes and controls of one run
    code, out, err = run_cli(capsys, "report", *ids, "--out", str(out_dir), "--figures")
    assert code == 0, err
    assert out.strip().splitlines()[-1] == str(out_dir.resolve())
    assert "summary" in out and "spec_pos" in out  # the plain-text tables
    for name in ("compare_table1.csv", "compare_table3.csv", "compare_table5.csv"):
        assert (out_dir / name).read_text().count("\n") >= 3
    for folder in (out_dir / ids[0], out_dir / ids[1], out_dir):  # per run, then the cross-model versions
        for stem in ("fig_spec_by_layer", "fig_kl_heatmap"):
            assert (folder / f"{stem}.png").read_bytes().startswith(b"\x89PNG"), (folder, stem)
            assert (folder / f"{stem}.pdf").read_bytes().startswith(b"%PDF"), (folder, stem)
    with monkeypatch.context() as mp:  # figures without matplotlib: one line, exit 2, before any work
        mp.setitem(sys.modules, "matplotlib", None)
        code, out, err = run_cli(capsys, "report", ids[0], "--out", str(tmp_path / "nofig"), "--figures")
    assert code == 2 and err.count("\n") == 1 and "matplotlib" in err and "Traceback" not in err
    assert not list((tmp_path / "nofig").rglob("*.csv"))
    code, out, err = run_cli(capsys, "report", ids[0], "--out", str(out_dir), "--probe", "--controls",
                             "--tsne-samples", "200", "--permutations", "20", "--bootstrap", "50",
                             "--ablation-step", "2", "--max-iter", "200")
    assert code == 0, err
    for name, header in REPORT_FILES.items():
        lines = (out_dir / ids[0] / name).read_text().splitlines()
        assert lines[0] == header, name
        assert len(lines) > 1, name
    ablation = (out_dir / ids[0] / "ablation.csv").read_text().splitlines()[1:]
    assert sorted({int(r.split(",")[1]) for r in ablation}) == [0, 2]  # L = 4, step 2
    # summary.csv's Spec is the global Spec of the arrays, unrounded
    run = RunStore().open(ids[0])
    mask = run.analysis_mask()
    P = len(run.tags)
    ex, pos = np.asarray(run.experts)[mask], np.asarray(run.pos)[mask]
    mean_spec, _, _ = metrics.spec_by_pos(metrics.spec_layer(ex, pos, run.num_experts, P))
    tokens, _ = metrics.pos_counts(pos, P)
    with open(out_dir / ids[0] / "summary.csv", newline="") as fh:
        row = list(csv.DictReader(fh))[0]
    assert float(row["spec"]) == metrics.global_spec(mean_spec, run.tags, tokens)
    assert int(row["tokens"]) == int(mask.sum())
    # the t-SNE embeds the probes' test tokens (a third), at most --tsne-samples of them
    n_test = int(round(int(mask.sum()) / 3))
    assert len((out_dir / ids[0] / "tsne.csv").read_text().splitlines()) == 1 + min(200, n_test)
    assert float(row["uniform"]) == 100.0 * run.top_k / run.num_experts
