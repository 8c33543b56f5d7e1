"""docs/generate.md quotes its numbers from files: the page's generated sections are what scripts/docs_generate.py
writes from docs/generate-example/ and the built-in tagger's tagger.json, now."""

from __future__ import annotations

from scripts.docs_generate import PAGE, render, render_tagger


def test_generate_page_sections_are_rendered_from_the_files():
    page = PAGE.read_text()
    assert render() in page
    assert render_tagger() in page
