"""Keyword in context over a run: every analysed token of a word (or of a tokenizer piece), with its POS and its
experts at one MoE layer, grouped by POS.

Built over the run's arrays and vocabularies (run format 2): the query is matched once against the vocabulary of
word forms (``forms``) or of pieces (``pieces``), and the matching tokens are found with array operations
(``np.isin`` over ``word_form`` / ``token_piece``); nothing is built per token of the run. Text is decoded only for
the occurrences a caller asks rows for.

An *occurrence* is one analysed token (``pos >= 0``: special and unaligned tokens are left out, as in every
metric). With ``by="form"`` every token of a matching word is an occurrence (a word split into two pieces gives two
rows, the ``token`` column tells them apart, ``match`` is the whole word); the form matches case-insensitively
(``str.lower``). With ``by="token"`` a token matches when its piece, exactly as stored or without its leading
word-start marker (``Ġ``, ``▁``), equals the query (case-sensitive: pieces are); ``match`` is then the text the
token covers in its sentence.

Rows (:data:`CONCORDANCE_COLUMNS`): ``sentence`` (index in the run), ``token`` (index in its sentence; special
tokens count), ``left`` / ``match`` / ``right`` (the sentence text split around the match: ``left + match + right``
is the sentence, exactly as stored), ``pos`` (tag name), ``layer`` (decoder-layer index), ``experts`` (the
token's experts in rank order, rank 0 = highest raw router logit, space separated; a rank the layer does not use
(the run's unused-rank sentinel, per-layer top-k) is left out, and counts for no expert in the POS groups).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Iterator, Sequence

import numpy as np

from moe_tui.errors import ReportError

CONCORDANCE_COLUMNS = ("sentence", "token", "left", "match", "right", "pos", "layer", "experts")
WORD_START_MARKS = ("\u0120", "\u2581")   # byte-level BPE ``Ġ``, sentencepiece ``▁``
BY = ("form", "token")
SORT_KEYS = ("sentence", "pos", "expert", "left", "right")
CONTEXT_KEY = 48   # characters of context that sort by left / right context compares


def layer_index(moe_layers: Sequence[int], layer: int | None) -> int:
    """Position on the MoE-layer axis of decoder layer ``layer`` (``None``: the first MoE layer)."""
    layers = [int(x) for x in moe_layers]
    if layer is None:
        return 0
    if int(layer) not in layers:
        shown = ", ".join(map(str, layers[:12])) + (", …" if len(layers) > 12 else "")
        raise ReportError(f"layer {layer} is not a MoE layer of this run (MoE layers: {shown})")
    return layers.index(int(layer))


def matching_form_ids(forms: Sequence[str], word: str) -> np.ndarray:
    """``int64 [m]``: ids of the vocabulary ``forms`` equal to ``word`` ignoring case (``str.lower``)."""
    target = word.lower()
    return np.asarray([i for i, f in enumerate(forms) if f.lower() == target], dtype=np.int64)


def matching_piece_ids(pieces: Sequence[str], query: str) -> np.ndarray:
    """``int64 [m]``: ids of the pieces equal to ``query`` as stored or without a leading word-start marker."""
    out = []
    for i, p in enumerate(pieces):
        if p == query or (p[:1] in WORD_START_MARKS and p[1:] == query):
            out.append(i)
    return np.asarray(out, dtype=np.int64)


def token_word_ids(run) -> np.ndarray:
    """``int64 [T]``: the run-wide word index (into ``word_form``) of every token, -1 for none."""
    off = np.asarray(run.sentence_offsets, dtype=np.int64)
    wi = np.asarray(run.word_index).astype(np.int64)
    sent = np.repeat(np.arange(len(off) - 1, dtype=np.int64), np.diff(off))
    g = np.asarray(run.word_offsets, dtype=np.int64)[sent] + wi
    return np.where(wi >= 0, g, -1)


def find_occurrences(run, query: str, *, by: str = "form", word_ids: np.ndarray | None = None) -> np.ndarray:
    """``int64 [n]``: global indices (ascending) of the analysed tokens that match ``query`` (see module doc).

    ``word_ids``: :func:`token_word_ids` of the run, when the caller keeps it (it is ``[T]``)."""
    if by not in BY:
        raise ReportError(f"--by must be 'form' or 'token', got {by!r}")
    if not query:
        raise ReportError("give a word to look for")
    analysed = np.asarray(run.pos) >= 0
    if by == "token":
        ids = matching_piece_ids(run.pieces.tolist(), query)
        if not len(ids):
            return np.zeros(0, dtype=np.int64)
        hit = np.isin(np.asarray(run.token_piece), ids) & analysed
        return np.flatnonzero(hit).astype(np.int64)
    ids = matching_form_ids(run.forms.tolist(), query)
    if not len(ids):
        return np.zeros(0, dtype=np.int64)
    word_hit = np.isin(np.asarray(run.word_form), ids)
    if word_ids is None:
        word_ids = token_word_ids(run)
    cand = np.flatnonzero(analysed & (word_ids >= 0))
    return cand[word_hit[word_ids[cand]]].astype(np.int64)


def decode_many(texts, idx: np.ndarray) -> list[str]:
    """``[texts[i] for i in idx]``, decoded from one read of the table's bytes when it is a string table (offsets +
    UTF-8 data: a few microseconds less per string than one lookup each)."""
    idx = np.asarray(idx, dtype=np.int64)
    off = getattr(texts, "offsets", None)
    data = getattr(texts, "data", None)
    if off is None or data is None or not len(idx):
        return [texts[int(i)] for i in idx.tolist()]
    off = np.asarray(off)
    lo, hi = int(off[idx.min()]), int(off[idx.max() + 1])
    blob = np.asarray(data[lo:hi]).tobytes()
    starts = (off[idx] - lo).tolist()
    ends = (off[idx + 1] - lo).tolist()
    return [blob[a:b].decode("utf-8") for a, b in zip(starts, ends)]


@dataclass
class Concordance:
    """The occurrences of one query at one MoE layer, as arrays (``n`` occurrences, in run order unless sorted).

    ``tokens int64 [n]`` global token index; ``sentence int64 [n]``; ``token int64 [n]`` index in its sentence;
    ``pos int64 [n]`` index into ``tags``; ``experts int64 [n, k]`` at ``layer`` (rank order); ``span int64 [n, 2]``
    character span of the match in its sentence text (the word's span with ``by="form"``, the token's with
    ``by="token"``).
    """

    query: str
    by: str
    layer: int            # decoder-layer index
    layer_idx: int        # position on the MoE-layer axis
    tags: tuple[str, ...]
    n_experts: int
    tokens: np.ndarray
    sentence: np.ndarray
    token: np.ndarray
    pos: np.ndarray
    experts: np.ndarray
    span: np.ndarray

    def __len__(self) -> int:
        return int(len(self.tokens))

    def take(self, order: np.ndarray) -> "Concordance":
        """The same occurrences in ``order`` (an index array)."""
        o = np.asarray(order, dtype=np.int64)
        return Concordance(self.query, self.by, self.layer, self.layer_idx, self.tags, self.n_experts,
                           self.tokens[o], self.sentence[o], self.token[o], self.pos[o], self.experts[o], self.span[o])

    def experts_text(self, i: int) -> str:
        """Occurrence ``i``'s experts in rank order, space separated (unused-rank sentinels left out)."""
        return " ".join(str(int(e)) for e in self.experts[i] if 0 <= int(e) < self.n_experts)

    def pos_groups(self) -> list["PosGroup"]:
        """One group per POS that occurs, largest first: its count and its expert distribution (a token counts
        once for each of its k experts, as in every metric)."""
        return pos_groups(self.pos, self.experts, len(self.tags), self.n_experts, self.tags)

    def sort_order(self, key: str, texts=None) -> np.ndarray:
        """Indices that sort the occurrences by ``key`` (stable; ties stay in run order): ``sentence`` (run order),
        ``pos`` (POS group, largest group first), ``expert`` (rank-0 expert, then the rest of the set), ``left`` /
        ``right`` (the context next to the match, read outward, ignoring case, its first :data:`CONTEXT_KEY` characters;
        needs ``texts``)."""
        n = len(self)
        base = np.lexsort((self.token, self.sentence)) if n else np.zeros(0, dtype=np.int64)
        if key == "sentence" or n == 0:
            return base
        if key == "pos":
            counts = np.bincount(self.pos, minlength=len(self.tags))
            rank = np.argsort(np.argsort(-counts, kind="stable"), kind="stable")
            return base[np.argsort(rank[self.pos[base]], kind="stable")]
        if key == "expert":
            keys = [self.experts[base, r] for r in range(self.experts.shape[1] - 1, -1, -1)]
            return base[np.lexsort(keys)] if keys else base
        if key in ("left", "right"):
            if texts is None:
                raise ValueError("sorting by context needs the sentence texts")
            # each sentence decoded once; the key is the context next to the match read outward (CONTEXT_KEY chars)
            uniq, inv = np.unique(self.sentence[base], return_inverse=True)
            tu = decode_many(texts, uniq)
            spans = self.span[base].tolist()
            w = CONTEXT_KEY
            if key == "left":
                keys = [tu[j][max(0, a - w):a][::-1].lower().lstrip() for j, (a, _) in zip(inv.tolist(), spans)]
            else:
                keys = [tu[j][b:b + w].lower().lstrip() for j, (_, b) in zip(inv.tolist(), spans)]
            return base[np.asarray(sorted(range(n), key=keys.__getitem__), dtype=np.int64)]
        raise ValueError(f"unknown sort key {key!r} (one of {', '.join(SORT_KEYS)})")

    def rows(self, texts) -> Iterator[tuple]:
        """CSV rows (:data:`CONCORDANCE_COLUMNS`); ``texts[i]`` is sentence ``i``'s text (decoded per row)."""
        for i in range(len(self)):
            s = int(self.sentence[i])
            t = texts[s]
            a, b = int(self.span[i, 0]), int(self.span[i, 1])
            yield (s, int(self.token[i]), t[:a], t[a:b], t[b:], self.tags[int(self.pos[i])], self.layer,
                   self.experts_text(i))


