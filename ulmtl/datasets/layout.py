"""What every loader shares: the layout it returns (a string ``text`` column and a ``ClassLabel``
``label`` column, or for multi-label data a ``List(ClassLabel)`` one), the error it raises, the
seeded stratified split, and byte-level reading."""
from __future__ import annotations

import codecs
import csv
from contextlib import contextmanager
from itertools import chain
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


class IncompleteCopy(Exception):
    """A dataset folder that exists but lacks ``absent`` (paths relative to it)."""

    def __init__(self, absent: list[str]):
        super().__init__(", ".join(absent))
        self.absent = absent


def holds_copy(folder: Path, required: list[str]) -> bool:
    """Whether ``folder`` holds the original download: False when there is no such folder (the
    hub's copy may stand in); :class:`IncompleteCopy` when it is there without a match for each of
    ``required`` (relative paths or glob patterns), since a folder that is there is the user's copy
    and is never swapped for the hub's without a word."""
    if not folder.is_dir():
        return False
    absent = [part for part in required if next(folder.glob(part), None) is None]
    if absent:
        raise IncompleteCopy(absent)
    return True


def incomplete(name: str, folder: Path, err: IncompleteCopy, how: str, on_hub: bool) -> DataError:
    hub = ", or move the folder away to use the hub's copy" if on_hub else ""
    return DataError(f"dataset {name!r}: {folder} is there but has no {err}. {how}{hub}.")


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


def text_encoding_problem(encoding: str) -> str:
    """What is wrong with ``encoding`` as the name of a text encoding, as the end of a sentence
    naming the setting ("" when nothing is): a name Python's codecs do not know, or a codec that is
    not a text encoding (base64, rot13)."""
    try:
        if codecs.lookup(encoding)._is_text_encoding:
            return ""
    except LookupError:
        pass
    return f"is not a text encoding Python knows (e.g. 'utf-8', 'latin-1'); got {encoding!r}"


class UndecodableBytes(ValueError):
    """Bytes of a stream that are not valid in its encoding: their line and byte offset, the
    decoder's reason, and the encoding a byte-order mark at the start of the stream names."""

    def __init__(self, line: int, byte: int, reason: str, bom: str):
        super().__init__(f"line {line}, byte {byte}: {reason}")
        self.where, self.reason, self.bom = f"line {line}, byte {byte}", reason, bom


def _bom_encoding(start: bytes) -> str:
    """The encoding whose byte-order mark ``start`` begins with, if it is UTF-16 or UTF-32."""
    if start.startswith((codecs.BOM_UTF32_LE, codecs.BOM_UTF32_BE)):
        return "utf-32"
    return "utf-16" if start.startswith((codecs.BOM_UTF16_LE, codecs.BOM_UTF16_BE)) else ""


def not_valid(name: str | Path, encoding: str, err: UndecodableBytes) -> DataError:
    """The error for bytes of ``name`` that are not valid ``encoding``: where they are and which
    encoding to pass instead (the one a byte-order mark names, else Latin-1)."""
    hint = (f"the file starts with a {err.bom.upper()} byte-order mark: pass encoding='{err.bom}' (a recipe: "
            f"--encoding={err.bom})" if err.bom else LATIN1_HINT)
    return DataError(f"{name}, {err.where}: bytes are not valid {encoding} ({err.reason}); {hint}")


def first_bad_bytes(path: Path, encoding: str) -> UndecodableBytes | None:
    """The first bytes of ``path`` that are not valid ``encoding``, if any, with their line (only a
    line feed ends one) and byte offset; read a line of bytes at a time, never whole. A decoding error
    raised while reading a text stream only knows its offset in the current read-ahead chunk: this
    reads the file again to find it. The decoder is incremental, so a character split by a 0x0A byte
    (UTF-16, UTF-32) is completed by the next read."""
    decoder = codecs.getincrementaldecoder(encoding)()
    line, offset, bom = 1, 0, None
    with open(path, "rb") as handle:
        for raw in chain(handle, [b""]):
            bom = _bom_encoding(raw) if bom is None else bom
            state = decoder.getstate()
            try:
                line += decoder.decode(raw, final=not raw).count("\n")
            except UnicodeDecodeError as err:
                decoder.setstate(state)  # decode what precedes the bad bytes, to count its line breaks
                before = decoder.decode(raw[:max(err.start - len(state[0]), 0)])
                bom = bom if bom not in codecs.lookup(encoding).name else ""  # a hint only for another encoding
                return UndecodableBytes(line + before.count("\n"), offset - len(state[0]) + err.start, err.reason,
                                        bom)
            offset += len(raw)
    return None


def undecodable_file(path: Path, encoding: str, reason: str) -> DataError:
    """:func:`not_valid` for a file that failed to decode with ``reason``, naming the line and byte."""
    err = first_bad_bytes(path, encoding)
    if err is None:  # the file changed since it was read
        return DataError(f"{path}: bytes are not valid {encoding} ({reason}); {LATIN1_HINT}")
    return not_valid(path, encoding, err)


def bad_bytes_at(path: Path, encoding: str) -> str:
    """Where the first bytes of ``path`` that are not valid ``encoding`` are, as 'line N, byte B'."""
    return find_bad_bytes(path, encoding) or "unknown position"


def find_bad_bytes(path: Path, encoding: str) -> str | None:
    """'line N, byte B' of the first bytes of ``path`` that are not valid ``encoding``, if any."""
    err = first_bad_bytes(path, encoding)
    return err.where if err else None


@contextmanager
def parquet_errors(path: Path):
    """pyarrow's errors for a damaged parquet file read inside, as a DataError naming the file."""
    import pyarrow as pa
    try:
        yield
    except (pa.ArrowException, OSError) as err:  # ArrowInvalid, or OSError for a damaged page
        raise DataError(f"{path}: not a readable parquet file ({err})") from None


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
