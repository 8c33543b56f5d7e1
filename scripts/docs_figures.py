"""Redraw README's figures (small PNGs in docs/figures/) from a run's report folder, without recomputing it.

    moe-tui extract --model core/demo/model --data core/demo/demo.conllu
    moe-tui report RUN --out demo_report --probe
    .venv/bin/python scripts/docs_figures.py demo_report/RUN

The tables are read back from the folder's CSV files (the figures read them by column name).
"""

from __future__ import annotations

import csv
import sys
from pathlib import Path

from moe_tui.core.analysis import figures as F
from moe_tui.fileio import atomic_write_bytes

DOCS = Path(__file__).resolve().parents[1] / "docs" / "figures"
STEMS = ("fig_spec_by_layer", "fig_confusion_top_k")
DOCS_DPI = 110


def main(argv: list[str]) -> int:
    if len(argv) != 1 or not Path(argv[0]).is_dir():
        print("usage: docs_figures.py REPORT_DIR/RUN_ID", file=sys.stderr)
        return 2
    folder = Path(argv[0])
    tables = {}
    for path in sorted(folder.glob("*.csv")):
        with open(path, newline="") as fh:
            rows = list(csv.reader(fh))
        tables[path.stem] = {"name": path.stem, "columns": rows[0], "rows": rows[1:]}
    title = F.panel_titles([tables["summary"]["rows"][0][0]], [folder.name])[0]
    DOCS.mkdir(parents=True, exist_ok=True)
    for stem in STEMS:
        out = DOCS / f"demo_{stem}.png"
        atomic_write_bytes(out, F.figure_bytes(F.run_figure(stem, tables, title), "png", dpi=DOCS_DPI))
        print(out)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
