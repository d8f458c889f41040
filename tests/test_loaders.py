"""Batches: the language-model stream and the length-sorted classification loader."""
from __future__ import annotations

import math
from functools import partial

import numpy as np
import pytest
import torch

from ulmtl.backbones.awd_lstm import pad_chunked
from ulmtl.loaders import ClassificationLoader, LanguageModelLoader


def _docs(lengths, start=0):
    """Documents of consecutive integers, so every token is unique and its position is known."""
    out, n = [], start
    for length in lengths:
        out.append(np.arange(n, n + length, dtype=np.int64))
        n += length
    return out


# --------------------------------------------------------------------------- language model

def _collect(loader):
    xs, ys = zip(*list(loader))
    return torch.cat(xs, 1), torch.cat(ys, 1), [x.shape for x in xs]


def test_lm_targets_are_inputs_shifted_by_one_across_batches():
    docs = _docs([37, 5, 120, 61, 13])  # 236 tokens
    loader = LanguageModelLoader(docs, batch_size=4, bptt=10)
    x, y, shapes = _collect(loader)
    columns = (236 - 1) // 4
    assert loader.columns == columns == 58
    assert x.shape == y.shape == (4, columns)
    stream = torch.from_numpy(np.concatenate(docs))
    # Each row is a contiguous slice of the stream, and the target is the next token.
    for r in range(4):
        assert torch.equal(x[r], stream[r * columns:(r + 1) * columns])
        assert torch.equal(y[r], stream[r * columns + 1:(r + 1) * columns + 1])
    # Across a batch boundary: the last target of a batch is the first input of the next.
    batches = list(loader)
    for (x0, y0), (x1, _) in zip(batches, batches[1:]):
        assert torch.equal(y0[:, -1], x1[:, 0])
    assert all(s[1] == 10 for s in shapes[:-1]) and shapes[-1][1] == columns - 10 * (len(shapes) - 1)


def test_lm_number_of_batches():
    docs = _docs([100] * 10)  # 1000 tokens
    for bs, bptt in [(4, 10), (3, 7), (8, 70), (1, 999)]:
        loader = LanguageModelLoader(docs, batch_size=bs, bptt=bptt)
        columns = (1000 - 1) // bs
        assert len(loader) == math.ceil(columns / bptt)
        assert len(list(loader)) == len(loader)


def test_lm_backwards_reverses_the_stream():
    docs = _docs([30, 20, 50])
    forward = LanguageModelLoader(docs, batch_size=2, bptt=8)
    backward = LanguageModelLoader(docs, batch_size=2, bptt=8, backwards=True)
    stream = np.concatenate(docs)
    np.testing.assert_array_equal(backward.stream(0), stream[::-1])
    xb, yb, _ = _collect(backward)
    columns = backward.columns
    rev = torch.from_numpy(stream[::-1].copy())
    assert torch.equal(xb[0], rev[:columns]) and torch.equal(yb[0], rev[1:columns + 1])
    xf, _, _ = _collect(forward)
    assert not torch.equal(xf, xb)


def test_lm_shuffle_changes_document_order_per_epoch_but_is_seeded():
    docs = _docs([10] * 20)
    a = LanguageModelLoader(docs, batch_size=2, bptt=5, shuffle=True, seed=3)
    b = LanguageModelLoader(docs, batch_size=2, bptt=5, shuffle=True, seed=3)
    first = [x.clone() for x, _ in a]
    second = [x.clone() for x, _ in a]
    assert a.epoch == 2
    assert not all(torch.equal(p, q) for p, q in zip(first, second)), "order must change per epoch"
    assert all(torch.equal(p, q) for p, q in zip(first, [x for x, _ in b])), "same seed, same order"
    # Whole documents move: each document's tokens stay contiguous in the stream.
    stream = a.stream(5)
    starts = stream[::10]
    assert sorted(starts.tolist()) == list(range(0, 200, 10))
    for s in range(0, 200, 10):
        np.testing.assert_array_equal(stream[stream.tolist().index(s):][:10], np.arange(s, s + 10))
    assert not np.array_equal(a.stream(0), a.stream(1))
    unshuffled = LanguageModelLoader(docs, batch_size=2, bptt=5)
    np.testing.assert_array_equal(unshuffled.stream(0), unshuffled.stream(7))


