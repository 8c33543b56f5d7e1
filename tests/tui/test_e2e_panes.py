"""End-to-end: the real `moe-tui` in a private tmux server reaches the probe pane, runs the probe, exports CSV."""

from __future__ import annotations

import json
import shutil

import pytest

from tests.runs import synthetic_run
from tests.tui.helpers import TmuxApp

TMUX = shutil.which("tmux")
pytestmark = [pytest.mark.slow, pytest.mark.skipif(TMUX is None, reason="tmux is not installed (apt-get install -y tmux)")]

FAST = {"max_iter": 30, "mlp_kwargs": {"hidden_layer_sizes": [8]}, "n_permutations": 3, "n_boot": 5,
        "tsne_samples": 200, "ablation_removed": [0, 3]}


def test_e2e_probe_pane_run_and_export(tmp_path):
    cache = tmp_path / "runs"
    exports = tmp_path / "exports"
    cfg = tmp_path / "cfg" / "config.json"
    cfg.parent.mkdir(parents=True)
    cfg.write_text(json.dumps({"export_dir": str(exports)}))
    run_id = synthetic_run(cache).run_id
    env = {"MOE_TUI_CACHE": str(cache), "MOE_TUI_CONFIG": str(cfg), "HF_HOME": str(tmp_path / "hf"),
           "HF_HUB_OFFLINE": "1", "TERM": "xterm-256color", "MOE_TUI_REPORT_OPTIONS": json.dumps(FAST)}
    with TmuxApp(TMUX, env) as app:
        app.wait_for("Models")
        app.keys("F7")
        app.wait_for(run_id)
        app.keys("P")
        app.wait_for("r trains the MLP probes")
        app.keys("r")
        app.wait_for("probes + controls done", timeout=90)
        app.wait_for("token_identity")                 # the controls table (paper's control rows) is drawn
        app.keys("e")
        app.wait_for("Exported")
        path = exports / f"moe-tui-{run_id}-probe.csv"
        assert path.exists()
        lines = path.read_text().splitlines()
        assert lines[0] == "variant,accuracy,train_tokens,test_tokens,accuracy_sd,seeds,n_iter,converged,engine,device"
        assert [ln.split(",")[0] for ln in lines[1:]] == ["top_k", "top_1", "onehot_top_k", "baseline"]
        app.quit()
