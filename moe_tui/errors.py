"""Errors that reach the user as one line (CLI: stderr + non-zero exit; TUI: an error dialog)."""

from __future__ import annotations


class MoeTuiError(Exception):
    """Base class. ``str(err)`` is one human-readable line that says what is wrong and where."""

    exit_code = 2

    def __str__(self) -> str:  # never multi-line
        msg = super().__str__()
        return " ".join(msg.split()) if msg else self.__class__.__name__


class CorpusError(MoeTuiError):
    """A corpus file is missing, unreadable or malformed (message names file:line)."""


class ModelError(MoeTuiError):
    """A model cannot be found, loaded or captured."""


class RemoteCodeRequired(ModelError):
    """The model needs ``--trust-remote-code``."""


class NotMoEError(ModelError):
    """The model has no router module: nothing to capture."""


class CacheError(MoeTuiError):
    """The run store cannot be read or written."""


class RunCorruptError(CacheError):
    """A cached run failed its checksum or size check."""


class ReportError(MoeTuiError):
    """A report cannot be produced (unfinished run, mismatched runs, unwritable output)."""


class Cancelled(MoeTuiError):
    """The user cancelled a long job."""

    exit_code = 130


class TaggerError(MoeTuiError):
    """A POS tagger cannot be found, loaded, installed or trained (unknown name, missing package, bad folder)."""


class GenerationError(MoeTuiError):
    """Generation cannot run: bad prompts, a model that cannot generate, settings out of range."""
