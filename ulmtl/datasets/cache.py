"""Cache folders: the data directory, parsed datasets as arrow files keyed by their sources, and
token ids as one memory-mapped file."""
from __future__ import annotations

import hashlib
import json
import os
import shutil
from pathlib import Path
from typing import Callable, Iterable

import numpy as np
from datasets import Dataset, DatasetDict, load_from_disk

LOADER_VERSION = "1"


def resolve_data_dir(data_dir: str | Path | None = None) -> Path:
    """The data directory: the argument, else ``$ULMTL_DATA_DIR``, else ``<cache>/data``."""
    if data_dir:
        return Path(data_dir).expanduser()
    if os.environ.get("ULMTL_DATA_DIR"):
        return Path(os.environ["ULMTL_DATA_DIR"]).expanduser()
    return cache_dir() / "data"


def cache_dir() -> Path:
    """Per-user cache: ``$ULMTL_CACHE_DIR``, else ``$XDG_CACHE_HOME/ulmtl``, else ``~/.cache/ulmtl``."""
    if os.environ.get("ULMTL_CACHE_DIR"):
        return Path(os.environ["ULMTL_CACHE_DIR"]).expanduser()
    base = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(base) / "ulmtl"


def _source_signature(paths: Iterable[Path]) -> list:
    out = []
    for path in sorted(paths):
        stat = path.stat()
        out.append([str(path.resolve()), stat.st_size, stat.st_mtime_ns])
    return out


def cached(name: str, options: dict, sources: list[Path], build: Callable[[], DatasetDict]) -> DatasetDict:
    """Build ``name`` once, store it as arrow files keyed by its sources, reload memory-mapped."""
    key = json.dumps([LOADER_VERSION, name, options, _source_signature(sources)], sort_keys=True)
    digest = hashlib.sha256(key.encode()).hexdigest()[:16]
    target = cache_dir() / "datasets" / f"{name}-{digest}"
    if (target / "dataset_dict.json").exists():
        return load_from_disk(str(target))
    built = build()
    partial = target.with_name(target.name + f".partial-{os.getpid()}")
    if partial.exists():
        shutil.rmtree(partial)
    built.save_to_disk(str(partial))
    if target.exists():
        shutil.rmtree(target)
    partial.rename(target)
    return load_from_disk(str(target))


def token_stream(ds: Dataset) -> np.ndarray:
    """The ``ids`` column as one memory-mapped int32 array on disk, for corpora larger than RAM.

    Written chunk by chunk from the arrow table (never whole in memory) into the cache, keyed by
    the dataset's fingerprint, so a second call only maps the file.
    """
    folder = cache_dir() / "streams"
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"{ds._fingerprint}.int32"
    if not path.exists():
        if ds._indices is not None:
            ds = ds.flatten_indices()
        partial = path.with_name(path.name + f".partial-{os.getpid()}")
        with open(partial, "wb") as handle:
            for chunk in ds.data.column("ids").chunks:
                offsets = np.asarray(chunk.offsets)
                values = np.asarray(chunk.values)[offsets[0]:offsets[-1]]
                handle.write(values.astype(np.int32).tobytes())
        partial.replace(path)
    return np.memmap(path, dtype=np.int32, mode="r")
