"""The ``ulmtl`` command: ``train``, ``predict``, ``evaluate`` and ``info``.

    ulmtl train reviews.csv --text-column review --label-column stars --output runs/reviews
    ulmtl predict runs/reviews new.csv --output predictions.csv
    ulmtl evaluate runs/reviews labelled.csv --text-column review --label-column stars
    ulmtl info runs/reviews
    ulmtl train tagged.csv --label-column tags --label-separator "|" --output runs/tags   # multi-label

``train`` is the custom recipe (``recipes/custom.py``): the same options and ``--section.key=value``
overrides. A model folder is a run's output folder or its ``model/`` folder. Bad input ends with
one line, ``error: ...``, and exit status 2, as in the recipes.
"""
from __future__ import annotations

import argparse
import csv
import json
import os
import shlex
import sys
from dataclasses import asdict
from pathlib import Path

import numpy as np

from ulmtl.checkpoint import CheckpointError
from ulmtl.cli import parse_args, run_cli
from ulmtl.config import ConfigError, RecipeConfig
from ulmtl.datasets import DataError
from ulmtl.datasets.files import LoadReport, read_labelled
from ulmtl.text_stream import TextStream

CHUNK = 1000  # texts classified at a time by predict
OUTPUT_FORMATS = {".csv": "csv", ".tsv": "tsv", ".jsonl": "jsonl", ".json": "jsonl"}


class Parser(argparse.ArgumentParser):
    """argparse, with a bad command line reported as one ``error: ...`` line (exit 2), as in the recipes."""

    def error(self, message):
        print(f"error: {self.prog}: {message} (see {self.prog} --help)", file=sys.stderr)
        raise SystemExit(2)


