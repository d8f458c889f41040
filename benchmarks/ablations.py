"""The paper's ablations (Howard & Ruder 2018, Tables 6 and 7) on TREC-6 and MR, several seeds,
on the AWD-LSTM (the paper's) or the transformer backbone.

    python benchmarks/ablations.py --pretrained runs/lm-general-forward --datasets trec,mr \
        --seeds 0,1,2 [--variants lm_full,clas_freez_discr_stlr,...] [--quick] [--section.key=value ...]
    python benchmarks/ablations.py --backbone transformer --datasets trec,mr --seeds 0,1,2 \
        [--variants full,pool_mean,...] [--quick] [--pretrained ENCODER] [--section.key=value ...]
    python benchmarks/ablations.py --table        # mean and std per variant, one table per backbone

A run already in results.jsonl (same backbone, dataset, variant, seed, mode, stage-1 LM and extra
settings) is skipped: run the same command again to resume an interrupted grid. --quick: 500
labelled examples and one epoch of LM fine-tuning and of each classifier stage.

Every variant is a set of config overrides on the TREC / MR recipe. AWD-LSTM (VARIANTS): like Table
7's other rows without "discr" or "stlr", chain-thaw trains with one constant LR for every group.
Transformer (TRANSFORMER_VARIANTS): overrides on the recipe with the transformer's defaults
(ulmtl.config.backbone_defaults("transformer"): masked-LM fine-tuning, then the head alone for one
epoch and every layer group for four, discriminative LRs, STLR, concat pooling) on the bundled
all-MiniLM-L6-v2 (or the encoder --pretrained names); each variant changes one of them, and all but
lm_none start from one masked LM, fine-tuned once per dataset and seed (the classifier variants do
not change stage 2).
"""
from __future__ import annotations

import sys
from collections import defaultdict
from datetime import date
from pathlib import Path

import numpy as np

from common import (
    QUICK_TRAINING, finetuned_lm_for, add_outputs, append_result, finished_row, hardware, latest_per_run, parser as
                    common_parser, read_results, run_tag, same_run_row, run_settings)
from ulmtl.cli import parse_args
from ulmtl.config import RecipeConfig
from ulmtl.recipe import architecture_overrides, run_recipe

QUICK = ["--max_train=500"] + QUICK_TRAINING
TRANSFORMER_QUICK = ["--max_train=500", "--finetune.epochs=1", "--classifier.stage_epochs=1,1"]
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

TRANSFORMER_VARIANTS = {
    # Stage 2 (masked-LM fine-tuning) off, and the transformer's defaults.
    "lm_none": ["--finetune_lm=false"],
    "full": [],
    # Unfreezing: every group at once for the default plan's 5 epochs, or chain-thaw (the head, each
    # lower group alone from the bottom up at chain_thaw_lr_mult, then all).
    "all_at_once": ["--classifier.unfreeze_plan=0", "--classifier.stage_epochs=5",
                    "--classifier.stage_lr_mult=1"],
    "chain_thaw": ["--classifier.unfreezing=chain_thaw"],
    # One LR for every group; Hugging Face's linear warm-up and decay instead of STLR.
    "one_lr": ["--classifier.discriminative=false"],
    "linear_schedule": ["--classifier.schedule=linear"],
    # Pooling: the first token alone, the mean alone.
    "pool_first": ["--transformer.pooling=first"],
    "pool_mean": ["--transformer.pooling=mean"],
}
# --quick for a variant whose plan has other stages than the default's two: all_at_once's one stage
# trains as many epochs as --quick's two stages.
TRANSFORMER_QUICK_VARIANTS = {"all_at_once": ["--classifier.stage_epochs=2"]}
TABLES = {"awd_lstm": VARIANTS, "transformer": TRANSFORMER_VARIANTS}
ROW_DEFAULTS = {"backbone": "awd_lstm"}  # rows written before the transformer variants name none


# Table 7's variants all start from the LM fine-tuned with discr + STLR: fine-tuned once per
# dataset and seed, then reused. lm_full_discr_stlr and clas_freez_discr_stlr are the same
# configuration (full ULMFiT, in both tables): run once, reported under both names.
SHARES_LM = {v for v in VARIANTS if v.startswith("clas_") and v != "clas_scratch"} | {"lm_full_discr_stlr"}
# The transformer's variants change the classifier only (lm_none: no stage 2): they share one masked LM.
TRANSFORMER_SHARES_LM = set(TRANSFORMER_VARIANTS) - {"lm_none"}
SAME_RUN = {"lm_full_discr_stlr": "clas_freez_discr_stlr", "clas_freez_discr_stlr": "lm_full_discr_stlr"}


def shared_lm(args, dataset: str, seed: int, base: list[str], tag: str, prefix: str = "") -> Path:
    """The LM fine-tuned with discr + STLR that Table 7's variants (the transformer's: all but
    lm_none) share, once per backbone, dataset, seed, mode and settings."""
    config = parse_args(RecipeConfig(dataset=dataset), base + [f"--output={args.output}"])
    return finetuned_lm_for(config, Path(args.output) / f"{dataset}-{prefix}lm-discr-stlr{tag}-s{seed}",
                            all_texts=False)


