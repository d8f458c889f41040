"""Batches for the stages: a language-model stream and length-sorted classification batches.

Both are plain iterables (``len``, ``iter``, ``to(device)``), which fastai's ``Learner`` accepts
inside a ``DataLoaders``.
"""
from __future__ import annotations

import math
from typing import Callable

import numpy as np
import torch


class LanguageModelLoader:
    """Documents concatenated into one stream, cut into ``batch_size`` rows, read ``bptt`` at a time.

    Targets are the inputs shifted by one token. ``backwards=True`` reads every document from
    its end (the stream reversed). With ``shuffle``, document order changes every epoch.
    """

    def __init__(self, docs: list[np.ndarray] | np.ndarray, batch_size: int = 64, bptt: int = 70,
                 backwards: bool = False, shuffle: bool = False, seed: int = 0,
                 rank: int = 0, world_size: int = 1):
        if len(docs) == 0:
            raise ValueError("language model loader: no documents")
        # A flat array (e.g. the memory map of ulmtl.datasets.token_stream) is read in place, in its
        # order: nothing is copied but the batches, so it may be larger than RAM.
        self.flat = isinstance(docs, np.ndarray) and docs.ndim == 1
        if self.flat and shuffle:
            raise ValueError("language model loader: a flat token stream is read in order (shuffle=False)")
        self.docs, self.batch_size, self.bptt = docs, batch_size, bptt
        self.backwards, self.shuffle, self.seed = backwards, shuffle, seed
        self.rank, self.world_size = rank, world_size
        self.epoch = 0
        self.start_batch = 0
        self.device = torch.device("cpu")
        self.n_tokens = len(docs) if self.flat else int(sum(len(d) for d in docs))
        rows = batch_size * world_size
        self.columns = (self.n_tokens - 1) // rows
        if self.columns < 1:
            raise ValueError(f"language model loader: {self.n_tokens} tokens are too few for "
                             f"{rows} rows; lower the batch size")

    def __len__(self) -> int:
        return math.ceil(self.columns / self.bptt)

    def to(self, device):
        self.device = torch.device(device)
        return self

    def stream(self, epoch: int) -> np.ndarray:
        if self.flat:
            return self.docs[::-1] if self.backwards else self.docs
        order = np.arange(len(self.docs))
        if self.shuffle:
            order = np.random.RandomState(self.seed + epoch).permutation(len(self.docs))
        stream = np.concatenate([self.docs[i] for i in order])
        return stream[::-1].copy() if self.backwards else stream

    def batches(self, epoch: int):
        stream = self.stream(epoch)
        rows = self.batch_size * self.world_size
        n = rows * self.columns
        inputs = stream[:n].reshape(rows, self.columns)
        targets = stream[1:n + 1].reshape(rows, self.columns)
        mine = slice(self.rank * self.batch_size, (self.rank + 1) * self.batch_size)
        inputs, targets = inputs[mine], targets[mine]
        for start in range(0, self.columns, self.bptt):
            end = min(start + self.bptt, self.columns)
            yield inputs[:, start:end], targets[:, start:end]

    def __iter__(self):
        skip, self.start_batch = self.start_batch, 0
        for index, (x, y) in enumerate(self.batches(self.epoch)):
            if index < skip:
                continue
            yield (torch.from_numpy(np.ascontiguousarray(x, dtype=np.int64)).to(self.device),
                   torch.from_numpy(np.ascontiguousarray(y, dtype=np.int64)).to(self.device))
        self.epoch += 1


