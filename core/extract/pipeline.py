"""Extraction: corpus -> aligned tokens -> routing captured batch by batch -> a cached run.

The pipeline is resumable: every batch of the (fixed, saved) plan is written as an atomic shard,
so a killed extraction started again with the same arguments skips the finished shards, and
the final run is the same as an uninterrupted one. A finished run is a cache hit: no model is
loaded. torch is imported only once a model has to be loaded.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import shutil
import time
from dataclasses import asdict
from pathlib import Path
from typing import Callable

import numpy as np

from moe_tui.cache.layout import run_id_for
from moe_tui.cache.store import RunStore
from moe_tui.cache.writer import RunWriter, run_lock
from moe_tui.core.extract.events import Done, EventSink, Notice, Progress, Stage
from moe_tui.core.extract.logits import add_logits, routing_manifest
from moe_tui.core.extract.options import ExtractOptions
from moe_tui.core.extract.provenance import provenance
from moe_tui.errors import Cancelled, ModelError

__all__ = ["ExtractOptions", "extract", "build_identity", "make_plan", "local_model_stamp", "EXTRACTION_VERSION"]

# Part of a run's identity: bump when the extracted arrays would change for the same inputs.
# 2: rank = descending raw router logit (was: descending weight; differs for PhiMoE and Gemma4).
EXTRACTION_VERSION = 2
_SMALL_MODEL_BYTES = 256 << 20  # local folders up to this size are fingerprinted by content


def local_model_stamp(name_or_path: str) -> str | None:
    """A fingerprint of a local model folder's files (None for hub ids).

    Small folders (the demo, test models) are hashed by content; large ones by name, size and
    modification time, so that retrained weights in the same folder make a new run.
    """
    p = Path(name_or_path).expanduser()
    if not p.is_dir():
        return None
    files = sorted(f for f in p.rglob("*") if f.is_file() and not f.name.startswith("."))
    total = sum(f.stat().st_size for f in files)
    h = hashlib.sha256()
    for f in files:
        st = f.stat()
        h.update(str(f.relative_to(p)).encode() + b"\0" + str(st.st_size).encode() + b"\0")
        if total <= _SMALL_MODEL_BYTES:
            h.update(hashlib.sha256(f.read_bytes()).digest())
        else:
            h.update(str(st.st_mtime_ns).encode())
    return h.hexdigest()


def build_identity(opts: ExtractOptions, corpus, fingerprint: dict) -> dict:
    """What makes two extractions the same run: model x corpus x tagset x options that change routes."""
    model_path = opts.model
    if Path(model_path).expanduser().exists():
        model_path = str(Path(model_path).expanduser().resolve())
    return {
        "extraction_version": EXTRACTION_VERSION,
        "model": {
            "name_or_path": model_path,
            "revision": fingerprint.get("revision"),
            "commit_hash": fingerprint.get("commit_hash"),
            "config_hash": fingerprint.get("config_hash"),
            "files": local_model_stamp(opts.model),
        },
        "corpus": {
            "path": str(Path(corpus.path).resolve()),
            "sha256": corpus.sha256,
            "format": corpus.format,
            "pos_column": corpus.pos_column,
            "selection": corpus.selection,
        },
        "tagset": corpus.tagset,
        "options": {
            "dtype": opts.dtype,
            "quantization": opts.quantization,
            "trust_remote_code": bool(opts.trust_remote_code),
        },
    }


def make_plan(lengths: list[int | None], batch_size: int, batch_tokens: int | None) -> list[list[int]]:
    """Batches of sentence indices, longest first (so memory trouble shows up at once).

    ``lengths[i]`` is sentence i's token count (None: skipped). A batch holds at most
    ``batch_size`` sentences and, if given, at most ``batch_tokens`` padded tokens.
    """
    order = sorted((i for i, n in enumerate(lengths) if n), key=lambda i: (-lengths[i], i))
    batches: list[list[int]] = []
    cur: list[int] = []
    for i in order:
        width = lengths[cur[0]] if cur else lengths[i]  # longest first: the first is the widest
        too_many = len(cur) >= batch_size
        too_wide = batch_tokens is not None and cur and width * (len(cur) + 1) > batch_tokens
        if cur and (too_many or too_wide):
            batches.append(cur)
            cur = []
        cur.append(i)
    if cur:
        batches.append(cur)
    return batches


def _is_oom(exc: BaseException) -> bool:
    import torch

    if isinstance(exc, getattr(torch, "OutOfMemoryError", ())):
        return True
    return isinstance(exc, RuntimeError) and "out of memory" in str(exc).lower()


class _BatchRunner:
    """Runs sentence rows through the capture, halving the sub-batch on out-of-memory."""

    def __init__(self, capture, loaded, emit: EventSink):
        self.capture = capture
        self.loaded = loaded
        self.emit = emit
        self.max_rows: int | None = None
        tok = loaded.tokenizer
        pad = tok.pad_token_id
        if pad is None:
            pad = tok.eos_token_id if tok.eos_token_id is not None else 0
        self.pad_id = int(pad)

    def _forward(self, rows: list[list[int]]):
        import torch

        width = max(len(r) for r in rows)
        ids = torch.full((len(rows), width), self.pad_id, dtype=torch.long)
        mask = torch.zeros((len(rows), width), dtype=torch.long)
        for b, r in enumerate(rows):
            ids[b, : len(r)] = torch.tensor(r, dtype=torch.long)
            mask[b, : len(r)] = 1
        dev = self.loaded.input_device
        experts, weights = self.capture.run(ids.to(dev), mask.to(dev))
        logits = getattr(self.capture, "last_logits", None)
        return [(experts[b, : len(r)], weights[b, : len(r)], None if logits is None else logits[b, : len(r)])
                for b, r in enumerate(rows)]

    def run(self, rows: list[list[int]]) -> list[tuple[np.ndarray, np.ndarray, np.ndarray | None]]:
        """Per row: ``experts (n, L, k)``, ``weights (n, L, k)`` and ``logits (n, L, N)`` (None without logits)."""
        out: list[tuple[np.ndarray, np.ndarray, np.ndarray | None]] = []
        start = 0
        while start < len(rows):
            size = min(len(rows) - start, self.max_rows or len(rows))
            chunk = rows[start : start + size]
            try:
                out.extend(self._forward(chunk))
            except Exception as exc:
                if not _is_oom(exc):
                    raise
                _empty_device_cache()
                if size == 1:
                    raise ModelError(
                        f"out of memory even with one sentence of {len(chunk[0])} tokens; "
                        "try --dtype bfloat16, --device-map auto or a shorter --max-length"
                    ) from None
                self.max_rows = max(1, size // 2)
                self.emit(Notice(f"out of memory on a batch of {size} sentences: batch halved to {self.max_rows}"))
                continue
            start += size
        return out


def _empty_device_cache() -> None:
    import torch

    if torch.cuda.is_available():
        torch.cuda.empty_cache()


def _sentence_record(sentence, aligned) -> dict:
    return {
        "id": sentence.sent_id,
        "text": sentence.text,
        "words": [[w.form, w.upos, w.start, w.end] for w in sentence.words],
        "tokens": list(aligned.tokens) if aligned is not None else [],
        "skipped": aligned is None,
    }


def _model_max_length(loaded) -> int | None:
    cands = []
    cfg = getattr(loaded.base, "config", None)
    for name in ("max_position_embeddings", "max_seq_len", "n_positions"):
        v = getattr(cfg, name, None)
        if isinstance(v, int) and v > 0:
            cands.append(v)
            break
    tml = getattr(loaded.tokenizer, "model_max_length", None)
    if isinstance(tml, int) and 0 < tml < 10**7:
        cands.append(tml)
    return min(cands) if cands else None


def extract(opts: ExtractOptions, *, progress: EventSink | None = None,
            should_cancel: Callable[[], bool] | None = None) -> Path:
    """Extract (or find in the cache) the run for ``opts``; return its directory.

    ``progress`` receives the events of :mod:`moe_tui.core.extract.events`; ``should_cancel`` is
    polled between batches and raises :class:`Cancelled` (finished shards are kept).
    """
    from moe_tui.core.extract.corpus import read_corpus
    from moe_tui.core.extract.distributed import dist_info
    from moe_tui.core.extract.models import resolve_model_fingerprint

    emit: EventSink = progress or (lambda e: None)
    cancelled = should_cancel or (lambda: False)
    dist = dist_info(opts.distributed)
    if opts.distributed and not dist.active:
        emit(Notice("--distributed without a launcher (torchrun, accelerate launch, srun) or with one process: "
                    "extracting alone"))

    corpus = read_corpus(opts.data, format=opts.format, tagset=opts.tagset, pos_column=opts.pos_column,
                         max_sentences=opts.max_sentences, sample=opts.sample, seed=opts.seed)
    fingerprint = resolve_model_fingerprint(opts.model, revision=opts.revision,
                                            trust_remote_code=opts.trust_remote_code)
    identity = build_identity(opts, corpus, fingerprint)
    store = RunStore(opts.cache_dir)
    run_id = run_id_for(identity)
    run_dir = store.path(run_id)

    def hit() -> Path:
        emit(Stage("cache-hit"))
        emit(Done(str(run_dir), run_id))
        return run_dir

    if store.is_complete(run_id) and (not _needs_logits(opts, run_dir) or not dist.is_main):
        return hit()  # under --distributed, rank 0 alone adds logits to a finished run
    from moe_tui.core.extract.models import check_quantization

    device, max_memory = opts.device, opts.max_memory
    if dist.active and not opts.device_map:
        from moe_tui.core.extract.distributed import rank_device

        device = rank_device(dist, opts.device)
    elif dist.active:  # a device map per rank: over this rank's share of the node's GPUs
        import torch

        from moe_tui.core.extract.distributed import rank_max_memory

        n_gpus = torch.cuda.device_count() if torch.cuda.is_available() else 0
        max_memory = rank_max_memory(dist, opts.max_memory, n_gpus, lambda i: torch.cuda.mem_get_info(i)[0])
        if n_gpus and dist.local_world_size > 1:
            device = f"cuda:{min(g for g in max_memory if isinstance(g, int))}"
    check_quantization(opts.quantization, device)  # before any directory is made
    fresh_dir = not run_dir.exists()
    # with several ranks only rank 0 holds the run lock (the others write only their own shards)
    lock = (run_lock(run_dir, on_wait=lambda m: emit(Notice(m)))
            if dist.is_main else contextlib.nullcontext())
    try:
        with lock:
            if store.is_complete(run_id):
                if not _needs_logits(opts, run_dir):
                    return hit()
                add_logits(opts, corpus, identity, run_dir, emit, cancelled, device, max_memory)
            else:
                _extract_locked(opts, corpus, identity, run_dir, emit, cancelled, dist, device, max_memory)
    except BaseException:
        # a failure before the first batch (bad model, remote code, no memory) leaves nothing behind;
        # never under --distributed, where another rank may be writing into the directory
        if not dist.active and fresh_dir and not any(run_dir.glob("shards/shard-*.npz")):
            shutil.rmtree(run_dir, ignore_errors=True)
        raise
    emit(Done(str(run_dir), run_id))
    return run_dir


def _extract_locked(opts: ExtractOptions, corpus, identity: dict, run_dir: Path, emit: EventSink,
                    cancelled: Callable[[], bool], dist=None, device: str | None = None,
                    max_memory: dict | None = None) -> None:
    """The extraction proper, under the run's lock: load, align, plan, capture shards, finalize.

    ``dist`` (a :class:`moe_tui.core.extract.distributed.DistInfo`): with several ranks, this rank extracts only the
    shards it owns; rank 0 writes the plan, waits for every shard and finalizes.
    """
    from moe_tui.core.extract.distributed import DistInfo, wait_for_plan, wait_for_shards

    dist = dist or DistInfo()
    writer = RunWriter(run_dir, identity)
    if dist.is_main:
        writer.begin()
    from moe_tui.core.extract.capture import RouteCapture

    loaded, aligned, report = _load_and_align(opts, corpus, emit, device, max_memory)
    lengths = [len(a.input_ids) if a is not None else None for a in aligned]
    fresh = make_plan(lengths, max(1, opts.batch_size), opts.batch_tokens)
    if dist.is_main:
        plan = writer.load_plan()
        if plan is None or sorted(i for b in plan for i in b) != sorted(i for b in fresh for i in b):
            plan = fresh
            writer.clear_shards()
            writer.save_plan(plan)
        elif plan != fresh:
            emit(Notice("resuming with the batch plan of the interrupted run"))
    else:  # the plan is rank 0's (it may keep an interrupted run's plan): wait for it
        plan = wait_for_plan(writer, sorted(i for b in fresh for i in b), cancelled,
                             on_wait=lambda m: emit(Notice(m)))
    done = writer.done_shards(len(plan))
    if opts.save_logits:  # shards written without logits (an earlier attempt without the flag) are redone
        done = {b for b in done if writer.shard_has(b, "logits")}
    tokens_total = sum(n for n in lengths if n)
    tokens_done = sum(lengths[i] for b in done for i in plan[b])
    sents_done = sum(len(plan[b]) for b in done)
    n_sent = sum(1 for n in lengths if n)
    emit(Stage("extracting"))
    t0, tok0 = time.perf_counter(), tokens_done
    with RouteCapture(loaded, save_logits=opts.save_logits) as capture:
        runner = _BatchRunner(capture, loaded, emit)
        for b, batch in enumerate(plan):
            if b in done or not dist.owns(b):
                continue
            if cancelled():
                raise Cancelled(f"extraction cancelled; {len(done)} of {len(plan)} batches kept, "
                                "run the same command again to resume")
            rows = [aligned[i].input_ids for i in batch]
            routes = runner.run(rows)
            writer.write_shard(b, _shard_arrays(batch, [aligned[i] for i in batch], routes))
            done.add(b)
            tokens_done += sum(len(r) for r in rows)
            sents_done += len(batch)
            dt = time.perf_counter() - t0
            rate = (tokens_done - tok0) / dt if dt > 0 else 0.0
            emit(Progress(sents_done, n_sent, tokens_done, tokens_total, rate,
                          (tokens_total - tokens_done) / rate if rate > 0 else None))
        routers = _routers_info(capture, runner, plan, aligned) if dist.is_main else []
    if dist.active and not dist.is_main:
        emit(Notice(f"rank {dist.rank} of {dist.world_size}: its batches are written; rank 0 finalizes the run"))
        return
    if dist.active:
        def on_change(now: set[int]) -> None:
            t_done = sum(lengths[i] for b in now for i in plan[b])
            emit(Progress(sum(len(plan[b]) for b in now), n_sent, t_done, tokens_total, 0.0, None))

        if len(writer.done_shards(len(plan))) < len(plan):
            emit(Notice("rank 0: waiting for the other ranks' batches"))
        wait_for_shards(writer, len(plan), cancelled, on_change)
    emit(Stage("finalizing"))
    facts = loaded.facts
    facts_dict = asdict(facts) if hasattr(facts, "__dataclass_fields__") else dict(facts)
    from moe_tui.core.extract.tagsets import TAGSETS

    manifest_extra = {
        # the name as given (hub id or folder) is kept in identity; a folder is shown by its absolute path
        "model": {**facts_dict, "name_or_path": identity["model"]["name_or_path"], "fingerprint": identity["model"]},
        "corpus": {**identity["corpus"], "n_sentences": len(corpus.sentences),
                   "n_sentences_in_file": corpus.n_sentences_in_file},
        "tagset": {"name": corpus.tagset, "tags": list(TAGSETS[corpus.tagset])},
        "alignment": report.to_dict(),
        "options": {"dtype": opts.dtype, "quantization": opts.quantization,
                    "trust_remote_code": bool(opts.trust_remote_code)},
        "routing": routing_manifest(routers, saved=opts.save_logits, columns=int(facts.num_experts)),
        "provenance": provenance(loaded),
    }
    records = [_sentence_record(s, a) for s, a in zip(corpus.sentences, aligned)]
    writer.finalize(len(plan), records, manifest_extra, optional=("logits",) if opts.save_logits else ())


def _load_and_align(opts: ExtractOptions, corpus, emit: EventSink, device, max_memory):
    emit(Stage("loading-model"))
    from moe_tui.core.extract.models import load_model

    _quiet_transformers()
    loaded = load_model(opts.model, dtype=opts.dtype, device=device if device is not None else opts.device,
                        trust_remote_code=opts.trust_remote_code, revision=opts.revision,
                        device_map=opts.device_map,
                        max_memory=max_memory if max_memory is not None else opts.max_memory,
                        quantization=opts.quantization, offload_folder=opts.offload_folder)
    emit(Stage("aligning"))
    from moe_tui.core.extract.align import align_corpus

    aligned, report = align_corpus(corpus, loaded.tokenizer, max_length=_model_max_length(loaded))
    return loaded, aligned, report


def _needs_logits(opts: ExtractOptions, run_dir: Path) -> bool:
    """``--save-logits`` asked for a finished run that has no logits.npy yet."""
    if not opts.save_logits:
        return False
    try:
        manifest = json.loads((run_dir / "manifest.json").read_text())
    except (OSError, ValueError):
        return False  # not readable: opening the run reports it
    return "logits" not in manifest.get("arrays", {})


def _routers_info(capture, runner, plan, aligned) -> list[dict]:
    """The capture's per-layer router facts; one sentence is run if no batch ran in this process (a resumed run
    whose batches were all written already)."""
    if any(r["logits"] is None for r in capture.routers_info()):
        first = next(i for batch in plan for i in batch)
        runner.run([aligned[first].input_ids])
    return capture.routers_info()


def _quiet_transformers() -> None:
    """Our progress goes to stderr as one bar or JSON lines: silence transformers' own bars and logs."""
    from transformers.utils import logging as hf_logging

    hf_logging.disable_progress_bar()
    hf_logging.set_verbosity_error()


def _shard_arrays(batch: list[int], aligned: list, routes: list[tuple]) -> dict:
    def cat(key, dtype):
        return np.concatenate([np.asarray(getattr(a, key), dtype=dtype) for a in aligned])

    extra = {}
    if routes and all(len(r) > 2 and r[2] is not None for r in routes):
        extra["logits"] = np.concatenate([r[2] for r in routes]).astype(np.float16)
    return {**extra,
        "lengths": np.array([len(a.input_ids) for a in aligned], dtype=np.int64),
        "sentence_index": np.array(batch, dtype=np.int64),
        "token_ids": cat("input_ids", np.int32),
        "word_index": cat("word_index", np.int32),
        "pos": cat("pos", np.int16),
        "special": cat("special", np.bool_),
        "crossing": cat("crossing", np.bool_),
        "offsets": np.concatenate([np.asarray(a.offsets, dtype=np.int32).reshape(-1, 2) for a in aligned]),
        "experts": np.concatenate([r[0] for r in routes]),
        "weights": np.concatenate([r[1] for r in routes]).astype(np.float16),
    }
