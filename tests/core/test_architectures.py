"""One architecture registry: model loading, capture tests, discovery and the docs read the same table."""

from __future__ import annotations

import re

from moe_tui.core.extract import architectures as A
from moe_tui.core.extract import models
from tests.factories_model import SUPPORTED
from tests.helpers import REPO


def test_loading_and_capture_tests_use_the_registry():
    assert models.ADAPTERS is A.ADAPTERS and models.REFUSED is A.REFUSED
    assert SUPPORTED == list(A.CHECKED)
    assert A.ADAPTERS == {"dbrx": "dbrx", "llama4_text": "llama4", "llama4": "llama4", "jetmoe": "jetmoe",
                          "zaya": "zaya", "gemma4_text": "gemma4"}
    assert set(A.REFUSED) == {"doge"}
    assert not set(A.CHECKED) & set(A.REFUSED)


def test_the_docs_list_exactly_the_checked_architectures():
    text = (REPO / "docs" / "architectures.md").read_text(encoding="utf-8")
    listed = text.split("The checked architectures:\n", 1)[1]
    listed = listed.split(", and\nremote-code models", 1)[0]
    names = re.findall(r"[a-z0-9_]+", listed)
    assert sorted(names) == sorted(A.CHECKED)


def test_discovery_reads_moe_from_the_registry():
    from moe_tui.tui import discovery

    assert discovery.is_moe_config is A.is_moe_config
    for mt in A.ARCHITECTURES:
        assert A.is_moe_config({"model_type": mt})
    assert not A.is_moe_config({"model_type": "llama", "num_local_experts": 1})
    assert A.is_moe_config({"model_type": "llava", "text_config": {"model_type": "mixtral"}})
