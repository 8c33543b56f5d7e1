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


DIFF_COLUMNS = ("token_layers", "differing_sets", "share_differing", "top1_differing", "share_top1_differing")


def disagreement_table(experts_a: np.ndarray, experts_b: np.ndarray, pos: np.ndarray, *, by: str,
                       moe_layers: list[int], tags: tuple[str, ...]) -> dict:
    """Disagreement of two runs' routes per MoE layer or per POS, as a report table dict.

    ``experts_a``, ``experts_b``: ``[T, L, k]`` expert ids of the same analysed tokens; ``pos``: ``[T]`` index
    into ``tags``. A (token, layer) *differs* when its set of k experts differs (rank order ignored);
    ``top1_differing`` counts the pairs whose rank-0 expert differs.

    ``by="layer"``: one row per MoE layer (``layer`` = decoder-layer index from ``moe_layers``).
    ``by="pos"``: one row per tag with at least one token (``tokens`` = tokens of that POS; the counts are over
    its (token, layer) pairs).
    """
    differs = expert_set_differs(experts_a, experts_b)  # [T, L]
    top1 = np.asarray(experts_a)[..., 0] != np.asarray(experts_b)[..., 0]
    n_layers = differs.shape[1]
    rows = []

    def row(head: list, d: np.ndarray, t1: np.ndarray) -> list:
        n = int(d.size)
        return [*head, n, int(d.sum()), float(d.mean()) if n else None, int(t1.sum()), float(t1.mean()) if n else None]

    if by == "layer":
        for li, layer in enumerate(moe_layers):
            rows.append(row([int(layer)], differs[:, li], top1[:, li]))
        return {"name": "diff_by_layer", "columns": ["layer", *DIFF_COLUMNS], "rows": rows}
    if by == "pos":
        pos = np.asarray(pos)
        tokens = np.bincount(pos, minlength=len(tags))
        for p, tag in enumerate(tags):
            if tokens[p] == 0:
                continue
            sel = pos == p
            rows.append(row([tag, int(tokens[p])], differs[sel].reshape(-1), top1[sel].reshape(-1)))
        assert n_layers == len(moe_layers)
        return {"name": "diff_by_pos", "columns": ["pos", "tokens", *DIFF_COLUMNS], "rows": rows}
    raise ReportError(f"--by must be 'layer' or 'pos', got {by!r}")


def check_pair(run_a, run_b) -> None:
    """Raise :class:`ReportError` (one line) unless the two runs hold the same tokens of the same sentences (same
    corpus, selection and tokenizer) and the same MoE layers, experts and k."""
    na, nb = len(run_a.token_ids), len(run_b.token_ids)
    if na != nb or not np.array_equal(np.asarray(run_a.sentence_offsets), np.asarray(run_b.sentence_offsets)):
        raise ReportError(f"the two runs do not hold the same tokens of the same sentences ({na} vs {nb} tokens): "
                          "extract both from the same corpus and selection with the same tokenizer")
    if not np.array_equal(np.asarray(run_a.token_ids), np.asarray(run_b.token_ids)):
        raise ReportError("the two runs tokenize the corpus differently (different tokenizer): the routes cannot be "
                          "compared token by token")
    if [int(x) for x in run_a.moe_layers] != [int(x) for x in run_b.moe_layers] or \
            int(run_a.top_k) != int(run_b.top_k) or int(run_a.num_experts) != int(run_b.num_experts):
        raise ReportError(f"the two runs route differently shaped models (MoE layers, experts or k differ: "
                          f"{len(run_a.moe_layers)}x{run_a.num_experts} k={run_a.top_k} vs "
                          f"{len(run_b.moe_layers)}x{run_b.num_experts} k={run_b.top_k})")


def _check_comparable(run_a, run_b, *, same_tags: bool = False) -> None:
    check_pair(run_a, run_b)
    if same_tags and (tuple(run_a.tags) != tuple(run_b.tags)
                      or not np.array_equal(np.asarray(run_a.pos), np.asarray(run_b.pos))):
        raise ReportError("the two runs do not tag the tokens the same way (different tagset or POS column)")


def diff_table(run_a, run_b, by: str) -> dict:
    """:func:`disagreement_table` over the analysed tokens of two comparable runs (by POS: same tagging)."""
    _check_comparable(run_a, run_b, same_tags=by == "pos")
    mask = run_a.analysis_mask()
    return disagreement_table(np.asarray(run_a.experts)[mask], np.asarray(run_b.experts)[mask],
                              np.asarray(run_a.pos)[mask], by=by, moe_layers=list(run_a.moe_layers),
                              tags=tuple(run_a.tags))


def diff_runs(run_a, run_b) -> dict:
    """Share of analysed (token, MoE layer) pairs whose expert set differs between two runs.

    The runs must hold the same tokens (same corpus, tokenizer and selection) and the same MoE
    layers and k. Special tokens are left out, as in every metric.
    """
    _check_comparable(run_a, run_b)
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
