"""Reading a finished run: the manifest checked, every file verified, the arrays memory-mapped."""

from __future__ import annotations

import contextlib
import json
import os
import shutil
from pathlib import Path
from typing import Callable, Sequence

import numpy as np

from moe_tui.cache.columns import SentenceRecords, StringTable
from moe_tui.cache.layout import ARRAY_NAMES, OPTIONAL_ARRAYS, SCHEMA_VERSION, file_name, manifest_digest, sha256_file
from moe_tui.errors import CacheError, RunCorruptError
from moe_tui.fileio import atomic_write_json


def read_manifest(path: Path) -> dict:
    """A run's manifest, checked: complete, and not altered (its ``manifest_sha256``)."""
    run_id = Path(path).name
    mpath = Path(path) / "manifest.json"
    try:
        manifest = json.loads(mpath.read_text())
    except (OSError, ValueError) as exc:
        raise RunCorruptError(f"run {run_id}: manifest.json is unreadable ({exc})") from exc
    if not isinstance(manifest, dict) or manifest.get("status") != "complete":
        raise RunCorruptError(f"run {run_id}: manifest.json is not a complete run manifest")
    digest = manifest.get("manifest_sha256")  # absent only in runs written before it existed
    if digest is not None and digest != manifest_digest(manifest):
        raise RunCorruptError(f"run {run_id}: manifest.json failed its checksum (file altered)")
    return manifest


def verify_files(path: Path, manifest: dict, required: Sequence[str]) -> None:
    """Check every file's size and sha256 against the manifest (cached per file by size and mtime in
    ``.verified.json``: a file is hashed again whenever it changes)."""
    path = Path(path)
    run_id = path.name
    listed = manifest.get("arrays", {})
    missing = [n for n in required if n not in listed]
    if missing:
        raise RunCorruptError(f"run {run_id}: manifest lists no {missing[0]} array")
    entries = dict(listed)
    entries.update(manifest.get("files", {}))
    stamp_path = path / ".verified.json"
    try:
        stamps = json.loads(stamp_path.read_text())
        if not isinstance(stamps, dict):
            stamps = {}
    except (OSError, ValueError):
        stamps = {}
    new_stamps = {}
    for name, meta in entries.items():
        fname = file_name(name)
        fpath = path / fname
        try:
            st = fpath.stat()
        except OSError:
            raise RunCorruptError(f"run {run_id}: {fname} is missing") from None
        if st.st_size != meta.get("bytes"):
            raise RunCorruptError(f"run {run_id}: {fname} has {st.st_size} bytes, expected "
                                  f"{meta.get('bytes')} (truncated or altered)")
        key = [st.st_size, st.st_mtime_ns, meta.get("sha256")]
        if stamps.get(fname) != key:
            if sha256_file(fpath) != meta.get("sha256"):
                raise RunCorruptError(f"run {run_id}: {fname} failed its checksum (file altered)")
        new_stamps[fname] = key
    if new_stamps != stamps:
        with contextlib.suppress(CacheError):
            atomic_write_json(stamp_path, new_stamps)