def base_argv(backbone: str, quick: bool, overrides: list[str], seed: int,
              pretrained: str | None) -> list[str]:
    """A run's recipe arguments before its variant's: the mode's, the user's, the seed, and the
    stage-1 LM (the transformer: the encoder, when one is named; its defaults come with --backbone)."""
    if backbone == "transformer":
        encoder = [f"--pretrained={pretrained}"] if pretrained else []
        mode = TRANSFORMER_QUICK if quick else []
        return mode + overrides + [f"--seed={seed}", "--backbone=transformer", *encoder]
    return (QUICK if quick else []) + overrides + [f"--seed={seed}", f"--pretrained={pretrained}"]


def variant_argv(backbone: str, variant: str, quick: bool) -> list[str]:
    """The overrides of ``variant`` in ``backbone``'s table (in --quick mode)."""
    if backbone == "transformer":
        return TRANSFORMER_VARIANTS[variant] + (TRANSFORMER_QUICK_VARIANTS.get(variant, []) if quick else [])
    return VARIANTS[variant]


def run(args, overrides: list[str]) -> None:
    awd_lstm = args.backbone == "awd_lstm"
    size = architecture_overrides(args.pretrained) if awd_lstm else []
    tag = run_tag(overrides, args.quick)
    prefix = "" if awd_lstm else f"{args.backbone}-"
    for dataset in args.datasets.split(","):
        for seed in [int(s) for s in args.seeds.split(",")]:
            for variant in args.variants.split(","):
                key = {"backbone": args.backbone, "dataset": dataset, "variant": variant, "seed": seed,
                       "quick": args.quick, "pretrained": args.pretrained or "bundled", "settings": overrides}
                if finished_row(args.results, "ablation", key, ROW_DEFAULTS):
                    print(f"== {args.backbone} {dataset} {variant} seed {seed}: done earlier, in "
                          f"{args.results}")
                    continue
                twin_row = same_run_row(args.results, "ablation", key, SAME_RUN, ROW_DEFAULTS)
                output = Path(args.output) / f"{dataset}-{prefix}{variant}{tag}-s{seed}"
                base = size + base_argv(args.backbone, args.quick, overrides, seed, args.pretrained)
                argv = base + variant_argv(args.backbone, variant, args.quick) + [f"--output={output}"]
                if twin_row:  # the same configuration, run under the other table's name
                    scores = {"accuracy": twin_row["accuracy"], "error": twin_row["error"],
                              "same_run_as": twin_row["variant"]}
                else:
                    if variant in (SHARES_LM if awd_lstm else TRANSFORMER_SHARES_LM):
                        argv += [f"--pretrained={shared_lm(args, dataset, seed, base, tag, prefix)}",
                                 "--finetune_lm=false"]
                    result = run_recipe(parse_args(RecipeConfig(dataset=dataset), argv))
                    scores = {"accuracy": result["test"]["accuracy"], "error": result["test"]["error"]}
                row = {"benchmark": "ablation", **key, **scores, "date": date.today().isoformat(),
                       "hardware": hardware(), "command": "python benchmarks/ablations.py " + " ".join(sys.argv[1:])}
                append_result(args.results, row)
                print(f"== {args.backbone} {dataset} {variant} seed {seed}: error {row['error']}", flush=True)


def table(results: Path, quick: bool, backbone: str = "awd_lstm") -> str:
    """Mean (std) [seeds] test error per variant of ``backbone`` (its table's order) and dataset; a
    run with other training settings or texts (``--classifier.*``, ``--max_train``... :
    :func:`common.run_settings`) is its own row, never mixed into the defaults."""
    groups: dict = defaultdict(lambda: defaultdict(list))
    rows = [r for r in read_results(results, "ablation", quick)
            if r.get("backbone", ROW_DEFAULTS["backbone"]) == backbone]
    for row in rows:
        row["_settings"] = " ".join(run_settings(row.get("settings", []))) or "defaults"
    for row in latest_per_run(rows, ("dataset", "variant", "_settings", "seed")):
        groups[(row["_settings"], row["variant"])][row["dataset"]].append(row["error"])
    datasets = sorted({row["dataset"] for row in rows}, key=lambda d: (d != "trec", d))
    order = list(TABLES[backbone])
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
    parser.add_argument("--backbone", default="awd_lstm", choices=list(TABLES))
    parser.add_argument("--seeds", default="0,1,2")
    parser.add_argument("--variants", default="", help="default: every variant of the backbone's table")
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--table", action="store_true")
    add_outputs(parser, "runs/ablations")
    args, overrides = parser.parse_known_args(argv)
    variants = TABLES[args.backbone]
    args.variants = args.variants or ",".join(variants)
    unknown = [v for v in args.variants.split(",") if v not in variants]
    if unknown:
        parser.error(f"unknown {args.backbone} variants {unknown}; known: {', '.join(variants)}")
    if not args.table:
        if args.backbone == "awd_lstm" and not args.pretrained:
            parser.error("--pretrained (the stage-1 LM) is required to run the AWD-LSTM's variants "
                         "(or pass --table)")
        run(args, overrides)
    for backbone in TABLES:
        print(f"\n{backbone}:\n{table(Path(args.results), args.quick, backbone)}")


if __name__ == "__main__":
    main()
