"""Prediction speed against the prediction batch size (TextClassifier.predict_proba's batch_size).

    ULMTL_DATA_DIR=../shared/data python benchmarks/predict_batch_size.py [--sizes 128,256,512,1024]

A default-size (400/1152/3) classifier trained briefly on 300 TREC-6 questions predicts 3,000
questions at each batch size; prints texts/s. Speed only: the model is not meant to be accurate.
"""
from __future__ import annotations

import time

from common import parser as common_parser
from ulmtl.classify import TextClassifier
from ulmtl.config import ClassifierConfig, ModelConfig
from ulmtl.datasets import load_dataset


def main(argv=None) -> dict[int, float]:
    parser = common_parser(__doc__)
    parser.add_argument("--sizes", default="128,256,512,128,1024")
    parser.add_argument("--data-dir", default=None)
    args = parser.parse_args(argv)
    trec = load_dataset("trec", args.data_dir)
    texts, labels = list(trec["train"]["text"]), list(trec["train"]["label"])
    config = ClassifierConfig(strategy="scratch", stage_epochs=(1,), unfreeze_plan=(0,), stage_lr_mult=(1.0,))
    clf = TextClassifier(config, model_config=ModelConfig(), verbose=False).fit(texts[:300], labels[:300])
    predict_texts = (texts * 3)[:3000]
    rates = {}
    for size in map(int, args.sizes.split(",")):
        started = time.perf_counter()
        clf.predict_proba(predict_texts, batch_size=size)
        rates[size] = len(predict_texts) / (time.perf_counter() - started)
        print(f"batch {size}: {rates[size]:.1f} texts/s", flush=True)
    return rates


if __name__ == "__main__":
    main()
