"""A whole run from a :class:`RecipeConfig`: data, stage-1 LM, LM fine-tuning, classifier, metrics.

Recipes (``recipes/*.py``) declare a config and call :func:`run_recipe`. Everything a run produces
goes into ``config.output``: ``config.json`` (resolved), ``lm-<direction>/`` (stage 2),
``model/`` (the classifier), ``metrics.json`` and ``train_log.jsonl``.
"""
from __future__ import annotations

import json
import time
from dataclasses import replace
from pathlib import Path

import numpy as np
from datasets import DatasetDict
from sklearn.metrics import confusion_matrix, f1_score, precision_recall_fscore_support

from ulmtl.checkpoint import CheckpointError, load_checkpoint
from ulmtl.classify import TextClassifier
from ulmtl.config import ConfigError, PretrainConfig, RecipeConfig, save_config, to_dict
from ulmtl.data import DataError, LoadReport, load_dataset, read_files, stratified_split
from ulmtl.distributed import barrier, is_main
from ulmtl.finetune import finetune_lm
from ulmtl.fastai_files import FASTAI_WT103_URLS, find_fastai_files
from ulmtl.pretrain import default_lm_dir, fetch_fastai_wt103, import_fastai_lm, pretrain

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
                                  skip_empty=config.skip_empty)
    else:
        data = load_dataset(config.dataset, config.data_dir or None, fold=config.fold, fine=config.fine)
        report = LoadReport.of_splits(config.dataset, data)
    if not subset:
        return data, report
    for split, limit in (("train", config.max_train), ("test", config.max_test)):
        if limit and len(data[split]) > limit:
            keep, _ = stratified_split(data[split]["label"], 1 - limit / len(data[split]), config.seed)
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
        pretrain(texts, tiny, PretrainConfig(direction=direction, epochs=1, batch_size=8, bptt=20,
                                             checkpoint_every_s=0, seed=config.seed),
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


def with_run_seed(config: RecipeConfig) -> RecipeConfig:
    """The run's ``seed`` in its LM fine-tuning and classifier sections too (their own ``seed`` is
    for direct API calls), so the saved config says which seed each stage used."""
    return replace(config, finetune=replace(config.finetune, seed=config.seed),
                   classifier=replace(config.classifier, seed=config.seed))


def run_recipe(config: RecipeConfig) -> dict:
    """Run stages 2 and 3 (stage 1 is loaded) and evaluate on the test split; write everything."""
    started = time.time()
    config = with_run_seed(config)
    output = Path(config.output)
    output.mkdir(parents=True, exist_ok=True)
    if is_main():
        save_config(config, output / "config.json")
    log_path = output / "train_log.jsonl"
    if not is_main():
        barrier()  # under torchrun, rank 0 parses and caches the data first
    data, report = read_recipe_data(config)
    if is_main():
        report.show()
        barrier()
    classes = data["train"].features["label"].names
    if is_main():
        print(f"ulmtl: {config.dataset}: {len(data['train'])} train, {len(data['test'])} test texts, "
              f"{len(classes)} classes; strategy {config.classifier.strategy}", flush=True)
    # The semi-supervised setting: the LM is fine-tuned on every text of the dataset (labels
    # unused), the classifier sees only the max_train labelled examples.
    lm_data = load_recipe_data(config, subset=False) if config.lm_texts == "all" else data
    # Held out after lm_data is chosen: like the test texts, the validation texts (not their labels)
    # stay in LM fine-tuning, so validation mimics the test setting.
    valid = None
    if config.valid_fraction:
        keep, held_out = stratified_split(data["train"]["label"], config.valid_fraction, config.seed)
        valid = data["train"].select(held_out)
        data = DatasetDict({**data, "train": data["train"].select(keep)})
        if is_main():
            print(f"ulmtl: {len(valid)} training texts held out for validation", flush=True)
    encoders, lm_metrics = {}, {}
    if config.classifier.strategy != "scratch":
        for direction in config.classifier.directions:
            stage1 = resolve_pretrained(config, direction, data, output)
            if config.classifier.strategy == "finetune" and config.finetune_lm:
                target = output / f"lm-{direction}"
                lm_metrics[direction] = finetune_lm(lm_data, stage1, target, config.finetune,
                                                    config.tokenizer, log_path, config.model)
                encoders[direction] = target
            else:
                encoders[direction] = stage1
    clf = TextClassifier(config.classifier, encoders, config.model, config.tokenizer, log_path)
    valid_labels = None if valid is None else [classes[i] for i in valid["label"]]
    clf.fit(data["train"], valid=None if valid is None else (list(valid["text"]), valid_labels))
    if is_main():
        clf.save(output / "model")
    truth = np.asarray(data["test"]["label"])
    by_direction = clf.predict_proba_by_direction(data["test"]["text"])
    metrics = {d: classification_metrics(truth, p.argmax(1), classes) for d, p in by_direction.items()}
    ensemble = sum(by_direction.values()) / len(by_direction)
    result = {"dataset": config.dataset, "strategy": config.classifier.strategy, "seed": config.seed,
              "directions": list(clf.models_), "n_train": len(data["train"]),
              "skipped_empty_rows": report.skipped_empty, "data": report.to_dict(),
              "test": classification_metrics(truth, ensemble.argmax(1), classes), "per_direction": metrics,
              "valid": None if valid is None else classification_metrics(
                  np.asarray(valid["label"]), clf.predict_proba(list(valid["text"])).argmax(1), classes),
              "lm_finetune": lm_metrics, "seconds": round(time.time() - started, 1),
              "config": to_dict(config)}
    if is_main():
        (output / "metrics.json").write_text(json.dumps(result, indent=2))
        print(f"ulmtl: {config.dataset} test accuracy {result['test']['accuracy']} "
              f"(macro-F1 {result['test']['macro_f1']}); outputs in {output}", flush=True)
    barrier()
    return result


def finetuned_lm_for(config: RecipeConfig, target: str | Path, all_texts: bool = False,
                     direction: str = "forward") -> Path:
    """Stage 2 alone: the recipe's LM (``direction``) fine-tuned on its task texts (or, ``all_texts``,
    on every text of the dataset, ignoring ``max_train``), written to ``target`` once and reused after.

    Runs that differ only in the classifier can then share it: ``--pretrained=target
    --finetune_lm=false`` (with ``{direction}`` in ``target`` for a forward + backward ensemble)."""
    target = Path(target)
    config = with_run_seed(config)
    asked = json.loads(json.dumps(to_dict(config.finetune)))
    if (target / "weights.safetensors").exists():
        saved = json.loads((target / "config.json").read_text()) if (target / "config.json").exists() else {}
        differing = sorted(k for k in asked if saved.get("finetune", {}).get(k) != asked[k])
        if differing or saved.get("direction") != direction:
            raise ConfigError(f"{target} holds an LM fine-tuned with other settings (direction "
                              f"{saved.get('direction')!r}, different finetune fields: {differing}); asked for "
                              f"{direction}: remove that folder or give another one")
    else:
        data, report = read_recipe_data(config, subset=not all_texts)
        if is_main():
            report.show()
        stage1 = resolve_pretrained(config, direction, data, target.parent)
        finetune_lm(data, stage1, target, config.finetune, config.tokenizer, model_config=config.model)
    return target


def run_cross_validation(config: RecipeConfig) -> dict:
    """``folds`` = 1: one run on ``fold``; otherwise one run per fold (polarity's 10 folds), with
    mean and standard deviation of test accuracy in ``output/metrics.json``."""
    if config.folds <= 1:
        return run_recipe(config)
    runs = []
    for fold in range(config.folds):
        runs.append(run_recipe(replace(config, fold=fold, output=str(Path(config.output) / f"fold{fold}"))))
    accuracies = [r["test"]["accuracy"] for r in runs]
    summary = {"dataset": config.dataset, "folds": config.folds, "accuracy_per_fold": accuracies,
               "accuracy_mean": round(float(np.mean(accuracies)), 4),
               "accuracy_std": round(float(np.std(accuracies)), 4), "config": to_dict(config)}
    (Path(config.output) / "metrics.json").write_text(json.dumps(summary, indent=2))
    print(f"ulmtl: {config.folds}-fold accuracy {summary['accuracy_mean']} +- {summary['accuracy_std']}")
    return summary
