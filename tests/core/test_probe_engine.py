"""moe_tui.core.analysis.probe_engine: batched torch MLP probes with MLPClassifier's semantics.

Oracles: scikit-learn's own MLPClassifier (the torch engine in float64 must follow it draw for draw), hand-worked
stopping epochs of the tol rule, a separable toy whose accuracy must be 1.0, and each probe trained alone (a
batched group must give every probe exactly what it gets alone).
"""

from __future__ import annotations

import numpy as np
import pytest

from moe_tui.core.analysis import probe_engine as E
from moe_tui.core.analysis.probe_engine import MLPConfig, ProbeSpec, fit_probes, plan_groups
from moe_tui.errors import Cancelled


def toy(T=600, F=6, n_cat=5, seed=0):
    """Ids [T, F] in 0..4; label = (id0 + id1 on 70% of the tokens) mod 4: learnable, not trivially."""
    rng = np.random.default_rng(seed)
    ids = rng.integers(0, n_cat, (T, F))
    y = (ids[:, 0] + ids[:, 1] * (rng.random(T) < 0.7)) % 4
    return ids, y


def sklearn_fit(ids, y, tr, te, cols, seed, cfg, onehot=False, n_cat=5):
    """The reference: scikit-learn's MLPClassifier on the same features (written out here, not via the engine)."""
    import warnings

    from sklearn.exceptions import ConvergenceWarning
    from sklearn.neural_network import MLPClassifier
    from sklearn.preprocessing import OneHotEncoder

    X = ids[:, cols]
    if onehot:
        enc = OneHotEncoder(categories=[np.arange(n_cat)] * len(cols), sparse_output=True).fit(X)
        Xtr, Xte = enc.transform(X[tr]), enc.transform(X[te])
    else:
        Xtr, Xte = X[tr].astype(float), X[te].astype(float)
    clf = MLPClassifier(hidden_layer_sizes=(cfg.hidden,), max_iter=cfg.max_iter, random_state=seed, tol=cfg.tol,
                        n_iter_no_change=cfg.n_iter_no_change, learning_rate_init=cfg.learning_rate_init)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", ConvergenceWarning)
        clf.fit(Xtr, y[tr])
    converged = not any(issubclass(w.category, ConvergenceWarning) for w in caught)
    return clf, clf.predict(Xte), converged


@pytest.mark.parametrize("case", ["multiclass", "onehot", "binary", "class_missing_from_training", "converges"])
def test_float64_torch_engine_is_mlpclassifier_draw_for_draw(case):
    ids, y = toy()
    tr, te = np.arange(400), np.arange(400, 600)
    cfg = MLPConfig(hidden=16, max_iter=40)
    cols = tuple(range(6))
    onehot = case == "onehot"
    if case == "binary":
        y = y % 2
    if case == "class_missing_from_training":
        y = y.copy()
        y[te[:5]] = 7          # a label only the test split has: never predicted, never a column
    if case == "converges":  # few columns, large tol: stops by the tol rule well before max_iter
        cfg = MLPConfig(hidden=8, max_iter=300, tol=1e-2)
        cols = (0, 1)
    fit = fit_probes(ids, [y], [ProbeSpec("p", cols, onehot=onehot, init_seed=7)], tr, te, n_categories=5,
                     config=cfg, dtype="float64")[0]
    clf, pred, converged = sklearn_fit(ids, y, tr, te, list(cols), 7, cfg, onehot=onehot)
    assert fit.n_iter == clf.n_iter_
    assert fit.converged == converged
    np.testing.assert_allclose(fit.loss_curve, clf.loss_curve_, rtol=0, atol=1e-12)
    np.testing.assert_array_equal(fit.y_pred, pred)
    if case == "converges":
        assert fit.converged and fit.n_iter < 300
    else:
        assert not fit.converged and fit.n_iter == 40


