"""moe_tui.core.analysis.probe and moe_tui.core.analysis.controls: probes (paper Table 1, Fig. 2, 3) and the controls beyond the paper."""

from __future__ import annotations

import numpy as np
import pytest

from moe_tui.core.analysis import controls as C
from moe_tui.core.analysis import metrics as M
from moe_tui.core.analysis import probe as Pr

FAST = {"hidden_layer_sizes": (32,)}


def synthetic(T=900, L=4, k=2, N=8, P=3, n_forms=30, seed=0, noise=0.0):
    """Routes encode POS (POS p -> experts {2p, 2p+1} at every layer) while every word form is
    seen with every POS (forms carry no POS information)."""
    rng = np.random.default_rng(seed)
    pos = rng.integers(0, P, T)
    forms = np.array([f"w{i}" for i in rng.integers(0, n_forms, T)])
    experts = np.empty((T, L, k), dtype=np.int64)
    experts[:, :, 0] = (2 * pos)[:, None]
    experts[:, :, 1] = (2 * pos + 1)[:, None]
    if noise:
        r = rng.random((T, L)) < noise
        experts[:, :, 0] = np.where(r, rng.integers(0, N, (T, L)), experts[:, :, 0])
        experts[:, :, 1] = np.where(r, (experts[:, :, 0] + 1) % N, experts[:, :, 1])
    sentence = np.arange(T) // 10
    return experts, pos, forms, sentence


def test_split_is_two_thirds_one_third_and_seeded():
    tr, te = Pr.split_indices(9, seed=3)
    assert len(tr) == 6 and len(te) == 3
    assert sorted(np.concatenate([tr, te]).tolist()) == list(range(9))
    tr2, te2 = Pr.split_indices(9, seed=3)
    assert te.tolist() == te2.tolist()


def test_route_features_layout():
    ex = np.arange(2 * 3 * 2).reshape(2, 3, 2)  # token 0: layer0 [0,1], layer1 [2,3], layer2 [4,5]
    np.testing.assert_array_equal(Pr.route_features(ex, "top_k")[0], [0, 1, 2, 3, 4, 5])
    np.testing.assert_array_equal(Pr.route_features(ex, "top_1")[0], [0, 2, 4])
    np.testing.assert_array_equal(Pr.route_features(ex, "top_k", layers=[1, 2])[0], [2, 3, 4, 5])
    with pytest.raises(ValueError):
        Pr.route_features(ex, "nope")


def test_most_frequent_and_confusion_by_hand():
    forms = np.array(["a", "a", "a", "b", "b", "c", "a", "b", "z"])
    pos = np.array([0, 0, 1, 1, 1, 2, 1, 0, 2])
    train = np.arange(6)  # a: POS0 x2, POS1 x1 -> 0 ; b: POS1 x2 -> 1 ; c -> 2 ; overall: 0:2,1:3,2:1 -> 1
    test = np.array([6, 7, 8])  # a -> 0 (truth 1), b -> 1 (truth 0), z unseen -> 1 (truth 2)
    r = Pr.form_baseline(forms, pos, 3, train, test)
    np.testing.assert_array_equal(r.y_pred, [0, 1, 1])
    assert r.accuracy == 0.0
    # confusion rows = truth: (1 -> 0), (0 -> 1), (2 -> 1)
    np.testing.assert_array_equal(r.confusion, [[0, 1, 0], [1, 0, 0], [0, 1, 0]])
    # precision: pred0 1 token, 0 right ; pred1 2 tokens, 0 right ; pred2 none -> NaN
    assert r.precision[0] == 0 and r.precision[1] == 0 and np.isnan(r.precision[2])
    np.testing.assert_array_equal(r.recall, [0.0, 0.0, 0.0])


def test_probe_beats_baseline_when_routes_encode_pos_and_forms_are_ambiguous():
    experts, pos, forms, _ = synthetic()
    split = Pr.split_indices(len(pos), seed=0)
    base = Pr.form_baseline(forms, pos, 3, *split)
    for variant in ("top_k", "top_1", "onehot_top_k"):
        r = Pr.run_probe(experts, pos, 3, variant=variant, split=split, seed=0, max_iter=200, n_experts=8,
                         mlp_kwargs=FAST)
        assert r.accuracy > 0.95, variant
        assert r.accuracy > base.accuracy + 0.3
        assert r.test_tokens == 300 and r.train_tokens == 600
        assert r.confusion.sum() == 300
    assert base.accuracy < 0.6  # forms are seen with all 3 POS


