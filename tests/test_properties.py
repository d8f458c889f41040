"""Property-based tests of the file loaders: any well-formed file loads exactly; a malformed one
gives a clear error naming the file and line."""
from __future__ import annotations

import csv
import json
import re
import tempfile
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from ulmtl.datasets import DataError, load_files

# Any Unicode text (no NUL, no surrogates) that is not blank.
TEXT = st.text(st.characters(blacklist_categories=("Cs",), blacklist_characters="\x00"), min_size=1,
               max_size=40).filter(lambda t: t.strip() != "")
LABEL = st.sampled_from(["pos", "neg", "neutral", "42"])
ROWS = st.lists(st.tuples(TEXT, LABEL), min_size=2, max_size=25).filter(
    lambda rows: len({label for _, label in rows}) >= 2)
SETTINGS = settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])


def tsv_text(text: str) -> str:
    """A text as a TSV field holds it: no tab or line break (a TSV is read without quoting)."""
    return re.sub(r"[\t\r\n]", " ", text)


def write(rows, suffix: str, folder: Path) -> Path:
    path = folder / f"train{suffix}"
    if suffix == ".csv":
        with open(path, "w", newline="", encoding="utf-8") as handle:
            writer = csv.writer(handle)
            writer.writerow(["text", "label"])
            writer.writerows(rows)
    elif suffix == ".tsv":
        path.write_text("".join(f"{t}\t{y}\n" for t, y in [("text", "label"), *rows]), encoding="utf-8")
    else:
        path.write_text("".join(json.dumps({"text": t, "label": y}) + "\n" for t, y in rows), encoding="utf-8")
    return path


@pytest.mark.parametrize("suffix", [".csv", ".tsv", ".jsonl"])
@SETTINGS
@given(rows=ROWS)
def test_any_well_formed_file_loads_every_row_unchanged(suffix, rows):
    if suffix == ".tsv":
        rows = [(tsv_text(t), y) for t, y in rows]
    with tempfile.TemporaryDirectory() as tmp:
        path = write(rows, suffix, Path(tmp))
        data = load_files(path, test=path)
    train = data["train"]
    names = train.features["label"].names
    assert train["text"] == [t for t, _ in rows]
    assert [names[i] for i in train["label"]] == [y for _, y in rows]
    assert len(data["test"]) == len(rows)


@SETTINGS
@given(rows=ROWS, where=st.integers(min_value=0, max_value=24), extra=st.integers(min_value=1, max_value=3))
def test_a_ragged_csv_row_is_an_error_naming_file_and_line(rows, where, extra):
    where = where % len(rows)
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "train.csv"
        lines = []
        for i, (text, label) in enumerate(rows):
            fields = [text, label] + (["x"] * extra if i == where else [])
            lines.append(fields)
        with open(path, "w", newline="", encoding="utf-8") as handle:
            writer = csv.writer(handle)
            writer.writerow(["text", "label"])
            writer.writerows(lines)
        # The line the bad row ends on, as the csv module counts it (texts may hold newlines).
        with open(path, newline="", encoding="utf-8") as handle:
            reader = csv.reader(handle)
            for index, _ in enumerate(reader):
                if index == where + 1:
                    bad_line = reader.line_num
                    break
        with pytest.raises(DataError) as error:
            load_files(path, test=path)
    message = str(error.value)
    assert str(path) in message and f"line {bad_line}" in message


@SETTINGS
@given(rows=ROWS, where=st.integers(min_value=0, max_value=24))
def test_a_broken_json_line_is_an_error_naming_its_line(rows, where):
    where = where % len(rows)
    with tempfile.TemporaryDirectory() as tmp:
        path = write(rows, ".jsonl", Path(tmp))
        lines = path.read_text(encoding="utf-8").splitlines()
        lines[where] = lines[where][:-1]  # drop the closing brace
        path.write_text("\n".join(lines) + "\n", encoding="utf-8")
        with pytest.raises(DataError, match=f"line {where + 1}: not valid JSON"):
            load_files(path, test=path)
