"""Many MLP probes trained at once: scikit-learn ``MLPClassifier`` semantics, batched in torch.

Every probe of a report (Table 1's ``top_k`` / ``top_1`` / ``onehot_top_k``, each cut of the Fig. 3
ablation, the control task) reads the same routes of the same training tokens; only its input columns,
its labels and its random initial weights differ. :func:`fit_probes` trains them together, as one
batched model per *group* of probes, on CUDA when torch sees a GPU and on the CPU otherwise.

What one probe is (both engines, from scikit-learn 1.9's ``_multilayer_perceptron.py``):

* input: the probe's columns of the shared ``[T, F]`` expert-id matrix, either as numbers (the paper's
  ``top_k`` / ``top_1``) or one-hot (``onehot_*``: one input per (column, expert id), feature-major,
  exactly the columns of scikit-learn's ``OneHotEncoder`` with categories ``0 .. N-1``);
* one hidden layer of ``hidden`` (100) ReLU units, softmax output over the classes present in the
  training labels (two classes: one logistic unit, as scikit-learn does);
* Glorot-uniform initial weights drawn, layer by layer, weights then intercepts, from
  ``numpy.random.RandomState(init_seed)``: the very numbers ``MLPClassifier(random_state=init_seed)``
  starts from;
* Adam (lr 1e-3, beta 0.9 / 0.999, eps 1e-8, scikit-learn's update ``-lr_t m / (sqrt(v) + eps)`` with
  ``lr_t = lr sqrt(1 - beta2^t) / (1 - beta1^t)``), minibatches of ``min(200, n)`` tokens in an order
  reshuffled every epoch, the L2 penalty ``alpha / 2 ||W||^2 / batch`` on the weights (not the
  intercepts) in the loss and ``alpha W / batch`` in the gradient;
* the epoch loss is the batch losses weighted by batch size (L2 included); training stops when it has
  not fallen below ``best - tol`` for more than ``n_iter_no_change`` epochs (``converged``), or after
  ``max_iter`` epochs (not converged). ``n_iter`` counts the epochs run.

The torch engine in float64 with ``shuffle_seed=None`` on one probe reproduces ``MLPClassifier`` draw for
draw (same loss curve to rounding, same ``n_iter_``, same predictions: a test checks it). In a report,
the probes of one split share one minibatch order (the ``mlp_shuffle`` stream of :mod:`seeds`): that is
what makes the first layer of a whole group one matrix product.

Groups (:func:`plan_groups`): probes whose columns overlap enough to share a first layer, weighed against
the fixed cost of each group per step (an ablation cut that keeps 3 of 32 layers should not pay for 32 on
a CPU; on a GPU nearly everything shares one group). Each group is one model: first-layer weights
``[G*H, K]`` (K = the group's input columns: numbers, then one-hot blocks; the weights of the columns a
probe does not read are held at exactly zero), output weights ``[G, C, H]`` (class-major: the layout whose
three batched products per step are fastest on a CPU). The hidden activations are ``W1 @ X_batch^T`` (one
GEMM for all probes), the output layer one batched GEMM; the gradients mirror them, and Adam runs over one
flat buffer (on a CPU torch's fused Adam kernel, its epsilon rescaled each step so that the update is
algebraically scikit-learn's ``lr_t m / (sqrt(v) + eps)``). Probes that stop leave the group (its tensors shrink), so a
group runs as long as its slowest probe. A step's activations and gradients live in buffers allocated once,
and float32 training on a CPU flushes denormal numbers (:func:`_flush_denormals`).

Progress: ``progress(stage, epoch, max_iter)`` after every epoch of every group and, inside long epochs,
at least every ``0.25 s``; the callback may raise (``moe_tui.errors.Cancelled``) to stop training.

torch is imported inside the functions that train (it costs seconds to import); so is scikit-learn.
"""

from __future__ import annotations

import math
import time
import warnings
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Callable, Sequence

import numpy as np

__all__ = [
    "ENGINES",
    "MLPConfig",
    "ProbeSpec",
    "ProbeFit",
    "fit_probes",
    "plan_groups",
    "resolve_device",
    "describe",
]

ENGINES: tuple[str, ...] = ("torch", "sklearn")

Progress = Callable[[str, int, int], None]

#: Seconds between two progress calls inside one epoch (cancel latency on big data).
PROGRESS_EVERY_S = 0.25

_SKLEARN_KEYS = {"hidden_layer_sizes", "alpha", "learning_rate_init", "beta_1", "beta_2", "epsilon", "batch_size",
                 "shuffle", "tol", "n_iter_no_change", "max_iter", "early_stopping", "validation_fraction"}
_SKLEARN_FIXED = {"activation": "relu", "solver": "adam", "warm_start": False}


@dataclass(frozen=True)
class MLPConfig:
    """MLPClassifier's hyper-parameters (its defaults, except ``max_iter``, which the report raises to 500)."""

    hidden: int = 100
    alpha: float = 1e-4
    learning_rate_init: float = 1e-3
    beta_1: float = 0.9
    beta_2: float = 0.999
    epsilon: float = 1e-8
    batch_size: int | None = None     # None: min(200, n_train), scikit-learn's "auto"
    shuffle: bool = True
    tol: float = 1e-4
    n_iter_no_change: int = 10
    max_iter: int = 200
    early_stopping: bool = False      # scikit-learn's validation-split early stopping (sklearn engine only)
    validation_fraction: float = 0.1

    def batch(self, n_train: int) -> int:
        """Minibatch size for ``n_train`` training tokens."""
        if self.batch_size is None:
            return min(200, n_train)
        return int(np.clip(self.batch_size, 1, n_train))

    @classmethod
    def from_sklearn(cls, max_iter: int = 200, mlp_kwargs: dict | None = None) -> "MLPConfig":
        """The config of ``MLPClassifier(max_iter=max_iter, **mlp_kwargs)``; ValueError on an option the
        torch engine does not implement (more than one hidden layer, another activation or solver...)."""
        kw = dict(mlp_kwargs or {})
        for key, want in _SKLEARN_FIXED.items():
            if key in kw and kw.pop(key) != want:
                raise ValueError(f"the torch probe engine implements {key}={want!r} only; use the sklearn engine")
        unknown = sorted(set(kw) - _SKLEARN_KEYS)
        if unknown:
            raise ValueError(f"the torch probe engine does not implement MLPClassifier option {unknown[0]!r}; "
                             f"use the sklearn engine")
        out: dict = {"max_iter": int(kw.pop("max_iter", max_iter))}
        if "hidden_layer_sizes" in kw:
            h = kw.pop("hidden_layer_sizes")
            h = list(h) if hasattr(h, "__iter__") else [h]
            if len(h) != 1:
                raise ValueError("the torch probe engine trains one hidden layer; use the sklearn engine for more")
            out["hidden"] = int(h[0])
        bs = kw.pop("batch_size", "auto")
        out["batch_size"] = None if bs == "auto" else int(bs)
        out.update(kw)
        cfg = cls(**out)
        if cfg.hidden < 1 or cfg.max_iter < 1 or cfg.n_iter_no_change < 1:
            raise ValueError("hidden units, max_iter and n_iter_no_change must be >= 1")
        return cfg

    def sklearn_kwargs(self) -> dict:
        """The same settings as ``MLPClassifier`` keyword arguments."""
        return {"hidden_layer_sizes": (self.hidden,), "alpha": self.alpha, "learning_rate_init": self.learning_rate_init,
                "beta_1": self.beta_1, "beta_2": self.beta_2, "epsilon": self.epsilon,
                "batch_size": "auto" if self.batch_size is None else self.batch_size, "shuffle": self.shuffle,
                "tol": self.tol, "n_iter_no_change": self.n_iter_no_change, "max_iter": self.max_iter,
                "early_stopping": self.early_stopping, "validation_fraction": self.validation_fraction}