@pytest.mark.parametrize("engine", ["torch", "sklearn"])
def test_probe_is_deterministic_and_early_stopping_option(engine):
    experts, pos, _, _ = synthetic(T=300, noise=0.3)
    a = Pr.run_probe(experts, pos, 3, seed=1, max_iter=30, mlp_kwargs=FAST, engine=engine)
    b = Pr.run_probe(experts, pos, 3, seed=1, max_iter=30, mlp_kwargs=FAST, engine=engine)
    np.testing.assert_array_equal(a.y_pred, b.y_pred)
    assert a.engine == engine and a.n_iter == 30 and a.converged is False   # 30 epochs are not enough here
    if engine == "sklearn":
        c = Pr.run_probe(experts, pos, 3, seed=1, max_iter=30, early_stopping=True, mlp_kwargs=FAST, engine=engine)
        assert 0 <= c.accuracy <= 1
    else:  # the torch engine has no validation split: it says so instead of silently ignoring the option
        with pytest.raises(ValueError, match="sklearn"):
            Pr.run_probe(experts, pos, 3, seed=1, max_iter=30, early_stopping=True, mlp_kwargs=FAST, engine=engine)


def test_single_class_training_does_not_crash():
    experts = np.zeros((9, 2, 1), int)
    r = Pr.run_probe(experts, np.zeros(9, int), 2, max_iter=5)
    assert r.accuracy == 1.0


def test_ablation_shape_and_shared_full_model():
    experts, pos, _, _ = synthetic(T=300, L=4)
    calls = []
    res = Pr.ablation(experts, pos, 3, step=2, max_iter=50, mlp_kwargs=FAST,
                      progress=lambda s, i, n: calls.append((i, n)))
    assert [(s, n) for s, n, _ in res] == [("first", 0), ("first", 2), ("last", 0), ("last", 2)]
    assert res[0][2] == res[2][2]  # n = 0 is the full model on both sides
    assert calls[-1] == (4, 4)
    with pytest.raises(ValueError):
        Pr.ablation(experts, pos, 3, removed=[4], max_iter=5)


def test_tsne_sample():
    experts, pos, _, _ = synthetic(T=200)
    idx, xy, p = Pr.tsne_embedding(experts, pos, n_samples=60, seed=0, max_iter=250)
    assert idx.shape == (60,) and xy.shape == (60, 2) and np.all(np.diff(idx) > 0)
    np.testing.assert_array_equal(p, pos[idx])
    assert np.isfinite(xy).all()


# ---------------------------------------------------------------------------- controls

