"""Your own data: a CSV / TSV / JSON-lines / parquet file or a folder with one sub-folder per class.

    python recipes/custom.py --train reviews.csv [--test test.csv] --text-column review \
        --label-column stars --output runs/reviews
Without --test, a seeded stratified 90/10 split of --train is the test set. A row with empty text
is an error naming its line; --skip-empty skips such rows instead (the count is printed and stored
in metrics.json). --encoding latin-1 reads files that are not UTF-8.
"""
from __future__ import annotations

from ulmtl import RecipeConfig, parse_args, run_recipe
from ulmtl.cli import run_cli
from ulmtl.recipe import SMOKE_RECIPE


def main(argv=None) -> dict:
    config = RecipeConfig(dataset="custom", output="runs/custom")
    config = parse_args(config, argv, SMOKE_RECIPE, usage=__doc__)
    return run_recipe(config)


if __name__ == "__main__":
    run_cli(main)
