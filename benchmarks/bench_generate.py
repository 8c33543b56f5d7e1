"""Generation benchmarks.

1. Capture overhead during generation: the same batches of prompts (the first five words of demo sentences)
   through plain ``model.generate`` and through moe-tui's generation step (the same call under
   :class:`GenerationCapture`: router hooks at every decoding step, then one rank sort and one host copy per
   batch), same settings, interleaved in one process (which runs first alternates); the ratio of the medians. Target <= 1.10. For information,
   the whole per-batch work of ``moe-tui generate`` (capture, decoded offsets, word splitting, tagging, alignment)
   against the same plain generate.
2. The built-in tagger on one core: words per second tagging UD English EWT test (its gold words), a cold start
   (every word type new) and warm; and from raw text (splitting included). Target >= 50,000 words/s.

Run: ``.venv/bin/python -m benchmarks.bench_generate [--rounds N] [--device cpu|cuda] [--threads N]
[--clock wall|process] [--new-tokens N]``. On a shared CPU machine use ``--threads 1 --clock process`` (this
process's own CPU time) and quote the load average beside the figures.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("OMP_NUM_THREADS", "1")
os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")
os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")
os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")

from tests.helpers import EWT_TEST  # noqa: E402

PROMPTS_FROM = Path(__file__).resolve().parents[1] / "core" / "demo" / "demo.conllu"


def _models(tmp: Path) -> dict[str, Path]:
    from benchmarks.bench_extract import build
    from moe_tui.core.demo import demo_model_path

    return {"demo (tiny Mixtral, hidden 64)": demo_model_path(),
            "mixtral (hidden 256, 8 experts)": build("mixtral", tmp / "mixtral")}


def bench_capture(path: Path, device: str, rounds: int, new_tokens: int, batch: int, clock) -> dict:
    import torch
    from transformers import GenerationConfig, StoppingCriteriaList

    from moe_tui.core.extract import generation as G
    from moe_tui.core.extract.gencapture import GenerationCapture
    from moe_tui.core.extract.models import load_model
    from moe_tui.core.extract.options import GenerateOptions
    from moe_tui.core.extract.prompts import read_prompts
    from moe_tui.core.tagger import load_tagger

    loaded = load_model(str(path), device=device, dtype="float32", keep_lm=True)
    opts = GenerateOptions(model=str(path), prompts=str(PROMPTS_FROM), max_new_tokens=new_tokens, batch_size=batch)
    prompts = read_prompts(PROMPTS_FROM, max_prompts=batch * 4, prompt_words=5)  # sentence starts: the model goes on
    encoded = G._encode_prompts(loaded.tokenizer, prompts)
    batches = [list(range(i, i + batch)) for i in range(0, len(encoded), batch)]
    gen = G._Generator(loaded, opts)
    tagger = load_tagger("builtin")

    def plain(rows):  # what _Generator.run hands generate(), without the capture
        B, P = len(rows), max(len(r) for r in rows)
        ids = torch.full((B, P), gen.pad_id, dtype=torch.long)
        mask = torch.zeros((B, P), dtype=torch.long)
        for b, r in enumerate(rows):
            ids[b, P - len(r):] = torch.tensor(r)
            mask[b, P - len(r):] = 1
        stop = StoppingCriteriaList([G._DelayedEos(P, gen.eos), G._Cancel(lambda: False)])
        lm = loaded.lm
        saved, lm.generation_config = lm.generation_config, GenerationConfig()
        try:
            with torch.inference_mode():
                lm.generate(input_ids=ids.to(loaded.input_device), attention_mask=mask.to(loaded.input_device),
                            generation_config=gen.config(new_tokens), stopping_criteria=stop)
        finally:
            lm.generation_config = saved
        if device.startswith("cuda"):
            torch.cuda.synchronize()

    t_plain, t_cap, t_full = [], [], []
    with GenerationCapture(loaded) as cap:
        for r in range(rounds + 1):
            tp = tc = tf = 0.0
            for bi in batches:
                rows = [encoded[i].ids for i in bi]
                if r % 2:  # which one runs first alternates by round (warm caches favour the second)
                    a = clock()
                    plain(rows)
                    dp = clock() - a
                b = clock()
                out = gen.run(cap, rows, 0, lambda: False)
                if device.startswith("cuda"):
                    torch.cuda.synchronize()
                c = clock()
                G._shard(bi, [prompts.items[i] for i in bi], [encoded[i] for i in bi], out, loaded.tokenizer, tagger,
                         opts)
                d = clock()
                if not r % 2:
                    a = clock()
                    plain(rows)
                    dp = clock() - a
                tp, tc, tf = tp + dp, tc + (c - b), tf + (d - b)
            if r:  # the first round warms up
                t_plain.append(tp)
                t_cap.append(tc)
                t_full.append(tf)
    mp = statistics.median(t_plain)
    return {"plain_s": mp, "capture": statistics.median(t_cap) / mp, "full": statistics.median(t_full) / mp,
            "prompts": len(encoded)}


def bench_tagger(clock) -> dict:
    from moe_tui.core.extract.corpus import read_corpus
    from moe_tui.core.tagger import load_tagger

    sents = read_corpus(EWT_TEST).sentences
    words = [[w.form for w in s.words] for s in sents]
    texts = [s.text for s in sents]
    n = sum(len(w) for w in words)
    out = {"words": n}
    tagger = load_tagger("builtin")  # cold: no word type seen yet
    a = clock()
    tagger.tag(words)
    out["cold"] = n / (clock() - a)
    runs = []
    for _ in range(3):
        a = clock()
        tagger.tag(words)
        runs.append(n / (clock() - a))
    out["warm"] = statistics.median(runs)
    runs = []
    for _ in range(3):
        a = clock()
        tagger.tag([[t[x:y] for x, y in tagger.split(t)] for t in texts])
        runs.append(n / (clock() - a))
    out["raw_text"] = statistics.median(runs)
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--threads", type=int, default=None)
    ap.add_argument("--clock", default="wall", choices=["wall", "process"])
    ap.add_argument("--new-tokens", type=int, default=32)
    ap.add_argument("--batch", type=int, default=8)
    ap.add_argument("--skip-capture", action="store_true")
    args = ap.parse_args()
    import torch

    from moe_tui.core.extract.pipeline import _quiet_transformers

    _quiet_transformers()
    if args.threads:
        torch.set_num_threads(args.threads)
    clock = time.process_time if args.clock == "process" else time.perf_counter
    print(f"device={args.device} torch={torch.__version__} threads={torch.get_num_threads()} clock={args.clock} "
          f"load average={os.getloadavg()[0]:.2f}")
    if not args.skip_capture:
        print(f"capture during generation ({args.batch} prompts a batch, 4 batches, {args.new_tokens} new tokens, "
              f"greedy; median of {args.rounds} rounds; target <= 1.10)")
        with tempfile.TemporaryDirectory() as d:
            for name, path in _models(Path(d)).items():
                r = bench_capture(path, args.device, args.rounds, args.new_tokens, args.batch, clock)
                print(f"  {name}: plain generate {r['plain_s']:.3f} s a round; with capture x{r['capture']:.3f}; "
                      f"capture + offsets + tagging + alignment x{r['full']:.3f}")
    if EWT_TEST.exists():
        t = bench_tagger(clock)
        print(f"built-in tagger on UD English EWT test ({t['words']} words, one core; target >= 50,000 words/s): "
              f"cold {t['cold']:,.0f} words/s, warm {t['warm']:,.0f} words/s, from raw text (splitting included) "
              f"{t['raw_text']:,.0f} words/s")
    else:
        print(f"tagger: {EWT_TEST} not found, skipped", file=sys.stderr)
    print(f"load average after: {os.getloadavg()[0]:.2f}")


if __name__ == "__main__":
    main()
