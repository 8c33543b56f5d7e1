"""The extraction options, declared once.

:class:`ExtractOptions` is the one definition of what an extraction accepts. Each field carries its
type (the annotation), its default, its help text and whether it enters the run identity (a different
value makes a different run: the field changes which tokens are routed or how). Everything else is
rendered from these fields:

* the arguments of ``moe-tui extract`` (:func:`add_arguments`, :func:`from_namespace`);
* the command line of the child process the TUI runs (:func:`to_argv`);
* the TUI's saved extraction defaults and its Home form (:func:`form_fields`, :func:`setting_fields`).

Only the standard library is imported here, so the CLI parser and the TUI stay light.
"""

from __future__ import annotations

import argparse
import dataclasses
import typing
from dataclasses import dataclass, field
from typing import Any, Callable, Sequence

__all__ = [
    "ExtractOptions",
    "OptionSpec",
    "specs",
    "spec",
    "add_arguments",
    "from_namespace",
    "to_argv",
    "form_fields",
    "setting_fields",
    "identity_options",
    "parse_max_memory",
    "positive_int",
]


def parse_max_memory(text: str) -> dict[str, str]:
    """``"GPU0=70GiB,cpu=200GiB"`` -> ``{"0": "70GiB", "cpu": "200GiB"}`` (``gpuN`` and ``N`` name GPU N)."""
    out = {}
    for part in filter(None, (p.strip() for p in text.split(","))):
        if "=" not in part:
            raise argparse.ArgumentTypeError(f"--max-memory wants DEVICE=SIZE pairs, got {part!r}")
        k, v = part.split("=", 1)
        k = k.strip().lower()
        out[k[3:] if k.startswith("gpu") and k[3:].isdigit() else k] = v.strip()
    return out


def _format_max_memory(value: dict) -> str:
    return ",".join(f"{k}={v}" for k, v in value.items())


def _opt(default: Any = dataclasses.MISSING, help: str = "", *, identity: bool = False,
         choices: Sequence[str] | None = None, metavar: str | None = None, positive: bool = False,
         parse: Callable[[str], Any] | None = None, fmt: Callable[[Any], str] | None = None,
         form: str | None = None, form_choices: Sequence[tuple[str, str]] | None = None,
         setting: bool = False) -> Any:
    """A field of :class:`ExtractOptions` with what the renderers need.

    ``identity``: part of the run identity. ``form``: the label on the TUI's Home form (None: not on it).
    ``form_choices``: ``(label, value)`` pairs offered there (default: ``choices``). ``setting``: its default
    is a user setting (``config.json`` ``"extract"``). ``parse`` / ``fmt``: command-line text to value and
    back, for types argparse does not know.
    """
    meta = {"help": help, "identity": identity, "choices": tuple(choices) if choices else None, "metavar": metavar,
            "positive": positive, "parse": parse, "fmt": fmt, "form": form,
            "form_choices": tuple(form_choices) if form_choices else None, "setting": setting}
    return field(default=default, metadata=meta)


@dataclass
class ExtractOptions:
    """Everything ``moe-tui extract`` accepts (the field order is the order of ``--help``)."""

    model: str = _opt(help="hub id (from the local HF cache) or folder", identity=True, metavar="ID_OR_PATH")
    data: str = _opt(help="CoNLL-U or PTB-tagged file", identity=True, metavar="FILE")
    tagset: str = _opt("upos", "upos (17 tags, default) or paper15 (AUX->VERB, SCONJ->ADP)", identity=True,
                       form="tagset", form_choices=(("upos (17 UD tags)", "upos"), ("paper15", "paper15")),
                       setting=True)
    format: str = _opt("auto", "corpus format (auto: by extension and content)", identity=True,
                       choices=("auto", "conllu", "ptb"))
    pos_column: str = _opt("upos", "CoNLL-U column to read; xpos is mapped through the UD English Penn table",
                           identity=True, choices=("upos", "xpos"))
    max_sentences: int | None = _opt(None, "only the first N sentences", identity=True, metavar="N", positive=True)
    sample: int | None = _opt(None, "a seeded random sample of N sentences", identity=True, metavar="N",
                              positive=True, form="sample size (sentences, empty = all)", setting=True)
    seed: int = _opt(0, "seed of --sample", identity=True)
    batch_size: int = _opt(16, "sentences per batch", metavar="N", positive=True, form="batch size (sentences)",
                           setting=True)
    batch_tokens: int | None = _opt(None, "also cap padded tokens per batch", metavar="N", positive=True)
    dtype: str = _opt("auto", "weights' dtype (auto: as stored, float32 on CPU)", identity=True,
                      choices=("auto", "float32", "bfloat16", "float16"), form="dtype", setting=True)
    device: str = _opt("auto", "cpu, cuda, cuda:N or auto", form="device",
                       form_choices=(("auto", "auto"), ("cuda", "cuda"), ("cpu", "cpu")), setting=True)
    # auto|balanced|sequential, a {module: device} dict or a JSON file
    device_map: str | dict | None = _opt(None, "spread one model over the GPUs (and CPU/disk) with accelerate; "
                                         'MAP.json: {"module": "cpu"|"disk"|N, ...}',
                                         metavar="auto|balanced|sequential|MAP.json")
    max_memory: dict[str, str] | None = _opt(None, "memory per device for --device-map", metavar="GPU0=70GiB,...,cpu=200GiB",
                                             parse=parse_max_memory, fmt=_format_max_memory)
    offload_folder: str | None = _opt(None, "where modules the device map sends to disk go", metavar="DIR")
    distributed: bool = _opt(False, "one rank of torchrun / accelerate launch / srun: the ranks share the corpus and "
                                    "write one run (the cache must be on a shared file system)")
    save_logits: bool = _opt(False, "also store every router's raw logits (logits.npy, float16 [tokens, layers, "
                                    "experts]); a finished run without them gains them, keeping its id and routes",
                             form="save router logits")
    quantization: str = _opt("none", "load the weights quantized (bitsandbytes 8bit/4bit, fp8)", identity=True,
                             choices=("none", "8bit", "4bit", "fp8"))
    revision: str | None = _opt(None, "model revision (branch, tag or commit)", identity=True)
    trust_remote_code: bool = _opt(False, "run the model's own Python code (off by default; only for models you trust)",
                                   identity=True, form="trust remote code")
    cache_dir: str | None = _opt(None, "run cache (default: $MOE_TUI_CACHE or the user cache dir)", metavar="DIR")


