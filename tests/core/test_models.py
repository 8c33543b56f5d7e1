"""moe_tui.core.extract.models: fingerprints, loading errors (one line), discovery, meta-device inspection."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from dataclasses import asdict
from pathlib import Path

import pytest

pytest.importorskip("torch")

from moe_tui.core.extract.models import inspect_model, load_model, resolve_model_fingerprint  # noqa: E402
from moe_tui.errors import ModelError, NotMoEError, RemoteCodeRequired  # noqa: E402
from tests.factories_model import build_tiny_model, save_tiny_tokenizer  # noqa: E402

REPO = Path(__file__).resolve().parents[2]


def _one_line(exc) -> str:
    msg = str(exc.value)
    assert "\n" not in msg and msg
    return msg


@pytest.fixture(scope="module")
def mixtral_dir(tmp_path_factory):
    return build_tiny_model("mixtral", tmp_path_factory.mktemp("mixtral"))


def test_import_does_not_import_torch():
    code = "import sys, moe_tui.core.extract.models, moe_tui.core.extract.capture; print('torch' in sys.modules, 'transformers' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, check=True)
    assert out.stdout.split() == ["False", "False"]


def test_fingerprint_fields_and_stability(mixtral_dir, tmp_path):
    fp = resolve_model_fingerprint(mixtral_dir)
    assert set(fp) == {"name_or_path", "revision", "commit_hash", "config_hash", "model_type"}
    assert fp["model_type"] == "mixtral" and fp["commit_hash"] is None and len(fp["config_hash"]) == 64
    assert resolve_model_fingerprint(str(mixtral_dir)) ["config_hash"] == fp["config_hash"]
    other = build_tiny_model("mixtral", tmp_path / "other", num_experts_per_tok=3)
    assert resolve_model_fingerprint(other)["config_hash"] != fp["config_hash"]


def test_missing_path(tmp_path):
    with pytest.raises(ModelError) as exc:
        resolve_model_fingerprint(tmp_path / "nope")
    assert "does not exist" in _one_line(exc)
    with pytest.raises(ModelError):
        load_model(str(tmp_path / "nope"))


def test_folder_without_config(tmp_path):
    with pytest.raises(ModelError) as exc:
        load_model(tmp_path)
    assert _one_line(exc) == f"no config.json in {tmp_path}"


def test_unknown_model_type(tmp_path):
    (tmp_path / "config.json").write_text(json.dumps({"model_type": "totally_unknown_moe", "hidden_size": 8}))
    with pytest.raises(ModelError) as exc:
        resolve_model_fingerprint(tmp_path)
    assert "totally_unknown_moe" in _one_line(exc) and "unknown architecture" in str(exc.value)


def test_hub_id_not_cached_offline(monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("HF_HOME", "/nonexistent-moe-tui-hf-home")
    with pytest.raises(ModelError) as exc:
        resolve_model_fingerprint("moe-tui-test/definitely-not-cached")
    assert "definitely-not-cached" in _one_line(exc)


def test_dense_model_is_not_moe(tmp_path):
    path = build_tiny_model("llama", tmp_path / "llama")
    with pytest.raises(NotMoEError) as exc:
        load_model(path, device="cpu")
    assert "model_type llama" in _one_line(exc) and "no MoE router" in str(exc.value)
    with pytest.raises(NotMoEError):
        inspect_model(path)


def test_doge_is_refused(tmp_path):
    from tests.factories_model import tiny_config

    tiny_config("doge", is_moe=True, num_experts=16, num_experts_per_tok=2).save_pretrained(tmp_path)
    with pytest.raises(ModelError) as exc:
        load_model(tmp_path, device="cpu")
    assert "doge" in _one_line(exc) and "batch" in str(exc.value)


def test_remote_code_flagged_without_trust(tmp_path):
    cfg = {"model_type": "deepseek", "auto_map": {"AutoConfig": "configuration_deepseek.DeepseekConfig"}}
    (tmp_path / "config.json").write_text(json.dumps(cfg))
    with pytest.raises(RemoteCodeRequired) as exc:
        resolve_model_fingerprint(tmp_path)
    assert "--trust-remote-code" in _one_line(exc)


def test_load_model_facts(mixtral_dir):
    lm = load_model(mixtral_dir, device="cpu")
    f = lm.facts
    assert f.model_type == "mixtral" and f.architecture_class == "MixtralForCausalLM"
    assert f.moe_layers == [0, 1, 2, 3] and f.num_layers == 4
    assert f.num_experts == 8 and f.top_k == 2 and f.shared_experts == 0
    assert f.router_paths == [f"layers.{i}.mlp.gate" for i in range(4)]
    assert f.dtype_on_disk == "float32" and f.trust_remote_code is False
    assert not hasattr(lm.base, "lm_head") and not lm.base.training
    assert lm.tokenizer.is_fast and str(lm.input_device) == "cpu"
    json.dumps(asdict(f))  # JSON-serialisable


def test_inspect_model_on_meta_matches_load(mixtral_dir, tmp_path):
    meta = inspect_model(mixtral_dir)
    real = load_model(mixtral_dir, device="cpu").facts
    for key in ("moe_layers", "router_paths", "num_experts", "top_k", "num_layers", "config_hash", "model_type"):
        assert getattr(meta, key) == getattr(real, key)
    assert meta.params and meta.params >= real.params  # meta counts the LM head too
    ds = build_tiny_model("deepseek_v3", tmp_path / "ds")
    f = inspect_model(ds)
    assert f.moe_layers == [1, 2, 3] and f.shared_experts == 1


def test_weights_not_matching_config(mixtral_dir, tmp_path):
    import shutil

    bad = tmp_path / "bad"
    shutil.copytree(mixtral_dir, bad)
    cfg = json.loads((bad / "config.json").read_text())
    cfg["num_local_experts"] = 4
    (bad / "config.json").write_text(json.dumps(cfg))
    with pytest.raises(ModelError) as exc:
        load_model(bad, device="cpu")
    assert "bad" in _one_line(exc)


def test_no_fast_tokenizer(mixtral_dir, tmp_path):
    import shutil

    bare = tmp_path / "bare"
    shutil.copytree(mixtral_dir, bare)
    for name in os.listdir(bare):
        if "token" in name:
            os.remove(bare / name)
    with pytest.raises(ModelError) as exc:
        load_model(bare, device="cpu")
    assert "tokenizer" in _one_line(exc)


def test_bad_device_and_dtype(mixtral_dir):
    with pytest.raises(ModelError) as exc:
        load_model(mixtral_dir, dtype="int3")
    assert "dtype" in _one_line(exc)
    import torch

    if not torch.cuda.is_available():
        with pytest.raises(ModelError) as exc:
            load_model(mixtral_dir, device="cuda")
        assert "CUDA" in _one_line(exc) or "GPU" in str(exc.value)
        with pytest.raises(ModelError) as exc:
            load_model(mixtral_dir, device="cuda", quantization="4bit")
        _one_line(exc)


def test_tokenizer_factory_is_fast(tmp_path):
    from transformers import AutoTokenizer

    save_tiny_tokenizer(tmp_path)
    assert AutoTokenizer.from_pretrained(tmp_path).is_fast
