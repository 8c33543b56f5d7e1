"""The demo's results in the docs: ``docs/results/demo.md`` and the demo figures of ``docs/figures/``, written
from one real run of the built-in demo (extraction with router logits, then one report with ``--probe
--controls --information``).

    .venv/bin/python -m benchmarks.demo_results            # run the demo, rewrite the page and the figures
    .venv/bin/python -m benchmarks.demo_results --check    # run the demo, say whether the committed files differ
    .venv/bin/python -m benchmarks.demo_results --report DIR/RUN_ID   # write them from a report folder made so

Every number in the page is read from the report's CSV files by column name and printed at the precision the
page states; the figures are redrawn small from the same CSVs. The commands run as child processes with one
thread (``OMP_NUM_THREADS=1`` and the like), the defaults of ``moe-tui report`` and seed 0, so a machine of
the same kind (x86 CPU, the torch CPU build, the locked versions) gives the same bytes; ``tests/test_docs.py``
(slow set) checks that it does. Run this module again whenever the science or one of its defaults changes,
and commit what it writes.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
from importlib.metadata import version
from pathlib import Path

from benchmarks.results import REPO, RESULTS, differences, number, read_csv, section, table

PAGE = RESULTS / "demo.md"
FIGURES = REPO / "docs" / "figures"
FIGURE_STEMS = ("fig_spec_by_layer", "fig_confusion_top_k")
FIGURE_DPI = 110
MODEL, DATA = "core/demo/model", "core/demo/demo.conllu"   # the demo as the repository holds it
EXTRACT = ["extract", "--model", MODEL, "--data", DATA, "--save-logits", "--device", "cpu"]
REPORT = ["--probe", "--controls", "--information"]
THREADS = ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS")

# decimals by column name; other floats get DEFAULT (fractions, bits and nats), integers are printed whole
PERCENT = 2      # Spec, U, ΔU and their nulls: percent
P_VALUE = 4      # p- and q-values (the smallest with 100 permutations is 0.0099)
DEFAULT = 3
DECIMALS = {
    "spec": PERCENT, "uniform": PERCENT, "delta": PERCENT, "mean_spec": PERCENT, "max_spec": PERCENT,
    "null_mean": PERCENT, "null_p95": PERCENT, "excess": PERCENT, "spec_null_mean": PERCENT,
    "excess_over_null": PERCENT, "p_value": P_VALUE, "q_value": P_VALUE, "compression": 2,
    "codelength_bits": 0, "uniform_codelength_bits": 0,
}


def _child_env(cache: Path) -> dict[str, str]:
    env = {**os.environ, "MOE_TUI_CACHE": str(cache), "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1",
           "TOKENIZERS_PARALLELISM": "false"}
    env.update({var: "1" for var in THREADS})
    return env


def _moe_tui(args: list[str], env: dict[str, str]) -> str:
    proc = subprocess.run([sys.executable, "-m", "moe_tui.cli", *args], cwd=REPO, env=env, capture_output=True,
                          text=True)
    if proc.returncode != 0:
        raise SystemExit(f"demo_results: moe-tui {args[0]} failed: {proc.stderr.strip()[-2000:]}")
    return proc.stdout


def run_demo(work: Path) -> Path:
    """Extract the demo and run its report in ``work``; return the report folder of the run."""
    env = _child_env(work / "cache")
    run_dir = Path(_moe_tui([*EXTRACT, "--progress", "none"], env).strip().splitlines()[-1])
    _moe_tui(["report", run_dir.name, "--out", str(work / "report"), *REPORT], env)
    return work / "report" / run_dir.name


# --------------------------------------------------------------------------- the page
def _cell(column: str, value: str) -> str:
    return number(value, DECIMALS.get(column, DEFAULT))


def _csv_table(folder: Path, stem: str, *, drop: tuple[str, ...] = (), where=None) -> str:
    """A report CSV as a table, every column (but ``drop``) by name, rows filtered by ``where``."""
    columns, rows = read_csv(folder / f"{stem}.csv")
    keep = [c for c in columns if c not in drop]
    rows = [r for r in rows if where is None or where(r)]
    return table(keep, [[_cell(c, r[c]) for c in keep] for r in rows])


def _quantity_decimals(quantity: str) -> int:
    if quantity.endswith("_p") or quantity.endswith("p_value"):
        return P_VALUE
    if quantity.startswith("spec_") and "bias_sd" not in quantity:
        return PERCENT
    if "bias_sd" in quantity:
        return 2
    return DEFAULT


def _table1(folder: Path) -> str:
    _, rows = read_csv(folder / "summary.csv")
    s = rows[0]

    def pct(v: str) -> str:
        return number(float(v) * 100, 1) if v else ""

    cols = ["model", "k/N", "MoE layers", "tokens", "MLP top_k", "MLP top_1", "Spec", "U", "ΔU", "baseline"]
    row = ["demo Mixtral (`core/demo/model`)", f"{s['top_k']}/{s['experts']}", s["moe_layers"], s["tokens"],
           pct(s["mlp_top_k"]), pct(s["mlp_top_1"]), number(float(s["spec"]), PERCENT),
           number(float(s["uniform"]), PERCENT), number(float(s["delta"]), PERCENT), pct(s["baseline"])]
    n_pos = len(s["global_pos"].split())
    return (table(cols, [row]) + f"\n\nAccuracies in percent (to 0.1); the global Spec averages {n_pos} tags "
            f"(`global_pos`: {s['global_pos']}).")


def _controls(folder: Path) -> str:
    _, rows = read_csv(folder / "controls.csv")
    return table(["quantity", "value"], [[r["quantity"], number(r["value"], _quantity_decimals(r["quantity"]))]
                                         for r in rows])


def _spec_null(folder: Path) -> str:
    columns, rows = read_csv(folder / "spec_null.csv")
    cells = [r for r in rows if r.get("p_value")]
    ps = [float(r["p_value"]) for r in cells]
    out = [["layer × POS cells with a token", str(len(cells))],
           ["cells above their null's 95th percentile",
            str(sum(float(r["spec"]) > float(r["null_p95"]) for r in cells))],
           ["smallest p-value", number(min(ps), P_VALUE) if ps else ""],
           ["largest p-value", number(max(ps), P_VALUE) if ps else ""]]
    if "q_value" in columns:
        out.append(["cells with q-value ≤ 0.05", str(sum(float(r["q_value"]) <= 0.05 for r in cells if r["q_value"]))])
    return table(["`spec_null.csv`", "value"], out)


def _information_by_pos(folder: Path) -> str:
    _, rows = read_csv(folder / "information.csv")
    measures = list(dict.fromkeys(r["measure"] for r in rows if r["pos"]))
    tags = list(dict.fromkeys(r["pos"] for r in rows if r["pos"]))
    value = {(r["measure"], r["pos"]): r["value"] for r in rows if r["pos"]}
    return table(["pos", *measures], [[t, *(number(value.get((m, t), ""), DEFAULT) for m in measures)] for t in tags])


def _demo_model() -> str:
    """The shipped demo model and corpus, from their own files (config, training log, weights, CoNLL-U)."""
    import json

    from moe_tui.core.demo import demo_corpus_path, demo_model_path

    model = demo_model_path()
    config = json.loads((model / "config.json").read_text(encoding="utf-8"))
    log = json.loads((model / "train_log.json").read_text(encoding="utf-8"))
    settings, evaluation = log["settings"], log["eval"]
    load = [share for layer in evaluation["expert_load"] for share in layer]
    sentences = sum(line.startswith("# text") for line in demo_corpus_path().read_text(encoding="utf-8").splitlines())
    rows = [
        ["architecture", f"`{config['architectures'][0]}`: hidden {config['hidden_size']}, "
                         f"{config['num_hidden_layers']} layers, {config['num_local_experts']} experts, "
                         f"top-{config['num_experts_per_tok']}"],
        ["parameters", f"{log['parameters']:,}"],
        ["weights (safetensors)", f"{(model / 'model.safetensors').stat().st_size / 1e6:.1f} MB"],
        ["tokenizer", f"byte-level BPE, {config['vocab_size']:,} entries"],
        ["training", f"causal LM on {settings['train_sentences']:,} generated sentences, {settings['steps']} steps, "
                     f"one CPU thread, load-balancing loss weight {settings['aux_coef']}"],
        ["LM loss (nats)", f"{log['loss_curve'][0]['lm_loss']:.2f} at the first step, {log['final_lm_loss_ema']:.2f} "
                           f"at the end; held out {evaluation['eval_lm_loss']:.2f}, against a unigram entropy of "
                           f"{log['unigram_entropy_nats']:.2f}"],
        ["expert load", f"every expert takes {min(load):.1%} to {max(load):.1%} of its layer's assignments"],
        ["analysis corpus", f"`core/demo/demo.conllu`: {sentences:,} sentences, another seed than the training text"],
    ]
    return table(["", "the demo"], rows) + "\n\nFrom `core/demo/model/config.json`, `train_log.json` (written by " \
        "`scripts/train_demo.py`) and the files themselves."


def render(folder: Path) -> str:
    """The whole page, from the report folder of one run."""
    versions = ", ".join(f"{name} {version(name)}" for name in ("torch", "transformers", "numpy", "scikit-learn"))
    head = f"""# Results on the built-in demo

