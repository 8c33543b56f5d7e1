"""Read POS-tagged corpora (CoNLL-U or Penn-style ``word<TAB>tag``) into character-aligned sentences.

Design notes
------------
* CoNLL-U is split into sentence blocks here (so that every error can name ``file:line``); each
  line is parsed with the ``conllu`` library's own parsers (``parse_comment_line``, the ID and MISC
  field parsers). Anything those raise is re-raised as :class:`~moe_tui.errors.CorpusError` with the
  line number.
* **Sentence text.** The text is rebuilt from the surface tokens (multiword-token lines and the
  words outside any range) with one space after each token unless its MISC says ``SpaceAfter=No``
  (``SpacesAfter=`` is honoured too). When a ``# text`` comment is present and differs from the
  rebuilt text, ``# text`` is used only if every surface form can be found, in order, in it (the
  spans are then found by search); otherwise a ``CorpusError`` names the ``# text`` line.
* **Multiword tokens** (``3-4 don't`` = ``do`` + ``n't``): the surface form occupies the text. The
  syntactic words get consecutive sub-spans when their forms concatenate (case-insensitively, with
  equal length) to the surface form; otherwise *every* word of the range gets the whole surface span
  (e.g. French ``du`` = ``de`` + ``le``) -- the aligner then flags tokens there as ``crossing``.
* Empty nodes (``8.1``) are skipped. In PTB files, ``-NONE-`` (empty element) tokens are skipped.
* PTB files: ``word<TAB>tag`` per line (two whitespace-separated fields are accepted when there is
  no tab), a blank line between sentences. The PTB escapes are undone (``-LRB-`` -> ``(``, `````` and
  ``''`` -> ``"``, ...) and the sentence text is rebuilt with natural spacing (clitics, punctuation,
  quotes, brackets) by :func:`moe_tui.core.extract.ptb.detokenize`; each word's span is exact. Tags are
  Penn tags mapped through :data:`~moe_tui.core.extract.tagsets.PTB_TO_UPOS`; a bare UPOS tag is accepted as well.
  ``Corpus.pos_column`` is ``"xpos"`` for PTB files (the tags *are* Penn tags).
* Selection: ``max_sentences`` keeps the first N sentences; ``sample`` then draws a seeded sample
  (``numpy.random.default_rng(seed).choice(pool, sample, replace=False)``) from those, sorted back to
  file order. A sample at least as large as the pool keeps the pool.
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import conllu.parser as cp

from moe_tui.core.extract.ptb import detokenize
from moe_tui.core.extract.tagsets import PTB_TO_UPOS, UPOS_TAGS, check_tagset, map_tag
from moe_tui.errors import CorpusError

__all__ = ["Word", "Sentence", "Corpus", "read_corpus"]

_UPOS_SET = frozenset(UPOS_TAGS)
_ID_SINGLE = re.compile(r"[1-9][0-9]*")
_ID_RANGE = re.compile(r"([1-9][0-9]*)-([1-9][0-9]*)")
_ID_EMPTY = re.compile(r"[0-9]+\.[1-9][0-9]*")
_SPACES_ESCAPES = {"s": " ", "t": "\t", "n": "\n", "r": "\r", "p": "|", "\\": "\\"}


@dataclass(frozen=True)
class Word:
    """A syntactic word.

    Attributes
    ----------
    form : str
        The word form.
    upos : str
        Its tag, already mapped to the corpus tagset.
    start, end : int
        Character span in :attr:`Sentence.text` (``text[start:end]``).
    """

    form: str
    upos: str
    start: int
    end: int


@dataclass(frozen=True)
class Sentence:
    """A sentence: its id, exact text and words (in order, spans non-decreasing)."""

    sent_id: str
    text: str
    words: tuple[Word, ...]


@dataclass
class Corpus:
    """A read corpus.

    Attributes
    ----------
    sentences : list of Sentence
        The kept sentences, in file order.
    path : str
        The file read (as given, resolved to an absolute path).
    format : str
        ``"conllu"`` or ``"ptb"``.
    tagset : str
        Tagset name (see :data:`moe_tui.core.extract.tagsets.TAGSETS`).
    pos_column : str
        ``"upos"`` or ``"xpos"``.
    sha256 : str
        SHA-256 of the file bytes.
    selection : dict
        ``{"max_sentences": int|None, "sample": int|None, "seed": int}``.
    n_sentences_in_file : int
        Sentences in the whole file before selection.
    """

    sentences: list[Sentence]
    path: str
    format: str
    tagset: str
    pos_column: str
    sha256: str
    selection: dict = field(default_factory=dict)
    n_sentences_in_file: int = 0


# --------------------------------------------------------------------------------------------
# file level


def _load_text(path: Path) -> tuple[str, bytes]:
    """Read ``path`` as UTF-8 text (BOM stripped, CRLF/CR normalised)."""
    if not path.exists():
        raise CorpusError(f"{path}: no such file")
    if path.is_dir():
        raise CorpusError(f"{path}: is a directory, not a corpus file")
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise CorpusError(f"{path}: cannot read ({exc.strerror or exc})") from None
    if not data.strip():
        raise CorpusError(f"{path}: empty file")
    nul = data.find(b"\x00")
    if nul >= 0:
        line = data.count(b"\n", 0, nul) + 1
        raise CorpusError(f"{path}:{line}: binary file (NUL byte), not a text corpus")
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as exc:
        line = data.count(b"\n", 0, exc.start) + 1
        raise CorpusError(
            f"{path}:{line}: not valid UTF-8 (byte 0x{data[exc.start]:02x})"
        ) from None
    if text.startswith("\ufeff"):
        text = text[1:]
    text = text.replace("\r\n", "\n").replace("\r", "\n")
    return text, data


def _detect_format(path: Path, lines: list[str]) -> str:
    if path.suffix.lower() in (".conllu", ".conll"):
        return "conllu"
    for line in lines:
        if not line.startswith("#") and line.count("\t") == 9:
            return "conllu"
    return "ptb"


def _blocks(lines: list[str]):
    """Yield ``(first_line_number, [(line_number, line), ...])`` for each blank-line separated block."""
    block: list[tuple[int, str]] = []
    for i, line in enumerate(lines, 1):
        if line.strip() == "":
            if block:
                yield block[0][0], block
                block = []
        else:
            block.append((i, line))
    if block:
        yield block[0][0], block


# --------------------------------------------------------------------------------------------
# CoNLL-U


class _Where:
    """``file:line``, formatted only when an error message needs it."""

    __slots__ = ("path", "line")

    def __init__(self, path, line):
        self.path, self.line = path, line

    def __format__(self, spec):
        return f"{self.path}:{self.line}"


def _space_after(misc: dict | None) -> str:
    if not misc:
        return " "
    if misc.get("SpaceAfter") == "No":
        return ""
    spaces = misc.get("SpacesAfter")
    if spaces is not None:
        return re.sub(r"\\(.)", lambda m: _SPACES_ESCAPES.get(m.group(1), m.group(1)), spaces)
    return " "


def _sub_spans(surface: str, start: int, forms: list[str]) -> list[tuple[int, int]]:
    """Spans of the words of a multiword token (see module notes)."""
    if (
        sum(len(f) for f in forms) == len(surface)
        and "".join(forms).casefold() == surface.casefold()
    ):
        spans = []
        pos = start
        for f in forms:
            spans.append((pos, pos + len(f)))
            pos += len(f)
        return spans
    return [(start, start + len(surface))] * len(forms)


def _parse_conllu_block(path, first_line, block, *, tagset, pos_column, index):
    """Parse one CoNLL-U sentence block into a :class:`Sentence`."""
    metadata: dict[str, Any] = {}
    text_line = None
    # surface units: (form, misc, [(form, tag, line_no), ...], line_no)
    units: list[tuple[str, dict | None, list[tuple[str, str, int]], int]] = []
    expected = 1  # next word id
    open_range: tuple[int, int, int] | None = None  # (end id, unit index, line)
    col = 4 if pos_column == "xpos" else 3
    colname = "XPOS" if pos_column == "xpos" else "UPOS"

    for line_no, line in block:
        where = _Where(path, line_no)
        if line.startswith("#"):
            try:
                pairs = cp.parse_comment_line(line)
            except Exception as exc:  # noqa: BLE001 - conllu may raise anything
                raise CorpusError(f"{where}: bad comment line ({exc})") from None
            for key, value in pairs:
                metadata[key] = value
                if key == "text":
                    text_line = line_no
            continue
        cols = line.split("\t")
        if len(cols) != 10:
            raise CorpusError(
                f"{where}: expected 10 tab-separated CoNLL-U columns, found {len(cols)}"
            )
        raw_id, form = cols[0], cols[1]
        try:
            misc = cp.parse_dict_value(cols[9])
        except Exception as exc:  # noqa: BLE001 - conllu may raise anything
            raise CorpusError(f"{where}: bad MISC column ({exc})") from None
        if _ID_EMPTY.fullmatch(raw_id):
            continue  # empty node: not part of the text
        if form == "":
            raise CorpusError(f"{where}: empty FORM")
        m = _ID_RANGE.fullmatch(raw_id)
        if m:
            a, b = int(m.group(1)), int(m.group(2))
            if open_range is not None:
                raise CorpusError(f"{where}: multiword range {raw_id} inside another range")
            if a != expected or b <= a:
                raise CorpusError(
                    f"{where}: broken multiword range {raw_id} (next word id is {expected})"
                )
            open_range = (b, len(units), line_no)
            units.append((form, misc, [], line_no))
            continue
        if not _ID_SINGLE.fullmatch(raw_id):
            raise CorpusError(f"{where}: bad word id {raw_id!r} (expected N, N-M or N.M)")
        try:
            cp.parse_id_value(raw_id)
        except Exception as exc:  # noqa: BLE001 - conllu may raise anything
            raise CorpusError(f"{where}: bad word id ({exc})") from None
        wid = int(raw_id)
        if wid != expected:
            raise CorpusError(f"{where}: word id {wid} out of sequence (expected {expected})")
        expected += 1
        raw_tag = cols[col]
        if raw_tag in ("", "_"):
            raise CorpusError(f"{where}: missing {colname} tag ('_') for word {form!r}")
        if pos_column == "xpos":
            upos = PTB_TO_UPOS.get(raw_tag) or (raw_tag if raw_tag in _UPOS_SET else None)
            if upos is None:
                raise CorpusError(f"{where}: unknown XPOS (Penn) tag {raw_tag!r}")
        else:
            upos = raw_tag
            if upos not in _UPOS_SET:
                raise CorpusError(f"{where}: unknown UPOS tag {upos!r}")
        tag = map_tag(upos, tagset)
        if open_range is not None:
            units[open_range[1]][2].append((form, tag, line_no))
            if wid == open_range[0]:
                open_range = None
        else:
            units.append((form, misc, [(form, tag, line_no)], line_no))

    if open_range is not None:
        raise CorpusError(
            f"{path}:{open_range[2]}: broken multiword range: words up to "
            f"{open_range[0]} are missing"
        )
    if expected == 1:
        raise CorpusError(f"{path}:{first_line}: sentence with no words")

    # rebuild the text from the surface units
    pieces: list[str] = []
    unit_spans: list[tuple[int, int]] = []
    pos = 0
    for i, (form, misc, _words, _ln) in enumerate(units):
        unit_spans.append((pos, pos + len(form)))
        pieces.append(form)
        pos += len(form)
        if i < len(units) - 1:
            sep = _space_after(misc)
            pieces.append(sep)
            pos += len(sep)
    text = "".join(pieces)

    given = metadata.get("text")
    if given is not None and given != text:
        spans = []
        search = 0
        for form, _misc, _words, ln in units:
            k = given.find(form, search)
            if k < 0:
                raise CorpusError(
                    f"{path}:{text_line}: '# text' does not match the words "
                    f"(form {form!r} of line {ln} not found in order)"
                )
            spans.append((k, k + len(form)))
            search = k + len(form)
        text, unit_spans = given, spans

    words: list[Word] = []
    for (form, _misc, ws, _ln), (s, e) in zip(units, unit_spans):
        if len(ws) == 1 and ws[0][0] == form:
            words.append(Word(form, ws[0][1], s, e))
        else:
            sub = _sub_spans(text[s:e], s, [w[0] for w in ws])
            words.extend(Word(f, t, a, b) for (f, t, _), (a, b) in zip(ws, sub))
    sent_id = metadata.get("sent_id") or str(index + 1)
    return Sentence(str(sent_id), text, tuple(words))


def _read_conllu(path, lines, *, tagset, pos_column):
    sentences = []
    for first, block in _blocks(lines):
        if all(line.startswith("#") for _, line in block):
            # a comment-only block (e.g. a trailing "# newdoc") carries no sentence
            continue
        sentences.append(
            _parse_conllu_block(
                path, first, block, tagset=tagset, pos_column=pos_column, index=len(sentences)
            )
        )
    return sentences


# --------------------------------------------------------------------------------------------
# PTB (word<TAB>tag)


def _read_ptb(path, lines, *, tagset):
    sentences = []
    for first, block in _blocks(lines):
        tokens: list[str] = []
        ptb_tags: list[str] = []
        tags: list[str] = []
        for line_no, line in block:
            where = _Where(path, line_no)
            cols = line.split("\t") if "\t" in line else line.split()
            if len(cols) != 2:
                raise CorpusError(
                    f"{where}: expected 2 columns 'word<TAB>tag', found {len(cols)}"
                )
            form, tag = cols[0].strip(), cols[1].strip()
            if form == "":
                raise CorpusError(f"{where}: empty word")
            if tag == "-NONE-":
                continue
            if tag in ("", "_"):
                raise CorpusError(f"{where}: missing tag for word {form!r}")
            upos = PTB_TO_UPOS.get(tag) or (tag if tag in _UPOS_SET else None)
            if upos is None:
                raise CorpusError(f"{where}: unknown Penn tag {tag!r}")
            tokens.append(form)
            ptb_tags.append(tag)
            tags.append(map_tag(upos, tagset))
        if not tokens:
            raise CorpusError(f"{path}:{first}: sentence with no words")
        # PTB escapes undone, natural spacing rebuilt (moe_tui.core.extract.ptb): the model sees text, not PTB tokens
        text, spans = detokenize(tokens, ptb_tags)
        words = tuple(Word(text[a:b], t, a, b) for (a, b), t in zip(spans, tags))
        sentences.append(Sentence(str(len(sentences) + 1), text, words))
    return sentences


# --------------------------------------------------------------------------------------------
# public


def _check_count(name: str, value) -> int | None:
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise CorpusError(f"{name} must be a positive integer, got {value!r}")
    return value


def read_corpus(
    path,
    *,
    format: str = "auto",
    tagset: str = "upos",
    pos_column: str = "upos",
    max_sentences: int | None = None,
    sample: int | None = None,
    seed: int = 0,
) -> Corpus:
    """Read a POS-tagged corpus.

    Parameters
    ----------
    path : str or os.PathLike
        A CoNLL-U file or a ``word<TAB>tag`` (PTB) file.
    format : {"auto", "conllu", "ptb"}
        ``"auto"``: ``.conllu``/``.conll`` extension or any line with 10 tab-separated columns
        means CoNLL-U, anything else PTB.
    tagset : {"upos", "paper15"}
        Tagset the tags are mapped to while reading.
    pos_column : {"upos", "xpos"}
        CoNLL-U column to read; XPOS is mapped through the UD English Penn table.
    max_sentences : int, optional
        Keep only the first N sentences.
    sample : int, optional
        Keep a seeded random sample of N sentences (from the first ``max_sentences`` if given),
        in file order.
    seed : int
        Seed for ``numpy.random.default_rng``.

    Returns
    -------
    Corpus

    Raises
    ------
    CorpusError
        For any unreadable or malformed input; the one-line message names ``file:line`` when a
        line is at fault.
    """
    check_tagset(tagset)
    if format not in ("auto", "conllu", "ptb"):
        raise CorpusError(f"unknown corpus format {format!r} (valid: auto, conllu, ptb)")
    if pos_column not in ("upos", "xpos"):
        raise CorpusError(f"unknown POS column {pos_column!r} (valid: upos, xpos)")
    max_sentences = _check_count("max_sentences", max_sentences)
    sample = _check_count("sample", sample)
    if isinstance(seed, bool) or not isinstance(seed, int) or seed < 0:
        raise CorpusError(f"seed must be a non-negative integer, got {seed!r}")

    p = Path(path).expanduser()
    try:
        p = p.resolve()
    except (OSError, RuntimeError):
        pass
    text, data = _load_text(p)
    lines = text.split("\n")
    fmt = _detect_format(p, lines) if format == "auto" else format
    if fmt == "conllu":
        sentences = _read_conllu(p, lines, tagset=tagset, pos_column=pos_column)
    else:
        sentences = _read_ptb(p, lines, tagset=tagset)
        pos_column = "xpos"
    if not sentences:
        raise CorpusError(f"{p}: no sentences found")

    n_file = len(sentences)
    kept = sentences[:max_sentences] if max_sentences is not None else sentences
    if sample is not None and sample < len(kept):
        import numpy as np

        idx = np.random.default_rng(seed).choice(len(kept), size=sample, replace=False)
        kept = [kept[i] for i in sorted(int(i) for i in idx)]
    return Corpus(
        sentences=list(kept),
        path=str(p),
        format=fmt,
        tagset=tagset,
        pos_column=pos_column,
        sha256=hashlib.sha256(data).hexdigest(),
        selection={"max_sentences": max_sentences, "sample": sample, "seed": seed},
        n_sentences_in_file=n_file,
    )
