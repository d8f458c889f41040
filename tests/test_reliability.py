"""Bad input at every public entry point: a clear message naming the file, line and field, a
non-zero exit from a recipe, no traceback from inside a library, and no row dropped silently.
Also: the same seed, data and config give the same results on CPU.

RELIABILITY.md lists every case here, by test name. Models are tiny (2 layers, 16 units); the
recipe runs are subprocesses that fail while loading data, before any training.
"""
from __future__ import annotations

import csv
import json
import os
import pickle
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from datasets import Dataset

from conftest import TINY, synthetic
from ulmtl import (
    CheckpointError, ClassifierConfig, DataError, FinetuneConfig, PretrainConfig,
    TextClassifier, TokenizerConfig, finetune_lm, load_checkpoint, load_files, pretrain, read_files,
    save_checkpoint,
)
from ulmtl.config import OptimizerSettings
from ulmtl.datasets import load_corpus

REPO = Path(__file__).resolve().parents[1]


# =========================================================================== A. the custom recipe

def recipe_cli(tmp_path: Path, *args: str, recipe: str = "custom", smoke: bool = True):
    """Run ``recipes/<recipe>.py`` as a user would, in a fresh process."""
    env = dict(os.environ, OMP_NUM_THREADS="1", ULMTL_CACHE_DIR=str(tmp_path / "cache"),
               HF_DATASETS_OFFLINE="1", HF_HUB_OFFLINE="1")
    command = [sys.executable, str(REPO / "recipes" / f"{recipe}.py")] + (["--smoke"] if smoke else [])
    command += [*args, "--output", str(tmp_path / "out")]
    return subprocess.run(command, capture_output=True, text=True, env=env, cwd=tmp_path, timeout=600)


def assert_clean_error(result, *fragments: str) -> str:
    """Exit status 2, one ``error: ...`` line holding every fragment, and no traceback."""
    assert "Traceback" not in result.stderr, result.stderr
    assert result.returncode == 2, (result.returncode, result.stderr)
    errors = [line for line in result.stderr.splitlines() if line.startswith("error: ")]
    assert len(errors) == 1, result.stderr
    for fragment in fragments:
        assert fragment in errors[0], (fragment, errors[0])
    return errors[0]


def write(path: Path, content: str | bytes) -> Path:
    if isinstance(content, bytes):
        path.write_bytes(content)
    else:
        path.write_text(content, encoding="utf-8")
    return path


GOOD_ROWS = "text,label\ngood film,pos\nbad film,neg\nlovely plot,pos\nawful plot,neg\n"


@pytest.mark.slow
def test_cli_missing_file(tmp_path):
    assert_clean_error(recipe_cli(tmp_path, "--train", str(tmp_path / "nope.csv")),
                       str(tmp_path / "nope.csv"), "no such file")


@pytest.mark.slow
def test_cli_empty_file(tmp_path):
    path = write(tmp_path / "empty.csv", "")
    assert_clean_error(recipe_cli(tmp_path, "--train", str(path)), str(path), "the file is empty")


@pytest.mark.slow
def test_cli_header_without_rows(tmp_path):
    path = write(tmp_path / "header.csv", "text,label\n")
    assert_clean_error(recipe_cli(tmp_path, "--train", str(path)), str(path), "no data rows")


@pytest.mark.slow
def test_cli_missing_text_column(tmp_path):
    path = write(tmp_path / "d.csv", GOOD_ROWS)
    assert_clean_error(recipe_cli(tmp_path, "--train", str(path), "--text-column", "review"),
                       str(path), "no column 'review'", "columns are text, label")


@pytest.mark.slow
def test_cli_missing_label_column(tmp_path):
    path = write(tmp_path / "d.csv", GOOD_ROWS)
    assert_clean_error(recipe_cli(tmp_path, "--train", str(path), "--label-column", "stars"),
                       str(path), "no column 'stars'")


@pytest.mark.slow
def test_cli_repeated_column_name(tmp_path):
    path = write(tmp_path / "d.csv", "text,text,label\na,b,pos\nc,d,neg\n")
    assert_clean_error(recipe_cli(tmp_path, "--train", str(path)), str(path), "line 1", "['text']")


@pytest.mark.slow
def test_cli_whitespace_only_text(tmp_path):
    path = write(tmp_path / "d.csv", GOOD_ROWS + "   ,neg\n")
    assert_clean_error(recipe_cli(tmp_path, "--train", str(path)),
                       str(path), "line 6", "field 'text' is empty", "--skip-empty")


@pytest.mark.slow
def test_cli_skip_empty_counts_the_rows_it_skips(tmp_path):
    """The good path of --skip-empty (scratch strategy: no LM stages, seconds on a tiny model)."""
    texts, labels = synthetic(60, seed=11)
    rows = [f"{t},{y}" for t, y in zip(texts, labels)]
    rows[5], rows[40] = ",pos", "  ,neg"
    path = write(tmp_path / "d.csv", "text,label\n" + "\n".join(rows) + "\n")
    result = recipe_cli(tmp_path, "--train", str(path), "--skip-empty", "--classifier.strategy=scratch")
    assert result.returncode == 0, result.stderr
    assert "skipped 2 rows with empty text" in result.stdout
    assert f"ulmtl: read 60 rows from {path} (train)" in result.stdout
    metrics = json.loads((tmp_path / "out" / "metrics.json").read_text())
    assert metrics["skipped_empty_rows"] == 2
    assert metrics["data"]["files"] == [{"path": str(path), "split": "train", "rows_read": 60, "rows_kept": 58,
                                         "skipped_empty": 2, "skipped_hidden": 0, "warnings": [],
                                         "multilabel": False, "without_labels": 0}]
    assert metrics["data"]["splits"]["train"] + metrics["data"]["splits"]["test"] == 58
    # Every other row is used: none is dropped without being counted.
    assert metrics["n_train"] + metrics["test"]["n_test"] == 60 - 2


@pytest.mark.slow
def test_cli_missing_label_value(tmp_path):
    path = write(tmp_path / "d.csv", GOOD_ROWS + "so so film,\n")
    assert_clean_error(recipe_cli(tmp_path, "--train", str(path)),
                       str(path), "line 6", "field 'label' (the label) is missing")


@pytest.mark.slow
def test_cli_test_label_never_seen_in_training(tmp_path):
    train = write(tmp_path / "train.csv", GOOD_ROWS)
    test = write(tmp_path / "test.csv", "text,label\nfine film,pos\nso so,neutral\n")
    assert_clean_error(recipe_cli(tmp_path, "--train", str(train), "--test", str(test)),
                       str(test), "['neutral']", f"never appear in the training data {train}")


