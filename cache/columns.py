"""Columnar text of a run: string tables (offsets + UTF-8 bytes), the per-sentence and per-word columns, and a
lazy sequence that decodes one sentence record on demand.

Nothing here builds a Python object per token or per sentence unless asked for that one sentence: a run of
millions of tokens opens with a handful of memory-mapped arrays.

A *string table* of ``n`` strings is two arrays, ``offsets int64 [n+1]`` (``offsets[0] == 0``) and
``data uint8 [B]``: string ``i`` is ``data[offsets[i]:offsets[i+1]]`` decoded as UTF-8.
"""

from __future__ import annotations

from bisect import bisect_left
from dataclasses import dataclass
from typing import Iterable, Iterator, Sequence

import numpy as np

__all__ = ["StringTable", "TextColumns", "SentenceRecords", "search_strings", "vocab_ids"]


class StringTable:
    """``n`` strings stored as ``offsets int64 [n+1]`` + ``data uint8 [B]`` (UTF-8, concatenated).

    ``len(t)``, ``t[i]`` (one string, decoded on demand) and :meth:`tolist` (all of them, decoded once and
    kept: meant for vocabularies, not for per-sentence tables of a large run).
    """

    __slots__ = ("offsets", "data", "_list")

    def __init__(self, offsets: np.ndarray, data: np.ndarray):
        self.offsets = offsets
        self.data = data
        self._list: list[str] | None = None

    @classmethod
    def from_strings(cls, strings: Iterable[str]) -> "StringTable":
        enc = [s.encode("utf-8") for s in strings]
        offsets = np.zeros(len(enc) + 1, dtype=np.int64)
        if enc:
            np.cumsum(np.fromiter(map(len, enc), dtype=np.int64, count=len(enc)), out=offsets[1:])
        data = np.frombuffer(b"".join(enc), dtype=np.uint8).copy()
        return cls(offsets, data)

    def __len__(self) -> int:
        return len(self.offsets) - 1

    def __getitem__(self, i: int) -> str:
        if self._list is not None:
            return self._list[i]
        n = len(self)
        if i < 0:
            i += n
        if not 0 <= i < n:
            raise IndexError(i)
        a, b = int(self.offsets[i]), int(self.offsets[i + 1])
        return bytes(self.data[a:b]).decode("utf-8")

    def __iter__(self) -> Iterator[str]:
        return iter(self.tolist())

    def tolist(self) -> list[str]:
        """Every string, decoded once (one pass over ``data``) and kept."""
        if self._list is None:
            blob = bytes(np.asarray(self.data))
            off = np.asarray(self.offsets).tolist()
            self._list = [blob[a:b].decode("utf-8") for a, b in zip(off[:-1], off[1:])]
        return self._list

    def byte_range(self, i: int, j: int) -> bytes:
        """The raw UTF-8 bytes of strings ``i .. j-1``, concatenated."""
        return bytes(self.data[int(self.offsets[i]):int(self.offsets[j])])

    def byte_lengths(self) -> np.ndarray:
        """``int64 [n]`` UTF-8 length of each string."""
        return np.diff(np.asarray(self.offsets))


def vocab_ids(values: Iterable[str], vocab: dict[str, int]) -> np.ndarray:
    """``int32 [n]`` ids of ``values`` in ``vocab`` (new strings are appended in order of first appearance)."""
    get = vocab.setdefault
    return np.fromiter((get(v, len(vocab)) for v in values), dtype=np.int32)


