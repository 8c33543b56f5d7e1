"""What produced a run: library versions, platform and the model's commit (the manifest's ``provenance``)."""

from __future__ import annotations

import numpy as np

from moe_tui.cache.layout import tool_version

__all__ = ["provenance"]


def provenance(loaded=None) -> dict:
    """What produced a run: Python and library versions, the platform, and the model's commit when known."""
    import platform
    from importlib.metadata import PackageNotFoundError, version

    def ver(name: str) -> str | None:
        try:
            return version(name)
        except PackageNotFoundError:
            return None

    out = {
        "python": platform.python_version(),
        "moe_tui": tool_version(),
        "torch": ver("torch"),
        "transformers": ver("transformers"),
        "tokenizers": ver("tokenizers"),
        "accelerate": ver("accelerate"),
        "numpy": np.__version__,
        "platform": platform.platform(),
    }
    import sys

    torch = sys.modules.get("torch")
    if torch is not None:
        out["torch"] = str(torch.__version__)
        out["cuda"] = torch.version.cuda
        if loaded is not None and getattr(loaded.input_device, "type", None) == "cuda":
            out["device"] = torch.cuda.get_device_name(loaded.input_device)
    if loaded is not None:
        f = loaded.facts
        out["model"] = {"name_or_path": f.name_or_path, "revision": f.revision, "commit_hash": f.commit_hash}
    return out
