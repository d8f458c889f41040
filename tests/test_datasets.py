"""Datasets: the real files in the shared data folder, fixtures written in the original download
layouts, the user's own files, the hub's column layout, tokenization caching."""
from __future__ import annotations

import json
import os
from collections import Counter
from pathlib import Path

import numpy as np
import pytest
from datasets import ClassLabel, Dataset, DatasetDict, Features, Value

import ulmtl.datasets.registry as data_module
import ulmtl.text as text_module
from ulmtl.datasets import (
    DataError, LoadReport, build_vocab, hub_to_layout, load_corpus, load_dataset, load_files, numericalize,
    read_files, resolve_data_dir, stratified_split, token_ids, tokenize,
)


class HubCalls(list):
    """(name, local folder) of each hub call, and in ``options`` the options each call passed."""

    def __init__(self):
        super().__init__()
        self.options = []


@pytest.fixture(autouse=True)
def no_hub(monkeypatch):
    """Tests never download: a call of the hub path is recorded and answered with an error."""
    calls = HubCalls()

    def fake(name, local_folder=None, options=None):
        calls.append((name, local_folder))
        calls.options.append(options)
        raise DataError(f"(test) hub download of {name!r} blocked")

    monkeypatch.setattr(data_module, "load_from_hub", fake)
    return calls


def _texts_labels(ds):
    return list(ds["text"]), list(ds["label"])


# =========================================================================== real data

def test_trec_coarse(shared_data):
    ds = load_dataset("trec", shared_data)
    assert set(ds) == {"train", "test"}
    assert ds["train"].num_rows == 5452 and ds["test"].num_rows == 500
    names = ds["train"].features["label"].names
    assert names == ["ABBR", "DESC", "ENTY", "HUM", "LOC", "NUM"]
    assert ds["test"].features["label"].names == names
    # Labels and questions as in the file (latin-1), in file order.
    lines = (shared_data / "trec" / "TREC_10.label").read_bytes().decode("latin-1").splitlines()
    expected = [names.index(line.split(":", 1)[0]) for line in lines if line.strip()]
    assert ds["test"]["label"] == expected
    assert ds["test"][0]["text"] == lines[0].split(" ", 1)[1].strip()
    assert set(ds["train"]["label"]) == set(range(6))


def test_trec_fine(shared_data):
    ds = load_dataset("trec", shared_data, fine=True)
    names = ds["train"].features["label"].names
    assert len(names) == 50
    assert all(":" in n and n.split(":")[0] in {"ABBR", "DESC", "ENTY", "HUM", "LOC", "NUM"} for n in names)
    assert ds["train"].num_rows == 5452 and ds["test"].num_rows == 500


def test_mr_counts_and_stratified_split(shared_data):
    ds = load_dataset("mr", shared_data)
    assert ds["train"].features["label"].names == ["negative", "positive"]
    total = ds["train"].num_rows + ds["test"].num_rows
    assert total == 10662
    train_counts = Counter(ds["train"]["label"])
    test_counts = Counter(ds["test"]["label"])
    assert train_counts[0] + test_counts[0] == 5331 == train_counts[1] + test_counts[1]
    # Stratified: 10% of each class in the test split.
    assert test_counts == {0: 533, 1: 533}
    assert not set(ds["test"]["text"]) & set(ds["train"]["text"])


def test_mr_split_is_deterministic_without_the_cache(shared_data, tmp_path, monkeypatch):
    first = load_dataset("mr", shared_data)
    monkeypatch.setenv("ULMTL_CACHE_DIR", str(tmp_path / "fresh-cache"))
    second = load_dataset("mr", shared_data)  # rebuilt from the files, not read from the cache
    assert (tmp_path / "fresh-cache" / "datasets").is_dir()
    for split in ("train", "test"):
        assert _texts_labels(first[split]) == _texts_labels(second[split])
    other_seed = load_dataset("mr", shared_data, seed=1)
    assert other_seed["test"]["text"] != first["test"]["text"]


def test_polarity_fold_0(shared_data):
    ds = load_dataset("polarity", shared_data, fold=0)
    assert ds["train"].num_rows == 1800 and ds["test"].num_rows == 200
    assert Counter(ds["test"]["label"]) == {0: 100, 1: 100}
    folder = shared_data / "review_polarity" / "txt_sentoken"
    cv0 = sorted(folder.glob("*/cv0??_*.txt"))
    assert len(cv0) == 200
    expected = {(" ".join(p.read_text().split("\n")).strip(), 0 if p.parent.name == "neg" else 1)
                for p in cv0}
    assert set(zip(ds["test"]["text"], ds["test"]["label"])) == expected
    assert not set(ds["train"]["text"]) & {t for t, _ in expected}


@pytest.mark.parametrize("fold", [-1, 10, 99])
def test_polarity_bad_fold(shared_data, fold):
    with pytest.raises(DataError, match="fold"):
        load_dataset("polarity", shared_data, fold=fold)


