"""The named datasets: one row each (parser, folder, class names, options, hub copy), and
:func:`load_dataset`, which reads the local copy, else the hub's."""
from __future__ import annotations

from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import Callable

import datasets
from datasets import DatasetDict

from ulmtl.datasets.cache import cache_dir, resolve_data_dir
from ulmtl.datasets.layout import DataError, IncompleteCopy, incomplete, missing
from ulmtl.datasets.sources import (
    POLARITY, TREC_COARSE, dbpedia_from_hub, hub_splits, load_imdb, load_mr, load_polarity, load_trec,
    load_zhang, mr_from_hub, trec_from_hub, yelp_polarity_from_hub,
)

ORIGINAL_DOWNLOAD = "Put the original download in the data directory"


@dataclass(frozen=True)
class Source:
    """One named dataset.

    ``parse(name, folder, classes, **options)`` reads the original download in ``folder`` (under
    the data directory), or returns None when there is no such folder; then ``hub_id`` (with
    ``hub_subset``) is downloaded and ``hub_layout(raw, **options)`` gives it the same columns and
    class names. ``options`` are the keyword options of :func:`load_dataset` the dataset takes.
    """
    parse: Callable[..., DatasetDict | None]
    folder: str
    classes: tuple[str, ...]
    download: str = ORIGINAL_DOWNLOAD  # how to get the original files, said when they are missing
    options: tuple[str, ...] = ()
    folds: int = 1  # the fixed folds of the original download (polarity's cv0xx-cv9xx: 10)
    hub_id: str | None = None
    hub_subset: str | None = None
    hub_layout: Callable[..., DatasetDict] = hub_splits


DBPEDIA_CLASSES = ("Company", "EducationalInstitution", "Artist", "Athlete", "OfficeHolder",
                   "MeanOfTransportation", "Building", "NaturalPlace", "Village", "Animal", "Plant", "Album",
                   "Film", "WrittenWork")
CORNELL = "https://www.cs.cornell.edu/people/pabo/movie-review-data/"

REGISTRY: dict[str, Source] = {
    "trec": Source(load_trec, "trec", TREC_COARSE, options=("fine",),
                   download="Download train_5500.label and TREC_10.label from "
                            "https://cogcomp.seas.upenn.edu/Data/QA/QC/ into that folder",
                   hub_id="CogComp/trec", hub_layout=trec_from_hub),
    "mr": Source(load_mr, "rt-polaritydata", POLARITY, options=("test_fraction", "seed"),
                 download=f"Download rt-polaritydata.tar.gz from {CORNELL} and unpack it there",
                 hub_id="cornell-movie-review-data/rotten_tomatoes", hub_layout=mr_from_hub),
    "polarity": Source(load_polarity, "review_polarity/txt_sentoken", POLARITY, options=("fold",), folds=10,
                       download=f"Download review_polarity.tar.gz from {CORNELL} and unpack it there"),
    "imdb": Source(load_imdb, "aclImdb", ("neg", "pos"), hub_id="stanfordnlp/imdb"),
    "ag_news": Source(partial(load_zhang, text_fields=2), "ag_news_csv",
                      ("World", "Sports", "Business", "Sci/Tech"), hub_id="fancyzhx/ag_news"),
    "dbpedia": Source(partial(load_zhang, text_fields=2), "dbpedia_csv", DBPEDIA_CLASSES,
                      hub_id="fancyzhx/dbpedia_14", hub_layout=dbpedia_from_hub),
    "yelp_polarity": Source(load_zhang, "yelp_review_polarity_csv", POLARITY, hub_id="fancyzhx/yelp_polarity",
                            hub_layout=yelp_polarity_from_hub),
    "yelp_full": Source(load_zhang, "yelp_review_full_csv",
                        ("1 star", "2 stars", "3 stars", "4 stars", "5 stars"), hub_id="Yelp/yelp_review_full"),
}
DATASETS = tuple(REGISTRY)
OPTION_DEFAULTS = {"fine": False, "fold": 0, "folds": 1, "test_fraction": 0.1, "seed": 0}


def unused_option(name: str, given: dict) -> tuple[str, str] | None:
    """(option, why) for the first option in ``given`` that would not act on dataset ``name``: one it
    does not take set away from its default, a fold it does not have, or a number of folds other
    than 1 or all of its fixed folds; None when every option acts."""
    source = REGISTRY[name]
    takes = set(source.options) | ({"folds"} if source.folds > 1 else set())
    for option, value in given.items():
        if option not in takes and value != OPTION_DEFAULTS[option]:
            return option, (f"does not apply to dataset {name!r} (its options: "
                            f"{', '.join(sorted(takes)) or 'none'}); got {value!r}")
    if not 0 <= given.get("fold", 0) < source.folds:
        return "fold", f"must be 0..{source.folds - 1} for dataset {name!r}; got {given['fold']}"
    if given.get("folds", 1) not in (1, source.folds):
        return "folds", (f"dataset {name!r} has {source.folds} fixed folds: folds={source.folds} runs every "
                         f"one, fold=k one of them; got folds={given['folds']}")
    return None


def load_dataset(name: str, data_dir: str | Path | None = None, *, fine: bool = False, fold: int = 0,
                 test_fraction: float = 0.1, seed: int = 0) -> DatasetDict:
    """Load a named dataset as a DatasetDict (``text``, ``label``; ``train``/``test``[/``unsup``]).

    Options: ``fine`` (TREC's 50 fine classes), ``fold`` (polarity's test fold),
    ``test_fraction`` and ``seed`` (MR's stratified split; 0.1 and 0 by default).
    """
    if name not in REGISTRY:
        raise DataError(f"unknown dataset {name!r}; known: {', '.join(DATASETS)}; for your own files "
                        f"use ulmtl.load_files")
    source = REGISTRY[name]
    given = {"fine": fine, "fold": fold, "test_fraction": test_fraction, "seed": seed}
    problem = unused_option(name, given)
    if problem:
        raise DataError(f"load_dataset: {problem[0]} {problem[1]}")
    options = {key: given[key] for key in source.options}
    folder = resolve_data_dir(data_dir) / source.folder
    try:
        data = source.parse(name, folder, source.classes, **options)
    except IncompleteCopy as err:
        raise incomplete(name, folder, err, source.download, source.hub_id is not None) from None
    if data is not None:
        return data
    if source.hub_id is None:
        raise missing(name, folder, source.download + ".")
    return load_from_hub(name, folder, options)


def load_from_hub(name: str, local_folder: Path | None = None, options: dict | None = None) -> DatasetDict:
    """Download ``name`` from the Hugging Face hub (needs network) in ulmtl's layout."""
    source = REGISTRY[name]
    try:
        raw = datasets.load_dataset(source.hub_id, source.hub_subset, cache_dir=str(cache_dir() / "hub"))
    except Exception as err:  # network errors come in many types; the message is what matters
        where = f" not found: looked for {local_folder};" if local_folder else ":"
        raise DataError(f"dataset {name!r}{where} downloading {source.hub_id} from the Hugging Face hub "
                        f"failed ({type(err).__name__}: {str(err)[:200]}). {source.download} or go "
                        f"online.") from None
    return hub_to_layout(name, raw, options)


def hub_to_layout(name: str, raw: DatasetDict, options: dict | None = None) -> DatasetDict:
    """The hub's copy of ``name`` with ulmtl's columns (``text``, ``label``), splits and class names."""
    return REGISTRY[name].hub_layout(raw, **(options or {}))
