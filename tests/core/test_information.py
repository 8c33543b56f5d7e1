"""moe_tui.core.analysis.information: conditional probing, per-layer probes, online code length, path structure.

Oracles: hand-computed entropies, mutual information, path counts and code lengths on small cases; a tiny
model whose attention output projections are zeroed (each token is routed by its id alone, so the routes
can say nothing about POS that the token id does not); routes planted to follow POS beyond the token id.
"""

from __future__ import annotations

import math
import shutil

import numpy as np
import pytest

from moe_tui.core.analysis import information as I
from tests.helpers import needs_ewt
from tests.runs import UPOS, write_run


def H(*p):
    return -sum(x * math.log2(x) for x in p if x > 0)


# --------------------------------------------------------------------------------------------------
# Path structure, by hand


def test_entropy_and_mutual_information_by_hand():
    assert I.entropy_bits(np.array([1, 1, 2])) == pytest.approx(1.5)
    assert I.entropy_bits(np.array([0, 5])) == 0.0
    same = np.array([0, 0, 1, 1])
    assert I.mutual_information_bits(same, same) == pytest.approx(1.0)
    assert I.normalized_mi(same, same) == pytest.approx(1.0)
    assert I.mutual_information_bits(np.array([0, 1, 0, 1]), same) == pytest.approx(0.0, abs=1e-12)
    # joint (0,0):2 (0,1):1 (1,1):1 -> H(X)=H(3/4,1/4), H(Y)=1, H(X,Y)=H(1/2,1/4,1/4)=1.5
    x, y = np.array([0, 0, 0, 1]), np.array([0, 0, 1, 1])
    mi = H(0.75, 0.25) + 1.0 - 1.5
    assert I.mutual_information_bits(x, y) == pytest.approx(mi, abs=1e-12)
    assert I.normalized_mi(x, y) == pytest.approx(mi / ((H(0.75, 0.25) + 1.0) / 2), abs=1e-12)
    assert I.normalized_mi(np.zeros(3, int), np.zeros(3, int)) is None        # both constant: undefined
    # a relabelling (expert 2 -> 0, 0 -> 2) keeps everything
    assert I.mutual_information_bits(2 - x, y, 3, 3) == pytest.approx(mi, abs=1e-12)


def test_transitions_and_paths_by_hand():
    # 4 tokens, 3 layers, top-2 (rank 1 must be ignored): top-1 paths (0,1,1) (0,1,1) (0,2,1) (1,1,0)
    top1 = np.array([[0, 1, 1], [0, 1, 1], [0, 2, 1], [1, 1, 0]])
    experts = np.stack([top1, (top1 + 1) % 4], axis=2)
    tr = I.transitions(experts, 4)
    assert [(a, b) for a, b, _, _ in tr] == [(0, 1), (1, 2)]
    # layer 0 -> 1: pairs (0,1)x2 (0,2) (1,1): H(X)=H(3/4,1/4), H(Y)=H(3/4,1/4), H(XY)=H(1/2,1/4,1/4)
    h = H(0.75, 0.25)
    assert tr[0][2] == pytest.approx(2 * h - 1.5, abs=1e-12)
    assert tr[0][3] == pytest.approx((2 * h - 1.5) / h, abs=1e-12)
    # layer 1 -> 2: pairs (1,1)x2 (2,1) (1,0): same structure
    assert tr[1][2] == pytest.approx(2 * h - 1.5, abs=1e-12)
    st = I.path_stats(experts)
    assert st["tokens"] == 4 and st["distinct_paths"] == 3
    assert st["path_entropy_bits"] == pytest.approx(1.5)
    assert st["top10_path_share"] == 1.0
    assert I.path_stats(experts, top=1)["top1_path_share"] == 0.5


# --------------------------------------------------------------------------------------------------
# Features and scoring, by hand


