"""What the three stages share: a fastai ``Learner`` set up for ULMFiT, and its callbacks.

* :class:`ScheduledLR` sets per-group learning rates from a pure schedule function each batch
  (slanted triangular by default), optionally advancing with wall-clock time under a time budget.
* :class:`TrainingLog` prints and records progress (loss, LR, tokens/s) as JSON lines.
* :class:`StopAfter` ends training when a time or token budget is spent.
* :class:`StopOnNonFiniteLoss` ends it with :class:`NonFiniteLoss` when the loss is NaN or infinite.
"""
from __future__ import annotations

import json
import random
import time
from functools import partial
from pathlib import Path
from typing import Sequence

import numpy as np
import torch
from fastai.callback.core import Callback, CancelFitException
from fastai.callback.progress import ProgressCallback
from fastai.callback.training import GradientClip
from fastai.data.core import DataLoaders
from fastai.learner import Learner
from fastai.losses import CrossEntropyLossFlat
from fastai.optimizer import Adam, OptimWrapper

from ulmtl.checkpoint import CheckpointError
from ulmtl.config import OptimizerSettings
from ulmtl.distributed import AverageGradients, any_process, is_main, mean_across_processes, setup, world
from ulmtl.precision import autocast
from ulmtl.schedule import schedule_value


def set_seed(seed: int) -> None:
    """Seed Python, NumPy and torch."""
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


def prepare_torch() -> torch.device:
    """Flush denormals (tiny floats the CPU computes slowly), join the process group when launched
    by torchrun, and pick the device."""
    torch.set_flush_denormal(True)
    setup()
    if torch.cuda.is_available():
        return torch.device("cuda", torch.cuda.current_device())
    return torch.device("cpu")


def make_learner(train_loader, valid_loader, model, splitter, settings: OptimizerSettings, *, metrics=None,
                 device: torch.device | None = None, progress: bool = True, precision: str = "fp32",
                 stage: str = "training", callbacks: Sequence[Callback] = (), train_norms: bool = True,
                 loss_func=None) -> Learner:
    """A fastai Learner with the optimizer of ``settings.optimizer`` (:func:`optimizer_factory`),
    optional clipping (``settings.clip``) and the backbone's ``callbacks`` (the AWD-LSTM's RNN
    callbacks and AR/TAR); ``precision`` (resolved: "fp32" or "bf16", see
    :func:`~ulmtl.precision.resolve_precision`) "bf16" trains under bf16 autocast. ``train_norms``:
    normalization layers stay trainable in frozen layer groups (fastai's ``train_bn``). A loss that
    stops being finite raises :class:`NonFiniteLoss` naming ``stage``. ``loss_func`` defaults to
    cross-entropy (a multi-label classifier passes binary cross-entropy). The LRs are set by the
    caller's schedule (:class:`ScheduledLR`)."""
    if precision not in ("fp32", "bf16"):
        raise ValueError(f"make_learner takes a resolved precision, 'fp32' or 'bf16'; got {precision!r}")
    device = device or torch.device("cpu")
    dls = DataLoaders(train_loader, valid_loader, device=device)
    callbacks = [*callbacks, StopOnNonFiniteLoss(stage)]
    if precision == "bf16":
        callbacks.append(BF16Autocast())
    if world()[1] > 1:
        callbacks.append(AverageGradients())
    if settings.clip:
        callbacks.append(GradientClip(settings.clip))
    learn = Learner(dls, model, loss_func=loss_func or CrossEntropyLossFlat(), opt_func=optimizer_factory(settings),
                    splitter=splitter, cbs=callbacks, metrics=metrics or [], moms=None, train_bn=train_norms)
    if not progress:
        learn.remove_cb(ProgressCallback)
        learn.logger = _quiet
    learn.create_opt()
    return learn


ADAM_EPS = 1e-5  # fastai's Adam default, kept for torch's AdamW so the two differ in speed only


