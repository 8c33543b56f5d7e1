"""The built-in POS tagger: word splitting against UD's own words, the perceptron on a language built so the tags
are known, determinism, its files, the built-in model's stated accuracy recounted, and the tagger specs."""

from __future__ import annotations

import hashlib
import json

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from moe_tui.core.tagger import builtin_path, evaluate, load_tagger, tagger_meta
from moe_tui.core.tagger.perceptron import PerceptronTagger, train
from moe_tui.core.tagger.words import split_words
from moe_tui.errors import TaggerError
from tests.helpers import EWT_DEV, EWT_TEST, needs_ewt

PUD_EN = EWT_DEV.parents[1] / "ud_pud" / "english" / "en_pud-ud-test.conllu"


def words(text: str) -> list[str]:
    return [text[a:b] for a, b in split_words(text)]


@pytest.mark.parametrize("text, expected", [
    ("I don't think it's an e-mail.", ["I", "do", "n't", "think", "it", "'s", "an", "e-mail", "."]),
    ("We can't, won't and cannot go!", ["We", "ca", "n't", ",", "wo", "n't", "and", "can", "not", "go", "!"]),
    ("Mr. Smith paid $3.50 in the U.S. at 10:30...", ["Mr.", "Smith", "paid", "$", "3.50", "in", "the", "U.S.", "at",
                                                       "10:30", "..."]),
    ("a long-term plan (re-elected) -- see www.x.org :-)", ["a", "long", "-", "term", "plan", "(", "re-elected", ")",
                                                            "--", "see", "www.x.org", ":-)"]),
    ("the students' books, I'm gonna read", ["the", "students", "'", "books", ",", "I", "'m", "gon", "na", "read"]),
])
def test_split_words_as_ud_does(text, expected):
    assert words(text) == expected


@settings(max_examples=200, deadline=None)
@given(st.text(alphabet=st.sampled_from(list("ab.,-'’ \n\t()X9:@!")) | st.characters(), max_size=60))
def test_split_words_spans_are_ordered_disjoint_and_without_space(text):
    spans = split_words(text)
    end = 0
    for a, b in spans:
        assert end <= a < b <= len(text)
        assert not any(ch.isspace() for ch in text[a:b])
        end = b
    # every non-space character belongs to a word (nothing is dropped)
    covered = set()
    for a, b in spans:
        covered.update(range(a, b))
    assert all(i in covered for i, ch in enumerate(text) if not ch.isspace())


@needs_ewt
def test_split_words_finds_ud_words_in_ewt_text():
    from moe_tui.core.extract.corpus import read_corpus

    matched = predicted = gold = 0
    for s in read_corpus(EWT_DEV).sentences:
        g = {(w.start, w.end) for w in s.words}
        p = split_words(s.text)
        matched += sum(1 for x in p if x in g)
        predicted += len(p)
        gold += len(g)
    assert matched / predicted > 0.98 and matched / gold > 0.98


# ---------------------------------------------------------------------------------------------------- perceptron
def _toy_language(seed: int, n: int):
    """Sentences where the tag is known from the word: -ing -> VERB, -ly -> ADV, -s -> NOUN, 'the' -> DET,
    else ADJ; words are random stems, so the test words are unseen."""
    rng = np.random.default_rng(seed)
    letters = list("bcdfgklmnprstvz")
    sents = []
    for _ in range(n):
        ws, ts = [], []
        for _ in range(int(rng.integers(3, 9))):
            stem = "".join(rng.choice(letters, 4)) + "a"
            kind = int(rng.integers(5))
            w, t = [("the", "DET"), (stem + "ing", "VERB"), (stem + "ly", "ADV"), (stem + "s", "NOUN"),
                    (stem, "ADJ")][kind]
            ws.append(w)
            ts.append(t)
        sents.append((ws, ts))
    return sents


TAGS = ("ADJ", "ADV", "DET", "NOUN", "VERB")


def test_perceptron_learns_a_language_whose_tags_are_known():
    tagger = train(_toy_language(0, 300), TAGS, epochs=5)
    test = _toy_language(1, 100)
    pred = tagger.tag_batch([w for w, _ in test])
    total = sum(len(t) for _, t in test)
    right = sum(p == t for (_, ts), ps in zip(test, pred) for p, t in zip(ps, ts))
    assert right == total


def test_batch_decoding_equals_one_sentence_at_a_time():
    tagger = train(_toy_language(0, 200), TAGS, epochs=3)
    test = [w for w, _ in _toy_language(2, 50)] + [[]]
    assert tagger.tag_batch(test) == [tagger.tag(s) for s in test]


