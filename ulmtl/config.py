"""Typed configuration for every stage, with the ULMFiT paper's values as defaults.

Each stage has one dataclass. Configs nest (a recipe config holds the stage configs), are
overridden from the command line with ``--section.key=value`` and are saved as JSON next to every
checkpoint and result. Every config checks itself when built (``__post_init__``): enumerated
settings are ``Literal`` fields, every number has a range (:func:`limited`) and must be finite, so a
bad value fails with the key named before any work starts.
"""
from __future__ import annotations

import dataclasses
import functools
import json
import math
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

from ulmtl.datasets.layout import text_encoding_problem
from ulmtl.datasets.registry import REGISTRY, unused_option
from ulmtl.text import SPECIAL_TOKENS


class ConfigError(ValueError):
    """A configuration value or override that cannot be used."""


class FieldError(ConfigError):
    """A bad value of one config field: ``config key 'owner.field' problem``.

    Raised by ``__post_init__`` with the class name as ``owner``; :func:`from_dict` (and so
    :func:`apply_overrides`) replaces it with the section's dotted path (``classifier``)."""

    def __init__(self, owner: str, field_name: str, problem: str):
        self.owner, self.field_name, self.problem = owner, field_name, problem
        key = f"{owner}.{field_name}" if owner else field_name
        super().__init__(f"config key {key!r} {problem}")


@dataclass(frozen=True)
class Limit:
    """The numbers a field (or every item of a tuple field) accepts: ``low``..``high``, each end
    included unless ``*_open``. Every float must also be finite."""

    low: float = -math.inf
    high: float = math.inf
    low_open: bool = False
    high_open: bool = False
    why: str = ""

    def admits(self, value: float) -> bool:
        above = value > self.low if self.low_open else value >= self.low
        below = value < self.high if self.high_open else value <= self.high
        return above and below

    def describe(self) -> str:
        def number(x: float) -> str:
            return str(int(x)) if float(x).is_integer() else repr(x)
        if self.high == math.inf:
            text = f"{'>' if self.low_open else '>='} {number(self.low)}"
        else:
            left, right = "(" if self.low_open else "[", ")" if self.high_open else "]"
            text = f"in {left}{number(self.low)}, {number(self.high)}{right}"
        return f"{text} ({self.why})" if self.why else text


POSITIVE = Limit(0, low_open=True)
NON_NEGATIVE = Limit(0)
AT_LEAST_1 = Limit(1)
PROBABILITY = Limit(0, 1, high_open=True)  # dropouts, Adam betas
FRACTION = Limit(0, 1, low_open=True, high_open=True)
SEED = Limit(0, 2 ** 32 - 1, why="NumPy's seed range")


def limited(default, limit: Limit):
    """A dataclass field with its accepted range (``field.metadata["limit"]``), checked on build."""
    return field(default=default, metadata={"limit": limit})


Precision = Literal["fp32", "bf16", "auto"]
Direction = Literal["forward", "backward"]
Schedule = Literal["stlr", "one_cycle", "constant", "linear"]  # ulmtl.schedule.schedule_value
Strategy = Literal["finetune", "feature_extraction", "scratch", "auto"]  # "auto": ulmtl.selection
Unfreezing = Literal["gradual", "chain_thaw"]
LmTexts = Literal["task", "all"]
Backbone = Literal["auto", "awd_lstm", "transformer"]
# ulmtl.training.make_learner: fastai's Adam (one parameter at a time; no weight decay on norms and
# biases) or torch's AdamW in one fused kernel over all parameters (weight decay on all of them).
Optimizer = Literal["fastai_adam", "fused_adamw"]
# What the transformer classifier's head reads of a document (ulmtl.backbones.transformer.pool).
Pooling = Literal["concat", "first", "mean"]

ARCHITECTURE = ("emb_size", "hidden_size", "n_layers")  # ModelConfig's fields a checkpoint fixes
DEFAULT_THRESHOLD = 0.5  # of a multi-label classifier's per-label probabilities


