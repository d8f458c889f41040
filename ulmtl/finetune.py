"""Stage 2: fine-tune the language model on target-domain text.

Entry point: :func:`finetune_lm`. The stage-1 checkpoint is remapped to the target vocabulary
(known tokens keep their rows, new tokens get the mean embedding), then trained with
discriminative learning rates (``lr / 2.6**k`` per layer group) and slanted triangular LRs: for
the AWD-LSTM by :func:`ulmtl.lm.train_language_model` (as stage 1), for a transformer encoder as a
masked LM (:func:`finetune_masked_lm`).
"""
from __future__ import annotations

import math
from functools import partial
from pathlib import Path

import numpy as np
from datasets import Dataset, DatasetDict, concatenate_datasets

from ulmtl.backbones import transformer
from ulmtl.backbones.awd_lstm import checkpoint_vocab
from ulmtl.checkpoint import Checkpoint, CheckpointError, CheckpointRecord, load_checkpoint
from ulmtl.config import (
    TRANSFORMER_FINETUNE, FinetuneConfig, ModelConfig, TokenizerConfig, TransformerConfig,
    architecture,
)
from ulmtl.datasets import DataError
from ulmtl.distributed import barrier, is_main, world
from ulmtl.lm import LanguageModelRun, save_language_model, train_language_model
from ulmtl.precision import resolve_precision
from ulmtl.schedule import discriminative_lrs
from ulmtl.training import (
    ScheduledLR, TrainingLog, group_lrs, make_learner, prepare_torch, set_seed, train_only_groups,
)


def target_texts(data: DatasetDict | Dataset | list[str]) -> Dataset:
    """All text of the target domain, labels dropped: every split of a DatasetDict (train, test,
    unsup: the paper's semi-supervised setting), a Dataset, or a list of strings."""
    if isinstance(data, DatasetDict):
        parts = [ds.select_columns(["text"]) for ds in data.values()]
        return concatenate_datasets(parts)
    if isinstance(data, Dataset):
        return data.select_columns(["text"])
    texts = [str(t) for t in data]
    return Dataset.from_dict({"text": texts})


def group_lr_decay(config: FinetuneConfig) -> float:
    """How much lower each layer group's peak LR is than the one above's: ``lr_decay`` with
    discriminative LRs, else 1."""
    return config.lr_decay if config.discriminative else 1.0


def lm_learning_rates(config: FinetuneConfig, n_groups: int) -> list[float]:
    """Peak LR of every LM layer group, bottom first."""
    return discriminative_lrs(config.lr, n_groups, group_lr_decay(config))


def finetune_lm(data, pretrained: str | Path | Checkpoint, output: str | Path,
                config: FinetuneConfig | None = None, tokenizer: TokenizerConfig | None = None,
                log_path: str | Path | None = None, model_config: ModelConfig | None = None,
                transformer_config: TransformerConfig | None = None) -> dict:
    """Fine-tune the stage-1 LM ``pretrained`` on the texts of ``data``; write a checkpoint to ``output``.

    The architecture comes from ``pretrained``; dropouts and precision from ``model_config``. With
    ``transformer_config``, ``pretrained`` is a transformer encoder (folder, hub id, or empty for
    the bundled one), fine-tuned as a masked LM. Returns metrics: validation perplexity before and
    after fine-tuning, tokens, the LRs used.
    """
    if transformer_config is not None:
        return finetune_masked_lm(data, pretrained, output, config, transformer_config, log_path)
    config = config or FinetuneConfig()
    tokenizer = tokenizer or TokenizerConfig()
    run_model = model_config or ModelConfig()
    set_seed(config.seed)
    device = prepare_torch()
    source = pretrained if isinstance(pretrained, Checkpoint) else load_checkpoint(pretrained)
    source_vocab = checkpoint_vocab(source)
    if source.kind != "lm":
        raise CheckpointError(f"{pretrained}: expected a language-model checkpoint, found kind {source.kind!r}")
    model_config = run_model.with_architecture_of(source.config["model"])
    if model_config != run_model and is_main():
        origin = "the stage-1 LM" if isinstance(pretrained, Checkpoint) else pretrained
        print(f"ulmtl: LM fine-tuning takes its architecture from {origin} ({architecture(model_config)}), "
              f"not the run's ({architecture(run_model)})", flush=True)
    direction = source.config.get("direction", "forward")
    run = LanguageModelRun(
        stage="LM fine-tuning", section="finetune", direction=direction, log_label="finetune_lm",
        log_path=log_path, init=source, lr_decay=group_lr_decay(config),
        schedule=config.schedule, pretrained=source.config.get("stage", ""))
    lm = train_language_model(target_texts(data), output, config, model_config, tokenizer, run, device)
    metrics = {
        "valid_perplexity_before": round(math.exp(lm.valid_loss_before), 2),
        "valid_perplexity": round(math.exp(lm.valid_loss), 2),
        "valid_loss": round(lm.valid_loss, 4), "train_tokens": int(lm.train.n_tokens), "vocab_size": len(lm.vocab),
        "processes": lm.processes, "peak_lrs": lm.peak_lrs, "last_lrs": [float(x) for x in group_lrs(lm.learn)],
        "known_tokens": int(np.sum([t in source_vocab.stoi for t in lm.vocab.itos])),
    }
    save_language_model(output, lm, metrics, f"ulmtl: fine-tuned LM ({direction}) saved to {output}: perplexity "
                                             f"{metrics['valid_perplexity_before']} -> {metrics['valid_perplexity']}")
    return metrics


