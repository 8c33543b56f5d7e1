"""Writing a report: the CSV files (atomic, exact), the paper side by side, the figures."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Sequence

from moe_tui.core.analysis import paper
from moe_tui.core.analysis.options import ReportOptions
from moe_tui.core.analysis.report import check_comparable, compare_tables, report_tables
from moe_tui.core.analysis.tables import Table
from moe_tui.core.analysis.view import Progress, RunView
from moe_tui.errors import CacheError, ReportError
from moe_tui.fileio import write_csv as csv_write

__all__ = ["write_report", "write_csv", "paper_models"]


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
                 figures: bool = False, information: bool = False, by_origin: bool = False) -> dict:
    """Compute and write the report (``spreadsheet_safe``: neutralise formula-like text cells; off = exact).

    Per run: ``out_dir/<run_id>/`` gets pos_counts, spec_layer, spec_pos, kl_layer_expert,
    kl_summary, summary (+ probe, confusion_<variant>, ablation, tsne with ``probe``; + spec_null,
    controls with ``controls``; + conditional, information, layer_probe, mdl, transitions, paths with
    ``information``; + the ``*_by_origin`` tables with ``by_origin``; + paper_vs_measured for a run of one of the
    paper's models, see
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
        if by_origin and v.origin is None:
            raise ReportError(f"run {v.run_id} has no token origins (--by-origin is for runs made by moe-tui generate)")
    check_comparable(views)  # refuse now, not after minutes of probes
    matched, notices = paper_models(views, paper_model)
    o = options or ReportOptions(seed=seed, kl_reference=kl_reference)
    out = Path(out_dir)
    files: list[str] = []
    per_run: dict[str, dict[str, Table]] = {}
    for v in views:
        tables = report_tables(v, probe=probe, controls=controls, progress=progress, options=o,
                               information=information, by_origin=by_origin)
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
