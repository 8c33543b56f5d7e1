"""Capture the experts each token is routed to, with forward hooks on the router modules.

Design:

* The hooks read the model's **real** selection from the router's return value (never a top-k recomputed
  from raw logits when the router returns indices). Adapters (named per model_type in ``moe_tui.core.architectures``):

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
  - ``zaya``: the router rewrites its skip class to (id 0, weight 0); the hook re-labels it as id
    ``num_experts`` (E, the last id of ``facts.num_experts = E + 1``) with weight 0.

* Each token's experts are ordered by weight, descending (rank 0 = top-1), ties by expert id.
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

    from moe_tui.core.models import LoadedModel

__all__ = ["RouteCapture", "sentinel_for", "expert_dtype_for"]


def expert_dtype_for(num_experts: int):
    """uint8 when every expert id (and the 255 sentinel) fits, else uint16."""
    return np.uint8 if num_experts <= 255 else np.uint16


def sentinel_for(num_experts: int) -> int:
    return 255 if num_experts <= 255 else 65535


def _first_line(exc: BaseException) -> str:
    return " ".join(str(exc).split())[:300] or type(exc).__name__


class _Extractor:
    """Turns one router call's output into (indices (N,k_l) long, weights (N,k_l) float)."""

    def __init__(self, adapter: str, site, num_experts: int):
        self.adapter = adapter
        self.site = site
        self.num_experts = num_experts

    def __call__(self, out):
        import torch

        a = self.adapter
        if a == "dbrx":
            logits = out[0] if isinstance(out, (tuple, list)) else out
            weights, idx = self.site.parent.route_tokens_to_experts(logits)
            return idx, weights
        if a == "llama4":
            scores = out[0]
            weights, idx = torch.topk(scores, self.site.top_k, dim=-1)
            return idx, weights
        if a == "jetmoe":
            index_sorted, _batch_index, batch_gates, expert_size, _logits = out[:5]
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
            return idx_flat.view(-1, k), w_flat.view(-1, k)
        # generic (+ zaya)
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
        elif len(out) >= 3 and torch.is_tensor(out[2]) and not out[2].is_floating_point():
            idx, weights = out[2], out[1]
        else:
            raise ModelError(
                f"router {self.site.path} returned no expert-index tensor; this architecture needs an adapter"
            )
        if a == "zaya":
            skip = (idx == 0) & (weights == 0)
            idx = torch.where(skip, torch.full_like(idx, self.num_experts - 1), idx)
        return idx, weights


def _order_by_weight(experts, weights):
    """Order each (token, layer)'s k experts by weight, descending; ties by expert id (ascending).

    ``experts`` int, ``weights`` float, both ``(N, L, k)`` on one device; one batched pair of sorts
    per batch (routers using ``topk(sorted=False)`` give no order at all).
    """
    import torch

    experts, order = torch.sort(experts, dim=-1)
    weights = torch.gather(weights, -1, order)
    order = torch.sort(-weights, dim=-1, stable=True).indices
    return torch.gather(experts, -1, order), torch.gather(weights, -1, order)


class RouteCapture:
    """Context manager: ``with RouteCapture(loaded) as cap: experts, weights = cap.run(ids, mask)``."""

    def __init__(self, loaded: LoadedModel):
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
        self._extractors = [_Extractor(loaded.adapter, s, self.num_experts) for s in self.sites]
        self._handles: list[Any] = []
        self._buffers: dict[Any, tuple[Any, Any]] = {}  # device -> (experts int32 (N,L,k), weights fp32)
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

    def remove(self) -> None:
        for h in self._handles:
            h.remove()
        self._handles.clear()
        self._buffers.clear()

    # -- hooks --------------------------------------------------------------------------------------
    def _make_hook(self, slot: int):
        extractor = self._extractors[slot]

        def hook(_module, _inputs, out):
            if not self._active or self._error is not None:
                return None
            try:
                self._record(slot, extractor(out))
            except BaseException as exc:  # noqa: BLE001 - re-raised by run()
                self._error = exc
            return None

        return hook

    def _buffer_for(self, device):
        import torch

        buf = self._buffers.get(device)
        n = self._n_tokens
        if buf is None or buf[0].shape[0] != n:
            e = torch.empty((n, self.num_layers, self.k), dtype=torch.int32, device=device)
            w = torch.empty((n, self.num_layers, self.k), dtype=torch.float32, device=device)
            buf = (e, w)
            self._buffers[device] = buf
        return buf

    def _record(self, slot: int, result) -> None:
        idx, weights = result
        k_l = self.sites[slot].top_k
        idx = idx.reshape(-1, idx.shape[-1])
        weights = weights.reshape(-1, weights.shape[-1])
        if idx.shape[0] != self._n_tokens or idx.shape[-1] != k_l or weights.shape != idx.shape:
            raise ModelError(
                f"router {self.sites[slot].path} returned indices of shape {tuple(idx.shape)}, "
                f"expected ({self._n_tokens}, {k_l})"
            )
        self._calls[slot] += 1
        if self._calls[slot] > 1:
            raise ModelError(f"router {self.sites[slot].path} ran more than once in one forward pass")
        e_buf, w_buf = self._buffer_for(idx.device)
        self._slot_device[slot] = idx.device
        e_buf[:, slot, :k_l].copy_(idx)  # raw selection; ordered by weight once per batch in run()
        w_buf[:, slot, :k_l].copy_(weights)
        if k_l < self.k:
            e_buf[:, slot, k_l:].fill_(self.sentinel)
            w_buf[:, slot, k_l:].fill_(0.0)

    # -- public -------------------------------------------------------------------------------------
    def run(self, input_ids, attention_mask) -> tuple[np.ndarray, np.ndarray]:
        """Forward one batch through the base model; return ``experts (B,T,L,k)`` (uint8/uint16) and
        ``weights (B,T,L,k)`` float16, rank 0 = highest weight, for the MoE layers in ``facts.moe_layers``."""
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
        for device, (e_buf, w_buf) in self._buffers.items():
            slots = [i for i, d in enumerate(self._slot_device) if d == device]
            if not slots:
                continue
            e_ord, w_ord = _order_by_weight(e_buf[:, slots], w_buf[:, slots])
            e_host = e_ord.cpu().numpy()  # one copy per device per batch
            w_host = w_ord.to(torch.float16).cpu().numpy()
            experts[:, slots, :] = e_host.astype(self.np_dtype)
            weights[:, slots, :] = w_host
        return experts.reshape(b, t, self.num_layers, self.k), weights.reshape(b, t, self.num_layers, self.k)
