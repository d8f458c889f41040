"""A whole run from a :class:`RecipeConfig`: data, stage-1 LM, LM fine-tuning, classifier, metrics.

Recipes (``recipes/*.py``) declare a config and call :func:`run_recipe`. Everything a run produces
goes into ``config.output``: ``config.json`` (resolved), ``lm-<direction>/`` (stage 2),
``model/`` (the classifier, with its model card ``README.md``), ``metrics.json``,
``train_log.jsonl``, and what to look at (``ulmtl.report``): ``report.md``,
``confusion_matrix.png`` and ``training.png``. A run writes them into a
fresh folder beside it (``<output>.partial-<pid>``) that replaces ``config.output`` only once the
run is complete: a run that fails or is killed leaves the earlier run as it was.

With ``--classifier.strategy=auto`` the LM is fine-tuned (stage 2) as for ``finetune`` (on the
texts ``lm_texts`` names: by default the test texts too, without their labels), then the
classifier tries the run's backbone's strategies (``ulmtl.selection``) on a split (or folds) of the
training split alone, each pretrained one on that fine-tuned LM, and refits the best; metrics.json records
the trials under ``"auto"``. With ``--classifier.auto_backbones=both`` (the default) the other
backbone's strategies are tried too, with that backbone's own classifier defaults and without LM
fine-tuning (the transformer on the bundled encoder; the AWD-LSTM from scratch only, since
``--pretrained`` names one backbone's checkpoint); ``chosen_backbone`` in metrics.json says which won.
"""
from __future__ import annotations

import json
import os
import re
import secrets
import shutil
import time
from contextlib import contextmanager
from dataclasses import replace
from pathlib import Path

import numpy as np
from datasets import DatasetDict
from sklearn.metrics import confusion_matrix, f1_score, precision_recall_fscore_support

from ulmtl.backbones.transformer import resolve_encoder
from ulmtl.checkpoint import CheckpointError, load_checkpoint, partial_folder, replace_folder, restore_interrupted
from ulmtl.classify import TextClassifier
from ulmtl.config import ConfigError, PretrainConfig, RecipeConfig, save_config, to_dict
from ulmtl.datasets import DataError, LoadReport, load_dataset, read_files, stratified_split
from ulmtl.labels import check_label_mode
from ulmtl.datasets.layout import label_names, strata
from ulmtl.distributed import barrier, from_main_process, is_main, main_process_first, setup
from ulmtl.finetune import finetune_lm
from ulmtl.fastai_files import FASTAI_WT103_URLS, find_fastai_files
from ulmtl.pretrain import default_lm_dir, fetch_fastai_wt103, import_fastai_lm, pretrain
from ulmtl.report import pretrained_of, write_report

# What a run folder holds (a folder with anything else is not replaced by a new run).
RUN_ENTRIES = re.compile(r"((config|metrics)\.json.*|train_log\.jsonl|model|(lm|stage1)-.*|fold\d+.*"
                         r"|report\.md|confusion_matrix\.png|training\.png)")

SMOKE_RECIPE = [
    "--model.emb_size=16", "--model.hidden_size=16", "--model.n_layers=2",
    "--max_train=200", "--max_test=100",
    "--tokenizer.max_vocab=2000", "--tokenizer.min_freq=1",
    "--finetune.epochs=1", "--finetune.batch_size=8", "--finetune.bptt=20",
    "--classifier.batch_size=16", "--classifier.bptt=20", "--classifier.max_len=200",
    "--classifier.unfreeze_plan=1,0", "--classifier.stage_epochs=1,1", "--classifier.stage_lr_mult=2,1",
]


