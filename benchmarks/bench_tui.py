"""Routing-grid latency: first frame and keystroke-to-frame on a 512-token × 64-MoE-layer sentence.

    .venv/bin/python -m benchmarks.bench_tui [--tokens 512 --layers 64 --experts 64 --k 8 --repeat 40]
    .venv/bin/python -m benchmarks.bench_tui --views [--run-tokens 500000]

``--views``: the word view, the expert card and the grid's diff overlay on a synthetic run of ``--run-tokens`` tokens
(benchmarks/synth.py; a second run of the same text with other routes is the diff's run B). The word view looks up
the run's most frequent word ("the", about 4% of the tokens); keys that recompute in a worker (layer, form/token,
another expert) are timed to their first frame (the "counting…" status) and to the last frame (the result drawn).

Targets: first frame ≤ 0.5 s, keystroke-to-frame ≤ 50 ms (p95). Headless Textual (the compositor renders every
frame and the bench turns each update into terminal bytes; only the write itself is skipped).

Keystroke → frame is timed from handing the key event to the driver (as a terminal would) to the first frame
produced after the key's action ran; the "side panel settled" column is the last frame the key causes (the side
panel follows the cursor 40 ms after it rests, by design). Between keys the bench waits, untimed, until no frame has
been produced for 150 ms. (Timing ``pilot.press()`` + ``pilot.pause()`` instead would add at least 60 ms of Pilot's
own idle-detection sleeps to every key.) First frame: from ``push_screen`` to the first frame that shows the grid.
The box is often shared: compare numbers taken under similar load averages (printed).
"""

from __future__ import annotations

import argparse
import asyncio
import os
import shutil
import statistics
import tempfile
import time
from pathlib import Path

import numpy as np

from tests.runs import UPOS, model_facts, write_run


def big_run(root: Path, tokens: int, layers: int, experts: int, k: int, sentences: int = 4, seed: int = 0):
    """A run of ``sentences`` sentences of ``tokens`` tokens, written with the run store's writer under ``root``."""
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
    arrays = {"token_ids": np.arange(T, dtype=np.int32), "sentence_offsets": offs, "word_index": wi, "pos": pos,
              "special": np.zeros(T, bool), "crossing": np.zeros(T, bool), "offsets": np.zeros((T, 2), np.int32),
              "experts": ex, "weights": w}
    return write_run(root, arrays, sents, tags=UPOS, moe_layers=list(range(layers)), num_experts=experts, top_k=k,
                     model="bench", corpus="bench")


class FrameClock:
    """Timestamps of the frames the app produces (headless: the compositor still renders every frame; we also turn
    each update into terminal bytes, which is the work a real terminal write adds before I/O)."""

    def __init__(self, app) -> None:
        self.app = app
        self.frames: list[float] = []
        self.actions_done: list[float] = []
        orig_display = app._display
        orig_dispatch = app._dispatch_action

        def _display(screen, renderable):
            if renderable is not None:
                if hasattr(renderable, "render_segments"):
                    renderable.render_segments(app.console)
                self.frames.append(time.perf_counter())
            return orig_display(screen, renderable)

        async def _dispatch_action(*a, **kw):
            try:
                return await orig_dispatch(*a, **kw)
            finally:
                self.actions_done.append(time.perf_counter())

        app._display = _display
        app._dispatch_action = _dispatch_action

    async def settle(self, quiet_s: float = 0.15, max_s: float = 5.0) -> None:
        """Wait (outside any measurement) until no frame has been produced for ``quiet_s``."""
        start = time.perf_counter()
        while time.perf_counter() - start < max_s:
            n = len(self.frames)
            await asyncio.sleep(quiet_s)
            if len(self.frames) == n:
                return

    async def press(self, key: str) -> tuple[float, float]:
        """Send one key as a terminal would; returns (key → first frame after its action ran, key → last frame),
        in ms. The second includes the side panel, which follows the cursor after a 40 ms debounce by design."""
        from textual import events

        await self.settle(0.05)
        self.frames.clear()
        self.actions_done.clear()
        char = key if len(key) == 1 else None
        ev = events.Key(key, char)
        ev.set_sender(self.app)
        t0 = self.t_key = time.perf_counter()
        self.app._driver.send_message(ev)
        await self.settle()
        done = self.actions_done[0] if self.actions_done else t0
        after = [f for f in self.frames if f >= done]
        if not after:
            return float("nan"), float("nan")
        return (after[0] - t0) * 1000, (self.frames[-1] - t0) * 1000


