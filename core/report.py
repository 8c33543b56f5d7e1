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
sklearn is only imported (lazily) when probes or controls are requested.
"""

from __future__ import annotations

import math
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, Sequence

import numpy as np

from moe_tui.core import metrics
from moe_tui.errors import CacheError, ReportError
from moe_tui.fileio import format_cell
from moe_tui.fileio import write_csv as csv_write

if TYPE_CHECKING:  # pragma: no cover
    from moe_tui.core.probe import ProbeResult

__all__ = [
    "RunView",
    "ReportOptions",
    "table_pos_counts",
    "table_spec_layer",
    "table_spec_pos",
    "table_kl_layer_expert",
    "table_kl_summary",
    "table_summary",
    "table_probe",
    "table_confusion",
    "table_ablation",
    "table_tsne",
    "table_spec_null",
    "table_controls",
    "report_tables",
    "compare_tables",
    "write_report",
    "write_csv",
    "format_cell",
]

Progress = Callable[[str, int, int], None]
Table = dict

PROBE_VARIANTS: tuple[str, ...] = ("top_k", "top_1", "onehot_top_k")


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


@dataclass
class RunView:
    """What a report needs from one run: analysed tokens only (special / unaligned excluded).

    Shapes: ``experts [T, L, k]`` int, ``pos [T]`` int (index into ``tags``), ``form_ids [T]`` int64 (id of the
    lower-cased form of the token's word in ``form_vocab``; ids follow the sorted order of the forms, so grouping
    by id is grouping by form), ``sentence [T]`` sentence index in the run, ``token_ids [T]``. ``form_vocab``
    holds the distinct lower-cased forms, sorted (``""``: a token without a word). ``moe_layers`` lists the
    ``L`` decoder-layer indices. ``form_ids``, ``sentence``, ``token_ids`` and ``form_vocab`` may be given as
    functions: they are then computed on first use.
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
        )

    def form_strings(self) -> np.ndarray:
        """``[T]`` the lower-cased form of each token, as strings (built on request; bulk users take ``form_ids``)."""
        return np.asarray(self.form_vocab, dtype=object)[self.form_ids]

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

    def counts(self) -> np.ndarray:
        return self._get("counts", lambda: metrics.assignment_counts(self.experts, self.pos, self.n_experts, self.n_pos))

    def spec(self) -> np.ndarray:
        return self._get("spec", lambda: metrics.spec_from_counts(self.counts(), self.top_k, self.pos_counts()[0]))

    def spec_pos(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        return self._get("spec_pos", lambda: metrics.spec_by_pos(self.spec()))

    def global_spec(self) -> float:
        return self._get("global_spec", lambda: metrics.global_spec(self.spec_pos()[0], self.tags, self.pos_counts()[0]))

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
        if self.pos.min() < 0 or self.pos.max() >= self.n_pos:
            raise ReportError(f"{where}: POS index outside the {self.n_pos} tags")
        if int(self.experts.min()) < 0 or int(self.experts.max()) >= self.n_experts:
            raise ReportError(f"{where}: expert id outside 0..{self.n_experts - 1}")


@dataclass
class ReportOptions:
    """Knobs of the probe / control computations (defaults follow the paper / the brief)."""

    seed: int = 0
    kl_reference: str = "corpus"
    max_iter: int = 500
    early_stopping: bool = False
    ablation_step: int = 1
    ablation_removed: Sequence[int] | None = None
    tsne_samples: int = 5000
    n_permutations: int = 100
    n_boot: int = 200
    mlp_kwargs: dict | None = None


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


def table_kl_summary(view: RunView, kl_reference: str = "corpus") -> Table:
    """kl_summary.csv -- paper Table 3: mu_min, mu_max, mu_mean."""
    s = metrics.kl_summary(view.kl(kl_reference)[0])
    return _table("kl_summary", ["mu_min", "mu_max", "mu_mean"], [[_f(s["mu_min"]), _f(s["mu_max"]), _f(s["mu_mean"])]])


def table_summary(view: RunView, probes: dict | None = None) -> Table:
    """summary.csv -- paper Table 1 row for this run (probe cells empty without probes)."""
    u = metrics.uniform_spec(view.top_k, view.n_experts)
    g = _f(view.global_spec())
    probes = probes or {}

    def acc(name: str) -> float | None:
        r = probes.get(name)
        return None if r is None else _f(r.accuracy)

    row = [view.model, len(view.moe_layers), view.n_experts, view.top_k, view.n_tokens, g, u,
           None if g is None else g - u, acc("top_k"), acc("top_1"), acc("baseline")]
    return _table("summary", ["model", "moe_layers", "experts", "top_k", "tokens", "spec", "uniform", "delta",
                              "mlp_top_k", "mlp_top_1", "baseline"], [row])


# --------------------------------------------------------------------------------------------------
# Probes


def _split(view: RunView, seed: int) -> tuple[np.ndarray, np.ndarray]:
    from moe_tui.core.probe import split_indices

    return view._get(f"split:{seed}", lambda: split_indices(view.n_tokens, seed=seed))


def compute_probe(view: RunView, variant: str, opts: ReportOptions | None = None) -> "ProbeResult":
    """One probe (``top_k``, ``top_1``, ``onehot_top_k``) or the form ``baseline``, cached on the
    view; shared 2/3-1/3 split seeded with ``opts.seed``."""
    from moe_tui.core.probe import form_baseline, run_probe

    o = opts or ReportOptions()
    key = f"probe:{variant}:{o.seed}:{o.max_iter}:{o.early_stopping}:{o.mlp_kwargs!r}"

    def fn() -> "ProbeResult":
        tr, te = _split(view, o.seed)
        if variant == "baseline":
            return form_baseline(view.form_ids, view.pos, view.n_pos, tr, te)
        return run_probe(view.experts, view.pos, view.n_pos, variant=variant, split=(tr, te), seed=o.seed,
                         max_iter=o.max_iter, early_stopping=o.early_stopping, n_experts=view.n_experts,
                         mlp_kwargs=o.mlp_kwargs)

    return view._get(key, fn)


def table_probe(results: dict[str, "ProbeResult"]) -> Table:
    """probe.csv -- accuracies of top_k, top_1, onehot_top_k probes and the baseline (Table 1)."""
    rows = [[name, _f(r.accuracy), r.train_tokens, r.test_tokens] for name, r in results.items()]
    return _table("probe", ["variant", "accuracy", "train_tokens", "test_tokens"], rows)


def table_confusion(result: "ProbeResult", tags: Sequence[str]) -> Table:
    """confusion_<variant>.csv -- full P x P confusion matrix in long form (true, pred, count)."""
    cm = result.confusion
    rows = [[tags[i], tags[j], int(cm[i, j])] for i in range(len(tags)) for j in range(len(tags))]
    return _table(f"confusion_{result.variant}", ["true", "pred", "count"], rows)


def table_ablation(view: RunView, opts: ReportOptions | None = None, progress: Progress | None = None) -> Table:
    """ablation.csv -- paper Fig. 3: accuracy after removing the first / last n MoE layers."""
    from moe_tui.core.probe import ablation

    o = opts or ReportOptions()
    full = compute_probe(view, "top_k", o)
    res = ablation(view.experts, view.pos, view.n_pos, removed=o.ablation_removed, step=o.ablation_step,
                   split=_split(view, o.seed), seed=o.seed, max_iter=o.max_iter, early_stopping=o.early_stopping,
                   full=full, progress=progress, mlp_kwargs=o.mlp_kwargs)
    return _table("ablation", ["side", "removed", "accuracy"], [[s, n, _f(a)] for s, n, a in res])


def table_tsne(view: RunView, opts: ReportOptions | None = None) -> Table:
    """tsne.csv -- paper Fig. 2: t-SNE of a seeded sample of top-k paths (Hamming distance).
    ``token`` is the position in the view's analysed-token arrays."""
    from moe_tui.core.probe import tsne_embedding

    o = opts or ReportOptions()
    idx, xy, p = tsne_embedding(view.experts, view.pos, n_samples=o.tsne_samples, seed=o.seed)
    rows = [[int(i), float(x), float(y), view.tags[int(q)]] for i, (x, y), q in zip(idx, xy, p)]
    return _table("tsne", ["token", "x", "y", "pos"], rows)


# --------------------------------------------------------------------------------------------------
# Controls


def table_spec_null(view: RunView, opts: ReportOptions | None = None, progress: Progress | None = None) -> Table:
    """spec_null.csv -- permutation null of Spec per (decoder layer, POS); excess = spec - null mean."""
    from moe_tui.core.controls import spec_permutation_null

    o = opts or ReportOptions()
    res = view._get(f"null:{o.seed}:{o.n_permutations}", lambda: spec_permutation_null(
        view.experts, view.pos, view.n_experts, view.n_pos, n_permutations=o.n_permutations, seed=o.seed,
        progress=progress))
    rows = []
    for li, layer in enumerate(view.moe_layers):
        for p, tag in enumerate(view.tags):
            rows.append([int(layer), tag, _f(res["spec"][li, p]), _f(res["null_mean"][li, p]),
                         _f(res["null_p95"][li, p]), _f(res["excess"][li, p])])
    return _table("spec_null", ["layer", "pos", "spec", "null_mean", "null_p95", "excess"], rows)


def table_controls(view: RunView, opts: ReportOptions | None = None, progress: Progress | None = None,
                   probe_variants: Sequence[str] = ("top_k",)) -> Table:
    """controls.csv -- token identity, control task, selectivity, ambiguous forms, Hamming distances
    and sentence-bootstrap 95% intervals (global Spec and each probe in ``probe_variants`` plus the
    baseline)."""
    from moe_tui.core import controls as C

    o = opts or ReportOptions()
    tr, te = _split(view, o.seed)
    real = compute_probe(view, "top_k", o)
    base = compute_probe(view, "baseline", o)
    rows: list[list] = []
    tid = C.token_identity_probe(view.token_ids, view.pos, view.n_pos, (tr, te))
    rows.append(["token_identity", _f(tid.accuracy)])
    if progress is not None:
        progress("control task", 0, 1)
    ct = C.control_task(view.experts, view.form_ids, view.pos, view.n_pos, split=(tr, te), seed=o.seed,
                        max_iter=o.max_iter, real=real, mlp_kwargs=o.mlp_kwargs)
    rows.append(["control_task", _f(ct["control"])])
    rows.append(["selectivity", _f(ct["selectivity"])])
    amb = C.ambiguous_forms(view.experts, view.form_ids, view.pos, view.n_pos, view.n_experts, probe=real, baseline=base)
    for key in ("ambiguous_probe", "ambiguous_baseline", "hamming_same_pos", "hamming_diff_pos"):
        rows.append([key, _f(amb[key])])
    bs = C.bootstrap_spec(view.experts, view.pos, view.n_experts, view.n_pos, view.sentence, view.tags,
                          n_boot=o.n_boot, seed=o.seed, progress=progress)
    rows.append(["spec_ci_low", _f(bs["low"])])
    rows.append(["spec_ci_high", _f(bs["high"])])
    for name in list(probe_variants) + ["baseline"]:
        r = compute_probe(view, name, o)
        ba = C.bootstrap_accuracy(r.correct, view.sentence[r.test_idx], n_boot=o.n_boot, seed=o.seed)
        rows.append([f"{name}_ci_low", _f(ba["low"])])
        rows.append([f"{name}_ci_high", _f(ba["high"])])
    return _table("controls", ["variant", "accuracy"], rows)


# --------------------------------------------------------------------------------------------------
# Gathering


def report_tables(view: RunView, *, probe: bool = False, controls: bool = False, seed: int = 0,
                  kl_reference: str = "corpus", progress: Progress | None = None,
                  options: ReportOptions | None = None) -> dict[str, Table]:
    """All tables of one run, keyed by file stem (``pos_counts``, ``spec_layer``, ...).

    ``progress(stage, done, total)`` is called between steps (it may raise ``Cancelled``).
    """
    o = options or ReportOptions(seed=seed, kl_reference=kl_reference)
    view.validate()

    def step(name: str, i: int, n: int) -> None:
        if progress is not None:
            progress(f"{view.run_id}: {name}", i, n)

    out: dict[str, Table] = {}
    step("routing tables", 0, 1)
    out["pos_counts"] = table_pos_counts(view)
    out["spec_layer"] = table_spec_layer(view)
    out["spec_pos"] = table_spec_pos(view)
    out["kl_layer_expert"] = table_kl_layer_expert(view, o.kl_reference)
    out["kl_summary"] = table_kl_summary(view, o.kl_reference)
    step("routing tables", 1, 1)
    probes: dict[str, ProbeResult] = {}
    if probe:
        names = list(PROBE_VARIANTS) + ["baseline"]
        for i, name in enumerate(names):
            step(f"probe {name}", i, len(names))
            probes[name] = compute_probe(view, name, o)
        out["probe"] = table_probe(probes)
        for name in names:
            out[f"confusion_{name}"] = table_confusion(probes[name], view.tags)
        out["ablation"] = table_ablation(view, o, progress=lambda s, i, n: step(s, i, n))
        step("t-SNE", 0, 1)
        out["tsne"] = table_tsne(view, o)
    out["summary"] = table_summary(view, probes)
    if controls:
        out["spec_null"] = table_spec_null(view, o, progress=lambda s, i, n: step(s, i, n))
        variants = ("top_k", "top_1", "onehot_top_k") if probe else ("top_k",)
        out["controls"] = table_controls(view, o, progress=lambda s, i, n: step(s, i, n), probe_variants=variants)
    step("done", 1, 1)
    return out


def compare_tables(views: Sequence[RunView], per_run: dict[str, dict[str, Table]]) -> dict[str, Table]:
    """Cross-run Tables 1, 3, 5 from already computed per-run tables (same numbers as the per-run files)."""
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


def write_report(views: list[RunView], out_dir: str | os.PathLike, *, probe: bool = False, controls: bool = False,
                 seed: int = 0, kl_reference: str = "corpus", progress: Progress | None = None,
                 options: ReportOptions | None = None, spreadsheet_safe: bool = False) -> dict:
    """Compute and write the report (``spreadsheet_safe``: neutralise formula-like text cells; off = exact).

    Per run: ``out_dir/<run_id>/`` gets pos_counts, spec_layer, spec_pos, kl_layer_expert,
    kl_summary, summary (+ probe, confusion_<variant>, ablation, tsne with ``probe``; + spec_null,
    controls with ``controls``). With two or more runs, ``out_dir/`` gets compare_table1/3/5.

    Returns ``{"runs": {run_id: {stem: table}}, "compare": {stem: table}, "files": [paths]}``.
    Raises :class:`ReportError` (no runs, duplicate run ids, bad arrays, unwritable output).
    """
    if not views:
        raise ReportError("no runs to report on")
    ids = [v.run_id for v in views]
    if len(set(ids)) != len(ids):
        raise ReportError(f"the same run is listed twice: {sorted({i for i in ids if ids.count(i) > 1})}")
    if kl_reference not in ("corpus", "uniform"):
        raise ReportError(f"KL reference must be 'corpus' or 'uniform', got {kl_reference!r}")
    o = options or ReportOptions(seed=seed, kl_reference=kl_reference)
    out = Path(out_dir)
    files: list[str] = []
    per_run: dict[str, dict[str, Table]] = {}
    for v in views:
        tables = report_tables(v, probe=probe, controls=controls, progress=progress, options=o)
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
    return {"runs": per_run, "compare": compare, "files": files}