@dataclass
class PosGroup:
    pos: int               # index into tags
    tag: str
    count: int             # occurrences
    expert_counts: np.ndarray   # int64 [n_experts]: assignments (k per occurrence)

    def top_experts(self, n: int = 4) -> list[tuple[int, float]]:
        """The ``n`` experts with most assignments, with their share of the group's assignments."""
        total = int(self.expert_counts.sum())
        order = np.argsort(-self.expert_counts, kind="stable")[:n]
        return [(int(e), float(self.expert_counts[e]) / total) for e in order if total and self.expert_counts[e] > 0]


def pos_groups(pos: np.ndarray, experts: np.ndarray, n_pos: int, n_experts: int,
               tags: Sequence[str]) -> list[PosGroup]:
    """Group occurrences (``pos [n]``, ``experts [n, k]``) by POS: counts and expert assignment counts per group,
    largest group first (ties in tag order). Unused-rank sentinels (ids outside ``0..n_experts-1``) count for no
    expert."""
    pos = np.asarray(pos, dtype=np.int64)
    e = np.asarray(experts, dtype=np.int64).reshape(len(pos), -1)
    counts = np.bincount(pos, minlength=n_pos)[:n_pos]
    used = (e >= 0) & (e < n_experts)
    packed = (np.broadcast_to(pos[:, None], e.shape) * n_experts + e)[used]
    by_pos = np.bincount(packed, minlength=n_pos * n_experts)[: n_pos * n_experts].reshape(n_pos, n_experts)
    order = np.argsort(-counts, kind="stable")
    return [PosGroup(int(p), str(tags[p]), int(counts[p]), by_pos[p]) for p in order if counts[p] > 0]