def test_token_codes_singletons_and_holdout():
    ids = np.array([5, 7, 5, 9, 11, 7, 5])
    codes, n = I.token_codes(ids, np.array([0, 1, 2, 3]))          # seen: 5, 7, 9
    assert n == 4 and codes.tolist() == [0, 1, 0, 2, 3, 1, 0]       # 11 is unseen: code 3
    assert I.singleton_copies(ids, np.array([0, 1, 2, 3])).tolist() == [1, 3]   # 7 and 9 occur once there
    fit, va = I.holdout_split(np.arange(100, 200), seed=3)
    assert len(va) == 10 and len(fit) == 90 and not set(fit) & set(va) and set(fit) | set(va) == set(range(100, 200))


def test_mixed_bits_and_prior_by_hand():
    lp = np.log(np.array([[0.5, 0.5], [0.25, 0.75]]))
    bits = I.mixed_bits(lp, np.array([1, 3]), np.array([3, 0]), n_labels=4, eps=0.0 + 1e-6)
    assert bits[0] == pytest.approx(-math.log2((1 - 1e-6) * 0.5 + 1e-6 / 4))
    assert bits[1] == pytest.approx(-math.log2(1e-6 / 4))               # a label the probe never saw
    y = np.array([0, 0, 0, 1, 0, 1])
    pr = I.prior_bits(y, 2, np.arange(4), np.array([4, 5]))          # training prior 3/4, 1/4
    assert pr.bits == pytest.approx([-math.log2(0.75 * (1 - 1e-6) + 0.5e-6), -math.log2(0.25 * (1 - 1e-6) + 0.5e-6)])
    assert pr.correct.tolist() == [True, False]


def test_logit_features_standardise_on_the_fitted_tokens_and_drop_layers_without_logits():
    x = np.zeros((4, 2, 2), dtype=np.float16)
    x[:, 0, 0] = [1, 3, 5, 100]
    x[:, 0, 1] = 2
    x[:, 1, :] = np.nan
    z = I.logit_features(x, np.array([0, 1, 2]))
    assert z.shape == (4, 2)                                          # the NaN layer is left out
    assert z[:, 0] == pytest.approx([-math.sqrt(1.5), 0, math.sqrt(1.5), 97 / math.sqrt(8 / 3)], rel=1e-5)
    assert z[:, 1].tolist() == [0, 0, 0, 0]                           # constant: centred only


# --------------------------------------------------------------------------------------------------
# Online code length, by hand


def test_block_ends_follow_voita_and_titov():
    assert I.block_ends(1000) == [1, 2, 4, 8, 16, 32, 62, 125, 250, 500, 1000]
    assert I.block_ends(10) == [1, 2, 5, 10]
    assert I.block_ends(0) == []


@pytest.mark.slow
def test_online_code_length_by_hand():
    """Labels constant on the first half and then another: the first block is sent uniformly (log2 P bits a
    token); while every label seen so far is the same, the probe is certain of it (a single-class probe) and a
    token costs -log2((1 - eps) + eps / P) when it has that label, -log2(eps / P) when it does not."""
    T, P, eps = 64, 4, I.EPS_MIX
    experts = np.zeros((T, 2, 1), dtype=np.int64)
    y = np.zeros(T, dtype=np.int64)
    y[32:] = 2                                  # the order sends 0..63: tokens 32.. are the last block
    ids = np.arange(T)
    res = I.online_codelength(experts, [y], P, ids, np.arange(T), n_experts=2, device="cpu",
                              fractions=(1 / 64, 2 / 64, 8 / 64, 0.5, 1.0))
    ends = [1, 2, 8, 32, 64]
    assert res["routes"]["blocks"] == ends
    sure, wrong = -math.log2((1 - eps) + eps / P), -math.log2(eps / P)
    want = 1 * math.log2(P) + (32 - 1) * sure + 32 * wrong
    for code in ("routes", "token_id"):
        assert res[code]["codelength_bits"] == pytest.approx(want, rel=1e-9), code
        assert res[code]["uniform_codelength_bits"] == pytest.approx(T * math.log2(P))
        assert res[code]["compression"] == pytest.approx(T * math.log2(P) / want)


