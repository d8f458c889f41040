"""Datasets: loading from original download layouts (or the hub), tokenizing, numericalizing.

Every loader returns a ``datasets.DatasetDict`` with ``train`` and ``test`` splits (and
``unsup`` where there is unlabelled text), a string column ``text`` and a ``ClassLabel``
column ``label``. Parsed datasets are stored as arrow files in the cache folder, so that
``map`` (tokenization, numericalization) is cached by fingerprint: a second run costs nothing.
"""
from __future__ import annotations

import csv
import hashlib
import json
import math
import os
import re
import shutil
import sys
from collections import Counter
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Callable, Iterable

import numpy as np
from datasets import ClassLabel, Dataset, DatasetDict, Features, Value, load_from_disk

from ulmtl.text import FLD, Vocab, tokenize_batch

LOADER_VERSION = "1"
TEXT_FEATURE = Value("string")


class DataError(ValueError):
    """Input data that cannot be used; the message names the file, line and field."""


LATIN1_HINT = "pass encoding='latin-1' (a recipe: --encoding=latin-1) if the file is Latin-1"


# --------------------------------------------------------------------------- folders

def resolve_data_dir(data_dir: str | Path | None = None) -> Path:
    """The data directory: the argument, else ``$ULMTL_DATA_DIR``, else ``<cache>/data``."""
    if data_dir:
        return Path(data_dir).expanduser()
    if os.environ.get("ULMTL_DATA_DIR"):
        return Path(os.environ["ULMTL_DATA_DIR"]).expanduser()
    return cache_dir() / "data"


def cache_dir() -> Path:
    """Per-user cache: ``$ULMTL_CACHE_DIR``, else ``$XDG_CACHE_HOME/ulmtl``, else ``~/.cache/ulmtl``."""
    if os.environ.get("ULMTL_CACHE_DIR"):
        return Path(os.environ["ULMTL_CACHE_DIR"]).expanduser()
    base = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(base) / "ulmtl"


# --------------------------------------------------------------------------- helpers

def _features(names: list[str]) -> Features:
    return Features({"text": TEXT_FEATURE, "label": ClassLabel(names=list(names))})


def _split(texts: list[str], labels: list[int], names: list[str]) -> Dataset:
    return Dataset.from_dict({"text": texts, "label": labels}, features=_features(names))


def _unlabelled(texts: list[str]) -> Dataset:
    return Dataset.from_dict({"text": texts}, features=Features({"text": TEXT_FEATURE}))


def _source_signature(paths: Iterable[Path]) -> list:
    out = []
    for path in sorted(paths):
        stat = path.stat()
        out.append([str(path.resolve()), stat.st_size, stat.st_mtime_ns])
    return out


def _cached(name: str, options: dict, sources: list[Path], build: Callable[[], DatasetDict]) -> DatasetDict:
    """Build ``name`` once, store it as arrow files keyed by its sources, reload memory-mapped."""
    key = json.dumps([LOADER_VERSION, name, options, _source_signature(sources)], sort_keys=True)
    digest = hashlib.sha256(key.encode()).hexdigest()[:16]
    target = cache_dir() / "datasets" / f"{name}-{digest}"
    if (target / "dataset_dict.json").exists():
        return load_from_disk(str(target))
    built = build()
    partial = target.with_name(target.name + f".partial-{os.getpid()}")
    if partial.exists():
        shutil.rmtree(partial)
    built.save_to_disk(str(partial))
    if target.exists():
        shutil.rmtree(target)
    partial.rename(target)
    return load_from_disk(str(target))


def _missing(name: str, looked: Path, how: str) -> DataError:
    return DataError(f"dataset {name!r} not found: looked for {looked}. {how}")


def _decode_line(raw: bytes, path: Path, line_no: int, encoding: str) -> str:
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


def _bad_bytes_at(path: Path, encoding: str) -> str:
    """Where the first bytes of ``path`` that are not valid ``encoding`` are, as 'line N, byte B'.

    A decoding error raised while reading a text stream only knows its offset in the current
    read-ahead chunk, not in the file; this reads the file again, line by line, to find it.
    """
    return _find_bad_bytes(path, encoding) or "unknown position"


def _find_bad_bytes(path: Path, encoding: str) -> str | None:
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
def _long_csv_fields():
    """Lift the csv module's field size limit while a file is read, then put it back."""
    previous = csv.field_size_limit(CSV_FIELD_LIMIT)
    try:
        yield
    finally:
        csv.field_size_limit(previous)


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


# --------------------------------------------------------------------------- TREC

TREC_COARSE = ["ABBR", "DESC", "ENTY", "HUM", "LOC", "NUM"]
_TREC_LINE = re.compile(r"^([A-Z]+):(\S+) (.+)$")


def _read_trec(path: Path, fine: bool) -> tuple[list[str], list[str]]:
    texts, labels = [], []
    for line_no, raw in enumerate(path.read_bytes().splitlines(), 1):
        line = raw.decode("latin-1").strip()
        if not line:
            continue
        match = _TREC_LINE.match(line)
        if not match:
            raise DataError(f"{path}, line {line_no}: expected 'COARSE:fine question', got {line[:60]!r}")
        coarse, fine_label, question = match.groups()
        texts.append(question)
        labels.append(f"{coarse}:{fine_label}" if fine else coarse)
    return texts, labels


