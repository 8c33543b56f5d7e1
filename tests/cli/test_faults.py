"""Faults: kill -9 mid-extraction and mid-finalize, a concurrent extraction, disk-full errors, and
corrupted runs. moe-tui must lose nothing (a rerun finishes the same run, byte for byte) and never crash
(every failure is one line on stderr, exit 2, nothing half-written left behind).

The subprocess tests are expensive (each child imports torch + transformers), so every child of this module
is started at once by one module fixture (``wave``) and the tests then check its results.
"""

from __future__ import annotations

import errno
import json
import os
import shutil
import signal
import subprocess
import sys
import threading
from pathlib import Path

import numpy as np
import pytest

from moe_tui.cache.store import RunStore
from moe_tui.cli import main
from tests.conftest import EWT_DEV, REPO

pytestmark = pytest.mark.slow  # seconds per test: child processes, training, full flows

N_SENT = 24  # one of the first 24 EWT dev sentences is longer than the tiny model's context: 23 batches
KILL_SEEDS = (11, 12, 13)

# --------------------------------------------------------------------------- shared helpers (also used by
# tests/cli/test_bad_input.py and tests/cli/test_security.py)
def tiny_model() -> Path:
    """The tiny Mixtral + byte-level BPE tokenizer, built once per test session."""
    from tests.factories_model import ewt_tiny_model

    return ewt_tiny_model("mixtral")


def collect(events: list):
    """A progress callback that keeps each event in its JSON wire form (a dict, as --progress json prints it)."""
    return lambda ev: events.append(ev.to_dict())


def ex_opts(cache, data=EWT_DEV, **kw):
    from moe_tui.core.extract.pipeline import ExtractOptions

    base = dict(model=str(tiny_model()), data=str(data), max_sentences=N_SENT, batch_size=1,
                cache_dir=str(cache), device="cpu", dtype="float32")
    base.update(kw)
    return ExtractOptions(**base)


def cli(capsys, *argv) -> tuple[int, str, str]:
    code = main([str(a) for a in argv])
    out, err = capsys.readouterr()
    return code, out, err


def assert_one_line_error(code, err, *patterns, exit_code=2):
    assert code == exit_code, (code, err)
    lines = [ln for ln in err.splitlines() if ln.strip()]
    assert len(lines) == 1, err
    assert lines[0].startswith("moe-tui: error: "), lines[0]
    assert "Traceback" not in err
    for p in patterns:
        assert p in lines[0], (p, lines[0])
    return lines[0]


def tree(root: Path) -> dict[str, bytes]:
    """Every file under ``root`` with its bytes (for 'nothing was written' checks)."""
    root = Path(root)
    if not root.exists():
        return {}
    return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


def stray_temp_files(root: Path) -> list[str]:
    return sorted(str(p) for p in Path(root).rglob("*") if ".tmp-" in p.name)


def run_bytes(run_dir: Path) -> dict[str, bytes]:
    """Every array of a run (the routes and the columnar sentence text), by file name."""
    from moe_tui.cache.layout import ARRAY_NAMES

    run_dir = Path(run_dir)
    out = {p.name: p.read_bytes() for p in sorted(run_dir.glob("*.npy"))}
    assert {f"{n}.npy" for n in ARRAY_NAMES} <= set(out)
    return out


def manifest_sans_time(run_dir: Path) -> dict:
    m = json.loads((Path(run_dir) / "manifest.json").read_text())
    for k in ("created", "tool_version", "manifest_sha256"):
        m.pop(k, None)
    return m


