"""The user's own files -> a DatasetDict and a :class:`LoadReport`: CSV / TSV / JSON lines (or a
JSON array) / parquet, or a folder with one sub-folder per class.

Multi-label data (a set of labels per text) comes in three forms: a label that is a list (JSON
lines, JSON, parquet), a label field holding labels split by ``label_separator`` (e.g. ``a|b`` in
a CSV), or one 0/1 column per label (``label_columns``). Its ``label`` column is then a
``List(ClassLabel)``."""
from __future__ import annotations

import csv
import json
import math
import os
import re
import sys
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TextIO

from datasets import DatasetDict

from ulmtl.datasets.layout import (
    DataError, labelled, long_csv_fields, multilabelled, parquet_errors, stratified_split,
    text_encoding_problem, undecodable_file,
)


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
    multilabel: bool = False  # a set of labels per text
    without_labels: int = 0  # multi-label rows whose set of labels is empty


@dataclass
class LoadReport:
    """What a load read: each of the user's files, the rows of each split, and warnings."""
    source: str
    splits: dict[str, int]
    files: list[FileReport] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)
    multilabel: bool = False

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
        if self.multilabel:
            out.append("ulmtl: multi-label data: a set of labels per text"
                       + "".join(f"; {f.without_labels} rows of {f.path} have no label" for f in self.files
                                 if f.without_labels))
        return out

    def show(self, out: TextIO | None = None) -> None:
        """Print :meth:`lines` on ``out`` (default stdout) and the warnings on stderr."""
        for line in self.lines():
            print(line, file=out or sys.stdout, flush=True)
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


def _label_set(value, where: str, column: str, separator: str) -> tuple[str, ...]:
    """A multi-label row's labels (each once, in their order): a list's items, or a string split at
    ``separator`` (an empty field, or an empty piece as in ``a|``, adds no label)."""
    if isinstance(value, str):
        items = value.split(separator) if separator else [value]
    elif isinstance(value, (list, tuple)):
        items = value
    else:
        items = [value]  # a number or boolean: one label
    names = []
    for item in items:
        if isinstance(item, (dict, list, tuple)):
            raise DataError(f"{where}: field {column!r} (the labels) holds {_kind(item)}; each label is a "
                            f"string, a number or a boolean")
        name = _class_name(item, where, column)
        if name is None and not isinstance(item, str):
            raise DataError(f"{where}: field {column!r} (the labels) holds a missing label (null)")
        if name is not None:
            names.append(name)
    return tuple(dict.fromkeys(names))


INDICATORS = {"0": False, "1": True, "0.0": False, "1.0": True, "false": False, "true": True}


def _indicator(value, where: str, column: str) -> bool:
    """The value of a 0/1 label column: 0 or 1, false or true (as JSON values or text)."""
    if isinstance(value, bool):
        return value
    if isinstance(value, (int, float)) and value in (0, 1):
        return bool(value)
    if isinstance(value, str) and value.strip().lower() in INDICATORS:
        return INDICATORS[value.strip().lower()]
    shown = "missing" if value is None or (isinstance(value, float) and math.isnan(value)) else repr(value)
    raise DataError(f"{where}: field {column!r} is {shown}; a label column (label_columns) holds 0 or 1 "
                    f"(or true / false)")


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
        with long_csv_fields(), open(path, newline="", encoding=read_encoding) as handle:
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
        raise undecodable_file(path, encoding, err.reason) from None
    except csv.Error as err:
        raise DataError(f"{path}, line {last + 1}: malformed {'TSV' if tsv else 'CSV'} ({err})") from None
    if not tsv:
        _refuse_swallowed_rows(path, header, spans, label_column)
    return [(f"{path}, row at line {first}", dict(zip(header, row))) for first, _, row in spans], header


_LINE_BREAK = re.compile(r"\r\n|\r|\n")