def load_trec(data_dir: Path, fine: bool = False) -> DatasetDict:
    folder = data_dir / "trec"
    train_path, test_path = folder / "train_5500.label", folder / "TREC_10.label"
    if not train_path.exists() or not test_path.exists():
        raise _missing("trec", folder, "Download train_5500.label and TREC_10.label from "
                       "https://cogcomp.seas.upenn.edu/Data/QA/QC/ into that folder.")

    def build():
        train_texts, train_labels = _read_trec(train_path, fine)
        test_texts, test_labels = _read_trec(test_path, fine)
        names = sorted(set(train_labels) | set(test_labels)) if fine else TREC_COARSE
        index = {n: i for i, n in enumerate(names)}
        return DatasetDict({
            "train": _split(train_texts, [index[x] for x in train_labels], names),
            "test": _split(test_texts, [index[x] for x in test_labels], names),
        })
    return _cached("trec", {"fine": fine}, [train_path, test_path], build)


# --------------------------------------------------------------------------- MR

def load_mr(data_dir: Path, test_fraction: float = 0.1, seed: int = 0) -> DatasetDict:
    """MR sentence polarity. No official split: a stratified split seeded by ``seed``."""
    folder = data_dir / "rt-polaritydata"
    paths = [folder / "rt-polarity.neg", folder / "rt-polarity.pos"]
    if not all(p.exists() for p in paths):
        raise _missing("mr", folder, "Download rt-polaritydata.tar.gz from "
                       "https://www.cs.cornell.edu/people/pabo/movie-review-data/ and unpack it there.")

    def build():
        texts, labels = [], []
        for label, path in enumerate(paths):
            for line_no, raw in enumerate(path.read_bytes().splitlines(), 1):
                text = _decode_line(raw, path, line_no, "utf-8-or-latin-1").strip()
                if text:
                    texts.append(text)
                    labels.append(label)
        train_idx, test_idx = stratified_split(labels, test_fraction, seed)
        names = ["negative", "positive"]
        return DatasetDict({
            "train": _split([texts[i] for i in train_idx], [labels[i] for i in train_idx], names),
            "test": _split([texts[i] for i in test_idx], [labels[i] for i in test_idx], names),
        })
    return _cached("mr", {"test_fraction": test_fraction, "seed": seed}, paths, build)


# --------------------------------------------------------------------------- polarity v2.0

_CV_NAME = re.compile(r"^cv(\d{3})_")


def load_polarity(data_dir: Path, fold: int = 0) -> DatasetDict:
    """Polarity v2.0: fold ``k`` (files cv{k}00-cv{k}99) is the test split."""
    if not 0 <= fold <= 9:
        raise DataError(f"polarity: fold must be 0..9, got {fold}")
    folder = data_dir / "review_polarity" / "txt_sentoken"
    if not (folder / "pos").is_dir() or not (folder / "neg").is_dir():
        raise _missing("polarity", folder, "Download review_polarity.tar.gz from "
                       "https://www.cs.cornell.edu/people/pabo/movie-review-data/ and unpack it there.")
    files = sorted((folder / "neg").glob("*.txt")) + sorted((folder / "pos").glob("*.txt"))

    def build():
        names = ["negative", "positive"]
        splits = {"train": ([], []), "test": ([], [])}
        for path in files:
            match = _CV_NAME.match(path.name)
            if not match:
                raise DataError(f"{path}: file name must start with cvNNN_ (the fold prefix)")
            label = 0 if path.parent.name == "neg" else 1
            text = " ".join(path.read_text(encoding="utf-8", errors="strict").split("\n")).strip()
            split = "test" if int(match.group(1)) // 100 == fold else "train"
            splits[split][0].append(text)
            splits[split][1].append(label)
        return DatasetDict({k: _split(t, y, names) for k, (t, y) in splits.items()})
    return _cached("polarity", {"fold": fold}, files, build)


# --------------------------------------------------------------------------- IMDb

def load_imdb(data_dir: Path) -> DatasetDict:
    folder = data_dir / "aclImdb"
    if not folder.is_dir():
        return load_from_hub("imdb", folder)
    names = ["neg", "pos"]
    files = {split: {c: sorted((folder / split / c).glob("*.txt")) for c in names}
             for split in ("train", "test")}
    unsup = sorted((folder / "train" / "unsup").glob("*.txt"))
    sources = [p for split in files.values() for group in split.values() for p in group] + unsup

    def read(path: Path) -> str:
        try:
            return path.read_text(encoding="utf-8")
        except UnicodeDecodeError as err:
            raise DataError(f"{path}: not valid UTF-8 at byte {err.start}") from None

    def build():
        out = {}
        for split, groups in files.items():
            texts, labels = [], []
            for label, c in enumerate(names):
                for path in groups[c]:
                    texts.append(read(path))
                    labels.append(label)
            if not texts:
                raise DataError(f"imdb: no files in {folder / split}/{{neg,pos}}")
            out[split] = _split(texts, labels, names)
        if unsup:
            out["unsup"] = _unlabelled([read(p) for p in unsup])
        return DatasetDict(out)
    return _cached("imdb", {}, sources, build)


