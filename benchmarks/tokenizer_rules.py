"""ulmtl's fastai text rules against fastai's own, applied one by one, on the general corpus.

    ULMTL_DATA_DIR=../shared/data python benchmarks/tokenizer_rules.py

Checks that every paragraph gives the same text and prints both times (single process).
"""
from __future__ import annotations

import time

from common import parser as common_parser
from ulmtl.datasets import load_corpus, resolve_data_dir
from ulmtl.text import PRE_RULES, _apply_rules_batch


def fastai_rules(text: str) -> str:
    for rule in PRE_RULES:
        text = rule(text)
    return text


def main(argv=None) -> dict:
    parser = common_parser(__doc__)
    parser.add_argument("--data-dir", default=None)
    args = parser.parse_args(argv)
    texts = list(load_corpus(resolve_data_dir(args.data_dir) / "general_corpus")["text"])
    started = time.perf_counter()
    expected = [fastai_rules(text) for text in texts]
    fastai_seconds = time.perf_counter() - started
    started = time.perf_counter()
    got = [out for i in range(0, len(texts), 1000) for out in _apply_rules_batch(texts[i:i + 1000])]
    ulmtl_seconds = time.perf_counter() - started
    mismatches = sum(a != b for a, b in zip(expected, got))
    result = {"paragraphs": len(texts), "mismatches": mismatches,
              "fastai_rules_s": round(fastai_seconds, 2), "ulmtl_rules_s": round(ulmtl_seconds, 2)}
    print(result)
    return result


if __name__ == "__main__":
    main()
