"""moe_tui.core.analysis.controls: token-keyed context effect, ambiguous token ids, permutation p-values and
Benjamini-Hochberg q-values, BCa bootstrap intervals (hand cases, enumeration, scipy, coverage where the
truth is known), and the token-id router oracle (a real tiny model whose attention outputs are zeroed)."""

from __future__ import annotations

import math
import re
import shutil
from itertools import combinations

import numpy as np
import pytest

from moe_tui.core.analysis import controls as C
from moe_tui.core.analysis import metrics as M
from moe_tui.core.analysis.probe import make_result
from tests import sim_spec as Z
from tests.helpers import needs_ewt

TAGS3 = ("NOUN", "VERB", "ADJ")


# ---------------------------------------------------------------------------- context effect (token id)

def _enumerated_means(experts, token_ids, pos, n_pos):
    """Mean Hamming distance of top-k paths over every pair of occurrences of an ambiguous token id,
    by enumerating the pairs one by one."""
    amb_ids = [t for t in np.unique(token_ids) if len(np.unique(pos[token_ids == t])) >= 2]
    same, diff = [], []
    for t in amb_ids:
        idx = np.nonzero(token_ids == t)[0]
        for i, j in combinations(idx, 2):
            d = int(np.count_nonzero(experts[i] != experts[j]))
            (same if pos[i] == pos[j] else diff).append(d)
    return np.mean(same), np.mean(diff), len(same), len(diff), len(amb_ids)


def test_context_effect_means_equal_pair_enumeration():
    rng = np.random.default_rng(3)
    T, L, N, P = 400, 3, 6, 4
    token_ids = rng.integers(0, 25, T)
    pos = rng.integers(0, P, T)
    pos[token_ids < 5] = 0                         # some token ids are unambiguous
    e0 = rng.integers(0, N, (T, L))
    experts = np.stack([e0, (e0 + 1 + rng.integers(0, N - 1, (T, L))) % N], axis=2)   # top-2, distinct
    res = C.context_effect(experts, token_ids, pos, P, N, n_permutations=20, seed=0)
    same, diff, n_same, n_diff, n_ids = _enumerated_means(experts, token_ids, pos, P)
    assert res["same_pos"] == pytest.approx(same, abs=1e-12)
    assert res["diff_pos"] == pytest.approx(diff, abs=1e-12)
    assert res["pairs_same_pos"] == n_same and res["pairs_diff_pos"] == n_diff
    assert res["ambiguous_token_ids"] == n_ids == 20
    assert res["ambiguous_tokens"] == np.isin(token_ids, np.arange(5, 25)).sum()
    assert 1 / 21 <= res["p_value"] <= 1.0     # routes independent of POS: no effect to find


def test_context_effect_p_value_by_counting_arrangements():
    """One token id, two occurrences tagged NOUN and two VERB, routes set by the POS; a second id is
    unambiguous (left out). Shuffling the 4 labels among the occurrences gives 6 equally likely
    arrangements, 2 of which (the observed one and its swap) pair the occurrences as observed: the
    share of shuffles at least as extreme is 1/3, so p -> (1 + R/3) / (1 + R)."""
    token_ids = np.array([7, 7, 7, 7, 9, 9])
    pos = np.array([0, 0, 1, 1, 0, 0])
    experts = np.array([[[0, 1]], [[0, 1]], [[2, 3]], [[2, 3]], [[4, 5]], [[5, 4]]])
    res = C.context_effect(experts, token_ids, pos, 2, 6, n_permutations=6000, seed=1)
    assert res["same_pos"] == 0.0 and res["diff_pos"] == 2.0            # 1 layer x top-2 slots
    assert res["pairs_same_pos"] == 2 and res["pairs_diff_pos"] == 4
    assert res["ambiguous_token_ids"] == 1 and res["ambiguous_tokens"] == 4
    assert res["p_value"] == pytest.approx(1 / 3, abs=0.02)


def test_context_effect_router_that_reads_the_token_id_only():
    rng = np.random.default_rng(0)
    token_ids = rng.integers(0, 30, 600)
    pos = rng.integers(0, 5, 600)
    table = rng.integers(0, 8, (30, 4, 2))          # each id's fixed route
    res = C.context_effect(table[token_ids], token_ids, pos, 5, 8, n_permutations=99, seed=0)
    assert res["same_pos"] == 0.0 and res["diff_pos"] == 0.0
    assert res["p_value"] == 1.0                    # every shuffle ties the observed agreement


