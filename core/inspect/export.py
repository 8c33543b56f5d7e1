"""Export a run's routes, one row per (token, MoE layer, rank), streamed in bounded memory.

Columns: ``sentence,token,token_text,word,pos,layer,rank,expert,weight`` where ``sentence`` is the
sentence index in the run, ``token`` the token's index within its sentence (special tokens keep
their index but get no rows), ``token_text`` the tokenizer's piece, ``word`` the form of the word the
token belongs to ("" if none), ``layer`` the decoder-layer index, ``rank`` 0 for the top-1 expert,
``weight`` the routing weight as stored (float16, written exactly). Text is written exactly as stored
in the run; ``spreadsheet_safe`` (CSV only) prefixes formula-like text cells with ``'``. A run made by ``moe-tui
generate`` has one more column after ``pos``: ``origin``, ``prompt`` or ``generated`` (:func:`route_columns`).

The exporter reads the run a chunk of tokens at a time (from the files, not memory-mapped, so its resident memory
is one chunk whatever the run's size) and builds each chunk with array operations over the run's vocabularies:

- CSV: every distinct cell (each word form, piece and tag through the csv module's own quoting, each integer, each
  of the 65,536 float16 values through ``repr``) is formatted once; a chunk's bytes are gathered from those cells.
  The file is byte for byte what the csv module writes row by row (:func:`export_routes_rowwise`).
- Parquet: a ``pyarrow.parquet.ParquetWriter`` writes row groups of :data:`ROW_GROUP_ROWS` rows (pyarrow's default
  for ``write_table``), so the file is byte for byte what ``pq.write_table`` writes for the whole table at once.
"""

from __future__ import annotations

import csv
import io
from pathlib import Path
from typing import TYPE_CHECKING, Iterator

import numpy as np

from moe_tui.cache.layout import ORIGIN_NAMES
from moe_tui.core.inspect.origin import has_origin
from moe_tui.errors import MoeTuiError
from moe_tui.fileio import format_cell

if TYPE_CHECKING:
    import pandas as pd

ROUTE_COLUMNS = ("sentence", "token", "token_text", "word", "pos", "layer", "rank", "expert", "weight")


def route_columns(run) -> tuple[str, ...]:
    """The columns of ``run``'s routes: :data:`ROUTE_COLUMNS`, with ``origin`` after ``pos`` when the run has it."""
    if not has_origin(run):
        return ROUTE_COLUMNS
    return (*ROUTE_COLUMNS[:5], "origin", *ROUTE_COLUMNS[5:])
ROW_GROUP_ROWS = 1024 * 1024   # pyarrow.parquet.write_table's default (maximum) row group size
CHUNK_ROWS = 1 << 18           # rows per CSV chunk (a few tens of MB of working arrays)


# --------------------------------------------------------------------------------------------------
# The straightforward exporter (row by row): the reference the streaming one is tested against


def iter_route_rows(run, sentences: list[int] | None = None):
    """Yield route rows (tuples in ``ROUTE_COLUMNS`` order) for the given sentence indices (all if None)."""
    offsets = np.asarray(run.sentence_offsets)
    special = np.asarray(run.special)
    word_index = np.asarray(run.word_index)
    pos = np.asarray(run.pos)
    tags = run.tags
    layers = run.moe_layers
    k = run.top_k
    origin = np.asarray(run.origin) if has_origin(run) else None
    idx = range(len(offsets) - 1) if sentences is None else sentences
    for s in idx:
        a, b = int(offsets[s]), int(offsets[s + 1])
        if a == b:
            continue
        rec = run.sentences[s]
        words, pieces = rec["words"], rec["tokens"]
        experts = np.asarray(run.experts[a:b]).tolist()
        weights = np.asarray(run.weights[a:b], dtype=np.float64).tolist()
        for t in range(b - a):
            g = a + t
            if special[g]:
                continue
            wi = int(word_index[g])
            word = words[wi][0] if wi >= 0 else ""
            p = tags[pos[g]] if pos[g] >= 0 else ""
            head = (s, t, pieces[t] if t < len(pieces) else "", word, p)
            if origin is not None:
                head = (*head, ORIGIN_NAMES[int(origin[g])])
            ex, we = experts[t], weights[t]
            for li, layer in enumerate(layers):
                for r in range(k):
                    yield (*head, layer, r, ex[li][r], we[li][r])


