"""Controls beyond the paper (arXiv 2412.16971): is the POS signal in routes real, and is it more
than token identity?

* :func:`spec_permutation_null` -- Spec under shuffled POS labels (routes fixed), per (layer, POS),
  with permutation p-values; :func:`bh_qvalues` -- Benjamini-Hochberg q-values over the cells;
* :func:`token_identity_probe` -- POS from the token id alone (most frequent POS per token id);
* :func:`control_task` -- Hewitt & Liang (2019) control task: each word form gets a fixed random
  POS; selectivity = real probe accuracy - control probe accuracy;
* :func:`ambiguous_tokens` -- on token ids seen with >= 2 POS: routing probe vs token-identity
  predictor vs form baseline;
* :func:`context_effect` -- Hamming distance of top-k paths between occurrences of the same token id
  with the same / a different POS, and a within-token-id permutation test of the difference;
* :func:`bootstrap_spec`, :func:`bootstrap_accuracy` -- sentence-level bootstrap, BCa intervals
  (:func:`bca_interval`, jackknife over sentences).

Array conventions as in :mod:`moe_tui.core.analysis.metrics`: ``experts [T, L, k]``, ``pos [T]``, ``forms [T]`` (word-form
keys: the integer ids of ``RunView.form_ids``, or strings; used only as keys), ``sentence [T]``, ``token_ids [T]``.
Every random step takes an explicit seed.
"""

from __future__ import annotations

from typing import Callable, Sequence

import numpy as np

from moe_tui.core.analysis import metrics
from moe_tui.core.analysis.probe import ProbeResult, form_baseline, run_probe, split_indices

__all__ = [
    "spec_permutation_null",
    "token_identity_probe",
    "control_labels",
    "control_task",
    "ambiguous_mask",
    "hamming_same_key",
    "within_group_permutations",
    "context_effect",
    "ambiguous_tokens",
    "permutation_p_values",
    "bh_qvalues",
    "sentence_resample_weights",
    "permuted_counts",
    "sentence_counts",
    "percentile_interval",
    "jackknife_acceleration",
    "bca_interval",
    "bootstrap_spec",
    "bootstrap_accuracy",
]

Progress = Callable[[str, int, int], None]

# Token-assignments per vectorised block (keeps the temporaries near 32 MB).
_CHUNK = 1 << 22


def _spec_rows(counts: np.ndarray, k: int, tokens: np.ndarray) -> np.ndarray:
    """Spec of many count tables at once: ``counts [R, L, N, P]``, ``tokens [R, P]`` (or ``[P]``) ->
    ``[R, L, P]``, exactly :func:`metrics.spec_from_counts` applied to each ``counts[r]``."""
    R, L, N, P = counts.shape
    kk = min(k, N)
    top = np.partition(counts, N - kk, axis=2)[:, :, N - kk:, :].sum(axis=2) if kk < N else counts.sum(axis=2)
    denom = k * np.broadcast_to(np.asarray(tokens, dtype=np.float64), (R, P))[:, None, :]
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(denom > 0, 100.0 * top / np.where(denom > 0, denom, 1.0), np.nan)


def _keys(experts: np.ndarray, n_experts: int, n_pos: int) -> np.ndarray:
    """``[T, L, k]`` packed ``(l*N + e)*P`` of every token-assignment (int64)."""
    T, L, k = experts.shape
    return (np.arange(L, dtype=np.int64)[None, :, None] * n_experts + experts.astype(np.int64)) * n_pos


