"""moe-tui: how Mixture-of-Experts language models route tokens, by part of speech.

The importable namespace of the project. Subpackages, from the bottom up:

* ``moe_tui.errors``, ``moe_tui.fileio``: one-line errors and atomic file writes (import nothing above them);
* ``moe_tui.cache``: the run store (numpy arrays + JSON per run, checksummed, never pickle);
* ``moe_tui.core``: the headless engine (corpus, alignment, models, capture, extraction, metrics, probes,
  controls, report); never imports textual;
* ``moe_tui.cli``: the ``moe-tui`` command (headless subcommands; launches the TUI);
* ``moe_tui.tui``: the Textual application.

Importing this package is cheap: nothing heavy (torch, transformers, scikit-learn, textual) is imported
until a function that needs it runs.
"""

from __future__ import annotations

__all__: list[str] = []
