"""Small real runs for tests and benchmarks, written by the run store's own writer.

Every fixture run goes through :func:`write_run` (the one place that knows how a run is written), so a
change of the run format is adapted here once. :func:`synthetic_run` builds the arrays of a small,
deterministic run (a BOS token, then one token per word; each POS prefers one expert per layer) and
writes it; :func:`model_facts` is what ``inspect_model`` would return for such a model.
"""

from __future__ import annotations

import hashlib
from pathlib import Path

import numpy as np

from moe_tui.cache.layout import OPTIONAL_ARRAYS, SHARD_ARRAYS, run_id_for
from moe_tui.cache.run import Run
from moe_tui.cache.store import RunStore
from moe_tui.cache.writer import RunWriter
from moe_tui.core.extract.models import ModelFacts
from moe_tui.core.extract.tagsets import TAGSETS

UPOS = TAGSETS["upos"]

#: (sentence id, text, one UPOS tag per whitespace-separated word)
SENTENCES = [
    ("s1", "The cat sat on the mat .", ["DET", "NOUN", "VERB", "ADP", "DET", "NOUN", "PUNCT"]),
    ("s2", "Dogs bark loudly at night .", ["NOUN", "VERB", "ADV", "ADP", "NOUN", "PUNCT"]),
    ("s3", "She quickly read the old book .", ["PRON", "ADV", "VERB", "DET", "ADJ", "NOUN", "PUNCT"]),
    ("s4", "Birds fly south in winter .", ["NOUN", "VERB", "ADV", "ADP", "NOUN", "PUNCT"]),
]


def write_run(root: str | Path, arrays: dict[str, np.ndarray], sentences: list[dict], *, tags: tuple[str, ...],
              moe_layers: list[int], num_experts: int, top_k: int, model: str = "fake/moe-tiny",
              corpus: str = "fake.conllu", tagset: str = "upos", manifest_extra: dict | None = None) -> Run:
    """Write one complete run under ``root`` with :class:`moe_tui.cache.store.RunWriter`; return it opened.

    ``arrays``: the run arrays of the store (``token_ids``, ``sentence_offsets``, ``word_index``, ``pos``,
    ``special``, ``crossing``, ``offsets``, ``experts``, ``weights``), sentences concatenated in order.
    Optional arrays of the store (``logits`` [T, L, N] float16) are written when present in ``arrays``.
    ``sentences``: one record per sentence (``id``, ``text``, ``words`` [[form, upos, start, end]], ``tokens``).
    ``manifest_extra``: more manifest fields (e.g. ``provenance``).
    The identity (so the run id) is made of ``model``, ``corpus`` and ``tagset``: runs of two models on one
    corpus get different ids and compare as runs on the same sentences.
    """
    corpus_sha = hashlib.sha256(corpus.encode()).hexdigest()
    identity = {
        "model": {"name_or_path": model},
        "corpus": {"path": corpus, "sha256": corpus_sha, "format": "conllu", "pos_column": "upos",
                   "selection": {"max_sentences": None, "sample": None, "seed": 0}},
        "tagset": tagset,
    }
    root = Path(root)
    run_id = run_id_for(identity)
    writer = RunWriter(root / run_id, identity)
    writer.begin()
    offsets = np.asarray(arrays["sentence_offsets"], dtype=np.int64)
    optional = tuple(k for k in OPTIONAL_ARRAYS if k in arrays)
    shard = {k: np.asarray(arrays[k]) for k in (*SHARD_ARRAYS, *optional) if k not in ("lengths", "sentence_index")}
    shard["lengths"] = np.diff(offsets).astype(np.int64)
    shard["sentence_index"] = np.arange(len(offsets) - 1, dtype=np.int64)
    writer.write_shard(0, shard)
    facts = {"name_or_path": model, "model_type": "qwen3_moe", "moe_layers": [int(x) for x in moe_layers],
             "num_experts": int(num_experts), "top_k": int(top_k)}
    writer.finalize(1, sentences, {"model": facts, "corpus": dict(identity["corpus"], n_sentences=len(sentences)),
                                   "tagset": {"name": tagset, "tags": list(tags)}, **(manifest_extra or {})},
                    optional=optional)
    return RunStore(root).open(run_id)


