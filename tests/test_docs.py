"""The docs cannot go stale: README stays short, its generated tables match the code that renders them, and the
pages written from real runs (docs/results/) are what those runs write today."""

from __future__ import annotations

import pytest

from tests.helpers import REPO, needs_ewt

README = REPO / "README.md"


def test_readme_is_at_most_300_lines():
    assert len(README.read_text(encoding="utf-8").splitlines()) <= 300


def test_readme_command_table_is_the_parser_s():
    from scripts.cli_reference import commands_markdown

    text = README.read_text(encoding="utf-8")
    table = commands_markdown()
    assert table in text, "README's command table differs from the parser: python -m scripts.cli_reference prints it"
    assert "| `moe-tui report` |" in table and "| `moe-tui demo` |" in table   # every subcommand has its row


def test_cli_reference_is_every_command_s_help():
    from scripts.cli_reference import PAGE, reference_markdown

    assert PAGE.read_text(encoding="utf-8") == reference_markdown(), \
        "docs/reference/cli.md is stale: run .venv/bin/python -m scripts.cli_reference"


def test_every_result_page_included_by_the_docs_has_the_section():
    """Every ``--8<-- "results/PAGE.md:NAME"`` line of the docs names a section that PAGE holds."""
    import re

    for page in [README, *sorted((REPO / "docs").rglob("*.md"))]:
        for path, name in re.findall(r'^--8<-- "([^":]+):([^"]+)"$', page.read_text(encoding="utf-8"), re.M):
            target = (REPO / path) if (REPO / path).exists() else REPO / "docs" / path
            assert f"<!-- --8<-- [start:{name}] -->" in target.read_text(encoding="utf-8"), (page, path, name)


@pytest.mark.slow
def test_demo_results_page_is_what_a_run_of_the_demo_writes(tmp_path):
    """One real run of the demo (extraction with logits, one report with --probe --controls --information),
    rendered as the page and the figures are: the committed files must be the same bytes."""
    from benchmarks import demo_results

    files = demo_results.generate(demo_results.run_demo(tmp_path))
    problems = demo_results.check(files)
    assert not problems, ("the demo's results changed; if that is intended, run "
                          ".venv/bin/python -m benchmarks.demo_results and commit what it writes:\n" + "\n".join(problems))


@pytest.mark.slow
@needs_ewt
def test_corpus_results_page_is_what_the_measurement_writes():
    from benchmarks import measure_corpus
    from benchmarks.results import differences

    page = measure_corpus.PAGE.read_text(encoding="utf-8")
    assert not differences(page, measure_corpus.render(), "docs/results/corpus.md"), \
        "docs/results/corpus.md is stale: run .venv/bin/python -m benchmarks.measure_corpus --write"
