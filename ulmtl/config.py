"""Typed configuration for every stage, with the ULMFiT paper's values as defaults.

Each stage has one dataclass. Configs nest (a recipe config holds the stage configs), are
overridden from the command line with ``--section.key=value`` and are saved as JSON next to every
checkpoint and result.
"""
from __future__ import annotations

import dataclasses
import json
import types
import typing
from dataclasses import dataclass, field
from pathlib import Path


class ConfigError(ValueError):
    """A configuration value or override that cannot be used."""


@dataclass
class ModelConfig:
    """AWD-LSTM architecture (Merity et al. 2017) as used by ULMFiT: 400 / 1152 / 3."""

    emb_size: int = 400
    hidden_size: int = 1152
    n_layers: int = 3
    # Dropouts of the language model (fastai's awd_lstm_lm_config).
    lm_output_p: float = 0.1
    lm_hidden_p: float = 0.15
    lm_input_p: float = 0.25
    lm_embed_p: float = 0.02
    lm_weight_p: float = 0.2
    # Dropouts of the classifier encoder (the paper: 0.4 / 0.3 / 0.4 / 0.05 / 0.5), times
    # ClassifierConfig.drop_mult (default 1.0).
    clas_output_p: float = 0.4
    clas_hidden_p: float = 0.3
    clas_input_p: float = 0.4
    clas_embed_p: float = 0.05
    clas_weight_p: float = 0.5
    # Matmul precision for training and prediction: "fp32", "bf16" (autocast; on the CPU the LSTM
    # runs its matmuls in bf16 too, see ulmtl.lstm) or "auto": bf16 on a CUDA GPU with bf16, fp32
    # on the CPU (CPU bf16 is opt-in: only worth it with AMX / AVX-512-BF16).
    precision: str = "auto"


@dataclass
class TokenizerConfig:
    """spaCy tokenization with fastai's rules, and the vocabulary built from it."""

    max_vocab: int = 60000
    min_freq: int = 2
    num_proc: int = 1
    batch_size: int = 1000


@dataclass
class PretrainConfig:
    """Stage 1: general-domain language model."""

    direction: str = "forward"
    bptt: int = 70
    batch_size: int = 64
    epochs: int = 1
    lr: float = 3e-3
    weight_decay: float = 0.01
    betas: tuple[float, float] = (0.7, 0.99)
    cut_frac: float = 0.1
    ratio: float = 32.0
    drop_mult: float = 1.0
    ar_alpha: float = 2.0
    tar_beta: float = 1.0
    clip: float = 0.4
    valid_fraction: float = 0.02
    max_vocab: int = 30000
    min_freq: int = 3
    max_docs: int = 0
    # Read the training tokens from a memory-mapped file in corpus order instead of shuffling
    # documents in memory: for corpora larger than RAM.
    stream: bool = False
    time_budget_s: float = 0.0
    token_budget: int = 0
    checkpoint_every_s: float = 600.0
    log_every: int = 20
    seed: int = 42


@dataclass
class FinetuneConfig:
    """Stage 2: LM fine-tuning on target-domain text (discriminative LRs + STLR)."""

    bptt: int = 70
    batch_size: int = 64
    epochs: int = 2
    lr: float = 4e-3
    lr_decay: float = 2.6
    discriminative: bool = True
    schedule: str = "stlr"
    cut_frac: float = 0.1
    ratio: float = 32.0
    betas: tuple[float, float] = (0.7, 0.99)
    weight_decay: float = 0.01
    drop_mult: float = 0.3
    ar_alpha: float = 2.0
    tar_beta: float = 1.0
    clip: float = 0.4
    valid_fraction: float = 0.1
    seed: int = 42