def build_parser() -> Parser:
    parser = Parser(prog="ulmtl", allow_abbrev=False,
                    description="Train, apply and inspect ULMFiT text classifiers.")
    commands = parser.add_subparsers(dest="command", required=True, parser_class=Parser)
    # No abbreviated options: train passes --section.key=value overrides through, unparsed.

    train = commands.add_parser(
        "train", allow_abbrev=False, help="train a classifier on your own labelled file or class folders",
        description="Train a classifier (the custom recipe: LM fine-tuning, then the classifier) on a "
                    "CSV / TSV / JSON lines / parquet file or a folder with one sub-folder per class. "
                    "Without --test, a seeded stratified 10%% of the data is the test set. Any other "
                    "option is a --section.key=value override of the run's config (e.g. "
                    "--classifier.lr=0.005, --valid_fraction=0.1, --backbone=awd_lstm); --smoke runs a "
                    "tiny model to check the data.",
        epilog="The output folder gets metrics.json, report.md, confusion_matrix.png (not for multi-label "
               "data), training.png and model/ (with its model card README.md).")
    train.add_argument("data", metavar="FILE_OR_FOLDER", help="the labelled training data")
    train.add_argument("--output", required=True, metavar="DIR",
                       help="the run folder to write (replaced whole)")
    train.add_argument("--test", metavar="FILE", help="a labelled test file (default: 10%% of the data)")
    train.add_argument("--text-column", default="text", metavar="C", help="the text column (default text)")
    train.add_argument("--label-column", default="label", metavar="L",
                       help="the column of labels (default label)")
    train.add_argument("--label-separator", metavar="S",
                       help="multi-label: the label field holds several labels split by S (e.g. '|' reads "
                            "a|b as a and b); a JSON lines / parquet label that is a list needs no separator")
    train.add_argument("--label-columns", metavar="A,B,...",
                       help="multi-label: one 0/1 column per label (instead of --label-column)")
    train.add_argument("--pretrained", metavar="DIR_OR_HUB_ID",
                       help="the pretrained model: a Hugging Face encoder folder or hub id, or an AWD-LSTM "
                            "checkpoint / fastai files (default: the bundled all-MiniLM-L6-v2)")
    train.add_argument("--smoke", action="store_true", help="a tiny model on a subset, to check the pipeline")
    train.add_argument("--encoding", metavar="NAME", help="the files' text encoding (default utf-8)")
    train.add_argument("--skip-empty", action="store_true", help="skip (and count) rows with empty text")
    train.set_defaults(run=_train)

    predict = commands.add_parser(
        "predict", allow_abbrev=False, help="classify the texts of a file (streamed: any size)",
        description="Write the label and class probabilities of each text of INPUT, in input order. INPUT is "
                    "a CSV / TSV / JSON lines / parquet file with a text column, or plain text with one text "
                    "per line (.txt or any other suffix), or - for standard input (plain text unless "
                    "--format says otherwise). The input is read and classified in chunks, so a file larger "
                    "than memory works. A multi-label classifier writes each text's set of labels (labels) "
                    "and each label's probability.")
    predict.add_argument("model", metavar="DIR", help="a run folder or its model/ folder")
    predict.add_argument("input", metavar="INPUT", help="the texts: a file, or - for standard input")
    predict.add_argument("--output", metavar="FILE",
                         help="where to write: .csv / .tsv (columns text, label, then one probability per "
                              "class, named p_<class>) or .jsonl (objects with text, label, probabilities); "
                              "default: JSON lines on standard output")
    predict.add_argument("--text-column", default="text", metavar="C", help="the text column (default text)")
    predict.add_argument("--format", choices=TextStream.FORMATS, help="INPUT's format (default: its suffix)")
    predict.add_argument("--encoding", default="utf-8", metavar="NAME",
                          help="INPUT's encoding (default utf-8)")
    predict.add_argument("--skip-empty", action="store_true",
                         help="skip rows with empty text (counted on stderr) rather than stop")
    predict.add_argument("--int8", action="store_true",
                         help="predict with int8 weights (transformer backbone; faster on CPUs without fast bf16)")
    predict.add_argument("--batch-size", type=int, default=CHUNK, metavar="N",
                         help=f"texts read and classified at a time (default {CHUNK})")
    add_multilabel_output(predict)
    predict.set_defaults(run=_predict)

    evaluate = commands.add_parser(
        "evaluate", allow_abbrev=False, help="metrics of a classifier on a labelled file",
        description="Accuracy, macro-F1, per-class precision / recall / F1 and the confusion matrix of the "
                    "classifier on a labelled file (the test block of a run's metrics.json), as JSON; for a "
                    "multi-label classifier micro- and macro-F1, subset accuracy and per-label precision / "
                    "recall / F1.")
    evaluate.add_argument("model", metavar="DIR", help="a run folder or its model/ folder")
    evaluate.add_argument("file", metavar="FILE", help="labelled texts: CSV / TSV / JSON lines / parquet, or "
                                                       "a folder with one sub-folder per class")
    evaluate.add_argument("--text-column", default="text", metavar="C", help="the text column (default text)")
    evaluate.add_argument("--label-column", default="label", metavar="L",
                          help="the column of labels (default label)")
    evaluate.add_argument("--encoding", default="utf-8", metavar="NAME",
                          help="FILE's encoding (default utf-8)")
    evaluate.add_argument("--skip-empty", action="store_true", help="skip (and count) rows with empty text")
    evaluate.add_argument("--output", metavar="FILE", help="also write the metrics to this JSON file")
    evaluate.add_argument("--label-separator", default="", metavar="S",
                          help="multi-label: the label field holds several labels split by S")
    evaluate.add_argument("--label-columns", default="", metavar="A,B,...",
                          help="multi-label: one 0/1 column per label (instead of --label-column)")
    evaluate.add_argument("--threshold", type=float, metavar="T",
                          help="multi-label: the decision threshold (default: the classifier's own)")
    evaluate.add_argument("--int8", action="store_true", help="evaluate the int8-quantized classifier")
    evaluate.set_defaults(run=_evaluate)

    info = commands.add_parser("info", allow_abbrev=False, help="print a classifier's model card",
                               description="Print the model card (README.md) of a saved classifier: what it "
                                           "is, how and on what it was trained, its metrics.")
    info.add_argument("model", metavar="DIR", help="a run folder or its model/ folder")
    info.set_defaults(run=_info)
    return parser


