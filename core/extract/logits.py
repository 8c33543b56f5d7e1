"""Router logits in a run: the manifest's ``routing`` field, and adding ``logits.npy`` to a finished run.

``moe-tui extract --save-logits`` stores each router's raw logits as ``logits.npy`` (float16 ``[T, L, N]``)
while it extracts (see :mod:`moe_tui.core.extract.pipeline`). A run made without them gains them by extracting again
with the flag: :func:`add_logits` runs the corpus through the model once more, checks that the experts come
out identical to the stored ones, and adds the array. Logits are not part of the run identity, so the run id
and every other file stay as they are.
"""

from __future__ import annotations

import shutil
import time
from pathlib import Path
from typing import TYPE_CHECKING, Callable

import numpy as np

from moe_tui.cache.run import Run
from moe_tui.cache.writer import RunWriter, add_array, new_array
from moe_tui.core.extract.events import EventSink, Notice, Progress, Stage
from moe_tui.errors import Cancelled, ModelError

if TYPE_CHECKING:  # pragma: no cover
    from moe_tui.core.extract.pipeline import ExtractOptions

__all__ = ["RANK_DEFINITION", "routing_manifest", "add_logits"]

RANK_DEFINITION = ("descending raw router logit among the selected experts (the architecture's own score before "
                   "load-balancing bias, renormalisation or sparsemixer multipliers; ties: lower expert id first); "
                   "by weight for a router without logits")


def routing_manifest(routers: list[dict], *, saved: bool, columns: int, added: dict | None = None) -> dict:
    """The manifest's ``routing`` field: how ranks are ordered, per-layer router facts, and whether logits.npy
    (float16 ``[T, L, columns]``, NaN for a layer without logits) is stored."""
    logits: dict = {"saved": bool(saved), "columns": int(columns), "dtype": "float16" if saved else None,
                    "layers_without_logits": [r["layer"] for r in routers if r.get("logits") is False]}
    if added:
        logits["added"] = added
    return {"rank": RANK_DEFINITION, "routers": routers, "logits": logits}


def add_logits(opts: ExtractOptions, corpus, identity: dict, run_dir: Path, emit: "EventSink",
               cancelled: Callable[[], bool], device: str | None = None, max_memory: dict | None = None) -> None:
    """Give a finished run its logits: run the corpus again (resumable, in ``logits-shards/``), check that the
    experts come out identical to the stored ones, then add logits.npy and its manifest entries. The run's
    identity, id and every other file stay as they are."""
    from moe_tui.core.extract.capture import RouteCapture
    from moe_tui.core.extract.pipeline import _BatchRunner, _load_and_align, _routers_info, _shard_arrays, make_plan
    from moe_tui.core.extract.provenance import provenance

    run = Run(run_dir)
    writer = RunWriter(run_dir, identity, shard_dirname="logits-shards")
    loaded, aligned, _report = _load_and_align(opts, corpus, emit, device, max_memory)
    lengths = [len(a.input_ids) if a is not None else None for a in aligned]
    fresh = make_plan(lengths, max(1, opts.batch_size), opts.batch_tokens)
    plan = writer.load_plan()
    if plan is None or sorted(i for b in plan for i in b) != sorted(i for b in fresh for i in b):
        plan = fresh
        writer.shard_dir.mkdir(parents=True, exist_ok=True)
        writer.clear_shards()
        writer.save_plan(plan)
    done = {b for b in writer.done_shards(len(plan)) if writer.shard_has(b, "logits")}
    n_sent, tokens_total = sum(1 for n in lengths if n), sum(n for n in lengths if n)
    sents_done = sum(len(plan[b]) for b in done)
    tokens_done = sum(lengths[i] for b in done for i in plan[b])
    emit(Notice(f"run {run_dir.name} has no logits: extracting them (the routes are kept)"))
    emit(Stage("extracting"))
    t0, tok0 = time.perf_counter(), tokens_done
    with RouteCapture(loaded, save_logits=True) as capture:
        runner = _BatchRunner(capture, loaded, emit)
        for b, batch in enumerate(plan):
            if b in done:
                continue
            if cancelled():
                raise Cancelled("extraction cancelled; finished batches are kept, run the same command again to resume")
            rows = [aligned[i].input_ids for i in batch]
            writer.write_shard(b, _shard_arrays(batch, [aligned[i] for i in batch], runner.run(rows)))
            tokens_done += sum(len(r) for r in rows)
            sents_done += len(batch)
            rate = (tokens_done - tok0) / max(time.perf_counter() - t0, 1e-9)
            emit(Progress(sents_done, n_sent, tokens_done, tokens_total, rate,
                          (tokens_total - tokens_done) / rate if rate > 0 else None))
        routers = _routers_info(capture, runner, plan, aligned)
    emit(Stage("finalizing"))
    stored = run.experts
    off = np.asarray(run.sentence_offsets)
    n_cols = int(loaded.facts.num_experts)
    # filled in place through a memory map (a large run's logits are not held in memory), committed by add_array
    out = new_array(run_dir, "logits", np.float16, (stored.shape[0], stored.shape[1], n_cols), fill=np.nan)
    try:
        _fill_logits(writer, plan, run_dir, stored, off, n_cols, out.arr)
    except BaseException:
        out.discard()
        raise
    added = {"created": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()), "provenance": provenance(loaded)}
    routing = routing_manifest(routers, saved=True, columns=n_cols, added=added)
    del stored
    add_array(run_dir, "logits", out, {"routing": routing})
    shutil.rmtree(writer.shard_dir, ignore_errors=True)


def _fill_logits(writer: RunWriter, plan: list, run_dir: Path, stored, off: np.ndarray, n_cols: int,
                 logits: np.ndarray) -> None:
    """Copy the logits shards into ``logits [T, L, N]`` in corpus order, checking that their experts are the
    stored ones (``ModelError`` otherwise, with the shards removed)."""
    differ = 0
    for b in range(len(plan)):
        shard = writer.read_shard(b)
        if shard is None or "logits" not in shard:
            raise ModelError(f"logits batch {b} of run {run_dir.name} is missing; run the same command again")
        starts = np.concatenate([[0], np.cumsum(shard["lengths"])])
        for j, si in enumerate(shard["sentence_index"].tolist()):
            a, e = int(starts[j]), int(starts[j + 1])
            lo, hi = int(off[si]), int(off[si + 1])
            if hi - lo != e - a or shard["logits"].shape[-1] != n_cols:
                raise ModelError(f"run {run_dir.name}: sentence {si} has {hi - lo} tokens in the run but {e - a} "
                                 "now; the tokenizer changed, so logits cannot be added to this run")
            differ += int(np.any(shard["experts"][a:e] != stored[lo:hi], axis=-1).sum())
            logits[lo:hi] = shard["logits"][a:e]
    if differ:
        shutil.rmtree(writer.shard_dir, ignore_errors=True)
        raise ModelError(
            f"extracting run {run_dir.name} again gave different experts on {differ} of "
            f"{stored.shape[0] * stored.shape[1]} (token, layer) pairs, so its logits would not belong to the stored "
            f"routes (another transformers/torch version or device?); delete the run ({run_dir}) and extract it "
            "again with --save-logits")