def _refuse_swallowed_rows(path: Path, header: list[str], spans: list[tuple[int, int, list[str]]],
                           label_column: str) -> None:
    """:func:`swallowed_row` for each row of a labelled CSV, refused: a line is shaped like a row when
    a known class is where the label goes. A label field spanning lines is refused too."""
    if label_column not in header:
        return  # the missing column is reported by the caller
    label_at = header.index(label_column)
    classes = {row[label_at].strip() for _, _, row in spans} - {""}

    def known_class(fields: dict[int, str]) -> bool:
        return fields.get(label_at, "").strip() in classes

    for first, last, row in spans:
        if last > first and _LINE_BREAK.search(row[label_at]):
            raise DataError(f"{path}, line {first}: the label field {label_column!r} runs on to line "
                            f"{last}: is a quote left open?")
        problem = swallowed_row(path, header, first, last, row, known_class)
        if problem:
            raise DataError(f"{problem}. In a CSV, quote a field that holds quotes and double each quote in it "
                            f"(\"\"), or use a .tsv file, which is read without quote processing")


def swallowed_row(path: str | Path, header: list[str], first: int, last: int, row: list[str],
                  shaped: Callable[[dict[int, str]], bool]) -> str | None:
    """A CSV field that begins with a quote runs on to the next quote anywhere later, and the rows
    in between become part of it while the field count may still match. What is wrong with a row
    (lines ``first`` to ``last``) with a field spanning lines that holds a line ``shaped`` like a
    row; None for any other row. ``shaped`` gets the line's fields keyed by the column each would be
    in, when their number fits: a whole line, columns 0 to n - 1; the rest of the row the field opens
    on, the field's column on; the start of the row the field closes on, up to the field's column."""
    if last == first:
        return None
    n, line = len(header), first
    for column, value in enumerate(row):
        parts = _LINE_BREAK.split(value)
        for k, part in enumerate(parts if len(parts) > 1 else []):
            fields = next(csv.reader([part]), [])
            if 0 < k < len(parts) - 1:  # a whole line inside the field
                start = 0 if len(fields) == n else None
            elif k == 0:  # the rest of the row the field opens on
                start = column if len(fields) == n - column else None
            else:  # the start of the row the field closes on
                start = 0 if len(fields) == column + 1 else None
            if start is not None and shaped(dict(enumerate(fields, start))):
                return (f"{path}, line {first}: field {header[column]!r} runs on to line {last} and holds "
                        f"lines shaped like rows (line {line + k}: {part[:60]!r}): a field that begins "
                        f"with a quote runs to the next quote, taking the rows in between")
        line += len(parts) - 1
    return None


