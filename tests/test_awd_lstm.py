"""The AWD-LSTM backbone: what only it knows (vocabulary checks, hidden-state resume, BPT3C padding),
and that the shared modules know none of it."""
from __future__ import annotations

import ast
import json
import shutil
from collections import Counter

import numpy as np
import pytest
import torch

from conftest import REPO_ROOT, TINY
from ulmtl.backbones.awd_lstm import (
    build_language_model, checkpoint_vocab, hidden_state, pad_chunked, read_checkpoint, restore_hidden_state,
)
from ulmtl.checkpoint import VOCAB_FILE, CheckpointError, load_checkpoint, save_checkpoint
from ulmtl.text import Vocab

# Modules every backbone uses: none may import a backbone, fastai's RNN callbacks or the AWD-LSTM's Vocab.
# The stages may (lm: the AWD-LSTM's stages 1 and 2; pretrain, finetune, classify), and the entry points.
SHARED = ("checkpoint", "config", "distributed", "loaders", "precision", "schedule", "training")
BACKBONE_ONLY = ("ulmtl.backbones", "ulmtl.text", "fastai.callback.rnn", "fastai.text")


@pytest.mark.parametrize("module", SHARED)
def test_shared_modules_import_no_backbone(module):
    tree = ast.parse((REPO_ROOT / "ulmtl" / f"{module}.py").read_text())
    imported = [alias.name for node in ast.walk(tree) if isinstance(node, ast.Import) for alias in node.names]
    imported += [node.module for node in ast.walk(tree) if isinstance(node, ast.ImportFrom)]
    wrong = [name for name in imported if name.startswith(BACKBONE_ONLY)]
    # config.py reads the special tokens' count for its vocabulary-size limit, nothing else.
    assert wrong == (["ulmtl.text"] if module == "config" else []), wrong


@pytest.fixture
def lm_folder(tmp_path):
    vocab = Vocab.build(Counter({"movie": 5, "good": 4, "bad": 3}))
    model = build_language_model(len(vocab), TINY)
    return save_checkpoint(tmp_path / "lm", model.state_dict(), vocab.itos, {"kind": "lm"}), vocab


def test_read_checkpoint_gives_the_vocabulary(lm_folder):
    folder, vocab = lm_folder
    checkpoint, read = read_checkpoint(folder)
    assert read.itos == vocab.itos and read.pad_id == 1 and checkpoint.kind == "lm"


def test_vocabulary_that_does_not_fit_the_weights_is_refused(lm_folder, tmp_path):
    folder, vocab = lm_folder
    (folder / VOCAB_FILE).write_text(json.dumps(vocab.itos[:-8]))
    checkpoint = load_checkpoint(folder)  # the folder is sound; the AWD-LSTM's vocabulary is not
    with pytest.raises(CheckpointError, match=rf"{len(vocab)} embedding rows \(0.encoder.weight\) but "
                                              rf"{VOCAB_FILE} has {len(vocab) - 8} tokens"):
        checkpoint_vocab(checkpoint)
    (folder / VOCAB_FILE).write_text(json.dumps(vocab.itos[:-1] + ["movie"]))
    with pytest.raises(CheckpointError, match=f"{VOCAB_FILE}: vocabulary has duplicate tokens"):
        read_checkpoint(folder)
    unk_less = shutil.copytree(folder, tmp_path / "no-unk")
    (unk_less / VOCAB_FILE).write_text(json.dumps(["xxpadding"] + vocab.itos[1:]))
    with pytest.raises(CheckpointError, match="has no 'xxunk' token"):
        read_checkpoint(unk_less)


def test_restored_hidden_state_continues_the_stream_exactly():
    torch.manual_seed(0)
    lm = build_language_model(20, TINY).eval()
    torch.manual_seed(0)
    fresh = build_language_model(20, TINY).eval()  # same weights, the hidden state of one row
    first, second = torch.randint(0, 20, (3, 5)), torch.randint(0, 20, (3, 5))
    with torch.no_grad():
        lm(first)  # the LM now carries a hidden state for 3 rows
        saved = {key: value.clone() for key, value in hidden_state(lm).items()}
        assert sorted(saved) == ["hidden.0.c", "hidden.0.h", "hidden.1.c", "hidden.1.h"]
        restore_hidden_state(fresh, saved)
        assert fresh[0].bs == 3
        assert torch.equal(fresh(second)[0], lm(second)[0])


def test_pad_chunked_whole_chunks_first_remainder_last():
    docs = [np.arange(10, 33), np.arange(100, 105), np.arange(200, 210)]  # 23, 5, 10
    out = pad_chunked(docs, pad_id=1, bptt=4)
    assert out.shape == (3, 23) and out.dtype == np.int64
    np.testing.assert_array_equal(out[0], np.arange(10, 33))
    # 18 missing: 4 whole chunks (16) in front, 2 at the end.
    np.testing.assert_array_equal(out[1], [1] * 16 + list(range(100, 105)) + [1] * 2)
    # 13 missing: 3 whole chunks (12) in front, 1 at the end.
    np.testing.assert_array_equal(out[2], [1] * 12 + list(range(200, 210)) + [1])
    for row, doc in zip(out, docs):
        first = int(np.flatnonzero(row != 1)[0])
        assert first % 4 == 0, "each document's first token starts a bptt chunk"
        assert int((row != 1).sum()) == len(doc)


def test_pad_chunked_matches_fastai():
    from fastai.text.data import pad_chunk
    docs = [np.arange(2, 2 + n) for n in (3, 17, 9, 30)]
    ours = pad_chunked(docs, pad_id=1, bptt=7)
    for row, doc in zip(ours, docs):
        theirs = pad_chunk(torch.from_numpy(doc), pad_idx=1, pad_first=True, seq_len=7, pad_len=30)
        np.testing.assert_array_equal(row, theirs.numpy())




def test_the_registry_gives_each_backbone_and_refuses_an_unknown_name():
    from ulmtl.backbones import BACKBONES, ClassifierBackbone, backbone_for, get_backbone
    from ulmtl.config import ConfigError, TransformerConfig
    assert backbone_for(TINY) is get_backbone("awd_lstm") and backbone_for(TransformerConfig()) is get_backbone("transformer")
    members = [name for name in vars(ClassifierBackbone) if not name.startswith("_")]
    members += list(ClassifierBackbone.__annotations__)
    for name, backbone in BACKBONES.items():
        assert backbone.name == name
        assert [m for m in members if not hasattr(backbone, m)] == []
    with pytest.raises(ConfigError, match="unknown backbone 'lstm'; known backbones: awd_lstm, transformer"):
        get_backbone("lstm")
    with pytest.raises(ConfigError, match="model_config must be one of ModelConfig, TransformerConfig, got dict"):
        backbone_for({})
