"""A report's probes over seeds (probe_suite), the seeded streams, the vectorised controls (against the plain
per-replicate loop written out here) and the openTSNE embedding."""

from __future__ import annotations

import numpy as np
import pytest

from moe_tui.core.analysis import controls as C
from moe_tui.core.analysis import metrics as M
from moe_tui.core.analysis import probe as Pr
from moe_tui.core.analysis import seeds as S

FAST = {"hidden_layer_sizes": (16,)}


def routes(T=600, L=3, k=2, N=8, P=4, seed=0, noise=0.4):
    """POS p prefers expert pref[p, l] at each layer; 40% of (token, layer) routes are random."""
    rng = np.random.default_rng(seed)
    pos = rng.integers(0, P, T)
    pref = rng.integers(0, N, (P, L))
    e0 = np.where(rng.random((T, L)) < noise, rng.integers(0, N, (T, L)), pref[pos])
    e1 = (e0 + rng.integers(1, N, (T, L))) % N
    forms = np.array([f"w{i}" for i in rng.integers(0, 40, T)])
    return np.stack([e0, e1], axis=2), pos, forms


# ------------------------------------------------------------------------------------------- seeds

def test_streams_are_spawned_children_fixed_by_name_and_probe_seed():
    kids = np.random.SeedSequence(42).spawn(len(S.STREAMS))
    for i, name in enumerate(S.STREAMS):
        assert S.stream(42, name).generate_state(4).tolist() == kids[i].generate_state(4).tolist()
    sub = np.random.SeedSequence(42).spawn(len(S.STREAMS))[0].spawn(3)[2]
    assert S.stream(42, "split", 2).generate_state(4).tolist() == sub.generate_state(4).tolist()
    states = {tuple(S.stream(42, n, r).generate_state(2)) for n in S.STREAMS for r in (None, 0, 1)}
    assert len(states) == 3 * len(S.STREAMS)                    # all distinct
    assert S.int_seed(42, "mlp_init", 0) == S.int_seed(42, "mlp_init", 0) != S.int_seed(43, "mlp_init", 0)
    ss = S.stream(1, "tsne")
    assert S.child(ss, 1).generate_state(2).tolist() == S.child(ss, 1).generate_state(2).tolist()  # stateless
    assert S.child(ss, 1).generate_state(2).tolist() == S.stream(1, "tsne").spawn(2)[1].generate_state(2).tolist()
    with pytest.raises(ValueError):
        S.stream(0, "nope")


def test_stream_positions_never_move():
    """A stream's spawn position fixes its random numbers: new streams are appended, never inserted or reordered
    (positions as documented in core/analysis/seeds.py and docs/methods.md's stream table)."""
    assert S.STREAMS == ("split", "mlp_init", "mlp_shuffle", "control_labels", "permutation_null", "bootstrap",
                         "tsne", "context_effect", "info_valid", "mdl_order")
    for line in (S.__doc__ or "").splitlines():
        parts = line.split()
        if len(parts) >= 2 and parts[0].startswith("``") and parts[1].isdigit():
            assert S.STREAMS.index(parts[0].strip("`")) == int(parts[1]), line


# ------------------------------------------------------------------------------------------- probe_suite

def test_probe_suite_seeds_mean_sd_and_one_split_per_seed():
    experts, pos, forms = routes()
    kw = dict(forms=forms, variants=("top_k", "top_1"), cuts=[("first", 0), ("first", 1), ("last", 1)],
              control=True, seed=3, max_iter=25, mlp_kwargs=FAST)
    one = Pr.probe_suite(experts, pos, 4, n_seeds=1, **kw)
    three = Pr.probe_suite(experts, pos, 4, n_seeds=3, **kw)
    assert set(one) == {"top_k", "top_1", "ablation:first:0", "ablation:first:1", "ablation:last:1",
                        "control_task", "baseline"}
    for name, st in three.items():
        accs = [r.accuracy for r in st.runs]
        assert st.seeds == 3 and st.accuracy == pytest.approx(np.mean(accs))
        assert st.accuracy_sd == pytest.approx(np.std(accs, ddof=1))
        # seed 0 of three seeds is the single-seed result: more seeds never move the first one
        np.testing.assert_array_equal(st.first.y_pred, one[name].first.y_pred)
        assert np.isnan(one[name].accuracy_sd)
    tests = [set(r.test_idx.tolist()) for r in three["top_k"].runs]
    assert tests[0] != tests[1] != tests[2]                              # a split per seed
    want = Pr.split_indices(len(pos), seed=S.stream(3, "split", 1))[1]  # ... from the split stream
    np.testing.assert_array_equal(three["top_k"].runs[1].test_idx, want)
    # n = 0 removed is the top_k probe itself; convergence is summarised over the seeds
    assert three["ablation:first:0"].runs[0] is three["top_k"].runs[0]
    st = three["top_k"]
    assert st.n_iter == max(r.n_iter for r in st.runs) and st.converged == all(r.converged for r in st.runs)
    assert st.engine == "torch" and three["baseline"].engine is None and three["baseline"].n_iter is None
    # the control task learns the per-form random labels, scored against them
    ctrl = Pr.control_labels_for(forms, pos, 4, S.stream(3, "control_labels", 0))
    np.testing.assert_array_equal(three["control_task"].first.y_true, ctrl[three["control_task"].first.test_idx])


