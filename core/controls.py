"""Controls beyond the paper (arXiv 2412.16971): is the POS signal in routes real, and is it more
than word identity?

* :func:`spec_permutation_null` -- Spec under shuffled POS labels (routes fixed), per (layer, POS);
* :func:`token_identity_probe` -- POS from the token id alone (most frequent POS per token id);
* :func:`control_task` -- Hewitt & Liang (2019) control task: each word form gets a fixed random
  POS; selectivity = real probe accuracy - control probe accuracy;
* :func:`ambiguous_forms` -- probe vs form baseline on forms seen with >= 2 POS, and mean Hamming
  distance of top-1 paths for same form / same POS vs same form / different POS;
* :func:`bootstrap_spec`, :func:`bootstrap_accuracy` -- sentence-level bootstrap intervals.

Array conventions as in :mod:`moe_tui.core.metrics`: ``experts [T, L, k]``, ``pos [T]``, ``forms [T]`` (word-form
keys: the integer ids of ``RunView.form_ids``, or strings; used only as keys), ``sentence [T]``, ``token_ids [T]``.
Every random step takes an explicit seed.
"""

from __future__ import annotations

from typing import Callable, Sequence

import numpy as np

from moe_tui.core import metrics
from moe_tui.core.probe import ProbeResult, form_baseline, run_probe, split_indices

__all__ = [
    "spec_permutation_null",
    "token_identity_probe",
    "control_labels",
    "control_task",
    "ambiguous_mask",
    "hamming_same_form",
    "ambiguous_forms",
    "sentence_resample_weights",
    "permuted_counts",
    "sentence_counts",
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
        percentile of the null), ``excess = spec - null_mean``, and ``samples`` ``[R, L, P]``.
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
    return {"spec": spec, "null_mean": null_mean, "null_p95": null_p95, "excess": spec - null_mean, "samples": null}


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


def ambiguous_mask(forms: np.ndarray, pos: np.ndarray, n_pos: int) -> np.ndarray:
    """``[T]`` bool: the token's form is seen with >= 2 distinct POS in the data passed."""
    fid, inv = np.unique(np.asarray(forms), return_inverse=True)
    inv = inv.reshape(-1).astype(np.intp)
    table = np.bincount(inv * n_pos + np.asarray(pos, dtype=np.intp), minlength=len(fid) * n_pos)
    n_tags = (table.reshape(len(fid), n_pos) > 0).sum(axis=1)
    return n_tags[inv] >= 2


def _pairs(c: np.ndarray) -> float:
    c = c.astype(np.float64)
    return float((c * (c - 1.0) / 2.0).sum())


def hamming_same_form(top1: np.ndarray, forms: np.ndarray, pos: np.ndarray, n_pos: int, n_experts: int,
                      mask: np.ndarray | None = None) -> dict[str, float]:
    """Exact mean Hamming distance (number of MoE layers whose top-1 expert differs) over all
    token pairs sharing a form, split into same-POS and different-POS pairs.

    Counted, not enumerated: the pairs agreeing at layer ``l`` in a group are
    ``sum_e c_e (c_e - 1) / 2``; a loop runs over layers only.

    Args:
        top1: ``[T, L]`` top-1 expert ids.
        mask: optional ``[T]`` bool restricting the tokens (e.g. :func:`ambiguous_mask`).

    Returns:
        ``{"same_pos": mean, "diff_pos": mean, "pairs_same_pos": n, "pairs_diff_pos": n}``
        (means NaN when there is no pair).
    """
    top1 = np.asarray(top1)
    pos = np.asarray(pos, dtype=np.intp)
    forms = np.asarray(forms)
    if mask is not None:
        top1, pos, forms = top1[mask], pos[mask], forms[mask]
    L = top1.shape[1]
    if len(pos) == 0:
        return {"same_pos": float("nan"), "diff_pos": float("nan"), "pairs_same_pos": 0.0, "pairs_diff_pos": 0.0}
    uniq, f = np.unique(forms, return_inverse=True)
    f = f.reshape(-1).astype(np.intp)
    F = len(uniq)
    fp = f * n_pos + pos
    pairs_form = _pairs(np.bincount(f, minlength=F))
    pairs_sp = _pairs(np.bincount(fp, minlength=F * n_pos))
    pairs_dp = pairs_form - pairs_sp
    dist_sp = 0.0
    dist_dp = 0.0
    for layer in range(L):
        e = top1[:, layer].astype(np.intp)
        agree_form = _pairs(np.bincount(f * n_experts + e, minlength=F * n_experts))
        agree_sp = _pairs(np.bincount(fp * n_experts + e, minlength=F * n_pos * n_experts))
        dist_sp += pairs_sp - agree_sp
        dist_dp += pairs_dp - (agree_form - agree_sp)
    return {
        "same_pos": dist_sp / pairs_sp if pairs_sp else float("nan"),
        "diff_pos": dist_dp / pairs_dp if pairs_dp else float("nan"),
        "pairs_same_pos": pairs_sp,
        "pairs_diff_pos": pairs_dp,
    }


