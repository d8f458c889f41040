"""Stage 1: pretrain a general-domain AWD-LSTM language model, or load fastai's WT103 one.

Entry points: :func:`pretrain` (train on a corpus; resumable, with a time or token budget) and
:func:`import_fastai_lm` (turn a fastai LM, ``.pth`` / ``.h5`` + ``itos.pkl``, into a ulmtl checkpoint).
"""
from __future__ import annotations

import json
import math
from pathlib import Path

from datasets import Dataset

from ulmtl.backbones.awd_lstm import build_language_model, load_lm_state
from ulmtl.checkpoint import CheckpointError, CheckpointRecord, save_checkpoint
from ulmtl.config import ModelConfig, PretrainConfig, TokenizerConfig, pretrain_tokenizer
from ulmtl.datasets import cache_dir, load_corpus, load_wikitext103
from ulmtl.distributed import main_process_first
from ulmtl.fastai_files import (
    download_fastai_wt103, infer_model_config, load_fastai_weights, load_itos_pickle, modern_itos,
)
from ulmtl.lm import Budget, LanguageModelRun, language_model_data, save_language_model, train_language_model
from ulmtl.text import PAD, Vocab
from ulmtl.training import prepare_torch, set_seed


def _corpus(corpus) -> Dataset:
    if isinstance(corpus, Dataset):
        return corpus
    if str(corpus) in ("wikitext-103", "wikitext103", "wt103"):
        return load_wikitext103()
    return load_corpus(corpus)


def _documents(corpus, config: PretrainConfig) -> Dataset:
    """The corpus's documents, the first ``config.max_docs`` of them if set."""
    raw = _corpus(corpus)
    if config.max_docs and len(raw) > config.max_docs:
        raw = raw.select(range(config.max_docs))
    return raw


def prepare_corpus(corpus, config: PretrainConfig, tokenizer: TokenizerConfig):
    """Tokenized train / valid documents (cached) and the vocabulary built on train."""
    return language_model_data(_documents(corpus, config), config, tokenizer, config.stream, "pretraining")


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
    with main_process_first():  # rank 0 reads the corpus first; the others then read its cache
        texts = _documents(corpus, config)
    run = LanguageModelRun(
        stage="pretraining", section="pretrain", direction=config.direction, log_label="pretrain",
        log_path=output / "train_log.jsonl", log_every=config.log_every, stream=config.stream,
        budget=Budget(config.time_budget_s, config.token_budget, config.checkpoint_every_s, resume))
    lm = train_language_model(texts, output, config, model_config, tokenizer, run, device)
    metrics = {
        "tokens_seen": lm.tokens, "train_seconds": round(lm.earlier_seconds + lm.seconds, 1),
        "tokens_per_s": round(lm.new_tokens / max(lm.seconds, 1e-9), 1),
        "valid_loss": round(lm.valid_loss, 4), "valid_perplexity": round(math.exp(lm.valid_loss), 2),
        "train_tokens_per_epoch": int(lm.train.columns * config.batch_size * lm.processes),
        "vocab_size": len(lm.vocab), "stopped_by_budget": lm.stopped_by_budget, "processes": lm.processes,
    }
    save_language_model(output, lm, metrics, f"ulmtl: pretrained LM saved to {output}: {json.dumps(metrics)}")
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
    config = CheckpointRecord(kind="lm", direction=direction, model=model_config, stage="fastai-wt103",
                              source={"weights": str(weights), "itos": str(itos), "layout": layout})
    return save_checkpoint(output, model.state_dict(), vocab.itos, config)


def fetch_fastai_wt103(output: str | Path, direction: str = "forward") -> Path:
    """Download fastai's WT103 LM (online users) and convert it to a ulmtl checkpoint at ``output``."""
    output = Path(output)
    weights, itos = download_fastai_wt103(direction, output.with_name(output.name + "-download"))
    return import_fastai_lm(weights, itos, output, direction)


def default_lm_dir(direction: str = "forward") -> Path:
    """Where the stage-1 recipe writes, and the other recipes look for, the general-domain LM."""
    return cache_dir() / "lm" / f"general-{direction}"
