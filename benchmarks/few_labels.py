"""Few labels with the transformer backbone: the contrastive stage (SetFit's pairs) on or off,
chosen on a validation split, then the test split.

    python benchmarks/few_labels.py --datasets trec --sizes 100,500 --seeds 0,1,2 [--quick]

For each size and seed the training texts are the recipes' subset (``--max_train=N --seed=S``); the
validation texts are ``--valid`` (500) other training texts of the dataset, drawn with the seed; the
test split is the dataset's. Each variant is a TextClassifier with the recipe's transformer
defaults (TRANSFORMER_CLASSIFIER, the bundled encoder, no stage 2) and ``transformer.contrastive``
off or on. Rows (validation and test accuracy, seconds) go to results.jsonl as benchmark
"few_labels"; a finished run is skipped. The variant reported for a size and seed is the one with
the better validation accuracy (a tie: off, the cheaper); test accuracy never chooses.
"""
from __future__ import annotations

import time
from dataclasses import replace
from datetime import date
from pathlib import Path

import numpy as np

from common import (
    RESULTS, add_outputs, append_result, finished_row, hardware, labelled_subset, parser as common_parser,
    read_results, write_block,
)
from ulmtl import TextClassifier
from ulmtl.cli import parse_args
from ulmtl.config import TRANSFORMER_CLASSIFIER, RecipeConfig, TransformerConfig
from ulmtl.recipe import load_recipe_data

VARIANTS = ("off", "on")


def validation_texts(dataset: str, train_texts: list[str], n: int, seed: int) -> tuple[list[str], list[str]]:
    """``n`` training texts of ``dataset`` outside ``train_texts`` (seeded), with their class names."""
    full = load_recipe_data(parse_args(RecipeConfig(dataset=dataset), ["--max_train=0", f"--seed={seed}"]))["train"]
    names = full.features["label"].names
    taken = set(train_texts)
    pool = [i for i, text in enumerate(full["text"]) if text not in taken]
    chosen = np.random.RandomState(seed + 1000).choice(pool, size=min(n, len(pool)), replace=False)
    rows = full.select(sorted(chosen.tolist()))
    return list(rows["text"]), [names[i] for i in rows["label"]]


def validation_split(dataset: str, train_texts: list[str], train_labels: list[str], n: int,
                     seed: int) -> tuple[list[str], list[str]]:
    """:func:`validation_texts`, kept to the classes of ``train_labels`` (a tiny subset can miss a
    class: score what a classifier fitted on it can predict)."""
    seen = set(train_labels)
    texts, labels = validation_texts(dataset, train_texts, n, seed)
    return tuple(map(list, zip(*[(t, y) for t, y in zip(texts, labels) if y in seen])))


def fit_and_score(clf, key: dict, splits: tuple, command: str, results: str | Path) -> dict:
    """Fit ``clf`` on the training split of ``splits`` (train, valid and test texts and labels), score
    it on validation and test, append the row (``key`` and the scores, seconds, date, hardware,
    ``command``) to ``results`` and return it."""
    train_texts, train_labels, valid_texts, valid_labels, test_texts, test_labels = splits
    started = time.perf_counter()
    clf.fit(train_texts, train_labels)
    seconds = time.perf_counter() - started
    row = {**key, "n_train": len(train_texts), "n_valid": len(valid_texts), "n_test": len(test_texts),
           "valid_accuracy": round(clf.score(valid_texts, valid_labels), 4),
           "test_accuracy": round(clf.score(test_texts, test_labels), 4), "seconds": round(seconds, 1),
           "date": date.today().isoformat(), "hardware": hardware(), "command": command}
    append_result(results, row)
    return row


