"""How often strategy "auto" picks the strategy that turns out best on test, and what it costs.

    python benchmarks/auto_strategy.py --datasets trec,mr --sizes 100,500 --seeds 0,1,2 \
        [--contrastive auto|off] [--backbones both|own] [--quick]

For each dataset, size and seed the training texts are the recipes' subset (``--max_train=N
--seed=S``) and the test split is the dataset's. A TextClassifier with the transformer's defaults
(TRANSFORMER_CLASSIFIER, the bundled encoder, no stage 2) and ``strategy="auto"`` fits each
candidate (feature_extraction, finetune, scratch; with ``--contrastive auto``, the default, finetune
with the contrastive stage too; with ``--backbones both``, the default, the AWD-LSTM from scratch) on stratified parts of the training texts, scores it on the rest
(one hold-out, or 5 folds when it would hold under 100 texts: ``classifier.auto_folds=0``), and refits the winner on
all of them. Then every other candidate is fitted on all the training texts too, and each is scored
on the test split, which the selection never sees. The winner's refit is the fit its candidate gets
alone (same config, seed and texts), so its test score and seconds are reused. Rows go to
results.jsonl as benchmark "auto_strategy" (rows written before folds, the contrastive candidate
and the other backbone existed: one hold-out, contrastive off, own backbone); a finished run is skipped. ``--quick``: one epoch per
transformer classifier stage (the AWD-LSTM candidate keeps its defaults).
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
from ulmtl.selection import STRATEGIES, candidate_estimator, candidates_for, number_of_folds

CANDIDATES = (*STRATEGIES, "finetune+contrastive", "awd_lstm scratch")
ROW_DEFAULTS = {"folds": 1, "contrastive": "off", "backbones": "own"}  # rows written before these existed


def label(candidate: dict) -> str:
    """A candidate record's key in a row: its strategy, "+contrastive" with the stage, the backbone
    named when it is not the transformer."""
    name = candidate["strategy"] + ("+contrastive" if candidate.get("contrastive") else "")
    backbone = candidate.get("backbone", "transformer")
    return name if backbone == "transformer" else f"{backbone} {name}"


def measure(dataset: str, size: int, seed: int, quick: bool, contrastive: str, backbones: str) -> dict:
    """One run: the selection record, and every candidate's test accuracy and seconds on all the
    training texts."""
    train_texts, train_labels, test_texts, test_labels = labelled_subset(dataset, size, seed)
    config = replace(TRANSFORMER_CLASSIFIER, seed=seed, strategy="auto", auto_backbones=backbones)
    if quick:
        config = replace(config, stage_epochs=(1, 1))
    started = time.perf_counter()
    auto = TextClassifier(config, model_config=TransformerConfig(contrastive=contrastive),
                          verbose=True).fit(train_texts, train_labels)  # each candidate's progress
    auto_seconds = time.perf_counter() - started
    winner = label(auto.selection_["winner"])
    test = {winner: round(auto.score(test_texts, test_labels), 4)}
    seconds = {winner: auto.selection_["refit_seconds"]}
    for candidate in candidates_for(auto, len(train_texts)):
        name = label(vars(candidate))
        if name == winner or candidate.unavailable:
            continue
        print(f"== {dataset} {size} labels seed {seed}: fitting {candidate.name} alone on all "
              f"{len(train_texts)} texts", flush=True)
        begun = time.perf_counter()
        alone = candidate_estimator(auto, candidate).fit(train_texts, train_labels)
        seconds[name] = round(time.perf_counter() - begun, 1)
        test[name] = round(alone.score(test_texts, test_labels), 4)
    best = max(test.values())
    return {"n_train": len(train_texts), "n_test": len(test_texts), "winner": winner,
            "valid": {label(c): c["valid_accuracy"] for c in auto.selection_["candidates"]},
            "n_valid": auto.selection_["n_valid"], "test": test, "seconds": seconds,
            "auto_seconds": round(auto_seconds, 1), "best_on_test": [c for c in test if test[c] == best],
            "regret": round(best - test[winner], 4)}


def main(argv=None) -> list[dict]:
    parser = common_parser(__doc__, datasets="trec,mr")
    parser.add_argument("--sizes", default="100,500")
    parser.add_argument("--seeds", default="0,1,2")
    parser.add_argument("--contrastive", choices=("auto", "off"), default="auto",
                        help="auto: finetune with the contrastive stage is a candidate too; off: it is not")
    parser.add_argument("--backbones", choices=("both", "own"), default="both",
                        help="both: the AWD-LSTM's scratch is a candidate too (auto_backbones); own: it is not")
    parser.add_argument("--quick", action="store_true")
    add_outputs(parser, "runs/auto_strategy")
    args = parser.parse_args(argv)
    rows = []
    for dataset in args.datasets.split(","):
        for size in [int(s) for s in args.sizes.split(",")]:
            for seed in [int(s) for s in args.seeds.split(",")]:
                folds = number_of_folds(labelled_subset(dataset, size, seed)[1],
                                        TRANSFORMER_CLASSIFIER.auto_valid_fraction, 0)
                key = {"dataset": dataset, "size": size, "seed": seed, "backbone": "transformer",
                       "quick": args.quick, "folds": folds,
                       "contrastive": args.contrastive, "backbones": args.backbones}
                row = finished_row(args.results, "auto_strategy", key, ROW_DEFAULTS)
                if row is None:
                    row = {"benchmark": "auto_strategy", **key,
                           **measure(dataset, size, seed, args.quick, args.contrastive, args.backbones),
                           "date": date.today().isoformat(), "hardware": hardware(),
                           "command": f"python benchmarks/auto_strategy.py --datasets {dataset} --sizes {size} "
                                      f"--seeds {seed} --contrastive {args.contrastive} --backbones {args.backbones}"
                                      + (" --quick" if args.quick else "")}
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
    """A Markdown table, one line per run (how it validated, each candidate's validation and test
    accuracy, what auto picked, the test-best, the regret, auto's seconds against the winner's
    alone), then per dataset, size and kind of selection how often auto picked a test-best one."""
    short = {"feature_extraction": "FE", "finetune": "FT", "scratch": "scratch", "finetune+contrastive": "FT+C",
             "awd_lstm scratch": "LSTM scratch"}
    lines = ["| dataset | labels | seed | validated on | valid " + " / ".join(short[s] for s in CANDIDATES) +
             " | test " + " / ".join(short[s] for s in CANDIDATES) + " | auto picked | best on test | regret | "
             "auto s (winner alone s) |", "|---|---|---|---|---|---|---|---|---|---|"]
    summary: dict = {}
    for row in sorted(rows, key=lambda r: (r["dataset"], r["size"], r.get("folds", 1), r["seed"])):
        row = {**ROW_DEFAULTS, **row}
        validated = "hold-out" if row["folds"] == 1 else f"{row['folds']} folds"
        valid = " / ".join("-" if row["valid"].get(s) is None else f"{row['valid'][s]:.3f}" for s in CANDIDATES)
        test = " / ".join("-" if s not in row["test"] else f"{row['test'][s]:.3f}" for s in CANDIDATES)
        lines.append(f"| {row['dataset']} | {row['n_train']} | {row['seed']} | {validated}, {row['n_valid']} texts | "
                     f"{valid} | {test} | {short[row['winner']]} | {'/'.join(short[s] for s in row['best_on_test'])} | "
                     f"{row['regret']:.3f} | {row['auto_seconds']:.0f} ({row['seconds'][row['winner']]:.0f}) |")
        kind = (f"{validated}, contrastive candidate {'on' if row['contrastive'] == 'auto' else 'off'}, "
                f"backbones {row['backbones']}")
        summary.setdefault((row["dataset"], row["size"], kind), []).append(row)
    lines.append("")
    for (dataset, size, kind), runs in summary.items():
        picked = sum(r["winner"] in r["best_on_test"] for r in runs)
        cost = np.mean([r["auto_seconds"] / r["seconds"][r["winner"]] for r in runs])
        mean_test = np.mean([r["test"][r["winner"]] for r in runs])
        lines.append(f"- {dataset}, {size} labels ({kind}): auto picked a test-best candidate in {picked} of "
                     f"{len(runs)} runs; its mean test accuracy {mean_test:.3f}; mean regret "
                     f"{np.mean([r['regret'] for r in runs]):.3f}; auto took {cost:.1f}x the winner's own fit.")
    return "\n".join(lines)


if __name__ == "__main__":
    main()
