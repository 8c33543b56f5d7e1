"""Concordance, expert card and run pairs over small real runs whose answers are known by construction: every
token's experts are a formula of its global index, so the expected rows are written out by hand."""

from __future__ import annotations

import csv

import numpy as np
import pytest

from moe_tui.core.concordance import concordance, find_occurrences, pos_groups
from moe_tui.core.expert_card import expert_card, item_stats
from moe_tui.core.run_pair import check_pair, layer_disagreement
from moe_tui.errors import ReportError

TAGS = ("DET", "NOUN", "PRON", "PUNCT", "SCONJ", "VERB", "PROPN")
# (text, words [(form, tag)], pieces per word); a BOS token starts every sentence
SENTS = [
    ("I know that he left .", None, None),
    ("That dog runs .", None, None),
    ("Give me that .", None, None),
    ("Thatcher said that .", None, [["Th", "atcher"], ["Ġsaid"], ["Ġthat"], ["Ġ."]]),
]
WORD_TAGS = [
    ["PRON", "VERB", "SCONJ", "PRON", "VERB", "PUNCT"],
    ["DET", "NOUN", "VERB", "PUNCT"],
    ["VERB", "PRON", "PRON", "PUNCT"],
    ["PROPN", "VERB", "SCONJ", "PUNCT"],
]
N_EXPERTS, K, LAYERS = 4, 2, [1, 2]


def expected_experts(t: int, li: int) -> list[int]:
    """The routing of global token ``t`` at MoE layer position ``li`` (how the fixture is built)."""
    return [(t + li) % N_EXPERTS, (t + li + 1) % N_EXPERTS]


def build_run(root, *, shift: int = 0, name: str = "0000000000000c0c", token_ids=None):
    from moe_tui.cache.store import RunStore, write_run

    records, offs, widx, pos, special, offsets = [], [0], [], [], [], []
    for (text, _, pieces), tags in zip(SENTS, WORD_TAGS):
        words = text.split()
        spans, c = [], 0
        for w in words:
            s = text.index(w, c)
            spans.append((s, s + len(w)))
            c = s + len(w)
        pieces = pieces or [[("Ġ" if i else "") + w] for i, w in enumerate(words)]
        toks = ["<s>"]
        widx.append(-1)
        pos.append(-1)
        special.append(True)
        offsets.append((0, 0))
        for wi, ps in enumerate(pieces):
            for p in ps:
                toks.append(p)
                widx.append(wi)
                pos.append(TAGS.index(tags[wi]))
                special.append(False)
                offsets.append(spans[wi])
        records.append({"id": f"s{len(records)}", "text": text, "tokens": toks,
                        "words": [[w, t, a, b] for w, t, (a, b) in zip(words, tags, spans)]})
        offs.append(offs[-1] + len(toks))
    T = offs[-1]
    experts = np.array([[expected_experts(t, li) for li in range(len(LAYERS))] for t in range(T)], dtype=np.uint8)
    if shift:  # a second run that differs at every token whose index is a multiple of 3, at layer position 1
        experts[::3, 1, 1] = (experts[::3, 1, 1] + 1) % N_EXPERTS
        experts[::3, 1, 1] = np.where(experts[::3, 1, 1] == experts[::3, 1, 0], (experts[::3, 1, 1] + 1) % N_EXPERTS,
                                      experts[::3, 1, 1])
    arrays = {"token_ids": np.asarray(token_ids if token_ids is not None else np.arange(T), dtype=np.int32),
              "sentence_offsets": np.array(offs, dtype=np.int64), "word_index": np.array(widx, dtype=np.int32),
              "pos": np.array(pos, dtype=np.int16), "special": np.array(special), "crossing": np.zeros(T, bool),
              "offsets": np.array(offsets, dtype=np.int32), "experts": experts,
              "weights": np.full((T, len(LAYERS), K), 0.5, np.float16)}
    extra = {"model": {"name_or_path": "org/m", "moe_layers": LAYERS, "num_experts": N_EXPERTS, "top_k": K},
             "tagset": {"name": "x", "tags": list(TAGS)}}
    return RunStore(root).open(write_run(root / name, {"n": name}, arrays, records, extra))


@pytest.fixture
def run(tmp_path):
    return build_run(tmp_path)


