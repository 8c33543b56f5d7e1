"""The shipped demo model loads through the ordinary transformers path, and the training script works."""

from __future__ import annotations

import importlib.util
import json
import subprocess
import sys
from pathlib import Path

import pytest

from moe_tui.core.demo import demo_corpus_path, demo_model_path

pytestmark = pytest.mark.slow  # seconds per test: child processes, training, full flows

REPO = Path(__file__).resolve().parents[2]
SCRIPT = REPO / "scripts" / "train_demo.py"


def _load_script():
    spec = importlib.util.spec_from_file_location("train_demo", SCRIPT)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def test_shipped_folder_is_safetensors_only():
    folder = demo_model_path()
    names = {p.name for p in folder.iterdir()}
    assert {"config.json", "model.safetensors", "tokenizer.json", "tokenizer_config.json", "train_log.json"} <= names
    assert not [n for n in names if n.endswith((".bin", ".pt", ".pth", ".pkl", ".pickle", ".ckpt"))]
    size = (folder / "model.safetensors").stat().st_size
    assert 100_000 < size < 20_000_000


def test_shipped_model_loads_offline():
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    folder = demo_model_path()
    model = AutoModelForCausalLM.from_pretrained(folder, local_files_only=True)
    tok = AutoTokenizer.from_pretrained(folder, local_files_only=True)
    assert type(model).__name__ == "MixtralForCausalLM"
    assert model.config.model_type == "mixtral"
    assert model.config.num_local_experts == 8
    assert model.config.num_experts_per_tok == 2
    assert tok.is_fast
    text = "Can you book the light run back?"
    enc = tok(text, return_offsets_mapping=True)
    ids, offs = enc["input_ids"], enc["offset_mapping"]
    assert ids[0] == tok.bos_token_id and tuple(offs[0]) == (0, 0)
    # offsets cover words without their leading space
    pieces = [text[s:e] for s, e in offs[1:]]
    assert "".join(pieces).replace(" ", "") == text.replace(" ", "")
    assert all(p == p.strip() for p in pieces)
    with torch.no_grad():
        out = model(input_ids=torch.tensor([ids]), output_router_logits=True)
    assert out.logits.shape == (1, len(ids), model.config.vocab_size)
    assert len(out.router_logits) == model.config.num_hidden_layers
    assert torch.isfinite(out.logits).all()


def test_train_log_shows_learning():
    log = json.loads((demo_model_path() / "train_log.json").read_text())
    curve = log["loss_curve"]
    assert len(curve) >= 5
    assert curve[-1]["lm_loss"] < 0.6 * curve[0]["lm_loss"]
    assert log["eval"]["eval_lm_loss"] < log["unigram_entropy_nats"]
    assert log["eval"]["min_expert_share"] > 0.02
    assert log["spec_mean"] > 40
    assert all(log["checks"].values())
    assert log["seed_train_text"] != log["seed_demo_conllu"]
    for key in ("seed", "settings", "versions", "train_wall_s", "torch_threads", "deterministic_algorithms"):
        assert key in log


def test_shipped_corpus_matches_generator():
    from scripts.demo_grammar import generate, to_conllu

    mod = _load_script()
    log = json.loads((demo_model_path() / "train_log.json").read_text())
    _a, seed_b = mod.seeds_for(log["seed"])
    n = log["settings"]["demo_sentences"]
    assert demo_corpus_path().read_text(encoding="utf-8") == to_conllu(generate(n, seed_b), prefix="demo")


@pytest.fixture(scope="module")
def quick_runs(tmp_path_factory):
    """Two quick training runs with the same seed (subprocesses: torch global settings stay out of pytest)."""
    outs = []
    for name in ("a", "b"):
        out = tmp_path_factory.mktemp(f"quick_{name}")
        proc = subprocess.run([sys.executable, str(SCRIPT), "--quick", "--steps", "12", "--seed", "3", "--out", str(out)],
                              cwd=REPO, capture_output=True, text=True, timeout=300)
        assert proc.returncode == 0, proc.stderr[-3000:]
        outs.append(out)
    return outs


def test_quick_run_produces_loadable_folder(quick_runs):
    from transformers import AutoModelForCausalLM, AutoTokenizer

    out = quick_runs[0]
    assert (out / "demo.conllu").is_file()
    model = AutoModelForCausalLM.from_pretrained(out / "model", local_files_only=True)
    tok = AutoTokenizer.from_pretrained(out / "model", local_files_only=True)
    assert tok.is_fast and model.config.num_local_experts == 8
    log = json.loads((out / "model" / "train_log.json").read_text())
    assert log["quick"] is True and log["settings"]["steps"] == 12


def test_quick_runs_are_deterministic(quick_runs):
    import torch
    from safetensors.torch import load_file

    a = load_file(str(quick_runs[0] / "model" / "model.safetensors"))
    b = load_file(str(quick_runs[1] / "model" / "model.safetensors"))
    assert a.keys() == b.keys()
    for k in a:
        assert torch.equal(a[k], b[k]), k
    ta = (quick_runs[0] / "model" / "tokenizer.json").read_text()
    tb = (quick_runs[1] / "model" / "tokenizer.json").read_text()
    assert ta == tb
    assert (quick_runs[0] / "demo.conllu").read_text() == (quick_runs[1] / "demo.conllu").read_text()
