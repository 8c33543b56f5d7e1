"""Compare the routes of two runs of the same corpus (e.g. fp32 vs bf16, or fp8 quantised)."""

from __future__ import annotations

import numpy as np

from moe_tui.errors import ReportError


def expert_set_differs(experts_a: np.ndarray, experts_b: np.ndarray) -> np.ndarray:
    """``bool [T, L]``: whether the *set* of k experts differs at (token, layer).

    ``experts_a``, ``experts_b``: ``[T, L, k]`` expert ids (rank order ignored).
    """
    a = np.sort(np.asarray(experts_a), axis=-1)
    b = np.sort(np.asarray(experts_b), axis=-1)
    return np.any(a != b, axis=-1)


def diff_runs(run_a, run_b) -> dict:
    """Share of analysed (token, MoE layer) pairs whose expert set differs between two runs.

    The runs must hold the same tokens (same corpus, tokenizer and selection) and the same MoE
    layers and k. Special tokens are left out, as in every metric.
    """
    if not np.array_equal(np.asarray(run_a.token_ids), np.asarray(run_b.token_ids)):
        raise ReportError("the two runs do not hold the same tokens (different corpus, selection or tokenizer)")
    if run_a.moe_layers != run_b.moe_layers or run_a.top_k != run_b.top_k:
        raise ReportError("the two runs do not have the same MoE layers and top-k")
    mask = run_a.analysis_mask()
    ea, eb = np.asarray(run_a.experts)[mask], np.asarray(run_b.experts)[mask]
    differs = expert_set_differs(ea, eb)
    top1 = ea[..., 0] != eb[..., 0]
    n = int(differs.size)
    return {
        "tokens": int(mask.sum()),
        "token_layers": n,
        "differing_sets": int(differs.sum()),
        "share_differing": float(differs.mean()) if n else 0.0,
        "share_top1_differing": float(top1.mean()) if n else 0.0,
        "per_layer_share": differs.mean(axis=0).tolist() if n else [],
    }