@dataclass
class ModelConfig:
    """AWD-LSTM architecture (Merity et al. 2017) as used by ULMFiT: 400 / 1152 / 3."""

    emb_size: int = limited(400, AT_LEAST_1)
    hidden_size: int = limited(1152, AT_LEAST_1)
    n_layers: int = limited(3, AT_LEAST_1)
    # Dropouts of the language model (fastai's awd_lstm_lm_config).
    lm_output_p: float = limited(0.1, PROBABILITY)
    lm_hidden_p: float = limited(0.15, PROBABILITY)
    lm_input_p: float = limited(0.25, PROBABILITY)
    lm_embed_p: float = limited(0.02, PROBABILITY)
    lm_weight_p: float = limited(0.2, PROBABILITY)
    # Dropouts of the classifier encoder (the paper: 0.4 / 0.3 / 0.4 / 0.05 / 0.5), times
    # ClassifierConfig.drop_mult (default 1.0).
    clas_output_p: float = limited(0.4, PROBABILITY)
    clas_hidden_p: float = limited(0.3, PROBABILITY)
    clas_input_p: float = limited(0.4, PROBABILITY)
    clas_embed_p: float = limited(0.05, PROBABILITY)
    clas_weight_p: float = limited(0.5, PROBABILITY)
    # Matmul precision for training and prediction: "fp32", "bf16" (autocast; on the CPU the LSTM
    # runs its matmuls in bf16 too, see ulmtl.backbones.awd_lstm.AutocastLSTM) or "auto": bf16 on a
    # CUDA GPU with bf16, fp32 on the CPU (the CPU bf16 LSTM measured slower than fp32: opt-in).
    precision: Precision = "auto"

    def __post_init__(self):
        check_fields(self)

    def with_architecture_of(self, saved: dict) -> "ModelConfig":
        """This config with the architecture (sizes, layers) of a checkpoint's saved ``model``
        section; the runtime settings (dropouts, precision) stay this run's."""
        saved_model = from_dict(ModelConfig, saved, "model.")
        return dataclasses.replace(self, **{key: getattr(saved_model, key) for key in ARCHITECTURE})


def architecture(model: ModelConfig) -> str:
    """The architecture fields of ``model``, as ``emb_size=400, hidden_size=1152, n_layers=3``."""
    return ", ".join(f"{key}={getattr(model, key)}" for key in ARCHITECTURE)