def test_unfused_adam_is_mlpclassifier_draw_for_draw_too(monkeypatch):
    """Without torch's fused Adam (a GPU, or a torch that lacks it) the engine's seven-op update is the one
    trained: it follows MLPClassifier just as closely."""
    import torch

    monkeypatch.delattr(torch, "_fused_adam_")
    ids, y = toy()
    tr, te = np.arange(400), np.arange(400, 600)
    cfg = MLPConfig(hidden=16, max_iter=40)
    fit = fit_probes(ids, [y], [ProbeSpec("p", tuple(range(6)), init_seed=7)], tr, te, n_categories=5,
                     config=cfg, dtype="float64")[0]
    clf, pred, _ = sklearn_fit(ids, y, tr, te, list(range(6)), 7, cfg)
    np.testing.assert_allclose(fit.loss_curve, clf.loss_curve_, rtol=0, atol=1e-12)
    np.testing.assert_array_equal(fit.y_pred, pred)


def test_a_group_gives_each_probe_what_it_gets_alone():
    """Probes batched in one group (different columns, numbers and a binary label set) follow exactly the
    trajectories they follow when trained one by one with the same shuffle stream."""
    ids, y = toy(T=500, F=8)
    labels = [y, y % 2]
    tr, te = np.arange(330), np.arange(330, 500)
    specs = [ProbeSpec("a", tuple(range(8)), init_seed=1), ProbeSpec("b", (2, 3, 4), init_seed=2),
             ProbeSpec("c", (0, 5), labels=1, init_seed=3), ProbeSpec("d", (1, 6, 7), init_seed=4)]
    cfg = MLPConfig(hidden=12, max_iter=25, tol=1e-3, n_iter_no_change=3)
    together = fit_probes(ids, labels, specs, tr, te, config=cfg, dtype="float64", shuffle_seed=11,
                          group_overhead=1e9)
    assert len(plan_groups(specs, overhead=1e9)) == 1
    for spec, fit in zip(specs, together):
        alone = fit_probes(ids, labels, [spec], tr, te, config=cfg, dtype="float64", shuffle_seed=11)[0]
        assert fit.n_iter == alone.n_iter and fit.converged == alone.converged
        np.testing.assert_allclose(fit.loss_curve, alone.loss_curve, rtol=0, atol=1e-12)
        np.testing.assert_array_equal(fit.y_pred, alone.y_pred)
    assert len({f.n_iter for f in together}) > 1   # they stopped at different epochs (probes leave the group)


def test_same_data_and_seed_same_result_and_seeds_are_honoured():
    ids, y = toy()
    tr, te = np.arange(400), np.arange(400, 600)
    cfg = MLPConfig(hidden=16, max_iter=15)

    def run(init=0, shuffle=0):
        return fit_probes(ids, [y], [ProbeSpec("p", tuple(range(6)), init_seed=init)], tr, te, config=cfg,
                          shuffle_seed=shuffle)[0]

    a, b = run(), run()
    assert a.loss_curve == b.loss_curve and np.array_equal(a.y_pred, b.y_pred)
    assert run(init=1).loss_curve[0] != a.loss_curve[0]            # other initial weights
    c = run(shuffle=1)
    assert c.loss_curve[0] != a.loss_curve[0] and c.loss_curve != a.loss_curve  # other minibatch order


@pytest.mark.parametrize("engine", ["torch", "sklearn"])
def test_tol_rule_stops_where_the_hand_count_says(engine):
    """With a learning rate of 1e-12 the loss stays flat to ~1e-10: epoch 1 sets the best loss, every later
    epoch fails to beat it by tol, and the rule stops when the count exceeds n_iter_no_change, i.e. after
    epoch n_iter_no_change + 2 (scikit-learn's rule: count > n_iter_no_change)."""
    ids, y = toy()
    tr, te = np.arange(400), np.arange(400, 600)
    for no_change, max_iter, want_iter, want_conv in ((10, 100, 12, True), (3, 100, 5, True), (10, 12, 12, True),
                                                     (10, 7, 7, False)):
        cfg = MLPConfig(hidden=8, learning_rate_init=1e-12, n_iter_no_change=no_change, max_iter=max_iter)
        fit = fit_probes(ids, [y], [ProbeSpec("p", (0, 1, 2), init_seed=0)], tr, te, config=cfg, engine=engine)[0]
        assert (fit.n_iter, fit.converged) == (want_iter, want_conv), (no_change, max_iter)
        assert len(fit.loss_curve) == want_iter