def concordance(run, query: str, *, layer: int | None = None, by: str = "form",
                word_ids: np.ndarray | None = None) -> Concordance:
    """Every occurrence of ``query`` in ``run`` with its POS and experts at decoder layer ``layer`` (default: the
    first MoE layer). See the module doc for what matches."""
    li = layer_index(run.moe_layers, layer)
    if word_ids is None and by == "form":
        word_ids = token_word_ids(run)
    toks = find_occurrences(run, query, by=by, word_ids=word_ids)
    off = np.asarray(run.sentence_offsets, dtype=np.int64)
    sent = (np.searchsorted(off, toks, side="right") - 1).astype(np.int64)
    k = int(run.top_k)
    experts = np.asarray(run.experts[toks, li, :], dtype=np.int64).reshape(len(toks), k) if len(toks) \
        else np.zeros((0, k), dtype=np.int64)
    if by == "form":
        if word_ids is None:
            word_ids = token_word_ids(run)
        span = np.asarray(run.word_spans)[word_ids[toks]].astype(np.int64).reshape(-1, 2)
    else:
        span = np.asarray(run.offsets)[toks].astype(np.int64).reshape(-1, 2)
    return Concordance(
        query=query, by=by, layer=int(run.moe_layers[li]), layer_idx=li, tags=tuple(run.tags),
        n_experts=int(run.num_experts), tokens=toks, sentence=sent, token=toks - off[sent],
        pos=np.asarray(run.pos)[toks].astype(np.int64), experts=experts, span=span,
    )


def write_concordance(conc: Concordance, texts, out, *, spreadsheet_safe: bool = False):
    """Write the concordance as CSV (atomic; text exactly as stored unless ``spreadsheet_safe``)."""
    from moe_tui.fileio import write_csv

    return write_csv(out, CONCORDANCE_COLUMNS, conc.rows(texts), spreadsheet_safe=spreadsheet_safe)
