"""The extraction options are declared once (moe_tui.core.extract.options) and every rendering agrees with it."""

from __future__ import annotations

import dataclasses

import pytest

from moe_tui.cli import build_parser
from moe_tui.core.extract import options as O
from moe_tui.core.extract.corpus import read_corpus
from moe_tui.core.extract.options import ExtractOptions, from_namespace, to_argv
from moe_tui.core.extract.pipeline import build_identity

CONLLU = (
    "# sent_id = a\n# text = The cat sat .\n"
    "1\tThe\tthe\tDET\tDT\t_\t2\tdet\t_\t_\n2\tcat\tcat\tNOUN\tNN\t_\t3\tnsubj\t_\t_\n"
    "3\tsat\tsit\tVERB\tVBD\t_\t0\troot\t_\tSpaceAfter=No\n4\t.\t.\tPUNCT\t.\t_\t3\tpunct\t_\t_\n\n"
    "# sent_id = b\n# text = Dogs can run .\n"
    "1\tDogs\tdog\tNOUN\tNNS\t_\t3\tnsubj\t_\t_\n2\tcan\tcan\tAUX\tMD\t_\t3\taux\t_\t_\n"
    "3\trun\trun\tVERB\tVB\t_\t0\troot\t_\tSpaceAfter=No\n4\t.\t.\tPUNCT\t.\t_\t3\tpunct\t_\t_\n\n"
)


def parse(argv: list[str]) -> ExtractOptions:
    """What ``moe-tui extract ARGV`` runs with."""
    return from_namespace(build_parser().parse_args(["extract", *argv]))


def test_cli_defaults_are_the_declared_defaults():
    assert parse(["--model", "m", "--data", "d"]) == ExtractOptions(model="m", data="d")
    assert ExtractOptions(model="m", data="d").batch_size == 16   # the one place 16 is written


@pytest.mark.parametrize("opts", [
    ExtractOptions(model="m", data="d.conllu"),
    ExtractOptions(model="org/Mixtral-8x7B", data="/data/x y.conllu", tagset="paper15", format="conllu",
                   pos_column="xpos", max_sentences=10, sample=5, seed=3, batch_size=2, batch_tokens=512,
                   dtype="bfloat16", device="cuda:1", device_map="auto", max_memory={"0": "70GiB", "cpu": "200GiB"},
                   offload_folder="/tmp/off", distributed=True, quantization="4bit", revision="main",
                   trust_remote_code=True, cache_dir="/scratch/cache"),
])
def test_argv_round_trips_through_the_cli_parser(opts):
    """The child command line the TUI builds gives the CLI exactly the options it was built from."""
    assert parse(to_argv(opts)) == opts


def test_argv_omits_defaults_and_refuses_what_no_command_line_can_carry():
    assert to_argv(ExtractOptions(model="m", data="d")) == ["--model", "m", "--data", "d"]
    assert to_argv(ExtractOptions(model="m", data="d", trust_remote_code=True))[-1] == "--trust-remote-code"
    with pytest.raises(ValueError, match="JSON"):
        to_argv(ExtractOptions(model="m", data="d", device_map={"model.layers.0": 0}))


def test_every_field_has_help_and_the_cli_flag_for_it():
    parser_flags = set()
    extract = build_parser()._subparsers._group_actions[0].choices["extract"]
    for action in extract._actions:
        parser_flags.update(action.option_strings)
    for s in O.specs():
        assert s.help, s.name
        assert s.flag in parser_flags, s.flag
    assert [s.name for s in O.specs()] == [f.name for f in dataclasses.fields(ExtractOptions)]


def test_settings_and_home_form_render_the_declared_fields():
    from moe_tui.tui.settings import ExtractDefaults, Settings

    names = [s.name for s in O.setting_fields()]
    assert list(ExtractDefaults.model_fields) == names
    d = Settings().extract
    for s in O.setting_fields():
        assert getattr(d, s.name) == s.default
    assert {s.name for s in O.form_fields()} >= set(names) | {"trust_remote_code"}
    assert not O.spec("trust_remote_code").setting      # never remembered: every extraction asks again
    with pytest.raises(ValueError):
        Settings.model_validate({"extract": {"batch_size": 0}})


