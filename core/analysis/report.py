"""Report tables for one or several runs (paper Tables 1, 3, 4, 5; Figs. 2-5; controls).

One source of numbers: every table is computed by a ``table_*`` function of :mod:`.tables`;
:func:`report_tables` gathers them for one run, :func:`compare_tables` across runs, and
:func:`moe_tui.core.analysis.writer.write_report` writes them as CSV and returns the same dicts for the CLI
(rich) and the TUI.

CSV conventions: header row = the exact column names; floats written with ``repr`` (unrounded);
NaN / None written as an empty cell; text exactly as stored (with ``spreadsheet_safe``, text cells
starting with ``= + - @``, tab or CR get a leading single quote against formula injection); files
written atomically (temp file in the same directory, fsync, ``os.replace``).

``layer`` columns hold decoder-layer indices (``RunView.moe_layers``), never MoE-layer positions.
torch / sklearn / openTSNE are only imported (lazily) when probes or controls are requested.

Random numbers: one ``ReportOptions.seed``; each random step has its own stream (:mod:`moe_tui.core.analysis.seeds`).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Callable, Sequence

from moe_tui.core.analysis.beside import Beside, spare_cpus
from moe_tui.core.analysis.options import ReportOptions
from moe_tui.core.analysis.tables import (
    PROBE_VARIANTS,
    Table,
    _table,
    _tsne_job,
    ablation_cuts,
    compute_probes,
    information_tables,
    probe_rows,
    table_ablation,
    table_confusion,
    table_controls,
    table_kl_layer_expert,
    table_kl_summary,
    table_pos_counts,
    table_probe,
    table_spec_layer,
    table_spec_null,
    table_spec_pos,
    table_summary,
    table_tsne,
)
from moe_tui.core.analysis.view import Progress, RunView
from moe_tui.errors import ReportError

if TYPE_CHECKING:  # pragma: no cover
    from moe_tui.core.analysis.probe import ProbeStats

__all__ = ["report_tables", "check_comparable", "compare_tables"]



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
                  options: ReportOptions | None = None, information: bool = False,
                  by_origin: bool = False) -> dict[str, Table]:
    """All tables of one run, keyed by file stem (``pos_counts``, ``spec_layer``, ...); with ``by_origin`` (a run made
    by ``moe-tui generate``) also the tables split by origin (:mod:`moe_tui.core.analysis.origin`).

    ``progress(stage, done, total)`` is called between steps and during training (at most about ten
    times a second; it may raise ``Cancelled``, which stops a training within a second).
    """
    o = options or ReportOptions(seed=seed, kl_reference=kl_reference)
    view.validate()
    if by_origin and view.origin is None:  # before any long computation
        raise ReportError(f"run {view.run_id} has no token origins (--by-origin is for runs made by moe-tui generate)")
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
    tsne = Beside(_tsne_job(view, o), "moe-tui t-SNE") if probe and spare_cpus() else None
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
    if by_origin:
        from moe_tui.core.analysis.origin import origin_tables

        out.update(origin_tables(view, o, probe=probe, controls=controls, progress=step))
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
