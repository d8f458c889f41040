"""The ULMFiT paper's large-dataset recipes (IMDb, Yelp, AG News, DBpedia): ``--smoke`` runs on tiny
fixtures written in each dataset's original download layout, the paper's settings, and the error
when neither a local copy nor the hub is there."""
from __future__ import annotations

import csv
import importlib.util
import json
import random
from pathlib import Path

import pytest

from ulmtl.datasets import DataError

RECIPES = Path(__file__).resolve().parents[1] / "recipes"

FILLER = ["the", "a", "this", "that", "it", "was", "is", "and", "but", "with", "of", "in", "on",
          "for", "really", "quite", "very", "again", "today", "we", "they", "people", "time", "all"]
# Words that mark a class (a slice per class), so the texts differ between classes.
MARKERS = ["wonderful", "brilliant", "superb", "delightful", "dreadful", "boring", "tedious", "awful",
           "election", "minister", "parliament", "treaty", "football", "tennis", "goal", "match",
           "shares", "market", "profit", "bank", "software", "internet", "computer", "space",
           "company", "founded", "headquarters", "industry", "school", "university", "college",
           "students", "painter", "singer", "guitarist", "sculptor", "footballer", "cyclist",
           "swimmer", "boxer", "senator", "governor", "mayor", "president", "locomotive", "ship",
           "aircraft", "car", "castle", "church", "tower", "bridge", "mountain", "river", "lake",
           "glacier", "hamlet", "parish", "municipality", "district", "beetle", "moth", "snail",
           "spider", "orchid", "fern", "shrub", "grass", "record", "tracks", "studio", "debut",
           "movie", "director", "starring", "sequel", "novel", "author", "poem", "published"]

AG_NEWS_CLASSES = ["World", "Sports", "Business", "Sci/Tech"]
DBPEDIA_CLASSES = ["Company", "EducationalInstitution", "Artist", "Athlete", "OfficeHolder",
                   "MeanOfTransportation", "Building", "NaturalPlace", "Village", "Animal", "Plant",
                   "Album", "Film", "WrittenWork"]
YELP_POLARITY_CLASSES = ["negative", "positive"]
YELP_FULL_CLASSES = ["1 star", "2 stars", "3 stars", "4 stars", "5 stars"]
IMDB_CLASSES = ["neg", "pos"]
UNSUP_WORD = "quokkaesque"  # only in the unlabelled IMDb reviews

HUB_IDS = {"imdb": "stanfordnlp/imdb", "yelp_polarity": "fancyzhx/yelp_polarity",
           "yelp_full": "Yelp/yelp_review_full", "ag_news": "fancyzhx/ag_news",
           "dbpedia": "fancyzhx/dbpedia_14"}
FOLDERS = {"imdb": "aclImdb", "yelp_polarity": "yelp_review_polarity_csv",
           "yelp_full": "yelp_review_full_csv", "ag_news": "ag_news_csv", "dbpedia": "dbpedia_csv"}


