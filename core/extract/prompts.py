"""Read prompts for ``moe-tui generate``: a text file (one prompt per line), JSONL or CoNLL-U.

* text: one prompt per non-blank line (the line as it is, without its line end); id ``line N``.
* JSONL: one JSON object per non-blank line with a string ``"prompt"`` (and optionally an ``"id"``); id ``line N``
  when it has none.
* CoNLL-U: each sentence is a prompt (its text, see :mod:`moe_tui.core.extract.corpus`), with its gold words and
  tags (used with ``--prompt-pos gold``, and to measure the tagger on them); id its ``sent_id``.

``prompt_words=N`` keeps the first N words of every prompt (CoNLL-U: its gold words; text and JSONL: its
whitespace-separated words), so that the model continues sentences whose rest is known.

``format="auto"``: ``.jsonl`` / ``.conllu`` / ``.conll`` by extension, else a first line that is a JSON object
means JSONL and a line of 10 tab-separated columns CoNLL-U, else text. Every bad input is one
:class:`moe_tui.errors.GenerationError` line naming ``file:line``.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field
from pathlib import Path

from moe_tui.errors import CorpusError, GenerationError

__all__ = ["Prompt", "Prompts", "read_prompts", "PROMPT_FORMATS"]

PROMPT_FORMATS = ("auto", "text", "jsonl", "conllu")


@dataclass(frozen=True)
class Prompt:
    """One prompt: its id, its text, where it is (``file:line``) and, from CoNLL-U, its gold words
    (``moe_tui.core.extract.corpus.Word``: form, UPOS, span in ``text``)."""

    id: str
    text: str
    where: str
    words: tuple = ()


@dataclass
class Prompts:
    """The prompts read from one file (``selection``: ``{"max_prompts": N or None}``)."""

    items: list[Prompt]
    path: str
    format: str
    sha256: str
    n_in_file: int
    selection: dict = field(default_factory=dict)


def _detect(path: Path, text: str) -> str:
    suffix = path.suffix.lower()
    if suffix == ".jsonl":
        return "jsonl"
    if suffix in (".conllu", ".conll"):
        return "conllu"
    first = next((ln for ln in text.split("\n") if ln.strip()), "")
    if first.lstrip().startswith("{"):
        return "jsonl"
    if any(ln.count("\t") == 9 and not ln.startswith("#") for ln in text.split("\n")[:200]):
        return "conllu"
    return "text"


def _first_words(p: Prompt, n: int) -> Prompt:
    """``p`` cut after its ``n``-th word (see the module notes)."""
    if p.words:
        if len(p.words) <= n:
            return p
        words = p.words[:n]
        return Prompt(p.id, p.text[:max(w.end for w in words)], p.where, tuple(words))
    import re

    spans = [m.span() for m in re.finditer(r"\S+", p.text)]
    if len(spans) <= n:
        return p
    return Prompt(p.id, p.text[:spans[n - 1][1]], p.where)


def read_prompts(path, *, format: str = "auto", max_prompts: int | None = None,
                 prompt_words: int | None = None) -> Prompts:
    """The prompts of ``path`` (see the module notes); ``max_prompts`` keeps the first N, ``prompt_words`` the first
    N words of each."""
    from moe_tui.core.extract.corpus import _load_text

    if format not in PROMPT_FORMATS:
        raise GenerationError(f"unknown prompts format {format!r} (valid: {', '.join(PROMPT_FORMATS)})")
    for name, value in (("max_prompts", max_prompts), ("prompt_words", prompt_words)):
        if value is not None and (isinstance(value, bool) or not isinstance(value, int) or value < 1):
            raise GenerationError(f"{name} must be a positive integer, got {value!r}")
    p = Path(path).expanduser()
    try:
        p = p.resolve()
    except (OSError, RuntimeError):
        pass
    try:
        text, data = _load_text(p)
    except CorpusError as exc:
        msg = str(exc)
        raise GenerationError(msg.replace(": empty file", ": empty prompts file")) from None
    fmt = _detect(p, text) if format == "auto" else format
    if fmt == "conllu":
        from moe_tui.core.extract.corpus import read_corpus

        try:
            corpus = read_corpus(p, format="conllu")
        except CorpusError as exc:
            raise GenerationError(str(exc)) from None
        items = [Prompt(s.sent_id, s.text, f"{p}: sentence {s.sent_id}", tuple(s.words)) for s in corpus.sentences]
    else:
        items = []
        for n, line in enumerate(text.split("\n"), 1):
            if not line.strip():
                continue
            where = f"{p}:{n}"
            if fmt == "text":
                items.append(Prompt(f"line {n}", line, where))
                continue
            try:
                obj = json.loads(line)
            except ValueError as exc:
                raise GenerationError(f"{where}: not a JSON object ({exc.msg})") from None
            if not isinstance(obj, dict) or not isinstance(obj.get("prompt"), str):
                raise GenerationError(f'{where}: a JSONL prompt needs a string "prompt" field')
            if not obj["prompt"].strip():
                raise GenerationError(f'{where}: empty "prompt"')
            pid = obj.get("id")
            items.append(Prompt(str(pid) if pid is not None else f"line {n}", obj["prompt"], where))
    if not items:
        raise GenerationError(f"{p}: no prompts found")
    n_file = len(items)
    if max_prompts is not None:
        items = items[:max_prompts]
    if prompt_words is not None:
        items = [_first_words(x, prompt_words) for x in items]
    selection = {"max_prompts": max_prompts}
    if prompt_words is not None:
        selection["prompt_words"] = prompt_words
    return Prompts(items=items, path=str(p), format=fmt, sha256=hashlib.sha256(data).hexdigest(), n_in_file=n_file,
                   selection=selection)
