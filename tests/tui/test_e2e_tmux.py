"""End-to-end: the real `moe-tui` console script in a private tmux server; keys in, capture-pane out."""

from __future__ import annotations

import shutil
import time

import pytest

from tests.runs import synthetic_run
from tests.tui.helpers import TmuxApp

TMUX = shutil.which("tmux")
pytestmark = [pytest.mark.slow, pytest.mark.skipif(TMUX is None, reason="tmux is not installed (apt-get install -y tmux)")]


def test_e2e_open_run_move_help_quit(tmp_path):
    cache = tmp_path / "runs"
    run_id = synthetic_run(cache).run_id
    env = {"MOE_TUI_CACHE": str(cache), "MOE_TUI_CONFIG": str(tmp_path / "cfg" / "config.json"),
           "HF_HOME": str(tmp_path / "hf"), "HF_HUB_OFFLINE": "1", "TERM": "xterm-256color"}
    with TmuxApp(TMUX, env) as app:
        app.wait_for("Models")
        app.keys("F7")
        app.wait_for(run_id)
        app.keys("Enter")
        app.wait_for("sentence 1/4")
        app.keys("l")
        app.keys("l")
        screen = app.wait_for("'Ġcat'")
        assert "POS NOUN" in screen
        app.keys("n")
        app.wait_for("sentence 2/4")
        app.keys("?")
        app.wait_for("binding id")
        app.keys("Escape")
        time.sleep(0.3)  # Escape followed at once by a key arrives as alt+key
        app.quit()


def test_e2e_moe_tui_open_starts_on_the_grid(tmp_path):
    """`ssh node moe-tui open <run>`: the console script, a run id prefix, straight to the routing grid."""
    cache = tmp_path / "runs"
    run_id = synthetic_run(cache).run_id
    env = {"MOE_TUI_CONFIG": str(tmp_path / "cfg" / "config.json"), "HF_HOME": str(tmp_path / "hf"),
           "HF_HUB_OFFLINE": "1", "TERM": "xterm-256color",
           "COLUMNS": "120", "LINES": "40"}  # the pane's size (the test process's own COLUMNS would win)
    with TmuxApp(TMUX, env, args=("open", run_id[:8], "--cache-dir", str(cache))) as app:
        app.wait_for("sentence 1/4")
        screen = app.wait_for("its POS mix")  # the side panel: the screen is complete
        assert "The cat sat on the mat" in screen and "Models" not in screen
        time.sleep(1.0)  # a key sent while the terminal still answers Textual's start-up queries can be lost
        app.keys("/")
        app.keys("-l", "winter")
        app.wait_for("1 match")
        app.keys("Enter")
        app.wait_for("sentence 4/4")
        app.keys("Escape")
        time.sleep(0.3)
        app.wait_for("Models")  # back: the home screen is underneath
        app.quit()
