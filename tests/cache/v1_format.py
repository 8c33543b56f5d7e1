"""Schema-1 runs, written as moe-tui 0.1 wrote them (its ``RunWriter.finalize``): nine ``.npy`` arrays, one JSON
record per sentence in ``sentences.jsonl``, and a ``manifest.json`` with ``"schema": 1`` listing both. Tests use it to
make the old runs that moe-tui must migrate (or refuse)."""

from __future__ import annotations

import hashlib
import io
import json
import shutil
from pathlib import Path

import numpy as np

from moe_tui.fileio import canonical_json

V1_ARRAYS = ("token_ids", "sentence_offsets", "word_index", "pos", "special", "crossing", "offsets", "experts",
             "weights")


def _sha(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _digest(manifest: dict) -> str:
    body = {k: v for k, v in manifest.items() if k != "manifest_sha256"}
    return hashlib.sha256(canonical_json(body).encode()).hexdigest()


def write_v1_run(run_dir: Path, identity: dict, arrays: dict[str, np.ndarray], records: list[dict],
                 manifest_extra: dict, *, created: str = "2026-01-01T00:00:00Z") -> Path:
    """A complete schema-1 run from arrays in corpus order and one record per sentence."""
    run_dir = Path(run_dir)
    run_dir.mkdir(parents=True, exist_ok=True)
    (run_dir / "identity.json").write_text(json.dumps({"identity": identity, "created": created,
                                                       "run_id": run_dir.name}, indent=2, sort_keys=True) + "\n")
    meta = {}
    for name in V1_ARRAYS:
        arr = np.ascontiguousarray(arrays[name])
        buf = io.BytesIO()
        np.save(buf, arr, allow_pickle=False)
        path = run_dir / f"{name}.npy"
        path.write_bytes(buf.getvalue())
        meta[name] = {"dtype": str(arr.dtype), "shape": list(arr.shape), "bytes": path.stat().st_size,
                      "sha256": _sha(path)}
    sent = run_dir / "sentences.jsonl"
    sent.write_text("".join(json.dumps(s, ensure_ascii=False) + "\n" for s in records), encoding="utf-8")
    manifest = {"schema": 1, "tool_version": "0.1.0", "run_id": run_dir.name, "identity": identity,
                "created": created, "status": "complete", "arrays": meta,
                "files": {"sentences.jsonl": {"bytes": sent.stat().st_size, "sha256": _sha(sent)}},
                **manifest_extra}
    manifest = json.loads(json.dumps(manifest, default=str))
    manifest["manifest_sha256"] = _digest(manifest)
    (run_dir / "manifest.json").write_text(json.dumps(manifest, indent=2, sort_keys=True, default=str) + "\n")
    return run_dir


def downgrade_to_v1(run_dir: Path, out_dir: Path) -> Path:
    """The schema-1 run moe-tui 0.1 would have written for the same extraction as the schema-2 run at ``run_dir``
    (same arrays, same records, same manifest fields), written to ``out_dir``."""
    from moe_tui.cache.run import Run

    run = Run(Path(run_dir))
    m = run.manifest
    records = [{**r} for r in run.sentences]
    arrays = {name: np.asarray(run.array(name)) for name in V1_ARRAYS}
    skip = {"schema", "tool_version", "run_id", "identity", "created", "status", "arrays", "files", "word_tags",
            "manifest_sha256"}
    extra = {k: v for k, v in m.items() if k not in skip}
    out_dir = Path(out_dir)
    if out_dir.exists():
        shutil.rmtree(out_dir)
    return write_v1_run(out_dir, m["identity"], arrays, records, extra, created=m["created"])
