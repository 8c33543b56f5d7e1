"""The run format's names and identities: which arrays a run holds, how a run's id and checksums are made.

The format itself (files, shapes, dtypes, string tables) is described once, in docs/run-format.md.
"""

from __future__ import annotations

import hashlib
import re
from pathlib import Path
from typing import Sequence

from moe_tui.fileio import canonical_json

SCHEMA_VERSION = 2
# per-token arrays every shard carries (a shard may carry more, e.g. logits: they are merged the same way)
TOKEN_ARRAYS = ("token_ids", "word_index", "pos", "special", "crossing", "offsets", "experts", "weights")
SHARD_ARRAYS = ("lengths", "sentence_index", *TOKEN_ARRAYS)
STRING_TABLES = ("sent_ids", "texts", "forms", "pieces")
TEXT_ARRAYS = (
    *(f"{t}_{part}" for t in STRING_TABLES for part in ("offsets", "bytes")),
    "skipped", "word_offsets", "word_form", "word_tag", "word_spans", "token_piece",
)
# the arrays a schema-2 run must have (optional ones, such as logits, are listed in its manifest too)
ARRAY_NAMES = ("token_ids", "sentence_offsets", "word_index", "pos", "special", "crossing", "offsets", "experts",
               "weights", *TEXT_ARRAYS)
V1_ARRAY_NAMES = ("token_ids", "sentence_offsets", "word_index", "pos", "special", "crossing", "offsets", "experts",
                  "weights")
#: per-token arrays a run (and its shards) may hold; listed in the manifest and checksummed when present
#: (``origin``: uint8 [T], 0 prompt / 1 generated, in runs made by ``moe-tui generate``)
OPTIONAL_ARRAYS = ("logits", "origin")
#: what ``origin`` codes mean: ``ORIGIN_NAMES[origin[t]]``
ORIGIN_NAMES = ("prompt", "generated")
RUN_ID_PATTERN = re.compile(r"^[0-9a-f]{16}$")


def tool_version() -> str:
    try:
        from importlib.metadata import version

        return version("moe-tui")
    except Exception:  # pragma: no cover - running from a source tree without install
        return "0+unknown"


def manifest_digest(manifest: dict) -> str:
    """sha256 over the canonical JSON of a manifest without its own ``manifest_sha256`` field."""
    body = {k: v for k, v in manifest.items() if k != "manifest_sha256"}
    return hashlib.sha256(canonical_json(body).encode()).hexdigest()


def run_id_for(identity: dict) -> str:
    """A run's id: the first 16 hex digits of sha256 over the canonical JSON of its identity."""
    return hashlib.sha256(canonical_json(identity).encode()).hexdigest()[:16]


def sha256_file(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def file_meta(path: Path, arr_dtype: str | None = None, shape: Sequence[int] | None = None) -> dict:
    """Manifest entry of one written file: dtype and shape (arrays), bytes and sha256."""
    meta: dict = {}
    if arr_dtype is not None:
        meta["dtype"] = arr_dtype
        meta["shape"] = [int(x) for x in shape or ()]
    meta["bytes"] = path.stat().st_size
    meta["sha256"] = sha256_file(path)
    return meta


def file_name(entry: str) -> str:
    return entry if entry.endswith(".jsonl") else f"{entry}.npy"
