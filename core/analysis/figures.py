"""The paper's figures as files (PNG and PDF), drawn from the report's tables.

Every figure is a function of the table dicts of :mod:`moe_tui.core.analysis.report` (``{"name", "columns",
"rows"}``), read by column name, so a figure shows exactly the numbers its CSV holds:

============================  =======================  ===========================================
file stem                     table(s)                 paper
============================  =======================  ===========================================
``fig_spec_by_layer``         ``spec_layer``           Fig. 4: Spec per decoder layer, one line per
                                                       POS, and U (uniform routing)
``fig_kl_heatmap``            ``kl_layer_expert``      Fig. 5: KL(P_expert || Q), experts x layers
``fig_confusion_<variant>``   ``confusion_<variant>``  appendix Fig. 4: row-normalised confusion
``fig_ablation``              ``ablation`` (+ the      Fig. 3: probe accuracy with the first / last
                              ``probe`` baseline)      n MoE layers removed
``fig_tsne``                  ``tsne``                 Fig. 2: t-SNE of routing paths, by POS
============================  =======================  ===========================================

Each ``fig_*`` function takes ``panels``: an ordered mapping ``title -> table`` (one entry for a run's
own figure, several for the cross-model figure, one panel per run) and returns a
``matplotlib.figure.Figure`` on the Agg canvas (pyplot is never imported: no global state, safe in a
worker thread). The data artists carry a ``gid`` naming what they show (``spec:<POS>``, ``uniform``,
``kl``, ``confusion``, ``ablation:<side>[:<panel>]``, ``baseline``, ``tsne:<POS>``) so tests and
tools can read the plotted numbers back.

Style: matplotlib's defaults plus the settings in :data:`RC` (so a user's matplotlibrc does not change
the files); Paul Tol's colour-blind-safe "muted" palette with a marker and line style per POS (a POS
keeps its style in every figure and every run); viridis / Blues colour maps (perceptually uniform,
readable in grey); TrueType fonts embedded in PDFs; PNGs at 300 dpi (every figure is at least 1600 px
wide). Output is deterministic: the PDF carries no creation date, so the same tables give the same
bytes. matplotlib is imported lazily, inside the functions.
"""

from __future__ import annotations

import io
import math
import os
import re
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, Iterable, Mapping, Sequence

import numpy as np

from moe_tui.core.extract.tagsets import UPOS_TAGS
from moe_tui.errors import CacheError, ReportError
from moe_tui.fileio import atomic_write_bytes

if TYPE_CHECKING:  # pragma: no cover
    from matplotlib.axes import Axes
    from matplotlib.figure import Figure

__all__ = [
    "FIGURE_STEMS",
    "RC",
    "DPI",
    "MIN_WIDTH_PX",
    "require_matplotlib",
    "pos_style",
    "model_style",
    "fig_spec_by_layer",
    "fig_kl_heatmap",
    "fig_confusion",
    "fig_ablation",
    "fig_tsne",
    "run_figure_stems",
    "run_figure",
    "compare_figure_stems",
    "compare_figure",
    "figure_bytes",
    "save_figure",
    "write_figures",
    "panel_titles",
]

Table = dict
Progress = Callable[[str, int, int], None]

#: Figure file stems in the order they are written (``fig_confusion_<variant>`` for each confusion table).
FIGURE_STEMS: tuple[str, ...] = ("fig_spec_by_layer", "fig_kl_heatmap", "fig_confusion", "fig_ablation", "fig_tsne")
DPI = 300
MIN_WIDTH_PX = 1600

#: Paul Tol's "muted" qualitative palette (colour-blind safe); bad data in pale grey.
TOL_MUTED: tuple[str, ...] = ("#332288", "#88CCEE", "#44AA99", "#117733", "#999933", "#DDCC77", "#CC6677",
                              "#882255", "#AA4499")