def export_routes_rowwise(run, out: str | Path, *, spreadsheet_safe: bool = False,
                          row_group_rows: int | None = None) -> Path:
    """The routes written row by row in memory (the csv module; ``pq.write_table`` of the whole table): slow and
    memory-hungry on a large run, kept as the reference that :func:`export_routes` equals byte for byte
    (``row_group_rows``: None is pyarrow's default)."""
    out = Path(out).expanduser().resolve()
    if out.suffix.lower() == ".parquet":
        import pyarrow as pa
        import pyarrow.parquet as pq

        from moe_tui.fileio import atomic_write_bytes

        names = route_columns(run)
        cols = list(zip(*iter_route_rows(run))) or [[] for _ in names]
        table = pa.table({name: list(col) for name, col in zip(names, cols)})
        atomic_write_bytes(out, lambda fh: pq.write_table(table, fh, row_group_size=row_group_rows))
        return out
    from moe_tui.fileio import write_csv

    return write_csv(out, route_columns(run), iter_route_rows(run), spreadsheet_safe=spreadsheet_safe)


# --------------------------------------------------------------------------------------------------
# Streaming


class _Chunk:
    """The exported tokens of one chunk (special tokens dropped), ``n`` of them.

    ``sentence``, ``token`` ``int64 [n]``; ``piece`` ``int64 [n]`` (id into the pieces vocabulary), ``word``
    ``int64 [n]`` (id into the forms vocabulary; ``V`` = no word), ``pos`` ``int64 [n]`` (tag index; ``P`` = none),
    ``experts`` ``[n, L, k]``, ``weights`` ``float16 [n, L, k]``, ``origin`` ``int64 [n]`` (index into
    :data:`ORIGIN_NAMES`; None for a run without origins)."""

    __slots__ = ("sentence", "token", "piece", "word", "pos", "experts", "weights", "origin")

    def __len__(self) -> int:
        return len(self.sentence)


def _chunks(run, chunk_tokens: int) -> Iterator[_Chunk]:
    T = run.n_tokens
    offsets = np.asarray(run.sentence_offsets, dtype=np.int64)
    word_offsets = np.asarray(run.word_offsets, dtype=np.int64)
    n_forms, n_tags = len(run.forms), len(run.tags)
    for a in range(0, T, chunk_tokens):
        b = min(T, a + chunk_tokens)
        keep = ~run.read_rows("special", a, b)
        g = np.arange(a, b, dtype=np.int64)[keep]
        c = _Chunk()
        c.sentence = np.searchsorted(offsets, g, side="right") - 1
        c.token = g - offsets[c.sentence]
        c.piece = run.read_rows("token_piece", a, b)[keep].astype(np.int64)
        wi = run.read_rows("word_index", a, b)[keep].astype(np.int64)
        if len(g):
            gw = word_offsets[c.sentence] + wi
            s0, s1 = int(c.sentence[0]), int(c.sentence[-1])
            w0 = int(word_offsets[s0])
            forms = run.read_rows("word_form", w0, int(word_offsets[s1 + 1])).astype(np.int64)
            c.word = np.where(wi >= 0, forms[np.clip(gw - w0, 0, max(0, len(forms) - 1))] if len(forms) else n_forms,
                              n_forms)
        else:
            c.word = wi
        p = run.read_rows("pos", a, b)[keep].astype(np.int64)
        c.pos = np.where(p >= 0, p, n_tags)
        c.experts = run.read_rows("experts", a, b)[keep]
        c.weights = run.read_rows("weights", a, b)[keep]
        c.origin = run.read_rows("origin", a, b)[keep].astype(np.int64) if has_origin(run) else None
        yield c


