"""Read-only views over a cache Run (docs/CONTRACT.md) for display: slicing and labelling only, no science."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass
class SentenceData:
    index: int
    sent_id: str
    text: str
    start: int                    # global token offset of the first token
    tokens: list[str]             # tokenizer pieces, as stored
    words: list[str]              # aligned word form ("" for special/unaligned)
    pos: list[str]                # tag name ("" for excluded tokens)
    pos_ids: np.ndarray           # [n] int, -1 = excluded
    experts: np.ndarray           # [n, L, k]
    weights: np.ndarray           # [n, L, k]
    gen_start: int | None = None  # first generated token (runs made by moe-tui generate), else None

    @property
    def n_tokens(self) -> int:
        return len(self.tokens)


def n_sentences(run) -> int:
    return int(len(run.sentence_offsets) - 1)


def sentence_texts(run):
    """The run's sentence texts as an indexable table (``len``, ``[i]`` decodes one; the stored text table of a
    cache Run; for stand-in runs without one, built from their records)."""
    texts = getattr(run, "texts", None)
    if texts is not None:
        return texts
    from moe_tui.cache.columns import StringTable

    return StringTable.from_strings(str(s.get("text", "")) for s in run.sentences)


def sentence_data(run, i: int) -> SentenceData:
    a, b = int(run.sentence_offsets[i]), int(run.sentence_offsets[i + 1])
    sentences = run.sentences
    meta = sentences[i] if i < len(sentences) else {}
    toks = list(meta.get("tokens") or [])
    if len(toks) != b - a:  # fall back to ids when token strings are missing
        toks = [str(int(x)) for x in np.asarray(run.token_ids[a:b])]
    words_meta = meta.get("words") or []
    wi = np.asarray(run.word_index[a:b])
    pos_ids = np.asarray(run.pos[a:b]).astype(np.int64)
    tags = tuple(run.tags)
    words = [str(words_meta[w][0]) if 0 <= w < len(words_meta) else "" for w in wi.tolist()]
    pos = [tags[p] if 0 <= p < len(tags) else "" for p in pos_ids.tolist()]
    return SentenceData(
        index=i, sent_id=str(meta.get("id", i)), text=str(meta.get("text", "")), start=a,
        tokens=toks, words=words, pos=pos, pos_ids=pos_ids,
        experts=np.asarray(run.experts[a:b]), weights=np.asarray(run.weights[a:b]),
        gen_start=_continuation_start(run, i),
    )


def _continuation_start(run, i: int) -> int | None:
    if not hasattr(run, "manifest"):  # a stand-in run (tests)
        return None
    from moe_tui.core.inspect.origin import continuation_start

    return continuation_start(run, i)


def display_token(tok: str) -> str:
    """Tokenizer piece as shown in a header cell (space markers dropped, control chars made visible)."""
    t = tok.replace("Ġ", "").replace("▁", "").replace("Ċ", "⏎").replace("\n", "⏎").replace("\t", "⇥")
    return t if t else "␣"


def run_title(run) -> str:
    """``model · corpus`` of a run, as its manifest names them."""
    return f"{run.model_name} · {run.manifest['corpus']['path']}"


def word_ids_for(run) -> np.ndarray:
    """:func:`moe_tui.core.inspect.concordance.token_word_ids` of ``run`` (``[T]`` int64, the run-wide word index of every
    token, -1 for none), computed once per run object and kept on it (the word view and the expert card share it)."""
    got = getattr(run, "_moe_tui_word_ids", None)
    if got is None:
        from moe_tui.core.inspect.concordance import token_word_ids

        got = token_word_ids(run)
        try:
            run._moe_tui_word_ids = got
        except AttributeError:  # pragma: no cover - a run that takes no attributes
            pass
    return got