# --------------------------------------------------------------------------- Zhang et al. 2015 CSVs

ZHANG_LAYOUTS = {
    # name: (folder, number of text fields, default class names)
    "ag_news": ("ag_news_csv", 2, ["World", "Sports", "Business", "Sci/Tech"]),
    "dbpedia": ("dbpedia_csv", 2, ["Company", "EducationalInstitution", "Artist", "Athlete",
                                   "OfficeHolder", "MeanOfTransportation", "Building", "NaturalPlace",
                                   "Village", "Animal", "Plant", "Album", "Film", "WrittenWork"]),
    "yelp_polarity": ("yelp_review_polarity_csv", 1, ["negative", "positive"]),
    "yelp_full": ("yelp_review_full_csv", 1, ["1 star", "2 stars", "3 stars", "4 stars", "5 stars"]),
}


def join_fields(fields: list[str]) -> str:
    """Several text fields as one text, marked as fastai/ULMFiT do: ``xxfld 1 title xxfld 2 body``."""
    if len(fields) == 1:
        return fields[0]
    return " ".join(f"{FLD} {i} {field}" for i, field in enumerate(fields, 1))


def _unescape_zhang(text: str) -> str:
    return text.replace("\\n", "\n").replace('\\"', '"')


def _read_zhang_csv(path: Path, n_fields: int, n_classes: int) -> tuple[list[str], list[int]]:
    texts, labels = [], []
    with _long_csv_fields(), open(path, newline="", encoding="utf-8") as handle:
        reader = csv.reader(handle)
        try:
            for row in reader:
                line = reader.line_num
                if len(row) != n_fields + 1:
                    raise DataError(f"{path}, line {line}: expected {n_fields + 1} fields "
                                    f"(class, {n_fields} text), got {len(row)}")
                try:
                    label = int(row[0]) - 1
                except ValueError:
                    raise DataError(f"{path}, line {line}: class field {row[0]!r} is not an integer") from None
                if not 0 <= label < n_classes:
                    raise DataError(f"{path}, line {line}: class {row[0]} outside 1..{n_classes}")
                texts.append(join_fields([_unescape_zhang(f.strip()) for f in row[1:]]))
                labels.append(label)
        except UnicodeDecodeError as err:
            raise DataError(f"{path}, {_bad_bytes_at(path, 'utf-8')}: not valid UTF-8 "
                            f"({err.reason})") from None
        except csv.Error as err:
            raise DataError(f"{path}, line {reader.line_num}: malformed CSV ({err})") from None
    return texts, labels


def load_zhang(name: str, data_dir: Path) -> DatasetDict:
    folder_name, n_fields, default_names = ZHANG_LAYOUTS[name]
    folder = data_dir / folder_name
    if not (folder / "train.csv").exists():
        return load_from_hub(name, folder)
    classes_file = folder / "classes.txt"
    names = default_names
    if classes_file.exists():
        names = [c.strip() for c in classes_file.read_text().splitlines() if c.strip()]
    paths = [folder / "train.csv", folder / "test.csv"]
    for path in paths:
        if not path.exists():
            raise _missing(name, path, "The original download has train.csv and test.csv.")

    def build():
        out = {}
        for split, path in zip(("train", "test"), paths):
            texts, labels = _read_zhang_csv(path, n_fields, len(names))
            out[split] = _split(texts, labels, names)
        return DatasetDict(out)
    return _cached(name, {}, paths + ([classes_file] if classes_file.exists() else []), build)


# --------------------------------------------------------------------------- the hub

HUB_IDS = {
    "imdb": ("stanfordnlp/imdb", None),
    "ag_news": ("fancyzhx/ag_news", None),
    "dbpedia": ("fancyzhx/dbpedia_14", None),
    "yelp_polarity": ("fancyzhx/yelp_polarity", None),
    "yelp_full": ("Yelp/yelp_review_full", None),
}


def load_from_hub(name: str, local_folder: Path | None = None) -> DatasetDict:
    """Download ``name`` from the Hugging Face hub (needs network) in ulmtl's layout."""
    import datasets
    hub_id, subset = HUB_IDS[name]
    try:
        raw = datasets.load_dataset(hub_id, subset, cache_dir=str(cache_dir() / "hub"))
    except Exception as err:  # network errors come in many types; the message is what matters
        where = f"no local copy at {local_folder}; " if local_folder else ""
        raise DataError(f"dataset {name!r}: {where}downloading {hub_id} from the Hugging Face hub "
                        f"failed ({type(err).__name__}: {str(err)[:200]}). Put the original download "
                        f"in the data directory or go online.") from None
    return hub_to_layout(name, raw)


def hub_to_layout(name: str, raw: DatasetDict) -> DatasetDict:
    """Rename hub columns and splits to ``text`` / ``label`` and ``train`` / ``test`` / ``unsup``."""
    out = {}
    for split, ds in raw.items():
        target = {"unsupervised": "unsup"}.get(split, split)
        if name == "dbpedia":
            ds = ds.map(_join_title_content, remove_columns=["title", "content"])
        if target == "unsup":
            ds = ds.remove_columns([c for c in ds.column_names if c != "text"])
        if name in ("yelp_polarity",) and "label" in ds.column_names:
            ds = ds.cast_column("label", ClassLabel(names=["negative", "positive"]))
        out[target] = ds
    return DatasetDict(out)


