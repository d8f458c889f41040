"""What the benchmark scripts share: their common flags, the quick mode, the hardware string, and
benchmarks/results.jsonl (one JSON object per run, appended by every script; finished runs are
found there so that a grid run again skips them).

The scripts run as ``python benchmarks/<name>.py``, so this folder is ``sys.path[0]`` and they
import this module as ``common``.
"""
from __future__ import annotations

import argparse
import hashlib
import json
import os
import platform
import subprocess
from pathlib import Path

import torch

from ulmtl.config import ConfigError, RecipeConfig, to_dict
from ulmtl.distributed import is_main
from ulmtl.finetune import finetune_lm
from ulmtl.backbones.transformer import METADATA_FILE
from ulmtl.cli import parse_args
from ulmtl.recipe import load_recipe_data, read_recipe_data, resolve_pretrained, with_run_seed

RESULTS = Path(__file__).resolve().with_name("results.jsonl")
RESULTS_MD = Path(__file__).resolve().with_name("RESULTS.md")

# --quick: one epoch of LM fine-tuning and one per classifier stage (the scripts add their own caps
# on the number of rows).
QUICK_TRAINING = ["--finetune.epochs=1", "--classifier.stage_epochs=1,1,1,1"]


def parser(doc: str, pretrained: bool | None = None, datasets: str | None = None) -> argparse.ArgumentParser:
    """An argument parser showing ``doc``; with ``--pretrained`` (required when ``pretrained`` is
    True, optional when False) and ``--datasets`` (``datasets`` as its default) when asked."""
    out = argparse.ArgumentParser(description=doc, formatter_class=argparse.RawDescriptionHelpFormatter)
    if pretrained is not None:
        out.add_argument("--pretrained", required=pretrained)
    if datasets is not None:
        out.add_argument("--datasets", default=datasets)
    return out


def add_outputs(parser: argparse.ArgumentParser, output: str) -> None:
    """``--output`` (where the runs go, ``output`` by default) and ``--results`` (the JSON lines file)."""
    parser.add_argument("--output", default=output)
    parser.add_argument("--results", default=str(RESULTS))


CPU_FEATURES = ("avx2", "avx512f", "avx512_bf16", "amx_bf16")


def cpu() -> str:
    """The CPU's model name, the features that decide matmul speed (AVX2, AVX-512, AVX-512-BF16, AMX)
    and torch's CPU capability."""
    name, flags = platform.processor() or platform.machine(), set()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name") and ":" in line:
                name = line.split(":", 1)[1].strip()
            elif line.startswith("flags") and ":" in line:
                flags = set(line.split(":", 1)[1].split())
    except OSError:
        pass
    features = "+".join(f for f in CPU_FEATURES if f in flags) or "features unknown"
    return f"{name} ({features}; torch capability {torch.backends.cpu.get_cpu_capability()})"


def hardware() -> str:
    """The machine a result was measured on: CPU, cores, Python, torch and its thread count."""
    return (f"{cpu()}, {os.cpu_count()} cores, Python {platform.python_version()}, torch {torch.__version__}, "
            f"{torch.get_num_threads()} torch threads")


# What the scripts write into the checkout themselves: not a change of the code that measures.
GENERATED = ("benchmarks/results.jsonl", "benchmarks/RESULTS.md", "benchmarks/*.png", "benchmarks/logs/**")


def code_version() -> str:
    """The commit of the checkout these scripts run from, with "+changes" when its tracked files
    (other than what the scripts write) differ from it; "unknown" outside a git checkout."""
    root = Path(__file__).resolve().parent.parent
    try:
        commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=root, capture_output=True,
                                text=True, check=True).stdout.strip()
        changed = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no", "--", "."]
                                 + [f":(exclude,glob){path}" for path in GENERATED],
                                 cwd=root, capture_output=True, text=True, check=True).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return "unknown"
    return commit + ("+changes" if changed else "")


# Taken when a script starts, so that a commit or checkout during a long run does not rename its code.
CODE = code_version()


def append_result(path: str | Path, row: dict) -> None:
    """Appends ``row`` to the JSON lines file ``path``, after adding to it the code it was measured
    with (``code``), so that the row a script goes on with is the row written."""
    row["code"] = CODE
    with open(path, "a") as handle:
        handle.write(json.dumps(row) + "\n")


def read_results(path: str | Path, benchmark: str, quick: bool | None = None) -> list[dict]:
    """The rows of one benchmark (and, if given, of its --quick mode or not)."""
    path = Path(path)
    rows = [json.loads(line) for line in path.read_text().splitlines()] if path.exists() else []
    return [r for r in rows if r.get("benchmark") == benchmark and (quick is None or r.get("quick", False) == quick)]


def finished_row(path: str | Path, benchmark: str, key: dict, defaults: dict | None = None) -> dict | None:
    """The latest row of ``benchmark`` whose fields equal ``key`` (a finished run, so that a long grid
    run again resumes where it stopped instead of repeating and double-counting runs); ``defaults``:
    the value of a field that rows written before it existed lack."""
    defaults = defaults or {}
    rows = [r for r in read_results(path, benchmark)
            if all(r.get(k, defaults.get(k)) == v for k, v in key.items())]
    return rows[-1] if rows else None


def same_run_row(path: str | Path, benchmark: str, key: dict, same_run: dict[str, str],
                 defaults: dict | None = None) -> dict | None:
    """The finished row of the variant that is ``key["variant"]``'s configuration under another name
    (``same_run`` maps each such name to the other), so that it is run once and reported under both."""
    twin = same_run.get(key["variant"])
    return finished_row(path, benchmark, {**key, "variant": twin}, defaults) if twin else None


