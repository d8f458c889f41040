"""The AWD-LSTM backbone (Merity et al. 2017) as ULMFiT uses it: everything ulmtl knows about this network.

The architecture is fastai's own (``AWD_LSTM``, ``get_language_model``, ``get_text_classifier``);
this module adds the parts ULMFiT needs around it and the stages do not know:

* building the LM (tied decoder) and the classifier (BPT3C sentence encoder + concat pooling),
  their layer groups, moving an LM to a new vocabulary, moving its encoder into a classifier;
* what an AWD-LSTM checkpoint holds besides the generic folder (:mod:`ulmtl.checkpoint`): a
  :class:`~ulmtl.text.Vocab` with fastai's special tokens, one embedding row per token; the
  hidden state an LM carries across batches (saved for an exact resume);
* training and prediction: fastai's RNN callbacks, AR / TAR, the BPT3C padding of a batch,
  resetting the hidden state before each batch of documents;
* :class:`AutocastLSTM`, the LSTM layer that runs its matmuls in bf16 on the CPU.

Reading fastai's own files is :mod:`ulmtl.fastai_files`.
"""
from __future__ import annotations

from collections import Counter
from functools import partial
from pathlib import Path

import numpy as np
import torch
from fastai.callback.core import Callback
from fastai.callback.rnn import ModelResetter, RNNCallback, RNNRegularizer
from fastai.text.models.awdlstm import AWD_LSTM, awd_lstm_clas_split, awd_lstm_lm_split
from fastai.text.models.core import get_language_model, get_text_classifier
from torch import nn

from ulmtl.checkpoint import (
    VOCAB_FILE, WEIGHTS_FILE, Checkpoint, CheckpointError, CheckpointRecord, load_checkpoint, save_checkpoint,
)
from ulmtl.config import (
    ClassifierConfig, ConfigError, FieldError, FinetuneConfig, ModelConfig, TokenizerConfig, architecture,
)
from ulmtl.text import PAD, UNK, Vocab, tokenize_texts


# --------------------------------------------------------------------------- networks

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


# --------------------------------------------------------------------------- checkpoints

# The embedding of a language model and of a classifier: one row per vocabulary token.
EMBEDDING_KEYS = ("0.encoder.weight", "0.module.encoder.weight")


def checkpoint_vocab(checkpoint: Checkpoint) -> Vocab:
    """The vocabulary of an AWD-LSTM checkpoint, checked against it: unique tokens, the special tokens
    ``xxunk`` and ``xxpad`` present, one embedding row per token; a :class:`CheckpointError` naming
    the file otherwise."""
    folder = checkpoint.folder
    try:
        vocab = Vocab(checkpoint.tokens)
    except ValueError as err:
        raise CheckpointError(f"{folder / VOCAB_FILE}: {err}") from None
    missing = [token for token in (UNK, PAD) if token not in vocab.stoi]
    if missing:
        names = " or ".join(map(repr, missing))
        raise CheckpointError(f"{folder / VOCAB_FILE}: the vocabulary has no {names} token; every ulmtl "
                              f"vocabulary starts with the special tokens")
    tensors = checkpoint.state_dict
    for key in EMBEDDING_KEYS:
        if key in tensors and tensors[key].shape[0] != len(vocab):
            raise CheckpointError(f"{folder}: {WEIGHTS_FILE} has {tensors[key].shape[0]} embedding rows "
                                  f"({key}) but {VOCAB_FILE} has {len(vocab)} tokens; the two files "
                                  f"come from different stages or runs")
    return vocab


def read_checkpoint(folder: str | Path) -> tuple[Checkpoint, Vocab]:
    """An AWD-LSTM checkpoint folder and its vocabulary (:func:`checkpoint_vocab`)."""
    checkpoint = load_checkpoint(folder)
    return checkpoint, checkpoint_vocab(checkpoint)