class ClassificationLoader:
    """Padded batches of documents of similar length.

    Evaluation batches are sorted by length, longest first; ``order`` gives the dataset index of
    each row so that predictions can be put back in the original order. Training batches are
    sorted within random pools (as fastai's ``SortedDL``) and shuffled, with the longest batch first.
    ``collate`` turns a batch's documents into one array: the backbone's padding (the AWD-LSTM's
    BPT3C chunks, a transformer's right padding). Under ``world_size`` processes, training batches
    are the global batches of ``batch_size * world_size`` documents one process would read, and
    each process takes every ``world_size``-th row of each; a last global batch with fewer than two
    rows (batch normalization needs two) or fewer rows than processes joins the batch before it, so
    every document is read once per epoch. Evaluation batches are dealt out to the processes in turn.
    """

    def __init__(self, docs: list[np.ndarray], labels: np.ndarray | None, batch_size: int = 64,
                 shuffle: bool = False, seed: int = 0, backwards: bool = False, max_tokens: int = 0,
                 rank: int = 0, world_size: int = 1, *, collate: Callable[[list[np.ndarray]], np.ndarray]):
        if len(docs) == 0:
            raise ValueError("classification loader: no documents")
        if labels is not None and len(labels) != len(docs):
            raise ValueError(f"classification loader: {len(docs)} documents but {len(labels)} labels")
        if shuffle and len(docs) < world_size:
            raise ValueError(f"classification loader: {len(docs)} documents are too few for {world_size} processes")
        self.docs = [self._prepare(d, backwards, max_tokens) for d in docs]
        # Class ids, or (multi-label) a 0/1 row of floats per document: binary cross-entropy's targets.
        self.labels = None if labels is None else np.asarray(labels, dtype=np.float32 if np.ndim(labels) == 2
                                                             else np.int64)
        self.batch_size, self.collate = batch_size, collate
        self.shuffle, self.seed, self.epoch = shuffle, seed, 0
        self.rank, self.world_size = rank, world_size
        self.lengths = np.array([len(d) for d in self.docs])
        self.device = torch.device("cpu")

    @staticmethod
    def _prepare(doc: np.ndarray, backwards: bool, max_tokens: int) -> np.ndarray:
        doc = np.asarray(doc)
        if doc.dtype.kind in "iub":
            doc = doc.astype(np.int64, copy=False)
        if max_tokens and len(doc) > max_tokens:
            doc = doc[:max_tokens]
        return doc[::-1].copy() if backwards else doc

    def to(self, device):
        self.device = torch.device(device)
        return self

    def batch_indices(self, epoch: int) -> list[np.ndarray]:
        n = len(self.docs)
        if not self.shuffle:
            order = np.argsort(-self.lengths, kind="stable")
            batches = [order[i:i + self.batch_size] for i in range(0, n, self.batch_size)]
            return batches[self.rank::self.world_size]
        size = self.batch_size * self.world_size  # the global batch
        rng = np.random.RandomState(self.seed + epoch)
        perm = rng.permutation(n)
        pool = size * 50
        order = np.concatenate([p[np.argsort(-self.lengths[p], kind="stable")]
                                for p in np.array_split(perm, max(1, math.ceil(n / pool)))])
        batches = [order[i:i + size] for i in range(0, n, size)]
        if len(batches) > 1 and len(batches[-1]) < self._fewest_rows():
            batches[-2:] = [np.concatenate(batches[-2:])]
        longest = int(np.argmax([self.lengths[b].max() for b in batches]))
        first = batches.pop(longest)
        rest = [batches[i] for i in rng.permutation(len(batches))]
        # Within a batch, longest first: the sentence encoder relies on it for its
        # real-batch-size shortcut at each chunk (a process's rows of it keep that order).
        batches = [b[np.argsort(-self.lengths[b], kind="stable")] for b in [first] + rest]
        return [b[self.rank::self.world_size] for b in batches]

    def _fewest_rows(self) -> int:
        """The fewest rows a training batch may have: two for batch normalization's statistics, and
        one per process."""
        return max(2, self.world_size)

    def __len__(self) -> int:
        n = len(self.docs)
        if not self.shuffle:
            return len(range(self.rank, math.ceil(n / self.batch_size), self.world_size))
        full, rest = divmod(n, self.batch_size * self.world_size)
        return full + int(rest >= self._fewest_rows() or full == 0)

    @property
    def order(self) -> np.ndarray:
        """Dataset index of every row, in evaluation order."""
        return np.concatenate(self.batch_indices(0))

    def __iter__(self):
        for batch in self.batch_indices(self.epoch):
            x = torch.from_numpy(self.collate([self.docs[i] for i in batch]))
            x = x.to(self.device)
            if self.labels is None:
                yield (x,)
            else:
                yield x, torch.from_numpy(self.labels[batch]).to(self.device)
        if self.shuffle:
            self.epoch += 1
