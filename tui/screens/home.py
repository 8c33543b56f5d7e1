"""Home: model pane, corpus picker + extraction options, cached runs."""

from __future__ import annotations

import os
from pathlib import Path
from typing import TYPE_CHECKING

from rich.text import Text
from textual import on, work
from textual.app import ComposeResult
from textual.containers import Horizontal, Vertical, VerticalScroll
from textual.screen import Screen
from textual.suggester import Suggester
from textual.widgets import (
    Button,
    Checkbox,
    DataTable,
    Footer,
    Input,
    Label,
    OptionList,
    Select,
    Static,
    TabbedContent,
    TabPane,
)
from textual.widgets.option_list import Option

if TYPE_CHECKING:  # pragma: no cover
    from moe_tui.cache.store import RunInfo
    from moe_tui.core.extract.models import ModelFacts

from moe_tui.core.extract.options import GenerateOptions, OptionSpec, form_fields
from moe_tui.tui import actions
from moe_tui.tui.discovery import ModelEntry, discover_models
from moe_tui.tui.messages import ModelInspected, ModelInspectFailed, ModelsFound, RunsListed


class PathSuggester(Suggester):
    """Completes filesystem paths (first match in the typed directory, directories end with /)."""

    def __init__(self) -> None:
        super().__init__(use_cache=False, case_sensitive=True)

    async def get_suggestion(self, value: str) -> str | None:
        if not value:
            return None
        expanded = os.path.expanduser(value)
        head, tail = os.path.split(expanded)
        directory = head or "."
        try:
            names = sorted(n for n in os.listdir(directory) if n.startswith(tail) and (tail or not n.startswith(".")))
        except OSError:
            return None
        for name in names:
            if name == tail:
                continue
            full = os.path.join(head, name) if head else name
            if os.path.isdir(os.path.join(directory, name)):
                full += os.sep
            # keep the user's "~" prefix
            if value.startswith("~") and not expanded.startswith("~"):
                full = "~" + full[len(os.path.expanduser("~")):]
            return full
        return None


def _fmt_params(n) -> str:
    if not n:
        return "?"
    for unit, div in (("B", 1e9), ("M", 1e6), ("K", 1e3)):
        if n >= div:
            return f"{n / div:.2f}{unit}"
    return str(n)


def facts_text(facts: ModelFacts) -> Text:
    moe = facts.moe_layers
    t = Text()
    rows = [
        ("architecture", f"{facts.architecture_class} ({facts.model_type})"),
        ("decoder layers", str(facts.num_layers)),
        ("MoE layers", f"{len(moe)}" + (f"  ({moe[0]}…{moe[-1]})" if moe else "")),
        ("experts N", str(facts.num_experts)),
        ("top-k", str(facts.top_k)),
        ("shared experts", str(facts.shared_experts)),
        ("params", _fmt_params(facts.params)),
        ("dtype on disk", str(facts.dtype_on_disk if facts.dtype_on_disk is not None else "?")),
    ]
    for k, v in rows:
        t.append(f"{k:>15}  ", style="bold")
        t.append(v + "\n")
    for n in facts.notes:
        t.append(f"\n• {n}", style="italic")
    return t


def option_id(spec: OptionSpec) -> str:
    """The Home form widget id of an extraction option (``opt-batch-size``)."""
    return "opt-" + spec.name.replace("_", "-")


def option_widgets(defaults) -> ComposeResult:
    """The Home form: one labelled widget per extraction option marked for the form
    (:func:`moe_tui.core.extract.options.form_fields`), valued from the user's settings where the option is one."""
    for s in form_fields():
        value = getattr(defaults, s.name) if s.setting else s.default
        if s.type is bool:
            yield Checkbox(s.form, value=bool(value), id=option_id(s))
            continue
        yield Label(s.form)
        if s.form_choices:
            choices = list(s.form_choices)
            if value not in [v for _, v in choices]:  # a setting outside the offered values (e.g. cuda:1)
                choices.append((str(value), value))
            yield Select(choices, value=value, allow_blank=False, id=option_id(s))
        else:
            yield Input(value="" if value is None else str(value), type="integer" if s.type is int else "text",
                        id=option_id(s))


def generate_option_id(spec: OptionSpec) -> str:
    """The Home form widget id of a generation option (``gen-opt-max-new-tokens``)."""
    return "gen-" + option_id(spec)


