"""A fitted TextClassifier's folder: one checkpoint folder per direction (written and read by its
backbone: safetensors + JSON), the model card ``README.md``, and ``classifier.json``, the index that
records which directions and backbone the folder holds and which save (``run_id``) finished it.
Nothing is unpickled."""
from __future__ import annotations

import dataclasses
import json
import os
import shutil
import uuid
from pathlib import Path
from typing import get_args

import numpy as np

from ulmtl.backbones import BACKBONES
from ulmtl.checkpoint import CONFIG_FILE, WEIGHTS_FILE, CheckpointError, CheckpointRecord
from ulmtl.cli import command_line
from ulmtl.config import ClassifierConfig, ConfigError, Direction, TokenizerConfig, from_dict
from ulmtl.report import model_card
from ulmtl.selection import restore

DIRECTIONS = get_args(Direction)
INDEX_FILE = "classifier.json"
CARD_FILE = "README.md"


def save_classifier(clf, folder: str | Path, run_id: str = "", metrics: dict | None = None,
                    facts: dict[str, str] | None = None) -> Path:
    """Write fitted ``clf`` to ``folder`` (see :meth:`ulmtl.classify.TextClassifier.save`): each
    direction's checkpoint, the model card, then the index; folders of directions ``clf`` lacks
    are removed."""
    if getattr(clf, "quantized_", False):
        raise ConfigError("an int8-quantized classifier cannot be saved: save the classifier before "
                          "quantize_int8(), and quantize it again after loading")
    backbone = clf.trained_backbone
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    run_id = run_id or uuid.uuid4().hex
    index = folder / INDEX_FILE
    index.unlink(missing_ok=True)  # incomplete until the new record is written
    for direction, model in clf.models_.items():
        sections = {backbone.sections[0]: clf.model_configs_[direction]}
        if "tokenizer" in backbone.sections:
            sections["tokenizer"] = clf.trained_tokenizer_
        record = CheckpointRecord(kind="classifier", backbone=backbone.name, direction=direction,
                                  classes=clf.classes_.tolist(), multilabel=clf.multilabel_, threshold=clf.threshold_,
                                  classifier=_saved_config(clf), history=clf.history_.get(direction, []),
                                  train_counts=clf.train_counts_, selection=clf.selection_, run_id=run_id,
                                  **sections)
        backbone.save(folder / direction, model, clf.vocabs_[direction], record)
    for direction in DIRECTIONS:
        stale = folder / direction
        if direction not in clf.models_ and (stale / WEIGHTS_FILE).exists():
            shutil.rmtree(stale)
    (folder / CARD_FILE).write_text(model_card(clf, metrics, facts or {}, command_line()))
    partial = index.with_name(index.name + f".tmp-{os.getpid()}")
    partial.write_text(json.dumps({"directions": list(clf.models_), "backbone": backbone.name, "run_id": run_id}))
    os.replace(partial, index)
    return folder


def load_classifier(cls, folder: str | Path):
    """The ``cls`` (TextClassifier) saved in ``folder`` by :func:`save_classifier`; a folder whose
    save did not finish, or that mixes two saves, is refused."""
    folder = Path(folder)
    index = folder / INDEX_FILE
    record = _read_index(folder)
    run_id, directions = record["run_id"], record["directions"]
    name = record.get("backbone", "awd_lstm")  # the AWD-LSTM's first indexes named no backbone
    if name not in BACKBONES:
        raise CheckpointError(f"{index}: field 'backbone' is {name!r}; known backbones: {', '.join(BACKBONES)}")
    backbone = BACKBONES[name]
    clf = None
    for direction in directions:
        path = folder / direction
        where = path / CONFIG_FILE
        config, opened = backbone.open(path)
        if config.get("kind") != "classifier":
            raise CheckpointError(f"{path}: not a classifier checkpoint")
        for key in ("classes", "classifier", *backbone.sections):
            if key not in config:
                raise CheckpointError(f"{where}: missing field {key!r}")
        if config.get("run_id") != run_id:
            raise CheckpointError(f"{where}: field 'run_id' is {config.get('run_id')!r} but {index} "
                                  f"records {run_id!r}: the folder mixes two saves")
        classes = config["classes"]
        if not isinstance(classes, list) or len(classes) < 2 or len(set(map(str, classes))) != len(classes):
            raise CheckpointError(f"{where}: field 'classes' must list two or more distinct classes, "
                                  f"got {classes!r}")
        settings = _saved_section(backbone.settings_type, config, backbone.sections[0], where)
        if clf is None:
            tokenizer = (_saved_section(TokenizerConfig, config, "tokenizer", where)
                         if "tokenizer" in backbone.sections else TokenizerConfig())
            clf = cls(_saved_section(ClassifierConfig, config, "classifier", where), model_config=settings,
                      tokenizer=tokenizer)
            clf.classes_, clf.trained_tokenizer_ = np.array(classes), tokenizer
            clf.multilabel_, clf.threshold_ = _saved_label_mode(config, where)
            clf.vocabs_, clf.models_, clf.model_configs_, clf.history_ = {}, {}, {}, {}
        elif classes != clf.classes_.tolist():
            raise CheckpointError(f"{where}: field 'classes' differs from the {directions[0]} classifier's")
        model, vocab = backbone.restore(path, opened, len(clf.classes_), settings, clf.config)
        clf.vocabs_[direction] = vocab
        clf.models_[direction] = model
        clf.model_configs_[direction] = settings
        clf.history_[direction] = config.get("history", [])
        clf.train_counts_ = config.get("train_counts", {})
        clf.selection_, clf.chosen_strategy_ = restore(config, clf.config.strategy, where)
        clf.trained_config_, clf.trained_encoders_ = clf.config, None
    return clf