@dataclass
class TextColumns:
    """The text of a run, columnar: what the run writer stores beside the routing arrays.

    Shapes: ``S`` sentences, ``W`` words (every sentence's words, concatenated in corpus order), ``T`` tokens
    (every sentence's tokens, concatenated in corpus order; a skipped sentence has none).

    - ``sent_ids``: string table ``[S]``, the corpus sentence ids; ``texts``: string table ``[S]``, the sentence
      texts; ``skipped``: ``bool [S]`` (longer than the model's context, so not extracted);
    - ``word_offsets``: ``int64 [S+1]``, sentence ``s`` owns words ``word_offsets[s]:word_offsets[s+1]``;
      ``word_form``: ``int32 [W]`` id into ``forms``; ``word_tag``: ``int16 [W]`` index into ``word_tags``;
      ``word_spans``: ``int32 [W, 2]`` character span ``[start, end)`` of the word in its sentence text;
    - ``forms``: string table ``[V]``, the distinct word forms exactly as in the corpus (case kept);
      ``word_tags``: the distinct word tags (tag names of the run's tagset);
    - ``token_piece``: ``int32 [T]`` id into ``pieces``; ``token_counts``: ``int64 [S]`` tokens per sentence
      (checked against the routing arrays); ``pieces``: string table ``[P]``, the distinct tokenizer pieces.
    """

    sent_ids: StringTable
    texts: StringTable
    skipped: np.ndarray
    word_offsets: np.ndarray
    word_form: np.ndarray
    word_tag: np.ndarray
    word_spans: np.ndarray
    forms: StringTable
    word_tags: list[str]
    token_piece: np.ndarray
    token_counts: np.ndarray
    pieces: StringTable

    @property
    def n_sentences(self) -> int:
        return len(self.texts)

    @classmethod
    def from_records(cls, records: Iterable[dict]) -> "TextColumns":
        """From sentence records ``{"id", "text", "words": [[form, tag, start, end], ...], "tokens": [piece, ...],
        "skipped"}`` (the schema-1 ``sentences.jsonl`` lines). Vocabularies keep the order of first appearance."""
        ids: list[str] = []
        texts: list[str] = []
        skipped: list[bool] = []
        n_words: list[int] = []
        n_tokens: list[int] = []
        forms: dict[str, int] = {}
        tags: dict[str, int] = {}
        pieces: dict[str, int] = {}
        form_ids: list[int] = []
        tag_ids: list[int] = []
        spans: list[int] = []
        piece_ids: list[int] = []
        fget, tget, pget = forms.setdefault, tags.setdefault, pieces.setdefault
        for rec in records:
            ids.append(str(rec.get("id", "")))
            texts.append(str(rec.get("text", "")))
            skipped.append(bool(rec.get("skipped", False)))
            words = rec.get("words") or []
            n_words.append(len(words))
            for w in words:
                form_ids.append(fget(str(w[0]), len(forms)))
                tag_ids.append(tget(str(w[1]), len(tags)))
                spans.append(int(w[2]))
                spans.append(int(w[3]))
            toks = rec.get("tokens") or []
            n_tokens.append(len(toks))
            piece_ids.extend(pget(str(p), len(pieces)) for p in toks)
        word_offsets = np.zeros(len(n_words) + 1, dtype=np.int64)
        np.cumsum(np.asarray(n_words, dtype=np.int64), out=word_offsets[1:])
        return cls(
            sent_ids=StringTable.from_strings(ids),
            texts=StringTable.from_strings(texts),
            skipped=np.asarray(skipped, dtype=np.bool_),
            word_offsets=word_offsets,
            word_form=np.asarray(form_ids, dtype=np.int32),
            word_tag=np.asarray(tag_ids, dtype=np.int16),
            word_spans=np.asarray(spans, dtype=np.int32).reshape(-1, 2),
            forms=StringTable.from_strings(forms),
            word_tags=list(tags),
            token_piece=np.asarray(piece_ids, dtype=np.int32),
            token_counts=np.asarray(n_tokens, dtype=np.int64),
            pieces=StringTable.from_strings(pieces),
        )

    def arrays(self) -> dict[str, np.ndarray]:
        """The arrays as the run stores them (``<table>_offsets`` / ``<table>_bytes`` for string tables)."""
        out: dict[str, np.ndarray] = {}
        for name in ("sent_ids", "texts", "forms", "pieces"):
            t: StringTable = getattr(self, name)
            out[f"{name}_offsets"] = np.asarray(t.offsets, dtype=np.int64)
            out[f"{name}_bytes"] = np.asarray(t.data, dtype=np.uint8)
        out["skipped"] = np.asarray(self.skipped, dtype=np.bool_)
        out["word_offsets"] = np.asarray(self.word_offsets, dtype=np.int64)
        out["word_form"] = np.asarray(self.word_form, dtype=np.int32)
        out["word_tag"] = np.asarray(self.word_tag, dtype=np.int16)
        out["word_spans"] = np.asarray(self.word_spans, dtype=np.int32).reshape(-1, 2)
        out["token_piece"] = np.asarray(self.token_piece, dtype=np.int32)
        return out

    def validate(self) -> None:
        """Raise ``ValueError`` when the columns do not fit together."""
        S = len(self.texts)
        W = len(self.word_form)
        checks = [
            (len(self.sent_ids) == S, f"{len(self.sent_ids)} sentence ids for {S} texts"),
            (len(self.skipped) == S, f"{len(self.skipped)} skipped flags for {S} sentences"),
            (len(self.word_offsets) == S + 1 and int(self.word_offsets[0]) == 0
             and int(self.word_offsets[-1]) == W, "word_offsets do not cover the words"),
            (len(self.word_tag) == W and len(self.word_spans) == W, "word columns of different lengths"),
            (len(self.token_counts) == S, f"{len(self.token_counts)} token counts for {S} sentences"),
            (len(self.token_piece) == int(np.sum(self.token_counts)), "token pieces do not match the token counts"),
        ]
        for ok, why in checks:
            if not ok:
                raise ValueError(f"sentence columns: {why}")
        for ids, n, what in ((self.word_form, len(self.forms), "form"), (self.word_tag, len(self.word_tags), "tag"),
                             (self.token_piece, len(self.pieces), "piece")):
            if len(ids) and (int(np.min(ids)) < 0 or int(np.max(ids)) >= n):
                raise ValueError(f"sentence columns: a {what} id is outside its vocabulary of {n}")


