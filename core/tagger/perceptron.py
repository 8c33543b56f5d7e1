"""A UPOS tagger: a greedy averaged perceptron (Collins 2002) with word-shape and context features.

Features of word ``i`` (keys are ``template=value`` strings; an unseen key weighs nothing):

* the word itself: a bias, its lower-cased form (numbers folded to ``!YEAR`` / ``!DIGITS``), its suffixes of 1-4
  letters, its first character (case kept), its first 2 and 3 letters, its shape (``Xx``, ``d.d``, ``x-x``: each
  character as X / x / d or itself, runs collapsed);
* its neighbours: the forms of words ``i-2 .. i+2``, the 3-letter suffixes and the shapes of ``i-1`` and ``i+1``;
* the tags already predicted: ``i-1``, ``i-2`` and the pair.

Words seen often enough with one tag (a tag dictionary: at least ``dict_min_count`` times, that tag at least
``dict_min_share`` of the time) take it directly. Decoding is greedy, left to right.

Speed: the score of the word-only features of a word type is computed once per type and kept, as is its score
as each neighbour; a batch of sentences is then decoded position by position with array operations over the
sentences (:meth:`PerceptronTagger.tag_batch`).

A trained tagger is a folder: ``tagger.json`` (tags, templates, training data and its licence, accuracy) and
``weights.npz`` (float32 weights, feature keys and the tag dictionary as string tables; loaded with
``allow_pickle=False``). :func:`train` is deterministic: the same sentences, seed and epochs give the same file.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Sequence

import numpy as np

__all__ = ["PerceptronTagger", "train", "word_keys", "TAGGER_FORMAT", "MODEL_FILE", "WEIGHTS_FILE"]

TAGGER_FORMAT = "moe-tui-perceptron-tagger"
MODEL_FILE = "tagger.json"
WEIGHTS_FILE = "weights.npz"

_SELF = ("b", "w", "s1", "s2", "s3", "s4", "p1", "p2", "p3", "sh")
_NEIGHBOURS = ((-2, "w"), (-1, "w"), (1, "w"), (2, "w"), (-1, "s3"), (1, "s3"), (-1, "sh"), (1, "sh"))
_PAD = {-2: "\x02-2", -1: "\x02-1", 1: "\x03+1", 2: "\x03+2"}  # pseudo-words beyond a sentence's ends


def _norm(word: str) -> str:
    if word.isdigit() and len(word) == 4:
        return "!YEAR"
    if word[:1].isdigit():
        return "!DIGITS"
    return word.lower()


def _shape(word: str) -> str:
    out = []
    for ch in word[:12]:
        c = "X" if ch.isupper() else "x" if ch.islower() else "d" if ch.isdigit() else ch
        if not out or out[-1] != c:
            out.append(c)
    return "".join(out)


def _values(word: str) -> dict[str, str]:
    low = word.lower()
    return {"b": "", "w": _norm(word), "s1": low[-1:], "s2": low[-2:], "s3": low[-3:], "s4": low[-4:],
            "p1": word[:1], "p2": low[:2], "p3": low[:3], "sh": _shape(word)}


def word_keys(word: str) -> tuple[list[str], list[str]]:
    """The feature keys of ``word``: its own (one per template of ``_SELF``) and as each neighbour (one per
    ``_NEIGHBOURS`` template)."""
    v = _values(word)
    own = [f"{t}={v[t]}" for t in _SELF]
    nb = [f"{t}@{o}={v[t]}" for o, t in _NEIGHBOURS]
    return own, nb


@dataclass
class _Weights:
    static: np.ndarray   # [F + 1, T] (last row: unseen keys, zeros)
    prev: np.ndarray     # [T + 2, T] tag of i-1 (T: sentence start)
    prev2: np.ndarray    # [T + 2, T] tag of i-2 (T, T+1: before the start)
    pair: np.ndarray     # [(T + 2) ** 2, T] (i-1, i-2)


class PerceptronTagger:
    """A trained tagger (:func:`train`, or :meth:`load` of a folder). ``tag(words)`` / ``tag_batch(sentences)``
    give UPOS tags (strings of :attr:`tags`)."""

    def __init__(self, tags: Sequence[str], keys: Sequence[str], weights: _Weights, tagdict: dict[str, int],
                 meta: dict | None = None):
        self.tags = tuple(tags)
        self.meta = dict(meta or {})
        self._key_id = {k: i for i, k in enumerate(keys)}
        self._w = weights
        self._tagdict = dict(tagdict)
        T = len(self.tags)
        self._unknown = len(keys)
        # per word type: its own score [T], its score as each neighbour [n_nb, T], its dictionary tag (-1: none)
        self._types: dict[str, int] = {}
        self._own = np.zeros((0, T), dtype=np.float32)
        self._nb = np.zeros((0, len(_NEIGHBOURS), T), dtype=np.float32)
        self._dict_tag = np.zeros(0, dtype=np.int64)
        self._pending: list[str] = []
        self._pad_types = {o: self._type_id(w) for o, w in _PAD.items()}
        self._flush()

    # ---- word types ---------------------------------------------------------------------------------------
    def _type_id(self, word: str) -> int:
        i = self._types.get(word)
        if i is None:
            i = self._types[word] = len(self._types)
            self._pending.append(word)
        return i

    def _flush(self) -> None:
        """Compute the scores of the word types seen since the last flush (one batched gather)."""
        if not self._pending:
            return
        words, self._pending = self._pending, []
        kid, unk = self._key_id, self._unknown
        own_ids = np.empty((len(words), len(_SELF)), dtype=np.int64)
        nb_ids = np.empty((len(words), len(_NEIGHBOURS)), dtype=np.int64)
        for j, w in enumerate(words):
            own, nb = word_keys(w)
            own_ids[j] = [kid.get(k, unk) for k in own]
            nb_ids[j] = [kid.get(k, unk) for k in nb]
        W = self._w.static
        self._own = np.concatenate([self._own, W[own_ids].sum(axis=1)])
        self._nb = np.concatenate([self._nb, W[nb_ids]])
        self._dict_tag = np.concatenate([self._dict_tag,
                                         np.array([self._tagdict.get(w, -1) for w in words], dtype=np.int64)])
        if len(self._types) > 2_000_000:  # a long-running process tagging endless new words: start over
            self._types.clear()
            self._own, self._nb, self._dict_tag = self._own[:0], self._nb[:0], self._dict_tag[:0]
            self._pad_types = {o: self._type_id(w) for o, w in _PAD.items()}
            self._flush()

    # ---- tagging ------------------------------------------------------------------------------------------
    def tag(self, words: Sequence[str]) -> list[str]:
        """The tags of one sentence's words."""
        return self.tag_batch([words])[0]

    def tag_ids(self, sentences: Sequence[Sequence[str]]) -> list[np.ndarray]:
        """Tag indices (into :attr:`tags`) of each sentence's words."""
        sentences = [list(s) for s in sentences]
        if not sentences:
            return []
        lengths = np.array([len(s) for s in sentences], dtype=np.int64)
        ids = np.array([self._type_id(w) for s in sentences for w in s], dtype=np.int64)
        self._flush()
        out: list[np.ndarray] = []
        # sentences sorted by length so that a chunk pads little; chunks bound the memory
        order = np.argsort(-lengths, kind="stable")
        starts = np.concatenate([[0], np.cumsum(lengths)])
        tags_of: list[np.ndarray | None] = [None] * len(sentences)
        chunk = 512
        for c in range(0, len(order), chunk):
            rows = order[c:c + chunk]
            res = self._decode([ids[starts[r]:starts[r + 1]] for r in rows])
            for r, t in zip(rows, res):
                tags_of[r] = t
        out = [t if t is not None else np.zeros(0, dtype=np.int64) for t in tags_of]
        return out

    def tag_batch(self, sentences: Sequence[Sequence[str]]) -> list[list[str]]:
        """The tags of each sentence's words."""
        names = self.tags
        return [[names[i] for i in t.tolist()] for t in self.tag_ids(sentences)]

    def _decode(self, type_rows: list[np.ndarray]) -> list[np.ndarray]:
        B = len(type_rows)
        Lmax = max((len(r) for r in type_rows), default=0)
        T = len(self.tags)
        if Lmax == 0:
            return [np.zeros(0, dtype=np.int64) for _ in type_rows]
        pad = self._pad_types
        # type ids with two pseudo-words either side: [B, Lmax + 4]
        grid = np.full((B, Lmax + 4), pad[2], dtype=np.int64)
        grid[:, 0], grid[:, 1] = pad[-2], pad[-1]
        lengths = np.array([len(r) for r in type_rows], dtype=np.int64)
        for b, r in enumerate(type_rows):
            grid[b, 2:2 + len(r)] = r
            if len(r) + 2 < Lmax + 4:
                grid[b, 2 + len(r)] = pad[1]
        mid = grid[:, 2:2 + Lmax]
        static = self._own[mid]  # [B, Lmax, T]
        for j, (o, _t) in enumerate(_NEIGHBOURS):
            static += self._nb[grid[:, 2 + o:2 + o + Lmax], j]
        dict_tag = self._dict_tag[mid]
        W = self._w
        prev = np.full(B, T, dtype=np.int64)
        prev2 = np.full(B, T + 1, dtype=np.int64)
        out = np.empty((B, Lmax), dtype=np.int64)
        width = T + 2
        for i in range(Lmax):
            sc = static[:, i] + W.prev[prev] + W.prev2[prev2] + W.pair[prev * width + prev2]
            t = sc.argmax(axis=1)
            d = dict_tag[:, i]
            t = np.where(d >= 0, d, t)
            out[:, i] = t
            prev2, prev = prev, t
        return [out[b, :lengths[b]] for b in range(B)]

    # ---- files --------------------------------------------------------------------------------------------
    def save(self, folder: str | Path, meta: dict | None = None) -> Path:
        """Write ``tagger.json`` and ``weights.npz`` into ``folder`` (atomically, each); returns the folder."""
        from moe_tui.fileio import atomic_write_bytes, atomic_write_json

        folder = Path(folder)
        folder.mkdir(parents=True, exist_ok=True)
        keys = sorted(self._key_id, key=self._key_id.get)
        words = sorted(self._tagdict)
        arrays = {
            "static": self._w.static[:-1].astype(np.float32), "prev": self._w.prev.astype(np.float32),
            "prev2": self._w.prev2.astype(np.float32), "pair": self._w.pair.astype(np.float32),
            **_string_table("keys", keys), **_string_table("dict_words", words),
            "dict_tags": np.array([self._tagdict[w] for w in words], dtype=np.int16),
        }

        atomic_write_bytes(folder / WEIGHTS_FILE, _npz_bytes(arrays))
        info = dict(self.meta if meta is None else meta)
        info.update({"format": TAGGER_FORMAT, "version": 1, "tags": list(self.tags),
                     "features": {"own": list(_SELF), "neighbours": [list(x) for x in _NEIGHBOURS],
                                  "tags": ["i-1", "i-2", "i-1 i-2"], "keys": len(keys)},
                     "weights": {"file": WEIGHTS_FILE,
                                 "sha256": hashlib.sha256((folder / WEIGHTS_FILE).read_bytes()).hexdigest()}})
        atomic_write_json(folder / MODEL_FILE, info)
        self.meta = info
        return folder

    @classmethod
    def load(cls, folder: str | Path) -> "PerceptronTagger":
        """A tagger saved by :meth:`save` (``TaggerError`` in one line when the folder is not one)."""
        from moe_tui.errors import TaggerError

        folder = Path(folder)
        try:
            meta = json.loads((folder / MODEL_FILE).read_text(encoding="utf-8"))
        except FileNotFoundError:
            raise TaggerError(f"{folder} holds no {MODEL_FILE}: not a tagger folder "
                              "(make one with moe-tui tagger train)") from None
        except (OSError, ValueError) as exc:
            raise TaggerError(f"{folder / MODEL_FILE} is unreadable ({exc})") from None
        if not isinstance(meta, dict) or meta.get("format") != TAGGER_FORMAT:
            raise TaggerError(f"{folder / MODEL_FILE} is not a moe-tui tagger (format {meta.get('format')!r})"
                              if isinstance(meta, dict) else f"{folder / MODEL_FILE} is not a moe-tui tagger")
        wpath = folder / WEIGHTS_FILE
        try:
            blob = wpath.read_bytes()
        except OSError as exc:
            raise TaggerError(f"{wpath} is unreadable ({exc.strerror or exc})") from None
        want = (meta.get("weights") or {}).get("sha256")
        if want and hashlib.sha256(blob).hexdigest() != want:
            raise TaggerError(f"{wpath} failed its checksum (altered or truncated)")
        try:
            import io

            with np.load(io.BytesIO(blob), allow_pickle=False) as z:
                a = {k: z[k] for k in z.files}
            tags = [str(t) for t in meta["tags"]]
            T = len(tags)
            static = np.concatenate([a["static"].astype(np.float32), np.zeros((1, T), np.float32)])
            w = _Weights(static, a["prev"].astype(np.float32), a["prev2"].astype(np.float32),
                         a["pair"].astype(np.float32))
            keys = _strings(a, "keys")
            words = _strings(a, "dict_words")
            tagdict = dict(zip(words, (int(x) for x in a["dict_tags"])))
            if static.shape != (len(keys) + 1, T) or w.pair.shape != ((T + 2) ** 2, T):
                raise ValueError("array shapes do not fit the tags")
        except TaggerError:
            raise
        except Exception as exc:  # noqa: BLE001 - a damaged file is one line
            raise TaggerError(f"{wpath} is not a valid tagger weights file ({exc})") from None
        return cls(tags, keys, w, tagdict, meta)


