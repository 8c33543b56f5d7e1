"""The run store: one directory per extraction run, numpy arrays + JSON, never pickle.

Layout of a run directory ``<root>/<run_id>/`` (run format, schema 2)::

    identity.json        what the run is (model fingerprint x corpus hash x tagset x options) + created time
    .lock                advisory lock held by the extraction writing this run
    shards/plan.json     the fixed batch plan (sentence indices per shard)
    shards/shard-NNNNN.npz   one complete batch, written atomically (temp file + rename)
    manifest.json        written last, atomically: the run is complete only when it exists
    per token [T]:       token_ids word_index pos special crossing offsets experts weights token_piece (.npy)
                         (+ optional per-token arrays of OPTIONAL_ARRAYS, listed in the manifest like the others:
                         logits.npy, float16 [T, L, N], each router's raw logits, with extract --save-logits;
                         origin.npy, uint8 [T], 0 prompt / 1 generated, in runs made by moe-tui generate)
    per sentence [S]:    sentence_offsets [S+1] word_offsets [S+1] skipped, texts_* and sent_ids_* string tables
    per word [W]:        word_form word_tag word_spans
    vocabularies:        forms_* (word forms) and pieces_* (tokenizer pieces) string tables
    .verified.json       size/mtime of every file whose sha256 was checked (so an unchanged run opens fast)

A string table NAME is ``NAME_offsets.npy`` (``int64 [n+1]``) + ``NAME_bytes.npy`` (``uint8``, UTF-8): string i
is ``bytes[offsets[i]:offsets[i+1]]``. Every array is loaded memory-mapped, read-only, and nothing per token or
per sentence becomes a Python object when a run is opened. Schema-1 runs (``sentences.jsonl``) are migrated in
place on open (:mod:`moe_tui.cache.migrate`).

Every file is written to a temporary name in the same directory, fsynced, and renamed into
place, so a crash (even ``kill -9``) leaves either the old state or the new one.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

from moe_tui.cache.layout import RUN_ID_PATTERN
from moe_tui.cache.run import Run
from moe_tui.errors import CacheError


def cache_root(override: str | os.PathLike | None = None) -> Path:
    """Where runs live: ``override``, else ``$MOE_TUI_CACHE``, else the platform user cache dir."""
    if override:
        return Path(override).expanduser()
    env = os.environ.get("MOE_TUI_CACHE")
    if env:
        return Path(env).expanduser()
    import platformdirs

    return platformdirs.user_cache_path("moe-tui") / "runs"


@dataclass(frozen=True)
class RunInfo:
    run_id: str
    path: Path
    model: str
    corpus: str
    tokens: int | None
    created: str
    status: str  # "complete" | "partial"
    provenance: dict | None = None  # versions and model commit the run was made with (complete runs)
    logits: bool = False  # the run holds logits.npy


class RunStore:
    """The runs under one cache root."""

    def __init__(self, root: str | os.PathLike | None = None):
        self.root = cache_root(root)

    def path(self, run_id: str) -> Path:
        return self.root / run_id

    def is_complete(self, run_id: str) -> bool:
        return (self.path(run_id) / "manifest.json").exists()

    def resolve(self, ref: str) -> Path:
        """A run id (or a unique prefix of one), or a path to a run directory."""
        p = Path(ref).expanduser()
        if (p / "manifest.json").exists() or (p / "identity.json").exists():
            return p
        if self.root.is_dir():
            if (self.root / ref).is_dir():
                return self.root / ref
            matches = [d for d in self.root.iterdir() if d.is_dir() and d.name.startswith(ref)] if ref else []
            if len(matches) == 1:
                return matches[0]
            if len(matches) > 1:
                raise CacheError(f"run id prefix {ref!r} is ambiguous ({len(matches)} runs); give more digits")
        raise CacheError(f"unknown run {ref!r} (see `moe-tui runs`; cache: {self.root})")

    def open(self, ref: str | os.PathLike, *, verify: bool = True, migrate: bool = True,
             on_notice: Callable[[str], None] | None = None) -> Run:
        """Open a finished run (a schema-1 run is migrated first; ``on_notice`` hears about it)."""
        return Run(self.resolve(str(ref)), verify=verify, migrate=migrate, on_notice=on_notice)

    def list_runs(self) -> list[RunInfo]:
        out: list[RunInfo] = []
        if not self.root.is_dir():
            return out
        for d in sorted(self.root.iterdir()):
            if not d.is_dir() or not RUN_ID_PATTERN.match(d.name):
                continue
            status = "complete" if (d / "manifest.json").exists() else "partial"
            try:
                src = json.loads((d / ("manifest.json" if status == "complete" else "identity.json")).read_text())
            except (OSError, ValueError):
                continue
            ident = src.get("identity", {})
            tokens = None
            if status == "complete":
                shape = src.get("arrays", {}).get("token_ids", {}).get("shape")
                tokens = int(shape[0]) if shape else None
            prov = src.get("provenance") if status == "complete" else None
            out.append(RunInfo(
                run_id=d.name, path=d,
                model=str(ident.get("model", {}).get("name_or_path", "?")),
                corpus=os.path.basename(str(ident.get("corpus", {}).get("path", "?"))),
                tokens=tokens, created=str(src.get("created", "")), status=status,
                provenance=prov if isinstance(prov, dict) else None,
                logits="logits" in src.get("arrays", {}),
            ))
        out.sort(key=lambda r: r.created, reverse=True)
        return out