# global token indices: s0 = 0..6 (BOS 0, "that" 3), s1 = 7..11 ("That" 8), s2 = 12..16 ("that" 15),
# s3 = 17..22 (Th 18, atcher 19, said 20, that 21)
def test_form_matches_every_case_and_only_whole_words(run):
    assert find_occurrences(run, "that").tolist() == [3, 8, 15, 21]
    assert find_occurrences(run, "THAT").tolist() == [3, 8, 15, 21]
    # both pieces of a two-piece word are occurrences of it
    assert find_occurrences(run, "thatcher").tolist() == [18, 19]
    assert find_occurrences(run, "nothing").tolist() == []


def test_token_matches_pieces_with_or_without_marker_case_sensitive(run):
    assert find_occurrences(run, "that", by="token").tolist() == [3, 15, 21]
    assert find_occurrences(run, "Ġthat", by="token").tolist() == [3, 15, 21]
    assert find_occurrences(run, "That", by="token").tolist() == [8]
    assert find_occurrences(run, "atcher", by="token").tolist() == [19]
    # the BOS piece is not an analysed token
    assert find_occurrences(run, "<s>", by="token").tolist() == []


def test_concordance_rows_by_hand(run, tmp_path):
    conc = concordance(run, "that", layer=2)
    assert conc.layer == 2 and conc.layer_idx == 1
    rows = list(conc.rows(run.texts))
    assert rows == [
        (0, 3, "I know ", "that", " he left .", "SCONJ", 2, "0 1"),
        (1, 1, "", "That", " dog runs .", "DET", 2, "1 2"),
        (2, 3, "Give me ", "that", " .", "PRON", 2, "0 1"),
        (3, 4, "Thatcher said ", "that", " .", "SCONJ", 2, "2 3"),
    ]
    # left + match + right is the sentence exactly as stored
    for r in rows:
        assert r[2] + r[3] + r[4] == run.texts[r[0]]
    from moe_tui.core.concordance import write_concordance

    out = write_concordance(conc, run.texts, tmp_path / "c.csv")
    with open(out, newline="") as fh:
        got = list(csv.reader(fh))
    assert got[0] == ["sentence", "token", "left", "match", "right", "pos", "layer", "experts"]
    assert got[1] == ["0", "3", "I know ", "that", " he left .", "SCONJ", "2", "0 1"]
    assert len(got) == 5


def test_concordance_default_layer_is_first_moe_layer_and_bad_layer_is_one_line(run):
    conc = concordance(run, "that")
    assert conc.layer == 1
    assert [conc.experts_text(i) for i in range(len(conc))] == ["3 0", "0 1", "3 0", "1 2"]
    with pytest.raises(ReportError, match="layer 7 is not a MoE layer"):
        concordance(run, "that", layer=7)
    with pytest.raises(ReportError, match="--by"):
        concordance(run, "that", by="lemma")


def test_pos_groups_count_each_of_k_experts(run):
    conc = concordance(run, "that", layer=1)
    groups = conc.pos_groups()
    assert [(g.tag, g.count) for g in groups] == [("SCONJ", 2), ("DET", 1), ("PRON", 1)]
    # SCONJ: tokens 3 -> [3, 0] and 21 -> [1, 2]
    assert groups[0].expert_counts.tolist() == [1, 1, 1, 1]
    assert groups[1].expert_counts.tolist() == [1, 1, 0, 0]
    assert groups[0].top_experts(2) == [(0, 0.25), (1, 0.25)]
    # the plain function: two POS, k = 1
    g = pos_groups(np.array([1, 1, 0]), np.array([[2], [2], [3]]), 2, 4, ("A", "B"))
    assert [(x.tag, x.count, x.expert_counts.tolist()) for x in g] == [("B", 2, [0, 0, 2, 0]), ("A", 1, [0, 0, 0, 1])]


def test_sort_orders(run):
    conc = concordance(run, "that", layer=1)
    assert conc.take(conc.sort_order("pos")).sentence.tolist() == [0, 3, 1, 2]
    # rank-0 expert 0 (s1), then 1 (s3), then 3 (s0, s2: run order kept)
    assert conc.take(conc.sort_order("expert")).sentence.tolist() == [1, 3, 0, 2]
    # right context: " .", " .", " dog runs .", " he left ." -> ". " < "dog" < "he"
    assert conc.take(conc.sort_order("right", run.texts)).sentence.tolist() == [2, 3, 1, 0]
    # left context read outward: "" < "wonk i" < "em evig" < "dias rehcthat"... lower-cased, reversed
    assert conc.take(conc.sort_order("left", run.texts)).sentence.tolist() == [1, 3, 2, 0]