def _json_rows(path: Path, encoding: str) -> tuple[list[tuple[str, dict]], list[str]]:
    """Rows of a JSON lines file, or of a JSON file holding one top-level array of objects (each
    row named by its line or its place in the array); and the keys seen."""
    try:
        text = path.read_text(encoding=encoding)  # line breaks read as "\n"
    except UnicodeDecodeError as err:
        raise undecodable_file(path, encoding, err.reason) from None
    lines = text.lstrip("\ufeff").split("\n")
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
                split: str, label_separator: str = "",
                label_columns: tuple[str, ...] = ()) -> tuple[list[str], list, FileReport]:
    """Rows of a CSV / TSV / JSON lines / JSON array / parquet file: texts, class names (for
    multi-label data: tuples of class names), report."""
    suffix = path.suffix.lower()
    if suffix in (".csv", ".tsv"):
        rows, columns = _delimited_rows(path, encoding, label_columns[0] if label_columns else label_column)
    elif suffix in (".jsonl", ".json"):
        rows, columns = _json_rows(path, encoding)
    elif suffix == ".parquet":
        import pyarrow.parquet as pq
        with parquet_errors(path):
            table = pq.read_table(path)
        columns = table.column_names
        rows = [(f"{path}, row {i + 1}", r) for i, r in enumerate(table.to_pylist())]
    else:
        raise DataError(f"{path}: unsupported file type {suffix!r} (use .csv, .tsv, .jsonl, .json, .parquet "
                        f"or a folder with one sub-folder per class)")
    if not rows:
        raise DataError(f"{path}: no data rows")
    for column in (text_column, *(label_columns or [label_column])):
        if column not in columns:
            raise DataError(f"{path}: no column {column!r}; columns are {', '.join(map(str, columns))}")
    texts, labels, skipped = [], [], 0
    kinds: dict[str, set[str]] = {}
    first_row: tuple[str, bool] | None = None  # where the first label was read, and whether it was a list
    for where, row in rows:
        text = _text_of(row.get(text_column), where, text_column)
        if text is None or not text.strip():
            if skip_empty:
                skipped += 1
                continue
            raise DataError(f"{where}: field {text_column!r} is empty (pass skip_empty=True, or "
                            f"--skip-empty to a recipe, to skip such rows; the count is reported)")
        texts.append(text)
        if label_columns:
            labels.append(tuple(c for c in label_columns if _indicator(row.get(c), where, c)))
            continue
        value = row.get(label_column)
        if value is None or (isinstance(value, float) and math.isnan(value)):
            raise DataError(f"{where}: field {label_column!r} (the label) is missing")
        is_list = isinstance(value, (list, tuple))
        first_row = first_row or (where, is_list)
        if is_list != first_row[1] and not label_separator:
            raise DataError(f"{where}: field {label_column!r} is {_kind(value)}, but at {first_row[0]} it is "
                            f"{'a list' if first_row[1] else 'one label'}: give every row a list of labels "
                            f"(multi-label) or every row one label")
        if is_list or label_separator:
            labels.append(_label_set(value, where, label_column, label_separator))
            for item in value if is_list else []:
                if _class_name(item, where, label_column) is not None:
                    kinds.setdefault(_class_name(item, where, label_column), set()).add(_kind(item))
            continue
        name = _class_name(value, where, label_column)
        if name is None:
            raise DataError(f"{where}: field {label_column!r} (the label) is missing")
        kinds.setdefault(name, set()).add(_kind(value))
        labels.append(name)
    multilabel = bool(label_columns or label_separator or (first_row and first_row[1]))
    report = FileReport(str(path), split, len(rows), len(texts), skipped_empty=skipped, multilabel=multilabel,
                        without_labels=sum(not names for names in labels) if multilabel else 0)
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
                raise undecodable_file(path, encoding, err.reason) from None
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
                  encoding: str = "utf-8", skip_empty: bool = False, split: str = "train",
                  label_separator: str = "", label_columns: tuple[str, ...] | list[str] = ()
                  ) -> tuple[list[str], list, FileReport]:
    """Texts and class names of a file or class folder, and what was read from it. Multi-label
    data (``label_separator``, ``label_columns``, or labels that are lists) gives a tuple of class
    names per text, and ``report.multilabel``."""
    path = Path(path)
    label_columns = _check_label_options(path, text_column, label_separator, label_columns)
    problem = text_encoding_problem(encoding)
    if problem:
        raise DataError(f"{path}: encoding {problem}")
    if not path.exists():
        raise DataError(f"{path}: no such file or folder")
    if path.is_dir():
        if label_separator or label_columns:
            raise DataError(f"{path}: a folder with one sub-folder per class holds one label per text; "
                            f"label_separator and label_columns (--label-separator, --label-columns) are "
                            f"for files")
        return _read_class_folder(path, encoding, skip_empty, split)
    if path.stat().st_size == 0:
        raise DataError(f"{path}: the file is empty")
    return _read_table(path, text_column, label_column, encoding, skip_empty, split, label_separator,
                       label_columns)


def _check_label_options(path: Path, text_column: str, label_separator: str,
                         label_columns: tuple[str, ...] | list[str]) -> tuple[str, ...]:
    """``label_columns`` as a tuple, once the multi-label options are known to fit together."""
    label_columns = tuple(label_columns)
    if label_separator and label_columns:
        raise DataError(f"{path}: label_separator splits the labels of one label column and label_columns "
                        f"names one 0/1 column per label; give one or the other")
    if label_columns:
        repeated = sorted({c for c in label_columns if label_columns.count(c) > 1})
        if repeated or "" in label_columns or len(label_columns) < 2:
            raise DataError(f"{path}: label_columns must name two or more distinct columns, got "
                            f"{list(label_columns)}")
        if text_column in label_columns:
            raise DataError(f"{path}: the text column {text_column!r} is also named in label_columns")
    return label_columns