def _identity(tmp_path, opts: ExtractOptions) -> dict:
    """The run identity of ``opts``: the corpus read as extract reads it, the model fingerprint as
    resolve_model_fingerprint returns it for a folder without a hub revision (the revision as given)."""
    corpus = read_corpus(opts.data, format=opts.format, tagset=opts.tagset, pos_column=opts.pos_column,
                         max_sentences=opts.max_sentences, sample=opts.sample, seed=opts.seed)
    fp = {"revision": opts.revision, "commit_hash": None, "config_hash": "c" * 64}
    return build_identity(opts, corpus, fp)


def test_identity_flag_says_which_options_make_a_different_run(tmp_path):
    data = tmp_path / "tiny.conllu"
    data.write_text(CONLLU)
    other = tmp_path / "other.conllu"
    other.write_text(CONLLU.replace("cat", "dog"))
    base = ExtractOptions(model=str(tmp_path / "model"), data=str(data))
    changed = {"model": str(tmp_path / "model2"), "data": str(other), "tagset": "paper15", "format": "conllu",
               "pos_column": "xpos", "max_sentences": 1, "sample": 1, "seed": 7, "batch_size": 3,
               "batch_tokens": 64, "dtype": "float32", "device": "cpu", "device_map": "auto",
               "max_memory": {"cpu": "1GiB"}, "offload_folder": str(tmp_path), "distributed": True,
               "quantization": "8bit", "revision": "v2", "trust_remote_code": True, "cache_dir": str(tmp_path),
               "save_logits": True}
    assert set(changed) == {s.name for s in O.specs()}
    ref = _identity(tmp_path, base)
    for s in O.specs():
        opts = dataclasses.replace(base, **{s.name: changed[s.name]})
        if s.name == "format":  # the format as read enters the identity: "auto" read as conllu is "conllu"
            assert _identity(tmp_path, opts) == ref and ref["corpus"]["format"] == "conllu" and s.identity
            ptb = tmp_path / "tiny.txt"
            ptb.write_text("The\tDT\ncat\tNN\n\n")
            as_ptb = _identity(tmp_path, dataclasses.replace(base, data=str(ptb), format="ptb"))
            assert as_ptb["corpus"]["format"] == "ptb"
            continue
        assert (_identity(tmp_path, opts) != ref) == s.identity, s.name


def test_generate_options_round_trip_and_share_the_extraction_fields():
    """``moe-tui generate``: the child command line the TUI builds gives the CLI the options it was built from; the
    options shared with extraction are the very same declarations."""
    from moe_tui.core.extract.options import GenerateOptions
    from moe_tui.tui.worker import build_generate_command

    opts = GenerateOptions(model="m", prompts="/p q.jsonl", prompt_format="jsonl", max_prompts=3, prompt_words=4,
                           max_new_tokens=9, do_sample=True, temperature=0.7, top_p=0.9, top_k_sampling=5, seed=2,
                           tagger="spacy:en_core_web_sm", prompt_pos="gold", tagset="paper15", batch_size=2,
                           dtype="bfloat16", save_logits=True, verify=True, cache_dir="/c")
    cmd = build_generate_command(opts)
    assert cmd[3] == "generate" and cmd[-2:] == ["--progress", "json"]
    assert from_namespace(build_parser().parse_args(cmd[3:-2]), GenerateOptions) == opts
    assert from_namespace(build_parser().parse_args(["generate", "--model", "m", "--prompts", "p"]),
                          GenerateOptions) == GenerateOptions(model="m", prompts="p")
    for s in O.specs(GenerateOptions):
        if s.name in {f.name for f in dataclasses.fields(ExtractOptions)} and s.name not in ("seed",):
            assert s == O.spec(s.name), s.name