def test_separable_toy_is_learnt_perfectly():
    """The label is the id at column 2 (one-hot: a linear function of the input): accuracy must be 1.0."""
    rng = np.random.default_rng(3)
    ids = rng.integers(0, 6, (900, 4))
    y = ids[:, 2] % 3
    tr, te = np.arange(600), np.arange(600, 900)
    fits = fit_probes(ids, [y], [ProbeSpec("onehot", (0, 1, 2, 3), onehot=True), ProbeSpec("col2", (2,), onehot=True)],
                      tr, te, n_categories=6, config=MLPConfig(max_iter=200), shuffle_seed=0)
    for f in fits:
        assert np.mean(f.y_pred == y[te]) == 1.0, f.name


@pytest.mark.slow
def test_float32_engine_agrees_with_sklearn_on_small_data():
    """Default precision and a shared shuffle stream: not the same draws as sklearn, the same model."""
    rng = np.random.default_rng(5)
    T, L, P = 3000, 4, 5
    pos = rng.integers(0, P, T)
    pref = rng.integers(0, 8, (P, L))
    e = np.where(rng.random((T, L)) < 0.6, pref[pos], rng.integers(0, 8, (T, L)))
    tr, te = np.arange(2000), np.arange(2000, 3000)
    cfg = MLPConfig(hidden=32, max_iter=200)
    for onehot in (False, True):
        spec = ProbeSpec("p", tuple(range(L)), onehot=onehot, init_seed=0)
        t = fit_probes(e, [pos], [spec], tr, te, n_categories=8, config=cfg, shuffle_seed=9)[0]
        s = fit_probes(e, [pos], [spec], tr, te, n_categories=8, config=cfg, engine="sklearn")[0]
        acc_t, acc_s = np.mean(t.y_pred == pos[te]), np.mean(s.y_pred == pos[te])
        assert abs(acc_t - acc_s) < 0.02, (onehot, acc_t, acc_s)
        assert acc_t > 0.5


def test_progress_every_epoch_and_cancel_stops_at_once(monkeypatch):
    ids, y = toy()
    tr, te = np.arange(400), np.arange(400, 600)
    specs = [ProbeSpec("a", (0, 1, 2)), ProbeSpec("b", (3, 4, 5), onehot=True)]
    cfg = MLPConfig(hidden=8, max_iter=6, tol=0.0, n_iter_no_change=100)
    calls = []
    fits = fit_probes(ids, [y], specs, tr, te, config=cfg, progress=lambda s, i, n: calls.append((s, i, n)),
                      group_overhead=0)
    assert all(f.n_iter == 6 for f in fits)
    stages = sorted({s for s, _, _ in calls})
    assert stages == ["probes 1/2: a", "probes 2/2: b"]   # no overhead to share: one group per probe
    for stage in stages:  # every epoch of every group reported
        assert [i for s, i, n in calls if s == stage and n == 6][-6:] == [1, 2, 3, 4, 5, 6]
    # inside an epoch too: with the interval at 0, every minibatch step reports (cancel latency = one step)
    monkeypatch.setattr(E, "PROGRESS_EVERY_S", 0.0)
    steps = []
    fit_probes(ids, [y], specs[:1], tr, te, config=cfg, progress=lambda s, i, n: steps.append(i))
    assert len(steps) >= 6 * 2 + 6   # 400 tokens = 2 steps of 200 per epoch, plus the end-of-epoch calls

    seen = []

    def cancel_at_third(stage, done, total):
        seen.append(done)
        if len(seen) == 3:
            raise Cancelled("stop")

    with pytest.raises(Cancelled):
        fit_probes(ids, [y], specs, tr, te, config=cfg, progress=cancel_at_third)
    assert len(seen) == 3   # nothing ran after the callback raised


