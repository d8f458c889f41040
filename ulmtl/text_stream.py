"""The texts of a file to classify, read lazily: ``ulmtl predict`` streams files larger than memory."""
from __future__ import annotations

import csv
import io
import json
import sys
from pathlib import Path

from ulmtl.datasets.files import _text_of, swallowed_row
from ulmtl.datasets.layout import (
    LATIN1_HINT, DataError, long_csv_fields, parquet_errors, text_encoding_problem, undecodable_file,
)


class TextStream:
    """The texts of an unlabelled file, read lazily in file order, so a file larger than memory
    can be classified: CSV / TSV / JSON lines / parquet with a ``text_column``, or plain text, one
    text per line (``.txt`` or any other suffix). ``"-"`` reads standard input (plain text unless
    ``file_format`` says otherwise); ``file_format`` ("csv", "tsv", "jsonl", "parquet", "txt")
    overrides the suffix. An empty text is an error naming its line, unless ``skip_empty``: then
    it is skipped and counted in ``skipped``."""

    FORMATS = ("csv", "tsv", "jsonl", "parquet", "txt")

    def __init__(self, path: str | Path, text_column: str = "text", encoding: str = "utf-8",
                 file_format: str = "", skip_empty: bool = False):
        self.stdin = str(path) == "-"
        self.path = Path(path)
        self.name = "standard input" if self.stdin else str(path)
        suffix = self.path.suffix.lower().lstrip(".")
        self.format = file_format or ("txt" if self.stdin else {"json": "jsonl"}.get(suffix, suffix))
        if self.format not in self.FORMATS:
            if file_format:
                raise DataError(f"unknown input format {file_format!r}; use one of {', '.join(self.FORMATS)}")
            self.format = "txt"
        if self.stdin and self.format == "parquet":
            raise DataError("parquet cannot be read from standard input; give its path")
        if not self.stdin:
            if not self.path.is_file():
                raise DataError(f"{path}: no such file" + (" (a folder)" if self.path.is_dir() else ""))
        problem = text_encoding_problem(encoding)
        if problem:
            raise DataError(f"{self.name}: encoding {problem}")
        self.text_column, self.encoding, self.skip_empty = text_column, encoding, skip_empty
        self.skipped = 0

    def __iter__(self):
        rows = self._parquet_rows() if self.format == "parquet" else self._rows()
        for where, value in rows:
            text = _text_of(value, where, self.text_column)
            if text is None or not text.strip():
                if self.skip_empty:
                    self.skipped += 1
                    continue
                raise DataError(f"{where}: the text is empty (--skip-empty skips such rows)")
            yield text

    def _lines(self):
        """(line number, decoded line with its line break; only a line feed ends a line) of the file or
        standard input."""
        handle = sys.stdin.buffer if self.stdin else open(self.path, "rb")
        text = io.TextIOWrapper(handle, encoding=self.encoding, newline="\n")
        line_no = 0
        try:
            for line_no, line in enumerate(text, 1):
                yield line_no, line.lstrip("\ufeff") if line_no == 1 else line
        except UnicodeDecodeError as err:
            if self.stdin:  # read once: the bytes are somewhere in the read-ahead after the last line
                raise DataError(f"{self.name}, after line {line_no}: bytes are not valid {self.encoding} "
                                f"({err.reason}); {LATIN1_HINT}") from None
            raise undecodable_file(self.path, self.encoding, err.reason) from None
        finally:
            if self.stdin:
                text.detach()
            else:
                text.close()

    def _rows(self):
        """(where, text value) of each row of a text, CSV / TSV or JSON lines input."""
        lines = self._lines()
        if self.format == "txt":
            for line_no, line in lines:
                yield f"{self.name}, line {line_no}", line.rstrip("\r\n")
            return
        if self.format == "jsonl":
            for line_no, line in lines:
                if not line.strip():
                    continue
                where = f"{self.name}, line {line_no}"
                try:
                    record = json.loads(line)
                except json.JSONDecodeError as err:
                    raise DataError(f"{where}: not valid JSON ({err.msg}); give JSON lines, one object per "
                                    f"line") from None
                if not isinstance(record, dict):
                    raise DataError(f"{where}: each line must be a JSON object")
                if self.text_column not in record:
                    raise DataError(f"{where}: no field {self.text_column!r} (fields: "
                                    f"{', '.join(map(str, record))}); pass --text-column")
                yield where, record[self.text_column]
            return
        tsv = self.format == "tsv"
        numbered = iter(lines)
        line_at, ended = [0], [False]

        def text_lines():
            for line_no, line in numbered:
                line_at[0] = line_no
                yield line
            ended[0] = True  # the reader asked for more: a row that ends here is in an open quote

        with long_csv_fields():
            reader = csv.reader(text_lines(), delimiter="\t" if tsv else ",",
                                quoting=csv.QUOTE_NONE if tsv else csv.QUOTE_MINIMAL)
            try:
                header = next(reader, None)
                if header is None:
                    raise DataError(f"{self.name}: the file is empty (no header row)")
                if self.text_column not in header:
                    raise DataError(f"{self.name}: no column {self.text_column!r}; columns are "
                                    f"{', '.join(header)} (pass --text-column)")
                at = header.index(self.text_column)
                start = line_at[0] + 1
                for row in reader:
                    first, last, start = start, line_at[0], line_at[0] + 1
                    where = f"{self.name}, row at line {first}"
                    if ended[0]:
                        raise DataError(f"{self.name}, line {first}: the row runs on to the end of the file "
                                        f"(line {last}): is a quote left open?")
                    if not row:
                        continue
                    if len(row) != len(header):
                        raise DataError(f"{where}: {len(row)} fields, but the header has {len(header)}")
                    problem = None if tsv else swallowed_row(self.name, header, first, last, row, _like_a_row)
                    if problem:  # without labels to go by, a quoted text with commas can look the same
                        print(f"ulmtl: warning: {problem}; if a quote was left open, those rows were read as "
                              f"this one text (a .tsv file is read without quote processing)", file=sys.stderr)
                    yield where, row[at]
            except csv.Error as err:
                raise DataError(f"{self.name}, line {line_at[0]}: malformed {'TSV' if tsv else 'CSV'} "
                                f"({err})") from None

    def _parquet_rows(self, batch_rows: int = 1000):
        import pyarrow.parquet as pq
        with parquet_errors(self.path):
            parquet = pq.ParquetFile(self.path)
            columns = parquet.schema_arrow.names
            if self.text_column not in columns:
                raise DataError(f"{self.path}: no column {self.text_column!r}; columns are "
                                f"{', '.join(columns)} (pass --text-column)")
            row = 0
            for batch in parquet.iter_batches(batch_size=batch_rows, columns=[self.text_column]):
                for value in batch.column(0).to_pylist():
                    row += 1
                    yield f"{self.path}, row {row}", value


def _like_a_row(fields: dict[int, str]) -> bool:
    """Whether a line inside a field of an unlabelled CSV looks like a row that the field took: two
    or more fields, each after a comma not empty and not starting with a space (as in prose)."""
    after_commas = list(fields.values())[1:]
    return bool(after_commas) and all(f and not f[0].isspace() for f in after_commas)
