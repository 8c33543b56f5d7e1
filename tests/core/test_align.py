"""Tests for moe_tui.core.extract.align with the three tokenizer families of tests/factories_tok.py."""

from __future__ import annotations

import pytest

from moe_tui.core.extract.align import AlignedSentence, AlignmentReport, align_corpus, align_sentence
from moe_tui.core.extract.corpus import Corpus, Sentence, Word, read_corpus
from moe_tui.core.extract.tagsets import TAGSETS
from moe_tui.errors import ModelError
from tests.factories_tok import (
    EWT_DEV,
    SMALL_TEXTS,
    byte_bpe_tokenizer,
    ewt_texts,
    metaspace_tokenizer,
    wordpiece_tokenizer,
)
from tests.helpers import needs_ewt

UPOS = TAGSETS["upos"]
# training texts without the word "humanities", so that it must be split into subwords
TRAIN = tuple(t for t in SMALL_TEXTS if "humanities" not in t) + (
    "Human beings live in cities.",
    "The activities of the universities.",
)

FAMILIES = {
    "byte_bpe": lambda: byte_bpe_tokenizer(TRAIN, vocab_size=320),
    "metaspace": lambda: metaspace_tokenizer(TRAIN, vocab_size=120),
    "wordpiece": lambda: wordpiece_tokenizer(TRAIN, vocab_size=150),
}


def sentence_from(pairs, seps=None, sent_id="t"):
    """Build a Sentence from (form, upos) pairs joined by ``seps`` (default single spaces)."""
    seps = seps or [" "] * (len(pairs) - 1)
    text, words = "", []
    for i, (form, tag) in enumerate(pairs):
        if i:
            text += seps[i - 1]
        words.append(Word(form, tag, len(text), len(text) + len(form)))
        text += form
    return Sentence(sent_id, text, tuple(words))


HUM = sentence_from([("I", "PRON"), ("love", "VERB"), ("the", "DET"), ("humanities", "NOUN"),
                     (".", "PUNCT")])


def check_invariants(sent: Sentence, al: AlignedSentence, tagset="upos"):
    n = len(al.input_ids)
    for name in ("offsets", "special", "word_index", "pos", "crossing", "tokens"):
        assert len(getattr(al, name)) == n, name
    tags = TAGSETS[tagset]
    for i in range(n):
        wi = al.word_index[i]
        if al.special[i]:
            assert wi == -1 and al.pos[i] == -1 and not al.crossing[i]
            continue
        assert -1 <= wi < len(sent.words)
        if wi < 0:
            assert al.pos[i] == -1 and not al.crossing[i]
            continue
        w = sent.words[wi]
        ts, te = al.offsets[i]
        assert min(te, w.end) - max(ts, w.start) > 0, (al.tokens[i], w)
        assert al.pos[i] == tags.index(w.upos)


@pytest.fixture(params=sorted(FAMILIES))
def family(request):
    return request.param, FAMILIES[request.param]()


def test_humanities_subwords_all_noun(family):
    name, tok = family
    al = align_sentence(HUM, tok, "upos")
    check_invariants(HUM, al)
    pieces = [i for i, w in enumerate(al.word_index) if w == 3]
    assert len(pieces) >= 2, (name, al.tokens)
    assert all(al.pos[i] == UPOS.index("NOUN") and not al.crossing[i] for i in pieces)
    # the pieces cover the word exactly (ignoring whitespace in byte-level / metaspace offsets)
    covered = "".join(HUM.text[al.offsets[i][0] : al.offsets[i][1]] for i in pieces).strip()
    assert covered.lower() == "humanities"
    assert al.tokens == tok.convert_ids_to_tokens(al.input_ids)


def test_special_tokens_excluded(family):
    name, tok = family
    al = align_sentence(HUM, tok, "upos")
    specials = [t for t, s in zip(al.tokens, al.special) if s]
    expected = {"wordpiece": ["[CLS]", "[SEP]"]}.get(name, ["<s>"])
    assert specials == expected
    assert al.special[0] and al.word_index[0] == -1 and al.pos[0] == -1
    _, rep = align_corpus(_corpus([HUM]), tok)
    assert rep.special_tokens == len(expected)
    assert rep.aligned_tokens == sum(p >= 0 for p in al.pos)
    assert rep.aligned_share == pytest.approx(rep.aligned_tokens / (rep.tokens - rep.special_tokens))


