"""A custom-code (auto_map) DeepSeek-MoE-style model: needs trust_remote_code; its gate returns
(topk_idx, topk_weight, aux_loss) and the generic capture path must read it."""

from __future__ import annotations

import json
import textwrap

import numpy as np
import pytest

torch = pytest.importorskip("torch")

from moe_tui.core.extract.capture import RouteCapture  # noqa: E402
from moe_tui.core.extract.models import inspect_model, load_model, resolve_model_fingerprint  # noqa: E402
from moe_tui.errors import RemoteCodeRequired  # noqa: E402
from tests.factories_model import save_tiny_tokenizer  # noqa: E402

CONFIGURATION = '''
from transformers import PretrainedConfig


class DeepseekConfig(PretrainedConfig):
    model_type = "deepseek"

    def __init__(self, vocab_size=128, hidden_size=32, moe_intermediate_size=16, num_hidden_layers=3,
                 n_routed_experts=8, num_experts_per_tok=2, first_k_dense_replace=1, **kwargs):
        self.vocab_size = vocab_size
        self.hidden_size = hidden_size
        self.moe_intermediate_size = moe_intermediate_size
        self.num_hidden_layers = num_hidden_layers
        self.n_routed_experts = n_routed_experts
        self.num_experts_per_tok = num_experts_per_tok
        self.first_k_dense_replace = first_k_dense_replace
        super().__init__(**kwargs)
'''

MODELING = '''
import torch
import torch.nn.functional as F
from torch import nn
from transformers import PreTrainedModel
from transformers.modeling_outputs import BaseModelOutputWithPast, CausalLMOutputWithPast

from .configuration_deepseek import DeepseekConfig


class DeepseekMLP(nn.Module):
    def __init__(self, hidden, inter):
        super().__init__()
        self.up_proj = nn.Linear(hidden, inter, bias=False)
        self.down_proj = nn.Linear(inter, hidden, bias=False)

    def forward(self, x):
        return self.down_proj(F.silu(self.up_proj(x)))


class MoEGate(nn.Module):
    def __init__(self, config):
        super().__init__()
        self.top_k = config.num_experts_per_tok
        self.weight = nn.Parameter(torch.randn(config.n_routed_experts, config.hidden_size))

    def forward(self, hidden_states):
        h = hidden_states.reshape(-1, hidden_states.shape[-1])
        scores = F.linear(h, self.weight).softmax(dim=-1)
        topk_weight, topk_idx = torch.topk(scores, k=self.top_k, dim=-1, sorted=False)
        return topk_idx, topk_weight, None


class DeepseekMoE(nn.Module):
    def __init__(self, config):
        super().__init__()
        self.gate = MoEGate(config)
        self.experts = nn.ModuleList(
            [DeepseekMLP(config.hidden_size, config.moe_intermediate_size) for _ in range(config.n_routed_experts)]
        )

    def forward(self, hidden_states):
        shape = hidden_states.shape
        topk_idx, topk_weight, _ = self.gate(hidden_states)
        h = hidden_states.reshape(-1, shape[-1])
        out = torch.zeros_like(h)
        for e, expert in enumerate(self.experts):
            tok, slot = torch.nonzero(topk_idx == e, as_tuple=True)
            if tok.numel():
                out.index_add_(0, tok, expert(h[tok]) * topk_weight[tok, slot, None])
        return out.view(shape)


class DeepseekDecoderLayer(nn.Module):
    def __init__(self, config, layer_idx):
        super().__init__()
        self.norm = nn.LayerNorm(config.hidden_size)
        self.mix = nn.Linear(config.hidden_size, config.hidden_size)
        if layer_idx >= config.first_k_dense_replace:
            self.mlp = DeepseekMoE(config)
        else:
            self.mlp = DeepseekMLP(config.hidden_size, config.moe_intermediate_size)

    def forward(self, x):
        x = x + torch.tanh(self.mix(self.norm(x)))
        return x + self.mlp(x)


class DeepseekPreTrainedModel(PreTrainedModel):
    config_class = DeepseekConfig
    base_model_prefix = "model"

    def _init_weights(self, module):
        pass


class DeepseekModel(DeepseekPreTrainedModel):
    def __init__(self, config):
        super().__init__(config)
        self.embed_tokens = nn.Embedding(config.vocab_size, config.hidden_size)
        self.layers = nn.ModuleList([DeepseekDecoderLayer(config, i) for i in range(config.num_hidden_layers)])
        self.post_init()

    def get_input_embeddings(self):
        return self.embed_tokens

    def forward(self, input_ids=None, attention_mask=None, use_cache=None, **kwargs):
        x = self.embed_tokens(input_ids)
        for layer in self.layers:
            x = layer(x)
        return BaseModelOutputWithPast(last_hidden_state=x)


class DeepseekForCausalLM(DeepseekPreTrainedModel):
    def __init__(self, config):
        super().__init__(config)
        self.model = DeepseekModel(config)
        self.lm_head = nn.Linear(config.hidden_size, config.vocab_size, bias=False)
        self.post_init()

    def get_input_embeddings(self):
        return self.model.embed_tokens

    def forward(self, input_ids=None, attention_mask=None, use_cache=None, **kwargs):
        h = self.model(input_ids=input_ids, attention_mask=attention_mask).last_hidden_state
        return CausalLMOutputWithPast(logits=self.lm_head(h))
'''


