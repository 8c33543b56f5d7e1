"""moe-tui generate on tiny models of the paper's architectures.

Oracles: the routes recorded while decoding incrementally (KV cache, left-padded batches) against the routes of
one teacher-forced forward pass over prompt + continuation read by the extraction capture (itself checked against
the experts the MoE blocks use, tests/core/test_capture.py), with each difference's router-logit margin read from
transformers' own ``output_router_logits``; the generated tokens against a plain ``generate`` of each prompt alone;
a sampled run against itself (same seed) and against a resumed one; the decoded offsets against the tokenizer.
"""

from __future__ import annotations

import json

import numpy as np
import pytest

torch = pytest.importorskip("torch")

import moe_tui  # noqa: E402
from moe_tui.core.extract.capture import RouteCapture  # noqa: E402
from moe_tui.core.extract.models import load_model  # noqa: E402
from moe_tui.core.extract.prompts import read_prompts  # noqa: E402
from moe_tui.errors import Cancelled, GenerationError  # noqa: E402
from tests.factories_model import build_tiny_model  # noqa: E402

PAPER_ARCHITECTURES = ("mixtral", "olmoe", "qwen2_moe", "deepseek_v2", "dbrx", "phimoe")
QUICK: set[str] = set()  # every generation costs seconds (a model built, loaded, run twice): the whole suite runs them
PROMPTS = ["the cat sat on the mat", "a dog", "she reads a good book in the old house", "John eats",
           "the birds sing in the tree after the rain"]
NEW = 8


@pytest.fixture(autouse=True, scope="module")
def _one_thread():
    """Tiny models run fastest on one thread (and a shared CI machine is not oversubscribed)."""
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)


def arch_params():
    return [pytest.param(t, id=t, marks=() if t in QUICK else pytest.mark.slow) for t in PAPER_ARCHITECTURES]


@pytest.fixture(scope="module")
def model_path(tmp_path_factory):
    built: dict[str, object] = {}

    def get(model_type: str):
        if model_type not in built:
            built[model_type] = build_tiny_model(model_type, tmp_path_factory.mktemp(model_type), seed=0)
        return built[model_type]

    return get


def prompts_file(tmp_path, prompts=PROMPTS, name="prompts.txt"):
    p = tmp_path / name
    p.write_text("\n".join(prompts) + "\n")
    return p


def generated(run, s: int) -> list[int]:
    a, b = int(run.sentence_offsets[s]), int(run.sentence_offsets[s + 1])
    origin = np.asarray(run.origin[a:b])
    return np.asarray(run.token_ids[a:b])[origin == 1].tolist()


def router_margins(loaded, ids: list[int]) -> list[np.ndarray]:
    """Per MoE layer, ``[n, E]`` router logits of one unpadded forward pass, from transformers' own
    ``output_router_logits`` (independent of the capture)."""
    with torch.inference_mode():
        out = loaded.base(input_ids=torch.tensor([ids]), output_router_logits=True, use_cache=False)
    return [r.float().reshape(len(ids), -1).numpy() for r in out.router_logits]


