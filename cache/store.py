"""The run store: one directory per extraction run, numpy arrays + JSON, never pickle.

Layout of a run directory ``<root>/<run_id>/``::

    identity.json        what the run is (model fingerprint x corpus hash x tagset x options) + created time
    .lock                advisory lock held by the extraction writing this run
    shards/plan.json     the fixed batch plan (sentence indices per shard)
    shards/shard-NNNNN.npz   one complete batch, written atomically (temp file + rename)
    manifest.json        written last, atomically: the run is complete only when it exists
    token_ids.npy sentence_offsets.npy word_index.npy pos.npy special.npy crossing.npy
    offsets.npy experts.npy weights.npy   the arrays, loaded memory-mapped
    logits.npy           optional (extract --save-logits): each router's raw logits, float16 [T, L, N]
    sentences.jsonl      per sentence: id, text, words [[form, upos, start, end]], tokens [str]

Every file is written to a temporary name in the same directory, fsynced, and renamed into
place, so a crash (even ``kill -9``) leaves either the old state or the new one.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import hashlib
import io
import json
import os
import re
import shutil
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Iterator

import numpy as np

from moe_tui.errors import CacheError, RunCorruptError
from moe_tui.fileio import atomic_write_bytes, atomic_write_json, atomic_write_text, canonical_json

SCHEMA_VERSION = 1
ARRAY_NAMES = (
    "token_ids",
    "sentence_offsets",
    "word_index",
    "pos",
    "special",
    "crossing",
    "offsets",
    "experts",
    "weights",
)
SHARD_ARRAYS = ("lengths", "sentence_index", "token_ids", "word_index", "pos", "special", "crossing",
                "offsets", "experts", "weights")
#: arrays a run (and its shards) may hold; listed in the manifest and checksummed when present
OPTIONAL_ARRAYS = ("logits",)
_RUN_ID = re.compile(r"^[0-9a-f]{16}$")


def tool_version() -> str:
    try:
        from importlib.metadata import version

        return version("moe-tui")
    except Exception:  # pragma: no cover - running from a source tree without install
        return "0+unknown"


def cache_root(override: str | os.PathLike | None = None) -> Path:
    """Where runs live: ``override``, else ``$MOE_TUI_CACHE``, else the platform user cache dir."""
    if override:
        return Path(override).expanduser()
    env = os.environ.get("MOE_TUI_CACHE")
    if env:
        return Path(env).expanduser()
    import platformdirs

    return platformdirs.user_cache_path("moe-tui") / "runs"


def manifest_digest(manifest: dict) -> str:
    """sha256 over the canonical JSON of a manifest without its own ``manifest_sha256`` field."""
    body = {k: v for k, v in manifest.items() if k != "manifest_sha256"}
    return hashlib.sha256(canonical_json(body).encode()).hexdigest()


def run_id_for(identity: dict) -> str:
    """A run's id: the first 16 hex digits of sha256 over the canonical JSON of its identity."""
    return hashlib.sha256(canonical_json(identity).encode()).hexdigest()[:16]


