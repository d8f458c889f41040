"""The ULMFiT paper's table (test error, %) next to ulmtl's: every paper dataset, the AWD-LSTM's
forward, backward and ensemble, and the transformer backbone's recipe. A dataset that cannot run
here says why, with the command that would run it.

    python benchmarks/paper_table.py --pretrained 'runs/lm-general-{direction}' \
        [--directions forward,backward] [--datasets trec,imdb,...] [--quick] [--section.key=value ...]
    python benchmarks/paper_table.py --backbone transformer [--pretrained ENCODER] [--datasets ...]
    python benchmarks/paper_table.py --table      # regenerate the table from results.jsonl only

Appends one JSON line per run to benchmarks/results.jsonl and rewrites the table between the
``paper_table`` markers in benchmarks/RESULTS.md.
"""
from __future__ import annotations

import sys
from datetime import date
from pathlib import Path

from common import (
    QUICK_TRAINING, add_outputs, append_result, hardware, parser as common_parser, read_results, write_block,
)
from ulmtl.checkpoint import CheckpointError
from ulmtl.cli import parse_args
from ulmtl.config import RecipeConfig
from ulmtl.datasets import DataError, load_dataset
from ulmtl.recipe import architecture_overrides, run_recipe

PAPER_ERRORS = {"imdb": 4.6, "yelp_polarity": 2.16, "yelp_full": 29.98, "ag_news": 5.01, "dbpedia": 0.80,
                "trec": 3.6}
QUICK = ["--max_train=1000", "--max_test=500"] + QUICK_TRAINING
TRANSFORMER_QUICK = ["--max_train=1000", "--max_test=500", "--finetune.epochs=1", "--classifier.stage_epochs=1,1"]
ROW_DEFAULTS = {"backbone": "awd_lstm"}  # rows written before the transformer's name none


def run(args, overrides: list[str]) -> None:
    transformer = args.backbone == "transformer"
    directions = ["forward"] if transformer else args.directions.split(",")
    first = Path(args.pretrained.replace("{direction}", directions[0]))
    size = architecture_overrides(first) if args.pretrained and (first / "weights.safetensors").exists() else []
    if transformer:  # one classifier reads both directions; its stage 1 is the encoder (empty: bundled)
        stage1 = ["--backbone=transformer"] + ([f"--pretrained={args.pretrained}"] if args.pretrained else [])
        quick = TRANSFORMER_QUICK
    else:
        stage1 = size + [f"--pretrained={args.pretrained}", f"--classifier.directions={args.directions}"]
        quick = QUICK
    for dataset in args.datasets.split(","):
        command = f"python recipes/{dataset}.py " + (
            "--backbone=transformer" + (f" --pretrained '{args.pretrained}'" if args.pretrained else "")
            if transformer else f"--pretrained '{args.pretrained}' --classifier.directions={args.directions}")
        row = {"benchmark": "paper_table", "backbone": args.backbone, "dataset": dataset, "directions": directions,
               "quick": args.quick, "paper_error": PAPER_ERRORS[dataset], "date": date.today().isoformat(),
               "hardware": hardware(), "command": command}
        try:
            load_dataset(dataset, args.data_dir)
            config = parse_args(RecipeConfig(dataset=dataset), (quick if args.quick else []) + overrides + stage1 + [
                f"--output={Path(args.output) / (dataset + ('-transformer' if transformer else ''))}"]
                + ([f"--data_dir={args.data_dir}"] if args.data_dir else []))
            result = run_recipe(config)
            row.update({f"{d}_error": round(100 * result["per_direction"][d]["error"], 2) for d in directions})
            row["ensemble_error"] = round(100 * result["test"]["error"], 2)
            row["n_train"] = result["n_train"]
        except (DataError, CheckpointError) as err:
            row["not_run"] = str(err).split(". ")[0][:200]
        append_result(args.results, row)
        print(f"== {dataset}: {row.get('ensemble_error', row.get('not_run'))}", flush=True)


def table(results: Path) -> str:
    """One line per paper dataset: the paper's error, the latest AWD-LSTM row (forward, backward,
    ensemble) and the latest transformer row, each with its date or why it did not run."""
    latest = {(row["dataset"], row.get("backbone", ROW_DEFAULTS["backbone"])): row
              for row in read_results(results, "paper_table")}
    lines = ["| dataset | paper error (%) | ulmtl AWD-LSTM forward | backward | ensemble | AWD-LSTM run "
             "| ulmtl transformer | transformer run |", "|---|---|---|---|---|---|---|---|"]
    for dataset in PAPER_ERRORS:
        awd_lstm, transformer = latest.get((dataset, "awd_lstm")), latest.get((dataset, "transformer"))
        lines.append(f"| {dataset} | {PAPER_ERRORS[dataset]} | " + " | ".join(
            _cells(awd_lstm, dataset, ("forward_error", "backward_error", "ensemble_error"), "--pretrained ...")
            + _cells(transformer, dataset, ("ensemble_error",), "--backbone transformer")) + " |")
    return "\n".join(lines)


def _cells(row: dict | None, dataset: str, errors: tuple[str, ...], how: str) -> list[str]:
    """A backbone's cells of the table: its errors and a last cell saying when or why not."""
    if row is None:
        return ["not run"] + [""] * (len(errors) - 1) + [f"`python benchmarks/paper_table.py --datasets {dataset} {how}`"]
    if "not_run" in row:
        return [f"not run here: {row['not_run']}"] + [""] * (len(errors) - 1) + [f"`{row['command']}`"]
    return [str(row.get(e, "")) for e in errors] + [
        f"{row['date']}, {'quick, ' if row['quick'] else ''}{row.get('n_train')} train"]


def main(argv=None) -> None:
    argv = list(sys.argv[1:] if argv is None else argv)
    parser = common_parser(__doc__)
    parser.add_argument("--backbone", default="awd_lstm", choices=["awd_lstm", "transformer"])
    parser.add_argument("--pretrained", default="")
    parser.add_argument("--directions", default="forward,backward")
    parser.add_argument("--datasets", default=",".join(PAPER_ERRORS))
    parser.add_argument("--data-dir", default=None)
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--table", action="store_true")
    add_outputs(parser, "runs/paper_table")
    args, overrides = parser.parse_known_args(argv)
    if not args.table:
        run(args, overrides)
    markdown = table(Path(args.results))
    write_block("paper_table", markdown, "python benchmarks/paper_table.py --table")
    print(markdown)


if __name__ == "__main__":
    main()