def add_multilabel_output(predict: argparse.ArgumentParser) -> None:
    predict.add_argument("--threshold", type=float, metavar="T",
                         help="multi-label: a label is predicted when its probability is at least T (default: "
                              "the classifier's own threshold)")
    predict.add_argument("--label-separator", metavar="S",
                         help="multi-label: joins a text's labels in a .csv / .tsv output (default |; .jsonl "
                              "writes a list)")


def threshold_of(clf, threshold: float | None) -> float | None:
    """The decision threshold to use: ``threshold`` (from --threshold) or the classifier's own; None
    for a single-label classifier, which refuses one."""
    if threshold is None:
        return clf.threshold_
    if not clf.multilabel_:
        raise ConfigError("--threshold is for a multi-label classifier; this one predicts one class per text "
                          "(the most probable)")
    if not 0 < threshold < 1:
        raise ConfigError(f"--threshold must be between 0 and 1 (exclusive), got {threshold}")
    return threshold


def model_folder(path: str) -> Path:
    """The classifier folder of ``path``: the folder itself, or a run folder's ``model/``."""
    from ulmtl.classifier_checkpoint import INDEX_FILE
    folder = Path(path)
    if not folder.is_dir():
        raise CheckpointError(f"{folder}: no such folder; give a run folder or its model/ folder")
    if not (folder / INDEX_FILE).exists() and (folder / "model" / INDEX_FILE).exists():
        return folder / "model"
    return folder


def check_output_file(output: str | None, predictions: bool = False) -> None:
    """Refuse an ``--output`` file that cannot be written (a folder, in a folder that does not exist
    or is read-only, or, for ``predictions``, a suffix of no format) before any work, not after it."""
    if output is None:
        return
    target = Path(output)
    if target.is_dir():
        raise ConfigError(f"--output {output} is a folder; give a file name")
    if not target.parent.is_dir():
        raise ConfigError(f"--output {output}: no folder {target.parent}; make it first or give another path")
    if not os.access(target.parent, os.W_OK):
        raise ConfigError(f"--output {output}: the folder {target.parent} is read-only")
    if predictions:
        output_format(output)


def output_format(output: str) -> str:
    """The predictions' format that ``output``'s suffix names."""
    suffix = Path(output).suffix
    if suffix.lower() not in OUTPUT_FORMATS:
        raise ConfigError(f"--output {output}: unknown suffix {suffix!r}; use .csv, .tsv or .jsonl")
    return OUTPUT_FORMATS[suffix.lower()]


def load_classifier(path: str):
    from ulmtl.classify import TextClassifier
    return TextClassifier.load(model_folder(path))


def _train(args: argparse.Namespace, overrides: list[str]) -> None:
    from ulmtl.recipe import SMOKE_RECIPE, run_recipe
    argv = [f"--train={args.data}", f"--output={args.output}", f"--text-column={args.text_column}",
            f"--label-column={args.label_column}"]
    argv += [f"--{key}={value}" for key, value in (("test", args.test), ("pretrained", args.pretrained),
                                                    ("encoding", args.encoding),
                                                    ("label-separator", args.label_separator),
                                                    ("label-columns", args.label_columns)) if value is not None]
    argv += ["--smoke"] * args.smoke + ["--skip-empty"] * args.skip_empty
    config = parse_args(RecipeConfig(dataset="custom", output=args.output), argv + overrides, SMOKE_RECIPE)
    run_recipe(config)


