"""Report tables for one or several runs (paper Tables 1, 3, 4, 5; Figs. 2-5; controls).

One source of numbers: every table is computed by a ``table_*`` function returning
``{"name": str, "columns": [str, ...], "rows": [[cell, ...], ...]}`` (cells are Python ``str``,
``int``, ``float`` or ``None``); :func:`report_tables` gathers them for one run,
:func:`compare_tables` across runs, and :func:`write_report` writes them as CSV and returns the
same dicts for the CLI (rich) and the TUI.

CSV conventions: header row = the exact column names; floats written with ``repr`` (unrounded);
NaN / None written as an empty cell; text exactly as stored (with ``spreadsheet_safe``, text cells
starting with ``= + - @``, tab or CR get a leading single quote against formula injection); files
written atomically (temp file in the same directory, fsync, ``os.replace``).

``layer`` columns hold decoder-layer indices (``RunView.moe_layers``), never MoE-layer positions.
torch / sklearn / openTSNE are only imported (lazily) when probes or controls are requested.

Random numbers: one ``ReportOptions.seed``; each random step has its own stream (:mod:`moe_tui.core.analysis.seeds`).
"""

from __future__ import annotations

import math
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, Sequence

import numpy as np

from moe_tui.core.analysis import metrics, paper
from moe_tui.core.analysis import seeds as S
from moe_tui.errors import CacheError, ReportError
from moe_tui.fileio import format_cell
from moe_tui.fileio import write_csv as csv_write

if TYPE_CHECKING:  # pragma: no cover
    from moe_tui.core.analysis.probe import ProbeResult, ProbeStats

__all__ = [
    "PROBE_VARIANTS",
    "PROBE_ROWS",
    "probe_rows",
    "INFORMATION_TABLES",
    "compute_information",
    "information_tables",
    "RunView",
    "ReportOptions",
    "table_pos_counts",
    "table_spec_layer",
    "table_spec_pos",
    "table_kl_layer_expert",
    "table_kl_summary",
    "table_kl_expert_pos",
    "table_summary",
    "compute_probes",
    "ablation_cuts",
    "table_probe",
    "table_confusion",
    "table_ablation",
    "table_tsne",
    "table_spec_null",
    "table_controls",
    "CONTROL_ROWS",
    "report_tables",
    "check_comparable",
    "compare_tables",
    "paper_models",
    "write_report",
    "write_csv",
    "format_cell",
]

Progress = Callable[[str, int, int], None]
Table = dict

#: The probes the report trains, in table order (moe_tui.core.analysis.probe.VARIANTS lists every feature it can build).
PROBE_VARIANTS: tuple[str, ...] = ("top_k", "top_1", "onehot_top_k")
#: The rows of probe.csv and the confusion_<variant> tables: the probes, then the word-form baseline.
PROBE_ROWS: tuple[str, ...] = (*PROBE_VARIANTS, "baseline")


# --------------------------------------------------------------------------------------------------
# Run view


class _RunKeys:
    """The analysed tokens of a run (``analysis_mask``) and their keys, each computed once when first asked for."""

    def __init__(self, run: Any):
        self.run = run
        self.mask = np.asarray(run.analysis_mask(), dtype=bool)
        self._sentence: np.ndarray | None = None
        self._forms: tuple[np.ndarray, tuple[str, ...]] | None = None

    def keep(self, a) -> np.ndarray:
        """The analysed tokens' rows of a per-token array (np.compress: several times faster than a boolean index
        on ``[T, L, k]``)."""
        return np.compress(self.mask, np.asarray(a), axis=0)

    def sentence(self) -> np.ndarray:
        if self._sentence is None:
            offsets = np.asarray(self.run.sentence_offsets, dtype=np.int64)
            kept_before = np.concatenate([[0], np.cumsum(self.mask, dtype=np.int64)])
            self._sentence = np.repeat(np.arange(len(offsets) - 1, dtype=np.int64),
                                       kept_before[offsets[1:]] - kept_before[offsets[:-1]])
        return self._sentence

    def _form_keys(self) -> tuple[np.ndarray, tuple[str, ...]]:
        if self._forms is None:
            run = self.run
            wi = self.keep(run.word_index).astype(np.int64)
            lowered = [f.lower() for f in run.forms.tolist()] + [""]
            vocab, lower_id = np.unique(np.array(lowered, dtype=str), return_inverse=True)
            lower_id = lower_id.reshape(-1).astype(np.int64)
            no_word = len(lowered) - 1
            word_form = np.asarray(run.word_form)
            # the writer checked that every word index is inside its sentence's words
            gw = np.asarray(run.word_offsets, dtype=np.int64)[self.sentence()] + wi
            if len(word_form):
                vocab_id = np.where(wi >= 0, word_form[np.clip(gw, 0, len(word_form) - 1)], no_word)
            else:
                vocab_id = np.full(len(wi), no_word, dtype=np.int64)
            self._forms = (lower_id[vocab_id], tuple(vocab.tolist()))
        return self._forms

    def form_ids(self) -> np.ndarray:
        return self._form_keys()[0]

    def form_vocab(self) -> tuple[str, ...]:
        return self._form_keys()[1]


class _Deferred:
    """A :class:`RunView` field given as a value, or as a function computing it on first use: ``from_run`` defers
    the per-token keys that only the probes and controls need (sentence, token ids, form ids), so the routing
    tables of a large run never build them."""

    def __init__(self, default: Any = None):
        self.default = default

    def __set_name__(self, owner, name: str) -> None:
        self.slot = "_" + name

    def __get__(self, obj, objtype=None):
        if obj is None:
            return self.default  # the dataclass field's default
        value = obj.__dict__.get(self.slot, self.default)
        if callable(value):
            value = obj.__dict__[self.slot] = value()
        return value

    def __set__(self, obj, value) -> None:
        obj.__dict__[self.slot] = value

    def ready(self, obj) -> bool:
        return not callable(obj.__dict__.get(self.slot))


def form_keys(forms: Sequence[str]) -> dict:
    """``RunView`` keyword arguments for word forms given as strings (tests, notebooks): ``{"form_ids": int64 [T],
    "form_vocab": tuple}``, the ids following the sorted order of the distinct (lower-cased) forms, as
    :meth:`RunView.from_run` builds them."""
    vocab, ids = np.unique(np.asarray([str(f).lower() for f in forms], dtype=object).astype(str), return_inverse=True)
    return {"form_ids": ids.astype(np.int64).reshape(-1), "form_vocab": tuple(vocab.tolist())}


