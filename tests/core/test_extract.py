"""End-to-end extraction on a tiny model and real EWT sentences: run format, cache hits, resume, OOM."""

from __future__ import annotations

import numpy as np
import pytest

from moe_tui.cache.store import RunStore
from moe_tui.core.extract.pipeline import ExtractOptions, extract, make_plan
from moe_tui.errors import Cancelled
from tests.factories_model import ewt_tiny_model
from tests.helpers import EWT_DEV, needs_ewt

N_SENT = 24


def collect(events: list):
    """A progress callback that keeps each event in its JSON wire form (a dict, as --progress json prints it)."""
    return lambda ev: events.append(ev.to_dict())


@pytest.fixture(scope="module")
def tiny_mixtral():
    """A tiny Mixtral with a byte-level BPE tokenizer trained on EWT text (real subword splits)."""
    return ewt_tiny_model("mixtral")


def _opts(model, cache, **kw):
    base = dict(model=str(model), data=str(EWT_DEV), max_sentences=N_SENT, batch_size=5, cache_dir=str(cache),
                device="cpu", dtype="float32")
    base.update(kw)
    return ExtractOptions(**base)


def test_make_plan_longest_first_and_caps():
    lengths = [3, None, 7, 5, 7, 1]
    assert make_plan(lengths, 2, None) == [[2, 4], [3, 0], [5]]
    # 7*2 = 14 > 10: the 7s go alone; 5*2 = 10 fits; 5*3 = 15 does not
    assert make_plan(lengths, 4, 10) == [[2], [4], [3, 0], [5]]


@pytest.mark.slow
@needs_ewt
def test_extract_writes_a_complete_run(tiny_mixtral, tmp_path):
    events = []
    run_dir = extract(_opts(tiny_mixtral, tmp_path), progress=collect(events))
    run = RunStore(tmp_path).open(run_dir.name)
    m = run.manifest
    assert m["model"]["model_type"] == "mixtral" and m["model"]["moe_layers"] == [0, 1, 2, 3]
    assert run.top_k == 2 and run.num_experts == 8
    assert len(run.sentences) == N_SENT and run.sentence_offsets.shape == (N_SENT + 1,)
    T = int(run.sentence_offsets[-1])
    assert run.experts.shape == (T, 4, 2) and run.weights.shape == (T, 4, 2)
    assert run.experts.dtype == np.uint8 and run.weights.dtype == np.float16
    # sentences longer than the model's context (128 here) are skipped and counted, never cut
    kept = [not r["skipped"] for r in run.sentences]
    assert m["alignment"]["skipped_too_long"] == N_SENT - sum(kept) >= 1
    assert all((np.diff(run.sentence_offsets) > 0) == np.array(kept))
    # one BOS per kept sentence, recorded but excluded from the analysis
    assert int(run.special.sum()) == sum(kept)
    assert not run.analysis_mask()[run.special].any()
    assert run.pos[run.analysis_mask()].max() < len(run.tags)
    # ranks are in weight order
    w = run.weights.astype(np.float32)
    assert (w[..., 0] >= w[..., 1]).all()
    # alignment report and progress events
    assert m["alignment"]["aligned_share"] > 0.95
    assert m["alignment"]["tokens"] == T
    kinds = [e["event"] for e in events]
    assert kinds[-1] == "done" and "progress" in kinds
    last = [e for e in events if e["event"] == "progress"][-1]
    assert last["sentences_done"] == last["sentences_total"] == sum(kept)
    # token texts and words are kept for display / export
    s0 = run.sentences[1]
    assert s0["text"].startswith("President Bush on Tuesday")
    assert len(s0["tokens"]) == run.sentence_offsets[2] - run.sentence_offsets[1]


@pytest.mark.slow
@needs_ewt
def test_route_equals_the_sentence_run_alone(tiny_mixtral, tmp_path):
    """Batched extraction (right padding) gives each sentence the routes it gets alone."""
    import torch

    from moe_tui.core.extract.capture import RouteCapture
    from moe_tui.core.extract.models import load_model

    run = RunStore(tmp_path).open(extract(_opts(tiny_mixtral, tmp_path)).name)
    loaded = load_model(str(tiny_mixtral), device="cpu", dtype="float32")
    off = run.sentence_offsets
    with RouteCapture(loaded) as cap:
        for s in (0, 7, N_SENT - 1):
            ids = torch.from_numpy(run.token_ids[off[s]:off[s + 1]].astype(np.int64))[None]
            experts, weights = cap.run(ids, torch.ones_like(ids))
            np.testing.assert_array_equal(experts[0], run.experts[off[s]:off[s + 1]])
            np.testing.assert_allclose(weights[0].astype(np.float32),
                                       run.weights[off[s]:off[s + 1]].astype(np.float32), atol=2e-3)


