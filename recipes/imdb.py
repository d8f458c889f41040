"""IMDb movie reviews (Maas et al. 2011), 25k / 25k; the 50k unlabelled `unsup` reviews join the
LM fine-tuning (stage 2 takes every split's text), as in the ULMFiT paper.

    python recipes/imdb.py --output runs/imdb [--data-dir DIR] [--pretrained DIR] [--smoke]

data: aclImdb/ (the unpacked aclImdb_v1.tar.gz, with train/{pos,neg,unsup}/ and test/{pos,neg}/)
in the data directory; without it, stanfordnlp/imdb from the Hugging Face hub (online).
The paper's forward and backward classifiers, probabilities averaged; the other settings are the
defaults (classifier bptt 70, batch 64). --smoke trains the forward direction only.
"""
from __future__ import annotations

from ulmtl import ClassifierConfig, RecipeConfig, parse_args, run_recipe
from ulmtl.cli import run_cli
from ulmtl.recipe import SMOKE_RECIPE


def main(argv=None) -> dict:
    config = RecipeConfig(dataset="imdb", output="runs/imdb",
                          classifier=ClassifierConfig(directions=("forward", "backward")))
    config = parse_args(config, argv, SMOKE_RECIPE + ["--classifier.directions=forward"], usage=__doc__)
    return run_recipe(config)


if __name__ == "__main__":
    run_cli(main)
