"""The LM training that stages 1 and 2 share: its input errors name the stage and the setting."""
from __future__ import annotations

import pytest
from datasets import Dataset

from conftest import TINY, synthetic
from ulmtl import DataError, FinetuneConfig, PretrainConfig, TokenizerConfig, finetune_lm, pretrain


def test_too_few_texts_or_tokens_fail_naming_the_stage_and_its_batch_size(tmp_path):
    config = PretrainConfig(epochs=1, batch_size=4, bptt=5, checkpoint_every_s=0, valid_fraction=0.2)
    with pytest.raises(DataError, match="pretraining needs at least two texts; got 1"):
        pretrain(Dataset.from_dict({"text": ["one text only"]}), tmp_path / "one", config, TINY)
    texts, _ = synthetic(40, seed=0)
    with pytest.raises(DataError, match=r"pretraining on 40 texts: .* \(pretrain.batch_size is 4096\)"):
        pretrain(Dataset.from_dict({"text": texts}), tmp_path / "big", PretrainConfig(
            batch_size=4096, bptt=5, checkpoint_every_s=0, valid_fraction=0.2), TINY, TokenizerConfig(min_freq=1))
    pretrain(Dataset.from_dict({"text": texts}), tmp_path / "lm", config, TINY, TokenizerConfig(min_freq=1))
    with pytest.raises(DataError, match="LM fine-tuning needs at least two texts; got 1"):
        finetune_lm(texts[:1], tmp_path / "lm", tmp_path / "ft", FinetuneConfig(batch_size=4, bptt=5))
    with pytest.raises(DataError, match=r"LM fine-tuning on 20 texts: .* \(finetune.batch_size is 4096\)"):
        finetune_lm(texts[:20], tmp_path / "lm", tmp_path / "ft", FinetuneConfig(batch_size=4096, bptt=5))
    assert not (tmp_path / "ft").exists()
