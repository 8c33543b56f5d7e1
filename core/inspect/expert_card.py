"""The card of one expert at one MoE layer: its load, its POS mix against the corpus, the tokens and words it takes
most (by count and by lift), and example contexts. Pure numpy over the run's arrays and vocabularies.

Definitions (analysed tokens only, ``pos >= 0``; ``n`` of them; ``k`` experts per token; expert ``e`` at layer ``l``):

- an *assignment* of ``e`` is a token that has ``e`` among its k experts at ``l`` (a token counts once per expert,
  as in every metric). ``load_share = assignments(e) / assignments(l)``: its share of the layer's assignments
  (``assignments(l) = n * k``, less the ranks the layer leaves unused where the run stores the unused-rank
  sentinel; uniform routing gives ``1 / N``). ``top1_share``: share of the tokens whose rank-0 expert (highest raw
  router logit) is ``e``.
- POS mix: for each tag ``p``, ``count`` = assignments of ``e`` with tag ``p``, ``share = count / assignments(e)``,
  ``corpus_share = tokens(p) / n``, and ``lift = share / corpus_share``.
- tokens (tokenizer pieces) and words (word forms, lower-cased; a word counts once per token of it), likewise:
  ``count`` = assignments of ``e`` to item ``x``, ``corpus_count`` = analysed tokens of ``x``,
  ``lift(x) = (count / assignments(e)) / (corpus_count / n)`` = ``P(x | e) / P(x)``: how many times more often
  ``x`` reaches ``e`` than a token drawn from the corpus. Equivalently ``P(e | x) / P(e)``. Lift is left empty
  (``None``) when ``corpus_count < min_count``: an item seen twice, both times at ``e``, would otherwise top the
  list with the largest possible lift.
- examples: up to ``examples`` assignments drawn without replacement with ``numpy.random.default_rng(seed)``,
  shown in run order.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Iterator, Sequence

import numpy as np

from moe_tui.core.inspect.concordance import layer_index, token_word_ids

EXPERT_COLUMNS = ("section", "key", "count", "share", "corpus_count", "corpus_share", "lift",
                  "sentence", "token", "left", "match", "right")
MIN_COUNT = 10


@dataclass
class ItemStats:
    """Counts of one kind of item (POS tags, pieces or word forms) among an expert's assignments and in the corpus.

    ``ids int64 [m]`` item ids (into ``names``) with ``count > 0``, most assigned first; ``count``, ``corpus_count``
    ``int64 [m]``; ``share``, ``corpus_share``, ``lift`` ``float64 [m]`` (``lift`` NaN where
    ``corpus_count < min_count``)."""

    names: Sequence[str]
    ids: np.ndarray
    count: np.ndarray
    corpus_count: np.ndarray
    share: np.ndarray
    corpus_share: np.ndarray
    lift: np.ndarray

    def by_lift(self, top: int | None = None) -> np.ndarray:
        """Positions (into ``ids``) with a lift, highest lift first (ties: more assignments first)."""
        ok = np.flatnonzero(~np.isnan(self.lift))
        order = ok[np.lexsort((-self.count[ok], -self.lift[ok]))]
        return order[:top] if top is not None else order


def item_stats(items_e: np.ndarray, items_all: np.ndarray, n_items: int, names: Sequence[str], *,
               min_count: int = MIN_COUNT, n_total: int | None = None, n_e: int | None = None) -> ItemStats:
    """:class:`ItemStats` from the item id of each assignment of the expert (``items_e [a]``) and of each analysed
    token (``items_all [n]``)."""
    c_e = np.bincount(np.asarray(items_e, dtype=np.int64), minlength=n_items)[:n_items]
    c_all = np.bincount(np.asarray(items_all, dtype=np.int64), minlength=n_items)[:n_items]
    n = int(n_total if n_total is not None else len(items_all))
    a = int(n_e if n_e is not None else len(items_e))
    ids = np.flatnonzero(c_e)
    ids = ids[np.lexsort((ids, -c_e[ids]))]
    count, corpus = c_e[ids], c_all[ids]
    share = count / a if a else np.zeros(len(ids))
    corpus_share = corpus / n if n else np.zeros(len(ids))
    with np.errstate(divide="ignore", invalid="ignore"):
        lift = np.where(corpus >= max(1, min_count), share / np.where(corpus_share > 0, corpus_share, 1), np.nan)
    return ItemStats(names, ids, count, corpus, share.astype(np.float64), corpus_share.astype(np.float64),
                     lift.astype(np.float64))


@dataclass
class ExpertCard:
    layer: int              # decoder-layer index
    layer_idx: int
    expert: int
    n_experts: int
    top_k: int
    n_tokens: int           # analysed tokens
    assignments: int        # of this expert at this layer
    top1: int
    pos: ItemStats
    tokens: ItemStats
    words: ItemStats
    examples: np.ndarray    # int64 [m] global token indices, run order
    example_sentence: np.ndarray
    example_token: np.ndarray
    example_span: np.ndarray  # int64 [m, 2] the word's span in its sentence
    min_count: int
    layer_assignments: int = -1   # of every expert at this layer (n * k less unused ranks); -1: n * k

    @property
    def total_assignments(self) -> int:
        """The layer's assignments over the analysed tokens (``n * k`` less the unused ranks)."""
        return self.layer_assignments if self.layer_assignments >= 0 else self.n_tokens * self.top_k

    @property
    def load_share(self) -> float:
        d = self.total_assignments
        return self.assignments / d if d else 0.0

    @property
    def top1_share(self) -> float:
        return self.top1 / self.n_tokens if self.n_tokens else 0.0

    def rows(self, texts) -> Iterator[tuple]:
        """CSV rows (:data:`EXPERT_COLUMNS`); the layout: docs/cli.md, "`expert` CSV". ``texts[i]``: sentence ``i``'s text."""
        u = 1.0 / self.n_experts
        empty = (None,) * 5
        yield ("load", "assignments", self.assignments, self.load_share, self.total_assignments, u,
               self.load_share / u, *empty)
        yield ("load", "top1", self.top1, self.top1_share, self.n_tokens, u, self.top1_share / u, *empty)
        for section, st in (("pos", self.pos), ("token", self.tokens), ("word", self.words)):
            for j in range(len(st.ids)):
                lift = st.lift[j]
                yield (section, st.names[int(st.ids[j])], int(st.count[j]), float(st.share[j]),
                       int(st.corpus_count[j]), float(st.corpus_share[j]), None if np.isnan(lift) else float(lift),
                       *empty)
        for j in range(len(self.examples)):
            s = int(self.example_sentence[j])
            t = texts[s]
            a, b = int(self.example_span[j, 0]), int(self.example_span[j, 1])
            yield ("example", None, None, None, None, None, None, s, int(self.example_token[j]), t[:a], t[a:b], t[b:])


