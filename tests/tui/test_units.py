"""Headless units: import hygiene, registry, settings, moe_tui.core.inspect numbers, discovery, path completion."""

from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import pytest

from tests.tui_fakes import fake_run


def test_importing_tui_app_imports_no_torch_transformers_sklearn():
    code = ("import sys, moe_tui.tui.app, moe_tui.tui.screens.home, moe_tui.tui.screens.grid, moe_tui.tui.screens.progress; "
            "bad = [m for m in ('torch', 'transformers', 'sklearn') if m in sys.modules]; print(bad)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=True)
    assert out.stdout.strip() == "[]", out.stdout + out.stderr


def test_registry_ids_unique_and_bindings_carry_ids():
    from moe_tui.tui.actions import ACTIONS, bindings, help_rows, keys_markdown

    ids = [a.id for a in ACTIONS]
    assert len(ids) == len(set(ids))
    for scope in ("app", "home", "progress", "grid"):
        assert all(b.id for b in bindings(scope))
    assert len(help_rows()) == len(ACTIONS) + 1
    assert "`grid.export`" in keys_markdown()


def test_settings_roundtrip_env_path_and_toml(tmp_path, monkeypatch):
    from moe_tui.tui.settings import Settings, SettingsError, config_path, load_settings, remember, save_settings

    p = tmp_path / "x" / "config.json"
    monkeypatch.setenv("MOE_TUI_CONFIG", str(p))
    assert config_path() == p
    assert load_settings().animation_level == "none"
    save_settings(Settings(keymap={"grid.export": "ctrl+e"}, theme="nord"))
    s = load_settings()
    assert s.keymap == {"grid.export": "ctrl+e"} and s.theme == "nord"
    toml = tmp_path / "c.toml"
    toml.write_text('theme = "gruvbox"\n[keymap]\n"app.help" = "f1"\n')
    assert load_settings(toml).keymap == {"app.help": "f1"}
    p.write_text("[1, 2]")
    with pytest.raises(SettingsError):
        load_settings()
    for i in range(15):
        r = remember("corpora", f"/c{i}")
    assert r.corpora[0] == "/c14" and len(r.corpora) == 10
    assert json.loads((p.parent / "recent.json").read_text())["corpora"][0] == "/c14"


def test_core_inspect_numbers():
    from moe_tui.core.inspect import (
        LayerStatsCache,
        expert_pos_distribution,
        expert_share_of_pos,
        layer_expert_pos_counts,
        token_path,
    )

    experts = np.array([[[0, 1]], [[0, 2]], [[1, 2]], [[2, 0]]], dtype=np.uint8)   # T=4, L=1, k=2
    pos = np.array([0, 0, 1, -1])
    c = layer_expert_pos_counts(experts, pos, 0, 3, 2)
    assert c.tolist() == [[2, 0], [1, 1], [1, 1]]
    assert layer_expert_pos_counts(experts, pos, 0, 3, 2, ranks=1).tolist() == [[2, 0], [0, 1], [0, 0]]
    np.testing.assert_allclose(expert_pos_distribution(experts, pos, 0, 1, 2), [0.5, 0.5])
    assert expert_share_of_pos(experts, pos, 0, 0, 0) == 1.0
    assert expert_share_of_pos(experts, pos, 0, 2, 1) == 1.0
    cache = LayerStatsCache(experts, pos, 3, 2)
    assert cache.share_of_pos(0, 1, 0) == 0.5
    np.testing.assert_allclose(cache.distribution(0, 2), [0.5, 0.5])
    # fill(): every layer in one chunked pass, the same hand-counted numbers (chunks of 3 tokens: 2 chunks)
    filled = LayerStatsCache(experts, pos, 3, 2)
    assert filled.fill(chunk_tokens=3) and filled.counts(0).tolist() == [[2, 0], [1, 1], [1, 1]]
    assert not LayerStatsCache(experts, pos, 3, 2).fill(should_stop=lambda: True)
    w = np.array([[[0.7, 0.3]]] * 4, dtype=np.float16)
    path = token_path(experts, w, 1, [5])
    assert path[0].layer == 5 and path[0].experts == (0, 2) and abs(path[0].weights[0] - 0.7) < 1e-3


def test_runview_sentence_data():
    from moe_tui.tui.runview import display_token, n_sentences, sentence_data

    run = fake_run()
    assert n_sentences(run) == 4
    d = sentence_data(run, 1)
    assert d.tokens[1] == "Dogs" and d.words[1] == "Dogs" and d.pos[1] == "NOUN" and d.pos[0] == ""
    assert d.experts.shape == (d.n_tokens, 6, 2)
    assert display_token("Ġcat") == "cat" and display_token("Ċ") == "⏎"


def test_discovery_reads_config_only(tmp_path, monkeypatch):
    from moe_tui.tui import discovery

    moe = tmp_path / "moe"
    moe.mkdir()
    (moe / "config.json").write_text(json.dumps({"model_type": "olmoe", "num_experts": 64}))
    dense = tmp_path / "dense"
    dense.mkdir()
    (dense / "config.json").write_text(json.dumps({"model_type": "llama"}))
    assert discovery.is_moe_config(discovery.read_config(moe))
    assert not discovery.is_moe_config(discovery.read_config(dense))
    assert discovery.is_moe_config({"model_type": "custom", "num_local_experts": 8})
    monkeypatch.setattr(discovery, "hf_cache_models", lambda: [discovery.ModelEntry("org/m", "org/m", "hf-cache")])
    entries = discovery.discover_models([str(moe)], ["/recent/x", str(moe)])
    paths = [e.path for e in entries]
    assert str(moe) in paths and "/recent/x" in paths and "org/m" in paths and len(paths) == len(set(paths))


async def test_path_suggester(tmp_path):
    from moe_tui.tui.screens.home import PathSuggester

    (tmp_path / "data").mkdir()
    (tmp_path / "data" / "en_ewt-ud-dev.conllu").write_text("")
    s = PathSuggester()
    assert await s.get_suggestion(str(tmp_path / "da")) == str(tmp_path / "data") + "/"
    assert await s.get_suggestion(str(tmp_path / "data" / "en")) == str(tmp_path / "data" / "en_ewt-ud-dev.conllu")
    assert await s.get_suggestion(str(tmp_path / "nope" / "x")) is None