@pytest.mark.slow
def test_cli_single_class(tmp_path):
    path = write(tmp_path / "d.csv", "text,label\ngood film,pos\nlovely plot,pos\n")
    assert_clean_error(recipe_cli(tmp_path, "--train", str(path)),
                       str(path), "only one class ('pos')", "two or more classes")


@pytest.mark.slow
def test_cli_non_utf8_bytes(tmp_path):
    path = write(tmp_path / "d.csv", GOOD_ROWS.encode() + b"tr\xe8s bien,pos\n")
    assert_clean_error(recipe_cli(tmp_path, "--train", str(path)),
                       str(path), "line 6", "not valid utf-8", "--encoding=latin-1")


@pytest.mark.slow
def test_cli_ragged_row(tmp_path):
    path = write(tmp_path / "d.csv", "text,label\ngood film,pos\nbad film,neg,extra\nfine,pos\n")
    assert_clean_error(recipe_cli(tmp_path, "--train", str(path)),
                       str(path), "line 3", "3 fields, but the header has 2")


@pytest.mark.slow
def test_cli_unclosed_quote_names_the_line_it_opens_on(tmp_path):
    # The open quote swallows the rest of the file into one field: the row starts on line 3.
    path = write(tmp_path / "d.csv", 'text,label\ngood film,pos\n"bad film,neg\nfine,pos\nworse,neg\n')
    assert_clean_error(recipe_cli(tmp_path, "--train", str(path)),
                       str(path), "line 3", "1 fields", "runs on to line 5", "quote left open")


@pytest.mark.slow
def test_cli_csv_field_that_swallowed_rows(tmp_path):
    # The quote opening line 3 closes on line 5: lines 3-5 read as one row of 2 fields.
    path = write(tmp_path / "d.csv", 'text,label\ngood film,pos\n"bad film,neg\nfine,pos\nworse" one,neg\n'
                                     'lovely,pos\n')
    assert_clean_error(recipe_cli(tmp_path, "--train", str(path)),
                       str(path), "line 3", "field 'text' runs on to line 5", "shaped like rows")


@pytest.mark.slow
def test_cli_empty_label_column_name(tmp_path):
    path = write(tmp_path / "d.csv", GOOD_ROWS)
    assert_clean_error(recipe_cli(tmp_path, "--train", str(path), "--label-column="),
                       str(path), "the label column name is empty")


@pytest.mark.slow
def test_cli_wrong_typed_override(tmp_path):
    path = write(tmp_path / "d.csv", GOOD_ROWS)
    assert_clean_error(recipe_cli(tmp_path, "--train", str(path), "--classifier.lr=abc"),
                       "config key 'classifier.lr' expects float, got 'abc'")


@pytest.mark.slow
def test_cli_unknown_override_key(tmp_path):
    path = write(tmp_path / "d.csv", GOOD_ROWS)
    assert_clean_error(recipe_cli(tmp_path, "--train", str(path), "--classifier.nope=1"),
                       "unknown config key 'classifier.nope'", "known here:")


@pytest.mark.slow
def test_cli_too_few_rows_to_hold_out_a_test_split(tmp_path):
    path = write(tmp_path / "d.csv", GOOD_ROWS)
    assert_clean_error(recipe_cli(tmp_path, "--train", str(path)),
                       str(path), "leaves no test rows", "--test")


@pytest.mark.slow
def test_cli_pretrained_folder_holding_a_pickle(tmp_path):
    path = write(tmp_path / "d.csv", GOOD_ROWS)
    test = write(tmp_path / "test.csv", GOOD_ROWS)
    folder = tmp_path / "lm"
    folder.mkdir()
    write(folder / "weights.safetensors", b"not really")
    marker = tmp_path / "pwned"
    write(folder / "model.pkl", pickle.dumps(_Payload(marker)))
    assert_clean_error(recipe_cli(tmp_path, "--train", str(path), "--test", str(test),
                                  "--pretrained", str(folder)),
                       str(folder / "model.pkl"), "refusing")
    assert not marker.exists()


@pytest.mark.slow
def test_cli_pretrained_fastai_weights_holding_a_pickle_payload(tmp_path):
    path = write(tmp_path / "d.csv", GOOD_ROWS)
    folder = tmp_path / "wt103"
    folder.mkdir()
    marker = tmp_path / "pwned"
    torch.save({"model": {"0.encoder.weight": torch.zeros(2, 2)}, "x": _Payload(marker)}, folder / "fwd.pth")
    write(folder / "itos.pkl", pickle.dumps(["xxunk", "xxpad"]))
    assert_clean_error(recipe_cli(tmp_path, "--train", str(path), "--test", str(path),
                                  "--pretrained", str(folder)),
                       f"--pretrained {folder}", str(folder / "fwd.pth"), "refusing to load: the file names posix.system")
    assert not marker.exists()


@pytest.mark.slow
def test_cli_named_dataset_missing_from_the_data_dir(tmp_path):
    assert_clean_error(recipe_cli(tmp_path, "--data-dir", str(tmp_path / "nodata"), recipe="trec"),
                       "dataset 'trec' not found", str(tmp_path / "nodata" / "trec"))


def test_load_files_reads_a_csv_with_a_byte_order_mark(tmp_path):
    path = write(tmp_path / "excel.csv", b"\xef\xbb\xbf" + GOOD_ROWS.encode())
    data = load_files(path, path)
    assert data["test"]["text"][0] == "good film" and data["train"].num_rows == 4
    path = write(tmp_path / "excel.jsonl", b'\xef\xbb\xbf{"text": "good", "label": "pos"}\n'
                                           b'{"text": "bad", "label": "neg"}\n')
    assert load_files(path, path)["train"].num_rows == 2


# =========================================================================== A2. the user's files (API)
# The same loader as the recipes, called directly: fast, no subprocess.

def review_texts(n: int) -> list[str]:
    return [f"review number {i} of the file" for i in range(n)]


def write_rows(path: Path, rows: list[tuple[str, str]], sep: str, header=("text", "label")) -> Path:
    return write(path, "".join(sep.join(r) + "\n" for r in [header, *rows]))