def recipe(name: str):
    spec = importlib.util.spec_from_file_location(f"paper_recipe_{name}", RECIPES / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def sentence(rng: random.Random, label: int, n_words: int) -> str:
    """Filler words mixed with the markers of class ``label`` (four marker words per class)."""
    markers = MARKERS[4 * label:4 * label + 4]
    words = [rng.choice(markers) if rng.random() < 0.3 else rng.choice(FILLER) for _ in range(n_words)]
    return " ".join(words).capitalize() + "."


def _write(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text, encoding="utf-8")


# --------------------------------------------------------------------------- original layouts

def write_aclimdb(root: Path, per_class: int = 30, n_unsup: int = 20) -> None:
    """aclImdb/{train,test}/{neg,pos}/ID_RATING.txt and train/unsup/ID_0.txt, as unpacked."""
    rng = random.Random(0)
    base = root / "aclImdb"
    _write(base / "imdb.vocab", "the\nmovie\n")
    _write(base / "README", "Large Movie Review Dataset v1.0\n")
    for split in ("train", "test"):
        for label, folder in enumerate(IMDB_CLASSES):
            for i in range(per_class):
                rating = rng.choice([1, 2, 3, 4]) if folder == "neg" else rng.choice([7, 8, 9, 10])
                review = sentence(rng, label, 18) + "<br /><br />" + sentence(rng, label, 12)
                _write(base / split / folder / f"{i}_{rating}.txt", review)
    for i in range(n_unsup):
        review = sentence(rng, i % 2, 10) + f" A {UNSUP_WORD} {UNSUP_WORD} film. " + sentence(rng, i % 2, 8)
        _write(base / "train" / "unsup" / f"{i}_0.txt", review)


def write_zhang(root: Path, folder: str, classes: list[str], n_fields: int, classes_file: bool,
                n_train: int = 40, n_test: int = 10) -> None:
    """<folder>/train.csv and test.csv ("class","field",...; classes counted from 1), classes.txt."""
    rng = random.Random(len(classes))
    base = root / folder
    base.mkdir(parents=True)
    if classes_file:
        _write(base / "classes.txt", "\n".join(classes) + "\n")
    for split, per_class in (("train", n_train), ("test", n_test)):
        rows = []
        for label in range(len(classes)):
            for _ in range(per_class):
                if n_fields == 2:
                    fields = [sentence(rng, label, 5).rstrip("."),
                              sentence(rng, label, 16) + "\\n" + sentence(rng, label, 6)]
                else:
                    fields = [sentence(rng, label, 20) + ' "Yes," she said.\\n' + sentence(rng, label, 8)]
                rows.append([str(label + 1)] + fields)
        rng.shuffle(rows)
        with open(base / f"{split}.csv", "w", newline="", encoding="utf-8") as handle:
            csv.writer(handle, quoting=csv.QUOTE_ALL, lineterminator="\n").writerows(rows)


FIXTURES = {
    "imdb": (write_aclimdb, IMDB_CLASSES),
    "yelp_polarity": (lambda root: write_zhang(root, "yelp_review_polarity_csv", YELP_POLARITY_CLASSES, 1,
                                               classes_file=False), YELP_POLARITY_CLASSES),
    "yelp_full": (lambda root: write_zhang(root, "yelp_review_full_csv", YELP_FULL_CLASSES, 1,
                                           classes_file=False), YELP_FULL_CLASSES),
    "ag_news": (lambda root: write_zhang(root, "ag_news_csv", AG_NEWS_CLASSES, 2, classes_file=True),
                AG_NEWS_CLASSES),
    "dbpedia": (lambda root: write_zhang(root, "dbpedia_csv", DBPEDIA_CLASSES, 2, classes_file=True),
                DBPEDIA_CLASSES),
}


def check_outputs(output: Path, classes: list[str]) -> dict:
    metrics = json.loads((output / "metrics.json").read_text())
    config = json.loads((output / "config.json").read_text())
    assert config["smoke"] is True
    assert config["classifier"]["directions"] == ["forward"]  # --smoke: one direction only
    test = metrics["test"]
    assert 0.0 <= test["accuracy"] <= 1.0
    matrix = test["confusion_matrix"]
    assert len(matrix) == len(classes) and all(len(row) == len(classes) for row in matrix)
    assert sum(map(sum, matrix)) == test["n_test"] > 0
    assert list(test["per_class"]) == classes
    assert metrics["directions"] == ["forward"] and list(metrics["lm_finetune"]) == ["forward"]
    assert (output / "lm-forward" / "weights.safetensors").exists()
    assert (output / "model" / "forward" / "weights.safetensors").exists()
    assert not (output / "model" / "backward").exists()
    return metrics


# --------------------------------------------------------------------------- smoke runs

@pytest.mark.parametrize("name", ["yelp_polarity", "yelp_full", "ag_news", "dbpedia"])
def test_zhang_recipe_smoke_on_the_original_csvs(name, tmp_path, monkeypatch):
    monkeypatch.setattr("ulmtl.datasets.registry.load_from_hub", _no_hub)
    write, classes = FIXTURES[name]
    data = tmp_path / "data"
    write(data)
    out = tmp_path / "out"
    recipe(name).main(["--smoke", "--data-dir", str(data), "--output", str(out)])
    metrics = check_outputs(out, classes)
    assert metrics["dataset"] == name
    n_train = min(200, 40 * len(classes))  # --smoke keeps at most 200 (stratified)
    assert abs(metrics["n_train"] - n_train) <= len(classes)
    assert metrics["test"]["n_test"] == pytest.approx(min(100, 10 * len(classes)), abs=len(classes))


def test_imdb_recipe_smoke_fine_tunes_the_lm_on_the_unlabelled_reviews(tmp_path, monkeypatch):
    monkeypatch.setattr("ulmtl.datasets.registry.load_from_hub", _no_hub)
    data = tmp_path / "data"
    write_aclimdb(data)
    out = tmp_path / "out"
    recipe("imdb").main(["--smoke", "--data-dir", str(data), "--output", str(out)])
    metrics = check_outputs(out, IMDB_CLASSES)
    assert metrics["n_train"] == 60 and metrics["test"]["n_test"] == 60
    # The word only the unsup reviews hold: absent from the stage-1 LM (trained here on the labelled
    # train texts), present in the LM fine-tuned on every split's text.
    stage1_vocab = json.loads((out / "stage1-forward" / "vocab.json").read_text(encoding="utf-8"))
    finetuned_vocab = json.loads((out / "lm-forward" / "vocab.json").read_text(encoding="utf-8"))
    assert UNSUP_WORD not in stage1_vocab
    assert UNSUP_WORD in finetuned_vocab


def _no_hub(name, local_folder=None, options=None):
    raise AssertionError(f"the recipe went to the hub for {name!r} although {local_folder} holds the data")


# --------------------------------------------------------------------------- settings and errors

@pytest.mark.parametrize("name", sorted(FIXTURES))
def test_paper_recipe_settings(name, monkeypatch):
    """With the AWD-LSTM, without --smoke: the paper's forward + backward ensemble and the default bptt /
    batch size; the default backbone (the transformer) reads both directions at once."""
    module = recipe(name)
    monkeypatch.setattr(module, "run_recipe", lambda config: config)
    default = module.main([])
    assert default.backbone == "transformer" and default.classifier.directions == ("forward",)
    config = module.main(["--backbone=awd_lstm"])
    assert config.dataset == name and config.output == f"runs/{name}" and not config.smoke
    assert config.classifier.directions == ("forward", "backward")
    assert config.classifier.bptt == 70 and config.classifier.batch_size == 64
    assert config.finetune_lm and config.classifier.strategy == "finetune"
    smoke = module.main(["--smoke"])
    assert smoke.smoke and smoke.classifier.directions == ("forward",) and smoke.model.hidden_size == 16


@pytest.mark.parametrize("name", sorted(FIXTURES))
def test_paper_recipe_without_local_copy_or_network(name, tmp_path, monkeypatch):
    import datasets

    def offline(*args, **kwargs):
        raise ConnectionError("no network in tests")

    monkeypatch.setattr(datasets, "load_dataset", offline)
    empty = tmp_path / "data"
    empty.mkdir()
    with pytest.raises(DataError) as info:
        recipe(name).main(["--smoke", "--data-dir", str(empty), "--output", str(tmp_path / "out")])
    message = str(info.value)
    assert str(empty / FOLDERS[name]) in message
    assert HUB_IDS[name] in message and "ConnectionError" in message
    assert not (tmp_path / "out" / "metrics.json").exists()