def _join_title_content(row: dict) -> dict:
    return {"text": join_fields([row["title"], row["content"]])}


# --------------------------------------------------------------------------- user files

@dataclass
class FileReport:
    """What was read from one file or class folder for one split."""
    path: str
    split: str
    rows_read: int  # data rows (in a class folder: text files) read
    rows_kept: int
    skipped_empty: int = 0
    skipped_hidden: int = 0  # hidden files and folders in a class folder (.DS_Store, .ipynb_checkpoints/)
    warnings: list[str] = field(default_factory=list)


@dataclass
class LoadReport:
    """What a load read: each of the user's files, the rows of each split, and warnings."""
    source: str
    splits: dict[str, int]
    files: list[FileReport] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)

    @classmethod
    def of_splits(cls, source: str, data: DatasetDict) -> LoadReport:
        """The report of a named dataset: its rows per split."""
        return cls(source, {split: len(ds) for split, ds in data.items()})

    @property
    def skipped_empty(self) -> int:
        return sum(f.skipped_empty for f in self.files)

    @property
    def all_warnings(self) -> list[str]:
        return [w for f in self.files for w in f.warnings] + self.warnings

    def lines(self) -> list[str]:
        """The rows read from each file (or each split of a named dataset) and what was skipped."""
        if not self.files:
            return [f"ulmtl: read {self.source}: " + ", ".join(f"{n} {s}" for s, n in self.splits.items())
                    + " rows"]
        out = [f"ulmtl: read {f.rows_read} rows from {f.path} ({f.split})" for f in self.files]
        out += [f"ulmtl: skipped {f.skipped_hidden} hidden files or folders in {f.path} (names starting "
                f"with '.')" for f in self.files if f.skipped_hidden]
        if self.skipped_empty:
            out.append(f"ulmtl: skipped {self.skipped_empty} rows with empty text (skip_empty=True)")
        return out

    def show(self) -> None:
        """Print :meth:`lines` on stdout and the warnings on stderr."""
        for line in self.lines():
            print(line, flush=True)
        for warning in self.all_warnings:
            print(f"ulmtl: warning: {warning}", file=sys.stderr, flush=True)

    def to_dict(self) -> dict:
        return {**asdict(self), "skipped_empty_rows": self.skipped_empty}


def _label_names(values: list) -> list[str]:
    as_text = [str(v) for v in values]
    unique = sorted(set(as_text))
    if all(re.fullmatch(r"-?\d+", v) for v in unique):
        unique = sorted(unique, key=int)
    return unique


def _kind(value) -> str:
    """A value's type in JSON's words, for messages."""
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, (int, float)):
        return "a number"
    return {dict: "an object", list: "a list", str: "a string"}.get(type(value), type(value).__name__)


def _text_of(value, where: str, column: str) -> str | None:
    """A row's text; None when it is missing (null, NaN). Anything but a string is an error."""
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return None
    if not isinstance(value, str):
        raise DataError(f"{where}: field {column!r} is {_kind(value)}, not a string")
    return value


def _class_name(value, where: str, column: str) -> str | None:
    """A label as a class name; None when missing (null, NaN, blank). Equal numbers are one class
    (1 and 1.0 are '1')."""
    if value is None:
        return None
    if isinstance(value, bool):
        return str(value)
    if isinstance(value, (int, float)):
        if math.isnan(value):
            return None
        return str(int(value)) if float(value).is_integer() else str(value)
    if isinstance(value, (dict, list)):
        raise DataError(f"{where}: field {column!r} (the label) is {_kind(value)}; a label is a string, "
                        f"a number or a boolean")
    return str(value).strip() or None


def _class_key(name: str) -> str:
    """What two near-duplicate class names share: a number's value, else the name in any case."""
    try:
        number = float(name)
    except ValueError:
        return name.casefold()
    return name.casefold() if math.isnan(number) else repr(number)


def _near_duplicate_classes(names: list[str]) -> list[list[str]]:
    groups: dict[str, list[str]] = {}
    for name in names:
        groups.setdefault(_class_key(name), []).append(name)
    return [sorted(group) for group in groups.values() if len(group) > 1]


