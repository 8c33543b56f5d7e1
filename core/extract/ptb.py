"""Penn Treebank (PTB / OntoNotes) tokens back to natural text, with a character span per word.

A PTB file holds tokens as the treebank wrote them: brackets escaped (``-LRB-``), double quotes as
`````` and ``''``, clitics split off (``do n't``, ``John 's``). A model was trained on natural text, so
:func:`detokenize` undoes the escapes and decides, for each pair of neighbouring words, whether a
space stands between them. The rules are this module's own (no third-party detokeniser): they follow
the Penn Treebank tokenisation conventions, use the Penn tag where it decides (``POS`` clitics,
``HYPH`` hyphens, `````` / ``''`` quotes, ``$``) and take the list of split contractions (``can not``,
``gon na``, ...) from NLTK's ``TreebankWordDetokenizer``.

Measured against UD English EWT dev + test written as PTB lines (``python -m benchmarks.measure_corpus``):
see docs/extraction.md, "PTB / OntoNotes input", and docs/results/corpus.md.
"""

from __future__ import annotations

import re

__all__ = ["PTB_ESCAPES", "unescape", "detokenize"]

#: PTB escape -> the character(s) it stands for. Quotes are listed separately (their role matters).
PTB_ESCAPES: dict[str, str] = {
    "-LRB-": "(", "-RRB-": ")",
    "-LSB-": "[", "-RSB-": "]",
    "-LCB-": "{", "-RCB-": "}",
    "-LAB-": "<", "-RAB-": ">",
    "``": '"', "''": '"',
    "`": "'",
}
_OPEN_QUOTES = {"``", "`"}
_CLOSE_QUOTES = {"''"}
_OPENERS = {"(", "[", "{", "<"}
_CLOSERS = {")", "]", "}", ">"}
# tokens made only of these attach to the word before them: . , ; : ! ? % and the ellipsis
_TRAILING_PUNCT = re.compile(r"^[.,;:!?%\u2026]+$")
_CLITIC = re.compile(r"^(?:['\u2019](?:s|re|ve|ll|d|m|t)|n['\u2019]t)$", re.I)
# split contractions (NLTK TreebankWordDetokenizer's CONTRACTIONS2/3): (first word, second word)
_SPLIT_WORDS = {("can", "not"), ("d", "'ye"), ("gim", "me"), ("gon", "na"), ("got", "ta"), ("lem", "me"),
                ("more", "'n"), ("wan", "na"), ("'t", "is"), ("'t", "was"), ("out", "ta")}
# clitics written without their apostrophe ("dont", "its", "Ive"): "nt" always, the others after a pronoun
_BARE_CLITICS = {"s", "re", "ve", "ll", "d", "m"}
_PRONOUNS = {"i", "you", "he", "she", "it", "we", "they", "that", "there", "what", "who", "where", "how"}
# a slash between two words is written without spaces ("and/or", "read/relax")
_JOINERS = {"/"}


def unescape(token: str) -> str:
    """The text a PTB token stands for: ``-LRB-`` -> ``(``, `````` / ``''`` -> ``"``, ````` -> ``'``,
    and the backslash escapes of PTB-2 (``1\\/2`` -> ``1/2``, ``\\*`` -> ``*``)."""
    if token in PTB_ESCAPES:
        return PTB_ESCAPES[token]
    if "\\" in token:
        token = token.replace("\\/", "/").replace("\\*", "*")
    return token


def _quote_role(token: str, tag: str | None, open_double: bool, open_single: bool) -> str | None:
    """"open", "close" or None for a quote token (by its PTB spelling, else its tag, else by parity)."""
    if token in _OPEN_QUOTES:
        return "open"
    if token in _CLOSE_QUOTES or token == "\u201d":
        return "close"
    if token == "\u201c":
        return "open"
    if token == '"':
        if tag == "``":
            return "open"
        if tag == "''":
            return "close"
        return "close" if open_double else "open"
    if token in ("'", "\u2019", "\u2018"):
        if tag == "POS":
            return None  # plural possessive: a clitic
        if tag == "``" or token == "\u2018":
            return "open"
        if tag == "''" or open_single:
            return "close"
    return None


def detokenize(tokens: list[str], tags: list[str | None] | None = None) -> tuple[str, list[tuple[int, int]]]:
    """Rebuild the sentence text of PTB ``tokens`` (escaped, as in the file); ``tags``: their Penn tags.

    Returns ``(text, spans)`` where ``text[spans[i][0]:spans[i][1]]`` is ``unescape(tokens[i])``.
    """
    tags = list(tags) if tags is not None else [None] * len(tokens)
    forms = [unescape(t) for t in tokens]
    pieces: list[str] = []
    spans: list[tuple[int, int]] = []
    pos = 0
    glue_next = True  # no space before the first word
    open_double = open_single = False
    for i, (tok, form, tag) in enumerate(zip(tokens, forms, tags)):
        role = _quote_role(tok, tag, open_double, open_single)
        single = tok in ("`", "'", "\u2018", "\u2019")
        prev = forms[i - 1].lower() if i else ""
        attach = glue_next
        if not attach:
            attach = (
                role == "close"
                or (role is None and (
                    bool(_TRAILING_PUNCT.match(form))
                    or form in _CLOSERS
                    or tag == "POS"
                    or tag == "HYPH"
                    or bool(_CLITIC.match(form))
                    or form.lower() == "nt"
                    or (form.lower() in _BARE_CLITICS and prev in _PRONOUNS and (tag or "").startswith(("VB", "MD")))
                    or form in _JOINERS
                ))
                or (prev, form.lower()) in _SPLIT_WORDS
            )
        if not attach:
            pieces.append(" ")
            pos += 1
        spans.append((pos, pos + len(form)))
        pieces.append(form)
        pos += len(form)
        glue_next = (role == "open" or form in _OPENERS or tag == "HYPH" or tag in ("$", "#") or form == "$"
                     or (role is None and form in _JOINERS))
        if role == "open":
            if single:
                open_single = True
            else:
                open_double = True
        elif role == "close":
            if single:
                open_single = False
            else:
                open_double = False
    return "".join(pieces), spans