@dataclass
class TransformerConfig:
    """A pretrained transformer encoder (Hugging Face) read the ULMFiT way.

    The checkpoint itself (a folder, a hub id, or the bundled all-MiniLM-L6-v2) is the stage-1 LM;
    its architecture comes with it. These are the settings of how ulmtl reads and trains it.
    """

    # Long documents are read in windows of this many tokens (special tokens included) that
    # overlap by ``overlap`` tokens; ClassifierConfig.max_len caps the tokens read per document.
    window: int = limited(256, Limit(3, why="two special tokens and one of text"))
    overlap: int = limited(64, NON_NEGATIVE)
    # A training batch with more windows than this (long documents: a batch of 32 polarity reviews
    # has about 170) runs the encoder on chunks of this many windows under activation checkpointing
    # (each chunk's activations are recomputed in backward, one more forward pass): memory is then
    # bounded by one chunk instead of growing with the documents' length. 0: every window at once.
    windows_at_once: int = limited(32, NON_NEGATIVE)
    # Layer groups: the embeddings, the blocks in this many groups of consecutive layers, the head.
    block_groups: int = limited(3, AT_LEAST_1)
    # The head's input: "concat" (ULMFiT's [first token of the first window, max and mean over the
    # text tokens of all windows]), "first" (the first token only: only first windows are encoded)
    # or "mean" (the mean only).
    pooling: Pooling = "concat"
    # Dropout on the pooled features, before the head's hidden layer.
    pooled_dropout: float = limited(0.1, PROBABILITY)
    # Stage 2 (masked-LM fine-tuning): masking rate, tokens per row, and the epochs a new MLM head
    # (for checkpoints without one) trains alone, at head_lr_mult times finetune.lr, before the
    # encoder is unfrozen.
    mlm_probability: float = limited(0.15, FRACTION)
    mlm_block: int = limited(128, Limit(4))
    head_epochs: int = limited(1, NON_NEGATIVE)
    head_lr_mult: float = limited(10.0, POSITIVE)
    # Stage 3's contrastive stage (SetFit's, ulmtl.contrastive): before the classifier's plan, the
    # encoder learns from pairs of labelled texts, cosine similarity 1 for the same label and 0
    # otherwise. "on", "off", or "auto": on when fit gets at most contrastive_auto_max texts. Each of
    # contrastive_iterations rounds pairs every text with one text of its label and one of another,
    # at most contrastive_max_pairs pairs in all (the default: what auto's largest set makes, 1000
    # texts x 20 rounds x 2); one epoch of batches of contrastive_batch_size pairs, AdamW at
    # contrastive_lr. It acts for every strategy (with feature_extraction, the head then trains on
    # the contrastive encoder frozen, as SetFit's does). Under strategy "auto", "auto" is decided by
    # validation instead: finetune with the stage is one more candidate, the others run without it.
    # Off by default until benchmarked.
    contrastive: Literal["auto", "on", "off"] = "off"
    contrastive_auto_max: int = limited(1000, AT_LEAST_1)
    contrastive_iterations: int = limited(20, AT_LEAST_1)
    contrastive_max_pairs: int = limited(40_000, Limit(2, why="one positive and one negative pair"))
    contrastive_batch_size: int = limited(16, AT_LEAST_1)
    contrastive_lr: float = limited(2e-5, POSITIVE)
    # "fp32", "bf16" (autocast) or "auto": bf16 on a CUDA GPU with bf16, and on a CPU with AMX or
    # AVX-512-BF16 where bf16 matmuls measure faster than fp32 (ulmtl.precision); fp32 otherwise.
    precision: Precision = "auto"
    # While only the head trains (feature_extraction, and the first stage of finetune), compute
    # each text's pooled features of the frozen encoder once (eval mode: no encoder dropout) and
    # train the head on them, instead of running the encoder on every batch of every epoch.
    cache_features: bool = True

    def __post_init__(self):
        check_fields(self)
        if self.overlap > self.window - 3:
            raise FieldError(type(self).__name__, "overlap",
                             f"must be at most window - 3 = {self.window - 3} (a window moves by at least one token)")


@dataclass
class TokenizerConfig:
    """spaCy tokenization with fastai's rules, and the vocabulary built from it."""

    # The vocabulary: at most max_vocab tokens (fastai's special tokens included), each seen at
    # least min_freq times.
    max_vocab: int = limited(60000, Limit(len(SPECIAL_TOKENS), low_open=True, why="the special tokens"))
    min_freq: int = limited(2, AT_LEAST_1)
    num_proc: int = limited(1, AT_LEAST_1)
    batch_size: int = limited(1000, AT_LEAST_1)

    def __post_init__(self):
        check_fields(self)


def pretrain_tokenizer() -> TokenizerConfig:
    """Stage 1's vocabulary: 30000 tokens seen at least 3 times (stage 2's default is 60000 / 2)."""
    return TokenizerConfig(max_vocab=30000, min_freq=3)


