"""POS tagging of raw text (generated continuations, prompts without gold tags).

A *tagger* splits text into words and gives each word a UPOS tag. Which one is named by a spec string:

* ``builtin`` -- the averaged-perceptron tagger shipped in the package (:mod:`.perceptron`), trained by this project
  on UD English EWT dev and UD English PUD (``scripts/train_tagger.py``); its accuracy on EWT test, which it never
  saw, is in its metadata and in every run it tags. Words are split by :func:`.words.split_words`.
* a folder made by ``moe-tui tagger train`` (any language or tagset a CoNLL-U file has);
* ``spacy:MODEL`` (an installed spaCy pipeline with a tagger, e.g. ``spacy:en_core_web_sm``);
* ``stanza:LANG`` (an installed stanza model, e.g. ``stanza:en``; nothing is downloaded).

:func:`load_tagger` resolves a spec, or raises :class:`moe_tui.errors.TaggerError` in one line (unknown spec,
package or model not installed, damaged folder). numpy is the only heavy import here; spaCy and stanza are
imported only when named.
"""

from __future__ import annotations

import hashlib
import importlib.util
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Sequence

from moe_tui.errors import TaggerError

__all__ = ["Tagger", "load_tagger", "builtin_path", "evaluate", "train_files", "UPOS"]

UPOS = ("ADJ", "ADP", "ADV", "AUX", "CCONJ", "DET", "INTJ", "NOUN", "NUM", "PART", "PRON", "PROPN", "PUNCT",
        "SCONJ", "SYM", "VERB", "X")


def builtin_path() -> Path:
    """The folder of the built-in tagger (``tagger.json`` + ``weights.npz``)."""
    return Path(__file__).resolve().parent / "builtin"


@dataclass
class Tagger:
    """A resolved tagger: ``split(text) -> [(start, end)]`` and ``tag([[word, ...], ...]) -> [[tag, ...], ...]``.

    ``tagset`` names the tags it gives (``upos`` or ``paper15``); ``info`` is what a run records about it
    (``name``, ``kind``, versions or checksums, ``accuracy`` when known: ``{"data", "words", "accuracy", ...}``,
    ``licence``, ``sources``); ``identity`` is the part of ``info`` that changes tags (it enters the run id)."""

    spec: str
    tagset: str
    split: Callable[[str], list[tuple[int, int]]]
    tag: Callable[[Sequence[Sequence[str]]], list[list[str]]]
    info: dict = field(default_factory=dict)
    identity: dict = field(default_factory=dict)


def _perceptron(folder: Path, spec: str) -> Tagger:
    from moe_tui.core.tagger.perceptron import PerceptronTagger
    from moe_tui.core.tagger.words import split_words

    t = PerceptronTagger.load(folder)
    meta = t.meta
    sha = (meta.get("weights") or {}).get("sha256")
    name = "builtin" if spec == "builtin" else str(folder.resolve())
    info = {"name": name, "kind": meta.get("kind", "averaged perceptron"), "tagset": meta.get("tagset", "upos"),
            "weights_sha256": sha, "accuracy": meta.get("accuracy"), "licence": meta.get("licence"),
            "sources": meta.get("sources"), "training": meta.get("training"), "splitter": "moe-tui UD English"}
    return Tagger(spec=spec, tagset=str(meta.get("tagset", "upos")), split=split_words, tag=t.tag_batch, info=info,
                  identity={"name": name, "weights_sha256": sha})


def _spacy(model: str) -> Tagger:
    if importlib.util.find_spec("spacy") is None:
        raise TaggerError(f"tagger spacy:{model} needs spaCy, which is not installed "
                          f"(pip install spacy && python -m spacy download {model}); or use --tagger builtin")
    import spacy  # noqa: PLC0415 - only when named
    from spacy.tokens import Doc

    try:
        nlp = spacy.load(model)
    except (OSError, ImportError, ValueError) as exc:
        raise TaggerError(f"spaCy model {model!r} is not installed or cannot be loaded "
                          f"(python -m spacy download {model}): {' '.join(str(exc).split())[:200]}") from None
    if not any(name in nlp.pipe_names for name in ("tagger", "morphologizer")):
        raise TaggerError(f"spaCy model {model!r} has no tagger or morphologizer (pipes: {', '.join(nlp.pipe_names)})")

    def split(text: str) -> list[tuple[int, int]]:
        return [(t.idx, t.idx + len(t.text)) for t in nlp.tokenizer(text) if not t.is_space]

    def tag(sentences: Sequence[Sequence[str]]) -> list[list[str]]:
        docs = (Doc(nlp.vocab, words=list(ws)) for ws in sentences)
        return [[_upos(t.pos_) for t in doc] for doc in nlp.pipe(docs)]

    version = f"{model} {nlp.meta.get('version', '?')} (spaCy {spacy.__version__})"
    info = {"name": f"spacy:{model}", "kind": "spaCy", "version": version, "tagset": "upos", "accuracy": None}
    return Tagger(spec=f"spacy:{model}", tagset="upos", split=split, tag=tag, info=info,
                  identity={"name": f"spacy:{model}", "version": version})


