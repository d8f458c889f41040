"""Stages 1 and 2 for the AWD-LSTM: one procedure that trains a language model on texts.

:func:`train_language_model` tokenizes the texts, holds out a validation split, builds the
vocabulary on the rest, builds the LM (random, or a checkpoint's weights remapped to the new
vocabulary), trains it with one peak LR per layer group on a schedule (optionally within a time or
token budget, with resume checkpoints), and validates it; :func:`save_language_model` writes the
checkpoint and ``metrics.json``. :func:`ulmtl.pretrain.pretrain` and
:func:`ulmtl.finetune.finetune_lm` are these two calls with their stage's settings.
"""
from __future__ import annotations

import json
import math
import time
from dataclasses import dataclass, replace
from pathlib import Path

import torch
from datasets import Dataset
from fastai.callback.core import Callback
from fastai.learner import Learner
from fastai.metrics import Perplexity, accuracy

from ulmtl.backbones.awd_lstm import (
    build_language_model, checkpoint_vocab, hidden_state, lm_layer_groups, load_lm_state, read_checkpoint,
    remap_lm_state, restore_hidden_state, training_callbacks,
)
from ulmtl.checkpoint import Checkpoint, CheckpointRecord, load_tensors, save_checkpoint
from ulmtl.config import (
    ConfigError, Direction, FinetuneConfig, ModelConfig, PretrainConfig, Schedule, TokenizerConfig,
)
from ulmtl.datasets import DataError, build_vocab, numericalize, token_ids, token_stream, tokenize
from ulmtl.distributed import any_process, barrier, gather_from_processes, is_main, main_process_first, world
from ulmtl.loaders import LanguageModelLoader
from ulmtl.precision import resolve_precision
from ulmtl.schedule import discriminative_lrs
from ulmtl.text import Vocab
from ulmtl.training import (
    ScheduledLR, StopAfter, TrainingLog, make_learner, optimizer_tensors, restore_optimizer,
)

RESUME_DIR = "resume"
OPTIMIZER_FILE = "optimizer.safetensors"


@dataclass(frozen=True)
class Budget:
    """Limits of a run (0: none): stop after ``time_s`` seconds or ``tokens`` training tokens. Every
    ``checkpoint_every_s`` seconds (0: never) save a resume checkpoint to ``output/resume``, from
    which a run with ``resume`` continues."""

    time_s: float = 0.0
    tokens: int = 0
    checkpoint_every_s: float = 0.0
    resume: bool = False


@dataclass
class LanguageModelRun:
    """What stages 1 and 2 set differently when they call :func:`train_language_model`."""

    stage: str  # names the stage in messages: "pretraining", "LM fine-tuning"
    section: str  # the settings' config section, also the checkpoint's stage: "pretrain", "finetune"
    direction: Direction
    log_label: str
    log_path: Path | None = None
    log_every: int = 20
    # Start from this LM, its embeddings remapped to the new vocabulary; None: random weights.
    init: Checkpoint | None = None
    # Discriminative LRs: each lower layer group's peak LR is the one above's / lr_decay (1: one LR).
    lr_decay: float = 1.0
    schedule: Schedule = "stlr"
    # Read the training tokens from a memory-mapped file in corpus order, not shuffled in memory.
    stream: bool = False
    budget: Budget = Budget()
    pretrained: str | None = None  # the checkpoint record's: the stage ``init`` came from


@dataclass
class TrainedLM:
    """What :func:`train_language_model` trained and measured."""

    learn: Learner
    vocab: Vocab
    train: LanguageModelLoader
    saved: CheckpointRecord  # the checkpoint's, without metrics
    peak_lrs: list[float]
    valid_loss: float
    valid_loss_before: float | None  # before training; None for an LM that started from random weights
    tokens: int  # training tokens seen, by earlier (resumed) runs too
    new_tokens: int  # by this run
    seconds: float  # this run's training time
    earlier_seconds: float  # the resumed runs' training time
    stopped_by_budget: bool
    processes: int


def language_model_data(texts: Dataset, settings: PretrainConfig | FinetuneConfig, tokenizer: TokenizerConfig,
                        stream: bool, stage: str):
    """Token ids of the train and valid documents (``settings.valid_fraction`` held out, seeded)
    and the vocabulary built on train; each step cached. ``stream``: train as one memory-mapped
    array. ``stage`` names the stage in errors."""
    if len(texts) < 2:
        raise DataError(f"{stage} needs at least two texts; got {len(texts)}")
    tokens = tokenize(texts, num_proc=tokenizer.num_proc, batch_size=tokenizer.batch_size)
    split = tokens.train_test_split(test_size=settings.valid_fraction, seed=settings.seed, shuffle=True)
    vocab = build_vocab([split["train"]], max_size=tokenizer.max_vocab, min_freq=tokenizer.min_freq)
    ids = numericalize(split, vocab, num_proc=tokenizer.num_proc)
    train = token_stream(ids["train"]) if stream else token_ids(ids["train"])
    return train, token_ids(ids["test"]), vocab


