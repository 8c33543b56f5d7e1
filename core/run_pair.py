"""Two runs of the same corpus and tokenizer side by side (the grid's diff overlay): the check that they can be
compared, and the disagreement per MoE layer, counted a chunk of tokens at a time (a thread can run it while the
grid is browsed). The numbers are :func:`moe_tui.core.diff.disagreement_table`'s."""

from __future__ import annotations

import numpy as np

from moe_tui.core.diff import disagreement_table, expert_set_differs
from moe_tui.errors import ReportError


def check_pair(run_a, run_b) -> None:
    """Raise :class:`ReportError` (one line) unless the two runs hold the same tokens of the same sentences (same
    corpus, selection and tokenizer) and the same MoE layers, experts and k."""
    na, nb = len(run_a.token_ids), len(run_b.token_ids)
    if na != nb or not np.array_equal(np.asarray(run_a.sentence_offsets), np.asarray(run_b.sentence_offsets)):
        raise ReportError(f"the two runs do not hold the same sentences ({na} vs {nb} tokens): extract both from the "
                          "same corpus and selection with the same tokenizer")
    if not np.array_equal(np.asarray(run_a.token_ids), np.asarray(run_b.token_ids)):
        raise ReportError("the two runs tokenize the corpus differently (different tokenizer): the routes cannot be "
                          "compared token by token")
    if [int(x) for x in run_a.moe_layers] != [int(x) for x in run_b.moe_layers] or \
            int(run_a.top_k) != int(run_b.top_k) or int(run_a.num_experts) != int(run_b.num_experts):
        raise ReportError(f"the two runs route differently shaped models (MoE layers, experts or k differ: "
                          f"{len(run_a.moe_layers)}x{run_a.num_experts} k={run_a.top_k} vs "
                          f"{len(run_b.moe_layers)}x{run_b.num_experts} k={run_b.top_k})")


def layer_disagreement(run_a, run_b, *, chunk_tokens: int = 1 << 16, should_stop=None) -> dict | None:
    """The ``diff_by_layer`` table of the two runs' analysed tokens (``pos >= 0`` in ``run_a``), counted chunk by
    chunk; ``None`` if ``should_stop()`` said so. Rows: ``layer, token_layers, differing_sets, share_differing,
    top1_differing, share_top1_differing``."""
    pos = np.asarray(run_a.pos)
    T = len(pos)
    layers = [int(x) for x in run_a.moe_layers]
    L = len(layers)
    n = 0
    d_sum = np.zeros(L, dtype=np.int64)
    t_sum = np.zeros(L, dtype=np.int64)
    for a in range(0, T, chunk_tokens):
        if should_stop is not None and should_stop():
            return None
        keep = np.flatnonzero(pos[a:a + chunk_tokens] >= 0) + a
        if not len(keep):
            continue
        ea, eb = np.asarray(run_a.experts[keep]), np.asarray(run_b.experts[keep])
        d_sum += expert_set_differs(ea, eb).sum(axis=0)
        t_sum += (ea[..., 0] != eb[..., 0]).sum(axis=0)
        n += len(keep)
    rows = [[layers[li], n, int(d_sum[li]), float(d_sum[li] / n) if n else None, int(t_sum[li]),
             float(t_sum[li] / n) if n else None] for li in range(L)]
    return {"name": "diff_by_layer", "columns": ["layer", "token_layers", "differing_sets", "share_differing",
                                                 "top1_differing", "share_top1_differing"], "rows": rows}


__all__ = ["check_pair", "layer_disagreement", "disagreement_table", "expert_set_differs"]
