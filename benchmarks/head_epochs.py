"""The transformer classifier's plan with few labels: how long the head trains (the recipe's plan
against a head stage ten times longer or of at least N optimizer steps) and discriminative LRs or
one LR, with and without the contrastive stage, on a validation split and the test split.

    python benchmarks/head_epochs.py --datasets trec,mr --sizes 50 --seeds 0,1,2 [--variants ...] [--quick]
    python benchmarks/head_epochs.py --table    # RESULTS.md's table of the rows so far

With the recipe's transformer defaults (TRANSFORMER_CLASSIFIER: batches of 32; the head alone for
1 epoch, then every group for 4) 50 labelled texts make 2 optimizer steps an epoch, so the head of
``feature_extraction`` trains for 10 steps; logistic regression on the same frozen encoder's
embeddings, fitted to convergence, is far ahead there (learning curves). Variants (``--variants``,
all by default): ``feature_extraction`` and ``finetune`` with the recipe's plan and with ``x10``
head epochs (feature_extraction: stage_epochs 10, 40; finetune: 10, 4: only the head's stage is
longer, on cached features), each without and with the contrastive stage (``+contrastive``);
and ``finetune`` with ``head>=N steps`` (``--classifier.head_min_steps=N``: the head's stage runs
as many epochs as make N steps, and the plan's 1 where that makes them already), the 50-step one
with the contrastive stage too; ``one LR`` (``--classifier.discriminative=false``: every layer group
at the stage's LR, the ablations' ``one_lr``) with the recipe's plan, with 50 head steps and with
the contrastive stage.

Training texts are the recipes' subset (``--max_train=N --seed=S``), validation texts the ``--valid``
(500) other training texts few_labels.py draws with the seed, the test split the dataset's. Rows go
to results.jsonl as benchmark "head_epochs"; a finished run is skipped. The table gives each
variant's mean validation and test accuracy, and the mean test accuracy of the variant chosen on
validation per seed (test accuracy never chooses).
"""
from __future__ import annotations

from dataclasses import replace
from pathlib import Path
from typing import NamedTuple

import numpy as np

from common import (
    RESULTS, add_outputs, finished_row, labelled_subset, parser as common_parser,
    read_results, write_block,
)
from few_labels import fit_and_score, validation_split
from ulmtl import TextClassifier
from ulmtl.config import TRANSFORMER_CLASSIFIER, TransformerConfig


class Variant(NamedTuple):
    """A variant's changes to the recipe's transformer defaults."""
    strategy: str
    stage_epochs: tuple[int, ...] = (1, 4)
    contrastive: str = "off"
    head_min_steps: int = 0
    discriminative: bool = True


VARIANTS = {
    "feature_extraction": Variant("feature_extraction"),
    "feature_extraction x10": Variant("feature_extraction", (10, 40)),
    "finetune": Variant("finetune"),
    "finetune x10 head": Variant("finetune", (10, 4)),
    "finetune head>=25 steps": Variant("finetune", head_min_steps=25),
    "finetune head>=50 steps": Variant("finetune", head_min_steps=50),
    "finetune head>=100 steps": Variant("finetune", head_min_steps=100),
    "finetune one LR": Variant("finetune", discriminative=False),
    "finetune head>=50 steps one LR": Variant("finetune", head_min_steps=50, discriminative=False),
    "feature_extraction +contrastive": Variant("feature_extraction", contrastive="on"),
    "feature_extraction x10 +contrastive": Variant("feature_extraction", (10, 40), contrastive="on"),
    "finetune +contrastive": Variant("finetune", contrastive="on"),
    "finetune x10 head +contrastive": Variant("finetune", (10, 4), contrastive="on"),
    "finetune head>=50 steps +contrastive": Variant("finetune", head_min_steps=50, contrastive="on"),
    "finetune one LR +contrastive": Variant("finetune", contrastive="on", discriminative=False),
}


def classifier(variant: str, seed: int, quick: bool) -> TextClassifier:
    """The unfitted TextClassifier of ``variant``: the recipe's transformer defaults with its strategy,
    stage epochs, head steps, LRs and contrastive stage (``quick``: 1 epoch a stage, 2 pair rounds)."""
    changes = VARIANTS[variant]
    config = replace(TRANSFORMER_CLASSIFIER, seed=seed, strategy=changes.strategy,
                     stage_epochs=(1, 1) if quick else changes.stage_epochs, head_min_steps=changes.head_min_steps,
                     discriminative=changes.discriminative)
    settings = TransformerConfig(contrastive=changes.contrastive, contrastive_iterations=2 if quick else 20)
    return TextClassifier(config, model_config=settings, verbose=False)


