"""Word view: a concordance of one word (or tokenizer piece) in the run, at one MoE layer.

Every occurrence as keyword in context with its POS and experts (a virtual, line-rendered list), the occurrences
grouped by POS with each group's expert distribution, sortable; Enter opens the occurrence in the routing grid.
The numbers come from :mod:`moe_tui.core.inspect.concordance`, computed in a thread worker that only posts messages.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from functools import partial

import numpy as np
from rich.segment import Segment
from rich.style import Style
from textual import on
from textual.app import ComposeResult
from textual.containers import Vertical
from textual.message import Message
from textual.screen import Screen
from textual.strip import Strip
from textual.widgets import Footer, Input
from textual.worker import get_current_worker

from moe_tui.core.inspect.concordance import SORT_KEYS, Concordance, concordance
from moe_tui.tui import actions
from moe_tui.tui.runview import run_title, word_ids_for
from moe_tui.tui.widgets.palette import expert_style, pos_style
from moe_tui.tui.widgets.row_list import RowList
from moe_tui.tui.widgets.text_panel import TextBox

GROUP_LINES = 6
_B = Style(bold=True)
_DIM = Style(dim=True)
_MATCH = Style(bold=True, underline=True)


@dataclass
class ConcordanceReady(Message):
    generation: int
    conc: Concordance | None
    orders: dict[str, np.ndarray]      # sort key -> display order (the context orders follow in OrdersReady)
    error: str = ""


@dataclass
class OrdersReady(Message):
    generation: int
    orders: dict[str, np.ndarray]
    error: str = ""

FAST_SORTS = ("sentence", "pos", "expert")


def _clip_left(text: str, width: int) -> str:
    text = " ".join(text.split())
    if width <= 0:
        return ""
    return text if len(text) <= width else "…" + text[len(text) - width + 1:]


def _clip_right(text: str, width: int) -> str:
    text = " ".join(text.split())
    if width <= 0:
        return ""
    return text if len(text) <= width else text[: width - 1] + "…"


class WordScreen(Screen):
    """The concordance of ``query`` in ``run`` at MoE-layer position ``layer_idx`` (Enter opens the occurrence in
    the run's grid below on the stack, else in a new one)."""

    SCOPE = "word"
    BINDINGS = actions.bindings("word")
    AUTO_FOCUS = "#word-list"

    def __init__(self, run, query: str = "", *, by: str = "form", layer_idx: int = 0) -> None:
        super().__init__()
        self.run = run
        self.query_text = query
        self.by = by
        self.layer_idx = int(layer_idx)
        self.sort_key = "sentence"
        self.conc: Concordance | None = None
        self.order: np.ndarray | None = None   # display position -> occurrence
        self.orders: dict[str, np.ndarray] = {}
        self.generation = 0
        self.computing = False
        self.texts = run.texts
        self.tags = tuple(run.tags)
        self.n_experts = int(run.num_experts)
        self.moe_layers = [int(x) for x in run.moe_layers]
        self._sizing = [[("x", None)]] * (GROUP_LINES + 1)

    def compose(self) -> ComposeResult:
        with Vertical(id="word-main"):
            yield Input(value=self.query_text, placeholder="a word (Enter looks it up)", id="word-input")
            yield TextBox(id="word-title")
            yield TextBox(id="word-groups")
            yield RowList(id="word-list")
        yield Footer()

    def on_mount(self) -> None:
        self.sub_title = run_title(self.run)
        self._list = self.query_one("#word-list", RowList)
        self._groups = self.query_one("#word-groups", TextBox)
        self._titlebox = self.query_one("#word-title", TextBox)
        self._groups.set_lines([], sizing=self._sizing)
        if self.query_text:
            self.recompute()
            self._list.focus()
        else:
            self._show_title()
            self.query_one("#word-input", Input).focus()

    # ---- computing --------------------------------------------------------------------------------------------
    def recompute(self) -> None:
        self.generation += 1
        self.computing = True
        self._show_title()
        self._list.set_rows(0, None, "looking it up…")
        self.orders = {}
        self.workers.cancel_group(self, "concordance")
        # the worker starts once the "looking it up…" frame is drawn: it would otherwise share the interpreter
        # with that frame
        self.call_after_refresh(partial(self._start_job, self.generation))

    def _start_job(self, generation: int) -> None:
        if generation != self.generation:
            return
        self.run_worker(partial(self._job, generation, self.query_text, self.by, self.layer_idx),
                        thread=True, exclusive=True, group="concordance", exit_on_error=False,
                        description="concordance")

    def _job(self, generation: int, query: str, by: str, layer_idx: int) -> None:
        """Look the word up, post it with the orders that cost nothing, then the context orders (which decode every
        occurrence's sentence): pressing o later only swaps an order."""
        worker = get_current_worker()
        try:
            conc = concordance(self.run, query, layer=self.moe_layers[layer_idx], by=by,
                               word_ids=word_ids_for(self.run) if by == "form" else None)
            if worker.is_cancelled:
                return
            orders = {k: conc.sort_order(k) for k in FAST_SORTS}
        except Exception as exc:  # noqa: BLE001 - shown in an error dialog
            if not worker.is_cancelled:
                self.post_message(ConcordanceReady(generation, None, {}, f"{type(exc).__name__}: {exc}"))
            return
        if worker.is_cancelled:
            return
        self.post_message(ConcordanceReady(generation, conc, orders))
        for k in SORT_KEYS:
            if k in orders:
                continue
            try:
                order = conc.sort_order(k, self.texts)
            except Exception as exc:  # noqa: BLE001 - the other orders stay usable
                self.post_message(OrdersReady(generation, {}, f"sorting by {k} failed: {type(exc).__name__}: {exc}"))
                return
            if worker.is_cancelled:
                return
            self.post_message(OrdersReady(generation, {k: order}))

    @on(ConcordanceReady)
    def _ready(self, msg: ConcordanceReady) -> None:
        if msg.generation != self.generation:
            return
        self.computing = False
        if msg.error:
            self.app.show_error("Word view failed", msg.error)
            self._list.set_rows(0, None, "failed")
            return
        self.conc = msg.conc
        self.orders = dict(msg.orders)
        self.order = self.orders.get(self.sort_key, self.orders.get("sentence"))
        self._show_title()
        self._show_groups()
        n = len(self.conc) if self.conc is not None else 0
        status = "" if n else f"no occurrence of {self.query_text!r} ({'word form' if self.by == 'form' else 'token'})"
        self._list.set_rows(n, self._row, status)

    @on(OrdersReady)
    def _orders(self, msg: OrdersReady) -> None:
        if msg.generation != self.generation or self.conc is None:
            return
        if msg.error:
            self.app.show_error("Sort failed", msg.error)
        self.orders.update(msg.orders)
        if self.sort_key in msg.orders:
            self._apply_sort()

    def _apply_sort(self) -> None:
        self.order = self.orders[self.sort_key]
        self._show_title()
        assert self.conc is not None
        self._list.set_rows(len(self.conc), self._row, self._list.status)

    # ---- drawing ----------------------------------------------------------------------------------------------
    def _show_title(self) -> None:
        c = self.conc
        layer = self.moe_layers[self.layer_idx]
        what = f"{'word' if self.by == 'form' else 'token'} {self.query_text!r}" if self.query_text else "no word yet"
        sorting = self.conc is not None and self.sort_key not in self.orders
        line: list = [(what, _B), (f" · layer {layer} ([ ])", None), (f" · by {self.by} (b)", None),
                      (f" · {'sorting' if sorting else 'sorted'} by {self.sort_key}{'…' if sorting else ''} (o)", None)]
        if self.computing:
            line.append(("  looking it up…", _DIM))
        elif c is not None:
            n_sent = len(np.unique(c.sentence)) if len(c) else 0
            line.append((f"  {len(c):,} occurrences in {n_sent:,} sentences", _B))
        self._titlebox.set_lines([line])

    def _show_groups(self) -> None:
        c = self.conc
        if c is None:
            self._groups.set_lines([], sizing=self._sizing)
            return
        groups = c.pos_groups()
        n = max(1, len(c))
        w = len(str(self.n_experts - 1))
        lines: list = [[("POS        n  share   experts at this layer (share of the group's assignments)", _DIM)]]
        for g in groups[:GROUP_LINES]:
            line: list = [(f"{g.tag:<6}", pos_style(g.tag)), (f" {g.count:>6} {g.count / n:6.1%}  ", None)]
            for e, share in g.top_experts(6):
                line += [(f"{e:>{w}}", expert_style(e, self.n_experts)), (f" {share:4.0%}  ", None)]
            lines.append(line)
        if len(groups) > GROUP_LINES:
            rest = sum(g.count for g in groups[GROUP_LINES:])
            lines[-1] = lines[-1] + [(f"  (+{len(groups) - GROUP_LINES} more POS, {rest} occurrences)", _DIM)]
        self._groups.set_lines(lines, sizing=self._sizing)

    def _row(self, pos: int, width: int) -> Strip:
        c, order = self.conc, self.order
        assert c is not None and order is not None
        i = int(order[pos])
        s, t = int(c.sentence[i]), int(c.token[i])
        text = self.texts[s]
        a, b = int(c.span[i, 0]), int(c.span[i, 1])
        tag = self.tags[int(c.pos[i])]
        ids = [int(e) for e in c.experts[i]]
        d = len(str(self.n_experts - 1))
        head = f"{s + 1:>7}:{t:<4}"
        segs = [Segment(head, _DIM), Segment(f"{tag:<6}", pos_style(tag)), Segment(" ")]
        used = len(head) + 7
        for e in ids:
            if 0 <= e < self.n_experts:
                segs.append(Segment(f"{e:>{d}}", expert_style(e, self.n_experts)))
            else:   # a rank this layer does not use (the run's unused-rank sentinel)
                segs.append(Segment(f"{'·':>{d}}", _DIM))
            segs.append(Segment(" "))
            used += d + 1
        match = " ".join(text[a:b].split())
        room = max(0, width - used - 1)
        left_w = max(0, (room - len(match)) // 2 - 1)
        right_w = max(0, room - left_w - len(match) - 2)
        segs += [Segment(" " + _clip_left(text[:a], left_w).rjust(left_w) + " "), Segment(match, _MATCH),
                 Segment(" " + _clip_right(text[b:], right_w))]
        return Strip(segs)

    # ---- actions ----------------------------------------------------------------------------------------------
    @on(Input.Submitted, "#word-input")
    def _typed(self, event: Input.Submitted) -> None:
        q = event.value.strip()
        if q:
            self.query_text = q
            self.recompute()
        self._list.focus()

    def action_type_word(self) -> None:
        self.query_one("#word-input", Input).focus()

    def action_sort(self) -> None:
        self.sort_key = SORT_KEYS[(SORT_KEYS.index(self.sort_key) + 1) % len(SORT_KEYS)]
        if self.conc is None or self.sort_key not in self.orders:
            self._show_title()   # "sorting…": the worker's order is applied when it comes
            return
        self._apply_sort()

    def action_layer(self, step: int) -> None:
        self.layer_idx = (self.layer_idx + step) % len(self.moe_layers)
        if self.query_text:
            self.recompute()
        else:
            self._show_title()

    def action_toggle_by(self) -> None:
        self.by = "token" if self.by == "form" else "form"
        if self.query_text:
            self.recompute()
        else:
            self._show_title()

    def current(self) -> tuple[int, int] | None:
        """(sentence, token in sentence) of the occurrence under the cursor."""
        if self.conc is None or self.order is None or not len(self.conc):
            return None
        i = int(self.order[self._list.cursor])
        return int(self.conc.sentence[i]), int(self.conc.token[i])

    def action_jump(self) -> None:
        if self.query_one("#word-input", Input).has_focus:
            return
        cur = self.current()
        if cur is None:
            return
        from moe_tui.core.inspect.explore import JumpTarget

        s, t = cur
        self.app.show_in_grid(self.run, JumpTarget(s, self.layer_idx, t, None))

    def action_expert_card(self) -> None:
        if self.conc is None or self.order is None or not len(self.conc):
            return
        i = int(self.order[self._list.cursor])
        self.app.show_expert(self.run, self.layer_idx, int(self.conc.experts[i, 0]))

    def action_export(self) -> None:
        if self.conc is None:
            return
        from moe_tui.core.inspect.concordance import write_concordance
        from moe_tui.errors import MoeTuiError

        base = self.app.export_dir()
        safe = re.sub(r"[^A-Za-z0-9_.-]+", "_", self.query_text)[:40] or "word"
        run_id = re.sub(r"[^A-Za-z0-9_.-]+", "_", str(getattr(self.run, "run_id", "run")))
        path = base / f"moe-tui-{run_id}-concordance-{safe}-{self.by}-L{self.conc.layer}.csv"
        try:
            base.mkdir(parents=True, exist_ok=True)
            out = write_concordance(self.conc.take(self.order), self.texts, path,
                                    spreadsheet_safe=self.app.settings.spreadsheet_safe)
        except (OSError, MoeTuiError) as exc:
            self.app.show_error("Export failed", f"{path}: {exc}")
            return
        self.last_export = out
        self.notify(f"Exported {len(self.conc)} occurrences to {out}", title="CSV export", markup=False, timeout=6)

    def action_back(self) -> None:
        inp = self.query_one("#word-input", Input)
        if inp.has_focus and self.conc is not None:
            self._list.focus()
            return
        self.app.back_from(self)