@dataclass(frozen=True)
class ProbeSpec:
    """One probe: which columns of the shared id matrix it reads, how, which labels it learns.

    Attributes:
        name: a label for the caller (e.g. ``"top_k"``, ``"first:3"``).
        columns: column indices into the shared ``[T, F]`` id matrix, in the probe's feature order.
        onehot: read the ids as categories (one input per column and id) instead of numbers.
        labels: index into the ``labels`` arrays passed to :func:`fit_probes`.
        init_seed: ``random_state`` of the initial weights (and of the shuffles for the sklearn engine).
        dense: column indices into the ``dense`` float matrix of :func:`fit_probes` (e.g. router logits), read
            as numbers after ``columns`` (the probe's input is ``columns``' inputs, then these).
    """

    name: str
    columns: tuple[int, ...]
    onehot: bool = False
    labels: int = 0
    init_seed: int = 0
    dense: tuple[int, ...] = ()


@dataclass
class ProbeFit:
    """A trained probe's test predictions and how its training ended.

    Attributes:
        name: the spec's name.
        y_pred: ``[n_test]`` int64 predicted labels of the test tokens (in ``test_idx`` order).
        n_iter: epochs run.
        converged: stopped by the tol rule (False: stopped at ``max_iter``).
        loss_curve: epoch losses (L2 term included), as scikit-learn's ``loss_curve_``.
        engine: ``"torch"`` or ``"sklearn"``.
        device: where it trained (``"cpu"``, ``"cuda:0"``).
        classes: ``[C]`` the labels seen in training, the columns of ``log_proba`` (with ``proba=True``).
        log_proba: ``[n_test, C]`` float64 natural-log probabilities of ``classes`` (with ``proba=True``).
        valid_log_proba: ``[n_valid, C]`` the same for the held-out tokens (with ``proba=True`` and ``valid_idx``).
        best_epoch: with ``valid_idx``: the epoch (1-based) whose weights were kept (lowest held-out log-loss).
        valid_curve: with ``valid_idx``: the held-out mean log-loss after each epoch.
    """

    name: str
    y_pred: np.ndarray
    n_iter: int
    converged: bool
    loss_curve: list = field(default_factory=list)
    engine: str = "torch"
    device: str = "cpu"
    classes: np.ndarray | None = None
    log_proba: np.ndarray | None = None
    valid_log_proba: np.ndarray | None = None
    best_epoch: int | None = None
    valid_curve: list = field(default_factory=list)


# --------------------------------------------------------------------------------------------------
# Entry point