def test_tsv_text_beginning_with_a_quote_keeps_every_row(tmp_path, capsys):
    """A quote opening text 50 used to run on to the next quote (text 90): 200 rows read as 160."""
    texts = review_texts(200)
    texts[49], texts[89] = '"Quoted" start of a review', 'he said "wow" loudly'
    rows = [(t, "pos" if i % 2 else "neg") for i, t in enumerate(texts)]
    path = write_rows(tmp_path / "d.tsv", rows, "\t")
    data = load_files(path, path)
    assert data["train"]["text"] == texts and data["test"].num_rows == 200
    assert f"ulmtl: read 200 rows from {path} (train)" in capsys.readouterr().out


@pytest.mark.parametrize("layout", ["text,label", "label,text"])
def test_csv_field_that_swallowed_rows_is_an_error(tmp_path, layout):
    texts = review_texts(200)
    texts[49], texts[89] = '"Quoted start of a review', 'he said "wow" loudly'
    rows = [(t, "pos" if i % 2 else "neg") for i, t in enumerate(texts)]
    if layout == "label,text":
        rows = [(y, t) for t, y in rows]
    path = write_rows(tmp_path / "d.csv", rows, ",", header=tuple(layout.split(",")))
    with pytest.raises(DataError) as info:
        load_files(path)
    message = str(info.value)
    for fragment in (str(path), "line 51", "field 'text' runs on to line 91", "shaped like rows", '""'):
        assert fragment in message, (fragment, message)


def test_csv_text_spanning_lines_with_commas_is_one_text(tmp_path):
    path = write(tmp_path / "d.csv", 'text,label\n"First line, with a comma\nsecond line, and more",pos\n'
                                     'plain,neg\n"a ""quoted"" word",neg\n')
    data, report = read_files(path, path)
    assert data["train"]["text"] == ["First line, with a comma\nsecond line, and more", "plain",
                                     'a "quoted" word']
    assert report.files[0].rows_read == 3


def test_every_file_read_is_counted_in_the_report(tmp_path):
    train = write_rows(tmp_path / "train.csv", [("good", "pos"), ("bad", "neg"), ("fine", "pos")], ",")
    test = write_rows(tmp_path / "test.tsv", [("great", "pos"), ("awful", "neg")], "\t")
    data, report = read_files(train, test)
    assert [(f.path, f.split, f.rows_read, f.rows_kept) for f in report.files] == [
        (str(train), "train", 3, 3), (str(test), "test", 2, 2)]
    assert report.splits == {"train": 3, "test": 2}
    assert report.lines() == [f"ulmtl: read 3 rows from {train} (train)", f"ulmtl: read 2 rows from {test} (test)"]
    assert json.loads(json.dumps(report.to_dict()))["files"][1]["rows_read"] == 2


def test_same_file_as_train_and_test_is_warned(tmp_path, capsys):
    path = write(tmp_path / "d.csv", GOOD_ROWS)
    _, report = read_files(path, path)
    assert report.warnings == [f"{path} is also the training file: the test metrics are measured on "
                               f"training rows"]
    load_files(path, path)
    assert f"ulmtl: warning: {path} is also the training file" in capsys.readouterr().err


def jsonl(path: Path, labels: list) -> Path:
    return write(path, "".join(json.dumps({"text": f"text {i}", "label": y}) + "\n"
                               for i, y in enumerate(labels)))


def test_equal_numeric_labels_are_one_class(tmp_path):
    path = jsonl(tmp_path / "d.jsonl", [1, 1.0, 0, 0.0, 1, 0])
    data, report = read_files(path, jsonl(tmp_path / "t.jsonl", [0, 1]))
    assert data["train"].features["label"].names == ["0", "1"]
    assert data["train"]["label"] == [1, 1, 0, 0, 1, 0]
    assert not report.all_warnings


@pytest.mark.parametrize("labels, duplicates", [
    (["pos", "Pos", "neg", "NEG"], ["'NEG', 'neg'", "'Pos', 'pos'"]),
    ([True, "true", False, "false"], ["'False', 'false'", "'True', 'true'"]),
    (["1", "1.0", "2", "2.0"], ["'1', '1.0'", "'2', '2.0'"]),  # strings, as a CSV has them
])
def test_labels_differing_in_case_or_type_are_warned(tmp_path, capsys, labels, duplicates):
    path = jsonl(tmp_path / "d.jsonl", labels * 2)
    test = jsonl(tmp_path / "t.jsonl", labels)
    data, report = read_files(path, test)
    assert len(data["train"].features["label"].names) == 4  # kept apart, but never silently
    assert len(report.warnings) == 2
    for warning, names in zip(sorted(report.warnings), duplicates):
        assert f"{path}: classes {names} differ only in case" in warning
    load_files(path, test)
    assert capsys.readouterr().err.count("ulmtl: warning: ") == 2


def test_a_number_and_a_string_label_are_one_class_with_a_warning(tmp_path):
    path = jsonl(tmp_path / "d.jsonl", [1, "1", 0, 0])
    data, report = read_files(path, path)
    assert data["train"].features["label"].names == ["0", "1"]
    assert report.files[0].warnings == [f"{path}: class '1' is written as a number and as a string; "
                                        f"they are read as one class"]


@pytest.mark.parametrize("kind, where", [
    ("csv", "row at line 3"), ("tsv", "row at line 3"), ("jsonl-null", "row at line 2"),
    ("jsonl-NaN", "row at line 2"), ("parquet-null", "row 2"), ("parquet-NaN", "row 2"),
])
def test_a_missing_label_is_an_error_naming_the_row(tmp_path, kind, where):
    if kind in ("csv", "tsv"):
        sep = "," if kind == "csv" else "\t"
        path = write(tmp_path / f"d.{kind}", f"text{sep}label\ngood{sep}pos\nso so{sep}\nbad{sep}neg\n")
    elif kind.startswith("jsonl"):
        path = write(tmp_path / "d.jsonl", '{"text": "good", "label": 1}\n{"text": "so so", "label": '
                     + ("null" if kind == "jsonl-null" else "NaN") + '}\n{"text": "bad", "label": 0}\n')
    else:
        import pyarrow as pa
        import pyarrow.parquet as pq
        label = ["pos", None, "neg"] if kind == "parquet-null" else [1.0, float("nan"), 0.0]
        path = tmp_path / "d.parquet"
        pq.write_table(pa.table({"text": ["good", "so so", "bad"], "label": label}), path)
    with pytest.raises(DataError) as info:
        load_files(path, path)
    assert str(info.value) == f"{path}, {where}: field 'label' (the label) is missing"


