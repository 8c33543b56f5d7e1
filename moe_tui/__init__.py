"""moe-tui: how Mixture-of-Experts language models route tokens, by part of speech.

The importable namespace of the project. Subpackages, from the bottom up:

* ``moe_tui.errors``, ``moe_tui.fileio``: one-line errors and atomic file writes (import nothing above them);
* ``moe_tui.cache``: the run store (numpy arrays + JSON per run, checksummed, never pickle);
* ``moe_tui.core``: the headless engine (corpus, alignment, models, capture, extraction, metrics, probes,
  controls, report); never imports textual;
* ``moe_tui.api``: the Python API, re-exported here (below);
* ``moe_tui.cli``: the ``moe-tui`` command (headless subcommands; launches the TUI);
* ``moe_tui.tui``: the Textual application.

The Python API, for notebooks and scripts::

    import moe_tui
    run = moe_tui.extract(model, corpus, **options)    # -> moe_tui.Run (a cache hit costs no model load)
    run = moe_tui.generate(model, prompts, **options)  # prompts + generated tokens; run.origin: 0/1 per token
    run = moe_tui.open_run(run_id_or_path)              # a cached run
    run.routes()                                       # pandas DataFrame: the export-routes table
    moe_tui.report(run, probe=False, controls=False)   # {"spec_layer": DataFrame, ...}: the report tables

Importing this package is cheap: nothing heavy (numpy, pandas, torch, transformers, scikit-learn, textual)
is imported until a function that needs it runs.
"""

from __future__ import annotations

from typing import Any

__all__ = ["Run", "open_run", "extract", "generate", "report"]


def __getattr__(name: str) -> Any:  # PEP 562: the API is imported on first use
    if name in __all__:
        from moe_tui import api

        return getattr(api, name)
    raise AttributeError(f"module 'moe_tui' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted([*globals(), *__all__])
