"""Datasets: the named datasets from their original download layouts (or the hub), the user's own
files, tokens and ids.

Every loader returns a ``datasets.DatasetDict`` with ``train`` and ``test`` splits (and
``unsup`` where there is unlabelled text), a string column ``text`` and a ``ClassLabel``
column ``label``. Parsed datasets are stored as arrow files in the cache folder, so that
``map`` (tokenization, numericalization) is cached by fingerprint: a second run costs nothing.

registry.py  one row per named dataset, :func:`load_dataset`, the hub fallback
sources.py   the parsers of the original layouts, the hub's layouts, stage-1 corpora
files.py     the user's files -> (DatasetDict, LoadReport)
cache.py     the data and cache folders, the arrow cache, the memory-mapped token stream
tokens.py    tokens, vocabulary, ids
layout.py    what they share: the columns, DataError, the stratified split, byte-level reading
"""
from ulmtl.datasets.cache import cache_dir, resolve_data_dir, token_stream
from ulmtl.datasets.files import FileReport, LoadReport, load_files, read_files
from ulmtl.datasets.layout import DataError, stratified_split
from ulmtl.datasets.registry import DATASETS, hub_to_layout, load_dataset
from ulmtl.datasets.sources import load_corpus, load_wikitext103
from ulmtl.datasets.tokens import build_vocab, numericalize, token_ids, tokenize

__all__ = [
    "DATASETS", "DataError", "FileReport", "LoadReport", "build_vocab", "cache_dir", "hub_to_layout",
    "load_corpus", "load_dataset", "load_files", "load_wikitext103", "numericalize", "read_files",
    "resolve_data_dir", "stratified_split", "token_ids", "token_stream", "tokenize",
]
