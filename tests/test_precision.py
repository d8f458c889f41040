"""bf16 autocast: the CPU LSTM that runs its matmuls in bf16, and choosing the precision."""
from __future__ import annotations

import warnings

import numpy as np
import pytest
import torch
from torch import nn

from ulmtl import ClassifierConfig, ModelConfig, PretrainConfig, TextClassifier, TokenizerConfig, pretrain
from ulmtl.backbones.awd_lstm import (
    AutocastLSTM, build_language_model, lm_layer_groups, training_callbacks, use_autocast_lstm,
)
from ulmtl.config import OptimizerSettings
from ulmtl.precision import resolve_precision
from ulmtl.training import BF16Autocast, make_learner


def pair(inputs: int = 12, hidden: int = 20) -> tuple[nn.LSTM, nn.LSTM]:
    torch.manual_seed(0)
    reference = nn.LSTM(inputs, hidden, batch_first=True)
    fast = nn.LSTM(inputs, hidden, batch_first=True)
    fast.load_state_dict(reference.state_dict())
    return reference, use_autocast_lstm(fast)


def run(lstm, x, state, bf16: bool):
    x = x.detach().clone().requires_grad_(True)
    with torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16):
        out, (h, c) = lstm(x, state)
    # Gradient through all three outputs, with different weights, checks every backward path.
    (out.float().pow(2).sum() + 2 * h.float().sum() - c.float().sum()).backward()
    return out.float(), h.float(), c.float(), x.grad, {n: p.grad.clone() for n, p in lstm.named_parameters()}


def test_bf16_lstm_matches_fp32_lstm_within_bf16_rounding():
    reference, fast = pair()
    x = torch.randn(3, 9, 12)
    state = (torch.randn(1, 3, 20), torch.randn(1, 3, 20))
    expected = run(reference, x, state, bf16=False)
    got = run(fast, x, state, bf16=True)
    assert isinstance(fast, AutocastLSTM)
    for want, have in zip(expected[:4], got[:4]):
        assert have.dtype == torch.float32
        assert (want - have).abs().max() <= 0.02 * want.abs().max()
    for name, grad in expected[4].items():
        assert (grad - got[4][name]).abs().max() <= 0.02 * grad.abs().max(), name


def test_bf16_lstm_really_runs_in_bf16():
    reference, fast = pair()
    x = torch.randn(2, 5, 12)
    exact = run(reference, x, None, bf16=False)[0]
    rounded = run(fast, x, None, bf16=True)[0]
    assert not torch.equal(exact, rounded)  # differs by bf16 rounding, so the bf16 path ran


def test_outside_autocast_it_is_exactly_nn_lstm():
    reference, fast = pair()
    x = torch.randn(2, 5, 12)
    expected, got = run(reference, x, None, bf16=False), run(fast, x, None, bf16=False)
    for want, have in zip(expected[:4], got[:4]):
        assert torch.equal(want, have)


def test_swapping_keeps_parameters_and_state_dict_keys():
    model = build_language_model(50, ModelConfig(emb_size=8, hidden_size=8, n_layers=2))
    keys, params = list(model.state_dict()), [id(p) for p in model.parameters()]
    use_autocast_lstm(model)
    assert list(model.state_dict()) == keys
    assert [id(p) for p in model.parameters()] == params
    assert sum(isinstance(m, AutocastLSTM) for m in model.modules()) == 2


def test_precision_resolution():
    cpu = torch.device("cpu")
    assert resolve_precision("fp32", cpu) == "fp32"
    assert resolve_precision("auto", cpu) == "fp32"  # the AWD-LSTM's CPU bf16 path does not pay
    from ulmtl.precision import BF16_MIN_SPEEDUP, cpu_bf16_matmul_speedup, cpu_has_bf16_units
    fast = cpu_has_bf16_units() and cpu_bf16_matmul_speedup() >= BF16_MIN_SPEEDUP
    assert resolve_precision("auto", cpu, bf16_pays_on_cpu=True) == ("bf16" if fast else "fp32")
    assert cpu_bf16_matmul_speedup() == cpu_bf16_matmul_speedup()  # measured once per process
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        assert resolve_precision("bf16", cpu) == "bf16"
    with pytest.raises(ValueError, match="model.precision"):
        resolve_precision("fp16", cpu)


def test_make_learner_adds_autocast_only_for_bf16():
    from ulmtl.loaders import LanguageModelLoader
    docs = [np.arange(2, 40, dtype=np.int64)] * 4
    loader = LanguageModelLoader(docs, 2, 5)
    for precision, expected in (("fp32", False), ("bf16", True)):
        model = build_language_model(50, ModelConfig(emb_size=8, hidden_size=8, n_layers=2))
        settings = OptimizerSettings()
        learn = make_learner(loader, loader, model, lm_layer_groups, settings, precision=precision,
                             callbacks=training_callbacks(model, settings.ar_alpha, settings.tar_beta, precision))
        assert any(isinstance(cb, BF16Autocast) for cb in learn.cbs) == expected
        assert any(isinstance(m, AutocastLSTM) for m in model.modules()) == expected
    with pytest.raises(ValueError, match="resolved precision"):
        make_learner(loader, loader, model, lm_layer_groups, OptimizerSettings(), precision="auto")


def test_bf16_training_lowers_perplexity_and_predicts(tmp_path):
    words = ["the", "cat", "dog", "sat", "ran", "on", "a", "mat", "hill", "red", "big"]
    texts = [" ".join(words[(i * 3 + j) % len(words)] for j in range(6 + i % 3)) + " ." for i in range(400)]
    from datasets import Dataset
    runs = {}
    for precision in ("fp32", "bf16"):
        runs[precision] = pretrain(Dataset.from_dict({"text": texts}), tmp_path / f"lm-{precision}",
                                   PretrainConfig(epochs=4, batch_size=8, bptt=10, lr=3e-2, checkpoint_every_s=0),
                                   ModelConfig(emb_size=16, hidden_size=16, n_layers=2, precision=precision),
                                   TokenizerConfig(min_freq=1))
    fp32, bf16 = runs["fp32"]["valid_perplexity"], runs["bf16"]["valid_perplexity"]
    assert bf16 < 0.25 * runs["bf16"]["vocab_size"]  # it learned (a uniform guess is the vocabulary size)
    assert abs(bf16 - fp32) <= 0.05 * fp32  # and as well as fp32 after the same tokens
    labels = ["a" if "cat" in t else "b" for t in texts]
    config = ClassifierConfig(batch_size=16, bptt=10, max_len=100, stage_epochs=(1, 1, 1, 1))
    # Precision is the run's setting (the encoder's own bf16 is not inherited): bf16 asked here.
    clf = TextClassifier(config, encoders=tmp_path / "lm-fp32", model_config=ModelConfig(precision="bf16"),
                         verbose=False).fit(texts, labels)
    assert clf.model_configs_["forward"].precision == "bf16"
    assert clf.model_configs_["forward"].hidden_size == 16  # the architecture is the encoder's
    probs = clf.predict_proba(texts[:10])
    assert probs.shape == (10, 2) and np.allclose(probs.sum(1), 1, atol=1e-5)
    clf.save(tmp_path / "clf")
    np.testing.assert_array_equal(TextClassifier.load(tmp_path / "clf").predict_proba(texts[:10]), probs)