def train_language_model(texts: Dataset, output: str | Path, settings: PretrainConfig | FinetuneConfig,
                         model_config: ModelConfig, tokenizer: TokenizerConfig, run: LanguageModelRun,
                         device: torch.device) -> TrainedLM:
    """Train an AWD-LSTM LM on ``texts`` for ``settings.epochs`` (or until ``run.budget`` is spent),
    logging to ``run.log_path``; with ``run.budget.resume``, continue from ``output/resume``."""
    output = Path(output)
    rank, processes = world()
    with main_process_first():  # rank 0 tokenizes first; the others then read its cache
        train_docs, valid_docs, vocab = language_model_data(texts, settings, tokenizer, run.stream, run.stage)
    backwards = run.direction == "backward"
    try:
        train = LanguageModelLoader(train_docs, settings.batch_size, settings.bptt, backwards,
                                    shuffle=not run.stream, seed=settings.seed, rank=rank, world_size=processes)
        valid = LanguageModelLoader(valid_docs, min(settings.batch_size, 16), settings.bptt, backwards)
    except ValueError as err:  # too few tokens for the batch size
        raise DataError(f"{run.stage} on {len(texts)} texts: {err} ({run.section}.batch_size is "
                        f"{settings.batch_size})") from None
    model = build_language_model(len(vocab), model_config, settings.drop_mult)
    if run.init is not None:
        load_lm_state(model, remap_lm_state(run.init.state_dict, checkpoint_vocab(run.init).itos, vocab.itos))
    precision = resolve_precision(model_config.precision, device)
    learn = make_learner(train, valid, model, lm_layer_groups, settings, metrics=[accuracy, Perplexity()],
                         device=device, progress=False, precision=precision, stage=run.stage,
                         callbacks=training_callbacks(model, settings.ar_alpha, settings.tar_beta, precision))
    saved = CheckpointRecord(kind="lm", stage=run.section, direction=run.direction, model=model_config,
                             tokenizer=tokenizer, pretrained=run.pretrained,
                             pretrain=settings if isinstance(settings, PretrainConfig) else None,
                             finetune=settings if isinstance(settings, FinetuneConfig) else None)
    before = float(learn.validate()[0]) if run.init is not None else None

    budget = run.budget
    progress = {"epoch": 0, "batch": 0, "tokens": 0, "elapsed_s": 0.0}
    resume_dir = output / RESUME_DIR
    callbacks = []
    if budget.resume and (resume_dir / OPTIMIZER_FILE).exists():
        progress, tensors = _resume(learn, resume_dir, vocab, processes, run.stage)
        callbacks.append(RestoreState(tensors))
    total_batches = settings.epochs * len(train)
    if budget.tokens:
        total_batches = min(total_batches,
                            math.ceil(budget.tokens / (settings.batch_size * settings.bptt * processes)))
    done = progress["epoch"] * len(train) + progress["batch"]
    train.epoch, train.start_batch = progress["epoch"], progress["batch"]
    time_left = max(budget.time_s - progress["elapsed_s"], 1.0) if budget.time_s else 0.0
    peak_lrs = discriminative_lrs(settings.lr, len(learn.opt.param_lists), run.lr_decay)
    schedule = ScheduledLR(peak_lrs, run.schedule, settings.cut_frac, settings.ratio,
                           time_budget_s=time_left, total_batches=total_batches, done_before=done)
    stopper = StopAfter(time_left, budget.tokens, tokens_before=progress["tokens"])
    log = TrainingLog(run.log_path, every=run.log_every, label=run.log_label, tokens_before=progress["tokens"])
    callbacks += [schedule, stopper, log]
    if budget.checkpoint_every_s:
        callbacks.append(PeriodicCheckpoint(resume_dir, vocab, saved, budget.checkpoint_every_s, progress))
    started = time.time()
    epochs_left = settings.epochs - progress["epoch"]
    if epochs_left > 0 and done < total_batches:
        learn.fit(epochs_left, cbs=callbacks)
    seconds = time.time() - started
    return TrainedLM(learn=learn, vocab=vocab, train=train, saved=saved, peak_lrs=[float(x) for x in peak_lrs],
                     valid_loss=float(learn.validate()[0]), valid_loss_before=before, tokens=int(stopper.tokens),
                     new_tokens=int(stopper.tokens - progress["tokens"]), seconds=seconds,
                     earlier_seconds=progress["elapsed_s"], stopped_by_budget=bool(stopper.stopped),
                     processes=processes)


