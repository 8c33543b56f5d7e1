#!/usr/bin/env python
"""Train the bundled demo Mixture-of-Experts model, end to end and deterministically.

    python scripts/train_demo.py --out core/demo --seed 0          # regenerates the shipped files
    python scripts/train_demo.py --quick --out /tmp/demo_quick     # tiny smoke run (< 60 s)

Steps:
  1. generate training sentences with the demo grammar (``scripts.demo_grammar``), seed A;
  2. train a byte-level BPE tokenizer (``tokenizers``), wrap it as ``PreTrainedTokenizerFast``;
  3. build a tiny ``MixtralForCausalLM`` (8 experts, top-2) and train it as a causal LM on CPU with AdamW and
     the Switch-style load-balancing auxiliary loss (``output_router_logits=True``);
  4. save model + tokenizer to ``<out>/model`` (safetensors) with ``train_log.json``;
  5. write the analysis sample ``<out>/demo.conllu`` with a different seed B;
  6. check the result: expert load per layer (no collapse), LM loss vs unigram entropy, and POS
     specialisation Spec_POS (arXiv 2412.16971) on held-out grammar sentences.

Everything random is derived from ``--seed``; ``torch.use_deterministic_algorithms(True)`` and a fixed thread
count make two runs with the same arguments on the same machine produce identical weights.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import platform
import random
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]

os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
os.environ.setdefault("HF_HUB_OFFLINE", "1")
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))  # the demo grammar is build-only code beside this script (scripts/demo_grammar.py)

from scripts.demo_grammar import UPOS_TAGS, generate, sentence_text, to_conllu  # noqa: E402

FULL = dict(train_sentences=40000, steps=600, batch_rows=16, row_len=64, vocab_size=2048,
            hidden=64, layers=4, experts=8, top_k=2, heads=4, kv_heads=4, intermediate=128,
            lr=4e-3, warmup=60, weight_decay=0.01, aux_coef=0.02,
            eval_sentences=600, demo_sentences=2000, log_every=25)  # aux_coef: per-layer balance loss
QUICK = dict(FULL, train_sentences=1500, steps=30, batch_rows=8, vocab_size=600, eval_sentences=100,
             demo_sentences=50, log_every=5, warmup=5)


def seeds_for(seed: int) -> tuple[int, int]:
    """(seed A for training text, seed B for the analysis sample) -- always different."""
    return 1000 * seed + 17, 1000 * seed + 503


# --------------------------------------------------------------------------------------------- tokenizer

def train_tokenizer(texts: list[str], vocab_size: int):
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, processors, trainers
    from transformers import PreTrainedTokenizerFast

    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=True)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size, min_frequency=2, show_progress=False,
        special_tokens=["<s>", "</s>", "<pad>"],
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
    )
    tok.train_from_iterator(texts, trainer=trainer)
    bos = tok.token_to_id("<s>")
    tok.post_processor = processors.Sequence([
        processors.ByteLevel(trim_offsets=True),
        processors.TemplateProcessing(single="<s> $A", pair="<s> $A <s> $B", special_tokens=[("<s>", bos)]),
    ])
    fast = PreTrainedTokenizerFast(tokenizer_object=tok, bos_token="<s>", eos_token="</s>", pad_token="<pad>",
                                   model_max_length=128, clean_up_tokenization_spaces=False)
    return fast


# --------------------------------------------------------------------------------------------- data

def pack_rows(ids_list: list[list[int]], row_len: int, pad_id: int):
    """Greedily pack whole sentences (``<s> ... </s>``) into rows of ``row_len`` tokens, padded at the end."""
    import numpy as np

    rows, cur = [], []
    for ids in ids_list:
        ids = ids[:row_len]
        if len(cur) + len(ids) > row_len:
            rows.append(cur)
            cur = []
        cur = cur + ids
    if cur:
        rows.append(cur)
    arr = np.full((len(rows), row_len), pad_id, dtype=np.int64)
    mask = np.zeros((len(rows), row_len), dtype=np.int64)
    for i, r in enumerate(rows):
        arr[i, : len(r)] = r
        mask[i, : len(r)] = 1
    return arr, mask


def unigram_entropy(ids_list: list[list[int]]) -> float:
    """Entropy (nats) of the predicted-token unigram distribution: the loss of a context-free model."""
    from collections import Counter

    c = Counter(t for ids in ids_list for t in ids[1:])
    n = sum(c.values())
    return -sum(v / n * math.log(v / n) for v in c.values())


# --------------------------------------------------------------------------------------------- losses

def per_layer_balance_loss(router_logits, attention_mask, top_k: int, n_experts: int):
    """Switch/Mixtral load-balancing loss computed **per layer** and averaged over layers.

    transformers' ``load_balancing_loss_func`` pools the counts of all layers before taking the product, so one
    layer can starve an expert as long as another layer over-uses it; balancing each layer keeps every expert of
    every layer in use. Uniform routing gives ``top_k`` (2.0 for top-2).
    """
    import torch

    fm = attention_mask.reshape(-1).to(torch.float32)
    total = fm.sum()
    losses = []
    for lg in router_logits:
        probs = torch.softmax(lg.float(), dim=-1)
        sel = torch.topk(probs, top_k, dim=-1).indices
        f = torch.zeros(n_experts, dtype=torch.float32).scatter_add_(0, sel.reshape(-1), fm.repeat_interleave(top_k))
        p = (probs * fm.unsqueeze(-1)).sum(dim=0)
        losses.append(n_experts * torch.sum((f / total) * (p / total)))
    return torch.stack(losses).mean()


# --------------------------------------------------------------------------------------------- evaluation

def routing_stats(model, tokenizer, sentences, *, batch: int = 64) -> dict:
    """Route held-out grammar sentences; return expert load per layer and Spec_POS per layer.

    Spec_POS (arXiv 2412.16971): 100 * (assignments of POS taken by its 2 most used experts) / (2 * tokens of POS).
    Uniform routing gives 100 * k / N = 25 for N=8, k=2.
    """
    import numpy as np
    import torch

    tags = list(UPOS_TAGS)
    n_layers = model.config.num_hidden_layers
    n_exp = model.config.num_local_experts
    k = model.config.num_experts_per_tok
    counts = np.zeros((n_layers, len(tags), n_exp), dtype=np.int64)
    ce_sum, ce_n = 0.0, 0
    model.eval()
    with torch.no_grad():
        for b0 in range(0, len(sentences), batch):
            chunk = sentences[b0: b0 + batch]
            texts = [sentence_text(s) for s in chunk]
            raw = tokenizer(texts, return_offsets_mapping=True)
            T = max(len(x) for x in raw["input_ids"]) + 1  # + </s>, as in training
            B = len(chunk)
            ids = torch.full((B, T), tokenizer.pad_token_id, dtype=torch.long)
            mask = torch.zeros((B, T), dtype=torch.long)
            offs = np.zeros((B, T, 2), dtype=np.int64)
            for i, (x, o) in enumerate(zip(raw["input_ids"], raw["offset_mapping"])):
                ids[i, : len(x) + 1] = torch.tensor(x + [tokenizer.eos_token_id])
                mask[i, : len(x) + 1] = 1
                offs[i, : len(o)] = np.asarray(o, dtype=np.int64).reshape(-1, 2)
            out = model(input_ids=ids, attention_mask=mask, output_router_logits=True)
            labels = ids.masked_fill(mask == 0, -100)[:, 1:]
            ce = torch.nn.functional.cross_entropy(out.logits[:, :-1].reshape(-1, out.logits.shape[-1]),
                                                   labels.reshape(-1), ignore_index=-100, reduction="sum")
            ce_sum += float(ce)
            ce_n += int((labels != -100).sum())
            layer_top = [torch.topk(rl.float(), k, dim=-1).indices.reshape(B, T, k).numpy()
                         for rl in out.router_logits]
            am = mask.numpy()
            for i, sent in enumerate(chunk):
                # word char spans
                spans, pos = [], 0
                for form, upos, sp in sent:
                    spans.append((pos, pos + len(form), tags.index(upos)))
                    pos += len(form) + (1 if sp else 0)
                for t in range(T):
                    if not am[i, t]:
                        continue
                    s, e = offs[i, t]
                    if e <= s:
                        continue  # special token
                    best, best_ov = -1, 0
                    for ws, we, p in spans:
                        ov = min(e, we) - max(s, ws)
                        if ov > best_ov:
                            best, best_ov = p, ov
                    if best < 0:
                        continue
                    for L in range(n_layers):
                        for j in range(k):
                            counts[L, best, layer_top[L][i, t, j]] += 1
    tokens_per_pos = counts[0].sum(axis=1) // k
    present = tokens_per_pos > 0
    top2 = np.sort(counts, axis=2)[:, :, -2:].sum(axis=2)  # (L, P)
    spec = np.where(present[None, :], 100.0 * top2 / np.maximum(2 * tokens_per_pos[None, :], 1), np.nan)
    load = counts.sum(axis=1) / counts.sum(axis=(1, 2))[:, None]  # (L, N) share of assignments
    return {
        "eval_lm_loss": ce_sum / max(ce_n, 1),
        "expert_load": [[round(float(x), 4) for x in row] for row in load],
        "min_expert_share": float(load.min()),
        "spec_pos": {tags[p]: [round(float(spec[L, p]), 2) for L in range(n_layers)]
                     for p in range(len(tags)) if present[p]},
        "spec_mean_per_layer": [round(float(np.nanmean(spec[L])), 2) for L in range(n_layers)],
        "tokens_per_pos": {tags[p]: int(tokens_per_pos[p]) for p in range(len(tags)) if present[p]},
        "uniform_spec": 100.0 * 2 / n_exp,
    }


# --------------------------------------------------------------------------------------------- main

def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--out", default=str(REPO / "core" / "demo"), help="output folder (model/ and demo.conllu go here)")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--steps", type=int, default=None, help="optimizer steps (default: 600, quick: 30)")
    ap.add_argument("--quick", action="store_true", help="tiny smoke-test run (< 60 s)")
    ap.add_argument("--threads", type=int, default=1, help="torch intra-op threads (fixed for determinism; 1 is fastest on a busy 2-core box)")
    ap.add_argument("--no-check", action="store_true", help="do not fail when the quality checks miss")
    args = ap.parse_args(argv)

    cfg = dict(QUICK if args.quick else FULL)
    if args.steps is not None:
        cfg["steps"] = args.steps
    seed_a, seed_b = seeds_for(args.seed)

    import numpy as np
    import torch
    import transformers
    from transformers import MixtralConfig, MixtralForCausalLM

    t0 = time.time()
    random.seed(args.seed)
    np.random.seed(args.seed)
    torch.manual_seed(args.seed)
    torch.set_num_threads(args.threads)
    try:
        torch.use_deterministic_algorithms(True)
        deterministic = True
    except Exception:  # pragma: no cover
        deterministic = False

    out = Path(args.out)
    model_dir = out / "model"
    model_dir.mkdir(parents=True, exist_ok=True)

    # 1. data + tokenizer
    train_sents = generate(cfg["train_sentences"], seed_a)
    texts = [sentence_text(s) for s in train_sents]
    tokenizer = train_tokenizer(texts, cfg["vocab_size"])
    bos, eos, pad = tokenizer.bos_token_id, tokenizer.eos_token_id, tokenizer.pad_token_id
    enc = tokenizer(texts, add_special_tokens=True)["input_ids"]
    ids_list = [ids + [eos] for ids in enc]
    rows, masks = pack_rows(ids_list, cfg["row_len"], pad)
    h_uni = unigram_entropy(ids_list)
    print(f"[data] {len(texts)} sentences, {sum(map(len, ids_list))} tokens, {len(rows)} rows; "
          f"vocab {len(tokenizer)}; unigram entropy {h_uni:.3f} nats", flush=True)

    # 2. model
    mcfg = MixtralConfig(
        vocab_size=len(tokenizer), hidden_size=cfg["hidden"], intermediate_size=cfg["intermediate"],
        num_hidden_layers=cfg["layers"], num_attention_heads=cfg["heads"], num_key_value_heads=cfg["kv_heads"],
        max_position_embeddings=128, num_local_experts=cfg["experts"], num_experts_per_tok=cfg["top_k"],
        router_aux_loss_coef=cfg["aux_coef"], output_router_logits=False, router_jitter_noise=0.0,
        tie_word_embeddings=True, bos_token_id=bos, eos_token_id=eos, pad_token_id=pad,
        rope_parameters={"rope_theta": 10000.0, "rope_type": "default"}, use_cache=True,
    )
    torch.manual_seed(args.seed)
    model = MixtralForCausalLM(mcfg)
    # the per-expert loop ("eager") is by far the fastest on CPU for a model this small; grouped_mm/batched_mm
    # are 3-20x slower here. Only affects this training process, not the saved config.
    model.set_experts_implementation("eager")
    model.router_aux_loss_coef = 0.0  # we add our own per-layer balance loss (the config keeps aux_coef)
    n_params = sum(p.numel() for p in model.parameters())
    print(f"[model] {n_params:,} parameters", flush=True)

    # 3. train
    decay = [p for n, p in model.named_parameters() if p.ndim >= 2 and "embed" not in n]
    no_decay = [p for n, p in model.named_parameters() if not (p.ndim >= 2 and "embed" not in n)]
    opt = torch.optim.AdamW([{"params": decay, "weight_decay": cfg["weight_decay"]},
                             {"params": no_decay, "weight_decay": 0.0}],
                            lr=cfg["lr"], betas=(0.9, 0.95), eps=1e-8)
    steps, warm = cfg["steps"], cfg["warmup"]

    def lr_at(step: int) -> float:
        if step < warm:
            return (step + 1) / warm
        prog = (step - warm) / max(1, steps - warm)
        return 0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi * prog))

    sched = torch.optim.lr_scheduler.LambdaLR(opt, lr_at)
    order_rng = np.random.default_rng(seed_a)
    order = order_rng.permutation(len(rows))
    cursor = 0
    rows_t = torch.from_numpy(rows)
    masks_t = torch.from_numpy(masks)
    curve = []
    model.train()
    t_train = time.time()
    run_lm = run_aux = None
    for step in range(steps):
        if cursor + cfg["batch_rows"] > len(order):
            order = order_rng.permutation(len(rows))
            cursor = 0
        idx = torch.from_numpy(order[cursor: cursor + cfg["batch_rows"]])
        cursor += cfg["batch_rows"]
        x, m = rows_t[idx], masks_t[idx]
        labels = x.masked_fill(m == 0, -100)
        outp = model(input_ids=x, attention_mask=m, labels=labels, output_router_logits=True)
        lm_loss = outp.loss  # pure LM loss: the built-in (cross-layer pooled) aux term is switched off below
        aux_loss = per_layer_balance_loss(outp.router_logits, m, cfg["top_k"], cfg["experts"])
        loss = lm_loss + cfg["aux_coef"] * aux_loss
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        sched.step()
        aux = float(aux_loss.detach())
        lm = float(lm_loss.detach())
        run_lm = lm if run_lm is None else 0.9 * run_lm + 0.1 * lm
        run_aux = aux if run_aux is None else 0.9 * run_aux + 0.1 * aux
        if step % cfg["log_every"] == 0 or step == steps - 1:
            curve.append({"step": step, "lm_loss": round(lm, 4), "aux_loss": round(aux, 4),
                          "lr": round(sched.get_last_lr()[0], 6), "elapsed_s": round(time.time() - t_train, 1)})
            print(f"[train] step {step:5d} lm {lm:.4f} (ema {run_lm:.4f}) aux {aux:.4f} "
                  f"{time.time() - t_train:.0f}s", flush=True)
    train_s = time.time() - t_train

    # 4. checks on held-out sentences (different seed from training)
    demo_sents = generate(cfg["demo_sentences"], seed_b)
    eval_sents = generate(cfg["eval_sentences"], seed_b + 1)
    stats = routing_stats(model, tokenizer, eval_sents)
    spec_mean = float(np.mean(stats["spec_mean_per_layer"]))
    checks = {
        "no_expert_collapse (every expert > 2% of assignments in every layer)": stats["min_expert_share"] > 0.02,
        "lm_loss_below_unigram_entropy (eval loss < unigram entropy - 1.5 nats)": stats["eval_lm_loss"] < h_uni - 1.5,
        "pos_specialisation (mean Spec over POS and layers > 40, uniform 25)": spec_mean > 40.0,
    }
    print(f"[check] eval lm loss {stats['eval_lm_loss']:.4f} vs unigram entropy {h_uni:.4f}")
    print(f"[check] min expert share {stats['min_expert_share']:.4f}")
    print(f"[check] Spec mean per layer {stats['spec_mean_per_layer']} (uniform {stats['uniform_spec']})")
    for name, ok in checks.items():
        print(f"[check] {'PASS' if ok else 'FAIL'}  {name}")

    # 5. save
    model.config.output_router_logits = False
    model.eval()
    model.save_pretrained(model_dir)
    tokenizer.save_pretrained(model_dir)
    for stray in model_dir.glob("*.bin"):
        stray.unlink()
    (out / "demo.conllu").write_text(to_conllu(demo_sents, prefix="demo"), encoding="utf-8")

    log = {
        "seed": args.seed, "seed_train_text": seed_a, "seed_demo_conllu": seed_b, "seed_eval": seed_b + 1,
        "quick": args.quick, "settings": cfg, "deterministic_algorithms": deterministic,
        "torch_threads": torch.get_num_threads(),
        "versions": {"python": platform.python_version(), "torch": torch.__version__,
                     "transformers": transformers.__version__, "numpy": np.__version__,
                     "tokenizers": __import__("tokenizers").__version__},
        "platform": platform.platform(),
        "parameters": n_params, "vocab_size": len(tokenizer),
        "train_tokens": int(masks.sum()), "train_rows": int(len(rows)),
        "unigram_entropy_nats": round(h_uni, 4),
        "loss_curve": curve,
        "final_lm_loss_ema": round(run_lm, 4), "final_aux_loss_ema": round(run_aux, 4),
        "train_wall_s": round(train_s, 1), "total_wall_s": round(time.time() - t0, 1),
        "eval": stats, "spec_mean": round(spec_mean, 2),
        "checks": checks,
    }
    (model_dir / "train_log.json").write_text(json.dumps(log, indent=1) + "\n", encoding="utf-8")
    print(f"[done] {model_dir} in {time.time() - t0:.0f}s", flush=True)
    if not args.quick and not args.no_check and not all(checks.values()):
        print("[done] quality checks failed", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