@pytest.mark.parametrize("model_type", arch_params())
def test_incremental_routes_equal_one_teacher_forced_pass(model_path, tmp_path, model_type):
    """... and left padding in batches changes no route (the same prompts generated one by one)."""
    path = model_path(model_type)
    run = moe_tui.generate(path, prompts_file(tmp_path), max_new_tokens=NEW, batch_size=3, verify=True,
                           cache_dir=str(tmp_path / "cache"))
    alone = moe_tui.generate(path, prompts_file(tmp_path), max_new_tokens=NEW, batch_size=1,
                             cache_dir=str(tmp_path / "alone"))
    assert alone.run_id == run.run_id  # greedy: the batch size is no part of the run
    assert np.array_equal(alone.token_ids, run.token_ids)
    assert np.array_equal(np.sort(alone.experts, -1), np.sort(run.experts, -1))
    loaded = load_model(path, device="cpu", keep_lm=True)
    off = np.asarray(run.sentence_offsets)
    total = equal = 0
    margins = []
    with RouteCapture(loaded) as cap:
        for s in range(run.n_sentences):
            a, b = int(off[s]), int(off[s + 1])
            ids = np.asarray(run.token_ids[a:b]).astype(np.int64)[None]
            forced, _w = cap.run(ids, np.ones_like(ids))
            same = (np.sort(forced[0], -1) == np.sort(np.asarray(run.experts[a:b]), -1)).all(-1)
            total += same.size
            equal += int(same.sum())
            if not same.all():
                logits = router_margins(loaded, ids[0].tolist())
                for t, li in zip(*np.nonzero(~same)):
                    srt = np.sort(logits[li][t])[::-1]
                    k = run.top_k
                    margins.append(float(srt[k - 1] - srt[k]))
    assert total == run.n_tokens * len(run.moe_layers)
    assert equal / total >= 0.999, f"{total - equal} of {total} differ; margins {margins}"
    assert all(m < 1e-3 for m in margins), f"differences that are no near-tie: margins {margins}"
    ver = run.manifest["verification"]  # the tool's own check says the same
    assert (ver["token_layers"], ver["differing"]) == (total, total - equal)
    # the tokens are those of a plain greedy generate of each prompt alone
    lm = loaded.lm
    tok = loaded.tokenizer
    eos = run.manifest["generation"]["settings"]["eos_token_ids"]
    for s, prompt in enumerate(PROMPTS):
        ids = tok(prompt, return_tensors="pt")["input_ids"]
        with torch.inference_mode():
            out = lm.generate(ids, max_new_tokens=NEW, do_sample=False, eos_token_id=eos,
                              pad_token_id=tok.pad_token_id)
        assert generated(run, s) == out[0, ids.shape[1]:].tolist(), prompt
    # every prompt token is origin 0, every generated one origin 1, in order
    for s, prompt in enumerate(PROMPTS):
        n_prompt = len(tok(prompt)["input_ids"])
        a, b = int(off[s]), int(off[s + 1])
        assert np.asarray(run.origin[a:b]).tolist() == [0] * n_prompt + [1] * (b - a - n_prompt)


@pytest.mark.slow
def test_sampling_with_a_seed_reproduces_tokens_and_routes_and_a_resumed_run(model_path, tmp_path):
    path = model_path("mixtral")
    opts = dict(max_new_tokens=NEW, do_sample=True, temperature=1.5, top_p=0.95, seed=7, batch_size=2)
    a = moe_tui.generate(path, prompts_file(tmp_path), cache_dir=str(tmp_path / "a"), **opts)
    b = moe_tui.generate(path, prompts_file(tmp_path), cache_dir=str(tmp_path / "b"), **opts)
    for name in ("token_ids", "experts", "weights", "origin"):
        assert np.array_equal(getattr(a, name), getattr(b, name)), name
    other = moe_tui.generate(path, prompts_file(tmp_path), cache_dir=str(tmp_path / "c"), **{**opts, "seed": 8})
    assert other.run_id != a.run_id and not np.array_equal(other.token_ids, a.token_ids)
    # cancelled after its first batch, then resumed: the run an uninterrupted one makes
    batches = {"n": 0}

    def count(ev) -> None:
        if type(ev).__name__ == "Progress":
            batches["n"] += 1

    with pytest.raises(Cancelled):
        _generate_cancelled(path, tmp_path, opts, batches, count)
    shards = list((tmp_path / "r").glob("*/shards/shard-*.npz"))
    assert len(shards) == 1
    resumed = moe_tui.generate(path, prompts_file(tmp_path), cache_dir=str(tmp_path / "r"), **opts)
    for name in ("token_ids", "experts", "weights", "origin"):
        assert np.array_equal(getattr(resumed, name), getattr(a, name)), name
    assert resumed.manifest["generation"]["outputs"] == a.manifest["generation"]["outputs"]


def _generate_cancelled(path, tmp_path, opts, batches, count):
    from moe_tui.core.extract.generation import generate
    from moe_tui.core.extract.options import GenerateOptions

    o = GenerateOptions(model=str(path), prompts=str(prompts_file(tmp_path)), cache_dir=str(tmp_path / "r"), **opts)
    return generate(o, progress=count, should_cancel=lambda: batches["n"] >= 1)


