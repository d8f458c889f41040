"""The networks ulmtl trains (the AWD-LSTM of ``ulmtl.backbones.awd_lstm``, the encoders of
``ulmtl.backbones.transformer``), what the classifier needs from each (:class:`ClassifierBackbone`)
and which one a run uses (:data:`BACKBONES`, :func:`get_backbone`, :func:`backbone_for`,
:func:`resolve_backbone`)."""
from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Callable, ContextManager, Protocol

import numpy as np
import torch
from fastai.callback.core import Callback
from torch import nn

from ulmtl.backbones.awd_lstm import AwdLstmBackbone
from ulmtl.backbones.transformer import TransformerBackbone, is_encoder_folder
from ulmtl.checkpoint import CheckpointRecord
from ulmtl.config import (
    ClassifierConfig, ConfigError, FieldError, FinetuneConfig, ModelConfig, RecipeConfig, TokenizerConfig,
    TransformerConfig,
)

Settings = ModelConfig | TransformerConfig


class ClassifierBackbone(Protocol):
    """What :class:`~ulmtl.classify.TextClassifier` needs from a backbone (fastai v1's ``_model_meta``
    as an interface). ``vocab`` is the backbone's own text-to-ids mapping (a Vocab, a tokenizer);
    ``inputs`` are texts as :meth:`prepare` gives them."""

    name: str  # the key in BACKBONES and in a saved classifier's index
    settings_type: type  # its architecture section: ModelConfig or TransformerConfig
    # The sections a saved classifier's config.json holds for it: its settings first, then "tokenizer"
    # when it records the TokenizerConfig.
    sections: tuple[str, ...]
    bf16_pays_on_cpu: bool  # precision "auto" picks bf16 on a CPU
    train_norms: bool  # normalization layers train in frozen layer groups
    # Its classifier training defaults (the ClassifierConfig it is tuned for), and whether a
    # pretrained strategy needs ``encoders`` (the AWD-LSTM) or has a bundled default (the transformer):
    # what strategy "auto" uses when it tries this backbone for a classifier of the other.
    classifier_defaults: ClassifierConfig
    needs_encoders: bool

    def default_settings(self) -> Settings:
        """Its architecture section with every default (ModelConfig() or TransformerConfig())."""

    def check(self, config: ClassifierConfig, settings: Settings, multilabel: bool) -> None:
        """A ConfigError for classifier settings this backbone cannot act on."""

    def check_finetune(self, config: FinetuneConfig) -> None:
        """A ConfigError for stage-2 (LM fine-tuning) settings this backbone cannot act on."""

    def acts_on(self, override: str) -> bool:
        """Whether a ``--section.key=value`` override (of ``--smoke``'s settings) can act on this backbone."""

    def sources(self, encoders, config: ClassifierConfig) -> dict[str, Path | str | None]:
        """The pretrained source of each direction it trains (None: none, strategy scratch)."""

    def prepare(self, texts: list[str], tokenizer: TokenizerConfig) -> list:
        """Texts as :meth:`encode` takes them."""

    def build(self, direction: str, source: Path | str | None, inputs: list, n_classes: int,
              settings: Settings, config: ClassifierConfig, tokenizer: TokenizerConfig,
              verbose: bool) -> tuple[object, nn.Module, Settings]:
        """(vocab, classifier model, the settings it was built with) from the pretrained ``source``."""

    def layer_groups(self, settings: Settings) -> Callable[[nn.Module], list]:
        """The splitter of a classifier model into layer groups, bottom first."""

    def encode(self, vocab, inputs: list, config: ClassifierConfig) -> list[np.ndarray]:
        """One array of token ids per text."""

    def collate(self, vocab, config: ClassifierConfig) -> Callable[[list[np.ndarray]], np.ndarray]:
        """The padding of a batch of documents into one array."""

    def callbacks(self, model: nn.Module, config: ClassifierConfig, precision: str) -> list[Callback]:
        """Its callbacks of the classifier's fastai Learner."""

    def before_training(self, model: nn.Module, vocab, docs: list[np.ndarray], label_ids: np.ndarray,
                        settings: Settings, config: ClassifierConfig, multilabel: bool, device: torch.device,
                        log: Callable[[str], Callable | None]) -> list[dict]:
        """Train ``model`` before the classifier's stages (``log(label)`` gives a progress writer);
        the history records of what it trained."""

    def head_features(self, learn, settings: Settings, device: torch.device) -> Callable[[], ContextManager] | None:
        """A context in which ``learn`` trains the head on cached features of the frozen encoder."""

    def ready(self, model: nn.Module, precision: str) -> nn.Module:
        """``model`` made ready to predict at ``precision`` (resolved)."""

    def logits(self, model: nn.Module, x: torch.Tensor) -> torch.Tensor:
        """The logits of a batch of documents."""

    def quantize_int8(self, model: nn.Module) -> nn.Module:
        """``model`` with int8 weights; a ConfigError when the backbone has no int8 form."""

    def save(self, folder: Path, model: nn.Module, vocab, record: CheckpointRecord) -> None:
        """One direction's classifier into ``folder``: weights, vocab and ``record``."""

    def open(self, folder: Path) -> tuple[dict, object]:
        """A folder written by :meth:`save`: (its record as JSON, what :meth:`restore` builds from)."""

    def restore(self, folder: Path, opened: object, n_classes: int, settings: Settings,
                config: ClassifierConfig) -> tuple[nn.Module, object]:
        """(model in eval mode, vocab) of a folder :meth:`open` read; a CheckpointError when they do
        not fit."""


