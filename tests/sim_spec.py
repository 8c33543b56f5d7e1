"""A population of routes whose global Spec is known exactly, for checking interval coverage.

Every (MoE layer, POS) has two favourite experts; each token's top-2 experts are drawn without
replacement (Plackett-Luce, the Gumbel top-k trick) from weights 1 for the other experts and
``strength[state]`` for the favourites, where ``state`` (0 or 1, equally likely) is drawn once per
sentence, so that the tokens of a sentence are correlated (what the sentence bootstrap is for). With
strengths near 1 the routers are weakly specialised: Spec a few points above U = 100 k / N.

The truth is the population value of the report's global Spec: with ``pi_e`` = P(expert e among a
token's two) / 2 (the share of the POS's assignments expert e takes in the population),
``Spec[l, p] = 100 * (sum of the 2 largest pi_e)``, then the mean over layers and POS (no X or SYM).
P(e among the two) = P(e first) + sum_i P(i first) P(e second | i first) with P(i first) = w_i / W and
P(e second | i first) = w_e / (W - w_i).
"""

from __future__ import annotations

import numpy as np

K = 2


def favourites(n_layers: int, n_pos: int, n_experts: int, seed: int = 0) -> np.ndarray:
    """``[L, P, 2]`` distinct favourite experts per (layer, POS), seeded."""
    rng = np.random.default_rng(seed)
    return np.stack([np.stack([rng.choice(n_experts, 2, replace=False) for _ in range(n_pos)])
                     for _ in range(n_layers)])


def weights(fav: np.ndarray, n_experts: int, strength: tuple[float, float]) -> np.ndarray:
    """``[2, L, P, N]`` Plackett-Luce weights per sentence state."""
    L, P, _ = fav.shape
    w = np.ones((2, L, P, n_experts))
    for s, st in enumerate(strength):
        np.put_along_axis(w[s], fav, st, axis=-1)
    return w


def inclusion(w: np.ndarray) -> np.ndarray:
    """P(expert among the 2 drawn without replacement) for weights ``[..., N]`` (exact)."""
    W = w.sum(-1, keepdims=True)
    first = w / W
    second = (first[..., :, None] * w[..., None, :] / (W[..., None] - w[..., :, None]))  # [.., i, e]
    n = w.shape[-1]
    second = second * (1 - np.eye(n))
    return first + second.sum(-2)


def true_global_spec(w: np.ndarray) -> float:
    """Population global Spec of :func:`draw`'s routes (both states equally likely, POS uniform)."""
    pi = inclusion(w).mean(axis=0) / K                      # [L, P, N] share of the assignments
    return float(100.0 * np.sort(pi, axis=-1)[..., -K:].sum(-1).mean())


def draw(rng: np.random.Generator, w: np.ndarray, n_sentences: int, tokens_per_sentence: int = 10):
    """One sample: ``(experts [T, L, 2], pos [T], sentence [T])`` with POS uniform over the ``P`` tags."""
    _, L, P, N = w.shape
    T = n_sentences * tokens_per_sentence
    sentence = np.repeat(np.arange(n_sentences), tokens_per_sentence)
    state = rng.integers(0, 2, n_sentences)[sentence]
    pos = rng.integers(0, P, T)
    experts = np.empty((T, L, K), dtype=np.int64)
    for layer in range(L):
        g = np.log(w[state, layer, pos]) + rng.gumbel(size=(T, N))
        experts[:, layer] = np.argsort(-g, axis=1)[:, :K]
    return experts, pos, sentence


def draw_correct(rng: np.random.Generator, n_sentences: int, tokens_per_sentence: int = 10,
                 a: float = 6.0, b: float = 3.0) -> tuple[np.ndarray, np.ndarray, float]:
    """Per-token correctness with a per-sentence accuracy ~ Beta(a, b): ``(correct [T], sentence [T],
    truth = a / (a + b))``."""
    p = rng.beta(a, b, n_sentences)
    sentence = np.repeat(np.arange(n_sentences), tokens_per_sentence)
    return rng.random(len(sentence)) < p[sentence], sentence, a / (a + b)
