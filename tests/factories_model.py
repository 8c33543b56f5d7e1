"""Tiny random MoE models for tests: ``build_tiny_model(model_type, path) -> path``.

Each model is built from its transformers config class (hidden 32, 4 layers, 8 experts, top-2, vocab 128),
random-initialised with a fixed seed, router bias / correction tensors randomised so that bias-aware
selection matters, and saved with ``save_pretrained`` together with a tiny fast tokenizer.
"""

from __future__ import annotations

import re
from pathlib import Path

from moe_tui.core.extract.architectures import CHECKED

VOCAB = 128
WORDS = (
    "the a an cat dog sat on mat and ran quickly slowly big small red blue house tree bird sings "
    "we they he she it is are was were be been have has had do does did not no yes this that these those "
    "of in at to from with by for over under after before , . ! ? ; : ' \" ( ) - 1 2 3 42 2024 "
    "New York Paris John Mary eats sleeps reads writes book books city cities old new good bad very"
).split()

# generic fields set when the config class has them
_COMMON = {
    "vocab_size": VOCAB,
    "hidden_size": 32,
    "intermediate_size": 48,
    "moe_intermediate_size": 16,
    "num_hidden_layers": 4,
    "num_attention_heads": 4,
    "num_key_value_heads": 2,
    "head_dim": 8,
    "max_position_embeddings": 128,
    "num_local_experts": 8,
    "num_experts": 8,
    "n_routed_experts": 8,
    "moe_num_experts": 8,
    "num_experts_per_tok": 2,
    "moe_topk": 2,
    "moe_k": 2,
    "pad_token_id": 0,
    "bos_token_id": 1,
    "eos_token_id": 2,
    "tie_word_embeddings": False,
    "initializer_range": 0.2,
}

# per-architecture overrides (applied after _COMMON; None removes a key)
_SPECIFIC: dict[str, dict] = {
    "qwen2_moe": {"shared_expert_intermediate_size": 16, "mlp_only_layers": [1]},
    "qwen3_moe": {"mlp_only_layers": [0]},
    "qwen3_next": {"shared_expert_intermediate_size": 16, "mlp_only_layers": [2],
                   "linear_num_value_heads": 2, "linear_num_key_heads": 2, "linear_key_head_dim": 8,
                   "linear_value_head_dim": 8, "linear_conv_kernel_dim": 2},
    "deepseek_v2": {"num_key_value_heads": 4, "first_k_dense_replace": 1, "n_shared_experts": 1, "kv_lora_rank": 8, "q_lora_rank": 16,
                    "qk_rope_head_dim": 8, "v_head_dim": 8, "qk_nope_head_dim": 8, "n_group": 4, "topk_group": 2,
                    "topk_method": "group_limited_greedy", "head_dim": 8},
    "deepseek_v3": {"num_key_value_heads": 4, "first_k_dense_replace": 1, "n_shared_experts": 1, "kv_lora_rank": 8, "q_lora_rank": 16,
                    "qk_rope_head_dim": 8, "v_head_dim": 8, "qk_nope_head_dim": 8, "n_group": 4, "topk_group": 2,
                    "head_dim": 8},
    "glm4_moe": {"first_k_dense_replace": 1, "n_shared_experts": 1, "n_group": 4, "topk_group": 2},
    "dots1": {"first_k_dense_replace": 1, "n_shared_experts": 1, "n_group": 4, "topk_group": 2},
    "ernie4_5_moe": {"moe_layer_start_index": 1, "moe_num_shared_experts": 1},
    "hunyuan_v1_moe": {"moe_topk": [2, 1, 2, 3], "num_experts_per_tok": None},
    "dbrx": {"d_model": 32, "n_heads": 4, "n_layers": 4, "max_seq_len": 128,
             "attn_config": {"kv_n_heads": 2, "rope_theta": 10000.0, "clip_qkv": 8.0},
             "ffn_config": {"ffn_hidden_size": 16, "moe_num_experts": 8, "moe_top_k": 2}},
    "jamba": {"attn_layer_period": 2, "attn_layer_offset": 0, "mamba_d_state": 4, "mamba_d_conv": 2,
              "mamba_expand": 2, "mamba_dt_rank": 4, "use_mamba_kernels": False},
    "granitemoeshared": {"shared_intermediate_size": 16},
    "granitemoehybrid": {"shared_intermediate_size": 16, "layer_types": ["mamba", "attention", "mamba", "attention"],
                         "mamba_d_state": 4, "mamba_d_conv": 2, "mamba_expand": 2, "mamba_n_heads": 4,
                         "mamba_d_head": 16, "mamba_n_groups": 1},
    "jetmoe": {"kv_channels": 8, "num_key_value_heads": 4},
    "llama4_text": {"interleave_moe_layer_step": 2, "intermediate_size_mlp": 48, "moe_layers": None,
                    "attention_chunk_size": 16},
    "gemma4_text": {"enable_moe_block": True, "top_k_experts": 2, "num_experts": 8, "hidden_size_per_layer_input": 8,
                    "vocab_size_per_layer_input": VOCAB, "global_head_dim": 8, "sliding_window": 16,
                    "layer_types": ["sliding_attention", "full_attention", "sliding_attention", "full_attention"]},
    "longcat_flash": {"num_key_value_heads": 4, "num_layers": 2, "num_hidden_layers": None, "ffn_hidden_size": 48, "expert_ffn_hidden_size": 16,
                      "zero_expert_num": 4, "kv_lora_rank": 8, "q_lora_rank": 16, "qk_rope_head_dim": 8,
                      "v_head_dim": 8, "qk_nope_head_dim": 8, "head_dim": 8},
    "deepseek_v4": {"q_lora_rank": 16, "head_dim": 16, "num_key_value_heads": 1},
    "afmoe": {"num_dense_layers": 1, "num_shared_experts": 1},
    "lfm2_moe": {"num_dense_layers": 1, "layer_types": ["conv", "full_attention", "conv", "full_attention"]},
    "zaya": {"num_experts_per_tok": 1, "router_hidden_size": 16},
    # the LM head has unpadded_vocab_size rows (default 200058); saving pads it back to vocab_size
    "inkling2_text": {"unpadded_vocab_size": VOCAB},
}

