"""Choose the classifier's training settings on a validation split, then measure the choice on test.

The paper tunes the number of classifier epochs per task on a validation set. This script does
the same, honestly: every candidate below is trained on 90% of the training texts and scored on
the held-out 10% (``--valid_fraction``); the best candidate of each strategy (by validation
accuracy only) is then retrained on all training texts and scored once on the test split. The
candidates are declared here, before any result is seen.

    python benchmarks/tuning.py --pretrained runs/lm-general-forward --datasets trec,mr --tune trec
    python benchmarks/tuning.py --backbone transformer --datasets trec --tune trec
    python benchmarks/tuning.py --backbone transformer --datasets trec --tune none \
        --chosen transformer-no-lm --seed 1        # the choice, on another seed's test run

``--backbone transformer`` compares TRANSFORMER_CANDIDATES on the bundled encoder (or the one
``--pretrained`` names), each a set of overrides on the recipe's transformer defaults; the AWD-LSTM
(the default) compares CANDIDATES and needs ``--pretrained``.

Datasets not in ``--tune`` reuse the choice made on the first tuned one (an MR grid costs hours on
two CPU cores). ``--ensemble`` runs the chosen settings as a forward + backward ensemble (each
direction scored alone too): always for ``scratch``, and for ``finetune`` when ``--pretrained``
names both stage-1 LMs with a ``{direction}`` placeholder (``runs/lm-general-{direction}``).
One JSON line per run goes to benchmarks/results.jsonl; outputs go to runs/tuning/.
"""
from __future__ import annotations

import json
import sys
from datetime import date
from pathlib import Path

from common import add_outputs, append_result, finetuned_lm_for, hardware, parser as common_parser
from ulmtl.cli import parse_args
from ulmtl.config import RecipeConfig, to_dict
from ulmtl.recipe import architecture_overrides, run_recipe

SCRATCH_SCHEDULE = ["--classifier.unfreeze_plan=0", "--classifier.stage_epochs=5", "--classifier.stage_lr_mult=1",
                    "--classifier.discriminative=false"]
# name -> (strategy, overrides). Declared before the runs. ``--finetune.*`` overrides change the
# shared fine-tuned LM (one per distinct LM setting), the others the classifier.
CANDIDATES = {
    # The paper's / fastai's IMDb schedule: 1+1+1+2 epochs, peak LR 0.02, 0.01, 0.005, 0.001.
    "finetune-paper": ("finetune", []),
    # Gradual unfreezing with the base LR kept at 0.01 once all layers train, 4 final epochs.
    "finetune-gradual-lr0.01": ("finetune", ["--classifier.stage_epochs=1,1,1,4",
                                             "--classifier.stage_lr_mult=2,1,1,1"]),
    # No gradual unfreezing: all layers from the first step, discriminative LRs from 0.01, 5 epochs.
    "finetune-all-layers": ("finetune", ["--classifier.unfreeze_plan=0", "--classifier.stage_epochs=5",
                                         "--classifier.stage_lr_mult=1"]),
    # Added in a second round, after the three candidates above had been scored on validation:
    # scratch's schedule (all layers, one LR of 0.01, 5 epochs) from the fine-tuned LM's weights.
    "finetune-scratch-schedule": ("finetune", SCRATCH_SCHEDULE),
    # Added in a third round, after round 2's test runs (its ensemble tied fastText on TREC-6): the
    # same classifier on an LM fine-tuned for 4 epochs instead of 2 (its validation perplexity was
    # still falling after 2).
    "finetune-scratch-schedule-lm4": ("finetune", SCRATCH_SCHEDULE + ["--finetune.epochs=4"]),
    # From random weights, all layers at 0.01, 5 epochs (the strategies benchmark's setting).
    "scratch-5": ("scratch", []),
}
# The transformer's candidates: overrides on the recipe's transformer defaults (masked-LM stage 2,
# the head alone for 1 epoch then every group for 4, lr 1e-4 with lr / 1.3 per group, STLR).
# Declared before any was scored on validation. The test-set ablations of 2026-12-03 (TREC-6) had
# found no component of the method separating from seed noise; these vary what is left: stage 2, the
# classifier's epochs and its LR.
TRANSFORMER_CANDIDATES = {
    "transformer-default": ("finetune", []),
    "transformer-no-lm": ("finetune", ["--finetune_lm=false"]),
    "transformer-8-epochs": ("finetune", ["--classifier.stage_epochs=1,8"]),
    "transformer-no-lm-8-epochs": ("finetune", ["--finetune_lm=false", "--classifier.stage_epochs=1,8"]),
    "transformer-no-lm-lr2e-4": ("finetune", ["--finetune_lm=false", "--classifier.lr=2e-4"]),
    # Added on 2026-12-07, after the five above had been scored and after one LR for every group
    # (the ablations' one_lr) had the better validation accuracy at 50-1,000 labels (head_epochs.py).
    "transformer-one-lr": ("finetune", ["--classifier.discriminative=false"]),
}


