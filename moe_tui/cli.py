"""The ``moe-tui`` console script.

With no subcommand it opens the TUI; subcommands run the same headless core (for batch jobs).
Nothing heavy is imported here: torch/transformers load only when a model is loaded, textual only
when the TUI opens. Every user error is one line on stderr and a non-zero exit code:
0 ok, 1 unexpected internal error, 2 bad input, 130 interrupted/cancelled.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import sys
import time
from pathlib import Path

# the one definition of the extraction options (standard library only: cheap to import)
from moe_tui.core.extract.options import GenerateOptions, positive_int
from moe_tui.core.extract.options import add_arguments as add_extract_arguments

EXIT_OK, EXIT_INTERNAL, EXIT_USAGE, EXIT_INTERRUPTED = 0, 1, 2, 130

# the paper's six models (moe_tui.core.analysis.paper.PAPER_MODELS; repeated so that --help imports no numpy)
PAPER_MODELS = ("dbrx-base", "Mixtral-8x7B-v0.1", "Phi-3.5-MoE-instruct", "deepseek-moe-16b-base",
                "Qwen1.5-MoE-A2.7B", "OLMoE-1B-7B")


class _Parser(argparse.ArgumentParser):
    """argparse that reports a usage error in one line, naming the help to read (no usage block)."""

    def error(self, message: str):  # pragma: no cover - exercised through the CLI tests
        print(f"moe-tui: error: {message} (see {self.prog} --help)", file=sys.stderr)
        raise SystemExit(EXIT_USAGE)


def build_parser() -> argparse.ArgumentParser:
    p = _Parser(prog="moe-tui", description="Inspect how Mixture-of-Experts models route tokens, by part of speech. "
                "With no command, opens the terminal UI.")
    p.add_argument("--version", action="store_true", help="print the version and exit")
    p.add_argument("--model", action="append", default=[], metavar="ID_OR_PATH",
                   help="(TUI) add a model to the model list; repeatable")
    p.add_argument("--data", metavar="FILE", help="(TUI) preselect a corpus file")
    sub = p.add_subparsers(dest="command", metavar="COMMAND", parser_class=_Parser)

    e = sub.add_parser("extract", help="capture the routing of a model over a POS-tagged corpus into the run cache")
    add_extract_arguments(e)
    e.add_argument("--progress", default="bar", choices=["bar", "json", "none"],
                   help="progress on stderr: a bar, JSON lines (for tools), or nothing")

    g = sub.add_parser("generate", help="generate from prompts with a model (KV cache) and capture the routing of "
                       "every prompt and generated token, POS-tagged, into the run cache")
    add_extract_arguments(g, GenerateOptions)
    g.add_argument("--progress", default="bar", choices=["bar", "json", "none"],
                   help="progress on stderr: a bar, JSON lines (for tools), or nothing")

    o = sub.add_parser("open", help="open the terminal UI on a cached run's routing grid (e.g. ssh node moe-tui open RUN)")
    o.add_argument("run", metavar="RUN", help="run id (or unique prefix) or run directory")
    o.add_argument("--diff", metavar="RUN_B",
                   help="overlay a second run of the same corpus and tokenizer: the grid marks the cells whose "
                        "expert set differs")
    o.add_argument("--cache-dir", metavar="DIR")

    r = sub.add_parser("runs", help="list the cached runs")
    r.add_argument("--cache-dir", metavar="DIR")
    r.add_argument("--json", action="store_true", help="one JSON object per line")

    x = sub.add_parser("export-routes", help="write a run's routes as CSV (or Parquet)")
    x.add_argument("run", metavar="RUN", help="run id (or unique prefix) or run directory")
    x.add_argument("--out", required=True, metavar="FILE.csv")
    x.add_argument("--spreadsheet-safe", action="store_true",
                   help="prefix text cells that start with = + - @ (or tab/CR) with ' so spreadsheets do not run them as "
                        "formulas; this alters the text (off: every cell exactly as stored)")
    x.add_argument("--cache-dir", metavar="DIR")

    rep = sub.add_parser("report", help="the paper's tables (and controls) for one or more runs, as CSV "
                         "(and figures)")
    rep.add_argument("runs", nargs="+", metavar="RUN")
    rep.add_argument("--out", required=True, metavar="DIR")
    rep.add_argument("--probe", action="store_true", help="train the MLP probes, the ablation, the t-SNE")
    rep.add_argument("--controls", action="store_true", help="permutation null, control task, bootstrap, ...")
    rep.add_argument("--information", action="store_true",
                     help="what routing knows that the token does not: conditional probing, per-layer probes, online "
                          "code length (MDL), path structure (conditional, information, layer_probe, mdl, transitions, "
                          "paths .csv; torch probe engine)")
    rep.add_argument("--by-origin", action="store_true",
                     help="(runs made by moe-tui generate) Spec, KL and the controls split into prompt and generated "
                          "tokens; with --probe, probes trained on one origin and tested on the other (*_by_origin "
                          ".csv, with the tagger's accuracy as a caveat column)")
    rep.add_argument("--seed", type=int, default=0)
    rep.add_argument("--kl-reference", default="corpus", choices=["corpus", "uniform"])
    rep.add_argument("--max-iter", type=positive_int, default=500, metavar="N", help="MLP max_iter (default 500)")
    rep.add_argument("--early-stopping", action="store_true",
                     help="MLP early stopping on a validation split (off, as in the paper; sklearn engine only)")
    rep.add_argument("--probe-engine", default="torch", choices=["torch", "sklearn"],
                     help="torch (default): all probes of a split trained at once, on the GPU when there is one; "
                          "sklearn: one MLPClassifier per probe, the paper's exact procedure")
    rep.add_argument("--probe-device", default="auto", metavar="auto|cpu|cuda|cuda:N",
                     help="where the torch engine trains (default auto: CUDA when torch sees a GPU)")
    rep.add_argument("--probe-seeds", type=positive_int, default=1, metavar="N",
                     help="train every probe on N seeds and splits; accuracy is the mean, accuracy_sd the spread")
    rep.add_argument("--ablation-step", type=positive_int, default=1, metavar="N",
                     help="ablate n = 0, N, 2N, ... layers (default 1: every n)")
    rep.add_argument("--tsne-samples", type=positive_int, default=20000, metavar="N",
                     help="t-SNE points: the probes' test tokens, a seeded sample of N when there are more (default 20000)")
    rep.add_argument("--permutations", type=positive_int, default=100, metavar="R",
                     help="permutations for the Spec null (default 100)")
    rep.add_argument("--bootstrap", type=positive_int, default=200, metavar="B",
                     help="bootstrap resamples over sentences (default 200)")
    rep.add_argument("--spreadsheet-safe", action="store_true",
                     help="prefix text cells that start with = + - @ (or tab/CR) with ' so spreadsheets do not run them as "
                          "formulas; this alters the text (off: every cell exactly as stored)")
    rep.add_argument("--paper-model", metavar="NAME", choices=PAPER_MODELS,
                     help="write RUN/paper_vs_measured.csv against this model of the paper (one run; the run needs "
                          "--tagset paper15): " + ", ".join(PAPER_MODELS) + ". Default: inferred from each run's hub id")
    rep.add_argument("--no-paper", action="store_true", help="do not set any run beside the paper")
    rep.add_argument("--figures", action="store_true",
                     help="also draw the paper's figures (PNG and PDF) from the same tables: Spec by layer, KL "
                          "heatmap, and with --probe the confusion matrices, layer ablation and t-SNE")
    rep.add_argument("--cache-dir", metavar="DIR")

    d = sub.add_parser("diff", help="share of (token, layer) whose expert set differs between two runs")
    d.add_argument("run_a", metavar="RUN_A")
    d.add_argument("run_b", metavar="RUN_B")
    d.add_argument("--by", choices=["layer", "pos"], help="a table of the disagreement per MoE layer or per POS")
    d.add_argument("--out", metavar="FILE.csv", help="with --by: write the table as CSV (else it goes to stdout)")
    d.add_argument("--cache-dir", metavar="DIR")

    c = sub.add_parser("concordance", help="every occurrence of a word in a run, in context, with POS and experts")
    c.add_argument("run", metavar="RUN", help="run id (or unique prefix) or run directory")
    c.add_argument("word", metavar="WORD")
    c.add_argument("--layer", type=int, metavar="L", help="decoder-layer index (default: the first MoE layer)")
    c.add_argument("--by", default="form", choices=["form", "token"],
                   help="form: tokens of words with this form, ignoring case (default); token: tokens whose piece "
                        "is WORD (as stored, or without its leading Ġ/▁ marker)")
    c.add_argument("--out", metavar="FILE.csv", help="write every occurrence as CSV (else a summary on stdout)")
    c.add_argument("--spreadsheet-safe", action="store_true",
                   help="prefix text cells that start with = + - @ (or tab/CR) with ' (alters the text)")
    c.add_argument("--cache-dir", metavar="DIR")

    xc = sub.add_parser("expert", help="one expert's card: load, POS mix, tokens and words by count and lift")
    xc.add_argument("run", metavar="RUN", help="run id (or unique prefix) or run directory")
    xc.add_argument("--layer", type=int, required=True, metavar="L", help="decoder-layer index")
    xc.add_argument("--expert", type=int, required=True, metavar="E")
    xc.add_argument("--min-count", type=positive_int, default=10, metavar="N",
                    help="lift only for items seen at least N times in the run (default 10)")
    xc.add_argument("--examples", type=int, default=12, metavar="N", help="example contexts (default 12)")
    xc.add_argument("--seed", type=int, default=0, help="which examples are drawn")
    xc.add_argument("--out", metavar="FILE.csv", help="write the whole card as CSV (else a summary on stdout)")
    xc.add_argument("--spreadsheet-safe", action="store_true",
                    help="prefix text cells that start with = + - @ (or tab/CR) with ' (alters the text)")
    xc.add_argument("--cache-dir", metavar="DIR")

    i = sub.add_parser("inspect", help="a model's MoE facts (layers, experts, k) without loading weights")
    i.add_argument("model", metavar="ID_OR_PATH")
    i.add_argument("--trust-remote-code", action="store_true")
    i.add_argument("--json", action="store_true")

    sub.add_parser("demo", help="open the TUI on the built-in demo model and corpus")

    tg = sub.add_parser("tagger", help="train or evaluate a POS tagger for generated text (moe-tui generate --tagger)")
    tsub = tg.add_subparsers(dest="tagger_command", metavar="ACTION", parser_class=_Parser, required=True)
    tt = tsub.add_parser("train", help="train an averaged-perceptron tagger on gold CoNLL-U (or PTB) files")
    tt.add_argument("--data", nargs="+", required=True, metavar="FILE", help="training files (gold tags)")
    tt.add_argument("--out", required=True, metavar="DIR", help="the tagger folder to write (tagger.json, weights.npz)")
    tt.add_argument("--eval", nargs="*", default=[], metavar="FILE",
                    help="files it is not trained on, to measure its accuracy (the first is the one runs state)")
    tt.add_argument("--tagset", default="upos", choices=["upos", "paper15"])
    tt.add_argument("--pos-column", default="upos", choices=["upos", "xpos"])
    tt.add_argument("--epochs", type=positive_int, default=10, metavar="N")
    tt.add_argument("--seed", type=int, default=0)
    tt.add_argument("--language", metavar="CODE", help="language of the data (recorded)")
    tt.add_argument("--licence", metavar="TEXT", help="licence of the training data (recorded: a tagger trained on "
                    "a treebank is a derived work of it)")
    tt.add_argument("--source", action="append", default=[], metavar="TEXT",
                    help="where the training data comes from (recorded; repeatable)")
    te = tsub.add_parser("eval", help="accuracy of a tagger on a gold CoNLL-U (or PTB) file")
    te.add_argument("--tagger", required=True, metavar="builtin|spacy:MODEL|stanza:LANG|DIR")
    te.add_argument("--data", required=True, metavar="FILE")
    te.add_argument("--tagset", default="upos", choices=["upos", "paper15"])
    te.add_argument("--pos-column", default="upos", choices=["upos", "xpos"])
    te.add_argument("--json", action="store_true", help="the result as one JSON object")
    return p


# --------------------------------------------------------------------------- commands
def _stderr_console():
    from rich.console import Console

    return Console(stderr=True, highlight=False)


def cmd_extract(args, job=None, opts=None) -> int:
    from moe_tui.core.extract.options import from_namespace
    from moe_tui.core.extract.pipeline import extract

    extract = job or extract
    opts = opts or from_namespace(args)
    stop = {"n": 0}

    def on_term(signum, frame):
        stop["n"] += 1
        if stop["n"] > 1:
            raise KeyboardInterrupt

    signal.signal(signal.SIGTERM, on_term)

    if args.progress == "json":
        from moe_tui.core.extract.events import Error

        def progress(ev) -> None:
            sys.stderr.write(ev.to_json() + "\n")
            sys.stderr.flush()

        from moe_tui.errors import MoeTuiError

        try:
            run_dir = extract(opts, progress=progress, should_cancel=lambda: stop["n"] > 0)
        except MoeTuiError as exc:  # report the error as an event too, then let main() print it
            progress(Error(str(exc)))
            raise
    elif args.progress == "none":
        run_dir = extract(opts, should_cancel=lambda: stop["n"] > 0)
    else:
        run_dir = _extract_with_bar(opts, stop, extract)
    print(run_dir)
    return EXIT_OK


def cmd_generate(args) -> int:
    """``moe-tui generate``: the extraction command's progress, signals and errors, with the generation job."""
    from moe_tui.core.extract.generation import generate
    from moe_tui.core.extract.options import from_namespace

    return cmd_extract(args, job=generate, opts=from_namespace(args, GenerateOptions))


