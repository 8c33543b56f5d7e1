"""moe_tui.core.analysis.metrics: hand-computed Spec / U / KL (paper Tables 1, 3, 4, 5) and a brute-force cross-check."""

from __future__ import annotations

import math
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from moe_tui.core.analysis import metrics as M

# Toy: N=3 experts, L=2 layers, k=2, 2 POS (0=NOUN, 1=VERB), 4 tokens.
#            layer 0    layer 1
# t0 NOUN    [0, 1]     [2, 0]
# t1 NOUN    [0, 1]     [1, 2]
# t2 VERB    [2, 0]     [2, 1]
# t3 NOUN    [1, 2]     [0, 2]
TOY_EXPERTS = np.array(
    [
        [[0, 1], [2, 0]],
        [[0, 1], [1, 2]],
        [[2, 0], [2, 1]],
        [[1, 2], [0, 2]],
    ]
)
TOY_POS = np.array([0, 0, 1, 0])
TAGS = ("NOUN", "VERB")


def test_toy_counts_by_hand():
    c = M.assignment_counts(TOY_EXPERTS, TOY_POS, 3, 2)
    # layer 0, NOUN (t0,t1,t3): e0 <- t0,t1 = 2 ; e1 <- t0,t1,t3 = 3 ; e2 <- t3 = 1   (sum 6 = k*3)
    # layer 0, VERB (t2):       e0 = 1, e1 = 0, e2 = 1
    # layer 1, NOUN: e0 <- t0,t3 = 2 ; e1 <- t1 = 1 ; e2 <- t0,t1,t3 = 3
    # layer 1, VERB: e1 = 1, e2 = 1
    expected = np.array([[[2, 1], [3, 0], [1, 1]], [[2, 0], [1, 1], [3, 1]]])
    np.testing.assert_array_equal(c, expected)


def test_toy_spec_uniform_delta_by_hand():
    spec = M.spec_layer(TOY_EXPERTS, TOY_POS, 3, 2)
    # layer 0 NOUN: top-2 experts take 3 + 2 = 5 of k*tokens = 2*3 = 6 -> 500/6 = 83.333...
    # layer 0 VERB: 1 + 1 = 2 of 2*1 = 2 -> 100
    # layer 1 NOUN: 3 + 2 = 5 of 6 -> 83.333... ; VERB: 2 of 2 -> 100
    np.testing.assert_allclose(spec, [[500 / 6, 100.0], [500 / 6, 100.0]])
    u = M.uniform_spec(2, 3)  # 100 * 2 / 3
    assert u == pytest.approx(200 / 3)
    mean, mx, arg = M.spec_by_pos(spec)
    np.testing.assert_allclose(mean, [500 / 6, 100.0])
    np.testing.assert_allclose(mx, [500 / 6, 100.0])
    np.testing.assert_array_equal(arg, [0, 0])  # ties -> first layer
    # global Spec = mean over POS of per-POS means = (83.333 + 100) / 2 = 91.666...
    g = M.global_spec(mean, TAGS)
    assert g == pytest.approx(275 / 3)
    assert g - u == pytest.approx(275 / 3 - 200 / 3)  # dU = 25.0


def test_uniform_examples_from_paper():
    assert M.uniform_spec(2, 8) == 25.0  # Mixtral-style 2 of 8
    assert M.uniform_spec(6, 64) == 9.375  # DeepSeek-MoE style 6 of 64