@dataclass
class OptimizerSettings:
    """The training settings every stage has: batches, Adam, the LR schedule's shape, the AWD-LSTM's
    regularization, clipping, the seed. Each stage config inherits them; its defaults are stage 1's,
    and a stage whose paper value differs sets its own (:func:`stage_default`)."""

    bptt: int = limited(70, AT_LEAST_1)
    batch_size: int = limited(64, AT_LEAST_1)
    lr: float = limited(3e-3, POSITIVE)  # peak LR (of the top layer group)
    betas: tuple[float, float] = limited((0.7, 0.99), PROBABILITY)
    weight_decay: float = limited(0.01, NON_NEGATIVE)
    optimizer: Optimizer = "fastai_adam"
    # Slanted triangular LRs (schedule "stlr"): rise over the first cut_frac of training, from
    # lr / ratio. Schedule "linear" (Hugging Face's) rises from 0 over the first cut_frac, then
    # falls to 0.
    cut_frac: float = limited(0.1, FRACTION)
    ratio: float = limited(32.0, AT_LEAST_1)
    # Multiplies the model's dropouts (ModelConfig.lm_*_p for an LM, clas_*_p for the classifier,
    # where 1.0 gives the paper's 0.4 / 0.3 / 0.4 / 0.05 / 0.5; fastai's text_classifier_learner
    # defaults to 0.5, and ulmtl's classifier did too before 2026-12-01).
    drop_mult: float = limited(1.0, NON_NEGATIVE)
    # Activation regularization (AR) and temporal AR (TAR) of the AWD-LSTM's outputs.
    ar_alpha: float = limited(2.0, NON_NEGATIVE)
    tar_beta: float = limited(1.0, NON_NEGATIVE)
    clip: float = limited(0.4, NON_NEGATIVE)  # 0: no gradient clipping
    seed: int = limited(42, SEED)

    def __post_init__(self):
        check_fields(self)


def stage_default(name: str, value):
    """The shared setting ``name`` (an :class:`OptimizerSettings` field, its range kept) with a
    stage's own default ``value``."""
    return limited(value, OptimizerSettings.__dataclass_fields__[name].metadata["limit"])


@dataclass
class PretrainConfig(OptimizerSettings):
    """Stage 1: general-domain language model (its vocabulary: the run's ``tokenizer`` section)."""

    direction: Direction = "forward"
    epochs: int = limited(1, AT_LEAST_1)
    valid_fraction: float = limited(0.02, FRACTION)
    max_docs: int = limited(0, NON_NEGATIVE)  # 0: every document
    # Read the training tokens from a memory-mapped file in corpus order instead of shuffling
    # documents in memory: for corpora larger than RAM.
    stream: bool = False
    # Budgets (0: none): stop after this many seconds of training / training tokens.
    time_budget_s: float = limited(0.0, NON_NEGATIVE)
    token_budget: int = limited(0, NON_NEGATIVE)
    checkpoint_every_s: float = limited(600.0, NON_NEGATIVE)  # 0: no resume checkpoints
    log_every: int = limited(20, AT_LEAST_1)


@dataclass
class FinetuneConfig(OptimizerSettings):
    """Stage 2: LM fine-tuning on target-domain text (discriminative LRs + STLR)."""

    lr: float = stage_default("lr", 4e-3)
    drop_mult: float = stage_default("drop_mult", 0.3)
    epochs: int = limited(2, AT_LEAST_1)
    # Each lower layer group gets the LR of the one above divided by lr_decay: >= 1, so no lower
    # group learns faster than the top (1: the same LR everywhere).
    lr_decay: float = limited(2.6, AT_LEAST_1)
    discriminative: bool = True
    schedule: Schedule = "stlr"
    valid_fraction: float = limited(0.1, FRACTION)


