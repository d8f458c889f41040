"""What fit, predict and score read from a datasets Dataset: its label column's feature types."""
from __future__ import annotations

import pytest
from datasets import ClassLabel, Dataset, DatasetDict, Features, LargeList, List, Value

from ulmtl.datasets import DataError
from ulmtl.labels import texts_and_labels

NAMES = ClassLabel(names=["neg", "pos"])


def labelled(labels: list, feature) -> Dataset:
    return Dataset.from_dict({"text": [f"text {i}" for i in range(len(labels))], "label": labels},
                             features=Features({"text": Value("string"), "label": feature}))


@pytest.mark.parametrize("feature, labels, expected", [
    (List(Value("string")), [["x"], ["y", "x"], []], [("x",), ("y", "x"), ()]),
    (List(Value("int64")), [[3], [1, 3], []], [(3,), (1, 3), ()]),
    (LargeList(Value("string")), [["x"], ["y"], ["x", "y"]], [("x",), ("y",), ("x", "y")]),
    (LargeList(NAMES), [[1], [0, 1], []], [("pos",), ("neg", "pos"), ()]),
    (List(NAMES), [[0], [], [1]], [("neg",), (), ("pos",)]),
])
def test_a_list_label_column_is_a_set_of_labels_per_text(feature, labels, expected):
    texts, read, names = texts_and_labels(labelled(labels, feature), None)
    assert texts == ["text 0", "text 1", "text 2"] and read == expected
    assert names == (["neg", "pos"] if isinstance(feature.feature, ClassLabel) else None)


def test_a_class_label_column_reads_as_names_as_a_dataset_or_as_its_columns():
    data = labelled([1, 0, 1], NAMES)
    expected = (["text 0", "text 1", "text 2"], ["pos", "neg", "pos"], ["neg", "pos"])
    assert texts_and_labels(data, None) == expected
    assert texts_and_labels(data["text"], data["label"]) == expected
    assert texts_and_labels(data.with_format("numpy"), None)[1:] == expected[1:]
    ids = labelled([1, 0, 1], Value("int64"))  # plain integers are labels in their own right
    assert texts_and_labels(ids, None)[1:] == ([1, 0, 1], None)


@pytest.mark.parametrize("feature, labels, message", [
    (NAMES, [0, 1, -1, -1], r"label 2 is -1, not a class id of \['neg', 'pos'\] \(0 to 1\); -1 marks an "
                            r"unlabelled text, as in the test splits of some hub datasets"),
    (List(NAMES), [[0], [1, -1]], r"label 1 holds -1, not a class id"),
])
def test_class_label_ids_out_of_range_are_refused_naming_the_first_row(feature, labels, message):
    with pytest.raises(DataError, match=message):
        texts_and_labels(labelled(labels, feature), None)


def test_a_dataset_dict_is_refused_naming_its_splits():
    data = DatasetDict({"train": labelled([0, 1], NAMES), "test": labelled([1, 0], NAMES)})
    with pytest.raises(DataError, match=r"a DatasetDict holds several splits \(\['train', 'test'\]\); pass "
                                        r"one, e.g. data\['train'\]"):
        texts_and_labels(data, None)
