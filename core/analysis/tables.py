"""The report's tables: one ``table_*`` function per CSV file, computed from a :class:`RunView`.

Every table is ``{"name": str, "columns": [str, ...], "rows": [[cell, ...], ...]}`` (cells are Python ``str``,
``int``, ``float`` or ``None``; NaN becomes ``None``). ``layer`` columns hold decoder-layer indices
(``RunView.moe_layers``), never MoE-layer positions. torch / sklearn / openTSNE are imported lazily, only when
probes or controls are computed. Random numbers: one ``ReportOptions.seed``; each random step has its own
stream (:mod:`moe_tui.core.analysis.seeds`).
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING, Any, Callable, Sequence

import numpy as np

from moe_tui.core.analysis import metrics
from moe_tui.core.analysis import seeds as S
from moe_tui.core.analysis.options import ReportOptions
from moe_tui.core.analysis.view import Progress, RunView
from moe_tui.errors import ReportError

if TYPE_CHECKING:  # pragma: no cover
    from moe_tui.core.analysis.probe import ProbeResult, ProbeStats

Table = dict

#: The probes the report trains, in table order (moe_tui.core.analysis.probe.VARIANTS lists every feature it can build).
PROBE_VARIANTS: tuple[str, ...] = ("top_k", "top_1", "onehot_top_k")
#: The rows of probe.csv and the confusion_<variant> tables: the probes, then the word-form baseline.
PROBE_ROWS: tuple[str, ...] = (*PROBE_VARIANTS, "baseline")


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
