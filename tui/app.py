"""moe-tui: the Textual app. Displays what the core and the run store return; computes no science itself.

Invariant: workers never touch widgets — they post messages (moe_tui.tui.messages, moe_tui.tui.analysis.messages)
and App/Screen handlers own state. The App owns the extraction job (here) and the analysis state and jobs
(its AnalysisController mixin). Importing this module must not import torch, transformers or sklearn
(tests/tui/test_units.py).
"""

from __future__ import annotations

import os
import time
from dataclasses import dataclass, field
from typing import Callable

from textual import work
from textual.app import App
from textual.reactive import reactive, var

from moe_tui.core.extract.events import Event, Notice, Progress, Stage
from moe_tui.core.extract.options import ExtractOptions, GenerateOptions
from moe_tui.tui import actions
from moe_tui.tui.analysis.controller import AnalysisController
from moe_tui.tui.commands import RegistryProvider
from moe_tui.tui.messages import (
    ExtractionCancelled,
    ExtractionDone,
    ExtractionEvent,
    ExtractionFailed,
    RunOpened,
    RunOpenFailed,
)
from moe_tui.tui.settings import Settings, SettingsError, load_recent, load_settings, remember, save_settings
from moe_tui.tui.worker import build_extract_command, build_generate_command, drive_extraction


@dataclass
class ExtractState:
    model: str
    data: str
    stage: str = "starting"
    sentences_done: int = 0
    sentences_total: int = 0
    tokens_done: int = 0
    tokens_total: int = 0
    tokens_per_s: float = 0.0
    eta_s: float | None = None
    notices: list[str] = field(default_factory=list)
    outcome: str | None = None          # done | failed | cancelled
    run_id: str | None = None
    run_dir: str | None = None
    error: str | None = None
    started: float = field(default_factory=time.monotonic)

    def apply(self, event: Event) -> None:
        """Take in a stage, progress or notice event of the job."""
        if isinstance(event, Stage):
            self.stage = event.stage
        elif isinstance(event, Progress):
            self.sentences_done, self.sentences_total = event.sentences_done, event.sentences_total
            self.tokens_done, self.tokens_total = event.tokens_done, event.tokens_total
            self.tokens_per_s, self.eta_s = event.tokens_per_s, event.eta_s
        elif isinstance(event, Notice):
            self.notices.append(event.message)


def _default_inspect(path: str):
    from moe_tui.core.extract.models import inspect_model  # imports torch lazily: only ever called in a thread worker

    return inspect_model(path)


def _default_store():
    from moe_tui.cache.store import RunStore

    return RunStore()


