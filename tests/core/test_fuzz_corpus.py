"""Hypothesis fuzzing of the corpus reader and the aligner."""

from __future__ import annotations

import tempfile
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from moe_tui.core.extract.align import align_corpus, align_sentence
from moe_tui.core.extract.corpus import Corpus, Sentence, Word, read_corpus
from moe_tui.core.extract.tagsets import TAGSETS
from moe_tui.errors import CorpusError
from tests.factories_tok import (
    SMALL_TEXTS,
    byte_bpe_tokenizer,
    metaspace_tokenizer,
    wordpiece_tokenizer,
)

FUZZ = settings(
    deadline=None,
    max_examples=200,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)

_DIR = Path(tempfile.mkdtemp(prefix="moe_tui_fuzz_"))

# ------------------------------------------------------------------ reader

_FRAGMENTS = [
    "1", "2", "3", "1-2", "2-3", "0", "1.1", "x", "-", "\t", "\t", "\t", "\t", "\n", "\n\n",
    "\r\n", "#", "# text = ", "# sent_id = a", "NOUN", "VERB", "PUNCT", "NN", "DT", "_",
    "SpaceAfter=No", "SpacesAfter=\\s\\s", "|", "=", "don't", "do", "n't", " ", "é", "\ufeff",
    "\x00", "a=b=c", "a", "b", "ROOT",
]
_CONLLU_ROW = st.builds(
    lambda i, form, upos, xpos, misc: "\t".join(
        [i, form, "_", upos, xpos, "_", "0", "dep", "_", misc]),
    st.sampled_from(["1", "2", "3", "4", "1-2", "2-3", "1.1", "0", "x", ""]),
    st.sampled_from(["a", "b", "don't", "do", "n't", "", "ab", ".", "é"]),
    st.sampled_from(["NOUN", "VERB", "AUX", "_", "NN", "PUNCT"]),
    st.sampled_from(["NN", "MD", "_", "XX", "QQ"]),
    st.sampled_from(["_", "SpaceAfter=No", "SpacesAfter=\\n", "a=b=c", "|", "=", "Foo"]),
)
_CONLLU_TEXT = st.lists(
    st.one_of(_CONLLU_ROW, st.sampled_from(["", "# text = a b", "# sent_id = s", "# x"])),
    max_size=12,
).map(lambda lines: "\n".join(lines) + "\n")

_TEXT = st.one_of(
    st.binary(max_size=300),
    st.text(max_size=300).map(lambda t: t.encode("utf-8", "surrogatepass")),
    st.lists(st.sampled_from(_FRAGMENTS), max_size=60).map(lambda xs: "".join(xs).encode()),
    _CONLLU_TEXT.map(str.encode),
)


def _write(data: bytes, suffix: str) -> Path:
    p = _DIR / f"fuzz{suffix}"
    p.write_bytes(data)
    return p


def _check_corpus(c: Corpus):
    assert c.sentences
    tags = TAGSETS[c.tagset]
    for s in c.sentences:
        assert s.words
        for w in s.words:
            assert 0 <= w.start < w.end <= len(s.text)
            assert w.upos in tags


@FUZZ
@given(data=_TEXT, suffix=st.sampled_from([".conllu", ".txt"]),
       fmt=st.sampled_from(["auto", "conllu", "ptb"]), tagset=st.sampled_from(["upos", "paper15"]),
       col=st.sampled_from(["upos", "xpos"]))
def test_reader_never_crashes(data, suffix, fmt, tagset, col):
    p = _write(data, suffix)
    try:
        c = read_corpus(p, format=fmt, tagset=tagset, pos_column=col)
    except CorpusError as exc:
        msg = str(exc)
        assert msg and "\n" not in msg
        return
    _check_corpus(c)


# ------------------------------------------------------------------ aligner

_TOKENIZERS = {
    "byte_bpe": lambda: byte_bpe_tokenizer(SMALL_TEXTS, vocab_size=320),
    "metaspace": lambda: metaspace_tokenizer(SMALL_TEXTS, vocab_size=120),
    "wordpiece": lambda: wordpiece_tokenizer(SMALL_TEXTS, vocab_size=150),
}

_WORD = st.one_of(
    st.sampled_from(["the", "humanities", "don't", "n't", ".", ",", "cat", "Ġ", "▁", "##",
                     "café", "日本", "🙂", "'", "(", "x"]),
    st.text(alphabet=st.characters(blacklist_categories=("Cs", "Zs", "Cc", "Zl", "Zp")),
            min_size=1, max_size=8),
)
_SEP = st.sampled_from(["", " ", " ", " ", "  ", "\t", "\n"])


@st.composite
def sentences(draw):
    forms = draw(st.lists(_WORD, min_size=1, max_size=12))
    tags = TAGSETS["upos"]
    text = draw(st.sampled_from(["", "", " "]))
    words = []
    for i, form in enumerate(forms):
        if i:
            text += draw(_SEP)
        words.append(Word(form, draw(st.sampled_from(tags)), len(text), len(text) + len(form)))
        text += form
    text += draw(st.sampled_from(["", "", " "]))
    return Sentence("f", text, tuple(words))


@pytest.mark.parametrize("name", sorted(_TOKENIZERS))
def test_aligner_invariants(name):
    tok = _TOKENIZERS[name]()
    tags = TAGSETS["upos"]

    @settings(deadline=None, max_examples=120)
    @given(sent=sentences())
    def run(sent):
        al = align_sentence(sent, tok, "upos")
        n = len(al.input_ids)
        assert len(al.offsets) == len(al.word_index) == len(al.pos) == len(al.special) == n
        assert len(al.crossing) == len(al.tokens) == n
        for i in range(n):
            wi = al.word_index[i]
            assert -1 <= wi < len(sent.words)
            if al.special[i] or wi < 0:
                assert al.pos[i] == -1 and not al.crossing[i]
                continue
            w = sent.words[wi]
            ts, te = al.offsets[i]
            assert min(te, w.end) - max(ts, w.start) > 0
            assert al.pos[i] == tags.index(w.upos)
        corpus = Corpus([sent], "mem", "conllu", "upos", "upos", "0", {}, 1)
        (al2,), rep = align_corpus(corpus, tok)
        assert al2 == al
        assert rep.aligned_tokens == sum(p >= 0 for p in al.pos)
        assert rep.words_without_token == len(sent.words) - len({w for w in al.word_index if w >= 0})
        assert 0.0 <= rep.aligned_share <= 1.0

    run()