@pytest.fixture(scope="module")
def remote_dir(tmp_path_factory):
    return _build_remote(tmp_path_factory.mktemp("deepseek_remote"), MODELING, "moe_tui_test_remote_deepseek")


# a gate that keeps its projection in a submodule: moe-tui cannot read its logits (no (E, H) weight of its own)
MODELING_OPAQUE_GATE = MODELING.replace(
    "        self.weight = nn.Parameter(torch.randn(config.n_routed_experts, config.hidden_size))",
    "        self.score = nn.Linear(config.hidden_size, config.n_routed_experts, bias=False)",
).replace("scores = F.linear(h, self.weight).softmax(dim=-1)", "scores = self.score(h).softmax(dim=-1)")


@pytest.fixture(scope="module")
def opaque_gate_dir(tmp_path_factory):
    return _build_remote(tmp_path_factory.mktemp("deepseek_opaque"), MODELING_OPAQUE_GATE,
                         "moe_tui_test_remote_opaque")


def _build_remote(d, modeling: str, pkg: str):
    import importlib.util
    import sys

    from safetensors.torch import save_file

    (d / "configuration_deepseek.py").write_text(textwrap.dedent(CONFIGURATION))
    (d / "modeling_deepseek.py").write_text(textwrap.dedent(modeling))
    config = {
        "model_type": "deepseek",
        "architectures": ["DeepseekForCausalLM"],
        "auto_map": {
            "AutoConfig": "configuration_deepseek.DeepseekConfig",
            "AutoModel": "modeling_deepseek.DeepseekModel",
            "AutoModelForCausalLM": "modeling_deepseek.DeepseekForCausalLM",
        },
        "vocab_size": 128, "hidden_size": 32, "moe_intermediate_size": 16, "num_hidden_layers": 3,
        "n_routed_experts": 8, "num_experts_per_tok": 2, "first_k_dense_replace": 1,
        "pad_token_id": 0, "eos_token_id": 2, "dtype": "float32",
    }
    (d / "config.json").write_text(json.dumps(config))
    # build the weights by importing the written modules as a package
    spec = importlib.util.spec_from_file_location(pkg, d / "__init__.py", submodule_search_locations=[str(d)])
    (d / "__init__.py").write_text("")
    mod = importlib.util.module_from_spec(spec)
    sys.modules[pkg] = mod
    spec.loader.exec_module(mod)
    import importlib

    cfg_mod = importlib.import_module(pkg + ".configuration_deepseek")
    mdl_mod = importlib.import_module(pkg + ".modeling_deepseek")
    torch.manual_seed(0)
    model = mdl_mod.DeepseekForCausalLM(cfg_mod.DeepseekConfig(**{k: v for k, v in config.items()
                                                                   if k not in ("model_type", "auto_map", "architectures")}))
    for name, p in model.named_parameters():
        if p.dim() == 2 and "gate" not in name:
            torch.nn.init.normal_(p, std=0.2)
    save_file({k: v.contiguous() for k, v in model.state_dict().items()}, str(d / "model.safetensors"),
              metadata={"format": "pt"})
    (d / "__init__.py").unlink()
    save_tiny_tokenizer(d)
    return d


def test_remote_code_needs_trust(remote_dir):
    for call in (lambda: resolve_model_fingerprint(remote_dir), lambda: load_model(remote_dir, device="cpu")):
        with pytest.raises(RemoteCodeRequired) as exc:
            call()
        msg = str(exc.value)
        assert "\n" not in msg
        assert msg == f"model {remote_dir} needs --trust-remote-code (its code is not part of transformers)"