def latest_per_run(rows: list[dict], fields: tuple[str, ...]) -> list[dict]:
    """One row per distinct ``fields`` (the latest), so that a rerun replaces rather than adds a seed."""
    latest = {tuple(str(r.get(f)) for f in fields): r for r in rows}
    return list(latest.values())


TRAINING_PREFIXES = ("--classifier.", "--finetune.", "--transformer.", "--finetune_lm=", "--lm_texts=",
                     "--valid_fraction=")
DATA_PREFIXES = ("--max_train=", "--max_test=", "--fold=")  # which labelled and test texts


def training_settings(overrides: list[str]) -> list[str]:
    """The overrides that change how ulmtl's LM or classifier trains (the baselines read none of them)."""
    return [o for o in overrides if o.startswith(TRAINING_PREFIXES)]


def run_settings(overrides: list[str]) -> list[str]:
    """The overrides that change a run's result: its training settings and the texts it trains and is
    tested on (not where the data is read from)."""
    return [o for o in overrides if o.startswith(TRAINING_PREFIXES + DATA_PREFIXES)]


def run_tag(overrides: list[str], quick: bool) -> str:
    """A folder suffix naming a grid's mode and run settings ("" for the full mode's defaults), so
    that grids with other settings or other texts never reuse each other's outputs or shared LMs."""
    settings = run_settings(overrides)
    return ("-quick" if quick else "") + \
        ("-" + hashlib.sha1(" ".join(settings).encode()).hexdigest()[:8] if settings else "")


def write_block(name: str, markdown: str, command: str, path: str | Path = RESULTS_MD) -> None:
    """Put ``markdown`` between the ``<!-- name:start -->`` and ``<!-- name:end -->`` markers of
    RESULTS.md (appended at the end when they are missing): the generated blocks, rewritten by the
    script (``command``) that measured them; the prose around them is written by hand."""
    path = Path(path)
    start, end = f"<!-- {name}:start -->", f"<!-- {name}:end -->"
    text = path.read_text() if path.exists() else ""
    block = f"{start}\n<!-- generated by `{command}`; edit the script, not this block -->\n{markdown}\n{end}"
    if start in text and end in text:
        text = text[:text.index(start)] + block + text[text.index(end) + len(end):]
    else:
        text = text.rstrip("\n") + "\n\n" + block + "\n"
    path.write_text(text)


def finetuned_lm_for(config: RecipeConfig, target: str | Path, all_texts: bool = False,
                     direction: str = "forward") -> Path:
    """Stage 2 alone: the recipe's LM (``direction``) fine-tuned on its task texts (or, ``all_texts``,
    on every text of the dataset, ignoring ``max_train``), written to ``target`` once and reused after.
    With the transformer backbone: the masked LM of the encoder ``--pretrained`` names (empty: the
    bundled one).

    Runs that differ only in the classifier can then share it: ``--pretrained=target
    --finetune_lm=false`` (with ``{direction}`` in ``target`` for a forward + backward ensemble)."""
    target = Path(target)
    config = with_run_seed(config)
    transformer = config.backbone == "transformer"
    if transformer and direction != "forward":
        raise ConfigError("a transformer encoder reads both directions at once: its masked LM is 'forward' only")
    asked = json.loads(json.dumps(to_dict(config.finetune)))
    # What a finished fine-tuning leaves: the AWD-LSTM's weights, the transformer's record (written last).
    record = target / (METADATA_FILE if transformer else "config.json")
    # Which stage-1 model it started from (the checkpoint records keep no path), written beside it.
    stage1 = target.with_name(target.name + ".stage1.json")
    start = {"backbone": config.backbone, "pretrained": config.pretrained}
    if (record if transformer else target / "weights.safetensors").exists():
        saved = json.loads(record.read_text()) if record.exists() else {}
        differing = sorted(k for k in asked if saved.get("finetune", {}).get(k) != asked[k])
        started = json.loads(stage1.read_text()) if stage1.exists() else start
        if not stage1.exists():  # fine-tuned before the record was written, or killed just before it
            print(f"warning: {target} has no record of the stage-1 model it started from; reused as "
                  f"{start} (remove the folder if it was another)", flush=True)
        if differing or saved.get("direction") != direction or started != start:
            raise ConfigError(f"{target} holds an LM fine-tuned with other settings (direction "
                              f"{saved.get('direction')!r}, different finetune fields: {differing}, stage-1 "
                              f"model {started}); asked for {direction} from {start}: remove that folder or "
                              f"give another one")
    else:
        data, report = read_recipe_data(config, subset=not all_texts)
        if is_main():
            report.show()
        if transformer:
            finetune_lm(data, config.pretrained, target, config.finetune, transformer_config=config.transformer)
        else:
            source = resolve_pretrained(config, direction, data, target.parent)
            finetune_lm(data, source, target, config.finetune, config.tokenizer, model_config=config.model)
        stage1.write_text(json.dumps(start))
    return target


def labelled_subset(dataset: str, size: int, seed: int) -> tuple[list[str], list[str], list[str], list[str]]:
    """(train texts, train labels, test texts, test labels) of the recipes' ``--max_train=size
    --seed=seed`` subset of ``dataset``, labels as class names. A tiny subset can miss a class: the
    test texts are those of the classes it has, the ones a classifier fitted on it can predict."""
    data = load_recipe_data(parse_args(RecipeConfig(dataset=dataset), [f"--max_train={size}", f"--seed={seed}"]))
    names = data["train"].features["label"].names
    train_labels = [names[i] for i in data["train"]["label"]]
    seen = set(train_labels)
    test = [(text, names[i]) for text, i in zip(data["test"]["text"], data["test"]["label"]) if names[i] in seen]
    return list(data["train"]["text"]), train_labels, [t for t, _ in test], [y for _, y in test]