def _delimited_rows(path: Path, encoding: str, label_column: str) -> tuple[list[tuple[str, dict]], list[str]]:
    """Rows of a CSV file (quoted fields may span lines) or a TSV file (read without quote
    processing: a tab cannot be inside a field, and a text may begin with a quote), each named by
    the line it starts on; and the header."""
    tsv = path.suffix.lower() == ".tsv"
    # A byte-order mark (Excel writes one) is not part of the first column's name.
    read_encoding = "utf-8-sig" if encoding.lower().replace("_", "-") in ("utf-8", "utf8") else encoding
    spans: list[tuple[int, int, list[str]]] = []
    last = 0  # the line the previous row ended on
    try:
        with _long_csv_fields(), open(path, newline="", encoding=read_encoding) as handle:
            reader = csv.reader(handle, delimiter="\t" if tsv else ",",
                                quoting=csv.QUOTE_NONE if tsv else csv.QUOTE_MINIMAL)
            header = next(reader, None)
            if header is None:
                raise DataError(f"{path}: the file is empty (no header row)")
            repeated = sorted({c for c in header if header.count(c) > 1})
            if repeated:
                raise DataError(f"{path}, line 1: the header names column(s) {repeated} more than once")
            last = reader.line_num
            for row in reader:
                # A quoted field may span lines: a row is named by the line it starts on.
                first, last = last + 1, reader.line_num
                if not row:
                    continue
                if len(row) != len(header):
                    spans_note = (f" (the row runs on to line {last}: is a quote left open?)"
                                  if last > first else "")
                    raise DataError(f"{path}, line {first}: {len(row)} fields, but the "
                                    f"header has {len(header)}{spans_note}")
                spans.append((first, last, row))
    except UnicodeDecodeError as err:
        raise DataError(f"{path}, {_bad_bytes_at(path, encoding)}: bytes are not valid {encoding} "
                        f"({err.reason}); {LATIN1_HINT}") from None
    except csv.Error as err:
        raise DataError(f"{path}, line {last + 1}: malformed {'TSV' if tsv else 'CSV'} ({err})") from None
    if not tsv:
        _refuse_swallowed_rows(path, header, spans, label_column)
    return [(f"{path}, row at line {first}", dict(zip(header, row))) for first, _, row in spans], header


_LINE_BREAK = re.compile(r"\r\n|\r|\n")


def _refuse_swallowed_rows(path: Path, header: list[str], spans: list[tuple[int, int, list[str]]],
                           label_column: str) -> None:
    """A CSV field that begins with a quote runs on to the next quote anywhere later, and the rows
    in between become part of it while the field count still matches. Refuse a field spanning
    lines that holds a line shaped like a row (the right number of fields, a known class where
    the label goes)."""
    if label_column not in header:
        return  # the missing column is reported by the caller
    n, label_at = len(header), header.index(label_column)
    classes = {row[label_at].strip() for _, _, row in spans} - {""}
    for first, last, row in spans:
        if last == first:
            continue
        line = first
        for column, value in enumerate(row):
            parts = _LINE_BREAK.split(value)
            if len(parts) > 1 and column == label_at:
                raise DataError(f"{path}, line {first}: the label field {label_column!r} runs on to line "
                                f"{last}: is a quote left open?")
            for k, part in enumerate(parts):
                pieces = [p.strip() for p in next(csv.reader([part]), [])]
                if 0 < k < len(parts) - 1:  # a whole line inside the field
                    shaped = len(pieces) == n and pieces[label_at] in classes
                elif k == 0 and len(parts) > 1:  # the rest of the row the field opens on
                    shaped = (label_at > column and len(pieces) == n - column
                              and pieces[label_at - column] in classes)
                else:  # the start of the row the field closes on
                    shaped = (k > 0 and label_at < column and len(pieces) == column + 1
                              and pieces[label_at] in classes)
                if shaped:
                    raise DataError(
                        f"{path}, line {first}: field {header[column]!r} runs on to line {last} and holds "
                        f"lines shaped like rows (line {line + k}: {part[:60]!r}): a field that begins "
                        f"with a quote runs to the next quote, taking the rows in between. In a "
                        f"CSV, quote a field that holds quotes and double each quote in it (\"\"), or "
                        f"use a .tsv file, which is read without quote processing")
            line += len(parts) - 1


def _json_rows(path: Path, encoding: str) -> tuple[list[tuple[str, dict]], list[str]]:
    """Rows of a JSON lines file, or of a JSON file holding one top-level array of objects (each
    row named by its line or its place in the array); and the keys seen."""
    lines = [_decode_line(raw, path, n, encoding) for n, raw in enumerate(path.read_bytes().splitlines(), 1)]
    if lines:
        lines[0] = lines[0].lstrip("\ufeff")
    if next((line.strip() for line in lines if line.strip()), "").startswith("["):
        rows = _json_array_rows(path, "\n".join(lines))
    else:
        rows = []
        for line_no, line in enumerate(lines, 1):
            text = line.strip()
            if not text:
                continue
            try:
                record = json.loads(text)
            except json.JSONDecodeError as err:
                if _is_one_json_document(lines):
                    raise DataError(f"{path} is a JSON document spanning several lines, not JSON lines (one "
                                    f"object per line); write one object per line, or a top-level array "
                                    f"of objects") from None
                raise DataError(f"{path}, line {line_no}: not valid JSON ({err.msg})") from None
            if not isinstance(record, dict):
                raise DataError(f"{path}, line {line_no}: each line must be a JSON object")
            rows.append((f"{path}, row at line {line_no}", record))
    return rows, sorted({k for _, r in rows for k in r})


def _is_one_json_document(lines: list[str]) -> bool:
    try:
        json.loads("\n".join(lines))
    except json.JSONDecodeError:
        return False
    return True