@dataclass
class ClassifierConfig:
    """Stage 3: concat-pooling classifier with gradual unfreezing, discriminative LRs and STLR."""

    strategy: str = "finetune"
    directions: tuple[str, ...] = ("forward",)
    bptt: int = 70
    max_len: int = 1400
    batch_size: int = 64
    head_hidden: int = 50
    head_dropout: float = 0.1
    # Multiplies the encoder dropouts (ModelConfig.clas_*_p): 1.0 gives the paper's 0.4 / 0.3 / 0.4 /
    # 0.05 / 0.5. (fastai's text_classifier_learner defaults to 0.5; ulmtl did too before 2026-12-01.)
    drop_mult: float = 1.0
    lr: float = 0.01
    lr_decay: float = 2.6
    discriminative: bool = True
    schedule: str = "stlr"
    cut_frac: float = 0.1
    ratio: float = 32.0
    betas: tuple[float, float] = (0.7, 0.99)
    weight_decay: float = 0.01
    ar_alpha: float = 2.0
    tar_beta: float = 1.0
    # "gradual": unfreeze from the top down, following unfreeze_plan. "chain_thaw" (Felbo et al.
    # 2017): the head alone (stage_epochs[0], stage_lr_mult[0]), then each lower group alone from the
    # bottom up (chain_thaw_epochs, chain_thaw_lr_mult each), then all groups (the last entries).
    unfreezing: str = "gradual"
    # Gradual unfreezing: number of top layer groups trainable in each stage (0 = all).
    unfreeze_plan: tuple[int, ...] = (1, 2, 3, 0)
    # Epochs and peak learning-rate multiplier (of ``lr``) for each unfreezing stage.
    stage_epochs: tuple[int, ...] = (1, 1, 1, 2)
    stage_lr_mult: tuple[float, ...] = (2.0, 1.0, 0.5, 0.1)
    chain_thaw_epochs: int = 1
    chain_thaw_lr_mult: float = 0.1
    clip: float = 0.0
    seed: int = 42


@dataclass
class RecipeConfig:
    """A whole run: dataset, where the stage-1 LM comes from, stages 2 and 3, outputs."""

    dataset: str = "trec"
    data_dir: str = ""
    output: str = "runs/trec"
    pretrained: str = ""
    seed: int = 42
    smoke: bool = False
    finetune_lm: bool = True
    # LM fine-tuning texts: "task" (the run's train + test [+ unsup] texts) or "all" (every text
    # of the dataset even when max_train keeps fewer labelled examples: semi-supervised).
    lm_texts: str = "task"
    max_train: int = 0
    max_test: int = 0
    # Hold out this fraction of the training texts (seeded, stratified) as a validation set: the
    # classifier reports its accuracy after every epoch and metrics.json gets a "valid" block.
    # Choose epochs and learning rates on it, never on the test split.
    valid_fraction: float = 0.0
    fold: int = 0
    folds: int = 1
    fine: bool = False
    train_file: str = ""
    test_file: str = ""
    text_column: str = "text"
    label_column: str = "label"
    # Your own files: their encoding, and whether rows with empty text are skipped (and counted)
    # rather than an error.
    encoding: str = "utf-8"
    skip_empty: bool = False
    model: ModelConfig = field(default_factory=ModelConfig)
    tokenizer: TokenizerConfig = field(default_factory=TokenizerConfig)
    finetune: FinetuneConfig = field(default_factory=FinetuneConfig)
    classifier: ClassifierConfig = field(default_factory=ClassifierConfig)


@dataclass
class PretrainRunConfig:
    """A stage-1 run: which corpus, where the checkpoint goes, model and training settings."""

    corpus: str = "general_corpus"
    output: str = ""
    smoke: bool = False
    model: ModelConfig = field(default_factory=ModelConfig)
    tokenizer: TokenizerConfig = field(default_factory=TokenizerConfig)
    pretrain: PretrainConfig = field(default_factory=PretrainConfig)


def to_dict(config) -> dict:
    """The config as plain JSON-able data."""
    return json.loads(json.dumps(dataclasses.asdict(config)))


