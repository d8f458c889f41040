"""The ``ulmtl`` command: train, predict, evaluate and info, in process (``main``) and, marked slow,
as the process a user starts (``python -m ulmtl.command``)."""
from __future__ import annotations

import configparser
import csv
import io
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from test_recipes import check_report
from test_transformer import POS_NEG, make_encoder
from ulmtl import TextClassifier, read_files
from ulmtl.command import main
from ulmtl.datasets import DataError
from ulmtl.text_stream import TextStream
from ulmtl.recipe import classification_metrics

REPO = Path(__file__).resolve().parents[1]
TEXTS = [f"{'great lovely film' if i % 3 else 'dull awful film'} number {i}" for i in range(25)]


def reviews(n: int = 120) -> list[tuple[str, str]]:
    return [(f"great lovely film number {i}", "5") if i % 2 == 0 else (f"dull awful film number {i}", "1")
            for i in range(n)]


def write_csv(path: Path, rows, header=("review", "stars")) -> Path:
    with open(path, "w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(header)
        writer.writerows(rows)
    return path


@pytest.fixture(scope="module")
def data(tmp_path_factory) -> Path:
    folder = tmp_path_factory.mktemp("command")
    write_csv(folder / "reviews.csv", reviews())
    return folder


@pytest.fixture(scope="module")
def awd_run(data) -> Path:
    """A run of ``ulmtl train --smoke``: the tiny AWD-LSTM, trained once for this file's tests."""
    out = data / "awd"
    main(["train", str(data / "reviews.csv"), "--text-column", "review", "--label-column", "stars",
          "--output", str(out), "--smoke"])
    return out


def run_command(*args, stdin: str | None = None, cwd: Path | None = None) -> subprocess.CompletedProcess:
    env = dict(os.environ, OMP_NUM_THREADS="1", PYTHONPATH=str(REPO), HF_DATASETS_OFFLINE="1",
               HF_HUB_OFFLINE="1")
    return subprocess.run([sys.executable, "-m", "ulmtl.command", *map(str, args)], input=stdin,
                          capture_output=True, text=True, env=env, cwd=cwd or REPO, timeout=300)


def one_error_line(err: str) -> str:
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: ") and "Traceback" not in err, err
    return lines[0]


# --------------------------------------------------------------------------- train

def test_train_writes_a_run_with_report_and_model_card(awd_run):
    metrics = json.loads((awd_run / "metrics.json").read_text())
    assert metrics["dataset"] == "custom" and metrics["config"]["backbone"] == "awd_lstm"
    assert set(metrics["test"]["per_class"]) == {"1", "5"} and metrics["test"]["n_test"] == 12
    check_report(awd_run, metrics)
    card = (awd_run / "model" / "README.md").read_text()
    assert "- backbone: awd_lstm" in card and "120 rows read from" in card
    assert f"- command: `ulmtl train {awd_run.parent / 'reviews.csv'} --text-column review" in card
    assert "108 labelled training texts" in card  # 120 rows less the 10% test split


def test_train_on_a_tiny_bert(tmp_path):
    encoder = make_encoder(tmp_path / "bert")
    rows = [{"text": t, "label": label} for texts, label in zip(POS_NEG, ("pos", "neg")) for t in texts]
    (tmp_path / "train.jsonl").write_text("\n".join(json.dumps(r) for r in rows))
    out = tmp_path / "run"
    main(["train", str(tmp_path / "train.jsonl"), "--pretrained", str(encoder), "--smoke",
          "--output", str(out)])
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["config"]["backbone"] == "transformer" and metrics["pretrained_model"] == str(encoder)
    check_report(out, metrics)
    assert f"- pretrained model: {encoder}" in (out / "model" / "README.md").read_text()
    assert "- backbone: transformer" in (out / "report.md").read_text()


def test_train_passes_overrides_to_the_run(data, tmp_path):
    out = tmp_path / "scratch"
    main(["train", str(data / "reviews.csv"), "--text-column=review", "--label-column=stars",
          "--output", str(out), "--smoke", "--classifier.strategy=scratch", "--seed=3",
          "--valid_fraction=0.2"])
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["strategy"] == "scratch" and metrics["seed"] == 3 and metrics["valid"]["n_test"] > 0
    assert "none (strategy scratch)" in (out / "model" / "README.md").read_text()


@pytest.mark.slow
def test_train_as_a_process(data, tmp_path):
    result = run_command("train", data / "reviews.csv", "--text-column", "review", "--label-column", "stars",
                         "--output", tmp_path / "run", "--smoke", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    check_report(tmp_path / "run", json.loads((tmp_path / "run" / "metrics.json").read_text()))


# --------------------------------------------------------------------------- predict

def write_input(path: Path, texts: list[str]) -> Path:
    kind = path.suffix
    if kind == ".csv":
        write_csv(path, [(t, i) for i, t in enumerate(texts)], header=("text", "id"))
    elif kind == ".tsv":
        path.write_text("id\ttext\n" + "".join(f"{i}\t{t}\n" for i, t in enumerate(texts)))
    elif kind == ".jsonl":
        path.write_text("".join(json.dumps({"text": t, "id": i}) + "\n" for i, t in enumerate(texts)))
    elif kind == ".parquet":
        import pyarrow as pa
        import pyarrow.parquet as pq
        pq.write_table(pa.table({"text": texts, "id": list(range(len(texts)))}), path, row_group_size=4)
    else:
        path.write_text("".join(t + "\n" for t in texts))
    return path


def read_predictions(path: Path) -> tuple[list[str], list[str], np.ndarray]:
    if path.suffix == ".jsonl":
        records = [json.loads(line) for line in path.read_text().splitlines()]
        return ([r["text"] for r in records], [r["label"] for r in records],
                np.array([list(r["probabilities"].values()) for r in records]))
    with open(path, newline="") as handle:
        rows = list(csv.DictReader(handle))
    return ([r["text"] for r in rows], [r["label"] for r in rows],
            np.array([[float(v) for k, v in r.items() if k.startswith("p_")] for r in rows]))


@pytest.mark.parametrize("input_name, output_name", [("in.csv", "out.csv"), ("in.tsv", "out.jsonl"),
                                                     ("in.jsonl", "out.csv"), ("in.parquet", "out.jsonl"),
                                                     ("in.txt", "out.jsonl"), ("texts", "out.csv")])
def test_predict_streams_a_file_larger_than_the_batch_in_input_order(awd_run, tmp_path, input_name,
                                                                     output_name):
    source = write_input(tmp_path / input_name, TEXTS)
    main(["predict", str(awd_run), str(source), "--output", str(tmp_path / output_name), "--batch-size", "7"])
    texts, labels, proba = read_predictions(tmp_path / output_name)
    clf = TextClassifier.load(awd_run / "model")
    assert texts == TEXTS  # 25 texts in chunks of 7: every chunk in place
    np.testing.assert_allclose(proba, clf.predict_proba(TEXTS), atol=1e-5)  # same as all at once
    assert labels == clf.predict(TEXTS).tolist()
    assert not list(tmp_path.glob("*.partial-*"))


def test_predict_reads_standard_input_and_writes_json_lines(awd_run, monkeypatch, capsys):
    monkeypatch.setattr(sys, "stdin", io.TextIOWrapper(io.BytesIO("".join(t + "\n" for t in TEXTS).encode())))
    main(["predict", str(awd_run / "model"), "-", "--batch-size", "10"])
    records = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert [r["text"] for r in records] == TEXTS
    assert all(set(r["probabilities"]) == {"1", "5"} and abs(sum(r["probabilities"].values()) - 1) < 1e-4
               for r in records)


@pytest.mark.slow
def test_predict_on_standard_input_as_a_process(awd_run):
    result = run_command("predict", awd_run, "-", "--batch-size", "4",
                         stdin="".join(t + "\n" for t in TEXTS[:9]))
    assert result.returncode == 0, result.stderr
    records = [json.loads(line) for line in result.stdout.splitlines()]
    assert [r["text"] for r in records] == TEXTS[:9]
    assert "classified 9 texts from standard input" in result.stderr


def test_predict_writes_each_chunk_before_reading_the_next(awd_run, tmp_path, capsys):
    """A bad row after two chunks: the two chunks' predictions are out, then the error names the row."""
    (tmp_path / "in.jsonl").write_text("".join(json.dumps({"text": t}) + "\n" for t in TEXTS[:14])
                                       + '{"text": 3}\n')
    with pytest.raises(SystemExit) as exit_info:
        main(["predict", str(awd_run), str(tmp_path / "in.jsonl"), "--batch-size", "7"])
    captured = capsys.readouterr()
    assert exit_info.value.code == 2
    assert one_error_line(captured.err) == (f"error: {tmp_path / 'in.jsonl'}, line 15: field 'text' is a "
                                            f"number, not a string")
    assert [json.loads(line)["text"] for line in captured.out.splitlines()] == TEXTS[:14]


def test_text_stream_reads_lazily(tmp_path):
    path = tmp_path / "in.csv"
    path.write_text("text,id\nfirst text,1\nsecond text,2\n\"never closed,3\n" + "more,4\n" * 5)
    stream = iter(TextStream(path))
    assert next(stream) == "first text"  # read before the rest of the file is parsed
    assert next(stream) == "second text"
    with pytest.raises(DataError):
        list(stream)


def test_text_stream_skips_empty_texts_when_asked(tmp_path):
    path = tmp_path / "texts.txt"
    path.write_text("one\n\ntwo\n  \nthree\n")
    with pytest.raises(DataError, match=r"texts.txt, line 2: the text is empty \(--skip-empty"):
        list(TextStream(path))
    stream = TextStream(path, skip_empty=True)
    assert list(stream) == ["one", "two", "three"] and stream.skipped == 2


def test_text_stream_warns_of_a_csv_field_that_swallowed_rows(tmp_path, capsys):
    """A quote left open takes the rows up to the next quote into one text: said on stderr, naming the
    lines (without labels a quoted text with commas can look the same, so it is not refused); a quote
    left open to the end of the file is refused."""
    took = tmp_path / "took.csv"
    took.write_text('id,text\n1,"Bad quote here\n2,second\n3,third" more\n4,fourth\n')
    assert list(TextStream(took)) == ["Bad quote here\n2,second\n3,third more", "fourth"]
    assert capsys.readouterr().err.startswith(
        f"ulmtl: warning: {took}, line 2: field 'text' runs on to line 4 and holds lines shaped like rows "
        f"(line 3: '2,second'): a field that begins with")
    quoted = write_csv(tmp_path / "quoted.csv", [(1, "Loved it.\nWould pay 1,000 to see it again")],
                       header=("id", "text"))
    assert list(TextStream(quoted)) == ["Loved it.\nWould pay 1,000 to see it again"]  # read as written
    to_the_end = tmp_path / "to_the_end.csv"
    to_the_end.write_text('text\nfirst\n"open quote\nrow three\nrow four\n')
    stream = iter(TextStream(to_the_end))
    assert next(stream) == "first"
    with pytest.raises(DataError) as info:
        next(stream)
    assert str(info.value) == (f"{to_the_end}, line 3: the row runs on to the end of the file (line 5): is a "
                               f"quote left open?")
    # Texts quoted over several lines, with commas as prose has them, are read as written.
    fine = write_csv(tmp_path / "fine.csv", [(1, "Hi,\nI loved it, really\nthanks"),
                                             (2, "Great.\nActing, superb.")], header=("id", "text"))
    assert list(TextStream(fine)) == ["Hi,\nI loved it, really\nthanks", "Great.\nActing, superb."]


@pytest.mark.parametrize("input_name", ["in.txt", "in.csv", "in.jsonl"])
def test_text_stream_reads_utf16_and_names_the_line_of_bad_bytes(tmp_path, input_name):
    """UTF-16 holds 0x0A bytes inside characters ('\u0a0a'): lines are split after decoding."""
    texts = [f"caf\u00e9 \u0a0a number {i}" for i in range(40)]
    (tmp_path / "plain").mkdir()
    plain = write_input(tmp_path / "plain" / input_name, texts)
    path = tmp_path / input_name
    path.write_bytes(plain.read_text().replace("\n", "\r\n").encode("utf-16"))  # as Excel's "Unicode Text"
    assert list(TextStream(path, encoding="utf-16")) == texts
    with pytest.raises(DataError) as info:
        list(TextStream(path))
    assert str(info.value) == (f"{path}, line 1, byte 0: bytes are not valid utf-8 (invalid start byte); "
                               f"the file starts with a UTF-16 byte-order mark: pass encoding='utf-16' (a "
                               f"recipe: --encoding=utf-16)")
    lines = path.read_bytes().decode("utf-16").split("\n")
    bad = len("\n".join(lines[:30]).encode("utf-16")) + 2  # the first character of line 31
    path.write_bytes(path.read_bytes()[:bad] + b"\x00\xdc" + path.read_bytes()[bad + 2:])  # a lone surrogate
    with pytest.raises(DataError, match=rf"{input_name}, line 31, byte {bad}: bytes are not valid utf-16"):
        list(TextStream(path, encoding="utf-16"))


# --------------------------------------------------------------------------- evaluate, info

def test_evaluate_reproduces_the_runs_test_metrics(awd_run, tmp_path, capsys):
    """The run's test split (seeded, stratified) written as a file: evaluate gives metrics.json's test
    block."""
    data, _ = read_files(awd_run.parent / "reviews.csv", None, "review", "stars", seed=42)
    names = data["test"].features["label"].names
    test = data["test"]
    write_csv(tmp_path / "test.csv", [(t, names[y]) for t, y in zip(test["text"], test["label"])])
    main(["evaluate", str(awd_run), str(tmp_path / "test.csv"), "--text-column", "review",
          "--label-column", "stars", "--output", str(tmp_path / "metrics.json")])
    printed = json.loads(capsys.readouterr().out)
    expected = json.loads((awd_run / "metrics.json").read_text())["test"]
    assert {k: printed[k] for k in expected} == expected
    assert printed["data"]["rows_read"] == 12
    assert json.loads((tmp_path / "metrics.json").read_text()) == printed


def test_evaluate_on_another_labelled_file(awd_run, tmp_path, capsys):
    rows = reviews(30)
    write_csv(tmp_path / "more.csv", rows)
    main(["evaluate", str(awd_run / "model"), str(tmp_path / "more.csv"), "--text-column", "review",
          "--label-column", "stars"])
    printed = json.loads(capsys.readouterr().out)
    clf = TextClassifier.load(awd_run / "model")
    classes = clf.classes_.tolist()
    truth = np.array([classes.index(label) for _, label in rows])
    predicted = np.array([classes.index(p) for p in clf.predict([t for t, _ in rows])])
    expected = classification_metrics(truth, predicted, classes)
    assert printed["confusion_matrix"] == expected["confusion_matrix"]
    assert printed["n_test"] == 30


def test_evaluate_shows_the_load_report_and_keeps_its_warnings(awd_run, tmp_path, capsys):
    folder = tmp_path / "labelled"
    for i, (text, label) in enumerate(reviews(8)):
        (folder / label).mkdir(parents=True, exist_ok=True)
        (folder / label / f"{i}.txt").write_text(text)
    (folder / "c.txt").write_text("a loose file")
    (folder / "5" / ".DS_Store").write_bytes(b"\0")
    main(["evaluate", str(awd_run), str(folder), "--output", str(tmp_path / "metrics.json")])
    captured = capsys.readouterr()
    warning = f"{folder}: 1 files outside the class folders are not read (c.txt)"
    assert f"ulmtl: read 8 rows from {folder} (test)\n" in captured.err
    assert f"ulmtl: skipped 1 hidden files or folders in {folder}" in captured.err
    assert f"ulmtl: warning: {warning}\n" in captured.err
    printed = json.loads(captured.out)
    assert printed["data"]["warnings"] == [warning] and printed["data"]["skipped_hidden"] == 1
    assert printed["data"]["rows_read"] == printed["data"]["rows_kept"] == 8
    assert json.loads((tmp_path / "metrics.json").read_text()) == printed


@pytest.mark.parametrize("argv, message", [
    (["predict", "{run}", "{tmp}/in.csv", "--encoding", "bogus"],
     "error: {tmp}/in.csv: encoding is not a text encoding Python knows (e.g. 'utf-8', 'latin-1'); "
     "got 'bogus'"),
    (["evaluate", "{run}", "{tmp}/in.csv", "--encoding", "base64"],
     "error: {tmp}/in.csv: encoding is not a text encoding Python knows (e.g. 'utf-8', 'latin-1'); "
     "got 'base64'"),
    (["evaluate", "{run}", "{tmp}/in.csv", "--output", "{tmp}/nodir/m.json"],
     "error: --output {tmp}/nodir/m.json: no folder {tmp}/nodir; make it first or give another path"),
    (["evaluate", "{run}", "{tmp}/in.csv", "--output", "{tmp}"],
     "error: --output {tmp} is a folder; give a file name"),
    (["predict", "{run}", "{tmp}/in.csv", "--output", "{tmp}/nodir/out.csv"],
     "error: --output {tmp}/nodir/out.csv: no folder {tmp}/nodir; make it first or give another path"),
    (["evaluate", "{run}", "{tmp}/bad.parquet"], "error: {tmp}/bad.parquet: not a readable parquet file ("),
    (["predict", "{run}", "{tmp}/in.csv", "--output", "{tmp}/out.txt"],
     "error: --output {tmp}/out.txt: unknown suffix '.txt'; use .csv, .tsv or .jsonl"),
])
def test_bad_input_is_refused_before_the_classifier_is_loaded(awd_run, tmp_path, capsys, monkeypatch, argv,
                                                               message):
    write_csv(tmp_path / "in.csv", reviews(4), header=("text", "label"))
    (tmp_path / "bad.parquet").write_text("not parquet at all")
    monkeypatch.setattr("ulmtl.command.load_classifier", lambda path: pytest.fail("loaded the classifier"))
    fill = {"tmp": tmp_path, "run": awd_run}
    with pytest.raises(SystemExit) as exit_info:
        main([a.format(**fill) for a in argv])
    assert exit_info.value.code == 2
    assert one_error_line(capsys.readouterr().err).startswith(message.format(**fill))
    assert not (tmp_path / "nodir").exists()


def test_info_prints_the_model_card(awd_run, capsys):
    main(["info", str(awd_run)])
    out = capsys.readouterr().out
    assert out == (awd_run / "model" / "README.md").read_text()
    for section in ("## Intended use", "## Training data", "## Model", "## Metrics", "## Provenance"):
        assert section in out


# --------------------------------------------------------------------------- errors, help, install

@pytest.mark.parametrize("argv, message", [
    (["info", "{tmp}/none"], "error: {tmp}/none: no such folder; give a run folder or its model/ folder"),
    (["predict", "{run}", "{tmp}/none.txt"], "error: {tmp}/none.txt: no such file"),
    (["predict", "{run}", "{tmp}/in.csv", "--text-column", "body"],
     "error: {tmp}/in.csv: no column 'body'; columns are text, id (pass --text-column)"),
    (["predict", "{run}", "{tmp}/in.csv", "--output", "{tmp}/out.xlsx"],
     "error: --output {tmp}/out.xlsx: unknown suffix '.xlsx'; use .csv, .tsv or .jsonl"),
    (["evaluate", "{run}", "{tmp}/bad_labels.csv"],
     "error: {tmp}/bad_labels.csv: labels ['3'] are not classes of the classifier (1, 5)"),
    (["info", "{tmp}"],
     "error: {tmp}: no classifier.json; not a saved TextClassifier, or its save did not finish"),
    (["train", "{tmp}/none.csv", "--output", "{tmp}/out"], "error: {tmp}/none.csv: no such file or folder"),
    (["train", "{tmp}/in.csv", "--output", "{tmp}/out", "--classifier.lr=abc"],
     "error: config key 'classifier.lr' expects float, got 'abc'"),
    (["predict", "{run}"], "error: ulmtl predict: the following arguments are required: INPUT "
                           "(see ulmtl predict --help)"),
    (["info", "{run}", "--bogus"], "error: ulmtl: unrecognized arguments: --bogus (see ulmtl --help)"),
])
def test_bad_input_exits_2_with_one_line(awd_run, tmp_path, capsys, argv, message):
    write_input(tmp_path / "in.csv", TEXTS[:3])
    (tmp_path / "bad_labels.csv").write_text("text,label\ngreat film,5\nodd film,3\n")
    fill = {"tmp": tmp_path, "run": awd_run}
    with pytest.raises(SystemExit) as exit_info:
        main([a.format(**fill) for a in argv])
    assert exit_info.value.code == 2
    assert one_error_line(capsys.readouterr().err) == message.format(**fill)
    assert not (tmp_path / "out").exists() and not list(tmp_path.glob("out.*"))


@pytest.mark.slow
def test_bad_input_as_a_process_exits_2_with_one_line(tmp_path):
    result = run_command("predict", tmp_path / "none", tmp_path / "in.txt")
    assert result.returncode == 2
    assert one_error_line(result.stderr) == f"error: {tmp_path / 'in.txt'}: no such file"


@pytest.mark.parametrize("command", ["train", "predict", "evaluate", "info"])
def test_every_subcommand_has_help(command, capsys):
    with pytest.raises(SystemExit) as exit_info:
        main([command, "--help"])
    assert exit_info.value.code == 0
    assert capsys.readouterr().out.startswith(f"usage: ulmtl {command} ")


def test_the_package_installs_the_command():
    setup = configparser.ConfigParser()
    setup.read(REPO / "setup.cfg")
    scripts = [line.strip() for line in setup["options.entry_points"]["console_scripts"].splitlines() if line]
    assert scripts == ["ulmtl = ulmtl.command:main"]
    assert any(r.strip().startswith("matplotlib") for r in setup["options"]["install_requires"].splitlines())
