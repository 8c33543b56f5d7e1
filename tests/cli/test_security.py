"""Security: no pickle anywhere, remote code only with the explicit flag (and recorded), spreadsheet-safe CSV."""

from __future__ import annotations

import ast
import csv
import hashlib
import io
import json
import pickle  # only to build hostile payloads below
import re
import shutil
import tokenize
from pathlib import Path

import numpy as np
import pytest

from moe_tui.cache.layout import ARRAY_NAMES, SHARD_ARRAYS
from moe_tui.cache.store import RunStore
from moe_tui.cache.writer import RunWriter
from tests.helpers import REPO, assert_one_line_error, cli, ex_opts, needs_ewt

SOURCE_DIRS = ("core", "cache", "tui")
UNSAFE_MODULES = {"pickle", "cPickle", "_pickle", "dill", "cloudpickle", "joblib", "shelve", "marshal"}


def _sources():
    files = sorted(f for d in SOURCE_DIRS for f in (REPO / d).rglob("*.py"))
    assert len(files) > 10
    return files


def _code_text(path: Path) -> str:
    """The file's code without comments and string literals (so prose such as 'never pickle' is allowed)."""
    out = []
    with open(path, "rb") as fh:
        for tok in tokenize.tokenize(fh.readline):
            if tok.type not in (tokenize.COMMENT, tokenize.STRING, tokenize.ENCODING):
                out.append(tok.string)
    return " ".join(out)


@pytest.mark.slow
def test_no_pickle_in_the_source_tree():
    bad = []
    for f in _sources():
        raw = f.read_text(encoding="utf-8")
        code = _code_text(f)
        rel = f.relative_to(REPO)
        if re.search(r"allow_pickle\s*=\s*True", raw):
            bad.append(f"{rel}: allow_pickle=True")
        if re.search(r"torch\s*\.\s*load\s*\(", raw) or re.search(r"\btorch\s*\.\s*save\s*\(", raw):
            bad.append(f"{rel}: torch.load/torch.save")
        if re.search(r"\.(read|to)_pickle\s*\(", raw):
            bad.append(f"{rel}: pandas pickle")
        for name in re.findall(r"\b\w*pickle\w*\b", code):
            if name != "allow_pickle":
                bad.append(f"{rel}: {name}")
        tree = ast.parse(raw)
        for node in ast.walk(tree):
            mods = []
            if isinstance(node, ast.Import):
                mods = [a.name.split(".")[0] for a in node.names]
            elif isinstance(node, ast.ImportFrom) and node.module:
                mods = [node.module.split(".")[0]]
            bad += [f"{rel}:{node.lineno}: imports {m}" for m in mods if m in UNSAFE_MODULES]
    assert bad == []


def test_every_np_load_and_save_refuses_pickle():
    seen = 0
    for f in _sources():
        for node in ast.walk(ast.parse(f.read_text(encoding="utf-8"))):
            if not (isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute)):
                continue
            fn = node.func
            if fn.attr in ("load", "save") and isinstance(fn.value, ast.Name) and fn.value.id in ("np", "numpy"):
                seen += 1
                kw = {k.arg: k.value for k in node.keywords}
                ok = isinstance(kw.get("allow_pickle"), ast.Constant) and kw["allow_pickle"].value is False
                assert ok, f"{f.relative_to(REPO)}:{node.lineno}: np.{fn.attr} without allow_pickle=False"
    assert seen >= 3


@pytest.fixture(scope="module")
def normal_run(tmp_path_factory):
    from moe_tui.core.extract.pipeline import extract

    cache = tmp_path_factory.mktemp("sec_cache")
    return extract(ex_opts(cache, max_sentences=4, batch_size=4))


@needs_ewt
def test_run_arrays_load_without_pickle_and_record_remote_code_off(normal_run):
    m = json.loads((normal_run / "manifest.json").read_text())
    assert m["options"]["trust_remote_code"] is False
    assert m["identity"]["options"]["trust_remote_code"] is False
    assert m["model"]["trust_remote_code"] is False
    npys = sorted(normal_run.glob("*.npy"))
    assert {p.stem for p in npys} == set(ARRAY_NAMES)  # every file of the run is an array (text included)
    assert [p.name for p in normal_run.iterdir() if p.is_file() and p.suffix not in (".npy", ".json")] == [".lock"]
    for p in npys:
        arr = np.load(p, allow_pickle=False)
        assert arr.dtype != object and arr.dtype.kind in "biuf"
    assert not list(normal_run.rglob("*.pkl")) and not list(normal_run.rglob("*.pt"))


class _Boom:
    """Unpickling this creates the marker file: proof that a pickle was executed."""

    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return (Path.write_text, (Path(self.marker), "pwned"))


