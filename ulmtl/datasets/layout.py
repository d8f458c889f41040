"""What every loader shares: the layout it returns (a string ``text`` column and a ``ClassLabel``
``label`` column, or for multi-label data a ``List(ClassLabel)`` one), the error it raises, the
seeded stratified split, and byte-level reading."""
from __future__ import annotations

import csv
from contextlib import contextmanager
from pathlib import Path

import numpy as np
from datasets import ClassLabel, Dataset, Features, List, Value

TEXT_FEATURE = Value("string")
LATIN1_HINT = "pass encoding='latin-1' (a recipe: --encoding=latin-1) if the file is Latin-1"


class DataError(ValueError):
    """Input data that cannot be used; the message names the file, line and field."""


def features(names: list[str]) -> Features:
    return Features({"text": TEXT_FEATURE, "label": ClassLabel(names=list(names))})


def labelled(texts: list[str], labels: list[int], names: list[str]) -> Dataset:
    """One split of texts and class ids, with the class names as its ``ClassLabel``."""
    return Dataset.from_dict({"text": texts, "label": labels}, features=features(names))


def multilabelled(texts: list[str], label_sets: list[list[int]], names: list[str]) -> Dataset:
    """One split of texts and their sets of class ids (multi-label), with the class names."""
    columns = Features({"text": TEXT_FEATURE, "label": List(ClassLabel(names=list(names)))})
    return Dataset.from_dict({"text": texts, "label": label_sets}, features=columns)


def label_names(data: Dataset) -> tuple[list[str], bool]:
    """The class names of a split and whether it is multi-label (a text has a set of labels)."""
    feature = data.features["label"]
    if isinstance(feature, List):
        return list(feature.feature.names), True
    return list(feature.names), False


def strata(data: Dataset) -> list[int]:
    """What a split of ``data`` is stratified on: its class ids; for multi-label data one stratum
    (a seeded random split: label sets rarely repeat often enough to stratify on)."""
    _, multilabel = label_names(data)
    return [0] * len(data) if multilabel else list(data["label"])


def unlabelled(texts: list[str]) -> Dataset:
    return Dataset.from_dict({"text": texts}, features=Features({"text": TEXT_FEATURE}))


def missing(name: str, looked: Path, how: str) -> DataError:
    return DataError(f"dataset {name!r} not found: looked for {looked}. {how}")


def stratified_split(labels: list[int], test_fraction: float, seed: int) -> tuple[list[int], list[int]]:
    """Seeded stratified split: indices of train and test, identical on every machine."""
    if not 0 < test_fraction < 1:
        raise DataError(f"test_fraction must be between 0 and 1, got {test_fraction}")
    rng = np.random.RandomState(seed)
    labels_arr = np.asarray(labels)
    train, test = [], []
    for cls in sorted(set(labels_arr.tolist())):
        idx = np.flatnonzero(labels_arr == cls)
        idx = idx[rng.permutation(len(idx))]
        n_test = int(round(len(idx) * test_fraction))
        test.extend(idx[:n_test].tolist())
        train.extend(idx[n_test:].tolist())
    return sorted(train), sorted(test)


# --------------------------------------------------------------------------- bytes

def decode_line(raw: bytes, path: Path, line_no: int, encoding: str) -> str:
    if encoding == "utf-8-or-latin-1":
        try:
            return raw.decode("utf-8")
        except UnicodeDecodeError:
            return raw.decode("latin-1")
    try:
        return raw.decode(encoding)
    except UnicodeDecodeError as err:
        raise DataError(f"{path}, line {line_no}: bytes are not valid {encoding} ({err.reason} at "
                        f"byte {err.start}); {LATIN1_HINT}") from None


def bad_bytes_at(path: Path, encoding: str) -> str:
    """Where the first bytes of ``path`` that are not valid ``encoding`` are, as 'line N, byte B'.

    A decoding error raised while reading a text stream only knows its offset in the current
    read-ahead chunk, not in the file; this reads the file again, line by line, to find it.
    """
    return find_bad_bytes(path, encoding) or "unknown position"


def find_bad_bytes(path: Path, encoding: str) -> str | None:
    """'line N, byte B' of the first bytes of ``path`` that are not valid ``encoding``, if any;
    read line by line, never whole."""
    offset = 0
    with open(path, "rb") as handle:
        for line_no, raw in enumerate(handle, 1):
            try:
                raw.decode(encoding)
            except UnicodeDecodeError as err:
                return f"line {line_no}, byte {offset + err.start}"
            offset += len(raw)
    return None


# The csv module refuses a field over 128 KiB by default; a long review is not malformed. 2**31 - 1
# fits a C long on every platform (sys.maxsize does not on Windows).
CSV_FIELD_LIMIT = 2**31 - 1


@contextmanager
def long_csv_fields():
    """Lift the csv module's field size limit while a file is read, then put it back."""
    previous = csv.field_size_limit(CSV_FIELD_LIMIT)
    try:
        yield
    finally:
        csv.field_size_limit(previous)
