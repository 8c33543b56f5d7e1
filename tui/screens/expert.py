"""Expert card: one expert at one MoE layer — load share, POS mix against the corpus, the tokens and words it takes
most (by count and by lift), example contexts. Numbers from :mod:`moe_tui.core.inspect.expert_card`, computed in a thread
worker that only posts messages; the card is a line-rendered scrolling pane."""

from __future__ import annotations

import re
from dataclasses import dataclass
from functools import partial

import numpy as np
from rich.style import Style
from textual import on
from textual.app import ComposeResult
from textual.message import Message
from textual.screen import Screen
from textual.widgets import Footer
from textual.worker import get_current_worker

from moe_tui.core.inspect.expert_card import ExpertCard, expert_card
from moe_tui.tui import actions
from moe_tui.tui.runview import run_title, word_ids_for
from moe_tui.tui.widgets.palette import expert_style, pos_style
from moe_tui.tui.widgets.text_panel import ScrollingTextBox, TextBox

TOP_ITEMS = 12
_B = Style(bold=True)
_BU = Style(bold=True, underline=True)
_DIM = Style(dim=True)
_MATCH = Style(bold=True, underline=True)


@dataclass
class CardReady(Message):
    generation: int
    card: ExpertCard | None
    error: str = ""


def _one_line(text: str) -> str:
    return " ".join(text.split())