@pytest.mark.slow
def test_generated_subwords_get_the_offsets_and_tags_of_their_words(tmp_path):
    from tests.factories_model import ewt_tiny_model

    path = ewt_tiny_model("mixtral")
    prompts = ["The city council met on Tuesday", "I would like to", "Please send me the"]
    run = moe_tui.generate(path, prompts_file(tmp_path, prompts), max_new_tokens=12, cache_dir=str(tmp_path / "c"))
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(str(path))
    off = np.asarray(run.sentence_offsets)
    outputs = run.manifest["generation"]["outputs"]
    for s, prompt in enumerate(prompts):
        rec = run.sentences[s]
        text = rec["text"]
        assert text == prompt + outputs[s]["generated_text"]
        a, b = int(off[s]), int(off[s + 1])
        for g in range(a, b):
            if run.origin[g] != 1 or run.special[g]:
                continue
            piece = tok.decode([int(run.token_ids[g])])
            x, y = (int(v) for v in run.offsets[g])
            if "\ufffd" not in piece and piece.strip():
                assert text[x:y].strip() == piece.strip(), (text, piece)
            wi = int(run.word_index[g])
            if wi >= 0:  # a token inside a word takes that word's tag
                word = rec["words"][wi]
                assert word[2] < y and x < word[3]
                assert run.tags[int(run.pos[g])] == word[1]
    assert run.manifest["tagging"]["accuracy"]["data"] == "en_ewt-ud-test.conllu"


def test_read_prompts_formats(tmp_path):
    t = prompts_file(tmp_path, ["one two", "", "three"])
    p = read_prompts(t)
    assert p.format == "text" and [x.text for x in p.items] == ["one two", "three"]
    assert [x.id for x in p.items] == ["line 1", "line 3"]
    j = tmp_path / "p.jsonl"
    j.write_text('{"prompt": "a b", "id": "x"}\n{"prompt": "c"}\n')
    p = read_prompts(j, max_prompts=1)
    assert [(x.id, x.text) for x in p.items] == [("x", "a b")] and p.n_in_file == 2
    c = tmp_path / "p.conllu"
    c.write_text("# sent_id = s1\n# text = Dogs bark.\n1\tDogs\tdog\tNOUN\t_\t_\t2\tnsubj\t_\t_\n"
                 "2\tbark\tbark\tVERB\t_\t_\t0\troot\t_\tSpaceAfter=No\n3\t.\t.\tPUNCT\t_\t_\t2\tpunct\t_\t_\n")
    p = read_prompts(c)
    assert p.format == "conllu" and p.items[0].id == "s1" and [w.upos for w in p.items[0].words] == ["NOUN", "VERB",
                                                                                                      "PUNCT"]
    cut = read_prompts(c, prompt_words=2).items[0]
    assert cut.text == "Dogs bark" and [w.form for w in cut.words] == ["Dogs", "bark"]
    assert read_prompts(t, prompt_words=1).items[0].text == "one"
    j.write_text('{"prompt": "a"}\n{"text": "b"}\n')
    with pytest.raises(GenerationError, match=r"p\.jsonl:2: a JSONL prompt needs a string \"prompt\" field"):
        read_prompts(j)


@pytest.fixture(scope="module")
def base_only_model(tmp_path_factory):
    """A Mixtral saved as its base model (no LM head): transformers cannot generate with it."""
    from transformers import MixtralModel

    from tests.factories_model import save_tiny_tokenizer, tiny_config

    path = tmp_path_factory.mktemp("base_only")
    cfg = tiny_config("mixtral")
    cfg.architectures = ["MixtralModel"]
    torch.manual_seed(0)
    MixtralModel(cfg).save_pretrained(str(path))
    save_tiny_tokenizer(path)
    return path


def _one_line_errors(capsys, cases, cache):
    from moe_tui.cli import main

    capsys.readouterr()
    for argv, message in cases:
        try:
            rc = main(["generate", *argv, "--cache-dir", str(cache), "--progress", "none"])
        except SystemExit as exc:  # a usage error (argparse)
            rc = exc.code
        err = capsys.readouterr().err
        assert rc == 2, (argv, err)
        assert message in err, (argv, err)
        assert len(err.strip().splitlines()) == 1, err
        assert "Traceback" not in err
    assert not list(cache.glob("*/manifest.json"))  # nothing half-made left behind


