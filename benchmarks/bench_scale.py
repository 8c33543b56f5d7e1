"""Scale: runs of 0.5M to 4M tokens opened, analysed, browsed in the TUI, reported on and exported.

    .venv/bin/python -m benchmarks.bench_scale [--sizes 0.5 1 2 4] [--dir DIR] [--layers 4 --k 2 --experts 8]

Runs are synthetic (benchmarks/synth.py: realistic sentence lengths, ~30k Zipf-distributed word forms, POS-dependent
routes; the demo model's shape by default) and written through the run writer into DIR (kept between invocations).
Per size it measures:

- ``open``: ``moe-tui open RUN`` in a fresh process (Textual's headless driver) until the first frame that shows the
  grid, from the parent's clock (interpreter start, imports and run open included; target ≤ 1 s);
- ``panes``: in one app process, the key that opens the specialisation (``s``), KL (``K``) and comparison (``C``)
  panes until the first frame after its tables are on screen (the first pane builds the run's analysis view;
  target ≤ 1 s each);
- ``keys``: keystroke to frame on the grid (moves, next/previous sentence, jump, all-k, highlight) and in the
  search box (each typed key; matches are found in a worker and shown as they come), p95 (target ≤ 50 ms), plus
  the time until a search has all its matches;
- ``report``: ``moe-tui report RUN`` (tables only) in a fresh process, wall time and peak RSS, against the size of
  the run's arrays (targets ≤ 1.5 s and ≤ arrays + 500 MB);
- ``export``: ``moe-tui export-routes`` to .parquet and .csv in fresh processes, rows/s and peak RSS (targets
  ≥ 1M and ≥ 500k rows/s, ≤ 1 GB).

At the smallest size it also times the row-by-row exporter (``export_routes_rowwise``, what moe-tui wrote before) in
this process, so the streaming exporters' gains are ratios measured side by side, and the Python API's
``Run.routes()`` DataFrame built from array chunks against the same frame built from the row-by-row records. The box is shared: the load
average is printed; compare numbers taken under similar load.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def _pct(xs: list[float], q: float) -> float:
    xs = sorted(xs)
    return xs[min(len(xs) - 1, int(round(q * (len(xs) - 1))))] if xs else float("nan")


def _child(argv: list[str], env: dict | None = None) -> tuple[float, int, int, str]:
    """Run a child process; return (wall s, exit code, peak RSS in MB, stderr).

    The peak RSS is GNU time's (``/usr/bin/time -f %M``): rusage from ``os.wait4`` would count the pages of this
    (large) process that the child shares between fork and exec."""
    timer = ["/usr/bin/time", "-f", "MAXRSS_KB %M"] if os.path.exists("/usr/bin/time") else []
    t0 = time.perf_counter()
    proc = subprocess.run(timer + argv, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, cwd=str(REPO),
                          env={**os.environ, **(env or {})})
    wall = time.perf_counter() - t0
    err = proc.stderr.decode(errors="replace")
    rss = [int(ln.split()[1]) // 1024 for ln in err.splitlines() if ln.startswith("MAXRSS_KB ")]
    return wall, proc.returncode, rss[-1] if rss else -1, err


def _cli(*args: str) -> list[str]:
    return [sys.executable, "-m", "moe_tui.cli", *args]


# ------------------------------------------------------------------------------------------- open (child process)
def child_open(run: str, cache: str) -> None:
    """``moe-tui open RUN`` with a hook: at the first frame that shows the grid, print the time and exit."""
    from textual.app import App

    from moe_tui.cli import main
    from moe_tui.tui.widgets.routing_grid import RoutingGrid

    drawn: list[float] = []
    orig_render_line = RoutingGrid.render_line
    orig_display = App._display

    def render_line(self, y):
        if self.data is not None:
            drawn.append(1.0)
        return orig_render_line(self, y)

    def display(self, screen, renderable):
        out = orig_display(self, screen, renderable)
        if drawn and renderable is not None:
            print(json.dumps({"first_frame": time.time()}), file=sys.stderr, flush=True)
            self.exit()
        return out

    RoutingGrid.render_line = render_line
    App._display = display
    sys.exit(main(["open", run, "--cache-dir", cache]))


def measure_open(run_dir: Path, repeat: int = 5) -> float:
    """Median over ``repeat`` fresh processes, after one unmeasured (warm-up) start."""
    times = []
    for i in range(repeat + 1):
        t0 = time.time()
        proc = subprocess.run([sys.executable, "-m", "benchmarks.bench_scale", "--child-open", run_dir.name,
                               "--dir", str(run_dir.parent)], cwd=str(REPO), capture_output=True, text=True,
                              env={**os.environ, "TEXTUAL_DRIVER": "textual.drivers.headless_driver:HeadlessDriver"})
        lines = [json.loads(ln) for ln in proc.stderr.splitlines() if ln.startswith("{")]
        if not lines:
            raise SystemExit(f"open failed: {proc.stderr[-2000:]}")
        if i:
            times.append(lines[0]["first_frame"] - t0)
    return statistics.median(times)


# ------------------------------------------------------------------------------------------- TUI (in process)
async def measure_tui(run, repeat: int, width: int = 160, height: int = 50) -> dict:
    from benchmarks.bench_tui import FrameClock
    from moe_tui.tui.app import MoeTuiApp
    from moe_tui.tui.screens.grid import GridScreen
    from moe_tui.tui.screens.panes.base import PaneScreen
    from moe_tui.tui.settings import Settings
    from tests.runs import model_facts

    app = MoeTuiApp(settings=Settings(), inspect_fn=model_facts, run_store=lambda: None, scan_hf_cache=False)
    res: dict = {}
    async with app.run_test(size=(width, height)) as pilot:
        clock = FrameClock(app)
        await pilot.pause()
        await clock.settle()
        app.push_screen(GridScreen(run))
        await clock.settle(0.3)
        screen = app.screen

        async def key_until(key: str, done, limit: float = 30.0) -> float:
            """key -> the first frame after ``done()`` holds (ms)."""
            from textual import events

            await clock.settle(0.05)
            clock.frames.clear()
            ev = events.Key(key, key if len(key) == 1 else None)
            ev.set_sender(app)
            t0 = time.perf_counter()
            app._driver.send_message(ev)
            while time.perf_counter() - t0 < limit:
                await asyncio.sleep(0.005)
                if done():
                    t_done = time.perf_counter()
                    while time.perf_counter() - t_done < limit:
                        await asyncio.sleep(0.002)
                        after = [f for f in clock.frames if f >= t_done]
                        if after:
                            return (after[0] - t0) * 1000
            return float("nan")

        keys = {
            "move (l/j/h/k)": ["l", "j", "h", "k"],
            "next/prev sentence (n/p)": ["n", "p"],
            "jump (G/g)": ["G", "g"],
            "toggle all-k (t)": ["t"],
            "highlight (x)": ["x"],
        }
        for name, ks in keys.items():
            lat = []
            for _ in range(max(1, repeat // len(ks))):
                for k in ks:
                    lat.append((await clock.press(k))[0])
            res[name] = lat
        # search: each typed key to its frame; from the word's last key until every match is in the list
        from textual import events

        lat, full = [], []
        await clock.press("slash")
        for word in ("the", "zq", "of", "e"):
            for ch in word[:-1]:
                lat.append((await clock.press(ch))[0])
            await clock.settle(0.05)
            clock.frames.clear()
            ev = events.Key(word[-1], word[-1])
            ev.set_sender(app)
            t0 = time.perf_counter()
            app._driver.send_message(ev)
            while (screen._search != word or screen.searching) and time.perf_counter() - t0 < 60:
                await asyncio.sleep(0.01)  # polling the app's own loop: often enough, not so often it slows it
            full.append((time.perf_counter() - t0) * 1000)
            await clock.settle()
            after = [f for f in clock.frames if f >= t0]
            lat.append((after[0] - t0) * 1000 if after else float("nan"))
            for _ in word:
                lat.append((await clock.press("backspace"))[0])
        res["search (typing)"] = lat
        res["search_complete_ms"] = full
        await clock.press("escape")
        # panes
        data = lambda: app.analysis.get(str(run.run_id))  # noqa: E731

        def pane_ready(kind: str):
            def ok() -> bool:
                d = data()
                return (isinstance(app.screen, PaneScreen) and app.screen.KIND == kind and d is not None
                        and "spec_layer" in d.tables and not d.base_loading)
            return ok

        res["pane s (first: builds the view)"] = await key_until("s", pane_ready("spec"))
        res["pane K"] = await key_until("K", pane_ready("kl"))
        res["pane C"] = await key_until("C", pane_ready("compare"))
    return res


def tui_in_child(run_dir: Path, repeat: int) -> dict:
    """The TUI figures from a fresh process (a first pane pays its imports, as a user's first pane does)."""
    proc = subprocess.run([sys.executable, "-m", "benchmarks.bench_scale", "--child-tui", run_dir.name,
                           "--dir", str(run_dir.parent), "--repeat", str(repeat)], cwd=str(REPO),
                          capture_output=True, text=True)
    if proc.returncode:
        raise SystemExit(f"TUI measurement failed: {proc.stderr[-3000:]}")
    return json.loads(proc.stdout.strip().splitlines()[-1])


# ------------------------------------------------------------------------------------------- main
def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--sizes", type=float, nargs="+", default=[0.5, 1, 2, 4], help="millions of tokens")
    ap.add_argument("--dir", default=str(Path(tempfile.gettempdir()) / "moe-tui-bench-scale"))
    ap.add_argument("--layers", type=int, default=4)
    ap.add_argument("--k", type=int, default=2)
    ap.add_argument("--experts", type=int, default=8)
    ap.add_argument("--repeat", type=int, default=20)
    ap.add_argument("--no-baseline", action="store_true", help="skip the row-by-row exporter at the smallest size")
    ap.add_argument("--child-open", metavar="RUN", help=argparse.SUPPRESS)
    ap.add_argument("--child-tui", metavar="RUN", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.child_open:
        child_open(args.child_open, args.dir)
        return 0
    if args.child_tui:
        from moe_tui.cache.store import RunStore

        res = asyncio.run(measure_tui(RunStore(args.dir).open(args.child_tui), args.repeat))
        print(json.dumps(res))
        return 0
    from benchmarks.synth import synthetic_run
    from moe_tui.cache.store import RunStore

    root = Path(args.dir)
    load = os.getloadavg()
    print(f"load average {load[0]:.2f} {load[1]:.2f} {load[2]:.2f} on {os.cpu_count()} CPUs; runs in {root}")
    rows_out = []
    for size in args.sizes:
        n = int(size * 1_000_000)
        t0 = time.perf_counter()
        run_dir = synthetic_run(root, n, layers=args.layers, k=args.k, experts=args.experts)
        built = time.perf_counter() - t0
        run = RunStore(root).open(run_dir.name)
        arrays_mb = sum(m["bytes"] for m in run.manifest["arrays"].values()) / 2**20
        n_rows = int((~(run.special[:])).sum()) * len(run.moe_layers) * run.top_k
        r = {"tokens": run.n_tokens, "sentences": run.n_sentences, "forms": len(run.forms), "rows": n_rows,
             "arrays_mb": arrays_mb, "build_s": built}
        # cold open: every file hashed (the writer stamps its files, so this is what an old run without stamps costs)
        (run_dir / ".verified.json").unlink(missing_ok=True)
        t0 = time.perf_counter()
        RunStore(root).open(run_dir.name)
        r["verify_cold_s"] = time.perf_counter() - t0
        t0 = time.perf_counter()
        RunStore(root).open(run_dir.name)
        r["open_api_s"] = time.perf_counter() - t0
        r["open_s"] = measure_open(run_dir)
        r["tui"] = tui_in_child(run_dir, args.repeat)
        with tempfile.TemporaryDirectory() as tmp:
            wall, code, rss, err = _child(_cli("report", run_dir.name, "--out", f"{tmp}/rep", "--cache-dir", str(root)))
            if code:
                raise SystemExit(f"report failed: {err}")
            r["report_s"], r["report_rss_mb"] = wall, rss
            for ext in ("parquet", "csv"):
                wall, code, rss, err = _child(_cli("export-routes", run_dir.name, "--out", f"{tmp}/routes.{ext}",
                                                   "--cache-dir", str(root)))
                if code:
                    raise SystemExit(f"export failed: {err}")
                r[f"{ext}_s"], r[f"{ext}_rss_mb"] = wall, rss
                r[f"{ext}_mb"] = Path(f"{tmp}/routes.{ext}").stat().st_size / 2**20
                Path(f"{tmp}/routes.{ext}").unlink()
                os.sync()  # the next measurement does not share the disk with this file's write-back
            if size == args.sizes[0] and not args.no_baseline:
                r["baseline"] = baseline(run, Path(tmp))
        rows_out.append(r)
        report_size(size, r)
    print()
    summary(rows_out)
    return 0


def baseline(run, tmp: Path) -> dict:
    """Row-by-row (the previous exporter) against streaming, in this process, on the same run."""
    from moe_tui.core.inspect.export import export_routes, export_routes_rowwise

    out = {}
    for ext in ("csv", "parquet"):
        t0 = time.perf_counter()
        export_routes_rowwise(run, tmp / f"old.{ext}")
        old = time.perf_counter() - t0
        t0 = time.perf_counter()
        export_routes(run, tmp / f"new.{ext}")
        new = time.perf_counter() - t0
        same = (tmp / f"old.{ext}").read_bytes() == (tmp / f"new.{ext}").read_bytes()
        out[ext] = (old, new, same)
        (tmp / f"old.{ext}").unlink()
        (tmp / f"new.{ext}").unlink()
        os.sync()
    # the Python API's routes(): a DataFrame from the row-by-row records (what it built before) vs array chunks
    import pandas as pd

    from moe_tui.core.inspect.export import ROUTE_COLUMNS, iter_route_rows, routes_frame

    t0 = time.perf_counter()
    old_frame = pd.DataFrame.from_records(iter_route_rows(run), columns=list(ROUTE_COLUMNS))
    old = time.perf_counter() - t0
    t0 = time.perf_counter()
    new_frame = routes_frame(run)
    new = time.perf_counter() - t0
    out["routes() frame"] = (old, new, old_frame.equals(new_frame))
    return out


def report_size(size: float, r: dict) -> None:
    mrows = r["rows"] / 1e6
    print(f"\n== {size:g}M tokens: {r['tokens']:,} tokens, {r['sentences']:,} sentences, {r['forms']:,} forms, "
          f"{mrows:.1f}M route rows, arrays {r['arrays_mb']:.0f} MB (built in {r['build_s']:.1f} s)")
    print(f"open: moe-tui open -> first grid frame {r['open_s']:.2f} s (target ≤ 1 s); Run open "
          f"{r['open_api_s'] * 1000:.0f} ms; first open without stamps (sha256 of every file) {r['verify_cold_s']:.2f} s")
    tui = r["tui"]
    for name in ("pane s (first: builds the view)", "pane K", "pane C"):
        print(f"{name:<34} {tui[name] / 1000:6.2f} s (target ≤ 1 s)")
    print(f"{'keystroke → frame':<34} {'n':>4} {'p50 ms':>8} {'p95 ms':>8} {'max ms':>8}")
    for name, lat in tui.items():
        if isinstance(lat, list) and name != "search_complete_ms":
            print(f"{name:<34} {len(lat):>4} {statistics.median(lat):>8.1f} {_pct(lat, 0.95):>8.1f} {max(lat):>8.1f}")
    print("search complete (last key -> every match listed) for 'the', 'zq', 'of', 'e': "
          f"{', '.join(f'{x:.0f}' for x in tui['search_complete_ms'])} ms")
    print(f"report (tables): {r['report_s']:.2f} s (target ≤ 1.5 s), peak RSS {r['report_rss_mb']} MB = arrays "
          f"{r['arrays_mb']:.0f} MB + {r['report_rss_mb'] - r['arrays_mb']:.0f} MB (target ≤ arrays + 500 MB)")
    for ext, target in (("parquet", 1.0), ("csv", 0.5)):
        rate = r["rows"] / r[f"{ext}_s"] / 1e6
        print(f"export {ext:<8} {r[f'{ext}_s']:6.2f} s  {rate:5.2f}M rows/s (target ≥ {target}M), peak RSS "
              f"{r[f'{ext}_rss_mb']} MB (target ≤ 1024), file {r[f'{ext}_mb']:.0f} MB")
    if "baseline" in r:
        for ext, (old, new, same) in r["baseline"].items():
            what = "identical frames" if ext.endswith("frame") else "identical bytes"
            print(f"row-by-row vs streaming {ext}: {old:.1f} s vs {new:.1f} s = {old / new:.1f}× "
                  f"({what if same else 'DIFFERENT'})")


def summary(rows: list[dict]) -> None:
    print("growth with the run's size")
    cols = [("tokens", lambda r: f"{r['tokens'] / 1e6:.1f}M"), ("open s", lambda r: f"{r['open_s']:.2f}"),
            ("pane s", lambda r: f"{r['tui']['pane s (first: builds the view)'] / 1000:.2f}"),
            ("pane K s", lambda r: f"{r['tui']['pane K'] / 1000:.2f}"),
            ("keys p95 ms", lambda r: f"{max(_pct(v, 0.95) for k, v in r['tui'].items() if isinstance(v, list) and k != 'search_complete_ms'):.0f}"),
            ("search all ms", lambda r: f"{max(r['tui']['search_complete_ms']):.0f}"),
            ("report s", lambda r: f"{r['report_s']:.2f}"),
            ("report RSS-arrays MB", lambda r: f"{r['report_rss_mb'] - r['arrays_mb']:.0f}"),
            ("parquet Mrows/s", lambda r: f"{r['rows'] / r['parquet_s'] / 1e6:.2f}"),
            ("parquet RSS MB", lambda r: f"{r['parquet_rss_mb']}"),
            ("csv Mrows/s", lambda r: f"{r['rows'] / r['csv_s'] / 1e6:.2f}"),
            ("csv RSS MB", lambda r: f"{r['csv_rss_mb']}")]
    print(" | ".join(c for c, _ in cols))
    for r in rows:
        print(" | ".join(f(r) for _, f in cols))


if __name__ == "__main__":
    raise SystemExit(main())
