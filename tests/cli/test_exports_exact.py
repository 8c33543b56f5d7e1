"""Every export holds the text exactly as stored in the run (formula neutralisation is opt-in).

The oracle is the run itself: the token pieces and word forms of its sentence records and the arrays. The
corpus is built so that a cell could be altered: signs and formula starts (``-``, ``+1``, ``=x``, ``@home``),
a comma with quotes (``"a, b"``), the strings pandas reads as missing (``NA``, ``null``), non-ASCII words and
byte-level pieces (``Ċ``, ``café``, ``日本``).
"""

from __future__ import annotations

import csv
import io

import numpy as np
import pytest

from moe_tui.cache.store import RunStore
from moe_tui.core.inspect.export import export_routes, export_routes_rowwise
from moe_tui.fileio import tsv_text, write_csv
from tests.helpers import cli, ex_opts

TRICKY = [
    ["He", "said", "-", "+1", "=x", "@home", "."],
    ['"a, b"', "NA", "null", "café", "日本", "Ċ", "'q'"],
    ["-", "-", "+", "@", "=", "NaN", "None", "N/A", "#N/A", ""],
]


def _conllu(sentences: list[list[str]]) -> str:
    out = []
    for i, words in enumerate(sentences, 1):
        words = [w for w in words if w]
        out.append(f"# sent_id = s{i}")
        out.append("# text = " + " ".join(words))
        for j, w in enumerate(words, 1):
            out.append(f"{j}\t{w}\t{w}\tSYM\t_\t_\t0\troot\t_\t_")
        out.append("")
    return "\n".join(out) + "\n"


@pytest.fixture(scope="module")
def tricky_run(tmp_path_factory):
    from moe_tui.core.extract.pipeline import extract

    base = tmp_path_factory.mktemp("exact")
    data = base / "tricky.conllu"
    data.write_text(_conllu(TRICKY), encoding="utf-8")
    run_dir = extract(ex_opts(base / "cache", data=data, max_sentences=None, batch_size=2))
    return base / "cache", RunStore(base / "cache").open(run_dir)


def _expected_rows(run) -> list[tuple[int, int, str, str]]:
    """(sentence, token, token_text, word) per exported row, from the run's own records."""
    offsets = np.asarray(run.sentence_offsets)
    rows = []
    for s, rec in enumerate(run.sentences):
        for t in range(int(offsets[s + 1] - offsets[s])):
            g = int(offsets[s]) + t
            if run.special[g]:
                continue
            wi = int(run.word_index[g])
            word = rec["words"][wi][0] if wi >= 0 else ""
            rows.extend([(s, t, rec["tokens"][t], word)] * (len(run.moe_layers) * run.top_k))
    return rows


def test_route_csv_and_parquet_round_trip_exactly(tricky_run, tmp_path, capsys):
    import pandas as pd

    cache, run = tricky_run
    words_in_run = {w[0] for rec in run.sentences for w in rec["words"]}
    assert {"-", "+1", "=x", "@home", '"a, b"', "NA", "null", "café", "日本", "Ċ"} <= words_in_run
    expected = _expected_rows(run)
    pieces = {e[2] for e in expected}
    assert any(not p.isascii() for p in pieces)  # byte-level pieces (Ġ, Ã©, Ċ ...) are in the run

    out_csv = tmp_path / "routes.csv"
    code, _, err = cli(capsys, "export-routes", run.run_id, "--out", out_csv, "--cache-dir", cache)
    assert code == 0, err
    df = pd.read_csv(out_csv, keep_default_na=False)
    got = list(zip(df["sentence"], df["token"], df["token_text"], df["word"]))
    assert got == expected
    assert [float(w) for w in df["weight"]] == [float(w) for w in _weights(run)]

    out_pq = tmp_path / "routes.parquet"
    assert cli(capsys, "export-routes", run.run_id, "--out", out_pq, "--cache-dir", cache)[0] == 0
    pq = pd.read_parquet(out_pq)
    assert list(zip(pq["sentence"], pq["token"], pq["token_text"], pq["word"])) == expected


def _weights(run) -> list[float]:
    out = []
    offsets = np.asarray(run.sentence_offsets)
    for s in range(len(offsets) - 1):
        for g in range(int(offsets[s]), int(offsets[s + 1])):
            if not run.special[g]:
                out.extend(np.asarray(run.weights[g], dtype=np.float64).ravel().tolist())
    return out


