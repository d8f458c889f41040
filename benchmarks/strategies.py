"""Which strategy wins: full ULMFiT fine-tuning vs feature extraction vs training from scratch,
same data, same seed, same model size, with the stage-1 LM given by --pretrained.

    python benchmarks/strategies.py --pretrained runs/lm-general-forward --datasets trec,mr \
        --strategies finetune,feature_extraction,scratch --seed 0 [--quick] [--section.key=value ...]

One JSON line per run is appended to benchmarks/results.jsonl (accuracy, macro-F1, time, the LM's
own pretraining metrics, the exact command); each run's outputs go to runs/strategies/.
"""
from __future__ import annotations

import argparse
import os
import platform
import sys
from datetime import date
from pathlib import Path

import torch

from results_log import RESULTS, append_result
from ulmtl.checkpoint import load_checkpoint
from ulmtl.cli import parse_args
from ulmtl.config import RecipeConfig
from ulmtl.recipe import architecture_overrides, run_recipe

QUICK = ["--max_train=500", "--finetune.epochs=1", "--classifier.stage_epochs=1,1,1,1"]


def main(argv=None) -> list[dict]:
    argv = list(sys.argv[1:] if argv is None else argv)
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--pretrained", required=True)
    parser.add_argument("--datasets", default="trec,mr")
    parser.add_argument("--strategies", default="finetune,feature_extraction,scratch")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--output", default="runs/strategies")
    parser.add_argument("--results", default=str(RESULTS))
    args, overrides = parser.parse_known_args(argv)
    stage1 = load_checkpoint(args.pretrained)
    model = stage1.config["model"]
    # Training from scratch uses the same architecture as the pretrained LM.
    size = architecture_overrides(args.pretrained)
    rows = []
    for dataset in args.datasets.split(","):
        for strategy in args.strategies.split(","):
            output = Path(args.output) / f"{dataset}-{strategy}-s{args.seed}"
            config = parse_args(RecipeConfig(dataset=dataset), size + (QUICK if args.quick else []) + overrides + [
                f"--classifier.strategy={strategy}", f"--seed={args.seed}", f"--output={output}",
                f"--pretrained={args.pretrained}"])
            result = run_recipe(config)
            row = {"benchmark": "strategies", "dataset": dataset, "strategy": strategy,
                   "accuracy": result["test"]["accuracy"], "macro_f1": result["test"]["macro_f1"],
                   "n_train": result["n_train"], "n_test": result["test"]["n_test"],
                   "seconds": result["seconds"], "seed": args.seed, "quick": args.quick,
                   "lm_finetune": result["lm_finetune"], "stage1": stage1.config.get("metrics", {}),
                   "model": model, "date": date.today().isoformat(),
                   "hardware": f"{platform.machine()}, {os.cpu_count()} cores, torch threads "
                               f"{torch.get_num_threads()}",
                   "command": "python benchmarks/strategies.py " + " ".join(argv), "output": str(output)}
            rows.append(row)
            append_result(args.results, row)
            print(f"== {dataset} {strategy}: accuracy {row['accuracy']} ({row['seconds']} s)", flush=True)
    return rows


if __name__ == "__main__":
    main()
