"""Split raw English text into words the way UD English treebanks do (EWT, PUD), with exact character spans.

The built-in tagger was trained on UD words, so generated text is split into the same kind of words before it is
tagged: punctuation apart (``"`` ``(`` ``,`` ``.`` ...), clitics apart (``do n't``, ``it 's``, ``I 'm``,
``ca n't``, ``gon na``, ``can not``), hyphens apart between words (``long - term``) but kept after the usual
prefixes (``e-mail``, ``re-elected``, ``non-fiction``), and these kept whole: numbers (``3.5``, ``1,000``,
``10:30``, ``1980s``), URLs and e-mail addresses, abbreviations (``U.S.``, ``Mr.``, ``a.m.``), runs of one
punctuation character (``...``, ``--``, ``!!``) and emoticons (``:-)``).

:func:`split_words` returns ``[(start, end), ...]`` spans into the text (the words are ``text[start:end]``), in
order, never overlapping and never containing whitespace. Only the standard library is used.
"""

from __future__ import annotations

import re

__all__ = ["split_words", "word_spans_agreement"]

_PATTERNS = (
    ("url", r"(?:https?://|www\.)\S+?(?=[.,;:!?)\]\"']*(?:\s|$))"),
    ("email", r"[\w.+-]+@[\w-]+(?:\.[\w-]+)+"),
    ("emoticon", r"(?<!\w)[:;=]-?[)(DPp\]\[/\\|]+(?=\s|$|[.,!?])"),
    ("initials", r"(?<!\w)(?:[A-Za-z]\.){2,}"),
    ("number", r"\d+(?:[.,:/]\d+)*(?:st|nd|rd|th|s)?(?!\w)"),
    ("word", r"[^\W_](?:[\w'’&]*[^\W_])?"),
    ("punct", r"(?P<ch>[^\w\s])(?P=ch)*|_+"),
)
_TOKEN_RE = re.compile("|".join(f"(?P<{name}>{p})" for name, p in _PATTERNS), re.UNICODE)

#: abbreviations that keep their full stop (lower-cased, without it)
ABBREVIATIONS = frozenset(
    "mr mrs ms dr st jr sr inc ltd co corp capt gen col lt sgt prof rev sen rep gov vs etc ext ca approx dept est "
    "fig no vol jan feb mar apr jun jul aug sep sept oct nov dec mt ave blvd".split())
#: a hyphenated word is kept whole when its first part is one of these
KEEP_HYPHEN = frozenset(
    "e co re non pre mid multi semi anti pro inter over un wi vice mis post sub ex de bi tri counter "
    "cross extra hyper infra intra macro micro mini neo out pan para poly pseudo quasi super trans ultra x t".split())
# clitics split off the end of a word, as in UD English
_CLITICS = ("n't", "n’t", "'s", "’s", "'re", "’re", "'ve", "’ve", "'ll", "’ll", "'d", "’d", "'m", "’m")
# words UD English splits in two without an apostrophe: word -> length of the first part
_SPLIT_WORDS = {"gonna": 3, "wanna": 3, "gotta": 3, "cannot": 3, "outta": 3, "dunno": 2, "lemme": 3, "gimme": 3}


def _word(text: str, a: int, b: int, out: list[tuple[int, int]]) -> None:
    """Append the spans of the word ``text[a:b]`` (split off its clitic, if any)."""
    low = text[a:b].lower()
    n = _SPLIT_WORDS.get(low)
    if n is not None:
        out += [(a, a + n), (a + n, b)]
        return
    if "'" in low or "’" in low:
        for c in _CLITICS:
            if len(low) > len(c) and low.endswith(c):
                out += [(a, b - len(c)), (b - len(c), b)]
                return
    out.append((a, b))


def split_words(text: str) -> list[tuple[int, int]]:
    """Character spans ``[(start, end), ...]`` of the UD-style words of ``text`` (see the module notes)."""
    out: list[tuple[int, int]] = []
    pos = 0
    search = _TOKEN_RE.search
    while True:
        m = search(text, pos)
        if m is None:
            return out
        a, b = m.span()
        pos = b
        kind = m.lastgroup if m.lastgroup != "ch" else "punct"
        if kind == "word":
            _word(text, a, b, out)
            continue
        if kind == "punct" and out and out[-1][1] == a:
            prev = text[out[-1][0]:a]
            if text[a:b] == "." and (prev.lower() in ABBREVIATIONS or (len(prev) == 1 and prev.isupper())):
                out[-1] = (out[-1][0], b)  # Mr. / J.
                continue
            if text[a:b] == "-" and prev.lower() in KEEP_HYPHEN:
                m2 = _TOKEN_RE.match(text, b)
                if m2 is not None and m2.lastgroup in ("word", "number"):
                    s0 = out.pop()[0]
                    _word(text, s0, m2.end(), out)  # e-mail, re-elected, mid-1980s (e-mail's: split)
                    pos = m2.end()
                    continue
        out.append((a, b))


def word_spans_agreement(text: str, gold: list[tuple[int, int]]) -> tuple[int, int, int]:
    """``(matched, predicted, gold)``: how many of :func:`split_words`'s spans are exactly gold spans, of how
    many predicted and gold words (precision = matched / predicted, recall = matched / gold)."""
    pred = split_words(text)
    g = set(gold)
    return sum(1 for s in pred if s in g), len(pred), len(gold)
