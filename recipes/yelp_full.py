"""Yelp review full, 1-5 stars (Zhang et al. 2015), 650k / 50k, as in the ULMFiT paper.

    python recipes/yelp_full.py --output runs/yelp_full [--data-dir DIR] [--pretrained DIR] [--smoke]

data: yelp_review_full_csv/ (train.csv, test.csv) in the data directory; without it,
Yelp/yelp_review_full from the Hugging Face hub (online).
The paper's forward and backward classifiers, probabilities averaged; the other settings are the
defaults (classifier bptt 70, batch 64). --smoke trains the forward direction only.
"""
from __future__ import annotations

from ulmtl import ClassifierConfig, RecipeConfig, parse_args, run_recipe
from ulmtl.cli import run_cli
from ulmtl.recipe import SMOKE_RECIPE


def main(argv=None) -> dict:
    config = RecipeConfig(dataset="yelp_full", output="runs/yelp_full",
                          classifier=ClassifierConfig(directions=("forward", "backward")))
    config = parse_args(config, argv, SMOKE_RECIPE + ["--classifier.directions=forward"], usage=__doc__)
    return run_recipe(config)


if __name__ == "__main__":
    run_cli(main)
