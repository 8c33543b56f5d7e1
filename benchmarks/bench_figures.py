"""Benchmark: what ``report --figures`` adds, against the report it comes with, in the same process.

A paper-sized synthetic run (116,000 tokens, the paper's corpus size; 32 MoE layers, 2 of 8 experts, 17 POS,
as Mixtral) goes through the report without probes (routing tables + CSVs: the baseline), then every figure
of a ``--probe`` report is written (PNG + PDF) from those tables plus probe tables of the real shapes
(confusion matrices of 38,667 test tokens, a 32-step ablation, a 5,000-point t-SNE; synthetic numbers, since
the figures only read tables). Then the cross-model figures of six such runs (the paper's six models).
Times are medians of ``--rounds`` rounds; ratios are figure time / baseline time.

Run:  .venv/bin/python -m benchmarks.bench_figures [--tokens N] [--rounds R]
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path

import numpy as np

from benchmarks.bench_metrics import TAGS, synthetic
from moe_tui.core.analysis import figures as F
from moe_tui.core.analysis.view import RunView, form_keys
from moe_tui.core.analysis.writer import write_report


def view(T: int, L: int, k: int, N: int, seed: int, run_id: str) -> RunView:
    experts, pos = synthetic(T, L, k, N, len(TAGS), seed=seed)
    rng = np.random.default_rng(seed)
    return RunView(model=f"org/model-{seed}", run_id=run_id, tags=TAGS, moe_layers=list(range(L)), n_experts=N,
                   top_k=k, experts=experts, pos=pos.astype(np.int64), **form_keys(np.array(["w"] * T)),
                   sentence=np.arange(T) // 20, token_ids=rng.integers(0, 32000, T))


def probe_tables(T: int, L: int, seed: int) -> dict[str, dict]:
    """Tables of a --probe report with the real shapes (numbers are synthetic)."""
    rng = np.random.default_rng(seed)
    P, n_test = len(TAGS), T // 3
    out = {}
    for variant in ("top_k", "top_1", "onehot_top_k", "baseline"):
        cm = rng.multinomial(n_test, rng.dirichlet(np.ones(P * P))).reshape(P, P)
        cm += np.diag(rng.integers(100, 2000, P))
        out[f"confusion_{variant}"] = {"name": f"confusion_{variant}", "columns": ["true", "pred", "count"],
                                       "rows": [[a, b, int(cm[i, j])] for i, a in enumerate(TAGS)
                                                for j, b in enumerate(TAGS)]}
    out["ablation"] = {"name": "ablation", "columns": ["side", "removed", "accuracy"],
                       "rows": [[s, n, float(0.9 - 0.01 * n + 0.01 * rng.random())] for s in ("first", "last")
                                for n in range(L)]}
    out["probe"] = {"name": "probe", "columns": ["variant", "accuracy", "train_tokens", "test_tokens"],
                    "rows": [["baseline", 0.92, T - n_test, n_test]]}
    xy = rng.normal(size=(5000, 2)) * 30
    out["tsne"] = {"name": "tsne", "columns": ["token", "x", "y", "pos"],
                   "rows": [[i, float(x), float(y), TAGS[int(rng.integers(0, len(TAGS)))]]
                            for i, (x, y) in enumerate(xy)]}
    return out


def timed(fn, rounds: int) -> float:
    times = []
    for _ in range(rounds):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return statistics.median(times)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--tokens", type=int, default=116_000)
    ap.add_argument("--rounds", type=int, default=3)
    args = ap.parse_args(argv)
    T, L, k, N = args.tokens, 32, 2, 8
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp)
        v = view(T, L, k, N, 0, "run0")
        # warm up imports (numpy, matplotlib, fonts) outside the timings
        res = write_report([v], out / "warm")
        F.write_figures(out / "warm", [("run0", "org/model-0", {**res["runs"]["run0"], **probe_tables(T, L, 0)})])

        def baseline():
            v._cache.clear()
            write_report([v], out / "base")

        tables = {**write_report([v], out / "t")["runs"]["run0"], **probe_tables(T, L, 0)}
        base = timed(baseline, args.rounds)
        (out / "one").mkdir()
        per_fig = {}
        for stem in F.run_figure_stems(tables):
            per_fig[stem] = timed(lambda s=stem: F.save_figure(F.run_figure(s, tables, "org/model-0"), out / "one" / s),
                                  args.rounds)
        one_run = sum(per_fig.values())
        runs = []
        for i in range(6):
            routing = write_report([view(T, L, k, N, i, f"run{i}")], out / "six")["runs"][f"run{i}"]
            runs.append((f"run{i}", f"org/model-{i}", {**routing, **probe_tables(T, L, i)}))
        cross_stems = F.compare_figure_stems([t for _, _, t in runs])
        cross = timed(lambda: [F.save_figure(F.compare_figure(s, [(ti, t) for _, ti, t in runs]), out / "six" / s)
                               for s in cross_stems], max(1, args.rounds - 2))
    print(f"tokens {T:,}, {L} MoE layers, top-{k} of {N}, {len(TAGS)} POS; medians of {args.rounds} rounds")
    print(f"baseline: report without probes (routing tables + CSVs): {base:.2f} s")
    for stem, t in per_fig.items():
        print(f"  {stem:28s} {t:6.2f} s  ({t / base:.2f}x baseline)")
    print(f"all {len(per_fig)} figures of one run (PNG + PDF): {one_run:.2f} s = {one_run / base:.2f}x baseline")
    print(f"{len(cross_stems)} cross-model figures of 6 runs (PNG + PDF): {cross:.2f} s = {cross / base:.2f}x baseline")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