def synthetic_arrays(n_layers: int = 6, n_experts: int = 8, top_k: int = 2, sentences=None,
                     seed: int = 0) -> tuple[dict[str, np.ndarray], list[dict]]:
    """The arrays and sentence records of a small deterministic run: a BOS token then one token per word;
    at each layer a token's top-1 expert is ``(3 * pos + layer) % N`` (BOS: ``layer % N``), its second a
    seeded other expert; weights sorted, summing to 1 (float16)."""
    rng = np.random.default_rng(seed)
    sentences = sentences or SENTENCES
    tok_ids, offs, widx, pos, special, records, spans = [], [0], [], [], [], [], []
    for sid, text, tags in sentences:
        words = text.split()
        meta_words, start = [], 0
        for w, t in zip(words, tags):
            s = text.index(w, start)
            meta_words.append([w, t, s, s + len(w)])
            start = s + len(w)
        toks = ["<s>"] + [("Ġ" if i else "") + w for i, w in enumerate(words)]
        tok_ids += list(range(len(toks)))
        widx += [-1] + list(range(len(words)))
        pos += [-1] + [UPOS.index(t) for t in tags]
        special += [True] + [False] * len(words)
        spans += [(0, 0)] + [(m[2], m[3]) for m in meta_words]
        offs.append(offs[-1] + len(toks))
        records.append({"id": sid, "text": text, "words": meta_words, "tokens": toks, "skipped": False})
    T = offs[-1]
    pos_a = np.array(pos, dtype=np.int16)
    experts = np.zeros((T, n_layers, top_k), dtype=np.uint8)
    for t in range(T):
        for layer in range(n_layers):
            base = (int(pos_a[t]) * 3 + layer) % n_experts if pos_a[t] >= 0 else (layer % n_experts)
            second = (base + 1 + int(rng.integers(0, n_experts - 1))) % n_experts
            if second == base:
                second = (base + 1) % n_experts
            experts[t, layer, 0] = base
            if top_k > 1:
                experts[t, layer, 1] = second
    w = rng.random((T, n_layers, top_k)).astype(np.float32)
    w = np.sort(w, axis=-1)[..., ::-1]
    w = (w / w.sum(-1, keepdims=True)).astype(np.float16)
    arrays = {
        "token_ids": np.array(tok_ids, dtype=np.int32), "sentence_offsets": np.array(offs, dtype=np.int64),
        "word_index": np.array(widx, dtype=np.int32), "pos": pos_a, "special": np.array(special, dtype=bool),
        "crossing": np.zeros(T, dtype=bool), "offsets": np.array(spans, dtype=np.int32).reshape(-1, 2),
        "experts": experts, "weights": w,
    }
    return arrays, records


def synthetic_run(root: str | Path, *, n_layers: int = 6, n_experts: int = 8, top_k: int = 2, sentences=None,
                  seed: int = 0, model: str = "fake/moe-tiny", corpus: str = "fake.conllu") -> Run:
    """Write the run of :func:`synthetic_arrays` under ``root`` (decoder layers 1..n_layers are MoE)."""
    arrays, records = synthetic_arrays(n_layers, n_experts, top_k, sentences, seed)
    return write_run(root, arrays, records, tags=UPOS, moe_layers=list(range(1, n_layers + 1)),
                     num_experts=n_experts, top_k=top_k, model=model, corpus=corpus)


def model_facts(path: str) -> ModelFacts:
    """What ``inspect_model`` returns for a 6-layer Qwen3-MoE with 8 experts, top-2 (no weights read)."""
    return ModelFacts(name_or_path=path, revision=None, commit_hash=None, config_hash="0" * 64,
                      model_type="qwen3_moe", architecture_class="Qwen3MoeForCausalLM", num_layers=6,
                      moe_layers=[1, 2, 3, 4, 5, 6], num_experts=8, top_k=2, shared_experts=0,
                      router_paths=[f"layers.{i}.mlp.gate" for i in range(1, 7)], params=123_456_789,
                      dtype_on_disk="bfloat16", trust_remote_code=False, notes=[])