def _sha256_file(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


# --------------------------------------------------------------------------- locking
@contextlib.contextmanager
def run_lock(run_dir: Path, on_wait: Callable[[str], None] | None = None) -> Iterator[None]:
    """Hold the run's advisory lock; if another process holds it, say so once and wait."""
    run_dir.mkdir(parents=True, exist_ok=True)
    lock_path = run_dir / ".lock"
    try:
        fd = os.open(lock_path, os.O_RDWR | os.O_CREAT, 0o644)
    except OSError as exc:
        raise CacheError(f"cannot create lock {lock_path}: {exc.strerror or exc}") from exc
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError as exc:
            if exc.errno not in (errno.EAGAIN, errno.EACCES, errno.EWOULDBLOCK):
                raise CacheError(f"cannot lock {lock_path}: {exc.strerror or exc}") from exc
            holder = ""
            with contextlib.suppress(OSError, ValueError):
                holder = f" (pid {int(os.pread(fd, 32, 0).decode().strip() or 0)})"
            if on_wait:
                on_wait(f"another extraction of this run is in progress{holder}; waiting for it to finish")
            fcntl.flock(fd, fcntl.LOCK_EX)
        os.ftruncate(fd, 0)
        os.pwrite(fd, str(os.getpid()).encode(), 0)
        yield
    finally:
        with contextlib.suppress(OSError):
            fcntl.flock(fd, fcntl.LOCK_UN)
        os.close(fd)


# --------------------------------------------------------------------------- writer
def _save_npz(fh, arrays: dict[str, np.ndarray]) -> None:
    np.savez(fh, **arrays)


def _save_npy(arr: np.ndarray) -> Callable[[io.BufferedWriter], None]:
    def write(fh):
        np.save(fh, np.ascontiguousarray(arr), allow_pickle=False)

    return write


class RunWriter:
    """Writes one run: shards as extraction goes, then the final arrays and manifest.

    Use under :func:`run_lock`. ``begin`` is idempotent: a rerun with the same identity finds
    the shards already written and :meth:`done_shards` tells which batches to skip.
    """

    def __init__(self, run_dir: Path, identity: dict, *, shard_dirname: str = "shards"):
        self.run_dir = Path(run_dir)
        self.identity = identity
        self.shard_dir = self.run_dir / shard_dirname

    # -- identity / plan
    def begin(self) -> dict:
        """Create the directory and identity.json (kept from an earlier attempt). Returns it."""
        try:
            self.shard_dir.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise CacheError(f"cannot create {self.shard_dir}: {exc.strerror or exc}") from exc
        # temp files of a writer killed mid-write (kill -9 in finalize) would stay forever: remove them
        # (under the run lock nobody else writes here; shard temp files go with shards/ at finalize)
        for stale in self.run_dir.glob(".*.tmp-*"):
            with contextlib.suppress(OSError):
                stale.unlink()
        ident_path = self.run_dir / "identity.json"
        if ident_path.exists():
            try:
                saved = json.loads(ident_path.read_text())
            except (OSError, ValueError):
                saved = None
            if saved and saved.get("identity") == json.loads(canonical_json(self.identity)):
                return saved
        record = {"identity": self.identity, "created": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
                  "run_id": self.run_dir.name}
        atomic_write_json(ident_path, record)
        return record

    def load_plan(self) -> list[list[int]] | None:
        path = self.shard_dir / "plan.json"
        if not path.exists():
            return None
        try:
            plan = json.loads(path.read_text())["batches"]
            return [[int(i) for i in b] for b in plan]
        except (OSError, ValueError, KeyError, TypeError):
            return None

    def save_plan(self, batches: list[list[int]]) -> None:
        atomic_write_json(self.shard_dir / "plan.json", {"batches": batches})

    # -- shards
    def shard_path(self, i: int) -> Path:
        return self.shard_dir / f"shard-{i:05d}.npz"

    def write_shard(self, i: int, arrays: dict[str, np.ndarray]) -> None:
        missing = set(SHARD_ARRAYS) - set(arrays)
        if missing:
            raise ValueError(f"shard arrays missing: {sorted(missing)}")
        atomic_write_bytes(self.shard_path(i), lambda fh: _save_npz(fh, arrays))

    def read_shard(self, i: int) -> dict[str, np.ndarray] | None:
        """A complete shard's arrays, or None if absent or unreadable (it is then redone)."""
        path = self.shard_path(i)
        if not path.exists():
            return None
        try:
            with np.load(path, allow_pickle=False) as z:
                out = {k: z[k] for k in SHARD_ARRAYS}
                out.update({k: z[k] for k in OPTIONAL_ARRAYS if k in z.files})
        except Exception:
            with contextlib.suppress(OSError):
                path.unlink()
            return None
        return out

    def shard_has(self, i: int, name: str) -> bool:
        """Whether shard ``i`` exists and holds array ``name`` (an optional array such as ``logits``)."""
        try:
            with np.load(self.shard_path(i), allow_pickle=False) as z:
                return name in z.files
        except Exception:
            return False

    def clear_shards(self) -> None:
        """Remove every shard (the batch plan changed, so they no longer fit)."""
        for f in self.shard_dir.glob("shard-*.npz"):
            f.unlink(missing_ok=True)

    def done_shards(self, n: int) -> set[int]:
        return {i for i in range(n) if self.shard_path(i).exists()}

    # -- finalize
    def finalize(self, n_batches: int, sentences: list[dict], manifest_extra: dict,
                 optional: tuple[str, ...] = ()) -> Path:
        """Merge the shards in corpus order, write arrays + sentences.jsonl, then manifest.json.

        ``optional``: names from :data:`OPTIONAL_ARRAYS` to write too (every shard must hold them).
        """
        per_sentence: dict[int, dict[str, np.ndarray]] = {}
        for i in range(n_batches):
            shard = self.read_shard(i)
            if shard is None:
                raise CacheError(f"shard {i} of run {self.run_dir.name} is missing; run the extraction again")
            starts = np.concatenate([[0], np.cumsum(shard["lengths"])])
            for j, s in enumerate(shard["sentence_index"].tolist()):
                a, b = int(starts[j]), int(starts[j + 1])
                keep = [k for k in SHARD_ARRAYS if k not in ("lengths", "sentence_index")] + list(optional)
                missing = [k for k in optional if k not in shard]
                if missing:
                    raise CacheError(f"shard {i} of run {self.run_dir.name} has no {missing[0]}; "
                                     "run the extraction again")
                per_sentence[s] = {k: shard[k][a:b] for k in keep}
        n_sent = len(sentences)
        lengths = np.zeros(n_sent, dtype=np.int64)
        for s, d in per_sentence.items():
            lengths[s] = len(d["token_ids"])
        offsets_arr = np.concatenate([[0], np.cumsum(lengths)]).astype(np.int64)
        arrays: dict[str, np.ndarray] = {"sentence_offsets": offsets_arr}
        template = next(iter(per_sentence.values())) if per_sentence else None
        if template is None:
            raise CacheError("no sentence could be extracted (all empty or too long)")
        for k in template:
            parts = [per_sentence[s][k] for s in range(n_sent) if s in per_sentence]
            arrays[k] = np.concatenate(parts, axis=0).astype(template[k].dtype, copy=False)
        meta: dict[str, dict] = {}
        for name in ARRAY_NAMES + tuple(optional):
            arr = arrays[name]
            path = self.run_dir / f"{name}.npy"
            atomic_write_bytes(path, _save_npy(arr))
            meta[name] = {"dtype": str(arr.dtype), "shape": list(arr.shape), "bytes": path.stat().st_size,
                          "sha256": _sha256_file(path)}
        sent_text = "".join(json.dumps(s, ensure_ascii=False) + "\n" for s in sentences)
        atomic_write_text(self.run_dir / "sentences.jsonl", sent_text)
        sent_path = self.run_dir / "sentences.jsonl"
        files = {"sentences.jsonl": {"bytes": sent_path.stat().st_size, "sha256": _sha256_file(sent_path)}}
        ident = json.loads((self.run_dir / "identity.json").read_text())
        manifest = {
            "schema": SCHEMA_VERSION,
            "tool_version": tool_version(),
            "run_id": self.run_dir.name,
            "identity": ident["identity"],
            "created": ident["created"],
            "status": "complete",
            "arrays": meta,
            "files": files,
            **manifest_extra,
        }
        manifest = json.loads(json.dumps(manifest, default=str))  # exactly what a reader will see
        manifest["manifest_sha256"] = manifest_digest(manifest)
        atomic_write_json(self.run_dir / "manifest.json", manifest)
        shutil.rmtree(self.shard_dir, ignore_errors=True)
        return self.run_dir


def add_array(run_dir: Path, name: str, write: Callable[[io.BufferedWriter], None], manifest_update: dict) -> None:
    """Add optional array ``name`` to a complete run: ``write`` fills ``<name>.npy`` (written atomically), then
    the manifest gains its size and checksum plus ``manifest_update`` (top-level keys), re-digested and
    written atomically last. Call under :func:`run_lock`. The run's identity (and id) do not change."""
    if name not in OPTIONAL_ARRAYS:
        raise ValueError(f"{name} is not an optional run array")
    run_dir = Path(run_dir)
    mpath = run_dir / "manifest.json"
    manifest = json.loads(mpath.read_text())
    path = run_dir / f"{name}.npy"
    atomic_write_bytes(path, write)
    arr = np.load(path, mmap_mode="r", allow_pickle=False)
    manifest["arrays"][name] = {"dtype": str(arr.dtype), "shape": list(arr.shape), "bytes": path.stat().st_size,
                                "sha256": _sha256_file(path)}
    del arr
    manifest.update(manifest_update)
    manifest = json.loads(json.dumps(manifest, default=str))
    manifest["manifest_sha256"] = manifest_digest(manifest)
    atomic_write_json(mpath, manifest)


# --------------------------------------------------------------------------- reading
@dataclass(frozen=True)
class RunInfo:
    run_id: str
    path: Path
    model: str
    corpus: str
    tokens: int | None
    created: str
    status: str  # "complete" | "partial"
    provenance: dict | None = None  # versions and model commit the run was made with (complete runs)
    logits: bool = False  # the run holds logits.npy


class Run:
    """A finished run, verified on open. Arrays are memory-mapped, read-only.

    Shapes: ``T`` tokens (special tokens included), ``S`` sentences, ``L`` MoE layers, ``k`` ranks.
    ``token_ids [T] int32``, ``sentence_offsets [S+1] int64``, ``word_index [T] int32`` (-1: none),
    ``pos [T] int16`` (-1: special or unaligned), ``special [T] bool``, ``crossing [T] bool``,
    ``offsets [T, 2] int32``, ``experts [T, L, k] uint8|uint16``, ``weights [T, L, k] float16``; optional
    ``logits [T, L, N] float16`` (None when the run was extracted without ``--save-logits``; NaN in a layer
    whose router has no logits).
    """

    def __init__(self, path: Path, *, verify: bool = True):
        self.path = Path(path)
        self.run_id = self.path.name
        mpath = self.path / "manifest.json"
        if not mpath.exists():
            if (self.path / "identity.json").exists():
                raise CacheError(f"run {self.run_id} is not finished; run the same extraction again to complete it")
            raise CacheError(f"no run at {self.path}")
        try:
            self.manifest = json.loads(mpath.read_text())
        except (OSError, ValueError) as exc:
            raise RunCorruptError(f"run {self.run_id}: manifest.json is unreadable ({exc})") from exc
        if not isinstance(self.manifest, dict) or self.manifest.get("status") != "complete":
            raise RunCorruptError(f"run {self.run_id}: manifest.json is not a complete run manifest")
        if self.manifest.get("schema") != SCHEMA_VERSION:
            raise CacheError(f"run {self.run_id} has schema {self.manifest.get('schema')!r}; "
                             f"this moe-tui reads schema {SCHEMA_VERSION}: extract it again")
        digest = self.manifest.get("manifest_sha256")  # absent only in runs written before it existed
        if digest is not None and digest != manifest_digest(self.manifest):
            raise RunCorruptError(f"run {self.run_id}: manifest.json failed its checksum (file altered)")
        if verify:
            self.verify()
        if (self.path / "shards").is_dir():
            # a writer killed between manifest.json and the shard clean-up: the shards are merged already
            shutil.rmtree(self.path / "shards", ignore_errors=True)
        self._arrays: dict[str, np.ndarray] = {}
        self._sentences: list[dict] | None = None

    # -- integrity
    def verify(self) -> None:
        """Check every file's size and sha256 against the manifest (cached per file by mtime)."""
        entries = dict(self.manifest.get("arrays", {}))
        entries.update(self.manifest.get("files", {}))
        missing = [n for n in ARRAY_NAMES if n not in self.manifest.get("arrays", {})]
        if missing:
            raise RunCorruptError(f"run {self.run_id}: manifest lists no {missing[0]} array")
        stamp_path = self.path / ".verified.json"
        try:
            stamps = json.loads(stamp_path.read_text())
        except (OSError, ValueError):
            stamps = {}
        new_stamps = {}
        for name, meta in entries.items():
            fname = name if name.endswith(".jsonl") else f"{name}.npy"
            fpath = self.path / fname
            try:
                st = fpath.stat()
            except OSError:
                raise RunCorruptError(f"run {self.run_id}: {fname} is missing") from None
            if st.st_size != meta.get("bytes"):
                raise RunCorruptError(f"run {self.run_id}: {fname} has {st.st_size} bytes, expected "
                                      f"{meta.get('bytes')} (truncated or altered)")
            key = [st.st_size, st.st_mtime_ns, meta.get("sha256")]
            if stamps.get(fname) != key:
                if _sha256_file(fpath) != meta.get("sha256"):
                    raise RunCorruptError(f"run {self.run_id}: {fname} failed its checksum (file altered)")
            new_stamps[fname] = key
        if new_stamps != stamps:
            with contextlib.suppress(CacheError):
                atomic_write_json(stamp_path, new_stamps)

    # -- arrays
    def array(self, name: str) -> np.ndarray:
        if name not in self._arrays:
            meta = self.manifest["arrays"][name]
            try:
                arr = np.load(self.path / f"{name}.npy", mmap_mode="r", allow_pickle=False)
            except (OSError, ValueError) as exc:
                raise RunCorruptError(f"run {self.run_id}: {name}.npy is unreadable ({exc})") from exc
            if list(arr.shape) != meta["shape"] or str(arr.dtype) != meta["dtype"]:
                raise RunCorruptError(f"run {self.run_id}: {name}.npy has shape {arr.shape}, expected {meta['shape']}")
            self._arrays[name] = arr
        return self._arrays[name]

    def __getattr__(self, name: str):
        if name in ARRAY_NAMES:
            return self.array(name)
        if name in OPTIONAL_ARRAYS:
            return self.array(name) if name in self.manifest.get("arrays", {}) else None
        raise AttributeError(name)

    @property
    def has_logits(self) -> bool:
        return "logits" in self.manifest.get("arrays", {})

    @property
    def sentences(self) -> list[dict]:
        if self._sentences is None:
            with open(self.path / "sentences.jsonl", encoding="utf-8") as fh:
                self._sentences = [json.loads(line) for line in fh if line.strip()]
        return self._sentences

    # -- facts
    @property
    def tags(self) -> tuple[str, ...]:
        return tuple(self.manifest["tagset"]["tags"])

    @property
    def moe_layers(self) -> list[int]:
        return list(self.manifest["model"]["moe_layers"])

    @property
    def num_experts(self) -> int:
        return int(self.manifest["model"]["num_experts"])

    @property
    def top_k(self) -> int:
        return int(self.manifest["model"]["top_k"])

    @property
    def model_name(self) -> str:
        return str(self.manifest["model"]["name_or_path"])

    @property
    def n_sentences(self) -> int:
        return int(self.manifest["arrays"]["sentence_offsets"]["shape"][0]) - 1

    def analysis_mask(self) -> np.ndarray:
        """``bool [T]``: tokens that enter the analysis (not special, aligned to a word)."""
        return np.asarray(self.pos) >= 0

    def sentence_of_token(self) -> np.ndarray:
        """``int64 [T]``: the sentence index of every token."""
        off = np.asarray(self.sentence_offsets)
        return np.repeat(np.arange(len(off) - 1), np.diff(off))


class RunStore:
    """The runs under one cache root."""

    def __init__(self, root: str | os.PathLike | None = None):
        self.root = cache_root(root)

    def path(self, run_id: str) -> Path:
        return self.root / run_id

    def is_complete(self, run_id: str) -> bool:
        return (self.path(run_id) / "manifest.json").exists()

    def resolve(self, ref: str) -> Path:
        """A run id (or a unique prefix of one), or a path to a run directory."""
        p = Path(ref).expanduser()
        if (p / "manifest.json").exists() or (p / "identity.json").exists():
            return p
        if self.root.is_dir():
            if (self.root / ref).is_dir():
                return self.root / ref
            matches = [d for d in self.root.iterdir() if d.is_dir() and d.name.startswith(ref)] if ref else []
            if len(matches) == 1:
                return matches[0]
            if len(matches) > 1:
                raise CacheError(f"run id prefix {ref!r} is ambiguous ({len(matches)} runs); give more digits")
        raise CacheError(f"unknown run {ref!r} (see `moe-tui runs`; cache: {self.root})")

    def open(self, ref: str | os.PathLike, *, verify: bool = True) -> Run:
        return Run(self.resolve(str(ref)), verify=verify)

    def list_runs(self) -> list[RunInfo]:
        out: list[RunInfo] = []
        if not self.root.is_dir():
            return out
        for d in sorted(self.root.iterdir()):
            if not d.is_dir() or not _RUN_ID.match(d.name):
                continue
            status = "complete" if (d / "manifest.json").exists() else "partial"
            try:
                src = json.loads((d / ("manifest.json" if status == "complete" else "identity.json")).read_text())
            except (OSError, ValueError):
                continue
            ident = src.get("identity", {})
            tokens = None
            if status == "complete":
                shape = src.get("arrays", {}).get("token_ids", {}).get("shape")
                tokens = int(shape[0]) if shape else None
            prov = src.get("provenance") if status == "complete" else None
            out.append(RunInfo(
                run_id=d.name, path=d,
                model=str(ident.get("model", {}).get("name_or_path", "?")),
                corpus=os.path.basename(str(ident.get("corpus", {}).get("path", "?"))),
                tokens=tokens, created=str(src.get("created", "")), status=status,
                provenance=prov if isinstance(prov, dict) else None,
                logits="logits" in src.get("arrays", {}),
            ))
        out.sort(key=lambda r: r.created, reverse=True)
        return out
