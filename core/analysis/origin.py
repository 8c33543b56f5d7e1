"""Tables by origin (``report --by-origin``): a run made by ``moe-tui generate`` split into its prompt tokens and
its generated tokens.

Each origin's tokens are a view of their own (:func:`origin_views`), so every number is the one the ordinary
table would give for those tokens alone: Spec per layer and POS, Spec per POS, KL per expert and its summary,
the global summary, and with ``controls`` the control quantities. With ``probe``, probes cross the origins: a
probe trained on every analysed prompt token is tested on every generated token and the other way round; beside
them, each origin's own 2/3-1/3 split (seeded) as the within-origin reference, and the word-form baseline on the
same splits.

The POS of generated words come from a tagger; so do the prompt's, unless the run kept the gold tags of CoNLL-U
prompts (``--prompt-pos gold``). Every table therefore carries the caveat: ``tagger`` (its name, or ``gold``) and
``tagger_accuracy`` (its accuracy on held-out data, as recorded in the run; empty when unknown or gold).
"""

from __future__ import annotations

from typing import Any

import numpy as np

from moe_tui.core.analysis import metrics
from moe_tui.core.analysis.options import ReportOptions
from moe_tui.core.analysis.tables import Table, _f, _table, table_controls
from moe_tui.core.analysis.view import Progress, RunView
from moe_tui.errors import ReportError

__all__ = ["ORIGINS", "ORIGIN_TABLES", "origin_views", "origin_caveat", "origin_tables", "table_of_origin"]

#: the origins, in table order (``view.origin`` indexes them)
ORIGINS = ("prompt", "generated")
#: the files of ``report --by-origin`` (+ ``controls_by_origin`` with controls, ``probe_by_origin`` with probes)
ORIGIN_TABLES = ("summary_by_origin", "spec_layer_by_origin", "spec_pos_by_origin", "kl_layer_expert_by_origin",
                 "kl_summary_by_origin")
CAVEAT = ("tagger", "tagger_accuracy")


def _subset(view: RunView, idx: np.ndarray) -> RunView:
    return RunView(
        model=view.model, run_id=view.run_id, tags=view.tags, moe_layers=list(view.moe_layers),
        n_experts=view.n_experts, top_k=view.top_k, experts=view.experts[idx], pos=view.pos[idx],
        form_ids=lambda: view.form_ids[idx], sentence=lambda: view.sentence[idx],
        token_ids=lambda: view.token_ids[idx], form_vocab=lambda: view.form_vocab,
        logits=(lambda: view.logits[idx]) if view.has_logits else None,
        origin=lambda: view.origin[idx], tagging=view.tagging)


def _origin(view: RunView) -> np.ndarray:
    origin = view.origin
    if origin is None:
        raise ReportError(f"run {view.run_id} has no token origins (--by-origin is for runs made by moe-tui generate)")
    return np.asarray(origin)


def origin_views(view: RunView) -> dict[str, RunView]:
    """``{"prompt": view, "generated": view}``: the analysed tokens of each origin (``ReportError`` when the run has
    no origins, or no analysed token of one origin)."""
    origin = _origin(view)
    out = {}
    for code, name in enumerate(ORIGINS):
        idx = np.flatnonzero(origin == code)
        if not len(idx):
            raise ReportError(f"run {view.run_id} has no analysed {name} token to report on by origin")
        out[name] = view._get(f"origin:{name}", lambda idx=idx: _subset(view, idx))
    return out


def origin_caveat(view: RunView, origin: str) -> tuple[str | None, float | None]:
    """``(tagger, accuracy)`` for the POS of ``origin``'s tokens: ``("gold", None)`` for prompts whose gold tags
    were kept; else the tagger's name and its held-out accuracy as the run records it (None when unknown)."""
    tagging = view.tagging or {}
    if origin == "prompt" and tagging.get("prompt_pos") == "gold":
        return "gold", None
    tagger = (tagging.get("tagger") or {}).get("name")
    acc = tagging.get("accuracy")
    value = acc.get("accuracy") if isinstance(acc, dict) else None
    return tagger, (None if value is None else float(value))


def _with_caveat(view: RunView, origin: str, row: list) -> list:
    return [*row, *origin_caveat(view, origin)]


