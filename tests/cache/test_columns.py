"""String tables and the search over them (moe_tui.cache.columns): the oracle is Python's own str operations on
the same strings, one by one."""

from __future__ import annotations

import random

import numpy as np
import pytest

from moe_tui.cache.columns import StringTable, TextColumns, search_strings

ALPHABET = "aAbBéÉßsΣσς İi\t,\"'日"


def _strings(n=2500, seed=1):
    rng = random.Random(seed)
    return ["".join(rng.choice(ALPHABET) for _ in range(rng.randint(0, 14))) for _ in range(n)]


def test_string_table_round_trip():
    strs = _strings() + ["", "x" * 5000, "\x00inside"]
    t = StringTable.from_strings(strs)
    assert len(t) == len(strs) and t.offsets[0] == 0 and t.offsets.dtype == np.int64 and t.data.dtype == np.uint8
    assert [t[i] for i in range(len(strs))] == strs
    assert t[-1] == strs[-1] and t.tolist() == strs and list(t) == strs
    assert t.byte_lengths().tolist() == [len(s.encode()) for s in strs]
    assert t.byte_range(3, 6) == "".join(strs[3:6]).encode()
    with pytest.raises(IndexError):
        StringTable.from_strings(["a"])[1]


@pytest.mark.parametrize("chunk_bytes", [pytest.param(1, marks=pytest.mark.slow), pytest.param(7, marks=pytest.mark.slow),
                                         64, 1 << 18])
def test_search_finds_exactly_the_strings_that_contain_the_query_ignoring_case(chunk_bytes):
    strs = _strings()
    t = StringTable.from_strings(strs)
    for q in ["a", "ab", "ss", "SS", "É", "b a", "σ", "ΣΑ", "ς", "i", "İ", "\t", '"', "日b", "zz", "a\x00b"]:
        got = np.concatenate(list(search_strings(t, q, chunk_bytes=chunk_bytes)))
        needle = q.replace("\x00", "").casefold()
        assert got.tolist() == [i for i, s in enumerate(strs) if needle in s.casefold()], (q, chunk_bytes)
        assert got.dtype == np.int64 and np.all(np.diff(got) > 0)


def test_search_yields_as_it_goes_and_can_start_later():
    strs = [f"sentence {i} {'even' if i % 2 == 0 else 'odd'}" for i in range(1000)]
    t = StringTable.from_strings(strs)
    parts = list(search_strings(t, "EVEN", chunk_bytes=200))
    assert len(parts) > 10  # one batch per chunk of text
    assert np.concatenate(parts).tolist() == list(range(0, 1000, 2))
    assert np.concatenate(list(search_strings(t, "", start=990))).tolist() == list(range(990, 1000))
    assert np.concatenate(list(search_strings(t, "odd", start=995))).tolist() == [995, 997, 999]


def test_a_nul_inside_a_string_is_searched_one_by_one():
    strs = ["plain cat", "a\x00cat", "dog", "CAT\x00"]
    got = np.concatenate(list(search_strings(StringTable.from_strings(strs), "cat", chunk_bytes=4)))
    assert got.tolist() == [0, 1, 3]


def test_text_columns_from_records_validate():
    recs = [{"id": "a", "text": "Hi there", "words": [["Hi", "INTJ", 0, 2], ["there", "ADV", 3, 8]],
             "tokens": ["<s>", "Hi", "Ġthere"], "skipped": False},
            {"id": "b", "text": "", "words": [], "tokens": [], "skipped": True}]
    c = TextColumns.from_records(recs)
    c.validate()
    assert c.forms.tolist() == ["Hi", "there"] and c.word_tags == ["INTJ", "ADV"]
    assert c.word_offsets.tolist() == [0, 2, 2] and c.token_counts.tolist() == [3, 0]
    assert c.word_spans.tolist() == [[0, 2], [3, 8]] and c.skipped.tolist() == [False, True]
    c.token_counts[0] = 2
    with pytest.raises(ValueError, match="token pieces do not match"):
        c.validate()
