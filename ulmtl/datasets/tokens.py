"""Tokens and ids as dataset columns: ``tokens`` (spaCy + fastai rules), the vocabulary, ``ids``
and ``length``; each ``map`` is cached by fingerprint."""
from __future__ import annotations

from collections import Counter
from typing import Iterable

import numpy as np
from datasets import Dataset, DatasetDict

from ulmtl.text import Vocab, tokenize_batch


def tokenize(ds: Dataset | DatasetDict, num_proc: int = 1, batch_size: int = 1000) -> Dataset | DatasetDict:
    """Add a ``tokens`` column with spaCy + fastai rules; cached by fingerprint."""
    return ds.map(tokenize_batch, batched=True, batch_size=batch_size,
                  num_proc=num_proc if num_proc > 1 else None, desc="Tokenizing")


def count_tokens(datasets_: Iterable[Dataset]) -> Counter:
    counts: Counter = Counter()
    for ds in datasets_:
        for batch in ds.select_columns(["tokens"]).iter(batch_size=2000):
            for tokens in batch["tokens"]:
                counts.update(tokens)
    return counts


def build_vocab(datasets_: Iterable[Dataset], max_size: int = 60000, min_freq: int = 2) -> Vocab:
    """Vocabulary from the ``tokens`` column of the given datasets."""
    return Vocab.build(count_tokens(datasets_), max_size=max_size, min_freq=min_freq)


def _numericalize_batch(batch: dict, itos: list[str]) -> dict:
    vocab = _vocab_for(itos)
    ids = [vocab.numericalize(tokens) for tokens in batch["tokens"]]
    return {"ids": ids, "length": [len(x) for x in ids]}


_VOCAB_CACHE: dict = {}


def _vocab_for(itos: list[str]) -> Vocab:
    key = (len(itos), hash(tuple(itos)))
    if key not in _VOCAB_CACHE:
        _VOCAB_CACHE.clear()
        _VOCAB_CACHE[key] = Vocab(list(itos))
    return _VOCAB_CACHE[key]


def numericalize(ds: Dataset | DatasetDict, vocab: Vocab, num_proc: int = 1) -> Dataset | DatasetDict:
    """Add ``ids`` (int32) and ``length`` columns; cached by fingerprint (vocab included)."""
    return ds.map(_numericalize_batch, batched=True, fn_kwargs={"itos": vocab.itos},
                  num_proc=num_proc if num_proc > 1 else None, desc="Numericalizing",
                  features=None)


def token_ids(ds: Dataset) -> list[np.ndarray]:
    """The ``ids`` column as a list of int64 arrays."""
    if ds._indices is not None:
        ds = ds.flatten_indices()
    column = ds.data.column("ids")
    flat = column.combine_chunks()
    offsets = np.asarray(flat.offsets)
    values = np.asarray(flat.values, dtype=np.int64)
    return [values[offsets[i]:offsets[i + 1]] for i in range(len(offsets) - 1)]
