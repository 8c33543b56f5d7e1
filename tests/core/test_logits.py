"""Stored router logits (``extract --save-logits``): for every supported architecture, the run's logits.npy put
through the architecture's own selection rule (reference implementations below, one per rule family, computed
in the logits' dtype with the biases read from the loaded model) give the run's experts, and rank 0 is the
selected expert with the highest stored logit. Plus: adding logits to a finished run, resuming, refusing."""

from __future__ import annotations

import json

import numpy as np
import pytest

torch = pytest.importorskip("torch")

from moe_tui.cache.store import RunStore  # noqa: E402
from moe_tui.core.extract.models import load_model  # noqa: E402
from moe_tui.core.extract.pipeline import ExtractOptions, extract  # noqa: E402
from moe_tui.errors import Cancelled, ModelError  # noqa: E402
from tests.factories_model import architecture_params, build_tiny_model  # noqa: E402

F = torch.nn.functional

# ----------------------------------------------------------------------------- reference selection rules
SOFTMAX_TOPK = {"mixtral", "minimax", "olmoe", "flex_olmo", "qwen2_moe", "qwen3_moe", "qwen3_next", "jamba",
                "hunyuan_v1_moe", "dbrx", "gemma4_text", "mellum"}
LOGIT_TOPK = {"gpt_oss", "granitemoe", "granitemoeshared", "granitemoehybrid", "granitemoe_swa", "jetmoe",
              "aria_text", "cohere2_moe", "llama4_text"}
GROUPED = {"deepseek_v3", "glm4_moe", "dots1", "solar_open", "exaone_moe", "glm4_moe_lite", "deepseek_v32", "axk2"}
SIGMOID_BIAS = {"minimax_m2", "hy_v3", "afmoe", "lfm2_moe", "laguna", "minimax_m3_vl_text", "inkling2_text",
                "deepseek_v4"}
_BIAS_NAMES = ("e_score_correction_bias", "expert_bias", "balancing_biases")


def _bias(site):
    """The load-balancing bias of a router, wherever the architecture keeps it (router, its block, moe_statics)."""
    for owner in (site.module, getattr(site.module, "moe_statics", None), site.parent):
        for name in _BIAS_NAMES:
            t = getattr(owner, name, None) if owner is not None else None
            if torch.is_tensor(t):
                return t.detach().float().reshape(-1)
    raise AssertionError(f"no bias found for {type(site.module).__name__}")