def table_summary_by_origin(views: dict[str, RunView], parent: RunView) -> Table:
    """summary_by_origin.csv -- per origin: analysed tokens, global Spec, U, dU and the tags it averages."""
    rows = []
    for name, v in views.items():
        u = metrics.uniform_spec(v.top_k, v.n_experts)
        g = _f(v.global_spec())
        rows.append(_with_caveat(parent, name, [name, v.n_tokens, g, u, None if g is None else g - u,
                                                " ".join(v.global_pos())]))
    return _table("summary_by_origin", ["origin", "tokens", "spec", "uniform", "delta", "global_pos", *CAVEAT], rows)


def table_spec_layer_by_origin(views: dict[str, RunView], parent: RunView) -> Table:
    """spec_layer_by_origin.csv -- spec_layer.csv per origin."""
    rows = []
    for name, v in views.items():
        spec = v.spec()
        tokens, _ = v.pos_counts()
        u = metrics.uniform_spec(v.top_k, v.n_experts)
        for li, layer in enumerate(v.moe_layers):
            for p, tag in enumerate(v.tags):
                s = _f(spec[li, p])
                rows.append(_with_caveat(parent, name, [name, int(layer), tag, int(tokens[p]), s, u,
                                                        None if s is None else s - u]))
    return _table("spec_layer_by_origin", ["origin", "layer", "pos", "tokens", "spec", "uniform", "delta", *CAVEAT],
                  rows)


def table_spec_pos_by_origin(views: dict[str, RunView], parent: RunView) -> Table:
    """spec_pos_by_origin.csv -- spec_pos.csv per origin (mean and max Spec over layers, argmax layer)."""
    rows = []
    for name, v in views.items():
        mean, mx, arg = v.spec_pos()
        for p, tag in enumerate(v.tags):
            rows.append(_with_caveat(parent, name, [name, tag, _f(mean[p]), _f(mx[p]),
                                                    int(v.moe_layers[arg[p]]) if arg[p] >= 0 else None]))
    return _table("spec_pos_by_origin", ["origin", "pos", "mean_spec", "max_spec", "max_layer", *CAVEAT], rows)


def table_kl_layer_expert_by_origin(views: dict[str, RunView], parent: RunView, kl_reference: str) -> Table:
    """kl_layer_expert_by_origin.csv -- KL(P_expert || Q) per origin, Q that origin's own POS distribution
    (``corpus`` reference) or uniform."""
    rows = []
    for name, v in views.items():
        kl, n = v.kl(kl_reference)
        rows += [_with_caveat(parent, name, [name, int(layer), e, int(n[li, e]), _f(kl[li, e])])
                 for li, layer in enumerate(v.moe_layers) for e in range(v.n_experts)]
    return _table("kl_layer_expert_by_origin", ["origin", "layer", "expert", "assignments", "kl", *CAVEAT], rows)


def table_kl_summary_by_origin(views: dict[str, RunView], parent: RunView, kl_reference: str) -> Table:
    """kl_summary_by_origin.csv -- mu_min, mu_max, mu_mean per origin."""
    rows = []
    for name, v in views.items():
        s = metrics.kl_summary(v.kl(kl_reference)[0])
        rows.append(_with_caveat(parent, name, [name, _f(s["mu_min"]), _f(s["mu_max"]), _f(s["mu_mean"])]))
    return _table("kl_summary_by_origin", ["origin", "mu_min", "mu_max", "mu_mean", *CAVEAT], rows)


def table_controls_by_origin(views: dict[str, RunView], parent: RunView, o: ReportOptions,
                             progress: Progress | None = None) -> Table:
    """controls_by_origin.csv -- controls.csv computed on each origin's tokens alone."""
    rows = []
    for name, v in views.items():
        t = table_controls(v, o, progress=progress)
        rows += [_with_caveat(parent, name, [name, q, val]) for q, val in t["rows"]]
    return _table("controls_by_origin", ["origin", "quantity", "value", *CAVEAT], rows)


#: the probes crossed between origins (and the word-form baseline)
CROSS_VARIANTS = ("top_k", "top_1")


