"""Peak memory of stage-1 preprocessing + one LM epoch, streamed from disk, under a memory cap.

    python benchmarks/streaming_memory.py [--fractions 0.25,0.5,1] [--cap-mb 3000] [--num-proc 2]

For each fraction of the general corpus, a fresh process (with an empty cache, and RLIMIT_DATA,
the kernel's cap on a process's private memory, set to ``--cap-mb``) tokenizes and numericalizes
it with ``datasets.map(num_proc=N)`` into memory-mapped arrow files, writes the token ids as one
memory-mapped int32 stream (``PretrainConfig(stream=True)``) and reads one full epoch of
64 x 70 LM batches from it. It reports peak RSS of the process and of its tokenizer workers.
If memory grew with the corpus, peak RSS would grow with the fraction; streamed, it should stay
flat: that is what lets the same code preprocess WikiText-103 (103M tokens) or more.
The last run (``--in-ram``) holds the token ids in RAM instead (stream=False), for contrast.
"""
from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from datetime import date
from pathlib import Path

from common import RESULTS, append_result, hardware, parser as common_parser


def memory_status() -> dict:
    """Resident memory now, split into private (anonymous) pages and file-backed pages (shared
    libraries, memory-mapped arrow and stream files: page cache the kernel can drop), in MB."""
    fields = {}
    for line in Path("/proc/self/status").read_text().splitlines():
        key, _, value = line.partition(":")
        if key in ("RssAnon", "RssFile", "VmHWM"):
            fields[key] = round(int(value.split()[0]) / 1024, 1)
    return {"rss_private_mb_at_end": fields.get("RssAnon"), "rss_file_mb_at_end": fields.get("RssFile")}


def child(fraction: float, cap_mb: int, num_proc: int, stream: bool, data_dir: str | None) -> dict:
    if cap_mb:
        cap = cap_mb * 1024 * 1024
        resource.setrlimit(resource.RLIMIT_DATA, (cap, cap))
    import numpy as np
    import torch

    from ulmtl.config import PretrainConfig, TokenizerConfig
    from ulmtl.datasets import load_corpus, resolve_data_dir
    from ulmtl.loaders import LanguageModelLoader
    from ulmtl.pretrain import prepare_corpus
    corpus = load_corpus(resolve_data_dir(data_dir) / "general_corpus")
    n_docs = max(2, int(len(corpus) * fraction))
    started = time.perf_counter()
    config = PretrainConfig(max_docs=n_docs, stream=stream, valid_fraction=0.02)
    train, valid, vocab = prepare_corpus(corpus, config, TokenizerConfig(max_vocab=30000, min_freq=3, num_proc=num_proc))
    prepared_s = time.perf_counter() - started
    after_prepare_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    loader = LanguageModelLoader(train, 64, 70, shuffle=not stream)
    checksum, batches = 0, 0
    for x, y in loader:
        checksum += int(torch.sum(y[:, -1]))
        batches += 1
    n_tokens = len(train) if isinstance(train, np.ndarray) and train.ndim == 1 else sum(len(d) for d in train)
    return {
        "fraction": fraction, "documents": n_docs, "train_tokens": int(n_tokens), "vocab": len(vocab),
        "stream": stream, "stream_file_mb": round(train.nbytes / 2**20, 1) if stream else None,
        "prepare_s": round(prepared_s, 1), "epoch_batches": batches, "total_s": round(time.perf_counter() - started, 1),
        "peak_rss_mb_after_prepare": round(after_prepare_mb, 1),
        "peak_rss_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1),
        "peak_rss_mb_workers": round(resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024, 1),
        "cap_mb": cap_mb, **memory_status(),
    }


def main(argv=None) -> list[dict]:
    parser = common_parser(__doc__)
    parser.add_argument("--fractions", default="0.25,0.5,1")
    parser.add_argument("--cap-mb", type=int, default=3000, help="RLIMIT_DATA per process (0: none)")
    parser.add_argument("--num-proc", type=int, default=2)
    parser.add_argument("--data-dir", default=None)
    parser.add_argument("--no-in-ram", action="store_true", help="skip the stream=False contrast run")
    parser.add_argument("--child", type=float, default=None, help=argparse.SUPPRESS)
    parser.add_argument("--in-ram", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.child is not None:
        print(json.dumps(child(args.child, args.cap_mb, args.num_proc, not args.in_ram, args.data_dir)))
        return []
    runs = [(float(f), False) for f in args.fractions.split(",")]
    if not args.no_in_ram:
        runs.append((runs[-1][0], True))
    rows = []
    for fraction, in_ram in runs:
        env = dict(os.environ, ULMTL_CACHE_DIR=tempfile.mkdtemp(prefix="ulmtl-stream-"))
        command = [sys.executable, __file__, "--child", str(fraction), "--cap-mb", str(args.cap_mb),
                   "--num-proc", str(args.num_proc)] + (["--data-dir", args.data_dir] if args.data_dir else []) \
            + (["--in-ram"] if in_ram else [])
        result = subprocess.run(command, env=env, capture_output=True, text=True)
        if result.returncode != 0:
            rows.append({"fraction": fraction, "stream": not in_ram, "failed": result.stderr.strip()[-600:]})
            print(f"fraction {fraction} stream={not in_ram}: FAILED\n{result.stderr[-2000:]}", flush=True)
            continue
        row = json.loads(result.stdout.strip().splitlines()[-1])
        rows.append(row)
        print(json.dumps(row), flush=True)
    print(f"{'fraction':>8} {'stream':>6} {'train tokens':>12} {'prepare s':>9} {'peak RSS MB':>11} "
          f"{'workers MB':>10} {'stream file MB':>14} {'private MB':>10} {'file MB':>8}")
    for row in rows:
        if "failed" in row:
            print(f"{row['fraction']:>8} {str(row['stream']):>6} FAILED")
            continue
        print(f"{row['fraction']:>8} {str(row['stream']):>6} {row['train_tokens']:>12} {row['prepare_s']:>9} "
              f"{row['peak_rss_mb']:>11} {row['peak_rss_mb_workers']:>10} {str(row['stream_file_mb']):>14} "
              f"{row['rss_private_mb_at_end']:>10} {row['rss_file_mb_at_end']:>8}")
    append_result(RESULTS, {
        "benchmark": "streaming_memory", "runs": rows, "cap_mb": args.cap_mb, "num_proc": args.num_proc,
        "date": date.today().isoformat(),
        "hardware": hardware(),
        "command": "python benchmarks/streaming_memory.py " + " ".join(argv if argv is not None else sys.argv[1:]),
    })
    return rows


if __name__ == "__main__":
    main()
