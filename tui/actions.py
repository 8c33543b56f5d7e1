"""THE registry of user actions. Keys, footer, help screen, command palette and gating are all generated from it.

Every action has a stable binding id (``scope.name``) that users remap in ``config.json``::

    {"keymap": {"grid.export": "ctrl+e", "grid.highlight": "space"}}

Scopes: ``app`` (everywhere), ``home`` (model / corpus / runs screen), ``progress`` (extraction screen),
``grid`` (routing grid screen), ``pane`` (analysis panes: specialisation, KL, probe, compare), ``word`` (word view:
a concordance), ``expert`` (expert card).

Gating: ``only`` names the screen kinds (``KIND``) an action exists on (hidden elsewhere); ``when`` /
``unless`` name a boolean attribute of the screen (or App) that enables / disables it (shown greyed out).
Screens answer Textual's ``check_action`` with :func:`check`.
"""

from __future__ import annotations

from dataclasses import dataclass

from textual.binding import Binding


@dataclass(frozen=True)
class ActionSpec:
    id: str                 # binding id, e.g. "grid.export"
    keys: str               # default keys, comma separated (Textual key names)
    action: str             # action name on the scope's target (App or Screen)
    description: str        # short: footer + help
    scope: str              # app | home | progress | grid | pane | word | expert
    show: bool = True       # shown in the footer
    palette: bool = True    # offered in the command palette
    priority: bool = False
    help: str = ""          # longer text for the help screen / palette
    only: tuple[str, ...] = ()  # screen kinds (KIND) the action exists on; () = every screen of the scope
    when: str = ""          # enabled only while this boolean attribute of the target is true
    unless: str = ""        # disabled while this boolean attribute of the target is true

    @property
    def palette_name(self) -> str:
        return f"{SCOPE_TITLES[self.scope].lower()}: {self.description}"


SCOPE_TITLES = {"app": "App", "home": "Home", "progress": "Extraction", "grid": "Grid", "pane": "Analysis",
                "word": "Word", "expert": "Expert"}