def _stanza(lang: str) -> Tagger:
    if importlib.util.find_spec("stanza") is None:
        raise TaggerError(f"tagger stanza:{lang} needs stanza, which is not installed "
                          f"(pip install stanza, then stanza.download('{lang}')); or use --tagger builtin")
    import stanza  # noqa: PLC0415 - only when named

    try:
        tok = stanza.Pipeline(lang, processors="tokenize", download_method=None, verbose=False)
        pos = stanza.Pipeline(lang, processors="tokenize,pos", tokenize_pretokenized=True, download_method=None,
                              verbose=False)
    except Exception as exc:  # noqa: BLE001 - stanza raises many kinds for a missing model
        raise TaggerError(f"stanza model for {lang!r} is not installed or cannot be loaded "
                          f"(stanza.download('{lang}')): {' '.join(str(exc).split())[:200]}") from None

    def split(text: str) -> list[tuple[int, int]]:
        doc = tok(text)
        return [(t.start_char, t.end_char) for s in doc.sentences for t in s.tokens]

    def tag(sentences: Sequence[Sequence[str]]) -> list[list[str]]:
        out = []
        for ws in sentences:
            if not ws:
                out.append([])
                continue
            doc = pos([list(ws)])
            out.append([_upos(w.upos) for s in doc.sentences for w in s.words])
        return out

    version = f"stanza {stanza.__version__} ({lang})"
    info = {"name": f"stanza:{lang}", "kind": "stanza", "version": version, "tagset": "upos", "accuracy": None}
    return Tagger(spec=f"stanza:{lang}", tagset="upos", split=split, tag=tag, info=info,
                  identity={"name": f"stanza:{lang}", "version": version})


def _upos(tag: str) -> str:
    return tag if tag in UPOS else "X"


def load_tagger(spec: str) -> Tagger:
    """The tagger named by ``spec`` (``builtin``, ``spacy:MODEL``, ``stanza:LANG`` or a tagger folder)."""
    spec = (spec or "").strip()
    if spec == "builtin":
        return _perceptron(builtin_path(), "builtin")
    if spec.startswith("spacy:") and len(spec) > 6:
        return _spacy(spec[6:])
    if spec.startswith("stanza:") and len(spec) > 7:
        return _stanza(spec[7:])
    p = Path(spec).expanduser()
    if spec and p.is_dir():
        return _perceptron(p, spec)
    raise TaggerError(f"unknown tagger {spec!r}: use builtin, spacy:MODEL, stanza:LANG or a folder made by "
                      "moe-tui tagger train")


# ------------------------------------------------------------------------------------------------ evaluation
def evaluate(tagger: Tagger, path: str | Path, *, tagset: str = "upos", pos_column: str = "upos") -> dict:
    """Accuracy of ``tagger`` on a gold CoNLL-U (or PTB) file: ``accuracy`` on the gold words (the usual
    measure), and ``accuracy_raw_text``: the share of gold words that the tagger's own splitter finds (same
    span) and tags right, when it starts from the sentence text as generated text does."""
    from moe_tui.core.extract.corpus import read_corpus
    from moe_tui.core.extract.tagsets import map_tag

    corpus = read_corpus(path, tagset=tagset, pos_column=pos_column)
    gold_words = [[w.form for w in s.words] for s in corpus.sentences]
    pred = tagger.tag(gold_words)
    n = ok = 0
    for s, tags in zip(corpus.sentences, pred):
        for w, t in zip(s.words, tags):
            n += 1
            ok += map_tag(t, tagset) == w.upos if tagger.tagset == "upos" else t == w.upos
    spans = [tagger.split(s.text) for s in corpus.sentences]
    raw_pred = tagger.tag([[s.text[a:b] for a, b in sp] for s, sp in zip(corpus.sentences, spans)])
    raw_ok = found = 0
    for s, sp, tags in zip(corpus.sentences, spans, raw_pred):
        by_span = dict(zip(sp, tags))
        for w in s.words:
            t = by_span.get((w.start, w.end))
            if t is not None:
                found += 1
                raw_ok += (map_tag(t, tagset) if tagger.tagset == "upos" else t) == w.upos
    p = Path(path).expanduser().resolve()
    return {"data": p.name, "sha256": hashlib.sha256(p.read_bytes()).hexdigest(), "sentences": len(corpus.sentences),
            "words": n, "accuracy": ok / n if n else None, "words_split_alike": found,
            "accuracy_raw_text": raw_ok / n if n else None, "tagset": tagset}


