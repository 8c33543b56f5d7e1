"""Export a run's routes, one row per (token, MoE layer, rank).

Columns: ``sentence,token,token_text,word,pos,layer,rank,expert,weight`` where ``sentence`` is the
sentence index in the run, ``token`` the token's index within its sentence (special tokens keep
their index but get no rows), ``token_text`` the tokenizer's piece, ``word`` the form of the word the
token belongs to ("" if none), ``layer`` the decoder-layer index, ``rank`` 0 for the top-1 expert,
``weight`` the routing weight as stored (float16, written exactly). Text is written exactly as stored
in the run; ``spreadsheet_safe`` (CSV only) prefixes formula-like text cells with ``'``.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from moe_tui.errors import MoeTuiError

ROUTE_COLUMNS = ("sentence", "token", "token_text", "word", "pos", "layer", "rank", "expert", "weight")


def iter_route_rows(run, sentences: list[int] | None = None):
    """Yield route rows (tuples in ``ROUTE_COLUMNS`` order) for the given sentence indices (all if None)."""
    offsets = np.asarray(run.sentence_offsets)
    special = np.asarray(run.special)
    word_index = np.asarray(run.word_index)
    pos = np.asarray(run.pos)
    tags = run.tags
    layers = run.moe_layers
    k = run.top_k
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
            ex, we = experts[t], weights[t]
            for li, layer in enumerate(layers):
                for r in range(k):
                    yield (*head, layer, r, ex[li][r], we[li][r])


def export_routes(run, out: str | Path, *, spreadsheet_safe: bool = False) -> Path:
    """Write the routes of ``run`` to ``out`` (.csv, or .parquet with pyarrow). Returns the absolute path.

    ``spreadsheet_safe`` neutralises formula-like text cells of a CSV (altering them); Parquet is typed and
    never altered."""
    out = Path(out).expanduser()
    suffix = out.suffix.lower()
    if suffix == ".parquet":
        try:
            import pyarrow as pa
            import pyarrow.parquet as pq
        except ImportError:
            raise MoeTuiError("writing .parquet needs pyarrow: pip install 'moe-tui[parquet]'") from None
        cols = list(zip(*iter_route_rows(run))) or [[] for _ in ROUTE_COLUMNS]
        table = pa.table({name: list(col) for name, col in zip(ROUTE_COLUMNS, cols)})
        from moe_tui.fileio import atomic_write_bytes

        out = out.resolve()
        atomic_write_bytes(out, lambda fh: pq.write_table(table, fh))
        return out
    if suffix not in (".csv", ""):
        raise MoeTuiError(f"unknown export format {suffix!r}: use .csv or .parquet")
    from moe_tui.fileio import write_csv

    return write_csv(out, ROUTE_COLUMNS, iter_route_rows(run), spreadsheet_safe=spreadsheet_safe)
