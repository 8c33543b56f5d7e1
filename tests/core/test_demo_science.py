"""The shipped demo model has really learned to route: its Spec beats the permutation null, its
routes predict POS far better than the majority class, and the route of one token id depends on its
POS in context (the demo's conclusions in docs/demo.md). Checked on a real extraction of the demo."""

from __future__ import annotations

import numpy as np
import pytest

from moe_tui.cache.store import RunStore
from moe_tui.core.analysis import metrics
from moe_tui.core.analysis.controls import ambiguous_tokens, context_effect, spec_permutation_null, token_identity_probe
from moe_tui.core.analysis.probe import form_baseline, run_probe, split_indices
from moe_tui.core.analysis.view import RunView
from moe_tui.core.demo import demo_corpus_path, demo_model_path
from moe_tui.core.extract.pipeline import ExtractOptions, extract

pytestmark = pytest.mark.slow  # seconds per test: child processes, training, full flows


@pytest.fixture(scope="module")
def demo_view(tmp_path_factory):
    cache = tmp_path_factory.mktemp("demo_cache")
    run_dir = extract(ExtractOptions(model=str(demo_model_path()), data=str(demo_corpus_path()),
                                     sample=600, seed=0, device="cpu", cache_dir=str(cache)))
    return RunView.from_run(RunStore(cache).open(run_dir.name))


def test_demo_spec_is_above_the_permutation_null(demo_view):
    v = demo_view
    P = len(v.tags)
    null = spec_permutation_null(v.experts, v.pos, v.n_experts, P, n_permutations=20, seed=0)
    tokens, _ = metrics.pos_counts(v.pos, P)
    spec_mean, _, _ = metrics.spec_by_pos(null["spec"])
    null_mean, _, _ = metrics.spec_by_pos(null["null_p95"])
    g_spec = metrics.global_spec(spec_mean, v.tags, tokens)
    g_null95 = metrics.global_spec(null_mean, v.tags, tokens)
    assert g_spec > g_null95 + 15, (g_spec, g_null95)
    assert g_spec > metrics.uniform_spec(v.top_k, v.n_experts) + 25
    # per (layer, POS) with enough tokens, most cells are above the null's 95th percentile
    big = tokens >= 50
    assert (null["spec"][:, big] > null["null_p95"][:, big]).mean() > 0.9


def test_demo_routes_predict_pos_beyond_the_majority_class(demo_view):
    v = demo_view
    P = len(v.tags)
    split = split_indices(v.n_tokens, seed=0)
    res = run_probe(v.experts, v.pos, P, variant="top_k", split=split, seed=0, max_iter=200, n_experts=v.n_experts)
    majority = np.bincount(v.pos[res.test_idx], minlength=P).max() / len(res.test_idx)
    assert res.accuracy > majority + 0.4, (res.accuracy, majority)
    # on the token ids seen with >= 2 POS, the routes tell the POS better than the token id does
    tid = token_identity_probe(v.token_ids, v.pos, P, split)
    base = form_baseline(v.form_ids, v.pos, P, *split)
    amb = ambiguous_tokens(v.token_ids, v.pos, P, probe=res, token_identity=tid, form_baseline=base)
    assert amb["ambiguous_test_tokens"] > 100, amb
    assert amb["ambiguous_probe"] > amb["ambiguous_token_identity"] + 0.1, amb


def test_demo_route_of_a_token_id_depends_on_its_pos(demo_view):
    """Occurrences of one token id with different POS take top-k paths further apart than occurrences
    with the same POS, beyond every within-token-id shuffle of the POS labels."""
    v = demo_view
    ctx = context_effect(v.experts, v.token_ids, v.pos, len(v.tags), v.n_experts, n_permutations=50, seed=0)
    assert ctx["ambiguous_token_ids"] >= 20 and ctx["pairs_diff_pos"] > 1000, ctx
    assert ctx["diff_pos"] > ctx["same_pos"] + 1.5, ctx
    assert ctx["p_value"] == 1 / 51, ctx