def _npz_bytes(arrays: dict[str, np.ndarray]) -> bytes:
    """An ``.npz`` (what ``np.savez_compressed`` writes, read by ``np.load``) whose bytes depend on the arrays
    only: fixed member order and timestamps, so retraining on the same data gives the same file."""
    import io
    import zipfile

    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", compression=zipfile.ZIP_DEFLATED) as zf:
        for name in sorted(arrays):
            member = io.BytesIO()
            np.lib.format.write_array(member, np.ascontiguousarray(arrays[name]), allow_pickle=False)
            info = zipfile.ZipInfo(f"{name}.npy", date_time=(1980, 1, 1, 0, 0, 0))
            info.compress_type = zipfile.ZIP_DEFLATED
            zf.writestr(info, member.getvalue())
    return buf.getvalue()


def _string_table(name: str, strings: Sequence[str]) -> dict[str, np.ndarray]:
    enc = [s.encode("utf-8") for s in strings]
    off = np.zeros(len(enc) + 1, dtype=np.int64)
    np.cumsum([len(e) for e in enc], out=off[1:])
    return {f"{name}_offsets": off, f"{name}_bytes": np.frombuffer(b"".join(enc), dtype=np.uint8)}


def _strings(arrays: dict, name: str) -> list[str]:
    off = arrays[f"{name}_offsets"].tolist()
    data = arrays[f"{name}_bytes"].tobytes()
    return [data[a:b].decode("utf-8") for a, b in zip(off[:-1], off[1:])]