# ---- the word-view run: every token's experts are a formula of its global index ------------------------------------
WORD_RUN_TAGS = ("DET", "NOUN", "PRON", "PUNCT", "SCONJ", "VERB", "PROPN")
#: (text, unused, pieces per word or None: one piece per word, "Ġ" before all but the first); a BOS token starts
#: every sentence. Global token indices: s0 = 0..6 (BOS 0, "that" 3), s1 = 7..11 ("That" 8), s2 = 12..16
#: ("that" 15), s3 = 17..22 (Th 18, atcher 19, said 20, that 21).
WORD_RUN_SENTENCES = [
    ("I know that he left .", None, None),
    ("That dog runs .", None, None),
    ("Give me that .", None, None),
    ("Thatcher said that .", None, [["Th", "atcher"], ["Ġsaid"], ["Ġthat"], ["Ġ."]]),
]
WORD_RUN_WORD_TAGS = [
    ["PRON", "VERB", "SCONJ", "PRON", "VERB", "PUNCT"],
    ["DET", "NOUN", "VERB", "PUNCT"],
    ["VERB", "PRON", "PRON", "PUNCT"],
    ["PROPN", "VERB", "SCONJ", "PUNCT"],
]
WORD_RUN_EXPERTS, WORD_RUN_K, WORD_RUN_LAYERS = 4, 2, [1, 2]


def word_run_experts(t: int, li: int) -> list[int]:
    """The routing of global token ``t`` at MoE layer position ``li`` in :func:`word_run` (rank order)."""
    return [(t + li) % WORD_RUN_EXPERTS, (t + li + 1) % WORD_RUN_EXPERTS]


def word_run(root: str | Path, *, shift: int = 0, model: str = "org/m", token_ids=None, unused_rank: bool = False) -> Run:
    """The run of :data:`WORD_RUN_SENTENCES` (23 tokens, 4 experts, top-2, MoE layers 1 and 2) routed by
    :func:`word_run_experts`. ``shift``: a second run of the same tokens that differs at layer position 1 for every
    token whose index is a multiple of 3 (its second expert moves). ``model``: another name gives another run id over
    the same corpus; ``token_ids``: another tokenizer's ids; ``unused_rank``: layer position 0 uses one expert for
    the even tokens (their rank 1 holds the unused-rank sentinel 255, per-layer top-k)."""
    records, offs, widx, pos, special, offsets = [], [0], [], [], [], []
    for (text, _, pieces), tags in zip(WORD_RUN_SENTENCES, WORD_RUN_WORD_TAGS):
        words = text.split()
        spans, c = [], 0
        for w in words:
            s = text.index(w, c)
            spans.append((s, s + len(w)))
            c = s + len(w)
        pieces = pieces or [[("Ġ" if i else "") + w] for i, w in enumerate(words)]
        toks = ["<s>"]
        widx.append(-1)
        pos.append(-1)
        special.append(True)
        offsets.append((0, 0))
        for wi, ps in enumerate(pieces):
            for p in ps:
                toks.append(p)
                widx.append(wi)
                pos.append(WORD_RUN_TAGS.index(tags[wi]))
                special.append(False)
                offsets.append(spans[wi])
        records.append({"id": f"s{len(records)}", "text": text, "tokens": toks,
                        "words": [[w, t, a, b] for w, t, (a, b) in zip(words, tags, spans)]})
        offs.append(offs[-1] + len(toks))
    T = offs[-1]
    L, N, K = len(WORD_RUN_LAYERS), WORD_RUN_EXPERTS, WORD_RUN_K
    experts = np.array([[word_run_experts(t, li) for li in range(L)] for t in range(T)], dtype=np.uint8)
    if shift:
        experts[::3, 1, 1] = (experts[::3, 1, 1] + 1) % N
        experts[::3, 1, 1] = np.where(experts[::3, 1, 1] == experts[::3, 1, 0], (experts[::3, 1, 1] + 1) % N,
                                      experts[::3, 1, 1])
    weights = np.full((T, L, K), 0.5, np.float16)
    if unused_rank:
        experts[::2, 0, 1] = 255
        weights[::2, 0] = (1.0, 0.0)
    arrays = {"token_ids": np.asarray(token_ids if token_ids is not None else np.arange(T), dtype=np.int32),
              "sentence_offsets": np.array(offs, dtype=np.int64), "word_index": np.array(widx, dtype=np.int32),
              "pos": np.array(pos, dtype=np.int16), "special": np.array(special), "crossing": np.zeros(T, bool),
              "offsets": np.array(offsets, dtype=np.int32), "experts": experts, "weights": weights}
    return write_run(root, arrays, records, tags=WORD_RUN_TAGS, moe_layers=list(WORD_RUN_LAYERS), num_experts=N,
                     top_k=K, model=model, corpus="words.conllu", tagset="x")


# --------------------------------------------------------------------------- text of every kind, for the store
TRICKY = ["", "-", "+1", "=x", '"a, b"', "café", "日本語", "Ċ", "tab\there", "two\nlines", "x" * 300, "ΣΑΣ", "\u200b"]