def test_within_group_permutations_keep_each_group_and_are_uniform():
    groups = np.array([0, 1, 0, 1, 0, 2])
    labels = np.array([10, 20, 11, 21, 12, 30])
    perms = C.within_group_permutations(groups, labels, 6000, seed=4)
    for row in perms[:50]:
        for g in (0, 1, 2):
            assert sorted(row[groups == g]) == sorted(labels[groups == g])
    # group 0 (3 members, distinct labels): 6 orders, each about 1/6
    arr, counts = np.unique(perms[:, groups == 0], axis=0, return_counts=True)
    assert len(arr) == 6 and np.all(np.abs(counts / 6000 - 1 / 6) < 0.02)
    np.testing.assert_array_equal(perms, C.within_group_permutations(groups, labels, 6000, seed=4))


def test_ambiguous_tokens_by_hand():
    # token id 5: NOUN, NOUN, VERB (ambiguous); id 6: VERB only; id 8: NOUN, ADJ (ambiguous)
    token_ids = np.array([5, 5, 5, 6, 6, 8, 8])
    pos = np.array([0, 0, 1, 1, 1, 0, 2])
    test = np.array([2, 3, 6])                     # ambiguous test tokens: 2 (id 5) and 6 (id 8)
    truth = pos[test]
    probe = make_result("top_k", truth, np.array([1, 0, 2]), 3, 4, test)         # right, wrong, right
    tid = make_result("token_identity", truth, np.array([0, 1, 0]), 3, 4, test)   # wrong, right, wrong
    base = make_result("baseline", truth, np.array([1, 1, 0]), 3, 4, test)        # right, right, wrong
    res = C.ambiguous_tokens(token_ids, pos, 3, probe=probe, token_identity=tid, form_baseline=base)
    assert res == {"ambiguous_token_ids": 2.0, "ambiguous_test_tokens": 2.0, "ambiguous_probe": 1.0,
                   "ambiguous_token_identity": 0.0, "ambiguous_form_baseline": 0.5}
    other = make_result("baseline", pos[[0, 1, 2]], np.array([0, 0, 0]), 3, 4, np.array([0, 1, 2]))
    with pytest.raises(ValueError, match="test split"):
        C.ambiguous_tokens(token_ids, pos, 3, probe=probe, token_identity=tid, form_baseline=other)


# ---------------------------------------------------------------------------- p-values and q-values

def test_permutation_p_values_by_hand():
    observed = np.array([5.0, 7.0, np.nan, 1.0])
    null = np.array([[4.0, 8.0, np.nan, 0.0],
                     [5.0, 6.0, np.nan, 0.5],
                     [6.0, 6.5, np.nan, 0.9]])
    # cell 0: 5, 6 >= 5 -> 2 ; cell 1: 8 >= 7 -> 1 ; cell 3: none -> 0 ; R = 3
    np.testing.assert_array_equal(C.permutation_p_values(observed, null)[[0, 1, 3]], [3 / 4, 2 / 4, 1 / 4])
    assert np.isnan(C.permutation_p_values(observed, null)[2])
    assert np.isnan(C.permutation_p_values(observed, null[:0])).all()


def test_bh_qvalues_by_hand():
    # sorted p: 0.01, 0.03, 0.04, 0.20 (m = 4); m p / rank: 0.04, 0.06, 0.0533, 0.20;
    # running minimum from the largest: 0.04, 0.0533, 0.0533, 0.20
    p = np.array([[0.01, 0.04], [np.nan, 0.03], [0.20, np.nan]])
    q = C.bh_qvalues(p)
    np.testing.assert_allclose(q[[0, 0, 1, 2], [0, 1, 1, 0]], [0.04, 0.16 / 3, 0.16 / 3, 0.20])
    assert np.isnan(q[1, 0]) and np.isnan(q[2, 1])
    np.testing.assert_allclose(C.bh_qvalues(np.array([0.5, 0.9, 0.8])), [0.9, 0.9, 0.9])
    np.testing.assert_allclose(C.bh_qvalues(np.array([0.6, 0.9])), [0.9, 0.9])
    assert C.bh_qvalues(np.array([0.4, 0.9]))[0] == pytest.approx(0.8)