def test_plan_groups_nested_cuts_and_kinds():
    L, k = 32, 2
    top = tuple(range(L * k))
    specs = [ProbeSpec("top_k", top), ProbeSpec("onehot", top, onehot=True)]
    specs += [ProbeSpec(f"first:{n}", tuple(range(n * k, L * k))) for n in range(1, L)]
    specs += [ProbeSpec(f"last:{n}", tuple(range(0, (L - n) * k))) for n in range(1, L)]
    cpu = plan_groups(specs, overhead=192, n_categories=8)
    assert sorted(i for g in cpu for i in g) == list(range(len(specs)))
    assert [1] in cpu                          # 512 one-hot inputs: too costly for the other probes to carry
    assert 2 < len(cpu) < 12                   # the cuts are grouped, not one group per cut
    for g in cpu:                              # a group holds cuts of one side (nested column sets)
        sides = {specs[i].name.split(":")[0] for i in g} - {"top_k"}
        assert len(sides) <= 1, [specs[i].name for i in g]
    assert len(plan_groups(specs, overhead=1e9, n_categories=8)) == 1   # GPU-like: one group
    assert len(plan_groups(specs, overhead=0, n_categories=8)) == len(specs)   # no overhead: nothing to save
    small = [ProbeSpec("n", (0, 1)), ProbeSpec("o", (0, 1), onehot=True)]
    assert plan_groups(small, overhead=192, n_categories=8) == [[0, 1]]   # numbers and one-hot in one model


def test_bad_arguments():
    ids, y = toy()
    tr, te = np.arange(400), np.arange(400, 600)
    spec = ProbeSpec("p", (0, 1))
    with pytest.raises(ValueError, match="engine"):
        fit_probes(ids, [y], [spec], tr, te, engine="jax")
    with pytest.raises(ValueError, match="columns"):
        fit_probes(ids, [y], [ProbeSpec("p", (0, 9))], tr, te)
    with pytest.raises(ValueError, match="device"):
        fit_probes(ids, [y], [spec], tr, te, device="tpu")
    with pytest.raises(ValueError, match="sklearn"):
        fit_probes(ids, [y], [spec], tr, te, config=MLPConfig(early_stopping=True))
    with pytest.raises(ValueError, match="dtype"):
        fit_probes(ids, [y], [spec], tr, te, dtype="float16")
    for kw in ({"hidden_layer_sizes": (10, 10)}, {"activation": "tanh"}, {"solver": "sgd"}, {"momentum": 0.5}):
        with pytest.raises(ValueError, match="sklearn engine"):
            MLPConfig.from_sklearn(100, kw)
    cfg = MLPConfig.from_sklearn(300, {"hidden_layer_sizes": (32,), "alpha": 1e-3, "batch_size": 64})
    assert (cfg.hidden, cfg.alpha, cfg.batch(1000), cfg.batch(10), cfg.max_iter) == (32, 1e-3, 64, 10, 300)
    assert MLPConfig().batch(150) == 150 and MLPConfig().batch(5000) == 200   # min(200, n)


def test_single_class_probe_predicts_it_without_training():
    ids, y = toy()
    y = np.where(np.arange(len(y)) < 400, 2, y)   # the training split sees only class 2
    fit = fit_probes(ids, [y], [ProbeSpec("p", (0,))], np.arange(400), np.arange(400, 600))[0]
    assert fit.n_iter == 0 and fit.converged and (fit.y_pred == 2).all()


def test_device_choice():
    import torch

    assert E.resolve_device("cpu").type == "cpu"
    auto = E.resolve_device("auto")
    assert auto.type == ("cuda" if torch.cuda.is_available() else "cpu")
    if torch.cuda.is_available():
        assert E.resolve_device("cuda").type == "cuda"
    else:
        with pytest.raises(ValueError, match="no CUDA GPU"):
            E.resolve_device("cuda:0")
    for bad in ("tpu", "mps", "cuda:x"):
        with pytest.raises(ValueError):
            E.resolve_device(bad)


# --------------------------------------------------------------------------------------------------
# Opt-in additions: per-column categories, dense float columns, log-probabilities, held-out early stopping


