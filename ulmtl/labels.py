"""What fit, predict and score take: texts and labels from lists, a pandas DataFrame or a datasets
Dataset, checked (one label per text, or a set of labels per text: multi-label), and the multi-label
decision threshold (:func:`best_threshold`)."""
from __future__ import annotations

import numpy as np
import pandas as pd
from datasets import ClassLabel, Column, Dataset, DatasetDict, LargeList, List

from ulmtl.config import DEFAULT_THRESHOLD, ClassifierConfig, ConfigError
from ulmtl.datasets import DataError


def texts_and_labels(X, y) -> tuple[list[str], list | None, list[str] | None]:
    """Texts, labels and (for a ClassLabel column) the class names, from lists or a Dataset; a
    ClassLabel column's ids become their names."""
    names = None
    if isinstance(X, pd.DataFrame):
        if "text" not in X.columns:
            raise DataError(f"a DataFrame needs a 'text' column (columns: {[str(c) for c in X.columns]})")
        if y is None and "label" in X.columns:
            y = X["label"]
        X = X["text"]
    if isinstance(X, DatasetDict):
        raise DataError(f"a DatasetDict holds several splits ({list(X)}); pass one, e.g. data['train']")
    if isinstance(X, (dict, set, frozenset)):
        raise DataError(f"expected a list of texts, got a {type(X).__name__} (its order and its keys are not "
                        f"a list of texts); pass a list, a pandas Series, or a DataFrame / Dataset with a "
                        f"'text' column")
    if isinstance(X, Dataset):
        if "text" not in X.column_names:
            raise DataError(f"dataset has no 'text' column (columns: {X.column_names})")
        if y is None and "label" in X.column_names:
            y = X["label"]
        X = X["text"]
    if isinstance(y, Column):
        y, names = _class_names(list(y), y.features)
    if isinstance(X, str):
        raise DataError("expected a list of texts, got a single string")
    if X is None or not hasattr(X, "__iter__"):
        raise DataError(f"expected a list of texts, got {type(X).__name__}")
    texts = list(X)
    if not texts:
        raise DataError("expected a list of texts, got an empty one")
    for i, text in enumerate(texts):
        if not isinstance(text, str):
            raise DataError(f"text {i} is {type(text).__name__}, not a string")
        if not text.strip():
            raise DataError(f"text {i} is empty or whitespace only")
    if y is not None:
        if isinstance(y, pd.DataFrame) or (isinstance(y, np.ndarray) and y.ndim == 2):
            y, names = _indicator_sets(y)
        if isinstance(y, str) or not hasattr(y, "__iter__"):
            raise DataError(f"expected a list of labels, got {type(y).__name__}")
        y = list(y)
        if len(y) != len(texts):
            raise DataError(f"{len(texts)} texts but {len(y)} labels")
        if any(isinstance(label, LABEL_SETS) for label in y):
            return texts, _label_sets(y), names
        y = [label.item() if isinstance(label, np.generic) else label for label in y]
        kinds = {}
        for i, label in enumerate(y):
            kinds.setdefault(_checked_kind(label, f"label {i}"), (i, label))
        _refuse_mixed_kinds(kinds, "label")
    return texts, y, names


LABEL_SETS = (list, tuple, set, frozenset, np.ndarray)  # what a text's labels are in multi-label data


def _class_names(labels: list, feature) -> tuple[list, list[str] | None]:
    """The labels of a Dataset column of type ``feature`` and its class names: ClassLabel ids (a list
    of them per text: multi-label) as their names, each id checked; other labels as they are (names
    None)."""
    inner = feature.feature if isinstance(feature, (List, LargeList)) else feature
    if not isinstance(inner, ClassLabel):
        return labels, None
    names = list(inner.names)
    multilabel = inner is not feature
    named = []
    for row, ids in enumerate(labels):
        if ids is None:
            raise DataError(f"label {row} is missing")
        for i in ids if multilabel else [ids]:
            if isinstance(i, bool) or not isinstance(i, (int, np.integer)) or not 0 <= i < len(names):
                raise DataError(f"label {row} {'holds' if multilabel else 'is'} {i!r}, not a class id of "
                                f"{names} (0 to {len(names) - 1}); -1 marks an unlabelled text, as in the "
                                f"test splits of some hub datasets: use a labelled split")
        named.append(tuple(names[i] for i in ids) if multilabel else names[ids])
    return named, names