def _extract_with_bar(opts, stop, job=None) -> Path:
    from rich.progress import (
        BarColumn,
        MofNCompleteColumn,
        Progress,
        TextColumn,
        TimeElapsedColumn,
        TimeRemainingColumn,
    )

    from moe_tui.core.extract import events
    from moe_tui.core.extract.pipeline import extract

    extract = job or extract
    console = _stderr_console()
    bar = Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(),
                   TextColumn("{task.fields[rate]}"), TimeElapsedColumn(), TimeRemainingColumn(),
                   console=console, transient=False)
    task = bar.add_task("reading corpus", total=None, rate="")

    def progress(ev) -> None:
        if isinstance(ev, events.Stage):
            bar.update(task, description=ev.stage)
        elif isinstance(ev, events.Progress):
            bar.update(task, total=ev.sentences_total, completed=ev.sentences_done,
                       rate=f"{ev.tokens_per_s:.0f} tok/s")
        elif isinstance(ev, events.Notice):
            console.print(f"moe-tui: {ev.message}")

    bar.start()
    try:
        run_dir = extract(opts, progress=progress, should_cancel=lambda: stop["n"] > 0)
    except BaseException:
        # the error is one line: the bar is erased, not left half-drawn above it (nor a blank line)
        bar.live.transient = True
        bar.live.stop()
        raise
    bar.stop()
    return run_dir


