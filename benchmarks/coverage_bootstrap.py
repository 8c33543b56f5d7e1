"""Coverage of the report's bootstrap intervals where the truth is known.

Draws samples again and again from populations of routes whose global Spec is known exactly
(:mod:`tests.sim_spec`: two favourite experts per (layer, POS), weights ``strength`` against 1 for the
others, a per-sentence state), computes the report's sentence-bootstrap interval of the global Spec
(:func:`moe_tui.core.analysis.controls.bootstrap_spec`, ``B`` resamples) and counts how often the BCa interval and the
percentile interval hold the truth, and how often they hold the point estimate. Likewise for an accuracy
(per-sentence accuracy ~ Beta(6, 3), truth 2/3; :func:`moe_tui.core.analysis.controls.bootstrap_accuracy`).

Usage: ``.venv/bin/python -m benchmarks.coverage_bootstrap [--draws 1000] [--boot 200] [--regime NAME ...]``.
Not a speed benchmark: it prints coverage rates (nominal 0.95) and their binomial standard errors.
"""

from __future__ import annotations

import argparse
import math
import sys
import time

import numpy as np

from moe_tui.core.analysis import controls as C
from tests import sim_spec as Z

TAGS3 = ("NOUN", "VERB", "ADJ")

#: name -> (experts N, strength per sentence state, sentences); 2 MoE layers, 3 POS, top-2, 10 tokens a sentence
REGIMES: dict[str, tuple[int, tuple[float, float], int]] = {
    "weak-50": (8, (1.5, 2.0), 50),
    "weak-200": (8, (1.5, 2.0), 200),
    "weak-1000": (8, (1.5, 2.0), 1000),
    "near-tie-200": (8, (1.1, 1.2), 200),
    "near-tie-1000": (8, (1.1, 1.2), 1000),
    "64-experts-200": (64, (1.5, 2.0), 200),
    "64-experts-1000": (64, (1.5, 2.0), 1000),
}


def spec_coverage(n_experts: int, strength: tuple[float, float], n_sentences: int, *, draws: int, n_boot: int,
                  seed: int = 1, level: float = 0.95) -> dict[str, float]:
    """Coverage of the global Spec intervals over ``draws`` samples of one population."""
    w = Z.weights(Z.favourites(2, len(TAGS3), n_experts), n_experts, strength)
    truth = Z.true_global_spec(w)
    rng = np.random.default_rng(seed)
    hits = {"bca": 0, "pct": 0, "bca_point": 0, "pct_point": 0, "bca_above": 0}
    points, widths = [], []
    for i in range(draws):
        experts, pos, sentence = Z.draw(rng, w, n_sentences)
        bs = C.bootstrap_spec(experts, pos, n_experts, len(TAGS3), sentence, TAGS3, n_boot=n_boot, seed=i,
                              level=level)
        hits["bca"] += bs["low"] <= truth <= bs["high"]
        hits["pct"] += bs["percentile_low"] <= truth <= bs["percentile_high"]
        hits["bca_point"] += bs["low"] <= bs["point"] <= bs["high"]
        hits["pct_point"] += bs["percentile_low"] <= bs["point"] <= bs["percentile_high"]
        hits["bca_above"] += truth < bs["low"]
        points.append(bs["point"])
        widths.append(bs["high"] - bs["low"])
    out = {k: v / draws for k, v in hits.items()}
    out.update(truth=truth, bias=float(np.mean(points)) - truth, sd=float(np.std(points)),
               width=float(np.mean(widths)))
    return out


def accuracy_coverage(n_sentences: int, *, draws: int, n_boot: int, seed: int = 2, level: float = 0.95) -> dict:
    rng = np.random.default_rng(seed)
    bca = pct = 0
    for i in range(draws):
        correct, sentence, truth = Z.draw_correct(rng, n_sentences)
        ba = C.bootstrap_accuracy(correct, sentence, n_boot=n_boot, seed=i, level=level)
        bca += ba["low"] <= truth <= ba["high"]
        pct += ba["percentile_low"] <= truth <= ba["percentile_high"]
    return {"bca": bca / draws, "pct": pct / draws}


def main(argv: list[str]) -> int:
    ap = argparse.ArgumentParser(prog="python -m benchmarks.coverage_bootstrap")
    ap.add_argument("--draws", type=int, default=1000)
    ap.add_argument("--boot", type=int, default=200, help="bootstrap resamples (the report's default: 200)")
    ap.add_argument("--regime", action="append", choices=list(REGIMES), help="default: all")
    args = ap.parse_args(argv)
    se = math.sqrt(0.95 * 0.05 / args.draws)
    print(f"{args.draws} draws per regime, B = {args.boot}, nominal 0.95 (binomial s.e. {se:.3f}); "
          "2 MoE layers, 3 POS, top-2, 10 tokens a sentence")
    print("| regime | N | favourite weights | sentences | true Spec | bias of Spec | sd of Spec | BCa covers | "
          "percentile covers | truth below BCa | BCa holds the point | percentile holds the point |")
    print("|---|---|---|---|---|---|---|---|---|---|---|---|")
    for name in args.regime or list(REGIMES):
        n, strength, s = REGIMES[name]
        t0 = time.perf_counter()
        r = spec_coverage(n, strength, s, draws=args.draws, n_boot=args.boot)
        print(f"| {name} | {n} | {strength[0]} / {strength[1]} | {s} | {r['truth']:.2f} | {r['bias']:+.3f} | "
              f"{r['sd']:.3f} | {r['bca']:.3f} | {r['pct']:.3f} | {r['bca_above']:.3f} | {r['bca_point']:.3f} | "
              f"{r['pct_point']:.3f} |  <!-- {time.perf_counter() - t0:.0f} s -->", flush=True)
    for s in (50, 200):
        r = accuracy_coverage(s, draws=args.draws, n_boot=args.boot)
        print(f"accuracy, {s} sentences: BCa covers {r['bca']:.3f}, percentile {r['pct']:.3f}", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