def optimizer_factory(settings: OptimizerSettings):
    """The Learner's ``opt_func`` for ``settings.optimizer``, with ``settings.betas`` and decoupled
    ``settings.weight_decay``. ``"fastai_adam"``: fastai's Adam, which steps one parameter at a time
    and leaves norms and biases undecayed. ``"fused_adamw"``: ``torch.optim.AdamW`` with
    ``fused=True`` (one kernel for all parameters; every parameter decayed), wrapped so fastai's
    per-group LRs, freezing and state clearing act on it."""
    if settings.optimizer == "fused_adamw":
        return partial(OptimWrapper, opt=torch.optim.AdamW, betas=tuple(settings.betas),
                       weight_decay=settings.weight_decay, eps=ADAM_EPS, fused=True)
    return partial(Adam, mom=settings.betas[0], sqr_mom=settings.betas[1], eps=ADAM_EPS,
                   wd=settings.weight_decay)


class NonFiniteLoss(ValueError):
    """Training produced a NaN or infinite loss: the weights are lost, nothing is saved."""

    def __init__(self, message: str):
        super().__init__(message)
        self.message = message

    def __str__(self) -> str:
        # fastai prefixes the message of an exception raised in a callback; keep it one line.
        return self.message


class StopOnNonFiniteLoss(Callback):
    """Raise :class:`NonFiniteLoss` (stage, epoch, batch) as soon as a loss is NaN or infinite:
    after an optimizer step with such a loss every weight is NaN, and training on would save a model
    that predicts one class."""

    order = 90  # after AR/TAR have been added to the loss

    def __init__(self, stage: str):
        self.stage = stage
        self.processes = world()[1]

    def after_loss(self):
        loss = self.learn.loss_grad if self.training else self.learn.loss
        bad = not bool(torch.isfinite(loss.detach()).all())
        if self.processes > 1:
            bad = any_process(bad)  # every process stops at the same batch, none waits alone
        if bad:
            self.stopped = True
            split = "training" if self.training else "validation"
            value = float(loss.detach().float().mean())
            raise NonFiniteLoss(f"{self.stage}: the {split} loss is {value} at epoch {self.epoch}, "
                                f"batch {self.iter}; nothing was saved. A learning rate too large (or NaN / "
                                f"inf), or a pretrained model whose weights are not finite, does this: lower "
                                f"the learning rate or check the model")

    def before_fit(self):
        self.stopped = False

    def after_fit(self):
        # The last optimizer step is followed by no loss that would show it. fastai also calls
        # after_fit while the error raised above propagates (validation): keep that error.
        finite = all(bool(torch.isfinite(p.detach()).all()) for p in self.learn.model.parameters())
        if not self.stopped and not finite:
            raise NonFiniteLoss(f"{self.stage}: the weights are NaN or infinite after training; nothing was "
                                f"saved. Lower the learning rate")


class BF16Autocast(Callback):
    """Forward pass and loss under ``torch.autocast(bfloat16)``; weights, gradients and the
    optimizer stay fp32 (bf16 has fp32's exponent range, so no loss scaling is needed)."""

    order = 10

    def before_batch(self):
        self.context = autocast("bf16", self.dls.device)
        self.context.__enter__()

    def after_pred(self):
        if isinstance(self.learn.pred, tuple):
            self.learn.pred = tuple(p.float() if torch.is_tensor(p) else p for p in self.learn.pred)
        elif torch.is_tensor(self.learn.pred):
            self.learn.pred = self.learn.pred.float()

    def after_loss(self):
        self._leave()

    def after_cancel_batch(self):
        self._leave()

    def _leave(self):
        if getattr(self, "context", None) is not None:
            self.context.__exit__(None, None, None)
            self.context = None


def _quiet(*args) -> None:
    """Learner logger that prints nothing (TrainingLog reports instead)."""


def train_only_groups(learn: Learner, groups) -> None:
    """Make only the layer groups numbered in ``groups`` (bottom = 0) trainable.

    Like fastai's ``freeze_to`` (BatchNorm parameters fastai marks ``force_train`` stay trainable;
    the optimizer state is cleared at each stage), but for any set of groups, as chain-thaw needs. A
    group frozen after it trained gets its gradient dropped: fastai only zeroes gradients, and Adam
    would keep moving a parameter whose gradient is zero but present.
    """
    groups = set(groups)
    for index, params in enumerate(learn.opt.param_lists):
        for param in params:
            trainable = index in groups or learn.opt.state[param].get("force_train", False)
            param.requires_grad_(trainable)
            if not trainable:
                param.grad = None
    learn.opt.frozen_idx = min(groups)  # fastai's note of the lowest trainable group (summaries only)
    learn.opt.clear_state()