ACTIONS: tuple[ActionSpec, ...] = (
    # app-wide
    ActionSpec("app.quit", "ctrl+q", "quit", "Quit", "app", priority=True, help="Leave moe-tui (extraction is cancelled)"),
    ActionSpec("app.help", "question_mark,f1", "help", "Help", "app", help="List every key"),
    ActionSpec("app.home", "f2", "go_home", "Home", "app", help="Models, corpus and runs"),
    ActionSpec("app.progress", "f3", "show_progress", "Extraction", "app", help="Show the running/last extraction"),
    ActionSpec("app.extract", "ctrl+r", "run_extraction", "Run extraction", "app", unless="extracting",
               help="Extract routes for the selected model and corpus (disabled while one runs)"),
    ActionSpec("app.generate", "ctrl+g", "run_generation", "Generate", "app", unless="extracting", show=False,
               help="Generate from the prompts file on Home's Corpus tab with the selected model (moe-tui generate: "
                    "routes of prompt and generated tokens, tagged; disabled while a job runs)"),
    ActionSpec("app.cancel", "ctrl+x", "cancel_extraction", "Cancel extraction", "app", show=False, when="extracting",
               help="Stop the running extraction (finished shards are kept; a rerun resumes)"),
    # analysis panes (from home: the highlighted run; from the grid or a pane: the run shown)
    ActionSpec("app.spec", "s", "open_pane('spec')", "Spec", "app",
               help="Specialisation pane: Spec per layer x POS, U and dU, plot by layer (paper Table 5, Fig. 4)"),
    ActionSpec("app.kl", "K", "open_pane('kl')", "KL", "app",
               help="KL pane: KL(expert || corpus) per expert x layer and its POS bars (paper Table 3, Fig. 5)"),
    ActionSpec("app.probe", "P", "open_pane('probe')", "Probe", "app",
               help="Probe pane: MLP probes, controls, confusion, ablation, t-SNE (paper Table 1, Figs. 2-3)"),
    ActionSpec("app.compare", "C", "open_pane('compare')", "Compare", "app",
               help="Compare cached runs on the same corpus: paper Tables 1, 3 and 5 side by side, a `paper` row "
                    "beside each run of the paper's models"),
    # home
    ActionSpec("home.models", "f5", "tab('models')", "Models", "home", show=False, help="Model pane"),
    ActionSpec("home.corpus", "f6", "tab('corpus')", "Corpus", "home", show=False, help="Corpus and extraction options"),
    ActionSpec("home.runs", "f7", "tab('runs')", "Runs", "home", show=False, help="Cached runs"),
    ActionSpec("home.refresh", "ctrl+l", "refresh_lists", "Refresh", "home", help="Rescan models and runs"),
    ActionSpec("home.open", "ctrl+o", "open_run", "Open run", "home", help="Open the highlighted cached run"),
    # progress
    ActionSpec("progress.cancel", "c", "app.cancel_extraction", "Cancel", "progress", palette=False, when="extracting",
               help="Cancel the extraction"),
    ActionSpec("progress.back", "escape", "back", "Back", "progress", help="Leave; the job keeps running"),
    # grid
    ActionSpec("grid.left", "left,h", "move(0,-1)", "Token left", "grid", show=False, palette=False),
    ActionSpec("grid.right", "right,l", "move(0,1)", "Token right", "grid", show=False, palette=False),
    ActionSpec("grid.up", "up,k", "move(-1,0)", "Layer up", "grid", show=False, palette=False),
    ActionSpec("grid.down", "down,j", "move(1,0)", "Layer down", "grid", show=False, palette=False),
    ActionSpec("grid.first", "g,home", "first", "First token", "grid", show=False),
    ActionSpec("grid.last", "G,end", "last", "Last token", "grid", show=False),
    ActionSpec("grid.page_up", "pageup", "page(-1)", "Page up", "grid", show=False, palette=False),
    ActionSpec("grid.page_down", "pagedown", "page(1)", "Page down", "grid", show=False, palette=False),
    ActionSpec("grid.next", "n", "sentence(1)", "Next sentence", "grid"),
    ActionSpec("grid.prev", "p", "sentence(-1)", "Prev sentence", "grid"),
    ActionSpec("grid.search", "slash", "search", "Search", "grid", help="Search sentences by text"),
    ActionSpec("grid.topk", "t", "toggle_topk", "All k", "grid", help="Show all k expert ids per cell / top-1 only"),
    ActionSpec("grid.colour", "c", "toggle_colour", "POS colours", "grid", help="Colour cells by expert / tokens by POS"),
    ActionSpec("grid.highlight", "x", "highlight", "Highlight", "grid",
               help="Highlight the cursor's expert (dim cells not routed to it); again to clear"),
    ActionSpec("grid.hl_next", "right_square_bracket", "highlight_step(1)", "Next expert", "grid", show=False,
               help="Highlight the next expert id"),
    ActionSpec("grid.hl_prev", "left_square_bracket", "highlight_step(-1)", "Prev expert", "grid", show=False,
               help="Highlight the previous expert id"),
    ActionSpec("grid.word", "w", "word_view", "Word view", "grid",
               help="Every occurrence of the cursor's word in the run, in context, with POS and experts at this layer"),
    ActionSpec("grid.word_typed", "W", "word_view(True)", "Word view: type", "grid", show=False,
               help="Word view of a word you type"),
    ActionSpec("grid.expert", "X", "expert_card", "Expert card", "grid",
               help="Card of the cursor's expert at this layer: load, POS mix, tokens and words by count and lift"),
    ActionSpec("grid.diff", "D", "diff_run", "Diff run", "grid",
               help="Overlay a second run of the same corpus and tokenizer: ≠ marks cells whose expert set differs, "
                    "the side panel gives the disagreement per layer (again: clear)"),
    ActionSpec("grid.export", "e", "export", "Export CSV", "grid", help="Write what is on screen as CSV"),
    ActionSpec("grid.copy", "y", "copy_cell", "Copy", "grid", show=False, help="Copy the side panel text (OSC 52)"),
    ActionSpec("grid.back", "escape", "back", "Back", "grid", help="Back to the runs"),
    # analysis panes
    ActionSpec("pane.export", "e", "export", "Export CSV", "pane",
               help="Write the focused table or plot as CSV (same columns as `moe-tui report`)"),
    ActionSpec("pane.export_report", "E", "export_report", "Export report", "pane",
               help="Write the whole report directory of this run (moe_tui.core.analysis.writer.write_report)"),
    ActionSpec("pane.copy", "y", "copy_tsv", "Copy TSV", "pane", help="Copy the focused table as TSV (OSC 52)"),
    ActionSpec("pane.sort", "o", "sort", "Sort", "pane",
               help="Sort the focused table by the cursor's column (again: reverse); a header click sorts too"),
    ActionSpec("pane.jump", "enter", "jump", "Open in grid", "pane", only=("spec",),
               help="Spec pane: open the routing grid at a sentence with this POS, on this layer, top expert highlighted"),
    ActionSpec("pane.delta", "d", "toggle_delta", "Spec/dU", "pane", only=("spec",),
               help="Spec pane: show Spec or dU = Spec - U"),
    ActionSpec("pane.run", "r", "run_probe", "Run probe", "pane", only=("probe",), unless="probe_running",
               help="Probe pane: train the probes and controls in the background (minutes on a real run)"),
    ActionSpec("pane.cancel", "c", "cancel_probe", "Cancel", "pane", only=("probe",), when="probe_running",
               help="Probe pane: cancel the running probe or information job"),
    ActionSpec("pane.information", "i", "run_information", "Information", "pane", only=("probe",),
               unless="probe_running",
               help="Probe pane: what routing knows that the token does not: conditional probes, per-layer probes, "
                    "online code length, paths (background)"),
    ActionSpec("pane.variant", "v", "next_variant", "Confusion variant", "pane", only=("probe",),
               help="Probe pane: show the confusion matrix of the next probe variant"),
    ActionSpec("pane.origin", "O", "cycle_origin", "Origin", "pane", only=("spec", "probe"), when="has_origin", show=False,
               help="Spec and probe panes, for a run made by moe-tui generate: all tokens, the prompt tokens, the "
                    "generated tokens (probe pane: probes trained on that origin, tested on both)"),
    ActionSpec("pane.expert", "X", "expert_card", "Expert card", "pane", only=("spec", "kl"),
               help="Spec pane: card of the top expert of the cursor's layer and POS; KL pane: of the cursor's expert"),
    ActionSpec("pane.back", "escape", "back", "Back", "pane", help="Close the pane"),
    # word view (concordance)
    ActionSpec("word.jump", "enter", "jump", "Open in grid", "word",
               help="Word view: open the occurrence under the cursor in the routing grid, at this layer"),
    ActionSpec("word.sort", "o", "sort", "Sort", "word",
               help="Word view: sort by sentence, POS group, expert, left or right context (cycles)"),
    ActionSpec("word.layer_next", "right_square_bracket", "layer(1)", "Next layer", "word", show=False,
               help="Word view: the next MoE layer"),
    ActionSpec("word.layer_prev", "left_square_bracket", "layer(-1)", "Prev layer", "word", show=False,
               help="Word view: the previous MoE layer"),
    ActionSpec("word.by", "b", "toggle_by", "Form/token", "word",
               help="Word view: match word forms (ignoring case) or tokenizer pieces"),
    ActionSpec("word.type", "slash", "type_word", "Type word", "word", help="Word view: look up another word"),
    ActionSpec("word.expert", "X", "expert_card", "Expert card", "word",
               help="Word view: card of the occurrence's top-1 expert at this layer"),
    ActionSpec("word.export", "e", "export", "Export CSV", "word",
               help="Word view: every occurrence as CSV, in the order shown (as `moe-tui concordance --out`)"),
    ActionSpec("word.back", "escape", "back", "Back", "word", help="Close the word view"),
    # expert card
    ActionSpec("expert.next", "right_square_bracket", "step_expert(1)", "Next expert", "expert",
               help="Expert card: the next expert at this layer"),
    ActionSpec("expert.prev", "left_square_bracket", "step_expert(-1)", "Prev expert", "expert",
               help="Expert card: the previous expert"),
    ActionSpec("expert.layer_next", "greater_than_sign", "step_layer(1)", "Next layer", "expert",
               help="Expert card: the same expert at the next MoE layer"),
    ActionSpec("expert.layer_prev", "less_than_sign", "step_layer(-1)", "Prev layer", "expert",
               help="Expert card: the same expert at the previous MoE layer"),
    ActionSpec("expert.export", "e", "export", "Export CSV", "expert",
               help="Expert card: the whole card as CSV (as `moe-tui expert --out`)"),
    ActionSpec("expert.back", "escape", "back", "Back", "expert", help="Close the card"),
)

