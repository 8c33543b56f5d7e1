"""POS probes on routing paths (paper Table 1 "MLP" columns, Fig. 3 ablation, Fig. 2 t-SNE).

A probe predicts a token's POS from the experts it was routed to. As in the paper (arXiv
2412.16971, Sec. 4): an MLP with scikit-learn ``MLPClassifier``'s defaults except a raised
``max_iter`` and a fixed ``random_state``, trained on a random 2/3 of the tokens and scored on the
remaining 1/3 (token-level split, fixed seed). Two engines train it (:mod:`moe_tui.core.analysis.probe_engine`):
``torch`` (default; every probe of a split trained at once, on the GPU when there is one) and
``sklearn`` (one ``MLPClassifier`` per probe, the paper's exact procedure).

Feature variants (``experts`` is ``[T, L, k]``, rank 0 = top-1):

* ``top_k``  -- the flattened expert-id vector, layer by layer, ranks in weight order: ``L*k`` ids;
* ``top_1``  -- the top-1 expert id of each layer: ``L`` ids;
* ``onehot_top_k`` -- the ``top_k`` ids as categories (sparse ``OneHotEncoder``, one block of ``N``
  columns per (layer, rank)).

The word-form baseline predicts the most frequent POS of the word form in the training split
(unseen forms: the most frequent POS overall) and is scored on the same test tokens.

:func:`probe_suite` trains a report's probes together (Table 1 variants, ablation cuts, control task)
for one or several seeds (``--probe-seeds``) and summarises each as :class:`ProbeStats`.

torch, scikit-learn and openTSNE are imported inside the functions that need them.
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
    "variant_columns",
    "cut_layers",
    "ProbeStats",
    "summarize",
    "probe_suite",
    "tsne_embedding",
    "onehot_paths",
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
        converged: the MLP stopped by its tol rule before ``max_iter`` (None for count-based predictors).
        engine / device: what trained it (None for count-based predictors).
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
    converged: bool | None = None
    engine: str | None = None
    device: str | None = None

    @property
    def correct(self) -> np.ndarray:
        """``[n_test]`` bool, prediction == truth."""
        return self.y_true == self.y_pred


def split_indices(n_tokens: int, *, test_size: float = 1.0 / 3.0,
                  seed: int | np.random.SeedSequence = 0) -> tuple[np.ndarray, np.ndarray]:
    """Random token-level split (paper: 2/3 train, 1/3 test, fixed seed; ``seed`` an int or a
    ``SeedSequence`` such as :func:`moe_tui.core.analysis.seeds.stream` ``(seed, "split", r)``).

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


def variant_columns(n_layers: int, top_k: int, variant: str = "top_k",
                    layers: Sequence[int] | np.ndarray | None = None) -> tuple[int, ...]:
    """Columns of ``experts.reshape(T, L*k)`` that :func:`route_features` reads, in its order."""
    base = variant.removeprefix("onehot_")
    ls = range(n_layers) if layers is None else [int(x) for x in np.asarray(layers).reshape(-1)]
    if base == "top_k":
        return tuple(layer * top_k + r for layer in ls for r in range(top_k))
    if base == "top_1":
        return tuple(layer * top_k for layer in ls)
    raise ValueError(f"unknown probe variant {variant!r}")


def cut_layers(n_layers: int, side: str, n: int) -> np.ndarray:
    """MoE layer positions kept after removing the first / last ``n`` layers (Fig. 3)."""
    if side not in ("first", "last"):
        raise ValueError(f"side must be 'first' or 'last', got {side!r}")
    if not 0 <= n < n_layers:
        raise ValueError(f"removed layer counts must lie in [0, {n_layers})")
    return np.arange(n, n_layers) if side == "first" else np.arange(0, n_layers - n)