class MoeTuiApp(AnalysisController, App):
    CSS_PATH = "app.tcss"
    TITLE = "moe-tui"
    SUB_TITLE = "MoE routing by part of speech"
    BINDINGS = actions.bindings("app")
    COMMANDS = App.COMMANDS | {RegistryProvider}

    extracting: reactive[bool] = reactive(False, bindings=True)
    extract_tick: var[int] = var(0)

    def __init__(
        self,
        models: list[str] | None = None,
        data: str | None = None,
        demo: bool = False,
        *,
        settings: Settings | None = None,
        inspect_fn: Callable[[str], object] | None = None,
        extract_command: Callable[[ExtractOptions], list[str]] | None = None,
        run_store: Callable[[], object] | None = None,
        scan_hf_cache: bool = True,
        min_size: tuple[int, int] | None = None,
        open_run: object | None = None,
        diff_run: object | None = None,
    ) -> None:
        self._settings_error: str | None = None
        if settings is None:
            try:
                settings = load_settings()
            except SettingsError as exc:
                self._settings_error = str(exc)
                settings = Settings()
        self.settings = settings
        super().__init__()
        self.animation_level = settings.animation_level  # type: ignore[assignment]
        self.set_keymap(settings.keymap)
        self.recent = load_recent()
        self.model_folders: list[str] = [os.path.expanduser(m) for m in (models or [])]
        self.initial_data = data
        self.demo = demo
        self.selected_model: str | None = self.model_folders[0] if self.model_folders else None
        self.inspect_fn = inspect_fn or _default_inspect
        self.extract_command = extract_command or build_extract_command
        self.run_store = run_store or _default_store
        self.scan_hf_cache = scan_hf_cache
        self.min_size = min_size or (settings.min_width, settings.min_height)
        self.extract_state: ExtractState | None = None
        self._extract_worker = None
        self._init_analysis()               # self.analysis, self.report_options, self.last_report_dir
        self._too_small = None
        self.initial_run = open_run          # a cache Run opened before the app started (`moe-tui open RUN`)
        self.initial_diff = diff_run         # its second run for the grid's diff overlay (`--diff RUN_B`)
        if demo:
            from moe_tui.tui.discovery import demo_corpus, demo_entry

            entry = demo_entry()
            if entry is not None:
                self.selected_model = entry.path
            if not data:
                self.initial_data = demo_corpus()

    # ---- lifecycle -----------------------------------------------------------------------------------------
    def on_mount(self) -> None:
        if self.settings.theme in self.available_themes:
            self.theme = self.settings.theme
        from moe_tui.tui.screens.home import HomeScreen

        if self.initial_run is not None:
            # `moe-tui open RUN`: the grid alone (the home screen is made when first needed: it would cost the
            # grid's first frame about a tenth of a second)
            from moe_tui.tui.screens.grid import GridScreen

            self.push_screen(GridScreen(self.initial_run, self.initial_diff))
            return
        self.push_screen(HomeScreen())
        if self.demo and self.selected_model and self.initial_data:
            # the demo opens on something real: extract (a cache hit after the first time), then the grid
            self.call_after_refresh(self.action_run_extraction)
        if self._settings_error:
            self.show_error("Settings ignored", self._settings_error)
        self.call_after_refresh(self._check_size)

    def watch_theme(self, theme: str) -> None:
        if self.is_mounted and theme != self.settings.theme:
            self.settings.theme = theme
            try:
                save_settings(self.settings)
            except OSError:
                pass

    def on_resize(self) -> None:
        self._check_size()

    def _check_size(self) -> None:
        from moe_tui.tui.screens.modals import TooSmallScreen

        if self._home() is None:
            return
        w, h = self.size
        small = w < self.min_size[0] or h < self.min_size[1]
        if small and self._too_small is None:
            self._too_small = TooSmallScreen(self.min_size)
            self.push_screen(self._too_small)
        elif small and self._too_small is not None:
            self._too_small.update_size()
        elif not small and self._too_small is not None:
            if self.screen is self._too_small:
                self.pop_screen()
            self._too_small = None

    # ---- errors ---------------------------------------------------------------------------------------------
    def show_error(self, title: str, message: str, detail: str = "") -> None:
        from moe_tui.tui.screens.modals import ErrorModal

        self.push_screen(ErrorModal(title, message, detail))

    # ---- app actions ----------------------------------------------------------------------------------------
    def action_help(self) -> None:
        from moe_tui.tui.screens.modals import HelpScreen

        if not isinstance(self.screen, HelpScreen):
            self.push_screen(HelpScreen())

    def action_go_home(self) -> None:
        home = self._home()
        if home is None:  # opened on a run: the home screen takes the place of everything above the app's base
            from moe_tui.tui.screens.home import HomeScreen

            while len(self.screen_stack) > 2:
                self.pop_screen()
            self.switch_screen(HomeScreen())
            self.call_after_refresh(self._check_size)
            return
        while self.screen is not home and len(self.screen_stack) > 1:
            self.pop_screen()

    def back_from(self, screen) -> None:
        """Leave ``screen`` (the top one): to the screen below it, or home when nothing real is below."""
        if len(self.screen_stack) <= 2 and self._home() is None:
            self.action_go_home()
        else:
            self.pop_screen()

    def action_show_progress(self) -> None:
        from moe_tui.tui.screens.progress import ProgressScreen

        if not isinstance(self.screen, ProgressScreen):
            self.push_screen(ProgressScreen())

    def action_open_pane(self, kind: str) -> None:
        """``s`` / ``K`` / ``P`` / ``C``: a pane for the run on screen (grid or pane) or highlighted (home)."""
        from textual.screen import ModalScreen

        from moe_tui.tui.screens.grid import GridScreen
        from moe_tui.tui.screens.home import HomeScreen
        from moe_tui.tui.screens.panes import PANES, PaneScreen

        screen = self.screen
        if isinstance(screen, ModalScreen):
            return
        if isinstance(screen, PaneScreen):
            if screen.KIND != kind:           # pane to pane: replaced, not stacked
                self.switch_screen(PANES[kind](screen.run))
        elif isinstance(screen, GridScreen):
            self.push_screen(PANES[kind](screen.run))
        elif isinstance(screen, HomeScreen):
            run_id = screen.highlighted_run_id()
            if run_id is None:
                self.notify("No cached run to analyse: extract one first (ctrl+r)", severity="warning")
            elif run_id in self.analysis:
                self.push_screen(PANES[kind](self.analysis[run_id].run))
            else:
                self.open_run(run_id, pane=kind)
        else:
            self.notify("Open a run first (F2 home, F7 runs)", severity="warning")

    def show_in_grid(self, run, target) -> None:
        """Open the routing grid of ``run`` (the one below on the stack, else a new one) at a
        :class:`moe_tui.core.inspect.explore.JumpTarget`: its sentence, cursor on (layer, token), expert highlighted
        (``target.expert`` None: the highlight is left as it is)."""
        self.run_worker(self._show_in_grid(run, target), exclusive=True, group="jump")

    async def _show_in_grid(self, run, target) -> None:
        from moe_tui.tui.screens.grid import GridScreen

        gs = next((x for x in reversed(self.screen_stack) if isinstance(x, GridScreen) and x.run.run_id == run.run_id), None)
        if gs is None:
            await self.push_screen(GridScreen(run, start=(target.sentence, target.token, target.layer_idx)))
            gs = self.screen
        else:
            while self.screen is not gs and len(self.screen_stack) > 1:
                await self.pop_screen()
            gs.jump_to(target.sentence, target.token, target.layer_idx)
        if target.expert is not None:
            gs.grid.highlight = target.expert   # the grid redraws its legend on a highlight change

    def show_word(self, run, query: str = "", *, by: str = "form", layer_idx: int = 0) -> None:
        """Open the word view (a concordance) of ``query`` in ``run`` at MoE-layer position ``layer_idx``."""
        from moe_tui.tui.screens.word import WordScreen

        self.push_screen(WordScreen(run, query, by=by, layer_idx=layer_idx))

    def show_expert(self, run, layer_idx: int, expert: int) -> None:
        """Open the card of ``expert`` at MoE-layer position ``layer_idx`` of ``run``."""
        from moe_tui.tui.screens.expert import ExpertScreen

        self.push_screen(ExpertScreen(run, layer_idx, expert))

    def pick_run(self, runs, title: str, callback) -> None:
        """Ask the user to pick one of ``runs`` (cache ``RunInfo``); ``callback(run_id or None)``."""
        from moe_tui.tui.screens.modals import RunPickScreen

        self.push_screen(RunPickScreen(runs, title), callback)

    def check_action(self, action: str, parameters: tuple) -> bool | None:
        return actions.check(self, "app", action)

    def _home(self):
        from moe_tui.tui.screens.home import HomeScreen

        for s in self.screen_stack:
            if isinstance(s, HomeScreen):
                return s
        return None

    def action_run_extraction(self) -> None:
        if self.extracting:
            self.notify("An extraction is already running (F3 shows it)", severity="warning")
            return
        home = self._home()
        if home is None:
            self.action_go_home()
            self.notify("Choose a model and a corpus here, then ctrl+r", timeout=5)
            return
        try:
            fields = home.extract_form()
        except ValueError as exc:
            self.notify(f"invalid option: {exc}", severity="error", markup=False)
            return
        if not self.selected_model:
            self.notify("Pick a model first (Models tab)", severity="error")
            return
        if not fields["data"]:
            self.notify("Pick a corpus first (Corpus tab)", severity="error")
            return
        if not os.path.exists(fields["data"]):
            self.notify(f"corpus not found: {fields['data']}", severity="error", markup=False)
            return
        self.start_extraction(ExtractOptions(model=self.selected_model, **fields))

    def action_run_generation(self) -> None:
        """Generate from the prompts file named on Home's Corpus tab (``moe-tui generate`` as a child process)."""
        if self.extracting:
            self.notify("An extraction is already running (F3 shows it)", severity="warning")
            return
        home = self._home()
        if home is None:
            self.action_go_home()
            self.notify("Choose a model and a prompts file here, then ctrl+g", timeout=5)
            return
        try:
            fields = home.generate_form()
        except ValueError as exc:
            self.notify(f"invalid option: {exc}", severity="error", markup=False)
            return
        if not self.selected_model:
            self.notify("Pick a model first (Models tab)", severity="error")
            return
        if not fields["prompts"] or not os.path.exists(fields["prompts"]):
            self.notify(f"prompts file not found: {fields['prompts'] or '(none given)'}", severity="error",
                        markup=False)
            return
        self.start_extraction(GenerateOptions(model=self.selected_model, **fields))

    def start_extraction(self, opts: ExtractOptions | GenerateOptions) -> None:
        generating = isinstance(opts, GenerateOptions)
        cmd = build_generate_command(opts) if generating else self.extract_command(opts)
        data = opts.prompts if generating else opts.data
        self.extract_state = ExtractState(model=opts.model, data=data)
        self.extracting = True
        self.extract_tick += 1
        self.recent = remember("models", opts.model)
        self.recent = remember("corpora", data)
        self._extract_worker = self.run_worker(
            drive_extraction(self, cmd), name="extract", group="extract", exclusive=True, exit_on_error=False,
            description="moe-tui generate" if generating else "moe-tui extract",
        )
        self.action_show_progress()

    def action_cancel_extraction(self) -> None:
        if self._extract_worker is not None and self.extracting:
            self._extract_worker.cancel()

    # ---- extraction messages (the App owns the job's state) ----------------------------------------------------
    def _bump(self) -> None:
        self.extract_tick += 1

    def on_extraction_event(self, msg: ExtractionEvent) -> None:
        if self.extract_state:
            self.extract_state.apply(msg.event)
            self._bump()
        if isinstance(msg.event, Notice):
            self.notify(msg.event.message, title="extraction", markup=False, timeout=5)

    def on_extraction_done(self, msg: ExtractionDone) -> None:
        st = self.extract_state
        if st:
            st.outcome, st.run_id, st.run_dir, st.stage = "done", msg.run_id, msg.run_dir, "done"
            if st.sentences_total:
                st.sentences_done = st.sentences_total
        self.extracting = False
        self._bump()
        self.notify(f"run {msg.run_id} ready ({msg.elapsed_s:.1f} s). Open it from Runs (F2, F7).",
                    title="Extraction done", markup=False, timeout=8)
        home = self._home()
        if home is not None:
            home.refresh_runs()
        if self.demo and msg.run_id:
            self.open_run(msg.run_id)

    def on_extraction_failed(self, msg: ExtractionFailed) -> None:
        if self.extract_state:
            self.extract_state.outcome, self.extract_state.error = "failed", msg.message
        self.extracting = False
        self._bump()
        self.show_error("Extraction failed", msg.message, msg.detail)

    def on_extraction_cancelled(self, msg: ExtractionCancelled) -> None:
        if self.extract_state and self.extract_state.outcome is None:
            self.extract_state.outcome = "cancelled"
        self.extracting = False
        self._bump()
        self.notify("Extraction cancelled (finished shards are kept; a rerun resumes)", timeout=5)

    def status_text(self) -> str:
        st = self.extract_state
        if st is None:
            return "no extraction yet · ctrl+r runs one · F3 shows progress · ? help"
        if st.outcome is None:
            pct = f"{st.sentences_done}/{st.sentences_total}" if st.sentences_total else "…"
            return f"extracting ({st.stage}) {pct} sentences · {st.tokens_per_s:,.0f} tok/s · F3 progress · ctrl+x cancel"
        return f"last extraction: {st.outcome}" + (f" (run {st.run_id})" if st.run_id else "")

    # ---- runs -------------------------------------------------------------------------------------------------
    def open_run(self, run_id: str, pane: str | None = None) -> None:
        """Open a cached run (in a thread: checksums) in the grid, or in the analysis pane ``pane``."""
        self._open_run(run_id, pane)

    @work(thread=True, exclusive=True, group="open-run", exit_on_error=False)
    def _open_run(self, run_id: str, pane: str | None) -> None:
        try:
            run = self.run_store().open(run_id)
        except Exception as exc:  # noqa: BLE001 - shown in the error modal
            self.post_message(RunOpenFailed(f"{type(exc).__name__}: {exc}"))
            return
        self.post_message(RunOpened(run, pane))

    def on_run_opened(self, msg: RunOpened) -> None:
        if msg.pane is not None:
            from moe_tui.tui.screens.panes import PANES

            self.push_screen(PANES[msg.pane](self.analysis_data(msg.run).run))
            return
        from moe_tui.tui.screens.grid import GridScreen

        self.push_screen(GridScreen(msg.run))

    def on_run_open_failed(self, msg: RunOpenFailed) -> None:
        self.show_error("Cannot open run", msg.message)


def run_app(models: list[str] | None = None, data: str | None = None, demo: bool = False, *,
            open_run: object | None = None, cache_dir: str | None = None, diff_run: object | None = None) -> int:
    """Entry point used by ``moe-tui`` with no subcommand (and by ``moe-tui open RUN``, with the run already
    opened: the app starts on its routing grid). Returns the process exit code."""
    store = None
    if cache_dir:
        def store():
            from moe_tui.cache.store import RunStore

            return RunStore(cache_dir)
    app = MoeTuiApp(models=models, data=data, demo=demo, open_run=open_run, run_store=store, diff_run=diff_run)
    app.run()
    return int(app.return_code or 0)
