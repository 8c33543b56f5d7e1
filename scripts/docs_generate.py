"""Regenerate the worked example of docs/generate.md from real runs of the demo model.

    .venv/bin/python scripts/docs_generate.py [--cache-dir DIR]

Runs the commands the page shows (``moe-tui generate`` on the demo model with prompts cut from the demo corpus,
then ``moe-tui report --by-origin --probe``), copies the files the page quotes into ``docs/generate-example/``
(the by-origin CSVs, the generation and tagging fields of the run's manifest) and rewrites the page's example
section from those files: no number on the page is typed by hand.
"""

from __future__ import annotations

import argparse
import csv
import json
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
PAGE = REPO / "docs" / "generate.md"
FILES = REPO / "docs" / "generate-example"
BEGIN, END = "<!-- example:begin (scripts/docs_generate.py) -->", "<!-- example:end -->"
TAGGER_BEGIN, TAGGER_END = "<!-- tagger:begin (scripts/docs_generate.py) -->", "<!-- tagger:end -->"
GENERATE = ["generate", "--model", "core/demo/model", "--prompts", "core/demo/demo.conllu", "--max-prompts", "400",
            "--prompt-words", "5", "--max-new-tokens", "24", "--verify"]
REPORT_FLAGS = ["--by-origin", "--probe", "--tsne-samples", "1000", "--no-paper"]
COPIED = ("summary_by_origin", "spec_pos_by_origin", "kl_summary_by_origin", "probe_by_origin")


def _cli(args: list[str], cache: str) -> str:
    out = subprocess.run([sys.executable, "-m", "moe_tui.cli", *args, "--cache-dir", cache], cwd=REPO, check=True,
                         capture_output=True, text=True)
    return out.stdout.strip().splitlines()[-1]


def _read(stem: str) -> list[dict]:
    with open(FILES / f"{stem}.csv", newline="") as fh:
        return list(csv.DictReader(fh))


def _f(x: str, nd: int = 1) -> str:
    return "–" if x in ("", None) else f"{float(x):.{nd}f}"


def _pct(x: float, nd: int = 1) -> str:
    return f"{100 * x:.{nd}f} %"


def render() -> str:
    m = json.loads((FILES / "manifest_excerpt.json").read_text())
    gen, tagging, ver = m["generation"], m["tagging"], m["verification"]
    acc, on_prompts = tagging["accuracy"], tagging["accuracy_on_prompts"]
    lines = [BEGIN, ""]
    lines += [f"The run holds {gen['prompts']} prompts: {gen['prompt_tokens']} prompt tokens and "
              f"{gen['generated_tokens']} generated tokens ({gen['finished']['eos']} continuations ended with the "
              f"end-of-sequence token, {gen['finished']['length']} reached 24 tokens). Three of them "
              "(`manifest.json`, `generation.outputs`; the prompt is the first five words of a demo sentence):", ""]
    lines += ["| prompt id | generated text |", "|---|---|"]
    lines += [f"| {o['id']} | `{o['generated_text']}` |" for o in gen["outputs"][:3]]
    lines += ["", f"The teacher-forced check (`--verify`) found {ver['equal']} of {ver['token_layers']} (token, layer) "
              f"expert sets equal ({_pct(ver['share_equal'], 2)})"
              + ("." if not ver["differing"] else f"; the largest margin of a difference: {ver['max_margin']:.3g}."),
              "",
              f"Tags: the built-in tagger, {_pct(acc['accuracy'])} accurate on {acc['data']} "
              f"({acc['words']} words it was not trained on); on the gold words of these prompts (the demo grammar's "
              f"own tags, recorded as `tagging.accuracy_on_prompts`) it is {_pct(on_prompts['accuracy'])} accurate "
              f"({on_prompts['words']} words). Every by-origin table repeats the first figure as its caveat column.",
              "", "`summary_by_origin.csv` (global Spec, %; U = 100·k/N):", "",
              "| origin | tokens | Spec | U | Spec − U | tagger accuracy |", "|---|---|---|---|---|---|"]
    lines += [f"| {r['origin']} | {r['tokens']} | {_f(r['spec'])} | {_f(r['uniform'])} | {_f(r['delta'])} | "
              f"{_f(r['tagger_accuracy'], 3)} |" for r in _read("summary_by_origin")]
    lines += ["", "`spec_pos_by_origin.csv`, mean Spec over the layers for the most frequent POS:", "",
              "| POS | prompt | generated |", "|---|---|---|"]
    sp = _read("spec_pos_by_origin")
    by = {(r["origin"], r["pos"]): r for r in sp}
    frequent = _frequent_pos()
    for pos in [p for p in ("NOUN", "VERB", "DET", "ADJ", "ADV", "PRON", "ADP", "PUNCT") if p in frequent]:
        lines.append(f"| {pos} | {_f(by[('prompt', pos)]['mean_spec'])} | {_f(by[('generated', pos)]['mean_spec'])} |")
    lines += ["", "`kl_summary_by_origin.csv` (KL of each expert's POS distribution against its origin's, nats):", "",
              "| origin | μMin | μMax | μMean |", "|---|---|---|---|"]
    lines += [f"| {r['origin']} | {_f(r['mu_min'], 3)} | {_f(r['mu_max'], 3)} | {_f(r['mu_mean'], 3)} |"
              for r in _read("kl_summary_by_origin")]
    lines += ["", "`probe_by_origin.csv` (accuracy of POS predicted from the routes; `baseline`: most frequent POS of "
              "the word form):", "", "| trained on | tested on | top_k | top_1 | baseline | test tokens |",
              "|---|---|---|---|---|---|"]
    pr = _read("probe_by_origin")
    pairs = list(dict.fromkeys((r["train_origin"], r["test_origin"]) for r in pr))
    for a, b in pairs:
        v = {r["variant"]: r for r in pr if (r["train_origin"], r["test_origin"]) == (a, b)}
        note = " (its own 2/3–1/3 split)" if a == b else ""
        lines.append(f"| {a}{note} | {b} | {_f(v['top_k']['accuracy'], 3)} | {_f(v['top_1']['accuracy'], 3)} | "
                     f"{_f(v['baseline']['accuracy'], 3)} | {v['top_k']['test_tokens']} |")
    lines += ["", END]
    return "\n".join(lines)