def test_training_is_deterministic_and_saved_files_round_trip(tmp_path):
    data = _toy_language(0, 100)
    a = train(data, TAGS, epochs=2, seed=3).save(tmp_path / "a")
    b = train(data, TAGS, epochs=2, seed=3).save(tmp_path / "b")
    for name in ("tagger.json", "weights.npz"):
        assert (a / name).read_bytes() == (b / name).read_bytes()
    loaded = PerceptronTagger.load(a)
    fresh = train(data, TAGS, epochs=2, seed=3)
    test = [w for w, _ in _toy_language(5, 30)]
    assert loaded.tag_batch(test) == fresh.tag_batch(test)
    with np.load(a / "weights.npz", allow_pickle=False) as z:  # no pickled object anywhere
        assert all(z[k].dtype != object for k in z.files)


def test_damaged_tagger_folder_is_one_line(tmp_path):
    folder = train(_toy_language(0, 20), TAGS, epochs=1).save(tmp_path / "t")
    raw = bytearray((folder / "weights.npz").read_bytes())
    raw[len(raw) // 2] ^= 0xFF
    (folder / "weights.npz").write_bytes(bytes(raw))
    with pytest.raises(TaggerError, match="checksum"):
        load_tagger(str(folder))
    with pytest.raises(TaggerError, match="not a tagger folder"):
        load_tagger(str(tmp_path))


@pytest.mark.parametrize("spec, message", [
    ("nltk", "unknown tagger 'nltk'"),
    ("spacy:en_core_web_sm", "needs spaCy, which is not installed"),
    ("stanza:en", "needs stanza, which is not installed"),
    ("", "unknown tagger"),
])
def test_tagger_specs_that_cannot_load_say_why(spec, message):
    import importlib.util

    if spec.startswith(("spacy", "stanza")) and importlib.util.find_spec(spec.split(":")[0]) is not None:
        pytest.skip(f"{spec.split(':')[0]} is installed here")
    with pytest.raises(TaggerError, match=message) as exc:
        load_tagger(spec)
    assert "\n" not in str(exc.value)


# ---------------------------------------------------------------------------------------------------- built-in
def test_builtin_tagger_records_its_data_licence_and_held_out_accuracy():
    meta = tagger_meta(builtin_path())
    assert "CC BY-SA 4.0" in meta["licence"] and "CC BY-SA 3.0" in meta["licence"]
    trained_on = {t["data"] for t in meta["training"]}
    assert trained_on == {"en_ewt-ud-dev.conllu", "en_pud-ud-test.conllu"}
    acc = meta["accuracy"]
    assert acc["data"] == "en_ewt-ud-test.conllu"
    assert acc["sha256"] not in {t["sha256"] for t in meta["training"]}  # held out
    assert 0.9 < acc["accuracy"] < 1.0
    weights = (builtin_path() / "weights.npz").read_bytes()
    assert hashlib.sha256(weights).hexdigest() == meta["weights"]["sha256"]
    assert (builtin_path() / "LICENSE.txt").exists()


@pytest.mark.slow
@needs_ewt
def test_builtin_accuracy_recounted_on_ewt_test():
    """The accuracy the metadata states, recounted word by word from the test file's gold tags."""
    from moe_tui.core.extract.corpus import read_corpus

    tagger = load_tagger("builtin")
    right = total = 0
    for s in read_corpus(EWT_TEST).sentences:
        pred = tagger.tag([[w.form for w in s.words]])[0]
        right += sum(p == w.upos for p, w in zip(pred, s.words))
        total += len(s.words)
    stated = tagger_meta(builtin_path())["accuracy"]
    assert stated["words"] == total
    assert stated["accuracy"] == right / total


@pytest.mark.slow
@needs_ewt
@pytest.mark.skipif(not PUD_EN.exists(), reason="UD English PUD is not beside the repository")
def test_tagger_train_command_writes_a_folder_runs_can_use(tmp_path, capsys):
    from moe_tui.cli import main

    out = tmp_path / "pud_tagger"
    assert main(["tagger", "train", "--data", str(PUD_EN), "--eval", str(EWT_DEV), "--out", str(out), "--epochs", "2",
                 "--licence", "CC BY-SA 3.0", "--source", "UD English PUD"]) == 0
    meta = json.loads((out / "tagger.json").read_text())
    assert meta["licence"] == "CC BY-SA 3.0" and meta["accuracy"]["data"] == EWT_DEV.name
    assert meta["accuracy"] == evaluate(load_tagger(str(out)), EWT_DEV)
    assert main(["tagger", "train", "--data", str(PUD_EN), "--eval", str(PUD_EN), "--out", str(out)]) == 2
    assert "also a --data file" in capsys.readouterr().err
