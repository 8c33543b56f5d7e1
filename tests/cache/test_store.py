"""The run store: atomic writes, shards, finalize order, checksums, locks."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time

import numpy as np
import pytest

from moe_tui.cache.store import (
    RunStore,
    RunWriter,
    atomic_write_bytes,
    atomic_write_json,
    cache_root,
    run_id_for,
    run_lock,
)
from moe_tui.errors import CacheError, RunCorruptError

L, K = 3, 2


def _shard(sentence_index, lengths, seed):
    rng = np.random.default_rng(seed)
    n = int(sum(lengths))
    return {
        "lengths": np.array(lengths, dtype=np.int64),
        "sentence_index": np.array(sentence_index, dtype=np.int64),
        "token_ids": rng.integers(0, 100, n).astype(np.int32),
        "word_index": np.arange(n, dtype=np.int32),
        "pos": rng.integers(0, 17, n).astype(np.int16),
        "special": np.zeros(n, dtype=bool),
        "crossing": np.zeros(n, dtype=bool),
        "offsets": np.zeros((n, 2), dtype=np.int32),
        "experts": rng.integers(0, 8, (n, L, K)).astype(np.uint8),
        "weights": rng.random((n, L, K)).astype(np.float16),
    }


def _manifest_extra():
    return {"model": {"name_or_path": "toy", "moe_layers": [0, 2, 3], "num_experts": 8, "top_k": K},
            "tagset": {"name": "upos", "tags": ["A"] * 17}, "corpus": {}, "alignment": {}, "options": {}}


def _sentences(n):
    return [{"id": f"s{i}", "text": "x", "words": [], "tokens": []} for i in range(n)]


def _write_run(root, identity=None):
    identity = identity or {"x": 1}
    rid = run_id_for(identity)
    w = RunWriter(root / rid, identity)
    w.begin()
    # shards in processing order (longest first), not corpus order
    s0 = _shard([2, 0], [4, 3], 0)
    s1 = _shard([1], [2], 1)
    w.write_shard(0, s0)
    w.write_shard(1, s1)
    w.finalize(2, _sentences(3), _manifest_extra())
    return rid, s0, s1


def test_cache_root_env_override(tmp_path, monkeypatch):
    monkeypatch.setenv("MOE_TUI_CACHE", str(tmp_path / "c"))
    assert cache_root() == tmp_path / "c"
    assert cache_root(tmp_path / "d") == tmp_path / "d"


def test_run_id_is_stable_and_order_free():
    assert run_id_for({"a": 1, "b": [1, 2]}) == run_id_for({"b": [1, 2], "a": 1})
    assert run_id_for({"a": 1}) != run_id_for({"a": 2})
    assert len(run_id_for({})) == 16


def test_finalize_restores_corpus_order(tmp_path):
    rid, s0, s1 = _write_run(tmp_path)
    run = RunStore(tmp_path).open(rid)
    assert run.sentence_offsets.tolist() == [0, 3, 5, 9]
    # sentence 0 = second part of shard 0; 1 = shard 1; 2 = first part of shard 0
    np.testing.assert_array_equal(run.token_ids[0:3], s0["token_ids"][4:7])
    np.testing.assert_array_equal(run.token_ids[3:5], s1["token_ids"])
    np.testing.assert_array_equal(run.experts[5:9], s0["experts"][0:4])
    assert run.experts.dtype == np.uint8 and run.weights.dtype == np.float16
    assert run.experts.shape == (9, L, K)
    assert run.moe_layers == [0, 2, 3] and run.top_k == K and run.num_experts == 8
    assert run.sentence_of_token().tolist() == [0, 0, 0, 1, 1, 2, 2, 2, 2]
    assert not (tmp_path / rid / "shards").exists()
    assert isinstance(run.experts, np.memmap)


def test_truncated_array_is_detected(tmp_path):
    rid, *_ = _write_run(tmp_path)
    p = tmp_path / rid / "experts.npy"
    data = p.read_bytes()
    p.write_bytes(data[:-5])
    with pytest.raises(RunCorruptError, match="experts.npy has .* bytes"):
        RunStore(tmp_path).open(rid)


def test_altered_array_same_size_is_detected(tmp_path):
    rid, *_ = _write_run(tmp_path)
    RunStore(tmp_path).open(rid)  # first open stamps the verified files
    p = tmp_path / rid / "weights.npy"
    data = bytearray(p.read_bytes())
    data[-1] ^= 0xFF
    time.sleep(0.01)
    p.write_bytes(bytes(data))
    with pytest.raises(RunCorruptError, match="weights.npy failed its checksum"):
        RunStore(tmp_path).open(rid)


def test_altered_manifest_is_detected(tmp_path):
    rid, *_ = _write_run(tmp_path)
    mp = tmp_path / rid / "manifest.json"
    m = json.loads(mp.read_text())
    m["arrays"]["experts"]["sha256"] = "0" * 64
    mp.write_text(json.dumps(m))
    with pytest.raises(RunCorruptError):
        RunStore(tmp_path).open(rid)
    mp.write_text("{not json")
    with pytest.raises(RunCorruptError, match="unreadable"):
        RunStore(tmp_path).open(rid)


def test_missing_sentences_file_is_detected(tmp_path):
    rid, *_ = _write_run(tmp_path)
    (tmp_path / rid / "sentences.jsonl").unlink()
    with pytest.raises(RunCorruptError, match="sentences.jsonl is missing"):
        RunStore(tmp_path).open(rid)


def test_unfinished_and_unknown_runs(tmp_path):
    store = RunStore(tmp_path)
    w = RunWriter(tmp_path / run_id_for({"y": 1}), {"y": 1})
    w.begin()
    with pytest.raises(CacheError, match="not finished"):
        store.open(w.run_dir.name)
    with pytest.raises(CacheError, match="unknown run"):
        store.open("ffffffffffffffff")
    infos = store.list_runs()
    assert [i.status for i in infos] == ["partial"]


def test_list_and_prefix(tmp_path):
    rid, *_ = _write_run(tmp_path)
    store = RunStore(tmp_path)
    [info] = store.list_runs()
    assert info.run_id == rid and info.tokens == 9 and info.status == "complete"
    assert store.open(rid[:6]).run_id == rid
    assert store.open(str(tmp_path / rid)).run_id == rid


def test_unreadable_shard_is_redone(tmp_path):
    w = RunWriter(tmp_path / "r", {"z": 1})
    w.begin()
    w.write_shard(0, _shard([0], [2], 0))
    w.shard_path(1).write_bytes(b"PK\x03\x04 half a zip")
    assert w.done_shards(2) == {0, 1}
    assert w.read_shard(1) is None
    assert w.done_shards(2) == {0}
    assert w.read_shard(0)["lengths"].tolist() == [2]


def test_begin_keeps_created_time(tmp_path):
    w = RunWriter(tmp_path / "r", {"z": 1})
    first = w.begin()
    second = RunWriter(tmp_path / "r", {"z": 1}).begin()
    assert first["created"] == second["created"]


def test_atomic_write_failure_keeps_previous(tmp_path, monkeypatch):
    target = tmp_path / "f.json"
    atomic_write_json(target, {"v": 1})

    def boom(*a, **k):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(os, "replace", boom)
    with pytest.raises(CacheError, match="No space left"):
        atomic_write_json(target, {"v": 2})
    assert json.loads(target.read_text()) == {"v": 1}
    assert [p.name for p in tmp_path.iterdir()] == ["f.json"]


def test_atomic_write_error_mid_write(tmp_path):
    target = tmp_path / "g.bin"
    atomic_write_bytes(target, b"old")

    def writer(fh):
        fh.write(b"partial")
        raise OSError(5, "Input/output error")

    with pytest.raises(CacheError, match="Input/output error"):
        atomic_write_bytes(target, writer)
    assert target.read_bytes() == b"old"
    assert [p.name for p in tmp_path.iterdir()] == ["g.bin"]


def test_lock_makes_second_wait(tmp_path):
    run_dir = tmp_path / "r"
    run_dir.mkdir()
    code = (
        "import time\n"
        "from moe_tui.cache.store import run_lock\nfrom pathlib import Path\n"
        "with run_lock(Path(%r)):\n    print('held', flush=True); time.sleep(1.0)\n"
    ) % (str(run_dir),)
    proc = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, text=True)
    assert proc.stdout.readline().strip() == "held"
    waited = []
    t0 = time.perf_counter()
    with run_lock(run_dir, on_wait=waited.append):
        elapsed = time.perf_counter() - t0
    proc.wait()
    assert waited and "another extraction" in waited[0] and f"pid {proc.pid}" in waited[0]
    assert elapsed > 0.3


def test_leftover_shards_of_a_complete_run_are_removed(tmp_path):
    rid, *_ = _write_run(tmp_path)
    (tmp_path / rid / "shards").mkdir()
    (tmp_path / rid / "shards" / "shard-00000.npz").write_bytes(b"x")
    RunStore(tmp_path).open(rid)
    assert not (tmp_path / rid / "shards").exists()