# --------------------------------------------------------------------------- child processes
class Child:
    """``python -m moe_tui.cli extract ... --progress json`` with its JSON events read on a thread."""

    def __init__(self, cache: Path, on_event=None, extra=()):
        env = {**os.environ, "MOE_TUI_CACHE": str(cache), "HF_HUB_OFFLINE": "1",
               "TRANSFORMERS_OFFLINE": "1", "TOKENIZERS_PARALLELISM": "false",
               "OMP_NUM_THREADS": "1"}  # 6 children share 2 cores; the tiny model's ops are single-threaded anyway
        args = ["extract", "--model", str(tiny_model()), "--data", str(EWT_DEV), "--max-sentences", str(N_SENT),
                "--device", "cpu", "--dtype", "float32", "--progress", "json", "--batch-size", "1", *extra]
        self.cache = Path(cache)
        self.proc = subprocess.Popen([sys.executable, "-m", "moe_tui.cli", *args], stdout=subprocess.PIPE,
                                     stderr=subprocess.PIPE, text=True, env=env, cwd=str(REPO))
        self.events: list[dict] = []
        self.other: list[str] = []
        self.on_event = on_event
        self.killed_after: str | None = None
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self):
        for line in self.proc.stderr:
            try:
                ev = json.loads(line)
            except ValueError:
                self.other.append(line)
                continue
            self.events.append(ev)
            if self.on_event is not None:
                self.on_event(self, ev)

    def kill(self, why: str):
        if self.killed_after is None:
            self.killed_after = why
            os.kill(self.proc.pid, signal.SIGKILL)

    def wait(self, timeout=400) -> int:
        rc = self.proc.wait(timeout=timeout)
        self._reader.join(timeout=10)
        self.stdout = self.proc.stdout.read()
        return rc

    def stop_for_good(self):
        if self.proc.poll() is None:
            os.kill(self.proc.pid, signal.SIGCONT)
            self.proc.kill()
        self.proc.wait()


def _kill_point(seed: int) -> int:
    """The k-th progress event after which the child is killed (k in 1..11 of 23 batches)."""
    return int(np.random.default_rng(seed).integers(1, 12))


@pytest.fixture(scope="module")
def wave(tmp_path_factory):
    """Start every child at once: 3 seeded kills, a kill in finalize, and two concurrent extractions."""
    base = tmp_path_factory.mktemp("faults")
    tiny_model()
    kids: dict[str, Child] = {}

    def kill_at(k):
        def cb(child, ev):
            if ev["event"] == "progress" and sum(e["event"] == "progress" for e in child.events) >= k:
                child.kill(f"progress {k}")
        return cb

    def kill_in_finalize(child, ev):
        if ev == {"event": "stage", "stage": "finalizing"}:
            child.kill("finalizing")

    pair = {"stopped": None, "notice": None, "lock": threading.Lock()}

    def coordinate(child, ev):
        # whichever child gets the run lock first is frozen (SIGSTOP) until the other says it is waiting
        with pair["lock"]:
            if ev == {"event": "stage", "stage": "loading-model"} and pair["notice"] is None:
                os.kill(child.proc.pid, signal.SIGSTOP)
                pair["stopped"] = child
            elif ev["event"] == "notice" and "another extraction" in ev["message"]:
                pair["notice"] = child
                if pair["stopped"] is not None and pair["stopped"] is not child:
                    os.kill(pair["stopped"].proc.pid, signal.SIGCONT)

    try:
        for seed in KILL_SEEDS:
            kids[f"seed{seed}"] = Child(base / f"seed{seed}", kill_at(_kill_point(seed)))
        kids["finalize"] = Child(base / "finalize", kill_in_finalize)
        kids["pair_a"] = Child(base / "pair", coordinate)
        kids["pair_b"] = Child(base / "pair", coordinate)
        # the uninterrupted reference, in this process, while the children start up
        from moe_tui.core.extract.pipeline import extract

        ref = extract(ex_opts(base / "ref"))
        rcs = {name: c.wait() for name, c in kids.items()}
    finally:
        for c in kids.values():
            c.stop_for_good()
    return {"base": base, "ref": ref, "kids": kids, "rcs": rcs, "pair": pair}


def _check_partial_state(cache: Path):
    """After a kill: no manifest, every shard present loads whole, the run is listed as partial."""
    [info] = RunStore(cache).list_runs()
    assert info.status == "partial"
    shards = sorted((info.path / "shards").glob("shard-*.npz"))
    for s in shards:
        with np.load(s, allow_pickle=False) as z:
            for k in z.files:
                assert z[k].dtype != object
    return info, shards


