"""Benchmark: the statistics of ``report --controls`` that train nothing (permutation null with p- and
q-values, context effect of token ids with its permutation test, BCa bootstrap of the global Spec with its
jackknife over sentences, BCa intervals of an accuracy), against the routing tables of the same run
(``report`` without ``--probe`` / ``--controls``), in one process, medians of ``--rounds``.

Two runs: the demo run (the demo model on the demo corpus, extracted once into ``--cache-dir``) and a
paper-scale synthetic run (116,000 tokens, 32 MoE layers, top-2 of 8, 17 POS, 6,800 sentences, token ids
drawn from a Zipf law over 20,000 ids whose POS depends on the id with some ambiguity).

Run:  .venv/bin/python -m benchmarks.bench_controls [--rounds 3] [--skip-demo] [--skip-paper]
"""

from __future__ import annotations

import argparse
import dataclasses
import statistics
import tempfile
import time
from pathlib import Path

import numpy as np

from benchmarks.bench_metrics import TAGS, synthetic
from moe_tui.core.analysis import controls as C
from moe_tui.core.analysis import seeds as S
from moe_tui.core.analysis.probe import form_baseline, split_indices
from moe_tui.core.analysis.report import report_tables
from moe_tui.core.analysis.view import RunView, form_keys

REPO = Path(__file__).resolve().parents[1]


def demo_view(cache_dir: str) -> RunView:
    from moe_tui.cache.store import RunStore
    from moe_tui.core.extract.pipeline import ExtractOptions, extract

    run_dir = extract(ExtractOptions(model=str(REPO / "core" / "demo" / "model"), data=str(REPO / "core" / "demo" /
                                                                                          "demo.conllu"),
                                     device="cpu", cache_dir=cache_dir))
    return RunView.from_run(RunStore(cache_dir).open(run_dir.name))


def paper_view(T: int = 116_000, L: int = 32, k: int = 2, N: int = 8, seed: int = 0) -> RunView:
    experts, pos = synthetic(T, L, k, N, len(TAGS), seed=seed)
    rng = np.random.default_rng(seed + 1)
    ranks = np.arange(1, 20_001, dtype=np.float64)
    token_ids = rng.choice(20_000, size=T, p=(1 / ranks) / (1 / ranks).sum())
    # a token id mostly keeps one POS: the synthetic POS for 80 % of tokens, the id's own POS otherwise
    own = rng.integers(0, len(TAGS), 20_000)
    pos = np.where(rng.random(T) < 0.8, own[token_ids], pos).astype(np.int64)
    sentence = np.arange(T) // 17
    return RunView(model="synthetic", run_id="paper-scale", tags=TAGS, moe_layers=list(range(L)), n_experts=N,
                   top_k=k, experts=experts.astype(np.int64), pos=pos, **form_keys(token_ids.astype(str)),
                   sentence=sentence, token_ids=token_ids)


def stages(v: RunView, R: int = 100, B: int = 200) -> dict:
    tr, te = split_indices(v.n_tokens, seed=S.stream(0, "split", 0))
    correct = form_baseline(v.token_ids, v.pos, v.n_pos, tr, te).correct
    return {
        "routing tables": lambda: report_tables(dataclasses.replace(v, _cache={})),
        f"Spec null + p/q (R={R})": lambda: C.spec_permutation_null(v.experts, v.pos, v.n_experts, v.n_pos,
                                                                    n_permutations=R, seed=0),
        f"context effect (R={R})": lambda: C.context_effect(v.experts, v.token_ids, v.pos, v.n_pos, v.n_experts,
                                                            n_permutations=R, seed=0),
        f"BCa global Spec (B={B})": lambda: C.bootstrap_spec(v.experts, v.pos, v.n_experts, v.n_pos, v.sentence,
                                                             v.tags, n_boot=B, seed=0),
        f"BCa accuracy (B={B})": lambda: C.bootstrap_accuracy(correct, v.sentence[te], n_boot=B, seed=0),
    }


def bench(name: str, v: RunView, rounds: int) -> None:
    fns = stages(v)
    times: dict[str, list[float]] = {k: [] for k in fns}
    for _ in range(rounds):
        for key, fn in fns.items():
            t0 = time.perf_counter()
            fn()
            times[key].append(time.perf_counter() - t0)
    med = {k: statistics.median(t) for k, t in times.items()}
    base = med["routing tables"]
    total = sum(t for k, t in med.items() if k != "routing tables")
    print(f"{name}: {v.n_tokens} tokens, {len(v.moe_layers)} MoE layers, top-{v.top_k} of {v.n_experts}, "
          f"{len(np.unique(v.sentence))} sentences")
    for key, t in med.items():
        print(f"  {key:28s} {t:8.3f} s  ({t / base:6.1f}x the routing tables)")
    print(f"  {'all controls statistics':28s} {total:8.3f} s  ({total / base:6.1f}x the routing tables)", flush=True)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--cache-dir", default=str(Path(tempfile.gettempdir()) / "moe-tui-bench-cache"))
    ap.add_argument("--skip-demo", action="store_true")
    ap.add_argument("--skip-paper", action="store_true")
    a = ap.parse_args()
    if not a.skip_demo:
        bench("demo run", demo_view(a.cache_dir), a.rounds)
    if not a.skip_paper:
        bench("paper-scale synthetic run", paper_view(), a.rounds)


if __name__ == "__main__":
    main()
