"""Schema-1 runs (per-sentence JSON records in ``sentences.jsonl``) to the columnar run format (schema 2), in place.

The routing arrays of a schema-1 run are already what schema 2 stores; only the sentence text changes form. The
migration checks the schema-1 files against their checksums, writes the sentence columns beside them (each file
atomically), then commits by replacing ``manifest.json`` atomically (schema 2, every other manifest field kept),
and only then removes ``sentences.jsonl``. A crash before the commit leaves a valid schema-1 run (the new files
are not listed by its manifest, and are rewritten by the next attempt); a crash after it leaves a valid schema-2
run (a stray ``sentences.jsonl`` is removed on the next open). It runs under the run's lock, so two processes
opening the same old run migrate it once.

When a run cannot be migrated (its folder is read-only, or migration is turned off) it is refused in one line that
says how to extract it again.
"""

from __future__ import annotations

import json
import os
import shlex
from pathlib import Path
from typing import Callable, Iterator

import numpy as np

from moe_tui.cache.columns import TextColumns
from moe_tui.cache.layout import ARRAY_NAMES, SCHEMA_VERSION, V1_ARRAY_NAMES, manifest_digest
from moe_tui.cache.run import read_manifest, verify_files
from moe_tui.cache.writer import run_lock, stamp_verified, write_arrays
from moe_tui.errors import CacheError, RunCorruptError
from moe_tui.fileio import atomic_write_json

__all__ = ["migrate_v1", "reextract_command"]


def reextract_command(manifest: dict) -> str:
    """The ``moe-tui extract`` command line that makes the run of ``manifest`` again (same identity, same id)."""
    ident = manifest.get("identity") or {}
    model = ident.get("model") or {}
    corpus = ident.get("corpus") or {}
    sel = corpus.get("selection") or {}
    opts = ident.get("options") or {}
    args = ["moe-tui", "extract", "--model", str(model.get("name_or_path", "MODEL")),
            "--data", str(corpus.get("path", "CORPUS"))]
    if ident.get("tagset") not in (None, "upos"):
        args += ["--tagset", str(ident["tagset"])]
    if corpus.get("pos_column") not in (None, "upos"):
        args += ["--pos-column", str(corpus["pos_column"])]
    if sel.get("max_sentences"):
        args += ["--max-sentences", str(sel["max_sentences"])]
    if sel.get("sample"):
        args += ["--sample", str(sel["sample"]), "--seed", str(sel.get("seed", 0))]
    if model.get("revision"):
        args += ["--revision", str(model["revision"])]
    if opts.get("dtype") not in (None, "auto"):
        args += ["--dtype", str(opts["dtype"])]
    if opts.get("quantization") not in (None, "none"):
        args += ["--quantization", str(opts["quantization"])]
    if opts.get("trust_remote_code"):
        args.append("--trust-remote-code")
    return " ".join(shlex.quote(a) for a in args)


def _refuse(path: Path, manifest: dict, why: str) -> CacheError:
    return CacheError(f"run {path.name} is in the old run format (schema 1) and {why}; extract it again: "
                      f"{reextract_command(manifest)}")


def _writable(path: Path) -> bool:
    probe = path / f".migrate-probe.tmp-{os.getpid()}"
    try:
        with open(probe, "wb"):
            pass
        probe.unlink()
        return True
    except OSError:
        return False


def _records(path: Path) -> Iterator[dict]:
    with open(path, encoding="utf-8") as fh:
        for line in fh:
            if line.strip():
                yield json.loads(line)


def migrate_v1(path: Path, manifest: dict, *, allow: bool = True,
               on_notice: Callable[[str], None] | None = None) -> dict:
    """Migrate the schema-1 run at ``path`` (whose checked manifest is ``manifest``) to schema 2 in place; return
    the new manifest. Raises :class:`RunCorruptError` for a damaged run and :class:`CacheError` (with the
    re-extract command) when it cannot be migrated."""
    path = Path(path)
    if not allow:
        raise _refuse(path, manifest, "this command does not migrate runs")
    verify_files(path, manifest, V1_ARRAY_NAMES)
    if "sentences.jsonl" not in manifest.get("files", {}):
        raise RunCorruptError(f"run {path.name}: manifest lists no sentences.jsonl file")
    if not _writable(path):
        raise _refuse(path, manifest, f"its folder {path} is read-only, so it cannot be migrated here")
    with run_lock(path, on_wait=on_notice):
        current = read_manifest(path)
        if current.get("schema") == SCHEMA_VERSION:  # another process migrated it while we waited
            return current
        if current != manifest:
            manifest = current
            verify_files(path, manifest, V1_ARRAY_NAMES)
        if on_notice is not None:
            on_notice(f"run {path.name}: converting it to the columnar run format (schema {SCHEMA_VERSION}), once")
        try:
            text = TextColumns.from_records(_records(path / "sentences.jsonl"))
            text.validate()
        except (ValueError, KeyError, TypeError, IndexError) as exc:
            raise _refuse(path, manifest, f"its sentences.jsonl cannot be converted ({exc})") from None
        lengths = np.diff(np.load(path / "sentence_offsets.npy", allow_pickle=False))
        if len(lengths) != text.n_sentences or not np.array_equal(lengths, text.token_counts):
            raise _refuse(path, manifest, "its sentences.jsonl does not match its arrays")
        meta = write_arrays(path, text.arrays())
        arrays = dict(manifest.get("arrays", {}))
        arrays.update(meta)
        new = {k: v for k, v in manifest.items() if k != "manifest_sha256"}
        new["schema"] = SCHEMA_VERSION
        new["arrays"] = {n: arrays[n] for n in (*ARRAY_NAMES, *sorted(set(arrays) - set(ARRAY_NAMES)))}
        new["files"] = {k: v for k, v in (manifest.get("files") or {}).items() if k != "sentences.jsonl"}
        new["word_tags"] = list(text.word_tags)
        new["migrated_from_schema"] = 1
        new = json.loads(json.dumps(new, default=str))
        new["manifest_sha256"] = manifest_digest(new)
        stamp_verified(path, meta, merge=True)
        atomic_write_json(path / "manifest.json", new)  # the commit point
        try:
            (path / "sentences.jsonl").unlink()
        except OSError:
            pass
        return new
