"""Which strategy wins: full ULMFiT fine-tuning vs feature extraction vs training from scratch,
same data, same seed, same model size, with the stage-1 LM given by --pretrained.

    python benchmarks/strategies.py --pretrained runs/lm-general-forward --datasets trec,mr \
        --strategies finetune,feature_extraction,scratch --seed 0 [--quick] [--section.key=value ...]

One JSON line per run is appended to benchmarks/results.jsonl (accuracy, macro-F1, time, the LM's
own pretraining metrics, the exact command); each run's outputs go to runs/strategies/.
"""
from __future__ import annotations

import sys
from datetime import date
from pathlib import Path

from common import QUICK_TRAINING, add_outputs, append_result, hardware, parser as common_parser
from ulmtl.checkpoint import load_checkpoint
from ulmtl.cli import parse_args
from ulmtl.config import RecipeConfig
from ulmtl.recipe import architecture_overrides, run_recipe

QUICK = ["--max_train=500"] + QUICK_TRAINING


def main(argv=None) -> list[dict]:
    argv = list(sys.argv[1:] if argv is None else argv)
    parser = common_parser(__doc__, pretrained=True, datasets="trec,mr")
    parser.add_argument("--strategies", default="finetune,feature_extraction,scratch")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--quick", action="store_true")
    add_outputs(parser, "runs/strategies")
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
                   "hardware": hardware(),
                   "command": "python benchmarks/strategies.py " + " ".join(argv), "output": str(output)}
            rows.append(row)
            append_result(args.results, row)
            print(f"== {dataset} {strategy}: accuracy {row['accuracy']} ({row['seconds']} s)", flush=True)
    return rows


if __name__ == "__main__":
    main()
