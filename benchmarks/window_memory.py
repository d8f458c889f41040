"""Peak memory of one classifier training step on long documents, against windows_at_once.

    ULMTL_DATA_DIR=../shared/data python benchmarks/window_memory.py [--settings 0,32] [--batch 32]

Each setting runs in a fresh process: the bundled encoder's classifier (the recipe's transformer
defaults: windows of 256 tokens overlapping by 64, up to 1,024 tokens a review, precision auto) takes
one forward and backward pass on the first ``--batch`` reviews of polarity v2.0's fold-0 training
split, and reports the process's peak resident memory and the step's seconds. 0 encodes every
window of the batch at once (the behaviour before windows_at_once); a process the kernel kills for
memory is reported as such.
"""
from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import time

from common import cpu, parser as common_parser


def step(setting: int, batch: int, data_dir: str | None) -> dict:
    """One training step in this process: its peak memory (GiB), seconds and window count."""
    import torch

    from ulmtl.backbones import transformer
    from ulmtl.config import TRANSFORMER_CLASSIFIER, TransformerConfig
    from ulmtl.datasets import load_dataset
    from ulmtl.precision import autocast, resolve_precision

    reviews = load_dataset("polarity", data_dir)["train"]
    texts, labels = list(reviews["text"][:batch]), torch.tensor(reviews["label"][:batch])
    source = str(transformer.bundled_encoder())
    tokenizer = transformer.load_tokenizer(source)
    settings = TransformerConfig(windows_at_once=setting)
    model = transformer.build_classifier(source, tokenizer, 2, settings, 50, 0.1).train()
    ids = transformer.encode_texts(tokenizer, texts, TRANSFORMER_CLASSIFIER.max_len)
    width = max(len(row) for row in ids)
    padded = torch.full((len(ids), width), tokenizer.pad_token_id, dtype=torch.long)
    for row, tokens in enumerate(ids):
        padded[row, :len(tokens)] = torch.from_numpy(tokens)
    precision = resolve_precision(settings.precision, torch.device("cpu"), bf16_pays_on_cpu=True)
    started = time.perf_counter()
    with autocast(precision, torch.device("cpu")):
        loss = torch.nn.functional.cross_entropy(model(padded).float(), labels)
    loss.backward()
    return {"windows_at_once": setting, "windows": len(model.windows(padded)[0]), "precision": precision,
            "seconds": round(time.perf_counter() - started, 1),
            "peak_rss_gib": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20, 2)}


def main(argv=None) -> list[dict]:
    parser = common_parser(__doc__)
    parser.add_argument("--settings", default="0,32")
    parser.add_argument("--batch", type=int, default=32)
    parser.add_argument("--data-dir", default=None)
    parser.add_argument("--one", type=int, default=None, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.one is not None:
        print(json.dumps(step(args.one, args.batch, args.data_dir)))
        return []
    rows = []
    print(f"CPU: {cpu()}", flush=True)
    for setting in map(int, args.settings.split(",")):
        command = [sys.executable, __file__, "--one", str(setting), "--batch", str(args.batch)]
        command += ["--data-dir", args.data_dir] if args.data_dir else []
        done = subprocess.run(command, capture_output=True, text=True)
        lines = [line for line in done.stdout.splitlines() if line.startswith("{")]
        row = json.loads(lines[-1]) if done.returncode == 0 and lines else {
            "windows_at_once": setting, "failed": f"exit status {done.returncode}"
            + (" (killed: out of memory?)" if done.returncode in (-9, 137) else "")}
        rows.append(row)
        print(json.dumps(row), flush=True)
    return rows


if __name__ == "__main__":
    main()