def test_spec_null_p_values_on_a_case_worked_out_by_hand():
    # k = 1, 2 experts, 1 layer. Tokens 0, 1 (NOUN) -> expert 0; tokens 2, 3 (VERB) -> expert 1:
    # Spec NOUN = Spec VERB = 100. A shuffle keeps 2 NOUN and 2 VERB; Spec NOUN is 100 when both NOUN
    # tokens share an expert (2 of the 6 arrangements), else 50. So p = (1 + #{null = 100}) / (1 + R)
    # with #{null = 100} about R/3, and the same for VERB (the same arrangements).
    experts = np.array([[[0]], [[0]], [[1]], [[1]]])
    pos = np.array([0, 0, 1, 1])
    res = C.spec_permutation_null(experts, pos, 2, 3, n_permutations=3000, seed=0)
    samples = res["samples"][:, 0, :2]
    assert set(np.unique(samples)) == {50.0, 100.0}
    np.testing.assert_array_equal(res["p_value"][0, :2], (1 + (samples == 100.0).sum(axis=0)) / 3001)
    assert res["p_value"][0, 0] == pytest.approx(1 / 3, abs=0.03)
    assert np.isnan(res["p_value"][0, 2]) and np.isnan(res["q_value"][0, 2])   # the third POS has no token
    assert res["q_value"][0, 0] == res["q_value"][0, 1] == res["p_value"][0, 0]  # 2 equal p-values: q = p
    one = C.spec_permutation_null(np.array([[[0]], [[1]]]), np.array([0, 1]), 2, 2, n_permutations=10, seed=0)
    np.testing.assert_array_equal(one["p_value"], [[1.0, 1.0]])   # one token a POS: Spec 100 under any shuffle


# ---------------------------------------------------------------------------- BCa bootstrap

def test_jackknife_acceleration_of_a_mean_is_its_skewness_formula():
    """For a mean, leave-one-out estimates are (n xbar - x_i) / (n - 1), so the acceleration is
    sum (x - xbar)^3 / (6 (sum (x - xbar)^2)^1.5), computed here straight from the data."""
    rng = np.random.default_rng(0)
    x = rng.random(50) < 0.8                      # one token per sentence: accuracy = mean
    ba = C.bootstrap_accuracy(x, np.arange(50), n_boot=10, seed=0)
    d = x - x.mean()
    assert C.jackknife_acceleration(ba["jackknife"]) == pytest.approx((d ** 3).sum() / (6 * (d ** 2).sum() ** 1.5))
    assert C.jackknife_acceleration(np.ones(5)) == 0.0
    assert C.bca_interval(np.full(30, 2.5), 2.5, np.ones(4)) == (2.5, 2.5)
    assert all(math.isnan(v) for v in C.bca_interval(np.full(3, np.nan), 1.0, np.ones(3)))


def test_bootstrap_spec_jackknife_leaves_one_sentence_out():
    rng = np.random.default_rng(1)
    w = Z.weights(Z.favourites(2, 3, 8), 8, (1.5, 2.0))
    experts, pos, sentence = Z.draw(rng, w, 12, tokens_per_sentence=6)
    bs = C.bootstrap_spec(experts, pos, 8, 3, sentence, TAGS3, n_boot=5, seed=0)
    for s in range(12):
        keep = sentence != s
        tokens, _ = M.pos_counts(pos[keep], 3)
        spec = M.spec_from_counts(M.assignment_counts(experts[keep], pos[keep], 8, 3), 2, tokens)
        assert bs["jackknife"][s] == pytest.approx(M.global_spec(M.spec_by_pos(spec)[0], TAGS3, tokens), abs=1e-12)


