"""POS probes on routing paths (paper Table 1 "MLP" columns, Fig. 3 ablation, Fig. 2 t-SNE).

A probe predicts a token's POS from the experts it was routed to. As in the paper (arXiv
2412.16971, Sec. 4): scikit-learn ``MLPClassifier`` with default parameters except a raised
``max_iter`` and a fixed ``random_state``, trained on a random 2/3 of the tokens and scored on the
remaining 1/3 (token-level split, fixed seed).

Feature variants (``experts`` is ``[T, L, k]``, rank 0 = top-1):

* ``top_k``  -- the flattened expert-id vector, layer by layer, ranks in weight order: ``L*k`` ids;
* ``top_1``  -- the top-1 expert id of each layer: ``L`` ids;
* ``onehot_top_k`` -- the ``top_k`` ids as categories (sparse ``OneHotEncoder``, one block of ``N``
  columns per (layer, rank)).

The word-form baseline predicts the most frequent POS of the word form in the training split
(unseen forms: the most frequent POS overall) and is scored on the same test tokens.

scikit-learn is imported inside the functions that need it.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable, Sequence

import numpy as np

__all__ = [
    "ProbeResult",
    "split_indices",
    "route_features",
    "confusion",
    "make_result",
    "most_frequent_predict",
    "form_baseline",
    "run_probe",
    "ablation",
    "tsne_embedding",
    "VARIANTS",
]

VARIANTS: tuple[str, ...] = ("top_k", "top_1", "onehot_top_k", "onehot_top_1")

Progress = Callable[[str, int, int], None]


@dataclass
class ProbeResult:
    """Outcome of one probe or baseline on the shared test split.

    Attributes:
        variant: e.g. ``"top_k"``, ``"top_1"``, ``"onehot_top_k"``, ``"baseline"``.
        accuracy: share of test tokens predicted correctly.
        train_tokens / test_tokens: split sizes.
        test_idx: ``[n_test]`` token indices of the test split.
        y_true / y_pred: ``[n_test]`` POS indices.
        confusion: ``[P, P]`` int64, rows = true POS, columns = predicted POS.
        precision / recall: ``[P]`` float64 (NaN where undefined: no prediction / no true token).
        n_iter: optimiser iterations (None for count-based predictors).
    """

    variant: str
    accuracy: float
    train_tokens: int
    test_tokens: int
    test_idx: np.ndarray
    y_true: np.ndarray
    y_pred: np.ndarray
    confusion: np.ndarray
    precision: np.ndarray
    recall: np.ndarray
    n_iter: int | None = None
    extra: dict = field(default_factory=dict)

    @property
    def correct(self) -> np.ndarray:
        """``[n_test]`` bool, prediction == truth."""
        return self.y_true == self.y_pred


def split_indices(n_tokens: int, *, test_size: float = 1.0 / 3.0, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Random token-level split (paper: 2/3 train, 1/3 test, fixed seed).

    Returns ``(train_idx, test_idx)``, both sorted int64 arrays; ``n_test = round(n * test_size)``.
    """
    rng = np.random.default_rng(seed)
    perm = rng.permutation(n_tokens)
    n_test = int(round(n_tokens * test_size))
    return np.sort(perm[n_test:]), np.sort(perm[:n_test])


def route_features(experts: np.ndarray, variant: str = "top_k", layers: Sequence[int] | np.ndarray | None = None) -> np.ndarray:
    """Dense id features from routes (paper Sec. 4 probe input).

    Args:
        experts: ``[T, L, k]`` int expert ids.
        variant: ``"top_k"`` (``L*k`` ids, layer-major, ranks in weight order) or ``"top_1"``
            (``L`` ids); a leading ``"onehot_"`` is ignored here (see :func:`run_probe`).
        layers: optional layer positions to keep (ablation, Fig. 3).

    Returns:
        ``[T, F]`` int array.
    """
    experts = np.asarray(experts)
    if layers is not None:
        experts = experts[:, np.asarray(layers, dtype=np.intp), :]
    base = variant.removeprefix("onehot_")
    if base == "top_k":
        return experts.reshape(experts.shape[0], -1)
    if base == "top_1":
        return experts[:, :, 0]
    raise ValueError(f"unknown probe variant {variant!r}")


def confusion(y_true: np.ndarray, y_pred: np.ndarray, n_pos: int) -> np.ndarray:
    """``[P, P]`` confusion counts (rows true, columns predicted), one bincount."""
    y_true = np.asarray(y_true, dtype=np.intp)
    y_pred = np.asarray(y_pred, dtype=np.intp)
    return np.bincount(y_true * n_pos + y_pred, minlength=n_pos * n_pos).reshape(n_pos, n_pos).astype(np.int64)


