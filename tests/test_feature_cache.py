"""Cached frozen-encoder features: while only the head trains, the encoder runs once per text."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from ulmtl import TextClassifier
from ulmtl.backbones import transformer
from ulmtl.config import TransformerConfig
from ulmtl.loaders import ClassificationLoader

from test_transformer import encoder_dir, make_encoder, sentiment, small_config, tokenizer  # noqa: F401


def encoded_rows(run) -> int:
    """How many windows the encoder (a BERT model) encodes while ``run()`` runs, counted by
    PyTorch's global forward hook."""
    from transformers import BertModel
    rows = []

    def hook(module, args, kwargs, out):
        if isinstance(module, BertModel):
            rows.append(kwargs["input_ids"].shape[0])
    handle = torch.nn.modules.module.register_module_forward_hook(hook, with_kwargs=True)
    try:
        run()
    finally:
        handle.remove()
    return sum(rows)


@pytest.mark.parametrize("pooling", ["concat", "first", "mean"])
def test_cached_features_equal_the_frozen_encoders_features_in_dataset_order(encoder_dir, tokenizer, pooling):
    model = transformer.build_classifier(str(encoder_dir), tokenizer, 2, TransformerConfig(pooling=pooling),
                                         50, 0.1)
    texts, _ = sentiment()
    docs = transformer.encode_texts(tokenizer, texts, 64)
    loader = ClassificationLoader(docs, np.zeros(len(docs)), 4, shuffle=True, seed=3,
                                  collate=lambda d: transformer.pad_right(d, tokenizer.pad_token_id))
    model.train()
    cached = transformer.pooled_features(model, loader, batch_size=5)
    assert model.training  # the model's mode is restored
    model.eval()
    with torch.no_grad():
        one_by_one = np.concatenate([model.features(torch.tensor(d)[None]).numpy() for d in docs])
    assert np.allclose(cached, one_by_one, atol=1e-5)
    assert cached.shape == (len(docs), {"concat": 96, "first": 32, "mean": 32}[pooling])


def test_feature_extraction_runs_the_encoder_once_per_text_not_once_per_epoch(encoder_dir):
    texts, labels = sentiment()
    rows = {}
    for cache in (True, False):
        clf = TextClassifier(small_config(strategy="feature_extraction", stage_epochs=(2, 1)), encoders=encoder_dir,
                             model_config=TransformerConfig(cache_features=cache), verbose=False)
        rows[cache] = encoded_rows(lambda: clf.fit(texts, labels))
        assert [h["cached_features"] for h in clf.history_["forward"]] == [cache]
    assert rows[True] == len(texts) + 1  # every text once, plus the placeholder validation text
    assert rows[False] >= 3 * len(texts)  # every text in each of the 3 epochs


def test_the_cached_head_stage_trains_the_head_alone_and_predicts_with_the_whole_model(encoder_dir):
    texts, labels = sentiment()
    before = transformer.load_encoder(str(encoder_dir)).state_dict()
    clf = TextClassifier(small_config(unfreeze_plan=(1, 0), stage_epochs=(3, 1), lr=3e-3), encoders=encoder_dir,
                         model_config=TransformerConfig(), verbose=False)
    clf.fit(texts, labels, valid=(texts[:6], labels[:6]))
    head_stage, full_stage = clf.history_["forward"]
    assert head_stage["cached_features"] and not full_stage["cached_features"]
    assert all(n.startswith("head.") for n in head_stage["trainable_params"])
    assert "accuracy" in head_stage["epoch_values"][-1]  # validated on cached features too
    after = clf.models_["forward"].encoder.state_dict()
    assert not all(torch.equal(before[k], after[k]) for k in before)  # the second stage trained it
    assert clf.predict(texts).shape == (len(texts),)


def test_int8_prediction_stays_close_to_fp32_and_refuses_to_be_saved(encoder_dir, tmp_path):
    from ulmtl.config import ConfigError
    texts, labels = sentiment()
    clf = TextClassifier(small_config(stage_epochs=(2, 2), lr=3e-3), encoders=encoder_dir,
                         model_config=TransformerConfig(), verbose=False).fit(texts, labels)
    fp32 = clf.predict_proba(texts)
    int8 = clf.quantize_int8().predict_proba(texts)
    linear = [m for m in clf.models_["forward"].modules() if type(m).__name__ == "Linear"]
    assert linear and not [m for m in linear if m.__module__.startswith("torch.nn.modules")]  # all int8
    assert np.abs(int8 - fp32).max() < 0.1
    with pytest.raises(ConfigError, match="cannot be saved"):
        clf.save(tmp_path / "q")
    clf.fit(texts, labels)  # a new fit gives a float model again
    assert not clf.quantized_
    clf.save(tmp_path / "model")


def test_the_log_of_a_cached_stage_counts_batches_not_feature_values(encoder_dir, tmp_path):
    import json
    texts, labels = sentiment()
    log = tmp_path / "log.jsonl"
    clf = TextClassifier(small_config(strategy="feature_extraction", stage_epochs=(4, 4), batch_size=2),
                         encoders=encoder_dir, model_config=TransformerConfig(), log_path=log, verbose=True)
    clf.fit(texts, labels)
    records = [json.loads(line) for line in log.read_text().splitlines() if '"batch"' in line]
    assert records and all("batches_per_s" in r and "tokens_per_s" not in r for r in records)


def test_logging_the_training_loss_warns_of_nothing(encoder_dir, tmp_path):
    import warnings
    texts, labels = sentiment()
    # 48 texts in batches of 2 for 3 epochs: past the classifier log's 50th batch.
    clf = TextClassifier(small_config(stage_epochs=(1, 3), batch_size=2), encoders=encoder_dir,
                         model_config=TransformerConfig(), log_path=tmp_path / "log.jsonl", verbose=True)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        clf.fit(texts, labels)
    assert '"batch": 50' in (tmp_path / "log.jsonl").read_text()
    assert not [w for w in caught if "requires_grad" in str(w.message)]