@dataclass
class ClassifierConfig(OptimizerSettings):
    """Stage 3: concat-pooling classifier with gradual unfreezing, discriminative LRs and STLR."""

    lr: float = stage_default("lr", 0.01)
    clip: float = stage_default("clip", 0.0)
    strategy: Strategy = "finetune"
    # strategy "auto" (ulmtl.selection) tries feature_extraction, finetune and scratch, cheapest
    # first, on a seeded stratified hold-out of this fraction of the training texts, keeps the best
    # by validation accuracy and refits it on all of them. auto_folds: 1 = that one hold-out; k >= 2
    # = stratified k-fold cross-validation (every text validated once, the score pooled over the
    # folds); 0 = one hold-out when it holds at least AUTO_MIN_HOLD_OUT (100) texts, else
    # round(1 / auto_valid_fraction) folds, at most 10 (a hold-out of 20 texts measures accuracy
    # with a standard error of up to 11 points). A candidate that would start after auto_budget_s seconds of trying is skipped (0: no
    # budget; candidates run until one has run). auto_backbones: "both" tries the other backbone's
    # strategies too, after the classifier's own, with that backbone's classifier defaults and this
    # seed (the transformer: the bundled encoder; the AWD-LSTM: scratch only, it has no encoders
    # here); "own" tries the classifier's backbone alone. All are used by "auto" only: set with
    # another strategy, they are refused.
    auto_valid_fraction: float = limited(0.2, FRACTION)
    auto_folds: int = limited(0, NON_NEGATIVE)
    auto_budget_s: float = limited(0.0, NON_NEGATIVE)
    auto_backbones: Literal["own", "both"] = "both"
    directions: tuple[Direction, ...] = ("forward",)
    # The head pools over the last max_len tokens of a document (the AWD-LSTM: at least bptt).
    max_len: int = limited(1400, AT_LEAST_1)
    head_hidden: int = limited(50, AT_LEAST_1)
    head_dropout: float = limited(0.1, PROBABILITY)
    lr_decay: float = limited(2.6, AT_LEAST_1)  # as FinetuneConfig.lr_decay
    discriminative: bool = True
    schedule: Schedule = "stlr"
    # "gradual": unfreeze from the top down, following unfreeze_plan. "chain_thaw" (Felbo et al.
    # 2017): the head alone (stage_epochs[0], stage_lr_mult[0]), then each lower group alone from the
    # bottom up (chain_thaw_epochs, chain_thaw_lr_mult each), then all groups (the last entries).
    unfreezing: Unfreezing = "gradual"
    # Gradual unfreezing: number of top layer groups trainable in each stage (0 = all).
    unfreeze_plan: tuple[int, ...] = limited((1, 2, 3, 0), NON_NEGATIVE)
    # Epochs and peak learning-rate multiplier (of ``lr``) for each unfreezing stage: one entry
    # per entry of unfreeze_plan.
    stage_epochs: tuple[int, ...] = limited((1, 1, 1, 2), AT_LEAST_1)
    stage_lr_mult: tuple[float, ...] = limited((2.0, 1.0, 0.5, 0.1), POSITIVE)
    chain_thaw_epochs: int = limited(1, AT_LEAST_1)
    chain_thaw_lr_mult: float = limited(0.1, POSITIVE)
    # A stage that trains the head alone (feature_extraction's one stage, finetune's first) runs for
    # at least this many optimizer steps: with few texts an epoch is a handful of batches (50 texts in
    # batches of 32: 2), so its epochs grow to make the steps. 0: the plan's epochs. Refused where no
    # stage trains the head alone (scratch; a gradual plan without a 1).
    head_min_steps: int = limited(0, NON_NEGATIVE)
    # Multi-label classification (a set of labels per text; a sigmoid per label, binary
    # cross-entropy): a label is predicted when its probability is at least threshold. With
    # tune_threshold, fit picks the one threshold with the best micro-F1 on its validation split
    # instead (never the test split). Both are refused for single-label data.
    threshold: float = limited(DEFAULT_THRESHOLD, FRACTION)
    tune_threshold: bool = False

    def __post_init__(self):
        super().__post_init__()
        owner = type(self).__name__
        if not self.directions:
            raise FieldError(owner, "directions", "needs at least one of 'forward', 'backward'")
        if len(set(self.directions)) != len(self.directions):
            raise FieldError(owner, "directions", f"names a direction twice; got {self.directions}")
        if not self.unfreeze_plan:
            raise FieldError(owner, "unfreeze_plan", "needs at least one stage")
        for name in ("stage_epochs", "stage_lr_mult"):
            value = getattr(self, name)
            if len(value) != len(self.unfreeze_plan):
                raise FieldError(owner, name, f"needs one entry per stage of unfreeze_plan ("
                                              f"{len(self.unfreeze_plan)}: {self.unfreeze_plan}); got {value}")
        if self.head_min_steps and (self.strategy == "scratch" or (  # auto: its finetune candidate
                self.strategy in ("finetune", "auto") and self.unfreezing == "gradual" and 1 not in self.unfreeze_plan)):
            where = ("strategy 'scratch'" if self.strategy == "scratch" else
                     f"this unfreeze_plan {self.unfreeze_plan} (no stage of 1 group)")
            raise FieldError(owner, "head_min_steps", f"acts on a stage that trains the head alone, and "
                                                      f"{where} has none; got {self.head_min_steps}")
        if self.strategy != "auto":
            for item in dataclasses.fields(self):
                value = getattr(self, item.name)
                if item.name.startswith("auto_") and value != item.default:
                    raise FieldError(owner, item.name, f"is used by strategy 'auto' only (strategy is "
                                                       f"{self.strategy!r}); got {value!r}")