@pytest.mark.parametrize("width", [12, 300])
def test_float64_mixed_inputs_and_log_probabilities_are_mlpclassifier_draw_for_draw(width):
    """One-hot columns of different widths, then dense float columns: the same trajectory as MLPClassifier on the
    hand-built matrix [onehot(col0, W) | onehot(col1, 9) | dense], and ``log_proba`` is the log of its
    ``predict_proba``; W = 300 takes the CPU's gather path, W = 12 the dense one-hot product."""
    import warnings

    from sklearn.neural_network import MLPClassifier
    from sklearn.preprocessing import OneHotEncoder

    rng = np.random.default_rng(11)
    T = 500
    ids = np.stack([rng.integers(0, width, T), rng.integers(0, 9, T)], axis=1)
    assert ((width + 9) / 2 >= E.GATHER_MIN_WIDTH) == (width == 300)
    dense = rng.normal(size=(T, 3)).astype(np.float32)
    y = (ids[:, 0] % 3 + (dense[:, 1] > 0.3)) % 4
    tr, te = np.arange(350), np.arange(350, T)
    cfg = MLPConfig(hidden=16, max_iter=30)
    fit = fit_probes(ids, [y], [ProbeSpec("p", (0, 1), onehot=True, init_seed=3, dense=(0, 1, 2))], tr, te,
                     n_categories=[width, 9], config=cfg, dtype="float64", dense=dense, proba=True)[0]
    enc = OneHotEncoder(categories=[np.arange(width), np.arange(9)], sparse_output=False).fit(ids)
    X = np.hstack([enc.transform(ids), dense.astype(np.float64)])
    clf = MLPClassifier(hidden_layer_sizes=(16,), max_iter=30, random_state=3)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        clf.fit(X[tr], y[tr])
    np.testing.assert_allclose(fit.loss_curve, clf.loss_curve_, rtol=0, atol=1e-12)
    np.testing.assert_array_equal(fit.y_pred, clf.predict(X[te]))
    np.testing.assert_array_equal(fit.classes, clf.classes_)
    np.testing.assert_allclose(np.exp(fit.log_proba), clf.predict_proba(X[te]), rtol=0, atol=1e-10)
    # the sklearn engine reads the same inputs
    s = fit_probes(ids, [y], [ProbeSpec("p", (0, 1), onehot=True, init_seed=3, dense=(0, 1, 2))], tr, te,
                   n_categories=[width, 9], config=cfg, engine="sklearn", dense=dense, proba=True)[0]
    np.testing.assert_allclose(np.exp(s.log_proba), clf.predict_proba(X[te]), rtol=0, atol=1e-6)


def replay_tol_rule(curve, tol, n_iter_no_change):
    """The epoch (1-based) at which scikit-learn's rule stops on ``curve``, and the epoch of its minimum."""
    best, count, best_epoch = np.inf, 0, 0
    for e, v in enumerate(curve, start=1):
        count = count + 1 if v > best - tol else 0
        if v < best:
            best, best_epoch = v, e
        if count > n_iter_no_change:
            return e, best_epoch
    return len(curve), best_epoch


