"""The command line's reference in the docs, written from the argument parser itself (never typed by hand).

    .venv/bin/python -m scripts.cli_reference     # rewrite docs/reference/cli.md and README's two tables

``commands_markdown()`` is README's table of commands (one row per subcommand, its help line);
``reference_markdown()`` is ``docs/reference/cli.md``, every command's ``--help`` at a fixed width.
``tests/test_docs.py`` fails when either differs from what the parser says.
"""

from __future__ import annotations

import argparse
import os
import sys
from contextlib import contextmanager
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
PAGE = REPO / "docs" / "reference" / "cli.md"
WIDTH = 110


@contextmanager
def _width(columns: int):
    """argparse wraps help to the terminal's width ($COLUMNS): fix it, so the text is the same everywhere."""
    old = os.environ.get("COLUMNS")
    os.environ["COLUMNS"] = str(columns)
    try:
        yield
    finally:
        if old is None:
            os.environ.pop("COLUMNS", None)
        else:
            os.environ["COLUMNS"] = old


def _subcommands(parser: argparse.ArgumentParser) -> list[tuple[str, str, argparse.ArgumentParser]]:
    """(name, help line, parser) of every subcommand, in the parser's order."""
    action = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    helps = {c.dest: c.help or "" for c in action._choices_actions}
    return [(name, helps.get(name, ""), sub) for name, sub in action.choices.items()]


def commands_markdown() -> str:
    """README's command table: ``moe-tui`` itself, then each subcommand with its help line."""
    from moe_tui.cli import build_parser

    rows = ["| command | what it does |", "|---|---|",
            "| `moe-tui` | open the terminal UI (models from `--model`, the Hugging Face cache, the demo) |"]
    for name, text, _ in _subcommands(build_parser()):
        rows.append(f"| `moe-tui {name}` | {text.replace('|', chr(92) + '|')} |")
    return "\n".join(rows)


def reference_markdown() -> str:
    """Every command's ``--help``, as ``moe-tui COMMAND --help`` prints it at a fixed width."""
    from moe_tui.cli import build_parser

    with _width(WIDTH):
        parser = build_parser()
        parts = ["# Command-line reference", "",
                 "<!-- Written by `python -m scripts.cli_reference` from the argument parser: do not edit by hand. -->",
                 "", "Each command's `--help`, exactly as `moe-tui` prints it. What the commands do, their exit codes",
                 "and the files they write: [the command line](../cli.md).", "",
                 "## moe-tui", "", "```text", parser.format_help().rstrip(), "```", ""]
        for name, _, sub in _subcommands(parser):
            parts += [f"## moe-tui {name}", "", "```text", sub.format_help().rstrip(), "```", ""]
    return "\n".join(parts)


def readme_with_tables(text: str) -> str:
    """README ``text`` with its command table (the block of rows starting ``| command |``) and its key table (between
    the ``keys`` snippet markers) written anew from the parser and the action registry."""
    from moe_tui.tui.actions import keys_markdown

    lines = text.split("\n")
    start = next(i for i, line in enumerate(lines) if line.startswith("| command | what it does |"))
    end = start
    while end < len(lines) and lines[end].startswith("|"):
        end += 1
    lines[start:end] = commands_markdown().split("\n")
    text = "\n".join(lines)
    a, b = "<!-- --8<-- [start:keys] -->\n", "<!-- --8<-- [end:keys] -->"
    i, j = text.index(a) + len(a), text.index(b)
    return text[:i] + keys_markdown().rstrip("\n") + "\n" + text[j:]


def main() -> int:
    from moe_tui.fileio import atomic_write_text

    PAGE.parent.mkdir(parents=True, exist_ok=True)
    atomic_write_text(PAGE, reference_markdown())
    print(PAGE.relative_to(REPO))
    readme = REPO / "README.md"
    atomic_write_text(readme, readme_with_tables(readme.read_text(encoding="utf-8")))
    print(readme.relative_to(REPO))
    return 0


if __name__ == "__main__":
    sys.exit(main())