@dataclass(frozen=True)
class OptionSpec:
    """One option as the renderers see it."""

    name: str                   # the field name, e.g. "batch_size"
    type: type                  # int | str | bool | dict (None stripped)
    default: Any                # dataclasses.MISSING for required options
    help: str
    identity: bool
    choices: tuple[str, ...] | None
    metavar: str | None
    positive: bool
    parse: Callable[[str], Any] | None
    fmt: Callable[[Any], str] | None
    form: str | None
    form_choices: tuple[tuple[str, str], ...] | None
    setting: bool
    optional: bool              # None is a valid value

    @property
    def flag(self) -> str:
        return "--" + self.name.replace("_", "-")

    @property
    def required(self) -> bool:
        return self.default is dataclasses.MISSING


def _base_type(tp: Any) -> tuple[type, bool]:
    args = typing.get_args(tp)
    if not args:
        return tp, False
    optional = type(None) in args
    kinds = [a for a in args if a is not type(None)]
    first = typing.get_origin(kinds[0]) or kinds[0]
    return first, optional


def _build_specs() -> tuple[OptionSpec, ...]:
    hints = typing.get_type_hints(ExtractOptions)
    out = []
    for f in dataclasses.fields(ExtractOptions):
        tp, optional = _base_type(hints[f.name])
        m = f.metadata
        out.append(OptionSpec(name=f.name, type=typing.get_origin(tp) or tp, default=f.default, help=m["help"],
                              identity=m["identity"], choices=m["choices"], metavar=m["metavar"],
                              positive=m["positive"], parse=m["parse"], fmt=m["fmt"], form=m["form"],
                              form_choices=m["form_choices"] or (tuple((c, c) for c in m["choices"])
                                                                 if m["choices"] else None),
                              setting=m["setting"], optional=optional))
    return tuple(out)


_SPECS = _build_specs()


def specs() -> tuple[OptionSpec, ...]:
    """Every option, in declaration order."""
    return _SPECS


def spec(name: str) -> OptionSpec:
    for s in _SPECS:
        if s.name == name:
            return s
    raise KeyError(name)


def identity_options() -> list[str]:
    """Names of the options that enter the run identity."""
    return [s.name for s in _SPECS if s.identity]


# ------------------------------------------------------------------------------------------ argparse
def positive_int(text: str) -> int:
    """argparse type: an integer > 0."""
    try:
        v = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not an integer") from None
    if v <= 0:
        raise argparse.ArgumentTypeError(f"{text!r} must be > 0")
    return v


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Add one argument per option to ``parser`` (``--batch-size N`` for ``batch_size`` ...)."""
    for s in _SPECS:
        kw: dict[str, Any] = {"help": s.help or None, "dest": s.name}
        if s.type is bool:
            kw["action"] = "store_true"
        else:
            if s.parse is not None:
                kw["type"] = s.parse
            elif s.type is int:
                kw["type"] = positive_int if s.positive else int
            if s.choices:
                kw["choices"] = list(s.choices)
            if s.metavar:
                kw["metavar"] = s.metavar
            if s.required:
                kw["required"] = True
            else:
                kw["default"] = s.default
        parser.add_argument(s.flag, **kw)


def from_namespace(args: argparse.Namespace) -> ExtractOptions:
    """The options parsed by a parser that :func:`add_arguments` filled."""
    return ExtractOptions(**{s.name: getattr(args, s.name) for s in _SPECS})


# ------------------------------------------------------------------------------------------ argv
def to_argv(opts: ExtractOptions) -> list[str]:
    """The ``moe-tui extract`` arguments that give back ``opts`` (options left at their default are omitted).

    Raises ValueError for a value no command line can carry (a device map given as a dict: save it as JSON)."""
    argv: list[str] = []
    for s in _SPECS:
        value = getattr(opts, s.name)
        if not s.required and value == s.default:
            continue
        if s.type is bool:
            if value:
                argv.append(s.flag)
            continue
        if value is None:
            raise ValueError(f"{s.name} cannot be None on a command line")
        if isinstance(value, dict) and s.fmt is None:
            raise ValueError(f"{s.name} given as a dict cannot go on a command line: save it as a JSON file")
        argv += [s.flag, s.fmt(value) if s.fmt is not None else str(value)]
    return argv


# ------------------------------------------------------------------------------------------ TUI
def form_fields() -> tuple[OptionSpec, ...]:
    """The options on the TUI's Home form, in order."""
    return tuple(s for s in _SPECS if s.form)


def setting_fields() -> tuple[OptionSpec, ...]:
    """The options whose default is a user setting (``config.json`` ``"extract"``)."""
    return tuple(s for s in _SPECS if s.setting)
