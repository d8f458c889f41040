"""make_learner builds the optimizer and callbacks from a stage's OptimizerSettings."""
from __future__ import annotations

import numpy as np
import torch
from fastai.callback.rnn import ModelResetter, RNNCallback
from fastai.callback.training import GradientClip

from conftest import TINY
from ulmtl.backbones.awd_lstm import Regularizer, build_language_model, lm_layer_groups, training_callbacks
from ulmtl.config import ClassifierConfig, FinetuneConfig, OptimizerSettings
from ulmtl.loaders import LanguageModelLoader
from ulmtl.training import make_learner


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