# ------------------------------------------------------------------------------------------------------ training
def train(sentences: Sequence[tuple[Sequence[str], Sequence[str]]], tags: Sequence[str], *, epochs: int = 10,
          seed: int = 0, dict_min_count: int = 10, dict_min_share: float = 0.98,
          progress: Callable[[int, int], None] | None = None) -> PerceptronTagger:
    """Train on ``sentences`` (``(words, tags)`` pairs; every tag one of ``tags``) for ``epochs`` passes in a
    seeded order. Deterministic: the same inputs give the same weights."""
    tags = tuple(tags)
    T = len(tags)
    tag_index = {t: i for i, t in enumerate(tags)}
    data = []
    for words, ys in sentences:
        if len(words) != len(ys):
            raise ValueError("a sentence has a different number of words and tags")
        try:
            data.append((list(words), np.array([tag_index[y] for y in ys], dtype=np.int64)))
        except KeyError as exc:
            raise ValueError(f"tag {exc.args[0]!r} is not one of the tagger's tags") from None
    # tag dictionary: frequent words with (almost) one tag
    counts: dict[str, np.ndarray] = {}
    for words, ys in data:
        for w, y in zip(words, ys.tolist()):
            c = counts.get(w)
            if c is None:
                c = counts[w] = np.zeros(T, dtype=np.int64)
            c[y] += 1
    tagdict = {w: int(c.argmax()) for w, c in counts.items()
               if c.sum() >= dict_min_count and c.max() / c.sum() >= dict_min_share}
    # feature keys of the training words (every word type's own and neighbour keys, and the pads')
    key_id: dict[str, int] = {}
    type_feats: dict[str, np.ndarray] = {}

    def feats(w: str) -> np.ndarray:
        f = type_feats.get(w)
        if f is None:
            own, nb = word_keys(w)
            f = type_feats[w] = np.array([key_id.setdefault(k, len(key_id)) for k in own + nb], dtype=np.int64)
        return f

    n_own = len(_SELF)
    sent_feats = []
    for words, _ys in data:
        padded = [_PAD[-2], _PAD[-1], *words, _PAD[1], _PAD[2]]
        per = [feats(w) for w in padded]
        rows = np.empty((len(words), n_own + len(_NEIGHBOURS)), dtype=np.int64)
        for i in range(len(words)):
            p = i + 2
            rows[i, :n_own] = per[p][:n_own]
            for j, (o, _t) in enumerate(_NEIGHBOURS):
                rows[i, n_own + j] = per[p + o][n_own + j]
        sent_feats.append(rows)
    F = len(key_id)
    width = T + 2
    W = [np.zeros((F, T)), np.zeros((width, T)), np.zeros((width, T)), np.zeros((width * width, T))]
    U = [np.zeros_like(w) for w in W]  # sum of c * update (the averaging trick of Daume III, 2006)
    c = 1.0
    rng = np.random.default_rng(seed)
    order = np.arange(len(data))
    for epoch in range(epochs):
        rng.shuffle(order)
        for s in order.tolist():
            words, ys = data[s]
            rows = sent_feats[s]
            prev, prev2 = T, T + 1
            for i in range(len(words)):
                d = tagdict.get(words[i])
                if d is not None:
                    guess = d
                else:
                    f = rows[i]
                    sc = W[0][f].sum(axis=0) + W[1][prev] + W[2][prev2] + W[3][prev * width + prev2]
                    guess = int(sc.argmax())
                    truth = int(ys[i])
                    if guess != truth:
                        pair = prev * width + prev2
                        for k, idx in ((0, f), (1, prev), (2, prev2), (3, pair)):
                            W[k][idx, truth] += 1.0
                            W[k][idx, guess] -= 1.0
                            U[k][idx, truth] += c
                            U[k][idx, guess] -= c
                    c += 1.0
                prev2, prev = prev, guess
        if progress is not None:
            progress(epoch + 1, epochs)
    avg = [(w - u / c).astype(np.float32) for w, u in zip(W, U)]
    # keys whose averaged weights are all zero carry nothing: drop them
    keep = np.flatnonzero(np.abs(avg[0]).max(axis=1) > 0)
    keys = sorted(key_id, key=key_id.get)
    kept_keys = [keys[i] for i in keep.tolist()]
    static = np.concatenate([avg[0][keep], np.zeros((1, T), np.float32)])
    meta = {"kind": "averaged perceptron", "epochs": int(epochs), "seed": int(seed),
            "tag_dictionary": {"min_count": int(dict_min_count), "min_share": float(dict_min_share),
                               "words": len(tagdict)}}
    return PerceptronTagger(tags, kept_keys, _Weights(static, avg[1], avg[2], avg[3]), tagdict, meta)