class SentenceRecords(Sequence):
    """The sentences of a run as a lazy, indexable sequence of records (one decoded per ``[i]``).

    ``records[i]`` is ``{"id", "text", "words": [[form, tag, start, end], ...], "tokens": [piece, ...],
    "skipped"}``, the schema-1 record of sentence ``i``. Bulk users read the arrays instead.
    """

    def __init__(self, run):
        self._run = run

    def __len__(self) -> int:
        return self._run.n_sentences

    def __getitem__(self, i):
        if isinstance(i, slice):
            return [self[j] for j in range(*i.indices(len(self)))]
        n = len(self)
        if i < 0:
            i += n
        if not 0 <= i < n:
            raise IndexError(i)
        run = self._run
        a, b = int(run.word_offsets[i]), int(run.word_offsets[i + 1])
        forms = run.forms.tolist()
        tags = run.word_tags
        spans = np.asarray(run.word_spans[a:b]).tolist()
        words = [[forms[f], tags[t], s, e] for f, t, (s, e) in zip(np.asarray(run.word_form[a:b]).tolist(),
                                                                  np.asarray(run.word_tag[a:b]).tolist(), spans)]
        ta, tb = int(run.sentence_offsets[i]), int(run.sentence_offsets[i + 1])
        pieces = run.pieces.tolist()
        tokens = [pieces[p] for p in np.asarray(run.token_piece[ta:tb]).tolist()]
        return {"id": run.sent_ids[i], "text": run.texts[i], "words": words, "tokens": tokens,
                "skipped": bool(run.skipped[i])}

    def __iter__(self) -> Iterator[dict]:
        for i in range(len(self)):
            yield self[i]

    def __eq__(self, other) -> bool:
        if not isinstance(other, Sequence) or len(other) != len(self):
            return False
        return all(a == b for a, b in zip(self, other))

    __hash__ = None  # type: ignore[assignment]

    def __repr__(self) -> str:
        return f"<SentenceRecords of run {getattr(self._run, 'run_id', '?')}: {len(self)} sentences>"


def search_strings(table: StringTable, query: str, *, start: int = 0, chunk_bytes: int = 1 << 18
                   ) -> Iterator[np.ndarray]:
    """Indices of the strings of ``table`` that contain ``query``, ignoring case (Unicode case folding), yielded
    chunk by chunk in ascending order (``int64`` arrays, possibly empty), so a caller can show them as they come
    and stop early.

    Works over the stored bytes: a chunk of ``chunk_bytes`` of text is decoded as one string with a NUL between
    strings, case-folded, and searched; no Python object is made per string. An empty query matches everything.
    """
    n = len(table)
    needle = query.replace("\x00", "").casefold()
    if not needle:
        yield np.arange(start, n, dtype=np.int64)
        return
    q = needle.encode("utf-8")
    off = np.asarray(table.offsets)
    i = start
    while i < n:
        j = int(np.searchsorted(off, off[i] + chunk_bytes, side="right")) - 1
        j = min(n, max(j, i + 1))
        raw = np.asarray(table.data[int(off[i]):int(off[j])])
        if np.any(raw == 0):  # a NUL inside a string: search those strings one by one
            hits = [s for s in range(i, j) if needle in table[s].casefold()]
            yield np.asarray(hits, dtype=np.int64)
            i = j
            continue
        folded = np.insert(raw, off[i + 1:j + 1] - off[i], 0).tobytes().decode("utf-8", "replace").casefold()
        blob = folded.encode("utf-8")
        # where string i + m ends, for each m (plain ints for bisect: this chunk's strings only)
        ends = np.flatnonzero(np.frombuffer(blob, dtype=np.uint8) == 0).tolist()
        hits = []
        find, last = blob.find, len(ends) - 1
        pos = find(q)
        while pos >= 0:
            m = bisect_left(ends, pos)
            hits.append(i + m)
            if m >= last:
                break
            pos = find(q, ends[m] + 1)
        yield np.asarray(hits, dtype=np.int64)
        i = j