def make_result(variant: str, y_true: np.ndarray, y_pred: np.ndarray, n_pos: int, train_tokens: int,
                test_idx: np.ndarray, n_iter: int | None = None) -> ProbeResult:
    """Accuracy, per-class precision/recall and confusion matrix from test predictions."""
    cm = confusion(y_true, y_pred, n_pos)
    tp = np.diag(cm).astype(np.float64)
    with np.errstate(invalid="ignore", divide="ignore"):
        predicted = cm.sum(axis=0)
        actual = cm.sum(axis=1)
        precision = np.where(predicted > 0, tp / np.where(predicted > 0, predicted, 1), np.nan)
        recall = np.where(actual > 0, tp / np.where(actual > 0, actual, 1), np.nan)
    n = len(y_true)
    acc = float(np.mean(np.asarray(y_true) == np.asarray(y_pred))) if n else float("nan")
    return ProbeResult(variant, acc, int(train_tokens), int(n), np.asarray(test_idx), np.asarray(y_true),
                       np.asarray(y_pred), cm, precision, recall, n_iter)


def _factorize(keys: np.ndarray) -> tuple[np.ndarray, int]:
    keys = np.asarray(keys)
    uniq, inv = np.unique(keys, return_inverse=True)
    return inv.reshape(-1).astype(np.intp), len(uniq)


def most_frequent_predict(keys: np.ndarray, labels: np.ndarray, n_labels: int, train_idx: np.ndarray,
                          test_idx: np.ndarray) -> np.ndarray:
    """Predict, for each test token, the most frequent training label of its key (word form,
    token id, ...); keys unseen in training get the most frequent training label overall. Ties go
    to the lowest label index. Vectorised (one bincount over ``key*P + label``).

    Returns ``[n_test]`` int64 predictions.
    """
    kid, n_keys = _factorize(keys)
    labels = np.asarray(labels, dtype=np.intp)
    tr = np.asarray(train_idx, dtype=np.intp)
    te = np.asarray(test_idx, dtype=np.intp)
    table = np.bincount(kid[tr] * n_labels + labels[tr], minlength=n_keys * n_labels).reshape(n_keys, n_labels)
    overall = int(np.argmax(np.bincount(labels[tr], minlength=n_labels))) if tr.size else 0
    best = np.argmax(table, axis=1)
    seen = table.sum(axis=1) > 0
    best = np.where(seen, best, overall)
    return best[kid[te]].astype(np.int64)


def form_baseline(forms: np.ndarray, pos: np.ndarray, n_pos: int, train_idx: np.ndarray, test_idx: np.ndarray,
                  *, variant: str = "baseline") -> ProbeResult:
    """Word-form baseline (paper Table 1 comparison): most frequent POS of the form in the train
    split, unseen forms -> most frequent POS overall; scored on the same test tokens.

    Args: ``forms [T]`` (word-form keys: ``RunView.form_ids`` ints, or strings), ``pos [T]``, ``P``, split indices.
    """
    pos = np.asarray(pos)
    pred = most_frequent_predict(forms, pos, n_pos, train_idx, test_idx)
    return make_result(variant, pos[test_idx], pred, n_pos, len(train_idx), test_idx)


def _mlp(seed: int, max_iter: int, early_stopping: bool, **kw):
    from sklearn.neural_network import MLPClassifier

    return MLPClassifier(max_iter=max_iter, random_state=seed, early_stopping=early_stopping, **kw)


def run_probe(
    experts: np.ndarray,
    pos: np.ndarray,
    n_pos: int,
    *,
    variant: str = "top_k",
    layers: Sequence[int] | np.ndarray | None = None,
    split: tuple[np.ndarray, np.ndarray] | None = None,
    labels: np.ndarray | None = None,
    seed: int = 0,
    max_iter: int = 500,
    early_stopping: bool = False,
    n_experts: int | None = None,
    mlp_kwargs: dict | None = None,
) -> ProbeResult:
    """Train and score one MLP probe (paper Table 1 MLP top_k / top_1, Fig. 3).

    Args:
        experts: ``[T, L, k]`` int expert ids.
        pos: ``[T]`` POS indices (the truth; ``labels`` overrides the training/scoring target,
            e.g. for the control task).
        n_pos: ``P``.
        variant: ``"top_k"``, ``"top_1"``, ``"onehot_top_k"``, ``"onehot_top_1"``.
        layers: optional layer positions to keep (ablation).
        split: ``(train_idx, test_idx)``; default :func:`split_indices` with ``seed``.
        seed: ``random_state`` of the MLP and of the default split.
        max_iter: MLP ``max_iter`` (sklearn default 200; the paper raised it).
        early_stopping: sklearn's early stopping (off by default, as in the paper).
        n_experts: ``N`` for the one-hot categories (default: max id + 1).
        mlp_kwargs: extra ``MLPClassifier`` arguments (tests use small ``hidden_layer_sizes``).

    Returns:
        :class:`ProbeResult` on the test split.
    """
    import warnings

    experts = np.asarray(experts)
    y = np.asarray(labels if labels is not None else pos).astype(np.int64)
    if split is None:
        split = split_indices(len(y), seed=seed)
    tr, te = (np.asarray(s, dtype=np.intp) for s in split)
    X = route_features(experts, variant, layers)
    if variant.startswith("onehot_"):
        from sklearn.preprocessing import OneHotEncoder

        n = n_experts if n_experts is not None else int(experts.max()) + 1 if experts.size else 1
        enc = OneHotEncoder(categories=[np.arange(n)] * X.shape[1], handle_unknown="ignore",
                            sparse_output=True, dtype=np.float64)
        Xtr = enc.fit_transform(X[tr])
        Xte = enc.transform(X[te])
    else:
        Xtr = X[tr].astype(np.float64)
        Xte = X[te].astype(np.float64)
    ytr = y[tr]
    if len(np.unique(ytr)) < 2:  # MLPClassifier needs two classes: predict the only one
        pred = np.full(len(te), ytr[0] if len(ytr) else 0, dtype=np.int64)
        return make_result(variant, y[te], pred, n_pos, len(tr), te, 0)
    clf = _mlp(seed, max_iter, early_stopping, **(mlp_kwargs or {}))
    from sklearn.exceptions import ConvergenceWarning

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        clf.fit(Xtr, ytr)
    pred = np.asarray(clf.predict(Xte), dtype=np.int64)
    return make_result(variant, y[te], pred, n_pos, len(tr), te, int(clf.n_iter_))