def test_tokenizing_twice_is_served_from_the_cache(shared_data, monkeypatch):
    train = load_dataset("trec", shared_data)["train"]
    first = tokenize(train)
    assert first["tokens"][0][0] == "xxbos" and first.num_rows == 5452
    [cache_file] = [f["filename"] for f in first.cache_files]
    mtime = os.stat(cache_file).st_mtime_ns

    calls = []
    real = text_module.tokenize_texts

    def counting(*args, **kwargs):
        calls.append(1)
        return real(*args, **kwargs)

    monkeypatch.setattr(text_module, "tokenize_texts", counting)
    again = tokenize(load_dataset("trec", shared_data)["train"])
    assert [f["filename"] for f in again.cache_files] == [cache_file]
    assert os.stat(cache_file).st_mtime_ns == mtime
    assert calls == [], "the second call tokenized again instead of reading the cache"
    assert again["tokens"][:50] == first["tokens"][:50]


def test_missing_dataset_names_the_folder(tmp_path):
    with pytest.raises(DataError) as info:
        load_dataset("polarity", tmp_path)
    assert str(tmp_path / "review_polarity/txt_sentoken") in str(info.value)
    assert "review_polarity.tar.gz" in str(info.value)


@pytest.mark.parametrize("name,folder,given,passed", [
    ("trec", "trec", {"fine": True}, {"fine": True}),
    ("mr", "rt-polaritydata", {}, {"test_fraction": 0.1, "seed": 0}),
])
def test_trec_and_mr_without_local_copy_go_to_the_hub(tmp_path, no_hub, name, folder, given, passed):
    """The hub is asked with the local folder and the dataset's own options only."""
    with pytest.raises(DataError, match="blocked"):
        load_dataset(name, tmp_path, **given)
    assert no_hub == [(name, tmp_path / folder)]
    assert no_hub.options == [passed]


@pytest.mark.parametrize("name,files,absent", [
    ("trec", ["trec/train_5500.label"], "TREC_10.label"),
    ("mr", ["rt-polaritydata/rt-polarity.pos"], "rt-polarity.neg"),
    ("polarity", ["review_polarity/txt_sentoken/pos/cv000_1.txt"], "neg/*.txt"),
    ("imdb", ["aclImdb/train/pos/0_9.txt", "aclImdb/train/neg/0_3.txt", "aclImdb/test/neg/0_2.txt"],
     "test/pos/*.txt"),
    ("ag_news", ["ag_news_csv/test.csv"], "train.csv"),
])
def test_a_folder_missing_part_of_the_download_is_refused_not_swapped_for_the_hub(tmp_path, no_hub, name,
                                                                                    files, absent):
    for path in files:
        _write(tmp_path / path, "x\n")
    with pytest.raises(DataError) as info:
        load_dataset(name, tmp_path)
    assert no_hub == []
    message = str(info.value)
    assert f"has no {absent}" in message and str(tmp_path) in message
    assert ("hub's copy" in message) == (name != "polarity")  # polarity has no hub copy


def test_data_dir_from_environment(tmp_path, monkeypatch):
    monkeypatch.setenv("ULMTL_DATA_DIR", str(tmp_path / "env-data"))
    assert resolve_data_dir() == tmp_path / "env-data"
    assert resolve_data_dir(tmp_path / "arg") == tmp_path / "arg"
    with pytest.raises(DataError, match=str(tmp_path / "env-data" / "review_polarity")):
        load_dataset("polarity")


def test_unknown_dataset_name(tmp_path):
    with pytest.raises(DataError, match="unknown dataset 'sst'"):
        load_dataset("sst", tmp_path)


# =========================================================================== IMDb (aclImdb layout)

def _write(path: Path, content, mode="w"):
    path.parent.mkdir(parents=True, exist_ok=True)
    if isinstance(content, bytes):
        path.write_bytes(content)
    else:
        path.write_text(content, encoding="utf-8")
    return path


def _write_aclimdb(root: Path) -> Path:
    base = root / "aclImdb"
    _write(base / "imdb.vocab", "the\nmovie\n")
    _write(base / "train" / "labeledBow.feat", "0 1:1\n")
    _write(base / "train" / "urls_pos.txt", "http://www.imdb.com/title/tt0453418/usercomments\n")
    _write(base / "train" / "pos" / "0_9.txt", "A great film.<br /><br />Loved it.")
    _write(base / "train" / "pos" / "1_7.txt", "Quite good — naïve charm.")
    _write(base / "train" / "neg" / "0_3.txt", "Dull.")
    _write(base / "train" / "neg" / "1_1.txt", "Awful, awful, awful.")
    _write(base / "train" / "neg" / "2_2.txt", "Not for me.")
    _write(base / "train" / "unsup" / "0_0.txt", "Unlabelled review one.")
    _write(base / "train" / "unsup" / "1_0.txt", "Unlabelled review two.")
    _write(base / "test" / "pos" / "0_10.txt", "Masterpiece.")
    _write(base / "test" / "neg" / "0_2.txt", "Terrible.")
    _write(base / "test" / "urls_neg.txt", "http://example\n")
    return base