class Run:
    """A finished run, verified on open. Arrays are memory-mapped, read-only; nothing per token or per
    sentence becomes a Python object on open.

    Shapes: ``T`` tokens (special tokens included), ``S`` sentences, ``W`` words, ``L`` MoE layers, ``k`` ranks.
    Per token: ``token_ids [T] int32``, ``word_index [T] int32`` (word in its sentence, -1: none),
    ``pos [T] int16`` (-1: special or unaligned), ``special [T] bool``, ``crossing [T] bool``,
    ``offsets [T, 2] int32``, ``experts [T, L, k] uint8|uint16``, ``weights [T, L, k] float16``,
    ``token_piece [T] int32`` (id into :attr:`pieces`). Per sentence: ``sentence_offsets [S+1] int64``,
    ``word_offsets [S+1] int64``, ``skipped [S] bool``, :attr:`texts`, :attr:`sent_ids`. Per word:
    ``word_form [W] int32`` (id into :attr:`forms`), ``word_tag [W] int16`` (index into :attr:`word_tags`),
    ``word_spans [W, 2] int32``. Optional arrays (:data:`OPTIONAL_ARRAYS`; :meth:`has_array`, :meth:`array`):
    ``logits [T, L, N] float16`` (``run.logits`` is None when the run was extracted without ``--save-logits``;
    NaN in a layer whose router has no logits), ``origin [T] uint8`` (a run made by ``moe-tui generate``: 0 a prompt
    token, 1 a generated token; ``run.origin`` is None for other runs).

    A schema-1 run is migrated in place on open (atomically, under the run lock), or refused in one line that
    says how to re-extract it when it cannot be (read-only folder, ``migrate=False``).
    """

    def __init__(self, path: Path, *, verify: bool = True, migrate: bool = True,
                 on_notice: Callable[[str], None] | None = None):
        self.path = Path(path)
        self.run_id = self.path.name
        mpath = self.path / "manifest.json"
        if not mpath.exists():
            if (self.path / "identity.json").exists():
                raise CacheError(f"run {self.run_id} is not finished; run the same extraction again to complete it")
            raise CacheError(f"no run at {self.path}")
        self.manifest = read_manifest(self.path)
        schema = self.manifest.get("schema")
        if schema == 1:
            from moe_tui.cache.migrate import migrate_v1

            self.manifest = migrate_v1(self.path, self.manifest, allow=migrate, on_notice=on_notice)
        elif schema != SCHEMA_VERSION:
            raise CacheError(f"run {self.run_id} has schema {schema!r}; this moe-tui reads schema {SCHEMA_VERSION} "
                             "(and migrates schema 1): upgrade moe-tui, or extract it again")
        if verify:
            self.verify()
        if (self.path / "shards").is_dir():
            # a writer killed between manifest.json and the shard clean-up: the shards are merged already
            shutil.rmtree(self.path / "shards", ignore_errors=True)
        if (self.path / "sentences.jsonl").exists():
            # a migration killed between its manifest and the clean-up: the schema-1 file is no longer listed
            with contextlib.suppress(OSError):
                (self.path / "sentences.jsonl").unlink()
        self._arrays: dict[str, np.ndarray] = {}
        self._tables: dict[str, StringTable] = {}

    # -- integrity
    def verify(self) -> None:
        """Check every file's size and sha256 against the manifest (cached per file by mtime)."""
        verify_files(self.path, self.manifest, ARRAY_NAMES)

    # -- arrays
    def has_array(self, name: str) -> bool:
        return name in self.manifest.get("arrays", {})

    def array(self, name: str) -> np.ndarray:
        """One array of the run, memory-mapped read-only (``RunCorruptError`` if it does not fit the manifest)."""
        arr = self._arrays.get(name)
        if arr is None:
            meta = self.manifest["arrays"].get(name)
            if meta is None:
                raise CacheError(f"run {self.run_id} has no {name} array")
            try:
                if int(meta.get("bytes", 1)) and not np.prod(meta["shape"]) == 0:
                    arr = np.load(self.path / f"{name}.npy", mmap_mode="r", allow_pickle=False)
                else:  # an empty array cannot be memory-mapped
                    arr = np.load(self.path / f"{name}.npy", allow_pickle=False)
            except (OSError, ValueError) as exc:
                raise RunCorruptError(f"run {self.run_id}: {name}.npy is unreadable ({exc})") from exc
            if list(arr.shape) != meta["shape"] or str(arr.dtype) != meta["dtype"]:
                raise RunCorruptError(f"run {self.run_id}: {name}.npy has shape {arr.shape}, expected {meta['shape']}")
            self._arrays[name] = arr
        return arr

    def read_rows(self, name: str, start: int, stop: int) -> np.ndarray:
        """Rows ``start:stop`` of an array, read from its file into memory (not memory-mapped): streaming
        readers use this so that their resident memory stays one chunk, whatever the run's size."""
        meta = self.manifest["arrays"][name]
        shape = [int(x) for x in meta["shape"]]
        dtype = np.dtype(meta["dtype"])
        start, stop = max(0, int(start)), min(shape[0] if shape else 0, int(stop))
        row = int(np.prod(shape[1:])) if len(shape) > 1 else 1
        n = max(0, stop - start)
        try:
            with open(self.path / f"{name}.npy", "rb") as fh:
                version = np.lib.format.read_magic(fh)
                read_header = (np.lib.format.read_array_header_1_0 if version == (1, 0)
                               else np.lib.format.read_array_header_2_0)
                f_shape, fortran, f_dtype = read_header(fh)
                if list(f_shape) != shape or f_dtype != dtype or fortran:
                    raise ValueError(f"it holds {f_dtype} {list(f_shape)}, the manifest says {dtype} {shape}")
                fh.seek(start * row * dtype.itemsize, os.SEEK_CUR)
                out = np.fromfile(fh, dtype=dtype, count=n * row)
        except (OSError, ValueError) as exc:
            raise RunCorruptError(f"run {self.run_id}: {name}.npy is unreadable ({exc})") from exc
        if len(out) != n * row:
            raise RunCorruptError(f"run {self.run_id}: {name}.npy is shorter than its manifest says")
        return out.reshape((n, *shape[1:]))

    def __getattr__(self, name: str):
        if name.startswith("_"):
            raise AttributeError(name)
        manifest = self.__dict__.get("manifest")
        if manifest is not None and name in manifest.get("arrays", {}):
            return self.array(name)
        if name in OPTIONAL_ARRAYS:
            return self.array(name) if name in self.manifest.get("arrays", {}) else None
        raise AttributeError(name)

    def _table(self, name: str) -> StringTable:
        t = self._tables.get(name)
        if t is None:
            t = self._tables[name] = StringTable(self.array(f"{name}_offsets"), self.array(f"{name}_bytes"))
        return t

    @property
    def has_logits(self) -> bool:
        return self.has_array("logits")

    @property
    def texts(self) -> StringTable:
        """The sentence texts, ``[S]`` (``texts[i]`` decodes one)."""
        return self._table("texts")

    @property
    def sent_ids(self) -> StringTable:
        """The corpus sentence ids, ``[S]``."""
        return self._table("sent_ids")

    @property
    def forms(self) -> StringTable:
        """The vocabulary of word forms (exactly as in the corpus), ``[V]``."""
        return self._table("forms")

    @property
    def pieces(self) -> StringTable:
        """The vocabulary of tokenizer pieces, ``[P]``."""
        return self._table("pieces")

    @property
    def word_tags(self) -> tuple[str, ...]:
        """The word tags that ``word_tag`` indexes (tag names of the run's tagset)."""
        return tuple(self.manifest.get("word_tags", ()))

    @property
    def sentences(self) -> SentenceRecords:
        """The sentences as a lazy sequence of records (``run.sentences[i]`` decodes one)."""
        return SentenceRecords(self)

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

    @property
    def n_tokens(self) -> int:
        return int(self.manifest["arrays"]["token_ids"]["shape"][0])

    def analysis_mask(self) -> np.ndarray:
        """``bool [T]``: tokens that enter the analysis (not special, aligned to a word)."""
        return np.asarray(self.pos) >= 0

    def sentence_of_token(self) -> np.ndarray:
        """``int64 [T]``: the sentence index of every token."""
        off = np.asarray(self.sentence_offsets)
        return np.repeat(np.arange(len(off) - 1), np.diff(off))

    def token_words(self) -> np.ndarray:
        """``int64 [T]``: the run-wide index (into ``word_form``, ``word_tag``, ``word_spans``) of each token's
        word, -1 for none. Vectorised: ``word_offsets[sentence] + word_index``."""
        wi = np.asarray(self.word_index).astype(np.int64)
        sent = self.sentence_of_token()
        g = np.asarray(self.word_offsets)[sent] + wi
        return np.where(wi >= 0, g, -1)
