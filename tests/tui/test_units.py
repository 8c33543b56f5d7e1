"""Headless units: import hygiene, registry and its gating, settings, run views, discovery, path completion."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest


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
    from tests.helpers import REPO

    assert keys_markdown() in (REPO / "README.md").read_text(encoding="utf-8")   # the README's key table is current


def test_registry_gating_names_real_kinds_and_attributes():
    """``only`` names pane kinds that exist; ``when`` / ``unless`` name attributes of the scope's screen (or App)."""
    from moe_tui.tui.actions import ACTIONS, check
    from moe_tui.tui.app import MoeTuiApp
    from moe_tui.tui.screens.panes import PANES, PaneScreen
    from moe_tui.tui.screens.progress import ProgressScreen

    targets = {"app": MoeTuiApp, "pane": PaneScreen, "progress": ProgressScreen}
    gated = [a for a in ACTIONS if a.only or a.when or a.unless]
    assert {a.id for a in gated} >= {"pane.jump", "pane.delta", "pane.run", "pane.cancel", "pane.variant",
                                     "app.extract", "app.cancel", "progress.cancel"}
    for a in gated:
        assert set(a.only) <= set(PANES), a.id
        for attr in filter(None, (a.when, a.unless)):
            assert hasattr(targets[a.scope], attr), (a.id, attr)

    class Probe:            # a probe pane's answers, from the registry alone
        KIND, probe_running = "probe", False

    class Spec:
        KIND, probe_running = "spec", False

    assert check(Probe, "pane", "run_probe") is True and check(Probe, "pane", "cancel_probe") is None
    Probe.probe_running = True
    assert check(Probe, "pane", "run_probe") is None and check(Probe, "pane", "cancel_probe") is True
    assert check(Spec, "pane", "run_probe") is False and check(Spec, "pane", "jump") is True
    assert check(Probe, "pane", "jump") is False and check(Probe, "pane", "export") is True


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


def test_runview_sentence_data(tiny_run):
    from moe_tui.tui.runview import display_token, n_sentences, sentence_data

    run = tiny_run
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
