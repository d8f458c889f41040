"""make_learner builds the optimizer and callbacks from a stage's OptimizerSettings."""
from __future__ import annotations

import numpy as np
import pytest
import torch
from fastai.callback.training import GradientClip

from conftest import TINY
from ulmtl.config import ClassifierConfig, FinetuneConfig, OptimizerSettings
from ulmtl.loaders import LanguageModelLoader
from ulmtl.model import build_language_model, lm_layer_groups
from ulmtl.training import Regularizer, make_learner


def lm_learner(settings: OptimizerSettings, **options):
    docs = [np.arange(2, 40, dtype=np.int64)] * 4
    loader = LanguageModelLoader(docs, 2, 5)
    return make_learner(loader, loader, build_language_model(50, TINY), lm_layer_groups, settings,
                        progress=False, **options)


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


def test_make_learner_refuses_ar_tar_for_a_model_that_is_not_recurrent():
    loader = LanguageModelLoader([np.arange(2, 40, dtype=np.int64)] * 4, 2, 5)
    with pytest.raises(ValueError, match="AR/TAR regularization needs a recurrent model"):
        make_learner(loader, loader, torch.nn.Linear(2, 2), lambda m: [list(m.parameters())], OptimizerSettings(),
                     recurrent=False)