def save_config(config, path: str | Path) -> None:
    """Write the resolved config as JSON."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(path.suffix + ".tmp")
    tmp.write_text(json.dumps(to_dict(config), indent=2, sort_keys=True))
    tmp.replace(path)


def from_dict(cls, data: dict, where: str = ""):
    """Build dataclass ``cls`` from ``data``, checking keys and types."""
    hints = typing.get_type_hints(cls)
    names = {f.name for f in dataclasses.fields(cls)}
    kwargs = {}
    for key, value in data.items():
        path = f"{where}{key}"
        if key not in names:
            raise ConfigError(f"unknown config key {path!r}; known keys: {', '.join(sorted(names))}")
        kind = hints[key]
        if dataclasses.is_dataclass(kind):
            if not isinstance(value, dict):
                raise ConfigError(f"config key {path!r} must be a section (a JSON object)")
            kwargs[key] = from_dict(kind, value, path + ".")
        else:
            kwargs[key] = _check_value(kind, value, path)
    return cls(**kwargs)


def load_config(cls, path: str | Path):
    """Read a config saved by :func:`save_config`."""
    return from_dict(cls, json.loads(Path(path).read_text()))


def apply_overrides(config, overrides: list[str]):
    """Return a copy of ``config`` with ``--section.key=value`` overrides applied.

    Unknown keys and values of the wrong type raise :class:`ConfigError` naming the key.
    """
    data = to_dict(config)
    for item in overrides:
        if not item.startswith("--") or "=" not in item:
            raise ConfigError(f"override {item!r} must look like --section.key=value")
        dotted, raw = item[2:].split("=", 1)
        keys = dotted.replace("-", "_").split(".")
        cls, node = type(config), data
        for depth, key in enumerate(keys):
            hints = typing.get_type_hints(cls)
            if key not in hints:
                known = ", ".join(sorted(hints))
                raise ConfigError(f"unknown config key {dotted!r} (no {key!r}; known here: {known})")
            kind = hints[key]
            last = depth == len(keys) - 1
            if dataclasses.is_dataclass(kind):
                if last:
                    raise ConfigError(f"config key {dotted!r} is a section; set one of its fields")
                cls, node = kind, node[key]
            elif not last:
                raise ConfigError(f"config key {'.'.join(keys[:depth + 1])!r} is not a section")
            else:
                node[key] = _parse_value(kind, raw, dotted)
    return from_dict(type(config), data)


def _parse_value(kind, raw: str, key: str):
    """Parse the text of an override into the field's type."""
    origin = typing.get_origin(kind)
    if origin is tuple:
        inner = typing.get_args(kind)
        parts = [p.strip() for p in raw.strip("()[] ").split(",") if p.strip()]
        item_kind = inner[0]
        if len(inner) == 2 and inner[1] is Ellipsis or len(inner) == 1:
            return tuple(_parse_value(item_kind, p, key) for p in parts)
        if len(parts) != len(inner):
            raise ConfigError(f"config key {key!r} takes {len(inner)} comma-separated values, got {raw!r}")
        return tuple(_parse_value(k, p, key) for k, p in zip(inner, parts))
    try:
        if kind is bool:
            lowered = raw.strip().lower()
            if lowered in ("1", "true", "yes", "on"):
                return True
            if lowered in ("0", "false", "no", "off"):
                return False
            raise ValueError(raw)
        if kind is int:
            return int(raw)
        if kind is float:
            return float(raw)
        if kind is str:
            return raw
    except ValueError:
        raise ConfigError(f"config key {key!r} expects {kind.__name__}, got {raw!r}") from None
    raise ConfigError(f"config key {key!r} has unsupported type {kind}")


def _check_value(kind, value, key: str):
    """Check a JSON value against the field's type; convert lists to tuples."""
    origin = typing.get_origin(kind)
    if origin is tuple:
        if not isinstance(value, (list, tuple)):
            raise ConfigError(f"config key {key!r} expects a list, got {value!r}")
        inner = typing.get_args(kind)
        if len(inner) == 2 and inner[1] is Ellipsis:
            return tuple(_check_value(inner[0], v, key) for v in value)
        if len(inner) != len(value):
            raise ConfigError(f"config key {key!r} expects {len(inner)} values, got {value!r}")
        return tuple(_check_value(k, v, key) for k, v in zip(inner, value))
    if kind is float and isinstance(value, (int, float)) and not isinstance(value, bool):
        return float(value)
    if kind is int and isinstance(value, int) and not isinstance(value, bool):
        return value
    if kind in (bool, str) and isinstance(value, kind):
        return value
    if isinstance(kind, types.UnionType):
        raise ConfigError(f"config key {key!r} has unsupported type {kind}")
    name = getattr(kind, "__name__", str(kind))
    raise ConfigError(f"config key {key!r} expects {name}, got {value!r}")