def group_lrs(learn: Learner) -> list[float]:
    """The current learning rate of every parameter group, bottom first."""
    return [h["lr"] for h in learn.opt.hypers]


class ScheduledLR(Callback):
    """Per-group LR from ``schedule_value(name, pct, max_lrs)`` before every training batch.

    ``pct`` is the fraction of training done: batches done (``done_before`` of them in an earlier,
    resumed run) over total batches, or, when ``time_budget_s`` is set, the larger of that and
    elapsed time over the budget.
    """

    order = 60

    def __init__(self, max_lrs, name: str = "stlr", cut_frac: float = 0.1, ratio: float = 32.0,
                 time_budget_s: float = 0.0, total_batches: int = 0, done_before: int = 0):
        self.max_lrs = np.asarray(max_lrs, dtype=float)
        self.schedule_name, self.cut_frac, self.ratio = name, cut_frac, ratio
        self.time_budget_s, self.total_batches, self.done_before = time_budget_s, total_batches, done_before
        self.history: list[list[float]] = []

    def before_fit(self):
        self.started = time.time()
        self.done = 0
        if not self.total_batches:
            self.total_batches = self.n_epoch * len(self.dls.train)

    def pct(self) -> float:
        total = max(self.total_batches, 1)
        start = self.done_before / total
        pct = (self.done_before + self.done) / total
        if self.time_budget_s:
            pct = max(pct, start + (1 - start) * (time.time() - self.started) / self.time_budget_s)
        return min(pct, 1.0)

    def before_batch(self):
        if not self.training:
            return
        lrs = schedule_value(self.schedule_name, self.pct(), self.max_lrs, self.cut_frac, self.ratio)
        self.opt.set_hyper("lr", list(np.atleast_1d(lrs)))
        self.history.append([float(v) for v in np.atleast_1d(lrs)])

    def after_batch(self):
        if self.training:
            self.done += 1


class StopAfter(Callback):
    """Cancel the fit once ``time_budget_s`` seconds or ``token_budget`` tokens are spent."""

    order = 70

    def __init__(self, time_budget_s: float = 0.0, token_budget: int = 0, tokens_before: int = 0):
        self.time_budget_s, self.token_budget, self.tokens = time_budget_s, token_budget, tokens_before
        self.stopped = False
        self.processes = world()[1]

    def before_fit(self):
        self.started = time.time()

    def after_batch(self):
        if not self.training:
            return
        self.tokens += self.xb[0].numel() * self.processes
        over_time = bool(self.time_budget_s) and time.time() - self.started >= self.time_budget_s
        over_tokens = bool(self.token_budget) and self.tokens >= self.token_budget
        # Under torchrun, rank 0's clock decides for all (the token count is the same everywhere).
        if self.time_budget_s and self.processes > 1:
            over_time = any_process(over_time and is_main())
        if over_time or over_tokens:
            self.stopped = True
            raise CancelFitException()


