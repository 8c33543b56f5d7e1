"""Corpus-reading fidelity figures of the docs (measurements, not speed): ``docs/results/corpus.md``.

1. PTB / OntoNotes input: a UD treebank written as PTB lines (form and XPOS per line, brackets escaped
   as -LRB- -RRB- -LSB- -RSB- -LCB- -RCB-, double quotes as `` and ''), read back with
   ``moe-tui``'s PTB reader, and each rebuilt sentence text compared with the treebank's ``# text``.
   Also: the same comparison for a plain ``" ".join`` of the PTB tokens.
2. The paper recipe: on a UD treebank, how often the UPOS column and ``--pos-column xpos`` (the UD
   English Penn table) give different tags once folded to the paper's 15 tags, and which words differ.

Run: ``.venv/bin/python -m benchmarks.measure_corpus [FILE.conllu ...]`` (default: UD English EWT dev + test
for 1, dev for 2) prints them; ``--write`` (default files only) rewrites ``docs/results/corpus.md``, which the
docs include and ``tests/test_docs.py`` regenerates and compares.
"""

from __future__ import annotations

import collections
import os
import sys
import tempfile
from pathlib import Path

from benchmarks.results import RESULTS, section, table

REPO = Path(__file__).resolve().parents[1]
EWT = Path(os.environ.get("MOE_TUI_EWT_DIR") or REPO.parent / "shared/data/ud_english_ewt")
PAGE = RESULTS / "corpus.md"
EWT_DEV = EWT / "en_ewt-ud-dev.conllu"
EWT_TEST = EWT / "en_ewt-ud-test.conllu"

_BRACKETS = {"(": "-LRB-", ")": "-RRB-", "[": "-LSB-", "]": "-RSB-", "{": "-LCB-", "}": "-RCB-"}
_ESCAPES = ("-LRB-", "-RRB-", "-LSB-", "-RSB-", "-LCB-", "-RCB-", "``", "''")


def ud_as_ptb(path) -> tuple[list[str], str]:
    """``(texts, ptb)``: each sentence's ``# text`` and the treebank as PTB ``word<TAB>XPOS`` lines.

    Syntactic words (not multiword surface tokens), as a PTB treebank splits them (*do* + *n't*).
    Read with the ``conllu`` library, independently of moe-tui's reader.
    """
    from conllu import parse_incr

    texts: list[str] = []
    lines: list[str] = []
    with open(path, encoding="utf-8") as fh:
        for sent in parse_incr(fh):
            texts.append(sent.metadata["text"])
            for tok in sent:
                if not isinstance(tok["id"], int):
                    continue  # multiword ranges and empty nodes
                form, xpos = tok["form"], tok["xpos"]
                if form == '"':
                    form = {"``": "``", "''": "''"}.get(xpos, form)
                lines.append(f"{_BRACKETS.get(form, form)}\t{xpos}")
            lines.append("")
    return texts, "\n".join(lines) + "\n"


def ptb_roundtrip(paths) -> dict:
    """Rebuild the text of UD treebanks written as PTB; count sentences identical to ``# text``."""
    from moe_tui.core.extract.corpus import read_corpus

    res = {"sentences": 0, "identical": 0, "joined_identical": 0, "escapes_left": 0, "differing": []}
    with tempfile.TemporaryDirectory() as d:
        for i, path in enumerate(paths):
            texts, ptb = ud_as_ptb(path)
            f = Path(d) / f"as_ptb_{i}.txt"
            f.write_text(ptb, encoding="utf-8")
            corpus = read_corpus(f, format="ptb")
            assert len(corpus.sentences) == len(texts)
            blocks = [b.split("\n") for b in ptb.strip("\n").split("\n\n")]
            for gold, sent, block in zip(texts, corpus.sentences, blocks):
                res["sentences"] += 1
                if sent.text == gold:
                    res["identical"] += 1
                else:
                    res["differing"].append((gold, sent.text))
                if " ".join(line.split("\t")[0] for line in block) == gold:
                    res["joined_identical"] += 1
                res["escapes_left"] += sum(any(e in w.form for e in _ESCAPES) for w in sent.words)
                res["escapes_left"] += any(e in sent.text for e in _ESCAPES)
    return res