async def bench(args, root: Path) -> dict:
    from moe_tui.cache.store import RunStore
    from moe_tui.tui.app import MoeTuiApp
    from moe_tui.tui.screens.grid import GridScreen
    from moe_tui.tui.settings import Settings
    from moe_tui.tui.widgets.routing_grid import RoutingGrid

    run = big_run(root, args.tokens, args.layers, args.experts, args.k, sentences=args.repeat + 2)
    app = MoeTuiApp(settings=Settings(), inspect_fn=model_facts, run_store=lambda: RunStore(root),
                    scan_hf_cache=False)
    res: dict = {}
    async with app.run_test(size=(args.width, args.height)) as pilot:
        clock = FrameClock(app)
        await pilot.pause()
        await clock.settle()
        drawn: list[float] = []
        orig_render_line = RoutingGrid.render_line

        def render_line(self, y):
            if self.data is not None and not drawn:
                drawn.append(time.perf_counter())
            return orig_render_line(self, y)

        RoutingGrid.render_line = render_line
        try:
            clock.frames.clear()
            t0 = time.perf_counter()
            app.push_screen(GridScreen(run))
            await clock.settle(0.3)
        finally:
            RoutingGrid.render_line = orig_render_line
        if not drawn:
            raise SystemExit("the grid was never drawn")
        res["first_frame_s"] = (min(f for f in clock.frames if f >= drawn[0]) - t0)
        res["settled_s"] = clock.frames[-1] - t0
        grid = app.screen.query_one(RoutingGrid)
        plan = {
            "move (l/j/h/k)": ["l", "j", "l", "j", "h", "k"],
            "scroll right (l × many)": ["l"] * 12,
            "jump (G/g)": ["G", "g"],
            "page (PgDn/PgUp)": ["pagedown", "pageup"],
            "highlight (x)": ["x"],
            "toggle all-k (t)": ["t"],
            "next sentence (n: a new one each time)": ["n"],
            "previous sentence (p: seen before)": ["p"],
        }
        for name, keys in plan.items():
            lat, settled = [], []
            for _ in range(max(1, args.repeat // len(keys))):
                for key in keys:
                    a, b = await clock.press(key)
                    lat.append(a)
                    settled.append(b)
            res[name] = (lat, settled)
        res["grid"] = f"{grid.n_tokens} tokens × {grid.n_layers} layers, N={args.experts}, k={args.k}"
    return res


async def bench_views(args) -> dict:
    """Keystroke → frame in the word view, the expert card and the grid with a diff overlay, on a large run."""
    from benchmarks.synth import synthetic_run
    from moe_tui.cache.store import RunStore
    from moe_tui.tui.app import MoeTuiApp
    from moe_tui.tui.screens.expert import ExpertScreen
    from moe_tui.tui.screens.grid import GridScreen
    from moe_tui.tui.screens.word import WordScreen
    from moe_tui.tui.settings import Settings

    root = Path(args.cache or tempfile.mkdtemp(prefix="moe-tui-bench-views-"))
    store = RunStore(root)
    run_a = store.open(synthetic_run(root, args.run_tokens).name)
    run_b = store.open(synthetic_run(root, args.run_tokens, route_seed=1).name)
    app = MoeTuiApp(settings=Settings(), inspect_fn=model_facts, run_store=lambda: store, scan_hf_cache=False,
                    open_run=run_a, diff_run=run_b)
    res: dict = {}

    async def until(cond, max_s: float = 60.0) -> None:
        t0 = time.perf_counter()
        while not cond():
            if time.perf_counter() - t0 > max_s:
                raise SystemExit("the view never finished computing")
            await asyncio.sleep(0.01)

    async def measure(clock, plan: dict, repeat: int, ready=None) -> None:
        for name, keys in plan.items():
            lat, settled = [], []
            for _ in range(max(1, repeat // len(keys))):
                for key in keys:
                    a, b = await clock.press(key)
                    if ready is not None:
                        await until(ready)
                        await clock.settle()
                        b = (clock.frames[-1] - clock.t_key) * 1000 if clock.frames else b
                    lat.append(a)
                    settled.append(b)
            res[name] = (lat, settled)

    async with app.run_test(size=(args.width, args.height)):
        clock = FrameClock(app)
        grid_screen = app.screen
        assert isinstance(grid_screen, GridScreen)
        await until(lambda: grid_screen.diff_table is not None)
        await clock.settle()
        # the same keys without the overlay first (the baseline), then with it
        grid_screen.set_diff(None)
        await clock.settle()
        await measure(clock, {"grid, no overlay: move (l/j/h/k)": ["l", "j", "l", "k", "h"],
                              "grid, no overlay: next sentence (n)": ["n"]}, args.repeat)
        grid_screen.set_diff(run_b)
        await until(lambda: grid_screen.diff_table is not None)
        await clock.settle()
        await measure(clock, {"diff grid: move (l/j/h/k)": ["l", "j", "l", "k", "h"],
                              "diff grid: next sentence (n)": ["n"]}, args.repeat)
        # word view on the most frequent word
        clock.frames.clear()
        t0 = time.perf_counter()
        app.show_word(run_a, "the", layer_idx=0)
        await until(lambda: isinstance(app.screen, WordScreen) and app.screen.conc is not None)
        await clock.settle()
        res["word view opened, 'the' looked up (s)"] = time.perf_counter() - t0
        word = app.screen
        res["occurrences"] = len(word.conc)
        await measure(clock, {"word: move (j/k)": ["j", "j", "k"], "word: page (PgDn/PgUp)": ["pagedown", "pageup"],
                              "word: sort (o, 5 orders)": ["o"] * 5}, args.repeat)
        await measure(clock, {"word: next layer (], worker)": ["right_square_bracket"]}, max(4, args.repeat // 4),
                      ready=lambda: not word.computing)
        await clock.press("X")
        await until(lambda: isinstance(app.screen, ExpertScreen) and app.screen.card is not None)
        card = app.screen
        await clock.settle()
        await measure(clock, {"card: scroll (down/up)": ["down", "down", "up"]}, args.repeat)
        await measure(clock, {"card: next expert (], worker)": ["right_square_bracket"],
                              "card: next layer (>, worker)": ["greater_than_sign"]}, max(4, args.repeat // 4),
                      ready=lambda: card.card is not None and card.card.expert == card.expert
                      and card.card.layer_idx == card.layer_idx)
        res["grid"] = f"{run_a.n_tokens:,} tokens, {len(run_a.moe_layers)} layers, N={run_a.num_experts}, k={run_a.top_k}"
    if not args.cache:
        shutil.rmtree(root, ignore_errors=True)
    return res


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--views", action="store_true", help="word view, expert card and diff overlay on a large run")
    ap.add_argument("--run-tokens", type=int, default=500_000)
    ap.add_argument("--cache", help="keep the synthetic runs in this folder (reused when present)")
    ap.add_argument("--tokens", type=int, default=512)
    ap.add_argument("--layers", type=int, default=64)
    ap.add_argument("--experts", type=int, default=64)
    ap.add_argument("--k", type=int, default=8)
    ap.add_argument("--repeat", type=int, default=40)
    ap.add_argument("--width", type=int, default=160)
    ap.add_argument("--height", type=int, default=50)
    args = ap.parse_args()
    if args.views:
        res = asyncio.run(bench_views(args))
    else:
        with tempfile.TemporaryDirectory(prefix="moe_tui_bench_") as root:
            res = asyncio.run(bench(args, Path(root)))
    load = os.getloadavg() if hasattr(os, "getloadavg") else (float("nan"),) * 3
    print(f"{'run' if args.views else 'grid'}: {res.pop('grid')}  terminal {args.width}×{args.height}  "
          f"load average {load[0]:.2f} {load[1]:.2f} {load[2]:.2f} on {os.cpu_count()} CPUs")
    if args.views:
        print(f"word view on 'the' ({res.pop('occurrences'):,} occurrences): opened and looked up in "
              f"{res.pop(next(k for k in res if k.startswith('word view opened'))) * 1000:.0f} ms")
    else:
        ff = res.pop("first_frame_s")
        res.pop("settled_s")
        print(f"first frame: {ff * 1000:.0f} ms  (target ≤ 500 ms) {'OK' if ff <= 0.5 else 'SLOW'}")
    worst = 0.0

    def pct(xs, q):
        xs = sorted(xs)
        return xs[min(len(xs) - 1, int(round(q * (len(xs) - 1))))]

    print(f"{'keystroke → frame':<40} {'n':>4} {'p50 ms':>8} {'p95 ms':>8} {'max ms':>8}   "
          f"{'side panel settled p50/p95 (incl. 40 ms debounce)'}")
    for name, (lat, settled) in res.items():
        p95 = pct(lat, 0.95)
        worst = max(worst, p95)
        print(f"{name:<40} {len(lat):>4} {statistics.median(lat):>8.1f} {p95:>8.1f} {max(lat):>8.1f}   "
              f"{statistics.median(settled):>8.1f} {pct(settled, 0.95):>8.1f}")
    print(f"worst p95: {worst:.1f} ms (target ≤ 50 ms) {'OK' if worst <= 50 else 'SLOW'}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