@pytest.mark.slow
def test_online_code_of_a_label_the_routes_determine_compresses_it_and_the_control_task_less():
    rng = np.random.default_rng(0)
    T, P = 1500, 4
    pos = rng.integers(0, P, T)
    experts = np.stack([pos * 2 + rng.integers(0, 2, T), rng.integers(0, 8, T)], axis=1)[:, :, None]
    control = rng.integers(0, P, T)               # labels the routes know nothing about
    ids = rng.integers(0, 300, T)
    res = I.online_codelength(experts, [pos, control], P, ids, rng.permutation(T), n_experts=8, device="cpu")
    assert set(res) == {"routes", "control_task", "token_id"}
    assert res["routes"]["compression"] > 5
    assert res["control_task"]["compression"] < 1.05
    assert res["token_id"]["compression"] < 1.2


# --------------------------------------------------------------------------------------------------
# Conditional probing: oracles


def planted_run(root, *, beyond_token: bool, n_sent=200, seed=0):
    """A run of sentences of 10 words over 40 word types, each of two POS (drawn per occurrence); at MoE layer
    0 the top-1 expert follows the token's POS (``beyond_token``) or its id, at the other layers its id."""
    rng = np.random.default_rng(seed)
    V, L, N = 40, 3, 8
    type_pos = np.stack([rng.choice(len(UPOS), 2, replace=False) for _ in range(V)])
    tok, pos, widx, offs, recs, spans = [], [], [], [0], [], []
    for s in range(n_sent):
        ids = rng.integers(0, V, 10)
        tags = type_pos[ids, rng.integers(0, 2, 10)]
        words, start = [], 0
        for i, t in zip(ids, tags):
            words.append([f"w{i}", UPOS[t], start, start + len(f"w{i}")])
            start += len(f"w{i}") + 1
        recs.append({"id": f"s{s}", "text": " ".join(w[0] for w in words), "words": words,
                     "tokens": [w[0] for w in words], "skipped": False})
        tok += ids.tolist()
        pos += tags.tolist()
        widx += list(range(10))
        spans += [(w[2], w[3]) for w in words]
        offs.append(offs[-1] + 10)
    T = len(tok)
    tok_a, pos_a = np.array(tok), np.array(pos)
    experts = np.zeros((T, L, 2), dtype=np.uint8)
    for layer in range(L):
        top = (pos_a * 3) % N if (layer == 0 and beyond_token) else (tok_a * (layer + 1)) % N
        experts[:, layer, 0] = top
        experts[:, layer, 1] = (top + 1 + tok_a % (N - 1)) % N
    arrays = {"token_ids": tok_a.astype(np.int32), "sentence_offsets": np.array(offs, dtype=np.int64),
              "word_index": np.array(widx, dtype=np.int32), "pos": pos_a.astype(np.int16),
              "special": np.zeros(T, dtype=bool), "crossing": np.zeros(T, dtype=bool),
              "offsets": np.array(spans, dtype=np.int32).reshape(-1, 2), "experts": experts,
              "weights": np.full((T, L, 2), 0.5, dtype=np.float16)}
    return write_run(root, arrays, recs, tags=UPOS, moe_layers=[1, 2, 3], num_experts=N, top_k=2,
                     corpus=f"planted-{beyond_token}.conllu")


