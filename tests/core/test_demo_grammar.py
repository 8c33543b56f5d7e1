"""The demo grammar: deterministic, covers every UPOS, ambiguous forms, valid CoNLL-U."""

from __future__ import annotations

from collections import Counter, defaultdict

import conllu
import pytest

from moe_tui.core.demo import demo_corpus_path
from scripts.demo_grammar import AMBIGUOUS_FORMS, UPOS_TAGS, generate, sentence_text, to_conllu

CANONICAL_UPOS = ("ADJ", "ADP", "ADV", "AUX", "CCONJ", "DET", "INTJ", "NOUN", "NUM", "PART", "PRON", "PROPN",
                  "PUNCT", "SCONJ", "SYM", "VERB", "X")


@pytest.fixture(scope="module")
def sample():
    return generate(2000, 7)


def test_deterministic_per_seed():
    assert generate(300, 3) == generate(300, 3)
    assert generate(300, 3) != generate(300, 4)
    # a prefix does not depend on n
    assert generate(50, 3) == generate(300, 3)[:50]


def test_shapes(sample):
    assert len(sample) == 2000
    assert generate(0, 1) == []
    for sent in sample:
        assert sent, "empty sentence"
        for form, upos, space_after in sent:
            assert isinstance(form, str) and form and not any(c.isspace() for c in form)
            assert upos in CANONICAL_UPOS
            assert isinstance(space_after, bool)
        assert sent[-1][1] == "PUNCT"
        assert sent[-1][2] is False


def test_every_upos_appears(sample):
    assert tuple(UPOS_TAGS) == CANONICAL_UPOS
    counts = Counter(u for s in sample for _, u, _ in s)
    assert set(counts) == set(CANONICAL_UPOS)


def test_pos_distribution_is_realistic(sample):
    counts = Counter(u for s in sample for _, u, _ in s)
    n = sum(counts.values())
    share = {t: counts[t] / n for t in CANONICAL_UPOS}
    top6 = {t for t, _ in counts.most_common(6)}
    assert {"NOUN", "VERB", "DET", "PUNCT"} <= top6
    for frequent in ("NOUN", "VERB", "DET", "ADP", "PUNCT"):
        assert share[frequent] > 0.04, frequent
    for rare in ("SYM", "X", "INTJ"):
        assert 0 < share[rare] < 0.02, rare
    assert 6 <= n / len(sample) <= 20  # words per sentence


def test_ambiguous_forms_have_several_pos(sample):
    seen: dict[str, Counter] = defaultdict(Counter)
    for s in sample:
        for form, upos, _ in s:
            seen[form.lower()][upos] += 1
    for form in ("run", "light", "back", "that", "book", "will", "can", "like", "to", "round", "fast", "well"):
        assert form in AMBIGUOUS_FORMS
    for form, tags in AMBIGUOUS_FORMS.items():
        got = {t for t, c in seen[form].items() if c > 0}
        assert len(got) >= 2, (form, dict(seen[form]))
        assert got <= set(tags) | {"PROPN"}, (form, got, tags)  # capitalised sentence starts stay in the lexicon


def test_agreement_examples(sample):
    # a 3sg pronoun subject directly followed by a present-tense auxiliary agrees
    bad = []
    for s in sample:
        for (f1, u1, _), (f2, u2, _) in zip(s, s[1:]):
            if u1 == "PRON" and f1.lower() in ("he", "she") and u2 == "AUX" and f2 in ("are", "am", "have", "do"):
                bad.append(sentence_text(s))
            if u1 == "PRON" and f1.lower() in ("they", "we") and u2 == "AUX" and f2 in ("is", "am", "has", "does", "was"):
                bad.append(sentence_text(s))
    assert not bad, bad[:5]


def test_conllu_parses_and_text_matches(sample):
    text = to_conllu(sample, start_id=5, prefix="t")
    parsed = conllu.parse(text)
    assert len(parsed) == len(sample)
    assert parsed[0].metadata["sent_id"] == "t-000005"
    for tl, sent in zip(parsed, sample):
        assert [t["upos"] for t in tl] == [u for _, u, _ in sent]
        assert [t["form"] for t in tl] == [f for f, _, _ in sent]
        rebuilt = ""
        for i, tok in enumerate(tl):
            rebuilt += tok["form"]
            misc = tok["misc"] or {}
            if i < len(tl) - 1 and misc.get("SpaceAfter") != "No":
                rebuilt += " "
        assert rebuilt == tl.metadata["text"] == sentence_text(sent)
    # 10 tab-separated columns on every token line
    for line in text.splitlines():
        if line and not line.startswith("#"):
            assert len(line.split("\t")) == 10


def test_shipped_demo_corpus_parses():
    path = demo_corpus_path()
    assert path.is_file()
    parsed = conllu.parse(path.read_text(encoding="utf-8"))
    assert 1500 <= len(parsed) <= 2500
    tags = Counter(t["upos"] for tl in parsed for t in tl)
    assert set(tags) == set(CANONICAL_UPOS)