def fit_probes(
    ids: np.ndarray,
    labels: Sequence[np.ndarray],
    specs: Sequence[ProbeSpec],
    train_idx: np.ndarray,
    test_idx: np.ndarray,
    *,
    n_categories: int | Sequence[int] | None = None,
    config: MLPConfig | None = None,
    engine: str = "torch",
    shuffle_seed: int | None = None,
    device: str | None = "auto",
    dtype: str = "float32",
    progress: Progress | None = None,
    stage: str = "probes",
    group_overhead: float | None = None,
    threads: int | None = None,
    dense: np.ndarray | None = None,
    valid_idx: np.ndarray | None = None,
    proba: bool = False,
) -> list[ProbeFit]:
    """Train every probe of ``specs`` on ``train_idx`` and predict ``test_idx``.

    Args:
        ids: ``[T, F]`` int expert ids (e.g. ``experts.reshape(T, L*k)``), shared by all probes.
        labels: label arrays, each ``[T]`` int (the POS; the control task's labels...).
        specs: the probes.
        train_idx / test_idx: token indices of the split (shared by all probes; ``train_idx`` may repeat a
            token, which then counts as that many training examples).
        n_categories: ``N`` for one-hot probes (default ``ids.max() + 1``), or one ``N`` per column of ``ids``
            (``[F]``: e.g. expert ids in some columns and token-id codes in another).
        config: :class:`MLPConfig` (default: MLPClassifier's defaults).
        engine: ``"torch"`` (batched) or ``"sklearn"`` (one ``MLPClassifier`` per probe, the paper's procedure).
        shuffle_seed: torch engine: ``RandomState`` seed of the minibatch order shared by the probes;
            None: each group shuffles with its first probe's ``RandomState`` after its initial weights
            (a lone probe is then ``MLPClassifier(random_state=init_seed)`` draw for draw).
        device: torch engine: ``"auto"`` (CUDA when available, else CPU), ``"cpu"``, ``"cuda"``, ``"cuda:N"``.
        dtype: torch engine: ``"float32"`` (default) or ``"float64"`` (scikit-learn's precision).
        progress: ``progress(stage, done, total)``; may raise to cancel.
        stage: prefix of the progress stage names.
        group_overhead: torch engine: the fixed cost of a group per step in column-probes (:func:`plan_groups`);
            default 192 on a CPU, 1e6 on a GPU.
        threads: torch engine on CPU: intra-op threads while training (default: torch's setting for groups with
            at least ``SMALL_GROUP_MACS`` first-layer multiply-adds per step, one thread for smaller ones).
        dense: ``[T, D]`` float features that specs read through ``ProbeSpec.dense`` (e.g. router logits).
        valid_idx: torch engine: held-out tokens. After every epoch each probe's mean log-loss on them is
            measured; a probe stops when it has not fallen below ``best - tol`` for more than
            ``n_iter_no_change`` epochs (scikit-learn's early-stopping rule, on the held-out log-loss instead
            of the accuracy), and the weights of its best epoch are the ones that predict.
        proba: also return each probe's log-probabilities of the test (and held-out) tokens.

    Returns:
        one :class:`ProbeFit` per spec, in the order of ``specs``.
    """
    cfg = config or MLPConfig()
    if engine not in ENGINES:
        raise ValueError(f"unknown probe engine {engine!r}; choose from {', '.join(ENGINES)}")
    ids = np.asarray(ids)
    if ids.ndim != 2:
        raise ValueError(f"ids must be [T, F], got shape {ids.shape}")
    T, F = ids.shape
    tr = np.asarray(train_idx, dtype=np.intp)
    te = np.asarray(test_idx, dtype=np.intp)
    va = None if valid_idx is None else np.asarray(valid_idx, dtype=np.intp)
    labels = [np.asarray(y).astype(np.int64) for y in labels]
    for y in labels:
        if y.shape != (T,):
            raise ValueError(f"labels must be [T] = [{T}], got shape {y.shape}")
    if dense is not None:
        dense = np.asarray(dense)
        if dense.ndim != 2 or dense.shape[0] != T:
            raise ValueError(f"dense must be [T, D] with T = {T}, got shape {dense.shape}")
    D = 0 if dense is None else dense.shape[1]
    ncat = _categories(ids, n_categories)
    if ids.size:
        bad = np.nonzero((ids.min(axis=0) < 0) | (ids.max(axis=0) >= ncat))[0]
        if len(bad):
            raise ValueError(f"ids must lie in [0, {int(ncat[bad[0]])}) (column {int(bad[0])})")
    for s in specs:
        if not (len(s.columns) or len(s.dense)):
            raise ValueError(f"probe {s.name!r}: reads no column")
        if len(s.columns) and (min(s.columns) < 0 or max(s.columns) >= F):
            raise ValueError(f"probe {s.name!r}: columns must be a subset of 0..{F - 1}")
        if len(s.dense) and (min(s.dense) < 0 or max(s.dense) >= D):
            raise ValueError(f"probe {s.name!r}: dense columns must be a subset of 0..{D - 1}")
        if not 0 <= s.labels < len(labels):
            raise ValueError(f"probe {s.name!r}: labels index {s.labels} out of range")

    out: list[ProbeFit | None] = [None] * len(specs)
    todo: list[int] = []
    seen: dict[int, np.ndarray] = {}   # the training labels' classes, once per labels array (not per probe)
    for i, s in enumerate(specs):
        if s.labels not in seen:
            seen[s.labels] = np.unique(labels[s.labels][tr])
        classes = seen[s.labels]
        if len(classes) < 2:  # nothing to learn: predict the only training label
            only = int(classes[0]) if len(classes) else 0
            f = ProbeFit(s.name, np.full(len(te), only, dtype=np.int64), 0, True, [], engine,
                         "cpu" if engine == "sklearn" else str(resolve_device(device)))
            if proba:
                f.classes = np.array([only], dtype=np.int64)
                f.log_proba = np.zeros((len(te), 1))
                f.valid_log_proba = None if va is None else np.zeros((len(va), 1))
            out[i] = f
        else:
            todo.append(i)
    if engine == "sklearn":
        if todo and va is not None:
            raise ValueError("held-out early stopping on the log-loss is implemented by the torch probe engine only")
        for j, i in enumerate(todo):
            out[i] = _fit_sklearn(ids, labels[specs[i].labels], specs[i], tr, te, ncat, cfg, dense, proba)
            if progress is not None:
                progress(f"{stage} (scikit-learn)", j + 1, len(todo))
        return out  # type: ignore[return-value]
    if todo and cfg.early_stopping:
        raise ValueError("early stopping on a validation split is implemented by the sklearn probe engine only")
    if todo:
        import torch

        old = torch.get_num_threads()
        try:
            dev = resolve_device(device)
            dt = {"float32": torch.float32, "float64": torch.float64}.get(dtype)
            if dt is None:
                raise ValueError(f"dtype must be 'float32' or 'float64', got {dtype!r}")
            if group_overhead is None:
                group_overhead = 1e6 if dev.type == "cuda" else 192.0
            groups = plan_groups([specs[i] for i in todo], overhead=group_overhead, n_categories=ncat)
            src = _Source(ids, dense, ncat)
            for gi, members in enumerate(groups):
                idx = [todo[m] for m in members]
                name = f"{stage} {gi + 1}/{len(groups)}: {describe([specs[i].name for i in idx])}"
                if dev.type == "cpu":
                    torch.set_num_threads(int(threads) if threads is not None else
                                          _cpu_threads(old, [specs[i] for i in idx], ncat, cfg, len(tr)))
                with _flush_denormals(dev.type == "cpu" and dt == torch.float32):
                    fits = _train_group(src, labels, [specs[i] for i in idx], tr, te, cfg, shuffle_seed, dev, dt,
                                        progress, name, va, proba)
                for i, f in zip(idx, fits):
                    out[i] = f
        finally:
            torch.set_num_threads(old)
    return out  # type: ignore[return-value]


#: Key offset of ``dense`` columns among a group's number columns (``ids`` columns keep their index).
_DENSE_KEY = 1 << 40


def _categories(ids: np.ndarray, n_categories) -> np.ndarray:
    """``[F]`` int64 category count per column of ``ids``."""
    F = ids.shape[1]
    if n_categories is None:
        n = int(ids.max()) + 1 if ids.size else 1
        return np.full(F, n, dtype=np.int64)
    if np.ndim(n_categories) == 0:
        return np.full(F, int(n_categories), dtype=np.int64)
    ncat = np.asarray(n_categories, dtype=np.int64).reshape(-1)
    if len(ncat) != F:
        raise ValueError(f"n_categories must be one number or one per column of ids ({F}), got {len(ncat)}")
    if (ncat < 1).any():
        raise ValueError("n_categories must be >= 1")
    return ncat


def _num_keys(s: ProbeSpec) -> set:
    """The number columns a probe reads: ``ids`` columns by index, ``dense`` columns as ``_DENSE_KEY + d``."""
    return (set() if s.onehot else set(s.columns)) | {_DENSE_KEY + d for d in s.dense}