def _config(max_iter: int, early_stopping: bool, mlp_kwargs: dict | None):
    from dataclasses import replace

    from moe_tui.core.analysis.probe_engine import MLPConfig

    return replace(MLPConfig.from_sklearn(max_iter, mlp_kwargs), early_stopping=bool(early_stopping))


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
    engine: str = "torch",
    device: str = "auto",
    dtype: str = "float32",
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
        seed: ``random_state`` of the MLP (initial weights and minibatch order) and of the default split.
        max_iter: MLP ``max_iter`` (sklearn default 200; the paper raised it).
        early_stopping: sklearn's early stopping on a validation split (off, as in the paper; sklearn
            engine only).
        n_experts: ``N`` for the one-hot categories (default: max id + 1).
        mlp_kwargs: other ``MLPClassifier`` arguments (tests use small ``hidden_layer_sizes``).
        engine: ``"torch"`` or ``"sklearn"`` (:mod:`moe_tui.core.analysis.probe_engine`); a lone torch probe
            draws the same random numbers as ``MLPClassifier(random_state=seed)``.
        device / dtype: torch engine's device and precision.

    Returns:
        :class:`ProbeResult` on the test split.
    """
    from moe_tui.core.analysis.probe_engine import ProbeSpec, fit_probes

    experts = np.asarray(experts)
    y = np.asarray(labels if labels is not None else pos).astype(np.int64)
    if split is None:
        split = split_indices(len(y), seed=seed)
    tr, te = (np.asarray(s, dtype=np.intp) for s in split)
    T, L, k = experts.shape
    spec = ProbeSpec(variant, variant_columns(L, k, variant, layers), onehot=variant.startswith("onehot_"),
                     init_seed=int(seed))
    n = n_experts if n_experts is not None else int(experts.max()) + 1 if experts.size else 1
    fit = fit_probes(experts.reshape(T, L * k), [y], [spec], tr, te, n_categories=n,
                     config=_config(max_iter, early_stopping, mlp_kwargs), engine=engine, device=device, dtype=dtype)[0]
    r = make_result(variant, y[te], fit.y_pred, n_pos, len(tr), te, fit.n_iter)
    r.converged, r.engine, r.device = fit.converged, fit.engine, fit.device
    return r


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
    engine: str = "torch",
    device: str = "auto",
    dtype: str = "float32",
    n_experts: int | None = None,
) -> list[tuple[str, int, float]]:
    """Layer ablation of paper Fig. 3: retrain the probe after removing the first ``n`` or the last
    ``n`` MoE layers, ``n = 0 .. L-1``. All cuts are trained together (one :func:`fit_probes` call).

    Args:
        removed: the ``n`` values to try (default ``range(0, L, step)``); each must be < L.
        step: stride of the default ``n`` grid.
        sides: ``"first"`` and/or ``"last"``.
        full: an already trained probe with all layers (reused for ``n = 0``).
        progress: ``progress(stage, done, total)`` callback.

    Returns:
        list of ``(side, n_removed, accuracy)`` in the order tried.
    """
    from moe_tui.core.analysis.probe_engine import ProbeSpec, fit_probes

    experts = np.asarray(experts)
    T, L, k = experts.shape
    ns = list(removed) if removed is not None else list(range(0, L, max(1, step)))
    jobs = [(side, int(n), tuple(cut_layers(L, side, n))) for side in sides for n in ns]
    if split is None:
        split = split_indices(len(pos), seed=seed)
    tr, te = (np.asarray(s, dtype=np.intp) for s in split)
    y = np.asarray(pos).astype(np.int64)
    acc: dict[tuple, float] = {}
    if full is not None:
        acc[tuple(range(L))] = full.accuracy
    todo = sorted({lay for _, _, lay in jobs if lay not in acc})
    specs = [ProbeSpec(f"layers {lay[0]}-{lay[-1]}", variant_columns(L, k, variant, lay),
                       onehot=variant.startswith("onehot_"), init_seed=int(seed)) for lay in todo]
    n_cat = n_experts if n_experts is not None else int(experts.max()) + 1 if experts.size else 1
    fits = fit_probes(experts.reshape(T, L * k), [y], specs, tr, te, n_categories=n_cat,
                      config=_config(max_iter, early_stopping, mlp_kwargs), engine=engine, device=device, dtype=dtype,
                      shuffle_seed=int(seed), progress=progress, stage="ablation") if specs else []
    for lay, f in zip(todo, fits):
        acc[lay] = float(np.mean(f.y_pred == y[te])) if len(te) else float("nan")
    out = [(side, n, acc[lay]) for side, n, lay in jobs]
    if progress is not None:
        progress("ablation", len(jobs), len(jobs))
    return out


# --------------------------------------------------------------------------------------------------
# A report's probes, over one or several seeds


@dataclass
class ProbeStats:
    """One probe (or baseline) of a report, over ``seeds`` seeds and splits.

    Attributes:
        variant: ``"top_k"``, ``"baseline"``, ``"control_task"``, ``"ablation:first:3"``...
        accuracy: mean test accuracy over the seeds.
        accuracy_sd: sample standard deviation over the seeds (ddof 1; NaN with one seed).
        seeds: number of seeds.
        n_iter: the largest number of epochs over the seeds (None for count-based predictors).
        converged: every seed stopped by the tol rule before ``max_iter`` (None for count-based).
        engine / device: what trained it (None for count-based predictors).
        runs: the :class:`ProbeResult` of each seed; ``runs[0]`` (seed 0's split) is the one behind the
            confusion matrix, the bootstrap intervals and the per-token controls.
    """

    variant: str
    accuracy: float
    accuracy_sd: float
    seeds: int
    n_iter: int | None
    converged: bool | None
    engine: str | None
    device: str | None
    runs: list

    @property
    def first(self) -> ProbeResult:
        return self.runs[0]

    @property
    def train_tokens(self) -> int:
        return self.runs[0].train_tokens

    @property
    def test_tokens(self) -> int:
        return self.runs[0].test_tokens


def summarize(variant: str, runs: Sequence[ProbeResult]) -> ProbeStats:
    """:class:`ProbeStats` of per-seed results."""
    accs = np.array([r.accuracy for r in runs], dtype=np.float64)
    sd = float(np.std(accs, ddof=1)) if len(accs) > 1 else float("nan")
    trained = runs[0].n_iter is not None
    return ProbeStats(
        variant=variant, accuracy=float(accs.mean()), accuracy_sd=sd, seeds=len(runs),
        n_iter=max(int(r.n_iter) for r in runs) if trained else None,
        converged=all(bool(r.converged) for r in runs) if trained else None,
        engine=runs[0].engine if trained else None, device=runs[0].device if trained else None, runs=list(runs))


def probe_suite(
    experts: np.ndarray,
    pos: np.ndarray,
    n_pos: int,
    *,
    forms: np.ndarray | None = None,
    variants: Sequence[str] = ("top_k", "top_1", "onehot_top_k"),
    cuts: Sequence[tuple[str, int]] = (),
    control: bool = False,
    baseline: bool = True,
    seed: int = 0,
    n_seeds: int = 1,
    engine: str = "torch",
    device: str = "auto",
    dtype: str = "float32",
    max_iter: int = 500,
    early_stopping: bool = False,
    mlp_kwargs: dict | None = None,
    n_experts: int | None = None,
    logits: np.ndarray | None = None,
    progress: Progress | None = None,
) -> dict[str, ProbeStats]:
    """Train a report's probes together, for ``n_seeds`` seeds.

    For seed ``r``, every random step draws from its own stream of :mod:`moe_tui.core.analysis.seeds`: the split
    (``split``, child ``r``), the MLPs' initial weights (``mlp_init``), the torch engine's minibatch order
    (``mlp_shuffle``) and the control task's labels (``control_labels``). All probes of one seed share
    the split and are trained in one :func:`moe_tui.core.analysis.probe_engine.fit_probes` call.

    Args:
        experts: ``[T, L, k]`` expert ids; ``pos [T]``; ``n_pos``.
        forms: ``[T]`` word forms (opaque keys), needed by ``baseline`` and ``control``.
        variants: Table 1 probes (``top_k``, ``top_1``, ``onehot_top_k``, ``onehot_top_1``), and ``logits``:
            every router's raw logits as numbers (``[T, L*N]``, standardised per column on the seed's training
            tokens, :func:`moe_tui.core.analysis.information.logit_features`), what the routes are chosen from.
        logits: ``[T, L, N]`` router logits (needed by the ``logits`` variant).
        cuts: ablation cuts ``(side, n)``; ``n = 0`` is the ``top_k`` probe.
        control: also train the control task (Hewitt & Liang) on the ``top_k`` features.
        baseline: also score the word-form baseline on each split.

    Returns:
        ``{name: ProbeStats}`` with names ``variants``, ``"ablation:<side>:<n>"``, ``"control_task"``,
        ``"baseline"``.
    """
    from moe_tui.core.analysis import seeds as S
    from moe_tui.core.analysis.probe_engine import ProbeSpec, fit_probes

    experts = np.asarray(experts)
    pos = np.asarray(pos).astype(np.int64)
    T, L, k = experts.shape
    if (control or baseline) and forms is None:
        raise ValueError("the control task and the baseline need the word forms")
    if n_seeds < 1:
        raise ValueError("n_seeds must be >= 1")
    cfg = _config(max_iter, early_stopping, mlp_kwargs)
    n_cat = n_experts if n_experts is not None else int(experts.max()) + 1 if experts.size else 1
    if "logits" in variants and logits is None:
        raise ValueError("the logits probe needs router logits (extract with --save-logits)")
    ids = experts.reshape(T, L * k)
    runs: dict[str, list[ProbeResult]] = {}
    for r in range(n_seeds):
        tr, te = split_indices(T, seed=S.stream(seed, "split", r))
        init = S.int_seed(seed, "mlp_init", r)
        labels = [pos]
        dense = None
        specs = []
        for v in variants:
            if v == "logits":
                from moe_tui.core.analysis.information import logit_features

                dense = logit_features(logits, tr)
                specs.append(ProbeSpec(v, (), dense=tuple(range(dense.shape[1])), init_seed=init))
            else:
                specs.append(ProbeSpec(v, variant_columns(L, k, v), onehot=v.startswith("onehot_"), init_seed=init))
        aliases: dict[str, str] = {}
        names = {sp.name for sp in specs}
        for side, n in cuts:
            name = f"ablation:{side}:{int(n)}"
            if int(n) == 0:  # nothing removed: the top_k probe itself
                aliases[name] = "top_k"
                name = "top_k"
            if name not in names:
                specs.append(ProbeSpec(name, variant_columns(L, k, "top_k", cut_layers(L, side, int(n))),
                                       init_seed=init))
                names.add(name)
        if control:
            labels.append(control_labels_for(forms, pos, n_pos, S.stream(seed, "control_labels", r)))
            specs.append(ProbeSpec("control_task", variant_columns(L, k, "top_k"), labels=1, init_seed=init))
        stage = "probes" if n_seeds == 1 else f"probes, seed {r + 1} of {n_seeds}"
        fits = fit_probes(ids, labels, specs, tr, te, n_categories=n_cat, config=cfg, engine=engine,
                          shuffle_seed=S.int_seed(seed, "mlp_shuffle", r), device=device, dtype=dtype,
                          progress=progress, stage=stage, dense=dense)
        for sp, f in zip(specs, fits):
            y = labels[sp.labels]
            res = make_result(sp.name, y[te], f.y_pred, n_pos, len(tr), te, f.n_iter)
            res.converged, res.engine, res.device = f.converged, f.engine, f.device
            runs.setdefault(sp.name, []).append(res)
        for name, target in aliases.items():
            runs.setdefault(name, []).append(runs[target][-1])
        if baseline:
            runs.setdefault("baseline", []).append(form_baseline(forms, pos, n_pos, tr, te))
    return {name: summarize(name, rs) for name, rs in runs.items()}


def control_labels_for(forms: np.ndarray, pos: np.ndarray, n_pos: int, seed) -> np.ndarray:
    """Control-task labels (:func:`moe_tui.core.analysis.controls.control_labels`)."""
    from moe_tui.core.analysis.controls import control_labels

    return control_labels(forms, pos, n_pos, seed=seed)


def onehot_paths(features: np.ndarray, n_categories: int) -> np.ndarray:
    """One-hot encoding of id vectors: ``[n, F]`` ids -> ``[n, F * N]`` float32 (feature-major).

    Two paths that differ at ``h`` of their ``F`` positions are at squared Euclidean distance ``2 h``:
    the Hamming distance is proportional to the squared Euclidean distance of the one-hot encodings.
    """
    features = np.asarray(features, dtype=np.int64)
    n, F = features.shape
    out = np.zeros((n, F * n_categories), dtype=np.float32)
    if n and F:
        out[np.arange(n)[:, None], np.arange(F)[None, :] * n_categories + features] = 1.0
    return out


#: Iterations between two calls of ``tsne_embedding``'s ``stop`` (about half a second on 7,000 points).
TSNE_STOP_EVERY = 10


def tsne_embedding(
    experts: np.ndarray,
    pos: np.ndarray,
    *,
    n_samples: int = 20_000,
    seed: int | np.random.SeedSequence = 0,
    variant: str = "top_k",
    perplexity: float = 30.0,
    max_iter: int | None = None,
    tokens: np.ndarray | None = None,
    n_experts: int | None = None,
    stop: Callable[[], bool] | None = None,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """2-D t-SNE of routing paths (paper Fig. 2), with openTSNE.

    The tokens are ``tokens`` (default: all), or a seeded sample of ``n_samples`` of them when there are
    more. Paths are the ``top_k`` (or ``top_1``) id vectors, one-hot encoded, with the Euclidean metric:
    t-SNE's Gaussian kernel works on squared distances, and the squared Euclidean distance between one-hot
    paths is twice their Hamming distance (:func:`onehot_paths`), so each point's perplexity calibration
    is the one of the Hamming distance between id vectors. openTSNE's defaults otherwise: PCA
    initialisation, early exaggeration 12 for 250 iterations then 500 iterations, Barnes-Hut gradients
    below 10,000 points and FFT-accelerated interpolation (FIt-SNE) above; one thread (the result is then the
    same on every run). The nearest neighbours are exact (brute force, scikit-learn's chunked distance
    products), not Annoy's approximation: on the demo's 6,745 test paths (64 one-hot inputs) 0.9 s of CPU
    instead of 3.5-4 s, and the perplexity is calibrated on the true neighbours.

    Args:
        seed: the sample's and the t-SNE's random stream (an int or a ``SeedSequence``).
        max_iter: total iterations (early exaggeration included); None = openTSNE's 250 + 500.
        tokens: candidate token indices (e.g. the probes' test split).
        n_experts: ``N`` of the one-hot encoding (default: max id + 1).
        stop: asked every :data:`TSNE_STOP_EVERY` iterations; when it returns True the optimisation ends
            and :class:`moe_tui.errors.Cancelled` is raised (asking changes nothing in the embedding).

    Returns:
        ``(token_idx [n], xy [n, 2] float64, pos [n])`` with ``n = min(n_samples, len(tokens))``; token_idx
        sorted ascending.
    """
    from moe_tui.core.analysis.probe_engine import settle_torch_import

    settle_torch_import()
    from openTSNE import TSNE

    experts = np.asarray(experts)
    pos = np.asarray(pos)
    cand = np.arange(experts.shape[0]) if tokens is None else np.asarray(tokens, dtype=np.int64)
    from moe_tui.core.analysis.seeds import as_seed_sequence, child

    ss = as_seed_sequence(seed)
    sample_ss, tsne_ss = child(ss, 0), child(ss, 1)
    n = min(int(n_samples), len(cand))
    if n < len(cand):
        idx = np.sort(np.random.default_rng(sample_ss).choice(cand, size=n, replace=False))
    else:
        idx = np.sort(cand)
    if n < 3:
        return idx, np.zeros((n, 2)), pos[idx]
    X = route_features(experts[idx], variant)
    N = int(n_experts) if n_experts is not None else int(experts.max()) + 1
    perp = min(perplexity, max(1.0, (n - 1) / 3.0))
    kw = {}
    if max_iter is not None:
        ee = min(250, int(max_iter) // 4)
        kw = {"early_exaggeration_iter": ee, "n_iter": max(1, int(max_iter) - ee)}
    stopped = []

    def asked(iteration, error, embedding) -> bool:  # openTSNE ends the optimisation when this returns True
        if stop():
            stopped.append(iteration)
        return bool(stopped)

    if stop is not None:
        kw.update(callbacks=asked, callbacks_every_iters=TSNE_STOP_EVERY)
    tsne = TSNE(n_components=2, perplexity=perp, metric="euclidean", n_jobs=1, neighbors="exact",
                knn_kwargs={"algorithm": "brute"},
                random_state=int(tsne_ss.generate_state(1, dtype=np.uint32)[0]), verbose=False, **kw)
    from moe_tui.errors import Cancelled

    emb = tsne.fit(onehot_paths(X, N))
    if stopped:  # openTSNE returns the embedding where it stopped: a part-way picture is not the t-SNE
        raise Cancelled("t-SNE cancelled")
    return idx, np.asarray(emb, dtype=np.float64), pos[idx]