def test_permutation_null_close_to_uniform_for_balanced_random_routing():
    rng = np.random.default_rng(0)
    T, L, k, N, P = 4000, 2, 2, 8, 2
    # random distinct pair of experts per token and layer, POS independent of routes
    e0 = rng.integers(0, N, (T, L))
    e1 = (e0 + rng.integers(1, N, (T, L))) % N
    experts = np.stack([e0, e1], axis=2)
    pos = np.repeat([0, 1], T // 2)
    res = C.spec_permutation_null(experts, pos, N, P, n_permutations=20, seed=0)
    u = M.uniform_spec(k, N)  # 25.0
    # top-k selection bias is small with 2000 tokens per POS: null mean within 2 points of U
    assert np.all(np.abs(res["null_mean"] - u) < 2.0)
    assert np.all(res["null_p95"] >= res["null_mean"])
    assert np.all(np.abs(res["excess"]) < 2.0)  # routes carry no POS signal
    # routes that encode POS: large excess
    experts2, pos2, _, _ = synthetic(T=600)
    res2 = C.spec_permutation_null(experts2, pos2, 8, 3, n_permutations=10, seed=1)
    assert np.all(res2["excess"] > 40)


def test_token_identity_probe_by_hand():
    token_ids = np.array([5, 5, 7, 5, 7, 9])
    pos = np.array([1, 1, 0, 1, 2, 0])
    train, test = np.array([0, 1, 2]), np.array([3, 4, 5])  # id5 -> 1, id7 -> 0, id9 unseen -> 1 (overall)
    r = C.token_identity_probe(token_ids, pos, 3, (train, test))
    np.testing.assert_array_equal(r.y_pred, [1, 0, 1])
    assert r.accuracy == pytest.approx(1 / 3)
    assert r.variant == "token_identity"


def test_control_labels_fixed_per_form_and_seeded():
    forms = np.array(["a", "b", "a", "c", "b", "a"])
    pos = np.array([0, 1, 0, 1, 1, 0])
    y = C.control_labels(forms, pos, 2, seed=4)
    assert y[0] == y[2] == y[5] and y[1] == y[4]
    np.testing.assert_array_equal(y, C.control_labels(forms, pos, 2, seed=4))


def test_control_task_selectivity_positive_when_routes_encode_pos():
    experts, pos, forms, _ = synthetic(T=900, n_forms=40)
    res = C.control_task(experts, forms, pos, 3, seed=0, max_iter=100, mlp_kwargs=FAST)
    assert res["real"] > 0.95
    assert res["selectivity"] > 0.3
    assert res["selectivity"] == pytest.approx(res["real"] - res["control"])


def test_hamming_same_key_by_hand():
    # key "a": t0 POS0 path [0,0,0]; t1 POS0 path [0,1,0]; t2 POS1 path [1,1,1]
    # same-POS pairs: (t0,t1) -> 1 differing position        -> mean 1
    # diff-POS pairs: (t0,t2) -> 3 ; (t1,t2) -> 2            -> mean 2.5
    # key "b": single token, no pair
    top1 = np.array([[0, 0, 0], [0, 1, 0], [1, 1, 1], [2, 2, 2]])
    forms = np.array(["a", "a", "a", "b"])
    pos = np.array([0, 0, 1, 0])
    h = C.hamming_same_key(top1, forms, pos, 2, 3)
    assert h["same_pos"] == pytest.approx(1.0)
    assert h["diff_pos"] == pytest.approx(2.5)
    assert h["pairs_same_pos"] == 1 and h["pairs_diff_pos"] == 2


def test_ambiguous_tokens_probe_beats_baseline():
    """Routes encode POS and every token id is seen with every POS: on the ambiguous token ids the routing
    probe beats both count-based predictors, and the top-k paths of one token id agree within a POS and
    differ in every (layer, rank) slot across POS."""
    experts, pos, forms, _ = synthetic(T=900)
    token_ids = np.array([int(f[1:]) for f in forms])
    split = Pr.split_indices(len(pos), seed=0)
    real = Pr.run_probe(experts, pos, 3, split=split, max_iter=200, mlp_kwargs=FAST)
    base = Pr.form_baseline(forms, pos, 3, *split)
    tid = C.token_identity_probe(token_ids, pos, 3, split)
    amb = C.ambiguous_mask(token_ids, pos, 3)
    assert amb.all()  # every token id seen with >= 2 POS
    res = C.ambiguous_tokens(token_ids, pos, 3, probe=real, token_identity=tid, form_baseline=base)
    assert res["ambiguous_probe"] > res["ambiguous_form_baseline"] + 0.3
    assert res["ambiguous_probe"] > res["ambiguous_token_identity"] + 0.3
    assert res["ambiguous_test_tokens"] == 300 and res["ambiguous_token_ids"] == 30
    ctx = C.context_effect(experts, token_ids, pos, 3, 8, n_permutations=50, seed=0)
    assert ctx["same_pos"] == 0.0  # routes are a function of POS here
    assert ctx["diff_pos"] == 8.0  # every (layer, rank) slot differs between POS: 4 layers x top-2
    assert ctx["p_value"] == pytest.approx(1 / 51)
    assert not C.ambiguous_mask(np.array(["x", "x", "y"]), np.array([0, 0, 1]), 2).any()


def test_bootstrap_interval_contains_point_estimate():
    experts, pos, forms, sentence = synthetic(T=600, noise=0.5)
    tags = ("NOUN", "VERB", "X")
    bs = C.bootstrap_spec(experts, pos, 8, 3, sentence, tags, n_boot=40, seed=0)
    assert bs["low"] <= bs["point"] <= bs["high"]
    assert bs["samples"].shape == (40,)
    rng = np.random.default_rng(0)
    correct = rng.random(600) < 0.7
    ba = C.bootstrap_accuracy(correct, sentence, n_boot=200, seed=0)
    assert ba["low"] <= ba["point"] <= ba["high"]
    assert ba["point"] == pytest.approx(correct.mean())
    assert ba["high"] - ba["low"] < 0.2


def test_sentence_resample_weights_sum():
    W, inv = C.sentence_resample_weights(np.array([3, 3, 8, 8, 8, 11]), 5, seed=2)
    assert W.shape == (5, 3) and (W.sum(axis=1) == 3).all()
    np.testing.assert_array_equal(inv, [0, 0, 1, 1, 1, 2])


def test_tsne_stop_hook_changes_nothing_and_stops_when_asked():
    from moe_tui.errors import Cancelled

    experts, pos, _, _ = synthetic(T=200)
    plain = Pr.tsne_embedding(experts, pos, n_samples=80, seed=3, max_iter=120)
    asked = []
    hooked = Pr.tsne_embedding(experts, pos, n_samples=80, seed=3, max_iter=120,
                               stop=lambda: asked.append(1) or False)
    # asked every TSNE_STOP_EVERY iterations of both phases (30 exaggerated + 90), and the embedding is the same
    assert len(asked) == 30 // Pr.TSNE_STOP_EVERY + 90 // Pr.TSNE_STOP_EVERY
    np.testing.assert_array_equal(plain[1], hooked[1])
    calls = []
    with pytest.raises(Cancelled):
        Pr.tsne_embedding(experts, pos, n_samples=80, seed=3, max_iter=120,
                          stop=lambda: calls.append(1) or len(calls) >= 2)
    assert len(calls) == 2  # the optimisation ended at the second question, not at its end