def test_crossing_token_constructed(family):
    """Put a word boundary inside a multi-character token: that token must be flagged crossing."""
    name, tok = family
    text = "I love cats"
    enc = tok(text, return_offsets_mapping=True, add_special_tokens=False)
    target = None
    for ts, te in enc["offset_mapping"]:
        piece = text[ts:te]
        if len(piece.strip()) >= 2:
            target = (ts + len(piece) - len(piece.lstrip()), te)
            break
    assert target is not None, enc.tokens()
    cut = target[0] + 1
    # words: split the word containing `cut` into two words at `cut`
    words, pos = [], 0
    for form in text.split(" "):
        s, e = pos, pos + len(form)
        if s < cut < e:
            words += [Word(text[s:cut], "ADJ", s, cut), Word(text[cut:e], "NOUN", cut, e)]
        else:
            words.append(Word(form, "NOUN", s, e))
        pos = e + 1
    sent = Sentence("x", text, tuple(words))
    al = align_sentence(sent, tok, "upos")
    check_invariants(sent, al)
    crossing = [i for i, c in enumerate(al.crossing) if c]
    assert crossing, (name, al.tokens)
    i = crossing[0]
    ts, te = al.offsets[i]
    first = next(k for k, w in enumerate(words) if w.start < te and ts < w.end)
    a = min(te, words[first].end) - max(ts, words[first].start)
    b = min(te, words[first + 1].end) - max(ts, words[first + 1].start)
    assert al.word_index[i] == (first if a >= b else first + 1)  # larger overlap, ties -> first
    _, rep = align_corpus(_corpus([sent]), tok)
    assert rep.boundary_crossing == len(crossing) >= 1


def test_metaspace_bare_space_piece_unaligned():
    tok = metaspace_tokenizer(TRAIN, vocab_size=120)
    sent = sentence_from([("7", "NUM"), ("x", "X")], seps=["   "])
    al = align_sentence(sent, tok, "upos")
    check_invariants(sent, al)
    for t, w in zip(al.tokens, al.word_index):
        if set(t) <= {"▁"}:
            assert w == -1
    assert any(set(t) <= {"▁"} for t in al.tokens[1:])


def test_byte_level_offsets_include_space():
    tok = byte_bpe_tokenizer(TRAIN, vocab_size=320)
    al = align_sentence(HUM, tok, "upos")
    # some Ġ-token of a word has offsets starting on the preceding space, yet is not crossing
    spaced = [i for i, (ts, te) in enumerate(al.offsets) if te > ts and HUM.text[ts] == " "
              and al.word_index[i] >= 0]
    assert spaced and not any(al.crossing[i] for i in spaced)


def _corpus(sentences, tagset="upos"):
    return Corpus(sentences=list(sentences), path="mem", format="conllu", tagset=tagset,
                  pos_column="upos", sha256="0", selection={}, n_sentences_in_file=len(sentences))


def _fixed_wordpiece():
    """A WordPiece tokenizer with a hand-written vocab (so the hand check below is exact)."""
    from tokenizers import Tokenizer, models, normalizers, pre_tokenizers, processors
    from transformers import PreTrainedTokenizerFast

    vocab = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "i", "can", "'", "t", "stand", "human",
             "##ities", ".", "du", "pain"]
    tk = Tokenizer(models.WordPiece({v: i for i, v in enumerate(vocab)}, unk_token="[UNK]"))
    tk.normalizer = normalizers.BertNormalizer(lowercase=True)
    tk.pre_tokenizer = pre_tokenizers.BertPreTokenizer()
    tk.post_processor = processors.TemplateProcessing(
        single="[CLS] $A [SEP]", special_tokens=[("[CLS]", 2), ("[SEP]", 3)])
    return PreTrainedTokenizerFast(tokenizer_object=tk, unk_token="[UNK]", cls_token="[CLS]",
                                   sep_token="[SEP]", pad_token="[PAD]")