class _Cells:
    """Formatted cells (UTF-8) of one column, one per value id: ``data uint8`` with ``start``/``length`` ``int64``
    per id (and, for the pyarrow path, the same cells as a ``pyarrow.StringArray``)."""

    def __init__(self, texts: list[str]):
        enc = [t.encode("utf-8") for t in texts]
        self.length = np.fromiter(map(len, enc), dtype=np.int64, count=len(enc))
        self.start = np.cumsum(self.length) - self.length
        self.data = np.frombuffer(b"".join(enc), dtype=np.uint8)
        self.texts = texts
        self._arrow = None

    def arrow(self, pa):
        if self._arrow is None:
            self._arrow = pa.array(self.texts, type=pa.string())
        return self._arrow


def _csv_text_cells(strings: list[str], spreadsheet_safe: bool) -> list[str]:
    """Each string as the csv module writes it as a field (quoted if it must be), then a comma."""
    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    out = []
    for s in strings:
        buf.seek(0)
        buf.truncate()
        w.writerow([format_cell(s, spreadsheet_safe=spreadsheet_safe), ""])  # two fields: no single-field rule
        out.append(buf.getvalue()[:-1])  # "<cell>," without the line end
    return out


def _float16_cells() -> list[str]:
    """``repr`` of every float16 value (by its bit pattern), as :func:`moe_tui.fileio.format_cell` writes it."""
    vals = np.arange(1 << 16, dtype=np.uint16).view(np.float16).astype(np.float64).tolist()
    return [("" if v != v else repr(v)) + "\n" for v in vals]


def _ragged(src: np.ndarray, starts: np.ndarray, lengths: np.ndarray) -> np.ndarray:
    """Concatenate ``src[starts[i]:starts[i]+lengths[i]]`` for every ``i`` (one gather; int32 indices when they
    fit, which halves the memory traffic)."""
    total = int(lengths.sum())
    it = np.int32 if max(total, len(src)) < (1 << 31) - 1 else np.int64
    lengths = lengths.astype(it)
    dst = np.cumsum(lengths, dtype=it) - lengths
    idx = np.repeat(starts.astype(it) - dst, lengths)
    idx += np.arange(total, dtype=it)
    return src[idx]


