"""Multi-label classification: label sets in files and in ``fit``, sigmoid + binary cross-entropy on
both backbones, the decision threshold (tuned on validation), save / load, metrics, report, commands."""
from __future__ import annotations

import csv
import json
from dataclasses import replace
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from conftest import TINY
from test_recipes import recipe
from test_transformer import make_encoder, small_config
from ulmtl import TextClassifier, read_files
from ulmtl.labels import best_threshold, micro_f1
from ulmtl.command import main
from ulmtl.config import ClassifierConfig, ConfigError, TokenizerConfig, TransformerConfig
from ulmtl.datasets import DataError
from ulmtl.recipe import multilabel_metrics

TOPICS = {"sport": ["goal", "match", "team"], "money": ["bank", "price", "market"],
          "tech": ["code", "chip", "app"]}
FILLER = ["the", "a", "news", "today", "about", "and", "story"]
JIGSAW = ("toxic", "severe_toxic", "obscene", "threat", "insult", "identity_hate")


def tagged(n: int, seed: int) -> tuple[list[str], list[tuple[str, ...]]]:
    """Texts holding the words of each of their topics (none, one or several)."""
    rng = np.random.RandomState(seed)
    texts, labels = [], []
    for i in range(n):
        topics = tuple(t for t in TOPICS if rng.rand() < 0.45)
        words = list(rng.choice(FILLER, 4)) + [rng.choice(TOPICS[t]) for t in topics for _ in range(2)]
        rng.shuffle(words)
        texts.append(f"{' '.join(words)} number {i}")
        labels.append(topics)
    return texts, labels


def matrix(labels: list[tuple], classes: list[str]) -> np.ndarray:
    return np.array([[int(c in label_set) for c in classes] for label_set in labels])


def bce(proba: np.ndarray, truth: np.ndarray) -> float:
    p = np.clip(proba, 1e-7, 1 - 1e-7)
    return float(-np.mean(truth * np.log(p) + (1 - truth) * np.log(1 - p)))


AWD = ClassifierConfig(strategy="scratch", batch_size=16, bptt=20, max_len=100, unfreeze_plan=(0,),
                       stage_epochs=(2,), stage_lr_mult=(1.0,), tune_threshold=True)


@pytest.fixture(scope="module")
def awd_clf():
    texts, labels = tagged(90, 0)
    clf = TextClassifier(AWD, model_config=TINY, tokenizer=TokenizerConfig(min_freq=1), verbose=False)
    return clf.fit(texts[:70], labels[:70], valid=(texts[70:], labels[70:])), texts[70:], labels[70:]


@pytest.fixture(scope="module")
def encoder_dir(tmp_path_factory) -> Path:
    return make_encoder(tmp_path_factory.mktemp("tiny-bert"))


@pytest.fixture(scope="module")
def bert_clf(encoder_dir):
    texts, labels = tagged(60, 1)
    clf = TextClassifier(small_config(stage_epochs=(1, 1), tune_threshold=True), encoders=encoder_dir,
                         model_config=TransformerConfig(), verbose=False)
    return clf.fit(texts[:45], labels[:45], valid=(texts[45:], labels[45:])), texts[45:], labels[45:]


# --------------------------------------------------------------------------- the classifier, both backbones

@pytest.mark.parametrize("fitted", ["awd_clf", "bert_clf"])
def test_a_sigmoid_per_label_trained_with_binary_cross_entropy(fitted, request):
    clf, texts, labels = request.getfixturevalue(fitted)
    assert clf.multilabel_ and clf.classes_.tolist() == ["money", "sport", "tech"]
    proba = clf.predict_proba(texts)
    assert proba.shape == (len(texts), 3) and ((proba > 0) & (proba < 1)).all()
    assert not np.allclose(proba.sum(axis=1), 1)  # one probability per label, not a softmax
    # fastai's validation loss after the last epoch is the mean binary cross-entropy of these
    # probabilities (cross-entropy over a softmax would be another number).
    valid_loss = clf.history_["forward"][-1]["epoch_values"][-1]["valid_loss"]
    assert valid_loss == pytest.approx(bce(proba, matrix(labels, clf.classes_.tolist())), abs=2e-4)
    assert "micro_f1" in clf.history_["forward"][-1]["epoch_values"][-1]


