"""Finding models to offer in the model pane. Reads config.json files only (no torch, no network)."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

MOE_MODEL_TYPES = frozenset({
    "mixtral", "qwen2_moe", "qwen3_moe", "qwen3_next", "qwen3_vl_moe", "olmoe", "flex_olmo", "deepseek_v2", "deepseek_v3",
    "phimoe", "granitemoe", "granitemoeshared", "granitemoehybrid", "jamba", "dbrx", "jetmoe", "switch_transformers",
    "nllb_moe", "gpt_oss", "llama4", "llama4_text", "minimax", "ernie4_5_moe", "glm4_moe", "glm4v_moe", "hunyuan_v1_moe",
    "dots1", "bailing_moe", "lfm2_moe", "longcat_flash", "aria_text", "gptsan-japanese", "arcee_moe", "moe_demo",
})
_MOE_KEYS = ("num_local_experts", "num_experts", "n_routed_experts", "moe_num_experts", "num_experts_per_tok")


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


def is_moe_config(cfg: dict) -> bool:
    mt = str(cfg.get("model_type", ""))
    if mt in MOE_MODEL_TYPES:
        return True
    text = cfg.get("text_config")
    if isinstance(text, dict) and is_moe_config(text):
        return True
    for key in _MOE_KEYS:
        v = cfg.get(key)
        if isinstance(v, int) and v > 1:
            return True
    return False


def demo_entry() -> ModelEntry | None:
    try:
        from moe_tui.core.demo import demo_model_path  # type: ignore[attr-defined]
    except ImportError:
        return None
    try:
        p = Path(demo_model_path())
    except Exception:  # noqa: BLE001 - a broken demo must not break the model list
        return None
    return ModelEntry("demo model (built in)", str(p), "demo") if p.is_dir() else None


def demo_corpus() -> str | None:
    try:
        import moe_tui.core.demo as demo
    except ImportError:
        return None
    fn = getattr(demo, "demo_corpus_path", None)
    if fn is None:
        return None
    try:
        p = Path(fn())
    except Exception:  # noqa: BLE001
        return None
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
        if getattr(repo, "repo_type", "model") != "model":
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
