"""Routing metrics of the paper, as small functions over plain numpy arrays.

Reproduces the descriptive statistics of "Part-Of-Speech Sensitivity of Routers in Mixture of
Experts Models" (COLING 2025, arXiv 2412.16971):

* Table 4 -- tokens per POS (:func:`pos_counts`);
* Table 1 / Table 5 / Fig. 4 -- expert specialisation ``Spec`` per POS and layer, the uniform
  reference ``U = 100 k / N`` and ``dU = Spec - U`` (:func:`spec_from_counts`, :func:`spec_by_pos`,
  :func:`global_spec`);
* Table 3 / Fig. 5 -- KL divergence between each expert's POS distribution and the corpus POS
  distribution (:func:`kl_per_expert`, :func:`kl_summary`).

Conventions (shared by every function here):

``experts``  int array ``[T, L, k]`` -- expert id chosen by each analysed token at each MoE layer,
             rank 0 = highest raw router logit (top-1); a rank a layer does not use (per-layer top-k) holds a
             *sentinel* id (:func:`is_sentinel`: 255 / 65535 as the run stores it, or -1), counted nowhere;
``pos``      int array ``[T]`` -- POS tag index into the run's tag tuple, ``0 <= pos < n_pos``;
``T`` tokens (only analysed tokens: the caller applies ``run.analysis_mask()``), ``L`` MoE layers
(positions 0..L-1, the caller maps them to decoder-layer indices), ``k`` experts per token,
``N = n_experts``, ``P = n_pos``.

Counts are *token-assignments*: a token counts once for each of its ``k`` experts at a layer.
Everything is vectorised (``np.bincount`` over packed indices ``(layer*N + expert)*P + pos``); no
Python loop runs over tokens. Only numpy is imported at module level.
"""

from __future__ import annotations

import os
from typing import Sequence

import numpy as np

__all__ = [
    "EXCLUDED_FROM_GLOBAL",
    "is_sentinel",
    "sentinel_as_bin",
    "pos_counts",
    "assignment_counts",
    "uniform_spec",
    "spec_from_counts",
    "spec_layer",
    "spec_by_pos",
    "global_spec",
    "global_spec_tags",
    "kl_per_expert",
    "kl_summary",
]

#: Tags left out of the global Spec of Table 1 (the paper drops the residual classes).
EXCLUDED_FROM_GLOBAL: tuple[str, ...] = ("X", "SYM")

# Target number of token-assignments per bincount chunk (keeps temporaries cache-sized).
_CHUNK_ASSIGNMENTS = 1 << 20


def _as_pos(pos: np.ndarray, n_pos: int) -> np.ndarray:
    pos = np.asarray(pos)
    if pos.ndim != 1:
        raise ValueError(f"pos must be 1-D [T], got shape {pos.shape}")
    if pos.size and (pos.min() < 0 or pos.max() >= n_pos):
        raise ValueError(f"pos values must lie in [0, {n_pos}), got [{pos.min()}, {pos.max()}]")
    return pos


def sentinel_for(n_experts: int) -> int:
    """The id the run writer stores in an unused rank slot: 255 when every expert id fits in uint8, else 65535."""
    return 255 if n_experts <= 255 else 65535


def is_sentinel(experts: np.ndarray, n_experts: int) -> np.ndarray:
    """``bool`` of ``experts``' shape: the slot holds no expert (the writer's sentinel id, or -1)."""
    e = np.asarray(experts)
    return (e == sentinel_for(n_experts)) | (e < 0) if e.dtype.kind == "i" else e == sentinel_for(n_experts)


def _check_ids(experts: np.ndarray, n_experts: int) -> bool:
    """Raise unless every id is an expert ``0..N-1`` or a sentinel; return whether there is a sentinel."""
    if not experts.size:
        return False
    lo, hi = int(experts.min()), int(experts.max())
    if lo >= 0 and hi < n_experts:
        return False
    bad = ~is_sentinel(experts, n_experts) & ((experts < 0) | (experts >= n_experts))
    if bad.any():
        raise ValueError(f"expert ids must lie in [0, {n_experts}) (or be the unused-rank sentinel "
                         f"{sentinel_for(n_experts)} or -1), got {int(np.asarray(experts)[bad].flat[0])}")
    return True


def sentinel_as_bin(experts: np.ndarray, n_experts: int) -> tuple[np.ndarray, int]:
    """``(experts', N')``: the ids with every sentinel replaced by ``N`` and ``N' = N + 1`` when there is one (an
    extra "no expert" bin a count drops or a probe reads as its own category); else the ids as given and ``N``.
    Raises ``ValueError`` on any other id outside ``0..N-1``."""
    experts = np.asarray(experts)
    if not _check_ids(experts, n_experts):
        return experts, int(n_experts)
    dt = np.uint8 if n_experts < 255 else np.uint16 if n_experts < 65535 else np.int64
    return np.where(is_sentinel(experts, n_experts), n_experts, experts).astype(dt), int(n_experts) + 1


