"""Benchmark: the probes of the paper at its corpus size, torch engine vs scikit-learn, in one process.

Data: 116,000 synthetic tokens, L = 32 MoE layers, k = 2 of N = 8 experts, 17 POS, routes correlated with
POS (each POS prefers one expert per layer; 60% of (token, layer) routes are random). Probes: Table 1's
``top_k`` and ``top_1`` plus the full Fig. 3 ablation (the first / last n = 1..31 layers removed): 64 MLPs
with MLPClassifier's defaults and ``max_iter`` (500), on one 2/3-1/3 split.

The torch engine trains all 64 (:func:`moe_tui.core.analysis.probe_engine.fit_probes`). scikit-learn trains one
MLPClassifier per probe; at about a minute per probe on a small CPU, ``--sklearn-probes M`` times M of them
spread over the widths (top_k, top_1 and evenly spaced cuts) and scales their mean time per input column
to the 64 probes (printed as an estimate); ``--sklearn-probes 64`` times them all. Both engines get the same
number of CPU threads (``--threads``, default: all cores). ``--clock process`` times CPU seconds of this
process (``time.process_time``) instead of wall seconds: steadier on a shared machine. Accuracy agreement is
printed for the probes both trained.

Run:  .venv/bin/python -m benchmarks.bench_probe [--tokens 116000] [--max-iter 500] [--sklearn-probes 6]
      [--threads N] [--device auto|cpu|cuda] [--clock wall|process]
"""

from __future__ import annotations

import argparse
import os
import time

import numpy as np

from moe_tui.core.analysis import probe as Pr


def synthetic(T: int, L: int, k: int, N: int, P: int, seed: int = 0):
    rng = np.random.default_rng(seed)
    pos = rng.choice(P, size=T, p=rng.dirichlet(np.ones(P) * 2))
    pref = rng.integers(0, N, (P, L))  # preferred expert per (POS, layer)
    e0 = np.where(rng.random((T, L)) < 0.4, pref[pos], rng.integers(0, N, (T, L)))
    e1 = (e0 + rng.integers(1, N, (T, L))) % N
    experts = np.stack([e0, e1][:k], axis=2).astype(np.uint8)
    forms = rng.integers(0, 5000, T)  # word forms: random ids (uninformative baseline)
    return experts, pos, forms


def paper_specs(L: int, k: int, init_seed: int):
    from moe_tui.core.analysis.probe_engine import ProbeSpec

    specs = [ProbeSpec("top_k", Pr.variant_columns(L, k, "top_k"), init_seed=init_seed),
             ProbeSpec("top_1", Pr.variant_columns(L, k, "top_1"), init_seed=init_seed)]
    for side in ("first", "last"):
        for n in range(1, L):
            specs.append(ProbeSpec(f"ablation:{side}:{n}", Pr.variant_columns(L, k, "top_k", Pr.cut_layers(L, side, n)),
                                   init_seed=init_seed))
    return specs


def sample_for_sklearn(specs, m: int) -> list[int]:
    """top_k, top_1, then cuts spread evenly over the widths (both sides alternately)."""
    if m >= len(specs):
        return list(range(len(specs)))
    cuts = list(range(2, len(specs)))
    extra = max(0, m - 2)
    picks = [cuts[int(round(i * (len(cuts) - 1) / max(1, extra - 1)))] for i in range(extra)] if extra else []
    return [0, 1][:m] + sorted(set(picks))


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--tokens", type=int, default=116_000)
    ap.add_argument("--layers", type=int, default=32)
    ap.add_argument("--max-iter", type=int, default=500)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--sklearn-probes", type=int, default=6, help="how many probes scikit-learn trains (64: all)")
    ap.add_argument("--threads", type=int, default=os.cpu_count() or 1, help="CPU threads for both engines")
    ap.add_argument("--device", default="auto", help="torch engine device")
    ap.add_argument("--clock", choices=("wall", "process"), default="wall",
                    help="wall: elapsed seconds; process: CPU seconds of this process")
    a = ap.parse_args()
    clock = time.process_time if a.clock == "process" else time.perf_counter
    import torch
    from threadpoolctl import threadpool_limits

    from moe_tui.core.analysis.probe_engine import MLPConfig, fit_probes

    L, k, N, P = a.layers, 2, 8, 17
    experts, pos, forms = synthetic(a.tokens, L, k, N, P, a.seed)
    tr, te = Pr.split_indices(a.tokens, seed=a.seed)
    ids = experts.reshape(a.tokens, L * k)
    specs = paper_specs(L, k, a.seed)
    cfg = MLPConfig(max_iter=a.max_iter)
    torch.set_num_threads(a.threads)
    print(f"data: {a.tokens:,} tokens, L={L}, k={k}, N={N}, P={P}; split {len(tr):,}/{len(te):,}; "
          f"{len(specs)} probes (top_k, top_1, {len(specs) - 2} ablation cuts); MLPClassifier defaults, "
          f"max_iter={a.max_iter}; {a.threads} CPU thread(s) for both engines; {a.clock} clock; load average "
          f"{os.getloadavg()[0]:.1f}", flush=True)
    with threadpool_limits(limits=a.threads):
        t = clock()
        fits = fit_probes(ids, [pos], specs, tr, te, n_categories=N, config=cfg, shuffle_seed=a.seed + 1,
                          device=a.device, threads=None if a.threads == (os.cpu_count() or 1) else a.threads)
        t_torch = clock() - t
        acc_t = {f.name: float(np.mean(f.y_pred == pos[te])) for f in fits}
        print(f"torch ({fits[0].device}): {len(specs)} probes in {t_torch:.1f} s "
              f"({sum(f.converged for f in fits)} converged, epochs {min(f.n_iter for f in fits)}-"
              f"{max(f.n_iter for f in fits)})", flush=True)
        pick = sample_for_sklearn(specs, a.sklearn_probes)
        times, acc_s = {}, {}
        for i in pick:
            t = clock()
            f = fit_probes(ids, [pos], [specs[i]], tr, te, n_categories=N, config=cfg, engine="sklearn")[0]
            times[i] = clock() - t
            acc_s[specs[i].name] = float(np.mean(f.y_pred == pos[te]))
            print(f"  sklearn {specs[i].name:18s} {len(specs[i].columns):3d} inputs: {times[i]:7.1f} s, "
                  f"{f.n_iter} epochs, acc {acc_s[specs[i].name]:.4f} (torch {acc_t[specs[i].name]:.4f}, "
                  f"{fits[i].n_iter} epochs)", flush=True)
    if len(pick) == len(specs):
        t_sk, how = sum(times.values()), "measured"
    else:  # time per probe grows with its inputs: scale by a least-squares line time = a + b * inputs
        w = np.array([len(specs[i].columns) for i in pick], dtype=float)
        y = np.array([times[i] for i in pick])
        A = np.stack([np.ones_like(w), w], axis=1)
        coef = np.linalg.lstsq(A, y, rcond=None)[0]
        t_sk = float(sum(coef[0] + coef[1] * len(s.columns) for s in specs))
        how = f"estimated from {len(pick)} timed probes (time = {coef[0]:.1f} s + {coef[1]:.2f} s per input)"
    diffs = [abs(acc_t[n] - acc_s[n]) for n in acc_s]
    print(f"sklearn: {len(specs)} probes in {t_sk:.1f} s ({how})")
    print(f"ratio sklearn / torch: {t_sk / t_torch:.1f}x; accuracy |torch - sklearn| over {len(diffs)} probes: "
          f"max {100 * max(diffs):.2f} points, mean {100 * float(np.mean(diffs)):.2f}")


if __name__ == "__main__":
    main()
