"""Capture the experts each token is routed to, with forward hooks on the router modules.

Design:

* The hooks read the model's **real** selection from the router's return value (never a top-k recomputed
  from raw logits when the router returns indices). Adapters (named per model_type in ``moe_tui.core.extract.architectures``):

  - ``generic``: router returns ``(logits|probs, weights (N,k), indices (N,k), ...)``; or, for remote-code
    DeepSeek-MoE gates, ``(indices (N,k) int, weights (N,k), aux_loss)`` (detected: first element is an
    integer tensor).
  - ``dbrx``: the router returns logits only; the hook calls the owning ``DbrxFFN.route_tokens_to_experts``
    (the model's own rule: softmax in the logits dtype, top-k, p-norm).
  - ``llama4``: the router returns dense ``(scores (N,E), logits)``; experts = top-k of the scores (non-zero
    exactly on the chosen experts).
  - ``jetmoe``: the MLP router returns ``(index_sorted_experts, batch_index, gates, expert_size, logits)``;
    (N,k) indices are rebuilt from ``index_sorted_experts`` and ``expert_size``. The mixture-of-attention
    gating is not hooked.
  - ``gemma4``: generic indices and weights; the router's out[0] holds probabilities, so the raw logits are
    read from a second hook on its ``proj`` linear.
  - ``zaya``: the router rewrites its skip class to (id 0, weight 0); the hook re-labels it as id
    ``num_experts`` (E, the last id of ``facts.num_experts = E + 1``) with weight 0.

* **Rank = descending raw router logit.** Each token's k selected experts are ordered by the router's own
  score before any load-balancing bias, renormalisation, per-expert scale or sparsemixer multiplier: the
  raw logit (rank 0 = the selected expert with the highest logit; ties by expert id). Weights stay what
  the experts receive, so for PhiMoE (sparsemixer multipliers) and Gemma4 (``per_expert_scale``) the
  weights need not decrease with rank. The logits are read in the same hooks: out[0] for the generic
  routers (post-softcap for Laguna; E+1 columns for Zaya's skip class; E+zero_expert_num for Longcat),
  the router's return value for DBRX, out[1] for Llama4, out[4] for JetMoE, the ``proj`` output for
  Gemma4 (whose router returns probabilities), and ``F.linear(input, gate.weight)`` for remote-code
  DeepSeek-MoE gates that return only indices and weights. DeepSeek-V4 hash layers select by token id
  (``tid2eid``); their learned gate still scores the selected experts, and rank follows that logit (the
  same order as their weights). A router whose logits cannot be read is ranked by weight, and
  :meth:`RouteCapture.routers_info` says so per layer.
* With ``save_logits=True`` each batch's full logits ``(B, T, L, C)`` float16 (C = ``facts.num_experts``
  columns; NaN for a layer without logits) are kept in :attr:`RouteCapture.last_logits`.
* Layers with fewer experts per token than ``facts.top_k`` (hunyuan per-layer ``moe_topk``) have their missing
  ranks filled with the sentinel id (255 for uint8, 65535 for uint16) and weight 0.
* Hooks write into preallocated buffers on the router's device; ``run()`` copies to the host once per batch
  and per device.
* Pad positions are routed by the model too and are returned as computed: mask them with ``attention_mask``.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import numpy as np

from moe_tui.errors import ModelError

if TYPE_CHECKING:  # pragma: no cover

    from moe_tui.core.extract.models import LoadedModel

__all__ = ["RouteCapture", "sentinel_for", "expert_dtype_for"]


def expert_dtype_for(num_experts: int):
    """uint8 when every expert id (and the 255 sentinel) fits, else uint16."""
    return np.uint8 if num_experts <= 255 else np.uint16


def sentinel_for(num_experts: int) -> int:
    return 255 if num_experts <= 255 else 65535


def _first_line(exc: BaseException) -> str:
    return " ".join(str(exc).split())[:300] or type(exc).__name__


class _Extractor:
    """Turns one router call's output into (indices (N,k_l), weights (N,k_l), raw logits (N,C) or None)."""

    def __init__(self, adapter: str, site, num_experts: int):
        self.adapter = adapter
        self.site = site
        self.num_experts = num_experts
        self.selection = "hash" if "HashRouter" in type(site.module).__name__ else "learned"
        self.stash = None  # gemma4: the proj output of the current call

    def __call__(self, inputs, out):
        """``(indices (N,k), weights (N,k), logits (N,C) or None)`` from one router call."""
        import torch

        a = self.adapter
        if a == "dbrx":
            logits = out[0] if isinstance(out, (tuple, list)) else out
            weights, idx = self.site.parent.route_tokens_to_experts(logits)
            return idx, weights, logits
        if a == "llama4":
            scores = out[0]
            weights, idx = torch.topk(scores, self.site.top_k, dim=-1)
            return idx, weights, out[1]
        if a == "jetmoe":
            index_sorted, _batch_index, batch_gates, expert_size, logits = out[:5]
            k = self.site.top_k
            sizes = torch.as_tensor(expert_size, device=index_sorted.device, dtype=torch.long)
            expert_of_sorted = torch.repeat_interleave(
                torch.arange(sizes.numel(), device=index_sorted.device), sizes
            )
            total = index_sorted.numel()
            idx_flat = torch.empty(total, dtype=torch.long, device=index_sorted.device)
            w_flat = torch.empty(total, dtype=batch_gates.dtype, device=batch_gates.device)
            idx_flat[index_sorted] = expert_of_sorted
            w_flat[index_sorted] = batch_gates
            return idx_flat.view(-1, k), w_flat.view(-1, k), logits
        # generic (+ zaya, gemma4)
        if not isinstance(out, (tuple, list)):
            raise ModelError(
                f"router {self.site.path} returned a single tensor; no adapter knows how this "
                "architecture selects experts"
            )
        if (
            len(out) >= 2
            and torch.is_tensor(out[0])
            and not out[0].is_floating_point()
            and out[0].dim() == 2
        ):
            idx, weights = out[0], out[1]  # remote-code DeepSeek-MoE style (topk_idx, topk_weight, aux)
            logits = self._gate_logits(inputs)
        elif len(out) >= 3 and torch.is_tensor(out[2]) and not out[2].is_floating_point():
            idx, weights = out[2], out[1]
            logits = out[0] if torch.is_tensor(out[0]) and out[0].is_floating_point() else None
            if a == "gemma4":  # the router returns probabilities; its proj returned the logits
                logits, self.stash = self.stash, None
        else:
            raise ModelError(
                f"router {self.site.path} returned no expert-index tensor; this architecture needs an adapter"
            )
        if a == "zaya":
            skip = (idx == 0) & (weights == 0)
            idx = torch.where(skip, torch.full_like(idx, self.num_experts - 1), idx)
        return idx, weights, logits

    def _gate_logits(self, inputs):
        """A gate that returns only (indices, weights): its logits recomputed as ``F.linear(input, weight)``
        (what DeepSeek-MoE's ``MoEGate`` computes before its softmax), when it has one (E, H) weight."""
        import torch

        w = getattr(self.site.module, "weight", None)
        if not inputs or not torch.is_tensor(inputs[0]) or not torch.is_tensor(w) or w.dim() != 2:
            return None
        h = inputs[0]
        if h.shape[-1] != w.shape[1]:
            return None
        return torch.nn.functional.linear(h.reshape(-1, h.shape[-1]).to(w.dtype), w)


