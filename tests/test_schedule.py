"""Learning-rate rules: STLR (continuous and the paper's per-iteration formula), discriminative
learning rates and the gradual-unfreezing plan."""
from __future__ import annotations

import numpy as np
import pytest

from ulmtl.schedule import (
    chain_thaw_stages, discriminative_lrs, linear_warmup_decay, schedule_value, slanted_triangular,
    unfreezing_stages,
)


def slanted_triangular_at_step(step: int, total_steps: int, max_lr, cut_frac: float = 0.1,
                               ratio: float = 32.0):
    """The paper's formula in iterations (``cut = floor(T * cut_frac)``): the oracle for
    :func:`slanted_triangular`, which takes the fraction of training done."""
    cut = max(int(np.floor(total_steps * cut_frac)), 1)
    if step < cut:
        p = step / cut
    else:
        p = 1.0 - (step - cut) / (cut * (1.0 / cut_frac - 1.0))
    return np.asarray(max_lr, dtype=float) * (1.0 + max(p, 0.0) * (ratio - 1.0)) / ratio


def test_stlr_endpoints_and_peak():
    assert slanted_triangular(0.0, 0.01) == pytest.approx(0.01 / 32)
    assert slanted_triangular(0.1, 0.01) == pytest.approx(0.01)
    assert slanted_triangular(1.0, 0.01) == pytest.approx(0.01 / 32)
    # Out-of-range fractions are clamped.
    assert slanted_triangular(1.5, 0.01) == pytest.approx(0.01 / 32)
    assert slanted_triangular(-0.5, 0.01) == pytest.approx(0.01 / 32)


def test_stlr_is_linear_up_then_linear_down():
    max_lr, cut, ratio = 0.02, 0.1, 32.0
    up = np.linspace(0.0, cut, 11)
    down = np.linspace(cut, 1.0, 19)
    lr_up = np.array([slanted_triangular(p, max_lr, cut, ratio) for p in up])
    lr_down = np.array([slanted_triangular(p, max_lr, cut, ratio) for p in down])
    assert np.all(np.diff(lr_up) > 0) and np.all(np.diff(lr_down) < 0)
    # Constant slopes: the second differences vanish.
    np.testing.assert_allclose(np.diff(lr_up, 2), 0, atol=1e-12)
    np.testing.assert_allclose(np.diff(lr_down, 2), 0, atol=1e-12)
    np.testing.assert_allclose(lr_up[[0, -1]], [max_lr / ratio, max_lr])
    np.testing.assert_allclose(lr_down[[0, -1]], [max_lr, max_lr / ratio])
    # Mid-way up is mid-way between min and max.
    assert slanted_triangular(cut / 2, max_lr, cut, ratio) == pytest.approx((max_lr + max_lr / ratio) / 2)


@pytest.mark.parametrize("total,cut_frac,ratio", [(1000, 0.1, 32.0), (200, 0.25, 10.0), (50, 0.2, 32.0)])
def test_stlr_matches_papers_iteration_formula(total, cut_frac, ratio):
    for step in range(total + 1):
        expected = slanted_triangular_at_step(step, total, 0.01, cut_frac, ratio)
        assert slanted_triangular(step / total, 0.01, cut_frac, ratio) == pytest.approx(expected, rel=1e-9)


def test_papers_formula_directly():
    # Howard & Ruder eq. 3 with T=1000, cut_frac=0.1, ratio=32, eta_max=0.01.
    T, eta = 1000, 0.01
    cut = 100
    for t in (0, 50, 99, 100, 101, 550, 1000):
        p = t / cut if t < cut else 1 - (t - cut) / (cut * (1 / 0.1 - 1))
        assert slanted_triangular_at_step(t, T, eta) == pytest.approx(eta * (1 + p * 31) / 32)


def test_stlr_per_group_array():
    max_lrs = np.array(discriminative_lrs(0.01, 4, 2.6))
    for pct in (0.0, 0.05, 0.1, 0.6, 1.0):
        out = slanted_triangular(pct, max_lrs)
        assert out.shape == (4,)
        np.testing.assert_allclose(out, [slanted_triangular(pct, m) for m in max_lrs])
        # The ratio between groups stays the discriminative decay.
        np.testing.assert_allclose(out[1:] / out[:-1], 2.6)
    np.testing.assert_allclose(slanted_triangular_at_step(10, 100, max_lrs), max_lrs)