def test_bootstrap_replicate_missing_a_tag_is_left_out():
    # ADJ occurs in sentence 0 only: leaving it out (jackknife) or not drawing it (bootstrap) would change
    # the tags the global Spec averages, so those estimates are NaN, not a 2-tag mean
    experts = np.array([[[0, 1]], [[2, 3]], [[0, 1]], [[2, 3]], [[0, 2]], [[1, 3]]])
    pos = np.array([2, 0, 0, 1, 1, 0])
    sentence = np.array([0, 0, 1, 1, 2, 2])
    bs = C.bootstrap_spec(experts, pos, 4, 3, sentence, TAGS3, n_boot=50, seed=0)
    assert np.isnan(bs["jackknife"][0]) and not np.isnan(bs["jackknife"][1:]).any()
    W = C.sentence_resample_weights(sentence, 50, 0)[0]
    has_adj, has_verb = W[:, 0] > 0, W[:, 1:].sum(axis=1) > 0   # VERB is in sentences 1 and 2
    assert (~has_adj).any()
    np.testing.assert_array_equal(np.isnan(bs["samples"]), ~(has_adj & has_verb))


@pytest.mark.slow
def test_bca_agrees_with_scipy():
    """scipy.stats.bootstrap(method="BCa"), resampling sentences (paired), on the same data: the ends
    agree within Monte-Carlo error (its resamples are its own)."""
    from scipy import stats

    rng = np.random.default_rng(2)
    correct, sentence, _ = Z.draw_correct(rng, 60, tokens_per_sentence=7)
    hits = np.bincount(sentence, weights=correct)
    sizes = np.bincount(sentence).astype(float)
    ref = stats.bootstrap((hits, sizes), lambda h, n, axis=-1: h.sum(axis) / n.sum(axis), paired=True,
                          vectorized=True, n_resamples=40000, method="BCa", random_state=0).confidence_interval
    ours = C.bootstrap_accuracy(correct, sentence, n_boot=40000, seed=0)
    width = ref.high - ref.low
    assert abs(ours["low"] - ref.low) < 0.05 * width and abs(ours["high"] - ref.high) < 0.05 * width

    w = Z.weights(Z.favourites(2, 3, 8), 8, (1.5, 2.0))
    experts, pos, sent = Z.draw(rng, w, 30)

    def glob(idx):
        sel = np.concatenate([np.nonzero(sent == s)[0] for s in idx.astype(int)])
        tokens, _ = M.pos_counts(pos[sel], 3)
        spec = M.spec_from_counts(M.assignment_counts(experts[sel], pos[sel], 8, 3), 2, tokens)
        return M.global_spec(M.spec_by_pos(spec)[0], TAGS3, tokens)

    ref = stats.bootstrap((np.arange(30),), lambda i, axis=-1: glob(i), vectorized=False, n_resamples=3000,
                          method="BCa", random_state=0).confidence_interval
    ours = C.bootstrap_spec(experts, pos, 8, 3, sent, TAGS3, n_boot=3000, seed=0)
    width = ref.high - ref.low
    assert abs(ours["low"] - ref.low) < 0.12 * width and abs(ours["high"] - ref.high) < 0.12 * width


@pytest.mark.slow
def test_bca_coverage_where_the_truth_is_known():
    """Repeated samples of 200 sentences from a weakly specialised population (true global Spec 35.4
    against U = 25): the BCa interval holds the point estimate every time and the truth at about the
    nominal 95 % (docs/methods.md, the coverage table: 0.938 over 1,000 draws); likewise an accuracy's interval."""
    w = Z.weights(Z.favourites(2, 3, 8), 8, (1.5, 2.0))
    truth = Z.true_global_spec(w)
    assert truth == pytest.approx(35.4166666, abs=1e-6)
    rng = np.random.default_rng(1)
    draws, cover, holds, acc_cover = 300, 0, 0, 0
    for i in range(draws):
        experts, pos, sentence = Z.draw(rng, w, 200)
        bs = C.bootstrap_spec(experts, pos, 8, 3, sentence, TAGS3, n_boot=200, seed=i)
        cover += bs["low"] <= truth <= bs["high"]
        holds += bs["low"] <= bs["point"] <= bs["high"]
        correct, sent, acc_truth = Z.draw_correct(rng, 200)
        ba = C.bootstrap_accuracy(correct, sent, n_boot=200, seed=i)
        acc_cover += ba["low"] <= acc_truth <= ba["high"]
    assert holds == draws
    assert 0.90 <= cover / draws <= 0.99, cover / draws
    assert 0.90 <= acc_cover / draws <= 0.99, acc_cover / draws