def cmd_runs(args) -> int:
    from moe_tui.cache.store import RunStore

    runs = RunStore(args.cache_dir).list_runs()
    for r in runs:
        if args.json:
            print(json.dumps({"run_id": r.run_id, "model": r.model, "corpus": r.corpus, "tokens": r.tokens,
                              "created": r.created, "status": r.status, "path": str(r.path),
                              "logits": r.logits, "provenance": r.provenance}))
        else:
            tokens = r.tokens if r.tokens is not None else "-"
            print(f"{r.run_id}\t{r.model}\t{r.corpus}\t{tokens}\t{r.created}\t{r.status}")
    if not runs and not args.json:
        print("no runs yet (moe-tui extract --model ... --data ...)", file=sys.stderr)
    return EXIT_OK


def _notice(message: str) -> None:
    print(f"moe-tui: {message}", file=sys.stderr, flush=True)


def cmd_open(args) -> int:
    """Open the run first (a bad or damaged run is one line here, before any terminal UI), then the TUI on it."""
    from moe_tui.cache.store import RunStore

    store = RunStore(args.cache_dir)
    run = store.open(args.run, on_notice=_notice)
    diff = None
    if args.diff:
        from moe_tui.core.inspect.run_pair import check_pair

        diff = store.open(args.diff, on_notice=_notice)
        check_pair(run, diff)
    from moe_tui.tui.app import run_app

    return run_app(open_run=run, cache_dir=args.cache_dir, diff_run=diff) or EXIT_OK


