"""TREC-6 question classification (official 5,452 / 500 split), as in the ULMFiT paper.

    python recipes/trec.py --output runs/trec [--pretrained DIR] [--classifier.strategy=scratch] [--smoke]
"""
from __future__ import annotations

from ulmtl import RecipeConfig, parse_args, run_recipe
from ulmtl.cli import run_cli
from ulmtl.recipe import SMOKE_RECIPE


def main(argv=None) -> dict:
    config = RecipeConfig(dataset="trec", output="runs/trec")
    config = parse_args(config, argv, SMOKE_RECIPE, usage=__doc__)
    return run_recipe(config)


if __name__ == "__main__":
    run_cli(main)
