"""Schema-1 runs: migrated in place, atomically, to the columnar format; refused in one line (with the command that
extracts them again) when they cannot be; a damaged one is reported, never converted."""

from __future__ import annotations

import contextlib
import json
import os
import subprocess
from pathlib import Path

import numpy as np
import pytest

import moe_tui.cache.migrate as migrate_mod
from moe_tui.cache.layout import run_id_for
from moe_tui.cache.store import RunStore
from moe_tui.cache.writer import write_run
from moe_tui.errors import CacheError, RunCorruptError
from tests.cache.v1_format import V1_ARRAYS, write_v1_run
from tests.runs import arrays_for_lengths, store_manifest_extra, tricky_records

IDENTITY = {
    "extraction_version": 1,
    "model": {"name_or_path": "/models/My MoE", "revision": None},
    "corpus": {"path": "/data/en_ewt-ud-dev.conllu", "pos_column": "xpos",
               "selection": {"max_sentences": 200, "sample": None, "seed": 0}},
    "tagset": "paper15",
    "options": {"dtype": "bfloat16", "quantization": "none", "trust_remote_code": False},
}


def _files(d: Path) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in sorted(Path(d).iterdir()) if p.is_file() and p.name != ".lock"}


@pytest.fixture
def v1(tmp_path):
    recs, lengths = tricky_records(seed=3)
    arrays = arrays_for_lengths(lengths, seed=4)
    extra = store_manifest_extra(provenance={"host": "gpu-node-3", "argv": ["moe-tui", "extract"]})
    root = tmp_path / "cache"
    run_dir = write_v1_run(root / run_id_for(IDENTITY), IDENTITY, arrays, recs, extra)
    return root, run_dir, recs, arrays, extra


def test_a_schema_1_run_is_migrated_in_place_on_open(v1, tmp_path):
    root, run_dir, recs, arrays, extra = v1
    before = _files(run_dir)
    notices = []
    run = RunStore(root).open(run_dir.name, on_notice=notices.append)
    assert notices == [f"run {run_dir.name}: converting it to the columnar run format (schema 2), once"]
    m = run.manifest
    assert m["schema"] == 2 and m["migrated_from_schema"] == 1
    assert m["provenance"] == extra["provenance"] and m["identity"] == IDENTITY and m["created"] == "2026-01-01T00:00:00Z"
    assert "sentences.jsonl" not in m["files"] and not (run_dir / "sentences.jsonl").exists()
    # the routing arrays are untouched, byte for byte; the records read back exactly
    after = _files(run_dir)
    for name in V1_ARRAYS:
        assert after[f"{name}.npy"] == before[f"{name}.npy"], name
    assert list(run.sentences) == recs
    # and the run is exactly the one this moe-tui writes for the same input
    fresh = write_run(tmp_path / "fresh" / run_dir.name, IDENTITY, arrays, recs, extra)
    for p in sorted(fresh.glob("*.npy")):
        assert after[p.name] == p.read_bytes(), p.name
    fm = json.loads((fresh / "manifest.json").read_text())
    assert m["arrays"] == fm["arrays"] and m["word_tags"] == fm["word_tags"]
    assert not [p for p in run_dir.iterdir() if ".tmp-" in p.name]
    # a second open is a plain schema-2 open: no notice, nothing rewritten
    again = []
    RunStore(root).open(run_dir.name, on_notice=again.append)
    assert again == [] and _files(run_dir) == after


def test_a_migration_stopped_before_its_commit_leaves_the_old_run(v1, monkeypatch):
    """Stopped while committing (the manifest write): the run is still a valid schema-1 run; the next open
    migrates it."""
    root, run_dir, recs, *_ = v1
    before = {k: v for k, v in _files(run_dir).items()}

    def stop(*a, **k):
        raise KeyboardInterrupt

    monkeypatch.setattr(migrate_mod, "atomic_write_json", stop)
    with pytest.raises(KeyboardInterrupt):
        RunStore(root).open(run_dir.name)
    m = json.loads((run_dir / "manifest.json").read_text())
    assert m["schema"] == 1 and (run_dir / "sentences.jsonl").read_bytes() == before["sentences.jsonl"]
    assert (run_dir / "manifest.json").read_bytes() == before["manifest.json"]
    monkeypatch.undo()
    assert list(RunStore(root).open(run_dir.name).sentences) == recs


def test_a_stray_schema_1_file_after_the_commit_is_removed(v1):
    root, run_dir, *_ = v1
    saved = (run_dir / "sentences.jsonl").read_bytes()
    RunStore(root).open(run_dir.name)
    (run_dir / "sentences.jsonl").write_bytes(saved)  # as if killed between the commit and the clean-up
    RunStore(root).open(run_dir.name)
    assert not (run_dir / "sentences.jsonl").exists()


@contextlib.contextmanager
def read_only(path: Path):
    """Make a directory read-only for this process: chattr +i as root (root ignores modes), chmod otherwise."""
    if os.geteuid() == 0:
        subprocess.run(["chattr", "+i", str(path)], check=True)
        try:
            yield
        finally:
            subprocess.run(["chattr", "-i", str(path)], check=True)
    else:
        mode = path.stat().st_mode
        path.chmod(0o555)
        try:
            yield
        finally:
            path.chmod(mode)


