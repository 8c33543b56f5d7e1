"""Progress events: one typed definition, one JSON line format (what ``--progress json`` prints)."""

from __future__ import annotations

import json

from moe_tui.core.extract.events import Done, Error, Notice, Progress, Stage, parse_event


def test_each_event_is_one_json_object_and_parses_back():
    events = [Stage("loading-model"), Progress(3, 10, 30, 100, 1234.5, 2.5), Progress(10, 10, 100, 100, 0.0, None),
              Notice("CUDA out of memory: batch halved to 8"), Error("model x has no router"),
              Done("/cache/abc", "abc")]
    for ev in events:
        line = ev.to_json()
        assert "\n" not in line
        assert parse_event(line) == ev
    # the wire format of docs/CONTRACT.md, field by field
    assert json.loads(Progress(3, 10, 30, 100, 1234.5, None).to_json()) == {
        "event": "progress", "sentences_done": 3, "sentences_total": 10, "tokens_done": 30, "tokens_total": 100,
        "tokens_per_s": 1234.5, "eta_s": None}
    assert json.loads(Done("/r", "r").to_json()) == {"event": "done", "run_dir": "/r", "run_id": "r"}
    assert Progress(10, 10).finished and not Progress(3, 10).finished and not Progress().finished


def test_other_lines_are_not_events():
    assert parse_event("Loading checkpoint shards: 50%") is None
    assert parse_event("{not json") is None
    assert parse_event('{"event": "unknown", "x": 1}') is None
    assert parse_event('{"event": "notice"}') is None                        # a field missing
    assert parse_event('{"event": "progress", "sentences_done": "many"}') is None
    # a newer producer may add fields: they are ignored
    assert parse_event('{"event": "stage", "stage": "aligning", "extra": 1}') == Stage("aligning")
