"""Run every benchmark in turn (each in its own process) and print its figures.

Usage: ``.venv/bin/python -m benchmarks.run_all [NAME ...]`` (names: extract, metrics, probe, report, tui, figures,
controls, scale, generate).
Benchmarks compare against a baseline run in the same process and print ratios; nothing here is a
pass/fail test. Run them on an otherwise idle machine.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
BENCHES = {"extract": "bench_extract", "metrics": "bench_metrics", "probe": "bench_probe", "report": "bench_report",
           "tui": "bench_tui", "figures": "bench_figures", "controls": "bench_controls", "scale": "bench_scale",
           "generate": "bench_generate"}


def main(argv: list[str]) -> int:
    names = argv or list(BENCHES)
    unknown = [n for n in names if n not in BENCHES]
    if unknown:
        print(f"run_all: unknown benchmark {unknown[0]!r}; choose from {', '.join(BENCHES)}", file=sys.stderr)
        return 2
    worst = 0
    for name in names:
        module = f"benchmarks.{BENCHES[name]}"
        print(f"== {name} ({module})", flush=True)
        worst = max(worst, subprocess.call([sys.executable, "-m", module], cwd=HERE.parent))
    return worst


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