def _oh_keys(s: ProbeSpec) -> set:
    return set(s.columns) if s.onehot else set()


def _width(ncat, oh) -> int:
    """Input columns of the one-hot blocks of ``oh`` (``ncat``: one int, or one per column)."""
    if np.ndim(ncat) == 0:
        return len(oh) * int(ncat)
    return int(sum(int(ncat[c]) for c in oh))


#: Multiply-adds of a group's first layer per step below which a CPU group trains on one thread: small
#: operations gain nothing from more threads, and on a busy machine their thread handovers cost far more
#: than the operation (measured here: 4 ms instead of 0.3 ms per step on two busy cores).
SMALL_GROUP_MACS = 8_000_000


def _cpu_threads(default: int, specs: Sequence[ProbeSpec], ncat, cfg: MLPConfig, n_train: int) -> int:
    num = set().union(*(_num_keys(s) for s in specs))
    oh = set().union(*(_oh_keys(s) for s in specs))
    K = len(num) + _width(ncat, oh)
    macs = len(specs) * cfg.hidden * K * cfg.batch(n_train)
    return default if macs >= SMALL_GROUP_MACS else 1


def describe(names: Sequence[str]) -> str:
    """Short text for a group of probes: names, with ``prefix:...`` names counted per prefix
    (``"top_k, top_1, 12 ablation cuts"``)."""
    plain = [n for n in names if ":" not in n]
    counts: dict[str, int] = {}
    for n in names:
        if ":" in n:
            counts[n.split(":", 1)[0]] = counts.get(n.split(":", 1)[0], 0) + 1
    parts = list(plain[:4]) + ([f"{len(plain) - 4} more"] if len(plain) > 4 else [])
    parts += [f"{c} {p} cut{'s' if c != 1 else ''}" if p == "ablation" else f"{c} {p}" for p, c in counts.items()]
    return ", ".join(parts)


def resolve_device(device: str | None = "auto"):
    """``torch.device`` for ``"auto"`` (CUDA if available, else CPU), ``"cpu"``, ``"cuda"``, ``"cuda:N"``.
    ValueError when CUDA is asked for and torch sees no GPU, or the name is not a device."""
    import torch

    if device in (None, "", "auto"):
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        dev = torch.device(device)
    except (RuntimeError, TypeError):
        raise ValueError(f"probe device must be auto, cpu, cuda or cuda:N, got {device!r}") from None
    if dev.type not in ("cpu", "cuda"):
        raise ValueError(f"probe device must be auto, cpu, cuda or cuda:N, got {device!r}")
    if dev.type == "cuda":
        if not torch.cuda.is_available():
            raise ValueError(f"probe device {device!r}: torch sees no CUDA GPU here")
        if dev.index is not None and dev.index >= torch.cuda.device_count():
            raise ValueError(f"probe device {device!r}: only {torch.cuda.device_count()} GPU(s) visible")
    return dev


def plan_groups(specs: Sequence[ProbeSpec], overhead: float = 192.0,
                n_categories: int | Sequence[int] = 1) -> list[list[int]]:
    """Split probes into groups, each trained as one model.

    A group's first layer reads the union of its probes' columns, so each probe pays for columns it does
    not read; every group pays a fixed cost per minibatch step (some 30 tensor operations). Cost of a
    group per step, in units of one input column of one probe: ``len(union) * n_probes + overhead``
    (one-hot columns count ``n_categories`` each, or their own entry of a per-column ``n_categories``;
    ``dense`` columns count one each). Starting from one group per probe (sorted by input
    kind, last column descending, width descending, so that nested column sets such as the ablation cuts
    of one side are neighbours), the two neighbouring groups whose merger saves the most are merged
    while a merger saves anything. A group may hold probes that read numbers and probes that read one-hot
    (its input then has both blocks).

    ``overhead``: about 200 on a CPU (measured: 30 small operations cost as much as some 200
    column-probes of matrix products); on a GPU compute is cheap and launches are not, so the engine
    uses a much larger value and nearly everything shares one group.

    Returns:
        lists of indices into ``specs``.
    """
    keys = [_num_keys(s) | _oh_keys(s) for s in specs]
    order = sorted(range(len(specs)), key=lambda i: (specs[i].onehot, -max(keys[i]), -len(keys[i]), i))
    groups = [{"ids": [i], "num": _num_keys(specs[i]), "oh": _oh_keys(specs[i])} for i in order]

    def cost(g: dict) -> float:
        return (len(g["num"]) + _width(n_categories, g["oh"])) * len(g["ids"]) + overhead

    def merged(a: dict, b: dict) -> dict:
        return {"ids": a["ids"] + b["ids"], "num": a["num"] | b["num"], "oh": a["oh"] | b["oh"]}

    while len(groups) > 1:
        best, where = 0.0, -1
        for j in range(len(groups) - 1):
            a, b = groups[j], groups[j + 1]
            saving = cost(a) + cost(b) - cost(merged(a, b))
            if saving > best:
                best, where = saving, j
        if where < 0:
            break
        groups[where:where + 2] = [merged(groups[where], groups[where + 1])]
    return [g["ids"] for g in groups]


# --------------------------------------------------------------------------------------------------
# scikit-learn engine


def settle_torch_import(name: str = "torch") -> None:
    """Wait until an import of ``name`` (torch) started by another thread has finished.

    scikit-learn's array-API helpers (and openTSNE through them) read ``sys.modules["torch"].Tensor``
    without importing torch; while another thread (the TUI's model inspection) is half-way through
    ``import torch`` that attribute is missing. ``import torch`` here blocks on the module's import lock
    until the other thread is done. Call before importing scikit-learn or openTSNE in a worker thread.
    """
    import importlib
    import sys

    if name in sys.modules:
        importlib.import_module(name)  # takes the module's import lock: returns once it is initialised


def _onehot_sklearn(X: np.ndarray, ncat: Sequence[int]):
    settle_torch_import()
    from sklearn.preprocessing import OneHotEncoder

    enc = OneHotEncoder(categories=[np.arange(int(n)) for n in ncat], handle_unknown="ignore", sparse_output=True,
                        dtype=np.float64)
    return enc.fit(X[:1] if len(X) else X)


