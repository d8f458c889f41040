"""Stage 1: pretrain a general-domain AWD-LSTM language model, or load fastai's WT103 one.

Entry points: :func:`pretrain` (train on a corpus; resumable, with a time or token budget) and
:func:`import_fastai_lm` (turn a fastai LM, ``.pth`` / ``.h5`` + ``itos.pkl``, into a ulmtl checkpoint).
"""
from __future__ import annotations

import json
import math
import time
from pathlib import Path

import torch
from datasets import Dataset
from fastai.callback.core import Callback
from fastai.metrics import Perplexity, accuracy

from ulmtl.checkpoint import CheckpointError, load_checkpoint, load_tensors, save_checkpoint
from ulmtl.config import ConfigError, ModelConfig, PretrainConfig, TokenizerConfig, pretrain_tokenizer, to_dict
from ulmtl.datasets import (
    DataError, build_vocab, cache_dir, load_corpus, load_wikitext103, numericalize, token_ids, token_stream,
    tokenize,
)
from ulmtl.distributed import (
    any_process, barrier, gather_from_processes, is_main, main_process_first, world,
)
from ulmtl.fastai_files import (
    download_fastai_wt103, infer_model_config, load_fastai_weights, load_itos_pickle, modern_itos,
)
from ulmtl.loaders import LanguageModelLoader
from ulmtl.model import build_language_model, lm_layer_groups, load_lm_state
from ulmtl.text import PAD, Vocab
from ulmtl.training import (
    ScheduledLR, StopAfter, TrainingLog, make_learner, optimizer_tensors, prepare_torch, restore_optimizer,
    set_seed,
)

RESUME_DIR = "resume"
OPTIMIZER_FILE = "optimizer.safetensors"