def _json_array_rows(path: Path, text: str) -> list[tuple[str, dict]]:
    try:
        records = json.loads(text)
    except json.JSONDecodeError as err:
        raise DataError(f"{path}, line {err.lineno}: not valid JSON ({err.msg})") from None
    rows = []
    for number, record in enumerate(records, 1):
        if not isinstance(record, dict):
            raise DataError(f"{path}, record {number} of the top-level array: each record must be a JSON "
                            f"object, got {_kind(record)}")
        rows.append((f"{path}, record {number}", record))
    return rows


def _read_table(path: Path, text_column: str, label_column: str, encoding: str, skip_empty: bool,
                split: str) -> tuple[list[str], list[str], FileReport]:
    """Rows of a CSV / TSV / JSON lines / JSON array / parquet file: texts, class names, report."""
    suffix = path.suffix.lower()
    if suffix in (".csv", ".tsv"):
        rows, columns = _delimited_rows(path, encoding, label_column)
    elif suffix in (".jsonl", ".json"):
        rows, columns = _json_rows(path, encoding)
    elif suffix == ".parquet":
        import pyarrow.parquet as pq
        table = pq.read_table(path)
        columns = table.column_names
        rows = [(f"{path}, row {i + 1}", r) for i, r in enumerate(table.to_pylist())]
    else:
        raise DataError(f"{path}: unsupported file type {suffix!r} (use .csv, .tsv, .jsonl, .json, .parquet "
                        f"or a folder with one sub-folder per class)")
    if not rows:
        raise DataError(f"{path}: no data rows")
    for column in (text_column, label_column):
        if column not in columns:
            raise DataError(f"{path}: no column {column!r}; columns are {', '.join(map(str, columns))}")
    texts, labels, skipped = [], [], 0
    kinds: dict[str, set[str]] = {}
    for where, row in rows:
        text = _text_of(row.get(text_column), where, text_column)
        if text is None or not text.strip():
            if skip_empty:
                skipped += 1
                continue
            raise DataError(f"{where}: field {text_column!r} is empty (pass skip_empty=True, or "
                            f"--skip-empty to a recipe, to skip such rows; the count is reported)")
        value = row.get(label_column)
        name = _class_name(value, where, label_column)
        if name is None:
            raise DataError(f"{where}: field {label_column!r} (the label) is missing")
        kinds.setdefault(name, set()).add(_kind(value))
        texts.append(text)
        labels.append(name)
    report = FileReport(str(path), split, len(rows), len(texts), skipped_empty=skipped)
    report.warnings += [f"{path}: class {name!r} is written as {' and as '.join(sorted(seen))}; they are "
                        f"read as one class" for name, seen in sorted(kinds.items()) if len(seen) > 1]
    return texts, labels, report


def _class_files(class_dir: Path) -> tuple[list[Path], int]:
    """The files under a class folder, and how many hidden files and folders were left out."""
    files, hidden = [], 0
    for root, dirs, names in os.walk(class_dir):
        hidden += sum(d.startswith(".") for d in dirs) + sum(n.startswith(".") for n in names)
        dirs[:] = [d for d in dirs if not d.startswith(".")]
        files += [Path(root) / n for n in names if not n.startswith(".")]
    return sorted(p for p in files if p.is_file()), hidden


def _read_class_folder(folder: Path, encoding: str, skip_empty: bool,
                       split: str) -> tuple[list[str], list[str], FileReport]:
    """Texts of a folder with one sub-folder per class. Hidden files and folders (.DS_Store,
    .ipynb_checkpoints/, editors' .~lock files) are skipped and counted; an empty class is an error."""
    entries = sorted(folder.iterdir())
    hidden = sum(p.name.startswith(".") for p in entries)
    classes = [p for p in entries if p.is_dir() and not p.name.startswith(".")]
    loose = [p.name for p in entries if p.is_file() and not p.name.startswith(".")]
    if not classes:
        raise DataError(f"{folder}: a folder of data must hold one sub-folder per class")
    texts, labels, skipped, read = [], [], 0, 0
    for class_dir in classes:
        files, hidden_here = _class_files(class_dir)
        hidden += hidden_here
        kept_before, skipped_before = len(texts), skipped
        for path in files:
            read += 1
            try:
                text = path.read_text(encoding=encoding)
            except UnicodeDecodeError as err:
                raise DataError(f"{path}: bytes are not valid {encoding} (byte {err.start}); "
                                f"{LATIN1_HINT}") from None
            if not text.strip():
                if skip_empty:
                    skipped += 1
                    continue
                raise DataError(f"{path}: the file is empty")
            texts.append(text)
            labels.append(class_dir.name)
        if len(texts) == kept_before:
            why = (f"{skipped - skipped_before} empty files skipped" if skipped > skipped_before
                   else "no text files" + (f"; {hidden_here} hidden files or folders skipped" if hidden_here else ""))
            raise DataError(f"{class_dir}: the class folder {class_dir.name!r} holds no texts ({why}); "
                            f"add its texts or remove it")
    report = FileReport(str(folder), split, read, len(texts), skipped_empty=skipped, skipped_hidden=hidden)
    if loose:
        report.warnings.append(f"{folder}: {len(loose)} files outside the class folders are not read "
                               f"({', '.join(loose[:3])}{', ...' if len(loose) > 3 else ''})")
    return texts, labels, report