<!-- Written by `python -m benchmarks.demo_results`: do not edit by hand. -->

Every number on this page was written by `.venv/bin/python -m benchmarks.demo_results` from one real run of the
[built-in demo](../demo.md), and the other pages show these sections rather than typing the numbers. Run that
command again (a few minutes on two CPU cores) whenever the science or one of its defaults changes, and commit
what it writes; `tests/test_docs.py` regenerates the page in CI and fails when it differs.

The run, each command a child process with one thread (`OMP_NUM_THREADS=1`, likewise MKL and OpenBLAS),
torch engine on the CPU, seed 0, every other option at its default:

```bash
moe-tui {" ".join(EXTRACT)}
moe-tui report RUN --out DIR {" ".join(REPORT)}
```

Versions: {versions}.

Precision: accuracies, shares, bits and nats to 3 decimals (the CSVs hold fractions; Table 1 shows percent to
0.1), Spec, U, ΔU and their nulls in percent to 2 decimals, p- and q-values to 4, compression to 2, code
lengths in whole bits. The CSV files hold every number unrounded.
"""
    parts = [
        head,
        "## The model and its corpus\n",
        section("demo_model", _demo_model()),
        "## Table 1: the demo's row\n",
        section("table1", _table1(folder)),
        "## Probes (`probe.csv`)\n",
        section("probes", _csv_table(folder, "probe")),
        "## Ablation (`ablation.csv`)\n",
        section("ablation", _csv_table(folder, "ablation")),
        "## Specialisation per POS (`spec_pos.csv`)\n",
        section("spec_pos", _csv_table(folder, "spec_pos")),
        "## KL divergence (`kl_summary.csv`, nats)\n",
        section("kl_summary", _csv_table(folder, "kl_summary")),
        "## Controls (`controls.csv`)\n",
        section("controls", _controls(folder)),
        "## The permutation null of Spec (`spec_null.csv`, summarised)\n",
        section("spec_null", _spec_null(folder)),
        "## Conditional probes (`conditional.csv`)\n",
        section("conditional", _csv_table(folder, "conditional")),
        "## Information, all test tokens (`information.csv`, bits per token)\n",
        section("information", _csv_table(folder, "information", drop=("pos",), where=lambda r: not r["pos"])),
        "## Information by POS (`information.csv`, `value`, bits per token)\n",
        section("information_by_pos", _information_by_pos(folder)),
        "## Each layer's route alone (`layer_probe.csv`)\n",
        section("layer_probe", _csv_table(folder, "layer_probe")),
        "## Online code length (`mdl.csv`)\n",
        section("mdl", _csv_table(folder, "mdl")),
        "## Paths (`paths.csv`)\n",
        section("paths", _csv_table(folder, "paths")),
        "## Layer to layer (`transitions.csv`)\n",
        section("transitions", _csv_table(folder, "transitions")),
    ]
    return "\n".join(parts)


def figures(folder: Path) -> dict[str, bytes]:
    """The demo figures of the docs (PNG), redrawn small from the report folder's CSV files, by file name."""
    from moe_tui.core.analysis import figures as F
    from moe_tui.core.analysis.figures import figure_bytes

    tables = {}
    for stem in ("summary", "spec_layer", "confusion_top_k"):
        columns, rows = read_csv(folder / f"{stem}.csv")
        tables[stem] = {"name": stem, "columns": columns, "rows": [[r[c] for c in columns] for r in rows]}
    title = F.panel_titles([tables["summary"]["rows"][0][0]], [folder.name])[0]
    return {f"demo_{stem}.png": figure_bytes(F.run_figure(stem, tables, title), "png", dpi=FIGURE_DPI)
            for stem in FIGURE_STEMS}


