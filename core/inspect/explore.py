"""Numbers for exploring one run interactively (the TUI's grid and panes ask; nothing here draws).

* :class:`LayerStatsCache` -- per MoE layer, the ``[N, P]`` (expert, POS) assignment counts behind the
  grid's side panel (an expert's POS mix, its share of a POS);
* :func:`jump_target` -- the token a (layer, POS) cell of the specialisation matrix opens in the grid;
* :func:`comparable_runs` -- the cached runs that can be compared with a run (same corpus selection and
  tagset).

Counts come from the one count engine, :func:`moe_tui.core.analysis.metrics.assignment_counts`. Shapes follow
the run store: ``experts [T, L, k]`` (rank 0 = highest gate weight), ``pos [T]`` (tag index, ``-1`` =
excluded: special or unaligned token); ``layer_idx`` indexes the MoE-layer axis ``L`` (a position, not
the decoder-layer number).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, NamedTuple

import numpy as np

from moe_tui.core.analysis import metrics

if TYPE_CHECKING:  # pragma: no cover
    from moe_tui.cache.run import Run
    from moe_tui.cache.store import RunInfo, RunStore
    from moe_tui.core.analysis.view import RunView

__all__ = ["LayerStatsCache", "JumpTarget", "jump_target", "comparable_runs"]


class LayerStatsCache:
    """Assignment counts per MoE layer for one run, computed once per layer on first use.

    Tokens with ``pos < 0`` are left out. Expert ids ``>= n_experts`` (the "no expert" sentinel some
    architectures use for unused ranks) are counted nowhere.
    """

    def __init__(self, experts: np.ndarray, pos: np.ndarray, n_experts: int, n_pos: int) -> None:
        self.experts, self.n_experts, self.n_pos = experts, int(n_experts), int(n_pos)
        pos = np.asarray(pos)
        self._pos_all = pos
        self._keep = pos >= 0
        self._pos = pos[self._keep].astype(np.int64)
        self._counts: dict[int, np.ndarray] = {}
        self.pos_totals = metrics.pos_counts(self._pos, self.n_pos)[0]   # [P] analysed tokens per POS

    def counts(self, layer_idx: int) -> np.ndarray:
        """``[N, P]`` int64: assignments of analysed tokens to each expert at one layer, by POS
        (a token counts once for each of its k experts)."""
        c = self._counts.get(layer_idx)
        if c is None:
            e = np.asarray(self.experts[:, layer_idx, :])[self._keep]
            e = np.minimum(e.astype(np.int64), self.n_experts)[:, None, :]   # sentinels -> one extra bin
            c = metrics.assignment_counts(e, self._pos, self.n_experts + 1, self.n_pos)[0, : self.n_experts]
            self._counts[layer_idx] = c
        return c

    def fill(self, chunk_tokens: int = 1 << 16, should_stop=None) -> bool:
        """Count every layer in one pass over the run, a chunk of ``chunk_tokens`` tokens at a time (a background
        thread can run it while the grid is browsed: each chunk holds the interpreter a few milliseconds);
        returns False, keeping nothing, if ``should_stop()`` said so. The same numbers as :meth:`counts` layer by
        layer (a token counts once for each of its k experts; sentinel ids nowhere)."""
        T, L = int(self.experts.shape[0]), int(self.experts.shape[1])
        N, P = self.n_experts, self.n_pos
        keep_all = self._keep
        total = np.zeros(L * (N + 1) * P, dtype=np.int64)
        base = (np.arange(L, dtype=np.int64) * (N + 1) * P)[None, :, None]
        for a in range(0, T, chunk_tokens):
            if should_stop is not None and should_stop():
                return False
            keep = keep_all[a:a + chunk_tokens]
            e = np.asarray(self.experts[a:a + chunk_tokens])[keep]                  # [n, L, k]
            e = np.minimum(e.astype(np.int64), N)                                   # sentinels -> one extra bin
            p = np.asarray(self._pos_all[a:a + chunk_tokens])[keep].astype(np.int64)
            packed = base + e * P + p[:, None, None]
            total += np.bincount(packed.ravel(), minlength=L * (N + 1) * P)
        per_layer = total.reshape(L, N + 1, P)[:, :N]
        for li in range(L):
            self._counts.setdefault(li, np.ascontiguousarray(per_layer[li]))
        return True

    def distribution(self, layer_idx: int, expert: int) -> np.ndarray:
        """``[P]``: the POS mix of the tokens routed to ``expert`` at one layer (all zeros if it gets none)."""
        row = self.counts(layer_idx)[expert].astype(np.float64)
        s = row.sum()
        return row / s if s else row

    def share_of_pos(self, layer_idx: int, expert: int, pos_id: int) -> float:
        """Share of the analysed tokens of POS ``pos_id`` routed to ``expert`` (any of their k) at one layer."""
        n = int(self.pos_totals[pos_id]) if 0 <= pos_id < self.n_pos else 0
        return float(self.counts(layer_idx)[expert, pos_id]) / n if n else 0.0


class JumpTarget(NamedTuple):
    sentence: int       # sentence index in the run
    layer_idx: int      # MoE-layer position
    token: int          # token index within the sentence (special tokens counted)
    expert: int | None  # the expert to highlight (None: leave the highlight as it is)


def jump_target(run: "Run", view: "RunView", layer_idx: int, pos_idx: int) -> JumpTarget | None:
    """Where a specialisation cell (MoE layer ``layer_idx``, POS ``pos_idx``) leads in the routing grid.

    The expert is the one with most assignments of this POS at this layer (ties: the lowest id); the token
    is the first analysed token of this POS whose top-1 expert there is that expert, else the first token
    of this POS. None when the run has no token of this POS. ``view`` is ``RunView.from_run(run)``.
    """
    counts = view.counts()[layer_idx, :, pos_idx]
    of_pos = np.asarray(view.pos) == pos_idx
    if not of_pos.any():
        return None
    expert = int(np.argmax(counts))
    hit = np.flatnonzero(of_pos & (np.asarray(view.experts)[:, layer_idx, 0] == expert))
    t = int(hit[0]) if hit.size else int(np.flatnonzero(of_pos)[0])
    s = int(view.sentence[t])
    token = int(np.flatnonzero(np.asarray(run.analysis_mask()))[t]) - int(np.asarray(run.sentence_offsets)[s])
    return JumpTarget(s, int(layer_idx), token, expert)


def _corpus_key(manifest: dict) -> tuple:
    ident = manifest.get("identity", {})
    corpus = dict(ident.get("corpus", {}))
    return (corpus.get("sha256"), corpus.get("format"), corpus.get("pos_column"),
            repr(sorted((corpus.get("selection") or {}).items())), ident.get("tagset"))


def comparable_runs(run: "Run", store: "RunStore") -> list["RunInfo"]:
    """The other complete runs of ``store`` over the same sentences as ``run``: the same corpus file
    (by content), format, POS column, sentence selection and tagset -- what the paper's cross-model
    tables need. Unreadable runs are left out."""
    from moe_tui.errors import CacheError

    mine = _corpus_key(run.manifest)
    out = []
    for info in store.list_runs():
        if info.status != "complete" or info.run_id == run.run_id:
            continue
        try:
            other = store.open(info.path, verify=False)
        except CacheError:
            continue
        if _corpus_key(other.manifest) == mine:
            out.append(info)
    return out
