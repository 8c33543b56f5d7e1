"""Align subword tokens of a HF fast tokenizer with the POS-tagged words of a sentence.

Rules
-----
* ``Sentence.text`` is tokenized with ``add_special_tokens=True`` and character offsets.
* A token takes the word whose character span it overlaps most (overlap is measured against the
  word span only, so whitespace included in a token's offsets -- byte-level ``Ġ`` pieces, sentencepiece
  ``▁`` pieces -- never counts). Ties go to the first word. A token overlapping two or more words is
  flagged ``crossing``.
* Special tokens (special-tokens mask, or an added special token with offsets ``(0, 0)``) get
  ``special=True``, ``pos=-1``, ``word_index=-1``; the caller still records their routing.
* Tokens overlapping no word, and tokens that only encode whitespace (a bare ``▁`` / ``Ġ`` piece,
  whatever its offsets: sentencepiece gives a prepended ``▁`` the offsets of the next character),
  get ``pos=-1``, ``word_index=-1``.
* Sentences longer than ``max_length`` tokens (special tokens included) are **skipped, not split**:
  :func:`align_corpus` returns ``None`` for them and counts them in ``skipped_too_long``.

Alignment is linear in tokens + words: words are sorted by span (their ends are non-decreasing),
and a pointer over the words advances with the token offsets.
"""

from __future__ import annotations

from bisect import bisect_right
from dataclasses import asdict, dataclass
from typing import TYPE_CHECKING, Any

from moe_tui.core.extract.tagsets import check_tagset
from moe_tui.errors import CorpusError, ModelError

if TYPE_CHECKING:
    from moe_tui.core.extract.corpus import Corpus, Sentence

__all__ = ["AlignedSentence", "AlignmentReport", "align_sentence", "align_tokens", "align_corpus"]

_BATCH = 512
#: Characters that stand for whitespace in token strings: sentencepiece ``▁``, byte-level BPE
#: ``Ġ`` (space), ``Ċ`` (newline), ``ĉ`` (tab), ``č`` (carriage return).
_SPACE_MARKS = "\u2581\u0120\u010a\u0109\u010d"


_SPACE_MARKS_SET = frozenset(_SPACE_MARKS + " \t\n\r\f\v")


def _is_space_piece(token: str) -> bool:
    """True for a token that only encodes whitespace (e.g. a bare ``▁`` or ``Ġ``)."""
    return token.strip(_SPACE_MARKS + " \t\n\r\f\v") == ""


@dataclass
class AlignedSentence:
    """Per-token alignment of one sentence (all lists have one entry per token).

    Attributes
    ----------
    input_ids : list of int
        Token ids, special tokens included.
    offsets : list of (int, int)
        Character offsets into ``Sentence.text`` as returned by the tokenizer.
    special : list of bool
        Special token (BOS, CLS, SEP, ...).
    word_index : list of int
        Index into ``Sentence.words``; -1 for special or unaligned tokens.
    pos : list of int
        Index into ``TAGSETS[tagset]``; -1 for special or unaligned tokens.
    crossing : list of bool
        The token overlaps two or more words (it took the larger overlap).
    tokens : list of str
        ``tokenizer.convert_ids_to_tokens(input_ids)``.
    """

    input_ids: list[int]
    offsets: list[tuple[int, int]]
    special: list[bool]
    word_index: list[int]
    pos: list[int]
    crossing: list[bool]
    tokens: list[str]

    def __len__(self) -> int:
        return len(self.input_ids)