@pytest.mark.slow
@needs_ewt
def test_second_extract_is_a_cache_hit(tiny_mixtral, tmp_path, monkeypatch):
    first = extract(_opts(tiny_mixtral, tmp_path))
    import moe_tui.core.extract.models

    def no_load(*a, **k):
        raise AssertionError("a cache hit must not load the model")

    monkeypatch.setattr(moe_tui.core.extract.models, "load_model", no_load)
    events = []
    assert extract(_opts(tiny_mixtral, tmp_path, batch_size=3), progress=collect(events)) == first
    assert {"event": "stage", "stage": "cache-hit"} in events


@pytest.mark.slow
@needs_ewt
def test_identity_changes_with_tagset_and_selection(tiny_mixtral, tmp_path):
    a = extract(_opts(tiny_mixtral, tmp_path, max_sentences=6))
    b = extract(_opts(tiny_mixtral, tmp_path, max_sentences=6, tagset="paper15"))
    c = extract(_opts(tiny_mixtral, tmp_path, max_sentences=None, sample=6, seed=1))
    assert len({a, b, c}) == 3
    rb = RunStore(tmp_path).open(b.name)
    assert "AUX" not in rb.tags and len(rb.tags) == 15


def _npy_bytes(run_dir):
    """Every array of the run: routes and sentence text (schema 2 keeps everything in .npy files)."""
    out = {p.name: p.read_bytes() for p in sorted(run_dir.glob("*.npy"))}
    assert "texts_bytes.npy" in out and "token_piece.npy" in out
    return out


@pytest.mark.slow
@needs_ewt
def test_cancelled_extraction_resumes_to_the_same_run(tiny_mixtral, tmp_path):
    ref = extract(_opts(tiny_mixtral, tmp_path / "ref"))
    calls = {"n": 0}

    def cancel_after_two():
        calls["n"] += 1
        return calls["n"] > 2

    with pytest.raises(Cancelled, match="2 of 5 batches kept"):
        extract(_opts(tiny_mixtral, tmp_path / "cut"), should_cancel=cancel_after_two)
    store = RunStore(tmp_path / "cut")
    [info] = store.list_runs()
    assert info.status == "partial"
    events = []
    resumed = extract(_opts(tiny_mixtral, tmp_path / "cut"), progress=collect(events))
    first = [e for e in events if e["event"] == "progress"][0]
    assert first["sentences_done"] > 10  # the kept shards were not redone
    assert _npy_bytes(resumed) == _npy_bytes(ref)


@pytest.mark.slow
@needs_ewt
def test_oom_halves_the_batch_and_keeps_routes(tiny_mixtral, tmp_path, monkeypatch):
    import torch

    import moe_tui.core.extract.capture

    ref = RunStore(tmp_path / "small").open(extract(_opts(tiny_mixtral, tmp_path / "small", batch_size=2)).name)
    real_run = moe_tui.core.extract.capture.RouteCapture.run
    seen = []

    def flaky(self, input_ids, attention_mask):
        seen.append(input_ids.shape[0])
        if input_ids.shape[0] > 2:
            raise torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 2.00 GiB")
        return real_run(self, input_ids, attention_mask)

    monkeypatch.setattr(moe_tui.core.extract.capture.RouteCapture, "run", flaky)
    events = []
    run = RunStore(tmp_path / "big").open(
        extract(_opts(tiny_mixtral, tmp_path / "big", batch_size=8), progress=collect(events)).name)
    notices = [e["message"] for e in events if e["event"] == "notice"]
    assert notices == ["out of memory on a batch of 8 sentences: batch halved to 4",
                       "out of memory on a batch of 4 sentences: batch halved to 2"]
    assert max(seen[2:]) == 2
    np.testing.assert_array_equal(run.experts, ref.experts)