def class_folder(root: Path) -> Path:
    for label, texts in (("pos", ["good film", "lovely"]), ("neg", ["bad film", "awful"])):
        for i, text in enumerate(texts):
            (root / label).mkdir(parents=True, exist_ok=True)
            write(root / label / f"{i}.txt", text)
    return root


def test_class_folder_skips_and_counts_hidden_files_and_folders(tmp_path, capsys):
    folder = class_folder(tmp_path / "train")
    (folder / ".ipynb_checkpoints").mkdir()
    write(folder / ".ipynb_checkpoints" / "notes.txt", "not a class")
    write(folder / "pos" / ".~lock.0.txt#", "lock file")
    write(folder / "neg" / ".DS_Store", b"\x00\x00\x00\x01Bud1")
    (folder / "neg" / ".ipynb_checkpoints").mkdir()
    write(folder / "neg" / ".ipynb_checkpoints" / "0-checkpoint.txt", "bad film")
    data, report = read_files(folder, folder)
    assert data["train"].features["label"].names == ["neg", "pos"]
    assert sorted(data["train"]["text"]) == ["awful", "bad film", "good film", "lovely"]
    assert report.files[0].skipped_hidden == 4 and report.files[0].rows_read == 4
    load_files(folder, folder)
    assert f"ulmtl: skipped 4 hidden files or folders in {folder}" in capsys.readouterr().out


def test_empty_class_folder_is_an_error_naming_it(tmp_path):
    folder = class_folder(tmp_path / "train")
    (folder / "neutral").mkdir()
    write(folder / "neutral" / ".DS_Store", "x")
    with pytest.raises(DataError) as info:
        load_files(folder)
    assert str(info.value).startswith(f"{folder / 'neutral'}: the class folder 'neutral' holds no texts "
                                      f"(no text files; 1 hidden files or folders skipped)")


def test_csv_text_over_the_csv_modules_field_limit_is_read(tmp_path):
    long_text = "word " * (200 * 1024 // 5)  # 200 KiB; the csv module's default limit is 128 KiB
    path = write(tmp_path / "d.csv", f'text,label\n"{long_text}",pos\nshort,neg\n')
    data = load_files(path, path)
    assert data["train"]["text"][0] == long_text
    assert csv.field_size_limit() == 128 * 1024  # the module's limit is put back after reading


@pytest.mark.parametrize("text, kind", [('{"a": 1}', "an object"), ('["a", "b"]', "a list"),
                                        ("42", "a number"), ("true", "a boolean")])
def test_non_string_json_text_is_an_error_naming_line_and_field(tmp_path, text, kind):
    path = write(tmp_path / "d.jsonl", f'{{"text": "good", "label": 1}}\n{{"text": {text}, "label": 0}}\n')
    with pytest.raises(DataError) as info:
        load_files(path, path)
    assert str(info.value) == f"{path}, row at line 2: field 'text' is {kind}, not a string"


def test_pretty_printed_json_array_is_read(tmp_path):
    records = [{"text": "good film", "label": "pos"}, {"text": "bad film", "label": "neg"},
               {"text": "lovely", "label": "pos"}]
    path = write(tmp_path / "d.json", json.dumps(records, indent=2))
    data = load_files(path, path)
    assert data["train"]["text"] == ["good film", "bad film", "lovely"]
    write(path, json.dumps(records + [{"text": "", "label": "neg"}], indent=2))
    with pytest.raises(DataError, match=r"d\.json, record 4: field 'text' is empty"):
        load_files(path, path)


def test_pretty_printed_json_object_is_named_as_such(tmp_path):
    path = write(tmp_path / "d.json", json.dumps({"text": ["good", "bad"], "label": ["pos", "neg"]}, indent=2))
    with pytest.raises(DataError) as info:
        load_files(path, path)
    assert str(info.value).startswith(f"{path} is a JSON document spanning several lines, not JSON lines "
                                      f"(one object per line)")


def test_empty_label_column_name_is_named(tmp_path):
    path = write(tmp_path / "d.csv", GOOD_ROWS)
    with pytest.raises(DataError) as info:
        load_files(path, path, label_column="")
    assert str(info.value).startswith(f"{path}: the label column name is empty")


def test_latin1_byte_in_a_stage1_corpus_names_file_and_byte(tmp_path):
    folder = tmp_path / "corpus"
    folder.mkdir()
    write(folder / "a.txt", "first paragraph\n")
    bad = write(folder / "b.txt", b"a good line\ncaf\xe9 au lait\n")
    with pytest.raises(DataError) as info:
        load_corpus(folder)
    assert str(info.value).startswith(f"corpus {bad}, line 2, byte 15: bytes are not valid utf-8")


# =========================================================================== B. the Python API

class _Payload:
    """Unpickling this creates a marker file."""

    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f"touch '{self.marker}'",))


@pytest.fixture(scope="module")
def tiny_lm(tmp_path_factory) -> Path:
    """A tiny stage-2 LM: pretrained, then fine-tuned, on synthetic text (a few seconds)."""
    root = tmp_path_factory.mktemp("lm")
    texts, _ = synthetic(200, seed=1)
    pretrain(Dataset.from_dict({"text": texts}), root / "stage1",
             PretrainConfig(epochs=1, batch_size=8, bptt=10, checkpoint_every_s=0, valid_fraction=0.1),
             TINY, TokenizerConfig(max_vocab=500, min_freq=1))
    texts, _ = synthetic(100, seed=2)
    finetune_lm(texts, root / "stage1", root / "stage2", FinetuneConfig(epochs=1, batch_size=8, bptt=10),
                TokenizerConfig(min_freq=1))
    return root / "stage2"


def tiny_config(**changes) -> ClassifierConfig:
    base = dict(batch_size=16, bptt=10, max_len=100, unfreeze_plan=(1, 0), stage_epochs=(1, 1),
                stage_lr_mult=(1.0, 1.0))
    base.update(changes)
    return ClassifierConfig(**base)


@pytest.fixture(scope="module")
def fitted(tiny_lm) -> TextClassifier:
    texts, labels = synthetic(60, seed=3)
    return TextClassifier(tiny_config(), encoders=tiny_lm, verbose=False).fit(texts, labels)