def _group_mask(scores, n_group: int, topk_group: int, group_score):
    g = group_score(scores.view(scores.shape[0], n_group, -1))  # (N, G)
    keep = torch.zeros_like(g, dtype=torch.bool).scatter_(1, torch.topk(g, topk_group, dim=-1).indices, True)
    return keep.unsqueeze(-1).expand(-1, n_group, scores.shape[1] // n_group).reshape(scores.shape)


def reference_selection(model_type: str, lm, slot: int, logits, token_ids):
    """``(experts (N, k), score (N, C))``: the expert ids ``model_type``'s rule chooses from ``logits (N, C)``, and
    the score it chooses them by (after any bias and group mask). A hash layer has no score (None)."""
    site = lm.routers[slot]
    k, cfg = site.top_k, lm.config
    if "HashRouter" in type(site.module).__name__:  # DeepSeek-V4 hash layer: a token-id table, no learned choice
        return site.module.tid2eid[token_ids.long()].long(), None
    if model_type in SOFTMAX_TOPK:
        score = torch.softmax(logits, dim=-1)
    elif model_type in LOGIT_TOPK:
        score = logits
    elif model_type == "phimoe":  # sparsemixer (eval): the argmax, then the argmax of the rest
        first = logits.argmax(-1, keepdim=True)
        second = logits.scatter(-1, first, float("-inf")).argmax(-1, keepdim=True)
        return torch.cat([first, second], dim=-1), logits
    elif model_type == "flint":
        score = torch.sigmoid(logits)
    elif model_type == "deepseek_v2":  # softmax; groups scored by their max; masked to 0
        s = torch.softmax(logits, dim=-1)
        keep = _group_mask(s, cfg.n_group, cfg.topk_group, lambda g: g.max(-1).values)
        score = s.masked_fill(~keep, 0.0)
    elif model_type in GROUPED:  # sigmoid + bias; groups scored by their top-2 sum
        c = torch.sigmoid(logits) + _bias(site)
        keep = _group_mask(c, cfg.n_group, cfg.topk_group, lambda g: g.topk(2, dim=-1).values.sum(-1))
        score = c.masked_fill(~keep, 0.0 if model_type == "axk2" else float("-inf"))
    elif model_type in SIGMOID_BIAS:
        fn = (lambda x: F.softplus(x).sqrt()) if getattr(cfg, "scoring_func", "") == "sqrtsoftplus" else torch.sigmoid
        score = fn(logits) + _bias(site)
    elif model_type == "kolibri1":  # bias added to the raw logits
        score = logits + _bias(site)
    elif model_type in ("ernie4_5_moe", "longcat_flash", "zaya"):  # softmax + bias (longcat: zero experts; zaya: skip)
        score = torch.softmax(logits, dim=-1) + _bias(site)
    else:
        raise AssertionError(f"no reference rule for {model_type}")
    return torch.topk(score, k, dim=-1).indices, score


# ----------------------------------------------------------------------------- fixtures
WORDS = ("the a cat dog sat on mat and ran quickly slowly big small red blue house tree bird sings we they he she "
         "it is are was were have has had do does did not this that of in at to from with by for over under after "
         "before New York Paris John Mary eats sleeps reads writes book books city cities old new good bad very").split()


def _ptb_corpus(path, n=14, seed=0) -> str:
    rng = np.random.default_rng(seed)
    lines = []
    for i in range(n):
        words = rng.choice(WORDS, size=3 + (i * 5) % 14)
        lines += [f"{w}\tNN" for w in words] + [".\t.", ""]
    path.write_text("\n".join(lines))
    return str(path)


@pytest.fixture(scope="module")
def models(tmp_path_factory):
    cache: dict[str, object] = {}

    def get(model_type: str):
        if model_type not in cache:
            cache[model_type] = build_tiny_model(model_type, tmp_path_factory.mktemp(model_type), seed=0)
        return cache[model_type]

    return get


def _opts(model, data, cache, **kw):
    base = dict(model=str(model), data=data, batch_size=4, cache_dir=str(cache), device="cpu", dtype="float32",
                save_logits=True)
    base.update(kw)
    return ExtractOptions(**base)


# ----------------------------------------------------------------------------- every architecture
@pytest.mark.slow
@pytest.mark.parametrize("model_type", architecture_params())
def test_stored_logits_reproduce_the_runs_experts(models, tmp_path, model_type):
    path = models(model_type)
    run = RunStore(tmp_path / "c").open(extract(_opts(path, _ptb_corpus(tmp_path / "c.txt"), tmp_path / "c")).name)
    lm = load_model(path, device="cpu")
    T, L, k = run.experts.shape
    N = lm.facts.num_experts
    assert run.logits.shape == (T, L, N) and run.logits.dtype == np.float16
    assert run.manifest["arrays"]["logits"]["shape"] == [T, L, N]
    routing = run.manifest["routing"]
    assert routing["logits"]["saved"] is True and routing["logits"]["layers_without_logits"] == []
    assert [r["rank_by"] for r in routing["routers"]] == ["logit"] * L
    stored = torch.from_numpy(np.asarray(run.logits, dtype=np.float32))  # the routers' dtype here (float32)
    assert torch.isfinite(stored).all()
    token_ids = torch.from_numpy(np.array(run.token_ids))
    experts = np.asarray(run.experts).astype(np.int64)
    ulp_ties = 0
    for slot in range(L):
        k_l = lm.routers[slot].top_k
        got = np.sort(experts[:, slot, :k_l], axis=1)
        chosen, score = reference_selection(model_type, lm, slot, stored[:, slot], token_ids)
        want = np.sort(chosen.numpy(), axis=1)
        bad = np.nonzero((got != want).any(axis=1))[0]
        # stored in float16 (the model chose from float32): only candidates whose selection scores float16
        # rounding of the logits can swap may differ
        for t in bad:
            a, b = sorted(set(got[t]) ^ set(want[t]))[:2]
            lg = stored[t, slot]
            tol = 2e-3 * max(1.0, abs(float(lg[a])), abs(float(lg[b])))
            assert score is not None and abs(float(score[t, a] - score[t, b])) <= tol, (
                f"{model_type} layer {slot} token {t}: run {got[t]}, rule {want[t]}")
        ulp_ties += len(bad)
        # rank 0 = the selected expert with the highest (stored) logit; ranks in descending logit order
        sel = np.take_along_axis(stored[:, slot].numpy(), experts[:, slot, :k_l], axis=1)
        assert np.all(np.diff(sel, axis=1) <= 0), f"{model_type} layer {slot}"
    assert ulp_ties <= max(2, T * L // 200)


# ----------------------------------------------------------------------------- a run gains logits later
def _bytes(run_dir, name):
    return (run_dir / name).read_bytes()


@pytest.mark.slow
def test_a_run_gains_logits_keeping_its_id_and_routes(models, tmp_path):
    path = models("phimoe")
    data = _ptb_corpus(tmp_path / "c.txt")
    plain = extract(_opts(path, data, tmp_path / "c", save_logits=False))
    run = RunStore(tmp_path / "c").open(plain.name)
    assert run.logits is None and not run.has_logits
    assert run.manifest["routing"]["logits"]["saved"] is False
    files = sorted(p.name for p in plain.glob("*.npy")) + ["identity.json"]
    assert {"experts.npy", "weights.npy", "token_ids.npy", "texts_bytes.npy", "word_form.npy"} <= set(files)
    before = {n: _bytes(plain, n) for n in files}   # every array of the run: routes and sentence text
    events = []
    again = extract(_opts(path, data, tmp_path / "c"), progress=lambda e: events.append(e.to_dict()))
    assert again == plain  # same run id, same directory
    assert any("has no logits" in e.get("message", "") for e in events)
    for n, b in before.items():
        assert _bytes(again, n) == b, n
    run = RunStore(tmp_path / "c").open(again.name)  # verifies every checksum, logits.npy included
    assert run.has_logits and run.manifest["routing"]["logits"]["saved"] is True
    assert "added" in run.manifest["routing"]["logits"]
    # the same logits as a run extracted with the flag from the start
    fresh = RunStore(tmp_path / "d").open(extract(_opts(path, data, tmp_path / "d")).name)
    assert fresh.run_id == run.run_id
    np.testing.assert_array_equal(np.asarray(fresh.logits), np.asarray(run.logits))
    assert not (again / "logits-shards").exists()
    # with logits: a cache hit, with or without the flag
    for flag in (True, False):
        seen: list = []
        extract(_opts(path, data, tmp_path / "c", save_logits=flag), progress=seen.append)
        assert [e.stage for e in seen if e.kind == "stage"] == ["cache-hit"]


@pytest.mark.slow
def test_adding_logits_refuses_when_the_routes_come_out_different(models, tmp_path, monkeypatch):
    import moe_tui.core.extract.capture

    path = models("mixtral")
    data = _ptb_corpus(tmp_path / "c.txt")
    run_dir = extract(_opts(path, data, tmp_path / "c", save_logits=False))
    manifest = _bytes(run_dir, "manifest.json")
    real_run = moe_tui.core.extract.capture.RouteCapture.run

    def other_routes(self, ids, mask):
        e, w = real_run(self, ids, mask)
        return e[..., ::-1].copy(), w  # e.g. another library version ranking differently

    monkeypatch.setattr(moe_tui.core.extract.capture.RouteCapture, "run", other_routes)
    with pytest.raises(ModelError, match=r"gave different experts on \d+ of \d+ \(token, layer\) pairs") as exc:
        extract(_opts(path, data, tmp_path / "c"))
    assert "\n" not in str(exc.value)
    assert _bytes(run_dir, "manifest.json") == manifest and not (run_dir / "logits.npy").exists()
    assert RunStore(tmp_path / "c").open(run_dir.name).logits is None


@pytest.mark.slow
def test_resume_with_logits_after_a_cancel(models, tmp_path):
    """Cancelled after 2 batches (the first attempt without logits, the second with): resumed, the run equals
    an uninterrupted one byte for byte, logits included."""
    path = models("deepseek_v3")
    data = _ptb_corpus(tmp_path / "c.txt")
    ref = extract(_opts(path, data, tmp_path / "ref"))
    for flag in (False, True):
        calls = {"n": 0}

        def cancel_after_two(calls=calls):
            calls["n"] += 1
            return calls["n"] > 2

        with pytest.raises(Cancelled):
            extract(_opts(path, data, tmp_path / "c", save_logits=flag), should_cancel=cancel_after_two)
    run_dir = extract(_opts(path, data, tmp_path / "c"))
    for name in ("experts.npy", "weights.npy", "logits.npy", "token_ids.npy"):
        assert _bytes(run_dir, name) == _bytes(ref, name), name
    m = json.loads(_bytes(run_dir, "manifest.json"))
    assert m["arrays"]["logits"] == json.loads(_bytes(ref, "manifest.json"))["arrays"]["logits"]