def _fit_sklearn(ids, y, spec: ProbeSpec, tr, te, ncat, cfg: MLPConfig, dense=None, proba: bool = False) -> ProbeFit:
    settle_torch_import()
    from scipy import sparse
    from sklearn.exceptions import ConvergenceWarning
    from sklearn.neural_network import MLPClassifier

    X = ids[:, list(spec.columns)]
    parts_tr, parts_te = [], []
    if spec.columns and spec.onehot:
        enc = _onehot_sklearn(X, [ncat[c] for c in spec.columns])
        parts_tr.append(enc.transform(X[tr]))
        parts_te.append(enc.transform(X[te]))
    elif spec.columns:
        parts_tr.append(X[tr].astype(np.float64))
        parts_te.append(X[te].astype(np.float64))
    if spec.dense:
        Xd = dense[:, list(spec.dense)]
        parts_tr.append(Xd[tr].astype(np.float64))
        parts_te.append(Xd[te].astype(np.float64))
    if len(parts_tr) == 1:
        Xtr, Xte = parts_tr[0], parts_te[0]
    elif any(sparse.issparse(x) for x in parts_tr):
        Xtr, Xte = sparse.hstack(parts_tr, format="csr"), sparse.hstack(parts_te, format="csr")
    else:
        Xtr, Xte = np.hstack(parts_tr), np.hstack(parts_te)
    clf = MLPClassifier(random_state=spec.init_seed, **cfg.sklearn_kwargs())
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", ConvergenceWarning)
        clf.fit(Xtr, y[tr])
    hit_max = any(issubclass(w.category, ConvergenceWarning) for w in caught)
    pred = np.asarray(clf.predict(Xte), dtype=np.int64)
    fit = ProbeFit(spec.name, pred, int(clf.n_iter_), not hit_max, [float(v) for v in clf.loss_curve_], "sklearn",
                   "cpu")
    if proba:
        fit.classes = np.asarray(clf.classes_, dtype=np.int64)
        with np.errstate(divide="ignore"):
            fit.log_proba = np.log(np.asarray(clf.predict_proba(Xte), dtype=np.float64))
    return fit


# --------------------------------------------------------------------------------------------------
# torch engine


class _Source:
    """What every group reads: the ``[T, F]`` ids, their category counts ``[F]``, the ``[T, D]`` dense floats."""

    def __init__(self, ids: np.ndarray, dense: np.ndarray | None, ncat: np.ndarray):
        self.ids, self.dense, self.ncat = ids, dense, ncat

    def numbers(self, rows: np.ndarray, keys: list) -> np.ndarray:
        """``[len(rows), len(keys)]`` float64: ids columns (keys < ``_DENSE_KEY``) and dense columns, in order."""
        out = np.empty((len(rows), len(keys)), dtype=np.float64)
        ic = [j for j, c in enumerate(keys) if c < _DENSE_KEY]
        dc = [j for j, c in enumerate(keys) if c >= _DENSE_KEY]
        if ic:
            out[:, ic] = self.ids[np.ix_(rows, [keys[j] for j in ic])]
        if dc:
            out[:, dc] = self.dense[np.ix_(rows, [keys[j] - _DENSE_KEY for j in dc])]
        return out


class _Inputs:
    """The network input of a group: numbers for the columns its number-probes read (and the dense columns
    its probes read), one-hot blocks for the columns its one-hot probes read: ``[tokens, K]`` with
    ``K = len(num) + sum of the one-hot columns' category counts``.

    Built once as a dense matrix when it is small enough (``DENSE_INPUT_ELEMENTS``), else per block of
    tokens (one-hot by a scatter)."""

    def __init__(self, src: _Source, rows, num: list, oh: list, dt, dev, gather: bool = False):
        import torch

        self.torch, self.dt, self.dev, self.gather = torch, dt, dev, gather
        self.K1 = len(num)
        widths = np.array([int(src.ncat[c]) for c in oh], dtype=np.int64)
        self.K = len(num) + int(widths.sum())
        self.num = torch.as_tensor(src.numbers(rows, num), dtype=dt, device=dev) if num else None
        self.oh = None
        if oh:
            offs = self.K1 + np.concatenate([[0], np.cumsum(widths)[:-1]])[None, :]
            self.oh = torch.as_tensor(src.ids[np.ix_(rows, oh)].astype(np.int64) + offs, device=dev)
        self.dense = None
        if not gather and len(rows) * self.K <= DENSE_INPUT_ELEMENTS:
            self.dense = self.build(slice(None))

    def build(self, sel):
        """``[rows, K]`` input of the tokens ``sel`` (a slice or an index tensor)."""
        torch = self.torch
        if self.dense is not None:
            return self.dense[sel]
        if self.oh is None:
            return self.num[sel]
        part = self.oh[sel]
        x = torch.zeros((part.shape[0], self.K), dtype=self.dt, device=self.dev)
        if self.num is not None:
            x[:, :self.K1] = self.num[sel]
        return x.scatter_(1, part, 1.0)

    def permuted(self, order):
        """The whole input in minibatch order (a dense copy when small; else a lazy view)."""
        if self.dense is not None:
            return self.dense.index_select(0, order)
        return None

    def parts(self, sel):
        """``(numbers [rows, K1] or None, one-hot input positions [rows, n_oh] or None)`` of the tokens ``sel``."""
        num = None if self.num is None else self.num[sel]
        oh = None if self.oh is None else self.oh[sel]
        return num, oh

    def hidden(self, w1, b1, sel):
        """First-layer pre-activations ``b1 + w1 @ x^T`` (``w1 [R, K]``, ``b1 [R, 1]``) of the tokens ``sel``:
        ``[R, rows]``. In gather mode the one-hot part is a sum of the columns of ``w1`` the tokens switch on."""
        torch = self.torch
        if not self.gather:
            return torch.addmm(b1, w1, self.build(sel).T)
        num, oh = self.parts(sel)
        n = oh.shape[0] if oh is not None else num.shape[0]
        a = torch.addmm(b1, w1[:, :self.K1], num.T) if num is not None else b1.expand(w1.shape[0], n).clone()
        if oh is not None:
            a += w1.index_select(1, oh.reshape(-1)).view(w1.shape[0], n, oh.shape[1]).sum(2)
        return a

    def weight_grad(self, w1, d1, sel, scale: float, decay: float, out) -> None:
        """``out = decay * w1 + scale * d1 @ x`` (``d1 [R, rows]``): the first layer's gradient."""
        torch = self.torch
        if not self.gather:
            torch.addmm(w1, d1, self.build(sel), beta=decay, alpha=scale, out=out)
            return
        num, oh = self.parts(sel)
        torch.mul(w1, decay, out=out)
        if num is not None:
            out[:, :self.K1].addmm_(d1, num, alpha=scale)
        if oh is not None:
            R, n = d1.shape
            out.index_add_(1, oh.reshape(-1), d1.unsqueeze(2).expand(R, n, oh.shape[1]).reshape(R, -1), alpha=scale)