def test_imdb_original_layout(tmp_path, no_hub):
    _write_aclimdb(tmp_path)
    ds = load_dataset("imdb", tmp_path)
    assert no_hub == []
    assert set(ds) == {"train", "test", "unsup"}
    assert ds["train"].features["label"].names == ["neg", "pos"]
    assert sorted(zip(*_texts_labels(ds["train"]))) == sorted([
        ("A great film.<br /><br />Loved it.", 1), ("Quite good — naïve charm.", 1),
        ("Dull.", 0), ("Awful, awful, awful.", 0), ("Not for me.", 0)])
    assert sorted(zip(*_texts_labels(ds["test"]))) == [("Masterpiece.", 1), ("Terrible.", 0)]
    assert ds["unsup"].column_names == ["text"]
    assert sorted(ds["unsup"]["text"]) == ["Unlabelled review one.", "Unlabelled review two."]


def test_imdb_without_local_copy_goes_to_the_hub(tmp_path, no_hub):
    with pytest.raises(DataError, match="blocked"):
        load_dataset("imdb", tmp_path)
    assert no_hub == [("imdb", tmp_path / "aclImdb")]


def test_imdb_bad_utf8_names_the_file(tmp_path):
    base = _write_aclimdb(tmp_path)
    bad = _write(base / "test" / "pos" / "1_8.txt", b"caf\xe9")
    with pytest.raises(DataError, match=str(bad)):
        load_dataset("imdb", tmp_path)


def test_trec_coarse_class_outside_the_six_names_file_and_line(tmp_path):
    _write(tmp_path / "trec" / "train_5500.label", "DESC:manner How did serfdom develop ?\n"
                                                   "HUM:ind Who killed Gandhi ?\n")
    test = _write(tmp_path / "trec" / "TREC_10.label", "NUM:date When was Ozzy born ?\n\n"
                                                       "FOO:bar What is a foo ?\n")
    for fine in (False, True):
        with pytest.raises(DataError) as info:
            load_dataset("trec", tmp_path, fine=fine)
        assert str(info.value) == (f"{test}, line 3: coarse class 'FOO' is not one of ABBR, DESC, ENTY, HUM, "
                                   f"LOC, NUM")


def test_polarity_bad_utf8_names_the_file(tmp_path):
    base = tmp_path / "review_polarity" / "txt_sentoken"
    _write(base / "pos" / "cv000_1.txt", "a lovely film\n")
    bad = _write(base / "neg" / "cv100_2.txt", b"tr\xe8s ennuyeux\n")
    with pytest.raises(DataError) as info:
        load_dataset("polarity", tmp_path)
    assert str(info.value) == f"{bad}: not valid UTF-8 at byte 2"


# =========================================================================== Zhang et al. CSVs

AG_CLASSES = "World\nSports\nBusiness\nSci/Tech\n"
AG_TRAIN = ('"3","Wall St. Bears Claw Back Into the Black (Reuters)","Reuters - Short-sellers, '
            'Wall Street\'s dwindling\\band of ultra-cynics, are seeing green again."\n'
            '"2","Phelps wins","Michael Phelps won ""gold"" again.\\nA new line."\n'
            '"1","Summit ends","Leaders met, and\nthen left."\n')
AG_TEST = '"4","New chip","A faster chip."\n"1","Talks","Peace talks resume."\n'


def test_ag_news_csv(tmp_path, no_hub):
    folder = tmp_path / "ag_news_csv"
    _write(folder / "classes.txt", AG_CLASSES)
    _write(folder / "readme.txt", "AG's News Topic Classification Dataset\n")
    _write(folder / "train.csv", AG_TRAIN)
    _write(folder / "test.csv", AG_TEST)
    ds = load_dataset("ag_news", tmp_path)
    assert no_hub == []
    assert ds["train"].features["label"].names == ["World", "Sports", "Business", "Sci/Tech"]
    assert ds["train"]["label"] == [2, 1, 0]
    assert ds["test"]["label"] == [3, 0]
    assert ds["train"][0]["text"] == ("xxfld 1 Wall St. Bears Claw Back Into the Black (Reuters) xxfld 2 "
                                      "Reuters - Short-sellers, Wall Street's dwindling\\band of "
                                      "ultra-cynics, are seeing green again.")
    # CSV quoting ("" -> "), the \n escape and a real newline inside a quoted field.
    assert ds["train"][1]["text"] == ('xxfld 1 Phelps wins xxfld 2 Michael Phelps won "gold" again.'
                                      '\nA new line.')
    assert ds["train"][2]["text"] == "xxfld 1 Summit ends xxfld 2 Leaders met, and\nthen left."
    assert ds["test"][0]["text"] == "xxfld 1 New chip xxfld 2 A faster chip."


def test_dbpedia_csv(tmp_path):
    names = ["Company", "EducationalInstitution", "Artist", "Athlete", "OfficeHolder",
             "MeanOfTransportation", "Building", "NaturalPlace", "Village", "Animal", "Plant", "Album",
             "Film", "WrittenWork"]
    folder = tmp_path / "dbpedia_csv"
    _write(folder / "classes.txt", "\n".join(names) + "\n")
    _write(folder / "train.csv", '"1","E. D. Abbott Ltd"," Abbott of Farnham E D Abbott Limited was a '
           'British coachbuilding business."\n"14","Some Book"," A novel."\n')
    _write(folder / "test.csv", '"10","Cat"," A small animal."\n')
    ds = load_dataset("dbpedia", tmp_path)
    assert ds["train"].features["label"].names == names
    assert ds["train"]["label"] == [0, 13] and ds["test"]["label"] == [9]
    assert ds["train"][0]["text"] == ("xxfld 1 E. D. Abbott Ltd xxfld 2 Abbott of Farnham E D Abbott "
                                      "Limited was a British coachbuilding business.")


