"""The Python API (moe_tui.api): the sessions of README and docs/python-api.md, and their tables against the files
the CLI writes."""

from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import pandas as pd
import pytest

import moe_tui
from moe_tui.cli import main
from tests.helpers import REPO
from tests.runs import synthetic_run

SHADOWS = ("core", "cache", "tui")


def python_block(path, heading: str) -> str:
    """The first ```python block of the section ``heading`` of a Markdown file."""
    text = (REPO / path).read_text(encoding="utf-8")
    section = text.split(heading + "\n", 1)[1].split("\n## ", 1)[0]
    return section.split("```python\n", 1)[1].split("```", 1)[0]


def documented_sessions() -> str:
    """README's few lines, then the docs' session (the same extraction: a cache hit the second time)."""
    return python_block("README.md", "## Python API") + python_block("docs/python-api.md", "# The Python API")


def test_import_is_cheap_and_the_api_is_lazy():
    code = ("import sys, moe_tui; heavy = ('numpy', 'pandas', 'torch', 'transformers', 'sklearn', 'textual', "
            "'moe_tui.api'); print([m for m in heavy if m in sys.modules]); print(moe_tui.report.__module__)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=60)
    assert out.stdout.split("\n")[:2] == ["[]", "moe_tui.api"]
    assert sorted(moe_tui.__all__) == ["Run", "extract", "generate", "open_run", "report"]
    with pytest.raises(AttributeError):
        moe_tui.no_such_thing  # noqa: B018


def test_routes_are_the_export_routes_csv(tmp_path, capsys):
    run = moe_tui.open_run(synthetic_run(tmp_path / "runs").path)
    assert main(["export-routes", str(run.path), "--out", str(tmp_path / "routes.csv")]) == 0
    capsys.readouterr()
    frame = run.routes()
    csv = pd.read_csv(tmp_path / "routes.csv", keep_default_na=False)
    pd.testing.assert_frame_equal(frame, csv)
    # and against the arrays: k rows per (analysed token, layer), the stored experts and float16 weights
    keep = ~np.asarray(run.special)
    assert len(frame) == int(keep.sum()) * len(run.moe_layers) * run.top_k
    np.testing.assert_array_equal(frame["expert"].to_numpy(), np.asarray(run.experts)[keep].reshape(-1))
    np.testing.assert_array_equal(frame["weight"].to_numpy(),
                                  np.asarray(run.weights)[keep].reshape(-1).astype(np.float64))


def test_report_frames_are_the_report_csv_files(tmp_path, two_runs, capsys):
    a, b = two_runs
    out = tmp_path / "report"
    assert main(["report", str(a.path), str(b.path), "--out", str(out), "--cache-dir", str(tmp_path)]) == 0
    capsys.readouterr()
    single = moe_tui.report(moe_tui.open_run(a.path), kl_reference="uniform")
    assert set(single) == {"pos_counts", "spec_layer", "spec_pos", "kl_layer_expert", "kl_summary", "summary"}
    both = moe_tui.report([a, b])
    files = sorted(p.relative_to(out).with_suffix("").as_posix() for p in out.rglob("*.csv"))
    assert sorted(both) == files
    for key, frame in both.items():
        pd.testing.assert_frame_equal(frame, pd.read_csv(out / f"{key}.csv"), obj=key)
    # the KL reference option reached the tables: uniform Q differs from the corpus Q
    assert not single["kl_summary"].equals(both[f"{a.run_id}/kl_summary"])
    with pytest.raises(TypeError, match="max_iters"):
        moe_tui.report(a, max_iters=3)


def test_unknown_extract_option_is_one_clear_error():
    with pytest.raises(TypeError, match="batchsize.*batch_size"):
        moe_tui.extract("m", "d.conllu", batchsize=3)


@pytest.mark.slow
def test_documented_sessions_run_from_a_folder_that_shadows_core(tmp_path):
    """README's and the docs' sessions, in a fresh interpreter whose working folder holds core/, cache/ and tui/ packages
    that raise on import (as a research repository's own packages would be found first); then its run's
    tables against what the CLI writes for that run."""
    work = tmp_path / "project"
    for name in SHADOWS:
        (work / name).mkdir(parents=True)
        (work / name / "__init__.py").write_text(f"raise ImportError('the project folder\\'s own {name} package')\n")
    check = f"""
import sys
from pathlib import Path
import pandas as pd
from moe_tui.cli import main
assert sys.path[0] in ("", {str(work)!r}) and not [m for m in {SHADOWS!r} if m in sys.modules]
out = Path({str(tmp_path / "cli")!r})
out.mkdir()
assert main(["export-routes", run.run_id, "--out", str(out / "routes.csv")]) == 0
pd.testing.assert_frame_equal(routes, pd.read_csv(out / "routes.csv", keep_default_na=False))
assert main(["report", run.run_id, "--out", str(out / "report")]) == 0
for name, frame in tables.items():
    pd.testing.assert_frame_equal(frame, pd.read_csv(out / "report" / run.run_id / (name + ".csv")), obj=name)
print("SESSION-OK", run.run_id)
"""
    env = {"MOE_TUI_CACHE": str(tmp_path / "cache"), "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1",
           "TOKENIZERS_PARALLELISM": "false", "PATH": "/usr/bin:/bin", "HOME": str(tmp_path)}
    proc = subprocess.run([sys.executable, "-c", documented_sessions() + check], cwd=work, env=env, capture_output=True,
                          text=True, timeout=600)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    run_id = proc.stdout.split("SESSION-OK ")[1].split()[0]
    manifest = json.loads((tmp_path / "cache" / run_id / "manifest.json").read_text())
    assert manifest["corpus"]["n_sentences"] == 200


def test_report_information_frames(tiny_run):
    tables = moe_tui.report(tiny_run, information=True, max_iter=20, probe_device="cpu")
    assert {"conditional", "information", "layer_probe", "mdl", "transitions", "paths"} <= set(tables)
    cond = tables["conditional"]
    assert list(cond.columns) == ["features", "accuracy", "cross_entropy_bits"]
    assert list(cond["features"]) == ["none", "token_id", "routes", "token_id+routes"]   # no logits in this run