BY_ID = {a.id: a for a in ACTIONS}


def _action_name(action: str) -> str:
    """``open_pane('spec')`` -> ``open_pane``; ``app.cancel_extraction`` -> ``cancel_extraction``."""
    return action.partition("(")[0].rpartition(".")[2]


_BY_ACTION: dict[tuple[str, str], ActionSpec] = {}
for _a in ACTIONS:
    _BY_ACTION.setdefault((_a.scope, _action_name(_a.action)), _a)


def check(target, scope: str, action: str) -> bool | None:
    """Textual's ``check_action`` answer for ``action`` on ``target`` (a screen of ``scope``, or the App):
    False = hidden (not on this kind of screen), None = shown disabled, True = enabled."""
    spec = _BY_ACTION.get((scope, action))
    if spec is None:
        return True
    if spec.only and target.KIND not in spec.only:
        return False
    if spec.when and not getattr(target, spec.when):
        return None
    if spec.unless and getattr(target, spec.unless):
        return None
    return True


def specs(scope: str) -> list[ActionSpec]:
    return [a for a in ACTIONS if a.scope == scope]


def bindings(scope: str) -> list[Binding]:
    """Textual bindings (with ids, so the user keymap can remap them) for one scope."""
    return [
        Binding(a.keys, a.action, a.description, show=a.show, id=a.id, priority=a.priority, tooltip=a.help)
        for a in specs(scope)
    ]