def candidate_table(backbone: str) -> dict:
    return TRANSFORMER_CANDIDATES if backbone == "transformer" else CANDIDATES


def stage1_overrides(backbone: str, pretrained: str | None) -> list[str]:
    """The recipe arguments that choose the backbone and its stage-1 LM (the AWD-LSTM's size too)."""
    if backbone == "transformer":
        return ["--backbone=transformer"] + ([f"--pretrained={pretrained}"] if pretrained else [])
    return architecture_overrides(pretrained) + [f"--pretrained={pretrained}"]


def run(dataset: str, name: str, overrides: list[str], args, directions: tuple[str, ...], valid: bool) -> dict:
    strategy, candidate = candidate_table(args.backbone)[name]
    ensemble = len(directions) > 1
    suffix = ("valid" if valid else "test") + ("-ensemble" if ensemble else "")
    output = Path(args.output) / f"{dataset}-{name}-{suffix}-s{args.seed}"
    extra = [f"--classifier.directions={','.join(directions)}"] if ensemble else []
    shared_lm = []
    # scratch needs no LM, nor a candidate without stage 2; the others share one fine-tuned LM per
    # direction and LM setting
    if strategy != "scratch" and "--finetune_lm=false" not in candidate:
        lm_overrides = [o for o in candidate if o.startswith("--finetune.")]
        lm_config = parse_args(RecipeConfig(dataset=dataset), overrides + lm_overrides + [f"--seed={args.seed}"])
        tag = "".join(o[len("--finetune."):].replace("=", "") + "-" for o in lm_overrides)
        # the transformer's one masked LM reads both directions at once: no {direction} in its name
        lm_name = f"transformer-lm-{tag}" if args.backbone == "transformer" else f"lm-{tag}{{direction}}-"
        template = str(Path(args.output) / f"{dataset}-{lm_name}s{args.seed}")
        for direction in directions:
            finetuned_lm_for(lm_config, template.replace("{direction}", direction), direction=direction)
        shared_lm = [f"--pretrained={template}", "--finetune_lm=false"]
    config = parse_args(RecipeConfig(dataset=dataset), overrides + candidate + extra + shared_lm + [
        f"--classifier.strategy={strategy}", f"--seed={args.seed}", f"--output={output}",
        f"--valid_fraction={args.valid_fraction if valid else 0}"])
    done = output / "metrics.json"
    previous = json.loads(done.read_text()) if done.exists() else None
    # A run already made with exactly this config is read back, not repeated (resume, or a second
    # round of candidates).
    reused = bool(previous) and previous.get("config") == to_dict(config)
    result = previous if reused else run_recipe(config)
    row = {"benchmark": "tuning", "backbone": args.backbone, "dataset": dataset, "candidate": name,
           "strategy": strategy,
           "phase": "select" if valid else "final", "directions": result["directions"],
           "valid_accuracy": (result["valid"] or {}).get("accuracy"),
           "test_accuracy": result["test"]["accuracy"], "test_macro_f1": result["test"]["macro_f1"],
           "per_direction_test": {d: m["accuracy"] for d, m in result["per_direction"].items()},
           "n_train": result["n_train"], "seconds": result["seconds"], "seed": args.seed,
           "date": date.today().isoformat(),
           "hardware": hardware(),
           "command": "python benchmarks/tuning.py " + " ".join(args.argv), "output": str(output)}
    if not reused:  # its row is already in results.jsonl
        append_result(args.results, row)
    shown = f"valid {row['valid_accuracy']}" if valid else f"test {row['test_accuracy']}"
    print(f"== {dataset} {name} {'+'.join(row['directions'])}: {shown} ({row['seconds']} s)", flush=True)
    return row


