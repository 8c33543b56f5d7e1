"""Model loading and router discovery for Mixture-of-Experts causal LMs (transformers 5.x).

torch / transformers / accelerate are imported lazily inside functions: importing this module is cheap.

Router discovery rule: the MoE layers are the decoder layers (``...layers.{i}.`` / ``...blocks.{i}.``)
that contain a router module, i.e. a module whose class name ends in ``TopKRouter`` / ``TopkRouter`` /
``Router`` / ``Gating`` / ``Gate`` (minus a few non-router "gates" such as linear-attention forget gates).
Per-architecture quirks are named in the registry :mod:`moe_tui.core.extract.architectures` (``ADAPTERS``,
``REFUSED``) and applied by :mod:`moe_tui.core.extract.capture`.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from moe_tui.core.extract.architectures import (
    ADAPTERS,
    EXPERT_COUNT_FIELDS,
    REFUSED,
    SHARED_FIELDS,
    SHARED_SIZE_FIELDS,
    TOPK_FIELDS,
)
from moe_tui.errors import ModelError, NotMoEError, RemoteCodeRequired

if TYPE_CHECKING:  # pragma: no cover
    pass

__all__ = [
    "ModelFacts",
    "LoadedModel",
    "RouterSite",
    "ADAPTERS",
    "REFUSED",
    "resolve_model_fingerprint",
    "load_model",
    "check_quantization",
    "resolve_device_map",
    "resolve_max_memory",
    "inspect_model",
    "discover_routers",
]

# --------------------------------------------------------------------------------------------------
# Architecture registry
# --------------------------------------------------------------------------------------------------

# ADAPTERS (model_type -> adapter name used by moe_tui.core.extract.capture) and REFUSED (model_type -> why it
# cannot be captured) come from the one registry, moe_tui.core.extract.architectures.

_ROUTER_CLASS_RE = re.compile(r"(TopKRouter|TopkRouter|Router|Gating|Gate)$")
_NOT_ROUTER_RE = re.compile(r"(ForgetGate|ResidualGate|DensityRouter|OutputGate|InputGate|AttnGate)$", re.I)
_LAYER_RE = re.compile(r"(?:^|\.)(?:layers|blocks|h|decoder_layers)\.(\d+)(?:\.|$)")
_ATTENTION_PATH_RE = re.compile(r"(?:^|\.)(self_attention|self_attn|attention|attn)(?:\.|$)")
_MOE_PATH_HINT_RE = re.compile(r"(?:^|\.)(mlp|moe|ffn|feed_forward|block_sparse_moe|mixer|router|gate)(?:\.|$)")

_EXPERT_COUNT_FIELDS = EXPERT_COUNT_FIELDS
_TOPK_FIELDS = TOPK_FIELDS
_SHARED_FIELDS = SHARED_FIELDS
_SHARED_SIZE_FIELDS = SHARED_SIZE_FIELDS


@dataclass
class ModelFacts:
    """What we know about a model (JSON-serialisable via ``dataclasses.asdict``)."""

    name_or_path: str
    revision: str | None
    commit_hash: str | None
    config_hash: str
    model_type: str
    architecture_class: str
    num_layers: int
    moe_layers: list[int]
    num_experts: int
    top_k: int
    shared_experts: int
    router_paths: list[str]
    params: int | None
    dtype_on_disk: str | None
    trust_remote_code: bool
    notes: list[str] = field(default_factory=list)


@dataclass
class RouterSite:
    """One router module found in the base model."""

    layer: int  # decoder-layer index
    path: str  # dotted path inside the base model
    module: Any  # torch.nn.Module
    parent: Any  # the module that owns the router (the MoE block, or the decoder layer for gemma4)
    top_k: int  # experts per token at this layer


@dataclass
class LoadedModel:
    """A loaded base model (no LM head) plus its fast tokenizer and facts."""

    base: Any  # torch.nn.Module
    tokenizer: Any  # PreTrainedTokenizerFast
    facts: ModelFacts
    input_device: Any  # torch.device
    config: Any = None
    adapter: str = "generic"
    routers: list[RouterSite] = field(default_factory=list)
    lm: Any = None  # the whole causal LM (LM head included) when loaded with keep_lm=True and it can generate


# --------------------------------------------------------------------------------------------------
# Config / fingerprint
# --------------------------------------------------------------------------------------------------


def _offline() -> bool:
    for var in ("HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE"):
        if os.environ.get(var, "").strip().lower() in ("1", "true", "yes", "on"):
            return True
    return False


def _looks_like_path(name: str) -> bool:
    """A name that cannot be a hub id ("org/name" or a legacy "name")."""
    return (
        name.startswith(("/", "./", "../", "~", "."))
        or name.count("/") > 1
        or "\\" in name
        or os.path.isabs(name)
    )


def _config_json_path(name: str, revision: str | None) -> Path:
    """Locate config.json for a local folder or a hub id (from the local cache when offline)."""
    p = Path(name).expanduser()
    if p.exists():
        if p.is_file():
            if p.name == "config.json":
                return p
            raise ModelError(f"model path {name} is a file, expected a model folder")
        cfg = p / "config.json"
        if not cfg.is_file():
            raise ModelError(f"no config.json in {p}")
        return cfg
    if _looks_like_path(name):
        raise ModelError(f"model path {name} does not exist")
    from transformers.utils import cached_file

    offline = _offline()
    try:
        found = cached_file(
            name,
            "config.json",
            revision=revision,
            local_files_only=offline,
            _raise_exceptions_for_missing_entries=False,
            _raise_exceptions_for_connection_errors=False,
        )
    except Exception as exc:  # noqa: BLE001 - any hub failure is one line for the user
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        where = "in the local Hugging Face cache (offline)" if offline else "on the Hugging Face hub"
        raise ModelError(f"model {name} not found {where}: {first}") from exc
    if not found:
        if offline:
            raise ModelError(
                f"model {name} is not in the local Hugging Face cache and HF_HUB_OFFLINE is set "
                "(download it first or pass a local folder)"
            )
        raise ModelError(f"model {name} has no config.json on the Hugging Face hub (or the hub is unreachable)")
    return Path(found)


_SNAPSHOT_RE = re.compile(r"(?:^|/)snapshots/([0-9a-f]{40})/")


def _snapshot_commit(path: Path) -> str | None:
    """The commit of a file in the Hugging Face cache (``.../snapshots/<commit>/config.json``), else None."""
    m = _SNAPSHOT_RE.search(Path(path).as_posix())
    return m.group(1) if m else None


def _read_config_json(path: Path) -> dict:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise ModelError(f"cannot read {path}: {str(exc).splitlines()[0]}") from exc
    if not isinstance(data, dict):
        raise ModelError(f"{path} is not a JSON object")
    return data


def _config_hash(raw: dict) -> str:
    canon = {k: v for k, v in raw.items() if k not in ("transformers_version", "_commit_hash", "_name_or_path")}
    blob = json.dumps(canon, sort_keys=True, separators=(",", ":"), ensure_ascii=True, default=str)
    return hashlib.sha256(blob.encode("utf-8")).hexdigest()


def _check_model_type(name: str, raw: dict, trust_remote_code: bool) -> str:
    from transformers.models.auto.configuration_auto import CONFIG_MAPPING

    model_type = raw.get("model_type")
    auto_map = raw.get("auto_map") or {}
    if not model_type and not auto_map:
        raise ModelError(f"config.json of {name} has no model_type")
    known = bool(model_type) and model_type in CONFIG_MAPPING
    if not known:
        if auto_map and "AutoConfig" in auto_map:
            if not trust_remote_code:
                raise RemoteCodeRequired(
                    f"model {name} needs --trust-remote-code (its code is not part of transformers)"
                )
        else:
            import transformers

            raise ModelError(
                f"model {name} has model_type {model_type!r}, which transformers {transformers.__version__} "
                "does not know (unknown architecture)"
            )
    return str(model_type or "")


def _load_config(name: str, revision: str | None, trust_remote_code: bool):
    from transformers import AutoConfig

    try:
        return AutoConfig.from_pretrained(name, revision=revision, trust_remote_code=trust_remote_code)
    except Exception as exc:  # noqa: BLE001
        msg = " ".join(str(exc).split()) or type(exc).__name__
        if "trust_remote_code" in msg or "custom code" in msg:
            raise RemoteCodeRequired(
                f"model {name} needs --trust-remote-code (its code is not part of transformers)"
            ) from exc
        raise ModelError(f"cannot read the config of {name}: {msg[:300]}") from exc


def _fingerprint_and_config(name_or_path, revision, trust_remote_code):
    name = str(name_or_path)
    cfg_path = _config_json_path(name, revision)
    raw = _read_config_json(cfg_path)
    model_type = _check_model_type(name, raw, trust_remote_code)
    local = Path(name).expanduser().exists()
    config = _load_config(str(Path(name).expanduser()) if local else name, revision, trust_remote_code)
    fp = {
        "name_or_path": name,
        "revision": revision,
        "commit_hash": getattr(config, "_commit_hash", None) or (None if local else _snapshot_commit(cfg_path)),
        "config_hash": _config_hash(raw),
        "model_type": getattr(config, "model_type", None) or model_type,
    }
    return fp, config, raw


def resolve_model_fingerprint(name_or_path, *, revision=None, trust_remote_code=False) -> dict:
    """Identify a model from its config only (no weights).

    Returns ``{"name_or_path", "revision", "commit_hash", "config_hash", "model_type"}``; raises
    :class:`ModelError` (one line) for a missing path, a folder without config.json, a hub id absent from
    the local cache while offline, or an unknown architecture, and :class:`RemoteCodeRequired` when the
    model needs custom code and ``trust_remote_code`` is false.
    """
    fp, _config, _raw = _fingerprint_and_config(name_or_path, revision, trust_remote_code)
    return fp


# --------------------------------------------------------------------------------------------------
# Class selection, base model, discovery
# --------------------------------------------------------------------------------------------------


def _text_config(config):
    return config


def _pick_model_class(config, trust_remote_code: bool):
    """The class named in config.architectures when transformers has it and it is a CausalLM for this
    model_type; else AutoModelForCausalLM; else AutoModel. Returns (cls_or_auto, is_auto)."""
    import transformers
    from transformers import AutoModel, AutoModelForCausalLM
    from transformers.models.auto.modeling_auto import MODEL_FOR_CAUSAL_LM_MAPPING, MODEL_MAPPING

    auto_map = getattr(config, "auto_map", None) or {}
    from transformers.models.auto.configuration_auto import CONFIG_MAPPING

    native = config.model_type in CONFIG_MAPPING and type(config) is CONFIG_MAPPING[config.model_type]
    if not native and auto_map:
        if trust_remote_code:
            if "AutoModelForCausalLM" in auto_map:
                return AutoModelForCausalLM, True
            return AutoModel, True
    for arch in getattr(config, "architectures", None) or []:
        cls = getattr(transformers, str(arch), None)
        if cls is None or not isinstance(cls, type):
            continue
        cfg_cls = getattr(cls, "config_class", None)
        if cfg_cls is not None and getattr(cfg_cls, "model_type", None) == config.model_type:
            if str(arch).endswith("ForCausalLM") or str(arch).endswith("Model"):
                return cls, False
    if type(config) in MODEL_FOR_CAUSAL_LM_MAPPING:
        return AutoModelForCausalLM, True
    if type(config) in MODEL_MAPPING:
        return AutoModel, True
    raise ModelError(
        f"model_type {config.model_type} has no causal-LM or base model class in transformers "
        "(multimodal wrappers and encoder-decoders are not supported)"
    )


def _has_layers(module) -> bool:
    for name, _ in module.named_children():
        if name in ("layers", "blocks", "h"):
            return True
    return False


def _base_of(model):
    """The decoder stack without the LM head (``model.model`` for most, ``transformer`` for DBRX)."""
    if _has_layers(model):
        return model
    for attr in ("model", "transformer", "language_model", "decoder"):
        sub = getattr(model, attr, None)
        if sub is not None and sub is not model and hasattr(sub, "named_modules"):
            if _has_layers(sub):
                return sub
            inner = _base_of_inner(sub)
            if inner is not None:
                return inner
    base = getattr(model, "base_model", None)
    if base is not None and base is not model:
        return base
    return model


def _base_of_inner(module):
    for attr in ("model", "transformer", "language_model", "decoder"):
        sub = getattr(module, attr, None)
        if sub is not None and sub is not module and hasattr(sub, "named_modules") and _has_layers(sub):
            return sub
    return None


def _cfg_get(config, names, default=None):
    cfgs = [config]
    for sub in ("ffn_config", "text_config"):
        c = getattr(config, sub, None)
        if c is not None:
            cfgs.append(c if not isinstance(c, dict) else type("C", (), c))
    for c in cfgs:
        for n in names:
            v = getattr(c, n, None)
            if v is not None:
                return v
    return default


def _num_experts(config, model_type: str) -> int:
    n = _cfg_get(config, _EXPERT_COUNT_FIELDS)
    if isinstance(n, (list, tuple)):
        n = max(int(x) for x in n)
    n = int(n or 0)
    if model_type == "longcat_flash":
        n += int(getattr(config, "zero_expert_num", 0) or 0)
    if model_type == "zaya":
        n += 1  # the "skip" class, reported as expert id E
    return n


def _router_top_k(router, parent, config, model_type: str) -> int:
    if model_type == "phimoe":
        return 2  # sparsemixer is hard-wired to top-2
    for obj in (router, parent):
        v = getattr(obj, "top_k", None)
        if isinstance(v, int) and v > 0:
            return v
    v = _cfg_get(config, _TOPK_FIELDS)
    if isinstance(v, (list, tuple)):
        v = max(int(x) for x in v)
    if not v:
        raise ModelError(f"cannot tell how many experts per token model_type {model_type} uses")
    return int(v)


def _shared_experts(config) -> int:
    v = _cfg_get(config, _SHARED_FIELDS)
    if isinstance(v, int) and v > 0:
        return v
    v = _cfg_get(config, _SHARED_SIZE_FIELDS)
    if isinstance(v, int) and v > 0:
        return 1
    if getattr(config, "model_type", "") in ("llama4_text", "llama4", "hunyuan_v1_moe"):
        return 1
    return 0


def discover_routers(base, config) -> list[RouterSite]:
    """Find the router module of every MoE decoder layer (generic, class-name based)."""
    model_type = getattr(config, "model_type", "")
    modules = dict(base.named_modules())
    chosen: dict[int, tuple[str, Any]] = {}
    taken_prefixes: list[str] = []
    for path, mod in base.named_modules():
        if not path:
            continue
        cls = type(mod).__name__
        if not _ROUTER_CLASS_RE.search(cls) or _NOT_ROUTER_RE.search(cls):
            continue
        m = _LAYER_RE.search(path)
        if m is None:
            continue
        if any(path.startswith(p + ".") for p in taken_prefixes):
            continue  # nested inside an already chosen router
        layer_prefix = path[: m.end()].rstrip(".")
        rel = path[len(layer_prefix) + 1 :]
        if _ATTENTION_PATH_RE.search(rel):
            continue  # e.g. JetMoE mixture-of-attention gating: not a token->FFN-expert route
        layer = int(m.group(1))
        prev = chosen.get(layer)
        if prev is not None:
            # prefer the one that sits under an MLP/MoE block
            if _MOE_PATH_HINT_RE.search(prev[0][len(layer_prefix) :]) or not _MOE_PATH_HINT_RE.search(rel):
                continue
        chosen[layer] = (path, mod)
        taken_prefixes.append(path)
    sites = []
    for layer in sorted(chosen):
        path, mod = chosen[layer]
        parent_path = path.rsplit(".", 1)[0] if "." in path else ""
        parent = modules.get(parent_path, base)
        sites.append(RouterSite(layer, path, mod, parent, _router_top_k(mod, parent, config, model_type)))
    return sites


def _num_layers(config, base) -> int:
    for n in ("num_hidden_layers", "num_layers", "n_layers", "n_layer"):
        v = getattr(config, n, None)
        if isinstance(v, int) and v > 0:
            return v
    layers = getattr(base, "layers", None) or getattr(base, "blocks", None)
    return len(layers) if layers is not None else 0


def _dtype_on_disk(config, raw: dict | None) -> str | None:
    v = None
    if raw:
        v = raw.get("dtype") or raw.get("torch_dtype")
    if v is None:
        v = getattr(config, "dtype", None) or getattr(config, "torch_dtype", None)
    if v is None:
        return None
    return str(v).replace("torch.", "")


def _make_facts(fp, config, raw, base, sites, trust_remote_code, architecture_class, params) -> ModelFacts:
    model_type = fp["model_type"]
    notes: list[str] = []
    if model_type == "zaya":
        notes.append(
            "zaya: the skip expert is reported as expert id num_experts (the last id) with weight 0; "
            "from_pretrained resets balancing_biases[-1] to -1.0 (transformers behaviour)"
        )
    if model_type == "longcat_flash":
        notes.append("longcat_flash: expert ids >= n_routed_experts are zero-compute (identity) experts")
    if model_type == "phimoe":
        notes.append("phimoe: sparsemixer always selects 2 experts (num_experts_per_tok is ignored)")
    if model_type == "deepseek_v4":
        notes.append("deepseek_v4: hash layers pick experts from the token id (tid2eid), not from a learned router")
    if model_type == "gemma4_text":
        notes.append("gemma4_text: weights include per_expert_scale; a dense MLP runs beside the experts")
    ks = [s.top_k for s in sites]
    if ks and min(ks) != max(ks):
        notes.append(
            f"top-k varies by layer ({ks}); k={max(ks)}, missing ranks hold the sentinel expert id "
            "(255 for uint8, 65535 for uint16) with weight 0"
        )
    return ModelFacts(
        name_or_path=fp["name_or_path"],
        revision=fp["revision"],
        commit_hash=fp["commit_hash"],
        config_hash=fp["config_hash"],
        model_type=model_type,
        architecture_class=architecture_class,
        num_layers=_num_layers(config, base),
        moe_layers=[s.layer for s in sites],
        num_experts=_num_experts(config, model_type),
        top_k=max(ks) if ks else 0,
        shared_experts=_shared_experts(config),
        router_paths=[s.path for s in sites],
        params=params,
        dtype_on_disk=_dtype_on_disk(config, raw),
        trust_remote_code=bool(trust_remote_code),
        notes=notes,
    )


def _check_refused(name: str, model_type: str) -> None:
    if model_type in REFUSED:
        raise ModelError(f"model {name} (model_type {model_type}) cannot be captured: {REFUSED[model_type]}")


def _require_routers(name: str, model_type: str, sites) -> None:
    if not sites:
        raise NotMoEError(f"model {name} (model_type {model_type}) has no MoE router: nothing to capture")


# --------------------------------------------------------------------------------------------------
# inspect_model (meta device) and load_model
# --------------------------------------------------------------------------------------------------


def inspect_model(name_or_path, *, revision=None, trust_remote_code=False) -> ModelFacts:
    """Facts from the config and a weightless (meta-device) build of the model."""
    fp, config, raw = _fingerprint_and_config(name_or_path, revision, trust_remote_code)
    _check_refused(fp["name_or_path"], fp["model_type"])
    cls, is_auto = _pick_model_class(config, trust_remote_code)
    from accelerate import init_empty_weights

    try:
        with init_empty_weights(include_buffers=True):
            if is_auto:
                model = cls.from_config(config, trust_remote_code=trust_remote_code)
            else:
                model = cls._from_config(config)
    except Exception as exc:  # noqa: BLE001
        raise ModelError(
            f"cannot build model {fp['name_or_path']} from its config: {' '.join(str(exc).split())[:300]}"
        ) from exc
    base = _base_of(model)
    sites = discover_routers(base, config)
    _require_routers(fp["name_or_path"], fp["model_type"], sites)
    params = sum(p.numel() for p in model.parameters())
    return _make_facts(fp, config, raw, base, sites, trust_remote_code, type(model).__name__, params)


def _resolve_device(device):
    import torch

    if device is None or device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        dev = torch.device(device)
    except (RuntimeError, TypeError) as exc:
        raise ModelError(f"unknown device {device!r} (use cpu, cuda, cuda:N or auto)") from exc
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise ModelError(f"device {device} requested but no CUDA GPU is available")
    if dev.type == "cuda" and dev.index is not None and dev.index >= torch.cuda.device_count():
        raise ModelError(f"device {device} requested but only {torch.cuda.device_count()} GPU(s) exist")
    return dev


def _resolve_dtype(dtype, config, device):
    import torch

    names = {"float32": torch.float32, "fp32": torch.float32, "bfloat16": torch.bfloat16, "bf16": torch.bfloat16,
             "float16": torch.float16, "fp16": torch.float16}
    if dtype is None or dtype == "auto":
        if device.type == "cpu":
            return torch.float32
        cfg = getattr(config, "dtype", None) or getattr(config, "torch_dtype", None)
        if isinstance(cfg, torch.dtype):
            return cfg
        if isinstance(cfg, str) and cfg.replace("torch.", "") in names:
            return names[cfg.replace("torch.", "")]
        return torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
    if isinstance(dtype, torch.dtype):
        return dtype
    if str(dtype) not in names:
        raise ModelError(f"unknown dtype {dtype!r} (use auto, float32, bfloat16 or float16)")
    return names[str(dtype)]


_QUANT_NEEDS = {
    "8bit": "a CUDA GPU and the bitsandbytes package (pip install bitsandbytes)",
    "4bit": "a CUDA GPU and the bitsandbytes package (pip install bitsandbytes)",
    "fp8": "a CUDA GPU with compute capability 8.9 or newer (H100, H200, L40S, RTX 4090)",
}


def check_quantization(quantization, device="auto") -> None:
    """Raise one :class:`ModelError` line naming what ``quantization`` needs and this machine lacks."""
    if quantization in (None, "none", ""):
        return
    if quantization not in _QUANT_NEEDS:
        raise ModelError(f"unknown quantization {quantization!r} (use none, 8bit, 4bit or fp8)")
    import importlib.util

    import torch

    missing = []
    dev = torch.device("cuda" if device in (None, "auto") else device)
    if not torch.cuda.is_available():
        missing.append("a CUDA GPU (torch sees none)")
    elif dev.type != "cuda":
        missing.append(f"a GPU device (--device {device} is not one)")
    elif quantization == "fp8":
        idx = dev.index if dev.index is not None else torch.cuda.current_device()
        cc = torch.cuda.get_device_capability(idx)
        if cc < (8, 9):
            missing.append(f"a GPU with compute capability 8.9+ (this one has {cc[0]}.{cc[1]})")
    if quantization in ("8bit", "4bit") and importlib.util.find_spec("bitsandbytes") is None:
        missing.append("the bitsandbytes package")
    if missing:
        raise ModelError(f"--quantization {quantization} needs {_QUANT_NEEDS[quantization]}; "
                         f"missing here: {', '.join(missing)}")


def _quantization_config(quantization, device):
    if quantization in (None, "none", ""):
        return None
    import torch

    check_quantization(quantization, str(device))
    if quantization in ("8bit", "4bit"):
        from transformers import BitsAndBytesConfig

        if quantization == "8bit":
            return BitsAndBytesConfig(load_in_8bit=True)
        return BitsAndBytesConfig(load_in_4bit=True, bnb_4bit_compute_dtype=torch.bfloat16)
    from transformers import FineGrainedFP8Config

    return FineGrainedFP8Config()


_NAMED_MAPS = ("auto", "balanced", "balanced_low_0", "sequential")


def resolve_device_map(device_map) -> str | dict | None:
    """``--device-map``: None, a strategy name (auto/balanced/balanced_low_0/sequential), a dict
    ``{module: device}`` (device: cpu, disk, N, cuda:N) or the path of a JSON file holding that dict."""
    if device_map is None or device_map == "":
        return None
    if isinstance(device_map, dict):
        dm = dict(device_map)
    elif isinstance(device_map, str) and device_map in _NAMED_MAPS:
        return device_map
    elif isinstance(device_map, (str, os.PathLike)) and Path(device_map).expanduser().is_file():
        path = Path(device_map).expanduser()
        try:
            dm = json.loads(path.read_text())
        except (OSError, ValueError) as exc:
            raise ModelError(f"cannot read the device map {path}: {exc}") from exc
        if not isinstance(dm, dict):
            raise ModelError(f"device map {path} must be a JSON object {{module: device}}")
    else:
        raise ModelError(f"unknown device map {device_map!r} (use auto, balanced, sequential or a JSON file)")
    out: dict[str, Any] = {}
    for mod, d in dm.items():
        if isinstance(d, str) and d.isdigit():
            d = int(d)
        elif isinstance(d, str) and d.startswith("cuda:") and d[5:].isdigit():
            d = int(d[5:])
        if not (isinstance(d, int) or d in ("cpu", "disk", "meta", "mps")):
            raise ModelError(f"device map entry {mod!r}: unknown device {d!r} (use cpu, disk, N or cuda:N)")
        out[str(mod)] = d
    return out


def resolve_max_memory(max_memory) -> dict | None:
    """``--max-memory``: GPU keys as accelerate wants them (ints); ``gpu0``/``cuda:0``/``"0"`` -> 0."""
    if not max_memory:
        return None
    out: dict[Any, Any] = {}
    for k, v in dict(max_memory).items():
        key = str(k).strip().lower()
        for prefix in ("cuda:", "gpu"):
            if key.startswith(prefix) and key[len(prefix):].isdigit():
                key = key[len(prefix):]
        out[int(key) if key.isdigit() else key] = v
    return out


def _load_tokenizer(name: str, revision, trust_remote_code):
    from transformers import AutoTokenizer

    try:
        tok = AutoTokenizer.from_pretrained(name, revision=revision, trust_remote_code=trust_remote_code)
    except Exception as exc:  # noqa: BLE001
        raise ModelError(f"cannot load a tokenizer for {name}: {' '.join(str(exc).split())[:300]}") from exc
    if not getattr(tok, "is_fast", False):
        raise ModelError(f"model {name} has no fast tokenizer (tokenizer.json); moe-tui needs character offsets")
    if tok.pad_token_id is None:
        if tok.eos_token is not None:
            tok.pad_token = tok.eos_token
        elif tok.unk_token is not None:
            tok.pad_token = tok.unk_token
    return tok


def load_model(
    name_or_path,
    *,
    dtype="auto",
    device="auto",
    trust_remote_code=False,
    revision=None,
    device_map=None,
    max_memory=None,
    quantization=None,
    offload_folder=None,
    keep_lm=False,
) -> LoadedModel:
    """Load the base model (no LM head) of an MoE causal LM plus its fast tokenizer, in eval mode.

    ``device_map`` (see :func:`resolve_device_map`) spreads the model with accelerate, within
    ``max_memory``; modules mapped to ``"disk"`` are offloaded to ``offload_folder``. ``keep_lm``: keep the whole
    causal LM as ``LoadedModel.lm`` (for generation; None when the model has no LM head that can generate).
    """
    import torch

    device_map = resolve_device_map(device_map)
    max_memory = resolve_max_memory(max_memory)
    if isinstance(device_map, dict) and "disk" in device_map.values() and not offload_folder:
        raise ModelError("the device map offloads modules to disk: give --offload-folder DIR")

    fp, config, raw = _fingerprint_and_config(name_or_path, revision, trust_remote_code)
    name = fp["name_or_path"]
    _check_refused(name, fp["model_type"])
    dev = _resolve_device(device)
    torch_dtype = _resolve_dtype(dtype, config, dev)
    qconf = _quantization_config(quantization, dev)
    cls, _is_auto = _pick_model_class(config, trust_remote_code)
    local = Path(name).expanduser().exists()
    src = str(Path(name).expanduser()) if local else name
    kwargs: dict[str, Any] = {"dtype": torch_dtype, "revision": revision, "output_loading_info": True}
    if trust_remote_code:
        kwargs["trust_remote_code"] = True
    if qconf is not None:
        kwargs["quantization_config"] = qconf
    if device_map is not None:
        kwargs["device_map"] = device_map
        if max_memory is not None:
            kwargs["max_memory"] = max_memory
        if offload_folder:
            Path(offload_folder).expanduser().mkdir(parents=True, exist_ok=True)
            kwargs["offload_folder"] = str(Path(offload_folder).expanduser())
    elif dev.type != "cpu" or qconf is not None:
        kwargs["device_map"] = {"": str(dev)}
    try:
        model, info = cls.from_pretrained(src, config=config, **kwargs)
    except ModelError:
        raise
    except Exception as exc:  # noqa: BLE001
        msg = " ".join(str(exc).split()) or type(exc).__name__
        raise ModelError(f"cannot load the weights of {name}: {msg[:300]}") from exc
    missing = [k for k in (info or {}).get("missing_keys", []) if not k.startswith("lm_head")]
    mismatched = list((info or {}).get("mismatched_keys", []))
    if missing or mismatched:
        what = []
        if missing:
            what.append(f"{len(missing)} missing (e.g. {sorted(missing)[0]})")
        if mismatched:
            first = mismatched[0][0] if isinstance(mismatched[0], (tuple, list)) else mismatched[0]
            what.append(f"{len(mismatched)} with the wrong shape (e.g. {first})")
        raise ModelError(f"the weights of {name} do not match its config: " + "; ".join(what))
    base = _base_of(model)
    if device_map is None and qconf is None and dev.type == "cpu":
        base.to(dev)
    base.eval()
    base.requires_grad_(False)
    sites = discover_routers(base, config)
    _require_routers(name, fp["model_type"], sites)
    params = sum(p.numel() for p in base.parameters())
    facts = _make_facts(fp, config, raw, base, sites, trust_remote_code, type(model).__name__, params)
    tokenizer = _load_tokenizer(src, revision, trust_remote_code)
    try:
        emb = base.get_input_embeddings()
        input_device = emb.weight.device
    except Exception:  # noqa: BLE001
        input_device = next(base.parameters()).device
    if input_device.type == "meta":  # embeddings offloaded to disk: accelerate runs them on the CPU
        input_device = torch.device("cpu")
    lm = None
    if keep_lm and model is not base and callable(getattr(model, "can_generate", None)) and model.can_generate():
        if device_map is None and qconf is None and dev.type == "cpu":
            model.to(dev)
        model.eval()
        model.requires_grad_(False)
        lm = model
    del model  # drop the LM head (unless tied to the embeddings or kept)
    return LoadedModel(
        base=base,
        tokenizer=tokenizer,
        facts=facts,
        input_device=input_device,
        config=config,
        adapter=ADAPTERS.get(fp["model_type"], "generic"),
        routers=sites,
        lm=lm,
    )