def effective_keys(spec: ActionSpec, keymap: dict[str, str] | None) -> str:
    """The keys a spec is bound to once the user's keymap is applied."""
    if keymap and spec.id in keymap:
        return keymap[spec.id]
    return spec.keys


_KEY_NAMES = {
    "question_mark": "?", "slash": "/", "left_square_bracket": "[", "right_square_bracket": "]",
    "pageup": "PgUp", "pagedown": "PgDn", "escape": "Esc", "less_than_sign": "<", "greater_than_sign": ">",
}


def display_keys(keys: str) -> str:
    out = []
    for k in keys.split(","):
        k = k.strip()
        out.append(_KEY_NAMES.get(k, k))
    return " / ".join(out)


def help_rows(keymap: dict[str, str] | None = None) -> list[tuple[str, str, str, str]]:
    """(scope title, keys, description, binding id) for every action, for the help screen and README's key table."""
    return [
        (SCOPE_TITLES[a.scope], display_keys(effective_keys(a, keymap)), a.help or a.description, a.id)
        for a in ACTIONS
    ] + [("App", "ctrl+p", "Command palette (every action, themes)", "-")]


def keys_markdown() -> str:
    lines = ["| scope | keys | action | binding id |", "|---|---|---|---|"]
    for scope, keys, desc, bid in help_rows():
        keys = keys.replace("|", "\\|")
        lines.append(f"| {scope} | {keys} | {desc} | `{bid}` |")
    return "\n".join(lines)