def _lower_vocab(forms: Sequence[str]) -> tuple[np.ndarray, list[str]]:
    """Map each form id to the id of its lower-cased form in a sorted vocabulary of lower-cased forms."""
    lowered = np.array([f.lower() for f in forms] or [""], dtype=str)
    vocab, inv = np.unique(lowered, return_inverse=True)
    return inv.reshape(-1).astype(np.int64), [str(v) for v in vocab.tolist()]


def expert_card(run, *, layer: int | None, expert: int, min_count: int = MIN_COUNT, examples: int = 12,
                seed: int = 0, word_ids: np.ndarray | None = None, should_stop=None) -> ExpertCard | None:
    """The card of ``expert`` at decoder layer ``layer`` (see the module doc for every definition).

    ``word_ids``: :func:`moe_tui.core.inspect.concordance.token_word_ids` when the caller keeps it. ``should_stop``: polled
    between steps (returns ``None`` when it says so)."""
    from moe_tui.errors import ReportError

    li = layer_index(run.moe_layers, layer)
    n_exp = int(run.num_experts)
    if not 0 <= int(expert) < n_exp:
        raise ReportError(f"expert {expert} is outside 0..{n_exp - 1}")
    stop = should_stop or (lambda: False)
    pos_all = np.asarray(run.pos)
    analysed = np.flatnonzero(pos_all >= 0)
    e_layer = np.asarray(run.experts[:, li, :])[analysed]          # [n, k]
    layer_assignments = int(((e_layer >= 0) & (e_layer < n_exp)).sum())   # unused-rank sentinels left out
    hit_rank = e_layer == int(expert)
    hit = hit_rank.any(axis=1)
    top1 = int(hit_rank[:, 0].sum()) if hit_rank.shape[1] else 0
    toks_e = analysed[hit]
    n, a = len(analysed), len(toks_e)
    if stop():
        return None
    tags = tuple(run.tags)
    pos = item_stats(pos_all[toks_e], pos_all[analysed], len(tags), tags, min_count=1, n_total=n, n_e=a)
    pieces = run.pieces.tolist()
    piece = np.asarray(run.token_piece)
    tokens = item_stats(piece[toks_e], piece[analysed], len(pieces), pieces, min_count=min_count, n_total=n, n_e=a)
    if stop():
        return None
    if word_ids is None:
        word_ids = token_word_ids(run)
    lower_of_form, lower_vocab = _lower_vocab(run.forms.tolist())
    wf = np.asarray(run.word_form)
    w_all = lower_of_form[wf[word_ids[analysed]]]
    w_e = lower_of_form[wf[word_ids[toks_e]]]
    words = item_stats(w_e, w_all, len(lower_vocab), lower_vocab, min_count=min_count, n_total=n, n_e=a)
    rng = np.random.default_rng(seed)
    ex = np.sort(rng.choice(toks_e, size=min(examples, a), replace=False)) if a else np.zeros(0, dtype=np.int64)
    off = np.asarray(run.sentence_offsets, dtype=np.int64)
    sent = (np.searchsorted(off, ex, side="right") - 1).astype(np.int64)
    span = np.asarray(run.word_spans)[word_ids[ex]].astype(np.int64).reshape(-1, 2)
    return ExpertCard(layer=int(run.moe_layers[li]), layer_idx=li, expert=int(expert), n_experts=n_exp,
                      top_k=int(run.top_k), n_tokens=n, assignments=a, top1=top1, pos=pos, tokens=tokens,
                      words=words, examples=ex.astype(np.int64), example_sentence=sent, example_token=ex - off[sent],
                      example_span=span, min_count=int(min_count), layer_assignments=layer_assignments)


def write_expert_card(card: ExpertCard, texts, out, *, spreadsheet_safe: bool = False):
    from moe_tui.fileio import write_csv

    return write_csv(out, EXPERT_COLUMNS, card.rows(texts), spreadsheet_safe=spreadsheet_safe)