def test_a_schema_1_run_in_a_read_only_folder_is_refused_in_one_line(v1, capsys):
    from moe_tui.cli import main

    root, run_dir, *_ = v1
    before = _files(run_dir)
    with read_only(run_dir):
        code = main(["export-routes", run_dir.name, "--out", str(root.parent / "r.csv"), "--cache-dir", str(root)])
    _, err = capsys.readouterr()
    assert code == 2
    lines = err.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in err
    assert lines[0] == (
        f"moe-tui: error: run {run_dir.name} is in the old run format (schema 1) and its folder {run_dir} is "
        "read-only, so it cannot be migrated here; extract it again: moe-tui extract --model '/models/My MoE' "
        "--data /data/en_ewt-ud-dev.conllu --tagset paper15 --pos-column xpos --max-sentences 200 --dtype bfloat16")
    assert _files(run_dir) == before and not (root.parent / "r.csv").exists()


def test_refusal_when_migration_is_off(v1):
    root, run_dir, *_ = v1
    with pytest.raises(CacheError, match=r"schema 1\) and this command does not migrate runs; extract it again: "
                                         r"moe-tui extract --model"):
        RunStore(root).open(run_dir.name, migrate=False)


def test_a_damaged_schema_1_run_is_reported_not_migrated(v1):
    root, run_dir, *_ = v1
    p = run_dir / "sentences.jsonl"
    text = p.read_text(encoding="utf-8")
    p.write_text(text.replace('"text": "', '"text": "X', 1), encoding="utf-8")
    before = _files(run_dir)
    with pytest.raises(RunCorruptError, match="sentences.jsonl has .* bytes"):
        RunStore(root).open(run_dir.name)
    assert _files(run_dir) == before
    q = run_dir / "experts.npy"
    data = bytearray(q.read_bytes())
    data[-1] ^= 1
    q.write_bytes(bytes(data))
    p.write_text(text, encoding="utf-8")
    with pytest.raises(RunCorruptError, match="experts.npy failed its checksum"):
        RunStore(root).open(run_dir.name)
    assert json.loads((run_dir / "manifest.json").read_text())["schema"] == 1


def test_a_schema_1_run_whose_records_do_not_fit_its_arrays_is_refused(tmp_path):
    recs, lengths = tricky_records(seed=5)
    recs[2]["tokens"] = recs[2]["tokens"][:-1]  # written by a buggy tool: one piece short
    run_dir = write_v1_run(tmp_path / "c" / "00000000000000aa", IDENTITY, arrays_for_lengths(lengths), recs, store_manifest_extra())
    with pytest.raises(CacheError, match="sentences.jsonl does not match its arrays; extract it again"):
        RunStore(tmp_path / "c").open(run_dir.name)
    assert json.loads((run_dir / "manifest.json").read_text())["schema"] == 1


def test_a_newer_schema_is_refused(tmp_path):
    recs, lengths = tricky_records()
    run_dir = write_run(tmp_path / "c" / "00000000000000bb", {"n": 1}, arrays_for_lengths(lengths), recs, store_manifest_extra())
    m = json.loads((run_dir / "manifest.json").read_text())
    m["schema"] = 3
    m.pop("manifest_sha256")
    (run_dir / "manifest.json").write_text(json.dumps(m))
    with pytest.raises(CacheError, match="has schema 3; this moe-tui reads schema 2 .* upgrade moe-tui"):
        RunStore(tmp_path / "c").open(run_dir.name)


def test_migrated_exports_equal_the_old_rowwise_ones(v1, tmp_path):
    """The export of a migrated run is what moe-tui 0.1 wrote for the schema-1 run (its row-by-row code over the
    JSON records, kept as export_routes_rowwise)."""
    from moe_tui.core.inspect.export import export_routes

    root, run_dir, recs, arrays, _ = v1
    run = RunStore(root).open(run_dir.name)
    out = export_routes(run, tmp_path / "a.csv")
    # the old exporter's rows, from the records and arrays as 0.1 read them
    import csv
    import io

    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    w.writerow(["sentence", "token", "token_text", "word", "pos", "layer", "rank", "expert", "weight"])
    tags = ["NOUN", "VERB", "X"]
    off = arrays["sentence_offsets"]
    for s, rec in enumerate(recs):
        for t in range(int(off[s + 1] - off[s])):
            g = int(off[s]) + t
            if arrays["special"][g]:
                continue
            wi = int(arrays["word_index"][g])
            p = int(arrays["pos"][g])
            for li in range(arrays["experts"].shape[1]):
                for r in range(arrays["experts"].shape[2]):
                    w.writerow([s, t, rec["tokens"][t], rec["words"][wi][0] if wi >= 0 else "",
                                tags[p] if p >= 0 else "", li, r, int(arrays["experts"][g, li, r]),
                                repr(float(arrays["weights"][g, li, r]))])
    assert out.read_bytes() == buf.getvalue().encode("utf-8")
    assert np.asarray(run.experts).tobytes() == arrays["experts"].tobytes()