# ------------------------------------------------------------------------------------------------ training
def train_files(paths: Sequence[str | Path], out: str | Path, *, tagset: str = "upos", pos_column: str = "upos",
                eval_paths: Sequence[str | Path] = (), epochs: int = 10, seed: int = 0, licence: str | None = None,
                sources: Sequence[str] = (), language: str | None = None,
                progress: Callable[[str], None] | None = None) -> dict:
    """Train a tagger on the gold words of ``paths`` (CoNLL-U or PTB), evaluate it on ``eval_paths`` (files it was
    not trained on), and save it in ``out``; returns its metadata (what ``tagger.json`` holds).

    ``licence`` / ``sources`` describe the training data (a tagger trained on a treebank is a derived work of it;
    they go into the metadata). Deterministic: the same files and settings give the same folder, byte for byte."""
    from moe_tui.core.extract.corpus import read_corpus
    from moe_tui.core.extract.tagsets import check_tagset
    from moe_tui.core.tagger.perceptron import train

    say = progress or (lambda m: None)
    tags = check_tagset(tagset)
    if not paths:
        raise TaggerError("tagger train needs at least one --data file")
    if epochs < 1:
        raise TaggerError(f"--epochs must be >= 1, got {epochs}")
    out = Path(out).expanduser()
    if out.exists() and not out.is_dir():
        raise TaggerError(f"--out {out} is a file, not a folder")
    training = []
    sentences = []
    for path in paths:
        c = read_corpus(path, tagset=tagset, pos_column=pos_column)
        words = sum(len(s.words) for s in c.sentences)
        training.append({"data": Path(c.path).name, "sha256": c.sha256, "sentences": len(c.sentences),
                         "words": words})
        sentences += [([w.form for w in s.words], [w.upos for w in s.words]) for s in c.sentences]
        say(f"read {Path(c.path).name}: {len(c.sentences)} sentences, {words} words")
    train_names = {t["sha256"] for t in training}
    for path in eval_paths:
        if hashlib.sha256(Path(path).expanduser().read_bytes()).hexdigest() in train_names:
            raise TaggerError(f"--eval {path} is also a --data file: evaluate on data the tagger was not trained on")
    say(f"training on {len(sentences)} sentences ({epochs} epochs)")
    model = train(sentences, tags, epochs=epochs, seed=seed,
                  progress=lambda e, n: say(f"epoch {e} of {n}"))
    meta = dict(model.meta)
    meta.update({"tagset": tagset, "language": language, "training": training,
                 "licence": licence, "sources": list(sources)})
    model.save(out, meta)
    tagger = _perceptron(out, str(out))
    evaluation = []
    for path in eval_paths:
        res = evaluate(tagger, path, tagset=tagset, pos_column=pos_column)
        evaluation.append(res)
        say(f"accuracy on {res['data']}: {res['accuracy']:.4f} (from raw text: {res['accuracy_raw_text']:.4f})")
    meta = dict(tagger_meta(out))
    meta["evaluation"] = evaluation
    meta["accuracy"] = evaluation[0] if evaluation else None
    from moe_tui.fileio import atomic_write_json

    atomic_write_json(out / "tagger.json", meta)
    return meta


def tagger_meta(folder: str | Path) -> dict:
    """The ``tagger.json`` of a tagger folder, as a dict."""
    import json

    return json.loads((Path(folder) / "tagger.json").read_text(encoding="utf-8"))