def test_item_stats_lift_by_hand():
    st = item_stats(np.array([0, 0, 1]), np.array([0, 0, 0, 1, 1, 2]), 3, ["a", "b", "c"], min_count=2)
    assert st.ids.tolist() == [0, 1]
    assert st.count.tolist() == [2, 1] and st.corpus_count.tolist() == [3, 2]
    np.testing.assert_allclose(st.lift, [(2 / 3) / (3 / 6), (1 / 3) / (2 / 6)])
    guarded = item_stats(np.array([0, 0, 1]), np.array([0, 0, 0, 1, 1, 2]), 3, ["a", "b", "c"], min_count=3)
    assert np.isnan(guarded.lift[1]) and guarded.lift[0] == pytest.approx(4 / 3)
    assert guarded.by_lift().tolist() == [0]


def test_expert_card_against_a_loop(run, tmp_path):
    card = expert_card(run, layer=1, expert=1, min_count=1, examples=3)
    analysed = [t for t in range(23) if t not in (0, 7, 12, 17)]
    mine = [t for t in analysed if 1 in expected_experts(t, 0)]
    assert card.n_tokens == len(analysed) and card.assignments == len(mine)
    assert card.top1 == sum(1 for t in analysed if expected_experts(t, 0)[0] == 1)
    assert card.load_share == pytest.approx(len(mine) / (len(analysed) * K))
    # POS mix against the corpus, by a loop over the fixture
    tag_of = {}
    g = 0
    for s, tags in enumerate(WORD_TAGS):
        g += 1
        pieces = SENTS[s][2] or [[None]] * len(tags)
        for wi, ps in enumerate(pieces):
            for _ in ps:
                tag_of[g] = tags[wi]
                g += 1
    for j, p in enumerate(card.pos.ids.tolist()):
        tag = TAGS[p]
        n_e = sum(1 for t in mine if tag_of[t] == tag)
        n_all = sum(1 for t in analysed if tag_of[t] == tag)
        assert card.pos.count[j] == n_e and card.pos.corpus_count[j] == n_all
        assert card.pos.lift[j] == pytest.approx((n_e / len(mine)) / (n_all / len(analysed)))
    assert sum(card.pos.count) == len(mine)
    # words are lower-cased: "that" and "That" are one word
    words = {card.words.names[int(i)]: int(c) for i, c in zip(card.words.ids, card.words.count)}
    assert words.get("that", 0) == sum(1 for t in (3, 8, 15, 21) if t in mine)
    assert len(card.examples) == 3 and set(card.examples.tolist()) <= set(mine)
    assert card.examples.tolist() == sorted(card.examples.tolist())
    from moe_tui.core.expert_card import write_expert_card

    out = write_expert_card(card, run.texts, tmp_path / "e.csv")
    with open(out, newline="") as fh:
        rows = list(csv.DictReader(fh))
    load = rows[0]
    assert load["section"] == "load" and int(load["count"]) == len(mine)
    assert float(load["lift"]) == pytest.approx(card.load_share * N_EXPERTS)
    ex = [r for r in rows if r["section"] == "example"]
    assert len(ex) == 3 and all(r["left"] + r["match"] + r["right"] == run.texts[int(r["sentence"])] for r in ex)
    with pytest.raises(ReportError, match="expert 9"):
        expert_card(run, layer=1, expert=9)


def test_run_pair_checks_and_disagreement(tmp_path):
    a = build_run(tmp_path)
    b = build_run(tmp_path, shift=1, name="0000000000000c0d")
    check_pair(a, b)
    table = layer_disagreement(a, b, chunk_tokens=5)
    analysed = [t for t in range(23) if t not in (0, 7, 12, 17)]
    differ = [t for t in analysed if t % 3 == 0]
    assert table["rows"][0][1:4] == [len(analysed), 0, 0.0]
    assert table["rows"][1][0] == 2 and table["rows"][1][2] == len(differ)
    assert table["rows"][1][3] == pytest.approx(len(differ) / len(analysed))
    assert table["rows"][1][4] == 0   # the rank-0 expert never changed
    other = build_run(tmp_path, name="0000000000000c0e", token_ids=np.arange(23)[::-1])
    with pytest.raises(ReportError, match="tokenize the corpus differently"):
        check_pair(a, other)
