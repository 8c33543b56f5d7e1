"""Per-cell numbers shown by the TUI's routing grid side panel (pure numpy, no torch).

Shapes follow docs/CONTRACT.md: ``experts [T, L, k]`` (rank 0 = highest gate weight), ``weights [T, L, k]``,
``pos [T]`` (tag index, ``-1`` = excluded: special or unaligned token). ``layer_idx`` indexes the MoE-layer axis
``L`` (not the decoder-layer number).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


def layer_expert_pos_counts(
    experts: np.ndarray, pos: np.ndarray, layer_idx: int, n_experts: int, n_pos: int, *, ranks: int | None = None
) -> np.ndarray:
    """Counts ``[n_experts, n_pos]`` of analysed tokens routed to each expert at one MoE layer.

    A token counts once for every one of its top-k experts (``ranks=None``) or only for its first
    ``ranks`` experts (``ranks=1``: top-1). Tokens with ``pos < 0`` are ignored.
    """
    pos = np.asarray(pos)
    keep = pos >= 0
    e = np.asarray(experts[:, layer_idx, : ranks if ranks is not None else None])
    p = pos
    if not keep.all():
        e, p = np.compress(keep, e, axis=0), pos[keep]
    packed = e.astype(np.intp) * n_pos + p.astype(np.intp)[:, None]
    counts = np.bincount(packed.ravel(), minlength=n_experts * n_pos)
    return counts[: n_experts * n_pos].reshape(n_experts, n_pos)


def pos_totals(pos: np.ndarray, n_pos: int) -> np.ndarray:
    """Number of analysed tokens per POS tag, ``[n_pos]``."""
    pos = np.asarray(pos)
    return np.bincount(pos[pos >= 0].astype(np.int64), minlength=n_pos)[:n_pos]


def expert_pos_distribution(
    experts: np.ndarray, pos: np.ndarray, layer_idx: int, expert: int, n_pos: int, *, n_experts: int | None = None
) -> np.ndarray:
    """Share of each POS among the tokens routed to ``expert`` (any of its top-k slots) at one layer, ``[n_pos]``.

    Sums to 1 unless the expert receives no analysed token (then all zeros).
    """
    n_experts = int(n_experts if n_experts is not None else max(int(np.max(experts)) + 1, expert + 1))
    row = layer_expert_pos_counts(experts, pos, layer_idx, n_experts, n_pos)[expert].astype(np.float64)
    total = row.sum()
    return row / total if total else row


def expert_share_of_pos(
    experts: np.ndarray, pos: np.ndarray, layer_idx: int, expert: int, pos_id: int
) -> float:
    """Fraction of analysed tokens with tag ``pos_id`` that route to ``expert`` (in any top-k slot) at one layer."""
    pos = np.asarray(pos)
    sel = pos == pos_id
    n = int(sel.sum())
    if n == 0:
        return 0.0
    e = np.asarray(experts[:, layer_idx, :])[sel]
    return float((e == expert).any(axis=1).sum()) / n


@dataclass(frozen=True)
class PathStep:
    layer: int           # decoder-layer number
    experts: tuple[int, ...]
    weights: tuple[float, ...]


def token_path(experts: np.ndarray, weights: np.ndarray, token: int, moe_layers: list[int]) -> list[PathStep]:
    """The routing path of one token: its top-k experts and gate weights at every MoE layer."""
    e = np.asarray(experts[token])
    w = np.asarray(weights[token], dtype=np.float32)
    return [
        PathStep(int(moe_layers[i]), tuple(int(x) for x in e[i]), tuple(float(x) for x in w[i]))
        for i in range(e.shape[0])
    ]


class LayerStatsCache:
    """Memoises :func:`layer_expert_pos_counts` per layer for one run (the grid asks for many cells per layer).

    :meth:`fill` counts every layer in one pass over the run, a chunk of tokens at a time (a background thread can
    run it while the grid is browsed: each chunk holds the interpreter only a few milliseconds); until it is done,
    :meth:`counts` counts the layer it is asked for."""

    def __init__(self, experts: np.ndarray, pos: np.ndarray, n_experts: int, n_pos: int) -> None:
        self.experts, self.pos, self.n_experts, self.n_pos = experts, np.asarray(pos), n_experts, n_pos
        self._counts: dict[int, np.ndarray] = {}
        self.pos_totals = pos_totals(self.pos, n_pos)

    def counts(self, layer_idx: int) -> np.ndarray:
        c = self._counts.get(layer_idx)
        if c is None:
            c = self._counts[layer_idx] = layer_expert_pos_counts(
                self.experts, self.pos, layer_idx, self.n_experts, self.n_pos
            )
        return c

    def fill(self, chunk_tokens: int = 1 << 16, should_stop=None) -> bool:
        """Count every layer (``[L, n_experts, n_pos]``), chunk by chunk; returns False if ``should_stop()`` said so.

        Same numbers as :meth:`counts` layer by layer: a token counts once for each of its top-k experts."""
        T, L = int(self.experts.shape[0]), int(self.experts.shape[1])
        N, P = self.n_experts, self.n_pos
        total = np.zeros(L * N * P, dtype=np.int64)
        base = (np.arange(L, dtype=np.int64) * N * P)[None, :, None]
        for a in range(0, T, chunk_tokens):
            if should_stop is not None and should_stop():
                return False
            p = self.pos[a:a + chunk_tokens].astype(np.int64)
            keep = p >= 0
            e = np.asarray(self.experts[a:a + chunk_tokens])[keep].astype(np.int64)   # [n, L, k]
            packed = base + e * P + p[keep][:, None, None]
            total += np.bincount(packed.ravel(), minlength=L * N * P)
        per_layer = total.reshape(L, N, P)
        for li in range(L):
            self._counts.setdefault(li, per_layer[li])
        return True

    def distribution(self, layer_idx: int, expert: int) -> np.ndarray:
        row = self.counts(layer_idx)[expert].astype(np.float64)
        s = row.sum()
        return row / s if s else row

    def share_of_pos(self, layer_idx: int, expert: int, pos_id: int) -> float:
        n = int(self.pos_totals[pos_id]) if 0 <= pos_id < self.n_pos else 0
        return float(self.counts(layer_idx)[expert, pos_id]) / n if n else 0.0