BAD_TEXTS = [
    pytest.param([1, 2], "text 0 is int, not a string", id="non-string"),
    pytest.param(["good film", None], "text 1 is NoneType, not a string", id="none-text"),
    pytest.param([], "got an empty one", id="empty-list"),
    pytest.param("good film", "got a single string", id="single-string"),
    pytest.param(None, "got NoneType", id="none"),
    pytest.param(["good film", " \n"], "text 1 is empty or whitespace only", id="whitespace"),
]


@pytest.mark.parametrize("texts, message", BAD_TEXTS)
def test_api_fit_rejects_bad_texts(tiny_lm, texts, message):
    clf = TextClassifier(tiny_config(), encoders=tiny_lm, verbose=False)
    with pytest.raises(DataError, match=message):
        clf.fit(texts, ["pos", "neg"])


@pytest.mark.parametrize("texts, message", BAD_TEXTS)
def test_api_predict_and_score_reject_bad_texts(fitted, texts, message):
    with pytest.raises(DataError, match=message):
        fitted.predict(texts)
    with pytest.raises(DataError, match=message):
        fitted.score(texts, ["pos", "neg"])


@pytest.mark.parametrize("labels, message", [
    (["pos", "neg", "pos"], "2 texts but 3 labels"),
    (["pos", None], "label 1 is missing"),
    ([1.0, float("nan")], "label 1 is missing"),
    ("pn", "expected a list of labels, got str"),
    (7, "expected a list of labels, got int"),
])
def test_api_fit_and_score_reject_bad_labels(tiny_lm, fitted, labels, message):
    clf = TextClassifier(tiny_config(), encoders=tiny_lm, verbose=False)
    with pytest.raises(DataError, match=message):
        clf.fit(["good film", "bad film"], labels)
    with pytest.raises(DataError, match=message):
        fitted.score(["good film", "bad film"], labels)


def test_api_score_counts_labels_never_seen_in_training_as_wrong(fitted):
    first_right = float(fitted.predict(["good film"])[0] == "pos")
    assert fitted.score(["good film", "so so"], ["pos", "neutral"]) == first_right / 2
    assert fitted.score(["so so"], ["neutral"]) == 0.0
    with pytest.raises(DataError, match=r"the scored labels are numbers \(1\), but the training labels are "
                                        r"strings \(\['neg', 'pos'\]\)"):
        fitted.score(["good film", "so so"], [1, 0])


def test_api_use_before_fit_is_a_runtime_error(tmp_path):
    clf = TextClassifier(tiny_config(), verbose=False)
    for call in (lambda: clf.predict_proba(["a"]), lambda: clf.score(["a"], ["x"]),
                 lambda: clf.save(tmp_path / "clf")):
        with pytest.raises(RuntimeError, match="not fitted yet"):
            call()
    assert not (tmp_path / "clf").exists()


def _copy(folder: Path, target: Path) -> Path:
    shutil.copytree(folder, target)
    return target


def test_api_encoder_vocab_from_another_stage(tiny_lm, tmp_path):
    folder = _copy(tiny_lm, tmp_path / "lm")
    itos = json.loads((folder / "vocab.json").read_text())
    (folder / "vocab.json").write_text(json.dumps(itos[:-8]))
    texts, labels = synthetic(20, seed=4)
    message = rf"{len(itos)} embedding rows .* {len(itos) - 8} tokens; .*different stages"
    with pytest.raises(CheckpointError, match=message):
        TextClassifier(tiny_config(), encoders=folder, verbose=False).fit(texts, labels)
    with pytest.raises(CheckpointError, match=message):
        finetune_lm(texts, folder, tmp_path / "out", FinetuneConfig(epochs=1, batch_size=4, bptt=5))
    (folder / "vocab.json").write_text(json.dumps(itos[:-1] + [itos[0]]))
    with pytest.raises(CheckpointError, match="duplicate tokens"):
        TextClassifier(tiny_config(), encoders=folder, verbose=False).fit(texts, labels)


def test_api_encoder_folder_holding_a_pickle(tiny_lm, tmp_path):
    folder = _copy(tiny_lm, tmp_path / "lm")
    marker = tmp_path / "pwned"
    (folder / "optimizer.pkl").write_bytes(pickle.dumps(_Payload(marker)))
    texts, labels = synthetic(20, seed=4)
    with pytest.raises(CheckpointError, match="optimizer.pkl: refusing to load a pickle"):
        TextClassifier(tiny_config(), encoders=folder, verbose=False).fit(texts, labels)
    assert not marker.exists()


def test_api_saved_classifier_whose_config_no_longer_fits(fitted, tmp_path):
    folder = fitted.save(tmp_path / "clf")
    config_path = folder / "forward" / "config.json"
    config = json.loads(config_path.read_text())
    config["model"]["hidden_size"] = 32
    config_path.write_text(json.dumps(config))
    with pytest.raises(CheckpointError, match="forward: weights do not fit the saved config"):
        TextClassifier.load(folder)
    itos = json.loads((folder / "forward" / "vocab.json").read_text())
    (folder / "forward" / "vocab.json").write_text(json.dumps(itos[:-8]))
    with pytest.raises(CheckpointError, match="different stages"):
        TextClassifier.load(folder)


def test_api_huge_document_is_read_in_chunks(fitted):
    huge = " ".join(["the movie was good and"] * 4000)  # 20,000 words
    probs = fitted.predict_proba([huge, "bad film ."])
    assert probs.shape == (2, 2) and np.allclose(probs.sum(axis=1), 1.0)
    assert fitted.predict([huge])[0] in ("neg", "pos")


# =========================================================================== C. determinism

def test_same_seed_same_classifier_probabilities(tiny_lm):
    texts, labels = synthetic(60, seed=5)
    test_texts, _ = synthetic(20, seed=6)
    runs = [TextClassifier(tiny_config(), encoders=tiny_lm, verbose=False).fit(texts, labels)
            .predict_proba(test_texts) for _ in range(2)]
    np.testing.assert_array_equal(runs[0], runs[1])
    other = TextClassifier(tiny_config(seed=7), encoders=tiny_lm, verbose=False).fit(texts, labels)
    assert not np.array_equal(other.predict_proba(test_texts), runs[0])  # the seed does matter


TIMING_KEYS = ("train_seconds", "tokens_per_s")