def read_recipe_data(config: RecipeConfig, subset: bool = True) -> tuple[DatasetDict, LoadReport]:
    """The dataset of the run, cut down to ``max_train`` / ``max_test`` examples (stratified)
    unless ``subset`` is False, and the report of what was read (before the cut)."""
    if config.dataset == "custom":
        if not config.train_file:
            raise DataError("the custom recipe needs --train FILE_OR_FOLDER")
        data, report = read_files(config.train_file, config.test_file or None, config.text_column,
                                  config.label_column, seed=config.seed, encoding=config.encoding,
                                  skip_empty=config.skip_empty, label_separator=config.label_separator,
                                  label_columns=config.label_columns)
    else:
        data = load_dataset(config.dataset, config.data_dir or None, fold=config.fold, fine=config.fine)
        report = LoadReport.of_splits(config.dataset, data)
    if not subset:
        return data, report
    for split, limit in (("train", config.max_train), ("test", config.max_test)):
        if limit and len(data[split]) > limit:
            keep, _ = stratified_split(strata(data[split]), 1 - limit / len(data[split]), config.seed)
            data[split] = data[split].select(keep)
    if "unsup" in data and config.max_train:
        data["unsup"] = data["unsup"].select(range(min(len(data["unsup"]), config.max_train)))
    return data, report


def load_recipe_data(config: RecipeConfig, subset: bool = True) -> DatasetDict:
    """:func:`read_recipe_data` without the report."""
    return read_recipe_data(config, subset)[0]