def test_toy_kl_by_hand():
    c = M.assignment_counts(TOY_EXPERTS, TOY_POS, 3, 2)
    tokens, pct = M.pos_counts(TOY_POS, 2)
    np.testing.assert_array_equal(tokens, [3, 1])
    np.testing.assert_allclose(pct, [75.0, 25.0])
    kl, n = M.kl_per_expert(c, tokens)
    # Q = (3/4, 1/4)
    # L0 e0: P = (2/3, 1/3): 2/3 ln((2/3)/(3/4)) + 1/3 ln((1/3)/(1/4)) = 2/3 ln(8/9) + 1/3 ln(4/3)
    # L0 e1: P = (1, 0): ln(1/(3/4)) = ln(4/3)            (P=0 term is 0)
    # L0 e2: P = (1/2, 1/2): 1/2 ln(2/3) + 1/2 ln(2)
    # L1 e0: P = (1, 0): ln(4/3) ; L1 e1: (1/2, 1/2) as above ; L1 e2: P = (3/4, 1/4) = Q -> 0
    a = 2 / 3 * math.log(8 / 9) + 1 / 3 * math.log(4 / 3)  # 0.0173717...
    b = math.log(4 / 3)  # 0.2876821...
    h = 0.5 * math.log(2 / 3) + 0.5 * math.log(2)  # 0.1438410...
    np.testing.assert_allclose(kl, [[a, b, h], [b, h, 0.0]], atol=1e-12)
    np.testing.assert_array_equal(n, [[3, 3, 2], [2, 2, 4]])
    s = M.kl_summary(kl)
    np.testing.assert_allclose(s["layer_min"], [a, 0.0], atol=1e-12)
    np.testing.assert_allclose(s["layer_max"], [b, b])
    np.testing.assert_allclose(s["layer_mean"], [(a + b + h) / 3, (b + h) / 3])
    assert s["mu_min"] == pytest.approx(a / 2)
    assert s["mu_max"] == pytest.approx(b)
    assert s["mu_mean"] == pytest.approx(((a + b + h) / 3 + (b + h) / 3) / 2)
    # uniform reference: Q = (1/2, 1/2); L1 e2 with P = (3/4, 1/4): 3/4 ln(3/2) + 1/4 ln(1/2)
    klu, _ = M.kl_per_expert(c, tokens, reference="uniform")
    assert klu[1, 2] == pytest.approx(0.75 * math.log(1.5) + 0.25 * math.log(0.5))


def test_kl_zero_when_every_expert_mirrors_corpus():
    # corpus: 2 NOUN, 2 VERB (Q = 1/2, 1/2); every expert sees one NOUN and one VERB assignment
    experts = np.array([[[0, 1]], [[0, 1]], [[2, 3]], [[2, 3]]])  # L=1, k=2, N=4
    pos = np.array([0, 1, 0, 1])
    c = M.assignment_counts(experts, pos, 4, 2)
    kl, _ = M.kl_per_expert(c, M.pos_counts(pos, 2)[0])
    np.testing.assert_allclose(kl, 0.0, atol=1e-15)
    assert M.kl_summary(kl)["mu_max"] == pytest.approx(0.0)


def test_unused_expert_is_left_out_of_kl_summary():
    experts = np.array([[[0]], [[1]], [[0]]])  # N=3, expert 2 never used
    pos = np.array([0, 1, 1])
    kl, n = M.kl_per_expert(M.assignment_counts(experts, pos, 3, 2), M.pos_counts(pos, 2)[0])
    assert np.isnan(kl[0, 2]) and n[0, 2] == 0
    s = M.kl_summary(kl)
    assert not math.isnan(s["mu_mean"])
    # Q = (1/3, 2/3); e0 P = (1/2,1/2): 1/2 ln(3/2) + 1/2 ln(3/4) ; e1 P = (0,1): ln(3/2)
    e0 = 0.5 * math.log(1.5) + 0.5 * math.log(0.75)
    assert s["mu_mean"] == pytest.approx((e0 + math.log(1.5)) / 2)


def test_spec_is_100_when_pos_always_goes_to_same_k_experts():
    rng = np.random.default_rng(1)
    T, L, N = 200, 3, 8
    pos = rng.integers(0, 3, T)
    # POS p always goes to experts {2p, 2p+1} (in either rank order)
    base = np.stack([2 * pos, 2 * pos + 1], axis=1)
    flip = rng.random((T, L)) < 0.5
    experts = np.where(flip[:, :, None], base[:, None, ::-1], base[:, None, :])
    spec = M.spec_layer(experts, pos, N, 3)
    np.testing.assert_allclose(spec, 100.0)