def read_labelled(path: str | Path, text_column: str = "text", label_column: str = "label",
                  encoding: str = "utf-8", skip_empty: bool = False,
                  split: str = "train") -> tuple[list[str], list[str], FileReport]:
    """Texts and class names of a file or class folder, and what was read from it."""
    path = Path(path)
    if not path.exists():
        raise DataError(f"{path}: no such file or folder")
    if path.is_dir():
        return _read_class_folder(path, encoding, skip_empty, split)
    if path.stat().st_size == 0:
        raise DataError(f"{path}: the file is empty")
    return _read_table(path, text_column, label_column, encoding, skip_empty, split)


def read_files(train: str | Path, test: str | Path | None = None, text_column: str = "text",
               label_column: str = "label", test_fraction: float = 0.1, seed: int = 0,
               encoding: str = "utf-8", skip_empty: bool = False) -> tuple[DatasetDict, LoadReport]:
    """:func:`load_files` without printing: the DatasetDict and its :class:`LoadReport` (rows read
    and kept per file, what was skipped, warnings)."""
    for what, column in (("text", text_column), ("label", label_column)):
        if not column:
            raise DataError(f"{train}: the {what} column name is empty ({what}_column='', or "
                            f"--{what}-column= to a recipe); give the column that holds the {what}s")
    train_texts, train_labels, train_report = read_labelled(train, text_column, label_column, encoding,
                                                            skip_empty, "train")
    files, warnings = [train_report], []
    names = _label_names(train_labels)
    if len(names) < 2:
        found = (f"only one class ({names[0]!r}) in the labels" if names
                 else f"no rows left ({train_report.skipped_empty} skipped as empty)")
        raise DataError(f"{train}: {found}; a classifier needs two or more classes")
    warnings += [f"{train}: classes {', '.join(map(repr, group))} differ only in case, type or the way "
                 f"a number is written; they are kept as different classes: make the labels the same "
                 f"if they are one class" for group in _near_duplicate_classes(names)]
    index = {n: i for i, n in enumerate(names)}
    train_ids = [index[x] for x in train_labels]
    if test:
        test_texts, test_labels, test_report = read_labelled(test, text_column, label_column, encoding,
                                                             skip_empty, "test")
        files.append(test_report)
        if os.path.samefile(train, test):
            warnings.append(f"{test} is also the training file: the test metrics are measured on "
                            f"training rows")
        unseen = sorted(set(test_labels) - set(names))
        if unseen:
            raise DataError(f"{test}: labels {unseen} never appear in the training data {train}")
        test_ids = [index[x] for x in test_labels]
    else:
        tr, te = stratified_split(train_ids, test_fraction, seed)
        if not te:
            raise DataError(f"{train}: holding out {test_fraction:g} of each class leaves no test rows "
                            f"({len(train_ids)} rows in all); add rows or pass a test file (--test to "
                            f"a recipe)")
        test_texts, test_ids = [train_texts[i] for i in te], [train_ids[i] for i in te]
        train_texts, train_ids = [train_texts[i] for i in tr], [train_ids[i] for i in tr]
    result = DatasetDict({"train": _split(train_texts, train_ids, names),
                          "test": _split(test_texts, test_ids, names)})
    return result, LoadReport(str(train), {k: len(v) for k, v in result.items()}, files, warnings)


def load_files(train: str | Path, test: str | Path | None = None, text_column: str = "text",
               label_column: str = "label", test_fraction: float = 0.1, seed: int = 0,
               encoding: str = "utf-8", skip_empty: bool = False) -> DatasetDict:
    """The user's own data: CSV / TSV / JSON lines (or a JSON array) / parquet, or a folder per class.

    Without ``test``, a seeded stratified split of ``train``. Rows are never dropped silently:
    empty texts are an error unless ``skip_empty``; the rows read from each file, what was skipped
    and any warning are printed (:func:`read_files` returns them as a :class:`LoadReport`).
    """
    data, report = read_files(train, test, text_column, label_column, test_fraction, seed, encoding,
                              skip_empty)
    report.show()
    return data


# --------------------------------------------------------------------------- entry point

DATASETS = ("trec", "mr", "polarity", "imdb", "ag_news", "dbpedia", "yelp_polarity", "yelp_full")


def load_dataset(name: str, data_dir: str | Path | None = None, *, fine: bool = False, fold: int = 0,
                 test_fraction: float = 0.1, seed: int = 0) -> DatasetDict:
    """Load a named dataset as a DatasetDict (``text``, ``label``; ``train``/``test``[/``unsup``]).

    Options: ``fine`` (TREC's 50 fine classes), ``fold`` (polarity's test fold),
    ``test_fraction`` and ``seed`` (MR's stratified split; 0.1 and 0 by default).
    """
    root = resolve_data_dir(data_dir)
    if name == "trec":
        return load_trec(root, fine=fine)
    if name == "mr":
        return load_mr(root, test_fraction=test_fraction, seed=seed)
    if name == "polarity":
        return load_polarity(root, fold=fold)
    if name == "imdb":
        return load_imdb(root)
    if name in ZHANG_LAYOUTS:
        return load_zhang(name, root)
    raise DataError(f"unknown dataset {name!r}; known: {', '.join(DATASETS)}; for your own files "
                    f"use ulmtl.load_files")