class TrainingLog(Callback):
    """Every ``every`` batches: loss, LRs, tokens/s; per epoch: validation results. JSON lines to
    ``path``, printed too when ``echo``."""

    order = 80

    def __init__(self, path: str | Path | None = None, every: int = 20, label: str = "train",
                 tokens_before: int = 0, echo: bool = True):
        self.path = Path(path) if path else None
        self.every, self.label, self.echo = every, label, echo
        self.tokens = tokens_before
        # Under torchrun every process reads the same number of tokens: report the global count.
        self.processes = world()[1]

    def write(self, record: dict) -> None:
        if not is_main():
            return
        record = {"stage": self.label, "time": round(time.time(), 1), **record}
        line = json.dumps(record)
        if self.echo:
            print(f"[{self.label}] " + " ".join(f"{k}={v}" for k, v in record.items()
                                                if k not in ("stage", "time")), flush=True)
        if self.path:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            with open(self.path, "a") as handle:
                handle.write(line + "\n")

    def before_fit(self):
        self.window_start, self.window_tokens = time.time(), 0
        self.fit_start = time.time()
        self.batches = 0

    def after_batch(self):
        if not self.training:
            return
        inputs = self.xb[0]
        # Token ids count their tokens (padding included); rows of cached features (the head-only
        # stage) are no tokens: that stage logs batches/s instead.
        n = 0 if inputs.is_floating_point() else inputs.numel() * self.processes
        self.tokens += n
        self.window_tokens += n
        self.batches += 1
        if self.batches % self.every == 0:
            elapsed = time.time() - self.window_start
            # Every process reaches this batch (equal batch counts per process): the logged loss
            # is the mean over processes, i.e. the loss of the global batch.
            loss = mean_across_processes(float(self.loss.detach()))
            record = {"batch": self.batches, "epoch": self.epoch, "loss": round(loss, 4),
                      "lr_top": float(f"{self.opt.hypers[-1]['lr']:.3g}")}
            if inputs.is_floating_point():
                record["batches_per_s"] = round(self.every / max(elapsed, 1e-9), 1)
            else:
                record.update(tokens=self.tokens, tokens_per_s=round(self.window_tokens / max(elapsed, 1e-9), 1))
            self.write({**record, "elapsed_s": round(time.time() - self.fit_start, 1)})
            self.window_start, self.window_tokens = time.time(), 0

    def after_epoch(self):
        values = self.recorder.values[-1] if self.recorder.values else []
        names = [n for n in self.recorder.metric_names[1:-1]]
        record = {"epoch_done": self.epoch, "tokens": self.tokens,
                  "elapsed_s": round(time.time() - self.fit_start, 1)}
        record.update({n: round(float(v), 4) for n, v in zip(names, values) if v is not None})
        self.write(record)


def optimizer_tensors(learn: Learner) -> tuple[dict, dict]:
    """The optimizer's state as flat tensors ``"{param index}.{key}"`` + JSON-able values (for
    safetensors), for fastai's Adam and for torch's AdamW alike."""
    state = learn.opt.state_dict()
    if isinstance(learn.opt, OptimWrapper):  # torch's format: state keyed by parameter index
        n_params = sum(len(group["params"]) for group in state["param_groups"])
        per_param_state = [state["state"].get(i, {}) for i in range(n_params)]
        values = {"format": "torch", "param_groups": [
            {k: list(v) if isinstance(v, tuple) else v for k, v in group.items()} for group in state["param_groups"]]}
    else:
        per_param_state = state["state"]
        values = {"format": "fastai", "hypers": [
            {k: float(v) if isinstance(v, (int, float, np.floating)) else v for k, v in h.items()}
            for h in state["hypers"]]}
    tensors, per_param = {}, []
    for i, param_state in enumerate(per_param_state):
        plain = {}
        for key, value in param_state.items():
            if torch.is_tensor(value):
                tensors[f"{i}.{key}"] = value
            else:
                plain[key] = value.item() if hasattr(value, "item") else value
        per_param.append(plain)
    values["state"] = per_param
    return tensors, values


def restore_optimizer(learn: Learner, tensors: dict, values: dict) -> None:
    """Inverse of :func:`optimizer_tensors`; the saved state must be of the same optimizer."""
    saved_format = values.get("format", "fastai")
    wanted_format = "torch" if isinstance(learn.opt, OptimWrapper) else "fastai"
    if saved_format != wanted_format:
        raise CheckpointError(f"the saved optimizer state is {saved_format}'s, this run's optimizer is {wanted_format}'s: "
                         "resume with the optimizer setting the run started with")
    states = [dict(plain) for plain in values["state"]]
    for name, tensor in tensors.items():
        index, key = name.split(".", 1)
        states[int(index)][key] = tensor
    if wanted_format == "torch":
        groups = [{k: tuple(v) if k == "betas" else v for k, v in group.items()} for group in values["param_groups"]]
        learn.opt.load_state_dict({"state": {i: s for i, s in enumerate(states) if s}, "param_groups": groups})
    else:
        learn.opt.load_state_dict({"state": states, "hypers": values["hypers"]})
