"""AG News topics (Zhang et al. 2015), 4 classes, 120k / 7.6k; title and description as xxfld fields.

    python recipes/ag_news.py --output runs/ag_news [--data-dir DIR] [--pretrained DIR] [--smoke]

data: ag_news_csv/ (classes.txt, train.csv, test.csv) in the data directory; without it,
fancyzhx/ag_news from the Hugging Face hub (online).
The paper's forward and backward classifiers, probabilities averaged; the other settings are the
defaults (classifier bptt 70, batch 64). --smoke trains the forward direction only.
"""
from __future__ import annotations

from ulmtl import ClassifierConfig, RecipeConfig, parse_args, run_recipe
from ulmtl.cli import run_cli
from ulmtl.recipe import SMOKE_RECIPE


def main(argv=None) -> dict:
    config = RecipeConfig(dataset="ag_news", output="runs/ag_news",
                          classifier=ClassifierConfig(directions=("forward", "backward")))
    config = parse_args(config, argv, SMOKE_RECIPE + ["--classifier.directions=forward"], usage=__doc__)
    return run_recipe(config)


if __name__ == "__main__":
    run_cli(main)