class _CsvChunks:
    """Builds the CSV bytes of a chunk of tokens from cells formatted once: every row is
    ``sentence,token,piece,word,pos,`` (one per token) + ``layer,rank,`` + ``expert,`` + ``weight\\n``.

    With pyarrow, ``take`` + ``binary_join_element_wise`` assemble the rows in C++; without it, one numpy gather
    does (about half as fast)."""

    def __init__(self, run, spreadsheet_safe: bool, use_arrow: bool | None = None):
        k = run.top_k
        L = len(run.moe_layers)
        n_sent = run.n_sentences
        off = np.asarray(run.sentence_offsets)
        longest = int(np.diff(off).max()) if n_sent else 0
        ints = _Cells([f"{i}," for i in range(max(n_sent, longest) + 1)])
        pieces, forms, tags = (_Cells(_csv_text_cells(list(v) + [""], spreadsheet_safe))
                               for v in (run.pieces.tolist(), run.forms.tolist(), list(run.tags)))
        n_exp = 1 << (8 * np.dtype(run.manifest["arrays"]["experts"]["dtype"]).itemsize)
        lr = _Cells([f"{layer},{r}," for layer in run.moe_layers for r in range(k)])
        experts = _Cells([f"{e}," for e in range(n_exp)])
        weights = _Cells(_float16_cells())
        self.token_cols = (ints, ints, pieces, forms, tags)
        if has_origin(run):
            self.token_cols += (_Cells(_csv_text_cells(list(ORIGIN_NAMES), spreadsheet_safe)),)
        self.row_cols = (lr, experts, weights)
        self.L, self.k = L, k
        self.pa = None
        if use_arrow is not False:
            try:
                import pyarrow as pa
                import pyarrow.compute  # noqa: F401

                self.pa = pa
            except ImportError:
                if use_arrow:
                    raise
        self._rep: tuple[int, object] | None = None
        cols = [*self.token_cols, *self.row_cols]
        self._base = np.cumsum([0] + [len(cc.data) for cc in cols])
        self._src = np.concatenate([cc.data for cc in cols])

    def _ids(self, c: _Chunk) -> tuple[list[np.ndarray], list[np.ndarray]]:
        n, Lk = len(c), self.L * self.k
        lr_id = np.broadcast_to(np.arange(Lk), (n, Lk))
        e = c.experts.reshape(n, Lk).astype(np.int64)
        w = np.ascontiguousarray(c.weights).reshape(n, Lk).view(np.uint16).astype(np.int64)
        tok = [c.sentence, c.token, c.piece, c.word, c.pos]
        if c.origin is not None:
            tok.append(c.origin)
        return tok, [lr_id, e, w]

    def encode(self, c: _Chunk):
        """The chunk's rows as bytes (a buffer-like object)."""
        n, Lk = len(c), self.L * self.k
        if n == 0:
            return b""
        tok_ids, row_ids = self._ids(c)
        if self.pa is not None:
            return self._encode_arrow(n, Lk, tok_ids, row_ids)
        base, src = self._base, self._src
        # per token: "sentence,token,piece,word,pos," ; then per row: that head, "layer,rank,", "expert,", "weight\n"
        st = np.stack([b + cc.start[ids] for cc, b, ids in zip(self.token_cols, base, tok_ids)], axis=1)
        ln = np.stack([cc.length[ids] for cc, ids in zip(self.token_cols, tok_ids)], axis=1)
        head = _ragged(src, st.ravel(), ln.ravel())
        head_len = ln.sum(axis=1)
        head_start = np.cumsum(head_len) - head_len
        src = np.concatenate([head, src[base[len(self.token_cols)]:]])
        shift = len(head) - base[len(self.token_cols)]
        starts = np.empty((n, Lk, 4), dtype=np.int64)
        lens = np.empty((n, Lk, 4), dtype=np.int64)
        starts[:, :, 0] = head_start[:, None]
        lens[:, :, 0] = head_len[:, None]
        for j, (cc, ids) in enumerate(zip(self.row_cols, row_ids), start=1):
            b = base[len(self.token_cols) + j - 1] + shift
            starts[:, :, j] = b + cc.start[ids]
            lens[:, :, j] = cc.length[ids]
        return _ragged(src, starts.ravel(), lens.ravel())

    def _encode_arrow(self, n: int, Lk: int, tok_ids: list, row_ids: list):
        pa = self.pa
        pc = pa.compute
        head = pc.binary_join_element_wise(
            *(pc.take(cc.arrow(pa), pa.array(ids)) for cc, ids in zip(self.token_cols, tok_ids)), "")
        if self._rep is None or self._rep[0] != n:
            self._rep = (n, pa.array(np.repeat(np.arange(n, dtype=np.int64), Lk)))
        tail = pc.binary_join_element_wise(
            *(pc.take(cc.arrow(pa), pa.array(np.ascontiguousarray(ids).reshape(-1)))
              for cc, ids in zip(self.row_cols, row_ids)), "")
        rows = pc.binary_join_element_wise(pc.take(head, self._rep[1]), tail, "")
        offsets = np.frombuffer(rows.buffers()[1], dtype=np.int32)[rows.offset:rows.offset + len(rows) + 1]
        return memoryview(rows.buffers()[2])[int(offsets[0]):int(offsets[-1])]


