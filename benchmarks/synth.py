"""Synthetic runs of any size, written through the run writer without a model (for the scale benchmarks).

Sentence lengths follow a shifted negative binomial (mean about 27 words, long tail: like UD English GUM/EWT
sentences), each word is one token (three in four) or two, every sentence starts with a special ``<s>`` token;
word forms are drawn from a Zipf law over a vocabulary of ``vocab`` forms (most frequent first, so a few hundred
forms make half the text), each form has a main POS (and one in ten tokens another); the top-1 expert follows the
POS and the layer with noise, as a POS-sensitive router would. Everything is vectorised: a 4M-token run is built
in seconds.
"""

from __future__ import annotations

import hashlib
from pathlib import Path

import numpy as np

from moe_tui.cache.columns import StringTable, TextColumns
from moe_tui.cache.layout import run_id_for
from moe_tui.cache.store import RunStore
from moe_tui.cache.writer import write_run

UPOS = ("ADJ", "ADP", "ADV", "AUX", "CCONJ", "DET", "INTJ", "NOUN", "NUM", "PART", "PRON", "PROPN", "PUNCT",
        "SCONJ", "SYM", "VERB", "X")
_LETTERS = np.frombuffer(b"abcdefghijklmnopqrstuvwxyzeeeaaoottnnssrrhhll", dtype=np.uint8)


def _ragged(src: np.ndarray, starts: np.ndarray, lengths: np.ndarray) -> np.ndarray:
    dst = np.cumsum(lengths) - lengths
    return src[np.repeat(starts - dst, lengths) + np.arange(int(lengths.sum()))]


def _forms(vocab: int, rng: np.random.Generator) -> list[str]:
    """``vocab`` distinct lower-case forms (plus capitalised and punctuation ones), most frequent first."""
    lens = np.clip(rng.geometric(0.28, 2 * vocab) + 1, 2, 14)
    raw = _LETTERS[rng.integers(0, len(_LETTERS), int(lens.sum()))].tobytes().decode()
    out, seen, c = [".", ",", "the", "The", "of", "and", "-", "to", "a", "in"], set(), 0
    seen.update(out)
    for n in lens.tolist():
        w = raw[c:c + n]
        c += n
        if w not in seen:
            seen.add(w)
            out.append(w if rng.random() > 0.08 else w.capitalize())
        if len(out) >= vocab:
            break
    i = 0
    while len(out) < vocab:
        out.append(f"w{i}")
        i += 1
    return out[:vocab]