@pytest.mark.slow
def test_routes_that_follow_pos_beyond_the_token_give_a_conditional_gain(tmp_path):
    """Each word type has two POS; a token's POS is drawn per occurrence, so the token id leaves about one
    bit; layer 0's route names the POS: the routes must carry clearly positive information given the token,
    and layer 0 must be the layer that does; with routes that follow the id only, the gain is ~0."""
    from moe_tui.core.analysis import seeds as S
    from moe_tui.core.analysis.options import ReportOptions
    from moe_tui.core.analysis.probe import split_indices
    from moe_tui.core.analysis.probe_engine import MLPConfig
    from moe_tui.core.analysis.tables import compute_information, information_tables
    from moe_tui.core.analysis.view import RunView

    o = ReportOptions(probe_device="cpu", max_iter=200)
    v = RunView.from_run(planted_run(tmp_path, beyond_token=True))
    tables = information_tables(v, o)
    res = compute_information(v, o)
    g = {m: val for m, pos, val in tables["information"]["rows"] if pos == ""}
    assert g["gain_routes_given_token_bits"] > 0.6
    assert g["gain_routes_bits"] > g["gain_routes_given_token_bits"]
    layers = {row[0]: row for row in tables["layer_probe"]["rows"]}
    assert layers[1][3] > 0.6 and abs(layers[2][3]) < 0.05 and abs(layers[3][3]) < 0.05
    assert res["probes"]["token_id+routes"].accuracy > 0.95
    assert [r[0] for r in tables["conditional"]["rows"]] == ["none", "token_id", "routes", "token_id+routes"]

    w = RunView.from_run(planted_run(tmp_path / "ids", beyond_token=False))
    tr, te = split_indices(w.n_tokens, seed=S.stream(o.seed, "split", 0))   # seed 0's split, as the report's
    _, va = I.holdout_split(tr, S.stream(0, "info_valid"))
    r2 = I.conditional_probes(w.experts, w.pos, w.n_pos, w.token_ids, (tr, te), va, n_experts=w.n_experts,
                              per_layer=False, device="cpu", config=MLPConfig(max_iter=200))
    g2 = I.gains(r2, w.pos[te], w.n_pos)
    assert abs(g2["gain_routes_given_token_bits"][0]) < 0.02
    assert g2["gain_routes_bits"][0] > 0.5


@pytest.mark.slow
@needs_ewt
def test_a_model_that_routes_by_token_id_alone_adds_nothing_given_the_token(tmp_path):
    """A tiny Mixtral with every attention output projection zeroed: a token's hidden state, so its route, is a
    function of its id alone. Extracted over real EWT sentences through the real loading path, the routes carry
    POS information (positive gain) but none beyond the token id (gain within 0.02 bits of 0)."""
    import torch
    from transformers import AutoModelForCausalLM

    from moe_tui.cache.store import RunStore
    from moe_tui.core.analysis import seeds as S
    from moe_tui.core.analysis.options import ReportOptions
    from moe_tui.core.analysis.probe import split_indices
    from moe_tui.core.analysis.view import RunView
    from moe_tui.core.extract.pipeline import ExtractOptions, extract
    from tests.factories_model import ewt_tiny_model
    from tests.helpers import EWT_DEV

    path = tmp_path / "zeroed"
    shutil.copytree(ewt_tiny_model("mixtral"), path)
    model = AutoModelForCausalLM.from_pretrained(str(path))
    zeroed = 0
    with torch.no_grad():
        for name, p in model.named_parameters():
            if name.endswith("self_attn.o_proj.weight"):
                p.zero_()
                zeroed += 1
    assert zeroed == model.config.num_hidden_layers
    model.save_pretrained(str(path))
    run_dir = extract(ExtractOptions(model=str(path), data=str(EWT_DEV), max_sentences=250, batch_size=16,
                                     cache_dir=str(tmp_path / "cache"), device="cpu", dtype="float32"))
    v = RunView.from_run(RunStore(tmp_path / "cache").open(run_dir.name))
    routes = v.experts.reshape(v.n_tokens, -1)
    first = {}
    for t, r in zip(v.token_ids, map(tuple, routes)):
        assert first.setdefault(int(t), r) == r                      # one route per token id
    o = ReportOptions(probe_device="cpu")
    tr, te = split_indices(v.n_tokens, seed=S.stream(o.seed, "split", 0))   # seed 0's split, as the report's
    _, va = I.holdout_split(tr, S.stream(0, "info_valid"))
    res = I.conditional_probes(v.experts, v.pos, v.n_pos, v.token_ids, (tr, te), va, n_experts=v.n_experts,
                               per_layer=False, device="cpu")
    g = I.gains(res, v.pos[te], v.n_pos)
    assert abs(g["gain_routes_given_token_bits"][0]) < 0.02
    assert g["gain_routes_bits"][0] > 0.5