def test_probe_suite_sklearn_engine_uses_the_init_stream():
    experts, pos, forms = routes(T=300)
    res = Pr.probe_suite(experts, pos, 4, forms=forms, variants=("top_1",), baseline=False, seed=5, engine="sklearn",
                         max_iter=20, mlp_kwargs=FAST)
    tr, te = Pr.split_indices(len(pos), seed=S.stream(5, "split", 0))
    ref = Pr.run_probe(experts, pos, 4, variant="top_1", split=(tr, te), seed=S.int_seed(5, "mlp_init", 0),
                       max_iter=20, mlp_kwargs=FAST, engine="sklearn")
    np.testing.assert_array_equal(res["top_1"].first.y_pred, ref.y_pred)
    assert res["top_1"].engine == "sklearn"


# ------------------------------------------------------------------------------------------- controls

def test_vectorised_permutation_null_equals_the_loop():
    experts, pos, _ = routes(T=800, L=3)
    N, P, R = 8, 4, 12
    res = C.spec_permutation_null(experts, pos, N, P, n_permutations=R, seed=S.stream(0, "permutation_null"))
    rng = np.random.default_rng(S.stream(0, "permutation_null"))
    tokens, _ = M.pos_counts(pos, P)
    loop = np.stack([M.spec_from_counts(M.assignment_counts(experts, rng.permutation(pos), N, P), 2, tokens)
                     for _ in range(R)])
    np.testing.assert_array_equal(res["samples"], loop)
    np.testing.assert_array_equal(res["null_mean"], loop.mean(axis=0))
    np.testing.assert_array_equal(res["null_p95"], np.percentile(loop, 95, axis=0))
    counts = C.permuted_counts(experts, np.stack([pos, pos[::-1]]), N, P)
    np.testing.assert_array_equal(counts[1], M.assignment_counts(experts, pos[::-1], N, P))


def test_vectorised_bootstrap_equals_the_loop():
    experts, pos, _ = routes(T=500, L=3)
    sentence = np.repeat(np.arange(50), 10)
    tags = ("NOUN", "VERB", "X", "ADJ")
    bs = C.bootstrap_spec(experts, pos, 8, 4, sentence, tags, n_boot=15, seed=7)
    W, inv = C.sentence_resample_weights(sentence, 15, 7)
    for b in (0, 6, 14):
        w = W[b][inv].astype(float)
        wt = np.bincount(pos, weights=w, minlength=4)
        spec = M.spec_from_counts(M.assignment_counts(experts, pos, 8, 4, weights=w), 2, wt)
        assert bs["samples"][b] == pytest.approx(M.global_spec(M.spec_by_pos(spec)[0], tags, wt), abs=1e-12)


# ------------------------------------------------------------------------------------------- t-SNE

def test_onehot_squared_distance_is_twice_the_hamming_distance():
    from scipy.spatial.distance import cdist

    rng = np.random.default_rng(0)
    X = rng.integers(0, 5, (30, 7))
    oh = Pr.onehot_paths(X, 5)
    assert oh.shape == (30, 35) and (oh.sum(axis=1) == 7).all()
    np.testing.assert_allclose(cdist(oh, oh, "sqeuclidean"), 2 * 7 * cdist(X, X, "hamming"), atol=1e-9)


def test_tsne_embeds_the_given_tokens_or_a_seeded_sample_of_them():
    experts, pos, _ = routes(T=400)
    tokens = np.arange(100, 400, 2)          # 150 candidates
    idx, xy, p = Pr.tsne_embedding(experts, pos, n_samples=500, tokens=tokens, seed=1, max_iter=100, n_experts=8)
    np.testing.assert_array_equal(idx, tokens)   # fewer candidates than n_samples: all of them
    assert xy.shape == (150, 2) and np.isfinite(xy).all()
    np.testing.assert_array_equal(p, pos[tokens])
    a = Pr.tsne_embedding(experts, pos, n_samples=60, tokens=tokens, seed=2, max_iter=100)
    b = Pr.tsne_embedding(experts, pos, n_samples=60, tokens=tokens, seed=2, max_iter=100)
    assert len(a[0]) == 60 and set(a[0]) <= set(tokens) and np.all(np.diff(a[0]) > 0)
    np.testing.assert_array_equal(a[0], b[0])
    np.testing.assert_array_equal(a[1], b[1])     # same seed, same picture
    c = Pr.tsne_embedding(experts, pos, n_samples=60, tokens=tokens, seed=3, max_iter=100)
    assert not np.array_equal(a[0], c[0])