def test_yelp_polarity_csv(tmp_path):
    folder = tmp_path / "yelp_review_polarity_csv"
    _write(folder / "readme.txt", "Yelp Review Polarity Dataset\n")
    _write(folder / "train.csv", '"1","Unfortunately, the frustration of being Dr. Goldberg\'s patient."\n'
           '"2","Been going to Dr. Goldberg for over 10 years.\\n\\nGreat."\n')
    _write(folder / "test.csv", '"2","Contrary to other reviews, I have zero complaints."\n')
    ds = load_dataset("yelp_polarity", tmp_path)
    assert ds["train"].features["label"].names == ["negative", "positive"]
    assert ds["train"]["label"] == [0, 1] and ds["test"]["label"] == [1]
    # One text field: no field markers.
    assert ds["train"][0]["text"] == "Unfortunately, the frustration of being Dr. Goldberg's patient."
    assert ds["train"][1]["text"] == "Been going to Dr. Goldberg for over 10 years.\n\nGreat."


def test_yelp_full_csv(tmp_path):
    folder = tmp_path / "yelp_review_full_csv"
    _write(folder / "train.csv", '"5","dr. goldberg offers everything"\n"1","Bad."\n"3","Meh."\n')
    _write(folder / "test.csv", '"2","Not great."\n')
    ds = load_dataset("yelp_full", tmp_path)
    assert ds["train"].features["label"].names == ["1 star", "2 stars", "3 stars", "4 stars", "5 stars"]
    assert ds["train"]["label"] == [4, 0, 2] and ds["test"]["label"] == [1]


def test_zhang_ragged_row_names_file_and_line(tmp_path):
    folder = tmp_path / "ag_news_csv"
    _write(folder / "classes.txt", AG_CLASSES)
    _write(folder / "train.csv", '"1","a","b"\n"2","c","d"\n"3","only a title"\n"1","e","f"\n')
    _write(folder / "test.csv", AG_TEST)
    with pytest.raises(DataError) as info:
        load_dataset("ag_news", tmp_path)
    message = str(info.value)
    assert str(folder / "train.csv") in message and "line 3" in message


@pytest.mark.parametrize("row,fragment", [('"9","a","b"', "outside 1..4"), ('"x","a","b"', "not an integer")])
def test_zhang_bad_class_names_file_and_line(tmp_path, row, fragment):
    folder = tmp_path / "ag_news_csv"
    _write(folder / "classes.txt", AG_CLASSES)
    _write(folder / "train.csv", AG_TRAIN)
    _write(folder / "test.csv", f'"1","a","b"\n{row}\n')
    with pytest.raises(DataError) as info:
        load_dataset("ag_news", tmp_path)
    assert str(folder / "test.csv") in str(info.value) and "line 2" in str(info.value)
    assert fragment in str(info.value)


def test_zhang_bad_utf8_names_the_right_line_in_a_big_file(tmp_path):
    folder = tmp_path / "yelp_review_polarity_csv"
    rows = [b'"1","review number %d, long enough to fill a few read-ahead chunks"' % i for i in range(3000)]
    rows[2500] = b'"2","caf\xe9"'
    _write(folder / "train.csv", b"\n".join(rows) + b"\n")
    _write(folder / "test.csv", '"1","x"\n')
    with pytest.raises(DataError) as info:
        load_dataset("yelp_polarity", tmp_path)
    assert str(folder / "train.csv") in str(info.value) and "line 2501" in str(info.value)


def test_zhang_missing_test_csv(tmp_path):
    _write(tmp_path / "ag_news_csv" / "train.csv", AG_TRAIN)
    with pytest.raises(DataError, match="test.csv"):
        load_dataset("ag_news", tmp_path)


def test_zhang_without_local_copy_goes_to_the_hub(tmp_path, no_hub):
    with pytest.raises(DataError, match="blocked"):
        load_dataset("dbpedia", tmp_path)
    assert no_hub == [("dbpedia", tmp_path / "dbpedia_csv")]


# =========================================================================== the hub's layout

def test_hub_to_layout_imdb():
    features = Features({"text": Value("string"), "label": ClassLabel(names=["neg", "pos"])})
    raw = DatasetDict({
        "train": Dataset.from_dict({"text": ["good", "bad"], "label": [1, 0]}, features=features),
        "test": Dataset.from_dict({"text": ["fine", "poor"], "label": [1, 0]}, features=features),
        "unsupervised": Dataset.from_dict({"text": ["u1", "u2", "u3"], "label": [-1, -1, -1]},
                                          features=features),
    })
    out = hub_to_layout("imdb", raw)
    assert set(out) == {"train", "test", "unsup"}
    assert out["train"].features["label"].names == ["neg", "pos"]
    assert _texts_labels(out["train"]) == (["good", "bad"], [1, 0])
    assert out["unsup"].column_names == ["text"] and out["unsup"]["text"] == ["u1", "u2", "u3"]


