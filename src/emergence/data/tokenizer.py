"""Byte-level BPE tokenizer (HF `tokenizers`) shared by the corpus and the pairs.

Files are joined with the ``<|endoftext|>`` token; ids are stored as flat uint16
arrays (``np.memmap``-able). Pair sequences keep their character offsets so the
mutated span and the prompt boundary can be found in token positions.
"""
from __future__ import annotations

from pathlib import Path
from typing import Iterable, Sequence

import numpy as np
from tokenizers import Tokenizer, decoders, models, pre_tokenizers, processors, trainers

EOT = "<|endoftext|>"


def train_tokenizer(texts: Iterable[str], vocab_size: int) -> Tokenizer:
    """Byte-level BPE with `vocab_size` entries (including EOT), deterministic for the input order."""
    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    tok.post_processor = processors.ByteLevel(trim_offsets=False)
    trainer = trainers.BpeTrainer(vocab_size=vocab_size, special_tokens=[EOT], show_progress=False,
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet())
    tok.train_from_iterator(texts, trainer=trainer)
    return tok


def load_tokenizer(path: str | Path) -> Tokenizer:
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"tokenizer {path} not found: run `dvc repro corpus` first")
    return Tokenizer.from_file(str(path))


def encode_files(tok: Tokenizer, texts: Sequence[str], eot_token: str = EOT) -> np.ndarray:
    """Token ids of the texts, each followed by the end-of-text token, as one flat uint16 array."""
    if tok.get_vocab_size() > np.iinfo(np.uint16).max + 1:
        raise ValueError(f"a vocabulary of {tok.get_vocab_size()} tokens does not fit the uint16 token files")
    eot = tok.token_to_id(eot_token)
    parts = []
    for enc in tok.encode_batch(list(texts)):
        parts.append(np.asarray(enc.ids + [eot], dtype=np.uint16))
    return np.concatenate(parts) if parts else np.zeros(0, dtype=np.uint16)


def token_span(offsets: Sequence[tuple[int, int]], start: int, end: int) -> tuple[int, int]:
    """Half-open range of tokens overlapping characters [start, end) (a point if empty)."""
    end = max(end, start + 1)
    hits = [i for i, (a, b) in enumerate(offsets) if a < end and b > start]
    if not hits:  # past the last token (an edit at the very end)
        return len(offsets) - 1, len(offsets)
    return hits[0], hits[-1] + 1


def prefix_tokens(offsets: Sequence[tuple[int, int]], n_chars: int) -> int:
    """Number of leading tokens that lie entirely within the first `n_chars` characters."""
    return sum(1 for _, b in offsets if b <= n_chars)
