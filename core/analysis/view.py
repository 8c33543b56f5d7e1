"""The run view: what a report reads from one run (analysed tokens only), with the pieces computed once.

:class:`RunView` holds the analysed tokens' experts and POS, and defers the per-token keys (sentence, token id,
word form, router logits) that only the probes and controls need.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Callable, Sequence

import numpy as np

from moe_tui.core.analysis import metrics
from moe_tui.errors import ReportError

__all__ = ["RunView", "form_keys", "Progress"]

#: ``progress(stage, done, total)``: called between steps and during training; it may raise ``Cancelled``.
Progress = Callable[[str, int, int], None]


class _RunKeys:
    """The analysed tokens of a run (``analysis_mask``) and their keys, each computed once when first asked for."""

    def __init__(self, run: Any):
        self.run = run
        self.mask = np.asarray(run.analysis_mask(), dtype=bool)
        self._sentence: np.ndarray | None = None
        self._forms: tuple[np.ndarray, tuple[str, ...]] | None = None

    def keep(self, a) -> np.ndarray:
        """The analysed tokens' rows of a per-token array (np.compress: several times faster than a boolean index
        on ``[T, L, k]``)."""
        return np.compress(self.mask, np.asarray(a), axis=0)

    def sentence(self) -> np.ndarray:
        if self._sentence is None:
            offsets = np.asarray(self.run.sentence_offsets, dtype=np.int64)
            kept_before = np.concatenate([[0], np.cumsum(self.mask, dtype=np.int64)])
            self._sentence = np.repeat(np.arange(len(offsets) - 1, dtype=np.int64),
                                       kept_before[offsets[1:]] - kept_before[offsets[:-1]])
        return self._sentence

    def _form_keys(self) -> tuple[np.ndarray, tuple[str, ...]]:
        if self._forms is None:
            run = self.run
            wi = self.keep(run.word_index).astype(np.int64)
            lowered = [f.lower() for f in run.forms.tolist()] + [""]
            vocab, lower_id = np.unique(np.array(lowered, dtype=str), return_inverse=True)
            lower_id = lower_id.reshape(-1).astype(np.int64)
            no_word = len(lowered) - 1
            word_form = np.asarray(run.word_form)
            # the writer checked that every word index is inside its sentence's words
            gw = np.asarray(run.word_offsets, dtype=np.int64)[self.sentence()] + wi
            if len(word_form):
                vocab_id = np.where(wi >= 0, word_form[np.clip(gw, 0, len(word_form) - 1)], no_word)
            else:
                vocab_id = np.full(len(wi), no_word, dtype=np.int64)
            self._forms = (lower_id[vocab_id], tuple(vocab.tolist()))
        return self._forms

    def form_ids(self) -> np.ndarray:
        return self._form_keys()[0]

    def form_vocab(self) -> tuple[str, ...]:
        return self._form_keys()[1]


class _Deferred:
    """A :class:`RunView` field given as a value, or as a function computing it on first use: ``from_run`` defers
    the per-token keys that only the probes and controls need (sentence, token ids, form ids), so the routing
    tables of a large run never build them."""

    def __init__(self, default: Any = None):
        self.default = default

    def __set_name__(self, owner, name: str) -> None:
        self.slot = "_" + name

    def __get__(self, obj, objtype=None):
        if obj is None:
            return self.default  # the dataclass field's default
        value = obj.__dict__.get(self.slot, self.default)
        if callable(value):
            value = obj.__dict__[self.slot] = value()
        return value

    def __set__(self, obj, value) -> None:
        obj.__dict__[self.slot] = value

    def ready(self, obj) -> bool:
        return not callable(obj.__dict__.get(self.slot))


def form_keys(forms: Sequence[str]) -> dict:
    """``RunView`` keyword arguments for word forms given as strings (tests, notebooks): ``{"form_ids": int64 [T],
    "form_vocab": tuple}``, the ids following the sorted order of the distinct (lower-cased) forms, as
    :meth:`RunView.from_run` builds them."""
    vocab, ids = np.unique(np.asarray([str(f).lower() for f in forms], dtype=object).astype(str), return_inverse=True)
    return {"form_ids": ids.astype(np.int64).reshape(-1), "form_vocab": tuple(vocab.tolist())}


@dataclass
class RunView:
    """What a report needs from one run: analysed tokens only (special / unaligned excluded).

    Shapes: ``experts [T, L, k]`` int, ``pos [T]`` int (index into ``tags``), ``form_ids [T]`` int64 (id of the
    lower-cased form of the token's word in ``form_vocab``; ids follow the sorted order of the forms, so grouping
    by id is grouping by form), ``sentence [T]`` sentence index in the run, ``token_ids [T]``. ``form_vocab``
    holds the distinct lower-cased forms, sorted (``""``: a token without a word). ``moe_layers`` lists the
    ``L`` decoder-layer indices. ``logits [T, L, N]`` float16 router logits (NaN in a layer whose router has
    none), or None for a run extracted without them. ``origin [T]`` uint8 (0 prompt, 1 generated) for a run made
    by ``moe-tui generate``, else None; ``tagging``: such a run's manifest ``tagging`` (tagger, its accuracy).
    ``form_ids``, ``sentence``, ``token_ids``, ``form_vocab``, ``logits`` and ``origin`` may be given as functions:
    they are then computed on first use.
    """

    model: str
    run_id: str
    tags: tuple[str, ...]
    moe_layers: list[int]
    n_experts: int
    top_k: int
    experts: np.ndarray
    pos: np.ndarray
    form_ids: np.ndarray = _Deferred()
    sentence: np.ndarray = _Deferred()
    token_ids: np.ndarray = _Deferred()
    form_vocab: Sequence[str] = _Deferred(default=())
    logits: np.ndarray | None = _Deferred()
    origin: np.ndarray | None = _Deferred()
    tagging: dict | None = None
    _cache: dict = field(default_factory=dict, repr=False, compare=False)

    @classmethod
    def from_run(cls, run: Any) -> "RunView":
        """Build from a cache ``Run``: the analysed tokens' experts and POS now (``run.analysis_mask()``), the
        per-token keys on first use, all with array operations: a token's word is ``word_offsets[sentence] +
        word_index``, its form ``word_form`` of that word (an id into the run's vocabulary, which is lower-cased
        and sorted once: nothing is built per token)."""
        keys = _RunKeys(run)
        return cls(
            model=str(run.manifest["model"]["name_or_path"]),
            run_id=str(run.run_id),
            tags=tuple(run.tags),
            moe_layers=[int(x) for x in run.moe_layers],
            n_experts=int(run.num_experts),
            top_k=int(run.top_k),
            experts=keys.keep(run.experts),
            pos=keys.keep(run.pos).astype(np.int64),
            form_ids=keys.form_ids,
            sentence=keys.sentence,
            token_ids=lambda: keys.keep(run.token_ids),
            form_vocab=keys.form_vocab,
            logits=(lambda: keys.keep(run.logits)) if getattr(run, "has_logits", False) else None,
            origin=(lambda: keys.keep(run.origin)) if "origin" in run.manifest.get("arrays", {}) else None,
            tagging=run.manifest.get("tagging"),
        )

    def form_strings(self) -> np.ndarray:
        """``[T]`` the lower-cased form of each token, as strings (built on request; bulk users take ``form_ids``)."""
        return np.asarray(self.form_vocab, dtype=object)[self.form_ids]

    @property
    def has_logits(self) -> bool:
        """Whether the view holds router logits (without reading a deferred ``[T, L, N]`` array)."""
        return self.__dict__.get("_logits") is not None

    # ---- cached pieces (computed once per view) -------------------------------------------------
    @property
    def n_pos(self) -> int:
        return len(self.tags)

    @property
    def n_tokens(self) -> int:
        return int(self.experts.shape[0])

    def _get(self, key: str, fn: Callable[[], Any]) -> Any:
        if key not in self._cache:
            self._cache[key] = fn()
        return self._cache[key]

    def pos_counts(self) -> tuple[np.ndarray, np.ndarray]:
        return self._get("pos_counts", lambda: metrics.pos_counts(self.pos, self.n_pos))

    def probe_experts(self) -> tuple[np.ndarray, int]:
        """``(experts [T, L, k], N')`` as the probes read them: a sentinel id (a rank a layer does not use) becomes
        its own category ``N`` and ``N' = N + 1``; without sentinels, the experts and ``N``
        (:func:`moe_tui.core.analysis.metrics.sentinel_as_bin`)."""
        return self._get("probe_experts", lambda: metrics.sentinel_as_bin(self.experts, self.n_experts))

    def counts(self) -> np.ndarray:
        return self._get("counts", lambda: metrics.assignment_counts(self.experts, self.pos, self.n_experts, self.n_pos))

    def spec(self) -> np.ndarray:
        return self._get("spec", lambda: metrics.spec_from_counts(self.counts(), self.top_k, self.pos_counts()[0]))

    def spec_pos(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        return self._get("spec_pos", lambda: metrics.spec_by_pos(self.spec()))

    def global_spec(self) -> float:
        return self._get("global_spec", lambda: metrics.global_spec(self.spec_pos()[0], self.tags, self.pos_counts()[0]))

    def global_pos(self) -> tuple[str, ...]:
        """The tags :meth:`global_spec` averages (``metrics.global_spec_tags``)."""
        return self._get("global_pos",
                         lambda: metrics.global_spec_tags(self.spec_pos()[0], self.tags, self.pos_counts()[0]))

    def kl(self, reference: str = "corpus") -> tuple[np.ndarray, np.ndarray]:
        return self._get(f"kl:{reference}", lambda: metrics.kl_per_expert(self.counts(), self.pos_counts()[0], reference=reference))

    def validate(self) -> None:
        """Raise :class:`ReportError` when the arrays do not fit together."""
        T = self.n_tokens
        where = f"run {self.run_id}"
        if self.experts.ndim != 3:
            raise ReportError(f"{where}: experts must be [T, L, k], got shape {self.experts.shape}")
        if T == 0:
            raise ReportError(f"{where}: no analysed tokens to report on")
        if self.experts.shape[1] != len(self.moe_layers):
            raise ReportError(f"{where}: {self.experts.shape[1]} routed layers but {len(self.moe_layers)} MoE layers listed")
        if self.experts.shape[2] != self.top_k:
            raise ReportError(f"{where}: experts has k={self.experts.shape[2]} but top_k={self.top_k}")
        for name in ("pos", "form_ids", "sentence", "token_ids"):
            if name != "pos" and not RunView.__dict__[name].ready(self):
                continue  # computed later from the same analysed tokens
            if len(getattr(self, name)) != T:
                raise ReportError(f"{where}: {name} has {len(getattr(self, name))} tokens, experts has {T}")
        if RunView.__dict__["logits"].ready(self) and self.logits is not None \
                and self.logits.shape[:2] != self.experts.shape[:2]:
            raise ReportError(f"{where}: logits has shape {self.logits.shape}, experts {self.experts.shape}")
        if self.pos.min() < 0 or self.pos.max() >= self.n_pos:
            raise ReportError(f"{where}: POS index outside the {self.n_pos} tags")
        try:  # ids 0..N-1, or the sentinel of a rank a layer does not use (per-layer top-k)
            self.probe_experts()
        except ValueError:
            raise ReportError(f"{where}: expert id outside 0..{self.n_experts - 1} (and not the unused-rank "
                              f"sentinel {metrics.sentinel_for(self.n_experts)})") from None