def pos_counts(pos: np.ndarray, n_pos: int) -> tuple[np.ndarray, np.ndarray]:
    """Tokens per POS and their share of the corpus (paper Table 4).

    Args:
        pos: ``[T]`` int tag indices.
        n_pos: number of tags ``P``.

    Returns:
        ``(tokens [P] int64, percent [P] float64)``; percent = 100 * tokens / T (all zeros if T = 0).
    """
    pos = _as_pos(pos, n_pos)
    counts = np.bincount(pos.astype(np.intp, copy=False), minlength=n_pos).astype(np.int64)
    total = counts.sum()
    percent = 100.0 * counts / total if total else np.zeros(n_pos, dtype=np.float64)
    return counts, percent


def _key_dtype(bins: int) -> type:
    if bins <= np.iinfo(np.uint16).max + 1:
        return np.uint16
    if bins <= np.iinfo(np.uint32).max + 1:
        return np.uint32
    return np.int64


def assignment_counts(
    experts: np.ndarray,
    pos: np.ndarray,
    n_experts: int,
    n_pos: int,
    *,
    weights: np.ndarray | None = None,
    threads: int | None = None,
) -> np.ndarray:
    """Token-assignment counts per (layer, expert, POS) -- the basis of Tables 1, 3, 5.

    ``C[l, e, p]`` = number of (token, rank) pairs with ``experts[t, l, rank] == e`` and
    ``pos[t] == p``. Each token contributes ``k`` assignments per layer (fewer where a rank holds the
    sentinel: it counts for no expert).

    Args:
        experts: ``[T, L, k]`` int expert ids.
        pos: ``[T]`` int tag indices.
        n_experts: ``N``.
        n_pos: ``P``.
        weights: optional ``[T]`` non-negative token weights (e.g. bootstrap multiplicities); the
            result is then the weighted count (float64).
        threads: worker threads (default: ``min(2, os.cpu_count())``); numpy releases the GIL in
            the packing arithmetic and in ``bincount``.

    Returns:
        ``[L, N, P]`` int64 (float64 when ``weights`` is given).

    Implementation: token chunks of about 1M assignments; keys ``(l*N + e)*P + pos`` are packed
    in uint16 when ``L*N*P <= 65536`` (uint32 otherwise) and counted with ``np.bincount``.
    """
    experts = np.asarray(experts)
    if experts.ndim != 3:
        raise ValueError(f"experts must be 3-D [T, L, k], got shape {experts.shape}")
    pos = _as_pos(pos, n_pos)
    T, L, k = experts.shape
    if pos.shape[0] != T:
        raise ValueError(f"pos has {pos.shape[0]} tokens, experts has {T}")
    experts, n_bins = sentinel_as_bin(experts, n_experts)  # checks the ids (one pass)
    if n_bins != n_experts:  # sentinels: counted in an extra expert bin, dropped
        return np.ascontiguousarray(
            assignment_counts(experts, pos, n_bins, n_pos, weights=weights, threads=threads)[:, :n_experts])
    bins = L * n_experts * n_pos
    kd = _key_dtype(bins)
    if weights is not None:
        weights = np.asarray(weights, dtype=np.float64)
        if weights.shape != (T,):
            raise ValueError(f"weights must have shape ({T},), got {weights.shape}")
    if T == 0 or L == 0 or k == 0:
        dt = np.float64 if weights is not None else np.int64
        return np.zeros((L, n_experts, n_pos), dtype=dt)

    layer_off = np.arange(L, dtype=kd) * kd(n_experts * n_pos)  # [L]
    pos_k = pos.astype(kd)
    chunk = max(1, _CHUNK_ASSIGNMENTS // (L * k))

    def work(start: int) -> np.ndarray:
        stop = min(T, start + chunk)
        e = experts[start:stop]
        key = np.multiply(e, kd(n_pos), dtype=kd, casting="unsafe")  # e*P (ids validated)
        off = layer_off[None, :] + pos_k[start:stop, None]  # [c, L] = l*N*P + pos
        key += off[:, :, None]
        flat = key.reshape(-1).astype(np.intp)
        if weights is None:
            return np.bincount(flat, minlength=bins)
        w = np.broadcast_to(weights[start:stop, None, None], key.shape).reshape(-1)
        return np.bincount(flat, weights=w, minlength=bins)

    starts = range(0, T, chunk)
    n_threads = threads if threads is not None else min(2, os.cpu_count() or 1)
    total = np.zeros(bins, dtype=np.float64 if weights is not None else np.int64)
    if n_threads > 1 and len(starts) > 1:
        from concurrent.futures import ThreadPoolExecutor

        with ThreadPoolExecutor(n_threads) as pool:
            for part in pool.map(work, starts):
                total += part
    else:
        for s in starts:
            total += work(s)
    return total.reshape(L, n_experts, n_pos)


def uniform_spec(top_k: int, n_experts: int) -> float:
    """Uniform reference ``U = 100 k / N`` (paper Table 1): Spec of a router that spreads every
    POS evenly over all experts. E.g. 2 of 8 -> 25.0; 6 of 64 -> 9.375."""
    return 100.0 * top_k / n_experts


def spec_from_counts(counts: np.ndarray, top_k: int, tokens: np.ndarray | None = None) -> np.ndarray:
    """Expert specialisation per (layer, POS) from assignment counts (paper Table 1, 5, Fig. 4).

    ``Spec[l, p] = 100 * (sum of the k largest C[l, :, p]) / (k * tokens_p)``: the share of the
    POS's assignments at layer ``l`` taken by the ``k`` experts that take most of them.

    Args:
        counts: ``[L, N, P]`` (possibly weighted) assignment counts from :func:`assignment_counts`.
        top_k: ``k``.
        tokens: ``[P]`` tokens per POS; default ``counts[0].sum(0) / k`` (each token has ``k``
            assignments per layer).

    Returns:
        ``[L, P]`` float64; NaN for a POS with zero tokens.
    """
    counts = np.asarray(counts)
    L, N, P = counts.shape
    kk = min(top_k, N)
    if tokens is None:
        tokens = counts[0].sum(axis=0) / top_k if L else np.zeros(P)
    tokens = np.asarray(tokens, dtype=np.float64)
    # k largest per (l, p): partition along the expert axis.
    if kk < N:
        top = np.partition(counts, N - kk, axis=1)[:, N - kk :, :].sum(axis=1)
    else:
        top = counts.sum(axis=1)
    denom = top_k * tokens[None, :]
    with np.errstate(invalid="ignore", divide="ignore"):
        spec = np.where(denom > 0, 100.0 * top / np.where(denom > 0, denom, 1.0), np.nan)
    return spec.astype(np.float64)


def spec_layer(experts: np.ndarray, pos: np.ndarray, n_experts: int, n_pos: int) -> np.ndarray:
    """``Spec[l, p]`` straight from routes (paper Table 5 per layer, Fig. 4).

    Args: ``experts [T, L, k]``, ``pos [T]``, ``N``, ``P``. Returns ``[L, P]`` float64 (NaN for
    absent POS). ``dU = Spec - uniform_spec(k, N)``.
    """
    experts = np.asarray(experts)
    counts = assignment_counts(experts, pos, n_experts, n_pos)
    tokens, _ = pos_counts(pos, n_pos)
    return spec_from_counts(counts, experts.shape[2], tokens)


def spec_by_pos(spec: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Per-POS summary over layers (paper Table 5): mean, max and argmax layer.

    Args:
        spec: ``[L, P]`` from :func:`spec_from_counts`.

    Returns:
        ``(mean [P], max [P], argmax [P])``; argmax is a layer *position* 0..L-1 (the caller maps it
        to a decoder-layer index), -1 for a POS with no tokens (mean/max NaN).
    """
    spec = np.asarray(spec, dtype=np.float64)
    L, P = spec.shape
    present = ~np.isnan(spec).all(axis=0) if L else np.zeros(P, dtype=bool)
    mean = np.full(P, np.nan)
    mx = np.full(P, np.nan)
    arg = np.full(P, -1, dtype=np.int64)
    if present.any():
        sub = spec[:, present]
        mean[present] = sub.mean(axis=0)
        mx[present] = sub.max(axis=0)
        arg[present] = sub.argmax(axis=0)
    return mean, mx, arg


def _global_keep(mean_spec: np.ndarray, tags: Sequence[str], tokens: np.ndarray | None,
                 exclude: Sequence[str]) -> np.ndarray:
    """``[P]`` bool: the POS the global Spec averages (not excluded, a finite mean, tokens > 0)."""
    if len(tags) != mean_spec.shape[0]:
        raise ValueError(f"{len(tags)} tags for {mean_spec.shape[0]} POS")
    keep = ~np.isin(np.asarray(tags, dtype=object), list(exclude)) & ~np.isnan(mean_spec)
    if tokens is not None:
        keep &= np.asarray(tokens) > 0
    return keep


def global_spec(
    mean_spec: np.ndarray,
    tags: Sequence[str],
    tokens: np.ndarray | None = None,
    *,
    exclude: Sequence[str] = EXCLUDED_FROM_GLOBAL,
) -> float:
    """Global Spec of paper Table 1: mean over POS of the per-POS mean Spec over layers, leaving
    out X and SYM and every POS with zero tokens (NaN mean). :func:`global_spec_tags` names the
    POS averaged (15 under ``upos``, 13 under ``paper15`` when every tag occurs).

    Args:
        mean_spec: ``[P]`` per-POS mean over layers (from :func:`spec_by_pos`).
        tags: the ``P`` tag names (to find X and SYM).
        tokens: optional ``[P]`` token counts; POS with 0 tokens are dropped.
        exclude: tag names to leave out.

    Returns:
        float (NaN if no POS remains).
    """
    mean_spec = np.asarray(mean_spec, dtype=np.float64)
    keep = _global_keep(mean_spec, tags, tokens, exclude)
    return float(mean_spec[keep].mean()) if keep.any() else float("nan")


def global_spec_tags(
    mean_spec: np.ndarray,
    tags: Sequence[str],
    tokens: np.ndarray | None = None,
    *,
    exclude: Sequence[str] = EXCLUDED_FROM_GLOBAL,
) -> tuple[str, ...]:
    """The tags :func:`global_spec` averages over, in ``tags`` order (same arguments).

    Two global Specs are comparable only when these tuples are equal.
    """
    keep = _global_keep(np.asarray(mean_spec, dtype=np.float64), tags, tokens, exclude)
    return tuple(str(t) for t, k in zip(tags, keep) if k)


def kl_per_expert(
    counts: np.ndarray,
    tokens: np.ndarray,
    *,
    reference: str = "corpus",
) -> tuple[np.ndarray, np.ndarray]:
    """KL(P_{l,e} || Q) in nats for every (layer, expert) (paper Table 3, Fig. 5).

    ``P_{l,e}`` is the POS distribution over the assignments of expert ``e`` at layer ``l``;
    ``Q`` is the corpus POS distribution over tokens (``reference="corpus"``) or uniform over
    all ``P`` tags (``reference="uniform"``). Terms with ``P = 0`` contribute 0.

    Args:
        counts: ``[L, N, P]`` assignment counts.
        tokens: ``[P]`` tokens per POS (defines the corpus ``Q``).
        reference: ``"corpus"`` or ``"uniform"``.

    Returns:
        ``(kl [L, N] float64, assignments [L, N])``; kl is NaN where the expert has no assignment.
    """
    counts = np.asarray(counts, dtype=np.float64)
    L, N, P = counts.shape
    if reference == "corpus":
        tokens = np.asarray(tokens, dtype=np.float64)
        q = tokens / tokens.sum() if tokens.sum() > 0 else np.full(P, 1.0 / P)
    elif reference == "uniform":
        q = np.full(P, 1.0 / P)
    else:
        raise ValueError(f"reference must be 'corpus' or 'uniform', got {reference!r}")
    n = counts.sum(axis=2)  # [L, N]
    with np.errstate(invalid="ignore", divide="ignore"):
        p = counts / n[:, :, None]
        safe_q = np.where(q > 0, q, 1.0)
        terms = np.where(p > 0, p * np.log(np.where(p > 0, p, 1.0) / safe_q[None, None, :]), 0.0)
    kl = terms.sum(axis=2)
    kl[n == 0] = np.nan
    assignments = counts.sum(axis=2)
    return kl, assignments


def kl_summary(kl: np.ndarray) -> dict[str, np.ndarray | float]:
    """Per-layer min / max / mean of KL over experts with >= 1 assignment, and their means over
    layers mu_min, mu_max, mu_mean (paper Table 3).

    Args:
        kl: ``[L, N]`` from :func:`kl_per_expert` (NaN = expert unused).

    Returns:
        dict with ``layer_min``, ``layer_max``, ``layer_mean`` (``[L]``) and floats ``mu_min``,
        ``mu_max``, ``mu_mean`` (means over layers that have any used expert).
    """
    kl = np.asarray(kl, dtype=np.float64)
    L = kl.shape[0]
    used = ~np.isnan(kl)
    any_used = used.any(axis=1)
    lmin = np.full(L, np.nan)
    lmax = np.full(L, np.nan)
    lmean = np.full(L, np.nan)
    if any_used.any():
        sub = kl[any_used]
        lmin[any_used] = np.nanmin(sub, axis=1)
        lmax[any_used] = np.nanmax(sub, axis=1)
        lmean[any_used] = np.nanmean(sub, axis=1)

    def _m(x: np.ndarray) -> float:
        return float(x[any_used].mean()) if any_used.any() else float("nan")

    return {
        "layer_min": lmin,
        "layer_max": lmax,
        "layer_mean": lmean,
        "mu_min": _m(lmin),
        "mu_max": _m(lmax),
        "mu_mean": _m(lmean),
    }