def hidden_state(lm: nn.Module) -> dict[str, torch.Tensor]:
    """The LSTM state a language model carries from one batch to the next, as ``hidden.<layer>.h``
    and ``hidden.<layer>.c`` tensors (saved so that a resumed run continues exactly)."""
    state = {}
    for layer, (h, c) in enumerate(lm[0].hidden):
        state[f"hidden.{layer}.h"], state[f"hidden.{layer}.c"] = h, c
    return state


def restore_hidden_state(lm: nn.Module, tensors: dict[str, torch.Tensor]) -> None:
    """Put back a state given by :func:`hidden_state`, on the LM's device."""
    encoder = lm[0]
    device = encoder.hidden[0][0].device
    encoder.hidden = [(tensors[f"hidden.{i}.h"].to(device), tensors[f"hidden.{i}.c"].to(device))
                      for i in range(len(encoder.hidden))]
    encoder.bs = encoder.hidden[0][0].shape[1]


# --------------------------------------------------------------------------- training and prediction

def training_callbacks(model: nn.Module, ar_alpha: float, tar_beta: float, precision: str) -> list[Callback]:
    """The AWD-LSTM's part of a fastai Learner: fastai's ``ModelResetter`` (a fresh hidden state
    each epoch) and ``RNNCallback`` (the outputs AR / TAR read), AR / TAR when either is set. With
    ``precision`` "bf16" (resolved), the one-layer LSTMs of ``model`` become :class:`AutocastLSTM`."""
    if precision == "bf16":
        use_autocast_lstm(model)
    callbacks = [ModelResetter(), RNNCallback()]
    if ar_alpha or tar_beta:
        callbacks.append(Regularizer(alpha=ar_alpha, beta=tar_beta))
    return callbacks


class Regularizer(RNNRegularizer):
    """fastai's AR / TAR, with TAR skipped on a batch one token long (the last of a stream whose
    length leaves one column): fastai tests the batch size there, and the mean of no differences
    is NaN."""

    def after_loss(self):
        if not self.training:
            return
        if self.alpha:
            self.learn.loss_grad += self.alpha * self.rnn.out.float().pow(2).mean()
        hidden = self.rnn.raw_out
        if self.beta and hidden.shape[1] > 1:
            self.learn.loss_grad += self.beta * (hidden[:, 1:] - hidden[:, :-1]).float().pow(2).mean()


def classifier_logits(classifier: nn.Module, x: torch.Tensor) -> torch.Tensor:
    """The logits of a batch of documents: the sentence encoder starts from a fresh hidden state."""
    classifier.reset()
    return classifier(x)[0]