@dataclass
class RecipeConfig:
    """A whole run: dataset, where the stage-1 LM comes from, stages 2 and 3, outputs."""

    dataset: str = "trec"
    data_dir: str = ""
    output: str = "runs/trec"
    pretrained: str = ""
    seed: int = limited(42, SEED)
    smoke: bool = False
    finetune_lm: bool = True
    # LM fine-tuning texts: "task" (the run's train + test [+ unsup] texts) or "all" (every text
    # of the dataset even when max_train keeps fewer labelled examples: semi-supervised).
    lm_texts: LmTexts = "task"
    # Keep this many labelled train / test examples (stratified); 0: all.
    max_train: int = limited(0, NON_NEGATIVE)
    max_test: int = limited(0, NON_NEGATIVE)
    # Hold out this fraction of the training texts (seeded, stratified) as a validation set: the
    # classifier reports its accuracy after every epoch and metrics.json gets a "valid" block.
    # Choose epochs and learning rates on it, never on the test split. In [0, 1): 0 holds out none.
    valid_fraction: float = limited(0.0, Limit(0, 1, high_open=True))
    # Cross-validation: folds > 1 runs every fold; with folds = 1, fold picks one (polarity's 10).
    fold: int = limited(0, NON_NEGATIVE)
    folds: int = limited(1, AT_LEAST_1)
    fine: bool = False
    train_file: str = ""
    test_file: str = ""
    text_column: str = "text"
    label_column: str = "label"
    # Multi-label files (a set of labels per text): label_separator splits the label field (e.g. "|"
    # reads "a|b" as a and b); label_columns names one 0/1 column per label instead of label_column.
    # A JSON lines / parquet label that is a list is a set of labels without either.
    label_separator: str = ""
    label_columns: tuple[str, ...] = ()
    # Your own files: their encoding (any name Python's codecs know), and whether rows with empty
    # text are skipped (and counted) rather than an error.
    encoding: str = "utf-8"
    skip_empty: bool = False
    # "awd_lstm", "transformer", or "auto": the AWD-LSTM when --pretrained is an AWD-LSTM or fastai
    # checkpoint, else the transformer (the bundled encoder unless --pretrained names another).
    backbone: Backbone = "auto"
    model: ModelConfig = field(default_factory=ModelConfig)
    transformer: TransformerConfig = field(default_factory=TransformerConfig)
    tokenizer: TokenizerConfig = field(default_factory=TokenizerConfig)
    finetune: FinetuneConfig = field(default_factory=FinetuneConfig)
    classifier: ClassifierConfig = field(default_factory=ClassifierConfig)

    def __post_init__(self):
        check_fields(self)
        owner = type(self).__name__
        if self.folds > 1 and self.fold >= self.folds:
            raise FieldError(owner, "fold", f"must be below folds ({self.folds}); got {self.fold}")
        if self.dataset == "custom":
            if self.data_dir:
                raise FieldError(owner, "data_dir", "is where the named datasets are read from; your own files "
                                                    "are --train FILE_OR_FOLDER [--test FILE]")
        else:
            own_files = [key for key in OWN_FILE_FIELDS if getattr(self, key) != OWN_FILE_DEFAULTS[key]]
            if own_files:
                raise FieldError(owner, own_files[0], f"reads your own files (dataset 'custom': recipes/custom.py, "
                                                      f"ulmtl train); dataset {self.dataset!r} has its own files "
                                                      f"and labels")
            if self.dataset in REGISTRY:
                problem = unused_option(self.dataset, {"fine": self.fine, "fold": self.fold, "folds": self.folds})
                if problem:
                    raise FieldError(owner, *problem)
        if self.label_separator and self.label_columns:
            raise FieldError(owner, "label_columns", "names one 0/1 column per label; label_separator splits "
                                                     "one label column: give one or the other")
        if self.label_columns and (len(set(self.label_columns)) != len(self.label_columns) or "" in self.label_columns
                                   or len(self.label_columns) < 2):
            raise FieldError(owner, "label_columns", f"must name two or more distinct columns; got "
                                                     f"{list(self.label_columns)}")
        if self.label_columns and self.label_column != "label":
            raise FieldError(owner, "label_column", f"is {self.label_column!r} but label_columns names the "
                                                    f"0/1 label columns: give one or the other")
        problem = text_encoding_problem(self.encoding)
        if problem:
            raise FieldError(owner, "encoding", problem)


