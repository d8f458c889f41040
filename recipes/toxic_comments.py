"""Multi-label: the layout of Jigsaw's Toxic Comment Classification data (Kaggle, 2018).

    python recipes/toxic_comments.py --train jigsaw/train.csv --output runs/toxic_comments \
        [--valid_fraction=0.1 --classifier.tune_threshold=true]
train.csv has the columns id, comment_text and one 0/1 column per label (toxic, severe_toxic,
obscene, threat, insult, identity_hate); a comment may have several labels or none. Its test.csv
has no labels, so without --test a seeded random 10% of --train is the test set. The classifier
has a sigmoid per label (binary cross-entropy); metrics.json reports micro- and macro-F1,
per-label precision / recall / F1 and subset accuracy. Any other layout: recipes/custom.py with
--label-columns, or --label-separator for a label field such as "a|b".
"""
from __future__ import annotations

from ulmtl import RecipeConfig, parse_args, run_recipe
from ulmtl.cli import run_cli
from ulmtl.recipe import SMOKE_RECIPE

LABELS = ("toxic", "severe_toxic", "obscene", "threat", "insult", "identity_hate")


def main(argv=None) -> dict:
    config = RecipeConfig(dataset="custom", output="runs/toxic_comments", text_column="comment_text",
                          label_columns=LABELS)
    config = parse_args(config, argv, SMOKE_RECIPE, usage=__doc__)
    return run_recipe(config)


if __name__ == "__main__":
    run_cli(main)