def _write_csv_stream(run, fh, spreadsheet_safe: bool, chunk_rows: int, use_arrow: bool | None = None) -> int:
    enc = _CsvChunks(run, spreadsheet_safe, use_arrow)
    text = io.TextIOWrapper(fh, encoding="utf-8", newline="")
    csv.writer(text, lineterminator="\n").writerow(route_columns(run))
    text.flush()
    text.detach()
    rows = 0
    for c in _chunks(run, max(1, chunk_rows // max(1, enc.L * enc.k))):
        fh.write(enc.encode(c))
        rows += len(c) * enc.L * enc.k
    return rows


def _parquet_schema(pa, names=ROUTE_COLUMNS):
    types = {"token_text": pa.string(), "word": pa.string(), "pos": pa.string(), "origin": pa.string(),
             "weight": pa.float64()}
    return pa.schema([(name, types.get(name, pa.int64())) for name in names])


def _write_parquet_stream(run, fh, row_group_rows: int) -> int:
    import pyarrow as pa
    import pyarrow.compute as pc
    import pyarrow.parquet as pq

    L, k = len(run.moe_layers), run.top_k
    Lk = L * k
    vocab = {
        "token_text": pa.array(run.pieces.tolist() + [""], type=pa.string()),
        "word": pa.array(run.forms.tolist() + [""], type=pa.string()),
        "pos": pa.array(list(run.tags) + [""], type=pa.string()),
        "origin": pa.array(list(ORIGIN_NAMES), type=pa.string()),
    }
    layer_of = np.repeat(np.asarray(run.moe_layers, dtype=np.int64), k)
    rank_of = np.tile(np.arange(k, dtype=np.int64), L)
    names = route_columns(run)
    schema = _parquet_schema(pa, names)
    pending: list = []
    n_pending = 0
    rows = 0
    writer = None

    def flush(final: bool) -> None:
        nonlocal pending, n_pending
        if not pending:
            return
        table = pa.concat_tables(pending)   # no copy: the chunks stay as they are
        start = 0
        while n_pending - start >= row_group_rows or (final and start < n_pending):
            size = min(row_group_rows, n_pending - start)
            # one contiguous copy per row group, as write_table hands the writer slices of one table
            writer.write_table(table.slice(start, size).combine_chunks(), row_group_size=row_group_rows)
            start += size
        rest = table.slice(start)
        pending, n_pending = ([rest] if len(rest) else []), len(rest)

    for c in _chunks(run, max(1, row_group_rows // max(1, Lk))):
        n = len(c)
        if n == 0:
            continue
        if writer is None:
            writer = pq.ParquetWriter(fh, schema)
        cols = {
            "sentence": pa.array(np.repeat(c.sentence, Lk)),
            "token": pa.array(np.repeat(c.token, Lk)),
            "token_text": pc.take(vocab["token_text"], pa.array(np.repeat(c.piece, Lk))),
            "word": pc.take(vocab["word"], pa.array(np.repeat(c.word, Lk))),
            "pos": pc.take(vocab["pos"], pa.array(np.repeat(c.pos, Lk))),
            **({"origin": pc.take(vocab["origin"], pa.array(np.repeat(c.origin, Lk)))} if c.origin is not None
               else {}),
            "layer": pa.array(np.tile(layer_of, n)),
            "rank": pa.array(np.tile(rank_of, n)),
            "expert": pa.array(c.experts.reshape(-1).astype(np.int64)),
            "weight": pa.array(c.weights.reshape(-1).astype(np.float64)),
        }
        pending.append(pa.table(cols, schema=schema))
        n_pending += n * Lk
        rows += n * Lk
        if n_pending >= row_group_rows:
            flush(False)
    if writer is None:  # no row at all: what write_table writes for empty columns
        pq.write_table(pa.table({name: [] for name in names}), fh)
        return 0
    flush(True)
    writer.close()
    return rows


def routes_frame(run, chunk_tokens: int = 1 << 16) -> "pd.DataFrame":
    """The export-routes table as a pandas DataFrame: :func:`route_columns`, int64 numbers, float64 weights (the
    stored float16 values), text columns of Python strings exactly as stored ("" for none), one row per
    (analysed token, MoE layer, rank) in run order. Built a chunk of tokens at a time with array operations:
    each text cell is a reference to one string of the run's vocabularies, not a string made per row."""
    import pandas as pd

    L, k = len(run.moe_layers), run.top_k
    Lk = L * k
    texts = {
        "token_text": np.array(run.pieces.tolist() + [""], dtype=object),
        "word": np.array(run.forms.tolist() + [""], dtype=object),
        "pos": np.array(list(run.tags) + [""], dtype=object),
        "origin": np.array(list(ORIGIN_NAMES), dtype=object),
    }
    layer_of = np.repeat(np.asarray(run.moe_layers, dtype=np.int64), k)
    rank_of = np.tile(np.arange(k, dtype=np.int64), L)
    parts: dict[str, list[np.ndarray]] = {name: [] for name in route_columns(run)}
    for c in _chunks(run, max(1, int(chunk_tokens))):
        n = len(c)
        if n == 0:
            continue
        parts["sentence"].append(np.repeat(c.sentence.astype(np.int64), Lk))
        parts["token"].append(np.repeat(c.token.astype(np.int64), Lk))
        parts["token_text"].append(texts["token_text"][np.repeat(c.piece, Lk)])
        parts["word"].append(texts["word"][np.repeat(c.word, Lk)])
        parts["pos"].append(texts["pos"][np.repeat(c.pos, Lk)])
        if c.origin is not None:
            parts["origin"].append(texts["origin"][np.repeat(c.origin, Lk)])
        parts["layer"].append(np.tile(layer_of, n))
        parts["rank"].append(np.tile(rank_of, n))
        parts["expert"].append(c.experts.reshape(-1).astype(np.int64))
        parts["weight"].append(c.weights.reshape(-1).astype(np.float64))
    empty = {"token_text": object, "word": object, "pos": object, "origin": object, "weight": np.float64}
    return pd.DataFrame({name: np.concatenate(col) if col else np.empty(0, dtype=empty.get(name, np.int64))
                         for name, col in parts.items()})


def _make_parent(out: Path) -> None:
    """Create the folders above ``out`` that do not exist yet (one line if that fails)."""
    if out.parent.exists():  # a folder, or a file the write itself reports
        return
    try:
        out.parent.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise MoeTuiError(f"cannot write {out}: {exc.strerror or exc}") from None


def export_routes(run, out: str | Path, *, spreadsheet_safe: bool = False, row_group_rows: int = ROW_GROUP_ROWS,
                  chunk_rows: int = CHUNK_ROWS, csv_engine: str = "auto") -> Path:
    """Write the routes of ``run`` to ``out`` (.csv, or .parquet with pyarrow), streamed; return the absolute path.

    ``spreadsheet_safe`` neutralises formula-like text cells of a CSV (altering them); Parquet is typed and
    never altered. ``row_group_rows``: Parquet row group size; ``chunk_rows``: rows built at a time (CSV);
    ``csv_engine``: ``auto`` (pyarrow when installed), ``arrow`` or ``numpy`` (same bytes, the numpy one slower)."""
    out = Path(out).expanduser()
    suffix = out.suffix.lower()
    from moe_tui.fileio import atomic_write_bytes

    if suffix not in (".csv", "", ".parquet"):
        raise MoeTuiError(f"unknown export format {suffix!r}: use .csv or .parquet")
    _make_parent(out)
    if suffix == ".parquet":
        try:
            import pyarrow  # noqa: F401
            import pyarrow.parquet  # noqa: F401
        except ImportError:
            raise MoeTuiError("writing .parquet needs pyarrow: pip install 'moe-tui[parquet]'") from None
        out = out.resolve()
        atomic_write_bytes(out, lambda fh: _write_parquet_stream(run, fh, row_group_rows))
        return out
    out = out.resolve()
    use_arrow = {"auto": None, "arrow": True, "numpy": False}[csv_engine]
    atomic_write_bytes(out, lambda fh: _write_csv_stream(run, fh, spreadsheet_safe, chunk_rows, use_arrow))
    return out