def generate(folder: Path) -> dict[Path, bytes]:
    """Every file this module writes, by path, from one report folder."""
    out = {PAGE: render(folder).encode("utf-8")}
    out.update({FIGURES / name: data for name, data in figures(folder).items()})
    return out


def check(files: dict[Path, bytes]) -> list[str]:
    """What differs between ``files`` and the committed ones: a diff for the page, a line for a figure."""
    problems = []
    for path, data in files.items():
        old = path.read_bytes() if path.exists() else b""
        if old == data:
            continue
        if path.suffix == ".md":
            problems.append(differences(old.decode("utf-8"), data.decode("utf-8"), str(path.relative_to(REPO))))
        else:
            problems.append(f"{path.relative_to(REPO)}: the figure redrawn from the run differs from the committed one")
    return problems


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m benchmarks.demo_results", description=__doc__.split("\n\n")[0])
    ap.add_argument("--check", action="store_true", help="compare with the committed files instead of writing them")
    ap.add_argument("--report", type=Path, help="a report folder (DIR/RUN_ID) of the commands above, instead of running them")
    args = ap.parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="moe-tui-demo-results-") as work:
        folder = args.report or run_demo(Path(work))
        files = generate(folder)
    if args.check:
        problems = check(files)
        for p in problems:
            print(p, file=sys.stderr)
        return 1 if problems else 0
    from moe_tui.fileio import atomic_write_bytes

    for path, data in files.items():
        path.parent.mkdir(parents=True, exist_ok=True)
        atomic_write_bytes(path, data)
        print(path.relative_to(REPO))
    return 0


if __name__ == "__main__":
    sys.exit(main())