def test_hub_to_layout_dbpedia_matches_the_csv_text(tmp_path):
    names = ["Company", "EducationalInstitution"]
    features = Features({"label": ClassLabel(names=names), "title": Value("string"),
                         "content": Value("string")})
    raw = DatasetDict({
        "train": Dataset.from_dict({"label": [0, 1], "title": ["E. D. Abbott Ltd", "Some School"],
                                    "content": [" Abbott of Farnham.", " A school."]}, features=features),
        "test": Dataset.from_dict({"label": [1], "title": ["T"], "content": [" C."]}, features=features),
    })
    out = hub_to_layout("dbpedia", raw)
    assert set(out) == {"train", "test"}
    assert sorted(out["train"].column_names) == ["label", "text"]
    assert out["train"].features["label"].names == names
    assert out["train"]["label"] == [0, 1]
    assert out["train"][0]["text"].split() == "xxfld 1 E. D. Abbott Ltd xxfld 2 Abbott of Farnham.".split()
    # Tokenized, the hub text equals what the original CSV download gives.
    folder = tmp_path / "dbpedia_csv"
    _write(folder / "classes.txt", "\n".join(names) + "\n")
    _write(folder / "train.csv",
           '"1","E. D. Abbott Ltd"," Abbott of Farnham."\n"2","Some School"," A school."\n')
    _write(folder / "test.csv", '"2","T"," C."\n')
    local = load_dataset("dbpedia", tmp_path)
    tokenize_texts = text_module.tokenize_texts
    assert tokenize_texts(out["train"]["text"]) == tokenize_texts(local["train"]["text"])


def test_hub_to_layout_yelp_polarity_names():
    features = Features({"label": ClassLabel(names=["1", "2"]), "text": Value("string")})
    raw = DatasetDict({"train": Dataset.from_dict({"label": [0, 1], "text": ["a", "b"]}, features=features)})
    out = hub_to_layout("yelp_polarity", raw)
    assert out["train"].features["label"].names == ["negative", "positive"]
    assert out["train"]["label"] == [0, 1]


TREC_HUB_COARSE = ["ABBR", "ENTY", "DESC", "HUM", "LOC", "NUM"]  # CogComp/trec's own order


def _trec_hub_shaped(splits: dict[str, list[str]]) -> DatasetDict:
    """TREC lines ('COARSE:fine question') as CogComp/trec gives them: its own class orders, the
    same fine classes in every split."""
    fine_names = sorted({line.split(" ", 1)[0] for lines in splits.values() for line in lines})
    fine_names = fine_names[1:] + fine_names[:1]  # any order but the sorted one
    return DatasetDict({split: _trec_hub_split(lines, fine_names) for split, lines in splits.items()})


def _trec_hub_split(lines: list[str], fine_names: list[str]) -> Dataset:
    features = Features({"text": Value("string"), "coarse_label": ClassLabel(names=TREC_HUB_COARSE),
                         "fine_label": ClassLabel(names=fine_names)})
    labels = [line.split(" ", 1)[0] for line in lines]
    return Dataset.from_dict({"text": [line.split(" ", 1)[1].strip() for line in lines],
                              "coarse_label": [TREC_HUB_COARSE.index(x.split(":")[0]) for x in labels],
                              "fine_label": [fine_names.index(x) for x in labels]}, features=features)


def test_hub_to_layout_trec_names_the_classes_as_the_local_files_do(tmp_path):
    train = ["DESC:manner How did serfdom develop ?", "ENTY:cremat What films featured Bugs ?",
             "ABBR:exp What is AFS ?", "NUM:date When was Ozzy born ?"]
    test = ["HUM:ind Who killed Gandhi ?", "LOC:city What city had a world fair ?"]
    _write(tmp_path / "trec" / "train_5500.label", "\n".join(train) + "\n")
    _write(tmp_path / "trec" / "TREC_10.label", "\n".join(test) + "\n")
    raw = _trec_hub_shaped({"train": train, "test": test})
    for fine in (False, True):
        local = load_dataset("trec", tmp_path, fine=fine)
        hub = hub_to_layout("trec", raw, {"fine": fine})
        assert set(hub) == {"train", "test"}
        for split in ("train", "test"):
            assert hub[split].column_names == ["text", "label"]
            assert _texts_labels(hub[split]) == _texts_labels(local[split])
        if not fine:
            assert hub["train"].features["label"].names == ["ABBR", "DESC", "ENTY", "HUM", "LOC", "NUM"]
            assert hub["test"]["label"] == [3, 4]  # HUM, LOC in load_trec's order


def test_hub_to_layout_trec_matches_the_real_files(shared_data):
    folder = shared_data / "trec"
    raw = _trec_hub_shaped({split: [line for line in (folder / name).read_bytes().decode("latin-1").splitlines()
                                    if line.strip()]
                            for split, name in (("train", "train_5500.label"), ("test", "TREC_10.label"))})
    for fine in (False, True):
        local = load_dataset("trec", shared_data, fine=fine)
        hub = hub_to_layout("trec", raw, {"fine": fine})
        assert hub["train"].features["label"].names == local["train"].features["label"].names
        assert hub["train"].num_rows == 5452 and hub["test"].num_rows == 500
        assert hub["test"]["label"] == local["test"]["label"]
        assert hub["train"]["label"] == local["train"]["label"]