def pos_column_difference(path) -> dict:
    """Words whose paper15 tag differs between the UPOS column and the XPOS column through the Penn table."""
    from moe_tui.core.extract.corpus import read_corpus

    a = read_corpus(path, tagset="paper15", pos_column="upos")
    b = read_corpus(path, tagset="paper15", pos_column="xpos")
    words = differ = 0
    pairs: collections.Counter = collections.Counter()
    forms: collections.Counter = collections.Counter()
    for s, t in zip(a.sentences, b.sentences):
        for w, v in zip(s.words, t.words):
            words += 1
            if w.upos != v.upos:
                differ += 1
                pairs[(w.upos, v.upos)] += 1
                forms[(w.form.lower(), w.upos, v.upos)] += 1
    return {"words": words, "differ": differ, "pairs": pairs, "forms": forms}


def render() -> str:
    """``docs/results/corpus.md``: both measurements on UD English EWT, in snippet sections."""
    res = ptb_roundtrip([EWT_DEV, EWT_TEST])
    n = res["sentences"]
    d = pos_column_difference(EWT_DEV)
    ptb = table(["UD English EWT dev + test as PTB lines", "sentences", "share"], [
        ["all sentences", f"{n:,}", ""],
        ["rebuilt text identical to `# text`", f"{res['identical']:,}", f"{res['identical'] / n:.1%}"],
        ["a plain `\" \".join` of the PTB tokens identical", f"{res['joined_identical']:,}",
         f"{res['joined_identical'] / n:.1%}"],
        ["escape strings left in words or text", f"{res['escapes_left']:,}", ""],
    ])
    pairs = table(["UPOS", "XPOS through the Penn table", "words"],
                  [[a, b, f"{c:,}"] for (a, b), c in d["pairs"].most_common(6)])
    words = table(["word", "UPOS", "XPOS through the Penn table", "times"],
                  [[f"*{w}*", a, b, f"{c:,}"] for (w, a, b), c in d["forms"].most_common(10)])
    upos = (f"On {EWT_DEV.name}, after folding both to the paper's 15 tags, the UPOS column and `--pos-column xpos` "
            f"give different tags to **{d['differ']:,} of {d['words']:,} words ({d['differ'] / d['words']:.2%})**. "
            "The most frequent differences:\n\n" + pairs + "\n\nThe most frequent words among them:\n\n" + words)
    return "\n".join([
        "# Reading corpora: measured on UD English EWT", "",
        "<!-- Written by `python -m benchmarks.measure_corpus --write`: do not edit by hand. -->", "",
        "Written by `.venv/bin/python -m benchmarks.measure_corpus --write` from UD English EWT (dev and test, from "
        "beside the repository); `tests/test_docs.py` regenerates the page and fails when it differs. What is "
        "measured: [PTB / OntoNotes input](../extraction.md#ptb-ontonotes-input) and "
        "[the paper's recipe](../paper.md#reproducing-the-paper-on-a-gpu-node).", "",
        "## PTB input: the rebuilt text", "", section("ptb", ptb),
        "## UPOS against XPOS, folded to the paper's tags", "", section("upos_xpos", upos),
    ])


def main(argv: list[str]) -> int:
    if argv == ["--write"]:
        from moe_tui.fileio import atomic_write_text

        PAGE.parent.mkdir(parents=True, exist_ok=True)
        atomic_write_text(PAGE, render())
        print(PAGE.relative_to(REPO))
        return 0
    paths = [Path(p) for p in argv] or [EWT_DEV, EWT_TEST]
    res = ptb_roundtrip(paths)
    n = res["sentences"]
    print(f"PTB input: {', '.join(p.name for p in paths)} written as PTB lines, {n} sentences")
    print(f"  rebuilt text identical to '# text': {res['identical']} ({res['identical'] / n:.1%})")
    print(f"  plain ' '.join of the PTB tokens:    {res['joined_identical']} ({res['joined_identical'] / n:.1%})")
    print(f"  escape strings left in words or text: {res['escapes_left']}")
    dev = paths[0] if argv else EWT_DEV
    d = pos_column_difference(dev)
    print(f"paper recipe on {dev.name}: UPOS vs --pos-column xpos, both folded to paper15")
    print(f"  words with different tags: {d['differ']} of {d['words']} ({d['differ'] / d['words']:.2%})")
    print("  by (UPOS, XPOS->UPOS): " + ", ".join(f"{a}->{b} {c}" for (a, b), c in d["pairs"].most_common(6)))
    print("  most frequent words:   " + ", ".join(f"{w} {a}->{b} {c}" for (w, a, b), c in d["forms"].most_common(10)))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