#: Largest input matrix (tokens x input columns) kept dense on the device (128 MB in float32).
DENSE_INPUT_ELEMENTS = 1 << 25
#: On a CPU, one-hot columns of at least this many categories on average are read by gathering the weight
#: columns a token switches on (``index_select`` / ``index_add_``) instead of a product with a dense one-hot
#: matrix that is mostly zeros. Measured on one core (100 hidden units, 200 tokens a step): the dense product
#: costs about 5-6 us per category per one-hot column (0.05 ms a step for 8 columns of 8), the gather about
#: 80 us per column in the forward and backward passes together, whatever the width: the dense product wins
#: below some 120 categories.
GATHER_MIN_WIDTH = 128


@contextmanager
def _flush_denormals(enabled: bool):
    """Flush denormal floats to zero on this thread while training (restored afterwards).

    In float32 the softmax of a trained probe puts ``exp(-90)``-sized probabilities (denormals, below
    1.2e-38) into the output gradient; x86 multiplies them some 100 times slower than normal numbers, and the
    products with them then cost most of a step (measured: the demo report's probes 97 s -> 53 s of CPU).
    Flushing changes values below 1.2e-38 to 0, far below anything the loss (clamped at float32's eps), Adam's
    eps (1e-8) or a prediction can see. Off in float64, which must stay scikit-learn's arithmetic."""
    import torch

    if not enabled:
        yield
        return
    before = float(torch.tensor(1e-39, dtype=torch.float32) * 2.0) == 0.0   # already flushing?
    torch.set_flush_denormal(True)
    try:
        yield
    finally:
        if not before:
            torch.set_flush_denormal(False)


