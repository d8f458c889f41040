"""make_learner builds the optimizer and callbacks from a stage's OptimizerSettings."""
from __future__ import annotations

import json

import numpy as np
import torch
from fastai.callback.rnn import ModelResetter, RNNCallback
from fastai.callback.training import GradientClip
from fastai.optimizer import OptimWrapper
import pytest

from conftest import TINY
from ulmtl.backbones.awd_lstm import Regularizer, build_language_model, lm_layer_groups, training_callbacks
from ulmtl.checkpoint import CheckpointError
from ulmtl.config import TRANSFORMER_CLASSIFIER, TRANSFORMER_FINETUNE, ClassifierConfig, FinetuneConfig, OptimizerSettings
from ulmtl.loaders import LanguageModelLoader
from ulmtl.training import (
    TrainingLog, group_lrs, make_learner, optimizer_tensors, restore_optimizer, train_only_groups,
)


def lm_learner(settings: OptimizerSettings):
    """An AWD-LSTM LM's learner, its AR / TAR from ``settings`` as the stages pass them."""
    docs = [np.arange(2, 40, dtype=np.int64)] * 4
    loader = LanguageModelLoader(docs, 2, 5)
    model = build_language_model(50, TINY)
    return make_learner(loader, loader, model, lm_layer_groups, settings, progress=False,
                        callbacks=training_callbacks(model, settings.ar_alpha, settings.tar_beta, "fp32"))


def test_make_learner_takes_adam_clipping_and_ar_tar_from_the_settings():
    learn = lm_learner(FinetuneConfig(betas=(0.8, 0.95), weight_decay=0.05, clip=0.25, ar_alpha=3.0, tar_beta=0.5))
    hypers = learn.opt.hypers[0]
    assert (hypers["mom"], hypers["sqr_mom"], hypers["wd"]) == (0.8, 0.95, 0.05)
    [clip] = [cb for cb in learn.cbs if isinstance(cb, GradientClip)]
    assert clip.max_norm == 0.25
    [regularizer] = [cb for cb in learn.cbs if isinstance(cb, Regularizer)]
    assert (regularizer.alpha, regularizer.beta) == (3.0, 0.5)


def test_make_learner_adds_no_clipping_or_ar_tar_when_the_settings_are_zero():
    learn = lm_learner(ClassifierConfig(ar_alpha=0.0, tar_beta=0.0))  # the classifier's clip is 0
    assert not [cb for cb in learn.cbs if isinstance(cb, (GradientClip, Regularizer))]


def test_make_learner_adds_no_backbone_callbacks_of_its_own():
    # AR / TAR and the RNN callbacks come from the AWD-LSTM (training_callbacks); a transformer stage
    # refuses AR / TAR in its own config check (tests/test_transformer.py).
    loader = LanguageModelLoader([np.arange(2, 40, dtype=np.int64)] * 4, 2, 5)
    learn = make_learner(loader, loader, torch.nn.Linear(2, 2), lambda m: [list(m.parameters())], OptimizerSettings(),
                         progress=False, train_norms=False)
    assert not [cb for cb in learn.cbs if isinstance(cb, (ModelResetter, RNNCallback, Regularizer))]
    assert learn.train_bn is False
    [clip] = [cb for cb in learn.cbs if isinstance(cb, GradientClip)]
    assert clip.max_norm == OptimizerSettings().clip


# --------------------------------------------------------------------------- the fused optimizer

def two_group_learner(optimizer: str, seed: int = 0):
    """A learner over a 3-layer net whose groups are (first layer, last two), fitted by hand below."""
    torch.manual_seed(seed)
    model = torch.nn.Sequential(torch.nn.Linear(4, 8), torch.nn.LayerNorm(8), torch.nn.Linear(8, 3))
    loader = LanguageModelLoader([np.arange(2, 40, dtype=np.int64)] * 4, 2, 5)
    settings = OptimizerSettings(optimizer=optimizer, betas=(0.9, 0.999), weight_decay=0.01, clip=0.0)
    return make_learner(loader, loader, model, lambda m: [list(m[0].parameters()), list(m[1:].parameters())],
                        settings, progress=False)


def adam_steps(learn, steps: int, seed: int = 1) -> None:
    torch.manual_seed(seed)
    for _ in range(steps):
        loss = learn.model(torch.randn(16, 4)).pow(2).mean()
        loss.backward()
        learn.opt.step()
        learn.opt.zero_grad()