def tricky_records(n_sent=40, seed=0):
    """Records with every kind of text (empty, quotes, newlines, non-ASCII, long) and skipped sentences."""
    rng = np.random.default_rng(seed)
    recs, lengths = [], []
    for s in range(n_sent):
        skipped = s % 9 == 4
        nw = 0 if skipped else int(rng.integers(1, 6))
        forms = [TRICKY[int(i)] or "w" for i in rng.integers(0, len(TRICKY), nw)]
        text, words = "", []
        for f in forms:
            start = len(text) + (1 if text else 0)
            text = (text + " " + f) if text else f
            words.append([f, ["NOUN", "VERB", "X"][int(rng.integers(0, 3))], start, start + len(f)])
        tokens = [] if skipped else ["<s>"] + [p for f in forms for p in ("Ġ" + f[:2], f[2:] or "∅")]
        recs.append({"id": f"doc-{s}" if s % 5 else "", "text": text, "words": words, "tokens": tokens,
                     "skipped": skipped})
        lengths.append(len(tokens))
    return recs, lengths


def arrays_for_lengths(lengths, seed=1, L=2, k=2, extra=None):
    """Random run arrays (top-k of 8 experts at L layers) for sentences of these token counts; a BOS each."""
    rng = np.random.default_rng(seed)
    T = int(sum(lengths))
    wi = np.concatenate([np.concatenate([[-1], np.arange(n - 1) // 2]) if n else np.zeros(0) for n in lengths])
    out = {
        "token_ids": rng.integers(0, 1000, T).astype(np.int32),
        "sentence_offsets": np.concatenate([[0], np.cumsum(lengths)]).astype(np.int64),
        "word_index": wi.astype(np.int32),
        "pos": np.where(wi >= 0, rng.integers(0, 3, T), -1).astype(np.int16),
        "special": wi < 0,
        "crossing": np.zeros(T, dtype=bool),
        "offsets": rng.integers(0, 50, (T, 2)).astype(np.int32),
        "experts": rng.integers(0, 8, (T, L, k)).astype(np.uint8),
        "weights": rng.random((T, L, k)).astype(np.float16),
    }
    out.update(extra or {})
    return out


def store_manifest_extra(L=2, k=2, **more):
    """The manifest fields a run of :func:`arrays_for_lengths` needs (model, tagset, corpus), plus ``more``."""
    return {"model": {"name_or_path": "toy", "moe_layers": list(range(L)), "num_experts": 8, "top_k": k},
            "tagset": {"name": "upos", "tags": ["NOUN", "VERB", "X"]}, "corpus": {"path": "c.conllu"}, **more}
# ---- a generation run: the synthetic run with a per-token origin ----------------------------------------------------
#: tokens of each synthetic sentence that are its prompt (BOS + the first words); the rest are "generated"
ORIGIN_PROMPT_TOKENS = 4
ORIGIN_TAGGING = {"tagger": {"name": "builtin"}, "prompt_pos": "tagger",
                  "accuracy": {"data": "en_ewt-ud-test.conllu", "words": 25094, "accuracy": 0.9}}


def synthetic_origin(sentence_offsets: np.ndarray, prompt_tokens: int = ORIGIN_PROMPT_TOKENS) -> np.ndarray:
    """``origin`` (uint8 [T]) of a run: each sentence's first ``prompt_tokens`` tokens are its prompt (0), the
    rest generated (1)."""
    off = np.asarray(sentence_offsets)
    origin = np.ones(int(off[-1]), dtype=np.uint8)
    for a, b in zip(off[:-1], off[1:]):
        origin[a:min(b, a + prompt_tokens)] = 0
    return origin


def origin_run(root: str | Path, *, sentences=None, seed: int = 0, arrays_hook=None, tagging: dict | None = None,
               model: str = "fake/moe-gen") -> Run:
    """The synthetic run with :func:`synthetic_origin` as its ``origin`` and a ``tagging`` manifest field, as
    ``moe-tui generate`` writes them. ``arrays_hook(arrays)`` may change the arrays before they are written."""
    arrays, records = synthetic_arrays(sentences=sentences, seed=seed)
    arrays["origin"] = synthetic_origin(arrays["sentence_offsets"])
    if arrays_hook is not None:
        arrays_hook(arrays)
    return write_run(root, arrays, records, tags=UPOS, moe_layers=list(range(1, 7)), num_experts=8, top_k=2,
                     model=model, corpus="prompts.txt",
                     manifest_extra={"tagging": tagging if tagging is not None else ORIGIN_TAGGING})