def test_held_out_early_stopping_keeps_the_best_epoch_and_stops_by_the_rule():
    """A noisy label that a wide probe overfits: the held-out loss turns up. The probe stops where the tol rule
    replayed on its held-out curve says, and predicts with the weights of the curve's minimum: the
    held-out log-loss of the returned probabilities equals that minimum."""
    rng = np.random.default_rng(2)
    T = 900
    ids = rng.integers(0, 20, (T, 3))
    y = np.where(rng.random(T) < 0.6, ids[:, 0] % 3, rng.integers(0, 3, T))
    tr, va, te = np.arange(500), np.arange(500, 700), np.arange(700, T)
    cfg = MLPConfig(hidden=64, max_iter=200, n_iter_no_change=5)
    fit = fit_probes(ids, [y], [ProbeSpec("p", (0, 1, 2), onehot=True)], tr, te, n_categories=20, config=cfg,
                     dtype="float64", valid_idx=va, proba=True)[0]
    stop, best_epoch = replay_tol_rule(fit.valid_curve, cfg.tol, cfg.n_iter_no_change)
    assert fit.converged and fit.n_iter == stop == len(fit.valid_curve) < 200
    assert fit.best_epoch == best_epoch < fit.n_iter
    cols = np.searchsorted(fit.classes, y[va])
    held_loss = -fit.valid_log_proba[np.arange(len(va)), cols].mean()
    assert held_loss == pytest.approx(fit.valid_curve[best_epoch - 1], abs=1e-9)
    # the training loss went on falling after the best held-out epoch: the rule watched the held-out loss
    assert fit.loss_curve[-1] < fit.loss_curve[best_epoch - 1]
    with pytest.raises(ValueError, match="torch probe engine only"):
        fit_probes(ids, [y], [ProbeSpec("p", (0,), onehot=True)], tr, te, n_categories=20, engine="sklearn",
                   valid_idx=va)


def test_repeated_training_rows_count_as_that_many_examples():
    """``train_idx`` listing a token twice trains like a data set holding two copies of it (MLPClassifier on
    the duplicated matrix, float64, draw for draw)."""
    import warnings

    from sklearn.neural_network import MLPClassifier

    ids, y = toy(T=300)
    tr = np.concatenate([np.arange(200), np.arange(0, 200, 4)])
    te = np.arange(200, 300)
    cfg = MLPConfig(hidden=8, max_iter=20)
    fit = fit_probes(ids, [y], [ProbeSpec("p", (0, 1, 2), init_seed=1)], tr, te, config=cfg, dtype="float64")[0]
    clf = MLPClassifier(hidden_layer_sizes=(8,), max_iter=20, random_state=1)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        clf.fit(ids[tr][:, :3].astype(float), y[tr])
    np.testing.assert_allclose(fit.loss_curve, clf.loss_curve_, rtol=0, atol=1e-12)


def test_settle_waits_for_an_import_running_in_another_thread():
    """scikit-learn reads sys.modules["torch"] without importing it: a half-imported module must be waited for."""
    import sys
    import threading
    import time

    from moe_tui.core.analysis.probe_engine import settle_torch_import

    name = "tests.core.slow_import_module"
    sys.modules.pop(name, None)
    t = threading.Thread(target=lambda: __import__(name))
    t.start()
    while name not in sys.modules:  # the other thread is inside the import
        time.sleep(0.005)
    assert not hasattr(sys.modules[name], "Tensor")  # half-imported, as the race saw it
    settle_torch_import(name)
    assert hasattr(sys.modules[name], "Tensor")
    t.join()
    sys.modules.pop(name, None)


def test_float32_training_flushes_denormals_only_while_it_runs():
    """float32 CPU training runs with denormals flushed to zero (x86 multiplies them ~100x slower), and the
    caller's setting is back afterwards; float64 training (scikit-learn's arithmetic) never flushes."""
    import torch

    def flushing() -> bool:
        return float(torch.tensor(1e-39, dtype=torch.float32) * 2.0) == 0.0

    ids, y = toy(T=300)
    tr, te = np.arange(200), np.arange(200, 300)
    seen = []
    for dtype in ("float32", "float64"):
        fit_probes(ids, [y], [ProbeSpec("p", (0, 1), init_seed=0)], tr, te, config=MLPConfig(hidden=4, max_iter=2),
                   dtype=dtype, device="cpu", progress=lambda *a, d=dtype: seen.append((d, flushing())))
    assert {f for d, f in seen if d == "float32"} == {True}
    assert {f for d, f in seen if d == "float64"} == {False}
    assert not flushing()
    torch.set_flush_denormal(True)
    try:   # a caller that flushes already keeps flushing
        fit_probes(ids, [y], [ProbeSpec("p", (0, 1))], tr, te, config=MLPConfig(hidden=4, max_iter=1), device="cpu")
        assert flushing()
    finally:
        torch.set_flush_denormal(False)