_MLA = {"num_key_value_heads": 4, "kv_lora_rank": 8, "q_lora_rank": 16, "qk_rope_head_dim": 8, "v_head_dim": 8,
        "qk_nope_head_dim": 8, "head_dim": 8, "n_group": 4, "topk_group": 2, "first_k_dense_replace": 1,
        "n_shared_experts": 1}
for _mt in ("glm4_moe_lite", "deepseek_v32", "axk2"):
    _SPECIFIC.setdefault(_mt, dict(_MLA))

_BIAS_RE = re.compile(r"(e_score_correction_bias|expert_bias|moe_statics|balancing_biases|per_expert_scale)")


def tiny_config(model_type: str, **overrides):
    from transformers import AutoConfig
    from transformers.models.auto.configuration_auto import CONFIG_MAPPING

    cls = CONFIG_MAPPING[model_type]
    known = set(getattr(cls, "__dataclass_fields__", {})) | set(getattr(cls, "attribute_map", {}))
    kwargs = {k: v for k, v in _COMMON.items() if k in known}
    amap = dict(getattr(cls, "attribute_map", {}) or {})

    def canon(k):
        return amap.get(k, k)

    for layer in (_SPECIFIC.get(model_type, {}), overrides):
        targets = {canon(k) for k in layer}
        kwargs = {k: v for k, v in kwargs.items() if canon(k) not in targets or k in layer}
        kwargs.update(layer)
    kwargs = {k: v for k, v in kwargs.items() if v is not None}
    return AutoConfig.for_model(model_type, **kwargs)


