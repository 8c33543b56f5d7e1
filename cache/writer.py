"""Writing runs: shards, the merge into one array per name, the manifest last, all atomic and resumable."""

from __future__ import annotations

import contextlib
import errno
import fcntl
import io
import json
import os
import shutil
import time
from pathlib import Path
from typing import Callable, Iterator, Sequence

import numpy as np

from moe_tui.cache.columns import TextColumns
from moe_tui.cache.layout import (
    ARRAY_NAMES,
    OPTIONAL_ARRAYS,
    SCHEMA_VERSION,
    SHARD_ARRAYS,
    TOKEN_ARRAYS,
    file_meta,
    file_name,
    manifest_digest,
    tool_version,
)
from moe_tui.errors import CacheError
from moe_tui.fileio import atomic_write_bytes, atomic_write_json, canonical_json, fsync_dir


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


def _tmp_name(path: Path) -> Path:
    """The temporary name of ``path`` while it is written (``RunWriter.begin`` removes stale ones)."""
    return path.with_name(f".{path.name}.tmp-{os.getpid()}")


def _reserve(path: Path) -> None:
    """Allocate a (sparse) file's blocks now: a full disk is then an ``OSError`` here, not a SIGBUS later when the
    memory map is written."""
    if not hasattr(os, "posix_fallocate"):
        return
    fd = os.open(path, os.O_RDWR)
    try:
        os.posix_fallocate(fd, 0, os.fstat(fd).st_size)
    except OSError as exc:
        if exc.errno not in (errno.EOPNOTSUPP, errno.EINVAL, errno.ENOSYS):
            raise
    finally:
        os.close(fd)


class _NpyOut:
    """An ``.npy`` file filled in place through a memory map under a temporary name, then fsynced and renamed:
    a merge of many shards needs no more memory than one shard."""

    def __init__(self, path: Path, dtype: np.dtype, shape: tuple[int, ...]):
        self.path = Path(path)
        self.tmp = _tmp_name(self.path)
        try:
            self.arr = np.lib.format.open_memmap(self.tmp, mode="w+", dtype=dtype, shape=shape)
            _reserve(self.tmp)
        except OSError as exc:
            self.discard()
            raise CacheError(f"cannot write {self.path}: {exc.strerror or exc}") from exc

    def commit(self) -> None:
        try:
            self.arr.flush()
            del self.arr
            fd = os.open(self.tmp, os.O_RDONLY)
            try:
                os.fsync(fd)
            finally:
                os.close(fd)
            os.replace(self.tmp, self.path)
        except OSError as exc:
            self.discard()
            raise CacheError(f"cannot write {self.path}: {exc.strerror or exc}") from exc
        fsync_dir(self.path.parent)

    def discard(self) -> None:
        self.__dict__.pop("arr", None)
        with contextlib.suppress(OSError):
            self.tmp.unlink()


def write_arrays(run_dir: Path, arrays: dict[str, np.ndarray]) -> dict[str, dict]:
    """Write each array as ``<name>.npy`` atomically; returns their manifest entries."""
    meta = {}
    for name, arr in arrays.items():
        path = Path(run_dir) / f"{name}.npy"
        atomic_write_bytes(path, _save_npy(arr))
        meta[name] = file_meta(path, str(arr.dtype), arr.shape)
    return meta


def stamp_verified(run_dir: Path, entries: dict[str, dict], *, merge: bool = False) -> None:
    """Record files whose sha256 was just computed (by the writer) as verified, so the first open is fast
    (``merge``: keep the stamps of other files)."""
    stamps = {}
    if merge:
        with contextlib.suppress(OSError, ValueError):
            stamps = dict(json.loads((Path(run_dir) / ".verified.json").read_text()))
    for name, meta in entries.items():
        fname = file_name(name)
        st = (Path(run_dir) / fname).stat()
        stamps[fname] = [st.st_size, st.st_mtime_ns, meta.get("sha256")]
    with contextlib.suppress(CacheError):
        atomic_write_json(Path(run_dir) / ".verified.json", stamps)


