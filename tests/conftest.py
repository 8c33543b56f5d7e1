"""Shared test setup: offline hubs, an isolated cache and config per test session."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("HF_DATASETS_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

REPO = Path(__file__).resolve().parents[1]
EWT_DIR = REPO.parent / "shared" / "data" / "ud_english_ewt"
EWT_DEV = EWT_DIR / "en_ewt-ud-dev.conllu"
EWT_TEST = EWT_DIR / "en_ewt-ud-test.conllu"


@pytest.fixture(autouse=True)
def _isolated_dirs(tmp_path_factory, monkeypatch):
    """Every test gets its own run cache and config dir, never the user's."""
    base = tmp_path_factory.mktemp("moe_tui_home")
    monkeypatch.setenv("MOE_TUI_CACHE", str(base / "cache"))
    monkeypatch.setenv("MOE_TUI_CONFIG", str(base / "config" / "config.json"))
    yield