def test_same_seed_same_pretraining_and_lm_finetuning(tmp_path):
    texts, _ = synthetic(120, seed=8)
    corpus = Dataset.from_dict({"text": texts})
    config = PretrainConfig(epochs=1, batch_size=8, bptt=10, checkpoint_every_s=0)
    metrics = [pretrain(corpus, tmp_path / f"lm{i}", config, TINY, TokenizerConfig(min_freq=1)) for i in range(2)]
    for m in metrics:
        for key in TIMING_KEYS:
            m.pop(key)
    assert metrics[0] == metrics[1]
    weights = [load_checkpoint(tmp_path / f"lm{i}").state_dict for i in range(2)]
    assert all(torch.equal(weights[0][k], weights[1][k]) for k in weights[0])
    tuned = [finetune_lm(texts[:60], tmp_path / "lm0", tmp_path / f"ft{i}",
                         FinetuneConfig(epochs=1, batch_size=8, bptt=10), TokenizerConfig(min_freq=1))
             for i in range(2)]
    assert tuned[0] == tuned[1]


# =========================================================================== D. run folders

def earlier_run(folder: Path) -> dict:
    """A stand-in for a complete earlier run: the files every test below checks are left alone."""
    folder.mkdir(parents=True)
    files = {"config.json": '{"seed": 1}', "metrics.json": '{"run_id": "earlier"}', "train_log.jsonl": "{}\n"}
    for name, text in files.items():
        write(folder / name, text)
    return files


@pytest.mark.slow
def test_cli_run_failing_on_bad_data_keeps_the_earlier_run(tmp_path):
    files = earlier_run(tmp_path / "out")
    path = write(tmp_path / "d.csv", "text,label\ngood film,pos\nbad film,\n")
    assert_clean_error(recipe_cli(tmp_path, "--train", str(path)), "field 'label'")
    assert {name: (tmp_path / "out" / name).read_text() for name in files} == files
    assert sorted(p.name for p in tmp_path.iterdir() if p.name.startswith("out")) == ["out"]


@pytest.mark.slow
def test_cli_output_that_is_a_file_is_refused_before_any_work(tmp_path):
    write(tmp_path / "out", "my notes")
    # The missing --train file is not reached: the output is checked first.
    assert_clean_error(recipe_cli(tmp_path, "--train", str(tmp_path / "missing.csv")),
                       str(tmp_path / "out"), "is a file, not a folder")
    assert (tmp_path / "out").read_text() == "my notes"


@pytest.mark.slow
def test_cli_output_holding_other_files_is_refused_before_any_work(tmp_path):
    write(tmp_path / "out.txt", "")  # not inside: a sibling is fine
    (tmp_path / "out").mkdir()
    write(tmp_path / "out" / "thesis.tex", "precious")
    assert_clean_error(recipe_cli(tmp_path, "--train", str(tmp_path / "missing.csv")),
                       str(tmp_path / "out"), "thesis.tex", "empty or new one")
    assert (tmp_path / "out" / "thesis.tex").read_text() == "precious"


@pytest.mark.slow
@pytest.mark.skipif(os.geteuid() == 0, reason="root writes into read-only folders")
def test_cli_read_only_output_is_refused_before_any_work(tmp_path):
    (tmp_path / "out").mkdir()
    (tmp_path / "out").chmod(0o555)
    try:
        assert_clean_error(recipe_cli(tmp_path, "--train", str(tmp_path / "missing.csv")),
                           str(tmp_path / "out"), "read-only")
    finally:
        (tmp_path / "out").chmod(0o755)


def rows_csv(path: Path, n: int) -> Path:
    texts, labels = synthetic(n, seed=11)
    return write(path, "text,label\n" + "".join(f"{t},{y}\n" for t, y in zip(texts, labels)))


@pytest.mark.slow
def test_cli_killed_run_leaves_the_earlier_run_and_the_next_run_replaces_it(tmp_path):
    import signal
    out = tmp_path / "out"
    data = rows_csv(tmp_path / "d.csv", 50)  # --smoke on 50 rows (its stage-1 LM is sized to fit)
    first = recipe_cli(tmp_path, "--train", str(data), "--seed=1", "--classifier.directions=forward,backward")
    assert first.returncode == 0, first.stderr
    before = {p.relative_to(out): p.read_bytes() for p in out.rglob("*") if p.is_file()}
    run_id = json.loads((out / "metrics.json").read_text())["run_id"]
    assert json.loads((out / "model" / "classifier.json").read_text())["run_id"] == run_id

    # A second run with another seed, killed during classifier training.
    env = dict(os.environ, OMP_NUM_THREADS="1", ULMTL_CACHE_DIR=str(tmp_path / "cache"), PYTHONUNBUFFERED="1")
    command = [sys.executable, str(REPO / "recipes" / "custom.py"), "--smoke", "--train", str(data),
               "--seed=2", "--classifier.stage_epochs=300,300", "--output", str(out)]
    with open(tmp_path / "stderr.txt", "w") as stderr:
        process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=stderr, text=True, env=env,
                                   cwd=tmp_path)
        for line in process.stdout:
            if line.startswith("[classifier-forward] epoch_done"):
                break
        process.send_signal(signal.SIGKILL)
        process.wait(timeout=60)
    assert process.returncode == -signal.SIGKILL
    assert {p.relative_to(out): p.read_bytes() for p in out.rglob("*") if p.is_file()} == before
    clf = TextClassifier.load(out / "model")
    assert list(clf.models_) == ["forward", "backward"]
    assert (tmp_path / f"out.partial-{process.pid}").is_dir()  # the killed run's own folder, beside

    # A complete third run replaces everything: no stale backward folders, a log of its own.
    third = recipe_cli(tmp_path, "--train", str(data), "--seed=3")
    assert third.returncode == 0, third.stderr
    assert sorted(p.name for p in tmp_path.iterdir() if p.name.startswith("out")) == ["out"]
    assert sorted(p.name for p in out.iterdir()) == ["config.json", "confusion_matrix.png", "lm-forward",
                                                     "metrics.json", "model", "report.md", "stage1-forward",
                                                     "train_log.jsonl", "training.png"]
    assert sorted(p.name for p in (out / "model").iterdir()) == ["README.md", "classifier.json", "forward"]
    assert json.loads((out / "config.json").read_text())["seed"] == 3
    stages = {json.loads(line)["stage"] for line in (out / "train_log.jsonl").read_text().splitlines()}
    assert stages == {"finetune_lm", "classifier-forward"}
    epochs = [line for line in (out / "train_log.jsonl").read_text().splitlines() if "finetune_lm" in line
              and "epoch_done" in line]
    assert len(epochs) == 1  # the log of one run, not appended to the first one's
    assert TextClassifier.load(out / "model").predict(["good film ."])[0] in ("neg", "pos")