#: Okabe & Ito's palette without yellow (for models in cross-model figures).
OKABE_ITO: tuple[str, ...] = ("#0072B2", "#D55E00", "#009E73", "#CC79A7", "#E69F00", "#56B4E9", "#000000")
_MARKERS = ("o", "s", "^", "D", "v", "P", "X")
_LINESTYLES = ("-", "--", ":", "-.")
BAD_COLOUR = "#BBBBBB"

#: rcParams applied over matplotlib's defaults for every figure (a user's matplotlibrc is ignored).
RC: dict[str, Any] = {
    "font.size": 10,
    "axes.titlesize": 11,
    "axes.labelsize": 10,
    "xtick.labelsize": 9,
    "ytick.labelsize": 9,
    "legend.fontsize": 8.5,
    "legend.frameon": False,
    "axes.spines.top": False,
    "axes.spines.right": False,
    "axes.grid": False,
    "grid.color": "#DDDDDD",
    "grid.linewidth": 0.6,
    "lines.linewidth": 1.5,
    "lines.markersize": 4.5,
    "pdf.fonttype": 42,  # TrueType in the PDF: text stays text (journals ask for it)
    "ps.fonttype": 42,
    "svg.hashsalt": "moe-tui",
    "figure.dpi": 100,
    "savefig.dpi": DPI,
    "image.interpolation": "none",  # heatmap cells as they are (raw pixels in the PDF)
}


def require_matplotlib() -> None:
    """Raise :class:`ReportError` (one line) when matplotlib cannot be imported."""
    try:
        import matplotlib  # noqa: F401
    except ImportError:
        raise ReportError("figures need matplotlib, which is not installed: pip install 'matplotlib>=3.8,<4'") from None


# --------------------------------------------------------------------------------------------------
# Reading tables by column name


def _column(table: Table, name: str) -> list:
    try:
        i = list(table["columns"]).index(name)
    except ValueError:
        raise ReportError(f"table {table.get('name', '?')} has no column {name!r} "
                          f"(columns: {', '.join(map(str, table['columns']))})") from None
    return [row[i] for row in table["rows"]]


def _floats(values: Iterable[Any]) -> np.ndarray:
    """Cells as float64 (``None`` / empty -> NaN)."""
    return np.array([math.nan if v is None or v == "" else float(v) for v in values], dtype=np.float64)


def _unique(values: Iterable[Any]) -> list:
    """Distinct values in order of first appearance."""
    seen: dict = {}
    for v in values:
        seen.setdefault(v, None)
    return list(seen)


# --------------------------------------------------------------------------------------------------
# Styles


#: UPOS tag -> (colour index in TOL_MUTED, style set). Set 0 (circle, solid): the nine most frequent tags, a
#: colour each. Set 1 (square, dashed) reuses the colour of a related tag: AUX as VERB and SCONJ as ADP (the
#: paper's 15-tag set folds them so), SYM as PUNCT, CCONJ as DET, PART as ADV, INTJ as PRON, X as PROPN,
#: NUM as ADJ. NOUN keeps its colour alone.
_POS_STYLE: dict[str, tuple[int, int]] = {
    "NOUN": (0, 0), "ADP": (1, 0), "DET": (2, 0), "ADJ": (3, 0), "ADV": (4, 0), "PUNCT": (5, 0), "VERB": (6, 0),
    "PROPN": (7, 0), "PRON": (8, 0),
    "SCONJ": (1, 1), "CCONJ": (2, 1), "NUM": (3, 1), "PART": (4, 1), "SYM": (5, 1), "AUX": (6, 1), "X": (7, 1),
    "INTJ": (8, 1),
}


def pos_style(tag: str, order: Sequence[str] = ()) -> dict[str, Any]:
    """Colour, marker and line style of one POS, fixed per UPOS tag (:data:`_POS_STYLE`), so a POS looks the
    same in every figure and every run; tags outside UPOS follow, cycling, in their ``order``."""
    if tag in _POS_STYLE:
        colour, kind = _POS_STYLE[tag]
    else:
        extra = [t for t in order if t not in _POS_STYLE]
        i = extra.index(tag) if tag in extra else 0
        colour, kind = i % len(TOL_MUTED), 2 + i // len(TOL_MUTED)
    return {"color": TOL_MUTED[colour], "marker": _MARKERS[kind % len(_MARKERS)],
            "linestyle": _LINESTYLES[kind % len(_LINESTYLES)]}


