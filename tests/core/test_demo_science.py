"""The shipped demo model has really learned to route: its Spec beats the permutation null and its
routes predict POS far better than the majority class. Checked on a real extraction of the demo."""

from __future__ import annotations

import numpy as np
import pytest

from moe_tui.cache.store import RunStore
from moe_tui.core import metrics
from moe_tui.core.controls import spec_permutation_null
from moe_tui.core.demo import demo_corpus_path, demo_model_path
from moe_tui.core.extract import ExtractOptions, extract
from moe_tui.core.probe import run_probe
from moe_tui.core.report import RunView

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
    res = run_probe(v.experts, v.pos, P, variant="top_k", seed=0, max_iter=200, n_experts=v.n_experts)
    majority = np.bincount(v.pos[res.test_idx], minlength=P).max() / len(res.test_idx)
    assert res.accuracy > majority + 0.4, (res.accuracy, majority)
