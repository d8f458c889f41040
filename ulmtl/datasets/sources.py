"""Parsers of the original download layouts (TREC, MR, polarity v2.0, IMDb, Zhang et al. 2015
CSVs), the hub's copies mapped to the same columns and class names, and stage-1 corpora.

A parser takes the dataset's name, its folder in the data directory, its class names and its
options, and returns ``None`` when there is no such folder (the registry then tries the hub); a
folder without every file of the download raises :class:`IncompleteCopy`.
"""
from __future__ import annotations

import csv
import re
from pathlib import Path

import datasets
from datasets import ClassLabel, Dataset, DatasetDict
from datasets.exceptions import DatasetGenerationError

from ulmtl.datasets.cache import cache_dir, cached
from ulmtl.datasets.layout import (
    DataError, bad_bytes_at, decode_line, find_bad_bytes, holds_copy, labelled, long_csv_fields, stratified_split,
    unlabelled,
)
from ulmtl.text import FLD

# --------------------------------------------------------------------------- TREC

TREC_COARSE = ("ABBR", "DESC", "ENTY", "HUM", "LOC", "NUM")
_TREC_LINE = re.compile(r"^([A-Z]+):(\S+) (.+)$")


def _read_trec(path: Path, fine: bool, coarse_classes: tuple[str, ...]) -> tuple[list[str], list[str]]:
    """Questions and labels of a TREC file; a coarse class not in ``coarse_classes`` is an error."""
    texts, labels = [], []
    for line_no, raw in enumerate(path.read_bytes().splitlines(), 1):
        line = raw.decode("latin-1").strip()
        if not line:
            continue
        match = _TREC_LINE.match(line)
        if not match:
            raise DataError(f"{path}, line {line_no}: expected 'COARSE:fine question', got {line[:60]!r}")
        coarse, fine_label, question = match.groups()
        if coarse not in coarse_classes:
            raise DataError(f"{path}, line {line_no}: coarse class {coarse!r} is not one of "
                            f"{', '.join(coarse_classes)}")
        texts.append(question)
        labels.append(f"{coarse}:{fine_label}" if fine else coarse)
    return texts, labels


def load_trec(name: str, folder: Path, classes: tuple[str, ...], fine: bool = False) -> DatasetDict | None:
    """TREC-6 (``fine``: the 50 fine classes, named ``COARSE:fine``) from the original files."""
    train_path, test_path = folder / "train_5500.label", folder / "TREC_10.label"
    if not holds_copy(folder, [train_path.name, test_path.name]):
        return None

    def build():
        train_texts, train_labels = _read_trec(train_path, fine, classes)
        test_texts, test_labels = _read_trec(test_path, fine, classes)
        names = sorted(set(train_labels) | set(test_labels)) if fine else list(classes)
        index = {n: i for i, n in enumerate(names)}
        return DatasetDict({
            "train": labelled(train_texts, [index[x] for x in train_labels], names),
            "test": labelled(test_texts, [index[x] for x in test_labels], names),
        })
    return cached(name, {"fine": fine}, [train_path, test_path], build)


def trec_from_hub(raw: DatasetDict, fine: bool = False) -> DatasetDict:
    """``CogComp/trec`` (``text``, ``coarse_label``, ``fine_label``; its own class order) with
    :func:`load_trec`'s class names and order: the coarse classes sorted, or the fine ones."""
    column = "fine_label" if fine else "coarse_label"
    out = {}
    for split, ds in raw.items():
        hub_names = ds.features[column].names
        names = sorted(hub_names) if fine else list(TREC_COARSE)
        index = {n: i for i, n in enumerate(names)}
        out[split] = labelled(list(ds["text"]), [index[hub_names[i]] for i in ds[column]], names)
    return DatasetDict(out)


# --------------------------------------------------------------------------- MR

POLARITY = ("negative", "positive")


def load_mr(name: str, folder: Path, classes: tuple[str, ...], test_fraction: float = 0.1,
            seed: int = 0) -> DatasetDict | None:
    """MR sentence polarity. No official split: a stratified split seeded by ``seed``."""
    paths = [folder / "rt-polarity.neg", folder / "rt-polarity.pos"]
    if not holds_copy(folder, [p.name for p in paths]):
        return None

    def build():
        texts, labels = [], []
        for label, path in enumerate(paths):
            for line_no, raw in enumerate(path.read_bytes().splitlines(), 1):
                text = decode_line(raw, path, line_no, "utf-8-or-latin-1").strip()
                if text:
                    texts.append(text)
                    labels.append(label)
        train_idx, test_idx = stratified_split(labels, test_fraction, seed)
        names = list(classes)
        return DatasetDict({
            "train": labelled([texts[i] for i in train_idx], [labels[i] for i in train_idx], names),
            "test": labelled([texts[i] for i in test_idx], [labels[i] for i in test_idx], names),
        })
    return cached(name, {"test_fraction": test_fraction, "seed": seed}, paths, build)