def save_language_model(output: str | Path, lm: TrainedLM, metrics: dict, message: str) -> None:
    """Write ``lm``'s checkpoint (its config with ``metrics``) and ``metrics.json`` to ``output``
    and print ``message`` (rank 0); every process waits for it."""
    if is_main():
        save_checkpoint(output, lm.learn.model.state_dict(), lm.vocab.itos, replace(lm.saved, metrics=metrics))
        (Path(output) / "metrics.json").write_text(json.dumps(metrics, indent=2))
        print(message, flush=True)
    barrier()


def _resume(learn: Learner, resume_dir: Path, vocab: Vocab, processes: int, stage: str) -> tuple[dict, dict]:
    """Load the weights and optimizer state of ``resume_dir`` into ``learn``; return its progress
    and its saved tensors (for :class:`RestoreState`)."""
    state, saved_vocab = read_checkpoint(resume_dir)
    if saved_vocab.itos != vocab.itos:
        raise DataError(f"{resume_dir}: saved vocabulary differs from this corpus; remove it to restart")
    load_lm_state(learn.model, state.state_dict)
    tensors, meta = load_tensors(resume_dir / OPTIMIZER_FILE)
    restore_optimizer(learn, {k[4:]: v for k, v in tensors.items() if k.startswith("opt.")}, meta["optimizer"])
    progress = state.config["progress"]
    saved_processes = progress.get("processes", 1)
    if saved_processes != processes:
        raise ConfigError(f"{resume_dir} was written by a run with {saved_processes} process(es); resume it "
                          f"with the same number (now {processes}), or remove it to restart")
    print(f"ulmtl: resuming {stage} from {resume_dir}: epoch {progress['epoch']}, "
          f"batch {progress['batch']}, {progress['tokens']} tokens", flush=True)
    return progress, tensors


class PeriodicCheckpoint(Callback):
    """Every ``every_s`` seconds, and when training ends or is stopped by a budget, save weights +
    optimizer + progress to ``folder`` (atomically). Runs before :class:`StopAfter` so that the
    batch that spends the budget is counted."""

    order = 65

    def __init__(self, folder: Path, vocab: Vocab, config: CheckpointRecord, every_s: float, progress: dict):
        self.folder, self.vocab, self.config, self.every_s = folder, vocab, config, every_s
        self.progress = dict(progress)

    def before_fit(self):
        self.last = time.time()
        self.fit_start = time.time()

    def after_batch(self):
        if not self.training:
            return
        self.progress["batch"] += 1
        self.progress["tokens"] += self.xb[0].numel() * world()[1]
        due = bool(self.every_s) and time.time() - self.last >= self.every_s
        if world()[1] > 1:
            due = any_process(due and is_main())  # rank 0's clock decides for every process
        if due:
            self.save()

    def after_epoch(self):
        self.progress["epoch"] += 1
        self.progress["batch"] = 0

    def after_fit(self):
        if self.every_s:
            self.save()

    def save(self):
        # Every process's dropout RNG and carried LSTM hidden state (each reads other rows of the
        # stream), so that a resumed run, distributed or not, continues exactly.
        own = {"rng.torch": torch.get_rng_state()}
        if torch.cuda.is_available():
            own["rng.cuda"] = torch.cuda.get_rng_state()
        own.update(hidden_state(self.model))
        gathered = {key: gather_from_processes(value) for key, value in own.items()}
        if not is_main():
            return
        progress = dict(self.progress, elapsed_s=self.progress["elapsed_s"] + time.time() - self.fit_start,
                        processes=world()[1])
        tensors, values = optimizer_tensors(self.learn)
        state = {f"opt.{k}": v for k, v in tensors.items()}
        for key, copies in gathered.items():
            for rank, copy in enumerate(copies):
                state[rank_key(key, rank)] = copy
        save_checkpoint(self.folder, self.model.state_dict(), self.vocab.itos, replace(self.config, progress=progress),
                        extra_tensors={OPTIMIZER_FILE: (state, {"optimizer": values})})
        self.last = time.time()


def rank_key(key: str, rank: int) -> str:
    """Name of one process's saved tensor (rank 0 keeps the plain name)."""
    return key if rank == 0 else f"rank{rank}.{key}"


class RestoreState(Callback):
    """On the first training batch of a resumed run: this process's saved hidden state and RNG."""

    order = 1

    def __init__(self, tensors: dict):
        self.tensors = tensors
        self.pending = True

    def before_batch(self):
        if not (self.training and self.pending):
            return
        rank = world()[0]
        restore_hidden_state(self.model, {key: self.tensors[rank_key(key, rank)] for key in hidden_state(self.model)})
        torch.set_rng_state(self.tensors[rank_key("rng.torch", rank)])
        if torch.cuda.is_available() and rank_key("rng.cuda", rank) in self.tensors:
            torch.cuda.set_rng_state(self.tensors[rank_key("rng.cuda", rank)])
        self.pending = False