# --------------------------------------------------------------------------------------------------
# Through the command line, with router logits


def run_with_logits(root, n_copies=6):
    """The synthetic run's sentences repeated, with router logits whose top-2 are the stored experts (5 and 4,
    the others below 1): the logits name the experts and more."""
    from tests.runs import SENTENCES, synthetic_arrays

    sentences = [(f"{sid}-{i}", text, tags) for i in range(n_copies) for sid, text, tags in SENTENCES]
    arrays, records = synthetic_arrays(n_layers=3, n_experts=8, top_k=2, sentences=sentences)
    rng = np.random.default_rng(1)
    e = arrays["experts"].astype(np.int64)
    T, L, _ = e.shape
    logits = rng.uniform(-1, 1, (T, L, 8))
    np.put_along_axis(logits, e[:, :, :1], 5.0, axis=2)
    np.put_along_axis(logits, e[:, :, 1:], 4.0, axis=2)
    arrays["logits"] = logits.astype(np.float16)
    return write_run(root, arrays, records, tags=UPOS, moe_layers=[1, 2, 3], num_experts=8, top_k=2)


@pytest.mark.slow
def test_report_information_writes_the_six_tables_and_the_logits_rows(tmp_path, capsys):
    import csv

    from moe_tui.cli import main

    run = run_with_logits(tmp_path / "cache")
    assert run.has_logits
    out = tmp_path / "out"
    code = main(["report", run.run_id, "--probe", "--information", "--out", str(out), "--cache-dir",
                 str(tmp_path / "cache"), "--max-iter", "40", "--ablation-step", "2", "--tsne-samples", "50",
                 "--probe-device", "cpu"])
    assert code == 0, capsys.readouterr().err

    def read(stem):
        with open(out / run.run_id / f"{stem}.csv", newline="") as fh:
            r = list(csv.reader(fh))
        return r[0], r[1:]

    cols = {"conditional": ["features", "accuracy", "cross_entropy_bits"], "information": ["measure", "pos", "value"],
            "layer_probe": ["layer", "accuracy", "cross_entropy_bits", "gain_given_token_bits"],
            "mdl": ["features", "codelength_bits", "uniform_codelength_bits", "compression"],
            "transitions": ["layer_from", "layer_to", "mutual_information_bits", "normalized_mi"],
            "paths": ["measure", "value"]}
    for stem, want in cols.items():
        assert read(stem)[0] == want, stem
    _, cond = read("conditional")
    assert [r[0] for r in cond] == list(I.FEATURES)
    ce = {r[0]: float(r[2]) for r in cond}
    _, info = read("information")
    overall = {r[0]: float(r[2]) for r in info if r[1] == ""}
    assert overall["gain_routes_bits"] == pytest.approx(ce["none"] - ce["routes"], abs=1e-9)
    assert overall["gain_logits_given_token_bits"] == pytest.approx(ce["token_id"] - ce["token_id+logits"], abs=1e-9)
    per_pos = [r for r in info if r[0] == "gain_routes_bits" and r[1]]
    assert [r[1] for r in per_pos] == list(UPOS)
    _, layers = read("layer_probe")
    assert [int(r[0]) for r in layers] == [1, 2, 3]
    _, mdl = read("mdl")
    assert [r[0] for r in mdl] == ["routes", "control_task", "token_id", "logits"]
    _, tr = read("transitions")
    assert [(int(a), int(b)) for a, b, *_ in tr] == [(1, 2), (2, 3)]
    # top-1 at layer l is (3 * pos + l) % 8: a function of POS at every layer, so each transition's MI equals
    # the entropy of the top-1 expert at either end (a one-to-one relation) and the normalised MI is 1
    assert all(float(r[3]) == pytest.approx(1.0) for r in tr)
    _, paths = read("paths")
    v = RunViewOf(run)
    # one path per value of 3 * pos mod 8 (two tags whose index differs by 8 share one)
    assert dict((k, float(x)) for k, x in paths)["distinct_paths"] == len(np.unique((3 * v.pos) % 8)) >= 5
    _, probe = read("probe")
    assert "logits" in [r[0] for r in probe]
    assert (out / run.run_id / "confusion_logits.csv").exists()


