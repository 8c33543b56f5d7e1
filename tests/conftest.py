"""Shared test setup: offline hubs, an isolated cache and config per test, small real runs per session."""

from __future__ import annotations

import os

import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("HF_DATASETS_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")


def pytest_collection_modifyitems(config, items):
    """Tests marked ``needs_ewt`` are skipped, with the reason, where UD English EWT is absent (never failed)."""
    from tests.helpers import ewt_missing

    reason = ewt_missing()
    if reason is None:
        return
    skip = pytest.mark.skip(reason=reason)
    for item in items:
        if item.get_closest_marker("needs_ewt") is not None:
            item.add_marker(skip)


@pytest.fixture(scope="session")
def tiny_run(tmp_path_factory):
    """A small run (4 sentences, 6 MoE layers, top-2 of 8) written by the run store's writer, alone in its
    cache root (``tiny_run.path.parent``). Read-only: tests must not modify it."""
    from tests.runs import synthetic_run

    return synthetic_run(tmp_path_factory.mktemp("runs_one"))


@pytest.fixture(scope="session")
def two_runs(tmp_path_factory):
    """Two runs of different models on the same sentences, in one cache root. Read-only."""
    from tests.runs import synthetic_run

    root = tmp_path_factory.mktemp("runs_two")
    return synthetic_run(root, seed=0), synthetic_run(root, seed=1, model="fake/moe-other")


@pytest.fixture(autouse=True)
def _isolated_dirs(tmp_path_factory, monkeypatch):
    """Every test gets its own run cache and config dir, never the user's."""
    base = tmp_path_factory.mktemp("moe_tui_home")
    monkeypatch.setenv("MOE_TUI_CACHE", str(base / "cache"))
    monkeypatch.setenv("MOE_TUI_CONFIG", str(base / "config" / "config.json"))
    yield