def _train_group(src: _Source, labels, specs: Sequence[ProbeSpec], tr, te, cfg: MLPConfig, shuffle_seed, dev, dt,
                 progress: Progress | None, stage: str, va=None, want_proba: bool = False) -> list[ProbeFit]:
    """Train one group (see the module docstring); returns fits in the order of ``specs``.

    With ``va`` (held-out tokens) each probe keeps the weights of its epoch of lowest held-out log-loss and
    stops by the tol rule on that loss; ``want_proba`` adds the log-probabilities to the fits."""
    import torch

    G, H = len(specs), cfg.hidden
    num = sorted(set().union(*(_num_keys(s) for s in specs)))
    oh = sorted(set().union(*(_oh_keys(s) for s in specs)))
    width = {c: int(src.ncat[c]) for c in oh}
    at_num = {c: j for j, c in enumerate(num)}
    at_oh, o = {}, len(num)
    for c in oh:
        at_oh[c], o = o, o + width[c]
    K = o
    uniq = {j: np.unique(labels[j][tr]) for j in sorted({s.labels for s in specs})}
    classes = [uniq[s.labels] for s in specs]
    C = max(len(c) for c in classes)
    n, B = len(tr), cfg.batch(len(tr))

    # initial weights, drawn exactly as MLPClassifier._initialize does, placed in the group's layout
    W1 = np.zeros((G, H, K))
    b1 = np.zeros((G, H, 1))
    W2 = np.zeros((G, C, H))           # output weights stored class-major: W2[g] is the transpose of coefs_[1]
    b2 = np.full((G, C, 1), -np.inf)   # classes a probe never saw in training: logit -inf, never trained
    mask1 = np.zeros((G, 1, K))
    trainable2 = np.zeros((G, C, 1))
    streams = []
    for g, (s, cl) in enumerate(zip(specs, classes)):
        rs = np.random.RandomState(s.init_seed)
        rows = [at_oh[c] + j for c in s.columns for j in range(width[c])] if s.onehot else \
            [at_num[c] for c in s.columns]
        rows += [at_num[_DENSE_KEY + d] for d in s.dense]
        fan_out = len(cl) if len(cl) > 2 else 1
        bound = math.sqrt(6.0 / (len(rows) + H))
        w, b = rs.uniform(-bound, bound, (len(rows), H)), rs.uniform(-bound, bound, H)
        W1[g][:, rows] = w.T
        b1[g, :, 0] = b
        mask1[g, 0, rows] = 1.0
        bound = math.sqrt(6.0 / (H + fan_out))
        w, b = rs.uniform(-bound, bound, (H, fan_out)), rs.uniform(-bound, bound, fan_out)
        if fan_out == 1:  # binary: softmax([0, z]) = [1 - sigmoid(z), sigmoid(z)], column 0 held at 0
            W2[g, 1, :], b2[g, 0, 0], b2[g, 1, 0] = w[:, 0], 0.0, b[0]
            trainable2[g, 1, 0] = 1.0
        else:
            W2[g, :len(cl), :], b2[g, :len(cl), 0] = w.T, b
            trainable2[g, :len(cl), 0] = 1.0
        streams.append(rs)
    shuffle_rs = streams[0] if shuffle_seed is None else np.random.RandomState(int(shuffle_seed))

    # One flat buffer per quantity (parameters, gradients, Adam's m and v), each holding the four tensors
    # [W1 (G,H,K) | b1 (G,H,1) | W2 (G,C,H) | b2 (G,C,1)] back to back: Adam is then one fused kernel, or
    # seven ops without it.
    flat = torch.as_tensor(np.concatenate([a.reshape(-1) for a in (W1, b1, W2, b2)]), dtype=dt, device=dev)
    adam_m = torch.zeros_like(flat)
    adam_v = torch.zeros_like(flat)
    # on a CPU, Adam is torch's fused one-kernel update (one pass over the buffers instead of seven)
    fused = hasattr(torch, "_fused_adam_") and dev.type == "cpu"
    root = None if fused else torch.empty_like(flat)   # sqrt(v) + eps of the unfused update
    adam_t = torch.zeros((), dtype=dt, device=dev)
    sizes = (H * K, H, C * H, C)   # per probe
    mask1_t = torch.as_tensor(mask1, dtype=dt, device=dev)
    train2_t = torch.as_tensor(trainable2, dtype=dt, device=dev)
    any_binary = bool(((trainable2 == 0) & np.isfinite(b2)).any())
    full_mask = bool(mask1.all())
    ycol = torch.as_tensor(np.stack([np.searchsorted(cl, labels[s.labels][tr]) for s, cl in zip(specs, classes)]),
                           dtype=torch.int64, device=dev)
    # one-hot inputs on a CPU: gather the columns a token switches on instead of multiplying by zeros
    gather = dev.type == "cpu" and bool(oh) and K - len(num) >= GATHER_MIN_WIDTH * len(oh)
    x_train = _Inputs(src, tr, num, oh, dt, dev, gather)
    x_test = _Inputs(src, te, num, oh, dt, dev, gather)
    x_valid = _Inputs(src, va, num, oh, dt, dev, gather) if va is not None else None
    if va is not None:  # each held-out token's class column per probe (-1: a class the probe never saw)
        vcol = np.stack([np.where(np.isin(labels[s.labels][va], cl),
                                  np.searchsorted(cl, labels[s.labels][va]).clip(0, len(cl) - 1), -1)
                         for s, cl in zip(specs, classes)])
        vcol_t = torch.as_tensor(vcol, dtype=torch.int64, device=dev)
        best_flat = flat.clone()
        best_epoch = np.zeros(G, dtype=np.int64)
        vcurves: list[list[float]] = [[] for _ in range(G)]

    def views(buf, g: int):
        """The four tensors of a flat buffer for ``g`` probes: W1 (g,H,K), b1 (g,H,1), W2 (g,C,H), b2 (g,C,1)."""
        out, o = [], 0
        for size, shape in zip(sizes, ((H, K), (H, 1), (C, H), (C, 1))):
            out.append(buf[o:o + g * size].view(g, *shape))
            o += g * size
        return out

    def select(buf, g: int, keep):
        return torch.cat([v.index_select(0, keep).reshape(-1) for v in views(buf, g)])

    eps = float(torch.finfo(dt).eps)
    alpha, beta1, beta2 = cfg.alpha, cfg.beta_1, cfg.beta_2
    minus1 = torch.full((G, 1, B), -1.0, dtype=dt, device=dev)
    n_steps = -(-n // B)
    p_true = torch.empty((G, 1, n), dtype=dt, device=dev)         # probability of the true class, per token
    # the step's activations, scores, probabilities and hidden gradients live in buffers allocated once: a
    # fresh [G*H, B] tensor every step costs a page-faulting allocation (some 25 us each on a CPU)
    work_a, work_d = (torch.empty(G * H * B, dtype=dt, device=dev) for _ in range(2))
    work_z, work_p = (torch.empty(G * C * B, dtype=dt, device=dev) for _ in range(2))
    sq = torch.empty((2, G, n_steps), dtype=dt, device=dev)       # ||W1||^2, ||W2||^2 at each step
    active = list(range(G))
    fits: list[ProbeFit | None] = [None] * G
    curves: list[list[float]] = [[] for _ in range(G)]
    best = np.full(G, np.inf)
    count = np.zeros(G, dtype=np.int64)
    sample_idx = np.arange(n)
    steps = 0
    last_call = time.monotonic()
    dev_name = str(dev)
    if dev.type == "cuda" and dev.index is None:
        dev_name = f"cuda:{torch.cuda.current_device()}"

    def scores(rows: list[int], buf, x: _Inputs, n_rows: int):
        """``[len(rows), C, n_rows]`` output logits of the active probes ``rows`` (positions in ``active``)."""
        g = len(active)
        sel = torch.as_tensor(rows, device=dev)
        w1, bb1, w2, bb2 = (v.index_select(0, sel) for v in views(buf, g))
        gs = len(rows)
        chunk = max(1, int(2**22 // max(1, gs * H)))
        parts = []
        for s0 in range(0, n_rows, chunk):
            a = x.hidden(w1.reshape(gs * H, K), bb1.reshape(gs * H, 1), slice(s0, s0 + chunk)).relu_().view(gs, H, -1)
            parts.append(torch.baddbmm(bb2, w2, a))
        return torch.cat(parts, dim=2) if parts else torch.zeros((gs, C, 0), dtype=dt, device=dev)

    def log_proba(z, j: int) -> np.ndarray:
        """``[n, len(classes)]`` float64 log-probabilities of one probe from its output logits ``z [C, n]``."""
        cl = classes[active[j]]
        return torch.log_softmax(z.to(torch.float64), dim=0)[:len(cl)].T.cpu().numpy()

    def predict(rows: list[int], buf) -> list[tuple[np.ndarray, np.ndarray | None, np.ndarray | None]]:
        """(test predictions, test log-probabilities, held-out log-probabilities) of the probes ``rows``."""
        z = scores(rows, buf, x_test, len(te))
        pred_cols = z.max(dim=1).indices.cpu().numpy()   # the first largest score, as argmax; 4x faster over dim 1
        zv = scores(rows, buf, x_valid, len(va)) if (want_proba and va is not None) else None
        out = []
        for i, j in enumerate(rows):
            pred = classes[active[j]][pred_cols[i]].astype(np.int64)
            lp = log_proba(z[i], j) if want_proba else None
            lpv = log_proba(zv[i], j) if zv is not None else None
            out.append((pred, lp, lpv))
        return out

    def valid_loss() -> np.ndarray:
        """``[g]`` mean held-out log-loss (nats) of the active probes, probabilities clamped as in training."""
        z = scores(list(range(len(active))), flat, x_valid, len(va))
        lp = torch.log_softmax(z, dim=1)                                    # [g, C, n_valid]
        col = vcol_t[active]
        got = torch.gather(lp, 1, col.clamp(min=0).unsqueeze(1)).squeeze(1)  # [g, n_valid]
        floor = math.log(eps)
        got = torch.where(col >= 0, got.clamp(min=floor, max=math.log1p(-eps)), torch.full_like(got, floor))
        return (-got.mean(dim=1)).cpu().numpy().astype(np.float64) if len(va) else np.zeros(len(active))

    with torch.no_grad():
        for epoch in range(cfg.max_iter):
            if cfg.shuffle:
                perm = np.arange(n)
                shuffle_rs.shuffle(perm)
                sample_idx = sample_idx[perm]
            order = torch.as_tensor(sample_idx, device=dev)
            g = len(active)
            gH = g * H
            x_epoch = x_train.permuted(order)                 # inputs and labels in this epoch's order
            y_epoch = ycol.index_select(1, order).unsqueeze(1)  # [g, 1, n]
            pt, sq1, sq2 = p_true[:g], sq[0, :g], sq[1, :g]
            grad = torch.empty_like(flat)
            W1t, b1t, W2t, b2t = views(flat, g)
            gW1, gb1, gW2, gb2 = views(grad, g)
            n1, n2 = W1t.reshape(g, -1), W2t.reshape(g, -1)
            for j, s0 in enumerate(range(0, n, B)):
                nb = min(B, n - s0)
                yb = y_epoch[:, :, s0:s0 + nb]                                                          # [g, 1, nb]
                a = work_a[:gH * nb].view(gH, nb)
                if x_epoch is not None:
                    xb = x_epoch[s0:s0 + nb]                                                            # [nb, K]
                    torch.addmm(b1t.view(gH, 1), W1t.view(gH, K), xb.T, out=a)
                else:
                    batch = order[s0:s0 + nb]
                    a.copy_(x_train.hidden(W1t.view(gH, K), b1t.view(gH, 1), batch))
                a = a.relu_().view(g, H, nb)                                                            # [g, H, nb]
                z = torch.baddbmm(b2t, W2t, a, out=work_z[:g * C * nb].view(g, C, nb))
                p = torch.ops.aten._softmax.out(z, 1, False, out=work_p[:g * C * nb].view(g, C, nb))     # [g, C, nb]
                torch.gather(p, 1, yb, out=pt[:, :, s0:s0 + nb])
                torch.linalg.vecdot(n1, n1, out=sq1[:, j])
                torch.linalg.vecdot(n2, n2, out=sq2[:, j])
                d2 = p.scatter_add_(1, yb, minus1[:g, :, :nb])
                if any_binary:
                    d2.mul_(train2_t)
                torch.baddbmm(W2t, d2, a.transpose(1, 2), beta=alpha / nb, alpha=1.0 / nb, out=gW2)
                torch.mean(d2, dim=2, keepdim=True, out=gb2)
                d1 = torch.bmm(W2t.transpose(1, 2), d2, out=work_d[:gH * nb].view(g, H, nb))
                torch.ops.aten.threshold_backward.grad_input(d1, a, 0, grad_input=d1)
                if x_epoch is not None:
                    torch.addmm(W1t.view(gH, K), d1.view(gH, nb), xb, beta=alpha / nb, alpha=1.0 / nb,
                                out=gW1.view(gH, K))
                else:
                    x_train.weight_grad(W1t.view(gH, K), d1.view(gH, nb), batch, 1.0 / nb, alpha / nb,
                                        gW1.view(gH, K))
                if not full_mask:
                    gW1.mul_(mask1_t)
                torch.mean(d1, dim=2, keepdim=True, out=gb1)
                steps += 1
                if fused:  # torch's one-kernel Adam, its eps scaled so that the update is scikit-learn's
                    adam_t.fill_(steps)
                    torch._fused_adam_([flat], [grad], [adam_m], [adam_v], [], [adam_t], lr=cfg.learning_rate_init,
                                       beta1=beta1, beta2=beta2, weight_decay=0.0,
                                       eps=cfg.epsilon / math.sqrt(1.0 - beta2**steps), amsgrad=False, maximize=False)
                else:
                    adam_m.mul_(beta1).add_(grad, alpha=1.0 - beta1)
                    adam_v.mul_(beta2).addcmul_(grad, grad, value=1.0 - beta2)
                    lr = cfg.learning_rate_init * math.sqrt(1.0 - beta2**steps) / (1.0 - beta1**steps)
                    torch.sqrt(adam_v, out=root)
                    flat.addcdiv_(adam_m, root.add_(cfg.epsilon), value=-lr)
                if progress is not None and time.monotonic() - last_call >= PROGRESS_EVERY_S:
                    last_call = time.monotonic()
                    progress(stage, epoch, cfg.max_iter)
            # epoch loss as scikit-learn accumulates it: sum over batches of (mean log-loss + L2 / batch) * batch
            total = pt.clamp(eps, 1.0 - eps).log_().sum(dim=(1, 2)).neg_()
            total += (0.5 * alpha) * (sq1[:, :n_steps].sum(dim=1) + sq2[:, :n_steps].sum(dim=1))
            loss = (total / n).cpu().numpy().astype(np.float64)
            act = np.asarray(active)
            for j, gi in enumerate(active):
                curves[gi].append(float(loss[j]))
            if va is not None:  # the rule below on the held-out log-loss; the best epoch's weights are kept
                vloss = valid_loss()
                for j, gi in enumerate(active):
                    vcurves[gi].append(float(vloss[j]))
                better = np.nonzero(vloss < best[act])[0]
                if len(better):
                    sel = torch.as_tensor(better, device=dev)
                    for bv, cv in zip(views(best_flat, g), views(flat, g)):
                        bv.index_copy_(0, sel, cv.index_select(0, sel))
                    best_epoch[act[better]] = epoch + 1
                loss = vloss
            # scikit-learn's rule, comparisons as written there (a NaN loss never counts as "no improvement")
            count[act] = np.where(loss > best[act] - cfg.tol, count[act] + 1, 0)
            best[act] = np.where(loss < best[act], loss, best[act])
            stop = count[act] > cfg.n_iter_no_change
            last = epoch + 1 == cfg.max_iter
            if progress is not None:
                last_call = time.monotonic()
                progress(stage, epoch + 1, cfg.max_iter)
            if not (stop.any() or last):
                continue
            done = [j for j in range(g) if stop[j] or last]
            for j, (pred, lp, lpv) in zip(done, predict(done, best_flat if va is not None else flat)):
                gi = active[j]
                f = ProbeFit(specs[gi].name, pred, epoch + 1, bool(stop[j]), curves[gi], "torch", dev_name)
                if want_proba:
                    f.classes, f.log_proba, f.valid_log_proba = classes[gi].astype(np.int64), lp, lpv
                if va is not None:
                    f.best_epoch, f.valid_curve = int(best_epoch[gi]), vcurves[gi]
                fits[gi] = f
            keep_j = [j for j in range(g) if not (stop[j] or last)]
            if not keep_j:
                break
            keep = torch.as_tensor(keep_j, device=dev)
            flat, adam_m, adam_v = (select(buf, g, keep) for buf in (flat, adam_m, adam_v))
            if va is not None:
                best_flat = select(best_flat, g, keep)
            root = None if fused else torch.empty_like(flat)
            mask1_t, train2_t, ycol = (x.index_select(0, keep) for x in (mask1_t, train2_t, ycol))
            active = [active[j] for j in keep_j]
    return fits  # type: ignore[return-value]
