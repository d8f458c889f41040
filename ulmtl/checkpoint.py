"""The hand-off between stages: one folder with weights (safetensors), vocabulary and config (JSON).

The folder knows no network: the vocabulary is a list of tokens, the weights a flat dict of
tensors; what they must hold is the backbone's to check (:mod:`ulmtl.backbones.awd_lstm`).
Loading never unpickles anything: a folder holding a pickle payload is refused.
"""
from __future__ import annotations

import contextlib
import glob
import json
import os
import shutil
from dataclasses import dataclass, fields, is_dataclass
from pathlib import Path
from typing import Literal, get_args

import torch
from safetensors.torch import load_file, save_file

from ulmtl.config import (
    ClassifierConfig, Direction, FinetuneConfig, ModelConfig, PretrainConfig, TokenizerConfig, TransformerConfig,
    to_dict,
)

WEIGHTS_FILE = "weights.safetensors"
VOCAB_FILE = "vocab.json"
CONFIG_FILE = "config.json"
CHECKPOINT_FILES = (WEIGHTS_FILE, VOCAB_FILE, CONFIG_FILE)
# An empty file in a folder ulmtl is writing (``<name>.partial-<pid>``) or moving aside
# (``<name>.old-<pid>``): only a folder holding it is removed as a killed save's leftover, never one
# a user made with a name like it.
SAVE_MARKER = ".ulmtl-save"
PICKLE_SUFFIXES = {".pkl", ".pickle", ".pth", ".pt", ".bin", ".ckpt", ".joblib"}
# Protocol 2+ pickles start with 0x80; zip-based torch files with "PK".
PICKLE_MAGIC = (b"\x80", b"PK\x03\x04")


class CheckpointError(ValueError):
    """A checkpoint folder that cannot be loaded safely or does not fit."""


Kind = Literal["lm", "classifier"]
Network = Literal["awd_lstm", "transformer"]


@dataclass
class CheckpointRecord:
    """What a checkpoint's ``config.json`` (a transformer's ``ulmtl.json``) says: what the folder holds,
    the config sections that made it and what its stage recorded. :meth:`to_json` gives the JSON:
    one key per field that is set (None: no key), the sections as JSON objects."""

    kind: Kind
    direction: Direction = "forward"
    # The AWD-LSTM's files never named their backbone: the key is written for the transformer only.
    backbone: Network = "awd_lstm"
    stage: str | None = None  # an LM's: "pretrain", "finetune", "fastai-wt103"
    pretrained: str | None = None  # a fine-tuned LM's: the stage or encoder it started from
    source: dict | None = None  # an imported LM's: the files it was read from
    model: ModelConfig | None = None  # the AWD-LSTM's architecture and dropouts
    transformer: TransformerConfig | None = None
    tokenizer: TokenizerConfig | None = None
    pretrain: PretrainConfig | None = None
    finetune: FinetuneConfig | None = None
    classifier: ClassifierConfig | None = None
    classes: list | None = None
    multilabel: bool | None = None  # a classifier's: label sets (sigmoid head) or one class per text
    threshold: float | None = None  # a multi-label classifier's decision threshold
    history: list | None = None
    train_counts: dict | None = None
    selection: dict | None = None  # strategy "auto"'s candidates and winner
    metrics: dict | None = None
    progress: dict | None = None  # a resume checkpoint's: where training stopped
    run_id: str | None = None  # a classifier's: the save that wrote it

    def __post_init__(self):
        for name, kind in (("kind", Kind), ("direction", Direction), ("backbone", Network)):
            choices = get_args(kind)
            if getattr(self, name) not in choices:
                raise ValueError(f"checkpoint record: {name} must be one of {choices}, got {getattr(self, name)!r}")
        if (self.model is not None) != (self.backbone == "awd_lstm") \
                or (self.transformer is not None) != (self.backbone == "transformer"):
            raise ValueError(f"checkpoint record of a {self.backbone}: it needs the architecture section of its "
                             f"backbone ('model' for awd_lstm, 'transformer' for transformer), not the other")
        if self.kind == "lm" and not self.stage:
            raise ValueError("checkpoint record of a language model: it needs its stage")
        if self.kind == "classifier" and (self.classes is None or self.classifier is None or not self.run_id):
            raise ValueError("checkpoint record of a classifier: it needs classes, the classifier section "
                             "and run_id")

    def to_json(self) -> dict:
        """The record as ``config.json`` holds it."""
        data = {}
        for item in fields(self):
            value = getattr(self, item.name)
            if value is None or (item.name == "backbone" and value == "awd_lstm"):
                continue
            data[item.name] = to_dict(value) if is_dataclass(value) else value
        return data


@dataclass
class Checkpoint:
    """Weights, vocabulary (its tokens, in id order) and the config that produced them, as read
    from ``folder``."""

    state_dict: dict
    tokens: list[str]
    config: dict
    folder: Path

    @property
    def kind(self) -> str:
        return self.config.get("kind", "")


