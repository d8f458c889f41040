"""Learning-rate rules as small pure functions: STLR, discriminative LRs, the unfreezing plan."""
from __future__ import annotations

import math
from typing import NamedTuple

import numpy as np


def slanted_triangular(pct: float, max_lr, cut_frac: float = 0.1, ratio: float = 32.0):
    """Slanted triangular learning rate (Howard & Ruder 2018, eq. 3) at training fraction ``pct``.

    Rises linearly from ``max_lr / ratio`` to ``max_lr`` over the first ``cut_frac`` of training,
    then decays linearly back to ``max_lr / ratio``. ``max_lr`` may be an array (one per group).
    """
    pct = min(max(float(pct), 0.0), 1.0)
    if pct < cut_frac:
        p = pct / cut_frac
    else:
        p = 1.0 - (pct - cut_frac) / (1.0 - cut_frac)
    return np.asarray(max_lr, dtype=float) * (1.0 + p * (ratio - 1.0)) / ratio


def linear_warmup_decay(pct: float, max_lr, cut_frac: float = 0.1):
    """Hugging Face's ``get_linear_schedule_with_warmup`` at training fraction ``pct``: rises
    linearly from 0 to ``max_lr`` over the first ``cut_frac`` of training, then decays linearly to
    0. ``max_lr`` may be an array (one per group)."""
    pct = min(max(float(pct), 0.0), 1.0)
    p = pct / cut_frac if pct < cut_frac else (1.0 - pct) / (1.0 - cut_frac)
    return np.asarray(max_lr, dtype=float) * p


def one_cycle_cosine(pct: float, max_lr, pct_start: float = 0.25, div: float = 25.0,
                     div_final: float = 1e5):
    """fastai's one-cycle schedule (cosine warm-up then cosine annealing), for comparison."""
    max_lr = np.asarray(max_lr, dtype=float)

    def cos(start, end, p):
        return start + (1 + np.cos(np.pi * (1 - p))) * (end - start) / 2

    if pct < pct_start:
        return cos(max_lr / div, max_lr, pct / pct_start)
    return cos(max_lr, max_lr / div_final, (pct - pct_start) / (1 - pct_start))


def discriminative_lrs(lr: float, n_groups: int, decay: float = 2.6) -> list[float]:
    """One LR per layer group, lowest layers first: ``lr / decay**k`` for the k-th group from the top."""
    if n_groups < 1:
        raise ValueError("n_groups must be at least 1")
    return [lr / decay ** (n_groups - 1 - i) for i in range(n_groups)]


def schedule_value(name: str, pct: float, max_lr, cut_frac: float, ratio: float):
    """The LR (per group) at training fraction ``pct`` for the named schedule."""
    if name == "stlr":
        return slanted_triangular(pct, max_lr, cut_frac, ratio)
    if name == "one_cycle":
        return one_cycle_cosine(pct, max_lr)
    if name == "linear":
        return linear_warmup_decay(pct, max_lr, cut_frac)
    if name == "constant":
        return np.asarray(max_lr, dtype=float)
    raise ValueError(f"unknown schedule {name!r}; use 'stlr', 'linear', 'one_cycle' or 'constant'")


def unfreezing_stages(plan: tuple[int, ...], n_groups: int) -> list[int]:
    """Number of trainable top groups at each stage (0 in the plan means all)."""
    stages = []
    for k in plan:
        if k < 0:
            raise ValueError(f"unfreeze plan entries must be >= 0, got {k}")
        stages.append(n_groups if k == 0 else min(k, n_groups))
    return stages


def chain_thaw_stages(n_groups: int) -> list[tuple[int, ...]]:
    """Chain-thaw (Felbo et al. 2017): the layer groups trained in each stage, bottom group = 0.

    The new head (the top group) alone, then every other group alone from the bottom up, then all.
    """
    if n_groups < 1:
        raise ValueError("n_groups must be at least 1")
    top = n_groups - 1
    return [(top,)] + [(group,) for group in range(top)] + [tuple(range(n_groups))]


