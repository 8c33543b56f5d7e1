"""Generation: prompts -> ``model.generate`` with the KV cache, routing of every prompt and generated token captured,
the continuation split into words and tagged -> a cached run with a per-token ``origin``.

A run made here has the format of an extraction run (one sentence per prompt: the prompt's tokens, then the tokens
generated after it; ``token_ids``, ``sentence_offsets``, ``special``, ``experts``, ``weights``, optional ``logits``),
plus ``origin`` (uint8 ``[T]``: 0 prompt, 1 generated). Its manifest holds the generation settings, each prompt's
generated text and why it stopped, and the tagger with its accuracy (``tagging``).

What is recorded for a generated token is the routing of the forward pass that *read* it (the step after it was
chosen): the token's own routing, as in teacher-forced extraction. The last token chosen is never read by
``generate``, so one more step is run for it (``max_new_tokens + 1`` are generated and the extra one dropped); a
row that ends with end-of-sequence keeps generating one step more, so that the end-of-sequence token is read too.

Batches are planned longest prompt first and left-padded (the position ids ``generate`` builds from the attention
mask make padding change no route). Like extraction, every batch is an atomic shard: a killed run resumes, a
cancelled one keeps its finished batches. With ``do_sample`` each batch draws from its own seeded stream, so a
resumed run draws what an uninterrupted one would (for the same ``--batch-size``).
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import shutil
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Callable

import numpy as np

from moe_tui.cache.layout import ORIGIN_NAMES, run_id_for
from moe_tui.cache.store import RunStore
from moe_tui.cache.writer import RunWriter, run_lock, update_manifest
from moe_tui.core.extract.events import Done, EventSink, Notice, Progress, Stage
from moe_tui.core.extract.options import GenerateOptions
from moe_tui.errors import Cancelled, GenerationError, ModelError

__all__ = ["GenerateOptions", "generate", "generation_identity", "GENERATION_VERSION", "ORIGIN_NAMES"]

# part of a generation run's identity: bump when the arrays would change for the same inputs
GENERATION_VERSION = 1
_MAX_LISTED_DIFFERENCES = 1000


@dataclass
class _Corpusish:
    """What :func:`moe_tui.core.extract.pipeline.build_identity` reads of a corpus, for a prompts file."""

    path: str
    sha256: str
    format: str
    pos_column: str | None
    selection: dict
    tagset: str


def _check_settings(opts: GenerateOptions) -> None:
    for name, ok in (("max_new_tokens", isinstance(opts.max_new_tokens, int) and opts.max_new_tokens >= 1),
                     ("batch_size", isinstance(opts.batch_size, int) and opts.batch_size >= 1),
                     ("temperature", isinstance(opts.temperature, (int, float)) and 0 < opts.temperature < float("inf")),
                     ("top_p", isinstance(opts.top_p, (int, float)) and 0 < opts.top_p <= 1),
                     ("top_k_sampling", isinstance(opts.top_k_sampling, int) and opts.top_k_sampling >= 0)):
        if not ok:
            value = getattr(opts, name)
            want = {"max_new_tokens": "an integer >= 1", "batch_size": "an integer >= 1",
                    "temperature": "a number > 0", "top_p": "a number in (0, 1]",
                    "top_k_sampling": "an integer >= 0"}[name]
            raise GenerationError(f"--{name.replace('_', '-')} must be {want}, got {value!r}")
    if opts.prompt_pos not in ("tagger", "gold"):
        raise GenerationError(f"--prompt-pos must be tagger or gold, got {opts.prompt_pos!r}")


def generation_settings(opts: GenerateOptions) -> dict:
    """The settings that decide the generated tokens (part of the run identity). Sampling settings (and the batch
    size, which decides how the seeded streams are drawn) only when sampling."""
    out: dict = {"max_new_tokens": int(opts.max_new_tokens), "do_sample": bool(opts.do_sample), "num_beams": 1,
                 "use_cache": True}
    if opts.do_sample:
        out.update({"temperature": float(opts.temperature), "top_p": float(opts.top_p),
                    "top_k": int(opts.top_k_sampling), "seed": int(opts.seed), "batch_size": int(opts.batch_size)})
    return out


def generation_identity(opts: GenerateOptions, prompts, fingerprint: dict, tagger) -> dict:
    """What makes two generation runs the same run: model x prompts x generation settings x tagger x options."""
    from moe_tui.core.extract.pipeline import EXTRACTION_VERSION, ExtractOptions, build_identity

    corpus = _Corpusish(path=prompts.path, sha256=prompts.sha256, format=f"prompts:{prompts.format}",
                        pos_column=None, selection=dict(prompts.selection), tagset=opts.tagset)
    base = build_identity(ExtractOptions(model=opts.model, data=prompts.path, dtype=opts.dtype,
                                         quantization=opts.quantization, trust_remote_code=opts.trust_remote_code),
                          corpus, fingerprint)
    base["extraction_version"] = EXTRACTION_VERSION
    base.update({"kind": "generation", "generation_version": GENERATION_VERSION,
                 "generation": generation_settings(opts), "tagger": dict(tagger.identity),
                 "prompt_pos": opts.prompt_pos})
    return base


# ------------------------------------------------------------------------------------------------ entry point
def generate(opts: GenerateOptions, *, progress: EventSink | None = None,
             should_cancel: Callable[[], bool] | None = None) -> Path:
    """Generate from every prompt (or find the run in the cache) and return the run's directory.

    ``progress`` receives the events of :mod:`moe_tui.core.extract.events`; ``should_cancel`` is polled at every
    decoding step: a cancelled batch is dropped, finished ones are kept (``Cancelled``)."""
    from moe_tui.core.extract.models import resolve_model_fingerprint
    from moe_tui.core.extract.prompts import read_prompts
    from moe_tui.core.extract.tagsets import check_tagset
    from moe_tui.core.tagger import load_tagger

    emit: EventSink = progress or (lambda e: None)
    cancelled = should_cancel or (lambda: False)
    _check_settings(opts)
    try:
        check_tagset(opts.tagset)
    except Exception as exc:  # noqa: BLE001 - a CorpusError line
        raise GenerationError(str(exc)) from None
    prompts = read_prompts(opts.prompts, format=opts.prompt_format, max_prompts=opts.max_prompts,
                           prompt_words=opts.prompt_words)
    if opts.prompt_pos == "gold" and prompts.format != "conllu":
        raise GenerationError(f"--prompt-pos gold needs CoNLL-U prompts (gold words and tags); {prompts.path} "
                              f"is {prompts.format}")
    tagger = load_tagger(opts.tagger)
    if tagger.tagset != "upos" and tagger.tagset != opts.tagset:
        raise GenerationError(f"tagger {opts.tagger} gives {tagger.tagset} tags; it cannot tag a run in --tagset "
                              f"{opts.tagset}")
    fingerprint = resolve_model_fingerprint(opts.model, revision=opts.revision,
                                            trust_remote_code=opts.trust_remote_code)
    identity = generation_identity(opts, prompts, fingerprint, tagger)
    store = RunStore(opts.cache_dir)
    run_id = run_id_for(identity)
    run_dir = store.path(run_id)

    def needs_work() -> bool:
        if not store.is_complete(run_id):
            return True
        manifest = _manifest(run_dir)
        return (opts.verify and "verification" not in manifest) or (
            opts.save_logits and "logits" not in manifest.get("arrays", {}))

    if not needs_work():
        emit(Stage("cache-hit"))
        emit(Done(str(run_dir), run_id))
        return run_dir
    from moe_tui.core.extract.models import check_quantization

    check_quantization(opts.quantization, opts.device)
    fresh_dir = not run_dir.exists()
    try:
        with run_lock(run_dir, on_wait=lambda m: emit(Notice(m))):
            if store.is_complete(run_id):
                manifest = _manifest(run_dir)
                if opts.save_logits and "logits" not in manifest.get("arrays", {}):
                    raise GenerationError(f"run {run_id} was generated without --save-logits; its logits cannot be "
                                          f"added later (generate again after deleting {run_dir})")
                if opts.verify and "verification" not in manifest:
                    loaded = _load(opts, emit)
                    _verify_into(loaded, run_dir, opts, emit, cancelled)
            else:
                _generate_locked(opts, prompts, tagger, identity, run_dir, emit, cancelled)
    except BaseException:
        if fresh_dir and not any(run_dir.glob("shards/shard-*.npz")):
            shutil.rmtree(run_dir, ignore_errors=True)
        raise
    emit(Done(str(run_dir), run_id))
    return run_dir


def _manifest(run_dir: Path) -> dict:
    try:
        return json.loads((run_dir / "manifest.json").read_text())
    except (OSError, ValueError):
        return {}


def _load(opts: GenerateOptions, emit: EventSink):
    from moe_tui.core.extract.models import load_model
    from moe_tui.core.extract.pipeline import _quiet_transformers

    emit(Stage("loading-model"))
    _quiet_transformers()
    loaded = load_model(opts.model, dtype=opts.dtype, device=opts.device, trust_remote_code=opts.trust_remote_code,
                        revision=opts.revision, device_map=opts.device_map, max_memory=opts.max_memory,
                        quantization=opts.quantization, offload_folder=opts.offload_folder, keep_lm=True)
    if loaded.lm is None:
        raise GenerationError(f"model {loaded.facts.name_or_path} cannot generate: transformers loads it as "
                              f"{loaded.facts.architecture_class}, which has no language-model head "
                              "(moe-tui generate needs a causal LM; moe-tui extract reads it)")
    return loaded


def _context_length(loaded) -> int | None:
    from moe_tui.core.extract.pipeline import _model_max_length

    return _model_max_length(loaded)


def _batch_seed(seed: int, batch: int) -> int:
    return int.from_bytes(hashlib.sha256(f"moe-tui generate {seed} {batch}".encode()).digest()[:8], "little") >> 1


# ------------------------------------------------------------------------------------------------ the run
@dataclass
class _Encoded:
    ids: list[int]
    offsets: list[tuple[int, int]]
    special: list[bool]


def _encode_prompts(tokenizer, prompts) -> list[_Encoded]:
    out = []
    texts = [p.text for p in prompts.items]
    for a in range(0, len(texts), 512):
        enc = tokenizer(texts[a:a + 512], return_offsets_mapping=True, add_special_tokens=True,
                        return_special_tokens_mask=True, return_attention_mask=False, return_token_type_ids=False,
                        verbose=False)
        masks = enc.get("special_tokens_mask")
        for i, ids in enumerate(enc["input_ids"]):
            out.append(_Encoded(list(ids), [tuple(o) for o in enc["offset_mapping"][i]],
                                [bool(x) for x in masks[i]] if masks is not None else [False] * len(ids)))
    return out


def _generate_locked(opts: GenerateOptions, prompts, tagger, identity: dict, run_dir: Path, emit: EventSink,
                     cancelled: Callable[[], bool]) -> None:
    from moe_tui.core.extract.gencapture import GenerationCapture
    from moe_tui.core.extract.pipeline import make_plan

    writer = RunWriter(run_dir, identity)
    writer.begin()
    loaded = _load(opts, emit)
    tok = loaded.tokenizer
    emit(Stage("aligning"))
    encoded = _encode_prompts(tok, prompts)
    ctx = _context_length(loaded)
    for p, e in zip(prompts.items, encoded):
        if not any(not s for s in e.special):
            raise GenerationError(f"{p.where}: the prompt is empty once tokenized")
        if ctx is not None and len(e.ids) + opts.max_new_tokens > ctx:
            what = (f"has {len(e.ids)} tokens, longer than the model's context of {ctx}" if len(e.ids) > ctx else
                    f"has {len(e.ids)} tokens; with --max-new-tokens {opts.max_new_tokens} it needs "
                    f"{len(e.ids) + opts.max_new_tokens} positions, the model's context is {ctx}")
            raise GenerationError(f"{p.where}: prompt {p.id!r} {what}")
    lengths = [len(e.ids) for e in encoded]
    fresh = make_plan(lengths, max(1, opts.batch_size), None)
    plan = writer.load_plan()
    if plan != fresh:  # generation plans are never reused across batch sizes: sampling depends on them
        if plan is not None:
            emit(Notice("the batch plan changed (another --batch-size?): earlier batches are generated again"))
        plan = fresh
        writer.clear_shards()
        writer.save_plan(plan)
    done = writer.done_shards(len(plan))
    if opts.save_logits:
        done = {b for b in done if writer.shard_has(b, "logits")}
    n_prompts = len(encoded)
    total_tokens = sum(lengths) + n_prompts * opts.max_new_tokens
    prompts_done = sum(len(plan[b]) for b in done)
    tokens_done = 0
    emit(Stage("generating"))
    t0 = time.perf_counter()
    prompts_now = 0
    gen = _Generator(loaded, opts)
    with GenerationCapture(loaded, save_logits=opts.save_logits) as capture:
        for b, batch in enumerate(plan):
            if b in done:
                continue
            if cancelled():
                raise Cancelled(f"generation cancelled; {len(done)} of {len(plan)} batches kept, "
                                "run the same command again to resume")
            rows = gen.run(capture, [encoded[i].ids for i in batch], _batch_seed(opts.seed, b), cancelled)
            if rows is None:
                raise Cancelled(f"generation cancelled; {len(done)} of {len(plan)} batches kept, "
                                "run the same command again to resume")
            shard = _shard(batch, [prompts.items[i] for i in batch], [encoded[i] for i in batch], rows, tok, tagger,
                           opts)
            writer.write_shard(b, shard)
            done.add(b)
            prompts_done += len(batch)
            prompts_now += len(batch)
            tokens_done += int(shard["lengths"].sum())
            dt = time.perf_counter() - t0
            rate = tokens_done / dt if dt > 0 else 0.0
            eta = dt / prompts_now * (n_prompts - prompts_done) if prompts_now else None
            emit(Progress(prompts_done, n_prompts, min(total_tokens, tokens_done), total_tokens, rate, eta))
        routers = capture.routers_info()
    if any(r["logits"] is None for r in routers):  # every batch was written before: run one to learn the routers
        with GenerationCapture(loaded, save_logits=False) as capture:
            gen.run(capture, [encoded[plan[0][0]].ids], 0, lambda: False, max_new_tokens=1)
            routers = capture.routers_info()
    emit(Stage("finalizing"))
    _finalize(writer, plan, prompts, loaded, identity, opts, tagger, routers)
    if opts.verify:
        _verify_into(loaded, run_dir, opts, emit, cancelled)


class _DelayedEos:
    """Stopping criterion: a row is finished once an end-of-sequence token it generated has been *read* (one step
    after it was chosen), so that the end-of-sequence token is routed too. Having ``eos_token_id`` makes
    ``generate`` pad the rows that finished."""

    def __init__(self, prompt_width: int, eos_ids: list[int]):
        import torch

        self.prompt_width = prompt_width
        self.eos_token_id = torch.tensor(eos_ids, dtype=torch.long)

    def __call__(self, input_ids, scores, **kwargs):
        import torch

        gen = input_ids[:, self.prompt_width:-1]
        if gen.shape[1] == 0 or self.eos_token_id.numel() == 0:
            return torch.zeros(input_ids.shape[0], dtype=torch.bool, device=input_ids.device)
        return torch.isin(gen, self.eos_token_id.to(gen.device)).any(dim=1)


class _Cancel:
    """Stopping criterion: every row is finished once the user cancels."""

    def __init__(self, cancelled: Callable[[], bool]):
        self.cancelled = cancelled

    def __call__(self, input_ids, scores, **kwargs):
        import torch

        return torch.full((input_ids.shape[0],), bool(self.cancelled()), dtype=torch.bool, device=input_ids.device)


def _eos_ids(loaded) -> list[int]:
    ids: list[int] = []
    for src in (getattr(loaded.lm, "generation_config", None), getattr(loaded.lm, "config", None), loaded.tokenizer):
        v = getattr(src, "eos_token_id", None)
        if v is None:
            continue
        for x in (v if isinstance(v, (list, tuple)) else [v]):
            if isinstance(x, int) and x not in ids:
                ids.append(x)
        if ids:
            break
    return ids


class _Generator:
    """Runs ``generate`` on one batch of prompts under the capture; returns, per row, the kept generated ids, why
    generation stopped, and the routes of the prompt and kept tokens."""

    def __init__(self, loaded, opts: GenerateOptions):
        tok = loaded.tokenizer
        pad = tok.pad_token_id
        if pad is None:
            pad = tok.eos_token_id if tok.eos_token_id is not None else 0
        self.loaded = loaded
        self.opts = opts
        self.pad_id = int(pad)
        self.eos = _eos_ids(loaded)

    def config(self, max_new_tokens: int):
        from transformers import GenerationConfig

        o = self.opts
        kw = dict(max_new_tokens=max_new_tokens + 1, do_sample=bool(o.do_sample), num_beams=1, use_cache=True,
                  pad_token_id=self.pad_id, eos_token_id=None, return_dict_in_generate=True)
        if o.do_sample:
            kw.update(temperature=float(o.temperature), top_p=float(o.top_p), top_k=int(o.top_k_sampling))
        else:
            kw.update(temperature=None, top_p=None, top_k=None)
        return GenerationConfig(**kw)

    def run(self, capture, rows: list[list[int]], seed: int, cancelled: Callable[[], bool],
            max_new_tokens: int | None = None):
        import torch
        from transformers import StoppingCriteriaList

        n_new = self.opts.max_new_tokens if max_new_tokens is None else max_new_tokens
        B, P = len(rows), max(len(r) for r in rows)
        ids = torch.full((B, P), self.pad_id, dtype=torch.long)
        mask = torch.zeros((B, P), dtype=torch.long)
        for b, r in enumerate(rows):  # left padding
            ids[b, P - len(r):] = torch.tensor(r, dtype=torch.long)
            mask[b, P - len(r):] = 1
        dev = self.loaded.input_device
        ids, mask = ids.to(dev), mask.to(dev)
        stop = StoppingCriteriaList([_DelayedEos(P, self.eos), _Cancel(cancelled)])
        if self.opts.do_sample:
            torch.manual_seed(seed)
        from transformers import GenerationConfig

        lm = self.loaded.lm
        # generate() fills every setting left unset from the model's generation_config.json (repetition penalty,
        # its own eos and sampling defaults...): a blank one while it runs, so that only our settings apply
        saved, lm.generation_config = lm.generation_config, GenerationConfig()
        capture.start()
        try:
            with torch.inference_mode():
                out = lm.generate(input_ids=ids, attention_mask=mask, generation_config=self.config(n_new),
                                  stopping_criteria=stop)
        except (ModelError, GenerationError):
            raise
        except Exception as exc:  # noqa: BLE001 - one line
            msg = " ".join(str(exc).split()) or type(exc).__name__
            raise ModelError(f"generation with {self.loaded.facts.name_or_path} failed: {msg[:300]}") from exc
        finally:
            capture.stop()
            lm.generation_config = saved
        if cancelled():
            return None  # what was recorded is dropped by the next start()
        experts, weights, logits = capture.collect(B)
        seq = out.sequences.cpu().numpy()
        T = experts.shape[1]
        eos = set(self.eos)
        result = []
        for b, r in enumerate(rows):
            gen = seq[b, P:].tolist()
            keep, finish = min(n_new, len(gen)), "length"
            for j, t in enumerate(gen[:n_new]):
                if t in eos:
                    keep, finish = j + 1, "eos"
                    break
            a, e = P - len(r), P + keep
            if e > T:
                raise ModelError(f"generation read {T - P} generated tokens of row {b} but kept {keep}: the routing "
                                 "of a kept token is missing")
            result.append({"generated": gen[:keep], "finish": finish, "experts": experts[b, a:e],
                           "weights": weights[b, a:e], "logits": None if logits is None else logits[b, a:e]})
        return result


def _continuation_offsets(tokenizer, context: list[int], gen: list[int]) -> tuple[str, list[tuple[int, int]]]:
    """The text of ``gen`` decoded after ``context`` (the prompt's last tokens, so that a leading space or a word
    continued is decoded as in context) and each generated token's character span in it. A token that completes
    no character yet (a partial UTF-8 byte sequence) gets the span of the first character the next token
    completes; special tokens (end of sequence) get an empty span."""
    if not gen:
        return "", []
    ref = tokenizer.decode(context, skip_special_tokens=True, clean_up_tokenization_spaces=False)
    texts = tokenizer.batch_decode([context + gen[:i + 1] for i in range(len(gen))], skip_special_tokens=True,
                                   clean_up_tokenization_spaces=False)
    full = texts[-1]
    if not full.startswith(ref):
        ref = _common_prefix(ref, full)
    text = full[len(ref):]
    specials = set(tokenizer.all_special_ids)
    ends = []
    prev = 0
    for t in texts:
        cur = t[len(ref):] if t.startswith(ref) else t[len(_common_prefix(ref, t)):]
        end = max(prev, len(_common_prefix(cur, text)))
        ends.append(end)
        prev = end
    spans: list[tuple[int, int]] = []
    start = 0
    for end in ends:
        spans.append((start, end))
        start = end
    # tokens with nothing of their own (partial characters): the first character the next token completes
    for i in range(len(spans) - 1, -1, -1):
        a, b = spans[i]
        if a == b and gen[i] not in specials:
            nxt = next((spans[j] for j in range(i + 1, len(spans)) if spans[j][1] > spans[j][0]), None)
            if nxt is not None:
                spans[i] = (nxt[0], nxt[0] + 1)
    return text, spans


def _common_prefix(a: str, b: str) -> str:
    n = min(len(a), len(b))
    i = 0
    while i < n and a[i] == b[i]:
        i += 1
    return a[:i]


def _shard(batch: list[int], prompts: list, encoded: list[_Encoded], rows: list[dict], tok, tagger,
           opts: GenerateOptions) -> dict:
    """The shard arrays of one batch: the run's per-token arrays, ``origin``, ``logits`` (with ``save_logits``)
    and the batch's sentence records (``gen_records``: UTF-8 JSON bytes, read back when the run is finalized)."""
    from moe_tui.core.extract.align import AlignmentReport, align_tokens
    from moe_tui.core.extract.corpus import Sentence, Word
    from moe_tui.core.extract.pipeline import _shard_arrays
    from moe_tui.core.extract.tagsets import map_tag

    specials = set(tok.all_special_ids)
    texts, word_spans, conts, cont_spans = [], [], [], []
    for p, e, r in zip(prompts, encoded, rows):
        cont, spans = _continuation_offsets(tok, e.ids[-8:], r["generated"])
        conts.append(cont)
        cont_spans.append(spans)
        text = p.text + cont
        texts.append(text)
        pw = [(w.start, w.end) for w in p.words] if p.words else tagger.split(p.text)
        gw = [(a + len(p.text), b + len(p.text)) for a, b in tagger.split(cont)]
        word_spans.append((pw, gw))
    tags = tagger.tag([[t[a:b] for a, b in pw + gw] for t, (pw, gw) in zip(texts, word_spans)])
    aligned, records, routes, origins = [], [], [], []
    for p, e, r, text, (pw, gw), tg, cont, spans in zip(prompts, encoded, rows, texts, word_spans, tags, conts,
                                                        cont_spans):
        tg = [map_tag(t, opts.tagset) if tagger.tagset == "upos" else t for t in tg]
        if opts.prompt_pos == "gold" and p.words:
            tg[:len(pw)] = [map_tag(w.upos, opts.tagset) for w in p.words]
        words = tuple(Word(text[a:b], t, a, b) for (a, b), t in zip(pw + gw, tg))
        sent = Sentence(str(p.id), text, words)
        gen = r["generated"]
        n0 = len(p.text)
        ids = e.ids + gen
        offsets = e.offsets + [(a + n0, b + n0) for a, b in spans]
        special = e.special + [t in specials for t in gen]
        # an id the tokenizer has no piece for (models pad their vocabulary): named by its number
        pieces = [pc if pc is not None else f"[id {i}]" for pc, i in zip(tok.convert_ids_to_tokens(ids), ids)]
        al = align_tokens(sent, ids, offsets, special, pieces, specials, opts.tagset)
        aligned.append(al)
        routes.append((r["experts"], r["weights"], r["logits"]))
        origins.append(np.concatenate([np.zeros(len(e.ids), np.uint8), np.ones(len(gen), np.uint8)]))
        gold_check = None
        if p.words:  # the tagger against the prompt's gold tags (recorded, whatever --prompt-pos says)
            predicted = [map_tag(t, opts.tagset) if tagger.tagset == "upos" else t
                         for t in tagger.tag([[w.form for w in p.words]])[0]]
            gold_check = [sum(a == map_tag(w.upos, opts.tagset) for a, w in zip(predicted, p.words)), len(p.words)]
        rep = AlignmentReport()
        rep._add(sent, al)
        records.append({"id": sent.sent_id, "text": text, "words": [[w.form, w.upos, w.start, w.end] for w in words],
                        "tokens": list(al.tokens), "skipped": False, "generated_text": cont, "finish": r["finish"],
                        "prompt_tokens": len(e.ids), "generated_tokens": len(gen), "prompt_words": len(pw),
                        "tagger_on_gold": gold_check, "alignment": rep.to_dict()})
    arrays = _shard_arrays(batch, aligned, routes)
    arrays["origin"] = np.concatenate(origins)
    arrays["gen_records"] = np.frombuffer(json.dumps(records, ensure_ascii=False).encode("utf-8"), dtype=np.uint8)
    return arrays


