"""Capture routing during ``model.generate``: every forward call of every router, prefill and decoding steps.

:class:`RouteCapture` (``moe_tui.core.extract.capture``) expects one forward pass per batch. Incremental decoding
calls each router once for the prompt (``B x P`` tokens, or a few chunks of it) and then once per new token
(``B x 1``). :class:`GenerationCapture` hooks the same router modules through the same adapters
(``capture._Extractor``: the model's real selection, never a recomputed top-k) and only keeps references to what
each call returned, so a decoding step pays one Python call per router. :meth:`GenerationCapture.collect` then
lays the calls side by side in time (call ``c`` of ``B x t_c`` tokens covers ``t_c`` positions of every row) and
ranks every token's experts by raw router logit exactly as extraction does (``capture._order_by_score``), once per
batch.

Pad positions (left padding of the prompts, pads fed after a row ended) are routed too and returned as computed:
the caller keeps the positions it knows to be real.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import numpy as np

from moe_tui.core.extract.capture import _Extractor, _first_line, _order_by_score, expert_dtype_for, sentinel_for
from moe_tui.errors import ModelError

if TYPE_CHECKING:  # pragma: no cover
    from moe_tui.core.extract.models import LoadedModel

__all__ = ["GenerationCapture"]


class GenerationCapture:
    """``with GenerationCapture(loaded) as cap: cap.start(); lm.generate(...); cap.stop(); cap.collect(B)``."""

    def __init__(self, loaded: LoadedModel, *, save_logits: bool = False):
        self.loaded = loaded
        self.sites = list(loaded.routers)
        if not self.sites:
            raise ModelError(f"model {loaded.facts.name_or_path} has no router to hook")
        self.num_layers = len(self.sites)
        self.k = max(s.top_k for s in self.sites)
        self.num_experts = int(loaded.facts.num_experts)
        self.np_dtype = expert_dtype_for(self.num_experts)
        self.sentinel = sentinel_for(self.num_experts)
        self.save_logits = bool(save_logits)
        self._extractors = [_Extractor(loaded.adapter, s, self.num_experts) for s in self.sites]
        self._has_logits: list[bool | None] = [None] * self.num_layers
        self._calls: list[list[tuple]] = [[] for _ in self.sites]
        self._handles: list[Any] = []
        self._active = False
        self._error: BaseException | None = None

    def __enter__(self) -> GenerationCapture:
        for slot, site in enumerate(self.sites):
            self._handles.append(site.module.register_forward_hook(self._make_hook(slot)))
            proj = getattr(site.module, "proj", None)
            if self.loaded.adapter == "gemma4" and proj is not None:
                self._handles.append(proj.register_forward_hook(self._make_stash_hook(slot)))
        return self

    def __exit__(self, *exc) -> None:
        for h in self._handles:
            h.remove()
        self._handles.clear()
        self._clear()

    def routers_info(self) -> list[dict]:
        """Per MoE layer, as :meth:`RouteCapture.routers_info`."""
        return [
            {"layer": s.layer, "path": s.path, "selection": x.selection, "logits": h,
             "rank_by": None if h is None else ("logit" if h else "weight")}
            for s, x, h in zip(self.sites, self._extractors, self._has_logits)
        ]

    def _make_hook(self, slot: int):
        extractor = self._extractors[slot]
        calls = self._calls

        def hook(_module, inputs, out):
            if self._active and self._error is None:
                try:
                    calls[slot].append(extractor(inputs, out))
                except BaseException as exc:  # noqa: BLE001 - re-raised by collect()
                    self._error = exc
            return None

        return hook

    def _make_stash_hook(self, slot: int):
        extractor = self._extractors[slot]

        def hook(_module, _inputs, out):
            if self._active:
                extractor.stash = out
            return None

        return hook

    def start(self) -> None:
        """Record from now on (what an earlier batch left is dropped)."""
        if not self._handles:
            raise ModelError("GenerationCapture.start() called outside its 'with' block")
        self._clear()
        self._error = None
        self._active = True

    def _clear(self) -> None:
        for calls in self._calls:  # in place: the hooks hold these lists
            calls.clear()

    def stop(self) -> None:
        self._active = False

    def collect(self, batch: int, *, fp32_logits: bool = False):
        """The recorded calls as ``experts [B, T, L, k]`` (uint8/uint16, rank 0 = highest raw router logit; the
        unused-rank sentinel where a layer has fewer experts per token), ``weights [B, T, L, k]`` float16 and
        ``logits [B, T, L, N]`` (float16, or float32 with ``fp32_logits``; NaN where a router has none; None
        unless ``save_logits`` or ``fp32_logits``). ``T`` is the number of positions the calls covered."""
        import torch

        if self._error is not None:
            if isinstance(self._error, ModelError):
                raise self._error
            raise ModelError(f"routing capture failed: {_first_line(self._error)}") from self._error
        T = None
        experts = weights = logits = None
        want_logits = self.save_logits or fp32_logits
        for slot, calls in enumerate(self._calls):
            site = self.sites[slot]
            if not calls:
                raise ModelError(f"router {site.path} did not run during generation")
            k_l = site.top_k
            idx_parts, w_parts, lg_parts = [], [], []
            has_logits = True
            for idx, w, lg in calls:
                idx = idx.reshape(-1, idx.shape[-1])
                w = w.reshape(-1, w.shape[-1])
                n = idx.shape[0]
                if n % batch or idx.shape[-1] != k_l or w.shape != idx.shape:
                    raise ModelError(f"router {site.path} returned indices of shape {tuple(idx.shape)} during "
                                     f"generation, expected ({batch} x t, {k_l})")
                idx_parts.append(idx.reshape(batch, n // batch, k_l))
                w_parts.append(w.reshape(batch, n // batch, k_l))
                if lg is not None:
                    lg = lg.reshape(-1, lg.shape[-1])
                    lg = lg.reshape(batch, n // batch, -1) if lg.shape == (n, self.num_experts) else None
                if lg is None:
                    has_logits = False
                lg_parts.append(lg)
            self._has_logits[slot] = has_logits
            idx = torch.cat(idx_parts, dim=1).long()
            w = torch.cat(w_parts, dim=1).float()
            t = idx.shape[1]
            if T is None:
                T = t
                experts = np.empty((batch, T, self.num_layers, self.k), dtype=self.np_dtype)
                weights = np.empty((batch, T, self.num_layers, self.k), dtype=np.float16)
                if want_logits:
                    logits = np.full((batch, T, self.num_layers, self.num_experts), np.nan,
                                     dtype=np.float32 if fp32_logits else np.float16)
            elif t != T:
                raise ModelError(f"router {site.path} saw {t} positions, router {self.sites[0].path} {T}")
            lg = torch.cat([x.float() for x in lg_parts], dim=1) if has_logits else None
            scores = lg.gather(-1, idx) if lg is not None else w.clone()
            if k_l < self.k:
                pad = self.k - k_l
                idx = torch.cat([idx, torch.full((batch, t, pad), self.sentinel, dtype=idx.dtype,
                                                 device=idx.device)], dim=-1)
                w = torch.cat([w, torch.zeros((batch, t, pad), dtype=w.dtype, device=w.device)], dim=-1)
                scores = torch.cat([scores, torch.full((batch, t, pad), float("-inf"), device=scores.device)], dim=-1)
            e_ord, w_ord = _order_by_score(idx, w, scores)
            experts[:, :, slot, :] = e_ord.cpu().numpy().astype(self.np_dtype)
            weights[:, :, slot, :] = w_ord.to(torch.float16).cpu().numpy()
            if logits is not None and lg is not None:
                logits[:, :, slot, :] = lg.cpu().numpy().astype(logits.dtype)
        self._clear()
        return experts, weights, logits
