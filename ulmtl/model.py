"""Building, splitting, remapping and loading AWD-LSTM language models and classifiers.

The architecture is fastai's own (``AWD_LSTM``, ``get_language_model``, ``get_text_classifier``);
this module adds the parts ULMFiT needs around it: vocabulary remapping, moving an encoder from an
LM into a classifier. Reading fastai's own files is :mod:`ulmtl.fastai_files`.
"""
from __future__ import annotations

import torch
from fastai.text.models.awdlstm import AWD_LSTM, awd_lstm_clas_split, awd_lstm_lm_split
from fastai.text.models.core import get_language_model, get_text_classifier
from torch import nn

from ulmtl.config import ClassifierConfig, ModelConfig

# Keys that are the same tensor as the encoder embedding in an LM state dict.
TIED_KEYS = ("0.encoder_dp.emb.weight", "1.decoder.weight")


def _encoder_config(model: ModelConfig, prefix: str) -> dict:
    return dict(
        emb_sz=model.emb_size, n_hid=model.hidden_size, n_layers=model.n_layers, pad_token=1,
        bidir=False,
        output_p=getattr(model, f"{prefix}_output_p"), hidden_p=getattr(model, f"{prefix}_hidden_p"),
        input_p=getattr(model, f"{prefix}_input_p"), embed_p=getattr(model, f"{prefix}_embed_p"),
        weight_p=getattr(model, f"{prefix}_weight_p"),
    )


def build_language_model(vocab_size: int, model: ModelConfig, drop_mult: float = 1.0) -> nn.Module:
    """AWD-LSTM encoder + tied linear decoder: ``SequentialRNN(AWD_LSTM, LinearDecoder)``."""
    config = _encoder_config(model, "lm")
    config.update(tie_weights=True, out_bias=True)
    return get_language_model(AWD_LSTM, vocab_size, config=config, drop_mult=drop_mult)


def build_classifier(vocab_size: int, n_classes: int, model: ModelConfig,
                     classifier: ClassifierConfig) -> nn.Module:
    """BPT3C sentence encoder over an AWD-LSTM + concat-pooling head (50 hidden units)."""
    return get_text_classifier(
        AWD_LSTM, vocab_size, n_classes, seq_len=classifier.bptt,
        config=_encoder_config(model, "clas"), drop_mult=classifier.drop_mult,
        lin_ftrs=[classifier.head_hidden], ps=[classifier.head_dropout], pad_idx=1,
        max_len=classifier.max_len,
    )


def lm_layer_groups(model: nn.Module) -> list:
    """LM parameter groups, bottom first: one per LSTM layer, then embedding + decoder."""
    return awd_lstm_lm_split(model)


def classifier_layer_groups(model: nn.Module) -> list:
    """Classifier parameter groups, bottom first: embedding, each LSTM layer, the head."""
    return awd_lstm_clas_split(model)


def remap_embeddings(weight: torch.Tensor, old_itos: list[str], new_itos: list[str]) -> torch.Tensor:
    """Rows for ``new_itos``: a known token keeps its row, a new token gets the mean row."""
    old_index = {token: i for i, token in enumerate(old_itos)}
    mean = weight.mean(0)
    rows = [weight[old_index[t]] if t in old_index else mean for t in new_itos]
    return torch.stack(rows).clone()


def remap_lm_state(state: dict, old_itos: list[str], new_itos: list[str]) -> dict:
    """An LM state dict moved to a new vocabulary (embedding, tied decoder and decoder bias)."""
    state = dict(state)
    embedding = remap_embeddings(state["0.encoder.weight"], old_itos, new_itos)
    state["0.encoder.weight"] = embedding
    for key in TIED_KEYS:
        state[key] = embedding
    if "1.decoder.bias" in state:
        bias = state["1.decoder.bias"]
        state["1.decoder.bias"] = remap_embeddings(bias[:, None], old_itos, new_itos)[:, 0]
    return state


def load_lm_state(model: nn.Module, state: dict) -> None:
    """Load an LM state dict, re-tying the decoder to the embedding."""
    state = {k: v for k, v in state.items() if k not in TIED_KEYS}
    missing, unexpected = model.load_state_dict(state, strict=False)
    missing = [k for k in missing if k not in TIED_KEYS]
    if missing or unexpected:
        raise ValueError(f"language model weights do not fit: missing {missing}, unexpected {unexpected}")
    model[1].decoder.weight = model[0].encoder.weight


def encoder_state(lm_state: dict) -> dict:
    """The AWD-LSTM part of an LM state dict (keys without the ``0.`` prefix)."""
    return {k[2:]: v for k, v in lm_state.items() if k.startswith("0.")}


def load_encoder(classifier: nn.Module, state: dict) -> None:
    """Put LM encoder weights into a classifier built by :func:`build_classifier`."""
    encoder = classifier[0].module
    own = encoder.state_dict()
    mismatched = [k for k, v in state.items() if k in own and own[k].shape != v.shape]
    if mismatched:
        shapes = {k: (tuple(state[k].shape), tuple(own[k].shape)) for k in mismatched[:3]}
        raise ValueError(f"encoder weights have other shapes than the classifier (saved, expected): {shapes}")
    missing, unexpected = encoder.load_state_dict(state, strict=False)
    if missing or unexpected:
        raise ValueError(f"encoder weights do not fit: missing {missing}, unexpected {unexpected}")