def main(argv=None) -> list[dict]:
    parser = common_parser(__doc__, datasets="trec")
    parser.add_argument("--sizes", default="100,500")
    parser.add_argument("--seeds", default="0,1,2")
    parser.add_argument("--valid", type=int, default=500)
    parser.add_argument("--quick", action="store_true", help="20 pair rounds become 2, 5 classifier epochs 2")
    add_outputs(parser, "runs/few_labels")
    args = parser.parse_args(argv)
    rows = []
    for dataset in args.datasets.split(","):
        for size in [int(s) for s in args.sizes.split(",")]:
            for seed in [int(s) for s in args.seeds.split(",")]:
                train_texts, train_labels, test_texts, test_labels = labelled_subset(dataset, size, seed)
                valid_texts, valid_labels = validation_split(dataset, train_texts, train_labels, args.valid, seed)
                splits = (train_texts, train_labels, valid_texts, valid_labels, test_texts, test_labels)
                for variant in VARIANTS:
                    key = {"dataset": dataset, "size": size, "seed": seed, "variant": variant, "quick": args.quick}
                    done = finished_row(args.results, "few_labels", key)
                    if done:
                        rows.append(done)
                        continue
                    config = replace(TRANSFORMER_CLASSIFIER, seed=seed)
                    settings = TransformerConfig(contrastive=variant)
                    if args.quick:
                        config = replace(config, stage_epochs=(1, 1))
                        settings = replace(settings, contrastive_iterations=2)
                    command = (f"python benchmarks/few_labels.py --datasets {dataset} --sizes {size} --seeds {seed}"
                               + (" --quick" if args.quick else ""))
                    row = fit_and_score(TextClassifier(config, model_config=settings, verbose=False),
                                        {"benchmark": "few_labels", **key}, splits, command, args.results)
                    print(f"== {dataset} {size} labels seed {seed} contrastive {variant}: valid "
                          f"{row['valid_accuracy']} test {row['test_accuracy']} ({row['seconds']} s)", flush=True)
                    rows.append(row)
    print(report(rows))
    if Path(args.results) == RESULTS and not args.quick:  # the block shows every dataset's runs so far
        done = read_results(args.results, "few_labels", quick=False)
        write_block("few_labels", report(done), grid_command(done))
    return rows


def grid_command(rows: list[dict]) -> str:
    """A command whose grid (their datasets x sizes x seeds) covers every row of ``rows``: it
    re-renders them, and runs any cell of that product not run yet."""
    spelled = {field: ",".join(str(value) for value in sorted({row[field] for row in rows}))
               for field in ("dataset", "size", "seed")}
    return (f"python benchmarks/few_labels.py --datasets {spelled['dataset']} --sizes {spelled['size']} "
            f"--seeds {spelled['seed']}")


def runs(rows: list[dict]) -> dict[tuple[str, int, int], dict[str, dict]]:
    """(dataset, size, seed) -> variant -> its latest row."""
    by_run: dict = {}
    for row in rows:
        by_run.setdefault((row["dataset"], row["size"], row["seed"]), {})[row["variant"]] = row
    return by_run


def chosen_variant(variants: dict[str, dict]) -> str:
    """The variant with the better validation accuracy (a tie: off, the cheaper)."""
    return max(VARIANTS, key=lambda v: (variants[v]["valid_accuracy"] if v in variants else -1, -VARIANTS.index(v)))


def chosen_rows(rows: list[dict]) -> list[dict]:
    """Per dataset, size and seed, the row of the variant chosen on validation."""
    return [variants[chosen_variant(variants)] for variants in runs(rows).values()]


def report(rows: list[dict]) -> str:
    """A Markdown table: per size and seed, each variant's validation and test accuracy and seconds,
    the variant chosen on validation; per size, each variant's mean test accuracy [runs] (always on or
    always off: no validation labels used) and the chosen variants' mean test accuracy."""
    by_run = runs(rows)
    lines = ["| dataset | labels | seed | contrastive off: valid / test (s) | on: valid / test (s) | chosen on valid "
             "| its test |", "|---|---|---|---|---|---|---|"]
    chosen, fixed = {}, {}
    for (dataset, size, seed), variants in sorted(by_run.items()):
        best = chosen_variant(variants)
        chosen.setdefault((dataset, size), []).append(variants[best]["test_accuracy"])
        for v in variants:
            fixed.setdefault((dataset, size, v), []).append(variants[v]["test_accuracy"])
        cells = [f"{variants[v]['valid_accuracy']:.3f} / {variants[v]['test_accuracy']:.3f} ({variants[v]['seconds']:.0f})"
                 if v in variants else "" for v in VARIANTS]
        lines.append(f"| {dataset} | {variants[best]['n_train']} | {seed} | {cells[0]} | {cells[1]} | {best} | "
                     f"{variants[best]['test_accuracy']:.3f} |")
    for (dataset, size), accuracies in chosen.items():
        each = [f"test {np.mean(fixed[dataset, size, v]):.4f} [{len(fixed[dataset, size, v])}]"
                if (dataset, size, v) in fixed else "" for v in VARIANTS]
        lines.append(f"| {dataset} | {size} | mean | {each[0]} | {each[1]} | | **{np.mean(accuracies):.4f}** (std "
                     f"{np.std(accuracies):.4f}) |")
    return "\n".join(lines)


if __name__ == "__main__":
    main()
