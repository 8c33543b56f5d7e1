"""The published figures of arXiv 2412.16971 (COLING 2025, pp. 6467-6474) as data, and the paper beside a run.

``figures_2412_16971.json`` (package data) holds Tables 1, 3, 4 and 5 of the paper per model, each value in the
unit its table declares, each table naming where it was read (``read_from``); a value that could not be read
from the paper is ``null`` and becomes an empty cell. The file's ``retrieval`` notes say what was looked up and
what is missing. :func:`load_figures` checks the file: every model and quantity present, a value is a finite
number or null, and a table holding any value names its source.

:func:`paper_vs_measured` builds ``paper_vs_measured.csv`` from a run's report tables (one source of numbers:
the same ``summary``, ``kl_summary``, ``pos_counts`` and ``spec_pos`` tables the report writes), with columns
``table,quantity,pos,paper,measured,difference`` (difference = measured - paper, in the paper's unit; probe
accuracies are written in percent). :func:`compare_rows` gives the "paper" rows the TUI's compare pane shows
beside each run of a paper model.

The paper's tags are ``paper15`` (AUX folded into VERB, SCONJ into ADP); its global Spec averages them less
X and SYM (13 tags). Every number here depends on the tagset, so a run is set beside the paper only when it was
extracted with ``--tagset paper15``.
"""

from __future__ import annotations

import json
import math
import re
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Any, Mapping, Sequence

from moe_tui.core.analysis.metrics import EXCLUDED_FROM_GLOBAL
from moe_tui.core.extract.tagsets import TAGSETS
from moe_tui.errors import ReportError

__all__ = [
    "PAPER_MODELS",
    "PAPER_TAGSET",
    "PAPER_GLOBAL_POS",
    "QUANTITIES",
    "UNITS",
    "PaperFigures",
    "figures_path",
    "load_figures",
    "match_model",
    "tagset_mismatch",
    "paper_vs_measured",
    "compare_rows",
    "with_paper_rows",
]

#: The six models of the paper, by the names ``--paper-model`` takes.
PAPER_MODELS: tuple[str, ...] = ("dbrx-base", "Mixtral-8x7B-v0.1", "Phi-3.5-MoE-instruct", "deepseek-moe-16b-base",
                                 "Qwen1.5-MoE-A2.7B", "OLMoE-1B-7B")
PAPER_TAGSET = "paper15"
#: The tags the paper's global Spec averages: its 15 tags less X and SYM.
PAPER_GLOBAL_POS: tuple[str, ...] = tuple(t for t in TAGSETS[PAPER_TAGSET] if t not in EXCLUDED_FROM_GLOBAL)

#: Quantities per table, in row order (tables 4 and 5 are per POS).
QUANTITIES: dict[str, tuple[str, ...]] = {
    "1": ("mlp_top_k", "mlp_top_1", "spec", "uniform", "delta"),
    "3": ("mu_min", "mu_max", "mu_mean"),
    "4": ("tokens", "percent"),
    "5": ("mean_spec", "max_spec"),
}
_PER_POS = ("4", "5")
#: The unit each value is stored in (the file states them; the loader holds it to these).
UNITS: dict[str, dict[str, str]] = {
    "1": {"mlp_top_k": "percent", "mlp_top_1": "percent", "spec": "percent", "uniform": "percent", "delta": "percent"},
    "3": {"mu_min": "nats", "mu_max": "nats", "mu_mean": "nats"},
    "4": {"tokens": "count", "percent": "percent"},
    "5": {"mean_spec": "percent", "max_spec": "percent"},
}

Table = dict


def figures_path() -> Path:
    """The shipped data file (package data of ``moe_tui.core.analysis.paper``)."""
    return Path(__file__).resolve().parent / "figures_2412_16971.json"


@dataclass(frozen=True)
class PaperFigures:
    """The checked content of a figures file.

    ``values[table][model][quantity]`` (tables 1, 3) or ``values[table][model][pos][quantity]`` (tables 4, 5):
    ``float`` (``int`` for counts) or ``None``; ``units[table][quantity]``; ``read_from[table]``: where the table's values were read
    (``None`` when it holds none); ``hub_ids[model]``: hub ids that mean this model.
    """

    paper: dict
    retrieval: tuple[str, ...]
    hub_ids: dict
    units: dict
    read_from: dict
    values: dict

    def value(self, table: str, model: str, quantity: str, pos: str | None = None) -> float | int | None:
        """One published value, or ``None`` when the file does not hold it."""
        cell: Any = self.values.get(table, {}).get(model, {})
        if pos is not None:
            cell = cell.get(pos, {})
        return cell.get(quantity)

    def n_values(self) -> int:
        """How many values the file holds (non-null cells)."""
        n = 0
        for table, per_model in self.values.items():
            for per in per_model.values():
                cells = per.values() if table in _PER_POS else [per]
                n += sum(v is not None for c in cells for v in c.values())
        return n


