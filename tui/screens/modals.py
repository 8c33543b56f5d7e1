"""Modal screens: copyable error, help (generated from the action registry), terminal too small."""

from __future__ import annotations

from textual import events
from textual.app import ComposeResult
from textual.containers import Vertical, VerticalScroll
from textual.screen import ModalScreen
from textual.widgets import DataTable, Static

from moe_tui.tui import actions


class ErrorModal(ModalScreen[None]):
    """An error whose full text can be copied (OSC 52: works over SSH). Any other key closes."""

    DEFAULT_CSS = """
    ErrorModal { align: center middle; }
    ErrorModal > Vertical { width: 90%; max-width: 110; height: auto; max-height: 80%;
        border: thick $error; background: $panel; padding: 0 1; }
    ErrorModal #error-title { text-style: bold; color: $error; }
    ErrorModal VerticalScroll { height: auto; max-height: 20; }
    ErrorModal #error-hint { color: $text-muted; }
    """

    def __init__(self, title: str, message: str, detail: str = "") -> None:
        super().__init__()
        self.title_text = title
        self.message = message
        self.detail = detail

    @property
    def full_text(self) -> str:
        return f"{self.title_text}\n{self.message}" + (f"\n\n{self.detail}" if self.detail else "")

    def compose(self) -> ComposeResult:
        with Vertical():
            yield Static(self.title_text, id="error-title", markup=False)
            with VerticalScroll():
                yield Static(self.message, id="error-message", markup=False)
                if self.detail:
                    yield Static("\n" + self.detail, id="error-detail", markup=False)
            yield Static("Press c (or click the text) to copy. Any other key closes.", id="error-hint")

    def copy(self) -> None:
        self.app.copy_to_clipboard(self.full_text)
        self.app.notify("Error text copied to the clipboard (OSC 52)", timeout=3)

    def on_key(self, event: events.Key) -> None:
        event.stop()
        event.prevent_default()
        if event.key == "c":
            self.copy()
        else:
            self.dismiss(None)

    def on_click(self, event: events.Click) -> None:
        event.stop()
        self.copy()


class HelpScreen(ModalScreen[None]):
    """Every key, generated from :data:`moe_tui.tui.actions.ACTIONS` with the user's keymap applied."""

    DEFAULT_CSS = """
    HelpScreen { align: center middle; }
    HelpScreen > Vertical { width: 100; max-width: 95%; height: 90%; border: thick $primary; background: $panel; }
    HelpScreen #help-title { text-style: bold; padding: 0 1; }
    HelpScreen DataTable { height: 1fr; }
    """
    BINDINGS = [("escape,q,question_mark,f1", "close", "Close")]

    def compose(self) -> ComposeResult:
        with Vertical():
            yield Static("moe-tui keys  (remap by binding id in config.json \"keymap\"; Esc closes)", id="help-title")
            yield DataTable(id="help-table", cursor_type="row", zebra_stripes=True)

    def on_mount(self) -> None:
        table = self.query_one(DataTable)
        table.add_columns("scope", "keys", "action", "binding id")
        for row in actions.help_rows(self.app.settings.keymap):
            table.add_row(*row)
        table.focus()

    def action_close(self) -> None:
        self.dismiss(None)


class TooSmallScreen(ModalScreen[None]):
    DEFAULT_CSS = """
    TooSmallScreen { align: center middle; background: $background; }
    TooSmallScreen Static { width: auto; text-align: center; }
    """

    def __init__(self, need: tuple[int, int]) -> None:
        super().__init__()
        self.need = need

    def compose(self) -> ComposeResult:
        yield Static("", id="too-small-text")

    def on_mount(self) -> None:
        self.update_size()

    def on_resize(self) -> None:
        self.app.call_later(self.app._check_size)

    def update_size(self) -> None:
        w, h = self.app.size
        self.query_one("#too-small-text", Static).update(
            f"Terminal too small: {w}×{h}.\nmoe-tui needs at least {self.need[0]}×{self.need[1]}.\n(ctrl+q quits)"
        )


class RunPickScreen(ModalScreen[str | None]):
    """Pick one cached run (e.g. the second run of a diff); Esc picks none."""

    DEFAULT_CSS = """
    RunPickScreen { align: center middle; }
    RunPickScreen > Vertical { width: 90%; max-width: 110; height: auto; max-height: 80%;
        border: thick $primary; background: $panel; padding: 0 1; }
    RunPickScreen #pick-title { text-style: bold; }
    RunPickScreen OptionList { height: auto; max-height: 20; }
    """
    BINDINGS = [("escape", "cancel", "Cancel")]

    def __init__(self, runs, title: str) -> None:
        super().__init__()
        self.runs = list(runs)
        self.title_text = title

    def compose(self) -> ComposeResult:
        from textual.widgets import OptionList
        from textual.widgets.option_list import Option

        with Vertical():
            yield Static(self.title_text, id="pick-title", markup=False)
            yield OptionList(*[Option(f"{r.run_id}  {r.model}  {r.corpus}  {r.tokens if r.tokens is not None else '-'} "
                                      f"tokens  {r.created}", id=r.run_id) for r in self.runs], id="pick-list")

    def on_option_list_option_selected(self, event) -> None:
        event.stop()
        self.dismiss(event.option.id)

    def action_cancel(self) -> None:
        self.dismiss(None)