def ablation(
    experts: np.ndarray,
    pos: np.ndarray,
    n_pos: int,
    *,
    removed: Sequence[int] | None = None,
    step: int = 1,
    sides: Sequence[str] = ("first", "last"),
    variant: str = "top_k",
    split: tuple[np.ndarray, np.ndarray] | None = None,
    seed: int = 0,
    max_iter: int = 500,
    early_stopping: bool = False,
    full: ProbeResult | None = None,
    progress: Progress | None = None,
    mlp_kwargs: dict | None = None,
) -> list[tuple[str, int, float]]:
    """Layer ablation of paper Fig. 3: retrain the probe after removing the first ``n`` or the last
    ``n`` MoE layers, ``n = 0 .. L-1``.

    Args:
        removed: the ``n`` values to try (default ``range(0, L, step)``); each must be < L.
        step: stride of the default ``n`` grid (speed).
        sides: ``"first"`` and/or ``"last"``.
        full: an already trained probe with all layers (reused for ``n = 0``).
        progress: ``progress(stage, done, total)`` callback.

    Returns:
        list of ``(side, n_removed, accuracy)`` in the order tried.
    """
    experts = np.asarray(experts)
    L = experts.shape[1]
    ns = list(removed) if removed is not None else list(range(0, L, max(1, step)))
    if any(n < 0 or n >= L for n in ns):
        raise ValueError(f"removed layer counts must lie in [0, {L})")
    if split is None:
        split = split_indices(len(pos), seed=seed)
    out: list[tuple[str, int, float]] = []
    cache: dict[tuple[int, int], float] = {}
    if full is not None:
        cache[(0, L)] = full.accuracy
    jobs = [(side, n) for side in sides for n in ns]
    for i, (side, n) in enumerate(jobs):
        lo, hi = (n, L) if side == "first" else (0, L - n) if side == "last" else (None, None)
        if lo is None:
            raise ValueError(f"side must be 'first' or 'last', got {side!r}")
        if (lo, hi) not in cache:
            r = run_probe(experts, pos, n_pos, variant=variant, layers=np.arange(lo, hi), split=split,
                          seed=seed, max_iter=max_iter, early_stopping=early_stopping, mlp_kwargs=mlp_kwargs)
            cache[(lo, hi)] = r.accuracy
        out.append((side, int(n), cache[(lo, hi)]))
        if progress is not None:
            progress("ablation", i + 1, len(jobs))
    return out


def tsne_embedding(
    experts: np.ndarray,
    pos: np.ndarray,
    *,
    n_samples: int = 5000,
    seed: int = 0,
    variant: str = "top_k",
    perplexity: float = 30.0,
    max_iter: int | None = None,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """2-D t-SNE of a seeded sample of routing paths (paper Fig. 2).

    Paths are the ``top_k`` (or ``top_1``) id vectors; the distance is the Hamming distance between
    paths (share of positions with a different expert), since expert ids are categories.
    ``max_iter`` None = sklearn's default. OpenMP is limited to one thread during the fit (on small
    shared machines the multi-threaded Barnes-Hut loop was up to 30x slower).

    Returns:
        ``(token_idx [n], xy [n, 2] float64, pos [n])`` with ``n = min(n_samples, T)``; token_idx
        sorted ascending.
    """
    from sklearn.manifold import TSNE
    from threadpoolctl import threadpool_limits

    experts = np.asarray(experts)
    pos = np.asarray(pos)
    T = experts.shape[0]
    rng = np.random.default_rng(seed)
    n = min(n_samples, T)
    idx = np.sort(rng.choice(T, size=n, replace=False))
    X = route_features(experts[idx], variant).astype(np.float64)
    if n < 3:
        return idx, np.zeros((n, 2)), pos[idx]
    perp = min(perplexity, max(1.0, (n - 1) / 3.0))
    kw = {} if max_iter is None else {"max_iter": max_iter}
    with threadpool_limits(limits=1, user_api="openmp"):
        emb = TSNE(n_components=2, random_state=seed, metric="hamming", init="random",
                   perplexity=perp, **kw).fit_transform(X)
    return idx, np.asarray(emb, dtype=np.float64), pos[idx]