def _pos_order(tags: Iterable[str]) -> list[str]:
    """Tags in the canonical UPOS order, others after them in the order given."""
    tags = list(tags)
    return [t for t in UPOS_TAGS if t in tags] + [t for t in tags if t not in UPOS_TAGS]


def model_style(i: int) -> dict[str, Any]:
    """Colour and marker of the ``i``-th run in a cross-model figure."""
    n = len(OKABE_ITO)
    return {"color": OKABE_ITO[i % n], "marker": _MARKERS[i % len(_MARKERS)],
            "linestyle": _LINESTYLES[(i // n) % len(_LINESTYLES)]}


def _text(s: Any) -> str:
    """Plain text for matplotlib (a ``$`` would start mathtext)."""
    return str(s).replace("$", r"\$")


def panel_titles(models: Sequence[str], run_ids: Sequence[str]) -> list[str]:
    """Readable panel titles: the model name (a local folder shortened to its last two parts), with the
    first 8 characters of the run id when two runs share a name."""
    labels = []
    for m in models:
        m = str(m)
        if os.path.isabs(m):
            parts = Path(m).parts
            m = "/".join(parts[-2:]) if len(parts) > 2 else m
        labels.append(m)
    return [f"{m} ({r[:8]})" if labels.count(m) > 1 else m for m, r in zip(labels, run_ids)]


# --------------------------------------------------------------------------------------------------
# Figure scaffolding


def _style_context():
    import matplotlib.style

    return matplotlib.style.context(["default", RC])


def _new_figure(width: float, height: float) -> "Figure":
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    width = max(width, MIN_WIDTH_PX / DPI)
    fig = Figure(figsize=(width, height), layout="constrained")
    FigureCanvasAgg(fig)
    return fig


def _grid(n: int, panel_w: float, panel_h: float, extra_w: float = 0.0, max_cols: int = 3,
          sharey: bool = False) -> tuple["Figure", list["Axes"]]:
    cols = min(max_cols, n)
    rows = math.ceil(n / cols)
    fig = _new_figure(cols * panel_w + extra_w, rows * panel_h)
    axes = fig.subplots(rows, cols, squeeze=False, sharey=sharey).ravel().tolist()
    for ax in axes[n:]:
        ax.set_visible(False)
    return fig, axes[:n]


def _check_panels(panels: Mapping[str, Table], what: str) -> list[tuple[str, Table]]:
    items = list(panels.items())
    if not items:
        raise ReportError(f"no {what} table to draw")
    return items


def _layer_formatter(layers: Sequence[int]):
    from matplotlib.ticker import FuncFormatter

    def fmt(x: float, _pos: Any = None) -> str:
        i = int(round(x))
        return str(layers[i]) if abs(x - i) < 1e-6 and 0 <= i < len(layers) else ""

    return FuncFormatter(fmt)


# --------------------------------------------------------------------------------------------------
# Fig. 4: Spec by layer


def fig_spec_by_layer(panels: Mapping[str, Table]) -> "Figure":
    """Spec (%) per decoder layer, one line per POS, with U = 100 k / N dashed (paper Fig. 4).

    ``panels``: title -> ``spec_layer`` table (columns ``layer``, ``pos``, ``spec``, ``uniform``).
    A POS without tokens (all ``spec`` empty) gets no line; a layer where a POS is absent is a gap.
    """
    from matplotlib.lines import Line2D
    from matplotlib.ticker import MaxNLocator

    items = _check_panels(panels, "spec_layer")
    with _style_context():
        fig, axes = _grid(len(items), 4.6 if len(items) > 1 else 6.6, 3.6 if len(items) > 1 else 4.6,
                          extra_w=1.4, sharey=True)
        handles: dict[str, Line2D] = {}
        all_tags: list[str] = []
        for ax, (title, table) in zip(axes, items):
            layer = np.array([int(v) for v in _column(table, "layer")], dtype=np.int64)
            pos = [str(v) for v in _column(table, "pos")]
            spec = _floats(_column(table, "spec"))
            uniform = _floats(_column(table, "uniform"))
            tags = _unique(pos)
            all_tags += [t for t in tags if t not in all_tags]
            pos_arr = np.array(pos, dtype=object)
            for tag in tags:
                m = pos_arr == tag
                if np.all(np.isnan(spec[m])):
                    continue
                order = np.argsort(layer[m], kind="stable")
                st = pos_style(tag, all_tags)
                (ln,) = ax.plot(layer[m][order], spec[m][order], label=_text(tag), gid=f"spec:{tag}",
                                markevery=max(1, int(m.sum()) // 12), **st)
                handles.setdefault(tag, ln)
            u = uniform[~np.isnan(uniform)]
            if u.size:
                ax.axhline(float(u[0]), color="black", linestyle=(0, (5, 3)), linewidth=1.1, gid="uniform",
                           label=f"U = {float(u[0]):g}")
                ax.annotate(f"U = {float(u[0]):g} (uniform routing)", xy=(1.0, float(u[0])),
                            xycoords=("axes fraction", "data"), xytext=(-2, 3), textcoords="offset points",
                            ha="right", va="bottom", fontsize=8.5)
            ax.set_ylim(0, 100)
            ax.xaxis.set_major_locator(MaxNLocator(integer=True))
            ax.grid(True, axis="y")
            ax.set_xlabel("decoder layer")
            ax.set_title(_text(title) if len(items) > 1 else f"{_text(title)}: POS specialisation by layer")
        for ax in axes:
            if ax.get_subplotspec().is_first_col():
                ax.set_ylabel("Spec (%)")
        shown = [t for t in _pos_order(all_tags) if t in handles]
        fig.legend([handles[t] for t in shown], [_text(t) for t in shown], loc="outside right upper", title="POS",
                   handlelength=2.6)
    return fig


# --------------------------------------------------------------------------------------------------
# Fig. 5: KL heatmap


def _kl_matrix(table: Table) -> tuple[np.ndarray, list[int]]:
    """``kl_layer_expert`` -> (``[N, L]`` KL with NaN where an expert has no assignment, decoder layers)."""
    layer = [int(v) for v in _column(table, "layer")]
    expert = [int(v) for v in _column(table, "expert")]
    kl = _floats(_column(table, "kl"))
    layers = sorted(set(layer))
    n_exp = max(expert) + 1 if expert else 0
    col = {lay: i for i, lay in enumerate(layers)}
    out = np.full((n_exp, len(layers)), np.nan)
    for lay, e, v in zip(layer, expert, kl):
        out[e, col[lay]] = v
    return out, layers


def fig_kl_heatmap(panels: Mapping[str, Table]) -> "Figure":
    """KL(P_expert || Q) in nats, experts (rows) x decoder layers (columns) (paper Fig. 5).

    ``panels``: title -> ``kl_layer_expert`` table (columns ``layer``, ``expert``, ``kl``). Experts with
    no assignment at a layer (empty ``kl``) are grey. Several panels share one colour scale.
    """
    import matplotlib
    from matplotlib.colors import Normalize
    from matplotlib.ticker import MaxNLocator

    items = _check_panels(panels, "kl_layer_expert")
    mats = [_kl_matrix(t) for _, t in items]
    finite = [m[np.isfinite(m)] for m, _ in mats]
    vmax = max((float(f.max()) for f in finite if f.size), default=0.0)
    norm = Normalize(vmin=0.0, vmax=vmax if vmax > 0 else 1.0)
    cmap = matplotlib.colormaps["viridis"].with_extremes(bad=BAD_COLOUR)
    with _style_context():
        multi = len(items) > 1
        fig, axes = _grid(len(items), 4.4 if multi else 6.4, 3.8 if multi else 4.8, extra_w=1.0)
        im = None
        for ax, (title, _), (mat, layers) in zip(axes, items, mats):
            im = ax.imshow(np.ma.masked_invalid(mat), aspect="auto", cmap=cmap, norm=norm, interpolation="none",
                           origin="upper", gid="kl")
            if mat.size <= 160:  # small grids: the value in each cell
                for (e, li), v in np.ndenumerate(mat):
                    if np.isfinite(v):
                        ax.text(li, e, f"{v:.2f}", ha="center", va="center", fontsize=7.5 if multi else 8.5,
                                color="black" if norm(v) > 0.6 else "white", in_layout=False)
            ax.xaxis.set_major_locator(MaxNLocator(nbins=min(12, max(1, len(layers))), integer=True))
            ax.xaxis.set_major_formatter(_layer_formatter(layers))
            ax.yaxis.set_major_locator(MaxNLocator(nbins=min(10, max(1, mat.shape[0])), integer=True))
            ax.set_xlabel("decoder layer")
            ax.set_ylabel("expert")
            for side in ("top", "right"):
                ax.spines[side].set_visible(True)
            ax.set_title(_text(title) if multi else f"{_text(title)}: KL divergence of each expert's POS distribution")
        fig.colorbar(im, ax=axes, label="KL(P$_{expert}$ ‖ Q) (nats)", shrink=0.9 if multi else 1.0)
    return fig


# --------------------------------------------------------------------------------------------------
# Appendix Fig. 4: confusion matrices


def _confusion_matrix(table: Table) -> tuple[np.ndarray, list[str]]:
    """``confusion_<variant>`` (long form) -> (``[P, P]`` counts, rows = true, tags in CSV order)."""
    true = [str(v) for v in _column(table, "true")]
    pred = [str(v) for v in _column(table, "pred")]
    count = [int(v) for v in _column(table, "count")]
    tags = _unique(true + pred)
    idx = {t: i for i, t in enumerate(tags)}
    cm = np.zeros((len(tags), len(tags)), dtype=np.int64)
    for t, p, c in zip(true, pred, count):
        cm[idx[t], idx[p]] += c
    return cm, tags


def _variant(table: Table) -> str:
    name = str(table.get("name", ""))
    return name[len("confusion_"):] if name.startswith("confusion_") else name


def fig_confusion(panels: Mapping[str, Table]) -> "Figure":
    """Row-normalised confusion matrix of one probe (appendix Fig. 4): cell (true, pred) = share of the
    test tokens of the true POS predicted as pred; a POS with no test token is a grey row.

    ``panels``: title -> ``confusion_<variant>`` table (columns ``true``, ``pred``, ``count``).
    """
    import matplotlib
    from matplotlib.colors import Normalize
    from matplotlib.ticker import PercentFormatter

    items = _check_panels(panels, "confusion")
    cmap = matplotlib.colormaps["Blues"].with_extremes(bad=BAD_COLOUR)
    norm = Normalize(0.0, 1.0)
    with _style_context():
        multi = len(items) > 1
        fig, axes = _grid(len(items), 4.9 if multi else 7.0, 5.6 if multi else 6.6, extra_w=0.9)
        im = None
        for ax, (title, table) in zip(axes, items):
            cm, tags = _confusion_matrix(table)
            total = cm.sum(axis=1, keepdims=True)
            with np.errstate(invalid="ignore", divide="ignore"):
                share = np.where(total > 0, cm / np.maximum(total, 1), np.nan)
            im = ax.imshow(np.ma.masked_invalid(share), cmap=cmap, norm=norm, interpolation="none", aspect="auto",
                           gid="confusion")
            p = len(tags)
            if p <= 24:
                fs = 6.5 if multi or p > 15 else 7.5
                for i in range(p):
                    for j in range(p):
                        v = share[i, j]
                        if np.isfinite(v) and round(100 * v) >= 1:
                            ax.text(j, i, f"{100 * v:.0f}", ha="center", va="center", fontsize=fs,
                                    color="white" if v > 0.55 else "black", in_layout=False)
            ax.set_xticks(range(p), [_text(t) for t in tags], rotation=90)
            ax.set_yticks(range(p), [_text(t) for t in tags])
            ax.tick_params(length=0)
            for side in ("top", "right"):
                ax.spines[side].set_visible(True)
            ax.set_xlabel("predicted POS")
            ax.set_ylabel("true POS")
            n = int(cm.sum())
            acc = np.trace(cm) / n if n else math.nan
            v = _variant(table)
            what = "form baseline" if v == "baseline" else f"{v} probe"
            head = f"{_text(title)}\n" if multi else f"{_text(title)}: "
            ax.set_title(f"{head}{what}, accuracy {100 * acc:.1f}% ({n:,} test tokens)")
        fig.colorbar(im, ax=axes, label="share of the true POS's test tokens", shrink=0.9 if multi else 0.8,
                     format=PercentFormatter(xmax=1.0, decimals=0))
    return fig


# --------------------------------------------------------------------------------------------------
# Fig. 3: layer ablation


_SIDE_LABEL = {"first": "first n MoE layers removed", "last": "last n MoE layers removed"}


def _baseline_accuracy(probe: Table | None) -> float | None:
    if probe is None:
        return None
    for variant, acc in zip(_column(probe, "variant"), _column(probe, "accuracy")):
        if variant == "baseline" and acc not in (None, ""):
            return float(acc)
    return None


def _ablation_series(table: Table) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    side = [str(v) for v in _column(table, "side")]
    removed = np.array([int(v) for v in _column(table, "removed")], dtype=np.int64)
    acc = _floats(_column(table, "accuracy"))
    side_arr = np.array(side, dtype=object)
    out = {}
    for s in _unique(side):
        m = side_arr == s
        order = np.argsort(removed[m], kind="stable")
        out[s] = (removed[m][order], acc[m][order])
    return out


def fig_ablation(panels: Mapping[str, Table], probe: Mapping[str, Table] | None = None) -> "Figure":
    """Probe accuracy after removing the first / last n MoE layers (paper Fig. 3).

    One run: one axes, a line per side, and the form baseline dotted (from ``probe[title]``, the
    ``probe`` table, when given). Several runs: one axes per side, a line per run.
    ``panels``: title -> ``ablation`` table (columns ``side``, ``removed``, ``accuracy``).
    """
    from matplotlib.ticker import MaxNLocator, PercentFormatter

    items = _check_panels(panels, "ablation")
    probe = probe or {}
    with _style_context():
        if len(items) == 1:
            title, table = items[0]
            fig = _new_figure(6.4, 4.2)
            ax = fig.subplots()
            for i, (side, (x, y)) in enumerate(_ablation_series(table).items()):
                st = {"color": OKABE_ITO[i % len(OKABE_ITO)], "marker": _MARKERS[i % len(_MARKERS)],
                      "linestyle": _LINESTYLES[i % len(_LINESTYLES)]}
                ax.plot(x, y, label=_SIDE_LABEL.get(side, _text(side)), gid=f"ablation:{side}", **st)
            base = _baseline_accuracy(probe.get(title))
            if base is not None:
                ax.axhline(base, color="#666666", linestyle=":", linewidth=1.2, gid="baseline",
                           label="form baseline (most frequent POS of the word)")
            axes = [ax]
            ax.set_title(f"{_text(title)}: layer ablation of the routing probe")
            ax.legend(loc="best")
        else:
            series = [(t, _ablation_series(tab)) for t, tab in items]
            sides = _unique(s for _, ser in series for s in ser)
            fig, axes = _grid(len(sides), 4.8, 3.9, extra_w=1.8, max_cols=2, sharey=True)
            for ax, side in zip(axes, sides):
                for i, (title, ser) in enumerate(series):
                    if side in ser:
                        x, y = ser[side]
                        ax.plot(x, y, label=_text(title), gid=f"ablation:{side}:{title}", **model_style(i))
                ax.set_title(_SIDE_LABEL.get(side, _text(side)))
            fig.legend(*axes[0].get_legend_handles_labels(), loc="outside right upper", title="model")
        for ax in axes:
            ax.set_xlabel("MoE layers removed (n)")
            if ax.get_subplotspec().is_first_col():
                ax.set_ylabel("probe accuracy")
            ax.yaxis.set_major_formatter(PercentFormatter(xmax=1.0))
            ax.xaxis.set_major_locator(MaxNLocator(integer=True))
            ax.grid(True, axis="y")
    return fig


# --------------------------------------------------------------------------------------------------
# Fig. 2: t-SNE


def fig_tsne(panels: Mapping[str, Table]) -> "Figure":
    """t-SNE of sampled routing paths, one colour and marker per POS (paper Fig. 2).

    ``panels``: title -> ``tsne`` table (columns ``x``, ``y``, ``pos``). The most frequent POS are drawn
    first so rare ones stay visible; points are rasterised in the PDF (the axes and text stay vector).
    """
    items = _check_panels(panels, "tsne")
    with _style_context():
        multi = len(items) > 1
        fig, axes = _grid(len(items), 4.4 if multi else 6.4, 4.2 if multi else 5.6, extra_w=1.4)
        handles: dict[str, Any] = {}
        all_tags: list[str] = []
        for ax, (title, table) in zip(axes, items):
            x = _floats(_column(table, "x"))
            y = _floats(_column(table, "y"))
            pos = np.array([str(v) for v in _column(table, "pos")], dtype=object)
            tags = _unique(pos.tolist())
            all_tags += [t for t in tags if t not in all_tags]
            counts = {t: int((pos == t).sum()) for t in tags}
            for tag in sorted(tags, key=lambda t: -counts[t]):
                m = pos == tag
                st = pos_style(tag, all_tags)
                sc = ax.scatter(x[m], y[m], s=5 if len(x) > 2000 else 10, c=st["color"], marker=st["marker"],
                                linewidths=0, alpha=0.8, label=_text(tag), gid=f"tsne:{tag}", rasterized=True)
                handles.setdefault(tag, sc)
            ax.set_xticks([])
            ax.set_yticks([])
            for side in ("top", "right"):
                ax.spines[side].set_visible(True)
            ax.set_xlabel("t-SNE 1")
            ax.set_ylabel("t-SNE 2")
            n = len(x)
            ax.set_title(_text(title) if multi else f"{_text(title)}: t-SNE of {n:,} routing paths (Hamming)")
        shown = _pos_order(all_tags)
        fig.legend([handles[t] for t in shown], [_text(t) for t in shown], loc="outside right upper",
                   title="POS", markerscale=2.2 if multi else 1.8, scatterpoints=1)
    return fig


# --------------------------------------------------------------------------------------------------
# Which figures a report has, and writing them


def run_figure_stems(tables: Mapping[str, Table]) -> list[str]:
    """The figure stems one run's tables support, in writing order."""
    stems = []
    if "spec_layer" in tables:
        stems.append("fig_spec_by_layer")
    if "kl_layer_expert" in tables:
        stems.append("fig_kl_heatmap")
    stems += [f"fig_{name}" for name in tables if re.fullmatch(r"confusion_\w+", name)]
    if "ablation" in tables:
        stems.append("fig_ablation")
    if "tsne" in tables:
        stems.append("fig_tsne")
    return stems


def _build(stem: str, per_run: Sequence[tuple[str, Mapping[str, Table]]]) -> "Figure":
    """Figure ``stem`` with one panel per ``(title, tables)`` that has its table."""
    def panels(name: str) -> dict[str, Table]:
        return {title: t[name] for title, t in per_run if name in t}

    if stem == "fig_spec_by_layer":
        return fig_spec_by_layer(panels("spec_layer"))
    if stem == "fig_kl_heatmap":
        return fig_kl_heatmap(panels("kl_layer_expert"))
    if stem.startswith("fig_confusion_"):
        return fig_confusion(panels(stem[len("fig_"):]))
    if stem == "fig_ablation":
        return fig_ablation(panels("ablation"), probe=panels("probe"))
    if stem == "fig_tsne":
        return fig_tsne(panels("tsne"))
    raise ReportError(f"unknown figure {stem!r}")


def run_figure(stem: str, tables: Mapping[str, Table], title: str) -> "Figure":
    """One run's figure ``stem`` (see :func:`run_figure_stems`) from its report tables."""
    return _build(stem, [(title, tables)])


def compare_figure_stems(per_run: Sequence[Mapping[str, Table]]) -> list[str]:
    """Cross-model figure stems: those that at least two of the runs support."""
    counts: dict[str, int] = {}
    for tables in per_run:
        for s in run_figure_stems(tables):
            counts[s] = counts.get(s, 0) + 1
    return [s for s, n in counts.items() if n >= 2]


def compare_figure(stem: str, per_run: Sequence[tuple[str, Mapping[str, Table]]]) -> "Figure":
    """The cross-model figure ``stem``: one panel (or line) per ``(title, tables)`` run."""
    return _build(stem, per_run)


def figure_bytes(fig: "Figure", fmt: str, title: str = "", dpi: int = DPI) -> bytes:
    """``fig`` rendered as ``png`` (``dpi``, default :data:`DPI`) or ``pdf`` (``title`` in its metadata),
    deterministically (no creation date: the same figure gives the same bytes)."""
    buf = io.BytesIO()
    if fmt == "pdf":
        meta = {"CreationDate": None, "ModDate": None, "Creator": "moe-tui", "Title": title or None}
    else:
        meta = {}
    with _style_context():
        fig.savefig(buf, format=fmt, dpi=dpi, metadata=meta)
    return buf.getvalue()


def save_figure(fig: "Figure", stem_path: str | os.PathLike, title: str = "") -> list[Path]:
    """Write ``stem_path``.png and ``stem_path``.pdf atomically; return both absolute paths.

    The PDF reuses the layout computed for the PNG (one layout pass less; a PDF's own layout would place the
    axes within 0.2 % of the figure's size of it)."""
    base = Path(stem_path).expanduser().resolve()
    out = []
    for fmt in ("png", "pdf"):
        path = base.with_name(f"{base.name}.{fmt}")
        data = figure_bytes(fig, fmt, title)
        if fmt == "png":
            fig.set_layout_engine("none")
        try:
            atomic_write_bytes(path, data)
        except CacheError as exc:
            raise ReportError(str(exc)) from None
        out.append(path)
    return out


def write_figures(out_dir: str | os.PathLike, per_run: Sequence[tuple[str, str, Mapping[str, Table]]], *,
                  progress: Progress | None = None) -> list[Path]:
    """Write every figure of a report.

    ``per_run``: ``(run_id, title, tables)`` per run. Each run's figures go to ``out_dir/<run_id>/``;
    with two or more runs the cross-model figures (one panel or line per run) go to ``out_dir/``.
    Figures are built and written one at a time (memory stays flat). Returns the written paths.
    """
    require_matplotlib()
    out = Path(out_dir)
    files: list[Path] = []
    jobs: list[tuple[Path, str, list[tuple[str, Mapping[str, Table]]]]] = []
    for run_id, title, tables in per_run:
        for stem in run_figure_stems(tables):
            jobs.append((out / run_id / stem, stem, [(title, tables)]))
    if len(per_run) >= 2:
        runs = [(title, tables) for _, title, tables in per_run]
        for stem in compare_figure_stems([t for _, _, t in per_run]):
            jobs.append((out / stem, stem, [(ti, t) for ti, t in runs]))
    for i, (path, stem, panels) in enumerate(jobs):
        if progress is not None:
            progress("figures", i, len(jobs))
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise ReportError(f"cannot create output folder {path.parent}: {exc.strerror or exc}") from None
        fig = _build(stem, panels)
        title = stem if len(panels) > 1 else f"{stem} {panels[0][0]}"
        files += save_figure(fig, path, title=title)
        fig.clear()
    if progress is not None:
        progress("figures", len(jobs), len(jobs))
    return files