def synthetic_run(root: Path, n_tokens: int, *, layers: int = 4, k: int = 2, experts: int = 8, vocab: int = 30_000,
                  seed: int = 0, route_seed: int | None = None) -> Path:
    """Write (or find, when built before) a synthetic run of about ``n_tokens`` tokens under ``root``; return its
    directory. The shape defaults to the demo model's: 4 MoE layers, k = 2 of N = 8 experts. ``route_seed``: draw
    the routes' noise from this seed (the text and tokens stay those of ``seed``): a second run of the same corpus
    and tokenizer, for diffs."""
    identity = {"synthetic": {"tokens": int(n_tokens), "layers": layers, "k": k, "experts": experts,
                              "vocab": vocab, "seed": seed, "version": 1}}
    if route_seed is not None:
        identity["synthetic"]["route_seed"] = int(route_seed)
    store = RunStore(root)
    run_dir = store.path(run_id_for(identity))
    if store.is_complete(run_dir.name):
        return run_dir
    rng = np.random.default_rng(seed)
    forms = _forms(vocab, rng)
    form_table = StringTable.from_strings(forms)
    form_len = form_table.byte_lengths()
    form_pos = rng.integers(0, len(UPOS), vocab).astype(np.int16)
    form_pos[:10] = [12, 12, 5, 5, 1, 4, 12, 9, 5, 1]
    # sentences until the token budget is met (tokens per word 1.25, plus <s>)
    n_sent = max(1, int(n_tokens / (27 * 1.25 + 1)))
    words_per = rng.negative_binomial(3, 3 / 29, n_sent) + 2
    ranks = np.arange(1, vocab + 1, dtype=np.float64)
    p = ranks ** -1.07
    p /= p.sum()
    W = int(words_per.sum())
    word_form = rng.choice(vocab, size=W, p=p).astype(np.int32)
    word_tag = form_pos[word_form].copy()
    flip = rng.random(W) < 0.1
    word_tag[flip] = rng.integers(0, len(UPOS), int(flip.sum()))
    word_offsets = np.concatenate([[0], np.cumsum(words_per)]).astype(np.int64)
    sent_of_word = np.repeat(np.arange(n_sent), words_per)
    last = np.zeros(W, dtype=bool)
    last[word_offsets[1:] - 1] = True
    # texts: forms joined by single spaces
    sep = np.where(last, 0, 1).astype(np.int64)
    wl = form_len[word_form]
    cum = np.cumsum(wl + sep) - (wl + sep)
    spans_start = cum - (cum[word_offsets[:-1]])[sent_of_word]
    word_spans = np.stack([spans_start, spans_start + wl], axis=1).astype(np.int32)
    src = np.concatenate([np.asarray(form_table.data), np.frombuffer(b" ", dtype=np.uint8)])
    starts = np.stack([np.asarray(form_table.offsets)[:-1][word_form], np.full(W, len(src) - 1)], axis=1).ravel()
    lens = np.stack([wl, sep], axis=1).ravel()
    text_bytes = _ragged(src, starts, lens)
    text_len = np.bincount(sent_of_word, weights=wl + sep, minlength=n_sent).astype(np.int64)
    texts = StringTable(np.concatenate([[0], np.cumsum(text_len)]).astype(np.int64), text_bytes)
    sent_ids = StringTable.from_strings(f"syn-{i}" for i in range(n_sent))
    # tokens: <s>, then 1 or 2 pieces per word ("Ġform" [+ "##xy"])
    tok_per_word = 1 + (rng.random(W) < 0.25).astype(np.int64)
    tok_per_sent = np.bincount(sent_of_word, weights=tok_per_word, minlength=n_sent).astype(np.int64) + 1
    T = int(tok_per_sent.sum())
    sentence_offsets = np.concatenate([[0], np.cumsum(tok_per_sent)]).astype(np.int64)
    special = np.zeros(T, dtype=bool)
    special[sentence_offsets[:-1]] = True
    word_of_tok = np.full(T, -1, dtype=np.int64)
    body = np.flatnonzero(~special)
    gword = np.repeat(np.arange(W), tok_per_word)
    word_of_tok[body] = gword
    first_piece = np.ones(len(body), dtype=bool)
    first_piece[1:] = gword[1:] != gword[:-1]
    n_cont = 500
    pieces = ["<s>"] + ["Ġ" + f for f in forms] + [f"##{i}" for i in range(n_cont)]
    token_piece = np.zeros(T, dtype=np.int32)
    token_piece[body] = np.where(first_piece, 1 + word_form[gword], 1 + vocab + rng.integers(0, n_cont, len(body)))
    word_index = np.where(word_of_tok >= 0, word_of_tok - word_offsets[np.repeat(np.arange(n_sent), tok_per_sent)], -1)
    pos = np.where(word_of_tok >= 0, word_tag[np.clip(word_of_tok, 0, None)], -1).astype(np.int16)
    offsets = np.zeros((T, 2), dtype=np.int32)
    offsets[body] = word_spans[gword]
    # routes: top-1 follows POS and layer, with noise; the other ranks are distinct random experts
    if route_seed is not None:
        rng = np.random.default_rng([seed, route_seed])
    ex = np.empty((T, layers, k), dtype=np.uint8 if experts <= 255 else np.uint16)
    base = (np.clip(pos, 0, None).astype(np.int64)[:, None] * 3 + np.arange(layers)[None, :] * 5) % experts
    noisy = rng.random((T, layers)) < 0.3
    base = np.where(noisy, rng.integers(0, experts, (T, layers)), base)
    ex[..., 0] = base
    for r in range(1, k):
        ex[..., r] = (base + r + rng.integers(0, max(1, experts - k), (T, layers))) % experts
    w = np.sort(rng.random((T, layers, k)).astype(np.float32), axis=-1)[..., ::-1]
    w = (w / w.sum(-1, keepdims=True)).astype(np.float16)
    text = TextColumns(
        sent_ids=sent_ids, texts=texts, skipped=np.zeros(n_sent, dtype=bool), word_offsets=word_offsets,
        word_form=word_form, word_tag=word_tag.astype(np.int16), word_spans=word_spans,
        forms=form_table, word_tags=list(UPOS), token_piece=token_piece, token_counts=tok_per_sent,
        pieces=StringTable.from_strings(pieces),
    )
    arrays = {"token_ids": token_piece.astype(np.int32), "sentence_offsets": sentence_offsets,
              "word_index": word_index.astype(np.int32), "pos": pos, "special": special,
              "crossing": np.zeros(T, dtype=bool), "offsets": offsets, "experts": ex, "weights": w}
    digest = hashlib.sha256(repr(sorted(identity["synthetic"].items())).encode()).hexdigest()[:12]
    extra = {"model": {"name_or_path": f"synthetic-{digest}", "moe_layers": list(range(1, layers + 1)),
                       "num_experts": experts, "top_k": k, "model_type": "synthetic"},
             "tagset": {"name": "upos", "tags": list(UPOS)},
             "corpus": {"path": f"synthetic-{n_tokens}.conllu", "n_sentences": n_sent},
             "alignment": {}, "options": {}}
    return write_run(run_dir, identity, arrays, text, extra)
