"""What routing knows that the token does not: conditional probing, per-layer information, online code
length (MDL) and the structure of routing paths.

The paper's probes ask how well POS can be *predicted* from routes (accuracy). The questions here are
about *information*, in bits per token, measured with the same probes (:mod:`moe_tui.core.analysis.probe_engine`)
and calibrated so that their cross-entropy means something:

* **Conditional probing** (Hewitt, Ethayarajh, Liang & Jurafsky 2021; V-information, Xu et al. 2020).
  On the shared test split, the cross-entropy ``CE(x)`` of POS under a probe given features ``x``, in bits
  per token: (a) nothing (the training prior), (b) the token id, (c) the routes, (d) the token id and the
  routes, and with router logits (e) the logits, (f) the token id and the logits. The gain of the routes is
  ``CE(a) - CE(c)``; their gain *given the token* is ``CE(b) - CE(d)``: what the routes say about POS that
  the token's identity does not.
* **Per-layer information**: the same with one MoE layer's route (``CE`` of that layer alone, and its
  gain given the token).
* **Online code length** (Voita & Titov 2020): the bits needed to transmit POS (or the control task's
  labels) when a probe trained on the labels sent so far codes the next block.
* **Path structure**: mutual information between consecutive layers' top-1 experts; the number, entropy
  and concentration of whole top-1 paths. Plain counts, no probe.

Probes (all on the torch engine, :func:`moe_tui.core.analysis.probe_engine.fit_probes`):

* routes: the top-k expert ids of every (MoE layer, rank) one-hot, as ``onehot_top_k``; one layer's
  route: that layer's ``k`` ranks one-hot;
* token id: one-hot over the ids seen in the tokens the probe is fitted on, plus one *unseen* input
  shared by every other id. Ids seen once in the fitted tokens also train the unseen input: each such
  token is fitted a second time with the unseen input instead of its id (the expected value of the
  singleton-to-unknown replacement with probability 1/2 of Dyer et al. 2015). A held-out or test token
  whose id was not fitted reads the unseen input;
* logits: each router's raw logits, standardised per column on the fitted tokens (mean 0, sd 1); the
  columns of a layer whose router has no logits (NaN) are left out.

Calibration: the training split (seed 0's 2/3, stream ``split``) is cut into the tokens fitted (90 %) and
held-out tokens (10 %, stream ``info_valid``). Every probe is trained with scikit-learn's MLP settings and
stops when its held-out log-loss has not improved by ``tol`` for ``n_iter_no_change`` epochs; the weights of
its best held-out epoch predict. Every predicted distribution is mixed with the uniform one at weight
``EPS_MIX`` (a POS a probe never saw costs at most ``log2(P / EPS_MIX)`` bits instead of infinity; any other
token's cost moves by less than 2e-6 bits).

numpy only at import; torch is imported by the probe engine when probes train.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Callable, Sequence

import numpy as np

__all__ = [
    "EPS_MIX",
    "VALID_FRACTION",
    "MDL_FRACTIONS",
    "FEATURES",
    "GAINS",
    "ProbeCE",
    "holdout_split",
    "token_codes",
    "singleton_copies",
    "logit_features",
    "mixed_bits",
    "prior_bits",
    "conditional_probes",
    "gains",
    "block_ends",
    "online_codelength",
    "entropy_bits",
    "mutual_information_bits",
    "normalized_mi",
    "transitions",
    "path_stats",
]

Progress = Callable[[str, int, int], None]

#: Weight of the uniform distribution mixed into every predicted distribution.
EPS_MIX = 1e-6
#: Share of the training split held out for early stopping.
VALID_FRACTION = 0.1
#: Voita & Titov's (2020) block ends, as shares of the coded tokens: 0.1 % ... 50 %, 100 %.
MDL_FRACTIONS: tuple[float, ...] = (0.001, 0.002, 0.004, 0.008, 0.016, 0.032, 0.0625, 0.125, 0.25, 0.5, 1.0)

#: conditional.csv rows, in order: (a) ... (f); the last two only with router logits.
FEATURES: tuple[str, ...] = ("none", "token_id", "routes", "token_id+routes", "logits", "token_id+logits")
#: information.csv measures: name -> (features whose CE is subtracted from, features whose CE is subtracted).
GAINS: dict[str, tuple[str, str]] = {
    "gain_routes_bits": ("none", "routes"),
    "gain_routes_given_token_bits": ("token_id", "token_id+routes"),
    "gain_logits_bits": ("none", "logits"),
    "gain_logits_given_token_bits": ("token_id", "token_id+logits"),
    "gain_logits_over_routes_bits": ("routes", "logits"),
    "gain_logits_over_routes_given_token_bits": ("token_id+routes", "token_id+logits"),
}


@dataclass
class ProbeCE:
    """One predictor scored on the test tokens.

    Attributes:
        name: e.g. ``"routes"``, ``"token_id+layer:3"``.
        bits: ``[n_test]`` float64, ``-log2`` of the probability given to each test token's true label.
        correct: ``[n_test]`` bool, the most probable label is the true one.
        n_iter: epochs run (None for the prior); best_epoch: the epoch whose weights predict.
        converged: stopped by the held-out rule before ``max_iter`` (None for the prior).
    """

    name: str
    bits: np.ndarray
    correct: np.ndarray
    n_iter: int | None = None
    best_epoch: int | None = None
    converged: bool | None = None
    extra: dict = field(default_factory=dict)

    @property
    def cross_entropy_bits(self) -> float:
        return float(self.bits.mean()) if self.bits.size else float("nan")

    @property
    def accuracy(self) -> float:
        return float(self.correct.mean()) if self.correct.size else float("nan")


# --------------------------------------------------------------------------------------------------
# Features


def holdout_split(train_idx: np.ndarray, seed: int | np.random.SeedSequence,
                  fraction: float = VALID_FRACTION) -> tuple[np.ndarray, np.ndarray]:
    """Cut ``train_idx`` into ``(fit_idx, valid_idx)``, both sorted: ``round(fraction * n)`` tokens held out
    (at least one when there are two or more), drawn by ``default_rng(seed)``."""
    tr = np.asarray(train_idx, dtype=np.int64)
    n = len(tr)
    n_valid = int(round(n * fraction))
    if n >= 2:
        n_valid = min(max(n_valid, 1), n - 1)
    else:
        n_valid = 0
    perm = np.random.default_rng(seed).permutation(n)
    return np.sort(tr[perm[n_valid:]]), np.sort(tr[perm[:n_valid]])


def token_codes(token_ids: np.ndarray, fit_idx: np.ndarray) -> tuple[np.ndarray, int]:
    """``([T] codes, n_codes)``: ids seen in ``fit_idx`` numbered ``0..V-1`` (ascending id), every other id
    coded ``V`` (the unseen input); ``n_codes = V + 1``."""
    ids = np.asarray(token_ids, dtype=np.int64)
    seen = np.unique(ids[np.asarray(fit_idx, dtype=np.intp)])
    pos = np.searchsorted(seen, ids)
    hit = (pos < len(seen)) & (seen[np.minimum(pos, max(len(seen) - 1, 0))] == ids) if len(seen) else \
        np.zeros(len(ids), dtype=bool)
    return np.where(hit, pos, len(seen)).astype(np.int64), len(seen) + 1


def singleton_copies(token_ids: np.ndarray, fit_idx: np.ndarray) -> np.ndarray:
    """The tokens of ``fit_idx`` whose id occurs exactly once there (sorted): fitted a second time with the
    unseen input (see the module docstring)."""
    ids = np.asarray(token_ids, dtype=np.int64)
    fit = np.asarray(fit_idx, dtype=np.int64)
    uniq, inv, counts = np.unique(ids[fit], return_inverse=True, return_counts=True)
    return np.sort(fit[counts[inv.reshape(-1)] == 1])


def logit_features(logits: np.ndarray, fit_idx: np.ndarray) -> np.ndarray:
    """``[T, L, C]`` router logits -> ``[T, D]`` float32 standardised on ``fit_idx`` (per column: minus the
    mean, over the standard deviation; a constant column is only centred). Columns that are NaN for every
    token (a layer whose router has no logits) are dropped; other non-finite values become the column's mean
    (0 after standardising)."""
    x = np.asarray(logits, dtype=np.float64)
    x = x.reshape(x.shape[0], -1)
    keep = ~np.all(np.isnan(x), axis=0)
    x = x[:, keep]
    fit = np.asarray(fit_idx, dtype=np.intp)
    finite = np.isfinite(x)
    xf = np.where(finite, x, np.nan)[fit]
    with np.errstate(invalid="ignore"), np.testing.suppress_warnings() as sup:
        sup.filter(RuntimeWarning)
        mean = np.nanmean(xf, axis=0) if len(fit) else np.zeros(x.shape[1])
        sd = np.nanstd(xf, axis=0) if len(fit) else np.ones(x.shape[1])
    mean = np.nan_to_num(mean)
    sd = np.where(np.isfinite(sd) & (sd > 0), sd, 1.0)
    z = (np.where(finite, x, mean) - mean) / sd
    return z.astype(np.float32)


def mixed_bits(log_proba: np.ndarray, classes: np.ndarray, y: np.ndarray, n_labels: int,
               eps: float = EPS_MIX) -> np.ndarray:
    """``[n]`` bits ``-log2((1 - eps) p(y) + eps / n_labels)`` from a probe's ``[n, C]`` natural-log
    probabilities over ``classes`` (a label outside ``classes`` has ``p = 0``)."""
    y = np.asarray(y, dtype=np.int64)
    classes = np.asarray(classes, dtype=np.int64)
    col = np.searchsorted(classes, y).clip(0, max(len(classes) - 1, 0))
    inside = (len(classes) > 0) & (classes[col] == y) if len(classes) else np.zeros(len(y), dtype=bool)
    p = np.where(inside, np.exp(np.asarray(log_proba)[np.arange(len(y)), col]), 0.0) if len(y) else np.zeros(0)
    return -np.log2((1.0 - eps) * p + eps / n_labels)


def prior_bits(labels: np.ndarray, n_labels: int, fit_idx: np.ndarray, test_idx: np.ndarray,
               eps: float = EPS_MIX) -> ProbeCE:
    """(a) The training prior: each test token coded with the label frequencies of ``fit_idx``."""
    y = np.asarray(labels, dtype=np.int64)
    freq = np.bincount(y[np.asarray(fit_idx, dtype=np.intp)], minlength=n_labels).astype(np.float64)
    freq = freq / freq.sum() if freq.sum() else np.full(n_labels, 1.0 / n_labels)
    yt = y[np.asarray(test_idx, dtype=np.intp)]
    bits = -np.log2((1.0 - eps) * freq[yt] + eps / n_labels)
    return ProbeCE("none", bits, yt == int(np.argmax(freq)))


# --------------------------------------------------------------------------------------------------
# Conditional probing


def _probe_set(experts: np.ndarray, token_ids: np.ndarray, fit_idx: np.ndarray,
               logits: np.ndarray | None, n_experts: int, *, with_token: bool) -> dict:
    """The shared id matrix and per-column category counts of one training call (see :func:`conditional_probes`):
    columns ``0 .. L*k-1`` the routes, column ``L*k`` the token code; with ``with_token`` the singleton
    copies are appended as extra rows (indices ``T ..``) that read the unseen input."""
    T, L, k = experts.shape
    codes, n_codes = token_codes(token_ids, fit_idx)
    ids = np.concatenate([experts.reshape(T, L * k).astype(np.int64), codes[:, None]], axis=1)
    ncat = [n_experts] * (L * k) + [n_codes]
    extra = singleton_copies(token_ids, fit_idx) if with_token else np.zeros(0, dtype=np.int64)
    dense = logit_features(logits, fit_idx) if logits is not None else None
    if len(extra):
        copy = ids[extra].copy()
        copy[:, L * k] = n_codes - 1
        ids = np.concatenate([ids, copy])
        if dense is not None:
            dense = np.concatenate([dense, dense[extra]])
    return {"ids": ids, "ncat": ncat, "dense": dense, "extra": extra, "tok": L * k}


def conditional_probes(
    experts: np.ndarray,
    pos: np.ndarray,
    n_pos: int,
    token_ids: np.ndarray,
    split: tuple[np.ndarray, np.ndarray],
    valid_idx: np.ndarray,
    *,
    logits: np.ndarray | None = None,
    n_experts: int | None = None,
    per_layer: bool = True,
    init_seed: int = 0,
    shuffle_seed: int = 0,
    config=None,
    device: str = "auto",
    dtype: str = "float32",
    progress: Progress | None = None,
) -> dict[str, ProbeCE]:
    """Train and score the conditional probes (a)-(f) and, with ``per_layer``, each MoE layer's probes.

    Args:
        experts: ``[T, L, k]`` expert ids; ``pos [T]`` POS indices; ``n_pos`` = P; ``token_ids [T]``.
        split: ``(train_idx, test_idx)``, the shared split; ``valid_idx``: the held-out part of ``train_idx``
            (:func:`holdout_split`); the probes are fitted on the rest of ``train_idx``.
        logits: ``[T, L, C]`` router logits, or None (then no (e), (f)).
        n_experts: ``N`` (default ``experts.max() + 1``).
        init_seed / shuffle_seed: the MLPs' initial weights and minibatch order.
        config: :class:`moe_tui.core.analysis.probe_engine.MLPConfig` (early stopping on the held-out tokens is added).

    Returns:
        ``{name: ProbeCE}``: names of :data:`FEATURES` (``logits`` ones with logits), and with ``per_layer``
        ``"layer:<i>"`` and ``"token_id+layer:<i>"`` for MoE layer position ``i``.
    """
    from moe_tui.core.analysis.probe_engine import MLPConfig, ProbeSpec, fit_probes

    experts = np.asarray(experts)
    y = np.asarray(pos, dtype=np.int64)
    T, L, k = experts.shape
    tr, te = (np.asarray(s, dtype=np.int64) for s in split)
    va = np.asarray(valid_idx, dtype=np.int64)
    fit = np.setdiff1d(tr, va)
    N = int(n_experts) if n_experts is not None else (int(experts.max()) + 1 if experts.size else 1)
    cfg = config or MLPConfig(max_iter=500)
    out: dict[str, ProbeCE] = {"none": prior_bits(y, n_pos, fit, te)}
    route_cols = tuple(range(L * k))

    def layer_cols(i: int) -> tuple[int, ...]:
        return tuple(range(i * k, (i + 1) * k))

    calls = []
    for with_token in (False, True):
        ps = _probe_set(experts, token_ids, fit, logits, N, with_token=with_token)
        D = 0 if ps["dense"] is None else ps["dense"].shape[1]
        tok = (ps["tok"],) if with_token else ()
        prefix = "token_id+" if with_token else ""
        specs = []
        if with_token:
            specs.append(ProbeSpec("token_id", tok, onehot=True, init_seed=init_seed))
        specs.append(ProbeSpec(prefix + "routes", tok + route_cols, onehot=True, init_seed=init_seed))
        if D:
            specs.append(ProbeSpec(prefix + "logits", tok, onehot=True, init_seed=init_seed, dense=tuple(range(D))))
        if per_layer:
            specs += [ProbeSpec(f"{prefix}layer:{i}", tok + layer_cols(i), onehot=True, init_seed=init_seed)
                      for i in range(L)]
        calls.append((ps, specs, with_token))
    from dataclasses import replace

    cfg = replace(cfg, early_stopping=False)
    for ci, (ps, specs, _) in enumerate(calls):
        n_rows = ps["ids"].shape[0]
        labels = np.concatenate([y, y[ps["extra"]]]) if n_rows > T else y
        train_rows = np.concatenate([fit, np.arange(T, n_rows)]) if n_rows > T else fit
        fits = fit_probes(ps["ids"], [labels], specs, train_rows, te, n_categories=ps["ncat"], config=cfg,
                          engine="torch", shuffle_seed=shuffle_seed, device=device, dtype=dtype, progress=progress,
                          stage=f"information probes {ci + 1}/2", dense=ps["dense"], valid_idx=va, proba=True)
        for sp, f in zip(specs, fits):
            bits = mixed_bits(f.log_proba, f.classes, y[te], n_pos)
            out[sp.name] = ProbeCE(sp.name, bits, f.y_pred == y[te], f.n_iter, f.best_epoch, f.converged)
    return out


def gains(results: dict[str, ProbeCE], pos_test: np.ndarray, n_pos: int) -> dict[str, tuple[float, np.ndarray]]:
    """Each measure of :data:`GAINS` whose two probes exist: ``(overall, [P] per POS)`` in bits per token,
    the mean over test tokens (of that POS) of ``bits(first) - bits(second)``; NaN for a POS with no test token."""
    pos_test = np.asarray(pos_test, dtype=np.int64)
    n = np.bincount(pos_test, minlength=n_pos).astype(np.float64)
    out = {}
    for name, (a, b) in GAINS.items():
        if a in results and b in results:
            d = results[a].bits - results[b].bits
            s = np.bincount(pos_test, weights=d, minlength=n_pos)
            with np.errstate(invalid="ignore", divide="ignore"):
                per = np.where(n > 0, s / np.where(n > 0, n, 1.0), np.nan)
            out[name] = (float(d.mean()) if d.size else float("nan"), per)
    return out


# --------------------------------------------------------------------------------------------------
# Online code length (MDL)


def block_ends(n: int, fractions: Sequence[float] = MDL_FRACTIONS) -> list[int]:
    """Voita & Titov's block ends ``t_1 < t_2 < ... < t_S = n`` for ``n`` tokens: ``round(f * n)`` for each
    fraction, at least 1, duplicates dropped."""
    ends = sorted({min(n, max(1, int(round(f * n)))) for f in fractions} | {n}) if n else []
    return ends


def online_codelength(
    experts: np.ndarray,
    labels: Sequence[np.ndarray],
    n_labels: int,
    token_ids: np.ndarray,
    order: np.ndarray,
    *,
    logits: np.ndarray | None = None,
    n_experts: int | None = None,
    fractions: Sequence[float] = MDL_FRACTIONS,
    init_seed: int = 0,
    shuffle_seed: int = 0,
    config=None,
    device: str = "auto",
    dtype: str = "float32",
    progress: Progress | None = None,
) -> dict[str, dict]:
    """Online code length (Voita & Titov 2020) of labels given features, in bits.

    The tokens are sent in ``order``. The first block (``t_1`` tokens, :func:`block_ends`) is sent with the
    uniform code, ``log2(n_labels)`` bits each; for each next block ``(t_i, t_{i+1}]`` a probe is trained on
    the first ``t_i`` tokens (every tenth of them, positions 9, 19, ..., held out for early stopping) and
    each token of the block costs ``-log2 p(label)`` under it (mixed with the uniform at :data:`EPS_MIX`).

    Codes: ``routes`` (POS given the routes, ``labels[0]``), ``control_task`` (``labels[1]`` given the
    routes, when given), ``token_id`` (POS given the token id), ``logits`` (POS given the logits, with logits).

    Returns:
        ``{code: {"codelength_bits", "uniform_codelength_bits", "compression", "blocks": [t_i...]}}``;
        ``compression`` = uniform / online.
    """
    from dataclasses import replace

    from moe_tui.core.analysis.probe_engine import MLPConfig, ProbeSpec, fit_probes

    experts = np.asarray(experts)
    T, L, k = experts.shape
    order = np.asarray(order, dtype=np.int64)
    n = len(order)
    N = int(n_experts) if n_experts is not None else (int(experts.max()) + 1 if experts.size else 1)
    ys = [np.asarray(lab, dtype=np.int64) for lab in labels]
    cfg = replace(config or MLPConfig(max_iter=500), early_stopping=False)
    ends = block_ends(n, fractions)
    codes = ["routes"] + (["control_task"] if len(ys) > 1 else []) + ["token_id"] + \
        (["logits"] if logits is not None else [])
    target = {"routes": 0, "control_task": 1, "token_id": 0, "logits": 0}
    bits = {c: float(ends[0] * math.log2(n_labels)) if ends else 0.0 for c in codes}
    route_cols = tuple(range(L * k))
    for bi in range(len(ends) - 1):
        if progress is not None:
            progress("online code length", bi, len(ends) - 1)
        seen = order[:ends[bi]]
        block = order[ends[bi]:ends[bi + 1]]
        held = np.arange(len(seen)) % 10 == 9
        fit, va = np.sort(seen[~held]), np.sort(seen[held])
        valid = va if len(va) else None
        for with_token in (False, True):
            ps = _probe_set(experts, token_ids, fit, logits, N, with_token=with_token)
            D = 0 if ps["dense"] is None else ps["dense"].shape[1]
            if with_token:
                specs = [ProbeSpec("token_id", (ps["tok"],), onehot=True, init_seed=init_seed)]
            else:
                specs = [ProbeSpec("routes", route_cols, onehot=True, init_seed=init_seed)]
                if len(ys) > 1:
                    specs.append(ProbeSpec("control_task", route_cols, onehot=True, labels=1, init_seed=init_seed))
                if D:
                    specs.append(ProbeSpec("logits", (), init_seed=init_seed, dense=tuple(range(D))))
            n_rows = ps["ids"].shape[0]
            lab = [np.concatenate([y, y[ps["extra"]]]) for y in ys] if n_rows > T else ys
            train_rows = np.concatenate([fit, np.arange(T, n_rows)]) if n_rows > T else fit
            # single-token blocks still train: scikit-learn's tol rule on the training loss without held-out tokens
            fits = fit_probes(ps["ids"], lab, specs, train_rows, block, n_categories=ps["ncat"], config=cfg,
                              engine="torch", shuffle_seed=shuffle_seed, device=device, dtype=dtype,
                              dense=ps["dense"], valid_idx=valid, proba=True,
                              stage=f"online code length, block {bi + 2} of {len(ends)}")
            for sp, f in zip(specs, fits):
                y = ys[target[sp.name]]
                bits[sp.name] += float(mixed_bits(f.log_proba, f.classes, y[block], n_labels).sum())
    if progress is not None:
        progress("online code length", len(ends) - 1, len(ends) - 1)
    uniform = n * math.log2(n_labels) if n_labels > 0 else 0.0
    return {c: {"codelength_bits": bits[c], "uniform_codelength_bits": uniform,
                "compression": uniform / bits[c] if bits[c] > 0 else float("nan"), "blocks": list(ends)}
            for c in codes}


# --------------------------------------------------------------------------------------------------
# Path structure (counts only)


def entropy_bits(counts: np.ndarray) -> float:
    """Plug-in entropy in bits of a count vector (zeros ignored); 0 for an empty one."""
    c = np.asarray(counts, dtype=np.float64).reshape(-1)
    c = c[c > 0]
    if not c.size:
        return 0.0
    p = c / c.sum()
    return float(-(p * np.log2(p)).sum())


def mutual_information_bits(x: np.ndarray, y: np.ndarray, n_x: int | None = None, n_y: int | None = None) -> float:
    """Plug-in mutual information ``I(X; Y) = H(X) + H(Y) - H(X, Y)`` in bits of two ``[T]`` non-negative
    int arrays (the empirical joint distribution of the pairs)."""
    x = np.asarray(x, dtype=np.int64)
    y = np.asarray(y, dtype=np.int64)
    if not x.size:
        return 0.0
    nx = int(n_x) if n_x is not None else int(x.max()) + 1
    ny = int(n_y) if n_y is not None else int(y.max()) + 1
    joint = np.bincount(x * ny + y, minlength=nx * ny).reshape(nx, ny)
    mi = entropy_bits(joint.sum(1)) + entropy_bits(joint.sum(0)) - entropy_bits(joint)
    return max(0.0, mi)


def normalized_mi(x: np.ndarray, y: np.ndarray, n_x: int | None = None, n_y: int | None = None) -> float | None:
    """``I(X; Y) / ((H(X) + H(Y)) / 2)`` (the arithmetic normalisation, scikit-learn's default): 0 for
    independent, 1 for a one-to-one relation; None when both entropies are 0 (undefined)."""
    x = np.asarray(x, dtype=np.int64)
    y = np.asarray(y, dtype=np.int64)
    if not x.size:
        return None
    hx = entropy_bits(np.bincount(x))
    hy = entropy_bits(np.bincount(y))
    if hx + hy == 0:
        return None
    return mutual_information_bits(x, y, n_x, n_y) / ((hx + hy) / 2.0)


def transitions(experts: np.ndarray, n_experts: int | None = None) -> list[tuple[int, int, float, float | None]]:
    """For consecutive MoE layer positions ``(i, i+1)``: ``(i, i+1, I(top1_i; top1_{i+1}) bits, normalised)``."""
    experts = np.asarray(experts)
    T, L, _ = experts.shape
    N = int(n_experts) if n_experts is not None else (int(experts.max()) + 1 if experts.size else 1)
    top = experts[:, :, 0].astype(np.int64)
    return [(i, i + 1, mutual_information_bits(top[:, i], top[:, i + 1], N, N), normalized_mi(top[:, i], top[:, i + 1], N, N))
            for i in range(L - 1)]


def path_stats(experts: np.ndarray, top: int = 10) -> dict[str, float]:
    """Whole top-1 paths (one expert id per MoE layer): ``tokens``, ``distinct_paths``, ``path_entropy_bits``
    (plug-in; at most ``log2(tokens)``), ``top<top>_path_share`` (share of tokens on the ``top`` most common
    paths)."""
    experts = np.asarray(experts)
    T = experts.shape[0]
    if T == 0:
        return {"tokens": 0, "distinct_paths": 0, "path_entropy_bits": 0.0, f"top{top}_path_share": float("nan")}
    _, counts = np.unique(experts[:, :, 0].astype(np.int64), axis=0, return_counts=True)
    share = float(np.sort(counts)[::-1][:top].sum() / T)
    return {"tokens": int(T), "distinct_paths": int(len(counts)), "path_entropy_bits": entropy_bits(counts),
            f"top{top}_path_share": share}
