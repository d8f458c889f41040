"""Baselines users would pick instead of ulmtl, on the same splits: TF-IDF + logistic regression
(scikit-learn) and fastText supervised (the optional ``baselines`` extra).

    python benchmarks/baselines.py --datasets trec,mr [--seed 0]

Appends one JSON line per (dataset, method) to benchmarks/results.jsonl and prints a table.
"""
from __future__ import annotations

import tempfile
import time
from datetime import date
from pathlib import Path

import numpy as np
from sklearn.feature_extraction.text import TfidfVectorizer
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import make_pipeline

from common import RESULTS, append_result, hardware, parser as common_parser
from ulmtl.datasets import load_dataset



def tfidf_logreg(train_texts, train_labels, test_texts, seed: int) -> np.ndarray:
    """Word 1-2 grams, sublinear TF, L2 logistic regression (C=10; no tuning on the test set)."""
    model = make_pipeline(
        TfidfVectorizer(ngram_range=(1, 2), sublinear_tf=True, min_df=1, lowercase=True),
        LogisticRegression(C=10.0, max_iter=5000, random_state=seed),
    )
    model.fit(train_texts, train_labels)
    return model.predict(test_texts)


def fasttext_supervised(train_texts, train_labels, test_texts, seed: int) -> np.ndarray | None:
    """fastText supervised with word bigrams (25 epochs, lr 0.5, dim 100); None if not installed."""
    try:
        import fasttext
    except ImportError:
        return None
    # fastText reads its file in order and does not shuffle: lines sorted by class (as MR's are)
    # would leave it predicting the last class, so write them in a seeded random order.
    order = np.random.RandomState(seed).permutation(len(train_texts))
    with tempfile.NamedTemporaryFile("w", suffix=".txt", delete=False) as handle:
        for i in order:
            handle.write(f"__label__{train_labels[i]} {' '.join(train_texts[i].split())}\n")
        path = handle.name
    model = fasttext.train_supervised(path, epoch=25, lr=0.5, wordNgrams=2, dim=100, seed=seed,
                                      thread=1, verbose=0)
    Path(path).unlink()
    labels, _ = model.predict([" ".join(t.split()) for t in test_texts])
    return np.array([int(x[0].replace("__label__", "")) for x in labels])


METHODS = {"tfidf_logreg": tfidf_logreg, "fasttext": fasttext_supervised}


def main(argv=None) -> list[dict]:
    parser = common_parser(__doc__, datasets="trec,mr")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--data-dir", default=None)
    parser.add_argument("--results", default=str(RESULTS))
    args = parser.parse_args(argv)
    rows = []
    for name in args.datasets.split(","):
        data = load_dataset(name, args.data_dir)
        train, test = data["train"], data["test"]
        truth = np.asarray(test["label"])
        for method, fit_predict in METHODS.items():
            started = time.time()
            predicted = fit_predict(train["text"], train["label"], test["text"], args.seed)
            if predicted is None:
                print(f"{name:8s} {method:14s} skipped (pip install -e '.[baselines]')")
                continue
            row = {"benchmark": "baselines", "dataset": name, "method": method,
                   "accuracy": round(float(np.mean(predicted == truth)), 4), "n_train": len(train),
                   "n_test": len(test), "seconds": round(time.time() - started, 1), "seed": args.seed,
                   "date": date.today().isoformat(), "hardware": hardware(),
                   "command": f"python benchmarks/baselines.py --datasets {name} --seed {args.seed}"}
            rows.append(row)
            print(f"{name:8s} {method:14s} accuracy {row['accuracy']:.4f}  ({row['seconds']} s)")
            append_result(args.results, row)
    return rows


if __name__ == "__main__":
    main()