def test_global_spec_excludes_x_sym_and_absent_pos():
    tags = ("NOUN", "X", "SYM", "VERB", "ADJ")
    mean = np.array([50.0, 10.0, 20.0, 70.0, np.nan])  # ADJ absent -> NaN
    assert M.global_spec(mean, tags) == 60.0  # (50 + 70) / 2
    tokens = np.array([5, 1, 1, 0, 0])  # VERB has no tokens -> dropped too
    assert M.global_spec(mean, tags, tokens) == 50.0
    # the tags averaged, in tag order
    assert M.global_spec_tags(mean, tags) == ("NOUN", "VERB")
    assert M.global_spec_tags(mean, tags, tokens) == ("NOUN",)
    assert M.global_spec_tags(np.full(5, np.nan), tags) == ()


def test_absent_pos_gives_nan_spec_and_minus_one_argmax():
    experts = np.array([[[0, 1]], [[1, 2]]])
    spec = M.spec_layer(experts, np.array([0, 0]), 3, 2)
    assert np.isnan(spec[0, 1])
    mean, mx, arg = M.spec_by_pos(spec)
    assert np.isnan(mean[1]) and arg[1] == -1 and arg[0] == 0


def _brute_counts(experts, pos, N, P, weights=None):
    T, L, k = experts.shape
    c = np.zeros((L, N, P))
    for t in range(T):
        for layer in range(L):
            for r in range(k):
                c[layer, experts[t, layer, r], pos[t]] += 1 if weights is None else weights[t]
    return c


@pytest.mark.parametrize("dtype", [np.uint8, np.int64, np.uint16])
@pytest.mark.parametrize("threads", [1, 2])
def test_assignment_counts_match_brute_force(dtype, threads, monkeypatch):
    monkeypatch.setattr(M, "_CHUNK_ASSIGNMENTS", 64)  # force many chunks
    rng = np.random.default_rng(7)
    T, L, k, N, P = 300, 4, 3, 6, 5
    experts = rng.integers(0, N, (T, L, k)).astype(dtype)
    pos = rng.integers(0, P, T)
    c = M.assignment_counts(experts, pos, N, P, threads=threads)
    assert c.dtype == np.int64
    np.testing.assert_array_equal(c, _brute_counts(experts, pos, N, P))
    w = rng.random(T)
    np.testing.assert_allclose(M.assignment_counts(experts, pos, N, P, weights=w, threads=threads),
                               _brute_counts(experts, pos, N, P, w))


def test_assignment_counts_wide_keys_use_uint32():
    rng = np.random.default_rng(3)
    T, L, k, N, P = 50, 5, 2, 1000, 17  # L*N*P = 85000 > 65536
    experts = rng.integers(0, N, (T, L, k))
    pos = rng.integers(0, P, T)
    np.testing.assert_array_equal(M.assignment_counts(experts, pos, N, P), _brute_counts(experts, pos, N, P))


def test_input_validation():
    with pytest.raises(ValueError):
        M.assignment_counts(np.zeros((2, 1, 1), int), np.array([0, 5]), 2, 2)
    with pytest.raises(ValueError):
        M.assignment_counts(np.full((2, 1, 1), 9), np.array([0, 1]), 2, 2)
    with pytest.raises(ValueError):
        M.assignment_counts(np.zeros((2, 1), int), np.array([0, 1]), 2, 2)
    with pytest.raises(ValueError):
        M.kl_per_expert(np.zeros((1, 2, 2)), np.ones(2), reference="bogus")


def test_empty_input():
    c = M.assignment_counts(np.zeros((0, 2, 2), int), np.zeros(0, int), 3, 2)
    assert c.shape == (2, 3, 2) and c.sum() == 0
    tokens, pct = M.pos_counts(np.zeros(0, int), 3)
    assert tokens.tolist() == [0, 0, 0] and pct.tolist() == [0.0, 0.0, 0.0]


def test_import_does_not_pull_sklearn_or_torch():
    code = ("import sys, moe_tui.core.analysis.metrics, moe_tui.core.analysis.report, moe_tui.core.analysis.probe, moe_tui.core.analysis.controls; "
            "bad=[m for m in ('sklearn','torch') if m in sys.modules]; print(bad); sys.exit(1 if bad else 0)")
    repo = str(Path(__file__).resolve().parents[2])
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=repo)
    assert r.returncode == 0, r.stdout + r.stderr