def _saved_config(clf) -> ClassifierConfig:
    """The classifier section a save writes: the config the models trained with, so that the loaded
    classifier predicts as the saved one; after strategy "auto" (a selection record), the winner's
    (which may be the other backbone's defaults) with strategy "auto" and the auto-only fields as
    given, so that it says it chose."""
    if clf.selection_ is None:
        return clf.trained_config_
    asked = clf.resolved_config()
    given = {f.name: getattr(asked, f.name) for f in dataclasses.fields(asked)
             if f.name.startswith("auto_")} if asked.strategy == "auto" else {}
    return dataclasses.replace(clf.trained_config_, strategy="auto", **given)


def _read_index(folder: Path) -> dict:
    """The index of ``folder``, checked: a JSON object with a completion record and directions."""
    index = folder / INDEX_FILE
    if not index.exists():
        raise CheckpointError(f"{folder}: no {INDEX_FILE}; not a saved TextClassifier, or its save did "
                              f"not finish")
    try:
        record = json.loads(index.read_text())
    except json.JSONDecodeError as err:
        raise CheckpointError(f"{index}: invalid JSON ({err})") from None
    if not isinstance(record, dict):
        raise CheckpointError(f"{index}: expected a JSON object, got {type(record).__name__}")
    run_id = record.get("run_id")
    if not isinstance(run_id, str) or not run_id:
        raise CheckpointError(f"{index}: no completion record (field 'run_id'): the save that wrote "
                              f"{folder} did not finish, or an older ulmtl wrote it; save it again")
    directions = record.get("directions")
    if not isinstance(directions, list) or not directions \
            or any(d not in DIRECTIONS for d in directions) or len(set(directions)) != len(directions):
        raise CheckpointError(f"{index}: field 'directions' must list 'forward' and/or 'backward', "
                              f"got {directions!r}")
    return record


def _saved_label_mode(config: dict, where: Path) -> tuple[bool, float | None]:
    """(multilabel, threshold) of a saved classifier config; single-label when not recorded (saved by an
    older ulmtl)."""
    multilabel, threshold = config.get("multilabel", False), config.get("threshold")
    if not isinstance(multilabel, bool):
        raise CheckpointError(f"{where}: field 'multilabel' must be true or false, got {multilabel!r}")
    if not multilabel:
        return False, None
    if isinstance(threshold, bool) or not isinstance(threshold, (int, float)) or not 0 < threshold < 1:
        raise CheckpointError(f"{where}: field 'threshold' of a multi-label classifier must be a number in "
                              f"(0, 1), got {threshold!r}")
    return True, float(threshold)


def _saved_section(cls, config: dict, key: str, where: Path):
    """Section ``key`` of a saved checkpoint config as dataclass ``cls``; a CheckpointError naming
    the file and field when it does not fit."""
    if not isinstance(config[key], dict):
        raise CheckpointError(f"{where}: field {key!r} must be a JSON object, "
                              f"got {type(config[key]).__name__}")
    try:
        return from_dict(cls, config[key], f"{key}.")
    except (ConfigError, TypeError) as err:
        raise CheckpointError(f"{where}: {err}") from None