def resolve_pretrained(config: RecipeConfig, direction: str, data: DatasetDict, output: Path) -> Path:
    """Where the stage-1 LM comes from: ``--pretrained``, else the cached stage-1 checkpoint, else
    fastai's WT103 (online), else (``--smoke`` only) a tiny LM trained here on the task's texts."""
    if config.pretrained:
        path = Path(config.pretrained.replace("{direction}", direction))
        if path.is_dir() and (path / "weights.safetensors").exists():
            return path
        if not path.is_dir():
            raise CheckpointError(f"--pretrained {path}: no such folder (give a ulmtl checkpoint folder, or a "
                                  f"folder with fastai's weights .pth / .h5 and vocabulary itos .pkl)")
        try:
            weights, itos = find_fastai_files(path, direction)
            return import_fastai_lm(weights, itos, output / f"stage1-{direction}", direction)
        except ValueError as err:  # unreadable, unsafe, ambiguous or mismatched files: the message names them
            raise CheckpointError(f"--pretrained {path}: {err}") from None
    cached = default_lm_dir(direction)
    if (cached / "weights.safetensors").exists():
        return cached
    if config.smoke:
        print("ulmtl: --smoke without a stage-1 LM: training a tiny one on the task's texts", flush=True)
        tiny = output / f"stage1-{direction}"
        texts = data["train"].select_columns(["text"])
        # Every text has two tokens or more (xxbos and a word), and a stream of t tokens fills at
        # most t - 1 rows: the batch is sized so that a file of a few rows still gives one.
        n_valid = max(1, -(-len(texts) // 10))
        batch_size = max(1, min(8, 2 * n_valid - 1, 2 * (len(texts) - n_valid) - 1))
        pretrain(texts, tiny, PretrainConfig(direction=direction, epochs=1, batch_size=batch_size, bptt=20,
                                             checkpoint_every_s=0,
                                             valid_fraction=n_valid / len(texts), seed=config.seed),
                 config.model, config.tokenizer)
        return tiny
    try:
        return fetch_fastai_wt103(cached.with_name(f"wt103-{direction}"), direction)
    except OSError as err:
        raise CheckpointError(
            f"no stage-1 language model: none given (--pretrained), none at {cached}, and fastai's WT103 "
            f"could not be downloaded from {FASTAI_WT103_URLS[direction]} ({err}). Make one with "
            f"`python recipes/pretrain_general.py` (or pass --pretrained PATH)."
        ) from None


def architecture_overrides(pretrained: str | Path) -> list[str]:
    """``--model.*`` overrides that give a run (e.g. one from scratch) the stage-1 LM's size
    (a ``{direction}`` placeholder in the path reads the forward LM)."""
    model = load_checkpoint(str(pretrained).replace("{direction}", "forward")).config["model"]
    return [f"--model.{key}={model[key]}" for key in ("emb_size", "hidden_size", "n_layers")]


def classification_metrics(truth: np.ndarray, predicted: np.ndarray, classes: list[str]) -> dict:
    """Accuracy, error, macro-F1, per-class precision / recall / F1 / support, confusion matrix."""
    labels = list(range(len(classes)))
    precision, recall, f1, support = precision_recall_fscore_support(truth, predicted, labels=labels,
                                                                     zero_division=0)
    accuracy = float(np.mean(truth == predicted))
    return {
        "accuracy": round(accuracy, 4), "error": round(1 - accuracy, 4),
        "macro_f1": round(float(f1_score(truth, predicted, labels=labels, average="macro", zero_division=0)), 4),
        "per_class": {c: {"precision": round(float(p), 4), "recall": round(float(r), 4), "f1": round(float(f), 4),
                          "support": int(s)} for c, p, r, f, s in zip(classes, precision, recall, f1, support)},
        "confusion_matrix": confusion_matrix(truth, predicted, labels=labels).tolist(),
        "n_test": int(len(truth)),
    }


def multilabel_metrics(truth: np.ndarray, predicted: np.ndarray, classes: list[str], threshold: float) -> dict:
    """Of 0/1 label matrices (one column per label): micro- and macro-F1, micro precision / recall,
    subset accuracy (the whole set of labels right), Hamming loss, per-label precision / recall / F1 /
    support (texts with the label) / predicted (texts given it), and the decision threshold."""
    truth, predicted = np.asarray(truth, dtype=int), np.asarray(predicted, dtype=int)
    precision, recall, f1, support = precision_recall_fscore_support(truth, predicted, zero_division=0)
    micro = precision_recall_fscore_support(truth, predicted, average="micro", zero_division=0)
    return {
        "micro_f1": round(float(micro[2]), 4), "macro_f1": round(float(np.mean(f1)), 4),
        "micro_precision": round(float(micro[0]), 4), "micro_recall": round(float(micro[1]), 4),
        "subset_accuracy": round(float(np.mean(np.all(truth == predicted, axis=1))), 4),
        "hamming_loss": round(float(np.mean(truth != predicted)), 4), "threshold": threshold,
        "per_label": {c: {"precision": round(float(p), 4), "recall": round(float(r), 4), "f1": round(float(f), 4),
                          "support": int(n), "predicted": int(k)}
                      for c, p, r, f, n, k in zip(classes, precision, recall, f1, support, predicted.sum(axis=0))},
        "n_test": int(len(truth)),
    }


def label_matrix(label_sets: list[list[int]], n_classes: int) -> np.ndarray:
    """The 0/1 matrix of multi-label class ids (one row per text, one column per class)."""
    matrix = np.zeros((len(label_sets), n_classes), dtype=int)
    for row, ids in enumerate(label_sets):
        matrix[row, ids] = 1
    return matrix


def metrics_of(clf: TextClassifier, truth: np.ndarray, proba: np.ndarray, classes: list[str]) -> dict:
    """:func:`classification_metrics` of the most probable classes, or for a multi-label
    classifier :func:`multilabel_metrics` of the labels at its threshold (``truth``: a 0/1 matrix)."""
    if clf.multilabel_:
        return multilabel_metrics(truth, proba >= clf.threshold_, classes, clf.threshold_)
    return classification_metrics(truth, proba.argmax(1), classes)


def with_run_seed(config: RecipeConfig) -> RecipeConfig:
    """The run's ``seed`` in its LM fine-tuning and classifier sections too (their own ``seed`` is
    for direct API calls), so the saved config says which seed each stage used."""
    return replace(config, finetune=replace(config.finetune, seed=config.seed),
                   classifier=replace(config.classifier, seed=config.seed))


def _prepare_output(output: Path, work: Path) -> None:
    """Check that ``output`` can take a run (before any work) and create the fresh folder ``work``."""
    if output.exists() and not output.is_dir():
        raise ConfigError(f"output {output} is a file, not a folder; give a folder (--output DIR)")
    restore_interrupted(output)  # a swap killed between its two renames: the earlier run is put back
    if output.is_dir():
        if not os.access(output, os.W_OK | os.X_OK):
            raise ConfigError(f"output folder {output} is read-only; give a folder you can write to")
        foreign = sorted(p.name for p in output.iterdir() if not RUN_ENTRIES.fullmatch(p.name))
        if foreign:
            raise ConfigError(f"output folder {output} holds {', '.join(foreign[:5])}, which no ulmtl run "
                              f"writes; a new run replaces the whole folder, so give an empty or new one")
    try:
        partial_folder(output)  # ``work``: this (main) process's, once killed runs' folders are removed
    except OSError as err:
        raise ConfigError(f"cannot write the output folder {output}: cannot create {work} "
                          f"({err.strerror})") from None


@contextmanager
def fresh_output(output: str | Path):
    """``(work, run_id)``: a fresh folder beside ``output`` (``<output>.partial-<pid>``) to write
    a run into. When the block ends it replaces ``output`` (an earlier run stays until then); when
    the block fails it is removed. Under torchrun every process gets the same folder, rank 0 writes."""
    output = Path(os.path.abspath(output))
    setup()
    pid, nonce = from_main_process([os.getpid(), secrets.randbits(48)])
    work, run_id = output.with_name(f"{output.name}.partial-{pid}"), f"{pid}-{nonce:012x}"
    if is_main():
        _prepare_output(output, work)
    barrier()
    try:
        yield work, run_id
    except BaseException:
        if is_main():
            shutil.rmtree(work, ignore_errors=True)
        raise
    if is_main():
        replace_folder(work, output)
    barrier()


def run_recipe(config: RecipeConfig) -> dict:
    """Run stages 2 and 3 (stage 1 is loaded) and evaluate on the test split; write everything
    into ``config.output``, replacing an earlier run there once this one is complete."""
    config = with_run_seed(config)
    with fresh_output(config.output) as (work, run_id):
        return _run_stages(config, work, run_id)


def _run_stages(config: RecipeConfig, output: Path, run_id: str) -> dict:
    """The stages of :func:`run_recipe`, written into the folder ``output``."""
    started = time.time()
    if is_main():
        output.mkdir(parents=True, exist_ok=True)
        save_config(config, output / "config.json")
    log_path = output / "train_log.jsonl"
    with main_process_first():  # under torchrun, rank 0 parses and caches the data first
        data, report = read_recipe_data(config)
    if is_main():
        report.show()
    classes, multilabel = label_names(data["train"])
    if is_main():
        print(f"ulmtl: {config.dataset}: {len(data['train'])} train, {len(data['test'])} test texts, "
              f"{len(classes)} {'labels (multi-label)' if multilabel else 'classes'}; strategy "
              f"{config.classifier.strategy}", flush=True)
    if config.smoke and config.classifier.strategy == "auto" and config.classifier.auto_backbones == "both":
        # The other backbone's candidates would train at that backbone's full defaults.
        config = replace(config, classifier=replace(config.classifier, auto_backbones="own"))
        if is_main():
            print(f"ulmtl: --smoke: strategy auto tries the {config.backbone}'s strategies only "
                  f"(auto_backbones=own)", flush=True)
    # The semi-supervised setting: the LM is fine-tuned on every text of the dataset (labels
    # unused), the classifier sees only the max_train labelled examples.
    lm_data = load_recipe_data(config, subset=False) if config.lm_texts == "all" else data
    # Held out after lm_data is chosen: like the test texts, the validation texts (not their labels)
    # stay in LM fine-tuning, so validation mimics the test setting.
    valid = None
    if config.valid_fraction:
        keep, held_out = stratified_split(strata(data["train"]), config.valid_fraction, config.seed)
        valid = data["train"].select(held_out)
        data = DatasetDict({**data, "train": data["train"].select(keep)})
        if is_main():
            print(f"ulmtl: {len(valid)} training texts held out for validation", flush=True)
    check_label_mode(config.classifier, multilabel, valid is not None)  # before any training
    if config.backbone == "transformer":
        clf, lm_metrics, pretrained = _fit_transformer(config, data, lm_data, valid, output, log_path)
    else:
        clf, lm_metrics, pretrained = _fit_awd_lstm(config, data, lm_data, valid, output, log_path)
    other_backbone = clf.trained_backbone.name != clf.backbone.name  # strategy auto chose the other one
    if other_backbone:
        chose = f"strategy auto chose the {clf.trained_backbone.name}'s {clf.chosen_strategy_}, with its defaults"
        pretrained = (f"none ({chose}: random initial weights)" if clf.chosen_strategy_ == "scratch"
                      else f"{pretrained_of(clf)} ({chose} and no LM fine-tuning)")
    def truth_of(split) -> np.ndarray:
        return label_matrix(split["label"], len(classes)) if multilabel else np.asarray(split["label"])

    truth = truth_of(data["test"])
    by_direction = clf.predict_proba_by_direction(data["test"]["text"])
    metrics = {d: metrics_of(clf, truth, p, classes) for d, p in by_direction.items()}
    ensemble = sum(by_direction.values()) / len(by_direction)
    result = {"dataset": config.dataset, "strategy": config.classifier.strategy,
              "chosen_strategy": clf.chosen_strategy_, "chosen_backbone": clf.trained_backbone.name,
              "auto": clf.selection_, "seed": config.seed,
              "run_id": run_id, "multilabel": multilabel,
              "directions": list(clf.models_), "n_train": len(data["train"]),
              "skipped_empty_rows": report.skipped_empty, "data": report.to_dict(),
              "test": metrics_of(clf, truth, ensemble, classes), "per_direction": metrics,
              "valid": None if valid is None else metrics_of(
                  clf, truth_of(valid), clf.predict_proba(list(valid["text"])), classes),
              "lm_finetune": lm_metrics, "pretrained_model": pretrained,
              "seconds": round(time.time() - started, 1), "config": to_dict(config)}
    if is_main():
        rows = ", ".join(f"{f.rows_read} rows read from {f.path} ({f.split})" for f in report.files) or \
            ", ".join(f"{n} {s}" for s, n in report.splits.items()) + " rows"
        clf.save(output / "model", run_id=run_id, metrics=result["test"],
                 facts={"data": f"{config.dataset}: {rows}", "pretrained model": pretrained,
                        "LM fine-tuning": (f"not used: strategy auto chose the {clf.trained_backbone.name}"
                                           if other_backbone and lm_metrics else
                                           f"on the run's texts ({', '.join(lm_metrics)})" if lm_metrics
                                           else "none")})
        (output / "metrics.json").write_text(json.dumps(result, indent=2))
        write_report(output, result, clf, list(data["test"]["text"]), truth, ensemble)
        test = result["test"]
        headline = (f"micro-F1 {test['micro_f1']} (threshold {test['threshold']}, " if multilabel
                    else f"accuracy {test['accuracy']} (")
        print(f"ulmtl: {config.dataset} test {headline}macro-F1 {test['macro_f1']}); outputs in "
              f"{config.output}", flush=True)
    barrier()
    return result


def _scratch(config: RecipeConfig) -> str:
    return "strategy auto chose scratch" if config.classifier.strategy == "auto" else "strategy scratch"


def _valid_pair(valid) -> tuple | None:
    """The validation split as fit's ``(texts, labels)``, labels by name (tuples of names: multi-label)."""
    if valid is None:
        return None
    classes, multilabel = label_names(valid)
    if multilabel:
        return list(valid["text"]), [tuple(classes[i] for i in ids) for ids in valid["label"]]
    return list(valid["text"]), [classes[i] for i in valid["label"]]


def _fit_awd_lstm(config: RecipeConfig, data: DatasetDict, lm_data: DatasetDict, valid, output: Path,
                  log_path: Path) -> tuple[TextClassifier, dict, str]:
    """Stages 2 and 3 on the AWD-LSTM, one classifier per direction; and where the stage-1 LMs came from."""
    encoders, lm_metrics, sources = {}, {}, {}
    if config.classifier.strategy != "scratch":
        for direction in config.classifier.directions:
            stage1 = resolve_pretrained(config, direction, data, output)
            sources[direction] = (f"{stage1.name}/ (a tiny LM trained in this run on the task's texts)"
                                  if stage1.parent == output else str(stage1))
            if is_main():
                print(f"ulmtl: backbone awd_lstm, {direction} stage-1 LM from {stage1} (for the bundled "
                      f"transformer encoder: --backbone=transformer)", flush=True)
            if config.classifier.strategy in ("finetune", "auto") and config.finetune_lm:
                target = output / f"lm-{direction}"
                lm_metrics[direction] = finetune_lm(lm_data, stage1, target, config.finetune,
                                                    config.tokenizer, log_path, config.model)
                encoders[direction] = target
            else:
                encoders[direction] = stage1
    clf = TextClassifier(config.classifier, encoders, config.model, config.tokenizer, log_path)
    clf.fit(data["train"], valid=_valid_pair(valid))
    pretrained = ", ".join(f"{d}: {s}" for d, s in sources.items())
    if clf.chosen_strategy_ == "scratch":
        pretrained = f"none ({_scratch(config)})"
    return clf, lm_metrics, pretrained


def _fit_transformer(config: RecipeConfig, data: DatasetDict, lm_data: DatasetDict, valid, output: Path,
                     log_path: Path) -> tuple[TextClassifier, dict, str]:
    """Stages 2 and 3 on a transformer encoder: ``--pretrained`` (a folder or hub id) or the bundled one;
    and its description."""
    source = config.pretrained
    _, description = resolve_encoder(source)
    if is_main():
        print(f"ulmtl: backbone transformer, pretrained encoder {description} (the paper's AWD-LSTM: "
              f"--backbone=awd_lstm with --pretrained DIR)", flush=True)
    lm_metrics = {}
    if config.classifier.strategy in ("finetune", "auto") and config.finetune_lm:
        target = output / "lm-forward"
        lm_metrics["forward"] = finetune_lm(lm_data, source, target, config.finetune, log_path=log_path,
                                            transformer_config=config.transformer)
        source = str(target)
    clf = TextClassifier(config.classifier, source, config.transformer, config.tokenizer, log_path)
    clf.fit(data["train"], valid=_valid_pair(valid))
    if clf.chosen_strategy_ == "scratch":
        description = f"none ({_scratch(config)}: the architecture of {description})"
    return clf, lm_metrics, description


def run_cross_validation(config: RecipeConfig) -> dict:
    """``folds`` = 1: one run on ``fold``; otherwise one run per fold (polarity's 10 folds), with
    mean and standard deviation of test accuracy in ``output/metrics.json``."""
    if config.folds <= 1:
        return run_recipe(config)
    config = with_run_seed(config)
    with fresh_output(config.output) as (work, run_id):
        runs = [_run_stages(replace(config, fold=fold, output=str(Path(config.output) / f"fold{fold}")),
                            work / f"fold{fold}", run_id) for fold in range(config.folds)]
        accuracies = [r["test"]["accuracy"] for r in runs]
        summary = {"dataset": config.dataset, "folds": config.folds, "run_id": run_id,
                   "accuracy_per_fold": accuracies, "accuracy_mean": round(float(np.mean(accuracies)), 4),
                   "accuracy_std": round(float(np.std(accuracies)), 4), "config": to_dict(config)}
        if is_main():
            (work / "metrics.json").write_text(json.dumps(summary, indent=2))
            print(f"ulmtl: {config.folds}-fold accuracy {summary['accuracy_mean']} "
                  f"+- {summary['accuracy_std']}")
        return summary