def table_probe_by_origin(view: RunView, o: ReportOptions, progress: Progress | None = None) -> Table:
    """probe_by_origin.csv -- POS probes trained on one origin's analysed tokens and tested on the other's (all of
    them), and within each origin on its own seeded 2/3-1/3 split; the word-form baseline on the same splits.
    The caveat columns are those of the training and of the test tokens' POS."""
    from moe_tui.core.analysis import seeds as S
    from moe_tui.core.analysis.probe import form_baseline, run_probe, split_indices

    origin = _origin(view)
    origin_views(view)  # one line if an origin has no analysed token
    experts, n_categories = view.probe_experts()
    idx = {name: np.flatnonzero(origin == code) for code, name in enumerate(ORIGINS)}
    splits: list[tuple[str, str, np.ndarray, np.ndarray]] = []
    for a in ORIGINS:
        for b in ORIGINS:
            if a != b:
                splits.append((a, b, idx[a], idx[b]))
    for name in ORIGINS:
        tr, te = split_indices(len(idx[name]), seed=S.stream(o.seed, "split", 0))
        splits.append((name, name, idx[name][tr], idx[name][te]))
    rows = []
    steps = len(splits) * (len(CROSS_VARIANTS) + 1)
    done = 0
    for train_o, test_o, tr, te in splits:
        results = []
        for variant in CROSS_VARIANTS:
            if progress is not None:
                progress(f"probe {train_o} -> {test_o}", done, steps)
            try:
                r = run_probe(experts, view.pos, view.n_pos, variant=variant, split=(tr, te), seed=o.seed,
                              max_iter=o.max_iter, early_stopping=o.early_stopping, n_experts=n_categories,
                              mlp_kwargs=o.mlp_kwargs, engine=o.probe_engine, device=o.probe_device,
                              dtype=o.probe_dtype)
            except ValueError as exc:
                raise ReportError(f"probes: {exc}") from None
            results.append(r)
            done += 1
        results.append(form_baseline(view.form_ids, view.pos, view.n_pos, tr, te))
        done += 1
        for r in results:
            rows.append([train_o, test_o, r.variant, _f(r.accuracy), r.train_tokens, r.test_tokens,
                         *origin_caveat(view, train_o), *origin_caveat(view, test_o)])
    return _table("probe_by_origin", ["train_origin", "test_origin", "variant", "accuracy", "train_tokens",
                                      "test_tokens", "train_tagger", "train_tagger_accuracy", "test_tagger",
                                      "test_tagger_accuracy"], rows)


def origin_tables(view: RunView, opts: ReportOptions | None = None, *, probe: bool = False, controls: bool = False,
                  progress: Progress | None = None) -> dict[str, Table]:
    """The tables of ``report --by-origin`` for one run (:data:`ORIGIN_TABLES`, + ``controls_by_origin`` with
    ``controls``, + ``probe_by_origin`` with ``probe``)."""
    o = opts or ReportOptions()
    views = origin_views(view)
    out: dict[str, Any] = {
        "summary_by_origin": table_summary_by_origin(views, view),
        "spec_layer_by_origin": table_spec_layer_by_origin(views, view),
        "spec_pos_by_origin": table_spec_pos_by_origin(views, view),
        "kl_layer_expert_by_origin": table_kl_layer_expert_by_origin(views, view, o.kl_reference),
        "kl_summary_by_origin": table_kl_summary_by_origin(views, view, o.kl_reference),
    }
    if controls:
        out["controls_by_origin"] = table_controls_by_origin(views, view, o, progress=progress)
    if probe:
        out["probe_by_origin"] = table_probe_by_origin(view, o, progress=progress)
    return out


def table_of_origin(tables: dict[str, Table], stem: str, origin: str) -> Table | None:
    """The ``stem`` table of one origin, for a view that toggles origin: ``origin == "all"`` gives ``tables[stem]``;
    ``"prompt"`` / ``"generated"`` the rows of ``<stem>_by_origin`` of that origin, without the ``origin`` and
    caveat columns, so that they have the plain table's columns (``probe``: the rows of ``probe_by_origin``
    trained on that origin, as they are). None when the table is not computed."""
    if origin == "all":
        return tables.get(stem)
    if origin not in ORIGINS:
        raise ValueError(f"unknown origin {origin!r}")
    if stem == "probe":
        t = tables.get("probe_by_origin")
        return None if t is None else _table("probe_by_origin", t["columns"], [r for r in t["rows"] if r[0] == origin])
    t = tables.get(f"{stem}_by_origin")
    if t is None:
        return None
    cols = t["columns"]
    keep = [i for i, c in enumerate(cols) if c not in ("origin", *CAVEAT)]
    return _table(stem, [cols[i] for i in keep], [[r[i] for i in keep] for r in t["rows"] if r[0] == origin])