def _order_by_score(experts, weights, scores):
    """Order each (token, layer)'s k experts by score (the raw router logit), descending; ties by expert id.

    ``experts`` int, ``weights`` and ``scores`` float, all ``(N, L, k)`` on one device; one batched pair
    of sorts per batch (routers using ``topk(sorted=False)`` give no order at all). Missing ranks carry
    score -inf and stay last. Returns ``(experts, weights)`` in rank order.
    """
    import torch

    by_id = torch.sort(experts, dim=-1).indices
    order = torch.gather(by_id, -1, torch.sort(-torch.gather(scores, -1, by_id), dim=-1, stable=True).indices)
    return torch.gather(experts, -1, order), torch.gather(weights, -1, order)


class RouteCapture:
    """Context manager: ``with RouteCapture(loaded) as cap: experts, weights = cap.run(ids, mask)``.

    ``save_logits=True`` also keeps each batch's router logits in :attr:`last_logits`.
    """

    def __init__(self, loaded: LoadedModel, *, save_logits: bool = False):
        self.loaded = loaded
        facts = loaded.facts
        self.sites = list(loaded.routers)
        if not self.sites:
            raise ModelError(f"model {facts.name_or_path} has no router to hook")
        self.num_layers = len(self.sites)
        self.k = max(s.top_k for s in self.sites)
        self.num_experts = int(facts.num_experts)
        self.np_dtype = expert_dtype_for(self.num_experts)
        self.sentinel = sentinel_for(self.num_experts)
        self.save_logits = bool(save_logits)
        #: ``(B, T, L, C)`` float16 logits of the last :meth:`run` (``save_logits`` only; NaN: no logits)
        self.last_logits: np.ndarray | None = None
        self._extractors = [_Extractor(loaded.adapter, s, self.num_experts) for s in self.sites]
        self._has_logits: list[bool | None] = [None] * self.num_layers  # known after the first call
        self._handles: list[Any] = []
        # device -> (experts int32 (N,L,k), weights fp32 (N,L,k), scores fp32 (N,L,k), logits fp16 (N,L,C) or None)
        self._buffers: dict[Any, tuple[Any, Any, Any, Any]] = {}
        self._slot_device: list[Any] = [None] * self.num_layers
        self._calls: list[int] = [0] * self.num_layers
        self._n_tokens = 0
        self._active = False
        self._error: BaseException | None = None

    # -- context management -------------------------------------------------------------------------
    def __enter__(self) -> RouteCapture:
        self.install()
        return self

    def __exit__(self, *exc) -> None:
        self.remove()

    def install(self) -> None:
        if self._handles:
            return
        for slot, site in enumerate(self.sites):
            self._handles.append(site.module.register_forward_hook(self._make_hook(slot)))
            proj = getattr(site.module, "proj", None)
            if self.loaded.adapter == "gemma4" and proj is not None:
                self._handles.append(proj.register_forward_hook(self._make_stash_hook(slot)))

    def remove(self) -> None:
        for h in self._handles:
            h.remove()
        self._handles.clear()
        self._buffers.clear()

    def routers_info(self) -> list[dict]:
        """Per MoE layer: ``layer``, ``path``, ``selection`` ("learned", or "hash": experts from the token id),
        ``logits`` (True/False; None before the first :meth:`run`) and ``rank_by`` ("logit" or "weight")."""
        return [
            {"layer": s.layer, "path": s.path, "selection": x.selection, "logits": h,
             "rank_by": None if h is None else ("logit" if h else "weight")}
            for s, x, h in zip(self.sites, self._extractors, self._has_logits)
        ]

    # -- hooks --------------------------------------------------------------------------------------
    def _make_hook(self, slot: int):
        extractor = self._extractors[slot]

        def hook(_module, inputs, out):
            if not self._active or self._error is not None:
                return None
            try:
                self._record(slot, extractor(inputs, out))
            except BaseException as exc:  # noqa: BLE001 - re-raised by run()
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

    def _buffer_for(self, device):
        import torch

        buf = self._buffers.get(device)
        n = self._n_tokens
        if buf is None or buf[0].shape[0] != n:
            shape = (n, self.num_layers, self.k)
            e = torch.empty(shape, dtype=torch.int32, device=device)
            w = torch.empty(shape, dtype=torch.float32, device=device)
            sc = torch.empty(shape, dtype=torch.float32, device=device)
            lg = None
            if self.save_logits:
                lg = torch.full((n, self.num_layers, self.num_experts), float("nan"), dtype=torch.float16,
                                device=device)
            buf = (e, w, sc, lg)
            self._buffers[device] = buf
        return buf

    def _record(self, slot: int, result) -> None:
        idx, weights, logits = result
        k_l = self.sites[slot].top_k
        idx = idx.reshape(-1, idx.shape[-1])
        weights = weights.reshape(-1, weights.shape[-1])
        if idx.shape[0] != self._n_tokens or idx.shape[-1] != k_l or weights.shape != idx.shape:
            raise ModelError(
                f"router {self.sites[slot].path} returned indices of shape {tuple(idx.shape)}, "
                f"expected ({self._n_tokens}, {k_l})"
            )
        if logits is not None:
            logits = logits.reshape(-1, logits.shape[-1])
            if logits.shape != (self._n_tokens, self.num_experts):
                logits = None  # columns that are not one per expert id: not used for the rank
        self._has_logits[slot] = logits is not None
        self._calls[slot] += 1
        if self._calls[slot] > 1:
            raise ModelError(f"router {self.sites[slot].path} ran more than once in one forward pass")
        e_buf, w_buf, s_buf, l_buf = self._buffer_for(idx.device)
        self._slot_device[slot] = idx.device
        e_buf[:, slot, :k_l].copy_(idx)  # raw selection; ordered by score once per batch in run()
        w_buf[:, slot, :k_l].copy_(weights)
        if logits is not None:
            s_buf[:, slot, :k_l].copy_(logits.gather(1, idx.long()))
            if l_buf is not None:
                l_buf[:, slot, :].copy_(logits)
        else:
            s_buf[:, slot, :k_l].copy_(weights)
            if l_buf is not None:
                l_buf[:, slot, :].fill_(float("nan"))
        if k_l < self.k:
            e_buf[:, slot, k_l:].fill_(self.sentinel)
            w_buf[:, slot, k_l:].fill_(0.0)
            s_buf[:, slot, k_l:].fill_(float("-inf"))

    # -- public -------------------------------------------------------------------------------------
    def run(self, input_ids, attention_mask) -> tuple[np.ndarray, np.ndarray]:
        """Forward one batch through the base model; return ``experts (B,T,L,k)`` (uint8/uint16) and
        ``weights (B,T,L,k)`` float16 for the MoE layers in ``facts.moe_layers``, rank 0 = the selected
        expert with the highest raw router logit. With ``save_logits``, :attr:`last_logits` is set too."""
        import torch

        if not self._handles:
            raise ModelError("RouteCapture.run() called outside its 'with' block")
        dev = self.loaded.input_device
        input_ids = torch.as_tensor(input_ids).to(dev)
        attention_mask = torch.as_tensor(attention_mask).to(dev)
        if input_ids.dim() != 2 or attention_mask.shape != input_ids.shape:
            raise ModelError(
                f"input_ids must be (B, T) and attention_mask the same shape; got {tuple(input_ids.shape)} "
                f"and {tuple(attention_mask.shape)}"
            )
        b, t = input_ids.shape
        self._n_tokens = b * t
        self._calls = [0] * self.num_layers
        self._slot_device = [None] * self.num_layers
        self._error = None
        self.last_logits = None
        self._active = True
        try:
            with torch.inference_mode():
                self.loaded.base(input_ids=input_ids, attention_mask=attention_mask, use_cache=False)
        except ModelError:
            raise
        except Exception as exc:  # noqa: BLE001
            if self._error is not None:
                raise ModelError(f"routing capture failed: {_first_line(self._error)}") from self._error
            raise ModelError(f"forward pass of {self.loaded.facts.name_or_path} failed: {_first_line(exc)}") from exc
        finally:
            self._active = False
        if self._error is not None:
            if isinstance(self._error, ModelError):
                raise self._error
            raise ModelError(f"routing capture failed: {_first_line(self._error)}") from self._error
        missing = [self.sites[i].path for i, c in enumerate(self._calls) if c == 0]
        if missing:
            raise ModelError(f"router {missing[0]} did not run during the forward pass")
        experts = np.empty((self._n_tokens, self.num_layers, self.k), dtype=self.np_dtype)
        weights = np.empty((self._n_tokens, self.num_layers, self.k), dtype=np.float16)
        logits = (np.empty((self._n_tokens, self.num_layers, self.num_experts), dtype=np.float16)
                  if self.save_logits else None)
        for device, (e_buf, w_buf, s_buf, l_buf) in self._buffers.items():
            slots = [i for i, d in enumerate(self._slot_device) if d == device]
            if not slots:
                continue
            e_ord, w_ord = _order_by_score(e_buf[:, slots], w_buf[:, slots], s_buf[:, slots])
            e_host = e_ord.cpu().numpy()  # one copy per device per batch
            w_host = w_ord.to(torch.float16).cpu().numpy()
            experts[:, slots, :] = e_host.astype(self.np_dtype)
            weights[:, slots, :] = w_host
            if logits is not None:
                logits[:, slots, :] = l_buf[:, slots].cpu().numpy()
        if logits is not None:
            self.last_logits = logits.reshape(b, t, self.num_layers, self.num_experts)
        return experts.reshape(b, t, self.num_layers, self.k), weights.reshape(b, t, self.num_layers, self.k)
