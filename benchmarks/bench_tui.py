"""Routing-grid latency: first frame and keystroke-to-frame on a 512-token × 64-MoE-layer sentence.

    .venv/bin/python benchmarks/bench_tui.py [--tokens 512 --layers 64 --experts 64 --k 8 --repeat 40]

Targets: first frame ≤ 0.5 s, keystroke-to-frame ≤ 50 ms (p95). Headless Textual (the compositor renders every
frame; only the terminal write is skipped).
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from tests.tui_fakes import UPOS, FakeRun, FakeStore, fake_inspect  # noqa: E402


def big_run(tokens: int, layers: int, experts: int, k: int, sentences: int = 4, seed: int = 0) -> FakeRun:
    rng = np.random.default_rng(seed)
    T = tokens * sentences
    pos = rng.integers(0, len(UPOS), T).astype(np.int16)
    ex = np.empty((T, layers, k), dtype=np.uint8 if experts <= 255 else np.uint16)
    for t in range(k):
        ex[..., t] = (pos[:, None] * 7 + np.arange(layers)[None, :] * 3 + t * 11 + rng.integers(0, 3, (T, layers))) % experts
    w = np.sort(rng.random((T, layers, k)), axis=-1)[..., ::-1]
    w = (w / w.sum(-1, keepdims=True)).astype(np.float16)
    offs = np.arange(0, T + 1, tokens, dtype=np.int64)
    sents = []
    for s in range(sentences):
        words = [f"w{s}_{i}" for i in range(tokens)]
        text = " ".join(words)
        meta, c = [], 0
        for i, word in enumerate(words):
            meta.append([word, UPOS[pos[s * tokens + i]], c, c + len(word)])
            c += len(word) + 1
        sents.append({"id": f"s{s}", "text": text, "words": meta, "tokens": ["Ġ" + x for x in words]})
    wi = np.tile(np.arange(tokens, dtype=np.int32), sentences)
    return FakeRun(path=Path("/bench"), manifest={"model": {"name_or_path": "bench"}, "corpus": {"path": "bench"},
                                                   "created": "-"},
                   run_id="bench000000000000", token_ids=np.arange(T, dtype=np.int32), sentence_offsets=offs,
                   word_index=wi, pos=pos, special=np.zeros(T, bool), crossing=np.zeros(T, bool),
                   offsets=np.zeros((T, 2), np.int32), experts=ex, weights=w, sentences=sents, tags=UPOS,
                   moe_layers=list(range(layers)), num_experts=experts, top_k=k)


async def bench(args) -> dict:
    from tui.app import MoeTuiApp
    from tui.screens.grid import GridScreen
    from tui.settings import Settings
    from tui.widgets.routing_grid import RoutingGrid

    run = big_run(args.tokens, args.layers, args.experts, args.k)
    app = MoeTuiApp(settings=Settings(), inspect_fn=fake_inspect, run_store=lambda: FakeStore({run.run_id: run}),
                    scan_hf_cache=False)
    res: dict = {}
    async with app.run_test(size=(args.width, args.height)) as pilot:
        await pilot.pause()
        t0 = time.perf_counter()
        app.push_screen(GridScreen(run))
        await pilot.pause()
        while not isinstance(app.screen, GridScreen) or app.screen.query_one(RoutingGrid).data is None:
            await pilot.pause(0.001)
        await pilot.pause()
        res["first_frame_s"] = time.perf_counter() - t0
        grid = app.screen.query_one(RoutingGrid)
        plan = {
            "move (l/j/h/k)": ["l", "j", "l", "j", "h", "k"],
            "scroll right (l × many)": ["l"] * 12,
            "jump (G/g)": ["G", "g"],
            "page (PgDn/PgUp)": ["pagedown", "pageup"],
            "highlight (x)": ["x"],
            "toggle all-k (t)": ["t"],
            "next sentence (n/p)": ["n", "p"],
        }
        for name, keys in plan.items():
            lat = []
            for _ in range(max(1, args.repeat // len(keys))):
                for key in keys:
                    t = time.perf_counter()
                    await pilot.press(key)
                    await pilot.pause()
                    lat.append((time.perf_counter() - t) * 1000)
            res[name] = lat
        res["grid"] = f"{grid.n_tokens} tokens × {grid.n_layers} layers, N={args.experts}, k={args.k}"
    return res


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--tokens", type=int, default=512)
    ap.add_argument("--layers", type=int, default=64)
    ap.add_argument("--experts", type=int, default=64)
    ap.add_argument("--k", type=int, default=8)
    ap.add_argument("--repeat", type=int, default=40)
    ap.add_argument("--width", type=int, default=160)
    ap.add_argument("--height", type=int, default=50)
    args = ap.parse_args()
    res = asyncio.run(bench(args))
    print(f"grid: {res.pop('grid')}  terminal {args.width}×{args.height}")
    ff = res.pop("first_frame_s")
    print(f"first frame: {ff * 1000:.0f} ms  (target ≤ 500 ms) {'OK' if ff <= 0.5 else 'SLOW'}")
    worst = 0.0
    print(f"{'keystroke → frame':<26} {'n':>4} {'p50 ms':>8} {'p95 ms':>8} {'max ms':>8}")
    for name, lat in res.items():
        lat = sorted(lat)
        p95 = lat[min(len(lat) - 1, int(round(0.95 * (len(lat) - 1))))]
        worst = max(worst, p95)
        print(f"{name:<26} {len(lat):>4} {statistics.median(lat):>8.1f} {p95:>8.1f} {lat[-1]:>8.1f}")
    print(f"worst p95: {worst:.1f} ms (target ≤ 50 ms) {'OK' if worst <= 50 else 'SLOW'}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
