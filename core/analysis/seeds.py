"""One seed, one random stream per random step (``numpy.random.SeedSequence.spawn``).

A report takes one integer seed (``--seed``). Every random step of it draws from its own stream, a child
of ``SeedSequence(seed)`` at a fixed position, so that changing one step (more permutations, another
t-SNE sample size, one more probe seed) never moves the random numbers of another:

====================  ========  ====================================================================
stream                position  what draws from it
====================  ========  ====================================================================
``split``             0         the 2/3-1/3 token split of the probes (child ``r`` for probe seed ``r``)
``mlp_init``          1         the MLPs' initial weights (child ``r``: one ``random_state`` per seed)
``mlp_shuffle``       2         the torch engine's minibatch order (child ``r``; sklearn shuffles with
                                its ``random_state``, i.e. the ``mlp_init`` stream)
``control_labels``    3         the control task's random label per word form (child ``r``)
``permutation_null``  4         the POS permutations of the Spec null
``bootstrap``         5         the sentence resamples of the bootstrap intervals
``tsne``              6         the t-SNE token sample and the t-SNE's own random state
``context_effect``    7         the within-token-id POS shuffles of the context-effect test
``info_valid``        8         the held-out tenth of the training split of the information probes
``mdl_order``         9         the order in which the online code (MDL) sends the training tokens
====================  ========  ====================================================================

Probe seed ``r`` (``--probe-seeds N`` trains seeds ``r = 0 .. N-1``) is the ``r``-th child of the
stream's own ``spawn``; streams without seeds are used directly. :func:`stream` builds the child
afresh each time (a ``SeedSequence`` counts the children it has spawned, so re-spawning from a fresh
parent is what makes the streams reproducible).
"""

from __future__ import annotations

import numpy as np

__all__ = ["STREAMS", "stream", "child", "generator", "int_seed", "as_seed_sequence"]

STREAMS: tuple[str, ...] = ("split", "mlp_init", "mlp_shuffle", "control_labels", "permutation_null", "bootstrap",
                            "tsne", "context_effect", "info_valid", "mdl_order")


def stream(seed: int, name: str, sub: int | None = None) -> np.random.SeedSequence:
    """The ``SeedSequence`` of one random step: ``SeedSequence(seed).spawn(len(STREAMS))[i]``, and of
    that its ``sub``-th spawned child when ``sub`` is given (probe seed ``sub``)."""
    if name not in STREAMS:
        raise ValueError(f"unknown random stream {name!r}; known: {', '.join(STREAMS)}")
    if int(seed) < 0:
        raise ValueError(f"the seed must be >= 0, got {seed}")
    child = np.random.SeedSequence(int(seed)).spawn(len(STREAMS))[STREAMS.index(name)]
    if sub is None:
        return child
    if int(sub) < 0:
        raise ValueError(f"the probe seed index must be >= 0, got {sub}")
    return child.spawn(int(sub) + 1)[int(sub)]


def generator(seed: int, name: str, sub: int | None = None) -> np.random.Generator:
    """``numpy.random.Generator`` (PCG64) on :func:`stream`."""
    return np.random.default_rng(stream(seed, name, sub))


def int_seed(seed: int, name: str, sub: int | None = None) -> int:
    """A 32-bit integer drawn from :func:`stream`, for APIs that take an int ``random_state``
    (scikit-learn's ``MLPClassifier``, ``numpy.random.RandomState``, openTSNE)."""
    return int(stream(seed, name, sub).generate_state(1, dtype=np.uint32)[0])


def child(ss: np.random.SeedSequence, i: int) -> np.random.SeedSequence:
    """The ``i``-th child that ``ss.spawn`` yields on a fresh ``ss``, without touching ``ss``'s spawn counter
    (so that passing the same ``SeedSequence`` twice gives the same numbers)."""
    return np.random.SeedSequence(ss.entropy, spawn_key=tuple(ss.spawn_key) + (int(i),), pool_size=ss.pool_size)


def as_seed_sequence(seed: int | np.random.SeedSequence) -> np.random.SeedSequence:
    """``SeedSequence(seed)`` for an int; a ``SeedSequence`` as it is."""
    return seed if isinstance(seed, np.random.SeedSequence) else np.random.SeedSequence(int(seed))
