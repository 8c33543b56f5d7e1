"""The TUI screenshots of the docs (SVG, Textual's own export), taken on a real run of the built-in demo.

    .venv/bin/python -m scripts.screenshots      # extract the demo (a temporary cache), rewrite docs/figures/tui_*.svg

Three screens at 118 × 34, as ``moe-tui open RUN`` shows them: the routing grid of the first sentence
(``tui_grid.svg``, README's picture, the cursor on the fourth token), the same after typing ``/fatima`` (``tui_search.svg``), and the
specialisation pane (``tui_spec.svg``). The app runs headless through Textual's test driver; nothing else of
the machine (settings, run cache) is read or written.
"""

from __future__ import annotations

import asyncio
import os
import sys
import tempfile
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
FIGURES = REPO / "docs" / "figures"
SIZE = (118, 34)


async def _shoot(run, work: Path) -> dict[str, str]:
    from moe_tui.cache.store import RunStore
    from moe_tui.tui.app import MoeTuiApp
    from moe_tui.tui.settings import Settings

    app = MoeTuiApp(settings=Settings(export_dir=str(work / "exports")), run_store=lambda: RunStore(run.path.parent),
                    scan_hf_cache=False, open_run=run)
    shots: dict[str, str] = {}
    async with app.run_test(size=SIZE) as pilot:
        await _settle(pilot)
        await pilot.press("l", "l", "l")   # the cursor on "tired": its path and its expert's POS mix
        await _settle(pilot)
        shots["tui_grid.svg"] = app.export_screenshot(title="moe-tui: the routing grid")
        await pilot.press("slash", *"fatima")
        await _settle(pilot)
        shots["tui_search.svg"] = app.export_screenshot(title="moe-tui: searching the sentences")
        await pilot.press("escape")
        await _settle(pilot)
        await pilot.press("s")
        for _ in range(300):   # the pane builds its tables in a worker
            await pilot.pause(0.1)
            if app.screen.__class__.__name__ != "GridScreen" and not app.workers:
                break
        await _settle(pilot)
        shots["tui_spec.svg"] = app.export_screenshot(title="moe-tui: the specialisation pane")
    return shots


async def _settle(pilot) -> None:
    for _ in range(5):
        await pilot.pause(0.2)
    await pilot.app.workers.wait_for_complete()
    await pilot.pause(0.2)


def main() -> int:
    from moe_tui.cache.store import RunStore
    from moe_tui.core.demo import demo_corpus_path, demo_model_path
    from moe_tui.core.extract.pipeline import ExtractOptions, extract
    from moe_tui.fileio import atomic_write_text

    with tempfile.TemporaryDirectory(prefix="moe-tui-screenshots-") as tmp:
        work = Path(tmp)
        os.environ["MOE_TUI_CONFIG"] = str(work / "config.json")   # never the user's settings
        run_dir = extract(ExtractOptions(model=str(demo_model_path()), data=str(demo_corpus_path()), device="cpu",
                                         cache_dir=str(work / "cache")))
        run = RunStore(work / "cache").open(run_dir.name)
        shots = asyncio.run(_shoot(run, work))
    FIGURES.mkdir(parents=True, exist_ok=True)
    for name, svg in shots.items():
        atomic_write_text(FIGURES / name, svg)
        print((FIGURES / name).relative_to(REPO))
    return 0


if __name__ == "__main__":
    sys.exit(main())