def cmd_export_routes(args) -> int:
    from moe_tui.cache.store import RunStore
    from moe_tui.core.inspect.export import export_routes

    run = RunStore(args.cache_dir).open(args.run, on_notice=_notice)
    print(export_routes(run, args.out, spreadsheet_safe=args.spreadsheet_safe))
    return EXIT_OK


def cmd_report(args) -> int:
    from moe_tui.cache.store import RunStore
    from moe_tui.errors import ReportError

    if args.early_stopping and args.probe_engine != "sklearn":
        raise ReportError("--early-stopping needs --probe-engine sklearn (the torch engine trains without a "
                          "validation split)")
    if (args.probe or args.controls or args.information) and (args.probe_engine == "torch" or args.information):
        # a device that cannot work: fail now
        from moe_tui.core.analysis.probe_engine import resolve_device

        try:
            resolve_device(args.probe_device)
        except ValueError as exc:
            raise ReportError(str(exc)) from None
    store = RunStore(args.cache_dir)
    runs = [store.open(ref, on_notice=_notice) for ref in args.runs]  # a bad or corrupt run fails here, before any work
    out = Path(args.out).expanduser()
    try:  # an unwritable --out fails now, not after minutes of probes
        out.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise ReportError(f"cannot create output folder {out}: {exc.strerror or exc}") from None
    from moe_tui.core.analysis.options import ReportOptions
    from moe_tui.core.analysis.view import RunView
    from moe_tui.core.analysis.writer import write_report

    if args.paper_model and args.no_paper:
        raise ReportError("--paper-model and --no-paper contradict each other; give one")
    paper_model = None if args.no_paper else (args.paper_model or "auto")
    views = [RunView.from_run(run) for run in runs]
    console = _stderr_console()
    last = {"stage": None}

    def progress(stage: str, done: int, total: int) -> None:
        if stage != last["stage"]:  # one line per stage, not per step
            last["stage"] = stage
            console.print(f"moe-tui: {stage}", highlight=False)

    options = ReportOptions(seed=args.seed, kl_reference=args.kl_reference, max_iter=args.max_iter,
                            early_stopping=args.early_stopping, ablation_step=args.ablation_step,
                            tsne_samples=args.tsne_samples, n_permutations=args.permutations,
                            n_boot=args.bootstrap, probe_engine=args.probe_engine, probe_device=args.probe_device,
                            probe_seeds=args.probe_seeds)
    result = write_report(views, out, probe=args.probe, controls=args.controls, seed=args.seed,
                          kl_reference=args.kl_reference, progress=progress, options=options,
                          spreadsheet_safe=args.spreadsheet_safe, paper_model=paper_model,
                          figures=args.figures, information=args.information, by_origin=args.by_origin)
    for notice in result.get("notices", []):  # one line each, never wrapped
        print(f"moe-tui: {notice}", file=sys.stderr)
    print_report(result)
    print(out.resolve())
    return EXIT_OK


