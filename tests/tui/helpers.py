"""Helpers of the TUI tests: the screen as text, an app opened on a run, quick report options, and the real
console script driven through tmux."""

from __future__ import annotations


def screen_text(app) -> str:
    """The current screen as plain text (for asserts and debugging)."""
    strips = app.screen._compositor.render_strips()
    return "\n".join("".join(seg.text for seg in strip).rstrip() for strip in strips)



def fast_options():
    """Report options small enough for a pane test: tiny probes, few permutations and replicates."""
    from moe_tui.core.analysis.options import ReportOptions

    return ReportOptions(max_iter=30, mlp_kwargs={"hidden_layer_sizes": (8,)}, n_permutations=3, n_boot=5,
                         tsne_samples=200, ablation_removed=(0, 3))


def app_on_run(tmp_path, run, diff=None):
    """The app opened straight on ``run``'s grid (as ``moe-tui open RUN [--diff RUN_B]``), exports under tmp_path."""
    from moe_tui.cache.store import RunStore
    from moe_tui.tui.app import MoeTuiApp
    from moe_tui.tui.settings import Settings
    from tests.runs import model_facts

    return MoeTuiApp(settings=Settings(export_dir=str(tmp_path / "out")), inspect_fn=model_facts,
                     run_store=lambda: RunStore(run.path.parent), scan_hf_cache=False, open_run=run, diff_run=diff)

class TmuxApp:
    """The real ``moe-tui`` console script in a private tmux server (``tmux -L``): keys in, screen out.

    ``env`` is the app's environment; the server is killed by :meth:`close` (use as a context manager).
    """

    def __init__(self, tmux: str, env: dict[str, str], *, size: tuple[int, int] = (120, 40), args: tuple = ()):
        import os
        import shlex
        import subprocess
        import sys
        from pathlib import Path

        repo = Path(__file__).resolve().parents[2]  # tests/tui/helpers.py -> the repository
        script = repo / ".venv" / "bin" / "moe-tui"
        prog = shlex.quote(str(script)) if script.exists() else \
            f"{shlex.quote(sys.executable)} -c 'from moe_tui.tui.app import run_app; run_app()'"
        if args:
            prog += " " + " ".join(shlex.quote(str(a)) for a in args)
        envs = " ".join(f"{k}={shlex.quote(v)}" for k, v in env.items())
        self.T = [tmux, "-L", f"moe_e2e_{os.getpid()}_{id(self)}"]
        subprocess.run(self.T + ["new-session", "-d", "-s", "e2e", "-x", str(size[0]), "-y", str(size[1]),
                                 f"cd {shlex.quote(str(repo))} && env {envs} {prog}"], check=True)

    def cap(self) -> str:
        import subprocess

        return subprocess.run(self.T + ["capture-pane", "-t", "e2e", "-p"], capture_output=True, text=True).stdout

    def wait_for(self, text: str, timeout: float = 20.0) -> str:
        import time

        t0 = time.monotonic()
        while time.monotonic() - t0 < timeout:
            screen = self.cap()
            if text in screen:
                return screen
            time.sleep(0.1)
        raise AssertionError(f"{text!r} not on screen after {timeout}s:\n{self.cap()}")

    def keys(self, *k: str) -> None:
        import subprocess

        subprocess.run(self.T + ["send-keys", "-t", "e2e", *k], check=True)

    def quit(self, timeout: float = 30.0) -> None:
        """ctrl+q, then wait until the app (and so the tmux session) has ended."""
        import subprocess
        import time

        self.keys("C-q")
        t0 = time.monotonic()
        while time.monotonic() - t0 < timeout:
            if subprocess.run(self.T + ["has-session", "-t", "e2e"], capture_output=True).returncode != 0:
                return
            time.sleep(0.1)
        raise AssertionError("moe-tui did not quit on ctrl+q:\n" + self.cap())

    def close(self) -> None:
        import subprocess

        subprocess.run(self.T + ["kill-server"], capture_output=True)

    def __enter__(self) -> "TmuxApp":
        return self

    def __exit__(self, *exc) -> None:
        self.close()
