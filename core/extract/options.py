"""The extraction options, declared once.

:class:`ExtractOptions` is the one definition of what an extraction accepts. Each field carries its
type (the annotation), its default, its help text and whether it enters the run identity (a different
value makes a different run: the field changes which tokens are routed or how). Everything else is
rendered from these fields:

* the arguments of ``moe-tui extract`` (:func:`add_arguments`, :func:`from_namespace`);
* the command line of the child process the TUI runs (:func:`to_argv`);
* the TUI's saved extraction defaults and its Home form (:func:`form_fields`, :func:`setting_fields`).

:class:`GenerateOptions` declares ``moe-tui generate`` the same way; the options it shares with extraction are
the very fields of :class:`ExtractOptions` (same default, help and flag). The renderers take either class.

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
    "GenerateOptions",
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


def _same(name: str) -> Any:
    """The :class:`ExtractOptions` field ``name`` again (same default, help and renderings) for another class."""
    f = ExtractOptions.__dataclass_fields__[name]
    return field(default=f.default, metadata=f.metadata)


def _positive_float(text: str) -> float:
    try:
        v = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number") from None
    if not v > 0 or v == float("inf"):
        raise argparse.ArgumentTypeError(f"{text!r} must be a number > 0")
    return v


def _unit_float(text: str) -> float:
    v = _positive_float(text)
    if v > 1:
        raise argparse.ArgumentTypeError(f"{text!r} must lie in (0, 1]")
    return v


def _non_negative_int(text: str) -> int:
    try:
        v = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not an integer") from None
    if v < 0:
        raise argparse.ArgumentTypeError(f"{text!r} must be >= 0")
    return v


@dataclass
class GenerateOptions:
    """Everything ``moe-tui generate`` accepts (the field order is the order of ``--help``)."""

    model: str = _same("model")
    prompts: str = _opt(help="prompts: a text file (one prompt per line), JSONL (a \"prompt\" field, optional \"id\"), "
                             "or CoNLL-U (its sentences, with their gold words)", identity=True, metavar="FILE")
    prompt_format: str = _opt("auto", "prompts file format (auto: by extension and content)", identity=True,
                              choices=("auto", "text", "jsonl", "conllu"))
    max_prompts: int | None = _opt(None, "only the first N prompts", identity=True, metavar="N", positive=True)
    prompt_words: int | None = _opt(None, "keep the first N words of each prompt (CoNLL-U: its gold words; else "
                                          "whitespace-separated), so the model continues sentences whose rest is known",
                                    identity=True, metavar="N", positive=True)
    max_new_tokens: int = _opt(32, "tokens to generate after each prompt (fewer when it ends with end-of-sequence)",
                               identity=True, metavar="N", positive=True, form="new tokens per prompt")
    do_sample: bool = _opt(False, "sample the next token (default: greedy, the most likely one)", identity=True,
                           form="sample (else greedy)")
    temperature: float = _opt(1.0, "with --do-sample: divide the next-token logits by T", identity=True, metavar="T",
                              parse=_positive_float)
    top_p: float = _opt(1.0, "with --do-sample: keep the smallest set of tokens whose probability reaches P",
                        identity=True, metavar="P", parse=_unit_float)
    top_k_sampling: int = _opt(0, "with --do-sample: keep the K most likely tokens (0: no such cut)", identity=True,
                               metavar="K", parse=_non_negative_int)
    seed: int = _opt(0, "seed of --do-sample (every batch draws from its own stream of it, so a resumed run "
                        "draws the same)", identity=True)
    tagger: str = _opt("builtin", "POS tagger of the generated (and prompt) words: builtin, spacy:MODEL, stanza:LANG "
                                  "or a folder made by moe-tui tagger train", identity=True,
                       metavar="builtin|spacy:MODEL|stanza:LANG|DIR", form="tagger")
    prompt_pos: str = _opt("tagger", "POS of the prompt words: tagger (the same tagger as the continuation) or gold "
                                     "(CoNLL-U prompts: their annotated tags)", identity=True,
                           choices=("tagger", "gold"))
    tagset: str = _same("tagset")
    batch_size: int = _same("batch_size")
    dtype: str = _same("dtype")
    device: str = _same("device")
    device_map: str | dict | None = _same("device_map")
    max_memory: dict[str, str] | None = _same("max_memory")
    offload_folder: str | None = _same("offload_folder")
    save_logits: bool = _same("save_logits")
    verify: bool = _opt(False, "check the routes afterwards: run every prompt + continuation once more in one "
                               "teacher-forced forward pass and record, in the run, how many (token, layer) expert "
                               "sets agree and the router-logit margin of each that does not")
    quantization: str = _same("quantization")
    revision: str | None = _same("revision")
    trust_remote_code: bool = _same("trust_remote_code")
    cache_dir: str | None = _same("cache_dir")


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


def _build_specs(cls: type = ExtractOptions) -> tuple[OptionSpec, ...]:
    hints = typing.get_type_hints(cls)
    out = []
    for f in dataclasses.fields(cls):
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
_SPECS_OF = {ExtractOptions: _SPECS, GenerateOptions: _build_specs(GenerateOptions)}


def specs(cls: type = ExtractOptions) -> tuple[OptionSpec, ...]:
    """Every option of ``cls`` (:class:`ExtractOptions` or :class:`GenerateOptions`), in declaration order."""
    return _SPECS_OF[cls]


def spec(name: str, cls: type = ExtractOptions) -> OptionSpec:
    for s in _SPECS_OF[cls]:
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


def add_arguments(parser: argparse.ArgumentParser, cls: type = ExtractOptions) -> None:
    """Add one argument per option of ``cls`` to ``parser`` (``--batch-size N`` for ``batch_size`` ...)."""
    for s in _SPECS_OF[cls]:
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


def from_namespace(args: argparse.Namespace, cls: type = ExtractOptions):
    """The options (of ``cls``) parsed by a parser that :func:`add_arguments` filled."""
    return cls(**{s.name: getattr(args, s.name) for s in _SPECS_OF[cls]})


# ------------------------------------------------------------------------------------------ argv
def to_argv(opts: ExtractOptions | GenerateOptions) -> list[str]:
    """The ``moe-tui extract`` (or ``generate``) arguments that give back ``opts`` (options left at their default
    are omitted).

    Raises ValueError for a value no command line can carry (a device map given as a dict: save it as JSON)."""
    argv: list[str] = []
    for s in _SPECS_OF[type(opts)]:
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
def form_fields(cls: type = ExtractOptions) -> tuple[OptionSpec, ...]:
    """The options of ``cls`` on the TUI's Home form, in order."""
    return tuple(s for s in _SPECS_OF[cls] if s.form)


def setting_fields(cls: type = ExtractOptions) -> tuple[OptionSpec, ...]:
    """The options whose default is a user setting (``config.json`` ``"extract"``, or ``"generate"``)."""
    return tuple(s for s in _SPECS_OF[cls] if s.setting)