def render_tagger() -> str:
    """The built-in tagger's training data and held-out accuracy, from its tagger.json."""
    meta = json.loads((REPO / "core" / "tagger" / "builtin" / "tagger.json").read_text())
    acc = meta["accuracy"]
    trained = " and ".join(f"{t['data']} ({t['words']:,} words)" for t in meta["training"])
    return "\n".join([
        TAGGER_BEGIN, "",
        f"Trained on {trained}; measured on {acc['data']}, which it never saw: **{_pct(acc['accuracy'])}** of its "
        f"{acc['words']:,} gold words tagged right, and {_pct(acc['accuracy_raw_text'])} from the raw sentence "
        "text, splitting included (a word counts when the splitter finds it with its gold span and the tag is "
        "right): the second figure is the one that applies to generated text (`core/tagger/builtin/tagger.json`, "
        "`accuracy`). Every run it tags records both.", "", TAGGER_END])


def _frequent_pos() -> set[str]:
    """The POS with at least 50 analysed tokens in each origin (spec_layer_by_origin's token counts, kept in the
    manifest excerpt)."""
    tokens = json.loads((FILES / "manifest_excerpt.json").read_text())["pos_tokens"]
    return {p for p in tokens["prompt"] if min(tokens["prompt"][p], tokens["generated"].get(p, 0)) >= 50}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--cache-dir", help="run cache to use (default: a temporary one)")
    ap.add_argument("--render-only", action="store_true", help="rewrite the page from docs/generate-example only")
    args = ap.parse_args(argv)
    if not args.render_only:
        tmp = tempfile.mkdtemp(prefix="moe_tui_docs_")
        try:
            cache = args.cache_dir or str(Path(tmp) / "cache")
            run_dir = Path(_cli(GENERATE, cache))
            out = Path(tmp) / "report"
            _cli(["report", str(run_dir), "--out", str(out), *REPORT_FLAGS], cache)
            FILES.mkdir(parents=True, exist_ok=True)
            for stem in COPIED:
                shutil.copyfile(out / run_dir.name / f"{stem}.csv", FILES / f"{stem}.csv")
            manifest = json.loads((run_dir / "manifest.json").read_text())
            with open(out / run_dir.name / "spec_layer_by_origin.csv", newline="") as fh:
                spec_layer = list(csv.DictReader(fh))
            first_layer = spec_layer[0]["layer"]
            pos_tokens = {o: {r["pos"]: int(r["tokens"]) for r in spec_layer
                              if r["origin"] == o and r["layer"] == first_layer} for o in ("prompt", "generated")}
            excerpt = {"run_id": run_dir.name, "commands": {"generate": GENERATE, "report": REPORT_FLAGS},
                       "generation": {**manifest["generation"], "outputs": manifest["generation"]["outputs"][:10]},
                       "tagging": manifest["tagging"], "verification": {k: v for k, v in manifest["verification"].items()
                                                                        if k != "differences"},
                       "pos_tokens": pos_tokens}
            (FILES / "manifest_excerpt.json").write_text(json.dumps(excerpt, indent=1, ensure_ascii=False) + "\n")
        finally:
            shutil.rmtree(tmp, ignore_errors=True)
    page = PAGE.read_text()
    a, b = page.index(BEGIN), page.index(END) + len(END)
    page = page[:a] + render() + page[b:]
    a, b = page.index(TAGGER_BEGIN), page.index(TAGGER_END) + len(TAGGER_END)
    PAGE.write_text(page[:a] + render_tagger() + page[b:])
    print(PAGE)
    return 0


if __name__ == "__main__":
    sys.exit(main())