def test_lm_resume_skips_batches():
    docs = _docs([200])
    loader = LanguageModelLoader(docs, batch_size=2, bptt=10)
    full = list(loader)
    loader.epoch, loader.start_batch = 0, 3
    resumed = list(loader)
    assert len(resumed) == len(full) - 3
    assert all(torch.equal(p[0], q[0]) for p, q in zip(full[3:], resumed))


def test_lm_too_few_tokens():
    with pytest.raises(ValueError, match="too few"):
        LanguageModelLoader(_docs([5]), batch_size=8, bptt=4)
    with pytest.raises(ValueError, match="no documents"):
        LanguageModelLoader([], batch_size=8)


# --------------------------------------------------------------------------- classification

def _class_docs(lengths):
    return [np.full(n, i + 2, dtype=np.int64) for i, n in enumerate(lengths)]


def bpt3c(bptt: int = 70):
    """The AWD-LSTM's collation, padding id 1."""
    return partial(pad_chunked, pad_id=1, bptt=bptt)


def test_eval_batches_longest_first_and_order_maps_back():
    lengths = [5, 12, 3, 12, 8, 1, 20, 7, 9, 2]
    docs = _class_docs(lengths)
    labels = np.arange(10) % 3
    loader = ClassificationLoader(docs, labels, batch_size=3, collate=bpt3c(4))
    assert len(loader) == 4
    order = loader.order
    assert sorted(order.tolist()) == list(range(10))
    assert [lengths[i] for i in order] == sorted(lengths, reverse=True)
    # Stable among equal lengths: 1 before 3.
    assert order.tolist().index(1) < order.tolist().index(3)
    rows = 0
    for x, y in loader:
        batch_order = order[rows:rows + len(y)]
        np.testing.assert_array_equal(y.numpy(), labels[batch_order])
        for row, i in zip(x, batch_order):
            real = row[row != 1]
            assert len(real) == lengths[i] and bool((real == i + 2).all())
        nonpad = (x != 1).sum(1)
        assert torch.all(nonpad[:-1] >= nonpad[1:])
        rows += len(y)
    assert rows == 10
    # Predictions in loader order go back to dataset order with `order`.
    preds = np.concatenate([x.max(1).values.numpy() for (x, _) in loader])
    back = np.empty_like(preds)
    back[order] = preds
    np.testing.assert_array_equal(back, np.arange(10) + 2)


def test_eval_is_the_same_every_epoch_and_without_labels():
    docs = _class_docs([3, 9, 4])
    loader = ClassificationLoader(docs, None, batch_size=2, collate=bpt3c())
    a = [b[0] for b in loader]
    b = [b[0] for b in loader]
    assert all(len(batch) == 1 for batch in loader)
    assert all(torch.equal(p, q) for p, q in zip(a, b))


def test_training_batches_cover_every_index_once_per_epoch():
    rng = np.random.RandomState(0)
    lengths = rng.randint(1, 60, size=203).tolist()
    docs = _class_docs(lengths)
    loader = ClassificationLoader(docs, np.arange(203), batch_size=8, shuffle=True, seed=1, collate=bpt3c())
    epochs = []
    for _ in range(3):
        seen = np.concatenate([y.numpy() for _, y in loader])
        assert sorted(seen.tolist()) == list(range(203))
        epochs.append(seen)
    assert loader.epoch == 3
    assert not np.array_equal(epochs[0], epochs[1])
    # Seeded: another loader with the same seed gives the same first epoch.
    again = ClassificationLoader(docs, np.arange(203), batch_size=8, shuffle=True, seed=1, collate=bpt3c())
    np.testing.assert_array_equal(np.concatenate([y.numpy() for _, y in again]), epochs[0])


def test_training_batches_longest_batch_first_and_sorted_within():
    lengths = list(range(1, 101))
    loader = ClassificationLoader(_class_docs(lengths), np.arange(100), batch_size=10, shuffle=True, seed=0,
                                  collate=bpt3c())
    batches = loader.batch_indices(0)
    assert max(lengths[i] for i in batches[0]) == 100
    for b in batches:
        bl = [lengths[i] for i in b]
        assert bl == sorted(bl, reverse=True)