# =========================================================================== E. non-finite training

def nan_lm(tiny_lm: Path, target: Path) -> Path:
    """A copy of the tiny LM whose weights are all NaN."""
    checkpoint = load_checkpoint(tiny_lm)
    state = {k: torch.full_like(v, float("nan")) if v.is_floating_point() else v
             for k, v in checkpoint.state_dict.items()}
    return save_checkpoint(target, state, checkpoint.tokens, checkpoint.config)


def test_training_stops_when_the_loss_stops_being_finite():
    from ulmtl.loaders import LanguageModelLoader
    from ulmtl.backbones.awd_lstm import build_language_model, lm_layer_groups, training_callbacks
    from ulmtl.training import NonFiniteLoss, make_learner
    docs = [np.random.RandomState(i).randint(0, 32, size=50) for i in range(8)]
    settings = OptimizerSettings()
    model = build_language_model(32, TINY)
    learn = make_learner(LanguageModelLoader(docs, 4, 10), LanguageModelLoader(docs, 4, 10),
                         model, lm_layer_groups, settings, progress=False, stage="test stage",
                         callbacks=training_callbacks(model, settings.ar_alpha, settings.tar_beta, "fp32"))
    with pytest.raises(NonFiniteLoss) as info:
        learn.fit(2, lr=float("nan"))  # the first step makes every weight NaN
    assert str(info.value).startswith("test stage: the training loss is nan at epoch 0, batch 1; "
                                      "nothing was saved")
    # One batch and no validation (as the classifier trains without a validation set): no loss
    # after the step shows it, the weights do.
    from ulmtl.classify import SkipValidation
    model = build_language_model(32, TINY)
    learn = make_learner(LanguageModelLoader(docs, 4, 100), LanguageModelLoader(docs, 4, 100),
                         model, lm_layer_groups, settings, progress=False, stage="test stage",
                         callbacks=training_callbacks(model, settings.ar_alpha, settings.tar_beta, "fp32"))
    with pytest.raises(NonFiniteLoss, match="test stage: the weights are NaN or infinite after training"):
        learn.fit(1, lr=float("nan"), cbs=[SkipValidation()])


def test_api_fit_on_an_encoder_with_nan_weights_stops_with_a_clear_error(tiny_lm, tmp_path):
    from ulmtl.training import NonFiniteLoss
    texts, labels = synthetic(40, seed=12)
    clf = TextClassifier(tiny_config(), encoders=nan_lm(tiny_lm, tmp_path / "lm"), verbose=False)
    with pytest.raises(NonFiniteLoss, match=r"classifier training \(forward\): the training loss is nan at "
                                            r"epoch 0, batch 0"):
        clf.fit(texts, labels)
    assert not hasattr(clf, "models_")


@pytest.mark.slow
def test_cli_stage1_lm_with_nan_weights_saves_nothing(tiny_lm, tmp_path):
    path = rows_csv(tmp_path / "d.csv", 60)
    result = recipe_cli(tmp_path, "--train", str(path), "--pretrained", str(nan_lm(tiny_lm, tmp_path / "lm")))
    assert_clean_error(result, "LM fine-tuning: the validation loss is nan at epoch 0, batch 0",
                       "nothing was saved")
    assert not [p for p in tmp_path.iterdir() if p.name.startswith("out")]


# =========================================================================== F. damaged model folders

def _edit_json(path: Path, change) -> None:
    path.write_text(json.dumps(change(json.loads(path.read_text()))))


def _drop(key):
    return lambda config: {k: v for k, v in config.items() if k != key}


def _set_classifier(field, value):
    return lambda config: {**config, "classifier": {**config["classifier"], field: value}}


DAMAGE = [
    pytest.param("classifier.json", lambda c: {**c, "directions": []}, "classifier.json: field 'directions'",
                 id="no-directions"),
    pytest.param("classifier.json", "{broken", "classifier.json: invalid JSON", id="index-not-json"),
    pytest.param("classifier.json", lambda c: {**c, "backbone": "gru"},
                 "classifier.json: field 'backbone' is 'gru'; known backbones: awd_lstm, transformer",
                 id="unknown-backbone"),
    pytest.param("classifier.json", _drop("run_id"), "classifier.json: no completion record (field 'run_id')",
                 id="index-without-completion-record"),
    pytest.param("forward/config.json", lambda c: {**c, "run_id": "another"}, "mixes two saves",
                 id="direction-from-another-save"),
    pytest.param("forward/config.json", _drop("classes"), "forward/config.json: missing field 'classes'",
                 id="no-classes"),
    pytest.param("forward/config.json", _drop("classifier"),
                 "forward/config.json: missing field 'classifier'", id="no-classifier-section"),
    pytest.param("forward/config.json", _drop("model"), "forward/config.json: missing field 'model'",
                 id="no-model-section"),
    pytest.param("forward/config.json", "[1, 2]", "forward/config.json: expected a JSON object, got list",
                 id="config-a-list"),
    pytest.param("forward/vocab.json", lambda itos: [t for t in itos if t != "xxpad"] + ["xxpadding"],
                 "forward/vocab.json: the vocabulary has no 'xxpad' token", id="vocab-without-xxpad"),
    pytest.param("forward/config.json", _set_classifier("bptt", 0), "'classifier.bptt' must be >= 1", id="bptt-0"),
    pytest.param("forward/config.json", _set_classifier("batch_size", 0), "classifier.batch_size",
                 id="batch-size-0"),
    pytest.param("forward/config.json", lambda c: {**c, "classes": ["pos"]}, "field 'classes'",
                 id="one-class"),
]


@pytest.mark.parametrize("name, damage, message", DAMAGE)
def test_api_damaged_classifier_folder_is_refused_at_load(fitted, tmp_path, name, damage, message):
    folder = fitted.save(tmp_path / "clf")
    if isinstance(damage, str):
        (folder / name).write_text(damage)
    else:
        _edit_json(folder / name, damage)
    with pytest.raises(CheckpointError) as info:
        TextClassifier.load(folder)
    assert message in str(info.value) and str(folder) in str(info.value)