# ---------------------------------------------------------------------------- oracle: a token-id router

_ATTN_OUT = re.compile(r"(self_attn|attention|attn)\.(o_proj|out_proj|dense|wo)\.(weight|bias)$")


@pytest.fixture(scope="module")
def token_id_router_view(tmp_path_factory):
    """A tiny Mixtral whose attention output projections are zeroed: the residual stream of a token is its
    embedding plus what the MoE blocks make of it, so every router sees the token id alone. Saved, loaded
    back through the ordinary from_pretrained path by the extraction, over 300 EWT dev sentences."""
    import torch
    from transformers import AutoModelForCausalLM

    from moe_tui.cache.store import RunStore
    from moe_tui.core.analysis.view import RunView
    from moe_tui.core.extract.pipeline import ExtractOptions, extract
    from tests.factories_model import ewt_tiny_model
    from tests.helpers import EWT_DEV

    path = tmp_path_factory.mktemp("token_id_router") / "model"
    shutil.copytree(ewt_tiny_model("mixtral"), path)
    model = AutoModelForCausalLM.from_pretrained(str(path))
    zeroed = []
    with torch.no_grad():
        for name, p in model.named_parameters():
            if _ATTN_OUT.search(name):
                p.zero_()
                zeroed.append(name)
    assert len(zeroed) == model.config.num_hidden_layers      # one o_proj per layer (no bias in Mixtral)
    model.save_pretrained(str(path))
    cache = tmp_path_factory.mktemp("token_id_router_cache")
    run_dir = extract(ExtractOptions(model=str(path), data=str(EWT_DEV), sample=300, seed=0, device="cpu",
                                     dtype="float32", cache_dir=str(cache)))
    return RunView.from_run(RunStore(cache).open(run_dir.name))


@pytest.mark.slow
@needs_ewt
def test_token_id_router_shows_no_context_effect(token_id_router_view):
    from moe_tui.core.analysis.options import ReportOptions
    from moe_tui.core.analysis.tables import table_controls

    v = token_id_router_view
    ctx = C.context_effect(v.experts, v.token_ids, v.pos, v.n_pos, v.n_experts, n_permutations=50, seed=0)
    assert ctx["ambiguous_token_ids"] >= 20 and ctx["pairs_diff_pos"] > 1000   # EWT's "that", "to", "'s"...
    assert ctx["diff_pos"] == 0.0 and ctx["same_pos"] == 0.0 and ctx["p_value"] == 1.0
    # the form-keyed statistic it replaces saw a "context effect" in the same routes: one lower-cased form
    # covers several token ids ("That" / " that", pieces of one word)
    form_amb = C.ambiguous_mask(v.form_ids, v.pos, v.n_pos)
    by_form = C.hamming_same_key(v.experts.reshape(v.n_tokens, -1), v.form_ids, v.pos, v.n_pos, v.n_experts,
                                 mask=form_amb)
    assert by_form["diff_pos"] > by_form["same_pos"] + 0.5
    tab = table_controls(v, ReportOptions(seed=0, max_iter=300, n_permutations=20, n_boot=20))
    rows = dict(tab["rows"])
    assert rows["hamming_same_token_diff_pos"] == 0.0 and rows["context_effect_p"] == 1.0
    assert rows["ambiguous_test_tokens"] > 100
    # routes are a function of the token id: the probe cannot know more than the token-id lookup
    assert rows["ambiguous_probe"] <= rows["ambiguous_token_identity"] + 0.01, rows


def test_percentile_interval_by_hand():
    # 101 replicates 0..100: the 2.5th and 97.5th percentiles are 2.5 and 97.5 (linear interpolation);
    # NaN replicates are left out; a level of 0.5 gives the quartiles
    samples = np.arange(101.0)
    assert C.percentile_interval(samples) == pytest.approx((2.5, 97.5), rel=1e-12)
    assert C.percentile_interval(np.concatenate([samples, [np.nan, np.nan]])) == pytest.approx((2.5, 97.5), rel=1e-12)
    assert C.percentile_interval(samples, level=0.5) == pytest.approx((25.0, 75.0), rel=1e-12)
    assert all(math.isnan(x) for x in C.percentile_interval(np.array([np.nan])))