def load_corpus(path: str | Path) -> Dataset:
    """A general-domain corpus for stage 1: a text file or a folder of ``*.txt`` (one paragraph a
    line), as a memory-mapped arrow dataset with a ``text`` column; empty lines are left out."""
    import datasets
    from datasets.exceptions import DatasetGenerationError
    path = Path(path)
    files = sorted(path.glob("*.txt")) if path.is_dir() else [path]
    if not files or not all(f.exists() for f in files):
        raise DataError(f"corpus {path}: no .txt files found")
    try:
        ds = datasets.load_dataset("text", data_files=[str(f) for f in files], split="train",
                                   cache_dir=str(cache_dir() / "hub"))
    except DatasetGenerationError:
        for file in files:
            where = _find_bad_bytes(file, "utf-8")
            if where:
                raise DataError(f"corpus {file}, {where}: bytes are not valid utf-8; a stage-1 corpus is "
                                f"read as UTF-8: convert the file (e.g. iconv -f latin1 -t utf-8)") from None
        raise
    return ds.filter(_non_empty, batched=True)


def _non_empty(batch: dict) -> list[bool]:
    return [bool(t.strip()) for t in batch["text"]]


def load_wikitext103() -> Dataset:
    """WikiText-103 (raw) from the hub, for users who are online."""
    import datasets
    ds = datasets.load_dataset("Salesforce/wikitext", "wikitext-103-raw-v1", split="train",
                               cache_dir=str(cache_dir() / "hub"))
    return ds.filter(_non_empty, batched=True)


# --------------------------------------------------------------------------- tokens and ids

def tokenize(ds: Dataset | DatasetDict, num_proc: int = 1, batch_size: int = 1000) -> Dataset | DatasetDict:
    """Add a ``tokens`` column with spaCy + fastai rules; cached by fingerprint."""
    return ds.map(tokenize_batch, batched=True, batch_size=batch_size,
                  num_proc=num_proc if num_proc > 1 else None, desc="Tokenizing")


def count_tokens(datasets_: Iterable[Dataset]) -> Counter:
    counts: Counter = Counter()
    for ds in datasets_:
        for batch in ds.select_columns(["tokens"]).iter(batch_size=2000):
            for tokens in batch["tokens"]:
                counts.update(tokens)
    return counts


def build_vocab(datasets_: Iterable[Dataset], max_size: int = 60000, min_freq: int = 2) -> Vocab:
    """Vocabulary from the ``tokens`` column of the given datasets."""
    return Vocab.build(count_tokens(datasets_), max_size=max_size, min_freq=min_freq)


def _numericalize_batch(batch: dict, itos: list[str]) -> dict:
    vocab = _vocab_for(itos)
    ids = [vocab.numericalize(tokens) for tokens in batch["tokens"]]
    return {"ids": ids, "length": [len(x) for x in ids]}


_VOCAB_CACHE: dict = {}


def _vocab_for(itos: list[str]) -> Vocab:
    key = (len(itos), hash(tuple(itos)))
    if key not in _VOCAB_CACHE:
        _VOCAB_CACHE.clear()
        _VOCAB_CACHE[key] = Vocab(list(itos))
    return _VOCAB_CACHE[key]


def numericalize(ds: Dataset | DatasetDict, vocab: Vocab, num_proc: int = 1) -> Dataset | DatasetDict:
    """Add ``ids`` (int32) and ``length`` columns; cached by fingerprint (vocab included)."""
    return ds.map(_numericalize_batch, batched=True, fn_kwargs={"itos": vocab.itos},
                  num_proc=num_proc if num_proc > 1 else None, desc="Numericalizing",
                  features=None)


def token_ids(ds: Dataset) -> list[np.ndarray]:
    """The ``ids`` column as a list of int64 arrays."""
    if ds._indices is not None:
        ds = ds.flatten_indices()
    column = ds.data.column("ids")
    flat = column.combine_chunks()
    offsets = np.asarray(flat.offsets)
    values = np.asarray(flat.values, dtype=np.int64)
    return [values[offsets[i]:offsets[i + 1]] for i in range(len(offsets) - 1)]


def token_stream(ds: Dataset) -> np.ndarray:
    """The ``ids`` column as one memory-mapped int32 array on disk, for corpora larger than RAM.

    Written chunk by chunk from the arrow table (never whole in memory) into the cache, keyed by
    the dataset's fingerprint, so a second call only maps the file.
    """
    folder = cache_dir() / "streams"
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"{ds._fingerprint}.int32"
    if not path.exists():
        if ds._indices is not None:
            ds = ds.flatten_indices()
        partial = path.with_name(path.name + f".partial-{os.getpid()}")
        with open(partial, "wb") as handle:
            for chunk in ds.data.column("ids").chunks:
                offsets = np.asarray(chunk.offsets)
                values = np.asarray(chunk.values)[offsets[0]:offsets[-1]]
                handle.write(values.astype(np.int32).tobytes())
        partial.replace(path)
    return np.memmap(path, dtype=np.int32, mode="r")
