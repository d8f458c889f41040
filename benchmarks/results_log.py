"""benchmarks/results.jsonl: one JSON object per run, appended by every benchmark script."""
from __future__ import annotations

import hashlib
import json
import os
import platform
from pathlib import Path

RESULTS = Path(__file__).with_name("results.jsonl")


def hardware() -> str:
    return f"{platform.processor() or platform.machine()}, {os.cpu_count()} cores"


def append_result(path: str | Path, row: dict) -> None:
    with open(path, "a") as handle:
        handle.write(json.dumps(row) + "\n")


def read_results(path: str | Path, benchmark: str, quick: bool | None = None) -> list[dict]:
    """The rows of one benchmark (and, if given, of its --quick mode or not)."""
    path = Path(path)
    rows = [json.loads(line) for line in path.read_text().splitlines()] if path.exists() else []
    return [r for r in rows if r.get("benchmark") == benchmark and (quick is None or r.get("quick", False) == quick)]


def finished_row(path: str | Path, benchmark: str, key: dict) -> dict | None:
    """The latest row of ``benchmark`` whose fields equal ``key`` (a finished run, so that a long grid
    run again resumes where it stopped instead of repeating and double-counting runs)."""
    rows = [r for r in read_results(path, benchmark) if all(r.get(k) == v for k, v in key.items())]
    return rows[-1] if rows else None


def same_run_row(path: str | Path, benchmark: str, key: dict, same_run: dict[str, str]) -> dict | None:
    """The finished row of the variant that is ``key["variant"]``'s configuration under another name
    (``same_run`` maps each such name to the other), so that it is run once and reported under both."""
    twin = same_run.get(key["variant"])
    return finished_row(path, benchmark, {**key, "variant": twin}) if twin else None


def latest_per_run(rows: list[dict], fields: tuple[str, ...]) -> list[dict]:
    """One row per distinct ``fields`` (the latest), so that a rerun replaces rather than adds a seed."""
    latest = {tuple(str(r.get(f)) for f in fields): r for r in rows}
    return list(latest.values())


TRAINING_PREFIXES = ("--classifier.", "--finetune.")


def training_settings(overrides: list[str]) -> list[str]:
    """The overrides that change how the LM or the classifier trains (not where data is read from)."""
    return [o for o in overrides if o.startswith(TRAINING_PREFIXES)]


def run_tag(overrides: list[str], quick: bool) -> str:
    """A folder suffix naming a grid's mode and training settings ("" for the full mode's defaults),
    so that grids with other settings never reuse each other's outputs or shared LMs."""
    settings = training_settings(overrides)
    return ("-quick" if quick else "") + \
        ("-" + hashlib.sha1(" ".join(settings).encode()).hexdigest()[:8] if settings else "")
