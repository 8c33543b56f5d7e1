"""Helpers shared by the test modules: where the repository and the EWT corpus are, the ``needs_ewt`` marker,
and the command-line and file-tree checks the CLI tests have in common.

Test modules import helpers from here (or from the factories: ``tests/runs.py`` for runs,
``tests/factories_model.py`` for tiny models, ``tests/factories_tok.py`` for tokenizers,
``tests/tui/helpers.py`` for the TUI), never from another ``test_*.py`` module.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]

# UD English EWT (CC BY-SA 4.0) is not part of the repository: beside it by default, or where $MOE_TUI_EWT_DIR says
EWT_DIR = Path(os.environ.get("MOE_TUI_EWT_DIR") or REPO.parent / "shared" / "data" / "ud_english_ewt")
EWT_DEV = EWT_DIR / "en_ewt-ud-dev.conllu"
EWT_TEST = EWT_DIR / "en_ewt-ud-test.conllu"

#: A test (or module, with ``pytestmark``) that reads UD English EWT: skipped, with the reason, when it is absent.
needs_ewt = pytest.mark.needs_ewt


def ewt_missing() -> str | None:
    """Why the EWT tests cannot run here (a one-line reason), or None when both files are present."""
    missing = [p for p in (EWT_DEV, EWT_TEST) if not p.is_file()]
    if not missing:
        return None
    return (f"UD English EWT not found ({missing[0]}): put en_ewt-ud-dev/test.conllu in ../shared/data/ud_english_ewt/ "
            "beside the repository, or set MOE_TUI_EWT_DIR")


# --------------------------------------------------------------------------- the command line
EX_SENTENCES = 24  # one of the first 24 EWT dev sentences is longer than the tiny model's context: 23 batches


def tiny_model() -> Path:
    """The tiny Mixtral with a byte-level BPE tokenizer trained on EWT text, built once per test session."""
    from tests.factories_model import ewt_tiny_model

    return ewt_tiny_model("mixtral")


def ex_opts(cache, data=None, **kw):
    """Extraction options of the tiny model over the first EWT dev sentences, one sentence a batch, on the CPU."""
    from moe_tui.core.extract.pipeline import ExtractOptions

    base = dict(model=str(tiny_model()), data=str(EWT_DEV if data is None else data), max_sentences=EX_SENTENCES,
                batch_size=1, cache_dir=str(cache), device="cpu", dtype="float32")
    base.update(kw)
    return ExtractOptions(**base)


def cli(capsys, *argv) -> tuple[int, str, str]:
    """``moe-tui ARGV`` in this process: (exit code, stdout, stderr)."""
    from moe_tui.cli import main

    code = main([str(a) for a in argv])
    out, err = capsys.readouterr()
    return code, out, err


def assert_one_line_error(code, err, *patterns, exit_code=2):
    """The command failed with ``exit_code`` and said why in exactly one ``moe-tui: error:`` line holding
    every pattern; no traceback. Returns that line."""
    assert code == exit_code, (code, err)
    lines = [ln for ln in err.splitlines() if ln.strip()]
    assert len(lines) == 1, err
    assert lines[0].startswith("moe-tui: error: "), lines[0]
    assert "Traceback" not in err
    for p in patterns:
        assert p in lines[0], (p, lines[0])
    return lines[0]


# --------------------------------------------------------------------------- files
def tree(root: Path) -> dict[str, bytes]:
    """Every file under ``root`` with its bytes (for 'nothing was written' checks)."""
    root = Path(root)
    if not root.exists():
        return {}
    return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


def stray_temp_files(root: Path) -> list[str]:
    """Temporary files an atomic write left behind (none, after any failure)."""
    return sorted(str(p) for p in Path(root).rglob("*") if ".tmp-" in p.name)


def run_bytes(run_dir: Path) -> dict[str, bytes]:
    """Every array of a run (the routes and the columnar sentence text), by file name."""
    from moe_tui.cache.layout import ARRAY_NAMES

    run_dir = Path(run_dir)
    out = {p.name: p.read_bytes() for p in sorted(run_dir.glob("*.npy"))}
    assert {f"{n}.npy" for n in ARRAY_NAMES} <= set(out)
    return out


def manifest_sans_time(run_dir: Path) -> dict:
    """A run's manifest without the fields that differ between two extractions of the same run."""
    m = json.loads((Path(run_dir) / "manifest.json").read_text())
    for k in ("created", "tool_version", "manifest_sha256"):
        m.pop(k, None)
    return m