def _randomize_biases(model, seed: int) -> None:
    import torch

    g = torch.Generator().manual_seed(seed + 1)
    with torch.no_grad():
        for name, t in model.named_buffers():
            if name.endswith("tid2eid"):  # deepseek_v4 hash routing table: token id -> k experts
                n_exp = int(model.config.n_routed_experts)
                rows = [torch.randperm(n_exp, generator=g)[: t.shape[-1]] for _ in range(t.shape[0])]
                t.copy_(torch.stack(rows).to(t.dtype))
        for name, t in list(model.named_parameters()) + list(model.named_buffers()):
            if _BIAS_RE.search(name) and t.is_floating_point():
                t.copy_(torch.randn(t.shape, generator=g) * 0.3 + (1.0 if "per_expert_scale" in name else 0.0))


def save_tiny_tokenizer(path) -> None:
    from tokenizers import Tokenizer, models, pre_tokenizers
    from transformers import PreTrainedTokenizerFast

    vocab = {"<pad>": 0, "<s>": 1, "</s>": 2, "<unk>": 3}
    for w in WORDS:
        if w not in vocab and len(vocab) < VOCAB:
            vocab[w] = len(vocab)
    tok = Tokenizer(models.WordLevel(vocab=vocab, unk_token="<unk>"))
    tok.pre_tokenizer = pre_tokenizers.Sequence([pre_tokenizers.WhitespaceSplit(), pre_tokenizers.Punctuation()])
    fast = PreTrainedTokenizerFast(
        tokenizer_object=tok, pad_token="<pad>", bos_token="<s>", eos_token="</s>", unk_token="<unk>"
    )
    fast.save_pretrained(str(path))


def build_tiny_model(model_type: str, path, *, seed: int = 0, **overrides) -> Path:
    """Build, randomise and save a tiny ``model_type`` model (+ tokenizer) into ``path``; returns ``path``."""
    import torch
    from transformers import AutoModel, AutoModelForCausalLM
    from transformers.models.auto.modeling_auto import MODEL_FOR_CAUSAL_LM_MAPPING

    path = Path(path)
    config = tiny_config(model_type, **overrides)
    torch.manual_seed(seed)
    if type(config) in MODEL_FOR_CAUSAL_LM_MAPPING:
        model = AutoModelForCausalLM.from_config(config)
    else:
        model = AutoModel.from_config(config)
    _randomize_biases(model, seed)
    model.save_pretrained(str(path))
    save_tiny_tokenizer(path)
    return path


# model_types the capture tests run over (see tests/core/test_capture.py): the registry's checked ones
SUPPORTED = list(CHECKED)

# the quick subset (-m "not slow") keeps four of the paper's six architectures (dbrx's tiny model alone costs
# seconds) and ones with their own capture rules (adapters, per-expert scale, per-layer top-k, sparsemixer);
# the whole suite runs every architecture
QUICK_ARCHITECTURES = frozenset(
    {"mixtral", "phimoe", "olmoe", "qwen2_moe", "deepseek_v3", "gemma4_text", "hunyuan_v1_moe",
     "llama4_text", "jetmoe"}
)


def architecture_params(model_types=None) -> list:
    """``pytest.param`` per model_type, marked slow outside :data:`QUICK_ARCHITECTURES`."""
    import pytest

    return [
        pytest.param(t, id=t, marks=() if t in QUICK_ARCHITECTURES else pytest.mark.slow)
        for t in (SUPPORTED if model_types is None else model_types)
    ]


_EWT_MODELS: dict[str, Path] = {}


def ewt_tiny_model(model_type: str = "mixtral") -> Path:
    """A tiny ``model_type`` (vocab 512) with a byte-level BPE tokenizer trained on EWT text, so that
    real sentences split into real subwords. Built once per test session; tests must not modify it."""
    if model_type not in _EWT_MODELS:
        import atexit
        import shutil
        import tempfile

        from tests.factories_tok import byte_bpe_tokenizer, ewt_texts

        base = Path(tempfile.mkdtemp(prefix="moe_tui_model_"))
        atexit.register(shutil.rmtree, base, True)
        path = base / f"tiny_{model_type}"
        path.mkdir()
        build_tiny_model(model_type, path, vocab_size=512)
        byte_bpe_tokenizer(ewt_texts()[:800], vocab_size=512).save_pretrained(str(path))
        _EWT_MODELS[model_type] = path
    return _EWT_MODELS[model_type]