def _bad(path: Path, what: str) -> ReportError:
    return ReportError(f"paper figures {path}: {what}")


def _number(path: Path, where: str, x: Any, unit: str) -> float | int | None:
    if x is None:
        return None
    if isinstance(x, bool) or not isinstance(x, (int, float)) or not math.isfinite(float(x)):
        raise _bad(path, f"{where} must be a finite number or null, got {x!r}")
    if unit == "count":
        if not float(x).is_integer() or x < 0:
            raise _bad(path, f"{where} is a count: a whole number, got {x!r}")
        return int(x)
    return float(x)


def _parse(doc: Any, path: Path) -> PaperFigures:
    if not isinstance(doc, dict) or doc.get("format") != 1:
        raise _bad(path, "not a format-1 figures file")
    if doc.get("tagset") != PAPER_TAGSET:
        raise _bad(path, f"tagset must be {PAPER_TAGSET!r}")
    models = doc.get("models")
    if not isinstance(models, dict) or set(models) != set(PAPER_MODELS):
        raise _bad(path, f"models must be exactly {', '.join(PAPER_MODELS)}")
    hub_ids = {m: tuple(str(h) for h in (models[m] or {}).get("hub_ids", ())) for m in PAPER_MODELS}
    tags = TAGSETS[PAPER_TAGSET]
    tables = doc.get("tables")
    if not isinstance(tables, dict) or set(tables) != set(QUANTITIES):
        raise _bad(path, f"tables must be exactly {', '.join(QUANTITIES)}")
    units, read_from, values = {}, {}, {}
    for t, qs in QUANTITIES.items():
        tab = tables[t]
        u = tab.get("units") or {}
        if u != UNITS[t]:
            want = ", ".join(f"{q}: {unit}" for q, unit in UNITS[t].items())
            raise _bad(path, f"table {t} must store its values in these units: {want}")
        units[t] = dict(u)
        vals = tab.get("values") or {}
        if set(vals) != set(PAPER_MODELS):
            raise _bad(path, f"table {t} must list the six models")
        out: dict = {}
        for m in PAPER_MODELS:
            if t in _PER_POS:
                per_pos = vals[m] or {}
                if not set(per_pos) <= set(tags):
                    raise _bad(path, f"table {t}, {m}: POS outside the {PAPER_TAGSET} tags: "
                                     f"{' '.join(sorted(set(per_pos) - set(tags)))}")
                out[m] = {p: {q: _number(path, f"table {t}, {m}, {p}, {q}", (per_pos[p] or {}).get(q), u[q])
                              for q in qs} for p in tags if p in per_pos}
            else:
                cell = vals[m] or {}
                out[m] = {q: _number(path, f"table {t}, {m}, {q}", cell.get(q), u[q]) for q in qs}
        values[t] = out
        src = tab.get("read_from")
        has_values = any(v is not None for per in out.values()
                         for c in (per.values() if t in _PER_POS else [per]) for v in c.values())
        if has_values and not (isinstance(src, str) and src.strip()):
            raise _bad(path, f"table {t} holds values but does not name where they were read (read_from)")
        read_from[t] = src if isinstance(src, str) and src.strip() else None
    retrieval = doc.get("retrieval") or []
    return PaperFigures(paper=dict(doc.get("paper") or {}), retrieval=tuple(str(x) for x in retrieval),
                        hub_ids=hub_ids, units=units, read_from=read_from, values=values)


def load_figures(path: str | Path | None = None) -> PaperFigures:
    """Read and check a figures file (default: the shipped one). Raises :class:`ReportError` (one line)."""
    p = Path(path) if path is not None else figures_path()
    if path is None:
        return _load_shipped(str(p))
    return _load(p)


