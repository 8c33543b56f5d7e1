"""Small tokenizers trained on the fly (no hub access) for tests.

Stable API (other test modules import these names):

``byte_bpe_tokenizer(texts, vocab_size=1000)``
    GPT-2 / Llama-3 style byte-level BPE (``Ġ`` marks a leading space; offsets *include* that
    space because no ByteLevel offset trimming is applied); post-processor prepends ``<s>`` (BOS).
``metaspace_tokenizer(texts, vocab_size=1000, model="unigram")``
    SentencePiece style (``▁``), Unigram (or ``model="bpe"``) with a Metaspace pre-tokenizer;
    post-processor prepends ``<s>``.
``wordpiece_tokenizer(texts, vocab_size=1000)``
    BERT style WordPiece (``##`` continuation, lower-casing normalizer), ``[CLS] ... [SEP]``.
``EWT_DEV``
    Path of the UD English EWT dev file; ``ewt_texts()`` returns its ``# text`` lines.

Every factory returns a ``transformers.PreTrainedTokenizerFast`` and is cached per process on
``(tuple(texts), options)``: the same (shared, do-not-mutate) object is returned for equal inputs.
"""

from __future__ import annotations

from functools import lru_cache
from typing import Iterable

from tests.helpers import EWT_DEV

#: A few sentences usable as a tiny training corpus.
SMALL_TEXTS: tuple[str, ...] = (
    "The cat sat on the mat.",
    "I don't think the humanities are dead.",
    "She studies history, philosophy and literature at the university.",
    "Students read books in the library every day.",
    "We can't go there tomorrow because it will rain.",
    "The quick brown fox jumps over the lazy dog.",
    "Colorless green ideas sleep furiously.",
    "He said that the human race is a humane one.",
)


def ewt_texts() -> tuple[str, ...]:
    """Return the ``# text`` lines of the EWT dev file (empty tuple if it is absent)."""
    return _ewt_texts()


@lru_cache(maxsize=1)
def _ewt_texts() -> tuple[str, ...]:
    if not EWT_DEV.exists():
        return ()
    out = []
    with open(EWT_DEV, encoding="utf-8") as fh:
        for line in fh:
            if line.startswith("# text = "):
                out.append(line[len("# text = ") :].rstrip("\n"))
    return tuple(out)


def _texts(texts: Iterable[str]) -> tuple[str, ...]:
    return tuple(texts)


def byte_bpe_tokenizer(texts: Iterable[str] = SMALL_TEXTS, vocab_size: int = 1000):
    """Train a byte-level BPE tokenizer (``Ġ``) with a ``<s>`` BOS post-processor.

    Parameters
    ----------
    texts : iterable of str
        Training texts.
    vocab_size : int
        Target vocabulary size (the 256 byte symbols and 4 specials included).

    Returns
    -------
    transformers.PreTrainedTokenizerFast
    """
    return _byte_bpe(_texts(texts), vocab_size)


@lru_cache(maxsize=16)
def _byte_bpe(texts: tuple[str, ...], vocab_size: int):
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, processors, trainers
    from transformers import PreTrainedTokenizerFast

    specials = ["<s>", "</s>", "<unk>", "<pad>"]
    tok = Tokenizer(models.BPE(unk_token=None))
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=True)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        special_tokens=specials,
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    tok.train_from_iterator(list(texts), trainer=trainer)
    bos = tok.token_to_id("<s>")
    tok.post_processor = processors.TemplateProcessing(
        single="<s> $A", pair="<s> $A <s> $B", special_tokens=[("<s>", bos)]
    )
    return PreTrainedTokenizerFast(
        tokenizer_object=tok,
        bos_token="<s>",
        eos_token="</s>",
        unk_token="<unk>",
        pad_token="<pad>",
    )


def metaspace_tokenizer(
    texts: Iterable[str] = SMALL_TEXTS, vocab_size: int = 1000, model: str = "unigram"
):
    """Train a SentencePiece-style (``▁``) tokenizer with a ``<s>`` BOS post-processor.

    Parameters
    ----------
    texts : iterable of str
        Training texts.
    vocab_size : int
        Target vocabulary size.
    model : {"unigram", "bpe"}
        Subword model.

    Returns
    -------
    transformers.PreTrainedTokenizerFast
    """
    return _metaspace(_texts(texts), vocab_size, model)


@lru_cache(maxsize=16)
def _metaspace(texts: tuple[str, ...], vocab_size: int, model: str):
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, processors, trainers
    from transformers import PreTrainedTokenizerFast

    specials = ["<unk>", "<s>", "</s>", "<pad>"]
    if model == "unigram":
        tok = Tokenizer(models.Unigram())
        trainer = trainers.UnigramTrainer(
            vocab_size=vocab_size,
            special_tokens=specials,
            unk_token="<unk>",
            show_progress=False,
        )
    elif model == "bpe":
        tok = Tokenizer(models.BPE(unk_token="<unk>"))
        trainer = trainers.BpeTrainer(
            vocab_size=vocab_size, special_tokens=specials, show_progress=False
        )
    else:
        raise ValueError(f"model must be 'unigram' or 'bpe', not {model!r}")
    tok.pre_tokenizer = pre_tokenizers.Metaspace(replacement="▁", prepend_scheme="always")
    tok.decoder = decoders.Metaspace(replacement="▁", prepend_scheme="always")
    tok.train_from_iterator(list(texts), trainer=trainer)
    bos = tok.token_to_id("<s>")
    tok.post_processor = processors.TemplateProcessing(
        single="<s> $A", pair="<s> $A <s> $B", special_tokens=[("<s>", bos)]
    )
    return PreTrainedTokenizerFast(
        tokenizer_object=tok,
        bos_token="<s>",
        eos_token="</s>",
        unk_token="<unk>",
        pad_token="<pad>",
    )


def wordpiece_tokenizer(texts: Iterable[str] = SMALL_TEXTS, vocab_size: int = 1000):
    """Train a BERT-style WordPiece tokenizer (``##``, lower-cased) with ``[CLS] ... [SEP]``.

    Parameters
    ----------
    texts : iterable of str
        Training texts.
    vocab_size : int
        Target vocabulary size.

    Returns
    -------
    transformers.PreTrainedTokenizerFast
    """
    return _wordpiece(_texts(texts), vocab_size)


@lru_cache(maxsize=16)
def _wordpiece(texts: tuple[str, ...], vocab_size: int):
    from tokenizers import Tokenizer, decoders, models, normalizers, pre_tokenizers, processors, trainers
    from transformers import PreTrainedTokenizerFast

    specials = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]
    tok = Tokenizer(models.WordPiece(unk_token="[UNK]"))
    tok.normalizer = normalizers.BertNormalizer(lowercase=True)
    tok.pre_tokenizer = pre_tokenizers.BertPreTokenizer()
    tok.decoder = decoders.WordPiece()
    trainer = trainers.WordPieceTrainer(
        vocab_size=vocab_size, special_tokens=specials, show_progress=False
    )
    tok.train_from_iterator(list(texts), trainer=trainer)
    cls, sep = tok.token_to_id("[CLS]"), tok.token_to_id("[SEP]")
    tok.post_processor = processors.TemplateProcessing(
        single="[CLS] $A [SEP]",
        pair="[CLS] $A [SEP] $B:1 [SEP]:1",
        special_tokens=[("[CLS]", cls), ("[SEP]", sep)],
    )
    return PreTrainedTokenizerFast(
        tokenizer_object=tok,
        unk_token="[UNK]",
        cls_token="[CLS]",
        sep_token="[SEP]",
        pad_token="[PAD]",
        mask_token="[MASK]",
    )