@needs_ewt
def test_a_pickled_array_in_a_run_is_refused_not_executed(normal_run, tmp_path, capsys):
    cache = tmp_path / "cache"
    run_dir = cache / normal_run.name
    shutil.copytree(normal_run, run_dir)
    marker = tmp_path / "pwned.txt"
    hostile = np.empty(1, dtype=object)
    hostile[0] = _Boom(marker)
    p = run_dir / "experts.npy"
    with open(p, "wb") as fh:
        np.save(fh, hostile, allow_pickle=True)
    # the attacker also fixes the manifest so that the checksum passes
    mp = run_dir / "manifest.json"
    m = json.loads(mp.read_text())
    m["arrays"]["experts"].update(bytes=p.stat().st_size, sha256=hashlib.sha256(p.read_bytes()).hexdigest())
    m.pop("manifest_sha256", None)
    mp.write_text(json.dumps(m))
    (run_dir / ".verified.json").unlink(missing_ok=True)
    code, out, err = cli(capsys, "export-routes", run_dir.name, "--out", tmp_path / "r.csv", "--cache-dir", cache)
    assert_one_line_error(code, err, f"run {run_dir.name}")
    assert not marker.exists() and not (tmp_path / "r.csv").exists()


def test_a_pickled_shard_is_redone_not_executed(tmp_path):
    marker = tmp_path / "pwned.txt"
    w = RunWriter(tmp_path / "r", {"z": 1})
    w.begin()
    hostile = np.empty(1, dtype=object)
    hostile[0] = _Boom(marker)
    with open(w.shard_path(0), "wb") as fh:
        np.savez(fh, **{k: hostile for k in SHARD_ARRAYS})
    assert w.read_shard(0) is None and not w.shard_path(0).exists()
    assert not marker.exists()
    pickle.loads(pickle.dumps(_Boom(tmp_path / "control.txt")))  # control: the payload does work
    assert (tmp_path / "control.txt").read_text() == "pwned"


def test_remote_code_is_never_run_without_the_flag(tmp_path, capsys):
    """A model whose config points at its own Python code: refused, and that code never runs."""
    marker = tmp_path / "ran.txt"
    model = tmp_path / "evil"
    model.mkdir()
    (model / "config.json").write_text(json.dumps({
        "model_type": "evil_moe", "architectures": ["EvilMoeForCausalLM"],
        "auto_map": {"AutoConfig": "configuration_evil.EvilConfig",
                     "AutoModelForCausalLM": "modeling_evil.EvilMoeForCausalLM"}}))
    payload = f"from pathlib import Path\nPath({str(marker)!r}).write_text('ran')\n"
    (model / "configuration_evil.py").write_text(payload)
    (model / "modeling_evil.py").write_text(payload)
    data = tmp_path / "c.conllu"
    data.write_text("1\tcat\tcat\tNOUN\t_\t_\t0\troot\t_\t_\n")
    code, out, err = cli(capsys, "extract", "--model", model, "--data", data, "--progress", "none",
                         "--cache-dir", tmp_path / "cache")
    assert_one_line_error(code, err, "needs --trust-remote-code")
    code, out, err = cli(capsys, "inspect", model)
    assert_one_line_error(code, err, "needs --trust-remote-code")
    assert not marker.exists()
    assert RunStore(tmp_path / "cache").list_runs() == []


FORMULAS = ["=SUM(A1)", "+1", "-cmd", "@SUM(A1)"]


def test_csv_cells_that_look_like_formulas_are_neutralised_with_spreadsheet_safe(tmp_path, capsys):
    from moe_tui.core.extract.pipeline import extract

    rows = [f"{i}\t{w}\t{w}\tSYM\t_\t_\t0\troot\t_\t_" for i, w in enumerate(FORMULAS + ["ok"], 1)]
    data = tmp_path / "formulas.conllu"
    data.write_text("# text = " + " ".join(FORMULAS + ["ok"]) + "\n" + "\n".join(rows) + "\n")
    run_dir = extract(ex_opts(tmp_path / "cache", data=data, batch_size=1))
    out = tmp_path / "routes.csv"
    code, _, err = cli(capsys, "export-routes", run_dir.name, "--out", out, "--cache-dir", tmp_path / "cache",
                       "--spreadsheet-safe")
    assert code == 0, err
    with open(out, newline="", encoding="utf-8") as fh:
        table = list(csv.reader(fh))
    header, body = table[0], table[1:]
    words = {r[header.index("word")] for r in body}
    assert {"'" + f for f in FORMULAS} <= words and "ok" in words
    assert not (set(FORMULAS) & words)
    for r in body:  # no text cell anywhere starts a formula; numbers stay numbers
        for name in ("token_text", "word", "pos"):
            assert not r[header.index(name)].startswith(("=", "+", "-", "@", "\t", "\r")), r
        float(r[header.index("weight")]), int(r[header.index("expert")])
    # without the flag the same export holds the words exactly
    exact = tmp_path / "exact.csv"
    assert cli(capsys, "export-routes", run_dir.name, "--out", exact, "--cache-dir", tmp_path / "cache")[0] == 0
    with open(exact, newline="", encoding="utf-8") as fh:
        exact_rows = list(csv.DictReader(fh))
    assert {r["word"] for r in exact_rows} - {""} == set(FORMULAS) | {"ok"}
    from moe_tui.fileio import safe_cell

    assert safe_cell("=1+2") == "'=1+2" and str(safe_cell(-1.5)) == "-1.5" and str(safe_cell(-3)) == "-3"
    buf = io.StringIO()
    csv.writer(buf).writerow([safe_cell("\t=cmd"), safe_cell("\r=cmd")])
    assert buf.getvalue().startswith(("'\t", "\"'\t"))
