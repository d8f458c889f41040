"""The paper's ablations (Howard & Ruder 2018, Tables 6 and 7) on TREC-6 and MR, several seeds.

    python benchmarks/ablations.py --pretrained runs/lm-general-forward --datasets trec,mr \
        --seeds 0,1,2 [--variants lm_full,clas_freez_discr_stlr,...] [--quick] [--section.key=value ...]
    python benchmarks/ablations.py --table        # mean and std per variant from results.jsonl

A run already in results.jsonl (same dataset, variant, seed, mode, stage-1 LM and extra settings) is
skipped: run the same command again to resume an interrupted grid.

Every variant is a set of config overrides on the TREC / MR recipe. Like Table 7's other rows
without "discr" or "stlr", chain-thaw trains with one constant LR for every group.
"""
from __future__ import annotations

import sys
from collections import defaultdict
from datetime import date
from pathlib import Path

import numpy as np

from common import (
    QUICK_TRAINING, finetuned_lm_for, add_outputs, append_result, finished_row, hardware, latest_per_run, parser as
                    common_parser, read_results, run_tag, same_run_row, training_settings)
from ulmtl.cli import parse_args
from ulmtl.config import RecipeConfig
from ulmtl.recipe import architecture_overrides, run_recipe

QUICK = ["--max_train=500"] + QUICK_TRAINING
CONSTANT_CLASSIFIER = ["--classifier.schedule=constant", "--classifier.stage_lr_mult=0.1,0.1,0.1,0.1"]
VARIANTS = {
    # Table 6: LM fine-tuning (the classifier is full ULMFiT in each).
    "lm_none": ["--finetune_lm=false"],
    "lm_full": ["--finetune.discriminative=false", "--finetune.schedule=constant", "--finetune.lr=1e-3"],
    "lm_full_discr": ["--finetune.schedule=constant", "--finetune.lr=1e-3"],
    "lm_full_discr_stlr": [],
    # Table 7: classifier fine-tuning (the LM is fine-tuned with discr + STLR in each).
    "clas_scratch": ["--classifier.strategy=scratch"],
    "clas_last": ["--classifier.strategy=feature_extraction"],
    "clas_full": ["--classifier.unfreeze_plan=0,0,0,0", "--classifier.discriminative=false"] + CONSTANT_CLASSIFIER,
    "clas_full_discr": ["--classifier.unfreeze_plan=0,0,0,0"] + CONSTANT_CLASSIFIER,
    "clas_chain_thaw": ["--classifier.unfreezing=chain_thaw", "--classifier.discriminative=false"] + CONSTANT_CLASSIFIER,
    "clas_freez": ["--classifier.discriminative=false"] + CONSTANT_CLASSIFIER,
    "clas_freez_discr": CONSTANT_CLASSIFIER,
    "clas_freez_stlr": ["--classifier.discriminative=false"],
    "clas_freez_discr_stlr": [],
}


# Table 7's variants all start from the LM fine-tuned with discr + STLR: fine-tuned once per
# dataset and seed, then reused. lm_full_discr_stlr and clas_freez_discr_stlr are the same
# configuration (full ULMFiT, in both tables): run once, reported under both names.
SHARES_LM = {v for v in VARIANTS if v.startswith("clas_") and v != "clas_scratch"} | {"lm_full_discr_stlr"}
SAME_RUN = {"lm_full_discr_stlr": "clas_freez_discr_stlr", "clas_freez_discr_stlr": "lm_full_discr_stlr"}


def shared_lm(args, dataset: str, seed: int, base: list[str], tag: str) -> Path:
    """The LM fine-tuned with discr + STLR that Table 7's variants share (once per dataset, seed, mode
    and settings)."""
    config = parse_args(RecipeConfig(dataset=dataset), base + [f"--output={args.output}"])
    return finetuned_lm_for(config, Path(args.output) / f"{dataset}-lm-discr-stlr{tag}-s{seed}", all_texts=False)