OWN_FILE_FIELDS = ("train_file", "test_file", "text_column", "label_column", "label_separator", "label_columns",
                   "encoding", "skip_empty")
OWN_FILE_DEFAULTS = {key: RecipeConfig.__dataclass_fields__[key].default for key in OWN_FILE_FIELDS}


@dataclass
class PretrainRunConfig:
    """A stage-1 run: which corpus, where the checkpoint goes, model and training settings."""

    corpus: str = "general_corpus"
    output: str = ""
    smoke: bool = False
    model: ModelConfig = field(default_factory=ModelConfig)
    tokenizer: TokenizerConfig = field(default_factory=pretrain_tokenizer)
    pretrain: PretrainConfig = field(default_factory=PretrainConfig)

    def __post_init__(self):
        check_fields(self)


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
    """Build dataclass ``cls`` from ``data``, checking keys, types and ranges; errors name the
    dotted key (``where`` is the path of ``cls``'s section, e.g. ``"classifier."``)."""
    names = {f.name for f in dataclasses.fields(cls)}
    hints = _type_hints(cls)
    kwargs = {}
    for key, value in data.items():
        path = f"{where}{key}"
        if key not in names:
            raise ConfigError(f"unknown config key {path!r}; known keys: {', '.join(sorted(names))}")
        kind = hints[key]
        if dataclasses.is_dataclass(kind):
            if not isinstance(value, dict):
                raise ConfigError(f"config key {path!r} must be a section (a JSON object)")
            value = from_dict(kind, value, path + ".")
        kwargs[key] = value
    try:
        return cls(**kwargs)
    except FieldError as err:
        if err.owner != cls.__name__:
            raise
        raise FieldError(where.rstrip("."), err.field_name, err.problem) from None


def load_config(cls, path: str | Path):
    """Read a config saved by :func:`save_config`."""
    return from_dict(cls, json.loads(Path(path).read_text()))


def apply_overrides(config, overrides: list[str]):
    """Return a copy of ``config`` with ``--section.key=value`` overrides applied.

    Unknown keys, values of the wrong type and values out of range raise :class:`ConfigError`
    naming the key.
    """
    data = to_dict(config)
    for item in overrides:
        if not item.startswith("--") or "=" not in item:
            raise ConfigError(f"override {item!r} must look like --section.key=value")
        dotted, raw = item[2:].split("=", 1)
        keys = dotted.replace("-", "_").split(".")
        cls, node = type(config), data
        for depth, key in enumerate(keys):
            hints = _type_hints(cls)
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


def check_fields(config) -> None:
    """Check every field of a config dataclass against its type and ``limit`` (and that every
    float is finite), normalising as it goes: lists become tuples, ints in float fields floats.

    Called by each config's ``__post_init__``; raises :class:`FieldError`."""
    owner = type(config).__name__
    hints = _type_hints(type(config))
    for item in dataclasses.fields(config):
        kind, value = hints[item.name], getattr(config, item.name)
        if dataclasses.is_dataclass(kind):
            if not isinstance(value, kind):
                raise FieldError(owner, item.name, f"must be a {kind.__name__} section; got {value!r}")
            continue
        value = _check_value(kind, value, owner, item.name)
        limit = item.metadata.get("limit")
        for number in value if isinstance(value, tuple) else (value,):
            if isinstance(number, float) and not math.isfinite(number):
                raise FieldError(owner, item.name, f"must be a finite number; got {value!r}")
            if limit is not None and not limit.admits(number):
                raise FieldError(owner, item.name, f"must be {limit.describe()}; got {value!r}")
        setattr(config, item.name, value)