def _read_records(writer: RunWriter, plan: list[list[int]], n: int) -> list[dict]:
    records: list[dict | None] = [None] * n
    for b, batch in enumerate(plan):
        try:
            with np.load(writer.shard_path(b), allow_pickle=False) as z:
                recs = json.loads(z["gen_records"].tobytes().decode("utf-8"))
        except Exception:  # noqa: BLE001
            from moe_tui.errors import CacheError

            raise CacheError(f"shard {b} of run {writer.run_dir.name} is missing or damaged; run the same command "
                             "again") from None
        for i, rec in zip(batch, recs):
            records[i] = rec
    return [r for r in records if r is not None]


def _finalize(writer: RunWriter, plan, prompts, loaded, identity: dict, opts: GenerateOptions, tagger,
              routers: list[dict]) -> None:
    from moe_tui.core.extract.logits import routing_manifest
    from moe_tui.core.extract.provenance import provenance
    from moe_tui.core.extract.tagsets import TAGSETS

    records = _read_records(writer, plan, len(prompts.items))
    facts = loaded.facts
    facts_dict = asdict(facts)
    gold = [r["tagger_on_gold"] for r in records if r.get("tagger_on_gold")]
    on_prompts = ({"data": f"the prompts' gold words ({Path(prompts.path).name})", "words": sum(g[1] for g in gold),
                   "accuracy": sum(g[0] for g in gold) / max(1, sum(g[1] for g in gold))} if gold else None)
    finished = {"eos": sum(r["finish"] == "eos" for r in records), "length": sum(r["finish"] == "length"
                                                                                  for r in records)}
    generation = {
        "settings": {**generation_settings(opts), "eos_token_ids": _eos_ids(loaded), "pad_token_id":
                     _Generator(loaded, opts).pad_id, "padding_side": "left",
                     "note": "nothing of the model's generation_config.json applies but its end-of-sequence ids"},
        "prompts": len(records),
        "prompt_tokens": sum(r["prompt_tokens"] for r in records),
        "generated_tokens": sum(r["generated_tokens"] for r in records),
        "finished": finished,
        "outputs": [{"id": r["id"], "generated_text": r["generated_text"], "finish": r["finish"],
                     "prompt_tokens": r["prompt_tokens"], "generated_tokens": r["generated_tokens"]}
                    for r in records],
    }
    info = dict(tagger.info)
    tagging = {"tagger": info, "prompt_pos": opts.prompt_pos, "accuracy": info.get("accuracy"),
               "accuracy_on_prompts": on_prompts,
               "words": {"prompt": sum(r["prompt_words"] for r in records),
                         "generated": sum(len(r["words"]) - r["prompt_words"] for r in records)}}
    manifest_extra = {
        "model": {**facts_dict, "name_or_path": identity["model"]["name_or_path"], "fingerprint": identity["model"]},
        "corpus": {**identity["corpus"], "n_sentences": len(records), "n_sentences_in_file": prompts.n_in_file},
        "tagset": {"name": opts.tagset, "tags": list(TAGSETS[opts.tagset])},
        "alignment": _alignment(records),
        "options": {"dtype": opts.dtype, "quantization": opts.quantization,
                    "trust_remote_code": bool(opts.trust_remote_code)},
        "routing": routing_manifest(routers, saved=opts.save_logits, columns=int(facts.num_experts)),
        "provenance": provenance(loaded),
        "generation": generation,
        "tagging": tagging,
    }
    optional = ("origin", "logits") if opts.save_logits else ("origin",)
    clean = [{k: r[k] for k in ("id", "text", "words", "tokens", "skipped")} for r in records]
    writer.finalize(len(plan), clean, manifest_extra, optional=optional)