@dataclass
class AlignmentReport:
    """Corpus-level alignment counts (over aligned, i.e. not skipped, sentences).

    Attributes
    ----------
    sentences : int
        Sentences aligned (skipped ones excluded).
    tokens : int
        All tokens, special ones included.
    special_tokens : int
        Special tokens.
    words : int
        Words.
    aligned_tokens : int
        Tokens with a POS (``pos >= 0``).
    aligned_share : float
        ``aligned_tokens / (tokens - special_tokens)`` (0.0 when there are none).
    boundary_crossing : int
        Tokens overlapping two or more words.
    words_without_token : int
        Words that no token was assigned to (invisible to the analysis).
    skipped_too_long : int
        Sentences longer than ``max_length`` tokens (returned as ``None``).
    """

    sentences: int = 0
    tokens: int = 0
    special_tokens: int = 0
    words: int = 0
    aligned_tokens: int = 0
    aligned_share: float = 0.0
    boundary_crossing: int = 0
    words_without_token: int = 0
    skipped_too_long: int = 0

    def to_dict(self) -> dict[str, Any]:
        """Return the report as a JSON-serialisable dict."""
        return asdict(self)

    def _add(self, sent: "Sentence", al: AlignedSentence) -> None:
        self.sentences += 1
        self.tokens += len(al.input_ids)
        self.special_tokens += sum(al.special)
        self.words += len(sent.words)
        self.aligned_tokens += sum(1 for p in al.pos if p >= 0)
        self.boundary_crossing += sum(al.crossing)
        covered = {w for w in al.word_index if w >= 0}
        self.words_without_token += len(sent.words) - len(covered)

    def _finish(self) -> None:
        n = self.tokens - self.special_tokens
        self.aligned_share = self.aligned_tokens / n if n else 0.0


def _check_fast(tokenizer) -> None:
    if not getattr(tokenizer, "is_fast", False):
        raise ModelError(
            f"tokenizer {type(tokenizer).__name__} is not a fast tokenizer; "
            "character offsets (return_offsets_mapping) are required"
        )


def _tag_index(tagset: str) -> dict[str, int]:
    return {t: i for i, t in enumerate(check_tagset(tagset))}


def _align(sentence, ids, offsets, special_mask, tokens, special_ids, tag_index):
    """Align one tokenized sentence; see the module docstring for the rules."""
    words = sentence.words
    n_words = len(words)
    starts = [w.start for w in words]
    ends = [w.end for w in words]
    try:
        word_pos = [tag_index[w.upos] for w in words]
    except KeyError as exc:
        raise CorpusError(
            f"sentence {sentence.sent_id}: tag {exc.args[0]!r} is not in the tagset "
            f"({', '.join(tag_index)})"
        ) from None

    n = len(ids)
    special = [False] * n
    word_index = [-1] * n
    pos = [-1] * n
    crossing = [False] * n
    offs: list[tuple[int, int]] = []
    p = 0  # first word whose end may exceed the current token start
    last_start = -1
    space_marks = _SPACE_MARKS_SET
    for i in range(n):
        ts, te = offsets[i]
        offs.append((ts, te))
        if (special_mask is not None and special_mask[i]) or (
            ts == te == 0 and ids[i] in special_ids
        ):
            special[i] = True
            continue
        if te <= ts or (tokens[i][:1] in space_marks and _is_space_piece(tokens[i])):
            # empty span, or a bare space piece: sentencepiece gives the prepended "▁" the
            # offsets of the following character, so the token string must be checked too
            continue
        if ts < last_start:  # offsets went backwards (unusual tokenizers): re-seek
            p = bisect_right(ends, ts)
        last_start = ts
        while p < n_words and ends[p] <= ts:
            p += 1
        best = -1
        best_ov = 0
        hits = 0
        j = p
        while j < n_words and starts[j] < te:
            ov = min(te, ends[j]) - max(ts, starts[j])
            if ov > 0:
                hits += 1
                if ov > best_ov:
                    best, best_ov = j, ov
            j += 1
        if best >= 0:
            word_index[i] = best
            pos[i] = word_pos[best]
            crossing[i] = hits > 1
    return AlignedSentence(
        input_ids=list(ids),
        offsets=offs,
        special=special,
        word_index=word_index,
        pos=pos,
        crossing=crossing,
        tokens=list(tokens),
    )