@functools.cache
def _type_hints(cls) -> dict:
    return typing.get_type_hints(cls)


def _parse_value(kind, raw: str, key: str):
    """Parse the text of an override into the field's type (ranges and choices are checked when
    the config is built)."""
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
    if origin is Literal and all(isinstance(choice, str) for choice in typing.get_args(kind)):
        return raw
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


def _check_value(kind, value, owner: str, name: str):
    """Check a value against the field's type (a Literal: one of its choices); convert lists to
    tuples and ints to floats."""
    origin = typing.get_origin(kind)
    if origin is tuple:
        if not isinstance(value, (list, tuple)):
            raise FieldError(owner, name, f"expects a list, got {value!r}")
        inner = typing.get_args(kind)
        if len(inner) == 2 and inner[1] is Ellipsis:
            return tuple(_check_value(inner[0], v, owner, name) for v in value)
        if len(inner) != len(value):
            raise FieldError(owner, name, f"expects {len(inner)} values, got {value!r}")
        return tuple(_check_value(k, v, owner, name) for k, v in zip(inner, value))
    if origin is Literal:
        choices = typing.get_args(kind)
        if value not in choices or isinstance(value, bool):
            raise FieldError(owner, name, f"must be one of {', '.join(map(repr, choices))}; got {value!r}")
        return value
    if kind is float and isinstance(value, (int, float)) and not isinstance(value, bool):
        return float(value)
    if kind is int and isinstance(value, int) and not isinstance(value, bool):
        return value
    if kind in (bool, str) and isinstance(value, kind):
        return value
    if kind not in (bool, int, float, str):
        raise FieldError(owner, name, f"has unsupported type {kind}")
    raise FieldError(owner, name, f"expects {kind.__name__}, got {value!r}")


# ULMFiT's schedule with the optimizer settings a pretrained transformer needs (AdamW's betas, LRs
# two orders below the AWD-LSTM's, no AR/TAR): the head alone on frozen features, then every layer
# group with discriminative LRs and STLR.
TRANSFORMER_FINETUNE = FinetuneConfig(
    batch_size=32, epochs=1, lr=1e-4, lr_decay=1.3, betas=(0.9, 0.999), optimizer="fused_adamw", ar_alpha=0.0,
    tar_beta=0.0, clip=1.0)
TRANSFORMER_CLASSIFIER = ClassifierConfig(
    batch_size=32, lr=1e-4, lr_decay=1.3, betas=(0.9, 0.999), optimizer="fused_adamw", ar_alpha=0.0,
    tar_beta=0.0, clip=1.0, max_len=1024, unfreeze_plan=(1, 0), stage_epochs=(1, 4), stage_lr_mult=(10.0, 1.0))


def backbone_defaults(backbone: str) -> list[str]:
    """Overrides that give a recipe the backbone's training defaults (none for the AWD-LSTM, whose
    defaults are the paper's)."""
    if backbone == "transformer":
        # A transformer reads both directions at once: a recipe's forward + backward ensemble (the
        # paper's, for the AWD-LSTM) becomes the one forward classifier.
        return (preset_overrides(TRANSFORMER_FINETUNE, "finetune")
                + preset_overrides(TRANSFORMER_CLASSIFIER, "classifier") + ["--classifier.directions=forward"])
    return []


def preset_overrides(preset, section: str) -> list[str]:
    """``--section.key=value`` overrides that turn the section's defaults into ``preset``."""
    default = to_dict(type(preset)())
    return [f"--{section}.{key}={_format(value)}" for key, value in to_dict(preset).items()
            if default[key] != value]


def _format(value) -> str:
    if isinstance(value, list):
        return ",".join(str(v) for v in value)
    return str(value)