def test_linear_schedule_rises_from_zero_to_the_peak_then_falls_to_zero():
    assert linear_warmup_decay(0.0, 0.01, 0.1) == 0.0
    assert linear_warmup_decay(0.05, 0.01, 0.1) == pytest.approx(0.005)
    assert linear_warmup_decay(0.1, 0.01, 0.1) == pytest.approx(0.01)
    assert linear_warmup_decay(0.55, 0.01, 0.1) == pytest.approx(0.005)
    assert linear_warmup_decay(1.0, 0.01, 0.1) == 0.0
    assert linear_warmup_decay(1.5, 0.01, 0.1) == 0.0 and linear_warmup_decay(-0.5, 0.01, 0.1) == 0.0
    max_lrs = np.array(discriminative_lrs(0.01, 3, 2.0))
    for pct, scale in ((0.0, 0.0), (0.25, 1.0), (0.625, 0.5), (1.0, 0.0)):
        np.testing.assert_allclose(schedule_value("linear", pct, max_lrs, 0.25, 32), max_lrs * scale, atol=1e-15)


def test_linear_schedule_is_hugging_faces_linear_schedule_with_warmup():
    import torch
    from transformers import get_linear_schedule_with_warmup
    total, warmup = 40, 10
    optimizer = torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=0.02)
    scheduler = get_linear_schedule_with_warmup(optimizer, warmup, total)
    for step in range(total + 1):
        assert linear_warmup_decay(step / total, 0.02, warmup / total) == pytest.approx(scheduler.get_last_lr()[0])
        optimizer.step()
        scheduler.step()


def test_discriminative_lrs():
    assert discriminative_lrs(0.01, 4, 2.6) == [0.01 / 2.6 ** 3, 0.01 / 2.6 ** 2, 0.01 / 2.6, 0.01]
    assert discriminative_lrs(0.004, 1) == [0.004]
    with pytest.raises(ValueError):
        discriminative_lrs(0.01, 0)


def test_unfreezing_stages():
    assert unfreezing_stages((1, 2, 3, 0), 4) == [1, 2, 3, 4]
    assert unfreezing_stages((1, 2, 3, 0), 3) == [1, 2, 3, 3]
    assert unfreezing_stages((0,), 5) == [5]
    assert unfreezing_stages((9,), 4) == [4]
    with pytest.raises(ValueError):
        unfreezing_stages((1, -1), 4)


def test_chain_thaw_stages_train_the_head_then_each_group_from_the_bottom_then_all():
    assert chain_thaw_stages(4) == [(3,), (0,), (1,), (2,), (0, 1, 2, 3)]
    assert chain_thaw_stages(2) == [(1,), (0,), (0, 1)]
    with pytest.raises(ValueError):
        chain_thaw_stages(0)


def test_schedule_value_names():
    np.testing.assert_allclose(schedule_value("stlr", 0.1, 0.01, 0.1, 32), 0.01)
    np.testing.assert_allclose(schedule_value("constant", 0.7, [0.1, 0.2], 0.1, 32), [0.1, 0.2])
    start = schedule_value("one_cycle", 0.0, 0.01, 0.1, 32)
    peak = schedule_value("one_cycle", 0.25, 0.01, 0.1, 32)
    assert start < peak == pytest.approx(0.01)
    with pytest.raises(ValueError, match="unknown schedule"):
        schedule_value("cosine", 0.5, 0.01, 0.1, 32)


def test_a_head_stage_runs_at_least_the_minimum_steps():
    from ulmtl.schedule import head_stage_epochs
    assert head_stage_epochs(1, 0, 2) == 1
    assert head_stage_epochs(1, 50, 2) == 25       # 50 texts in batches of 32: 2 steps an epoch
    assert head_stage_epochs(1, 50, 16) == 4       # ceil(50 / 16)
    assert head_stage_epochs(3, 50, 40) == 3       # the plan's epochs already make the steps
    with pytest.raises(ValueError, match="batches_per_epoch"):
        head_stage_epochs(1, 50, 0)


