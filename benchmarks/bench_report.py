"""Benchmark: the whole ``moe-tui report RUN --probe --controls`` command, ``--probe-engine torch`` vs ``sklearn``.

Extracts the run once (the demo model on the demo corpus by default; ``--data`` / ``--model`` for another,
e.g. UD English EWT dev), then times each engine's whole command as its own process (imports, routing
tables, probes, ablation, t-SNE, permutation null, bootstrap, CSV writing), alternating the order over
``--rounds``, and prints the ratio of the medians: of wall time, or with ``--clock process`` of the CPU time
each command's process used (user + system, from ``getrusage``: steadier than wall time on a shared
machine; with a spare CPU the report runs its t-SNE beside the probe training, so the wall time is then
shorter than the CPU time); the other clock is printed beside. Both commands get the same CPU threads
(``--threads``: OMP/MKL/OpenBLAS thread variables; default: unset, the machine's default). Then it compares
the two engines' accuracies (probe.csv and ablation.csv): top_k, top_1, onehot_top_k and every ablation cut.

Run:  .venv/bin/python -m benchmarks.bench_report [--data FILE] [--model DIR] [--rounds 1] [--threads N]
      [--clock wall|process]
"""

from __future__ import annotations

import argparse
import csv
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def _env(threads: int | None) -> dict:
    env = dict(os.environ)
    if threads:
        for var in ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS"):
            env[var] = str(threads)
    return env


def _cli(args: list[str], env: dict) -> str:
    out = subprocess.run([sys.executable, "-m", "moe_tui.cli", *args], env=env, cwd=REPO, capture_output=True,
                         text=True)
    if out.returncode != 0:
        raise SystemExit(f"bench_report: moe-tui {' '.join(args[:2])} failed: {out.stderr.strip()}")
    return out.stdout


def _child_cpu() -> float:
    """CPU seconds (user + system) used so far by this process's finished children."""
    ru = resource.getrusage(resource.RUSAGE_CHILDREN)
    return ru.ru_utime + ru.ru_stime


def _rows(path: Path) -> list[dict]:
    with open(path, newline="") as fh:
        return list(csv.DictReader(fh))


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--model", default=str(REPO / "core" / "demo" / "model"))
    ap.add_argument("--data", default=str(REPO / "core" / "demo" / "demo.conllu"))
    ap.add_argument("--cache-dir", default=str(Path(tempfile.gettempdir()) / "moe-tui-bench-cache"))
    ap.add_argument("--rounds", type=int, default=1)
    ap.add_argument("--threads", type=int, default=None)
    ap.add_argument("--clock", choices=("wall", "process"), default="wall",
                    help="wall: elapsed seconds; process: CPU seconds (user + system) of the command's process")
    a = ap.parse_args()
    env = _env(a.threads)
    run_dir = _cli(["extract", "--model", a.model, "--data", a.data, "--device", "cpu", "--progress", "none",
                    "--cache-dir", a.cache_dir], env).strip().splitlines()[-1]
    run = Path(run_dir).name
    print(f"run {run}: {a.model} on {a.data}; threads: {a.threads or 'machine default'}; clock: {a.clock}; "
          f"load average {os.getloadavg()[0]:.1f}", flush=True)
    times: dict[str, list[float]] = {"torch": [], "sklearn": []}
    other: dict[str, list[float]] = {"torch": [], "sklearn": []}   # the other clock, printed beside
    outs = {}
    with tempfile.TemporaryDirectory() as tmp:
        for r in range(a.rounds):
            for engine in (("torch", "sklearn") if r % 2 == 0 else ("sklearn", "torch")):
                out = Path(tmp) / f"{engine}{r}"
                t, cpu = time.perf_counter(), _child_cpu()
                _cli(["report", run, "--out", str(out), "--probe", "--controls", "--probe-engine", engine,
                      "--cache-dir", a.cache_dir], env)
                wall, cpu = time.perf_counter() - t, _child_cpu() - cpu
                times[engine].append(cpu if a.clock == "process" else wall)
                other[engine].append(wall if a.clock == "process" else cpu)
                outs[engine] = out / run
                print(f"  {engine:8s} round {r + 1}: wall {wall:.1f} s, CPU {cpu:.1f} s (load average "
                      f"{os.getloadavg()[0]:.1f})", flush=True)
        med = {e: sorted(v)[len(v) // 2] for e, v in times.items()}
        alt = {e: sorted(v)[len(v) // 2] for e, v in other.items()}
        print(f"report --probe --controls ({a.clock} clock): torch {med['torch']:.1f} s, sklearn {med['sklearn']:.1f} s: "
              f"{med['sklearn'] / med['torch']:.2f}x")
        print(f"  ({'wall' if a.clock == 'process' else 'process'} clock: torch {alt['torch']:.1f} s, "
              f"sklearn {alt['sklearn']:.1f} s: {alt['sklearn'] / alt['torch']:.2f}x)")
        probe = {e: {row["variant"]: row for row in _rows(outs[e] / "probe.csv")} for e in outs}
        abl = {e: {(row["side"], row["removed"]): row for row in _rows(outs[e] / "ablation.csv")} for e in outs}
        print(f"{'probe':22s} {'torch':>8s} {'sklearn':>8s} {'diff':>7s}  epochs torch/sklearn")
        worst = 0.0
        items = [(v, probe["torch"][v], probe["sklearn"][v]) for v in ("top_k", "top_1", "onehot_top_k")]
        items += [(f"ablation {s} {n}", abl["torch"][(s, n)], abl["sklearn"][(s, n)]) for s, n in abl["torch"]]
        for name, t_row, s_row in items:
            d = 100 * (float(t_row["accuracy"]) - float(s_row["accuracy"]))
            worst = max(worst, abs(d))
            print(f"{name:22s} {100 * float(t_row['accuracy']):8.2f} {100 * float(s_row['accuracy']):8.2f} "
                  f"{d:+7.2f}  {t_row['n_iter']}/{s_row['n_iter']}")
        print(f"largest |torch - sklearn|: {worst:.2f} points")


if __name__ == "__main__":
    main()