def permuted_counts(experts: np.ndarray, labels: np.ndarray, n_experts: int, n_pos: int) -> np.ndarray:
    """Assignment counts for many label vectors at once (the permutation null, vectorised).

    Args:
        experts: ``[T, L, k]`` expert ids.
        labels: ``[R, T]`` POS labels, one row per permutation.

    Returns:
        ``[R, L, N, P]`` int64; ``out[r]`` equals ``metrics.assignment_counts(experts, labels[r], N, P)``.
        One ``np.bincount`` per block of rows (about 4M token-assignments each), no loop per permutation.
    """
    experts, n_bins = metrics.sentinel_as_bin(experts, n_experts)
    if n_bins != n_experts:  # unused-rank sentinels: an extra expert bin, dropped
        return np.ascontiguousarray(permuted_counts(experts, labels, n_bins, n_pos)[:, :, :n_experts])
    labels = np.asarray(labels, dtype=np.int64)
    T, L, k = experts.shape
    R = labels.shape[0]
    per = L * n_experts * n_pos
    base = _keys(experts, n_experts, n_pos)
    out = np.zeros((R, L, n_experts, n_pos), dtype=np.int64)
    if T == 0 or R == 0:
        return out
    rb = max(1, _CHUNK // max(1, T * L * k))
    for r0 in range(0, R, rb):
        lab = labels[r0:r0 + rb]
        keys = base[None] + (lab + (np.arange(len(lab), dtype=np.int64) * per)[:, None])[:, :, None, None]
        out[r0:r0 + len(lab)] = np.bincount(keys.ravel(), minlength=len(lab) * per).reshape(len(lab), L, n_experts,
                                                                                              n_pos)
    return out


def spec_permutation_null(
    experts: np.ndarray,
    pos: np.ndarray,
    n_experts: int,
    n_pos: int,
    *,
    n_permutations: int = 100,
    seed: int | np.random.SeedSequence = 0,
    progress: Progress | None = None,
) -> dict[str, np.ndarray]:
    """Permutation null of Spec (Table 5 / Fig. 4 control): shuffle the POS labels over tokens
    (routes and POS frequencies fixed) ``R`` times and recompute ``Spec[l, p]``.

    The permutations are ``rng.permutation(pos)`` drawn one after another from ``default_rng(seed)``;
    their counts are computed together (:func:`permuted_counts`).

    Returns:
        dict of ``[L, P]`` arrays: ``spec`` (observed), ``null_mean``, ``null_p95`` (95th
        percentile of the null), ``excess = spec - null_mean``, ``p_value``
        (:func:`permutation_p_values`), ``q_value`` (:func:`bh_qvalues` over all cells), and
        ``samples`` ``[R, L, P]``.
    """
    experts = np.asarray(experts)
    pos = np.asarray(pos)
    k = experts.shape[2]
    tokens, _ = metrics.pos_counts(pos, n_pos)
    spec = metrics.spec_from_counts(metrics.assignment_counts(experts, pos, n_experts, n_pos), k, tokens)
    rng = np.random.default_rng(seed)
    perms = np.stack([rng.permutation(pos) for _ in range(n_permutations)]) if n_permutations else \
        np.zeros((0, len(pos)), dtype=np.int64)
    null = np.empty((n_permutations,) + spec.shape)
    step = max(1, _CHUNK // max(1, experts.size))
    for r0 in range(0, n_permutations, step):
        r1 = min(n_permutations, r0 + step)
        null[r0:r1] = _spec_rows(permuted_counts(experts, perms[r0:r1], n_experts, n_pos), k, tokens)
        if progress is not None:
            progress("permutation null", r1, n_permutations)
    if n_permutations:
        null_mean = null.mean(axis=0)
        null_p95 = np.percentile(null, 95, axis=0)
    else:
        null_mean = np.full(spec.shape, np.nan)
        null_p95 = np.full(spec.shape, np.nan)
    p_value = permutation_p_values(spec, null)
    return {"spec": spec, "null_mean": null_mean, "null_p95": null_p95, "excess": spec - null_mean,
            "p_value": p_value, "q_value": bh_qvalues(p_value), "samples": null}


def permutation_p_values(observed: np.ndarray, null: np.ndarray) -> np.ndarray:
    """One-sided permutation p-values with the +1 correction: ``(1 + #{null >= observed}) / (1 + R)``.

    Args:
        observed: ``[...]`` statistics; ``null``: ``[R, ...]`` their values under ``R`` permutations.

    Returns:
        ``[...]`` float64 in ``[1/(1+R), 1]``; NaN where ``observed`` is NaN (and all NaN when ``R = 0``).
        A NaN null value counts as ``>=`` (conservative). Spec values are ratios of integer counts
        computed the same way for the data and the permutations, so ties are exact.
    """
    observed = np.asarray(observed, dtype=np.float64)
    null = np.asarray(null, dtype=np.float64)
    R = null.shape[0]
    if R == 0:
        return np.full(observed.shape, np.nan)
    with np.errstate(invalid="ignore"):
        extreme = np.count_nonzero(~(null < observed[None]), axis=0)
    return np.where(np.isnan(observed), np.nan, (1.0 + extreme) / (1.0 + R))


def bh_qvalues(p: np.ndarray) -> np.ndarray:
    """Benjamini-Hochberg q-values (adjusted p-values) over all finite entries of ``p`` (any shape):
    with the ``m`` finite p-values sorted, ``q_(i) = min_{j >= i} min(1, m p_(j) / j)``; NaN stays NaN.
    A cell is a discovery at FDR ``alpha`` when ``q <= alpha``."""
    p = np.asarray(p, dtype=np.float64)
    q = np.full(p.shape, np.nan)
    flat = p.reshape(-1)
    idx = np.nonzero(~np.isnan(flat))[0]
    m = idx.size
    if not m:
        return q
    order = idx[np.argsort(flat[idx], kind="stable")]
    raw = flat[order] * m / np.arange(1, m + 1)
    adj = np.minimum(np.minimum.accumulate(raw[::-1])[::-1], 1.0)
    out = q.reshape(-1)
    out[order] = adj
    return out.reshape(p.shape)


def token_identity_probe(token_ids: np.ndarray, pos: np.ndarray, n_pos: int,
                         split: tuple[np.ndarray, np.ndarray]) -> ProbeResult:
    """POS from the token id alone: the most frequent training POS of the token id (unseen ids:
    most frequent POS overall), on the same split as the routing probe. Count-based, not an MLP
    (an MLP on a one-hot token id converges to the same lookup, far slower)."""
    return form_baseline(token_ids, pos, n_pos, split[0], split[1], variant="token_identity")


def control_labels(forms: np.ndarray, pos: np.ndarray, n_pos: int, *, seed: int | np.random.SeedSequence = 0) -> np.ndarray:
    """Control-task labels (Hewitt & Liang 2019): every distinct word form gets one fixed random POS
    drawn from the corpus POS distribution (seeded); returns ``[T]`` labels."""
    uniq, inv = np.unique(np.asarray(forms), return_inverse=True)
    counts, _ = metrics.pos_counts(pos, n_pos)
    p = counts / counts.sum()
    rng = np.random.default_rng(seed)
    per_form = rng.choice(n_pos, size=len(uniq), p=p)
    return per_form[inv.reshape(-1)].astype(np.int64)


def control_task(
    experts: np.ndarray,
    forms: np.ndarray,
    pos: np.ndarray,
    n_pos: int,
    *,
    split: tuple[np.ndarray, np.ndarray] | None = None,
    seed: int = 0,
    variant: str = "top_k",
    max_iter: int = 500,
    real: ProbeResult | None = None,
    mlp_kwargs: dict | None = None,
) -> dict[str, float]:
    """Hewitt & Liang control task: train the same probe (same split, same MLP) to predict the
    per-form random labels of :func:`control_labels`. Selectivity = real - control accuracy; a
    probe that reads POS from routes rather than memorising word identity has high selectivity.

    Returns ``{"real": acc, "control": acc, "selectivity": real - control}``.
    """
    if split is None:
        split = split_indices(len(pos), seed=seed)
    if real is None:
        real = run_probe(experts, pos, n_pos, variant=variant, split=split, seed=seed, max_iter=max_iter,
                         mlp_kwargs=mlp_kwargs)
    ctrl_y = control_labels(forms, pos, n_pos, seed=seed)
    ctrl = run_probe(experts, pos, n_pos, variant=variant, split=split, labels=ctrl_y, seed=seed,
                     max_iter=max_iter, mlp_kwargs=mlp_kwargs)
    return {"real": real.accuracy, "control": ctrl.accuracy, "selectivity": real.accuracy - ctrl.accuracy}


def ambiguous_mask(keys: np.ndarray, pos: np.ndarray, n_pos: int) -> np.ndarray:
    """``[T]`` bool: the token's key (token id, word form...) is seen with >= 2 distinct POS in the data
    passed."""
    fid, inv = np.unique(np.asarray(keys), return_inverse=True)
    inv = inv.reshape(-1).astype(np.intp)
    table = np.bincount(inv * n_pos + np.asarray(pos, dtype=np.intp), minlength=len(fid) * n_pos)
    n_tags = (table.reshape(len(fid), n_pos) > 0).sum(axis=1)
    return n_tags[inv] >= 2


def _pairs(c: np.ndarray) -> int:
    c = np.asarray(c, dtype=np.int64)
    return int((c * (c - 1) // 2).sum())


def _agreements(paths: np.ndarray, cells: np.ndarray, n_cells: int, n_values: int) -> np.ndarray:
    """Pairs of tokens in the same cell that agree, summed over the path positions.

    Args:
        paths: ``[n, D]`` values in ``0 .. n_values-1`` (expert ids at D = (layer, rank) positions).
        cells: ``[R, n]`` cell index of each token in ``0 .. n_cells-1``, one row per labelling.

    Returns:
        ``[R]`` int64: ``sum_d sum_{cell, v} C(#{tokens in cell with paths[:, d] == v}, 2)``, i.e. the
        number of (pair in the same cell, position) where the pair's values agree. Counted with one
        ``np.bincount`` per position and block of rows, not by enumerating pairs.
    """
    paths = np.asarray(paths, dtype=np.int64)
    cells = np.asarray(cells, dtype=np.int64)
    R, n = cells.shape
    D = paths.shape[1]
    out = np.zeros(R, dtype=np.int64)
    if n == 0 or R == 0:
        return out
    per = n_cells * n_values
    rb = max(1, min(R, _CHUNK // max(1, n, per)))
    for r0 in range(0, R, rb):
        r1 = min(R, r0 + rb)
        base = (cells[r0:r1] + (np.arange(r1 - r0, dtype=np.int64) * n_cells)[:, None]) * n_values
        for d in range(D):
            c = np.bincount((base + paths[:, d][None, :]).ravel(), minlength=(r1 - r0) * per)
            out[r0:r1] += (c * (c - 1) // 2).reshape(r1 - r0, per).sum(axis=1)
    return out


def _compact(a: np.ndarray) -> tuple[np.ndarray, int]:
    uniq, inv = np.unique(np.asarray(a), return_inverse=True)
    return inv.reshape(-1).astype(np.int64), len(uniq)


def hamming_same_key(paths: np.ndarray, keys: np.ndarray, pos: np.ndarray, n_pos: int, n_values: int,
                     mask: np.ndarray | None = None) -> dict[str, float]:
    """Exact mean Hamming distance between the paths of tokens that share a key (token id, word form),
    over all such pairs, split into same-POS and different-POS pairs.

    The Hamming distance of two paths is the number of positions ``d`` where they differ. For top-k
    paths, ``paths = experts.reshape(T, L*k)``: the positions are the (MoE layer, rank) slots, ranks in
    rank order, so two occurrences are at distance 0 exactly when every layer chose the same experts
    in the same order, and at most ``L*k`` apart.

    Counted, not enumerated (:func:`_agreements`): the pairs of a group agreeing at position ``d`` are
    ``sum_e c_e (c_e - 1) / 2``.

    Args:
        paths: ``[T, D]`` ints in ``0 .. n_values-1``; ``keys``, ``pos``: ``[T]``.
        mask: optional ``[T]`` bool restricting the tokens (e.g. :func:`ambiguous_mask`).

    Returns:
        ``{"same_pos", "diff_pos"}`` means (NaN when there is no pair) and ``{"pairs_same_pos",
        "pairs_diff_pos"}`` counts.
    """
    paths = np.asarray(paths)
    keys = np.asarray(keys)
    pos = np.asarray(pos, dtype=np.int64)
    if mask is not None:
        paths, keys, pos = paths[mask], keys[mask], pos[mask]
    g, G = _compact(keys)
    cell, H = _compact(g * n_pos + pos)
    D = paths.shape[1] if paths.ndim == 2 else 0
    pairs_key = _pairs(np.bincount(g, minlength=G))
    pairs_sp = _pairs(np.bincount(cell, minlength=H))
    pairs_dp = pairs_key - pairs_sp
    agree_key = int(_agreements(paths, g[None, :], G, n_values)[0]) if len(g) else 0
    agree_sp = int(_agreements(paths, cell[None, :], H, n_values)[0]) if len(g) else 0
    nan = float("nan")
    return {
        "same_pos": (D * pairs_sp - agree_sp) / pairs_sp if pairs_sp else nan,
        "diff_pos": (D * pairs_dp - (agree_key - agree_sp)) / pairs_dp if pairs_dp else nan,
        "pairs_same_pos": float(pairs_sp),
        "pairs_diff_pos": float(pairs_dp),
    }


def within_group_permutations(groups: np.ndarray, labels: np.ndarray, n_permutations: int,
                              seed: int | np.random.SeedSequence) -> np.ndarray:
    """``[R, n]`` labels shuffled within each group (tokens of one token id swap their POS among
    themselves; every group keeps its multiset of labels). Row ``r`` sorts ``group + U(0, 1)``: the
    groups stay in place, their members in a uniformly random order."""
    groups = np.asarray(groups, dtype=np.int64)
    labels = np.asarray(labels)
    order = np.argsort(groups, kind="stable")
    gs = groups[order].astype(np.float64)
    rng = np.random.default_rng(seed)
    out = np.empty((n_permutations, len(labels)), dtype=labels.dtype)
    rb = max(1, _CHUNK // max(1, len(labels)))
    for r0 in range(0, n_permutations, rb):
        r1 = min(n_permutations, r0 + rb)
        o = np.argsort(gs[None, :] + rng.random((r1 - r0, len(labels))), axis=1)
        out[r0:r1][:, order] = labels[order][o]
    return out


def context_effect(
    experts: np.ndarray,
    token_ids: np.ndarray,
    pos: np.ndarray,
    n_pos: int,
    n_experts: int,
    *,
    n_permutations: int = 100,
    seed: int | np.random.SeedSequence = 0,
) -> dict[str, float]:
    """Does the route of one token id depend on its POS? Hamming distances of top-k paths between
    occurrences of the same token id (the unit the router sees) with the same / a different POS, over
    the ambiguous token ids (seen with >= 2 POS), and a permutation test of their difference.

    ``same_pos`` and ``diff_pos`` are exact means over all pairs of occurrences (:func:`hamming_same_key`
    on ``experts.reshape(T, L*k)``). The statistic ``diff_pos - same_pos`` is tested against POS labels
    shuffled among the occurrences of each token id (routes fixed; :func:`within_group_permutations`),
    ``R`` times: ``p = (1 + #{null >= observed}) / (1 + R)``. Under such a shuffle the number of same-POS
    pairs and the agreement within a token id do not change, so the statistic is an increasing function
    of the same-POS agreement count, which is what is compared (integers: ties are exact and count as
    ``>=``). A router that reads the token id alone gives every occurrence the same path: both means are
    0 and ``p = 1``.

    Returns:
        ``{"ambiguous_token_ids", "ambiguous_tokens", "same_pos", "diff_pos", "pairs_same_pos",
        "pairs_diff_pos", "p_value"}`` (means and ``p_value`` NaN without pairs of both kinds).
    """
    experts, n_experts = metrics.sentinel_as_bin(experts, n_experts)  # an unused rank: one more value
    token_ids = np.asarray(token_ids)
    pos = np.asarray(pos, dtype=np.int64)
    T, L, k = experts.shape
    amb = ambiguous_mask(token_ids, pos, n_pos)
    paths = experts[amb].reshape(-1, L * k)
    g, G = _compact(token_ids[amb])
    lab = pos[amb]
    h = hamming_same_key(paths, g, lab, n_pos, n_experts)
    res = {"ambiguous_token_ids": float(G), "ambiguous_tokens": float(amb.sum()), **h, "p_value": float("nan")}
    if not (h["pairs_same_pos"] and h["pairs_diff_pos"]) or n_permutations < 1:
        return res
    # cells (token id, POS) keep their sizes under the shuffle: compact them once
    lut = np.full(G * n_pos, -1, dtype=np.int64)
    present = np.unique(g * n_pos + lab)
    lut[present] = np.arange(len(present))
    observed = int(_agreements(paths, lut[g * n_pos + lab][None, :], len(present), n_experts)[0])
    perms = within_group_permutations(g, lab, n_permutations, seed)
    null = _agreements(paths, lut[g[None, :] * n_pos + perms], len(present), n_experts)
    res["p_value"] = float((1 + np.count_nonzero(null >= observed)) / (1 + n_permutations))
    return res


def ambiguous_tokens(
    token_ids: np.ndarray,
    pos: np.ndarray,
    n_pos: int,
    *,
    probe: ProbeResult,
    token_identity: ProbeResult,
    form_baseline: ProbeResult,
) -> dict[str, float]:
    """Accuracies on the test tokens whose token id is ambiguous (seen with >= 2 POS over all tokens
    passed): the routing probe, the token-identity predictor and the word-form baseline, all scored on
    the same tokens of the same split.

    Returns ``{"ambiguous_token_ids", "ambiguous_test_tokens", "ambiguous_probe",
    "ambiguous_token_identity", "ambiguous_form_baseline"}`` (accuracies NaN when no test token is
    ambiguous).
    """
    amb = ambiguous_mask(token_ids, pos, n_pos)
    te = np.asarray(probe.test_idx)
    for other in (token_identity, form_baseline):
        if not np.array_equal(np.asarray(other.test_idx), te):
            raise ValueError("the probe, the token-identity predictor and the baseline must share the test split")
    on = amb[te]
    nan = float("nan")

    def acc(r: ProbeResult) -> float:
        return float(r.correct[on].mean()) if on.any() else nan

    return {
        "ambiguous_token_ids": float(len(np.unique(np.asarray(token_ids)[amb]))),
        "ambiguous_test_tokens": float(on.sum()),
        "ambiguous_probe": acc(probe),
        "ambiguous_token_identity": acc(token_identity),
        "ambiguous_form_baseline": acc(form_baseline),
    }


def sentence_resample_weights(sentence: np.ndarray, n_boot: int, seed: int | np.random.SeedSequence) -> tuple[np.ndarray, np.ndarray]:
    """Sentence bootstrap: ``W[b, s]`` = how often sentence ``s`` is drawn in replicate ``b``
    (``S`` draws with replacement among the ``S`` distinct sentences present).

    Returns ``(W [B, S] int64, inv [T])`` where ``inv`` maps each token to its sentence column.
    """
    uniq, inv = np.unique(np.asarray(sentence), return_inverse=True)
    S = len(uniq)
    rng = np.random.default_rng(seed)
    draws = rng.integers(0, S, size=(n_boot, S))
    W = np.bincount((draws + (np.arange(n_boot) * S)[:, None]).ravel(), minlength=n_boot * S).reshape(n_boot, S)
    return W.astype(np.int64), inv.reshape(-1)


def percentile_interval(samples: np.ndarray, level: float = 0.95) -> tuple[float, float]:
    """Percentile interval of bootstrap ``samples [B]`` (NaN replicates left out): the
    ``(1-level)/2`` and ``(1+level)/2`` quantiles (linear interpolation between order statistics). The
    report gives it beside :func:`bca_interval` for the global Spec, where BCa can over-correct."""
    s = np.asarray(samples, dtype=np.float64)
    s = s[~np.isnan(s)]
    if not s.size:
        return float("nan"), float("nan")
    a = (1.0 - level) / 2.0 * 100.0
    return float(np.percentile(s, a)), float(np.percentile(s, 100.0 - a))


def jackknife_acceleration(jackknife: np.ndarray) -> float:
    """BCa acceleration from leave-one-out estimates ``jackknife [n]`` (NaN ones left out):
    ``a = sum(d**3) / (6 * sum(d**2) ** 1.5)`` with ``d = mean(jackknife) - jackknife`` (Efron 1987);
    0 when the estimates do not vary."""
    j = np.asarray(jackknife, dtype=np.float64)
    j = j[~np.isnan(j)]
    if j.size < 2:
        return 0.0
    d = j.mean() - j
    s2 = float((d * d).sum())
    return float((d ** 3).sum() / (6.0 * s2 ** 1.5)) if s2 > 0 else 0.0


def bca_interval(samples: np.ndarray, point: float, jackknife: np.ndarray,
                 level: float = 0.95) -> tuple[float, float]:
    """Bias-corrected and accelerated (BCa) bootstrap interval (Efron 1987; the method of
    ``scipy.stats.bootstrap(method="BCa")``).

    ``z0 = Phi^-1(share of replicates below the point, ties counted half)`` corrects the median bias of
    the replicates (a top-k sum such as Spec is biased upward, and so are its replicates), the
    acceleration ``a`` (:func:`jackknife_acceleration`) corrects for a standard error that changes
    with the value; the interval is the replicates' quantiles at
    ``Phi(z0 + (z0 + z) / (1 - a (z0 + z)))`` for ``z = Phi^-1((1 -+ level) / 2)`` (``Phi`` the standard
    normal CDF, ``statistics.NormalDist``), linear interpolation
    as ``np.percentile``. The share is clipped to ``[1/(2B), 1 - 1/(2B)]`` so that a point outside every
    replicate still gives an interval (at the extreme replicate).

    Args:
        samples: ``[B]`` bootstrap replicates (NaN ones left out).
        point: the estimate on the data.
        jackknife: ``[n]`` leave-one-out estimates over the resampled units (sentences).

    Returns:
        ``(low, high)``; NaN without a finite replicate or point.
    """
    from statistics import NormalDist

    ndtr, ndtri = NormalDist().cdf, NormalDist().inv_cdf
    s = np.asarray(samples, dtype=np.float64)
    s = s[~np.isnan(s)]
    if not s.size or not np.isfinite(point):
        return float("nan"), float("nan")
    B = s.size
    share = (np.count_nonzero(s < point) + np.count_nonzero(s <= point)) / (2.0 * B)
    share = min(max(share, 0.5 / B), 1.0 - 0.5 / B)
    z0 = float(ndtri(share))
    a = jackknife_acceleration(jackknife)
    out = []
    for q in ((1.0 - level) / 2.0, (1.0 + level) / 2.0):
        z = z0 + float(ndtri(q))
        alpha = float(ndtr(z0 + z / (1.0 - a * z)))
        out.append(float(np.percentile(s, 100.0 * min(max(alpha, 0.0), 1.0))))
    return out[0], out[1]


def sentence_counts(experts: np.ndarray, pos: np.ndarray, n_experts: int, n_pos: int, sentence_col: np.ndarray,
                    n_sentences: int, layers: slice = slice(None)) -> np.ndarray:
    """Assignment counts per sentence: ``[S, L', N, P]`` int64 for the MoE layers ``layers``, where
    ``sentence_col [T]`` maps each token to its sentence column ``0 .. S-1``."""
    sub, n_bins = metrics.sentinel_as_bin(np.asarray(experts)[:, layers, :], n_experts)
    if n_bins != n_experts:  # unused-rank sentinels: an extra expert bin, dropped
        return np.ascontiguousarray(
            sentence_counts(sub, pos, n_bins, n_pos, sentence_col, n_sentences)[:, :, :n_experts])
    T, L, k = sub.shape
    per = L * n_experts * n_pos
    keys = _keys(sub, n_experts, n_pos) + (np.asarray(pos, dtype=np.int64)
                                          + np.asarray(sentence_col, dtype=np.int64) * per)[:, None, None]
    return np.bincount(keys.ravel(), minlength=n_sentences * per).reshape(n_sentences, L, n_experts, n_pos)


def _global_over(spec: np.ndarray, keep: np.ndarray) -> np.ndarray:
    """Global Spec of many ``spec [R, L, P]`` tables over the fixed tags ``keep [P]``: ``[R]``, NaN where a
    kept tag has no token (the replicate's global Spec would average other tags: another quantity)."""
    if not keep.any():
        return np.full(spec.shape[0], np.nan)
    return spec.mean(axis=1)[:, keep].mean(axis=1)


def bootstrap_spec(
    experts: np.ndarray,
    pos: np.ndarray,
    n_experts: int,
    n_pos: int,
    sentence: np.ndarray,
    tags: Sequence[str],
    *,
    n_boot: int = 200,
    seed: int | np.random.SeedSequence = 0,
    level: float = 0.95,
    progress: Progress | None = None,
) -> dict[str, object]:
    """Sentence-bootstrap BCa interval of the global Spec of Table 1 (:func:`bca_interval`).

    Each replicate reweights the tokens by their sentence's draw count (:func:`sentence_resample_weights`)
    and recomputes the weighted assignment counts, Spec[l, p], the per-POS means and the global mean
    over the tags the point estimate averages (``metrics.global_spec_tags``; a replicate in which one of
    them has no token is left out). The acceleration comes from the jackknife over sentences: leaving
    sentence ``s`` out subtracts its counts. Vectorised: the counts of replicate ``b`` are
    ``W[b] @ counts per sentence``, one matrix product for all replicates, and the ``S`` jackknife
    tables are ``total - counts per sentence`` (blocks of MoE layers keep the temporaries small).

    ``bias_sd`` = (mean of the replicates - point) / their standard deviation says whether the sample
    resolves the top-k experts: near 0 when it does; about 1 or more when the experts of some (layer,
    POS) are too close to tell apart with the tokens at hand, where the plug-in Spec is biased upward by
    about its standard error and no interval around it keeps its nominal coverage (docs/methods.md, coverage table).

    Returns:
        ``{"point", "low", "high", "percentile_low", "percentile_high", "bias_sd", "samples" [B],
        "jackknife" [S]}``.
    """
    experts = np.asarray(experts)
    pos = np.asarray(pos, dtype=np.int64)
    T, L, k = experts.shape
    tokens, _ = metrics.pos_counts(pos, n_pos)
    spec = metrics.spec_from_counts(metrics.assignment_counts(experts, pos, n_experts, n_pos), k, tokens)
    point = metrics.global_spec(metrics.spec_by_pos(spec)[0], tags, tokens)
    keep = np.isin(np.asarray(tags, dtype=object), list(metrics.global_spec_tags(metrics.spec_by_pos(spec)[0], tags,
                                                                                 tokens)))
    W, inv = sentence_resample_weights(sentence, n_boot, seed)
    S = W.shape[1]
    Wf = W.astype(np.float64)
    pos_per_sentence = np.bincount(inv * n_pos + pos, minlength=S * n_pos).reshape(S, n_pos).astype(np.float64)
    wt = Wf @ pos_per_sentence                                   # [B, P] weighted tokens per POS
    jt = pos_per_sentence.sum(axis=0)[None, :] - pos_per_sentence  # [S, P] tokens without sentence s
    per_layer = max(1, S * n_experts * n_pos)
    lb = max(1, _CHUNK // per_layer)
    spec_b = np.empty((n_boot, L, n_pos))
    spec_j = np.empty((S, L, n_pos))
    for l0 in range(0, L, lb):
        l1 = min(L, l0 + lb)
        cs = sentence_counts(experts, pos, n_experts, n_pos, inv, S, slice(l0, l1)).reshape(S, -1).astype(np.float64)
        counts = (Wf @ cs).reshape(n_boot, l1 - l0, n_experts, n_pos)
        spec_b[:, l0:l1] = _spec_rows(counts, k, wt)
        del counts
        jack = (cs.sum(axis=0)[None, :] - cs).reshape(S, l1 - l0, n_experts, n_pos)
        spec_j[:, l0:l1] = _spec_rows(jack, k, jt)
        if progress is not None:
            progress("bootstrap spec", l1, L)
    samples = _global_over(spec_b, keep)
    jackknife = _global_over(spec_j, keep)
    low, high = bca_interval(samples, point, jackknife, level)
    plow, phigh = percentile_interval(samples, level)
    ok = samples[~np.isnan(samples)]
    sd = float(ok.std()) if ok.size > 1 else float("nan")
    bias_sd = (float(ok.mean()) - point) / sd if sd > 0 else float("nan")
    return {"point": point, "low": low, "high": high, "percentile_low": plow, "percentile_high": phigh,
            "bias_sd": bias_sd, "samples": samples, "jackknife": jackknife}


def bootstrap_accuracy(correct: np.ndarray, sentence: np.ndarray, *, n_boot: int = 200,
                       seed: int | np.random.SeedSequence = 0, level: float = 0.95) -> dict[str, object]:
    """Sentence-bootstrap BCa interval of a test accuracy without retraining: resample the sentences of
    the test tokens and recompute accuracy from the fixed predictions; the acceleration comes from the
    jackknife over those sentences (:func:`bca_interval`).

    Args:
        correct: ``[n_test]`` bool, prediction == truth.
        sentence: ``[n_test]`` sentence index of each test token.

    Returns:
        ``{"point", "low", "high", "percentile_low", "percentile_high", "samples" [B], "jackknife" [S]}``.
    """
    correct = np.asarray(correct, dtype=np.float64)
    if correct.size == 0:
        nan = float("nan")
        return {"point": nan, "low": nan, "high": nan, "percentile_low": nan, "percentile_high": nan,
                "samples": np.full(n_boot, np.nan), "jackknife": np.zeros(0)}
    W, inv = sentence_resample_weights(sentence, n_boot, seed)
    S = W.shape[1]
    hits = np.bincount(inv, weights=correct, minlength=S)
    sizes = np.bincount(inv, minlength=S).astype(np.float64)
    with np.errstate(invalid="ignore", divide="ignore"):
        samples = (W @ hits) / (W @ sizes)
        jackknife = (hits.sum() - hits) / (sizes.sum() - sizes)
    point = float(correct.mean())
    low, high = bca_interval(samples, point, jackknife, level)
    plow, phigh = percentile_interval(samples, level)
    return {"point": point, "low": low, "high": high, "percentile_low": plow, "percentile_high": phigh,
            "samples": samples, "jackknife": jackknife}