def mr_from_hub(raw: DatasetDict, test_fraction: float = 0.1, seed: int = 0) -> DatasetDict:
    """``cornell-movie-review-data/rotten_tomatoes`` (label 0 = neg, 1 = pos): its train and
    validation splits as train, its test split as test. ``test_fraction`` and ``seed`` split the
    local files only, so other values than 0.1 and 0 are refused here."""
    if (test_fraction, seed) != (0.1, 0):
        raise DataError(f"dataset 'mr': test_fraction={test_fraction:g}, seed={seed} split the local "
                        f"files (rt-polaritydata/); the hub copy comes with its own test split: put "
                        f"the original download in the data directory, or keep test_fraction=0.1, seed=0")
    names = list(POLARITY)
    texts, labels = {}, {}
    for split, target in (("train", "train"), ("validation", "train"), ("test", "test")):
        texts.setdefault(target, []).extend(raw[split]["text"])
        labels.setdefault(target, []).extend(raw[split]["label"])
    return DatasetDict({split: labelled(texts[split], labels[split], names) for split in texts})


# --------------------------------------------------------------------------- polarity v2.0

def _read_utf8(path: Path) -> str:
    """A text file read as UTF-8; other bytes are a DataError naming the file and byte."""
    try:
        return path.read_text(encoding="utf-8")
    except UnicodeDecodeError as err:
        raise DataError(f"{path}: not valid UTF-8 at byte {err.start}") from None


_CV_NAME = re.compile(r"^cv(\d{3})_")


def load_polarity(name: str, folder: Path, classes: tuple[str, ...], fold: int = 0) -> DatasetDict | None:
    """Polarity v2.0: fold ``k`` (files cv{k}00-cv{k}99) is the test split."""
    if not 0 <= fold <= 9:
        raise DataError(f"polarity: fold must be 0..9, got {fold}")
    if not holds_copy(folder, ["neg/*.txt", "pos/*.txt"]):
        return None
    files = sorted((folder / "neg").glob("*.txt")) + sorted((folder / "pos").glob("*.txt"))

    def build():
        splits = {"train": ([], []), "test": ([], [])}
        for path in files:
            match = _CV_NAME.match(path.name)
            if not match:
                raise DataError(f"{path}: file name must start with cvNNN_ (the fold prefix)")
            label = 0 if path.parent.name == "neg" else 1
            text = " ".join(_read_utf8(path).split("\n")).strip()
            split = "test" if int(match.group(1)) // 100 == fold else "train"
            splits[split][0].append(text)
            splits[split][1].append(label)
        return DatasetDict({k: labelled(t, y, list(classes)) for k, (t, y) in splits.items()})
    return cached(name, {"fold": fold}, files, build)


# --------------------------------------------------------------------------- IMDb

def load_imdb(name: str, folder: Path, classes: tuple[str, ...]) -> DatasetDict | None:
    """IMDb: ``{train,test}/{neg,pos}`` and the unlabelled ``train/unsup`` as ``unsup``."""
    if not holds_copy(folder, [f"{split}/{c}/*.txt" for split in ("train", "test") for c in classes]):
        return None
    files = {split: {c: sorted((folder / split / c).glob("*.txt")) for c in classes}
             for split in ("train", "test")}
    unsup = sorted((folder / "train" / "unsup").glob("*.txt"))
    sources = [p for split in files.values() for group in split.values() for p in group] + unsup

    def build():
        out = {}
        for split, groups in files.items():
            texts, labels = [], []
            for label, c in enumerate(classes):
                for path in groups[c]:
                    texts.append(_read_utf8(path))
                    labels.append(label)
            out[split] = labelled(texts, labels, list(classes))
        if unsup:
            out["unsup"] = unlabelled([_read_utf8(p) for p in unsup])
        return DatasetDict(out)
    return cached(name, {}, sources, build)


# --------------------------------------------------------------------------- Zhang et al. 2015 CSVs