BACKBONES: dict[str, ClassifierBackbone] = {"awd_lstm": AwdLstmBackbone(), "transformer": TransformerBackbone()}


def get_backbone(name: str) -> ClassifierBackbone:
    """The backbone registered as ``name``; a ConfigError naming the known ones otherwise."""
    if name not in BACKBONES:
        raise ConfigError(f"unknown backbone {name!r}; known backbones: {', '.join(BACKBONES)}")
    return BACKBONES[name]


def check_run_settings(config: RecipeConfig) -> None:
    """A recipe's classifier and stage-2 settings that its backbone cannot act on, refused before any
    work (multi-label settings are checked again by ``fit``, once the labels are known)."""
    backbone = get_backbone(config.backbone)
    backbone.check(config.classifier, getattr(config, backbone.sections[0]), multilabel=False)
    backbone.check_finetune(config.finetune)
    # The other backbone's sections act only through strategy auto's candidates of that backbone,
    # which take its default architecture and (the AWD-LSTM's) the run's tokenizer settings.
    tries_other = config.classifier.strategy == "auto" and config.classifier.auto_backbones == "both"
    for other in BACKBONES.values():
        for section in other.sections:
            if other is backbone or (section == "tokenizer" and tries_other):
                continue
            given, default = getattr(config, section), type(getattr(config, section))()
            changed = [item.name for item in dataclasses.fields(given)
                       if getattr(given, item.name) != getattr(default, item.name)]
            if changed:
                raise FieldError(section, changed[0], f"is a setting of the {other.name} backbone, and this run's "
                                                      f"backbone is the {backbone.name} (--backbone)")


def backbone_for(settings) -> ClassifierBackbone:
    """The backbone whose architecture section ``settings`` is (a ModelConfig: the AWD-LSTM, a
    TransformerConfig: the transformer)."""
    for backbone in BACKBONES.values():
        if isinstance(settings, backbone.settings_type):
            return backbone
    known = ", ".join(b.settings_type.__name__ for b in BACKBONES.values())
    raise ConfigError(f"model_config must be one of {known}, got {type(settings).__name__}")


def resolve_backbone(backbone: str, pretrained: str, smoke: bool = False) -> str:
    """The backbone of a run. ``"auto"``: the transformer when ``pretrained`` is a Hugging Face
    encoder folder or hub id (``owner/name``), the AWD-LSTM when it is anything else (a ulmtl
    AWD-LSTM checkpoint, fastai's files); without ``pretrained``, the bundled transformer encoder,
    except for ``smoke`` runs, which check the pipeline with a tiny AWD-LSTM trained on the spot."""
    if backbone != "auto":
        return backbone
    if pretrained:
        path = Path(pretrained.replace("{direction}", "forward"))
        if is_encoder_folder(path) or (not path.exists() and pretrained.count("/") == 1
                                       and not pretrained.startswith((".", "/", "~"))):
            return "transformer"
        return "awd_lstm"
    return "awd_lstm" if smoke else "transformer"