def finetune_masked_lm(data, pretrained: str | Path, output: str | Path, config: FinetuneConfig | None = None,
                       settings: TransformerConfig | None = None, log_path: str | Path | None = None) -> dict:
    """Stage 2 for a transformer encoder: masked-LM fine-tuning on the target texts.

    A checkpoint without an MLM head gets a new one (decoder tied to the input embeddings) that
    first trains alone for ``settings.head_epochs`` with the encoder frozen; then every layer group
    trains with discriminative LRs and STLR. Writes a Hugging Face folder (safetensors, tokenizer
    JSON) plus ``ulmtl.json`` to ``output``.
    """
    config = config or TRANSFORMER_FINETUNE
    settings = settings or TransformerConfig()
    transformer.check_masked_lm_config(config)
    set_seed(config.seed)
    device = prepare_torch()
    where, description = transformer.resolve_encoder(pretrained)
    if is_main():
        print(f"ulmtl: masked-LM fine-tuning of {description}", flush=True)
    tokenizer = transformer.load_tokenizer(where)
    model, new_head = transformer.load_masked_lm(where)
    transformer.check_positions(tokenizer, model.config, settings, description)
    texts = list(target_texts(data)["text"])
    if len(texts) < 2:
        raise DataError("LM fine-tuning needs at least two target-domain texts")
    order = np.random.RandomState(config.seed).permutation(len(texts))
    n_valid = min(max(1, round(len(texts) * config.valid_fraction)), len(texts) - 1)
    valid_texts = [texts[i] for i in order[:n_valid]]
    train_texts = [texts[i] for i in order[n_valid:]]
    rank, processes = world()
    train = transformer.MaskedLMLoader(transformer.mlm_blocks(tokenizer, train_texts, settings.mlm_block),
                                       tokenizer, config.batch_size, settings.mlm_probability, shuffle=True,
                                       seed=config.seed, rank=rank, world_size=processes)
    # Every process validates on all of it, in global batches: the masks of a batch depend on its size.
    valid = transformer.MaskedLMLoader(transformer.mlm_blocks(tokenizer, valid_texts, settings.mlm_block),
                                       tokenizer, config.batch_size * processes, settings.mlm_probability,
                                       seed=config.seed)
    scores = transformer.MaskedLMScores(model)
    groups = partial(_masked_lm_groups, block_groups=settings.block_groups)
    learn = make_learner(train, valid, scores, groups, config, device=device, progress=False,
                         precision=resolve_precision(settings.precision, device, bf16_pays_on_cpu=True),
                         train_norms=False,  # a frozen block's LayerNorms stay frozen
                         loss_func=transformer.masked_lm_loss)
    before = float(learn.validate()[0])
    n_groups = len(learn.opt.param_lists)
    log = TrainingLog(log_path, every=20, label="finetune_lm")
    head_stage = []
    if new_head and settings.head_epochs:
        train_only_groups(learn, [n_groups - 1])
        head_lr = [config.lr * settings.head_lr_mult] * n_groups
        learn.fit(settings.head_epochs, cbs=[ScheduledLR(head_lr, config.schedule, config.cut_frac, config.ratio),
                                             log])
        head_stage = [float(head_lr[-1])]
    train_only_groups(learn, range(n_groups))
    max_lrs = lm_learning_rates(config, n_groups)
    learn.fit(config.epochs, cbs=[ScheduledLR(max_lrs, config.schedule, config.cut_frac, config.ratio), log])
    after = float(learn.validate()[0])
    metrics = {
        "valid_perplexity_before": round(math.exp(before), 2), "valid_perplexity": round(math.exp(after), 2),
        "valid_loss": round(after, 4), "train_tokens": int(train.n_tokens), "processes": processes,
        "new_mlm_head": bool(new_head), "head_only_lr": head_stage,
        "peak_lrs": [float(x) for x in max_lrs], "last_lrs": [float(x) for x in group_lrs(learn)],
    }
    saved = CheckpointRecord(kind="lm", backbone="transformer", stage="finetune", direction="forward",
                             pretrained=description, finetune=config, transformer=settings, metrics=metrics)
    if is_main():
        transformer.save_pretrained_folder(output, model, tokenizer, saved, metrics)
        print(f"ulmtl: fine-tuned masked LM saved to {output}: perplexity "
              f"{metrics['valid_perplexity_before']} -> {metrics['valid_perplexity']}", flush=True)
    barrier()
    return metrics


def _masked_lm_groups(scores: transformer.MaskedLMScores, block_groups: int) -> list:
    return transformer.masked_lm_groups(scores.model, block_groups)
