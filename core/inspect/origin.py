"""Where a sentence's prompt ends, in a run made by ``moe-tui generate`` (its per-token ``origin``)."""

from __future__ import annotations

import numpy as np

__all__ = ["has_origin", "continuation_start"]


def has_origin(run) -> bool:
    """Whether the run records each token's origin (a run made by ``moe-tui generate``)."""
    return "origin" in run.manifest.get("arrays", {})


def continuation_start(run, sentence: int) -> int | None:
    """The position in sentence ``sentence`` of its first generated token (its number of prompt tokens when
    nothing was generated after them); None for a run without origins."""
    if not has_origin(run):
        return None
    a, b = int(run.sentence_offsets[sentence]), int(run.sentence_offsets[sentence + 1])
    gen = np.flatnonzero(np.asarray(run.origin[a:b]) == 1)
    return int(gen[0]) if len(gen) else b - a
