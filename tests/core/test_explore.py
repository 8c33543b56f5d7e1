"""moe_tui.core.inspect.explore (the grid's per-layer counts, jump targets, comparable runs) and the KL bars table,
checked against hand counts."""

from __future__ import annotations

import numpy as np
import pytest

from moe_tui.cache.store import RunStore
from moe_tui.core.analysis import metrics
from moe_tui.core.analysis.tables import table_kl_expert_pos
from moe_tui.core.analysis.view import RunView, form_keys
from moe_tui.core.inspect.explore import JumpTarget, LayerStatsCache, comparable_runs, jump_target
from tests.runs import synthetic_arrays, synthetic_run, write_run

# T=4, L=1, k=2; the last token is excluded (pos -1)
EXPERTS = np.array([[[0, 1]], [[0, 2]], [[1, 2]], [[2, 0]]], dtype=np.uint8)
POS = np.array([0, 0, 1, -1])


def test_layer_counts_by_hand():
    cache = LayerStatsCache(EXPERTS, POS, 3, 2)
    # expert 0: tokens 0, 1 (POS 0); expert 1: token 0 (POS 0), token 2 (POS 1); expert 2: token 1, token 2
    assert cache.counts(0).tolist() == [[2, 0], [1, 1], [1, 1]]
    assert cache.pos_totals.tolist() == [2, 1]
    np.testing.assert_allclose(cache.distribution(0, 1), [0.5, 0.5])
    np.testing.assert_allclose(cache.distribution(0, 2), [0.5, 0.5])
    assert cache.share_of_pos(0, 0, 0) == 1.0      # both POS-0 tokens route to expert 0
    assert cache.share_of_pos(0, 2, 1) == 1.0
    assert cache.share_of_pos(0, 1, 0) == 0.5
    # top-1 only: the one count engine on the first rank
    keep = POS >= 0
    assert metrics.assignment_counts(EXPERTS[keep][:, :, :1], POS[keep], 3, 2)[0].tolist() == [[2, 0], [0, 1], [0, 0]]


def test_fill_counts_every_layer_in_chunks():
    """fill(): every layer in one chunked pass, the same hand-counted numbers (chunks of 3 tokens: 2 chunks)."""
    two = np.concatenate([EXPERTS, EXPERTS[:, :, ::-1]], axis=1)        # layer 1: the same sets, ranks swapped
    filled = LayerStatsCache(two, POS, 3, 2)
    assert filled.fill(chunk_tokens=3)
    assert filled.counts(0).tolist() == [[2, 0], [1, 1], [1, 1]] and filled.counts(1).tolist() == [[2, 0], [1, 1], [1, 1]]
    assert not LayerStatsCache(EXPERTS, POS, 3, 2).fill(should_stop=lambda: True)
    sentinel = LayerStatsCache(np.array([[[0, 255]], [[1, 0]]], dtype=np.uint8), np.array([0, 1]), 2, 2)
    assert sentinel.fill(chunk_tokens=1) and sentinel.counts(0).tolist() == [[1, 1], [0, 1]]


def test_sentinel_expert_ids_are_counted_nowhere():
    """Unused ranks hold the sentinel 255 (per-layer top-k): they count for no expert."""
    experts = np.array([[[0, 255]], [[1, 0]]], dtype=np.uint8)
    cache = LayerStatsCache(experts, np.array([0, 1]), 2, 2)
    assert cache.counts(0).tolist() == [[1, 1], [0, 1]]


def test_kl_bars_are_the_p_and_q_of_the_kl():
    view = RunView(model="m", run_id="r", tags=("A", "B"), moe_layers=[3], n_experts=3, top_k=2,
                   experts=EXPERTS[:3], pos=POS[:3], **form_keys(np.array(["a", "b", "c"])), sentence=np.zeros(3, int),
                   token_ids=np.arange(3))
    t = table_kl_expert_pos(view, 0, 1)
    assert t["name"] == "kl_expert_L3_E1" and t["columns"] == ["pos", "expert_share", "corpus_share"]
    assert t["rows"] == [["A", 0.5, 2 / 3], ["B", 0.5, 1 / 3]]
    kl = metrics.kl_per_expert(view.counts(), view.pos_counts()[0])[0][0, 1]
    p, q = np.array([0.5, 0.5]), np.array([2 / 3, 1 / 3])
    assert kl == pytest.approx(float((p * np.log(p / q)).sum()))


def test_jump_target_by_hand(tmp_path):
    run = synthetic_run(tmp_path)
    view = RunView.from_run(run)
    noun, layer_idx = run.tags.index("NOUN"), 2
    # synthetic routes: top-1 at layer position l is (3 * pos + l) % 8 for every token of that POS
    expert = (3 * noun + layer_idx) % 8
    target = jump_target(run, view, layer_idx, noun)
    assert target == JumpTarget(0, layer_idx, 2, expert)   # "cat": token 2 of sentence 0 (after <s>, "The")
    assert run.sentences[0]["tokens"][target.token] == "Ġcat"
    assert jump_target(run, view, 0, run.tags.index("INTJ")) is None   # no token of that POS


def test_comparable_runs_share_the_corpus_selection_and_tagset(tmp_path):
    a = synthetic_run(tmp_path, model="m/a")
    b = synthetic_run(tmp_path, model="m/b", seed=1)
    arrays, records = synthetic_arrays()
    other = write_run(tmp_path, arrays, records, tags=a.tags, moe_layers=a.moe_layers, num_experts=8, top_k=2,
                      model="m/c", corpus="another.conllu")
    store = RunStore(tmp_path)
    assert [r.run_id for r in comparable_runs(a, store)] == [b.run_id]
    assert {r.run_id for r in comparable_runs(b, store)} == {a.run_id}
    assert comparable_runs(other, store) == []