def _refuse_mixed_kinds(kinds: dict, what: str) -> None:
    """A DataError when the labels (``kinds``: each kind's first (index, label)) are of several types."""
    if len(kinds) > 1:
        examples = ", ".join(f"{what} {i} is {label!r} ({kind})" for kind, (i, label) in sorted(kinds.items()))
        raise DataError(f"labels of mixed types: {examples}; give every label the same type "
                        f"(e.g. all strings)")


def _checked_kind(label, where: str) -> str:
    """The kind of one label (see :func:`label_kind`); a DataError naming ``where`` when it is
    missing or of no label type."""
    if label is None or (isinstance(label, float) and np.isnan(label)):
        raise DataError(f"{where} is missing")
    kind = label_kind(label)
    if kind is None:
        raise DataError(f"{where} is a {type(label).__name__} ({label!r}); labels must be strings, numbers or "
                        f"booleans")
    return kind


def _label_sets(y: list) -> list[tuple]:
    """Multi-label ``y`` (a list, tuple or set of labels per text) as one tuple of labels per text
    (each label once; a text may have none)."""
    sets, kinds = [], {}
    for i, labels in enumerate(y):
        if not isinstance(labels, LABEL_SETS):
            raise DataError(f"label {i} is {labels!r}, one label, but other texts have a list of labels: give "
                            f"every text a list of labels (multi-label) or every text one label")
        items = labels.tolist() if isinstance(labels, np.ndarray) else list(labels)
        for item in items:
            kinds.setdefault(_checked_kind(item, f"a label of text {i}"), (i, item))
        sets.append(tuple(dict.fromkeys(items)))
    _refuse_mixed_kinds(kinds, "a label of text")
    return sets


def _indicator_sets(y) -> tuple[list[tuple], list]:
    """An indicator matrix (one 0/1 column per label: a DataFrame, its columns the labels, or a 2-D
    array, its column numbers the labels) as one tuple of labels per text, and the labels."""
    names = [str(c) for c in y.columns] if isinstance(y, pd.DataFrame) else list(range(y.shape[1]))
    values = np.asarray(y, dtype=object)
    bad = np.argwhere(~np.isin(values, [0, 1]))
    if len(bad):
        i, j = bad[0]
        raise DataError(f"label row {i}, column {names[j]!r} is {values[i, j]!r}; an indicator matrix of "
                        f"labels holds 0 or 1 ({len(bad)} entries are not)")
    return [tuple(names[j] for j in np.flatnonzero(row.astype(bool))) for row in values], names


def check_label_mode(config: ClassifierConfig, multilabel: bool, has_valid: bool) -> None:
    """Refuse the settings that cannot act on these labels: a threshold for single-label data, and
    a threshold to tune without a validation split."""
    if not multilabel:
        if config.tune_threshold or config.threshold != DEFAULT_THRESHOLD:
            key = "tune_threshold" if config.tune_threshold else "threshold"
            raise ConfigError(f"classifier.{key} is for multi-label data (a set of labels per text), but these "
                              f"labels are one class per text, whose prediction is the most probable class")
    elif config.tune_threshold and not has_valid:
        raise ConfigError("classifier.tune_threshold picks the threshold on a validation split, and there is "
                          "none: pass valid=(texts, labels) to fit, or --valid_fraction=0.1 to a recipe")


THRESHOLDS = np.round(np.arange(0.05, 0.96, 0.01), 2)  # what tune_threshold chooses from


def micro_f1(truth: np.ndarray, predicted: np.ndarray) -> float:
    """Micro-averaged F1 of 0/1 label matrices (1.0 when neither holds a label)."""
    tp = float(np.sum((truth == 1) & predicted))
    wrong = float(np.sum((truth == 1) != predicted))
    return 1.0 if tp + wrong == 0 else 2 * tp / (2 * tp + wrong)


def best_threshold(truth: np.ndarray, proba: np.ndarray, start: float) -> tuple[float, float]:
    """(threshold, micro-F1): the threshold in THRESHOLDS with the best micro-F1 of ``proba`` against
    the 0/1 matrix ``truth``; of equal ones, the nearest to ``start``."""
    scores = [micro_f1(truth, proba >= t) for t in THRESHOLDS]
    best = max(range(len(THRESHOLDS)), key=lambda k: (round(scores[k], 12), -abs(THRESHOLDS[k] - start)))
    return float(THRESHOLDS[best]), scores[best]


def label_kind(label) -> str | None:
    """'bool', 'number' or 'string' (ints and floats mix: equal numbers are one class); None for others."""
    if isinstance(label, bool):
        return "bool"
    if isinstance(label, (int, float)):
        return "number"
    if isinstance(label, str):
        return "string"
    return None
