"""Finding models to offer in the model pane. Reads config.json files only (no torch, no network).

Which configs are MoE models is the core's architecture registry (:func:`moe_tui.core.extract.architectures.is_moe_config`).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

from moe_tui.core.demo import demo_corpus_path, demo_model_path
from moe_tui.core.extract.architectures import is_moe_config

__all__ = ["ModelEntry", "read_config", "is_moe_config", "demo_entry", "demo_corpus", "hf_cache_models",
           "discover_models"]


@dataclass(frozen=True)
class ModelEntry:
    label: str
    path: str
    source: str      # demo | folder | recent | hf-cache
    model_type: str = ""


def read_config(path: str | Path) -> dict | None:
    p = Path(path) / "config.json"
    try:
        data = json.loads(p.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) else None


def demo_entry() -> ModelEntry | None:
    """The built-in demo model (None if its folder is missing from this install)."""
    p = demo_model_path()
    return ModelEntry("demo model (built in)", str(p), "demo") if p.is_dir() else None


def demo_corpus() -> str | None:
    """The built-in demo corpus (None if missing from this install)."""
    p = demo_corpus_path()
    return str(p) if p.exists() else None


def hf_cache_models() -> list[ModelEntry]:
    """MoE models in the local Hugging Face hub cache (scan only, never the network)."""
    try:
        from huggingface_hub import scan_cache_dir

        info = scan_cache_dir()
    except Exception:  # noqa: BLE001 - no cache dir, corrupt cache...
        return []
    out = []
    for repo in sorted(info.repos, key=lambda r: r.repo_id):
        if repo.repo_type != "model":
            continue
        revs = sorted(repo.revisions, key=lambda r: r.last_modified, reverse=True)
        for rev in revs:
            cfg = read_config(rev.snapshot_path)
            if cfg is None:
                continue
            if is_moe_config(cfg):
                out.append(ModelEntry(repo.repo_id, repo.repo_id, "hf-cache", str(cfg.get("model_type", ""))))
            break
    return out


def discover_models(folders: list[str], recent: list[str], *, scan_hf: bool = True) -> list[ModelEntry]:
    seen: set[str] = set()
    out: list[ModelEntry] = []

    def add(e: ModelEntry | None) -> None:
        if e is not None and e.path not in seen:
            seen.add(e.path)
            out.append(e)

    add(demo_entry())
    for f in folders:
        add(ModelEntry(f, f, "folder"))
    for r in recent:
        add(ModelEntry(r, r, "recent"))
    if scan_hf:
        for e in hf_cache_models():
            add(e)
    return out
