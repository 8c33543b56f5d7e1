"""The Python API, for notebooks and scripts: extract a run, open it, get its routes and report tables as pandas.

    import moe_tui
    run = moe_tui.extract("allenai/OLMoE-1B-7B-0924", "en_ewt-ud-dev.conllu", dtype="bfloat16")
    routes = run.routes()                  # the export-routes table, one row per (token, MoE layer, rank)
    tables = moe_tui.report(run)           # {"spec_layer": DataFrame, "kl_summary": DataFrame, ...}
    same = moe_tui.open_run(run.run_id)    # later: from the cache, no model loaded
    gen = moe_tui.generate("allenai/OLMoE-1B-7B-0924", "prompts.txt", max_new_tokens=64)
    gen.origin                             # uint8 [T]: 0 prompt token, 1 generated token
    moe_tui.report(gen, by_origin=True)    # the tables split by origin, cross-origin probes with probe=True

Every value is the one the CLI writes: :meth:`Run.routes` has the columns and values of ``moe-tui
export-routes`` and :func:`report` those of the ``moe-tui report`` CSV files. pandas is imported only
when a table is asked for, torch only when a model has to be loaded.
"""

from __future__ import annotations

import dataclasses
import math
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, Sequence

if TYPE_CHECKING:  # pragma: no cover
    import pandas as pd

    from moe_tui.cache.run import Run as StoredRun
    from moe_tui.core.extract.events import Event

__all__ = ["Run", "open_run", "extract", "generate", "report"]


class Run:
    """A finished run: its manifest, its arrays (memory-mapped, read-only) and its tables.

    Attributes as in the run store (``moe_tui.cache.store.Run``): ``run_id``, ``path``, ``manifest``, the arrays
    of the run format (``experts [T, L, k]``, rank 0 = top-1, and the others: ``docs/run-format.md``), and
    ``sentences``, ``tags``, ``moe_layers``, ``num_experts``, ``top_k``, ``analysis_mask()``. A run made by
    :func:`generate` also has ``origin [T]`` (uint8: 0 a prompt token, 1 a generated token; None for other runs);
    its ``manifest["generation"]`` holds the settings and each prompt's generated text, ``manifest["tagging"]`` the
    tagger and its accuracy.
    """

    def __init__(self, stored: "StoredRun") -> None:
        self._run = stored

    @property
    def stored(self) -> "StoredRun":
        """The run store's object (what the core's functions take)."""
        return self._run

    @property
    def run_id(self) -> str:
        return self._run.run_id

    @property
    def path(self) -> Path:
        return self._run.path

    @property
    def manifest(self) -> dict:
        return self._run.manifest

    def __getattr__(self, name: str) -> Any:
        if name.startswith("_"):
            raise AttributeError(name)
        return getattr(self._run, name)

    def __dir__(self) -> list[str]:
        from moe_tui.cache.layout import ARRAY_NAMES

        return sorted(set(super().__dir__()) | set(ARRAY_NAMES) | {
            "sentences", "tags", "moe_layers", "num_experts", "top_k", "model_name", "n_sentences",
            "analysis_mask", "sentence_of_token", "origin"})

    def __repr__(self) -> str:
        return f"<moe_tui.Run {self.run_id}: {self._run.model_name}, {self.manifest['corpus']['path']}>"

    def routes(self) -> "pd.DataFrame":
        """One row per (token, MoE layer, rank), special tokens left out: exactly the columns and values of
        ``moe-tui export-routes`` (``sentence, token, token_text, word, pos, layer, rank, expert, weight``; a run
        made by :func:`generate` has ``origin``, ``prompt`` or ``generated``, after ``pos``)."""
        from moe_tui.core.inspect.export import routes_frame

        return routes_frame(self._run)


def _stored(run: "Run | StoredRun") -> "StoredRun":
    return run.stored if isinstance(run, Run) else run


