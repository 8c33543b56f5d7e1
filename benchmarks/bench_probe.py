"""Benchmark: MLP POS probe (paper Table 1 MLP columns) at the paper's corpus size.

116,000 synthetic tokens, L=32 MoE layers, k=2 of N=8 experts, 17 POS, routes correlated with POS
(each POS prefers a pair of experts per layer; 60% of (token, layer) routes are random).
Prints fit + predict time and accuracy for top_k and top_1 (and the word-form baseline).
Run:  .venv/bin/python -m benchmarks.bench_probe [--tokens N] [--max-iter 500] [--onehot]
"""

from __future__ import annotations

import argparse
import time

import numpy as np

from moe_tui.core import probe as Pr
from moe_tui.core.report import PROBE_VARIANTS


def synthetic(T: int, L: int, k: int, N: int, P: int, seed: int = 0):
    rng = np.random.default_rng(seed)
    pos = rng.choice(P, size=T, p=rng.dirichlet(np.ones(P) * 2))
    pref = rng.integers(0, N, (P, L))  # preferred expert per (POS, layer)
    e0 = np.where(rng.random((T, L)) < 0.4, pref[pos], rng.integers(0, N, (T, L)))
    e1 = (e0 + rng.integers(1, N, (T, L))) % N
    experts = np.stack([e0, e1][:k], axis=2).astype(np.uint8)
    forms = rng.integers(0, 5000, T)  # word forms: random ids (uninformative baseline)
    return experts, pos, forms


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--tokens", type=int, default=116_000)
    ap.add_argument("--max-iter", type=int, default=500)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--onehot", action="store_true", help="also time the one-hot top_k variant")
    a = ap.parse_args()
    L, k, N, P = 32, 2, 8, 17
    experts, pos, forms = synthetic(a.tokens, L, k, N, P, a.seed)
    split = Pr.split_indices(a.tokens, seed=a.seed)
    print(f"data: {a.tokens:,} tokens, L={L}, k={k}, N={N}, P={P}; split {len(split[0]):,}/{len(split[1]):,}; "
          f"MLPClassifier defaults, max_iter={a.max_iter}")
    t = time.perf_counter()
    b = Pr.form_baseline(forms, pos, P, *split)
    print(f"baseline     : acc {b.accuracy:.4f}  {time.perf_counter() - t:.2f} s")
    # the report's probes; the one-hot ones take long on CPU, so only with --onehot
    variants = [v for v in PROBE_VARIANTS if a.onehot or not v.startswith("onehot")]
    for v in variants:
        t = time.perf_counter()
        r = Pr.run_probe(experts, pos, P, variant=v, split=split, seed=a.seed, max_iter=a.max_iter, n_experts=N)
        print(f"{v:13s}: acc {r.accuracy:.4f}  {time.perf_counter() - t:.1f} s  ({r.n_iter} iterations)")


if __name__ == "__main__":
    main()
