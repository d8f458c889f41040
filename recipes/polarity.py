"""Polarity v2.0 movie reviews (Pang & Lee 2004): long documents, BPT3C.

    python recipes/polarity.py --output runs/polarity --fold=0        # one test fold
    python recipes/polarity.py --output runs/polarity --folds=10      # 10-fold cross-validation
"""
from __future__ import annotations

from ulmtl import RecipeConfig, parse_args, run_cross_validation
from ulmtl.cli import run_cli
from ulmtl.recipe import SMOKE_RECIPE


def main(argv=None) -> dict:
    config = RecipeConfig(dataset="polarity", output="runs/polarity")
    config = parse_args(config, argv, SMOKE_RECIPE + ["--max_test=40"], usage=__doc__)
    return run_cross_validation(config)


if __name__ == "__main__":
    run_cli(main)