def test_head_min_steps_lengthens_only_the_stages_that_train_the_head_alone():
    from ulmtl.config import ClassifierConfig
    from ulmtl.schedule import training_plan
    gradual = training_plan(ClassifierConfig(head_min_steps=20), n_groups=4, batches_per_epoch=4)
    assert [(s.groups, s.epochs) for s in gradual] == [((3,), 5), ((2, 3), 1), ((1, 2, 3), 1), ((0, 1, 2, 3), 2)]
    features = training_plan(ClassifierConfig(strategy="feature_extraction", head_min_steps=100), 4, 4)
    assert [s.epochs for s in features] == [25]
    thaw = training_plan(ClassifierConfig(unfreezing="chain_thaw", head_min_steps=20), 3, 4)
    assert [s.epochs for s in thaw] == [5, 1, 1, 2]
    assert training_plan(ClassifierConfig(head_min_steps=20), 4, 40) == training_plan(ClassifierConfig(), 4)
    with pytest.raises(ValueError, match="needs batches_per_epoch"):
        training_plan(ClassifierConfig(head_min_steps=20), 4)


def test_head_alone_steps_counts_only_the_stages_of_the_head_alone():
    from ulmtl.config import ClassifierConfig
    from ulmtl.schedule import head_alone_steps, training_plan
    gradual = training_plan(ClassifierConfig(), n_groups=4)                 # head 1 epoch, then 3 more stages
    assert head_alone_steps(gradual, 4, batches_per_epoch=4) == 4
    assert head_alone_steps(training_plan(ClassifierConfig(head_min_steps=20), 4, 4), 4, 4) == 20
    assert head_alone_steps(training_plan(ClassifierConfig(strategy="feature_extraction"), 4), 4, 3) == 15
    assert head_alone_steps(training_plan(ClassifierConfig(strategy="scratch"), 4), 4, 3) == 0


def test_head_min_steps_is_refused_where_no_stage_trains_the_head_alone():
    from ulmtl.config import ClassifierConfig, FieldError
    with pytest.raises(FieldError, match="head_min_steps.*strategy 'scratch'"):
        ClassifierConfig(strategy="scratch", head_min_steps=10)
    with pytest.raises(FieldError, match=r"head_min_steps.*unfreeze_plan \(2, 0\)"):
        ClassifierConfig(unfreeze_plan=(2, 0), stage_epochs=(1, 1), stage_lr_mult=(1.0, 1.0), head_min_steps=10)
    with pytest.raises(FieldError, match=r"head_min_steps.*unfreeze_plan \(0,\)"):  # auto's finetune candidate
        ClassifierConfig(strategy="auto", unfreeze_plan=(0,), stage_epochs=(5,), stage_lr_mult=(1.0,), head_min_steps=10)
    ClassifierConfig(strategy="auto", head_min_steps=10)
    ClassifierConfig(strategy="feature_extraction", unfreeze_plan=(0,), stage_epochs=(5,), stage_lr_mult=(1.0,),
                     head_min_steps=10)
    ClassifierConfig(unfreezing="chain_thaw", unfreeze_plan=(2, 0), stage_epochs=(1, 1), stage_lr_mult=(1.0, 1.0),
                     head_min_steps=10)


def test_training_plan_is_data_built_from_the_config():
    from ulmtl.config import ClassifierConfig
    from ulmtl.schedule import Stage, training_plan
    plan = training_plan(ClassifierConfig(lr=0.01, lr_decay=2.0), n_groups=4)
    assert [s.groups for s in plan] == [(3,), (2, 3), (1, 2, 3), (0, 1, 2, 3)]
    assert [s.epochs for s in plan] == [1, 1, 1, 2]
    assert plan[0] == Stage((3,), 1, [0.02 / 8, 0.02 / 4, 0.02 / 2, 0.02])
    features = training_plan(ClassifierConfig(strategy="feature_extraction"), n_groups=4)
    assert features == [Stage((3,), 5, [0.02] * 4)]
    scratch = training_plan(ClassifierConfig(strategy="scratch"), n_groups=3)
    assert scratch == [Stage((0, 1, 2), 5, [0.01] * 3)]
    thaw = training_plan(ClassifierConfig(unfreezing="chain_thaw", discriminative=False), n_groups=3)
    assert [s.groups for s in thaw] == [(2,), (0,), (1,), (0, 1, 2)]
    assert [s.peak_lrs[0] for s in thaw] == [0.02, 0.001, 0.001, 0.001]
