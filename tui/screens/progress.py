"""Extraction progress. The job belongs to the App, so leaving this screen does not stop it."""

from __future__ import annotations

from textual.app import ComposeResult
from textual.containers import Vertical
from textual.screen import Screen
from textual.widgets import Footer, Log, ProgressBar, Static

from moe_tui.tui import actions


def fmt_eta(s: float | None) -> str:
    if s is None:
        return "–"
    s = int(max(0, s))
    h, rem = divmod(s, 3600)
    m, sec = divmod(rem, 60)
    return f"{h}:{m:02d}:{sec:02d}" if h else f"{m}:{sec:02d}"


class ProgressScreen(Screen):
    SCOPE = "progress"
    BINDINGS = actions.bindings("progress")

    def compose(self) -> ComposeResult:
        with Vertical(id="progress-box"):
            yield Static("", id="progress-title")
            yield Static("", id="progress-stage")
            yield ProgressBar(total=None, show_eta=False, id="progress-bar")
            yield Static("", id="progress-numbers")
            yield Static("notices", classes="section")
            yield Log(id="progress-log", max_lines=500)
        yield Footer()

    def on_mount(self) -> None:
        self._logged = 0
        self.watch(self.app, "extract_tick", self._sync)
        self.watch(self.app, "extracting", self._sync_running)

    def _sync_running(self, running: bool) -> None:
        self.refresh_bindings()
        self._sync()

    def _sync(self, *_: object) -> None:
        st = self.app.extract_state
        title = self.query_one("#progress-title", Static)
        if st is None:
            title.update("No extraction has been started. Pick a model and a corpus on Home (F2), then ctrl+r.")
            return
        title.update(f"{st.model}  ←  {st.data}")
        self.query_one("#progress-stage", Static).update(f"stage: {st.stage}   [{st.outcome or 'running'}]")
        bar = self.query_one("#progress-bar", ProgressBar)
        if st.sentences_total:
            bar.update(total=st.sentences_total, progress=st.sentences_done)
        self.query_one("#progress-numbers", Static).update(
            f"sentences {st.sentences_done}/{st.sentences_total or '?'}   tokens {st.tokens_done}/{st.tokens_total or '?'}"
            f"   {st.tokens_per_s:,.0f} tokens/s   ETA {fmt_eta(st.eta_s)}"
        )
        log = self.query_one("#progress-log", Log)
        for line in st.notices[self._logged:]:
            log.write_line(line)
        self._logged = len(st.notices)

    @property
    def extracting(self) -> bool:
        """Gates ``progress.cancel`` (see :mod:`moe_tui.tui.actions`)."""
        return self.app.extracting

    def check_action(self, action: str, parameters: tuple) -> bool | None:
        return actions.check(self, "progress", action)

    def action_back(self) -> None:
        self.app.action_go_home()