def _deduplicate(state_dict: dict) -> tuple[dict, dict]:
    """Tensors that share memory (tied weights) are stored once; aliases are recorded."""
    seen: dict = {}
    unique, aliases = {}, {}
    for key, tensor in state_dict.items():
        # Views of one storage are aliases only if they read the same elements the same way: a
        # transposed view (or an empty tensor of another dtype) has the same pointer and shape.
        ident = (tensor.untyped_storage().data_ptr(), tensor.storage_offset(), tuple(tensor.shape),
                 tuple(tensor.stride()), tensor.dtype, tensor.device)
        if ident in seen:
            aliases[key] = seen[ident]
        else:
            seen[ident] = key
            unique[key] = tensor.detach().cpu().contiguous()
    return unique, aliases


def _write_vocab(path: Path, tokens: list[str]) -> None:
    """``vocab.json``: the tokens in id order, a JSON list in UTF-8."""
    path.write_text(json.dumps(list(tokens), ensure_ascii=False), encoding="utf-8")


def save_checkpoint(folder: str | Path, state_dict: dict, tokens: list[str], config: CheckpointRecord | dict,
                    extra_tensors: dict | None = None) -> Path:
    """Write the folder atomically: everything goes to a temporary folder that is then renamed.

    ``config``: the :class:`CheckpointRecord` of the stage, or the config of a checkpoint read back
    (to copy it).

    ``extra_tensors`` maps file names to ``(tensors, metadata)`` written in the same folder and
    swapped in with it (a training state that must match the weights).
    """
    folder = Path(folder)
    partial = partial_folder(folder)
    tensors, aliases = _deduplicate(state_dict)
    save_file(tensors, str(partial / WEIGHTS_FILE), metadata={"aliases": json.dumps(aliases)})
    _write_vocab(partial / VOCAB_FILE, tokens)
    if isinstance(config, CheckpointRecord):
        config = config.to_json()
    (partial / CONFIG_FILE).write_text(json.dumps(config, indent=2, sort_keys=True))
    for name, (extra, metadata) in (extra_tensors or {}).items():
        save_file({k: v.detach().cpu().contiguous() for k, v in extra.items()}, str(partial / name),
                  metadata={k: json.dumps(v) for k, v in metadata.items()})
    for path in partial.iterdir():
        with open(path, "rb") as handle:
            os.fsync(handle.fileno())
    if folder.exists():
        # Other things kept in the folder (logs, metrics, a resume state) move to the new one.
        for entry in folder.iterdir():
            if entry.name not in CHECKPOINT_FILES and not (partial / entry.name).exists():
                entry.rename(partial / entry.name)
    return replace_folder(partial, folder)


def partial_folder(folder: str | Path) -> Path:
    """An empty ``<folder>.partial-<pid>`` beside ``folder``, to write a whole folder into before
    :func:`replace_folder` puts it in place. A copy a killed save moved aside is put back first (so
    the files a save carries over are not lost), then what killed saves left is removed."""
    folder = Path(folder)
    folder.parent.mkdir(parents=True, exist_ok=True)
    restore_interrupted(folder)
    remove_leftovers(folder)
    partial = folder.with_name(folder.name + f".partial-{os.getpid()}")
    if partial.exists():
        shutil.rmtree(partial)
    partial.mkdir()
    (partial / SAVE_MARKER).touch()
    return partial


def remove_leftovers(folder: Path) -> None:
    """Remove what saves of ``folder`` killed midway left beside it: ``.partial-<pid>`` folders, and
    ``.old-<pid>`` ones when ``folder`` itself is there (else one is the copy
    :func:`restore_interrupted` puts back). Only those of processes no longer running (a live process
    may be writing its own) and only those holding ulmtl's marker (or an empty ``.partial``)."""
    if not folder.parent.is_dir():
        return
    kinds = (".partial-", ".old-") if folder.exists() else (".partial-",)
    for kind in kinds:
        for leftover in _siblings(folder, kind):
            if _running(int(leftover.name[len(folder.name + kind):])):
                continue
            if (leftover / SAVE_MARKER).exists():
                shutil.rmtree(leftover, ignore_errors=True)
            elif kind == ".partial-" and not any(leftover.iterdir()):
                leftover.rmdir()


def _siblings(folder: Path, kind: str) -> list[Path]:
    """The folders beside ``folder`` named ``<its name><kind><pid>``."""
    prefix = folder.name + kind
    return [path for path in folder.parent.glob(glob.escape(prefix) + "*")
            if path.name[len(prefix):].isdigit() and path.is_dir()]


def _running(pid: int) -> bool:
    """Whether process ``pid`` runs on this machine."""
    try:
        os.kill(pid, 0)  # signal 0: only asks whether the process exists
    except ProcessLookupError:
        return False
    except PermissionError:  # another user's process
        return True
    return True