class PeriodicCheckpoint(Callback):
    """Every ``every_s`` seconds, and when training ends or is stopped by a budget, save weights +
    optimizer + progress to ``folder`` (atomically). Runs before :class:`StopAfter` so that the
    batch that spends the budget is counted."""

    order = 65

    def __init__(self, folder: Path, vocab: Vocab, config: dict, every_s: float, progress: dict):
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
        for layer, (h, c) in enumerate(self.model[0].hidden):
            own[f"hidden.{layer}.h"], own[f"hidden.{layer}.c"] = h, c
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
        save_checkpoint(self.folder, self.model.state_dict(), self.vocab, dict(self.config, progress=progress),
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
        encoder = self.model[0]
        n_layers = len(encoder.hidden)
        device = encoder.hidden[0][0].device
        encoder.hidden = [(self.tensors[rank_key(f"hidden.{i}.h", rank)].to(device),
                           self.tensors[rank_key(f"hidden.{i}.c", rank)].to(device)) for i in range(n_layers)]
        encoder.bs = encoder.hidden[0][0].shape[1]
        torch.set_rng_state(self.tensors[rank_key("rng.torch", rank)])
        if torch.cuda.is_available() and rank_key("rng.cuda", rank) in self.tensors:
            torch.cuda.set_rng_state(self.tensors[rank_key("rng.cuda", rank)])
        self.pending = False


def _corpus(corpus) -> Dataset:
    if isinstance(corpus, Dataset):
        return corpus
    if str(corpus) in ("wikitext-103", "wikitext103", "wt103"):
        return load_wikitext103()
    return load_corpus(corpus)


def prepare_corpus(corpus, config: PretrainConfig, tokenizer: TokenizerConfig):
    """Tokenized train / valid documents (cached) and the vocabulary built on train."""
    raw = _corpus(corpus)
    if config.max_docs and len(raw) > config.max_docs:
        raw = raw.select(range(config.max_docs))
    ds = tokenize(raw, num_proc=tokenizer.num_proc, batch_size=tokenizer.batch_size)
    if len(ds) < 2:
        raise DataError("pretraining corpus needs at least two non-empty documents")
    split = ds.train_test_split(test_size=config.valid_fraction, seed=config.seed, shuffle=True)
    vocab = build_vocab([split["train"]], max_size=tokenizer.max_vocab, min_freq=tokenizer.min_freq)
    ids = numericalize(split, vocab, num_proc=tokenizer.num_proc)
    train = token_stream(ids["train"]) if config.stream else token_ids(ids["train"])
    return train, token_ids(ids["test"]), vocab


def pretrain(corpus, output: str | Path, config: PretrainConfig | None = None,
             model_config: ModelConfig | None = None, tokenizer: TokenizerConfig | None = None,
             resume: bool = True) -> dict:
    """Train an AWD-LSTM LM on ``corpus`` (folder / file of text, a Dataset, or 'wikitext-103'), with
    the vocabulary ``tokenizer`` sets (default: :func:`~ulmtl.config.pretrain_tokenizer`, 30000 / 3).

    Writes a checkpoint folder at ``output`` (and ``output/resume`` while training), returns the
    metrics: tokens seen, tokens/s, validation loss and perplexity.
    """
    config = config or PretrainConfig()
    model_config = model_config or ModelConfig()
    tokenizer = tokenizer or pretrain_tokenizer()
    output = Path(output)
    output.mkdir(parents=True, exist_ok=True)
    set_seed(config.seed)
    device = prepare_torch()
    rank, processes = world()
    with main_process_first():  # rank 0 tokenizes first; the others then read its cache
        train_docs, valid_docs, vocab = prepare_corpus(corpus, config, tokenizer)
    backwards = config.direction == "backward"
    try:
        train = LanguageModelLoader(train_docs, config.batch_size, config.bptt, backwards,
                                    shuffle=not config.stream, seed=config.seed, rank=rank,
                                    world_size=processes)
        valid = LanguageModelLoader(valid_docs, min(config.batch_size, 16), config.bptt, backwards)
    except ValueError as err:  # too few tokens for the batch size
        raise DataError(f"pretraining: {err} (pretrain.batch_size is {config.batch_size})") from None
    model = build_language_model(len(vocab), model_config, config.drop_mult)
    learn = make_learner(train, valid, model, lm_layer_groups, config, metrics=[accuracy, Perplexity()],
                         device=device, progress=False, precision=model_config.precision,
                         stage="pretraining")
    saved = {"kind": "lm", "direction": config.direction, "model": to_dict(model_config),
             "pretrain": to_dict(config), "tokenizer": to_dict(tokenizer), "stage": "pretrain"}
    progress = {"epoch": 0, "batch": 0, "tokens": 0, "elapsed_s": 0.0}
    resume_dir = output / RESUME_DIR
    extra_callbacks = []
    if resume and (resume_dir / OPTIMIZER_FILE).exists():
        state = load_checkpoint(resume_dir)
        if state.vocab.itos != vocab.itos:
            raise DataError(f"{resume_dir}: saved vocabulary differs from this corpus; remove it to restart")
        load_lm_state(learn.model, state.state_dict)
        tensors, meta = load_tensors(resume_dir / OPTIMIZER_FILE)
        restore_optimizer(learn, {k[4:]: v for k, v in tensors.items() if k.startswith("opt.")},
                          meta["optimizer"])
        extra_callbacks.append(RestoreState(tensors))
        progress = state.config["progress"]
        saved_processes = progress.get("processes", 1)
        if saved_processes != processes:
            raise ConfigError(f"{resume_dir} was written by a run with {saved_processes} process(es); resume it "
                              f"with the same number (now {processes}), or remove it to restart")
        print(f"ulmtl: resuming pretraining from {resume_dir}: epoch {progress['epoch']}, "
              f"batch {progress['batch']}, {progress['tokens']} tokens", flush=True)
    total_batches = config.epochs * len(train)
    if config.token_budget:
        total_batches = min(total_batches,
                            math.ceil(config.token_budget / (config.batch_size * config.bptt * processes)))
    done = progress["epoch"] * len(train) + progress["batch"]
    train.epoch, train.start_batch = progress["epoch"], progress["batch"]
    time_left = max(config.time_budget_s - progress["elapsed_s"], 1.0) if config.time_budget_s else 0.0
    schedule = ScheduledLR([config.lr] * len(learn.opt.param_lists), "stlr", config.cut_frac, config.ratio,
                           time_budget_s=time_left, total_batches=total_batches, done_before=done)
    stopper = StopAfter(time_left, config.token_budget, tokens_before=progress["tokens"])
    log = TrainingLog(output / "train_log.jsonl", every=config.log_every, label="pretrain",
                      tokens_before=progress["tokens"])
    saver = PeriodicCheckpoint(resume_dir, vocab, saved, config.checkpoint_every_s, progress)
    started = time.time()
    epochs_left = config.epochs - progress["epoch"]
    if epochs_left > 0 and done < total_batches:
        learn.fit(epochs_left, cbs=[schedule, stopper, log, saver] + extra_callbacks)
    train_seconds = time.time() - started
    tokens = saver.progress["tokens"]
    new_tokens = tokens - progress["tokens"]
    valid_loss = float(learn.validate()[0])
    metrics = {
        "tokens_seen": int(tokens), "train_seconds": round(progress["elapsed_s"] + train_seconds, 1),
        "tokens_per_s": round(new_tokens / max(train_seconds, 1e-9), 1),
        "valid_loss": round(valid_loss, 4), "valid_perplexity": round(math.exp(valid_loss), 2),
        "train_tokens_per_epoch": int(train.columns * config.batch_size * processes), "vocab_size": len(vocab),
        "stopped_by_budget": bool(stopper.stopped), "processes": processes,
    }
    if is_main():
        save_checkpoint(output, learn.model.state_dict(), vocab, dict(saved, metrics=metrics))
        (output / "metrics.json").write_text(json.dumps(metrics, indent=2))
        print(f"ulmtl: pretrained LM saved to {output}: {json.dumps(metrics)}", flush=True)
    barrier()
    return metrics


def import_fastai_lm(weights: str | Path, itos: str | Path, output: str | Path,
                     direction: str = "forward") -> Path:
    """Convert a fastai LM (weights ``.pth`` / ``.h5`` + vocabulary ``itos.pkl``) into a ulmtl checkpoint.

    Reads fastai v2 and v1 (fastai's WT103 archives) and 0.7 (the paper's ``fwd_wt103.h5``) weights,
    with or without their optimizer, and runs nothing from either file (:mod:`ulmtl.fastai_files`).
    The hidden size is the file's (1150 for 0.7, 1152 since). Raises :class:`CheckpointError`
    naming the file when it cannot be used.
    """
    state, layout = load_fastai_weights(weights)
    tokens = load_itos_pickle(itos)
    try:
        vocab = Vocab(modern_itos(tokens))
    except ValueError as err:  # repeated tokens, or 0.7 tokens clashing with today's
        raise CheckpointError(f"{itos}: {err}") from None
    rows = state["0.encoder.weight"].shape[0]
    if rows != len(vocab):
        raise CheckpointError(f"{weights} has {rows} embedding rows but {itos} has {len(vocab)} tokens: "
                              f"they are not from the same model")
    if vocab.stoi.get(PAD) != 1:
        raise CheckpointError(f"{itos}: the padding token {PAD!r} must be token 1, as in fastai's vocabularies "
                              f"(it is {vocab.stoi.get(PAD)})")
    try:
        model_config = infer_model_config(state)
        model = build_language_model(len(vocab), model_config)
        load_lm_state(model, state)
    except (ValueError, RuntimeError) as err:
        raise CheckpointError(f"{weights} ({layout}): {str(err).splitlines()[0]}") from None
    config = {"kind": "lm", "direction": direction, "model": to_dict(model_config),
              "stage": "fastai-wt103", "source": {"weights": str(weights), "itos": str(itos), "layout": layout}}
    return save_checkpoint(output, model.state_dict(), vocab, config)


def fetch_fastai_wt103(output: str | Path, direction: str = "forward") -> Path:
    """Download fastai's WT103 LM (online users) and convert it to a ulmtl checkpoint at ``output``."""
    output = Path(output)
    weights, itos = download_fastai_wt103(direction, output.with_name(output.name + "-download"))
    return import_fastai_lm(weights, itos, output, direction)


def default_lm_dir(direction: str = "forward") -> Path:
    """Where the stage-1 recipe writes, and the other recipes look for, the general-domain LM."""
    return cache_dir() / "lm" / f"general-{direction}"