def test_processes_split_the_global_batches_of_one_process():
    """Under 3 processes of batch 4, every training batch is one process's batch of 12, split by
    rows: 49 texts give 4 global batches and a last of 1, which joins the batch before it."""
    lengths = np.random.RandomState(0).randint(1, 40, size=49).tolist()
    docs, labels = _class_docs(lengths), np.arange(49)
    one = ClassificationLoader(docs, labels, batch_size=12, shuffle=True, seed=3, collate=bpt3c())
    ranks = [ClassificationLoader(docs, labels, batch_size=4, shuffle=True, seed=3, rank=r, world_size=3,
                                  collate=bpt3c()) for r in range(3)]
    for _ in range(2):  # two epochs: the order changes in step
        whole = [y.numpy() for _, y in one]
        shares = [[y.numpy() for _, y in loader] for loader in ranks]
        assert [len(s) for s in shares] == [len(loader) for loader in ranks] == [4, 4, 4] and len(one) == 4
        assert sorted(len(batch) for batch in whole) == [12, 12, 12, 13]
        for k, batch in enumerate(whole):
            np.testing.assert_array_equal(np.concatenate([s[k] for s in shares]), np.concatenate(
                [batch[r::3] for r in range(3)]))
    with pytest.raises(ValueError, match="too few for 3 processes"):
        ClassificationLoader(docs[:2], labels[:2], batch_size=4, shuffle=True, rank=0, world_size=3,
                             collate=bpt3c())


@pytest.mark.parametrize("n, world_size", [(9, 1), (17, 1), (50, 3), (26, 2)])
def test_no_training_batch_is_too_small_and_no_row_is_left_out(n, world_size):
    """A last global batch of one row (batch normalization cannot train on it) or of fewer rows
    than processes joins the batch before it: every text is read once per epoch, in batches of at
    least two rows on every process."""
    docs, labels = _class_docs(np.random.RandomState(1).randint(1, 30, size=n).tolist()), np.arange(n)
    ranks = [ClassificationLoader(docs, labels, batch_size=8, shuffle=True, seed=0, rank=r, world_size=world_size,
                                  collate=bpt3c()) for r in range(world_size)]
    for _ in range(2):
        shares = [[y.numpy() for _, y in loader] for loader in ranks]
        assert [len(s) for s in shares] == [len(loader) for loader in ranks]
        assert sorted(np.concatenate([b for s in shares for b in s]).tolist()) == list(range(n))
        assert min(sum(len(s[k]) for s in shares) for k in range(len(shares[0]))) >= 2


def test_max_tokens_truncates_and_backwards_reverses():
    docs = [np.arange(2, 12), np.arange(20, 23)]
    loader = ClassificationLoader(docs, np.array([0, 1]), batch_size=2, max_tokens=4, collate=bpt3c(2))
    np.testing.assert_array_equal(loader.docs[0], [2, 3, 4, 5])
    np.testing.assert_array_equal(loader.docs[1], [20, 21, 22])
    x, _ = next(iter(loader))
    assert x.shape == (2, 4)
    back = ClassificationLoader(docs, np.array([0, 1]), batch_size=2, backwards=True, collate=bpt3c())
    np.testing.assert_array_equal(back.docs[0], np.arange(11, 1, -1))


def test_classification_loader_input_checks():
    with pytest.raises(ValueError, match="no documents"):
        ClassificationLoader([], None, collate=bpt3c())
    with pytest.raises(ValueError, match="labels"):
        ClassificationLoader(_class_docs([2, 3]), np.array([0]), collate=bpt3c())


def test_flat_memory_mapped_stream_gives_the_same_batches_as_documents(tmp_path, monkeypatch):
    from datasets import Dataset

    from ulmtl.datasets import token_stream
    monkeypatch.setenv("ULMTL_CACHE_DIR", str(tmp_path))
    docs = [np.arange(start, start + length) for start, length in [(1, 7), (100, 13), (300, 40), (500, 25)]]
    ds = Dataset.from_dict({"ids": [d.tolist() for d in docs]}).select([0, 1, 2, 3])  # with an index map
    stream = token_stream(ds)
    assert isinstance(stream, np.memmap) and stream.dtype == np.int32
    assert token_stream(ds).filename == stream.filename  # second call maps the same file
    for backwards in (False, True):
        from_docs = LanguageModelLoader(docs, batch_size=3, bptt=4, backwards=backwards)
        from_stream = LanguageModelLoader(stream, batch_size=3, bptt=4, backwards=backwards)
        assert len(from_docs) == len(from_stream)
        for (x1, y1), (x2, y2) in zip(from_docs, from_stream):
            assert torch.equal(x1, x2) and torch.equal(y1, y2) and x2.dtype == torch.int64
    with pytest.raises(ValueError, match="read in order"):
        LanguageModelLoader(stream, batch_size=3, bptt=4, shuffle=True)
