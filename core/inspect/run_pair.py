"""Two runs of the same corpus and tokenizer side by side (the grid's diff overlay): the check that they can be
compared, and the disagreement per MoE layer, counted a chunk of tokens at a time (a thread can run it while the
grid is browsed). The numbers are :func:`moe_tui.core.inspect.diff.disagreement_table`'s."""

from __future__ import annotations

import numpy as np

from moe_tui.core.inspect.diff import check_pair, disagreement_table, expert_set_differs

__all__ = ["check_pair", "layer_disagreement"]


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