def open_run(run_id_or_path: str | Path, cache_dir: str | Path | None = None) -> Run:
    """A cached run by id (or unique id prefix) or run directory, checked against its checksums.

    ``cache_dir``: the run cache (default ``$MOE_TUI_CACHE``, else the user cache directory)."""
    from moe_tui.cache.store import RunStore

    return Run(RunStore(cache_dir).open(str(run_id_or_path)))


def extract(model: str | Path, data: str | Path, *, progress: Callable[["Event"], None] | None = None,
            **options: Any) -> Run:
    """Extract the routes of ``model`` over the POS-tagged corpus ``data`` (or find them in the cache) and
    return the run.

    ``options``: those of ``moe-tui extract``, by field name (``moe_tui.core.extract.options.ExtractOptions``:
    ``tagset``, ``max_sentences``, ``sample``, ``seed``, ``batch_size``, ``dtype``, ``device``, ``device_map``,
    ``quantization``, ``trust_remote_code``, ``cache_dir``, ...). ``progress`` receives the progress events
    (:mod:`moe_tui.core.extract.events`). Errors are :class:`moe_tui.errors.MoeTuiError` with a one-line message.
    """
    from moe_tui.core.extract.options import ExtractOptions
    from moe_tui.core.extract.pipeline import extract as run_extraction

    known = {f.name for f in dataclasses.fields(ExtractOptions)} - {"model", "data"}
    unknown = sorted(set(options) - known)
    if unknown:
        raise TypeError(f"extract() got unknown option(s) {', '.join(unknown)}; options: {', '.join(sorted(known))}")
    opts = ExtractOptions(model=str(model), data=str(data), **options)
    run_dir = run_extraction(opts, progress=progress)
    return Run(_open_dir(run_dir, opts.cache_dir))


def generate(model: str | Path, prompts: str | Path, *, progress: Callable[["Event"], None] | None = None,
             **options: Any) -> Run:
    """Generate a continuation of every prompt with ``model`` (``generate()`` with the KV cache), capture the routing
    of every prompt and generated token, tag the words (or find the run in the cache); return the run.

    ``prompts``: a text file (one per line), JSONL (``"prompt"``, optional ``"id"``) or CoNLL-U. ``options``: those
    of ``moe-tui generate``, by field name (``moe_tui.core.extract.options.GenerateOptions``: ``max_new_tokens``,
    ``do_sample``, ``temperature``, ``top_p``, ``seed``, ``tagger``, ``prompt_pos``, ``batch_size``, ``dtype``,
    ``save_logits``, ``verify``, ``cache_dir``, ...). Errors are :class:`moe_tui.errors.MoeTuiError` (one line).
    """
    from moe_tui.core.extract.generation import generate as run_generation
    from moe_tui.core.extract.options import GenerateOptions

    known = {f.name for f in dataclasses.fields(GenerateOptions)} - {"model", "prompts"}
    unknown = sorted(set(options) - known)
    if unknown:
        raise TypeError(f"generate() got unknown option(s) {', '.join(unknown)}; options: {', '.join(sorted(known))}")
    opts = GenerateOptions(model=str(model), prompts=str(prompts), **options)
    run_dir = run_generation(opts, progress=progress)
    return Run(_open_dir(run_dir, opts.cache_dir))


def _open_dir(run_dir: Path, cache_dir: str | None) -> "StoredRun":
    from moe_tui.cache.store import RunStore

    return RunStore(cache_dir).open(str(run_dir))


