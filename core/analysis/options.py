"""The report's options (paper defaults)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

__all__ = ["ReportOptions"]


@dataclass
class ReportOptions:
    """Knobs of the probe / control computations (defaults follow the paper).

    ``probe_engine``: ``"torch"`` (batched, CUDA when available) or ``"sklearn"`` (the paper's exact
    procedure); ``probe_device``: ``auto``/``cpu``/``cuda``/``cuda:N`` (torch engine); ``probe_dtype``:
    ``float32`` or ``float64`` (torch engine); ``probe_seeds``: seeds (and splits) each probe is trained on.
    ``tsne_samples``: t-SNE points, sampled from seed 0's test tokens when there are more.
    """

    seed: int = 0
    kl_reference: str = "corpus"
    max_iter: int = 500
    early_stopping: bool = False
    ablation_step: int = 1
    ablation_removed: Sequence[int] | None = None
    tsne_samples: int = 20_000
    n_permutations: int = 100
    n_boot: int = 200
    mlp_kwargs: dict | None = None
    probe_engine: str = "torch"
    probe_device: str = "auto"
    probe_dtype: str = "float32"
    probe_seeds: int = 1