@pytest.mark.parametrize("seed", KILL_SEEDS)
def test_kill9_mid_extraction_then_rerun_is_byte_identical(wave, seed):
    from moe_tui.core.extract.pipeline import extract

    child = wave["kids"][f"seed{seed}"]
    k = _kill_point(seed)
    assert wave["rcs"][f"seed{seed}"] == -signal.SIGKILL, child.other
    assert child.killed_after == f"progress {k}"
    cache = wave["base"] / f"seed{seed}"
    info, shards = _check_partial_state(cache)
    assert len(shards) >= k  # a shard is on disk before its progress event
    with pytest.raises(Exception, match="not finished"):
        RunStore(cache).open(info.run_id)
    events = []
    out = extract(ex_opts(cache), progress=collect(events))
    first = [e for e in events if e["event"] == "progress"][0]
    assert first["sentences_done"] == len(shards) + 1  # the kept shards were not redone
    assert out.name == wave["ref"].name
    RunStore(cache).open(out.name)  # verifies every checksum
    assert run_bytes(out) == run_bytes(wave["ref"])
    assert manifest_sans_time(out) == manifest_sans_time(wave["ref"])
    assert not (out / "shards").exists() and stray_temp_files(cache) == []


def test_kill9_during_finalize_then_rerun_completes(wave):
    from moe_tui.core.extract.pipeline import extract

    child = wave["kids"]["finalize"]
    cache = wave["base"] / "finalize"
    assert child.killed_after == "finalizing"
    [info] = RunStore(cache).list_runs()
    if wave["rcs"]["finalize"] == -signal.SIGKILL and info.status == "partial":
        # killed inside finalize: all shards still there and whole, the run is not mistaken for complete
        _, shards = _check_partial_state(cache)
        assert len(shards) == 23
    out = extract(ex_opts(cache))
    assert run_bytes(out) == run_bytes(wave["ref"])
    assert manifest_sans_time(out) == manifest_sans_time(wave["ref"])
    assert not (out / "shards").exists() and stray_temp_files(cache) == []


def test_two_extractions_of_one_run_at_once(wave):
    a, b = wave["kids"]["pair_a"], wave["kids"]["pair_b"]
    assert wave["rcs"]["pair_a"] == wave["rcs"]["pair_b"] == 0, (a.other, b.other)
    waiter = wave["pair"]["notice"]
    assert waiter in (a, b)
    holder = b if waiter is a else a
    notice = [e["message"] for e in waiter.events if e["event"] == "notice"]
    assert notice == [f"another extraction of this run is in progress (pid {holder.proc.pid}); "
                      "waiting for it to finish"]
    assert {"event": "stage", "stage": "cache-hit"} in waiter.events
    assert {"event": "stage", "stage": "finalizing"} in holder.events
    assert a.stdout.strip().splitlines()[-1] == b.stdout.strip().splitlines()[-1]
    run_dir = Path(a.stdout.strip().splitlines()[-1])
    cache = wave["base"] / "pair"
    assert [r.status for r in RunStore(cache).list_runs()] == ["complete"]
    RunStore(cache).open(run_dir.name)
    assert run_bytes(run_dir) == run_bytes(wave["ref"])
    assert not (run_dir / "shards").exists() and stray_temp_files(cache) == []


# --------------------------------------------------------------------------- out of memory
def test_oom_from_the_start_gives_the_routes_of_a_small_batch_run(tmp_path, monkeypatch):
    """Batches of 6 that OOM above 2 sentences end with the same arrays as batch 2 from the start."""
    import torch

    import moe_tui.core.extract.capture
    from moe_tui.core.extract.pipeline import extract

    small = extract(ex_opts(tmp_path / "small", max_sentences=8, batch_size=2))
    real_run = moe_tui.core.extract.capture.RouteCapture.run

    def flaky(self, input_ids, attention_mask):
        if input_ids.shape[0] > 2:
            raise torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 20.00 MiB")
        return real_run(self, input_ids, attention_mask)

    monkeypatch.setattr(moe_tui.core.extract.capture.RouteCapture, "run", flaky)
    events = []
    big = extract(ex_opts(tmp_path / "big", max_sentences=8, batch_size=6), progress=collect(events))
    assert [e["message"] for e in events if e["event"] == "notice"] == [
        "out of memory on a batch of 6 sentences: batch halved to 3",
        "out of memory on a batch of 3 sentences: batch halved to 1"]
    assert run_bytes(big) == run_bytes(small)  # weights too, byte for byte