# tables small enough to read in a terminal; every table is in the CSV files
_PRINTED = ("summary", "spec_pos", "kl_summary", "probe", "controls", "conditional", "layer_probe", "mdl", "paths",
            "summary_by_origin", "kl_summary_by_origin", "probe_by_origin")


def print_report(result: dict) -> None:
    """Plain-text tables of the report on stdout (numbers rounded for reading; the CSVs are unrounded)."""
    from rich.console import Console
    from rich.table import Table as RichTable

    console = Console(highlight=False, soft_wrap=False, width=max(120, Console().width))

    def show(title: str, table: dict) -> None:
        t = RichTable(title=title, title_justify="left")
        for c in table["columns"]:
            t.add_column(str(c))
        for row in table["rows"]:
            t.add_row(*(f"{v:.3f}" if isinstance(v, float) else ("" if v is None else str(v)) for v in row))
        console.print(t)

    for run_id, tables in result["runs"].items():
        for stem in _PRINTED:
            if stem in tables:
                show(f"{run_id} · {stem}", tables[stem])
    for stem, table in result.get("compare", {}).items():
        show(stem, table)


def cmd_diff(args) -> int:
    from moe_tui.cache.store import RunStore
    from moe_tui.core.inspect.diff import diff_runs, diff_table
    from moe_tui.errors import ReportError

    if args.out and not args.by:
        raise ReportError("--out needs --by layer or --by pos")
    store = RunStore(args.cache_dir)
    run_a = store.open(args.run_a, on_notice=_notice)
    run_b = store.open(args.run_b, on_notice=_notice)
    if args.by:
        table = diff_table(run_a, run_b, args.by)
        if args.out:
            from moe_tui.core.analysis.writer import write_csv

            print(write_csv(args.out, table))
        else:
            from moe_tui.fileio import tsv_text

            sys.stdout.write(tsv_text(table["columns"], table["rows"]))
        return EXIT_OK
    res = diff_runs(run_a, run_b)
    print(f"tokens\t{res['tokens']}")
    print(f"token_layers\t{res['token_layers']}")
    print(f"differing_sets\t{res['differing_sets']}")
    print(f"share_differing\t{res['share_differing']!r}")
    print(f"share_top1_differing\t{res['share_top1_differing']!r}")
    return EXIT_OK


