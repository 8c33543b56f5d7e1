"""The architecture registry: every MoE ``model_type`` moe-tui knows, and how it is captured.

One table, read by model loading (:mod:`moe_tui.core.extract.models`: adapters, refusals), routing capture
(:mod:`moe_tui.core.extract.capture`, through the adapter names), model discovery in the TUI (which folders
and hub-cache entries are MoE models: :func:`is_moe_config`), the capture tests (every ``checked``
type is built as a tiny model and its captured routes compared with the experts the MoE block used)
and the docs' list of supported architectures (docs/architectures.md; a test keeps them equal).

Only the standard library is imported here (discovery reads ``config.json`` files without torch).

To add an architecture: add an :class:`Architecture` row (adapter ``"generic"`` when the router returns
``(logits|probs, weights (N,k), indices (N,k), ...)`` or DeepSeek-style ``(indices, weights, ...)``;
otherwise write an adapter in :mod:`moe_tui.core.extract.capture` and name it here), give the test factory
(``tests/factories_model.py``) the config fields a tiny model needs, mark it ``checked=True`` once
``tests/core/test_capture.py`` passes for it, and list it in docs/architectures.md.
"""

from __future__ import annotations

from dataclasses import dataclass

__all__ = [
    "Architecture",
    "ARCHITECTURES",
    "ADAPTERS",
    "REFUSED",
    "CHECKED",
    "MOE_MODEL_TYPES",
    "EXPERT_COUNT_FIELDS",
    "TOPK_FIELDS",
    "SHARED_FIELDS",
    "SHARED_SIZE_FIELDS",
    "is_moe_config",
]


@dataclass(frozen=True)
class Architecture:
    """One ``model_type``.

    ``adapter``: how :mod:`moe_tui.core.extract.capture` reads its router (``"generic"`` for the common
    return conventions). ``checked``: its captured routes are verified in the test suite on a tiny
    model built from its transformers config class. ``refused``: why it cannot be captured (None:
    it can).
    """

    model_type: str
    adapter: str = "generic"
    checked: bool = False
    refused: str | None = None


def _rows() -> tuple[Architecture, ...]:
    checked_generic = (  # captured by the generic adapter, except where own_adapter names one
        "mixtral", "minimax", "olmoe", "flex_olmo", "qwen2_moe", "qwen3_moe", "qwen3_next", "phimoe",
        "deepseek_v2", "deepseek_v3", "glm4_moe", "ernie4_5_moe", "dots1", "hunyuan_v1_moe", "gpt_oss",
        "granitemoe", "granitemoeshared", "granitemoehybrid", "jamba", "gemma4_text", "longcat_flash",
        "minimax_m2", "lfm2_moe", "afmoe", "deepseek_v4", "mellum", "aria_text", "cohere2_moe",
        "solar_open", "exaone_moe", "hy_v3", "kolibri1", "flint", "laguna", "granitemoe_swa",
        "minimax_m3_vl_text", "inkling2_text", "glm4_moe_lite", "deepseek_v32", "axk2",
    )
    # the router returns probabilities; its proj's outputs are the logits (read by a second hook)
    own_adapter = {"gemma4_text": "gemma4"}
    rows = [Architecture(t, adapter=own_adapter.get(t, "generic"), checked=True) for t in checked_generic]
    rows += [
        # router returns logits only; DbrxFFN.route_tokens_to_experts is applied in the hook
        Architecture("dbrx", adapter="dbrx", checked=True),
        # dense (N, E) scores, non-zero on the chosen experts only
        Architecture("llama4_text", adapter="llama4", checked=True),
        Architecture("llama4", adapter="llama4"),
        # (index_sorted_experts, batch_index, gates, expert_size, logits)
        Architecture("jetmoe", adapter="jetmoe", checked=True),
        # skip expert reported by the router as (id 0, weight 0): re-labelled as id E
        Architecture("zaya", adapter="zaya", checked=True),
    ]
    # MoE model types found in the wild whose capture the test suite does not check (yet): offered by
    # model discovery, captured with the generic adapter (qwen3_5_moe_text passes but costs ~50 s on CPU)
    rows += [Architecture(t) for t in (
        "qwen3_5_moe_text", "qwen3_vl_moe", "glm4v_moe", "mistral4", "beam", "bailing_moe", "arcee_moe",
        "switch_transformers", "nllb_moe", "gptsan-japanese",
    )]
    rows.append(Architecture("doge", refused=(
        "its product-key router splits the flat (batch*seq) buffer across tokens, so a token's experts "
        "depend on the other tokens in the batch; per-token routes are not well defined")))
    return tuple(rows)


#: model_type -> Architecture
ARCHITECTURES: dict[str, Architecture] = {a.model_type: a for a in _rows()}

#: model_type -> adapter name used by moe_tui.core.extract.capture (every other type uses "generic")
ADAPTERS: dict[str, str] = {t: a.adapter for t, a in ARCHITECTURES.items() if a.adapter != "generic"}

#: model_type -> reason we refuse to capture it
REFUSED: dict[str, str] = {t: a.refused for t, a in ARCHITECTURES.items() if a.refused}

#: model types whose capture the test suite checks, in registry order
CHECKED: tuple[str, ...] = tuple(t for t, a in ARCHITECTURES.items() if a.checked)

#: every MoE model type in the registry (refused ones included: they are MoE, capture explains the refusal)
MOE_MODEL_TYPES: frozenset[str] = frozenset(ARCHITECTURES)

# config.json fields, first match wins (model loading reads them from the config object)
EXPERT_COUNT_FIELDS = ("num_local_experts", "n_routed_experts", "num_experts", "moe_num_experts")
TOPK_FIELDS = ("num_experts_per_tok", "moe_topk", "moe_k", "top_k_experts", "moe_top_k", "top_k")
SHARED_FIELDS = ("n_shared_experts", "num_shared_experts", "moe_num_shared_experts")
SHARED_SIZE_FIELDS = ("shared_expert_intermediate_size", "shared_intermediate_size")


def is_moe_config(cfg: dict) -> bool:
    """Whether a ``config.json`` (as a dict) describes an MoE model: a ``model_type`` of the registry, an
    MoE ``text_config``, or more than one expert (or more than one expert per token) in the usual fields."""
    mt = str(cfg.get("model_type", ""))
    if mt in MOE_MODEL_TYPES:
        return True
    text = cfg.get("text_config")
    if isinstance(text, dict) and is_moe_config(text):
        return True
    for key in (*EXPERT_COUNT_FIELDS, "num_experts_per_tok"):
        v = cfg.get(key)
        if isinstance(v, int) and v > 1:
            return True
    return False