def _frame(table: dict) -> "pd.DataFrame":
    """A report table (``{"name", "columns", "rows"}``) as a DataFrame with the values its CSV file holds:
    numeric columns are int64 (float64 when a cell is missing or fractional; a missing cell is NaN), text
    columns hold the text exactly (a missing cell is None)."""
    import numpy as np
    import pandas as pd

    cols = table["columns"]
    data: dict[str, Any] = {}
    for j, name in enumerate(cols):
        values = [row[j] for row in table["rows"]]
        present = [v for v in values if v is not None and not (isinstance(v, float) and math.isnan(v))]
        numeric = all(isinstance(v, (int, float, np.integer, np.floating)) and not isinstance(v, bool)
                      for v in present)
        if numeric and present and all(isinstance(v, (int, np.integer)) for v in present) and len(present) == len(values):
            data[name] = np.array(values, dtype=np.int64)
        elif numeric:
            data[name] = np.array([np.nan if v is None else float(v) for v in values], dtype=np.float64)
        else:  # text: the dtype pandas reads text columns with (object, or str from pandas 3)
            data[name] = pd.Series(values)
    return pd.DataFrame(data, columns=cols)


def report(run: "Run | StoredRun | Sequence[Run | StoredRun]", probe: bool = False, controls: bool = False,
           information: bool = False, by_origin: bool = False, **options: Any) -> dict[str, "pd.DataFrame"]:
    """The tables of ``moe-tui report`` as DataFrames, keyed by CSV file name without ``.csv``.

    One run: ``{"pos_counts", "spec_layer", "spec_pos", "kl_layer_expert", "kl_summary", "summary"}`` (with
    ``probe``: ``probe``, ``confusion_<variant>``, ``ablation``, ``tsne``; with ``controls``: ``spec_null``,
    ``controls``; with ``information``: ``conditional``, ``information``, ``layer_probe``, ``mdl``,
    ``transitions``, ``paths``; with ``by_origin``, for a run made by :func:`generate`: ``summary_by_origin``,
    ``spec_layer_by_origin``, ``spec_pos_by_origin``, ``kl_layer_expert_by_origin``, ``kl_summary_by_origin``, and
    ``controls_by_origin`` / ``probe_by_origin`` with ``controls`` / ``probe``). Several runs: each run's tables
    keyed ``"<run_id>/<name>"`` (their path in the report folder) and the cross-run ``compare_table1``, ``compare_table3``, ``compare_table5``.

    ``options``: the fields of :class:`moe_tui.core.analysis.options.ReportOptions` (``seed``, ``kl_reference``,
    ``max_iter``, ``early_stopping``, ``ablation_step``, ``tsne_samples``, ``n_permutations``, ``n_boot``, ...).
    """
    from moe_tui.core.analysis.options import ReportOptions
    from moe_tui.core.analysis.report import compare_tables, report_tables
    from moe_tui.core.analysis.view import RunView
    from moe_tui.errors import ReportError

    known = {f.name for f in dataclasses.fields(ReportOptions)}
    unknown = sorted(set(options) - known)
    if unknown:
        raise TypeError(f"report() got unknown option(s) {', '.join(unknown)}; options: {', '.join(sorted(known))}")
    if options.get("kl_reference", "corpus") not in ("corpus", "uniform"):
        raise ReportError(f"KL reference must be 'corpus' or 'uniform', got {options['kl_reference']!r}")
    opts = ReportOptions(**options)
    single = isinstance(run, Run) or not isinstance(run, Sequence)
    runs = [run] if single else list(run)
    if not runs:
        raise ReportError("no runs to report on")
    views = [RunView.from_run(_stored(r)) for r in runs]
    ids = [v.run_id for v in views]
    if len(set(ids)) != len(ids):
        raise ReportError(f"the same run is listed twice: {sorted({i for i in ids if ids.count(i) > 1})}")
    for v in views:
        if by_origin and v.origin is None:
            raise ReportError(f"run {v.run_id} has no token origins (by_origin is for runs made by generate)")
    per_run = {v.run_id: report_tables(v, probe=probe, controls=controls, options=opts, information=information,
                                       by_origin=by_origin)
               for v in views}
    if single:
        return {stem: _frame(t) for stem, t in per_run[views[0].run_id].items()}
    out = {f"{rid}/{stem}": _frame(t) for rid, tables in per_run.items() for stem, t in tables.items()}
    if len(views) >= 2:
        out.update({stem: _frame(t) for stem, t in compare_tables(views, per_run).items()})
    return out