def test_remote_code_loads_and_capture_matches_gate(remote_dir):
    lm = load_model(remote_dir, device="cpu", trust_remote_code=True)
    f = lm.facts
    assert f.trust_remote_code and f.model_type == "deepseek"
    assert f.moe_layers == [1, 2] and f.router_paths == ["layers.1.mlp.gate", "layers.2.mlp.gate"]
    assert f.num_experts == 8 and f.top_k == 2
    seen = {}
    handles = [
        s.module.register_forward_hook(lambda m, i, o, slot=slot: seen.__setitem__(slot, (o[0].clone(), o[1].clone())))
        for slot, s in enumerate(lm.routers)
    ]
    ids = torch.randint(4, 100, (2, 9))
    mask = torch.ones_like(ids)
    mask[1, :3] = 0
    try:
        with RouteCapture(lm) as cap:
            experts, weights = cap.run(ids, mask)
    finally:
        for h in handles:
            h.remove()
    ex = experts.reshape(18, 2, 2)
    wt = weights.reshape(18, 2, 2).astype(np.float32)
    for slot in range(2):
        idx, w = seen[slot]
        for t in range(18):
            want = dict(zip(idx[t].tolist(), w[t].tolist()))
            assert set(ex[t, slot].tolist()) == set(want)
            assert wt[t, slot, 0] >= wt[t, slot, 1]
            for r in range(2):
                assert wt[t, slot, r] == pytest.approx(want[int(ex[t, slot, r])], abs=2e-3)
    meta = inspect_model(remote_dir, trust_remote_code=True)
    assert meta.moe_layers == [1, 2]


@pytest.mark.slow
def test_remote_code_rank_follows_gate_logits(remote_dir):
    """The remote gate returns (topk_idx, topk_weight, aux) in no order (sorted=False). Rank 0 must be the
    selected expert with the highest gate logit, recomputed here in float64 from the gate's weight and input
    (left- and right-padded rows)."""
    lm = load_model(remote_dir, device="cpu", trust_remote_code=True)
    seen = {}
    handles = [s.module.register_forward_pre_hook(lambda m, a, slot=slot: seen.__setitem__(slot, a[0].clone()))
               for slot, s in enumerate(lm.routers)]
    g = torch.Generator().manual_seed(3)
    ids = torch.randint(4, 100, (3, 10), generator=g)
    mask = torch.ones_like(ids)
    mask[1, :4] = 0  # left padding
    mask[2, 7:] = 0  # right padding
    try:
        with RouteCapture(lm) as cap:
            experts, _ = cap.run(ids, mask)
            info = cap.routers_info()
    finally:
        for h in handles:
            h.remove()
    assert [(i["logits"], i["rank_by"]) for i in info] == [(True, "logit")] * 2
    valid = mask.reshape(-1).bool().numpy()
    ex = experts.reshape(30, 2, 2).astype(np.int64)
    for slot, site in enumerate(lm.routers):
        x = seen[slot].double().reshape(-1, 32)
        logits = torch.nn.functional.linear(x, site.module.weight.double()).numpy()
        sel = np.take_along_axis(logits, ex[:, slot], axis=1)[valid]
        assert np.all(sel[:, 0] >= sel[:, 1])
        assert np.array_equal(np.sort(ex[valid, slot], axis=1), np.sort(np.argsort(-logits[valid], axis=1)[:, :2], axis=1))


def test_router_without_readable_logits_is_ranked_by_weight_and_says_so(opaque_gate_dir, tmp_path):
    from moe_tui.cache.store import RunStore
    from moe_tui.core.extract.pipeline import ExtractOptions, extract

    assert "self.score = nn.Linear" in MODELING_OPAQUE_GATE and "self.score(h)" in MODELING_OPAQUE_GATE
    data = tmp_path / "c.txt"
    data.write_text("".join(f"{w}\tNN\n" for w in "the cat sat on the big red mat".split()) + ".\t.\n\n"
                    + "".join(f"{w}\tNN\n" for w in "she reads a good book".split()) + "\n")
    run = RunStore(tmp_path / "c").open(extract(ExtractOptions(
        model=str(opaque_gate_dir), data=str(data), trust_remote_code=True, save_logits=True,
        cache_dir=str(tmp_path / "c"), device="cpu", dtype="float32")).name)
    routing = run.manifest["routing"]
    assert [(r["layer"], r["logits"], r["rank_by"]) for r in routing["routers"]] == [(1, False, "weight"),
                                                                                   (2, False, "weight")]
    assert routing["logits"]["layers_without_logits"] == [1, 2]
    assert np.isnan(np.asarray(run.logits, dtype=np.float32)).all()
    w = np.asarray(run.weights, dtype=np.float32)
    assert (w[..., 0] >= w[..., 1]).all()
