"""The run store: atomic writes, shards, finalize order, the columnar format (schema 2), checksums, locks."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time

import numpy as np
import pytest

from moe_tui.cache.columns import StringTable, TextColumns
from moe_tui.cache.layout import ARRAY_NAMES, run_id_for
from moe_tui.cache.store import RunStore, cache_root
from moe_tui.cache.writer import RunWriter, run_lock, write_run
from moe_tui.errors import CacheError, RunCorruptError
from moe_tui.fileio import atomic_write_bytes, atomic_write_json
from tests.runs import arrays_for_lengths, store_manifest_extra, tricky_records

L, K = 3, 2


def _shard(sentence_index, lengths, seed):
    rng = np.random.default_rng(seed)
    n = int(sum(lengths))
    return {
        "lengths": np.array(lengths, dtype=np.int64),
        "sentence_index": np.array(sentence_index, dtype=np.int64),
        "token_ids": rng.integers(0, 100, n).astype(np.int32),
        "word_index": np.concatenate([np.arange(m) for m in lengths]).astype(np.int32),  # word i of its sentence
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


def _sentences(lengths):
    """Records for sentences of the given token counts: word i is "w<i>", token i is its piece "▁w<i>"."""
    out = []
    for s, n in enumerate(lengths):
        words = [f"w{i}" for i in range(n)]
        text = " ".join(words)
        spans, c = [], 0
        for w in words:
            spans.append([w, "NOUN" if s % 2 else "VERB", c, c + len(w)])
            c += len(w) + 1
        out.append({"id": f"s{s}", "text": text, "words": spans, "tokens": ["▁" + w for w in words]})
    return out


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
    w.finalize(2, _sentences([3, 2, 4]), _manifest_extra())
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
    # the sentence columns are in corpus order too: records decode back to what was given
    assert list(run.sentences) == [{**r, "skipped": False} for r in _sentences([3, 2, 4])]
    assert run.token_piece.tolist() == [0, 1, 2, 0, 1, 0, 1, 2, 3]  # pieces "▁w0".. by first appearance
    assert run.pieces.tolist() == ["▁w0", "▁w1", "▁w2", "▁w3"]
    assert run.token_words().tolist() == [0, 1, 2, 3, 4, 5, 6, 7, 8]


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


def test_missing_text_file_is_detected(tmp_path):
    rid, *_ = _write_run(tmp_path)
    (tmp_path / rid / "texts_bytes.npy").unlink()
    with pytest.raises(RunCorruptError, match="texts_bytes.npy is missing"):
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
    released = tmp_path / "released"
    code = (
        "import time\n"
        "from moe_tui.cache.writer import run_lock\nfrom pathlib import Path\n"
        "with run_lock(Path(%r)):\n    print('held', flush=True); time.sleep(0.5); Path(%r).touch()\n"
    ) % (str(run_dir), str(released))
    proc = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, text=True)
    assert proc.stdout.readline().strip() == "held"
    waited = []
    with run_lock(run_dir, on_wait=waited.append):
        # the holder marks its last step inside the lock: we got the lock only after it let go
        assert released.exists()
    proc.wait()
    assert waited and "another extraction" in waited[0] and f"pid {proc.pid}" in waited[0]


def test_leftover_shards_of_a_complete_run_are_removed(tmp_path):
    rid, *_ = _write_run(tmp_path)
    (tmp_path / rid / "shards").mkdir()
    (tmp_path / rid / "shards" / "shard-00000.npz").write_bytes(b"x")
    RunStore(tmp_path).open(rid)
    assert not (tmp_path / rid / "shards").exists()


# --------------------------------------------------------------------------- the columnar format (schema 2)
def test_format_round_trip_of_every_array_and_record(tmp_path):
    recs, lengths = tricky_records()
    arrays = arrays_for_lengths(lengths)
    run_dir = write_run(tmp_path / run_id_for({"rt": 1}), {"rt": 1}, arrays, recs, store_manifest_extra())
    run = RunStore(tmp_path).open(run_dir.name)
    for name in ("token_ids", "sentence_offsets", "word_index", "pos", "special", "offsets", "experts", "weights"):
        np.testing.assert_array_equal(run.array(name), arrays[name], err_msg=name)
        assert run.array(name).dtype == arrays[name].dtype
    assert len(run.sentences) == len(recs) == run.n_sentences
    assert list(run.sentences) == recs  # every text, id, word span, tag and piece exactly as given
    assert run.sentences[-1] == recs[-1] and run.sentences[3:5] == recs[3:5]
    assert [run.texts[i] for i in range(len(recs))] == [r["text"] for r in recs]
    assert run.sent_ids.tolist() == [r["id"] for r in recs]
    assert run.skipped.tolist() == [r["skipped"] for r in recs]
    # vocabularies: each distinct form / piece once, in order of first appearance
    forms = list(dict.fromkeys(w[0] for r in recs for w in r["words"]))
    assert run.forms.tolist() == forms
    assert run.pieces.tolist() == list(dict.fromkeys(p for r in recs for p in r["tokens"]))
    # a token's word, run-wide, by array arithmetic
    tw = run.token_words()
    for s, r in enumerate(recs):
        for t in range(int(run.sentence_offsets[s]), int(run.sentence_offsets[s + 1])):
            wi = int(run.word_index[t])
            assert (tw[t] == -1) if wi < 0 else (run.forms[int(run.word_form[tw[t]])] == r["words"][wi][0])
    # every file is listed with its checksum; the dtypes are plain numbers, never objects
    m = run.manifest
    assert m["schema"] == 2 and set(ARRAY_NAMES) <= set(m["arrays"]) and m["files"] == {}
    for name, meta in m["arrays"].items():
        arr = np.load(run_dir / f"{name}.npy", allow_pickle=False)
        assert arr.dtype.kind in "biuf" and list(arr.shape) == meta["shape"], name
    assert not (run_dir / "sentences.jsonl").exists()


def test_read_rows_reads_slices_from_the_file(tmp_path):
    recs, lengths = tricky_records()
    run_dir = write_run(tmp_path / "r", {"rr": 1}, arrays_for_lengths(lengths), recs, store_manifest_extra())
    run = RunStore(tmp_path).open(run_dir)
    T = run.n_tokens
    for a, b in ((0, 5), (7, T), (T - 3, T + 10), (4, 4)):
        for name in ("experts", "weights", "special", "offsets"):
            got = run.read_rows(name, a, b)
            np.testing.assert_array_equal(got, np.asarray(run.array(name))[a:b])
            assert not isinstance(got, np.memmap)


def test_optional_arrays_and_unknown_manifest_fields_are_kept(tmp_path):
    """A shard may carry optional per-token arrays (logits): merged in corpus order when asked for, listed, checked;
    left out when not asked for; a shard without them is refused when they are."""
    # asked for, but one shard lacks them (written by an attempt without --save-logits): refused, nothing written
    rid0 = run_id_for({"opt": 0})
    w0 = RunWriter(tmp_path / rid0, {"opt": 0})
    w0.begin()
    a0 = _shard([2, 0], [4, 3], 0)
    a0["logits"] = np.zeros((7, 3, 8), np.float16)
    w0.write_shard(0, a0)
    w0.write_shard(1, _shard([1], [2], 1))
    with pytest.raises(CacheError, match="shard 1 of run .* has no logits"):
        w0.finalize(2, _sentences([3, 2, 4]), _manifest_extra(), optional=("logits",))
    assert not (tmp_path / rid0 / "manifest.json").exists() and not (tmp_path / rid0 / "logits.npy").exists()
    # not asked for: the run has no logits, even though shard 0 carries them
    w0.finalize(2, _sentences([3, 2, 4]), _manifest_extra())
    plain = RunStore(tmp_path).open(rid0)
    assert not plain.has_logits and plain.logits is None and not (tmp_path / rid0 / "logits.npy").exists()

    rid = run_id_for({"opt": 1})
    w = RunWriter(tmp_path / rid, {"opt": 1})
    w.begin()
    s0, s1 = _shard([2, 0], [4, 3], 0), _shard([1], [2], 1)
    s0["logits"] = np.arange(7 * 3 * 8, dtype=np.float16).reshape(7, 3, 8)
    s1["logits"] = -np.arange(2 * 3 * 8, dtype=np.float16).reshape(2, 3, 8)
    w.write_shard(0, s0)
    w.write_shard(1, s1)
    w.finalize(2, _sentences([3, 2, 4]), {**_manifest_extra(), "provenance": {"host": "node7", "git": "abc"}},
               optional=("logits",))
    run = RunStore(tmp_path).open(rid)
    assert run.has_array("logits") and run.has_logits and not run.has_array("nothing")
    np.testing.assert_array_equal(run.logits[0:3], s0["logits"][4:7])
    np.testing.assert_array_equal(run.logits[3:5], s1["logits"])
    np.testing.assert_array_equal(run.logits[5:9], s0["logits"][0:4])
    assert run.manifest["provenance"] == {"host": "node7", "git": "abc"}
    p = tmp_path / rid / "logits.npy"
    data = bytearray(p.read_bytes())
    data[-1] ^= 0x10
    time.sleep(0.01)
    p.write_bytes(bytes(data))
    with pytest.raises(RunCorruptError, match="logits.npy failed its checksum"):
        RunStore(tmp_path).open(rid)


def test_finalize_refuses_pieces_that_do_not_match_the_tokens(tmp_path):
    w = RunWriter(tmp_path / "r", {"z": 2})
    w.begin()
    w.write_shard(0, _shard([0, 1], [3, 2], 0))
    recs = _sentences([3, 2])
    recs[1]["tokens"] = recs[1]["tokens"][:1]
    with pytest.raises(CacheError, match="sentence 1 has 1 token pieces but 2 routed tokens"):
        w.finalize(1, recs, _manifest_extra())
    assert not (tmp_path / "r" / "manifest.json").exists()


def test_finalize_refuses_a_word_index_outside_its_sentence(tmp_path):
    w = RunWriter(tmp_path / "r", {"z": 3})
    w.begin()
    shard = _shard([0, 1], [3, 2], 0)
    shard["word_index"][4] = 2  # sentence 1 has 2 words
    w.write_shard(0, shard)
    with pytest.raises(CacheError, match="token 1 of sentence 1 names word 2, but the sentence has 2"):
        w.finalize(1, _sentences([3, 2]), _manifest_extra())
    assert not (tmp_path / "r" / "manifest.json").exists() and not list((tmp_path / "r").glob(".*tmp*"))


def test_first_open_after_writing_does_not_hash_again(tmp_path, monkeypatch):
    """The writer stamps the files it has just hashed: opening a fresh run only stats them (a large run opens fast),
    and a file changed afterwards is hashed again and caught."""
    import moe_tui.cache.run as run_mod

    rid, *_ = _write_run(tmp_path)
    real = run_mod.sha256_file
    calls = []
    monkeypatch.setattr(run_mod, "sha256_file", lambda p: calls.append(p.name) or real(p))
    RunStore(tmp_path).open(rid)
    assert calls == []
    p = tmp_path / rid / "word_form.npy"
    data = bytearray(p.read_bytes())
    data[-1] ^= 0x01
    time.sleep(0.01)
    p.write_bytes(bytes(data))
    with pytest.raises(RunCorruptError, match="word_form.npy failed its checksum"):
        RunStore(tmp_path).open(rid)
    assert calls == ["word_form.npy"]


def test_opening_a_run_builds_nothing_per_sentence(tmp_path):
    """50,000 sentences: open + the text table + one record allocate a few hundred kB at most (a dict or a string
    per sentence would be megabytes)."""
    import tracemalloc

    n = 50_000
    texts = StringTable.from_strings(f"sentence number {i} is here" for i in range(n))
    text = TextColumns(
        sent_ids=StringTable.from_strings(str(i) for i in range(n)), texts=texts, skipped=np.zeros(n, bool),
        word_offsets=np.arange(n + 1, dtype=np.int64), word_form=np.zeros(n, np.int32),
        word_tag=np.zeros(n, np.int16), word_spans=np.zeros((n, 2), np.int32),
        forms=StringTable.from_strings(["sentence"]), word_tags=["NOUN"],
        token_piece=np.zeros(n, np.int32), token_counts=np.ones(n, np.int64),
        pieces=StringTable.from_strings(["▁sentence"]))
    T = n
    arrays = {"token_ids": np.zeros(T, np.int32), "sentence_offsets": np.arange(n + 1, dtype=np.int64),
              "word_index": np.zeros(T, np.int32), "pos": np.zeros(T, np.int16), "special": np.zeros(T, bool),
              "crossing": np.zeros(T, bool), "offsets": np.zeros((T, 2), np.int32),
              "experts": np.zeros((T, 2, 2), np.uint8), "weights": np.zeros((T, 2, 2), np.float16)}
    run_dir = write_run(tmp_path / "big", {"big": 1}, arrays, text, store_manifest_extra())
    tracemalloc.start()
    run = RunStore(tmp_path).open(run_dir)
    assert len(run.texts) == n and run.texts[n - 1] == f"sentence number {n - 1} is here"
    assert run.sentences[123]["text"] == "sentence number 123 is here" and len(run.sentences) == n
    _, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    assert peak < 400_000, peak


def test_disk_full_while_merging_is_an_error_not_a_crash(tmp_path, monkeypatch):
    """The merged arrays are written through memory maps; their blocks are reserved first, so a full disk is one
    CacheError (not a SIGBUS while writing the map). Nothing half-written stays; the shards do, and a second
    finalize completes the run."""
    import errno

    import moe_tui.cache.writer as writer_mod

    if not hasattr(os, "posix_fallocate"):
        pytest.skip("no posix_fallocate on this platform")
    rid = run_id_for({"full": 1})
    w = RunWriter(tmp_path / rid, {"full": 1})
    w.begin()
    w.write_shard(0, _shard([2, 0], [4, 3], 0))
    w.write_shard(1, _shard([1], [2], 1))
    real = os.posix_fallocate

    def full(fd, offset, length):
        if os.readlink(f"/proc/self/fd/{fd}").endswith(f"weights.npy.tmp-{os.getpid()}"):
            raise OSError(errno.ENOSPC, "No space left on device")
        return real(fd, offset, length)

    monkeypatch.setattr(writer_mod.os, "posix_fallocate", full)
    with pytest.raises(CacheError, match=r"cannot write .*weights\.npy: No space left on device"):
        w.finalize(2, _sentences([3, 2, 4]), _manifest_extra())
    assert not (tmp_path / rid / "manifest.json").exists()
    assert [p.name for p in (tmp_path / rid).iterdir() if ".tmp-" in p.name] == []
    assert w.done_shards(2) == {0, 1}
    monkeypatch.undo()
    w.finalize(2, _sentences([3, 2, 4]), _manifest_extra())
    assert RunStore(tmp_path).open(rid).experts.shape == (9, L, K)