def _rotten_tomatoes_shaped(n_train: int, n_validation: int, n_test: int) -> DatasetDict:
    features = Features({"text": Value("string"), "label": ClassLabel(names=["neg", "pos"])})
    return DatasetDict({split: Dataset.from_dict({"text": [f"{split} {i}" for i in range(n)],
                                                  "label": [i % 2 for i in range(n)]}, features=features)
                        for split, n in (("train", n_train), ("validation", n_validation), ("test", n_test))})


def test_hub_to_layout_mr_train_and_validation_train_the_test_split_tests():
    out = hub_to_layout("mr", _rotten_tomatoes_shaped(6, 2, 4), {"test_fraction": 0.1, "seed": 0})
    assert set(out) == {"train", "test"}
    assert out["train"].features["label"].names == ["negative", "positive"]
    assert out["test"].features["label"].names == ["negative", "positive"]
    assert out["train"]["text"] == [f"train {i}" for i in range(6)] + ["validation 0", "validation 1"]
    assert out["train"]["label"] == [0, 1, 0, 1, 0, 1, 0, 1]
    assert _texts_labels(out["test"]) == ([f"test {i}" for i in range(4)], [0, 1, 0, 1])


@pytest.mark.parametrize("options", [{"test_fraction": 0.2, "seed": 0}, {"test_fraction": 0.1, "seed": 1}])
def test_hub_to_layout_mr_refuses_a_split_it_cannot_make(options):
    with pytest.raises(DataError, match="rt-polaritydata.*own test split"):
        hub_to_layout("mr", _rotten_tomatoes_shaped(2, 2, 2), options)


@pytest.mark.parametrize("name,hub_id,folder", [("trec", "CogComp/trec", "trec"),
                                                ("mr", "cornell-movie-review-data/rotten_tomatoes",
                                                 "rt-polaritydata")])
def test_trec_and_mr_hub_failure_says_how_to_get_the_files(monkeypatch, tmp_path, no_hub, name, hub_id,
                                                           folder):
    import datasets
    monkeypatch.undo()

    def offline(*args, **kwargs):
        raise ConnectionError("no network in tests")

    monkeypatch.setattr(datasets, "load_dataset", offline)
    with pytest.raises(DataError) as info:
        load_dataset(name, tmp_path)
    message = str(info.value)
    assert f"dataset {name!r} not found: looked for {tmp_path / folder}" in message
    assert hub_id in message and "ConnectionError" in message
    assert ("train_5500.label" if name == "trec" else "rt-polaritydata.tar.gz") in message


def test_load_from_hub_failure_is_a_data_error(monkeypatch, tmp_path, no_hub):
    """The real hub function, with `datasets.load_dataset` replaced: nothing goes to the network."""
    import datasets
    monkeypatch.undo()  # restore the real load_from_hub (and only that: set again below)

    def offline(*args, **kwargs):
        raise ConnectionError("no network in tests")

    monkeypatch.setattr(datasets, "load_dataset", offline)
    with pytest.raises(DataError) as info:
        data_module.load_from_hub("ag_news", tmp_path / "ag_news_csv")
    message = str(info.value)
    assert "fancyzhx/ag_news" in message and str(tmp_path / "ag_news_csv") in message
    assert "ConnectionError" in message


# =========================================================================== the user's own files

ROWS = [("a fine film", "pos"), ("dreadful", "neg"), ("loved it", "pos"), ("boring plot", "neg"),
        ("superb acting", "pos"), ("weak ending", "neg")]
TEST_ROWS = [("good fun", "pos"), ("not good", "neg")]


def _csv(path, rows, sep=",", header=("text", "label")):
    lines = [sep.join(header)] + [sep.join(r) for r in rows]
    return _write(path, "\n".join(lines) + "\n")


def _jsonl(path, rows, keys=("text", "label")):
    return _write(path, "".join(json.dumps(dict(zip(keys, r))) + "\n" for r in rows))


def _parquet(path, rows, keys=("text", "label")):
    import pyarrow as pa
    import pyarrow.parquet as pq
    pq.write_table(pa.table({k: [r[i] for r in rows] for i, k in enumerate(keys)}), path)
    return path


def _folder(path, rows):
    for i, (text, label) in enumerate(rows):
        _write(path / label / f"{i}.txt", text)
    return path


@pytest.mark.parametrize("kind", ["csv", "tsv", "jsonl", "parquet", "folder"])
def test_load_files_all_formats(tmp_path, kind):
    writers = {
        "csv": lambda p, r: _csv(p.with_suffix(".csv"), r),
        "tsv": lambda p, r: _csv(p.with_suffix(".tsv"), r, sep="\t"),
        "jsonl": lambda p, r: _jsonl(p.with_suffix(".jsonl"), r),
        "parquet": lambda p, r: _parquet(p.with_suffix(".parquet"), r),
        "folder": _folder,
    }
    train = writers[kind](tmp_path / "train", ROWS)
    test = writers[kind](tmp_path / "test", TEST_ROWS)
    ds, report = read_files(train, test)
    assert ds["train"].features["label"].names == ["neg", "pos"]
    assert sorted(zip(*_texts_labels(ds["train"]))) == sorted((t, int(l == "pos")) for t, l in ROWS)
    assert sorted(zip(*_texts_labels(ds["test"]))) == sorted((t, int(l == "pos")) for t, l in TEST_ROWS)
    assert [(f.path, f.split, f.rows_read, f.rows_kept) for f in report.files] == [
        (str(train), "train", 6, 6), (str(test), "test", 2, 2)]
    assert report.skipped_empty == 0 and report.splits == {"train": 6, "test": 2} and not report.all_warnings


