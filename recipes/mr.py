"""MR sentence polarity (Pang & Lee 2005); seeded stratified 90/10 split (no official split).

    python recipes/mr.py --output runs/mr [--pretrained DIR] [--smoke]
"""
from __future__ import annotations

from ulmtl import RecipeConfig, parse_args, run_recipe
from ulmtl.cli import run_cli
from ulmtl.recipe import SMOKE_RECIPE


def main(argv=None) -> dict:
    config = RecipeConfig(dataset="mr", output="runs/mr")
    config = parse_args(config, argv, SMOKE_RECIPE, usage=__doc__)
    return run_recipe(config)


if __name__ == "__main__":
    run_cli(main)