def _alignment(records: list[dict]) -> dict:
    """The alignment counts of the run (extraction's ``alignment`` field), summed over the sentences."""
    from moe_tui.core.extract.align import AlignmentReport

    report = AlignmentReport()
    for name in ("sentences", "tokens", "special_tokens", "words", "aligned_tokens", "boundary_crossing",
                 "words_without_token"):
        setattr(report, name, sum(int(r["alignment"][name]) for r in records))
    report._finish()
    return report.to_dict()


# ------------------------------------------------------------------------------------------------ verification
def verify_routes(loaded, run, *, batch_size: int = 8, cancelled: Callable[[], bool] | None = None,
                  limit: int = _MAX_LISTED_DIFFERENCES) -> dict:
    """Teacher-forced check of a generation run: every sentence (prompt + kept continuation) in one forward pass
    without cache or padding on the left, its expert sets compared with the stored ones (as sets: rank order aside).

    Returns ``{"token_layers", "equal", "share_equal", "differing", "differences": [...], "max_margin"}``; each
    difference (the first ``limit``) names the sentence, token, decoder layer and origin, both expert sets, and
    the forced pass's router-logit margin at the selection boundary (k-th minus (k+1)-th highest logit, fp32): a
    near-tie has a margin near 0."""
    import torch

    from moe_tui.core.extract.gencapture import GenerationCapture

    stop = cancelled or (lambda: False)
    off = np.asarray(run.sentence_offsets)
    ids_all = np.asarray(run.token_ids)
    stored = np.asarray(run.experts)
    origin = np.asarray(run.origin) if run.origin is not None else np.zeros(len(ids_all), np.uint8)
    layers = list(run.moe_layers)
    k = stored.shape[2]
    n_exp = int(run.num_experts)
    total = equal = 0
    diffs: list[dict] = []
    margins: list[float] = []
    order = np.argsort(-np.diff(off), kind="stable")
    pad = loaded.tokenizer.pad_token_id or 0
    with GenerationCapture(loaded) as cap:
        for a in range(0, len(order), batch_size):
            if stop():
                raise Cancelled("verification cancelled; the run is kept without it")
            rows = [int(s) for s in order[a:a + batch_size] if off[s + 1] > off[s]]
            if not rows:
                continue
            width = max(int(off[s + 1] - off[s]) for s in rows)
            ids = torch.full((len(rows), width), int(pad), dtype=torch.long)
            mask = torch.zeros((len(rows), width), dtype=torch.long)
            for b, s in enumerate(rows):
                n = int(off[s + 1] - off[s])
                ids[b, :n] = torch.as_tensor(ids_all[off[s]:off[s + 1]].astype(np.int64))
                mask[b, :n] = 1
            cap.start()
            try:
                with torch.inference_mode():
                    loaded.base(input_ids=ids.to(loaded.input_device), attention_mask=mask.to(loaded.input_device),
                                use_cache=False)
            finally:
                cap.stop()
            experts, _w, logits = cap.collect(len(rows), fp32_logits=True)
            for b, s in enumerate(rows):
                lo, hi = int(off[s]), int(off[s + 1])
                forced = experts[b, :hi - lo]
                mine = stored[lo:hi]
                same = np.sort(forced, axis=-1) == np.sort(mine, axis=-1)
                eq = same.all(axis=-1)  # [n, L]
                total += eq.size
                equal += int(eq.sum())
                for t, li in zip(*np.nonzero(~eq)):
                    lg = logits[b, t, li].astype(np.float64)
                    valid = lg[:n_exp][np.isfinite(lg[:n_exp])]
                    srt = np.sort(valid)[::-1]
                    kk = int((forced[t, li] < n_exp).sum())
                    margin = float(srt[kk - 1] - srt[kk]) if 0 < kk < len(srt) else None
                    if margin is not None:
                        margins.append(margin)
                    if len(diffs) < limit:
                        diffs.append({"sentence": int(s), "token": int(t), "layer": int(layers[li]),
                                      "origin": ORIGIN_NAMES[int(origin[lo + t])],
                                      "generated": sorted(int(x) for x in mine[t, li] if x < n_exp),
                                      "forced": sorted(int(x) for x in forced[t, li] if x < n_exp),
                                      "margin": margin})
    del k
    return {"method": "one teacher-forced forward pass per sentence (prompt + continuation, no cache, right "
                      "padding), expert sets compared; margin = k-th minus (k+1)-th highest router logit of that pass",
            "token_layers": total, "equal": equal, "share_equal": equal / total if total else None,
            "differing": total - equal, "max_margin": max(margins) if margins else None,
            "differences": diffs, "differences_listed": len(diffs)}


def _verify_into(loaded, run_dir: Path, opts: GenerateOptions, emit: EventSink, cancelled) -> None:
    from moe_tui.cache.run import Run

    emit(Stage("verifying"))
    run = Run(run_dir)
    res = verify_routes(loaded, run, batch_size=max(1, opts.batch_size), cancelled=cancelled)
    emit(Notice(f"teacher-forced check: {res['equal']} of {res['token_layers']} (token, layer) expert sets equal"
                + (f"; largest margin of a difference {res['max_margin']:.3g}" if res["max_margin"] is not None
                   else "")))
    with contextlib.suppress(AttributeError):
        del run
    update_manifest(run_dir, {"verification": res})
