"""Benchmark: paper Tables 1-5 without probes (POS counts, Spec per layer / POS / global, KL and
its summary) on synthetic routes, moe_tui.core.analysis.metrics vs a straightforward pandas groupby implementation.

Default size: 1,000,000 tokens x 40 MoE layers x k=8 of 64 experts, 17 POS (seeded).
Run:  .venv/bin/python -m benchmarks.bench_metrics [--tokens N] [--skip-pandas]
"""

from __future__ import annotations

import argparse
import time

import numpy as np

from moe_tui.core.analysis import metrics as M

TAGS = ("ADJ", "ADP", "ADV", "AUX", "CCONJ", "DET", "INTJ", "NOUN", "NUM", "PART", "PRON", "PROPN", "PUNCT",
        "SCONJ", "SYM", "VERB", "X")


def synthetic(T: int, L: int, k: int, N: int, P: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Routes with a POS preference: each POS prefers a band of experts; k distinct-ish ids per token."""
    rng = np.random.default_rng(seed)
    pos = rng.choice(P, size=T, p=rng.dirichlet(np.ones(P))).astype(np.int16)
    experts = np.empty((T, L, k), dtype=np.uint8)
    for layer in range(L):
        shift = (pos.astype(np.int64) * 3 + layer)[:, None]
        experts[:, layer, :] = ((shift + rng.integers(0, N // 2, (T, k))) % N).astype(np.uint8)
    return experts, pos


def ours(experts, pos, N, P, tags):
    k = experts.shape[2]
    tokens, pct = M.pos_counts(pos, P)
    counts = M.assignment_counts(experts, pos, N, P)
    spec = M.spec_from_counts(counts, k, tokens)
    mean, mx, arg = M.spec_by_pos(spec)
    g = M.global_spec(mean, tags, tokens)
    kl, _ = M.kl_per_expert(counts, tokens)
    s = M.kl_summary(kl)
    return {"tokens": tokens, "spec": spec, "mean": mean, "max": mx, "global": g, "kl": kl, "mu": s}


def pandas_impl(experts, pos, N, P, tags):
    """Straightforward groupby, one MoE layer at a time (a single long frame of 320M rows does not fit)."""
    import pandas as pd

    T, L, k = experts.shape
    tokens = pd.Series(pos).value_counts().reindex(range(P), fill_value=0)
    q = tokens / tokens.sum()
    spec = np.full((L, P), np.nan)
    kl = np.full((L, N), np.nan)
    pos_rep = np.repeat(pos, k)
    for layer in range(L):
        df = pd.DataFrame({"expert": experts[:, layer, :].reshape(-1), "pos": pos_rep})
        c = df.groupby(["pos", "expert"]).size()
        for p, grp in c.groupby(level="pos"):
            spec[layer, p] = 100 * grp.nlargest(k).sum() / (k * tokens[p])
        ce = df.groupby(["expert", "pos"]).size().unstack(fill_value=0)
        pe = ce.div(ce.sum(axis=1), axis=0)
        ratio = pe / q.values[None, :]
        terms = (pe * np.log(ratio.where(pe > 0, 1.0))).where(pe > 0, 0.0)
        kl[layer, ce.index.values] = terms.sum(axis=1).values
    mean = np.nanmean(spec, axis=0)
    keep = [i for i, t in enumerate(tags) if t not in ("X", "SYM") and tokens[i] > 0]
    g = float(np.mean(mean[keep]))
    mu_mean = float(np.nanmean(np.nanmean(kl, axis=1)))
    return {"spec": spec, "global": g, "kl": kl, "mu_mean": mu_mean}


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--tokens", type=int, default=1_000_000)
    ap.add_argument("--layers", type=int, default=40)
    ap.add_argument("--k", type=int, default=8)
    ap.add_argument("--experts", type=int, default=64)
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--skip-pandas", action="store_true")
    a = ap.parse_args()
    P = len(TAGS)
    t0 = time.perf_counter()
    experts, pos = synthetic(a.tokens, a.layers, a.k, a.experts, P)
    print(f"data: {a.tokens:,} tokens x {a.layers} layers x k={a.k} of N={a.experts}, P={P} "
          f"({experts.size:,} assignments, generated in {time.perf_counter() - t0:.1f} s)")
    times = []
    for _ in range(a.repeat):
        t = time.perf_counter()
        res = ours(experts, pos, a.experts, P, TAGS)
        times.append(time.perf_counter() - t)
    best = min(times)
    print(f"moe_tui.core.analysis.metrics : best {best:.3f} s of {a.repeat} (all: {', '.join(f'{x:.3f}' for x in times)})")
    print(f"  global Spec {res['global']:.4f}  U {M.uniform_spec(a.k, a.experts)}  mu_mean {res['mu']['mu_mean']:.5f}")
    if not a.skip_pandas:
        t = time.perf_counter()
        ref = pandas_impl(experts, pos, a.experts, P, TAGS)
        tp = time.perf_counter() - t
        np.testing.assert_allclose(res["spec"], ref["spec"], rtol=1e-12)
        np.testing.assert_allclose(res["kl"], ref["kl"], rtol=1e-9, atol=1e-12)
        assert abs(res["global"] - ref["global"]) < 1e-9
        print(f"pandas groupby: {tp:.3f} s  (results identical)")
        print(f"ratio pandas / ours: {tp / best:.1f}x")
    print(f"target <= 2 s: {'met' if best <= 2.0 else 'NOT met'}")


if __name__ == "__main__":
    main()