def _kwic(left: str, match: str, right: str, width: int = 36) -> str:
    left = " ".join(left.split())
    right = " ".join(right.split())
    left = ("…" + left[-(width - 1):]) if len(left) > width else left
    right = (right[:width - 1] + "…") if len(right) > width else right
    return f"{left:>{width}} [{match}] {right}"


def cmd_concordance(args) -> int:
    from moe_tui.cache.store import RunStore
    from moe_tui.core.inspect.concordance import concordance, write_concordance

    run = RunStore(args.cache_dir).open(args.run, on_notice=_notice)
    conc = concordance(run, args.word, layer=args.layer, by=args.by)
    if args.out:
        print(write_concordance(conc, run.texts, args.out, spreadsheet_safe=args.spreadsheet_safe))
        _notice(f"{len(conc)} occurrences of {args.word!r} ({args.by}) at layer {conc.layer}")
        return EXIT_OK
    print(f"{len(conc)} occurrences of {args.word!r} (by {args.by}) at layer {conc.layer}")
    for g in conc.pos_groups():
        top = "  ".join(f"{e}:{s:.0%}" for e, s in g.top_experts(6))
        print(f"{g.tag}\t{g.count}\t{top}")
    from itertools import islice

    for row in islice(conc.rows(run.texts), 20):
        print(f"{row[0]}:{row[1]}\t{_kwic(row[2], row[3], row[4])}\t{row[5]}\t{row[7]}")
    if len(conc) > 20:
        print(f"… {len(conc) - 20} more (--out FILE.csv writes them all)")
    return EXIT_OK


def cmd_expert(args) -> int:
    from moe_tui.cache.store import RunStore
    from moe_tui.core.inspect.expert_card import expert_card, write_expert_card

    if args.examples < 0:
        from moe_tui.errors import ReportError

        raise ReportError("--examples must be >= 0")
    run = RunStore(args.cache_dir).open(args.run, on_notice=_notice)
    card = expert_card(run, layer=args.layer, expert=args.expert, min_count=args.min_count,
                       examples=args.examples, seed=args.seed)
    if args.out:
        print(write_expert_card(card, run.texts, args.out, spreadsheet_safe=args.spreadsheet_safe))
        return EXIT_OK
    print(f"expert {card.expert} at layer {card.layer}: {card.assignments} of {card.total_assignments} "
          f"assignments, load share {card.load_share:.4f} (uniform {1 / card.n_experts:.4f}), "
          f"top-1 share {card.top1_share:.4f}")
    print("POS\tcount\tshare\tcorpus_share\tlift")
    for j in range(len(card.pos.ids)):
        print(f"{card.pos.names[int(card.pos.ids[j])]}\t{card.pos.count[j]}\t{card.pos.share[j]:.4f}\t"
              f"{card.pos.corpus_share[j]:.4f}\t{card.pos.lift[j]:.2f}")
    for title, st in (("tokens", card.tokens), ("words", card.words)):
        print(f"{title} by count: " + "  ".join(f"{st.names[int(st.ids[j])]!r}:{st.count[j]}"
                                                  for j in range(min(15, len(st.ids)))))
        print(f"{title} by lift (seen >= {card.min_count}x): " + "  ".join(
            f"{st.names[int(st.ids[j])]!r}:{st.lift[j]:.1f}" for j in st.by_lift(15)))
    texts = run.texts
    for j in range(len(card.examples)):
        t = texts[int(card.example_sentence[j])]
        a, b = (int(x) for x in card.example_span[j])
        print(f"{int(card.example_sentence[j])}:{int(card.example_token[j])}\t{_kwic(t[:a], t[a:b], t[b:])}")
    return EXIT_OK