def main(argv=None) -> list[dict]:
    parser = common_parser(__doc__, datasets="trec,mr")
    parser.add_argument("--sizes", default="50")
    parser.add_argument("--seeds", default="0,1,2")
    parser.add_argument("--variants", default=",".join(VARIANTS))
    parser.add_argument("--valid", type=int, default=500)
    parser.add_argument("--quick", action="store_true", help="1 epoch a stage, 2 pair rounds: a check that it runs")
    parser.add_argument("--table", action="store_true", help="write the table of the rows so far; run nothing")
    add_outputs(parser, "runs/head_epochs")
    args = parser.parse_args(argv)
    variants = args.variants.split(",")
    unknown = [v for v in variants if v not in VARIANTS]
    if unknown:
        parser.error(f"unknown variant(s) {unknown}; known: {', '.join(VARIANTS)}")
    if args.table:
        done = read_results(args.results, "head_epochs", quick=False)
        print(report(done))
        if Path(args.results) == RESULTS:
            write_block("head_epochs", report(done), "python benchmarks/head_epochs.py --table")
        return done
    rows = []
    for dataset in args.datasets.split(","):
        for size in [int(s) for s in args.sizes.split(",")]:
            for seed in [int(s) for s in args.seeds.split(",")]:
                train_texts, train_labels, test_texts, test_labels = labelled_subset(dataset, size, seed)
                valid_texts, valid_labels = validation_split(dataset, train_texts, train_labels, args.valid, seed)
                splits = (train_texts, train_labels, valid_texts, valid_labels, test_texts, test_labels)
                for variant in variants:
                    key = {"dataset": dataset, "size": size, "seed": seed, "variant": variant, "quick": args.quick}
                    done = finished_row(args.results, "head_epochs", key)
                    if done:
                        rows.append(done)
                        continue
                    command = (f"python benchmarks/head_epochs.py --datasets {dataset} --sizes {size} --seeds {seed} "
                               f"--variants '{variant}'" + (" --quick" if args.quick else ""))
                    row = fit_and_score(classifier(variant, seed, args.quick), {"benchmark": "head_epochs", **key},
                                        splits, command, args.results)
                    print(f"== {dataset} {size} labels seed {seed} {variant}: valid {row['valid_accuracy']} "
                          f"test {row['test_accuracy']} ({row['seconds']} s)", flush=True)
                    rows.append(row)
    print(report(rows))
    if Path(args.results) == RESULTS and not args.quick:  # the block shows every full-mode row so far
        write_block("head_epochs", report(read_results(args.results, "head_epochs", quick=False)),
                    "python benchmarks/head_epochs.py --table")
    return rows


def report(rows: list[dict]) -> str:
    """A Markdown table per dataset and size: each variant's mean (std) validation and test accuracy
    and seconds over its seeds, and the mean test accuracy of the variant with the best validation
    accuracy per seed (a tie: the first in VARIANTS' order, the cheaper)."""
    cells: dict = {}
    for row in rows:  # the latest row of each run
        cells.setdefault((row["dataset"], row["size"]), {}).setdefault(row["variant"], {})[row["seed"]] = row
    lines = ["| dataset | labels | variant | valid | test | seconds | seeds |", "|---|---|---|---|---|---|---|"]
    for (dataset, size), by_variant in sorted(cells.items()):
        for variant in [v for v in VARIANTS if v in by_variant]:
            runs = list(by_variant[variant].values())
            valid, test = ([r[field] for r in runs] for field in ("valid_accuracy", "test_accuracy"))
            lines.append(f"| {dataset} | {size} | {variant} | {np.mean(valid):.3f} ({np.std(valid):.3f}) | "
                         f"{np.mean(test):.3f} ({np.std(test):.3f}) | {np.mean([r['seconds'] for r in runs]):.0f} | "
                         f"{len(runs)} |")
        seeds = sorted({seed for runs in by_variant.values() for seed in runs})
        chosen = [max((by_variant[v][seed] for v in VARIANTS if seed in by_variant.get(v, {})),
                      key=lambda r: r["valid_accuracy"]) for seed in seeds]
        lines.append(f"| {dataset} | {size} | chosen on validation ({', '.join(r['variant'] for r in chosen)}) | | "
                     f"**{np.mean([r['test_accuracy'] for r in chosen]):.3f}** | | {len(chosen)} |")
    return "\n".join(lines)


if __name__ == "__main__":
    main()
