"""End-to-end: the real `moe-tui` console script in a private tmux server; keys in, capture-pane out."""

from __future__ import annotations

import os
import shlex
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.tui_fakes import fake_run

REPO = Path(__file__).resolve().parents[1]
TMUX = shutil.which("tmux")
pytestmark = pytest.mark.skipif(TMUX is None, reason="tmux is not installed (apt-get install -y tmux)")


def test_e2e_open_run_move_help_quit(tmp_path):
    store = pytest.importorskip("cache.store")
    from tests.test_tui_store import write_real_run

    cache = tmp_path / "runs"
    env_vars = {"MOE_TUI_CACHE": str(cache), "MOE_TUI_CONFIG": str(tmp_path / "cfg" / "config.json"),
                "HF_HOME": str(tmp_path / "hf"), "HF_HUB_OFFLINE": "1", "TERM": "xterm-256color"}
    old = os.environ.get("MOE_TUI_CACHE")
    os.environ["MOE_TUI_CACHE"] = str(cache)
    try:
        run_id = write_real_run(store.cache_root(), fake_run())
    finally:
        if old is None:
            os.environ.pop("MOE_TUI_CACHE", None)
        else:
            os.environ["MOE_TUI_CACHE"] = old
    script = REPO / ".venv" / "bin" / "moe-tui"
    prog = shlex.quote(str(script)) if script.exists() else \
        f"{shlex.quote(sys.executable)} -c 'from tui.app import run_app; run_app()'"
    envs = " ".join(f"{k}={shlex.quote(v)}" for k, v in env_vars.items())
    sock = f"moe_e2e_{os.getpid()}"
    T = [TMUX, "-L", sock]
    subprocess.run(T + ["new-session", "-d", "-s", "e2e", "-x", "120", "-y", "40",
                        f"cd {shlex.quote(str(REPO))} && env {envs} {prog}"], check=True)

    def cap() -> str:
        return subprocess.run(T + ["capture-pane", "-t", "e2e", "-p"], capture_output=True, text=True).stdout

    def wait_for(text: str, timeout: float = 20.0) -> str:
        t0 = time.monotonic()
        while time.monotonic() - t0 < timeout:
            screen = cap()
            if text in screen:
                return screen
            time.sleep(0.1)
        raise AssertionError(f"{text!r} not on screen after {timeout}s:\n{cap()}")

    def keys(*k: str) -> None:
        subprocess.run(T + ["send-keys", "-t", "e2e", *k], check=True)

    try:
        wait_for("Models")
        keys("F7")
        wait_for(run_id)
        keys("Enter")
        wait_for("sentence 1/4")
        keys("l")
        keys("l")
        screen = wait_for("'Ġcat'")
        assert "POS NOUN" in screen
        keys("n")
        wait_for("sentence 2/4")
        keys("?")
        wait_for("binding id")
        keys("Escape")
        time.sleep(0.3)
        keys("C-q")
        t0 = time.monotonic()
        while time.monotonic() - t0 < 30:
            if subprocess.run(T + ["has-session", "-t", "e2e"], capture_output=True).returncode != 0:
                break
            time.sleep(0.1)
        else:
            raise AssertionError("moe-tui did not quit on ctrl+q:\n" + cap())
    finally:
        subprocess.run(T + ["kill-server"], capture_output=True)