def test_oom_with_one_sentence_is_one_line(tmp_path, monkeypatch, capsys):
    import torch

    import moe_tui.core.extract.capture

    def always(self, input_ids, attention_mask):
        raise torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 20.00 MiB")

    monkeypatch.setattr(moe_tui.core.extract.capture.RouteCapture, "run", always)
    code, _, err = cli(capsys, "extract", "--model", tiny_model(), "--data", EWT_DEV, "--max-sentences", 3,
                       "--device", "cpu", "--dtype", "float32", "--progress", "none", "--cache-dir", tmp_path)
    assert_one_line_error(code, err, "out of memory even with one sentence")
    assert RunStore(tmp_path).list_runs() == []


# --------------------------------------------------------------------------- disk errors
class _FailingFile:
    """A real file whose write raises ENOSPC once ``budget`` bytes are written (disk full mid-write)."""

    def __init__(self, fh, budget):
        self._fh, self._left = fh, budget

    def write(self, data):
        if len(data) > self._left:
            self._fh.write(bytes(data[: self._left]))
            self._left = 0
            raise OSError(errno.ENOSPC, "No space left on device")
        self._left -= len(data)
        return self._fh.write(data)

    def __getattr__(self, name):
        return getattr(self._fh, name)

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self._fh.close()


def _inject_enospc(monkeypatch, target: str, how: str):
    """Make the write of ``target`` (a shard or manifest.json) fail with ENOSPC, by os.replace or open."""
    import moe_tui.fileio as fileio

    def hits(path) -> bool:
        name = Path(path).name
        return ("shard-00001.npz" in name) if target == "shard" else ("manifest.json" in name)

    if how == "replace":
        real_replace = os.replace

        def replace(src, dst, *a, **k):
            if hits(dst):
                raise OSError(errno.ENOSPC, "No space left on device")
            return real_replace(src, dst, *a, **k)

        monkeypatch.setattr(fileio.os, "replace", replace)
    else:
        import builtins

        real_open = builtins.open

        def fake_open(path, mode="r", *a, **k):
            fh = real_open(path, mode, *a, **k)
            return _FailingFile(fh, 100) if ("w" in mode and hits(path)) else fh

        monkeypatch.setattr(fileio, "open", fake_open, raising=False)


@pytest.mark.parametrize("target,how", [("shard", "replace"), ("shard", "write"),
                                        ("manifest", "replace"), ("manifest", "write")])
def test_disk_full_is_one_line_and_keeps_the_cache(tmp_path, monkeypatch, capsys, target, how):
    from moe_tui.core.extract.pipeline import extract

    cache = tmp_path / "cache"
    earlier = extract(ex_opts(cache, max_sentences=3, batch_size=3))
    before = tree(earlier)
    _inject_enospc(monkeypatch, target, how)
    args = ["extract", "--model", tiny_model(), "--data", EWT_DEV, "--max-sentences", 5, "--batch-size", 2,
            "--device", "cpu", "--dtype", "float32", "--progress", "none", "--cache-dir", cache]
    code, out, err = cli(capsys, *args)
    line = assert_one_line_error(code, err, "No space left on device", "cannot write")
    assert ("shard-00001.npz" if target == "shard" else "manifest.json") in line
    assert out == ""
    # the earlier complete run is untouched and still opens; no temp file is left anywhere
    assert tree(earlier) == before
    RunStore(cache).open(earlier.name)
    assert stray_temp_files(cache) == []
    runs = {r.run_id: r.status for r in RunStore(cache).list_runs()}
    assert runs[earlier.name] == "complete" and len(runs) == 2  # the failed one is a resumable partial run
    partial = next(RunStore(cache).path(r) for r, s in runs.items() if s == "partial")
    assert not (partial / "manifest.json").exists()
    # the disk has room again: the same command finishes the run
    monkeypatch.undo()
    code, out, err = cli(capsys, *args)
    assert code == 0, err
    assert Path(out.strip().splitlines()[-1]) == partial
    RunStore(cache).open(partial.name)
    assert stray_temp_files(cache) == []