def run(args, overrides: list[str]) -> None:
    size = architecture_overrides(args.pretrained)
    tag = run_tag(overrides, args.quick)
    for dataset in args.datasets.split(","):
        for seed in [int(s) for s in args.seeds.split(",")]:
            for variant in args.variants.split(","):
                key = {"dataset": dataset, "variant": variant, "seed": seed, "quick": args.quick,
                       "pretrained": args.pretrained, "settings": overrides}
                if finished_row(args.results, "ablation", key):
                    print(f"== {dataset} {variant} seed {seed}: done earlier, in {args.results}")
                    continue
                twin_row = same_run_row(args.results, "ablation", key, SAME_RUN)
                output = Path(args.output) / f"{dataset}-{variant}{tag}-s{seed}"
                base = size + (QUICK if args.quick else []) + overrides + [
                    f"--seed={seed}", f"--pretrained={args.pretrained}"]
                argv = base + VARIANTS[variant] + [f"--output={output}"]
                if twin_row:  # the same configuration, run under the other table's name
                    scores = {"accuracy": twin_row["accuracy"], "error": twin_row["error"],
                              "same_run_as": twin_row["variant"]}
                else:
                    if variant in SHARES_LM:
                        argv += [f"--pretrained={shared_lm(args, dataset, seed, base, tag)}", "--finetune_lm=false"]
                    result = run_recipe(parse_args(RecipeConfig(dataset=dataset), argv))
                    scores = {"accuracy": result["test"]["accuracy"], "error": result["test"]["error"]}
                row = {"benchmark": "ablation", **key, **scores, "date": date.today().isoformat(),
                       "hardware": hardware(), "command": "python benchmarks/ablations.py " + " ".join(sys.argv[1:])}
                append_result(args.results, row)
                print(f"== {dataset} {variant} seed {seed}: error {row['error']}", flush=True)


def table(results: Path, quick: bool) -> str:
    """Mean (std) [seeds] test error per variant (the paper's order) and dataset; a run with other
    ``--classifier.*`` / ``--finetune.*`` settings is its own row, never mixed into the defaults."""
    groups: dict = defaultdict(lambda: defaultdict(list))
    rows = read_results(results, "ablation", quick)
    for row in rows:
        row["_settings"] = " ".join(training_settings(row.get("settings", []))) or "defaults"
    for row in latest_per_run(rows, ("dataset", "variant", "_settings", "seed")):
        groups[(row["_settings"], row["variant"])][row["dataset"]].append(row["error"])
    datasets = sorted({row["dataset"] for row in rows}, key=lambda d: (d != "trec", d))
    order = list(VARIANTS)
    lines = ["| variant | settings | " + " | ".join(datasets) + " |", "|---|---|" + "---|" * len(datasets)]
    for settings, variant in sorted(groups, key=lambda k: (k[0] != "defaults", k[0],
                                                            order.index(k[1]) if k[1] in order else len(order), k[1])):
        cells = [f"{np.mean(e):.3f} ({np.std(e):.3f}) [{len(e)}]" if (e := groups[(settings, variant)][d]) else ""
                 for d in datasets]
        lines.append(f"| {variant} | {settings} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def main(argv=None) -> None:
    argv = list(sys.argv[1:] if argv is None else argv)
    parser = common_parser(__doc__, pretrained=False, datasets="trec,mr")
    parser.add_argument("--seeds", default="0,1,2")
    parser.add_argument("--variants", default=",".join(VARIANTS))
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--table", action="store_true")
    add_outputs(parser, "runs/ablations")
    args, overrides = parser.parse_known_args(argv)
    unknown = [v for v in args.variants.split(",") if v not in VARIANTS]
    if unknown:
        parser.error(f"unknown variants {unknown}; known: {', '.join(VARIANTS)}")
    if not args.table:
        if not args.pretrained:
            parser.error("--pretrained is required to run (or pass --table)")
        run(args, overrides)
    print(table(Path(args.results), args.quick))


if __name__ == "__main__":
    main()