def test_load_files_custom_columns_numeric_labels_and_quoted_commas(tmp_path):
    path = _write(tmp_path / "d.csv", 'id,review,stars\n1,"Good, really good",10\n2,"Bad",2\n'
                  '3,"Ok ""fine""",10\n4,meh,2\n5,x,9\n')
    ds = load_files(path, path, text_column="review", label_column="stars")
    # Numeric labels are ordered as numbers, not as strings ("10" after "9").
    assert ds["train"].features["label"].names == ["2", "9", "10"]
    assert ds["test"]["text"][:3] == ["Good, really good", "Bad", 'Ok "fine"']
    assert ds["test"]["label"][:3] == [2, 0, 2]


def test_load_files_stratified_split_without_test(tmp_path):
    rows = ([(f"positive text {i}", "pos") for i in range(30)]
            + [(f"negative text {i}", "neg") for i in range(10)])
    path = _csv(tmp_path / "all.csv", rows)
    ds = load_files(path, test_fraction=0.2, seed=3)
    assert ds["train"].num_rows == 32 and ds["test"].num_rows == 8
    assert Counter(ds["test"]["label"]) == {1: 6, 0: 2}
    assert not set(ds["train"]["text"]) & set(ds["test"]["text"])
    again = load_files(path, test_fraction=0.2, seed=3)
    assert again["test"]["text"] == ds["test"]["text"]
    assert load_files(path, test_fraction=0.2, seed=4)["test"]["text"] != ds["test"]["text"]


def test_stratified_split_function():
    labels = [0] * 50 + [1] * 30 + [2] * 20
    train, test = stratified_split(labels, 0.1, seed=0)
    assert sorted(train + test) == list(range(100))
    assert Counter(labels[i] for i in test) == {0: 5, 1: 3, 2: 2}
    assert (train, test) == stratified_split(labels, 0.1, seed=0)
    with pytest.raises(DataError):
        stratified_split(labels, 1.0, seed=0)


def test_missing_column_names_file_and_columns(tmp_path):
    path = _csv(tmp_path / "d.csv", ROWS, header=("sentence", "label"))
    with pytest.raises(DataError) as info:
        load_files(path)
    assert str(path) in str(info.value) and "'text'" in str(info.value) and "sentence" in str(info.value)
    path = _jsonl(tmp_path / "d.jsonl", ROWS, keys=("text", "y"))
    with pytest.raises(DataError, match="no column 'label'"):
        load_files(path)


def test_empty_text_is_an_error_naming_file_and_line(tmp_path):
    path = _csv(tmp_path / "d.csv", ROWS[:3] + [("  ", "neg")] + ROWS[3:])
    with pytest.raises(DataError) as info:
        load_files(path)
    assert str(path) in str(info.value) and "line 5" in str(info.value) and "skip_empty" in str(info.value)


def test_skip_empty_reports_the_count(tmp_path, capsys):
    path = _csv(tmp_path / "d.csv", ROWS[:3] + [("", "neg"), (" ", "pos")] + ROWS[3:])
    test = _jsonl(tmp_path / "t.jsonl", TEST_ROWS + [("", "neg")])
    ds = load_files(path, test, skip_empty=True)
    assert ds["train"].num_rows == 6 and ds["test"].num_rows == 2
    out = capsys.readouterr().out
    assert "skipped 3 rows" in out
    assert f"read 8 rows from {path} (train)" in out and f"read 3 rows from {test} (test)" in out
    _, report = read_files(path, test, skip_empty=True)
    assert [(f.rows_read, f.rows_kept, f.skipped_empty) for f in report.files] == [(8, 6, 2), (3, 2, 1)]
    assert report.skipped_empty == 3 and report.to_dict()["skipped_empty_rows"] == 3
    assert capsys.readouterr().out == ""  # read_files prints nothing: a recipe prints its report


def test_skip_empty_when_every_row_is_empty(tmp_path):
    path = _csv(tmp_path / "d.csv", [("", "neg"), ("", "pos")])
    with pytest.raises(DataError, match="2 skipped as empty"):
        load_files(path, skip_empty=True)


def test_empty_file_in_a_class_folder(tmp_path):
    folder = _folder(tmp_path / "train", ROWS)
    _write(folder / "neg" / "empty.txt", "\n")
    with pytest.raises(DataError, match="empty.txt"):
        load_files(folder)
    _, report = read_files(folder, folder, skip_empty=True)
    assert report.skipped_empty == 2


def test_missing_label_names_file_and_line(tmp_path):
    path = _csv(tmp_path / "d.csv", ROWS[:2] + [("no label here", "")] + ROWS[2:])
    with pytest.raises(DataError) as info:
        load_files(path)
    assert str(path) in str(info.value) and "line 4" in str(info.value) and "label" in str(info.value)
    path = _write(tmp_path / "d.jsonl", '{"text": "a", "label": "x"}\n{"text": "b", "label": null}\n')
    with pytest.raises(DataError, match="line 2"):
        load_files(path)