# --------------------------------------------------------------------------- corrupted runs
@pytest.fixture(scope="module")
def small_run(tmp_path_factory):
    from moe_tui.core.extract.pipeline import extract

    cache = tmp_path_factory.mktemp("small_run_cache")
    run_dir = extract(ex_opts(cache, max_sentences=4, batch_size=4))
    RunStore(cache).open(run_dir.name)  # stamps .verified.json, as a real user's first open does
    return run_dir


def _flip_last_byte(p: Path):
    data = bytearray(p.read_bytes())
    data[-1] ^= 0x01
    p.write_bytes(bytes(data))


def _truncate(p: Path):
    p.write_bytes(p.read_bytes()[: p.stat().st_size // 2])


def _manifest_edit(fn):
    def edit(run_dir: Path):
        mp = run_dir / "manifest.json"
        m = json.loads(mp.read_text())
        fn(m)
        mp.write_text(json.dumps(m, indent=2))
    return edit


def _alter_sentence_text(run_dir: Path):
    """One letter of the first sentence's text changed in place (same size)."""
    p = run_dir / "texts_bytes.npy"
    data = bytearray(p.read_bytes())
    i = len(data) - int(np.load(p, allow_pickle=False).size)  # the first text byte, after the .npy header
    data[i] = ord("X") if data[i] != ord("X") else ord("Y")
    p.write_bytes(bytes(data))


CORRUPTIONS = {
    "experts_truncated": (lambda d: _truncate(d / "experts.npy"), "experts.npy has"),
    "weights_bit_flip": (lambda d: _flip_last_byte(d / "weights.npy"), "weights.npy failed its checksum"),
    "token_ids_deleted": (lambda d: (d / "token_ids.npy").unlink(), "token_ids.npy is missing"),
    "manifest_truncated": (lambda d: _truncate(d / "manifest.json"), "manifest.json is unreadable"),
    "manifest_not_json": (lambda d: (d / "manifest.json").write_bytes(b"\x00\xff garbage"), "manifest.json"),
    "manifest_checksum_edited": (_manifest_edit(lambda m: m["arrays"]["pos"].update(sha256="0" * 64)),
                                 "manifest.json failed its checksum"),
    "manifest_top_k_edited": (_manifest_edit(lambda m: m["model"].update(top_k=5)),
                              "manifest.json failed its checksum"),
    "manifest_tags_edited": (_manifest_edit(lambda m: m["tagset"].update(tags=m["tagset"]["tags"][:3])),
                             "manifest.json failed its checksum"),
    "sentences_truncated": (lambda d: _truncate(d / "texts_bytes.npy"), "texts_bytes.npy has"),
    "sentences_altered": (_alter_sentence_text, "texts_bytes.npy failed its checksum"),
    "words_deleted": (lambda d: (d / "word_form.npy").unlink(), "word_form.npy is missing"),
}


@pytest.mark.parametrize("case", sorted(CORRUPTIONS))
def test_corrupted_run_is_one_line_exit_2_and_writes_nothing(small_run, tmp_path, capsys, case):
    corrupt, pattern = CORRUPTIONS[case]
    cache = tmp_path / "cache"
    run_dir = cache / small_run.name
    shutil.copytree(small_run, run_dir)
    corrupt(run_dir)
    before = tree(cache)
    out_csv = tmp_path / "routes.csv"
    out_dir = tmp_path / "report"
    for argv in (["export-routes", run_dir.name, "--out", out_csv, "--cache-dir", cache],
                 ["report", run_dir.name, "--out", out_dir, "--cache-dir", cache],
                 ["diff", run_dir.name, small_run, "--cache-dir", cache]):
        code, out, err = cli(capsys, *argv)
        assert_one_line_error(code, err, f"run {run_dir.name}", pattern)
        assert out == ""
    assert not out_csv.exists() and not out_dir.exists()
    assert tree(cache) == before and stray_temp_files(tmp_path) == []