def test_spreadsheet_safe_is_opt_in_and_only_touches_formula_like_text(tricky_run, tmp_path, capsys):
    cache, run = tricky_run
    exact, safe = tmp_path / "exact.csv", tmp_path / "safe.csv"
    assert cli(capsys, "export-routes", run.run_id, "--out", exact, "--cache-dir", cache)[0] == 0
    assert cli(capsys, "export-routes", run.run_id, "--out", safe, "--cache-dir", cache, "--spreadsheet-safe")[0] == 0
    with open(exact, newline="", encoding="utf-8") as a, open(safe, newline="", encoding="utf-8") as b:
        rows_a, rows_b = list(csv.DictReader(a)), list(csv.DictReader(b))
    assert len(rows_a) == len(rows_b)
    changed = 0
    for ra, rb in zip(rows_a, rows_b):
        for col in ra:
            if ra[col] != rb[col]:
                changed += 1
                assert col in ("token_text", "word") and rb[col] == "'" + ra[col], (col, ra[col], rb[col])
                assert ra[col].startswith(("=", "+", "-", "@"))
    assert changed > 0


def test_report_tables_and_tsv_copies_hold_text_exactly(tmp_path):
    import pandas as pd

    cells = ["-", "+1", "=x", "@home", '"a, b"', "NA", "null", "café", "Ċ", "tab\there", "two\nlines", ""]
    header = ["text", "value"]
    rows = [[c, i - 0.5] for i, c in enumerate(cells)]
    path = write_csv(tmp_path / "t.csv", header, rows)
    df = pd.read_csv(path, keep_default_na=False)
    assert list(df["text"]) == cells and list(df["value"]) == [r[1] for r in rows]
    back = list(csv.reader(io.StringIO(tsv_text(header, rows)), delimiter="\t"))
    assert back[0] == header and [r[0] for r in back[1:]] == cells
    assert [float(r[1]) for r in back[1:]] == [r[1] for r in rows]
    safe = list(csv.reader(io.StringIO(tsv_text(header, rows, spreadsheet_safe=True)), delimiter="\t"))
    assert [r[0] for r in safe[1:4]] == ["'-", "'+1", "'=x"] and safe[5][0] == '"a, b"'


@pytest.mark.parametrize("engine", ["arrow", "numpy"])
@pytest.mark.parametrize("spreadsheet_safe", [False, True])
def test_streaming_csv_is_byte_for_byte_the_row_by_row_csv(tricky_run, tmp_path, engine, spreadsheet_safe):
    """The streaming exporter (chunks of 7 rows here, so every chunk boundary is crossed) writes exactly the bytes
    of the straightforward row-by-row exporter (the csv module, one row at a time)."""
    _, run = tricky_run
    ref = export_routes_rowwise(run, tmp_path / "ref.csv", spreadsheet_safe=spreadsheet_safe)
    for chunk_rows in (7, 1 << 18):
        out = export_routes(run, tmp_path / "stream.csv", spreadsheet_safe=spreadsheet_safe, chunk_rows=chunk_rows,
                            csv_engine=engine)
        assert out.read_bytes() == ref.read_bytes(), (engine, chunk_rows)


def test_streaming_parquet_is_byte_for_byte_write_table(tricky_run, tmp_path):
    """ParquetWriter row group by row group writes exactly what pq.write_table writes for the whole table: with the
    default row groups (one here) and with row groups of 50 rows (several, crossing the exporter's chunks)."""
    _, run = tricky_run
    for rg in (None, 50):
        ref = export_routes_rowwise(run, tmp_path / "ref.parquet", row_group_rows=rg)
        kw = {"row_group_rows": rg} if rg else {}
        out = export_routes(run, tmp_path / "stream.parquet", **kw)
        assert out.read_bytes() == ref.read_bytes(), rg
    import pyarrow.parquet as pq

    assert pq.ParquetFile(out).metadata.num_row_groups > 1


def test_routes_frame_is_the_row_by_row_table(tricky_run):
    """``Run.routes()`` (array chunks, here of 1 and 3 tokens too, so every boundary is crossed) holds the rows of
    the row-by-row reference, cell for cell and type for type; the text is the run's own records."""
    import pandas as pd

    from moe_tui.api import Run
    from moe_tui.core.inspect.export import ROUTE_COLUMNS, iter_route_rows, routes_frame

    _, run = tricky_run
    ref = pd.DataFrame.from_records(list(iter_route_rows(run)), columns=list(ROUTE_COLUMNS))
    for chunk in (1, 3, 1 << 16):
        frame = routes_frame(run, chunk_tokens=chunk)
        pd.testing.assert_frame_equal(frame, ref, check_exact=True)
        assert [tuple(r) for r in frame[["sentence", "token", "token_text", "word"]].itertuples(index=False)] == \
            _expected_rows(run)
    assert list(Run(run).routes()["word"]) == list(ref["word"])
    assert {frame[c].dtype.kind for c in ("sentence", "token", "layer", "rank", "expert")} == {"i"}
    assert frame["weight"].dtype == np.float64
