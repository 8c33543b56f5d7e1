"""The analysis panes, one file each, on a common base (``base.PaneScreen``).

``PANES`` maps a pane kind (the ``open_pane('…')`` argument of the ``app.spec`` / ``app.kl`` / ``app.probe`` /
``app.compare`` actions) to its screen. To add a pane: a ``PaneScreen`` subclass in its own file with a new
``KIND``, an entry here, an ``app.*`` action in :mod:`moe_tui.tui.actions` (plus ``pane.*`` actions gated
with ``only=("kind",)``), its styles in ``app.tcss``.
"""

from __future__ import annotations

from moe_tui.tui.screens.panes.base import PaneScreen
from moe_tui.tui.screens.panes.compare import CompareScreen
from moe_tui.tui.screens.panes.kl import KLScreen
from moe_tui.tui.screens.panes.probe import ProbeScreen
from moe_tui.tui.screens.panes.spec import SpecScreen

PANES: dict[str, type[PaneScreen]] = {"spec": SpecScreen, "kl": KLScreen, "probe": ProbeScreen,
                                      "compare": CompareScreen}

__all__ = ["PANES", "PaneScreen", "SpecScreen", "KLScreen", "ProbeScreen", "CompareScreen"]