HAND = """# sent_id = a
# text = I can't stand humanities.
1\tI\tI\tPRON\tPRP\t_\t4\tnsubj\t_\t_
2-3\tcan't\t_\t_\t_\t_\t_\t_\t_\t_
2\tca\tcan\tAUX\tMD\t_\t4\taux\t_\t_
3\tn't\tnot\tPART\tRB\t_\t4\tadvmod\t_\t_
4\tstand\tstand\tVERB\tVB\t_\t0\troot\t_\t_
5\thumanities\thumanity\tNOUN\tNNS\t_\t4\tobj\t_\tSpaceAfter=No
6\t.\t.\tPUNCT\t.\t_\t4\tpunct\t_\t_

# sent_id = b
# text = du pain
1-2\tdu\t_\t_\t_\t_\t_\t_\t_\t_
1\tde\tde\tADP\tIN\t_\t3\tcase\t_\t_
2\tle\tle\tDET\tDT\t_\t3\tdet\t_\t_
3\tpain\tpain\tNOUN\tNN\t_\t0\troot\t_\t_

"""


def test_report_hand_checked(tmp_path):
    p = tmp_path / "hand.conllu"
    p.write_text(HAND, encoding="utf-8")
    corpus = read_corpus(p)
    tok = _fixed_wordpiece()
    aligned, rep = align_corpus(corpus, tok)
    a, b = aligned
    assert a.tokens == ["[CLS]", "i", "can", "'", "t", "stand", "human", "##ities", ".", "[SEP]"]
    # words: I ca n't stand humanities .   ("can" overlaps ca by 2 chars, n't by 1 -> ca, crossing)
    assert a.word_index == [-1, 0, 1, 2, 2, 3, 4, 4, 5, -1]
    assert a.crossing == [False, False, True] + [False] * 7
    assert [UPOS[p] if p >= 0 else None for p in a.pos] == [
        None, "PRON", "AUX", "PART", "PART", "VERB", "NOUN", "NOUN", "PUNCT", None]
    # "du" = de + le, whole-span words: tie -> first word (de), crossing; le has no token
    assert b.tokens == ["[CLS]", "du", "pain", "[SEP]"]
    assert b.word_index == [-1, 0, 2, -1] and b.crossing == [False, True, False, False]
    assert rep.to_dict() == {
        "sentences": 2, "tokens": 14, "special_tokens": 4, "words": 9, "aligned_tokens": 10,
        "aligned_share": 1.0, "boundary_crossing": 2, "words_without_token": 1,
        "skipped_too_long": 0,
    }
    aligned, rep = align_corpus(corpus, tok, max_length=5)
    assert aligned[0] is None and aligned[1].tokens == b.tokens
    assert rep.skipped_too_long == 1 and rep.sentences == 1 and rep.tokens == 4
    assert rep.words == 3 and rep.words_without_token == 1


def test_paper15_pos_indices(tmp_path):
    p = tmp_path / "hand.conllu"
    p.write_text(HAND, encoding="utf-8")
    corpus = read_corpus(p, tagset="paper15")
    (a, _), _ = align_corpus(corpus, _fixed_wordpiece())
    assert TAGSETS["paper15"][a.pos[2]] == "VERB"  # AUX folded


def test_not_fast_tokenizer_rejected():
    class Slow:
        is_fast = False

    with pytest.raises(ModelError, match="fast"):
        align_sentence(HUM, Slow(), "upos")


def test_empty_report():
    rep = AlignmentReport()
    assert rep.to_dict()["aligned_share"] == 0.0
    out, rep = align_corpus(_corpus([]), _fixed_wordpiece())
    assert out == [] and rep.sentences == 0


@needs_ewt
def test_ewt_dev_byte_bpe():
    corpus = read_corpus(EWT_DEV)
    tok = byte_bpe_tokenizer(ewt_texts(), vocab_size=4000)
    aligned, rep = align_corpus(corpus, tok)
    assert rep.sentences == 2001 and rep.words == 25147
    assert rep.special_tokens == 2001 and rep.skipped_too_long == 0
    assert rep.aligned_share > 0.99
    for s, al in zip(corpus.sentences[:300], aligned[:300]):
        check_invariants(s, al)
    # align_sentence agrees with the batched path
    one = align_sentence(corpus.sentences[7], tok, "upos")
    assert one == aligned[7]
    # max_length skips (never splits) long sentences
    lim = sorted(len(a) for a in aligned)[len(aligned) // 2]
    aligned2, rep2 = align_corpus(corpus, tok, max_length=lim)
    assert rep2.skipped_too_long == sum(len(a) > lim for a in aligned) > 0
    assert all((b is None) == (len(a) > lim) for a, b in zip(aligned, aligned2))
