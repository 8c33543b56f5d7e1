"""Extraction benchmarks.

1. Capture overhead: the same batches through the bare base-model forward and through
   ``RouteCapture.run`` (hooks + one batched rank sort + one host copy per batch), interleaved in one
   process; the ratio of medians. Target <= 1.03. Also with ``save_logits=True`` (for information).
2. Batched vs one sentence at a time: 1,000 UD EWT dev sentences through the capture in
   length-sorted batches vs alone; throughput ratio. Target >= 5x.
3. Alignment: the whole of UD EWT dev aligned with a byte-level BPE tokenizer (4,000 pieces), CPU seconds,
   beside reading the corpus in the same process. Target: <= 2 s of CPU.

Run: ``.venv/bin/python -m benchmarks.bench_extract [--rounds N] [--device cpu|cuda] [--threads N]
[--clock wall|process] [--skip-batching] [--skip-alignment]``. On a shared CPU machine, ``--threads 1 --clock process`` times
this process's own CPU work (other processes' load moves wall-clock ratios by far more than 3%).
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path

from tests.helpers import EWT_DEV

CONFIGS = {
    # tiny but not trivial: wide enough that expert matmuls dominate, as in a real model
    "mixtral": dict(hidden_size=256, intermediate_size=512, num_hidden_layers=4, num_attention_heads=8,
                    num_key_value_heads=4, num_local_experts=8, num_experts_per_tok=2),
    "olmoe": dict(hidden_size=256, intermediate_size=256, num_hidden_layers=4, num_attention_heads=8,
                  num_key_value_heads=8, num_experts=32, num_experts_per_tok=4),
    "qwen2_moe": dict(hidden_size=256, intermediate_size=512, moe_intermediate_size=256,
                      shared_expert_intermediate_size=512, num_hidden_layers=4, num_attention_heads=8,
                      num_key_value_heads=4, num_experts=16, num_experts_per_tok=4),
}


def build(model_type: str, path: Path, vocab: int = 2048) -> Path:
    import torch
    from transformers import AutoConfig, AutoModelForCausalLM

    from tests.factories_tok import byte_bpe_tokenizer, ewt_texts

    cfg = AutoConfig.for_model(model_type, vocab_size=vocab, max_position_embeddings=512,
                               **CONFIGS[model_type])
    torch.manual_seed(0)
    AutoModelForCausalLM.from_config(cfg).save_pretrained(str(path))
    byte_bpe_tokenizer(ewt_texts(), vocab_size=vocab).save_pretrained(str(path))
    return path


def bench_overhead(model_type: str, device: str, rounds: int, save_logits: bool = False,
                   clock=time.perf_counter) -> tuple[float, float, float, float]:
    """``(plain tok/s, capture tok/s, ratio of the median round times, median of the per-batch time ratios)``."""
    import torch

    from moe_tui.core.extract.capture import RouteCapture
    from moe_tui.core.extract.models import load_model

    with tempfile.TemporaryDirectory() as d:
        loaded = load_model(str(build(model_type, Path(d))), device=device, dtype="float32")
    g = torch.Generator().manual_seed(0)
    batches = []
    for _ in range(4):
        ids = torch.randint(5, 2000, (16, 64), generator=g)
        mask = torch.ones_like(ids)
        mask[0, 48:] = 0  # one padded row, like real batches
        batches.append((ids.to(loaded.input_device), mask.to(loaded.input_device)))

    def plain(ids, mask):
        with torch.inference_mode():
            loaded.base(input_ids=ids, attention_mask=mask, use_cache=False)
        if device.startswith("cuda"):
            torch.cuda.synchronize()

    # interleaved batch by batch: each capture is timed right after the bare forward of the same batch
    t_plain, t_cap, pairs = [], [], []
    with RouteCapture(loaded, save_logits=save_logits) as cap:
        for r in range(rounds + 2):
            tp = tc = 0.0
            for ids, mask in batches:
                a = clock()
                plain(ids, mask)
                b = clock()
                cap.run(ids, mask)
                c = clock()
                tp, tc = tp + (b - a), tc + (c - b)
                if r >= 2:  # warm-up rounds are not counted
                    pairs.append((c - b) / (b - a))
            if r >= 2:
                t_plain.append(tp)
                t_cap.append(tc)
    mp, mc = statistics.median(t_plain), statistics.median(t_cap)
    tokens = sum(int(m.sum()) for _, m in batches)
    return tokens / mp, tokens / mc, mc / mp, statistics.median(pairs)


def bench_batching(device: str, n_sentences: int = 1000, batch_size: int = 32) -> tuple[float, float]:
    import torch

    from moe_tui.core.extract.align import align_corpus
    from moe_tui.core.extract.capture import RouteCapture
    from moe_tui.core.extract.corpus import read_corpus
    from moe_tui.core.extract.models import load_model
    from moe_tui.core.extract.pipeline import _BatchRunner, make_plan

    with tempfile.TemporaryDirectory() as d:
        loaded = load_model(str(build("mixtral", Path(d))), device=device, dtype="float32")
    corpus = read_corpus(str(EWT_DEV), max_sentences=n_sentences)
    aligned, _ = align_corpus(corpus, loaded.tokenizer, max_length=512)
    rows = [a.input_ids for a in aligned if a is not None]
    tokens = sum(len(r) for r in rows)
    plan = make_plan([len(r) for r in rows], batch_size, None)
    with RouteCapture(loaded) as cap:
        runner = _BatchRunner(cap, loaded, lambda e: None)
        runner.run(rows[:batch_size])  # warm-up
        a = time.perf_counter()
        for batch in plan:
            runner.run([rows[i] for i in batch])
        batched = tokens / (time.perf_counter() - a)
        a = time.perf_counter()
        for r in rows:
            runner.run([r])
        alone = tokens / (time.perf_counter() - a)
    del torch
    return batched, alone


def bench_alignment() -> tuple[float, float, int]:
    """CPU seconds to read UD EWT dev and to align it (byte-level BPE, 4,000 pieces), and its token count."""
    from moe_tui.core.extract.align import align_corpus
    from moe_tui.core.extract.corpus import read_corpus
    from tests.factories_tok import byte_bpe_tokenizer, ewt_texts

    tok = byte_bpe_tokenizer(ewt_texts(), vocab_size=4000)
    t0 = time.process_time()
    corpus = read_corpus(EWT_DEV)
    read_s = time.process_time() - t0
    t0 = time.process_time()
    aligned, rep = align_corpus(corpus, tok)
    align_s = time.process_time() - t0
    return read_s, align_s, rep.tokens


def main() -> None:
    sys.stdout.reconfigure(line_buffering=True)
    ap = argparse.ArgumentParser()
    ap.add_argument("--rounds", type=int, default=9)
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--sentences", type=int, default=1000)
    ap.add_argument("--skip-batching", action="store_true", help="no batched-vs-alone figure")
    ap.add_argument("--skip-alignment", action="store_true", help="no alignment figure")
    ap.add_argument("--threads", type=int, default=0, help="torch intra-op threads (0: torch's default)")
    ap.add_argument("--clock", default="wall", choices=["wall", "process"],
                    help="wall: time.perf_counter; process: this process's CPU time (time.process_time)")
    args = ap.parse_args()
    import torch

    torch.set_num_threads(args.threads or max(1, torch.get_num_threads()))
    clock = time.process_time if args.clock == "process" else time.perf_counter
    from transformers.utils import logging as hf_logging

    hf_logging.disable_progress_bar()
    hf_logging.set_verbosity_error()
    print(f"device={args.device} torch={torch.__version__} threads={torch.get_num_threads()} clock={args.clock}")
    print("capture overhead (same batches, bare forward vs RouteCapture.run; median of "
          f"{args.rounds} interleaved rounds)")
    for mt in CONFIGS:
        p, c, ratio, paired = bench_overhead(mt, args.device, args.rounds, clock=clock)
        print(f"  {mt:10s} plain {p:10.0f} tok/s  capture {c:10.0f} tok/s  ratio {ratio:.3f} "
              f"(per-batch {paired:.3f})  (target <= 1.03)")
    for mt in CONFIGS:
        p, c, ratio, paired = bench_overhead(mt, args.device, args.rounds, save_logits=True, clock=clock)
        print(f"  {mt:10s} plain {p:10.0f} tok/s  capture + logits {c:10.0f} tok/s  ratio {ratio:.3f} "
              f"(per-batch {paired:.3f})")
    if not args.skip_batching:
        b, a = bench_batching(args.device, args.sentences)
        print(f"batched vs alone on {args.sentences} EWT dev sentences: batched {b:.0f} tok/s, alone {a:.0f} tok/s, "
              f"ratio {b / a:.1f}x  (target >= 5x)")
    if not args.skip_alignment:
        read_s, align_s, tokens = bench_alignment()
        print(f"alignment of EWT dev ({tokens} tokens): {align_s:.2f} s of CPU, {align_s / read_s:.1f}x reading it "
              f"({read_s:.2f} s)  (target <= 2 s)")


if __name__ == "__main__":
    main()
