"""Shared fixtures: the real data folder (skipped when absent) and a private cache per session."""
from __future__ import annotations

import os
import tempfile
from pathlib import Path

import pytest
from hypothesis import configuration as hypothesis_configuration

REPO_ROOT = Path(__file__).resolve().parents[1]

# Nothing in the tests may reach the Hugging Face hub. These must be set before `datasets` is
# imported (it reads them once, at import), hence at module level rather than in a fixture.
os.environ.setdefault("HF_DATASETS_OFFLINE", "1")
os.environ.setdefault("HF_HUB_OFFLINE", "1")

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
