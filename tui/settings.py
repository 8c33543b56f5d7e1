"""User settings: a JSON (or TOML, read-only) file at ``user_config_path("moe-tui")/config.json``.

``MOE_TUI_CONFIG`` overrides the path. ``keymap`` maps binding ids (see :mod:`moe_tui.tui.actions`) to key strings,
e.g. ``{"grid.export": "ctrl+e", "app.help": "f1,question_mark"}``. Recently used models and corpora are kept
in ``recent.json`` next to the config file.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, Field, ValidationError, create_model

from moe_tui.core.extract.options import setting_fields

APP_NAME = "moe-tui"
MAX_RECENT = 10


def _extract_defaults_model() -> type[BaseModel]:
    """The ``"extract"`` settings: the extraction options marked as settings, with their defaults and help
    (rendered from :class:`moe_tui.core.extract.options.ExtractOptions`)."""
    fields = {}
    for s in setting_fields():
        tp = Literal[s.choices] if s.choices else s.type
        fields[s.name] = ((tp | None) if s.optional else tp,
                          Field(s.default, description=s.help, gt=0 if s.positive else None))
    return create_model("ExtractDefaults", __doc__="Defaults of the Home form's extraction options.", **fields)


ExtractDefaults = _extract_defaults_model()


class Settings(BaseModel):
    """Everything a user may set. Unknown keys are ignored (forward compatible)."""

    theme: str = Field("textual-dark", description="A Textual theme name")
    animation_level: str = Field("none", description="none | basic | full (none is best over SSH)")
    keymap: dict[str, str] = Field(default_factory=dict, description="binding id -> keys")
    export_dir: str | None = Field(None, description="Directory for CSV exports (default: the current directory)")
    spreadsheet_safe: bool = Field(False, description="Prefix exported/copied text cells that start with = + - @ "
                                   "with ' (alters the text; off: exactly as stored)")
    report_figures: bool = Field(True, description="The whole-report export (E) also draws the paper's figures "
                                 "(PNG and PDF), as moe-tui report --figures")
    min_width: int = 80
    min_height: int = 24
    extract: ExtractDefaults = Field(default_factory=ExtractDefaults)

    model_config = {"extra": "ignore"}


def config_path() -> Path:
    env = os.environ.get("MOE_TUI_CONFIG")
    if env:
        return Path(env).expanduser()
    from platformdirs import user_config_path

    return user_config_path(APP_NAME) / "config.json"


def recent_path() -> Path:
    return config_path().parent / "recent.json"


def _atomic_write_text(path: Path, text: str) -> None:
    from moe_tui.errors import CacheError
    from moe_tui.fileio import atomic_write_text

    path.parent.mkdir(parents=True, exist_ok=True)
    try:
        atomic_write_text(path, text)
    except CacheError as exc:  # callers handle OSError
        raise OSError(str(exc)) from None


class SettingsError(ValueError):
    pass


def load_settings(path: Path | None = None) -> Settings:
    """Read settings; a missing file gives defaults; a broken one raises :class:`SettingsError` (one line)."""
    path = path or config_path()
    if not path.exists():
        return Settings()
    try:
        raw = path.read_bytes()
        if path.suffix == ".toml":
            import tomllib

            data = tomllib.loads(raw.decode("utf-8"))
        else:
            data = json.loads(raw.decode("utf-8") or "{}")
        return Settings.model_validate(data)
    except (OSError, ValueError, ValidationError) as exc:  # json/toml errors are ValueErrors
        msg = " ".join(str(exc).split())
        raise SettingsError(f"{path}: invalid settings: {msg}") from exc


def save_settings(settings: Settings, path: Path | None = None) -> Path:
    path = path or config_path()
    if path.suffix == ".toml":  # never rewrite a hand-written TOML file
        path = path.with_suffix(".json")
    _atomic_write_text(path, settings.model_dump_json(indent=2) + "\n")
    return path


class Recent(BaseModel):
    models: list[str] = Field(default_factory=list)
    corpora: list[str] = Field(default_factory=list)


def load_recent() -> Recent:
    try:
        return Recent.model_validate_json(recent_path().read_text(encoding="utf-8"))
    except (OSError, ValueError, ValidationError):
        return Recent()


def remember(kind: str, value: str) -> Recent:
    """Move ``value`` to the front of the ``kind`` ("models"|"corpora") list and save (best effort)."""
    recent = load_recent()
    items = [v for v in getattr(recent, kind) if v != value]
    items.insert(0, value)
    setattr(recent, kind, items[:MAX_RECENT])
    try:
        _atomic_write_text(recent_path(), recent.model_dump_json(indent=2) + "\n")
    except OSError:
        pass
    return recent
