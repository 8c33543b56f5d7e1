"""Part-of-speech tagsets and the Penn Treebank -> UPOS table.

Two tagsets are available:

``"upos"``
    The 17 Universal Dependencies tags in their canonical (alphabetical) order.
``"paper15"``
    The 15-tag variant used in arXiv 2412.16971: ``AUX`` is folded into ``VERB`` and
    ``SCONJ`` into ``ADP``.

Tags are always *read* as UPOS (directly from the UPOS column, or from a Penn tag through
:data:`PTB_TO_UPOS`) and then mapped to the requested tagset with :func:`map_tag`.
"""

from __future__ import annotations

from moe_tui.errors import CorpusError

UPOS_TAGS: tuple[str, ...] = (
    "ADJ", "ADP", "ADV", "AUX", "CCONJ", "DET", "INTJ", "NOUN", "NUM",
    "PART", "PRON", "PROPN", "PUNCT", "SCONJ", "SYM", "VERB", "X",
)

#: Tags folded away by each tagset (source UPOS tag -> target tag).
_FOLDS: dict[str, dict[str, str]] = {
    "upos": {},
    "paper15": {"AUX": "VERB", "SCONJ": "ADP"},
}

#: Tagset name -> tags in canonical order (the index of a tag is what ``AlignedSentence.pos`` stores).
TAGSETS: dict[str, tuple[str, ...]] = {
    name: tuple(t for t in UPOS_TAGS if t not in folds) for name, folds in _FOLDS.items()
}

_UPOS_SET = frozenset(UPOS_TAGS)

#: The UD English Penn Treebank -> UPOS conversion table (as used for UD English EWT).
#: ``MD`` maps to ``VERB``, ``PRP$``/``WP$`` to ``DET`` and ``AFX`` (a split-off prefix such as *pre*, *anti*)
#: to ``ADJ``, as in the UD table.
PTB_TO_UPOS: dict[str, str] = {
    # punctuation and symbols
    ".": "PUNCT", ",": "PUNCT", ":": "PUNCT", "``": "PUNCT", "''": "PUNCT",
    "-LRB-": "PUNCT", "-RRB-": "PUNCT", "HYPH": "PUNCT", "NFP": "PUNCT",
    "$": "SYM", "#": "SYM", "SYM": "SYM",
    # open classes
    "NN": "NOUN", "NNS": "NOUN", "NNP": "PROPN", "NNPS": "PROPN",
    "VB": "VERB", "VBD": "VERB", "VBG": "VERB", "VBN": "VERB", "VBP": "VERB", "VBZ": "VERB",
    "MD": "VERB",
    "JJ": "ADJ", "JJR": "ADJ", "JJS": "ADJ", "AFX": "ADJ",
    "RB": "ADV", "RBR": "ADV", "RBS": "ADV", "WRB": "ADV",
    # closed classes
    "IN": "ADP", "RP": "ADP", "TO": "PART", "POS": "PART",
    "DT": "DET", "PDT": "DET", "WDT": "DET", "PRP$": "DET", "WP$": "DET",
    "PRP": "PRON", "WP": "PRON", "EX": "PRON",
    "CC": "CCONJ", "CD": "NUM", "UH": "INTJ",
    # other
    "FW": "X", "LS": "X", "GW": "X", "ADD": "X", "XX": "X", "NIL": "X",
}


def check_tagset(tagset: str) -> tuple[str, ...]:
    """Return the tags of ``tagset`` or raise.

    Parameters
    ----------
    tagset : str
        A key of :data:`TAGSETS`.

    Returns
    -------
    tuple of str
        The tags in canonical order.

    Raises
    ------
    CorpusError
        If the tagset is unknown (the message lists the valid names).
    """
    try:
        return TAGSETS[tagset]
    except (KeyError, TypeError):
        raise CorpusError(
            f"unknown tagset {tagset!r} (valid: {', '.join(sorted(TAGSETS))})"
        ) from None


def map_tag(upos: str, tagset: str) -> str:
    """Map a UPOS tag to ``tagset``.

    Parameters
    ----------
    upos : str
        One of the 17 UD tags.
    tagset : str
        Target tagset name (``"upos"`` or ``"paper15"``).

    Returns
    -------
    str
        The tag in the target tagset (e.g. ``map_tag("AUX", "paper15") == "VERB"``).

    Raises
    ------
    CorpusError
        Unknown tagset, or ``upos`` is not a UPOS tag.
    """
    check_tagset(tagset)
    if upos not in _UPOS_SET:
        raise CorpusError(f"unknown UPOS tag {upos!r}")
    return _FOLDS[tagset].get(upos, upos)


def ptb_to_upos(tag: str) -> str:
    """Map a Penn Treebank tag to UPOS with :data:`PTB_TO_UPOS`.

    Raises
    ------
    CorpusError
        If the tag is not in the table.
    """
    try:
        return PTB_TO_UPOS[tag]
    except KeyError:
        raise CorpusError(f"unknown Penn tag {tag!r}") from None