def RunViewOf(run):
    from moe_tui.core.analysis.view import RunView

    return RunView.from_run(run)


def test_logits_probe_sees_what_the_top_k_choice_throws_away():
    """Routes drawn at random among experts 3..7 (no POS in them), from logits whose never-selected columns
    0..2 carry the POS (+0.9 on column p of layer 0, still far below the chosen two): the logits probe reads the
    POS, the route probe cannot."""
    from moe_tui.core.analysis.probe import probe_suite

    rng = np.random.default_rng(4)
    T, L, N, P = 1500, 2, 8, 3
    pos = rng.integers(0, P, T)
    experts = 3 + np.stack([np.stack([rng.permutation(N - 3)[:2] for _ in range(T)]) for _ in range(L)], axis=1)
    logits = rng.uniform(-1, 0, (T, L, N))
    np.put_along_axis(logits, experts[:, :, :1], 3.0, axis=2)
    np.put_along_axis(logits, experts[:, :, 1:], 2.0, axis=2)
    logits[:, 0, :P] += np.eye(P)[pos] * 0.9
    assert (np.argsort(-logits, axis=2)[:, :, :2] == experts).all()      # the logits select the stored routes
    res = probe_suite(experts, pos, P, variants=("onehot_top_k", "logits"), baseline=False,
                      logits=logits.astype(np.float16), max_iter=100, n_experts=N, device="cpu")
    assert res["onehot_top_k"].accuracy < 0.45
    assert res["logits"].accuracy > 0.9
    with pytest.raises(ValueError, match="router logits"):
        probe_suite(experts, pos, P, variants=("logits",), baseline=False)


def test_run_view_reads_the_logits_of_the_analysed_tokens_only_when_asked(tmp_path):
    """``RunView.from_run`` knows that a run holds logits without reading the ``[T, L, N]`` array (routing tables
    and the probe row list leave it unread); asked, it gives the stored logits of the analysed tokens."""
    from moe_tui.core.analysis.report import report_tables
    from moe_tui.core.analysis.tables import probe_rows
    from moe_tui.core.analysis.view import RunView

    run = run_with_logits(tmp_path / "cache", n_copies=1)
    view = RunView.from_run(run)
    deferred = RunView.__dict__["logits"]
    assert view.has_logits and "logits" in probe_rows(view)
    report_tables(view)
    assert not deferred.ready(view)
    mask = np.asarray(run.analysis_mask(), dtype=bool)
    assert not mask.all()  # special tokens are left out
    np.testing.assert_array_equal(view.logits, np.asarray(run.logits)[mask])
    assert view.logits.dtype == np.float16 and deferred.ready(view)
    plain = RunView.from_run(write_run(tmp_path / "plain", *_plain_arrays(), tags=UPOS, moe_layers=[1, 2, 3],
                                       num_experts=8, top_k=2))
    assert not plain.has_logits and plain.logits is None and "logits" not in probe_rows(plain)


def _plain_arrays():
    from tests.runs import synthetic_arrays

    return synthetic_arrays(n_layers=3, n_experts=8, top_k=2)