@dataclass
class RunView:
    """What a report needs from one run: analysed tokens only (special / unaligned excluded).

    Shapes: ``experts [T, L, k]`` int, ``pos [T]`` int (index into ``tags``), ``form_ids [T]`` int64 (id of the
    lower-cased form of the token's word in ``form_vocab``; ids follow the sorted order of the forms, so grouping
    by id is grouping by form), ``sentence [T]`` sentence index in the run, ``token_ids [T]``. ``form_vocab``
    holds the distinct lower-cased forms, sorted (``""``: a token without a word). ``moe_layers`` lists the
    ``L`` decoder-layer indices. ``logits [T, L, N]`` float16 router logits (NaN in a layer whose router has
    none), or None for a run extracted without them. ``form_ids``, ``sentence``, ``token_ids``, ``form_vocab``
    and ``logits`` may be given as functions: they are then computed on first use.
    """

    model: str
    run_id: str
    tags: tuple[str, ...]
    moe_layers: list[int]
    n_experts: int
    top_k: int
    experts: np.ndarray
    pos: np.ndarray
    form_ids: np.ndarray = _Deferred()
    sentence: np.ndarray = _Deferred()
    token_ids: np.ndarray = _Deferred()
    form_vocab: Sequence[str] = _Deferred(default=())
    logits: np.ndarray | None = _Deferred()
    _cache: dict = field(default_factory=dict, repr=False, compare=False)

    @classmethod
    def from_run(cls, run: Any) -> "RunView":
        """Build from a cache ``Run``: the analysed tokens' experts and POS now (``run.analysis_mask()``), the
        per-token keys on first use, all with array operations: a token's word is ``word_offsets[sentence] +
        word_index``, its form ``word_form`` of that word (an id into the run's vocabulary, which is lower-cased
        and sorted once: nothing is built per token)."""
        keys = _RunKeys(run)
        return cls(
            model=str(run.manifest["model"]["name_or_path"]),
            run_id=str(run.run_id),
            tags=tuple(run.tags),
            moe_layers=[int(x) for x in run.moe_layers],
            n_experts=int(run.num_experts),
            top_k=int(run.top_k),
            experts=keys.keep(run.experts),
            pos=keys.keep(run.pos).astype(np.int64),
            form_ids=keys.form_ids,
            sentence=keys.sentence,
            token_ids=lambda: keys.keep(run.token_ids),
            form_vocab=keys.form_vocab,
            logits=(lambda: keys.keep(run.logits)) if getattr(run, "has_logits", False) else None,
        )

    def form_strings(self) -> np.ndarray:
        """``[T]`` the lower-cased form of each token, as strings (built on request; bulk users take ``form_ids``)."""
        return np.asarray(self.form_vocab, dtype=object)[self.form_ids]

    @property
    def has_logits(self) -> bool:
        """Whether the view holds router logits (without reading a deferred ``[T, L, N]`` array)."""
        return self.__dict__.get("_logits") is not None

    # ---- cached pieces (computed once per view) -------------------------------------------------
    @property
    def n_pos(self) -> int:
        return len(self.tags)

    @property
    def n_tokens(self) -> int:
        return int(self.experts.shape[0])

    def _get(self, key: str, fn: Callable[[], Any]) -> Any:
        if key not in self._cache:
            self._cache[key] = fn()
        return self._cache[key]

    def pos_counts(self) -> tuple[np.ndarray, np.ndarray]:
        return self._get("pos_counts", lambda: metrics.pos_counts(self.pos, self.n_pos))

    def probe_experts(self) -> tuple[np.ndarray, int]:
        """``(experts [T, L, k], N')`` as the probes read them: a sentinel id (a rank a layer does not use) becomes
        its own category ``N`` and ``N' = N + 1``; without sentinels, the experts and ``N``
        (:func:`moe_tui.core.analysis.metrics.sentinel_as_bin`)."""
        return self._get("probe_experts", lambda: metrics.sentinel_as_bin(self.experts, self.n_experts))

    def counts(self) -> np.ndarray:
        return self._get("counts", lambda: metrics.assignment_counts(self.experts, self.pos, self.n_experts, self.n_pos))

    def spec(self) -> np.ndarray:
        return self._get("spec", lambda: metrics.spec_from_counts(self.counts(), self.top_k, self.pos_counts()[0]))

    def spec_pos(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        return self._get("spec_pos", lambda: metrics.spec_by_pos(self.spec()))

    def global_spec(self) -> float:
        return self._get("global_spec", lambda: metrics.global_spec(self.spec_pos()[0], self.tags, self.pos_counts()[0]))

    def global_pos(self) -> tuple[str, ...]:
        """The tags :meth:`global_spec` averages (``metrics.global_spec_tags``)."""
        return self._get("global_pos",
                         lambda: metrics.global_spec_tags(self.spec_pos()[0], self.tags, self.pos_counts()[0]))

    def kl(self, reference: str = "corpus") -> tuple[np.ndarray, np.ndarray]:
        return self._get(f"kl:{reference}", lambda: metrics.kl_per_expert(self.counts(), self.pos_counts()[0], reference=reference))

    def validate(self) -> None:
        """Raise :class:`ReportError` when the arrays do not fit together."""
        T = self.n_tokens
        where = f"run {self.run_id}"
        if self.experts.ndim != 3:
            raise ReportError(f"{where}: experts must be [T, L, k], got shape {self.experts.shape}")
        if T == 0:
            raise ReportError(f"{where}: no analysed tokens to report on")
        if self.experts.shape[1] != len(self.moe_layers):
            raise ReportError(f"{where}: {self.experts.shape[1]} routed layers but {len(self.moe_layers)} MoE layers listed")
        if self.experts.shape[2] != self.top_k:
            raise ReportError(f"{where}: experts has k={self.experts.shape[2]} but top_k={self.top_k}")
        for name in ("pos", "form_ids", "sentence", "token_ids"):
            if name != "pos" and not RunView.__dict__[name].ready(self):
                continue  # computed later from the same analysed tokens
            if len(getattr(self, name)) != T:
                raise ReportError(f"{where}: {name} has {len(getattr(self, name))} tokens, experts has {T}")
        if RunView.__dict__["logits"].ready(self) and self.logits is not None \
                and self.logits.shape[:2] != self.experts.shape[:2]:
            raise ReportError(f"{where}: logits has shape {self.logits.shape}, experts {self.experts.shape}")
        if self.pos.min() < 0 or self.pos.max() >= self.n_pos:
            raise ReportError(f"{where}: POS index outside the {self.n_pos} tags")
        try:  # ids 0..N-1, or the sentinel of a rank a layer does not use (per-layer top-k)
            self.probe_experts()
        except ValueError:
            raise ReportError(f"{where}: expert id outside 0..{self.n_experts - 1} (and not the unused-rank "
                              f"sentinel {metrics.sentinel_for(self.n_experts)})") from None


@dataclass
class ReportOptions:
    """Knobs of the probe / control computations (defaults follow the paper).

    ``probe_engine``: ``"torch"`` (batched, CUDA when available) or ``"sklearn"`` (the paper's exact
    procedure); ``probe_device``: ``auto``/``cpu``/``cuda``/``cuda:N`` (torch engine); ``probe_dtype``:
    ``float32`` or ``float64`` (torch engine); ``probe_seeds``: seeds (and splits) each probe is trained on.
    ``tsne_samples``: t-SNE points, sampled from seed 0's test tokens when there are more.
    """

    seed: int = 0
    kl_reference: str = "corpus"
    max_iter: int = 500
    early_stopping: bool = False
    ablation_step: int = 1
    ablation_removed: Sequence[int] | None = None
    tsne_samples: int = 20_000
    n_permutations: int = 100
    n_boot: int = 200
    mlp_kwargs: dict | None = None
    probe_engine: str = "torch"
    probe_device: str = "auto"
    probe_dtype: str = "float32"
    probe_seeds: int = 1


def _table(name: str, columns: Sequence[str], rows: list[list]) -> Table:
    return {"name": name, "columns": list(columns), "rows": rows}


def _f(x: Any) -> float | None:
    x = float(x)
    return None if math.isnan(x) else x


# --------------------------------------------------------------------------------------------------
# Tables without probes


def table_pos_counts(view: RunView) -> Table:
    """pos_counts.csv -- paper Table 4: tokens per POS and percent."""
    tokens, pct = view.pos_counts()
    return _table("pos_counts", ["pos", "tokens", "percent"],
                  [[t, int(n), _f(p)] for t, n, p in zip(view.tags, tokens, pct)])


def table_spec_layer(view: RunView) -> Table:
    """spec_layer.csv -- Spec per (decoder layer, POS), U and dU (paper Table 5 per layer, Fig. 4)."""
    spec = view.spec()
    tokens, _ = view.pos_counts()
    u = metrics.uniform_spec(view.top_k, view.n_experts)
    rows = []
    for li, layer in enumerate(view.moe_layers):
        for p, tag in enumerate(view.tags):
            s = _f(spec[li, p])
            rows.append([int(layer), tag, int(tokens[p]), s, u, None if s is None else s - u])
    return _table("spec_layer", ["layer", "pos", "tokens", "spec", "uniform", "delta"], rows)


def table_spec_pos(view: RunView) -> Table:
    """spec_pos.csv -- paper Table 5: per POS mean and max Spec over layers, argmax decoder layer."""
    mean, mx, arg = view.spec_pos()
    rows = [[tag, _f(mean[p]), _f(mx[p]), int(view.moe_layers[arg[p]]) if arg[p] >= 0 else None]
            for p, tag in enumerate(view.tags)]
    return _table("spec_pos", ["pos", "mean_spec", "max_spec", "max_layer"], rows)


def table_kl_layer_expert(view: RunView, kl_reference: str = "corpus") -> Table:
    """kl_layer_expert.csv -- KL(P_expert || Q) in nats per (decoder layer, expert) (Fig. 5)."""
    kl, n = view.kl(kl_reference)
    rows = [[int(layer), e, int(n[li, e]), _f(kl[li, e])]
            for li, layer in enumerate(view.moe_layers) for e in range(view.n_experts)]
    return _table("kl_layer_expert", ["layer", "expert", "assignments", "kl"], rows)


def table_kl_expert_pos(view: RunView, layer_idx: int, expert: int) -> Table:
    """kl_expert_L<layer>_E<expert> -- paper Fig. 5 bars for one (MoE layer position, expert): the POS
    distribution of the expert's assignments against the corpus POS distribution (the P and Q of its KL).
    Shares are all 0 for an expert with no assignment."""
    row = view.counts()[layer_idx, expert].astype(np.float64)
    tokens = view.pos_counts()[0].astype(np.float64)
    p = row / row.sum() if row.sum() else row
    q = tokens / tokens.sum() if tokens.sum() else tokens
    layer = int(view.moe_layers[layer_idx])
    return _table(f"kl_expert_L{layer}_E{expert}", ["pos", "expert_share", "corpus_share"],
                  [[tag, float(p[i]), float(q[i])] for i, tag in enumerate(view.tags)])


def table_kl_summary(view: RunView, kl_reference: str = "corpus") -> Table:
    """kl_summary.csv -- paper Table 3: mu_min, mu_max, mu_mean."""
    s = metrics.kl_summary(view.kl(kl_reference)[0])
    return _table("kl_summary", ["mu_min", "mu_max", "mu_mean"], [[_f(s["mu_min"]), _f(s["mu_max"]), _f(s["mu_mean"])]])


def table_summary(view: RunView, probes: dict | None = None) -> Table:
    """summary.csv -- paper Table 1 row for this run (probe cells empty without probes); ``global_pos``
    lists the tags the global Spec averages, space-separated (15 under ``upos``, 13 under ``paper15``)."""
    u = metrics.uniform_spec(view.top_k, view.n_experts)
    g = _f(view.global_spec())
    probes = probes or {}

    def acc(name: str) -> float | None:
        r = probes.get(name)
        return None if r is None else _f(r.accuracy)

    row = [view.model, len(view.moe_layers), view.n_experts, view.top_k, view.n_tokens, g, u,
           None if g is None else g - u, acc("top_k"), acc("top_1"), acc("baseline"), " ".join(view.global_pos())]
    return _table("summary", ["model", "moe_layers", "experts", "top_k", "tokens", "spec", "uniform", "delta",
                              "mlp_top_k", "mlp_top_1", "baseline", "global_pos"], [row])


# --------------------------------------------------------------------------------------------------
# Probes


def _split(view: RunView, o: "ReportOptions") -> tuple[np.ndarray, np.ndarray]:
    """Seed 0's 2/3-1/3 split (stream ``split``): the split of the confusion matrices, the t-SNE, the
    token-identity probe and the bootstrap intervals."""
    from moe_tui.core.analysis.probe import split_indices

    return view._get(f"split:{o.seed}", lambda: split_indices(view.n_tokens, seed=S.stream(o.seed, "split", 0)))


def ablation_cuts(view: RunView, o: "ReportOptions") -> list[tuple[str, int]]:
    """``(side, n)`` of the ablation (``ablation_removed``, or ``0, step, 2*step, ...``), both sides."""
    L = len(view.moe_layers)
    ns = list(o.ablation_removed) if o.ablation_removed is not None else list(range(0, L, max(1, o.ablation_step)))
    if any(int(n) < 0 or int(n) >= L for n in ns):
        raise ReportError(f"ablation: removed layer counts must lie in [0, {L})")
    return [(side, int(n)) for side in ("first", "last") for n in ns]


def _probe_key(o: "ReportOptions") -> str:
    return (f"probes:{o.seed}:{o.probe_seeds}:{o.probe_engine}:{o.probe_device}:{o.probe_dtype}:{o.max_iter}:"
            f"{o.early_stopping}:{o.mlp_kwargs!r}")


def compute_probes(view: RunView, opts: "ReportOptions | None", names: Sequence[str],
                   progress: Progress | None = None) -> dict[str, "ProbeStats"]:
    """The probes ``names`` (``top_k``, ``top_1``, ``onehot_top_k``, ``baseline``, ``control_task``,
    ``ablation:<side>:<n>``), cached on the view; the missing ones are trained together, for
    ``opts.probe_seeds`` seeds (:func:`moe_tui.core.analysis.probe.probe_suite`)."""
    from moe_tui.core.analysis.probe import VARIANTS, probe_suite

    o = opts or ReportOptions()
    cache = view._get(_probe_key(o), dict)
    missing = [n for n in dict.fromkeys(names) if n not in cache]
    if missing:
        unknown = [n for n in missing if n not in VARIANTS and n not in ("baseline", "control_task")
                   and not n.startswith("ablation:") and not (n == "logits" and view.has_logits)]
        if unknown:
            if unknown[0] == "logits":
                raise ReportError(f"run {view.run_id} has no router logits (extract it again with --save-logits)")
            raise ReportError(f"unknown probe {unknown[0]!r}")
        cuts = []
        for n in missing:
            if n.startswith("ablation:"):
                _, side, removed = n.split(":")
                cuts.append((side, int(removed)))
        if o.probe_seeds < 1:
            raise ReportError("--probe-seeds must be >= 1")
        try:
            if o.probe_engine == "torch":  # a bad device fails before any work
                from moe_tui.core.analysis.probe_engine import resolve_device

                resolve_device(o.probe_device)
            experts, n_categories = view.probe_experts()
            res = probe_suite(experts, view.pos, view.n_pos, forms=view.form_ids,
                              variants=[n for n in missing if n in VARIANTS or n == "logits"], cuts=cuts,
                              control="control_task" in missing, baseline=True, seed=o.seed, n_seeds=o.probe_seeds,
                              engine=o.probe_engine, device=o.probe_device, dtype=o.probe_dtype, max_iter=o.max_iter,
                              early_stopping=o.early_stopping, mlp_kwargs=o.mlp_kwargs, n_experts=n_categories,
                              logits=view.logits, progress=progress)
        except ValueError as exc:  # a bad option (engine, device, MLP setting): one line for the user
            raise ReportError(f"probes: {exc}") from None
        for n, stats in res.items():
            cache.setdefault(n, stats)
    return {n: cache[n] for n in names}


def probe_rows(view: RunView) -> tuple[str, ...]:
    """The rows of probe.csv for ``view``: :data:`PROBE_VARIANTS`, ``logits`` when the run holds router logits
    (the raw scores the top-k choice is made from), then the form ``baseline``."""
    return (*PROBE_VARIANTS, *(("logits",) if view.has_logits else ()), "baseline")


def compute_probe(view: RunView, variant: str, opts: ReportOptions | None = None) -> "ProbeStats":
    """One probe (``top_k``, ``top_1``, ``onehot_top_k``, ``control_task``...) or the form ``baseline``
    (:func:`compute_probes`)."""
    return compute_probes(view, opts, [variant])[variant]


def _b(x: bool | None) -> bool | None:
    return None if x is None else bool(x)


def table_probe(results: dict[str, "ProbeStats"]) -> Table:
    """probe.csv -- accuracies of top_k, top_1, onehot_top_k probes and the baseline (Table 1): mean over
    the seeds, its standard deviation, the seeds, the epochs run (largest over the seeds), whether every
    seed converged before ``max_iter``, and the engine and device that trained it (empty for the baseline)."""
    rows = [[name, _f(r.accuracy), r.train_tokens, r.test_tokens, _f(r.accuracy_sd), r.seeds, r.n_iter,
             _b(r.converged), r.engine, r.device] for name, r in results.items()]
    return _table("probe", ["variant", "accuracy", "train_tokens", "test_tokens", "accuracy_sd", "seeds", "n_iter",
                            "converged", "engine", "device"], rows)


def table_confusion(result: "ProbeResult | ProbeStats", tags: Sequence[str]) -> Table:
    """confusion_<variant>.csv -- full P x P confusion matrix in long form (true, pred, count), of seed 0."""
    result = getattr(result, "first", result)
    cm = result.confusion
    rows = [[tags[i], tags[j], int(cm[i, j])] for i in range(len(tags)) for j in range(len(tags))]
    return _table(f"confusion_{result.variant}", ["true", "pred", "count"], rows)


def table_ablation(view: RunView, opts: ReportOptions | None = None, progress: Progress | None = None) -> Table:
    """ablation.csv -- paper Fig. 3: accuracy after removing the first / last n MoE layers (mean over the
    seeds, its standard deviation, epochs run and convergence as in probe.csv)."""
    o = opts or ReportOptions()
    cuts = ablation_cuts(view, o)
    names = [f"ablation:{side}:{n}" for side, n in cuts]
    res = compute_probes(view, o, names, progress=progress)
    rows = [[side, n, _f(res[nm].accuracy), _f(res[nm].accuracy_sd), res[nm].n_iter, _b(res[nm].converged)]
            for (side, n), nm in zip(cuts, names)]
    return _table("ablation", ["side", "removed", "accuracy", "accuracy_sd", "n_iter", "converged"], rows)


def table_tsne(view: RunView, opts: ReportOptions | None = None, stop: Callable[[], bool] | None = None) -> Table:
    """tsne.csv -- paper Fig. 2: t-SNE of the top-k paths of seed 0's test tokens (a seeded sample of
    ``tsne_samples`` of them when there are more). ``token`` is the position in the view's analysed-token
    arrays. ``stop``: see :func:`moe_tui.core.analysis.probe.tsne_embedding` (raises ``Cancelled``)."""
    return _tsne_job(view, opts or ReportOptions())(stop)


def _tsne_job(view: RunView, o: ReportOptions) -> Callable[[Callable[[], bool] | None], Table]:
    """The t-SNE table as a function of ``stop`` alone: the view's arrays it reads are taken now, so the
    function may run in another thread while this one goes on with the view."""
    from moe_tui.core.analysis.probe import tsne_embedding

    experts, n_categories = view.probe_experts()
    pos, tags, tokens = view.pos, list(view.tags), _split(view, o)[1]

    def run(stop: Callable[[], bool] | None) -> Table:
        idx, xy, p = tsne_embedding(experts, pos, n_samples=o.tsne_samples, seed=S.stream(o.seed, "tsne"),
                                    tokens=tokens, n_experts=n_categories, stop=stop)
        rows = [[int(i), float(x), float(y), tags[int(q)]] for i, (x, y), q in zip(idx, xy, p)]
        return _table("tsne", ["token", "x", "y", "pos"], rows)

    return run


class _Beside:
    """``fn(stop)`` computed in a daemon thread while the caller does other work (the t-SNE beside the probe
    training: openTSNE's Barnes-Hut loop and torch's kernels both run without the GIL, so on two cores
    they overlap). ``stop()`` turns True once :meth:`cancel` is called; :meth:`result` waits, calling
    ``waiting()`` about ten times a second (it may raise, e.g. ``Cancelled``: the computation is then
    told to stop), and returns the value or raises the computation's own exception."""

    def __init__(self, fn: Callable[[Callable[[], bool]], Any], name: str):
        import threading

        self._stop = threading.Event()
        self._out: dict[str, Any] = {}
        self._thread = threading.Thread(target=self._run, args=(fn,), name=name, daemon=True)
        self._thread.start()

    def _run(self, fn) -> None:
        try:
            self._out["value"] = fn(self._stop.is_set)
        except BaseException as exc:  # noqa: BLE001 - handed to the caller by result()
            self._out["error"] = exc

    def cancel(self) -> None:
        self._stop.set()

    def result(self, waiting: Callable[[], None] | None = None) -> Any:
        try:
            while self._thread.is_alive():
                self._thread.join(0.1)
                if waiting is not None:
                    waiting()
        except BaseException:
            self.cancel()
            raise
        if "error" in self._out:
            raise self._out["error"]
        return self._out["value"]


def spare_cpus() -> int:
    """CPUs this process may run on, besides the one it is using (0 on one CPU; ``taskset`` limits it)."""
    try:
        n = len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        n = os.cpu_count() or 1
    return max(0, n - 1)


# --------------------------------------------------------------------------------------------------
# Controls


def table_spec_null(view: RunView, opts: ReportOptions | None = None, progress: Progress | None = None) -> Table:
    """spec_null.csv -- permutation null of Spec per (decoder layer, POS); excess = spec - null mean;
    ``p_value`` = (1 + #{null >= spec}) / (1 + R); ``q_value`` = Benjamini-Hochberg over all layer x POS
    cells with a p-value."""
    from moe_tui.core.analysis.controls import spec_permutation_null

    o = opts or ReportOptions()
    res = view._get(f"null:{o.seed}:{o.n_permutations}", lambda: spec_permutation_null(
        view.experts, view.pos, view.n_experts, view.n_pos, n_permutations=o.n_permutations,
        seed=S.stream(o.seed, "permutation_null"), progress=progress))
    rows = []
    for li, layer in enumerate(view.moe_layers):
        for p, tag in enumerate(view.tags):
            rows.append([int(layer), tag, _f(res["spec"][li, p]), _f(res["null_mean"][li, p]),
                         _f(res["null_p95"][li, p]), _f(res["excess"][li, p]), _f(res["p_value"][li, p]),
                         _f(res["q_value"][li, p])])
    return _table("spec_null", ["layer", "pos", "spec", "null_mean", "null_p95", "excess", "p_value", "q_value"], rows)


#: The rows of controls.csv, in order; then ``<variant>_ci_low`` / ``_ci_high`` for each probe variant reported
#: and the baseline.
CONTROL_ROWS: tuple[str, ...] = (
    "token_identity", "control_task", "selectivity",
    "ambiguous_token_ids", "ambiguous_test_tokens", "ambiguous_probe", "ambiguous_token_identity",
    "ambiguous_form_baseline",
    "hamming_same_token_same_pos", "hamming_same_token_diff_pos", "context_effect_p",
    "spec_ci_low", "spec_ci_high", "spec_bootstrap_bias_sd", "spec_pct_low", "spec_pct_high",
)


def table_controls(view: RunView, opts: ReportOptions | None = None, progress: Progress | None = None,
                   probe_variants: Sequence[str] = ("top_k",)) -> Table:
    """controls.csv (quantity, value) -- token identity, control task, selectivity; on the ambiguous
    token ids (seen with >= 2 POS) the routing probe, the token-identity predictor and the form baseline;
    the Hamming distances of top-k paths between occurrences of one token id with the same / a different
    POS and the permutation p-value of their difference; sentence-bootstrap BCa 95% intervals (global
    Spec and each probe in ``probe_variants`` plus the baseline) and, for the global Spec, the percentile
    interval of the same replicates (``spec_pct_*``: the better cover where BCa over-corrects). The
    control task and selectivity are means over the probe seeds; the per-token rows (ambiguous tokens,
    intervals) use seed 0's split."""
    from moe_tui.core.analysis import controls as C

    o = opts or ReportOptions()
    tr, te = _split(view, o)
    names = list(dict.fromkeys(["top_k", "baseline", "control_task", *probe_variants]))
    stats = compute_probes(view, o, names, progress=progress)
    real, base, ctrl = stats["top_k"], stats["baseline"], stats["control_task"]
    values: dict[str, Any] = {}
    tid = C.token_identity_probe(view.token_ids, view.pos, view.n_pos, (tr, te))
    values["token_identity"] = tid.accuracy
    values["control_task"] = ctrl.accuracy
    values["selectivity"] = real.accuracy - ctrl.accuracy
    values.update(C.ambiguous_tokens(view.token_ids, view.pos, view.n_pos, probe=real.first, token_identity=tid,
                                     form_baseline=base.first))
    if progress is not None:
        progress("context effect", 0, 1)
    ctx = view._get(f"context:{o.seed}:{o.n_permutations}", lambda: C.context_effect(
        view.experts, view.token_ids, view.pos, view.n_pos, view.n_experts, n_permutations=o.n_permutations,
        seed=S.stream(o.seed, "context_effect")))
    values["hamming_same_token_same_pos"] = ctx["same_pos"]
    values["hamming_same_token_diff_pos"] = ctx["diff_pos"]
    values["context_effect_p"] = ctx["p_value"]
    boot = S.stream(o.seed, "bootstrap")
    bs = C.bootstrap_spec(view.experts, view.pos, view.n_experts, view.n_pos, view.sentence, view.tags,
                          n_boot=o.n_boot, seed=boot, progress=progress)
    values["spec_ci_low"], values["spec_ci_high"] = bs["low"], bs["high"]
    values["spec_bootstrap_bias_sd"] = bs["bias_sd"]
    values["spec_pct_low"], values["spec_pct_high"] = bs["percentile_low"], bs["percentile_high"]
    counts = ("ambiguous_token_ids", "ambiguous_test_tokens")
    rows = [[key, int(values[key]) if key in counts else _f(values[key])] for key in CONTROL_ROWS]
    for name in list(probe_variants) + ["baseline"]:
        r = stats[name].first
        ba = C.bootstrap_accuracy(r.correct, view.sentence[r.test_idx], n_boot=o.n_boot, seed=boot)
        rows.append([f"{name}_ci_low", _f(ba["low"])])
        rows.append([f"{name}_ci_high", _f(ba["high"])])
    return _table("controls", ["quantity", "value"], rows)


# --------------------------------------------------------------------------------------------------
# Information (moe_tui.core.analysis.information): what routing knows that the token does not

#: The files of ``report --information``, in order.
INFORMATION_TABLES: tuple[str, ...] = ("conditional", "information", "layer_probe", "mdl", "transitions", "paths")


def compute_information(view: RunView, opts: ReportOptions | None = None, progress: Progress | None = None) -> dict:
    """The information measures of one run, cached on the view: ``{"probes": {name: ProbeCE}, "gains":
    {measure: (overall, [P])}, "mdl": {code: {...}}, "transitions": [...], "paths": {...}}``.

    Probes (torch engine, on ``opts.probe_device`` / ``probe_dtype``, MLP settings of ``max_iter`` and
    ``mlp_kwargs``) are fitted on seed 0's training split less a held-out tenth (stream ``info_valid``),
    which stops them, and scored on seed 0's test split. The online code sends the training split in the
    order of stream ``mdl_order``; its control task is seed 0's (stream ``control_labels``)."""
    from moe_tui.core.analysis import information as I
    from moe_tui.core.analysis.probe import control_labels_for
    from moe_tui.core.analysis.probe_engine import MLPConfig, resolve_device

    o = opts or ReportOptions()
    key = f"information:{o.seed}:{o.probe_device}:{o.probe_dtype}:{o.max_iter}:{o.mlp_kwargs!r}"
    if key in view._cache:
        return view._cache[key]
    try:
        resolve_device(o.probe_device)
        cfg = MLPConfig.from_sklearn(o.max_iter, o.mlp_kwargs)
    except ValueError as exc:
        raise ReportError(f"information probes: {exc}") from None
    tr, te = _split(view, o)
    fit, va = I.holdout_split(tr, S.stream(o.seed, "info_valid"))
    experts, n_categories = view.probe_experts()  # an unused-rank sentinel reads as one more category
    common = dict(n_experts=n_categories, init_seed=S.int_seed(o.seed, "mlp_init", 0),
                  shuffle_seed=S.int_seed(o.seed, "mlp_shuffle", 0), config=cfg, device=o.probe_device,
                  dtype=o.probe_dtype, progress=progress)
    probes = I.conditional_probes(experts, view.pos, view.n_pos, view.token_ids, (tr, te), va,
                                  logits=view.logits, **common)
    control = control_labels_for(view.form_ids, view.pos, view.n_pos, S.stream(o.seed, "control_labels", 0))
    order = np.asarray(tr)[np.random.default_rng(S.stream(o.seed, "mdl_order")).permutation(len(tr))]
    mdl = I.online_codelength(experts, [view.pos, control], view.n_pos, view.token_ids, order,
                              logits=view.logits, **common)
    res = {"probes": probes, "gains": I.gains(probes, view.pos[te], view.n_pos), "mdl": mdl,
           "transitions": I.transitions(experts, n_categories), "paths": I.path_stats(experts)}
    view._cache[key] = res
    return res


def table_conditional(res: dict) -> Table:
    """conditional.csv -- conditional probing: accuracy and cross-entropy (bits per test token) of POS given
    nothing (the training prior), the token id, the routes, both, and with router logits the logits and
    the token id and the logits."""
    from moe_tui.core.analysis.information import FEATURES

    p = res["probes"]
    rows = [[f, _f(p[f].accuracy), _f(p[f].cross_entropy_bits)] for f in FEATURES if f in p]
    return _table("conditional", ["features", "accuracy", "cross_entropy_bits"], rows)


def table_information(res: dict, tags: Sequence[str]) -> Table:
    """information.csv -- each gain in bits per token (``CE(first) - CE(second)``, see
    :data:`moe_tui.core.analysis.information.GAINS`): overall (``pos`` empty), then per POS (empty value: no test
    token of that POS)."""
    rows: list[list] = []
    for name, (overall, per) in res["gains"].items():
        rows.append([name, "", _f(overall)])
        rows += [[name, tag, _f(per[i])] for i, tag in enumerate(tags)]
    return _table("information", ["measure", "pos", "value"], rows)


def table_layer_probe(res: dict, moe_layers: Sequence[int]) -> Table:
    """layer_probe.csv -- one probe per MoE layer's route (its k expert ids, one-hot): accuracy, cross-entropy
    (bits per test token) and its gain given the token, ``CE(token id) - CE(token id + that layer's route)``."""
    p = res["probes"]
    rows = []
    for i, layer in enumerate(moe_layers):
        one, both = p[f"layer:{i}"], p[f"token_id+layer:{i}"]
        rows.append([int(layer), _f(one.accuracy), _f(one.cross_entropy_bits),
                     _f(p["token_id"].cross_entropy_bits - both.cross_entropy_bits)])
    return _table("layer_probe", ["layer", "accuracy", "cross_entropy_bits", "gain_given_token_bits"], rows)


def table_mdl(res: dict) -> Table:
    """mdl.csv -- online code length (Voita & Titov 2020) of POS given the routes, of the control task's labels
    given the routes, of POS given the token id (and given the logits): bits, the uniform code's bits, and
    their ratio (compression = uniform / online)."""
    rows = [[code, _f(m["codelength_bits"]), _f(m["uniform_codelength_bits"]), _f(m["compression"])]
            for code, m in res["mdl"].items()]
    return _table("mdl", ["features", "codelength_bits", "uniform_codelength_bits", "compression"], rows)


def table_transitions(res: dict, moe_layers: Sequence[int]) -> Table:
    """transitions.csv -- for consecutive MoE layers, the mutual information (bits) between the top-1 expert at
    one and at the next, and the same over the mean of their entropies (empty when both are constant)."""
    rows = [[int(moe_layers[a]), int(moe_layers[b]), _f(mi), None if nmi is None else _f(nmi)]
            for a, b, mi, nmi in res["transitions"]]
    return _table("transitions", ["layer_from", "layer_to", "mutual_information_bits", "normalized_mi"], rows)


def table_paths(res: dict) -> Table:
    """paths.csv -- whole top-1 paths (one expert per MoE layer): tokens, distinct paths, their entropy in
    bits, share of tokens on the 10 most common paths."""
    rows = [[k, v if isinstance(v, int) else _f(v)] for k, v in res["paths"].items()]
    return _table("paths", ["measure", "value"], rows)


def information_tables(view: RunView, opts: ReportOptions | None = None,
                       progress: Progress | None = None) -> dict[str, Table]:
    """The tables of :data:`INFORMATION_TABLES` for one run (:func:`compute_information`)."""
    res = compute_information(view, opts, progress)
    return {"conditional": table_conditional(res), "information": table_information(res, view.tags),
            "layer_probe": table_layer_probe(res, view.moe_layers), "mdl": table_mdl(res),
            "transitions": table_transitions(res, view.moe_layers), "paths": table_paths(res)}


# --------------------------------------------------------------------------------------------------
# Gathering


def _throttled(progress: Progress | None, every_s: float = 0.1) -> Progress | None:
    """Forward ``progress`` calls when the stage changes, at the end of a stage, or ``every_s`` apart (the
    probe engine reports every epoch; a UI needs a few updates a second). The forwarded call may raise."""
    if progress is None:
        return None
    import time

    state = {"stage": None, "t": 0.0}

    def call(stage: str, done: int, total: int) -> None:
        now = time.monotonic()
        if stage != state["stage"] or done >= total or now - state["t"] >= every_s:
            state["stage"], state["t"] = stage, now
            progress(stage, done, total)

    return call


def _asks_stop(step: Callable[[str, int, int], None], stage: str) -> Callable[[], bool]:
    """A ``stop()`` for a computation that cannot call ``progress`` itself: it calls ``step(stage, 0, 1)``
    (which raises to cancel) and otherwise answers False."""

    def stop() -> bool:
        step(stage, 0, 1)
        return False

    return stop


def report_tables(view: RunView, *, probe: bool = False, controls: bool = False, seed: int = 0,
                  kl_reference: str = "corpus", progress: Progress | None = None,
                  options: ReportOptions | None = None, information: bool = False) -> dict[str, Table]:
    """All tables of one run, keyed by file stem (``pos_counts``, ``spec_layer``, ...).

    ``progress(stage, done, total)`` is called between steps and during training (at most about ten
    times a second; it may raise ``Cancelled``, which stops a training within a second).
    """
    o = options or ReportOptions(seed=seed, kl_reference=kl_reference)
    view.validate()
    forward = _throttled(progress)

    def step(name: str, i: int, n: int) -> None:
        if forward is not None:
            forward(f"{view.run_id}: {name}", i, n)

    out: dict[str, Table] = {}
    step("routing tables", 0, 1)
    out["pos_counts"] = table_pos_counts(view)
    out["spec_layer"] = table_spec_layer(view)
    out["spec_pos"] = table_spec_pos(view)
    out["kl_layer_expert"] = table_kl_layer_expert(view, o.kl_reference)
    out["kl_summary"] = table_kl_summary(view, o.kl_reference)
    step("routing tables", 1, 1)
    probes: dict[str, ProbeStats] = {}
    # with a spare CPU the t-SNE (one thread, tens of seconds) runs beside the probe training
    tsne = _Beside(_tsne_job(view, o), "moe-tui t-SNE") if probe and spare_cpus() else None
    try:
        if probe or controls:  # every probe the report needs, trained together
            names = list(probe_rows(view)) + [f"ablation:{s}:{n}" for s, n in ablation_cuts(view, o)] if probe else []
            if controls:
                names += ["top_k", "baseline", "control_task"]
            compute_probes(view, o, list(dict.fromkeys(names)), progress=step)
        if probe:
            names = list(probe_rows(view))
            probes = compute_probes(view, o, names)
            out["probe"] = table_probe(probes)
            for name in names:
                out[f"confusion_{name}"] = table_confusion(probes[name], view.tags)
            out["ablation"] = table_ablation(view, o, progress=step)
            step("t-SNE", 0, 1)
            if tsne is not None:
                out["tsne"] = tsne.result(lambda: step("t-SNE", 0, 1))
            else:
                out["tsne"] = table_tsne(view, o, stop=_asks_stop(step, "t-SNE"))
    except BaseException:
        if tsne is not None:
            tsne.cancel()
        raise
    out["summary"] = table_summary(view, probes)
    if controls:
        out["spec_null"] = table_spec_null(view, o, progress=step)
        variants = PROBE_VARIANTS if probe else ("top_k",)
        out["controls"] = table_controls(view, o, progress=step, probe_variants=variants)
    if information:
        out.update(information_tables(view, o, progress=step))
    step("done", 1, 1)
    return out


def check_comparable(views: Sequence[RunView]) -> None:
    """Raise :class:`ReportError` (one line) unless every run's global Spec averages the same tags.

    A global Spec over 15 tags (``upos``: AUX and SCONJ included) and one over 13 (``paper15``) are
    different quantities; so are two runs where a POS occurs in one corpus only.
    """
    if len(views) < 2:
        return
    first = views[0]
    ref = first.global_pos()
    for v in views[1:]:
        other = v.global_pos()
        if other == ref:
            continue
        only_a = [t for t in ref if t not in other]
        only_b = [t for t in other if t not in ref]
        diff = "; ".join(part for part in (
            f"only {first.run_id} has {' '.join(only_a)}" if only_a else "",
            f"only {v.run_id} has {' '.join(only_b)}" if only_b else "") if part)
        raise ReportError(
            f"cannot put runs side by side: their global Spec averages different tags "
            f"({first.run_id}: {len(ref)} POS, {v.run_id}: {len(other)} POS; {diff}); "
            f"compare runs extracted with the same --tagset on the same corpus")


def compare_tables(views: Sequence[RunView], per_run: dict[str, dict[str, Table]]) -> dict[str, Table]:
    """Cross-run Tables 1, 3, 5 from already computed per-run tables (same numbers as the per-run files).

    Raises :class:`ReportError` when the runs' global Spec averages different tags (:func:`check_comparable`).
    """
    check_comparable(views)
    t1, t3, t5 = [], [], []
    for v in views:
        tabs = per_run[v.run_id]
        s = dict(zip(tabs["summary"]["columns"], tabs["summary"]["rows"][0]))
        t1.append([v.model, v.run_id, f"{v.top_k}/{v.n_experts}", len(v.moe_layers), s["mlp_top_k"], s["mlp_top_1"],
                   s["spec"], s["uniform"], s["delta"]])
        k = tabs["kl_summary"]["rows"][0]
        t3.append([v.model, v.run_id, *k])
        for pos, mean, mx, layer in tabs["spec_pos"]["rows"]:
            t5.append([pos, v.model, v.run_id, mean, mx, layer])
    return {
        "compare_table1": _table("compare_table1", ["model", "run_id", "k_n", "moe_layers", "mlp_top_k", "mlp_top_1",
                                                    "spec", "uniform", "delta"], t1),
        "compare_table3": _table("compare_table3", ["model", "run_id", "mu_min", "mu_max", "mu_mean"], t3),
        "compare_table5": _table("compare_table5", ["pos", "model", "run_id", "mean_spec", "max_spec", "max_layer"], t5),
    }


# --------------------------------------------------------------------------------------------------
# Writing



def write_csv(path: str | os.PathLike, table: Table, *, spreadsheet_safe: bool = False) -> Path:
    """Write one table atomically (temp file + fsync + ``os.replace``) with :func:`moe_tui.fileio.write_csv`."""
    try:
        return csv_write(path, table["columns"], table["rows"], spreadsheet_safe=spreadsheet_safe)
    except CacheError as exc:
        raise ReportError(str(exc)) from None


def paper_models(views: Sequence[RunView], paper_model: str | None = "auto") -> tuple[dict[str, str], list[str]]:
    """Which paper model each run is set beside (``paper_vs_measured.csv``), decided before any work.

    ``paper_model``: ``"auto"`` infers it from each run's hub id (:func:`moe_tui.core.analysis.paper.match_model`);
    ``None`` turns the comparison off; a name of :data:`moe_tui.core.analysis.paper.PAPER_MODELS` sets it for the one
    run given. Returns ``({run_id: model}, notices)``; a notice says why a matched run is left out (its
    tagset is not the paper's). Raises :class:`ReportError` for an unknown name, a name with several runs, or
    a named run whose tagset is not the paper's.
    """
    if paper_model is None:
        return {}, []
    if paper_model != "auto":
        if paper_model not in paper.PAPER_MODELS:
            raise ReportError(f"unknown paper model {paper_model!r}; one of {', '.join(paper.PAPER_MODELS)}")
        if len(views) != 1:
            raise ReportError("--paper-model names the model of one run; give one run, or leave it out to match "
                              "each run by its hub id")
        why = paper.tagset_mismatch(views[0].tags)
        if why is not None:
            raise ReportError(f"run {views[0].run_id}: {why}")
        paper.load_figures()  # a damaged figures file fails now
        return {views[0].run_id: paper_model}, []
    chosen: dict[str, str] = {}
    notices: list[str] = []
    try:
        figures = paper.load_figures()
    except ReportError as exc:  # a damaged install: the report goes on without the paper
        return {}, [f"no paper_vs_measured.csv: {exc}"]
    for v in views:
        model = paper.match_model(v.model, figures)
        if model is None:
            continue
        why = paper.tagset_mismatch(v.tags)
        if why is not None:
            notices.append(f"run {v.run_id} is {model} but gets no paper_vs_measured.csv: {why}")
            continue
        chosen[v.run_id] = model
    return chosen, notices


def write_report(views: list[RunView], out_dir: str | os.PathLike, *, probe: bool = False, controls: bool = False,
                 seed: int = 0, kl_reference: str = "corpus", progress: Progress | None = None,
                 options: ReportOptions | None = None, spreadsheet_safe: bool = False,
                 paper_model: str | None = "auto",
                 figures: bool = False, information: bool = False) -> dict:
    """Compute and write the report (``spreadsheet_safe``: neutralise formula-like text cells; off = exact).

    Per run: ``out_dir/<run_id>/`` gets pos_counts, spec_layer, spec_pos, kl_layer_expert,
    kl_summary, summary (+ probe, confusion_<variant>, ablation, tsne with ``probe``; + spec_null,
    controls with ``controls``; + conditional, information, layer_probe, mdl, transitions, paths with
    ``information``; + paper_vs_measured for a run of one of the paper's models, see
    :func:`paper_models`). With two or more runs, ``out_dir/`` gets compare_table1/3/5.
    With ``figures``, the paper's figures drawn from those tables (:mod:`moe_tui.core.analysis.figures`) as PNG
    and PDF: per run ``fig_spec_by_layer``, ``fig_kl_heatmap`` (+ ``fig_confusion_<variant>``,
    ``fig_ablation``, ``fig_tsne`` with ``probe``), and with several runs their cross-model versions in
    ``out_dir/``.

    Returns ``{"runs": {run_id: {stem: table}}, "compare": {stem: table}, "files": [paths],
    "paper": {run_id: paper model}, "notices": [one-line str]}`` (``files`` lists the CSVs, then the figures).
    Raises :class:`ReportError` (no runs, duplicate run ids, bad arrays, runs whose global Spec averages
    different tags, a bad ``paper_model``, unwritable output, matplotlib missing with ``figures``) before any
    long computation where it can.
    """
    if not views:
        raise ReportError("no runs to report on")
    ids = [v.run_id for v in views]
    if len(set(ids)) != len(ids):
        raise ReportError(f"the same run is listed twice: {sorted({i for i in ids if ids.count(i) > 1})}")
    if kl_reference not in ("corpus", "uniform"):
        raise ReportError(f"KL reference must be 'corpus' or 'uniform', got {kl_reference!r}")
    if figures:
        from moe_tui.core.analysis.figures import require_matplotlib

        require_matplotlib()
    for v in views:
        v.validate()
    check_comparable(views)  # refuse now, not after minutes of probes
    matched, notices = paper_models(views, paper_model)
    o = options or ReportOptions(seed=seed, kl_reference=kl_reference)
    out = Path(out_dir)
    files: list[str] = []
    per_run: dict[str, dict[str, Table]] = {}
    for v in views:
        tables = report_tables(v, probe=probe, controls=controls, progress=progress, options=o,
                               information=information)
        if v.run_id in matched:
            tables["paper_vs_measured"] = paper.paper_vs_measured(matched[v.run_id], tables)
        per_run[v.run_id] = tables
        d = out / v.run_id
        try:
            d.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise ReportError(f"cannot create output folder {d}: {exc.strerror or exc}") from exc
        for stem, t in tables.items():
            files.append(str(write_csv(d / f"{stem}.csv", t, spreadsheet_safe=spreadsheet_safe)))
    compare: dict[str, Table] = {}
    if len(views) >= 2:
        compare = compare_tables(views, per_run)
        for stem, t in compare.items():
            files.append(str(write_csv(out / f"{stem}.csv", t, spreadsheet_safe=spreadsheet_safe)))
    if figures:
        from moe_tui.core.analysis.figures import panel_titles, write_figures

        titles = panel_titles([v.model for v in views], ids)
        paths = write_figures(out, [(v.run_id, t, per_run[v.run_id]) for v, t in zip(views, titles)],
                              progress=progress)
        files += [str(p) for p in paths]
    return {"runs": per_run, "compare": compare, "files": files, "paper": matched, "notices": notices}