@pytest.mark.parametrize("fitted", ["awd_clf", "bert_clf"])
def test_predict_gives_label_sets_at_the_threshold(fitted, request):
    clf, texts, labels = request.getfixturevalue(fitted)
    proba = clf.predict_proba(texts)
    predicted = clf.predict(texts)
    assert isinstance(predicted, list) and all(isinstance(p, tuple) for p in predicted)
    classes = clf.classes_.tolist()
    assert predicted == [tuple(c for c, p in zip(classes, row) if p >= clf.threshold_) for row in proba]
    saved = clf.threshold_
    try:
        clf.threshold_ = 0.01
        low = sum(map(len, clf.predict(texts)))
        clf.threshold_ = 0.99
        high = sum(map(len, clf.predict(texts)))
    finally:
        clf.threshold_ = saved
    assert high < low
    truth = matrix(labels, classes) == 1
    assert clf.score(texts, labels) == pytest.approx(np.mean(np.all((proba >= saved) == truth, axis=1)))


@pytest.mark.parametrize("fitted", ["awd_clf", "bert_clf"])
def test_the_threshold_is_tuned_on_the_validation_split(fitted, request):
    clf, texts, labels = request.getfixturevalue(fitted)
    truth = matrix(labels, clf.classes_.tolist())
    proba = clf.predict_proba(texts)
    assert clf.threshold_ == best_threshold(truth, proba, 0.5)[0]
    assert micro_f1(truth, proba >= clf.threshold_) >= micro_f1(truth, proba >= 0.5)


def test_best_threshold_maximises_micro_f1():
    truth = np.array([[1, 0], [0, 1], [1, 1], [0, 0]])
    proba = np.array([[0.3, 0.1], [0.2, 0.35], [0.32, 0.4], [0.1, 0.2]])
    threshold, f1 = best_threshold(truth, proba, 0.5)
    assert 0.2 < threshold <= 0.3 and f1 == 1.0
    assert micro_f1(truth, proba >= 0.5) == 0.0


@pytest.mark.parametrize("fitted", ["awd_clf", "bert_clf"])
def test_save_and_load_keep_label_sets_and_threshold(fitted, request, tmp_path):
    clf, texts, _ = request.getfixturevalue(fitted)
    clf.save(tmp_path / "clf")
    loaded = TextClassifier.load(tmp_path / "clf")
    assert loaded.multilabel_ and loaded.threshold_ == clf.threshold_
    np.testing.assert_array_equal(loaded.predict_proba(texts), clf.predict_proba(texts))
    assert loaded.predict(texts) == clf.predict(texts)
    card = (tmp_path / "clf" / "README.md").read_text()
    assert f"Assigns a set of labels, any of 3 (money, sport, tech), to a text: each label whose probability " \
           f"is at least {clf.threshold_}" in card
    config = json.loads((tmp_path / "clf" / "forward" / "config.json").read_text())
    config["threshold"] = 1.5
    (tmp_path / "clf" / "forward" / "config.json").write_text(json.dumps(config))
    from ulmtl.checkpoint import CheckpointError
    with pytest.raises(CheckpointError, match="field 'threshold' of a multi-label classifier"):
        TextClassifier.load(tmp_path / "clf")


def test_label_sets_given_as_indicator_columns(awd_clf):
    clf, texts, labels = awd_clf
    frame = pd.DataFrame(matrix(labels, ["money", "sport", "tech"]), columns=["money", "sport", "tech"])
    assert clf.score(texts, frame) == clf.score(texts, labels)
    assert clf.score(texts, [set(s) for s in labels]) == clf.score(texts, labels)
    with pytest.raises(DataError, match=r"label row 0, column 'sport' is 2"):
        clf.score(texts[:2], pd.DataFrame({"money": [1, 0], "sport": [2, 0], "tech": [0, 1]}))
    # A label never seen in training: that text's set of labels is never predicted exactly.
    second_right = float(clf.predict(texts[1:2])[0] == ())
    assert clf.score(texts[:2], [("sport", "weather"), ()]) == second_right / 2
    assert clf.score(texts[:1], [clf.predict(texts[:1])[0] + ("weather",)]) == 0.0
    with pytest.raises(DataError, match="the scored labels are one label per text, but this classifier was "
                                        "trained on a set of labels per text"):
        clf.score(texts[:2], ["sport", "tech"])


