"""Shared fixtures: the real data folder (skipped when absent), a private cache per session, the
tiny AWD-LSTM settings (``TINY``) and synthetic labelled sentences (``synthetic``)."""
from __future__ import annotations

import os
import tempfile
from pathlib import Path

import numpy as np
import pytest
from hypothesis import configuration as hypothesis_configuration

REPO_ROOT = Path(__file__).resolve().parents[1]

# Nothing in the tests may reach the Hugging Face hub. These must be set before `datasets` is
# imported (it reads them once, at import), hence at module level rather than in a fixture.
os.environ.setdefault("HF_DATASETS_OFFLINE", "1")
os.environ.setdefault("HF_HUB_OFFLINE", "1")

from ulmtl.config import ModelConfig  # noqa: E402 (after the offline switches: ulmtl imports datasets)

# Hypothesis keeps its example database and caches in ./.hypothesis by default; keep them out of
# the working tree.
if not os.environ.get("HYPOTHESIS_STORAGE_DIRECTORY"):
    hypothesis_configuration.set_hypothesis_home_dir(tempfile.mkdtemp(prefix="ulmtl-hypothesis-"))


def shared_data_dir() -> Path:
    """``$ULMTL_DATA_DIR`` if set, else ``../shared/data`` next to the repository."""
    env = os.environ.get("ULMTL_DATA_DIR")
    return Path(env).expanduser() if env else REPO_ROOT.parent / "shared" / "data"


@pytest.fixture(scope="session")
def shared_data() -> Path:
    """The read-only folder of real datasets; tests that need it are skipped when it is missing."""
    path = shared_data_dir()
    if not path.is_dir():
        pytest.skip(f"real data folder {path} not found (set ULMTL_DATA_DIR to it)")
    return path


@pytest.fixture(scope="session", autouse=True)
def ulmtl_cache_dir(tmp_path_factory) -> Path:
    """Point ``ULMTL_CACHE_DIR`` at a fresh folder for the whole session, and restore it after.

    Keeps parsed datasets and ``map`` caches out of the user's own cache.
    """
    cache = tmp_path_factory.mktemp("ulmtl-cache")
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("ULMTL_CACHE_DIR", str(cache))
        yield cache


# Tests import these two (``from conftest import TINY, synthetic``): models stay 2 layers x 16.
TINY = ModelConfig(emb_size=16, hidden_size=16, n_layers=2)
POSITIVE = ["good", "great", "excellent", "fine", "lovely", "superb"]
NEGATIVE = ["bad", "awful", "terrible", "poor", "dreadful", "weak"]
FILLER = ["the", "movie", "was", "really", "quite", "and", "plot", "acting", "a", "story", "very"]


def synthetic(n: int, seed: int, lm_tail: bool = False) -> tuple[list[str], list[str]]:
    """Sentences whose label is given by which sentiment words they contain.

    With ``lm_tail`` each ends in "i loved it" / "i hated it": to predict that, a language model
    has to carry the sentiment in its hidden state, which is what transfers to the classifier.
    """
    rng = np.random.RandomState(seed)
    texts, labels = [], []
    for i in range(n):
        label = "pos" if i % 2 == 0 else "neg"
        words = list(rng.choice(FILLER, size=rng.randint(4, 9)))
        for _ in range(2):
            words.insert(rng.randint(len(words) + 1), rng.choice(POSITIVE if label == "pos" else NEGATIVE))
        tail = (" i loved it" if label == "pos" else " i hated it") if lm_tail else ""
        texts.append(" ".join(words).capitalize() + tail + " .")
        labels.append(label)
    return texts, labels