def test_unseen_test_label(tmp_path):
    train = _csv(tmp_path / "train.csv", ROWS)
    test = _csv(tmp_path / "test.csv", TEST_ROWS + [("so so", "neutral")])
    with pytest.raises(DataError) as info:
        load_files(train, test)
    assert str(test) in str(info.value) and "neutral" in str(info.value)


def test_single_class(tmp_path):
    path = _csv(tmp_path / "d.csv", [(t, "pos") for t, _ in ROWS])
    with pytest.raises(DataError, match=r"only one class \('pos'\)"):
        load_files(path)
    with pytest.raises(DataError, match="only one class"):
        load_files(_folder(tmp_path / "one", [(t, "pos") for t, _ in ROWS]))


def test_ragged_user_csv_names_file_and_line(tmp_path):
    path = _write(tmp_path / "d.csv", "text,label\na,pos\nb,neg,extra\n")
    with pytest.raises(DataError) as info:
        load_files(path)
    assert str(path) in str(info.value) and "line 3" in str(info.value)


@pytest.mark.parametrize("suffix", [".csv", ".tsv", ".jsonl"])
def test_non_utf8_bytes_name_file_and_line(tmp_path, suffix):
    rows = ROWS * 400  # large enough that decoding happens in several read-ahead chunks
    path = {".csv": lambda: _csv(tmp_path / "d.csv", rows),
            ".tsv": lambda: _csv(tmp_path / "d.tsv", rows, sep="\t"),
            ".jsonl": lambda: _jsonl(tmp_path / "d.jsonl", rows)}[suffix]()
    lines = path.read_bytes().split(b"\n")
    lines[2000] = {".csv": b"caf\xe9 au lait,pos", ".tsv": b"caf\xe9 au lait\tpos",
                   ".jsonl": b'{"text": "caf\xe9 au lait", "label": "pos"}'}[suffix]
    path.write_bytes(b"\n".join(lines))
    with pytest.raises(DataError) as info:
        load_files(path)
    message = str(info.value)
    assert str(path) in message and "line 2001" in message and "latin-1" in message
    # And with the right encoding it loads.
    ds = load_files(path, encoding="latin-1")
    assert ds["train"].num_rows + ds["test"].num_rows == len(rows)


def test_non_utf8_file_in_a_class_folder(tmp_path):
    folder = _folder(tmp_path / "train", ROWS)
    bad = _write(folder / "pos" / "latin.txt", b"tr\xe8s bien")
    with pytest.raises(DataError, match=str(bad)):
        load_files(folder)


def test_bad_inputs(tmp_path):
    with pytest.raises(DataError, match="no such file"):
        load_files(tmp_path / "nope.csv")
    with pytest.raises(DataError, match="empty"):
        load_files(_write(tmp_path / "e.csv", ""))
    with pytest.raises(DataError, match="no data rows"):
        load_files(_write(tmp_path / "h.csv", "text,label\n"))
    with pytest.raises(DataError, match="unsupported file type"):
        load_files(_write(tmp_path / "d.xlsx", "x"))
    with pytest.raises(DataError, match="line 2"):
        load_files(_write(tmp_path / "j.jsonl", '{"text": "a", "label": 1}\n{broken\n'))
    with pytest.raises(DataError, match="JSON object"):
        load_files(_write(tmp_path / "k.jsonl", '["a", 1]\n'))
    with pytest.raises(DataError, match="sub-folder per class"):
        load_files(_write(tmp_path / "flat" / "a.txt", "x").parent)


# =========================================================================== tokens and ids

def test_tokenize_vocab_numericalize_token_ids(tmp_path):
    path = _csv(tmp_path / "d.csv", ROWS)
    ds = load_files(path, path)
    tokenized = tokenize(ds)
    assert tokenized["train"][0]["tokens"][0] == "xxbos"
    vocab = build_vocab([tokenized["train"]], max_size=100, min_freq=1)
    assert vocab.itos[:9] == text_module.SPECIAL_TOKENS
    numbered = numericalize(tokenized, vocab)
    row = numbered["test"][1]
    assert row["ids"] == vocab.numericalize(row["tokens"]) and row["length"] == len(row["tokens"])
    ids = token_ids(numbered["test"])
    assert [a.tolist() for a in ids] == numbered["test"]["ids"]
    assert all(a.dtype == np.int64 for a in ids)
    # With an index mapping (select / shuffle) the ids follow the rows.
    picked = numbered["test"].select([4, 0, 2])
    assert [a.tolist() for a in token_ids(picked)] == [numbered["test"]["ids"][i] for i in (4, 0, 2)]


@pytest.mark.parametrize("name,given,option", [("trec", {"fold": 3}, "fold"), ("mr", {"fine": True}, "fine"),
                                               ("polarity", {"seed": 1}, "seed"), ("imdb", {"test_fraction": 0.2},
                                                                                   "test_fraction")])
def test_an_option_the_dataset_does_not_take_is_refused_before_reading(tmp_path, name, given, option):
    with pytest.raises(DataError, match=f"load_dataset: {option} does not apply to dataset '{name}'"):
        load_dataset(name, tmp_path / "nothing-here", **given)
