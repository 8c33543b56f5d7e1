"""In-memory stand-ins for cache Runs / RunStore and moe_tui.core.models facts, for the TUI tests (docs/CONTRACT.md)."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

UPOS = ("ADJ", "ADP", "ADV", "AUX", "CCONJ", "DET", "INTJ", "NOUN", "NUM", "PART", "PRON", "PROPN", "PUNCT",
        "SCONJ", "SYM", "VERB", "X")

SENTENCES = [
    ("s1", "The cat sat on the mat .", ["DET", "NOUN", "VERB", "ADP", "DET", "NOUN", "PUNCT"]),
    ("s2", "Dogs bark loudly at night .", ["NOUN", "VERB", "ADV", "ADP", "NOUN", "PUNCT"]),
    ("s3", "She quickly read the old book .", ["PRON", "ADV", "VERB", "DET", "ADJ", "NOUN", "PUNCT"]),
    ("s4", "Birds fly south in winter .", ["NOUN", "VERB", "ADV", "ADP", "NOUN", "PUNCT"]),
]


@dataclass
class FakeRun:
    path: Path
    manifest: dict
    run_id: str
    token_ids: np.ndarray
    sentence_offsets: np.ndarray
    word_index: np.ndarray
    pos: np.ndarray
    special: np.ndarray
    crossing: np.ndarray
    offsets: np.ndarray
    experts: np.ndarray
    weights: np.ndarray
    sentences: list
    tags: tuple
    moe_layers: list
    num_experts: int
    top_k: int

    def analysis_mask(self) -> np.ndarray:
        return self.pos >= 0

    # the columnar text a cache Run has (moe_tui.cache.columns), derived from the records
    @property
    def _text(self):
        from moe_tui.cache.columns import TextColumns

        got = self.__dict__.get("_text_columns")
        if got is None:
            got = self.__dict__["_text_columns"] = TextColumns.from_records(self.sentences)
        return got

    texts = property(lambda self: self._text.texts)
    forms = property(lambda self: self._text.forms)
    word_offsets = property(lambda self: self._text.word_offsets)
    word_form = property(lambda self: self._text.word_form)
    word_spans = property(lambda self: self._text.word_spans)
    pieces = property(lambda self: self._text.pieces)
    token_piece = property(lambda self: self._text.token_piece)


def fake_run(n_layers: int = 6, n_experts: int = 8, top_k: int = 2, sentences=None, seed: int = 0,
             run_id: str = "fakerun000000001") -> FakeRun:
    """A small deterministic run: a BOS token then one token per word; experts depend on POS and layer."""
    rng = np.random.default_rng(seed)
    sentences = sentences or SENTENCES
    tok_ids, offs, widx, pos, special, sent_meta = [], [0], [], [], [], []
    offsets = []
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
        offsets += [(0, 0)] + [(m[2], m[3]) for m in meta_words]
        offs.append(offs[-1] + len(toks))
        sent_meta.append({"id": sid, "text": text, "words": meta_words, "tokens": toks})
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
    manifest = {"schema": 1, "run_id": run_id, "model": {"name_or_path": "fake/moe-tiny"},
                "corpus": {"path": "fake.conllu"}, "created": "2026-01-01T00:00:00"}
    return FakeRun(
        path=Path("/nonexistent") / run_id, manifest=manifest, run_id=run_id,
        token_ids=np.array(tok_ids, dtype=np.int32), sentence_offsets=np.array(offs, dtype=np.int64),
        word_index=np.array(widx, dtype=np.int32), pos=pos_a, special=np.array(special, dtype=bool),
        crossing=np.zeros(T, dtype=bool), offsets=np.array(offsets, dtype=np.int32), experts=experts, weights=w,
        sentences=sent_meta, tags=UPOS, moe_layers=list(range(1, n_layers + 1)), num_experts=n_experts, top_k=top_k,
    )


@dataclass
class FakeRunInfo:
    run_id: str
    model: str
    corpus: str
    tokens: int
    created: str


@dataclass
class FakeStore:
    runs: dict = field(default_factory=dict)

    def list_runs(self):
        return [FakeRunInfo(r.run_id, r.manifest["model"]["name_or_path"], r.manifest["corpus"]["path"],
                            int(len(r.token_ids)), r.manifest["created"]) for r in self.runs.values()]

    def open(self, run_id):
        if run_id not in self.runs:
            from moe_tui.errors import CacheError

            raise CacheError(f"no run {run_id!r} in the fake store")
        return self.runs[run_id]


@dataclass
class FakeFacts:
    name_or_path: str = "fake/moe-tiny"
    model_type: str = "qwen3_moe"
    architecture_class: str = "Qwen3MoeForCausalLM"
    num_layers: int = 6
    moe_layers: list = field(default_factory=lambda: [1, 2, 3, 4, 5, 6])
    num_experts: int = 8
    top_k: int = 2
    shared_experts: int = 0
    params: int = 123_456_789
    dtype_on_disk: str = "bfloat16"
    notes: list = field(default_factory=list)


def fake_inspect(path: str) -> FakeFacts:
    return FakeFacts(name_or_path=path)


def screen_text(app) -> str:
    """The current screen as plain text (for asserts and debugging)."""
    strips = app.screen._compositor.render_strips()
    return "\n".join("".join(seg.text for seg in strip).rstrip() for strip in strips)


class TmuxApp:
    """The real ``moe-tui`` console script in a private tmux server (``tmux -L``): keys in, screen out.

    ``env`` is the app's environment; the server is killed by :meth:`close` (use as a context manager).
    """

    def __init__(self, tmux: str, env: dict[str, str], *, size: tuple[int, int] = (120, 40), args: tuple = ()):
        import os
        import shlex
        import subprocess
        import sys
        from pathlib import Path

        repo = Path(__file__).resolve().parents[1]
        script = repo / ".venv" / "bin" / "moe-tui"
        prog = shlex.quote(str(script)) if script.exists() else \
            f"{shlex.quote(sys.executable)} -c 'from moe_tui.tui.app import run_app; run_app()'"
        if args:
            prog += " " + " ".join(shlex.quote(str(a)) for a in args)
        envs = " ".join(f"{k}={shlex.quote(v)}" for k, v in env.items())
        self.T = [tmux, "-L", f"moe_e2e_{os.getpid()}_{id(self)}"]
        subprocess.run(self.T + ["new-session", "-d", "-s", "e2e", "-x", str(size[0]), "-y", str(size[1]),
                                 f"cd {shlex.quote(str(repo))} && env {envs} {prog}"], check=True)

    def cap(self) -> str:
        import subprocess

        return subprocess.run(self.T + ["capture-pane", "-t", "e2e", "-p"], capture_output=True, text=True).stdout

    def wait_for(self, text: str, timeout: float = 20.0) -> str:
        import time

        t0 = time.monotonic()
        while time.monotonic() - t0 < timeout:
            screen = self.cap()
            if text in screen:
                return screen
            time.sleep(0.1)
        raise AssertionError(f"{text!r} not on screen after {timeout}s:\n{self.cap()}")

    def keys(self, *k: str) -> None:
        import subprocess

        subprocess.run(self.T + ["send-keys", "-t", "e2e", *k], check=True)

    def quit(self, timeout: float = 30.0) -> None:
        """ctrl+q, then wait until the app (and so the tmux session) has ended."""
        import subprocess
        import time

        self.keys("C-q")
        t0 = time.monotonic()
        while time.monotonic() - t0 < timeout:
            if subprocess.run(self.T + ["has-session", "-t", "e2e"], capture_output=True).returncode != 0:
                return
            time.sleep(0.1)
        raise AssertionError("moe-tui did not quit on ctrl+q:\n" + self.cap())

    def close(self) -> None:
        import subprocess

        subprocess.run(self.T + ["kill-server"], capture_output=True)

    def __enter__(self) -> "TmuxApp":
        return self

    def __exit__(self, *exc) -> None:
        self.close()