def test_api_save_records_its_run_and_load_reads_it_back(fitted, tmp_path):
    folder = fitted.save(tmp_path / "clf")
    shutil.copytree(folder / "forward", folder / "backward")  # as if an earlier save had both directions
    folder = fitted.save(tmp_path / "clf", run_id="run-1")
    assert sorted(p.name for p in folder.iterdir()) == ["README.md", "classifier.json", "forward"]
    index = json.loads((folder / "classifier.json").read_text())
    assert index == {"directions": ["forward"], "backbone": "awd_lstm", "run_id": "run-1"}
    assert json.loads((folder / "forward" / "config.json").read_text())["run_id"] == "run-1"
    texts, _ = synthetic(10, seed=13)
    loaded = TextClassifier.load(folder)
    np.testing.assert_array_equal(loaded.predict_proba(texts), fitted.predict_proba(texts))


# =========================================================================== G. what the API takes

def test_api_predict_takes_a_dataframe_or_series_text_column(fitted):
    import pandas as pd
    texts, labels = synthetic(6, seed=14)
    expected = fitted.predict(texts)
    np.testing.assert_array_equal(fitted.predict(pd.DataFrame({"text": texts, "other": 1})), expected)
    np.testing.assert_array_equal(fitted.predict(pd.Series(texts)), expected)
    assert fitted.score(pd.DataFrame({"text": texts, "label": labels}), None) == fitted.score(texts, labels)


def test_api_predict_refuses_a_dict_and_a_dataframe_without_text(fitted):
    import pandas as pd
    with pytest.raises(DataError, match="got a dict"):
        fitted.predict({"good film": 1, "bad film": 0})
    with pytest.raises(DataError, match=r"needs a 'text' column \(columns: \['review'\]\)"):
        fitted.predict(pd.DataFrame({"review": ["good film", "bad film"]}))


def test_api_fit_refuses_labels_of_mixed_types(tiny_lm):
    clf = TextClassifier(tiny_config(), encoders=tiny_lm, verbose=False)
    message = r"labels of mixed types: label 0 is 1 \(number\), label 1 is '1' \(string\)"
    with pytest.raises(DataError, match=message):
        clf.fit(["good film", "great film", "bad film"], [1, "1", 0])


def test_api_fitted_classifier_refuses_pickling_unfitted_one_pickles(fitted):
    with pytest.raises(TypeError, match=r"clf.save\(folder\) and TextClassifier.load\(folder\)"):
        pickle.dumps(fitted)
    unfitted = pickle.loads(pickle.dumps(TextClassifier(tiny_config(), verbose=False)))
    assert unfitted.config == tiny_config()


# =========================================================================== H. encodings, damaged parquet

# '\u0a0a' is 0x0A 0x0A in UTF-16: a file split at 0x0A bytes before decoding cuts it in two
UTF16_ROWS = [(f"caf\u00e9 \u0a0a film {i}", "pos" if i % 2 else "neg") for i in range(20)]


def write_utf16(path: Path) -> Path:
    """UTF-16 with a byte-order mark and CRLF line ends, as Excel's "Unicode Text" export."""
    rows = UTF16_ROWS
    if not path.suffix:  # a folder with one sub-folder per class
        for i, (text, label) in enumerate(rows):
            (path / label).mkdir(parents=True, exist_ok=True)
            write(path / label / f"{i:02d}.txt", text.encode("utf-16"))
        return path
    records = [{"text": t, "label": y} for t, y in rows]
    content = {".csv": "text,label\r\n" + "".join(f"{t},{y}\r\n" for t, y in rows),
               ".tsv": "text\tlabel\r\n" + "".join(f"{t}\t{y}\r\n" for t, y in rows),
               ".jsonl": "".join(json.dumps(r, ensure_ascii=False) + "\r\n" for r in records),
               ".json": json.dumps(records, ensure_ascii=False, indent=1)}
    return write(path, content[path.suffix].encode("utf-16"))


@pytest.mark.parametrize("name", ["d.csv", "d.tsv", "d.jsonl", "d.json", "folder"])
def test_utf16_files_are_read_with_their_encoding_and_named_without_it(tmp_path, name):
    path = write_utf16(tmp_path / name)
    data, report = read_files(path, encoding="utf-16")
    texts = list(data["train"]["text"]) + list(data["test"]["text"])
    assert sorted(texts) == sorted(t for t, _ in UTF16_ROWS)
    assert report.files[0].rows_read == len(UTF16_ROWS)
    with pytest.raises(DataError) as info:
        read_files(path)
    first = path / "neg" / "00.txt" if name == "folder" else path
    assert str(info.value) == (f"{first}, line 1, byte 0: bytes are not valid utf-8 (invalid start byte); "
                               f"the file starts with a UTF-16 byte-order mark: pass encoding='utf-16' (a "
                               f"recipe: --encoding=utf-16)")


def test_bad_bytes_in_a_utf16_file_name_their_line_and_byte(tmp_path):
    path = write_utf16(tmp_path / "d.jsonl")
    lines = path.read_bytes().decode("utf-16").split("\n")
    bad = len("\n".join(lines[:11]).encode("utf-16")) + 2  # the first character of line 12
    write(path, path.read_bytes()[:bad] + b"\x00\xdc" + path.read_bytes()[bad + 2:])  # a lone surrogate
    with pytest.raises(DataError) as info:
        read_files(path, encoding="utf-16")
    assert str(info.value) == (f"{path}, line 12, byte {bad}: bytes are not valid utf-16 (illegal "
                               f"encoding); pass encoding='latin-1' (a recipe: --encoding=latin-1) if the "
                               f"file is Latin-1")


@pytest.mark.parametrize("content", [b"not parquet at all", b"PAR1" + b"\0" * 40], ids=["text", "zeros"])
def test_damaged_parquet_is_an_error_naming_the_file(tmp_path, content):
    from ulmtl.text_stream import TextStream
    path = write(tmp_path / "bad.parquet", content)
    for read in (lambda: read_files(path), lambda: list(TextStream(path))):
        with pytest.raises(DataError) as info:
            read()
        assert str(info.value).startswith(f"{path}: not a readable parquet file (")


@pytest.mark.parametrize("encoding", ["bogus", "base64"])
def test_an_encoding_that_is_not_a_text_encoding_is_named(tmp_path, encoding):
    from ulmtl.text_stream import TextStream
    path = write(tmp_path / "d.csv", GOOD_ROWS)
    for read in (lambda: read_files(path, encoding=encoding), lambda: TextStream(path, encoding=encoding)):
        with pytest.raises(DataError) as info:
            read()
        assert str(info.value) == (f"{path}: encoding is not a text encoding Python knows (e.g. 'utf-8', "
                                   f"'latin-1'); got {encoding!r}")