class PredictionWriter:
    """Rows of text, label and class probabilities as CSV / TSV or JSON lines; to a file (checked
    first by :func:`check_output_file`), written to ``<file>.partial-<pid>`` and renamed when
    complete, or to standard output. With a ``threshold`` (a multi-label classifier) the label is the
    set of labels at or above it, ``labels``: a JSON list, or in CSV / TSV joined by ``separator``."""

    def __init__(self, output: str | None, classes: list[str], threshold: float | None = None,
                 separator: str = "|"):
        self.classes, self.threshold, self.separator = classes, threshold, separator
        self.target = Path(output) if output else None
        self.format = "jsonl"
        if self.target is not None:
            self.format = output_format(output)
            self.partial = self.target.with_name(f"{self.target.name}.partial-{os.getpid()}")
            try:
                self.handle = open(self.partial, "w", newline="", encoding="utf-8")
            except OSError as err:
                raise ConfigError(f"--output {output}: cannot write it ({err.strerror})") from None
        else:
            self.handle = sys.stdout
        if self.format in ("csv", "tsv"):
            joined = [c for c in classes if separator in c] if threshold is not None else []
            if joined or (threshold is not None and not separator):
                self.close(complete=False)
                raise ConfigError(f"--label-separator {separator!r} cannot join the labels: "
                                  + (f"label {joined[0]!r} holds it; pass another, or write .jsonl (a list)"
                                     if joined else "give one, or write .jsonl (a list)"))
            self.csv = csv.writer(self.handle, delimiter="\t" if self.format == "tsv" else ",",
                                  lineterminator="\n")
            self.csv.writerow(["text", "label" if threshold is None else "labels"] + [f"p_{c}" for c in classes])

    def write(self, texts: list[str], proba: np.ndarray) -> None:
        if self.threshold is not None:
            self._write_sets(texts, proba)
            return
        labels = proba.argmax(axis=1)
        for text, label, row in zip(texts, labels, proba):
            if self.format == "jsonl":
                record = {"text": text, "label": self.classes[label],
                          "probabilities": {c: round(float(p), 6) for c, p in zip(self.classes, row)}}
                self.handle.write(json.dumps(record, ensure_ascii=False) + "\n")
            else:
                self.csv.writerow([text, self.classes[label]] + [f"{p:.6f}" for p in row])
        self.handle.flush()

    def _write_sets(self, texts: list[str], proba: np.ndarray) -> None:
        for text, row in zip(texts, proba):
            labels = [self.classes[j] for j in np.flatnonzero(row >= self.threshold)]
            if self.format == "jsonl":
                record = {"text": text, "labels": labels,
                          "probabilities": {c: round(float(p), 6) for c, p in zip(self.classes, row)}}
                self.handle.write(json.dumps(record, ensure_ascii=False) + "\n")
            else:
                self.csv.writerow([text, self.separator.join(labels)] + [f"{p:.6f}" for p in row])
        self.handle.flush()

    def close(self, complete: bool) -> None:
        if self.target is None:
            return
        self.handle.close()
        if complete:
            os.replace(self.partial, self.target)
        else:
            self.partial.unlink(missing_ok=True)


def _predict(args: argparse.Namespace, extra: list[str]) -> None:
    if args.batch_size < 1:
        raise ConfigError(f"--batch-size must be 1 or more, got {args.batch_size}")
    check_output_file(args.output, predictions=True)
    stream = TextStream(args.input, args.text_column, args.encoding, args.format or "", args.skip_empty)
    clf = load_classifier(args.model)
    clf.verbose = False
    if args.int8:
        clf.quantize_int8()
    if args.label_separator is not None and not clf.multilabel_:
        raise ConfigError("--label-separator joins the labels of a multi-label classifier; this one predicts one "
                          "class per text")
    writer = PredictionWriter(args.output, [str(c) for c in clf.classes_.tolist()],
                              threshold_of(clf, args.threshold),
                              "|" if args.label_separator is None else args.label_separator)
    complete, count, chunk = False, 0, []
    try:
        for text in stream:
            chunk.append(text)
            if len(chunk) == args.batch_size:
                writer.write(chunk, clf.predict_proba(chunk))
                count, chunk = count + len(chunk), []
        if chunk:
            writer.write(chunk, clf.predict_proba(chunk))
            count += len(chunk)
        complete = True
    finally:
        writer.close(complete)
    skipped = f", skipped {stream.skipped} empty" if stream.skipped else ""
    print(f"ulmtl: classified {count} texts from {stream.name}{skipped}"
          + (f"; wrote {args.output}" if args.output else ""), file=sys.stderr)