def _load(p: Path) -> PaperFigures:
    try:
        doc = json.loads(p.read_text(encoding="utf-8"))
    except OSError as exc:
        raise _bad(p, f"cannot read ({exc.strerror or exc})") from None
    except ValueError as exc:
        raise _bad(p, f"not valid JSON ({exc})") from None
    return _parse(doc, p)


@lru_cache(maxsize=1)
def _load_shipped(p: str) -> PaperFigures:
    return _load(Path(p))


_CACHE_DIR = re.compile(r"models--([^/\\]+)--([^/\\]+)")


def match_model(model_id: str, figures: PaperFigures | None = None) -> str | None:
    """The paper model a run's model id names, or ``None``.

    ``model_id`` is the run's hub id or local path (``mistralai/Mixtral-8x7B-v0.1``,
    ``/models/Mixtral-8x7B-v0.1``, ``.../models--mistralai--Mixtral-8x7B-v0.1/snapshots/<hash>``); its
    repository name is compared, ignoring case, with the paper's model names and their hub ids
    (``allenai/OLMoE-1B-7B-0924`` is OLMoE-1B-7B). Instruct and other variants do not match.
    """
    figs = figures or load_figures()
    s = str(model_id).strip().rstrip("/\\")
    m = _CACHE_DIR.search(s)
    name = m.group(2) if m else re.split(r"[/\\]", s)[-1]
    name = name.lower()
    for model in PAPER_MODELS:
        names = {model.lower()} | {h.rstrip("/").split("/")[-1].lower() for h in figs.hub_ids.get(model, ())}
        if name in names:
            return model
    return None


def tagset_mismatch(tags: Sequence[str]) -> str | None:
    """Why a run with these tags cannot be set beside the paper, or ``None`` when it can."""
    tags = tuple(tags)
    if tags == TAGSETS[PAPER_TAGSET]:
        return None
    named = next((name for name, ts in TAGSETS.items() if ts == tags), None)
    what = f"the {named} tagset ({len(tags)} tags)" if named else f"a set of {len(tags)} tags"
    return (f"the paper's numbers are over its {len(TAGSETS[PAPER_TAGSET])} tags ({PAPER_TAGSET}) but the run uses "
            f"{what}; extract with --tagset {PAPER_TAGSET} to compare with the paper")


def _row_dicts(table: Table) -> list[dict]:
    return [dict(zip(table["columns"], r)) for r in table["rows"]]


def _num(x: Any) -> float | None:
    if x is None or isinstance(x, bool):
        return None
    try:
        f = float(x)
    except (TypeError, ValueError):
        return None
    return None if math.isnan(f) else f


def _count(x: Any) -> int | None:
    f = _num(x)
    return None if f is None else int(f)


def _pct(x: Any) -> float | None:
    f = _num(x)
    return None if f is None else 100.0 * f


def paper_vs_measured(model: str, tables: Mapping[str, Table], figures: PaperFigures | None = None) -> Table:
    """``paper_vs_measured.csv`` of one run: the paper's Tables 1, 3, 4, 5 for ``model`` beside the run's values.

    Args:
        model: one of :data:`PAPER_MODELS`.
        tables: the run's report tables (``summary``, ``kl_summary``, ``pos_counts``, ``spec_pos``, as
            :func:`moe_tui.core.analysis.report.report_tables` returns them); probe accuracies come from ``summary``
            (empty without probes) and are written in percent.
        figures: the paper's figures (default: the shipped file).

    Returns:
        table ``paper_vs_measured`` with columns ``table,quantity,pos,paper,measured,difference``: Table 1
        rows ``mlp_top_k, mlp_top_1, spec, uniform, delta``; Table 3 ``mu_min, mu_max, mu_mean``; Table 4
        ``tokens, percent`` and Table 5 ``mean_spec, max_spec`` per POS (the run's tags in order). A cell the
        paper or the run lacks is empty, and so is its difference. The ``spec`` and ``delta`` differences
        are also left empty when the run's global Spec does not average the paper's 13 tags (a POS absent
        from the corpus).
    """
    figs = figures or load_figures()
    if model not in PAPER_MODELS:
        raise ReportError(f"unknown paper model {model!r}; one of {', '.join(PAPER_MODELS)}")
    rows: list[list] = []

    def add(table: str, quantity: str, pos: str, measured: float | int | None, comparable: bool = True) -> None:
        paper = figs.value(table, model, quantity, pos or None)
        diff = measured - paper if (comparable and paper is not None and measured is not None) else None
        rows.append([int(table), quantity, pos, paper, measured, diff])

    s = _row_dicts(tables["summary"])[0]
    same_tags = tuple(str(s.get("global_pos") or "").split()) == PAPER_GLOBAL_POS
    measured1 = {"mlp_top_k": _pct(s.get("mlp_top_k")), "mlp_top_1": _pct(s.get("mlp_top_1")),
                 "spec": _num(s.get("spec")), "uniform": _num(s.get("uniform")), "delta": _num(s.get("delta"))}
    for q in QUANTITIES["1"]:
        add("1", q, "", measured1[q], comparable=same_tags or q not in ("spec", "delta"))
    k = _row_dicts(tables["kl_summary"])[0]
    for q in QUANTITIES["3"]:
        add("3", q, "", _num(k.get(q)))
    counts = {r["pos"]: r for r in _row_dicts(tables["pos_counts"])}
    spec_pos = {r["pos"]: r for r in _row_dicts(tables["spec_pos"])}
    order = list(counts) + [p for p in TAGSETS[PAPER_TAGSET] if p not in counts]
    for p in order:
        c = counts.get(p, {})
        add("4", "tokens", p, _count(c.get("tokens")))
        add("4", "percent", p, _num(c.get("percent")))
    for p in order:
        r = spec_pos.get(p, {})
        add("5", "mean_spec", p, _num(r.get("mean_spec")))
        add("5", "max_spec", p, _num(r.get("max_spec")))
    return {"name": "paper_vs_measured", "columns": ["table", "quantity", "pos", "paper", "measured", "difference"],
            "rows": rows}


