"""Concordance, expert card and run pairs over small real runs whose answers are known by construction: every
token's experts are a formula of its global index, so the expected rows are written out by hand."""

from __future__ import annotations

import csv

import numpy as np
import pytest

from moe_tui.core.inspect.concordance import concordance, find_occurrences, pos_groups
from moe_tui.core.inspect.expert_card import expert_card, item_stats
from moe_tui.core.inspect.run_pair import check_pair, layer_disagreement
from moe_tui.errors import ReportError
from tests.runs import WORD_RUN_EXPERTS as N_EXPERTS
from tests.runs import WORD_RUN_K as K
from tests.runs import WORD_RUN_SENTENCES as SENTS
from tests.runs import WORD_RUN_TAGS as TAGS
from tests.runs import WORD_RUN_WORD_TAGS as WORD_TAGS
from tests.runs import word_run as build_run
from tests.runs import word_run_experts as expected_experts


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
    from moe_tui.core.inspect.concordance import write_concordance

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
    from moe_tui.core.inspect.expert_card import write_expert_card

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


def test_unused_rank_counts_for_no_expert(tmp_path):
    """Per-layer top-k: at layer 1 the even tokens use only their rank-0 expert (rank 1 holds the sentinel)."""
    run = build_run(tmp_path, unused_rank=True)
    conc = concordance(run, "that", layer=1)          # tokens 3, 8, 15, 21: token 8 uses one expert
    assert [conc.experts_text(i) for i in range(len(conc))] == ["3 0", "0", "3 0", "1 2"]
    groups = {g.tag: g.expert_counts.tolist() for g in conc.pos_groups()}
    assert groups == {"SCONJ": [1, 1, 1, 1], "DET": [1, 0, 0, 0], "PRON": [1, 0, 0, 1]}
    assert sum(sum(v) for v in groups.values()) == 2 * 4 - 1
    analysed = [t for t in range(23) if t not in (0, 7, 12, 17)]
    card = expert_card(run, layer=1, expert=0, min_count=1)
    used = {t: expected_experts(t, 0)[:1] if t % 2 == 0 else expected_experts(t, 0) for t in analysed}
    mine = [t for t in analysed if 0 in used[t]]
    total = sum(len(v) for v in used.values())
    assert card.assignments == len(mine) and card.total_assignments == total < 2 * len(analysed)
    assert card.load_share == pytest.approx(len(mine) / total)
    assert sum(card.pos.count) == len(mine)


def test_run_pair_checks_and_disagreement(tmp_path):
    a = build_run(tmp_path)
    b = build_run(tmp_path, shift=1, model="org/m-b")
    check_pair(a, b)
    table = layer_disagreement(a, b, chunk_tokens=5)
    analysed = [t for t in range(23) if t not in (0, 7, 12, 17)]
    differ = [t for t in analysed if t % 3 == 0]
    assert table["rows"][0][1:4] == [len(analysed), 0, 0.0]
    assert table["rows"][1][0] == 2 and table["rows"][1][2] == len(differ)
    assert table["rows"][1][3] == pytest.approx(len(differ) / len(analysed))
    assert table["rows"][1][4] == 0   # the rank-0 expert never changed
    other = build_run(tmp_path, model="org/m-c", token_ids=np.arange(23)[::-1])
    with pytest.raises(ReportError, match="tokenize the corpus differently"):
        check_pair(a, other)
