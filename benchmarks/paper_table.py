"""The ULMFiT paper's table (test error, %) next to ulmtl's: every paper dataset, forward, backward
and the ensemble. A dataset that cannot run here says why, with the command that would run it.

    python benchmarks/paper_table.py --pretrained 'runs/lm-general-{direction}' \
        [--directions forward,backward] [--datasets trec,imdb,...] [--quick] [--section.key=value ...]
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


def run(args, overrides: list[str]) -> None:
    directions = args.directions.split(",")
    first = Path(args.pretrained.replace("{direction}", directions[0]))
    size = architecture_overrides(first) if args.pretrained and (first / "weights.safetensors").exists() else []
    for dataset in args.datasets.split(","):
        command = (f"python recipes/{dataset}.py --pretrained '{args.pretrained}' "
                   f"--classifier.directions={args.directions}")
        row = {"benchmark": "paper_table", "dataset": dataset, "directions": directions, "quick": args.quick,
               "paper_error": PAPER_ERRORS[dataset], "date": date.today().isoformat(), "hardware": hardware(),
               "command": command}
        try:
            load_dataset(dataset, args.data_dir)
            config = parse_args(RecipeConfig(dataset=dataset), size + (QUICK if args.quick else []) + overrides + [
                f"--pretrained={args.pretrained}", f"--classifier.directions={args.directions}",
                f"--output={Path(args.output) / dataset}"] + ([f"--data_dir={args.data_dir}"] if args.data_dir else []))
            result = run_recipe(config)
            row.update({f"{d}_error": round(100 * result["per_direction"][d]["error"], 2) for d in directions})
            row["ensemble_error"] = round(100 * result["test"]["error"], 2)
            row["n_train"] = result["n_train"]
        except (DataError, CheckpointError) as err:
            row["not_run"] = str(err).split(". ")[0][:200]
        append_result(args.results, row)
        print(f"== {dataset}: {row.get('ensemble_error', row.get('not_run'))}", flush=True)


def table(results: Path) -> str:
    latest = {row["dataset"]: row for row in read_results(results, "paper_table")}
    lines = ["| dataset | paper error (%) | ulmtl forward | ulmtl backward | ulmtl ensemble | run |",
             "|---|---|---|---|---|---|"]
    for dataset in PAPER_ERRORS:
        row = latest.get(dataset)
        if row is None:
            lines.append(f"| {dataset} | {PAPER_ERRORS[dataset]} | not run | | | `python benchmarks/paper_table.py "
                         f"--datasets {dataset} --pretrained ...` |")
        elif "not_run" in row:
            lines.append(f"| {dataset} | {PAPER_ERRORS[dataset]} | not run here: {row['not_run']} | | | "
                         f"`{row['command']}` |")
        else:
            cells = [str(row.get(f"{d}_error", "")) for d in ("forward", "backward")]
            lines.append(f"| {dataset} | {PAPER_ERRORS[dataset]} | {cells[0]} | {cells[1]} | {row['ensemble_error']} "
                         f"| {row['date']}, {'quick, ' if row['quick'] else ''}{row.get('n_train')} train |")
    return "\n".join(lines)


def main(argv=None) -> None:
    argv = list(sys.argv[1:] if argv is None else argv)
    parser = common_parser(__doc__)
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