def compare_rows(views: Sequence[Any], figures: PaperFigures | None = None) -> tuple[dict[str, list], str | None]:
    """The "paper" rows of the compare tables, one beside each run of a paper model.

    Args:
        views: the compared runs (``model``, ``tags``; :class:`moe_tui.core.analysis.view.RunView`).

    Returns:
        ``({"compare_table1": [(anchor, row)], "compare_table3": [...], "compare_table5": [...]}, note)``:
        each row has the columns of :func:`moe_tui.core.analysis.report.compare_tables` with ``run_id`` = ``"paper"``
        and the paper's values in the compare tables' units (probe accuracies as shares; ``None`` where the
        paper's value is not held), to be shown after the row it is anchored to: ``(run_id,)`` in Tables 1
        and 3, ``(run_id, pos)`` in Table 5 (:func:`with_paper_rows`); ``note`` says why a matched run got
        no paper row (its tagset), else ``None``.
    """
    figs = figures or load_figures()
    out: dict[str, list] = {"compare_table1": [], "compare_table3": [], "compare_table5": []}
    skipped = []
    for v in views:
        model = match_model(v.model, figs)
        if model is None:
            continue
        if tagset_mismatch(v.tags) is not None:
            skipped.append(model)
            continue
        val = figs.value
        # the compare tables hold probe accuracies as shares, like summary.csv
        acc = [None if x is None else x / 100.0 for x in (val("1", model, "mlp_top_k"), val("1", model, "mlp_top_1"))]
        out["compare_table1"].append(((v.run_id,), [model, "paper", None, None, *acc, val("1", model, "spec"),
                                                 val("1", model, "uniform"), val("1", model, "delta")]))
        out["compare_table3"].append(((v.run_id,), [model, "paper", *(val("3", model, q) for q in QUANTITIES["3"])]))
        for p in v.tags:
            out["compare_table5"].append(((v.run_id, p), [p, model, "paper", val("5", model, "mean_spec", p),
                                                          val("5", model, "max_spec", p), None]))
    note = None
    if skipped:
        note = f"no paper row for {', '.join(skipped)}: the paper uses the {PAPER_TAGSET} tags"
    return out, note


def with_paper_rows(table: Table, entries: Sequence[tuple[tuple, list]]) -> list[list]:
    """The rows of a compare table with each paper row of :func:`compare_rows` right after its anchor row."""
    cols = table["columns"]
    ri = cols.index("run_id")
    pi = cols.index("pos") if "pos" in cols else None
    after: dict[tuple, list] = {}
    for anchor, row in entries:
        after.setdefault(tuple(anchor), []).append(list(row))
    out: list[list] = []
    for row in table["rows"]:
        out.append(list(row))
        key = (row[ri],) if pi is None else (row[ri], row[pi])
        out.extend(after.get(key, []))
    return out