def pad_chunked(docs: list[np.ndarray], pad_id: int, bptt: int) -> np.ndarray:
    """Pad to the longest document the way BPT3C needs it (fastai's ``pad_input_chunk``).

    Whole ``bptt`` chunks of padding go first, the remainder last, so that every document's first
    real token starts a chunk of the sentence encoder.
    """
    longest = max(len(d) for d in docs)
    out = np.full((len(docs), longest), pad_id, dtype=np.int64)
    for row, doc in enumerate(docs):
        missing = longest - len(doc)
        front = (missing // bptt) * bptt
        out[row, front:front + len(doc)] = doc
    return out


# --------------------------------------------------------------------------- the bf16 CPU LSTM

def cpu_bf16_autocast_active(x: torch.Tensor) -> bool:
    """True inside ``torch.autocast("cpu", dtype=torch.bfloat16)`` for a CPU tensor."""
    return (x.device.type == "cpu" and torch.is_autocast_enabled("cpu")
            and torch.get_autocast_dtype("cpu") == torch.bfloat16)


class _BF16LSTMSequence(torch.autograd.Function):
    """One unidirectional LSTM layer over a (T, B, I) fp32 sequence; bf16 matmuls."""

    @staticmethod
    def forward(ctx, x, h0, c0, w_ih, w_hh, b_ih, b_hh):
        steps, batch, _ = x.shape
        hidden = w_hh.shape[1]
        low = torch.bfloat16
        x_low, w_ih_low, w_hh_low = x.to(low), w_ih.to(low), w_hh.to(low)
        bias = b_ih + b_hh if b_ih is not None else None
        gates_x = (x_low.reshape(steps * batch, -1) @ w_ih_low.t()).float().view(steps, batch, 4 * hidden)
        if bias is not None:
            gates_x += bias
        hs = x.new_empty(steps + 1, batch, hidden)
        cs = x.new_empty(steps + 1, batch, hidden)
        tanh_cs = x.new_empty(steps, batch, hidden)
        acts = x.new_empty(steps, batch, 4 * hidden)
        hs[0], cs[0] = h0, c0
        w_hh_t = w_hh_low.t()
        for t in range(steps):
            pre = gates_x[t] + (hs[t].to(low) @ w_hh_t).float()
            act = acts[t]
            torch.sigmoid(pre, out=act)
            torch.tanh(pre[:, 2 * hidden:3 * hidden], out=act[:, 2 * hidden:3 * hidden])
            i, f, g, o = act.chunk(4, 1)
            torch.addcmul(f * cs[t], i, g, out=cs[t + 1])
            torch.tanh(cs[t + 1], out=tanh_cs[t])
            torch.mul(o, tanh_cs[t], out=hs[t + 1])
        ctx.save_for_backward(x_low, w_ih_low, w_hh_low, hs, cs, tanh_cs, acts)
        ctx.has_bias = bias is not None
        return hs[1:].clone(), hs[steps].clone(), cs[steps].clone()

    @staticmethod
    def backward(ctx, grad_out, grad_hn, grad_cn):
        x_low, w_ih_low, w_hh_low, hs, cs, tanh_cs, acts = ctx.saved_tensors
        steps, batch, _ = x_low.shape
        hidden = w_hh_low.shape[1]
        low = torch.bfloat16
        grad_gates = acts.new_empty(steps, batch, 4 * hidden)
        dh = grad_hn.clone() if grad_hn is not None else hs.new_zeros(batch, hidden)
        dc = grad_cn.clone() if grad_cn is not None else hs.new_zeros(batch, hidden)
        for t in range(steps - 1, -1, -1):
            if grad_out is not None:
                dh += grad_out[t]
            i, f, g, o = acts[t].chunk(4, 1)
            tc = tanh_cs[t]
            dc += dh * o * (1 - tc * tc)
            gi, gf, gg, go = grad_gates[t].chunk(4, 1)
            torch.mul(dc * g, i * (1 - i), out=gi)
            torch.mul(dc * cs[t], f * (1 - f), out=gf)
            torch.mul(dc * i, 1 - g * g, out=gg)
            torch.mul(dh * tc, o * (1 - o), out=go)
            dc = dc * f
            dh = (grad_gates[t].to(low) @ w_hh_low).float()
        flat = grad_gates.view(steps * batch, 4 * hidden).to(low)
        grad_x = (flat @ w_ih_low).float().view(steps, batch, -1)
        grad_w_ih = (flat.t() @ x_low.reshape(steps * batch, -1)).float()
        grad_w_hh = (flat.t() @ hs[:-1].reshape(steps * batch, hidden).to(low)).float()
        grad_b = grad_gates.sum((0, 1)) if ctx.has_bias else None
        return grad_x, dh, dc, grad_w_ih, grad_w_hh, grad_b, grad_b


class AutocastLSTM(nn.LSTM):
    """``nn.LSTM`` (one layer, unidirectional) that uses bf16 matmuls under CPU bf16 autocast.

    PyTorch's CPU ``nn.LSTM`` ignores bf16 autocast (it stays fp32), and with bf16 weights it leaves
    oneDNN for a slow path. CPUs with AMX / AVX-512-bf16 run bf16 matmuls faster than fp32, so this
    layer computes the input projection of the whole sequence as one ``(T*B, I) @ (I, 4H)`` matmul,
    one ``(B, H) @ (H, 4H)`` recurrent matmul per time step and the weight gradients as two large
    matmuls over the whole sequence in bf16 (fp32 accumulation inside the matmul), with the gate
    nonlinearities, the cell state and all saved activations in fp32. Outside CPU bf16 autocast it
    *is* ``nn.LSTM`` (a subclass with the same parameters and state-dict keys, so fastai's
    ``WeightDropout`` and saved weights work unchanged); on CUDA, cuDNN already honours autocast.
    """

    def forward(self, input, hx=None):  # noqa: A002 - nn.LSTM's signature
        if not cpu_bf16_autocast_active(input) or self.num_layers != 1 or self.bidirectional \
                or self.proj_size or input.dim() != 3:
            return super().forward(input, hx)
        x = input.float()
        x = x.transpose(0, 1) if self.batch_first else x
        batch = x.shape[1]
        if hx is None:
            zeros = x.new_zeros(batch, self.hidden_size)
            h0, c0 = zeros, zeros
        else:
            h0, c0 = hx[0][0].float(), hx[1][0].float()
        with torch.autocast("cpu", enabled=False):
            out, hn, cn = _BF16LSTMSequence.apply(
                x.contiguous(), h0, c0, self.weight_ih_l0, self.weight_hh_l0,
                getattr(self, "bias_ih_l0", None), getattr(self, "bias_hh_l0", None))
        out = out.transpose(0, 1) if self.batch_first else out
        return out, (hn.unsqueeze(0), cn.unsqueeze(0))


def use_autocast_lstm(module: nn.Module) -> nn.Module:
    """Swap every one-layer ``nn.LSTM`` inside ``module`` for an :class:`AutocastLSTM` in place
    (same parameter objects, so weights, state-dict keys and optimizers are unaffected)."""
    for child in module.modules():
        if type(child) is nn.LSTM:
            child.__class__ = AutocastLSTM
    return module


# --------------------------------------------------------------------------- the classifier's backbone

class AwdLstmBackbone:
    """The AWD-LSTM as :class:`~ulmtl.classify.TextClassifier`'s backbone (a
    :class:`~ulmtl.backbones.ClassifierBackbone`): one classifier per direction on spaCy tokens and
    its own :class:`~ulmtl.text.Vocab`, BPT3C batches, AR / TAR."""

    name = "awd_lstm"
    settings_type = ModelConfig
    sections = ("model", "tokenizer")
    bf16_pays_on_cpu = False
    train_norms = True
    classifier_defaults = ClassifierConfig()  # the paper's
    needs_encoders = True

    def default_settings(self) -> ModelConfig:
        return ModelConfig()

    def check(self, config: ClassifierConfig, settings: ModelConfig, multilabel: bool) -> None:
        """Every classifier setting acts on the AWD-LSTM; BPT3C pools over the last max_len tokens, read
        bptt at a time, so max_len is at least bptt."""
        if config.max_len < config.bptt:
            raise FieldError("classifier", "max_len", f"must be at least bptt ({config.bptt}); got {config.max_len}")

    def check_finetune(self, config: FinetuneConfig) -> None:
        """Every stage-2 setting acts on the AWD-LSTM."""

    def acts_on(self, override: str) -> bool:
        return True

    def sources(self, encoders, config: ClassifierConfig) -> dict[str, Path | None]:
        """Each direction's LM checkpoint folder (a single path: the forward one); None for scratch."""
        if config.strategy == "scratch":
            return {direction: None for direction in config.directions}
        if encoders is None:
            raise ConfigError(f"strategy {config.strategy!r} needs pretrained encoders "
                              f"(encoders={{'forward': path}}); use strategy='scratch' to train without")
        if isinstance(encoders, (str, Path)):
            encoders = {"forward": encoders}
        missing = [d for d in config.directions if d not in encoders]
        if missing:
            raise ConfigError(f"no encoder given for direction(s) {missing}")
        return {d: Path(encoders[d]) for d in config.directions}

    def prepare(self, texts: list[str], tokenizer: TokenizerConfig) -> list[list[str]]:
        return tokenize_texts(texts, batch_size=tokenizer.batch_size)

    def build(self, direction: str, source: Path | None, inputs: list[list[str]], n_classes: int,
              settings: ModelConfig, config: ClassifierConfig, tokenizer: TokenizerConfig,
              verbose: bool) -> tuple[Vocab, nn.Module, ModelConfig]:
        """Without ``source``: a vocabulary of the training tokens and random weights; with it, the
        LM's vocabulary, architecture and encoder weights."""
        if source is None:
            counts = Counter(t for doc in inputs for t in doc)
            vocab = Vocab.build(counts, tokenizer.max_vocab, tokenizer.min_freq)
            model_config, state = settings, None
        else:
            checkpoint, vocab = read_checkpoint(source)
            if checkpoint.kind != "lm":
                raise CheckpointError(f"{source}: expected a language-model checkpoint, "
                                      f"found kind {checkpoint.kind!r}")
            saved_direction = checkpoint.config.get("direction", "forward")
            if saved_direction != direction:
                raise CheckpointError(f"{source}: a {saved_direction} LM cannot serve as the "
                                      f"{direction} encoder")
            state = encoder_state(checkpoint.state_dict)
            model_config = settings.with_architecture_of(checkpoint.config["model"])
            if model_config != settings and verbose:
                print(f"ulmtl: the {direction} classifier takes its architecture from {source} "
                      f"({architecture(model_config)}), not the run's ({architecture(settings)})", flush=True)
        model = build_classifier(len(vocab), n_classes, model_config, config)
        if state is not None:
            load_encoder(model, state)
        return vocab, model, model_config

    def layer_groups(self, settings: ModelConfig):
        return classifier_layer_groups

    def encode(self, vocab: Vocab, inputs: list[list[str]], config: ClassifierConfig) -> list[np.ndarray]:
        return [np.asarray(vocab.numericalize(doc), dtype=np.int64) for doc in inputs]

    def collate(self, vocab: Vocab, config: ClassifierConfig):
        return partial(pad_chunked, pad_id=vocab.pad_id, bptt=config.bptt)

    def callbacks(self, model: nn.Module, config: ClassifierConfig, precision: str) -> list[Callback]:
        return training_callbacks(model, config.ar_alpha, config.tar_beta, precision)

    def before_training(self, model, vocab, docs, label_ids, settings, config, multilabel, device, log) -> list[dict]:
        return []

    def head_features(self, learn, settings: ModelConfig, device: torch.device) -> None:
        return None

    def ready(self, model: nn.Module, precision: str) -> nn.Module:
        return use_autocast_lstm(model) if precision == "bf16" else model

    def logits(self, model: nn.Module, x: torch.Tensor) -> torch.Tensor:
        return classifier_logits(model, x)

    def quantize_int8(self, model: nn.Module) -> nn.Module:
        raise ConfigError("int8 prediction is available for the transformer backbone only (the AWD-LSTM's "
                          "weight-dropped LSTMs have no dynamic int8 form)")

    def save(self, folder: Path, model: nn.Module, vocab: Vocab, record: CheckpointRecord) -> None:
        save_checkpoint(folder, model.state_dict(), vocab.itos, record)

    def open(self, folder: Path) -> tuple[dict, tuple[Checkpoint, Vocab]]:
        checkpoint, vocab = read_checkpoint(folder)
        return checkpoint.config, (checkpoint, vocab)

    def restore(self, folder: Path, opened: tuple[Checkpoint, Vocab], n_classes: int, settings: ModelConfig,
                config: ClassifierConfig) -> tuple[nn.Module, Vocab]:
        checkpoint, vocab = opened
        model = build_classifier(len(vocab), n_classes, settings, config)
        try:
            result = model.load_state_dict(checkpoint.state_dict, strict=False)
        except RuntimeError as err:  # tensors of other shapes than the saved config makes
            raise CheckpointError(f"{folder}: weights do not fit the saved config "
                                  f"({str(err).splitlines()[-1].strip()[:300]})") from None
        if result.missing_keys or result.unexpected_keys:
            raise CheckpointError(f"{folder}: weights do not fit the saved config "
                                  f"(missing {result.missing_keys[:3]}, unexpected {result.unexpected_keys[:3]})")
        return model.eval(), vocab