def test_settings_that_cannot_act_are_refused_before_training():
    texts, labels = tagged(20, 2)
    with pytest.raises(ConfigError, match="tune_threshold picks the threshold on a validation split"):
        TextClassifier(AWD, model_config=TINY).fit(texts, labels)
    single = ["pos" if i % 2 else "neg" for i in range(20)]
    with pytest.raises(ConfigError, match="classifier.threshold is for multi-label data"):
        TextClassifier(replace(AWD, tune_threshold=False, threshold=0.3), model_config=TINY).fit(texts, single)
    with pytest.raises(DataError, match="label 1 is 'pos', one label, but other texts have a list of labels"):
        TextClassifier(AWD, model_config=TINY).fit(texts[:2], [("sport",), "pos"])
    with pytest.raises(ConfigError, match="config key 'ClassifierConfig.threshold' must be in"):
        ClassifierConfig(threshold=1.0)


# --------------------------------------------------------------------------- files

def write_rows(path: Path, header: list[str], rows: list[list]) -> Path:
    with open(path, "w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(header)
        writer.writerows(rows)
    return path


def test_files_hold_label_sets_in_three_forms(tmp_path):
    import pyarrow as pa
    import pyarrow.parquet as pq
    texts, labels = tagged(30, 3)
    write_rows(tmp_path / "tags.csv", ["text", "tags"], [[t, "|".join(s)] for t, s in zip(texts, labels)])
    (tmp_path / "tags.jsonl").write_text("".join(json.dumps({"text": t, "label": list(s)}) + "\n"
                                                 for t, s in zip(texts, labels)))
    pq.write_table(pa.table({"text": texts, "label": [list(s) for s in labels]}), tmp_path / "tags.parquet")
    write_rows(tmp_path / "columns.csv", ["text", "money", "sport", "tech"],
               [[t, *row] for t, row in zip(texts, matrix(labels, ["money", "sport", "tech"]))])
    read = [read_files(tmp_path / "tags.csv", tmp_path / "tags.csv", label_column="tags", label_separator="|"),
            read_files(tmp_path / "tags.jsonl", tmp_path / "tags.jsonl"),
            read_files(tmp_path / "tags.parquet", tmp_path / "tags.parquet"),
            read_files(tmp_path / "columns.csv", tmp_path / "columns.csv", label_columns=["sport", "money", "tech"])]
    for data, report in read:
        names = data["train"].features["label"].feature.names
        assert names == ["money", "sport", "tech"] and report.multilabel
        assert [{names[i] for i in ids} for ids in data["test"]["label"]] == [set(s) for s in labels]
        assert report.files[0].without_labels == sum(not s for s in labels) > 0
        assert "multi-label data: a set of labels per text" in "\n".join(report.lines())
    split, _ = read_files(tmp_path / "tags.jsonl", test_fraction=0.2, seed=1)  # a seeded random test split
    assert len(split["test"]) == 6 and len(split["train"]) == 24


@pytest.mark.parametrize("name, content, options, message", [
    ("bad.csv", "text,toxic,insult\nhello,1,0\nbye,2,1\n", {"label_columns": ["toxic", "insult"]},
     r"bad.csv, row at line 3: field 'toxic' is '2'; a label column \(label_columns\) holds 0 or 1"),
    ("bad.csv", "text,toxic\nhello,1\n", {"label_columns": ["toxic", "insult"]}, r"bad.csv: no column 'insult'"),
    ("bad.jsonl", '{"text": "a", "label": ["x"]}\n{"text": "b", "label": "y"}\n', {},
     r"bad.jsonl, row at line 2: field 'label' is a string, but at .*bad.jsonl, row at line 1 it is a list"),
    ("bad.jsonl", '{"text": "a", "label": ["x", null]}\n', {},
     r"bad.jsonl, row at line 1: field 'label' \(the labels\) holds a missing label"),
    ("bad.csv", "text,tags\na,x|y\n", {"label_columns": ["x", "y"], "label_separator": "|"},
     "give one or the other"),
    ("bad.csv", "text,tags\na,x\nb,x|\n", {"label_column": "tags", "label_separator": "|"},
     r"only one class \('x'\) in the labels"),
])
def test_bad_multilabel_files_are_refused_naming_file_line_and_field(tmp_path, name, content, options, message):
    (tmp_path / name).write_text(content)
    with pytest.raises(DataError, match=message):
        read_files(tmp_path / name, **options)


def test_a_test_file_must_match_the_training_labels(tmp_path):
    (tmp_path / "train.jsonl").write_text('{"text": "a", "label": ["x"]}\n{"text": "b", "label": ["y", "x"]}\n')
    (tmp_path / "single.jsonl").write_text('{"text": "c", "label": "x"}\n')
    (tmp_path / "unseen.jsonl").write_text('{"text": "c", "label": ["x", "z"]}\n')
    with pytest.raises(DataError, match="the test file has one label per text but the training data"):
        read_files(tmp_path / "train.jsonl", tmp_path / "single.jsonl")
    with pytest.raises(DataError, match=r"labels \['z'\] never appear in the training data"):
        read_files(tmp_path / "train.jsonl", tmp_path / "unseen.jsonl")
    (tmp_path / "folder" / "x").mkdir(parents=True)
    with pytest.raises(DataError, match="a folder with one sub-folder per class holds one label per text"):
        read_files(tmp_path / "folder", label_separator="|")


def test_multilabel_metrics():
    truth = np.array([[1, 0, 1], [0, 1, 0], [1, 1, 0], [0, 0, 0]])
    predicted = np.array([[1, 0, 0], [0, 1, 0], [1, 0, 1], [0, 0, 0]])
    metrics = multilabel_metrics(truth, predicted, ["a", "b", "c"], 0.5)
    # tp 3, fp 1, fn 2: micro precision 3/4, recall 3/5, F1 6/9; per label F1 1, 2/3, 0.
    assert metrics["micro_f1"] == round(6 / 9, 4) and metrics["macro_f1"] == round((1 + 2 / 3) / 3, 4)
    assert metrics["micro_precision"] == 0.75 and metrics["micro_recall"] == 0.6
    assert metrics["subset_accuracy"] == 0.5 and metrics["hamming_loss"] == round(3 / 12, 4)
    assert metrics["per_label"]["b"] == {"precision": 1.0, "recall": 0.5, "f1": round(2 / 3, 4), "support": 2,
                                         "predicted": 1}


# --------------------------------------------------------------------------- recipe and commands

def write_jigsaw(path: Path, n: int = 80) -> Path:
    """A small file in the layout of Jigsaw's toxic comment data: id, comment_text, a 0/1 column per label."""
    rng = np.random.RandomState(4)
    words = {"toxic": "nasty", "obscene": "filthy", "insult": "idiot"}
    rows = []
    for i in range(n):
        on = {label for label in words if rng.rand() < 0.4}
        text = " ".join(["this", "comment", "is", "about", "the", "page"][:rng.randint(3, 7)] + [words[k] for k in on])
        rows.append([f"id{i}", text, *[int(label in on) for label in JIGSAW]])
    return write_rows(path, ["id", "comment_text", *JIGSAW], rows)


def check_multilabel_run(out: Path, n_labels: int) -> dict:
    metrics = json.loads((out / "metrics.json").read_text())
    test = metrics["test"]
    assert metrics["multilabel"] and 0 <= test["micro_f1"] <= 1 and 0 <= test["macro_f1"] <= 1
    assert len(test["per_label"]) == n_labels and {"precision", "recall", "f1"} <= set(next(iter(
        test["per_label"].values())))
    assert not (out / "confusion_matrix.png").exists()
    report = (out / "report.md").read_text()
    assert f"micro-F1 **{test['micro_f1']}**, macro-F1 **{test['macro_f1']}**" in report
    assert all(f"| {label} |" in report for label in test["per_label"]) and "No confusion matrix" in report
    assert (out / "training.png").read_bytes().startswith(b"\x89PNG")
    assert f"macro-F1 **{test['macro_f1']}**" in (out / "model" / "README.md").read_text()
    return metrics


def test_toxic_comments_recipe_on_the_jigsaw_layout(tmp_path):
    out = tmp_path / "toxic"
    recipe("toxic_comments").main(["--smoke", "--train", str(write_jigsaw(tmp_path / "train.csv")),
                                   "--output", str(out), "--valid_fraction=0.2", "--classifier.tune_threshold=true"])
    metrics = check_multilabel_run(out, len(JIGSAW))
    assert metrics["config"]["backbone"] == "awd_lstm" and metrics["valid"]["n_test"] == 14
    clf = TextClassifier.load(out / "model")
    assert clf.threshold_ == metrics["test"]["threshold"]
    assert all(set(p) <= set(JIGSAW) for p in clf.predict(["an idiot comment", "the page"]))
    warnings = metrics["data"]["warnings"]
    assert any("no training row has the label(s) 'identity_hate', 'severe_toxic', 'threat'" in w for w in warnings)


def test_the_recipe_refuses_tuning_without_a_validation_split(tmp_path):
    with pytest.raises(ConfigError, match="tune_threshold picks the threshold on a validation split"):
        recipe("toxic_comments").main(["--smoke", "--train", str(write_jigsaw(tmp_path / "train.csv")),
                                       "--output", str(tmp_path / "out"), "--classifier.tune_threshold=true"])
    assert not (tmp_path / "out").exists()


def test_train_predict_and_evaluate_a_transformer_on_label_lists(encoder_dir, tmp_path, capsys):
    texts, labels = tagged(50, 5)
    (tmp_path / "train.csv").write_text("text,tags\n" + "".join(f"{t},{'|'.join(s)}\n"
                                                                for t, s in zip(texts, labels)))
    out = tmp_path / "run"
    main(["train", str(tmp_path / "train.csv"), "--label-column", "tags", "--label-separator", "|",
          "--pretrained", str(encoder_dir), "--smoke", "--output", str(out)])
    metrics = check_multilabel_run(out, 3)
    assert metrics["config"]["backbone"] == "transformer"
    clf = TextClassifier.load(out / "model")
    (tmp_path / "in.txt").write_text("".join(t + "\n" for t in texts[:7]))
    main(["predict", str(out), str(tmp_path / "in.txt"), "--output", str(tmp_path / "out.csv")])
    with open(tmp_path / "out.csv", newline="") as handle:
        rows = list(csv.DictReader(handle))
    assert list(rows[0]) == ["text", "labels", "p_money", "p_sport", "p_tech"]
    assert [tuple(r["labels"].split("|")) if r["labels"] else () for r in rows] == clf.predict(texts[:7])
    capsys.readouterr()
    main(["predict", str(out), str(tmp_path / "in.txt"), "--threshold", "0.01"])
    records = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert [r["labels"] for r in records] == [["money", "sport", "tech"]] * 7  # every label at 0.01
    (tmp_path / "test.jsonl").write_text("".join(json.dumps({"text": t, "label": list(s)}) + "\n"
                                                 for t, s in zip(texts[:20], labels[:20])))
    main(["evaluate", str(out), str(tmp_path / "test.jsonl")])
    printed = json.loads(capsys.readouterr().out)
    truth = matrix(labels[:20], ["money", "sport", "tech"])
    expected = multilabel_metrics(truth, clf.predict_proba(texts[:20]) >= clf.threshold_,
                                  ["money", "sport", "tech"], clf.threshold_)
    assert {k: printed[k] for k in expected} == expected
    (tmp_path / "single.jsonl").write_text(json.dumps({"text": texts[0], "label": "sport"}) + "\n")
    with pytest.raises(SystemExit) as exit_info:
        main(["evaluate", str(out), str(tmp_path / "single.jsonl")])
    assert exit_info.value.code == 2
    assert "one label per text, but the classifier is multi-label" in capsys.readouterr().err


def test_ulmtl_train_on_a_jsonl_of_label_lists_with_the_awd_lstm(tmp_path, capsys):
    texts, labels = tagged(60, 6)
    (tmp_path / "train.jsonl").write_text("".join(json.dumps({"text": t, "label": list(s)}) + "\n"
                                                  for t, s in zip(texts, labels)))
    out = tmp_path / "run"
    main(["train", str(tmp_path / "train.jsonl"), "--smoke", "--output", str(out)])
    metrics = check_multilabel_run(out, 3)
    assert metrics["config"]["backbone"] == "awd_lstm" and metrics["test"]["threshold"] == 0.5
    (tmp_path / "in.txt").write_text("goal match team\nbank price\n")
    capsys.readouterr()
    main(["predict", str(out), str(tmp_path / "in.txt")])
    records = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert [tuple(r["labels"]) for r in records] == TextClassifier.load(out / "model").predict(
        ["goal match team", "bank price"])
    assert all(set(r["probabilities"]) == {"money", "sport", "tech"} for r in records)
