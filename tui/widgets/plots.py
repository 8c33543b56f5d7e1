"""The one place moe-tui touches a plotting library (textual-plotext 1.0.1 over plotext 5.3; plotext 6 is
incompatible). Screens describe *what* to draw (lines, grouped bars, a scatter); swapping the backend means
rewriting this module only.

``plt.build()`` runs on the UI thread at every render: inputs are downsampled here (scatter ≤ ``MAX_POINTS``).
Every plot carries the :mod:`moe_tui.core.analysis.report` table it shows (``report_table``) so ``e`` can export it.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Sequence

from textual_plotext import PlotextPlot

MAX_POINTS = 600          # scatter points drawn (t-SNE): keeps plt.build() well under 100 ms
SERIES_COLORS = ("cyan", "orange", "green", "magenta", "red", "blue", "white", "gray",
                 "cyan+", "orange+", "green+", "magenta+", "red+", "blue+", "gray+")


def _finite(xs: Sequence) -> list[float]:
    return [float("nan") if x is None else float(x) for x in xs]


def downsample(n: int, max_points: int = MAX_POINTS) -> list[int]:
    """Evenly spaced indices (deterministic) so at most ``max_points`` of ``n`` points are drawn."""
    if n <= max_points:
        return list(range(n))
    step = n / max_points
    return sorted({int(i * step) for i in range(max_points)})


@dataclass
class _Spec:
    kind: str = "empty"                 # empty | lines | bars | scatter
    title: str = ""
    xlabel: str = ""
    ylabel: str = ""
    x: list = field(default_factory=list)
    series: list = field(default_factory=list)   # (label, ys) or (label, xs, ys)
    hlines: list = field(default_factory=list)   # (y, label)
    message: str = ""


class Plot(PlotextPlot, can_focus=True):
    """A focusable plot: ``lines`` / ``bars`` / ``scatter`` / ``empty`` (a message)."""

    DEFAULT_CSS = """
    Plot { width: 1fr; height: 1fr; }
    Plot:focus { border: tall $accent; }
    """

    def __init__(self, *, id: str | None = None, classes: str | None = None) -> None:
        super().__init__(id=id, classes=classes)
        self.spec = _Spec()
        self.report_table: dict | None = None
        self.drawn_points = 0

    # ---- what to draw -------------------------------------------------------------------------------
    def empty(self, message: str, title: str = "") -> None:
        self.spec = _Spec(kind="empty", title=title, message=message)
        self.report_table = None
        self._redraw()

    def lines(self, x: Sequence, series: Sequence[tuple[str, Sequence]], *, title: str = "", xlabel: str = "",
              ylabel: str = "", hlines: Sequence[tuple[float, str]] = (), report_table: dict | None = None) -> None:
        self.spec = _Spec(kind="lines", title=title, xlabel=xlabel, ylabel=ylabel, x=list(x),
                          series=[(lab, _finite(ys)) for lab, ys in series], hlines=list(hlines))
        self.report_table = report_table
        self._redraw()

    def bars(self, labels: Sequence[str], series: Sequence[tuple[str, Sequence]], *, title: str = "",
             ylabel: str = "", report_table: dict | None = None) -> None:
        self.spec = _Spec(kind="bars", title=title, ylabel=ylabel, x=list(labels),
                          series=[(lab, _finite(ys)) for lab, ys in series])
        self.report_table = report_table
        self._redraw()

    def scatter(self, groups: Sequence[tuple[str, Sequence, Sequence]], *, title: str = "",
                report_table: dict | None = None, max_points: int = MAX_POINTS) -> None:
        """``groups``: (label, xs, ys); downsampled to ``max_points`` in total, evenly within the input order."""
        flat = [(g, i) for g, (_, xs, _) in enumerate(groups) for i in range(len(xs))]
        keep = downsample(len(flat), max_points)
        picked: dict[int, list[int]] = {}
        for j in keep:
            g, i = flat[j]
            picked.setdefault(g, []).append(i)
        series = []
        for g, (lab, xs, ys) in enumerate(groups):
            idx = picked.get(g, [])
            if idx:
                series.append((lab, [float(xs[i]) for i in idx], [float(ys[i]) for i in idx]))
        self.drawn_points = len(keep)
        self.spec = _Spec(kind="scatter", title=title, series=series)
        self.report_table = report_table
        self._redraw()

    # ---- backend ------------------------------------------------------------------------------------
    def _redraw(self) -> None:
        p = self.plt
        p.clear_figure()
        s = self.spec
        if s.title:
            p.title(s.title)
        if s.kind == "empty":
            p.xticks([])
            p.yticks([])
            p.text(s.message or "nothing to plot", 0.5, 0.5, alignment="center")
            p.xlim(0, 1)
            p.ylim(0, 1)
        elif s.kind == "lines":
            for i, (lab, ys) in enumerate(s.series):
                pts = [(x, y) for x, y in zip(s.x, ys) if not math.isnan(y)]
                if pts:
                    p.plot([a for a, _ in pts], [b for _, b in pts], label=lab, marker="braille",
                           color=SERIES_COLORS[i % len(SERIES_COLORS)])
            for j, (y, _lab) in enumerate(s.hlines):
                if y is not None and not math.isnan(float(y)):
                    p.horizontal_line(float(y), color="gray" if j == 0 else "white")
            if s.x:
                p.xticks(list(s.x))
        elif s.kind == "bars":
            ys = [[0.0 if math.isnan(v) else v for v in vals] for _, vals in s.series]
            # horizontal: one category label per row (vertical bars drop labels, differently per process)
            if len(ys) == 1:
                p.bar(list(s.x), ys[0], label=s.series[0][0], color=SERIES_COLORS[0], orientation="horizontal")
            elif ys:
                p.multiple_bar(list(s.x), ys, labels=[lab for lab, _ in s.series],
                               color=list(SERIES_COLORS[: len(ys)]), orientation="horizontal")
        elif s.kind == "scatter":
            for i, (lab, xs, ys) in enumerate(s.series):
                p.scatter(xs, ys, label=lab, marker="dot", color=SERIES_COLORS[i % len(SERIES_COLORS)])
        if s.xlabel:
            p.xlabel(s.xlabel)
        if s.ylabel:
            p.ylabel(s.ylabel)
        self.refresh()