class ExpertScreen(Screen):
    SCOPE = "expert"
    BINDINGS = actions.bindings("expert")
    AUTO_FOCUS = "#card"

    def __init__(self, run, layer_idx: int, expert: int) -> None:
        super().__init__()
        self.run = run
        self.layer_idx = int(layer_idx)
        self.expert = int(expert)
        self.card: ExpertCard | None = None
        self.generation = 0
        self.moe_layers = [int(x) for x in run.moe_layers]
        self.n_experts = int(run.num_experts)
        self.texts = run.texts

    def compose(self) -> ComposeResult:
        yield TextBox(id="card-title")
        yield ScrollingTextBox(id="card", grow_only=False)
        yield Footer()

    def on_mount(self) -> None:
        self.sub_title = run_title(self.run)
        self.recompute()

    def recompute(self) -> None:
        self.generation += 1
        self._title(computing=True)
        self.workers.cancel_group(self, "card")
        self.call_after_refresh(partial(self._start_job, self.generation))   # after the "counting…" frame

    def _start_job(self, generation: int) -> None:
        if generation == self.generation:
            self.run_worker(partial(self._job, generation, self.layer_idx, self.expert), thread=True,
                            exclusive=True, group="card", exit_on_error=False, description="expert card")

    def _job(self, generation: int, layer_idx: int, expert: int) -> None:
        worker = get_current_worker()
        try:
            card = expert_card(self.run, layer=self.moe_layers[layer_idx], expert=expert,
                               word_ids=word_ids_for(self.run), should_stop=lambda: worker.is_cancelled)
        except Exception as exc:  # noqa: BLE001 - shown in an error dialog
            if not worker.is_cancelled:
                self.post_message(CardReady(generation, None, f"{type(exc).__name__}: {exc}"))
            return
        if card is not None and not worker.is_cancelled:
            self.post_message(CardReady(generation, card))

    @on(CardReady)
    def _ready(self, msg: CardReady) -> None:
        if msg.generation != self.generation:
            return
        if msg.error:
            self.app.show_error("Expert card failed", msg.error)
            return
        self.card = msg.card
        self._title()
        self.query_one("#card", ScrollingTextBox).set_lines(self.card_lines())

    def _title(self, computing: bool = False) -> None:
        layer = self.moe_layers[self.layer_idx]
        line: list = [("expert ", _B), (f" {self.expert} ", expert_style(self.expert, self.n_experts)),
                      (f" at layer {layer}", _B), ("   [ ] expert · < > layer · e export", _DIM)]
        if computing:
            line.append(("   counting…", _DIM))
        self.query_one("#card-title", TextBox).set_lines([line])

    def card_lines(self) -> list[list]:
        c = self.card
        assert c is not None
        u = 1.0 / c.n_experts
        lines: list[list] = [
            [("load", _BU)],
            [(f"  {c.assignments:,} of {c.total_assignments:,} top-{c.top_k} assignments: ", None),
             (f"{c.load_share:.2%}", _B), (f" of the layer's load (uniform {u:.2%}, ×{c.load_share / u:.2f})", None)],
            [(f"  top-1 for {c.top1:,} of {c.n_tokens:,} tokens: ", None), (f"{c.top1_share:.2%}", _B)],
            [],
            [("POS mix against the corpus", _BU), ("   share of its assignments · share of the corpus · lift", _DIM)],
        ]
        for j in range(len(c.pos.ids)):
            tag = c.pos.names[int(c.pos.ids[j])]
            share, corpus, lift = float(c.pos.share[j]), float(c.pos.corpus_share[j]), float(c.pos.lift[j])
            bar = "█" * int(round(share * 30))
            lines.append([(f"  {tag:<6}", pos_style(tag)), (f" {share:6.1%} {corpus:6.1%}  ×{lift:5.2f} ", None),
                          (bar, Style(color=pos_style(tag).bgcolor))])
        for title, st in (("tokens", c.tokens), ("words", c.words)):
            lines += [[], [(f"{title} it takes most", _BU), ("   count · share of the item routed here · lift", _DIM)]]
            for j in range(min(TOP_ITEMS, len(st.ids))):
                name = _one_line(st.names[int(st.ids[j])]) or "␣"
                frac = float(st.count[j]) / float(st.corpus_count[j]) if st.corpus_count[j] else 0.0
                lift = "" if np.isnan(st.lift[j]) else f"×{st.lift[j]:.1f}"
                lines.append([(f"  {name[:24]:<24}", None), (f" {int(st.count[j]):>7,}  {frac:6.1%}  {lift}", None)])
            lines.append([(f"{title} by lift", _BU), (f"   (seen ≥ {c.min_count} times in the run)", _DIM)])
            top = st.by_lift(TOP_ITEMS)
            if not len(top):
                lines.append([("  none seen often enough", _DIM)])
            for j in top.tolist():
                name = _one_line(st.names[int(st.ids[j])]) or "␣"
                lines.append([(f"  {name[:24]:<24}", None),
                              (f" ×{st.lift[j]:6.1f}  {int(st.count[j]):>5} of {int(st.corpus_count[j]):,}", None)])
        lines += [[], [("example contexts", _BU), (" (a seeded sample of its tokens)", _DIM)]]
        for j in range(len(c.examples)):
            s = int(c.example_sentence[j])
            t = self.texts[s]
            a, b = int(c.example_span[j, 0]), int(c.example_span[j, 1])
            left = _one_line(t[:a])
            left = left if len(left) <= 40 else "…" + left[-39:]
            right = _one_line(t[b:])
            right = right if len(right) <= 40 else right[:39] + "…"
            lines.append([(f"  {s + 1:>6}:{int(c.example_token[j]):<4} ", _DIM), (left + " ", None),
                          (_one_line(t[a:b]), _MATCH), (" " + right, None)])
        return lines

    # ---- actions ----------------------------------------------------------------------------------------------
    def action_step_expert(self, step: int) -> None:
        self.expert = (self.expert + step) % self.n_experts
        self.recompute()

    def action_step_layer(self, step: int) -> None:
        self.layer_idx = (self.layer_idx + step) % len(self.moe_layers)
        self.recompute()

    def action_export(self) -> None:
        if self.card is None:
            return
        from moe_tui.core.inspect.expert_card import write_expert_card
        from moe_tui.errors import MoeTuiError

        base = self.app.export_dir()
        run_id = re.sub(r"[^A-Za-z0-9_.-]+", "_", str(getattr(self.run, "run_id", "run")))
        path = base / f"moe-tui-{run_id}-expert-L{self.card.layer}-E{self.card.expert}.csv"
        try:
            base.mkdir(parents=True, exist_ok=True)
            out = write_expert_card(self.card, self.texts, path, spreadsheet_safe=self.app.settings.spreadsheet_safe)
        except (OSError, MoeTuiError) as exc:
            self.app.show_error("Export failed", f"{path}: {exc}")
            return
        self.last_export = out
        self.notify(f"Exported the card to {out}", title="CSV export", markup=False, timeout=6)

    def action_back(self) -> None:
        self.app.back_from(self)