def read_files(train: str | Path, test: str | Path | None = None, text_column: str = "text",
               label_column: str = "label", test_fraction: float = 0.1, seed: int = 0,
               encoding: str = "utf-8", skip_empty: bool = False, label_separator: str = "",
               label_columns: tuple[str, ...] | list[str] = ()) -> tuple[DatasetDict, LoadReport]:
    """:func:`load_files` without printing: the DatasetDict and its :class:`LoadReport` (rows read
    and kept per file, what was skipped, warnings)."""
    for what, column in (("text", text_column), ("label", label_column)):
        if not column and not (what == "label" and label_columns):
            raise DataError(f"{train}: the {what} column name is empty ({what}_column='', or "
                            f"--{what}-column= to a recipe); give the column that holds the {what}s")
    train_texts, train_labels, train_report = read_labelled(
        train, text_column, label_column, encoding, skip_empty, "train", label_separator, label_columns)
    files, warnings = [train_report], []
    multilabel = train_report.multilabel
    if multilabel:
        names = _label_names(label_columns or [n for labels in train_labels for n in labels])
    else:
        names = _label_names(train_labels)
    if len(names) < 2:
        found = (f"only one class ({names[0]!r}) in the labels" if names
                 else f"no rows left ({train_report.skipped_empty} skipped as empty)" if not train_texts
                 else "no labels")
        raise DataError(f"{train}: {found}; a classifier needs two or more classes")
    warnings += [f"{train}: classes {', '.join(map(repr, group))} differ only in case, type or the way "
                 f"a number is written; they are kept as different classes: make the labels the same "
                 f"if they are one class" for group in _near_duplicate_classes(names)]
    index = {n: i for i, n in enumerate(names)}

    def encode(labels: list) -> list:
        return [[index[n] for n in label_set] for label_set in labels] if multilabel else [index[x] for x in labels]

    train_ids = encode(train_labels)
    if multilabel:
        unused = [n for n in names if not any(n in label_set for label_set in train_labels)]
        if unused:
            warnings.append(f"{train}: no training row has the label(s) {', '.join(map(repr, unused))}: the "
                            f"classifier cannot learn to give them")
    if test:
        test_texts, test_labels, test_report = read_labelled(
            test, text_column, label_column, encoding, skip_empty, "test", label_separator, label_columns)
        files.append(test_report)
        if test_report.multilabel != multilabel:
            kinds = ("a set of labels per text", "one label per text")
            raise DataError(f"{test}: the test file has {kinds[not test_report.multilabel]} but the training "
                            f"data {train} has {kinds[not multilabel]}; give both the same form (a list per "
                            f"row, label_separator or label_columns)")
        if os.path.samefile(train, test):
            warnings.append(f"{test} is also the training file: the test metrics are measured on "
                            f"training rows")
        seen = {n for labels in test_labels for n in labels} if multilabel else set(test_labels)
        unseen = sorted(seen - set(names))
        if unseen:
            raise DataError(f"{test}: labels {unseen} never appear in the training data {train}")
        test_ids = encode(test_labels)
    else:
        # Multi-label data: a seeded random split (every row one stratum).
        tr, te = stratified_split([0] * len(train_ids) if multilabel else train_ids, test_fraction, seed)
        if not te:
            raise DataError(f"{train}: holding out {test_fraction:g} of each class leaves no test rows "
                            f"({len(train_ids)} rows in all); add rows or pass a test file (--test to "
                            f"a recipe)")
        test_texts, test_ids = [train_texts[i] for i in te], [train_ids[i] for i in te]
        train_texts, train_ids = [train_texts[i] for i in tr], [train_ids[i] for i in tr]
    split = multilabelled if multilabel else labelled
    result = DatasetDict({"train": split(train_texts, train_ids, names), "test": split(test_texts, test_ids, names)})
    return result, LoadReport(str(train), {k: len(v) for k, v in result.items()}, files, warnings, multilabel)


def load_files(train: str | Path, test: str | Path | None = None, text_column: str = "text",
               label_column: str = "label", test_fraction: float = 0.1, seed: int = 0,
               encoding: str = "utf-8", skip_empty: bool = False, label_separator: str = "",
               label_columns: tuple[str, ...] | list[str] = ()) -> DatasetDict:
    """The user's own data: CSV / TSV / JSON lines (or a JSON array) / parquet, or a folder per class.

    Without ``test``, a seeded stratified split of ``train``. Rows are never dropped silently:
    empty texts are an error unless ``skip_empty``; the rows read from each file, what was skipped
    and any warning are printed (:func:`read_files` returns them as a :class:`LoadReport`).
    Multi-label data: labels that are lists (JSON lines, JSON, parquet), a label field split at
    ``label_separator`` (``"|"`` reads ``a|b`` as the labels a and b), or ``label_columns``, one 0/1
    column per label; its ``label`` column holds a list of class ids per text.
    """
    data, report = read_files(train, test, text_column, label_column, test_fraction, seed, encoding,
                              skip_empty, label_separator, label_columns)
    report.show()
    return data