class RunWriter:
    """Writes one run: shards as extraction goes, then the final arrays and manifest.

    Use under :func:`run_lock`. ``begin`` is idempotent: a rerun with the same identity finds
    the shards already written and :meth:`done_shards` tells which batches to skip.

    The whole API, in order: ``begin()``; ``write_shard(i, arrays)`` for every batch ``i`` of the plan (any
    order, any process); ``finalize(n_batches, sentences, manifest_extra)``. A shard's arrays are those of
    :data:`SHARD_ARRAYS` (plus optional per-token arrays, e.g. ``logits``), for the batch's ``B`` sentences and
    their ``n`` tokens: ``lengths int64 [B]`` (tokens per sentence), ``sentence_index int64 [B]`` (corpus
    index of each), then per token ``token_ids int32 [n]``, ``word_index int32 [n]`` (word in its sentence,
    -1 none), ``pos int16 [n]`` (-1 excluded), ``special bool [n]``, ``crossing bool [n]``,
    ``offsets int32 [n, 2]``, ``experts uint8|uint16 [n, L, k]``, ``weights float16 [n, L, k]``.
    :func:`write_run` does all three steps for arrays already in corpus order.
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
                out = {k: z[k] for k in z.files}
            if set(SHARD_ARRAYS) - set(out):
                raise ValueError("incomplete shard")
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
    def _shard_index(self, n_batches: int) -> list[tuple[np.ndarray, np.ndarray]]:
        out = []
        for i in range(n_batches):
            path = self.shard_path(i)
            try:
                with np.load(path, allow_pickle=False) as z:
                    out.append((np.asarray(z["lengths"], dtype=np.int64), np.asarray(z["sentence_index"], dtype=np.int64)))
            except Exception:
                raise CacheError(f"shard {i} of run {self.run_dir.name} is missing; run the extraction again") from None
        return out

    def finalize(self, n_batches: int, sentences: Sequence[dict] | TextColumns, manifest_extra: dict,
                 optional: Sequence[str] = ()) -> Path:
        """Merge the shards in corpus order, write the token arrays and the sentence columns, then manifest.json.

        ``sentences``: the corpus sentences as :class:`~moe_tui.cache.columns.TextColumns`, or as records
        ``{"id", "text", "words": [[form, tag, start, end], ...], "tokens": [piece, ...], "skipped"}`` (one per
        corpus sentence, in corpus order; ``tokens`` holds one piece per routed token). ``optional``: names of
        :data:`OPTIONAL_ARRAYS` to merge too (every shard must hold them; other arrays a shard holds are left
        out). Unknown fields of ``manifest_extra`` are kept in the manifest. Memory: one shard plus the sentence
        columns.
        """
        unknown = [k for k in optional if k not in OPTIONAL_ARRAYS]
        if unknown:
            raise ValueError(f"{unknown[0]} is not an optional run array")
        text = sentences if isinstance(sentences, TextColumns) else TextColumns.from_records(sentences)
        try:
            text.validate()
        except ValueError as exc:
            raise CacheError(f"run {self.run_dir.name}: {exc}") from None
        n_sent = text.n_sentences
        index = self._shard_index(n_batches)
        lengths = np.zeros(n_sent, dtype=np.int64)
        for lens, sidx in index:
            if len(sidx) and (int(sidx.min()) < 0 or int(sidx.max()) >= n_sent):
                raise CacheError(f"run {self.run_dir.name}: a shard names a sentence outside the {n_sent} given")
            lengths[sidx] = lens
        sentence_offsets = np.zeros(n_sent + 1, dtype=np.int64)
        np.cumsum(lengths, out=sentence_offsets[1:])
        T = int(sentence_offsets[-1])
        if T == 0:
            raise CacheError("no sentence could be extracted (all empty or too long)")
        bad = np.flatnonzero(np.asarray(text.token_counts) != lengths)
        if bad.size:
            s = int(bad[0])
            raise CacheError(f"run {self.run_dir.name}: sentence {s} has {int(text.token_counts[s])} token pieces "
                             f"but {int(lengths[s])} routed tokens")
        template = self.read_shard(0)
        if template is None:
            raise CacheError(f"shard 0 of run {self.run_dir.name} is missing; run the extraction again")
        keys = [*TOKEN_ARRAYS, *optional]
        for k in optional:
            if k not in template:
                raise CacheError(f"shard 0 of run {self.run_dir.name} has no {k}; run the extraction again")
        layout = {k: (template[k].dtype, (T, *template[k].shape[1:])) for k in keys}
        outs: dict[str, _NpyOut] = {}
        try:
            for k in keys:
                outs[k] = _NpyOut(self.run_dir / f"{k}.npy", *layout[k])
            for i, (lens, sidx) in enumerate(index):
                shard = template if i == 0 else self.read_shard(i)
                if shard is None:
                    raise CacheError(f"shard {i} of run {self.run_dir.name} is missing; run the extraction again")
                # token j of the shard goes to its sentence's place in corpus order
                starts = np.cumsum(lens) - lens
                dest = np.repeat(sentence_offsets[sidx] - starts, lens) + np.arange(int(lens.sum()))
                for k in keys:
                    part = shard.get(k)
                    if part is None and k in optional:
                        raise CacheError(f"shard {i} of run {self.run_dir.name} has no {k}; run the extraction again")
                    if part is None or part.dtype != layout[k][0] or part.shape[1:] != layout[k][1][1:] \
                            or len(part) != len(dest):
                        raise CacheError(f"shard {i} of run {self.run_dir.name} does not match shard 0 ({k}); "
                                         "run the extraction again")
                    outs[k].arr[dest] = part
                shard = None
            template = None
            # every token's word must be one of its sentence's words (readers index words by array arithmetic)
            wi = outs["word_index"].arr
            n_words = np.diff(np.asarray(text.word_offsets))
            sent = np.repeat(np.arange(n_sent, dtype=np.int64), lengths)
            bad = np.flatnonzero(wi >= n_words[sent])
            if bad.size:
                t = int(bad[0])
                raise CacheError(f"run {self.run_dir.name}: token {t - int(sentence_offsets[sent[t]])} of sentence "
                                 f"{int(sent[t])} names word {int(wi[t])}, but the sentence has {int(n_words[sent[t]])}")
            del wi, sent
            for k in keys:
                outs[k].commit()
        except BaseException:
            for o in outs.values():
                o.discard()
            raise
        meta: dict[str, dict] = {k: file_meta(outs[k].path, str(layout[k][0]), layout[k][1]) for k in keys}
        arrays = {"sentence_offsets": sentence_offsets, **text.arrays()}
        meta.update(write_arrays(self.run_dir, arrays))
        ordered = {name: meta[name] for name in (*ARRAY_NAMES, *sorted(set(meta) - set(ARRAY_NAMES)))}
        ident = json.loads((self.run_dir / "identity.json").read_text())
        manifest = {
            "schema": SCHEMA_VERSION,
            "tool_version": tool_version(),
            "run_id": self.run_dir.name,
            "identity": ident["identity"],
            "created": ident["created"],
            "status": "complete",
            "arrays": ordered,
            "files": {},
            "word_tags": list(text.word_tags),
            **manifest_extra,
        }
        manifest = json.loads(json.dumps(manifest, default=str))  # exactly what a reader will see
        manifest["manifest_sha256"] = manifest_digest(manifest)
        stamp_verified(self.run_dir, ordered)
        atomic_write_json(self.run_dir / "manifest.json", manifest)
        shutil.rmtree(self.shard_dir, ignore_errors=True)
        return self.run_dir


def write_run(run_dir: Path, identity: dict, arrays: dict[str, np.ndarray], sentences: Sequence[dict] | TextColumns,
              manifest_extra: dict) -> Path:
    """Write a complete run from arrays already in corpus order (one shard), e.g. for tests and benchmarks.

    ``arrays``: the per-token arrays of :data:`TOKEN_ARRAYS` (``[T, ...]``, dtypes as in :class:`RunWriter`),
    optionally arrays of :data:`OPTIONAL_ARRAYS` (``logits float16 [T, L, N]``), plus ``sentence_offsets int64
    [S+1]``; ``sentences`` and ``manifest_extra`` as for :meth:`RunWriter.finalize` (``manifest_extra`` needs
    ``model`` with ``name_or_path``, ``moe_layers``, ``num_experts``, ``top_k``, and ``tagset`` with ``tags``).
    Returns the run directory.
    """
    off = np.asarray(arrays["sentence_offsets"], dtype=np.int64)
    shard = {k: np.asarray(v) for k, v in arrays.items() if k != "sentence_offsets"}
    shard["lengths"] = np.diff(off)
    shard["sentence_index"] = np.arange(len(off) - 1, dtype=np.int64)
    optional = tuple(k for k in OPTIONAL_ARRAYS if k in shard)
    w = RunWriter(Path(run_dir), identity)
    with run_lock(w.run_dir):
        w.begin()
        w.write_shard(0, shard)
        return w.finalize(1, sentences, manifest_extra, optional=optional)


def new_array(run_dir: Path, name: str, dtype, shape: Sequence[int], fill=None) -> _NpyOut:
    """An optional array of a complete run to fill in place (``.arr``, memory-mapped under a temporary name, so
    its size is not held in memory), then hand to :func:`add_array` (or ``.discard()``). ``fill``: initial
    value of every element (e.g. NaN), written a block of rows at a time."""
    if name not in OPTIONAL_ARRAYS:
        raise ValueError(f"{name} is not an optional run array")
    out = _NpyOut(Path(run_dir) / f"{name}.npy", np.dtype(dtype), tuple(int(x) for x in shape))
    if fill is not None and out.arr.size:
        step = max(1, (1 << 24) // max(1, out.arr[0].nbytes))
        for a in range(0, out.arr.shape[0], step):
            out.arr[a:a + step] = fill
    return out


def add_array(run_dir: Path, name: str, write: "Callable[[io.BufferedWriter], None] | _NpyOut",
              manifest_update: dict) -> None:
    """Add optional array ``name`` to a complete run: ``write`` fills ``<name>.npy`` (written atomically), or is
    the filled :func:`new_array` (committed: fsynced and renamed into place); then the manifest gains its size
    and checksum plus ``manifest_update`` (top-level keys), re-digested and written atomically last. Call under
    :func:`run_lock`. The run's identity (and id) do not change."""
    if name not in OPTIONAL_ARRAYS:
        raise ValueError(f"{name} is not an optional run array")
    run_dir = Path(run_dir)
    mpath = run_dir / "manifest.json"
    manifest = json.loads(mpath.read_text())
    path = run_dir / f"{name}.npy"
    if isinstance(write, _NpyOut):
        if write.path != path:
            raise ValueError(f"{write.path} is not {path}")
        write.commit()
    else:
        atomic_write_bytes(path, write)
    arr = np.load(path, mmap_mode="r", allow_pickle=False)
    entry = file_meta(path, str(arr.dtype), arr.shape)
    del arr
    manifest["arrays"][name] = entry
    manifest.update(manifest_update)
    manifest = json.loads(json.dumps(manifest, default=str))
    manifest["manifest_sha256"] = manifest_digest(manifest)
    stamp_verified(run_dir, {name: entry}, merge=True)
    atomic_write_json(mpath, manifest)


def update_manifest(run_dir: Path, update: dict) -> None:
    """Set top-level fields of a complete run's manifest (e.g. a check run after the run was made), re-digested and
    written atomically. Call under :func:`run_lock`. The run's identity (and id) and its arrays do not change."""
    mpath = Path(run_dir) / "manifest.json"
    manifest = json.loads(mpath.read_text())
    manifest.update(update)
    manifest = json.loads(json.dumps(manifest, default=str))
    manifest["manifest_sha256"] = manifest_digest(manifest)
    atomic_write_json(mpath, manifest)