def main(argv=None) -> list[dict]:
    argv = list(sys.argv[1:] if argv is None else argv)
    parser = common_parser(__doc__, pretrained=False, datasets="trec,mr")
    parser.add_argument("--backbone", default="awd_lstm", choices=["awd_lstm", "transformer"])
    parser.add_argument("--tune", default="trec", help="datasets on which the candidates are compared")
    parser.add_argument("--candidates", default="", help="comma-separated (default: all of the backbone's)")
    parser.add_argument("--valid-fraction", dest="valid_fraction", type=float, default=0.1)
    parser.add_argument("--chosen", default="", help="candidates chosen earlier (comma-separated): "
                        "skip the selection, run these on test for datasets not in --tune")
    parser.add_argument("--ensemble", action="store_true")
    parser.add_argument("--seed", type=int, default=0)
    add_outputs(parser, "runs/tuning")
    args, overrides = parser.parse_known_args(argv)
    args.argv = argv
    if args.backbone == "awd_lstm" and not args.pretrained:
        parser.error("the AWD-LSTM's candidates need --pretrained (a stage-1 LM)")
    if args.backbone == "transformer" and args.ensemble:
        parser.error("--ensemble is forward + backward: a transformer reads both directions at once")
    overrides = stage1_overrides(args.backbone, args.pretrained) + overrides
    # a finetune ensemble needs a backward stage-1 LM: --pretrained with {direction}
    backward_lm = "{direction}" in (args.pretrained or "")
    table = candidate_table(args.backbone)
    names = args.candidates.split(",") if args.candidates else list(table)
    unknown = [n for n in names + [c for c in args.chosen.split(",") if c] if n not in table]
    if unknown:
        parser.error(f"unknown {args.backbone} candidates {unknown}; choose from {list(table)}")
    rows, chosen = [], {table[n][0]: n for n in args.chosen.split(",") if n}
    for dataset in args.datasets.split(","):
        if dataset in args.tune.split(","):
            scores = [run(dataset, name, overrides, args, ("forward",), valid=True) for name in names]
            rows += scores
            best = {}
            for row in scores:  # first best wins a tie: the candidates are listed simplest first
                if row["strategy"] not in best or row["valid_accuracy"] > best[row["strategy"]]["valid_accuracy"]:
                    best[row["strategy"]] = row
            chosen = chosen or {strategy: row["candidate"] for strategy, row in best.items()}
            choice = {strategy: row["candidate"] for strategy, row in best.items()}
        else:
            if not chosen:
                parser.error(f"{dataset} is not tuned and no tuned dataset comes before it in --datasets")
            choice = chosen
        print(f"== {dataset}: chosen on validation {choice}", flush=True)
        for strategy, name in choice.items():
            # The forward model of an ensemble run is the forward-only run (same seed, trained
            # first): its test accuracy is in per_direction_test.
            ensemble = args.ensemble and (strategy == "scratch" or backward_lm)
            rows.append(run(dataset, name, overrides, args, ("forward", "backward") if ensemble else ("forward",),
                            valid=False))
    return rows


if __name__ == "__main__":
    main()
