"""End-to-end: the real `moe-tui` in a private tmux server reaches the probe pane, runs the probe, exports CSV."""

from __future__ import annotations

import json
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

FAST = {"max_iter": 30, "mlp_kwargs": {"hidden_layer_sizes": [8]}, "n_permutations": 3, "n_boot": 5,
        "tsne_samples": 200, "ablation_removed": [0, 3]}


def test_e2e_probe_pane_run_and_export(tmp_path):
    store = pytest.importorskip("cache.store")
    from tests.test_tui_store import write_real_run

    cache = tmp_path / "runs"
    exports = tmp_path / "exports"
    cfg = tmp_path / "cfg" / "config.json"
    cfg.parent.mkdir(parents=True)
    cfg.write_text(json.dumps({"export_dir": str(exports)}))
    old = os.environ.get("MOE_TUI_CACHE")
    os.environ["MOE_TUI_CACHE"] = str(cache)
    try:
        run_id = write_real_run(store.cache_root(), fake_run())
    finally:
        if old is None:
            os.environ.pop("MOE_TUI_CACHE", None)
        else:
            os.environ["MOE_TUI_CACHE"] = old
    env_vars = {"MOE_TUI_CACHE": str(cache), "MOE_TUI_CONFIG": str(cfg), "HF_HOME": str(tmp_path / "hf"),
                "HF_HUB_OFFLINE": "1", "TERM": "xterm-256color", "MOE_TUI_REPORT_OPTIONS": json.dumps(FAST)}
    script = REPO / ".venv" / "bin" / "moe-tui"
    prog = shlex.quote(str(script)) if script.exists() else \
        f"{shlex.quote(sys.executable)} -c 'from tui.app import run_app; run_app()'"
    envs = " ".join(f"{k}={shlex.quote(v)}" for k, v in env_vars.items())
    T = [TMUX, "-L", f"moe_e2e_panes_{os.getpid()}"]
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
        keys("P")
        wait_for("r trains the MLP probes")
        keys("r")
        wait_for("probes + controls done", timeout=90)
        wait_for("token_identity")                 # the controls table (paper's control rows) is drawn
        keys("e")
        wait_for("Exported")
        path = exports / f"moe-tui-{run_id}-probe.csv"
        assert path.exists()
        lines = path.read_text().splitlines()
        assert lines[0] == "variant,accuracy,train_tokens,test_tokens"
        assert [ln.split(",")[0] for ln in lines[1:]] == ["top_k", "top_1", "onehot_top_k", "baseline"]
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
