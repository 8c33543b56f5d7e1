"""Bad input through the CLI: every case is one line on stderr, a non-zero exit, and nothing written to the
run cache (the cache's files are compared byte for byte before and after). CRLF and BOM corpora work, and a
sentence longer than the model's context is skipped and counted while the rest is extracted.

(tests/core/test_corpus.py checks the reader's messages and file:line; here the same inputs go through
``moe-tui extract`` end to end, with a complete run already in the cache that must stay untouched.)
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest

from moe_tui.cache.store import RunStore
from tests.helpers import assert_one_line_error, cli, ex_opts, run_bytes, stray_temp_files, tiny_model, tree


def row(i, form, upos="NOUN", misc="_"):
    return "\t".join([str(i), form, form.lower(), upos, "_", "_", "0", "dep", "_", misc])


GOOD = "# sent_id = a\n# text = the cat sat\n" + "\n".join(
    [row(1, "the", "DET"), row(2, "cat"), row(3, "sat", "VERB")]) + "\n\n" + \
    "# sent_id = b\n# text = dogs run\n" + "\n".join([row(1, "dogs"), row(2, "run", "VERB")]) + "\n\n"


@pytest.fixture(scope="module")
def seeded_cache(tmp_path_factory):
    """A cache that already holds one complete run (it must never change)."""
    from moe_tui.core.extract.pipeline import extract

    cache = tmp_path_factory.mktemp("bad_input_cache")
    corpus = tmp_path_factory.mktemp("bad_input_corpus") / "good.conllu"
    corpus.write_text(GOOD)
    run_dir = extract(ex_opts(cache, data=corpus, batch_size=2))
    RunStore(cache).open(run_dir.name)  # the first open records .verified.json; later opens write nothing
    return cache


@pytest.fixture()
def cache(seeded_cache, tmp_path):
    c = tmp_path / "cache"
    shutil.copytree(seeded_cache, c)
    return c


def _extract_args(cache, data, model=None, *extra):
    return ["extract", "--model", model or tiny_model(), "--data", data, "--device", "cpu", "--dtype", "float32",
            "--progress", "none", "--cache-dir", cache, *extra]


def _check_untouched(cache, before_tree, before_runs):
    assert tree(cache) == before_tree
    assert RunStore(cache).list_runs() == before_runs
    assert stray_temp_files(cache) == []


# --------------------------------------------------------------------------- corpora
BAD_CORPORA = {
    "empty_file": (b"", "empty file"),
    "blank_lines_only": (b"\n\n  \n", "empty file"),
    "binary_file": (b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR\x00\x00", "binary file (NUL byte)"),
    "not_utf8": (("# text = caf\u00e9\n" + row(1, "caf\u00e9") + "\n").encode("latin-1"), ":1: not valid UTF-8"),
    "wrong_column_count": ((row(1, "a") + "\n1\tb\tb\tNOUN\n").encode(), ":2: expected 10 tab-separated"),
    "non_numeric_id": ((row(1, "a") + "\n" + row("two", "b") + "\n").encode(), ":2: bad word id 'two'"),
    "broken_multiword_range": (("\t".join(["1-3", "dont"] + ["_"] * 8) + "\n" + row(1, "do") + "\n"
                                + row(2, "nt", "PART") + "\n").encode(), ":1: broken multiword range"),
    "missing_upos": ((row(1, "a") + "\n" + row(2, "b", "_") + "\n").encode(), ":2: missing UPOS tag ('_')"),
    "unknown_tag": ((row(1, "a", "NN") + "\n").encode(), ":1: unknown UPOS tag 'NN'"),
    "sentence_without_tokens": (GOOD.encode() + ("\t".join(["1.1", "gone"] + ["_"] * 8) + "\n").encode(),
                                ":12: sentence with no words"),
    "comments_only": (b"# newdoc id = x\n# text = nothing here\n", "no sentences found"),
    "directory_given": (None, "is a directory"),
    "missing_file": (False, "no such file"),
}


@pytest.mark.slow
@pytest.mark.parametrize("case", sorted(BAD_CORPORA))
def test_bad_corpus_is_one_line_and_writes_nothing(cache, tmp_path, capsys, case):
    data, pattern = BAD_CORPORA[case]
    path = tmp_path / f"{case}.conllu"
    if data is None:
        path.mkdir()
    elif data is not False:
        path.write_bytes(data)
    before_tree, before_runs = tree(cache), RunStore(cache).list_runs()
    code, out, err = cli(capsys, *_extract_args(cache, path))
    line = assert_one_line_error(code, err, pattern)
    assert str(path) in line
    assert out == ""
    _check_untouched(cache, before_tree, before_runs)


@pytest.mark.slow
def test_crlf_and_bom_corpora_work(cache, tmp_path):
    """Windows line endings and a UTF-8 BOM give the same sentences, spans and routes as the plain file."""
    from moe_tui.core.extract.pipeline import extract

    plain = tmp_path / "plain.conllu"
    plain.write_text(GOOD)
    crlf_bom = tmp_path / "windows.conllu"
    crlf_bom.write_bytes(b"\xef\xbb\xbf" + GOOD.replace("\n", "\r\n").encode())
    a = RunStore(cache).open(extract(ex_opts(cache, data=plain, batch_size=2)).name)
    b = RunStore(cache).open(extract(ex_opts(cache, data=crlf_bom, batch_size=2)).name)
    assert a.run_id != b.run_id  # a different file (hash), so its own run ...
    assert b.sentences == a.sentences and b.sentences[0]["text"] == "the cat sat"
    for name in ("token_ids", "offsets", "pos", "experts", "weights"):  # ... with the same content
        np.testing.assert_array_equal(getattr(a, name), getattr(b, name))
    assert b.manifest["alignment"]["skipped_too_long"] == 0


@pytest.mark.slow
def test_sentence_longer_than_the_context_is_skipped_and_counted(tmp_path):
    """A 10,000-word sentence (the tiny model's context is 128 tokens) is skipped, never cut; the rest is kept."""
    from moe_tui.core.extract.pipeline import extract

    long_words = "\n".join(row(i, "word") for i in range(1, 10_001))
    text = GOOD + "# sent_id = long\n" + long_words + "\n\n" + "# sent_id = c\n" + row(1, "end") + "\n"
    corpus = tmp_path / "long.conllu"
    corpus.write_text(text)
    run = RunStore(tmp_path / "c").open(extract(ex_opts(tmp_path / "c", data=corpus, batch_size=4)).name)
    m = run.manifest
    assert m["alignment"]["skipped_too_long"] == 1
    assert m["corpus"]["n_sentences"] == 4
    assert [s["skipped"] for s in run.sentences] == [False, False, True, False]
    lengths = np.diff(run.sentence_offsets).tolist()
    assert lengths[2] == 0 and all(n > 0 for i, n in enumerate(lengths) if i != 2)
    assert run.sentences[3]["text"] == "end"


# --------------------------------------------------------------------------- models
def _copy_model(tmp_path, name) -> Path:
    dst = tmp_path / name
    shutil.copytree(tiny_model(), dst)
    return dst


def _model_case(case, tmp_path) -> Path:
    if case == "path_does_not_exist":
        return tmp_path / "no_such_model"
    if case == "folder_without_config":
        d = _copy_model(tmp_path, "no_config")
        (d / "config.json").unlink()
        return d
    if case == "config_is_not_json":
        d = _copy_model(tmp_path, "garbled")
        (d / "config.json").write_text("{ this is not json")
        return d
    if case == "not_moe":
        import torch
        from transformers import LlamaConfig, LlamaForCausalLM

        d = tmp_path / "dense"
        torch.manual_seed(0)
        LlamaForCausalLM(LlamaConfig(vocab_size=512, hidden_size=32, intermediate_size=48, num_hidden_layers=2,
                                     num_attention_heads=4, num_key_value_heads=2,
                                     max_position_embeddings=128)).save_pretrained(str(d))
        for f in ("tokenizer.json", "tokenizer_config.json"):
            shutil.copy(tiny_model() / f, d / f)
        return d
    if case == "unknown_architecture":
        d = _copy_model(tmp_path, "foo")
        cfg = json.loads((d / "config.json").read_text())
        cfg.update(model_type="foo_moe", architectures=["FooMoeForCausalLM"])
        (d / "config.json").write_text(json.dumps(cfg))
        return d
    if case == "remote_code_not_allowed":
        d = tmp_path / "custom"
        d.mkdir()
        (d / "config.json").write_text(json.dumps({
            "model_type": "custom_moe", "architectures": ["CustomMoeForCausalLM"],
            "auto_map": {"AutoConfig": "configuration_custom.CustomConfig",
                         "AutoModelForCausalLM": "modeling_custom.CustomMoeForCausalLM"}}))
        return d
    if case == "weights_do_not_match_config":
        d = _copy_model(tmp_path, "mismatch")
        cfg = json.loads((d / "config.json").read_text())
        cfg["hidden_size"] = 48
        (d / "config.json").write_text(json.dumps(cfg))
        return d
    raise AssertionError(case)


BAD_MODELS = {
    "path_does_not_exist": "does not exist",
    "folder_without_config": "no config.json",
    "config_is_not_json": "cannot read",
    "not_moe": "has no MoE router",
    "unknown_architecture": "'foo_moe', which transformers",
    "remote_code_not_allowed": "needs --trust-remote-code",
    "weights_do_not_match_config": "weights of",
}


@pytest.mark.parametrize("case", sorted(BAD_MODELS))
def test_bad_model_is_one_line_and_writes_nothing(cache, tmp_path, capsys, case):
    model = _model_case(case, tmp_path)
    corpus = tmp_path / "good.conllu"
    corpus.write_text(GOOD)
    before_tree, before_runs = tree(cache), RunStore(cache).list_runs()
    code, out, err = cli(capsys, *_extract_args(cache, corpus, model))
    line = assert_one_line_error(code, err, BAD_MODELS[case])
    assert str(model.name) in line
    _check_untouched(cache, before_tree, before_runs)
    if case not in ("weights_do_not_match_config", "not_moe"):  # these need the weights to tell
        code, out, err = cli(capsys, "inspect", model)
        assert_one_line_error(code, err, BAD_MODELS[case])


# --------------------------------------------------------------------------- CLI
def test_unknown_run_id(cache, tmp_path, capsys):
    before_tree, before_runs = tree(cache), RunStore(cache).list_runs()
    for argv in (["export-routes", "0123456789abcdef", "--out", tmp_path / "r.csv"],
                 ["report", "0123456789abcdef", "--out", tmp_path / "rep"],
                 ["diff", "0123456789abcdef", before_runs[0].run_id]):
        code, out, err = cli(capsys, *argv, "--cache-dir", cache)
        assert_one_line_error(code, err, "unknown run '0123456789abcdef'")
    assert not (tmp_path / "r.csv").exists() and not (tmp_path / "rep").exists()
    _check_untouched(cache, before_tree, before_runs)


def test_report_on_an_unfinished_run(cache, tmp_path, capsys):
    """A partial run (a cancelled extraction) is refused with a hint, and resumes later."""
    from moe_tui.core.extract.pipeline import extract
    from moe_tui.errors import Cancelled

    corpus = tmp_path / "c.conllu"
    corpus.write_text(GOOD * 3)
    calls = {"n": 0}

    def cancel_after_one():
        calls["n"] += 1
        return calls["n"] > 1

    with pytest.raises(Cancelled):
        extract(ex_opts(cache, data=corpus, batch_size=1), should_cancel=cancel_after_one)
    [partial] = [r for r in RunStore(cache).list_runs() if r.status == "partial"]
    before_tree, before_runs = tree(cache), RunStore(cache).list_runs()
    for argv in (["report", partial.run_id, "--out", tmp_path / "rep"],
                 ["export-routes", partial.run_id[:10], "--out", tmp_path / "r.csv"]):
        code, out, err = cli(capsys, *argv, "--cache-dir", cache)
        assert_one_line_error(code, err, f"run {partial.run_id} is not finished", "run the same extraction again")
    assert not (tmp_path / "rep").exists() and not (tmp_path / "r.csv").exists()
    _check_untouched(cache, before_tree, before_runs)


def test_output_under_a_regular_file(cache, tmp_path, capsys):
    """--out below a regular file cannot be written (works as root too, unlike chmod)."""
    blocker = tmp_path / "x" / "file.txt"
    blocker.parent.mkdir()
    blocker.write_text("keep me\n")
    run_id = RunStore(cache).list_runs()[0].run_id
    before_tree, before_runs = tree(cache), RunStore(cache).list_runs()
    code, out, err = cli(capsys, "export-routes", run_id, "--out", blocker / "out.csv", "--cache-dir", cache)
    assert_one_line_error(code, err, "cannot write", "file.txt/out.csv")
    code, out, err = cli(capsys, "export-routes", run_id, "--out", blocker / "out.parquet", "--cache-dir", cache)
    assert_one_line_error(code, err, "cannot write", "file.txt/out.parquet")
    code, out, err = cli(capsys, "report", run_id, "--out", blocker / "rep", "--cache-dir", cache)
    assert_one_line_error(code, err, "file.txt/rep")
    assert blocker.read_text() == "keep me\n" and sorted(p.name for p in blocker.parent.iterdir()) == ["file.txt"]
    _check_untouched(cache, before_tree, before_runs)
    assert run_bytes(before_runs[0].path)  # the run is still whole


def test_export_routes_creates_the_folders_of_out(cache, tmp_path, capsys):
    """--out in folders that do not exist yet: they are made, and the file is the one written into an existing folder."""
    run_id = RunStore(cache).list_runs()[0].run_id
    (tmp_path / "flat").mkdir()
    for name in ("r.csv", "r.parquet"):
        code, out, err = cli(capsys, "export-routes", run_id, "--out", tmp_path / "flat" / name, "--cache-dir", cache)
        assert code == 0, err
        deep = tmp_path / "new" / "deeper" / name
        code, out, err = cli(capsys, "export-routes", run_id, "--out", deep, "--cache-dir", cache)
        assert code == 0, err
        assert out.strip() == str(deep.resolve())
        assert deep.read_bytes() == (tmp_path / "flat" / name).read_bytes()


def test_bad_probe_options_are_one_line(cache, tmp_path, capsys):
    """An engine option that cannot work fails at once, in one line, before any probe is trained."""
    run_id = RunStore(cache).list_runs()[0].run_id
    before_tree, before_runs = tree(cache), RunStore(cache).list_runs()
    code, out, err = cli(capsys, "report", run_id, "--out", tmp_path / "rep", "--probe", "--early-stopping",
                         "--cache-dir", cache)
    assert_one_line_error(code, err, "--early-stopping needs --probe-engine sklearn")
    code, out, err = cli(capsys, "report", run_id, "--out", tmp_path / "rep", "--probe", "--probe-device", "tpu",
                         "--cache-dir", cache)
    assert_one_line_error(code, err, "probe device must be auto, cpu, cuda or cuda:N")
    with pytest.raises(SystemExit) as exc:   # argparse: usage line + one error line
        cli(capsys, "report", run_id, "--out", tmp_path / "rep", "--probe", "--probe-engine", "jax", "--cache-dir", cache)
    assert exc.value.code == 2 and "invalid choice: 'jax'" in capsys.readouterr().err
    assert not (tmp_path / "rep").exists()
    _check_untouched(cache, before_tree, before_runs)