def ambiguous_forms(
    experts: np.ndarray,
    forms: np.ndarray,
    pos: np.ndarray,
    n_pos: int,
    n_experts: int,
    *,
    probe: ProbeResult,
    baseline: ProbeResult | None = None,
    split: tuple[np.ndarray, np.ndarray] | None = None,
) -> dict[str, float]:
    """Forms seen with >= 2 POS (over all tokens passed): routing-probe accuracy vs form-baseline
    accuracy on those test tokens, and Hamming distances of their top-1 paths
    (:func:`hamming_same_form`).

    Returns ``{"ambiguous_test_tokens", "ambiguous_probe", "ambiguous_baseline", "hamming_same_pos",
    "hamming_diff_pos"}``.
    """
    amb = ambiguous_mask(forms, pos, n_pos)
    te = probe.test_idx
    if baseline is None:
        if split is None:
            raise ValueError("ambiguous_forms needs the baseline or the split")
        baseline = form_baseline(forms, pos, n_pos, split[0], split[1])
    on = amb[te]
    ham = hamming_same_form(np.asarray(experts)[:, :, 0], forms, pos, n_pos, n_experts, mask=amb)
    nan = float("nan")
    return {
        "ambiguous_test_tokens": float(on.sum()),
        "ambiguous_probe": float(probe.correct[on].mean()) if on.any() else nan,
        "ambiguous_baseline": float(baseline.correct[amb[baseline.test_idx]].mean()) if on.any() else nan,
        "hamming_same_pos": ham["same_pos"],
        "hamming_diff_pos": ham["diff_pos"],
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


def _interval(samples: np.ndarray, level: float) -> tuple[float, float]:
    s = np.asarray(samples, dtype=np.float64)
    s = s[~np.isnan(s)]
    if not s.size:
        return float("nan"), float("nan")
    a = (1.0 - level) / 2.0 * 100.0
    return float(np.percentile(s, a)), float(np.percentile(s, 100.0 - a))


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
    """Sentence-bootstrap interval of the global Spec of Table 1 (percentile method).

    Each replicate reweights the tokens by their sentence's draw count (:func:`sentence_resample_weights`)
    and recomputes the weighted assignment counts, Spec[l, p], the per-POS means and the global mean
    (X, SYM excluded). Vectorised: the counts of replicate ``b`` are ``W[b] @ counts per sentence``, one
    matrix product for all replicates (blocks of MoE layers keep the temporaries small).

    Returns ``{"point", "low", "high", "samples" [B]}``.
    """
    experts = np.asarray(experts)
    pos = np.asarray(pos, dtype=np.int64)
    T, L, k = experts.shape
    tokens, _ = metrics.pos_counts(pos, n_pos)
    spec = metrics.spec_from_counts(metrics.assignment_counts(experts, pos, n_experts, n_pos), k, tokens)
    point = metrics.global_spec(metrics.spec_by_pos(spec)[0], tags, tokens)
    W, inv = sentence_resample_weights(sentence, n_boot, seed)
    S = W.shape[1]
    Wf = W.astype(np.float64)
    pos_per_sentence = np.bincount(inv * n_pos + pos, minlength=S * n_pos).reshape(S, n_pos).astype(np.float64)
    wt = Wf @ pos_per_sentence                                   # [B, P] weighted tokens per POS
    per_layer = max(1, S * n_experts * n_pos)
    lb = max(1, _CHUNK // per_layer)
    spec_b = np.empty((n_boot, L, n_pos))
    for l0 in range(0, L, lb):
        l1 = min(L, l0 + lb)
        cs = sentence_counts(experts, pos, n_experts, n_pos, inv, S, slice(l0, l1)).reshape(S, -1).astype(np.float64)
        counts = (Wf @ cs).reshape(n_boot, l1 - l0, n_experts, n_pos)
        spec_b[:, l0:l1] = _spec_rows(counts, k, wt)
        if progress is not None:
            progress("bootstrap spec", l1, L)
    samples = np.array([metrics.global_spec(metrics.spec_by_pos(spec_b[b])[0], tags, wt[b]) for b in range(n_boot)])
    low, high = _interval(samples, level)
    return {"point": point, "low": low, "high": high, "samples": samples}


def bootstrap_accuracy(correct: np.ndarray, sentence: np.ndarray, *, n_boot: int = 200, seed: int = 0,
                       level: float = 0.95) -> dict[str, object]:
    """Sentence-bootstrap interval of a test accuracy without retraining: resample the sentences of
    the test tokens and recompute accuracy from the fixed predictions.

    Args:
        correct: ``[n_test]`` bool, prediction == truth.
        sentence: ``[n_test]`` sentence index of each test token.

    Returns ``{"point", "low", "high", "samples" [B]}``.
    """
    correct = np.asarray(correct, dtype=np.float64)
    if correct.size == 0:
        nan = float("nan")
        return {"point": nan, "low": nan, "high": nan, "samples": np.full(n_boot, np.nan)}
    W, inv = sentence_resample_weights(sentence, n_boot, seed)
    S = W.shape[1]
    hits = np.bincount(inv, weights=correct, minlength=S)
    sizes = np.bincount(inv, minlength=S).astype(np.float64)
    with np.errstate(invalid="ignore", divide="ignore"):
        samples = (W @ hits) / (W @ sizes)
    low, high = _interval(samples, level)
    return {"point": float(correct.mean()), "low": low, "high": high, "samples": samples}

