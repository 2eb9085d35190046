"""Tokenizers for LLM-as-RS: a pretrained checkpoint's own (through transformers), or, for models trained from
scratch, a byte-level BPE trained on the catalogue text with `tokenizers` and saved as a Hugging Face tokenizer
folder (`tokenizer.json` + `tokenizer_config.json` + `special_tokens_map.json`), so both kinds load the same way.

Byte-level BPE never meets an unknown character (every byte is in its base alphabet), so any title encodes.
Special tokens of a trained tokenizer: `<pad>` (id 0) and `<eos>` (id 1), then the base bytes and the merges.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable, Sequence
from pathlib import Path

import transformers

PAD, EOS = "<pad>", "<eos>"
SPECIAL_TOKENS = (PAD, EOS)


TRAINING_RECORD = "jaxrec_tokenizer.json"  # beside a trained tokenizer: what it was trained for


def texts_digest(texts: Sequence[str]) -> str:
    """sha256 of the training texts, in order."""
    return hashlib.sha256("\n".join(texts).encode()).hexdigest()


def train_tokenizer(texts: Iterable[str], vocab_size: int, folder: str | Path, *, min_frequency: int = 2
                    ) -> transformers.PreTrainedTokenizerFast:
    """Train a byte-level BPE of at most `vocab_size` tokens (special tokens and the 256 bytes included) on `texts`
    and save it to `folder` with `jaxrec_tokenizer.json` (vocab size, min frequency, texts digest); returns the
    loaded tokenizer."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers

    texts = list(texts)
    base = len(SPECIAL_TOKENS) + len(pre_tokenizers.ByteLevel.alphabet())
    if vocab_size < base:
        raise ValueError(f"vocab_size {vocab_size} is below the {base} tokens every byte-level BPE holds "
                         f"({len(SPECIAL_TOKENS)} special + 256 bytes)")
    tokenizer = Tokenizer(models.BPE())
    tokenizer.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tokenizer.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=vocab_size, min_frequency=min_frequency,
                                  special_tokens=list(SPECIAL_TOKENS),
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet(), show_progress=False)
    tokenizer.train_from_iterator(texts, trainer)
    fast = transformers.PreTrainedTokenizerFast(tokenizer_object=tokenizer, pad_token=PAD, eos_token=EOS)
    folder = Path(folder)
    fast.save_pretrained(folder)
    (folder / TRAINING_RECORD).write_text(json.dumps(
        {"kind": "byte_level_bpe", "vocab_size": vocab_size, "min_frequency": min_frequency,
         "texts_sha256": texts_digest(texts)}, indent=2))
    return load_tokenizer(folder)


def load_tokenizer(folder: str | Path) -> transformers.PreTrainedTokenizerBase:
    """The tokenizer saved in a Hugging Face checkpoint or tokenizer folder; it must define an EOS token (the end
    of every generated title) and gets EOS as its padding token when it has none (Qwen checkpoints do have one)."""
    folder = Path(folder)
    if not folder.is_dir():
        raise FileNotFoundError(f"tokenizer folder {folder} does not exist")
    try:
        tokenizer = transformers.AutoTokenizer.from_pretrained(str(folder))
    except (OSError, ValueError) as error:
        raise ValueError(f"{folder}: no loadable Hugging Face tokenizer ({error})") from error
    if tokenizer.eos_token_id is None:
        raise ValueError(f"{folder}: the tokenizer defines no EOS token; titles need one to end")
    if tokenizer.pad_token_id is None:
        tokenizer.pad_token = tokenizer.eos_token
    return tokenizer