def generate_widgets() -> ComposeResult:
    """The generation entry of the Home form: one widget per generation option marked for the form
    (:func:`moe_tui.core.extract.options.form_fields` of :class:`GenerateOptions`), at its default."""
    for s in form_fields(GenerateOptions):
        if s.type is bool:
            yield Checkbox(s.form, value=bool(s.default), id=generate_option_id(s))
            continue
        yield Label(s.form)
        yield Input(value="" if s.default is None else str(s.default), type="integer" if s.type is int else "text",
                    id=generate_option_id(s))


class HomeScreen(Screen):
    SCOPE = "home"
    BINDINGS = actions.bindings("home")

    def __init__(self) -> None:
        super().__init__()
        self.entries: list[ModelEntry] = []
        self.facts: dict[str, object] = {}
        self.facts_error: dict[str, str] = {}
        self.highlighted_model: str | None = None
        self.runs: list[RunInfo] = []
        self._inspecting: str | None = None

    def compose(self) -> ComposeResult:
        app = self.app
        with TabbedContent(id="tabs", initial="models"):
            with TabPane("Models", id="models"):
                with Horizontal():
                    with Vertical(id="model-left"):
                        yield Input(placeholder="add a model folder or hub id, Enter", id="model-path",
                                    suggester=PathSuggester())
                        yield OptionList(id="model-list")
                    with VerticalScroll(id="model-details"):
                        yield Static("Highlight a model to inspect it.", id="model-facts")
            with TabPane("Corpus", id="corpus"):
                with Horizontal():
                    with Vertical(id="corpus-left"):
                        yield Label("POS-annotated corpus (.conllu or PTB)")
                        yield Input(value=app.initial_data or "", placeholder="path, Tab completes", id="corpus-path",
                                    suggester=PathSuggester())
                        yield Label("Recent corpora")
                        yield OptionList(id="recent-corpora")
                    with VerticalScroll(id="extract-options"):
                        yield from option_widgets(app.settings.extract)
                        yield Static("", id="trust-warning")
                        yield Button("Run extraction (ctrl+r)", id="run-extract", variant="primary")
                        yield Label("Or generate: the file above holds prompts (text, JSONL or CoNLL-U); the "
                                    "options above apply too", id="generate-title")
                        yield from generate_widgets()
                        yield Button("Generate (ctrl+g)", id="run-generate")
            with TabPane("Runs", id="runs"):
                yield DataTable(id="runs-table", cursor_type="row", zebra_stripes=True)
                yield Static("", id="run-details")
        yield Static("", id="status-line")
        yield Footer()

    def on_mount(self) -> None:
        t = self.query_one("#runs-table", DataTable)
        t.add_columns("run_id", "model", "corpus", "tokens", "created")
        self._fill_recent_corpora()
        self.refresh_models()
        self.refresh_runs()
        self.watch(self.app, "extract_tick", self._sync_status)
        self.watch(self.app, "extracting", self._sync_extracting)
        self.query_one("#model-list", OptionList).focus()

    # ---- actions -------------------------------------------------------------------------------------------
    def action_tab(self, tab: str) -> None:
        self.query_one(TabbedContent).active = tab
        target = {"models": "#model-list", "corpus": "#corpus-path", "runs": "#runs-table"}[tab]
        self.query_one(target).focus()

    def action_refresh_lists(self) -> None:
        self.refresh_models()
        self.refresh_runs()

    def highlighted_run_id(self) -> str | None:
        """The run under the Runs table's cursor (None when there is none)."""
        row = self.query_one("#runs-table", DataTable).cursor_row
        if not self.runs or row is None or not (0 <= row < len(self.runs)):
            return None
        return self.runs[row].run_id

    def action_open_run(self) -> None:
        run_id = self.highlighted_run_id()
        if run_id is None:
            self.notify("No cached run selected", severity="warning")
            return
        self.app.open_run(run_id)

    # ---- models --------------------------------------------------------------------------------------------
    def refresh_models(self) -> None:
        self._discover(list(self.app.model_folders), list(self.app.recent.models), self.app.scan_hf_cache)

    @work(thread=True, exclusive=True, group="discover", exit_on_error=False)
    def _discover(self, folders: list[str], recent: list[str], scan_hf: bool) -> None:
        self.post_message(ModelsFound(discover_models(folders, recent, scan_hf=scan_hf)))

    def on_models_found(self, msg: ModelsFound) -> None:
        self.entries = list(msg.entries)
        ol = self.query_one("#model-list", OptionList)
        ol.clear_options()
        for e in self.entries:
            label = Text.assemble((f"[{e.source}] ", "dim"), e.label)
            ol.add_option(Option(label, id=e.path))
        if not self.entries:
            ol.add_option(Option("No MoE model found: type a folder above", disabled=True))
            return
        want = self.app.selected_model or self.entries[0].path
        idx = next((i for i, e in enumerate(self.entries) if e.path == want), 0)
        ol.highlighted = idx
        self._select_model(self.entries[idx].path)

    @on(OptionList.OptionHighlighted, "#model-list")
    def _model_highlighted(self, event: OptionList.OptionHighlighted) -> None:
        if event.option.id:
            self._select_model(event.option.id)

    @on(Input.Submitted, "#model-path")
    def _model_typed(self, event: Input.Submitted) -> None:
        value = event.value.strip()
        if not value:
            return
        path = os.path.expanduser(value)
        if value not in self.app.model_folders:
            self.app.model_folders.append(path)
        self.app.selected_model = path
        event.input.value = ""
        self.refresh_models()
        self.query_one("#model-list", OptionList).focus()

    def _select_model(self, path: str) -> None:
        self.app.selected_model = path
        self.highlighted_model = path
        self._update_sub_title()
        details = self.query_one("#model-details")
        if path in self.facts:
            details.loading = False
            self.query_one("#model-facts", Static).update(facts_text(self.facts[path]))
        elif path in self.facts_error:
            details.loading = False
            self.query_one("#model-facts", Static).update(Text(self.facts_error[path], style="bold red"))
        else:
            details.loading = True
            if path != self._inspecting:
                self._inspecting = path
                self._inspect(path)

    @work(thread=True, exclusive=True, group="inspect", exit_on_error=False)
    def _inspect(self, path: str) -> None:
        try:
            facts = self.app.inspect_fn(path)
        except Exception as exc:  # noqa: BLE001 - shown to the user, one line
            self.post_message(ModelInspectFailed(path, f"{type(exc).__name__}: {' '.join(str(exc).split())}"))
            return
        self.post_message(ModelInspected(path, facts))

    def on_model_inspected(self, msg: ModelInspected) -> None:
        self._inspecting = None
        self.facts[msg.path] = msg.facts
        if msg.path == self.highlighted_model:
            self._select_model(msg.path)

    def on_model_inspect_failed(self, msg: ModelInspectFailed) -> None:
        self._inspecting = None
        self.facts_error[msg.path] = msg.message
        if msg.path == self.highlighted_model:
            self._select_model(msg.path)

    # ---- corpus + options ------------------------------------------------------------------------------------
    def _fill_recent_corpora(self) -> None:
        ol = self.query_one("#recent-corpora", OptionList)
        ol.clear_options()
        for c in self.app.recent.corpora:
            ol.add_option(Option(c, id=c))

    @on(OptionList.OptionSelected, "#recent-corpora")
    def _recent_corpus(self, event: OptionList.OptionSelected) -> None:
        self.query_one("#corpus-path", Input).value = event.option.id or ""

    @on(Checkbox.Changed, "#opt-trust-remote-code")
    def _trust_changed(self, event: Checkbox.Changed) -> None:
        warn = self.query_one("#trust-warning", Static)
        if event.value:
            text = "⚠ trust remote code runs Python shipped with the model repository. Only for repos you trust."
            warn.update(text)
            self.notify(text, severity="warning", markup=False)
        else:
            warn.update("")

    @on(Button.Pressed, "#run-extract")
    def _run_pressed(self) -> None:
        self.app.action_run_extraction()

    @on(Button.Pressed, "#run-generate")
    def _generate_pressed(self) -> None:
        self.app.action_run_generation()

    def generate_form(self) -> dict:
        """The extraction form's values that generation shares, as prompts and options, plus the generation
        options (``GenerateOptions`` field -> value). Raises ValueError for a value that is not valid."""
        shared = {f for f in GenerateOptions.__dataclass_fields__}
        values = {k: v for k, v in self.extract_form().items() if k in shared}
        values["prompts"] = self.extract_form()["data"]
        for s in form_fields(GenerateOptions):
            w = self.query_one(f"#{generate_option_id(s)}")
            if isinstance(w, Input):
                text = w.value.strip()
                if not text:
                    values[s.name] = None if s.optional else s.default
                    continue
                value = int(text) if s.type is int else text
                if s.positive and value <= 0:
                    raise ValueError(f"{s.form} must be > 0")
                values[s.name] = value
            else:
                values[s.name] = w.value
        return values

    def extract_form(self) -> dict:
        """The corpus path and the form's option values (``ExtractOptions`` field -> value).

        Raises ValueError for a value that is not valid (shown to the user by the App)."""
        values = {"data": os.path.expanduser(self.query_one("#corpus-path", Input).value.strip())}
        for s in form_fields():
            w = self.query_one(f"#{option_id(s)}")
            if isinstance(w, Input):
                text = w.value.strip()
                if not text:
                    values[s.name] = None if s.optional else s.default
                    continue
                value = int(text) if s.type is int else text
                if s.positive and value <= 0:
                    raise ValueError(f"{s.form} must be > 0")
                values[s.name] = value
            else:
                values[s.name] = w.value
        return values

    def _sync_extracting(self, running: bool) -> None:
        self.query_one("#run-extract", Button).disabled = running
        self.query_one("#run-generate", Button).disabled = running
        self._sync_status()

    def _sync_status(self, *_: object) -> None:
        self.query_one("#status-line", Static).update(self.app.status_text())

    def _update_sub_title(self) -> None:
        self.sub_title = f"model: {self.app.selected_model or '-'}"

    # ---- runs ------------------------------------------------------------------------------------------------
    def refresh_runs(self) -> None:
        self._list_runs()

    @work(thread=True, exclusive=True, group="runs", exit_on_error=False)
    def _list_runs(self) -> None:
        try:
            runs = list(self.app.run_store().list_runs())
        except Exception as exc:  # noqa: BLE001
            self.post_message(RunsListed([], f"{type(exc).__name__}: {exc}"))
            return
        self.post_message(RunsListed(runs))

    def on_runs_listed(self, msg: RunsListed) -> None:
        self.runs = msg.runs
        t = self.query_one("#runs-table", DataTable)
        t.clear()
        for r in self.runs:
            t.add_row(r.run_id, _short(r.model, 36), _short(r.corpus, 36), str(r.tokens), r.created[:19])
        self._show_run_details(t.cursor_row if self.runs else None)
        if msg.error:
            self.query_one("#status-line", Static).update(Text(f"runs: {msg.error}", style="red"))

    @on(DataTable.RowHighlighted, "#runs-table")
    def _run_highlighted(self, event: DataTable.RowHighlighted) -> None:
        self._show_run_details(event.cursor_row)

    def _show_run_details(self, row: int | None) -> None:
        details = self.query_one("#run-details", Static)
        if row is None or not (0 <= row < len(self.runs)):
            details.update("")
            return
        details.update(run_details_text(self.runs[row]))

    @on(DataTable.RowSelected, "#runs-table")
    def _run_selected(self, event: DataTable.RowSelected) -> None:
        if 0 <= event.cursor_row < len(self.runs):
            self.app.open_run(self.runs[event.cursor_row].run_id)


def run_details_text(r) -> Text:
    """A run's provenance for the Runs tab: the library versions it was made with, its model commit, logits."""
    prov = r.provenance or {}
    text = Text()
    text.append(f"run {r.run_id}", style="bold")
    text.append("  logits saved" if r.logits else "  no logits (extract again with --save-logits)")
    if not prov:
        text.append("\nprovenance not recorded (a run made before moe-tui kept it)")
        return text
    versions = " · ".join(f"{k} {prov[k]}" for k in ("python", "torch", "transformers", "tokenizers", "accelerate")
                          if prov.get(k))
    text.append(f"\nmade with {versions}")
    commit = (prov.get("model") or {}).get("commit_hash")
    text.append(f"\nmodel commit {commit}" if commit else "\nmodel commit unknown (a local folder)")
    return text



def _short(s: str, n: int) -> str:
    if len(s) <= n:
        return s
    p = Path(s)
    tail = p.name
    return ("…" + s[-(n - 1):]) if len(tail) >= n - 1 else "…/" + tail