def _encode(tokenizer, texts):
    return tokenizer(
        texts,
        return_offsets_mapping=True,
        add_special_tokens=True,
        return_special_tokens_mask=True,
        return_attention_mask=False,
        return_token_type_ids=False,
        verbose=False,
    )


def align_sentence(sentence: "Sentence", tokenizer, tagset: str) -> AlignedSentence:
    """Tokenize one sentence and give each token the POS of its word.

    Parameters
    ----------
    sentence : Sentence
        A sentence from :func:`moe_tui.core.extract.corpus.read_corpus`.
    tokenizer : transformers.PreTrainedTokenizerFast
        A fast tokenizer (offsets are needed).
    tagset : str
        Tagset of ``sentence``'s tags; ``pos`` indexes ``TAGSETS[tagset]``.

    Returns
    -------
    AlignedSentence

    Raises
    ------
    ModelError
        The tokenizer is not a fast tokenizer.
    CorpusError
        Unknown tagset, or a word tag outside it.
    """
    _check_fast(tokenizer)
    tag_index = _tag_index(tagset)
    enc = _encode(tokenizer, sentence.text)
    ids = enc["input_ids"]
    tokens = tokenizer.convert_ids_to_tokens(ids)
    return _align(
        sentence,
        ids,
        enc["offset_mapping"],
        enc.get("special_tokens_mask"),
        tokens,
        set(tokenizer.all_special_ids),
        tag_index,
    )


def align_tokens(sentence: "Sentence", input_ids, offsets, special_mask, tokens, special_ids, tagset: str
                 ) -> AlignedSentence:
    """Align tokens that are given with their character offsets into ``sentence.text`` (e.g. generated tokens,
    whose offsets come from decoding them) by the same rules as :func:`align_sentence`; ``special_mask`` flags
    special tokens (or None: an id of ``special_ids`` with offsets ``(0, 0)`` is special)."""
    return _align(sentence, list(input_ids), [tuple(o) for o in offsets], special_mask, list(tokens),
                  set(special_ids), _tag_index(tagset))


def align_corpus(
    corpus: "Corpus", tokenizer, *, max_length: int | None = None
) -> tuple[list[AlignedSentence | None], AlignmentReport]:
    """Align every sentence of a corpus.

    Texts are batch-tokenized by the fast tokenizer, then aligned in Python per sentence.

    Parameters
    ----------
    corpus : Corpus
        The corpus (its ``tagset`` defines ``pos`` indices).
    tokenizer : transformers.PreTrainedTokenizerFast
        A fast tokenizer.
    max_length : int, optional
        Sentences with more tokens than this (special tokens included) are skipped, not split:
        their entry is ``None`` and they count in ``report.skipped_too_long``.

    Returns
    -------
    aligned : list of AlignedSentence or None
        One entry per ``corpus.sentences`` entry.
    report : AlignmentReport
    """
    _check_fast(tokenizer)
    tag_index = _tag_index(corpus.tagset)
    special_ids = set(tokenizer.all_special_ids)
    report = AlignmentReport()
    out: list[AlignedSentence | None] = []
    sents = corpus.sentences
    for b in range(0, len(sents), _BATCH):
        chunk = sents[b : b + _BATCH]
        enc = _encode(tokenizer, [s.text for s in chunk])
        masks = enc.get("special_tokens_mask")
        for k, sent in enumerate(chunk):
            ids = enc["input_ids"][k]
            if max_length is not None and len(ids) > max_length:
                out.append(None)
                report.skipped_too_long += 1
                continue
            # not Encoding.tokens: for <unk> pieces that gives the source text, not the vocab token
            tokens = tokenizer.convert_ids_to_tokens(ids)
            al = _align(
                sent,
                ids,
                enc["offset_mapping"][k],
                masks[k] if masks is not None else None,
                tokens,
                special_ids,
                tag_index,
            )
            out.append(al)
            report._add(sent, al)
    report._finish()
    return out, report