def join_fields(fields: list[str]) -> str:
    """Several text fields as one text, marked as fastai/ULMFiT do: ``xxfld 1 title xxfld 2 body``."""
    if len(fields) == 1:
        return fields[0]
    return " ".join(f"{FLD} {i} {field}" for i, field in enumerate(fields, 1))


def _unescape_zhang(text: str) -> str:
    return text.replace("\\n", "\n").replace('\\"', '"')


def _read_zhang_csv(path: Path, n_fields: int, n_classes: int) -> tuple[list[str], list[int]]:
    texts, labels = [], []
    with long_csv_fields(), open(path, newline="", encoding="utf-8") as handle:
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
            raise DataError(f"{path}, {bad_bytes_at(path, 'utf-8')}: not valid UTF-8 "
                            f"({err.reason})") from None
        except csv.Error as err:
            raise DataError(f"{path}, line {reader.line_num}: malformed CSV ({err})") from None
    return texts, labels


def load_zhang(name: str, folder: Path, classes: tuple[str, ...], text_fields: int = 1) -> DatasetDict | None:
    """A ``train.csv`` / ``test.csv`` pair (class 1..N, then ``text_fields`` text fields); the class
    names from ``classes.txt`` when the folder has one."""
    if not holds_copy(folder, ["train.csv", "test.csv"]):
        return None
    classes_file = folder / "classes.txt"
    names = list(classes)
    if classes_file.exists():
        names = [c.strip() for c in classes_file.read_text().splitlines() if c.strip()]
    paths = [folder / "train.csv", folder / "test.csv"]

    def build():
        out = {}
        for split, path in zip(("train", "test"), paths):
            texts, labels = _read_zhang_csv(path, text_fields, len(names))
            out[split] = labelled(texts, labels, names)
        return DatasetDict(out)
    return cached(name, {}, paths + ([classes_file] if classes_file.exists() else []), build)


# --------------------------------------------------------------------------- the hub's layouts

def hub_splits(raw: DatasetDict) -> DatasetDict:
    """The hub's ``unsupervised`` split as ``unsup`` (its text only); columns kept as they are."""
    out = {}
    for split, ds in raw.items():
        target = {"unsupervised": "unsup"}.get(split, split)
        if target == "unsup":
            ds = ds.remove_columns([c for c in ds.column_names if c != "text"])
        out[target] = ds
    return DatasetDict(out)


def dbpedia_from_hub(raw: DatasetDict) -> DatasetDict:
    """``title`` and ``content`` as one ``text``, joined as :func:`load_zhang` joins the CSV's."""
    return hub_splits(DatasetDict({split: ds.map(_join_title_content, remove_columns=["title", "content"])
                                   for split, ds in raw.items()}))


def _join_title_content(row: dict) -> dict:
    return {"text": join_fields([row["title"], row["content"]])}


def yelp_polarity_from_hub(raw: DatasetDict) -> DatasetDict:
    """The hub's classes ``1`` / ``2`` named ``negative`` / ``positive``."""
    return hub_splits(DatasetDict({split: ds.cast_column("label", ClassLabel(names=list(POLARITY)))
                                   for split, ds in raw.items()}))


# --------------------------------------------------------------------------- stage-1 corpora

def load_corpus(path: str | Path) -> Dataset:
    """A general-domain corpus for stage 1: a text file or a folder of ``*.txt`` (one paragraph a
    line), as a memory-mapped arrow dataset with a ``text`` column; empty lines are left out."""
    path = Path(path)
    files = sorted(path.glob("*.txt")) if path.is_dir() else [path]
    if not files or not all(f.exists() for f in files):
        raise DataError(f"corpus {path}: no .txt files found")
    try:
        ds = datasets.load_dataset("text", data_files=[str(f) for f in files], split="train",
                                   cache_dir=str(cache_dir() / "hub"))
    except DatasetGenerationError:
        for file in files:
            where = find_bad_bytes(file, "utf-8")
            if where:
                raise DataError(f"corpus {file}, {where}: bytes are not valid utf-8; a stage-1 corpus is "
                                f"read as UTF-8: convert the file (e.g. iconv -f latin1 -t utf-8)") from None
        raise
    return ds.filter(_non_empty, batched=True)


def _non_empty(batch: dict) -> list[bool]:
    return [bool(t.strip()) for t in batch["text"]]


def load_wikitext103() -> Dataset:
    """WikiText-103 (raw) from the hub, for users who are online."""
    ds = datasets.load_dataset("Salesforce/wikitext", "wikitext-103-raw-v1", split="train",
                               cache_dir=str(cache_dir() / "hub"))
    return ds.filter(_non_empty, batched=True)