def test_the_transformer_presets_train_with_the_fused_adamw():
    assert TRANSFORMER_CLASSIFIER.optimizer == TRANSFORMER_FINETUNE.optimizer == "fused_adamw"
    assert OptimizerSettings().optimizer == "fastai_adam"  # the AWD-LSTM's stages keep fastai's Adam
    learn = two_group_learner("fused_adamw")
    assert isinstance(learn.opt, OptimWrapper) and isinstance(learn.opt.opt, torch.optim.AdamW)
    assert learn.opt.opt.defaults["fused"] is True
    hypers = learn.opt.hypers[0]
    assert (hypers["mom"], hypers["sqr_mom"], hypers["wd"]) == (0.9, 0.999, 0.01)


def test_the_fused_adamw_steps_like_fastais_adam_on_decayed_parameters():
    # Without weight decay both are Adam with the same betas and eps: the same weights after 5 steps.
    learners = [two_group_learner(name) for name in ("fastai_adam", "fused_adamw")]
    for learn in learners:
        learn.opt.set_hyper("wd", 0.0)
        learn.opt.set_hyper("lr", [1e-2, 3e-2])
        adam_steps(learn, 5)
    for a, b in zip(learners[0].model.parameters(), learners[1].model.parameters()):
        assert torch.allclose(a, b, atol=1e-6)
    assert not torch.allclose(learners[1].model[0].weight, two_group_learner("fused_adamw").model[0].weight)


def test_the_fused_adamw_takes_an_lr_per_group_and_keeps_frozen_groups_still():
    learn = two_group_learner("fused_adamw")
    learn.opt.set_hyper("lr", [1e-3, 2.6e-3])
    assert group_lrs(learn) == [1e-3, 2.6e-3]
    assert [g["lr"] for g in learn.opt.opt.param_groups] == [1e-3, 2.6e-3]
    adam_steps(learn, 2)
    train_only_groups(learn, [1])  # the first layer frozen: its weights stay, the Adam state is cleared
    assert not learn.opt.opt.state
    frozen, top = learn.model[0].weight.detach().clone(), learn.model[2].weight.detach().clone()
    adam_steps(learn, 3)
    assert torch.equal(learn.model[0].weight, frozen) and not learn.model[0].weight.requires_grad
    assert not torch.equal(learn.model[2].weight, top)
    assert learn.model[1].weight.requires_grad  # a norm in a frozen group trains (train_bn)


@pytest.mark.parametrize("optimizer", ["fastai_adam", "fused_adamw"])
def test_optimizer_state_round_trip_continues_the_same_training(optimizer):
    learn = two_group_learner(optimizer)
    adam_steps(learn, 3)
    tensors, values = optimizer_tensors(learn)
    assert tensors and values["format"] == ("torch" if optimizer == "fused_adamw" else "fastai")
    resumed = two_group_learner(optimizer)
    resumed.model.load_state_dict(learn.model.state_dict())
    restore_optimizer(resumed, {k: v.clone() for k, v in tensors.items()}, values)  # as if read from disk
    adam_steps(learn, 2, seed=7)
    adam_steps(resumed, 2, seed=7)
    for a, b in zip(learn.model.parameters(), resumed.model.parameters()):
        assert torch.equal(a, b)


def test_optimizer_state_of_the_other_optimizer_is_refused():
    learn = two_group_learner("fastai_adam")
    adam_steps(learn, 1)
    tensors, values = optimizer_tensors(learn)
    with pytest.raises(CheckpointError, match="optimizer setting the run started with"):
        restore_optimizer(two_group_learner("fused_adamw"), tensors, values)


def test_training_log_without_echo_writes_its_file_and_prints_nothing(tmp_path, capsys):
    TrainingLog(tmp_path / "quiet.jsonl", label="quiet", echo=False).write({"loss": 1.5})
    TrainingLog(tmp_path / "loud.jsonl", label="loud").write({"loss": 2.5})
    assert capsys.readouterr().out == "[loud] loss=2.5\n"
    record = json.loads((tmp_path / "quiet.jsonl").read_text())
    assert record["stage"] == "quiet" and record["loss"] == 1.5
    assert json.loads((tmp_path / "loud.jsonl").read_text())["loss"] == 2.5