def _evaluate(args: argparse.Namespace, extra: list[str]) -> None:
    from ulmtl.recipe import classification_metrics, label_matrix, multilabel_metrics
    check_output_file(args.output)
    model_folder(args.model)  # a missing folder is named before the data is read
    label_columns = [c.strip() for c in args.label_columns.split(",") if c.strip()]
    texts, labels, report = read_labelled(args.file, args.text_column, args.label_column, args.encoding,
                                          args.skip_empty, "test", args.label_separator, label_columns)
    clf = load_classifier(args.model)
    if args.int8:
        clf.quantize_int8()
    threshold = threshold_of(clf, args.threshold)
    classes = [str(c) for c in clf.classes_.tolist()]
    if report.multilabel != clf.multilabel_:
        raise DataError(f"{args.file}: " + ("the labels are sets (multi-label), but the classifier predicts one "
                                            "class per text" if report.multilabel else
                                            "one label per text, but the classifier is multi-label: give the "
                                            "labels as lists (JSON lines / parquet), --label-separator S or "
                                            "--label-columns A,B,..."))
    index = {c: i for i, c in enumerate(classes)}
    unseen = sorted(({n for s in labels for n in s} if clf.multilabel_ else set(labels)) - set(index))
    if unseen:
        raise DataError(f"{args.file}: labels {unseen} are not classes of the classifier "
                        f"({', '.join(classes)})")
    LoadReport(args.file, {"test": len(texts)}, [report], multilabel=report.multilabel).show(sys.stderr)
    proba = clf.predict_proba(texts)
    if clf.multilabel_:
        truth = label_matrix([[index[n] for n in s] for s in labels], len(classes))
        metrics = multilabel_metrics(truth, proba >= threshold, classes, threshold)
    else:
        metrics = classification_metrics(np.array([index[label] for label in labels]), proba.argmax(axis=1),
                                         classes)
    metrics["data"] = asdict(report)  # rows read and kept, what was skipped, warnings
    text = json.dumps(metrics, indent=2)
    print(text)
    headline = (f"micro-F1 {metrics['micro_f1']} (threshold {threshold})" if clf.multilabel_
                else f"accuracy {metrics['accuracy']}")
    print(f"ulmtl: {headline}, macro-F1 {metrics['macro_f1']} on {len(texts)} texts of {args.file}",
          file=sys.stderr)
    if args.output:
        try:
            Path(args.output).write_text(text + "\n")
        except OSError as err:
            raise ConfigError(f"--output {args.output}: cannot write it ({err.strerror})") from None


def _info(args: argparse.Namespace, extra: list[str]) -> None:
    from ulmtl.classifier_checkpoint import CARD_FILE
    folder = model_folder(args.model)
    card = folder / CARD_FILE
    if not card.exists():
        load_classifier(args.model)  # says what is wrong with a folder that is not a classifier
        raise CheckpointError(f"{folder}: no model card ({CARD_FILE}); a classifier saved by an older ulmtl. "
                              f"Load and save it again to write one")
    print(card.read_text(), end="")


def main(argv: list[str] | None = None) -> None:
    """``ulmtl SUBCOMMAND ...``; ``argv`` defaults to the command line."""
    argv = list(sys.argv[1:] if argv is None else argv)
    args, extra = build_parser().parse_known_args(argv)
    if extra and args.command != "train":
        build_parser().parse_args(argv)  # reports the unrecognized arguments (exit 2)
    try:
        run_cli(lambda: args.run(args, extra), command=shlex.join(["ulmtl", *argv]))
    except BrokenPipeError:
        # Whoever read standard output stopped (``ulmtl predict ... | head``): stop quietly.
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        raise SystemExit(1) from None


if __name__ == "__main__":
    main()