def cmd_inspect(args) -> int:
    from dataclasses import asdict

    from moe_tui.core.extract.models import inspect_model

    facts = asdict(inspect_model(args.model, trust_remote_code=args.trust_remote_code))
    if args.json:
        print(json.dumps(facts, indent=2))
    else:
        for k, v in facts.items():
            print(f"{k}\t{v}")
    return EXIT_OK


def cmd_tagger(args) -> int:
    from moe_tui.core.tagger import evaluate, load_tagger, train_files

    if args.tagger_command == "train":
        meta = train_files(args.data, args.out, tagset=args.tagset, pos_column=args.pos_column, eval_paths=args.eval,
                           epochs=args.epochs, seed=args.seed, licence=args.licence, sources=args.source,
                           language=args.language, progress=_notice)
        acc = meta.get("accuracy")
        if acc:
            _notice(f"accuracy on {acc['data']}: {acc['accuracy']:.4f} of {acc['words']} words")
        print(Path(args.out).expanduser().resolve())
        return EXIT_OK
    tagger = load_tagger(args.tagger)
    res = evaluate(tagger, args.data, tagset=args.tagset, pos_column=args.pos_column)
    if args.json:
        print(json.dumps({"tagger": tagger.info.get("name"), **res}))
    else:
        print(f"tagger\t{tagger.info.get('name')}")
        for key in ("data", "sentences", "words", "accuracy", "accuracy_raw_text"):
            print(f"{key}\t{res[key]!r}" if isinstance(res[key], float) else f"{key}\t{res[key]}")
    return EXIT_OK


def _first_time() -> bool:
    """No runs cached yet and nothing asked for: `moe-tui` then opens on the demo."""
    from moe_tui.cache.store import RunStore
    from moe_tui.core.demo import demo_model_path

    return demo_model_path().is_dir() and not RunStore().list_runs()


def open_tui(models: list[str] | None = None, data: str | None = None, demo: bool = False) -> int:
    from moe_tui.tui.app import run_app

    if not demo and not models and not data and _first_time():
        demo = True

    return run_app(models=models or None, data=data, demo=demo) or EXIT_OK


COMMANDS = {
    "extract": cmd_extract,
    "generate": cmd_generate,
    "open": cmd_open,
    "runs": cmd_runs,
    "export-routes": cmd_export_routes,
    "report": cmd_report,
    "diff": cmd_diff,
    "concordance": cmd_concordance,
    "expert": cmd_expert,
    "inspect": cmd_inspect,
    "tagger": cmd_tagger,
}


def main(argv: list[str] | None = None) -> int:
    t0 = time.perf_counter()
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")  # our own progress goes to stderr
    os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.version:
        from moe_tui.cache.layout import tool_version

        print(f"moe-tui {tool_version()}")
        return EXIT_OK
    from moe_tui.errors import MoeTuiError

    try:
        if args.command is None:
            return open_tui(args.model, args.data)
        if args.command == "demo":
            return open_tui(demo=True)
        return COMMANDS[args.command](args)
    except MoeTuiError as exc:
        print(f"moe-tui: error: {exc}", file=sys.stderr)
        return exc.exit_code
    except KeyboardInterrupt:
        print("moe-tui: interrupted; finished batches are kept, run the same command to resume", file=sys.stderr)
        return EXIT_INTERRUPTED
    except BrokenPipeError:
        return EXIT_OK
    except Exception as exc:  # an internal error still gets one line (MOE_TUI_DEBUG=1 for the traceback)
        if os.environ.get("MOE_TUI_DEBUG"):
            raise
        msg = " ".join(str(exc).split()) or exc.__class__.__name__
        print(f"moe-tui: internal error: {exc.__class__.__name__}: {msg} (set MOE_TUI_DEBUG=1 for details)",
              file=sys.stderr)
        return EXIT_INTERNAL
    finally:
        if os.environ.get("MOE_TUI_TIMING"):
            print(f"moe-tui: {time.perf_counter() - t0:.3f}s", file=sys.stderr)


if __name__ == "__main__":  # python -m moe_tui.cli
    sys.exit(main())