def replace_folder(partial: Path, folder: Path) -> Path:
    """Put the complete folder ``partial`` in the place of ``folder`` (an earlier one there is removed)
    with two renames, so that ``folder`` is never half written: a reader sees the old folder or the
    new one. A kill between the renames leaves only ``<folder>.old-<pid>``, which
    :func:`restore_interrupted` puts back (on the next save or load)."""
    old = folder.with_name(folder.name + f".old-{os.getpid()}")
    (partial / SAVE_MARKER).unlink(missing_ok=True)
    if folder.exists():
        (folder / SAVE_MARKER).touch()
        folder.rename(old)
    partial.rename(folder)
    if old.exists():
        shutil.rmtree(old)
    return folder


def restore_interrupted(folder: Path) -> None:
    """A save killed between its two renames leaves only ``<name>.old-<pid>``: put the newest such
    copy back (one holding ulmtl's marker, or an AWD-LSTM checkpoint's weights). A marker a kill left
    in ``folder`` itself is removed."""
    folder = Path(folder)
    if (folder / SAVE_MARKER).exists():
        with contextlib.suppress(OSError):  # a read-only folder is still loaded
            (folder / SAVE_MARKER).unlink()
    if folder.exists() or not folder.parent.is_dir():
        return
    copies = [old for old in _siblings(folder, ".old-")
              if (old / SAVE_MARKER).exists() or (old / WEIGHTS_FILE).exists()]
    if copies:
        max(copies, key=lambda old: old.stat().st_mtime).rename(folder)
        (folder / SAVE_MARKER).unlink(missing_ok=True)


def check_no_pickle(folder: Path) -> None:
    """Refuse a folder holding anything that would need unpickling."""
    for path in folder.iterdir():
        if path.suffix.lower() in PICKLE_SUFFIXES:
            raise CheckpointError(f"{path}: refusing to load a pickle-based file from a model folder; "
                                  f"ulmtl checkpoints are safetensors + JSON only")
        if path.is_file():
            with open(path, "rb") as handle:
                head = handle.read(4)
            # A safetensors file starts with its header's length, whose first byte may be 0x80.
            if path.suffix != ".safetensors" and any(head.startswith(m) for m in PICKLE_MAGIC):
                raise CheckpointError(f"{path}: looks like a pickle or torch archive; refusing to load it")


def load_checkpoint(folder: str | Path) -> Checkpoint:
    """Read a folder written by :func:`save_checkpoint` (no unpickling)."""
    folder = Path(folder)
    restore_interrupted(folder)
    if not folder.is_dir():
        raise CheckpointError(f"{folder}: no such checkpoint folder")
    check_no_pickle(folder)
    for name in (WEIGHTS_FILE, VOCAB_FILE, CONFIG_FILE):
        if not (folder / name).exists():
            raise CheckpointError(f"{folder}: missing {name}; not a ulmtl checkpoint")
    try:
        tensors = load_file(str(folder / WEIGHTS_FILE))
        from safetensors import safe_open
        with safe_open(str(folder / WEIGHTS_FILE), framework="pt") as handle:
            metadata = handle.metadata() or {}
    except Exception as err:
        raise CheckpointError(f"{folder / WEIGHTS_FILE}: not a readable safetensors file ({err})") from None
    for alias, source in json.loads(metadata.get("aliases", "{}")).items():
        tensors[alias] = tensors[source]
    try:
        config = json.loads((folder / CONFIG_FILE).read_text())
    except json.JSONDecodeError as err:
        raise CheckpointError(f"{folder / CONFIG_FILE}: invalid JSON ({err})") from None
    if not isinstance(config, dict):
        raise CheckpointError(f"{folder / CONFIG_FILE}: expected a JSON object, got {type(config).__name__}")
    try:
        tokens = json.loads((folder / VOCAB_FILE).read_text(encoding="utf-8"))
    except json.JSONDecodeError as err:
        raise CheckpointError(f"{folder / VOCAB_FILE}: invalid JSON ({err})") from None
    if not isinstance(tokens, list) or not all(isinstance(t, str) for t in tokens):
        raise CheckpointError(f"{folder / VOCAB_FILE}: a vocabulary must be a JSON list of strings")
    return Checkpoint(state_dict=tensors, tokens=tokens, config=config, folder=folder)


def load_tensors(path: str | Path) -> tuple[dict[str, torch.Tensor], dict]:
    """A flat dict of tensors and its metadata, as ``save_checkpoint(extra_tensors=...)`` wrote them."""
    from safetensors import safe_open
    tensors = load_file(str(path))
    with safe_open(str(path), framework="pt") as handle:
        metadata = {k: json.loads(v) for k, v in (handle.metadata() or {}).items()}
    return tensors, metadata
