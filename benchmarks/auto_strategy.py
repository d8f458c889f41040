"""How often strategy "auto" picks the strategy that turns out best on test, and what it costs.

    python benchmarks/auto_strategy.py --datasets trec,mr --sizes 100,500 --seeds 0,1,2 [--quick]

For each dataset, size and seed the training texts are the recipes' subset (``--max_train=N
--seed=S``) and the test split is the dataset's. A TextClassifier with the transformer's defaults
(TRANSFORMER_CLASSIFIER, the bundled encoder, no stage 2) and ``strategy="auto"`` fits each
candidate (feature_extraction, finetune, scratch) on a stratified part of the training texts,
scores it on the rest (``classifier.auto_valid_fraction``), and refits the winner on all of them.
Then every other strategy is fitted on all the training texts too, and each is scored on the test
split, which the selection never sees. The winner's refit is the fit its strategy gets alone (same
config, seed and texts), so its test score and seconds are reused. Rows go to results.jsonl as
benchmark "auto_strategy"; a finished run is skipped. ``--quick``: one epoch per classifier stage.
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
from ulmtl.config import TRANSFORMER_CLASSIFIER, TransformerConfig
from ulmtl.selection import STRATEGIES


def measure(dataset: str, size: int, seed: int, quick: bool) -> dict:
    """One run: the selection record, and every strategy's test accuracy and seconds on all the
    training texts."""
    train_texts, train_labels, test_texts, test_labels = labelled_subset(dataset, size, seed)
    config = replace(TRANSFORMER_CLASSIFIER, seed=seed, strategy="auto")
    if quick:
        config = replace(config, stage_epochs=(1, 1))
    started = time.perf_counter()
    auto = TextClassifier(config, model_config=TransformerConfig(), verbose=False).fit(train_texts, train_labels)
    auto_seconds = time.perf_counter() - started
    winner = auto.chosen_strategy_
    test = {winner: round(auto.score(test_texts, test_labels), 4)}
    seconds = {winner: auto.selection_["refit_seconds"]}
    for strategy in STRATEGIES:
        if strategy == winner:
            continue
        begun = time.perf_counter()
        alone = TextClassifier(replace(config, strategy=strategy), model_config=TransformerConfig(),
                               verbose=False).fit(train_texts, train_labels)
        seconds[strategy] = round(time.perf_counter() - begun, 1)
        test[strategy] = round(alone.score(test_texts, test_labels), 4)
    best = max(test.values())
    return {"n_train": len(train_texts), "n_test": len(test_texts), "winner": winner,
            "valid": {c["strategy"]: c["valid_accuracy"] for c in auto.selection_["candidates"]},
            "n_valid": auto.selection_["n_valid"], "test": test, "seconds": seconds,
            "auto_seconds": round(auto_seconds, 1), "best_on_test": [s for s in STRATEGIES if test[s] == best],
            "regret": round(best - test[winner], 4)}


def main(argv=None) -> list[dict]:
    parser = common_parser(__doc__, datasets="trec,mr")
    parser.add_argument("--sizes", default="100,500")
    parser.add_argument("--seeds", default="0,1,2")
    parser.add_argument("--quick", action="store_true")
    add_outputs(parser, "runs/auto_strategy")
    args = parser.parse_args(argv)
    rows = []
    for dataset in args.datasets.split(","):
        for size in [int(s) for s in args.sizes.split(",")]:
            for seed in [int(s) for s in args.seeds.split(",")]:
                key = {"dataset": dataset, "size": size, "seed": seed, "backbone": "transformer",
                       "quick": args.quick}
                row = finished_row(args.results, "auto_strategy", key)
                if row is None:
                    row = {"benchmark": "auto_strategy", **key, **measure(dataset, size, seed, args.quick),
                           "date": date.today().isoformat(), "hardware": hardware(),
                           "command": f"python benchmarks/auto_strategy.py --datasets {dataset} --sizes {size} "
                                      f"--seeds {seed}" + (" --quick" if args.quick else "")}
                    append_result(args.results, row)
                print(f"== {dataset} {size} labels seed {seed}: auto picked {row['winner']}, best on test "
                      f"{'/'.join(row['best_on_test'])}, regret {row['regret']}", flush=True)
                rows.append(row)
    print(report(rows))
    if Path(args.results) == RESULTS and not args.quick:
        write_block("auto_strategy", report(read_results(args.results, "auto_strategy", quick=False)),
                    "python benchmarks/auto_strategy.py --datasets trec,mr --sizes 100,500 --seeds 0,1,2")
    return rows


def report(rows: list[dict]) -> str:
    """A Markdown table, one line per run (each strategy's validation and test accuracy, what auto
    picked, the test-best, the regret, auto's seconds against the winner's alone), then per dataset
    and size how often auto picked a test-best strategy."""
    short = {"feature_extraction": "FE", "finetune": "FT", "scratch": "scratch"}
    lines = ["| dataset | labels | seed | valid " + " / ".join(short[s] for s in STRATEGIES) + " | test " +
             " / ".join(short[s] for s in STRATEGIES) + " | auto picked | best on test | regret | auto s "
             "(winner alone s) |", "|---|---|---|---|---|---|---|---|---|"]
    summary: dict = {}
    for row in sorted(rows, key=lambda r: (r["dataset"], r["size"], r["seed"])):
        valid = " / ".join("-" if row["valid"].get(s) is None else f"{row['valid'][s]:.3f}" for s in STRATEGIES)
        test = " / ".join(f"{row['test'][s]:.3f}" for s in STRATEGIES)
        lines.append(f"| {row['dataset']} | {row['n_train']} | {row['seed']} | {valid} | {test} | "
                     f"{short[row['winner']]} | {'/'.join(short[s] for s in row['best_on_test'])} | "
                     f"{row['regret']:.3f} | {row['auto_seconds']:.0f} ({row['seconds'][row['winner']]:.0f}) |")
        summary.setdefault((row["dataset"], row["size"]), []).append(row)
    lines.append("")
    for (dataset, size), runs in summary.items():
        picked = sum(r["winner"] in r["best_on_test"] for r in runs)
        cost = np.mean([r["auto_seconds"] / r["seconds"][r["winner"]] for r in runs])
        lines.append(f"- {dataset}, {size} labels: auto picked a test-best strategy in {picked} of {len(runs)} "
                     f"runs; mean regret {np.mean([r['regret'] for r in runs]):.3f}; auto took "
                     f"{cost:.1f}x the winner's own fit.")
    return "\n".join(lines)


if __name__ == "__main__":
    main()
