"""Per-layer top-k (e.g. Hunyuan's ``moe_topk`` per layer): the writer fills a rank a layer does not use with the
sentinel id (255 for uint8 runs) and weight 0. The reader, the view, the metrics, the controls and the probes'
inputs accept it, and it counts for no expert. Oracle: counts made by hand over the stored arrays."""

from __future__ import annotations

import numpy as np
import pytest

from moe_tui.core.analysis import controls, metrics
from moe_tui.core.analysis.report import report_tables
from moe_tui.core.analysis.view import RunView
from moe_tui.errors import ReportError
from tests.runs import UPOS, synthetic_arrays, write_run

N, L, K = 8, 3, 2


@pytest.fixture
def sentinel_run(tmp_path):
    arrays, recs = synthetic_arrays(n_layers=L, n_experts=N, top_k=K)
    ex, w = arrays["experts"].copy(), arrays["weights"].copy()
    ex[:, 1, 1] = 255          # MoE layer position 1 routes each token to one expert only
    w[:, 1, 1] = 0
    arrays["experts"], arrays["weights"] = ex, w
    return write_run(tmp_path, arrays, recs, tags=UPOS, moe_layers=[1, 2, 3], num_experts=N, top_k=K)


def _hand_counts(experts, pos):
    out = np.zeros((L, N, len(UPOS)), dtype=np.int64)
    for t in range(len(pos)):
        for li in range(L):
            for r in range(K):
                if experts[t, li, r] < N:
                    out[li, experts[t, li, r], pos[t]] += 1
    return out


def test_a_run_with_sentinel_ids_opens_and_reports(sentinel_run):
    run = sentinel_run
    assert int(np.asarray(run.experts).max()) == 255          # stored as written
    view = RunView.from_run(run)
    view.validate()
    keep = np.asarray(run.pos) >= 0
    e, p = np.asarray(run.experts)[keep], np.asarray(run.pos)[keep].astype(np.int64)
    expected = _hand_counts(e, p)
    np.testing.assert_array_equal(view.counts(), expected)
    assert view.counts()[1].sum() == keep.sum() and view.counts()[0].sum() == K * keep.sum()
    tables = report_tables(view)
    spec = {(r[0], r[1]): r[3] for r in tables["spec_layer"]["rows"]}
    # at the top-1 layer every POS routes to one expert: its top-k experts hold 1 of k assignments each
    noun = UPOS.index("NOUN")
    n_noun = int((p == noun).sum())
    top = np.sort(expected[1, :, noun])[::-1][:K].sum()
    assert spec[(2, "NOUN")] == pytest.approx(100.0 * top / (K * n_noun))
    # the controls count the same way
    null = controls.permuted_counts(view.experts, view.pos[None], N, view.n_pos)
    np.testing.assert_array_equal(null[0], expected)
    per_sent = controls.sentence_counts(view.experts, view.pos, N, view.n_pos, view.sentence, run.n_sentences)
    np.testing.assert_array_equal(per_sent.sum(0), expected)
    # the context effect's Hamming distances: a slot that is the sentinel for every token differs for no pair, as
    # the same slot holding one constant expert id would
    const = np.asarray(view.experts).copy()
    const[:, 1, 1] = 0
    args = (view.token_ids, view.pos, view.n_pos, N)
    assert controls.context_effect(view.experts, *args, n_permutations=5) == \
        controls.context_effect(const, *args, n_permutations=5)
    # the probes read the sentinel as its own category N
    pe, n_cat = view.probe_experts()
    assert n_cat == N + 1 and int(pe.max()) == N and (pe[:, 1, 1] == N).all()
    np.testing.assert_array_equal(pe[:, [0, 2]], e[:, [0, 2]])


def test_ids_outside_the_experts_that_are_not_the_sentinel_are_refused(sentinel_run):
    view = RunView.from_run(sentinel_run)
    bad = np.asarray(view.experts).copy()
    bad[0, 0, 0] = 9
    other = RunView(model="m", run_id="r", tags=view.tags, moe_layers=view.moe_layers, n_experts=N, top_k=K,
                    experts=bad, pos=view.pos, form_ids=view.form_ids, form_vocab=view.form_vocab,
                    sentence=view.sentence, token_ids=view.token_ids)
    with pytest.raises(ReportError, match="expert id outside 0..7"):
        other.validate()
    with pytest.raises(ValueError, match="got 9"):
        metrics.assignment_counts(bad, view.pos, N, view.n_pos)
    # -1 (a signed sentinel) counts nowhere, like 255
    signed = np.asarray(view.experts).astype(np.int16)
    signed[signed == 255] = -1
    np.testing.assert_array_equal(metrics.assignment_counts(signed, view.pos, N, view.n_pos), view.counts())