def test_bad_input_is_one_line_each(tmp_path, capsys):
    """Refused before any model is loaded (the model folder is not even read)."""
    path = str(tmp_path / "any-model")
    good = str(prompts_file(tmp_path))
    empty = tmp_path / "empty.txt"
    empty.write_text("\n \n")
    _one_line_errors(capsys, [
        (["--model", path, "--prompts", str(empty)], "empty prompts file"),
        (["--model", path, "--prompts", good, "--tagger", "nltk"], "unknown tagger 'nltk'"),
        (["--model", path, "--prompts", good, "--max-new-tokens", "0"], "--max-new-tokens: '0' must be > 0"),
        (["--model", path, "--prompts", good, "--prompt-pos", "gold"], "--prompt-pos gold needs CoNLL-U prompts"),
        (["--model", path, "--prompts", good, "--temperature", "0"], "--temperature: '0' must be a number > 0"),
        (["--model", path, "--prompts", good, "--top-p", "1.5"], "--top-p: '1.5' must lie in (0, 1]"),
    ], tmp_path / "cache")
    with pytest.raises(GenerationError, match="--max-new-tokens must be an integer >= 1"):
        moe_tui.generate(path, good, max_new_tokens=0, cache_dir=str(tmp_path / "cache"))


@pytest.mark.slow
def test_bad_model_or_prompt_length_is_one_line_each(model_path, base_only_model, tmp_path, capsys):
    """Refused once the model is known: a prompt longer than its context, a model that cannot generate."""
    path = str(model_path("mixtral"))
    good = str(prompts_file(tmp_path))
    long = prompts_file(tmp_path, [" ".join(["the cat"] * 70)], name="long.txt")
    _one_line_errors(capsys, [
        (["--model", path, "--prompts", str(long), "--max-new-tokens", "4"], "longer than the model's context of 128"),
        (["--model", path, "--prompts", good, "--max-new-tokens", "125"], "the model's context is 128"),
        (["--model", str(base_only_model), "--prompts", good], "cannot generate"),
    ], tmp_path / "cache")


@pytest.mark.slow
def test_generate_command_writes_a_run_the_other_commands_read(model_path, tmp_path, capsys):
    from moe_tui.cli import main

    path = str(model_path("mixtral"))
    j = tmp_path / "p.jsonl"
    j.write_text("".join(json.dumps({"prompt": p, "id": f"p{i}"}) + "\n" for i, p in enumerate(PROMPTS[:3])))
    cache = str(tmp_path / "cache")
    assert main(["generate", "--model", path, "--prompts", str(j), "--max-new-tokens", "4", "--cache-dir", cache,
                 "--progress", "json", "--save-logits"]) == 0
    out, err = capsys.readouterr()
    run_dir = out.strip()
    events = [json.loads(line)["event"] for line in err.splitlines() if line.startswith("{")]
    assert events[-1] == "done" and "progress" in events
    run = moe_tui.open_run(run_dir)
    gen = run.manifest["generation"]
    assert gen["settings"]["max_new_tokens"] == 4 and gen["prompts"] == 3
    assert [o["id"] for o in gen["outputs"]] == ["p0", "p1", "p2"] == [run.sentences[i]["id"] for i in range(3)]
    assert gen["generated_tokens"] == int(np.asarray(run.origin).sum())
    assert run.logits is not None and run.logits.shape[:2] == run.experts.shape[:2]
    assert run.manifest["tagging"]["tagger"]["name"] == "builtin"
    # a second time: a cache hit, no model loaded
    assert main(["generate", "--model", path, "--prompts", str(j), "--max-new-tokens", "4", "--cache-dir", cache,
                 "--progress", "json"]) == 0
    out2, err2 = capsys.readouterr()
    assert out2 == out and '"cache-hit"' in err2
    assert main(["export-routes", run_dir, "--out", str(tmp_path / "r.csv")]) == 0
    header = (tmp_path / "r.csv").read_text().splitlines()[0]
    assert header == "sentence,token,token_text,word,pos,origin,layer,rank,expert,weight"
