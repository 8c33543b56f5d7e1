"""Train the built-in UPOS tagger (core/tagger/builtin) from the UD English data beside the repository.

    .venv/bin/python scripts/train_tagger.py [--data-dir ../shared/data] [--out core/tagger/builtin]

Training data: UD English EWT dev and UD English PUD (all of it). Held out: UD English EWT test, on which the
accuracy stated in the tagger's metadata (and in every run it tags) is measured. The result is the same file,
byte for byte, on every run (fixed seed, fixed order, no timestamps). The training data's licences carry over to
the weights (a derived work): CC BY-SA 4.0 (EWT) and CC BY-SA 3.0 (PUD), recorded in tagger.json.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
LICENCE = ("CC BY-SA 4.0 (UD English EWT) and CC BY-SA 3.0 (UD English PUD): the weights are a derived work of "
           "these treebanks and are shared under CC BY-SA 4.0 (which CC BY-SA 3.0 material may be adapted into)")
SOURCES = (
    "UD English EWT r2.x, en_ewt-ud-dev.conllu (Silveira et al. 2014; https://github.com/UniversalDependencies/"
    "UD_English-EWT), CC BY-SA 4.0",
    "UD English PUD, en_pud-ud-test.conllu (CoNLL 2017 shared task; https://github.com/UniversalDependencies/"
    "UD_English-PUD), CC BY-SA 3.0",
)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data-dir", default=str(REPO.parent / "shared" / "data"))
    ap.add_argument("--out", default=str(REPO / "core" / "tagger" / "builtin"))
    args = ap.parse_args(argv)
    from moe_tui.core.tagger import train_files

    d = Path(args.data_dir)
    ewt = d / "ud_english_ewt"
    meta = train_files([ewt / "en_ewt-ud-dev.conllu", d / "ud_pud" / "english" / "en_pud-ud-test.conllu"], args.out,
                       eval_paths=[ewt / "en_ewt-ud-test.conllu"], epochs=10, seed=0, licence=LICENCE,
                       sources=SOURCES, language="en", progress=lambda m: print(m, file=sys.stderr))
    acc = meta["accuracy"]
    print(f"{args.out}: accuracy {acc['accuracy']:.4f} on {acc['data']} ({acc['words']} words), "
          f"{acc['accuracy_raw_text']:.4f} from raw text")
    return 0


if __name__ == "__main__":
    sys.exit(main())