class Stage(NamedTuple):
    """One stage of classifier training: the layer groups that train (bottom group = 0), for how
    many epochs, at which peak LR per group."""

    groups: tuple[int, ...]
    epochs: int
    peak_lrs: list[float]


def head_stage_epochs(epochs: int, min_steps: int, batches_per_epoch: int) -> int:
    """Epochs of a stage that trains the head alone: ``epochs``, or the fewest that make
    ``min_steps`` optimizer steps at ``batches_per_epoch`` when those are more."""
    if batches_per_epoch < 1:
        raise ValueError(f"batches_per_epoch must be at least 1, got {batches_per_epoch}")
    return max(epochs, math.ceil(min_steps / batches_per_epoch))


def head_alone_steps(plan: list[Stage], n_groups: int, batches_per_epoch: int) -> int:
    """Optimizer steps in which ``plan`` trains the head (group ``n_groups - 1``) alone."""
    return sum(stage.epochs * batches_per_epoch for stage in plan if tuple(stage.groups) == (n_groups - 1,))


def training_plan(config, n_groups: int, batches_per_epoch: int | None = None) -> list[Stage]:
    """The stages of a classifier's training under ``config`` (a ``ClassifierConfig``):

    * ``feature_extraction``: the head alone, for all the plan's epochs, at ``lr * stage_lr_mult[0]``;
    * ``scratch``: every group at once at ``lr``;
    * ``finetune``: gradual unfreezing from the top following ``unfreeze_plan`` (or chain-thaw),
      each stage at ``lr * stage_lr_mult[i]``, with ``lr / lr_decay**k`` per group when
      ``discriminative``.

    A stage that trains the head alone runs for at least ``config.head_min_steps`` optimizer steps
    (:func:`head_stage_epochs`; ``batches_per_epoch`` is needed when that is above 0).
    """
    if config.strategy == "auto":
        raise ValueError("strategy 'auto' has no plan of its own: ulmtl.selection fits the strategies "
                         "it tries")
    if config.head_min_steps and batches_per_epoch is None:
        raise ValueError("head_min_steps needs batches_per_epoch: the plan's head stages are counted in steps")
    plan = _plan_in_epochs(config, n_groups)
    if not config.head_min_steps:
        return plan
    head = (n_groups - 1,)
    return [stage._replace(epochs=head_stage_epochs(stage.epochs, config.head_min_steps, batches_per_epoch))
            if stage.groups == head else stage for stage in plan]


def _plan_in_epochs(config, n_groups: int) -> list[Stage]:
    total_epochs = sum(config.stage_epochs)
    everything = tuple(range(n_groups))
    if config.strategy == "feature_extraction":
        return [Stage((n_groups - 1,), total_epochs, [config.lr * config.stage_lr_mult[0]] * n_groups)]
    if config.strategy == "scratch":
        return [Stage(everything, total_epochs, [config.lr] * n_groups)]
    if config.unfreezing == "chain_thaw":
        stages = chain_thaw_stages(n_groups)
        inner = len(stages) - 2
        epochs = [config.stage_epochs[0]] + [config.chain_thaw_epochs] * inner + [config.stage_epochs[-1]]
        mults = [config.stage_lr_mult[0]] + [config.chain_thaw_lr_mult] * inner + [config.stage_lr_mult[-1]]
    else:
        stages = [everything[n_groups - k:] for k in unfreezing_stages(config.unfreeze_plan, n_groups)]
        epochs, mults = config.stage_epochs, config.stage_lr_mult
    plan = []
    for groups, stage_epochs, mult in zip(stages, epochs, mults):
        peak = config.lr * mult
        lrs = discriminative_lrs(peak, n_groups, config.lr_decay) if config.discriminative else [peak] * n_groups
        plan.append(Stage(tuple(groups), stage_epochs, lrs))
    return plan
