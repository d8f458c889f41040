"""LM pretraining throughput with 1 process vs N processes (torchrun, gloo on CPU), same global batch.

    python benchmarks/scaling.py [--processes 2] [--tokens 90000] [--quick]

Runs ``recipes/pretrain_general.py`` on the general corpus twice with the paper's AWD-LSTM
(400/1152/3) and a token budget: once as one process using all cores (batch 64), once under
``torchrun --nproc_per_node=N`` with cores / N threads per process and batch 64 / N per process,
so both take the same optimizer steps on the same global batch. Reports the training tokens/s
each run measured itself (metrics.json) and the ratio; appends one JSON line to results.jsonl.
"""
from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
from datetime import date
from pathlib import Path

from common import RESULTS, append_result, hardware, parser as common_parser

ROOT = Path(__file__).resolve().parents[1]


def run(processes: int, threads: int, batch: int, tokens: int, max_docs: int, output: Path, cache: str) -> dict:
    launcher = [sys.executable] if processes == 1 else \
        [sys.executable, "-m", "torch.distributed.run", f"--nproc_per_node={processes}", "--master_port=29561"]
    command = launcher + [str(ROOT / "recipes" / "pretrain_general.py"), "--output", str(output),
                          f"--pretrain.batch_size={batch}", f"--pretrain.token_budget={tokens}",
                          f"--pretrain.max_docs={max_docs}", "--tokenizer.max_vocab=30000",
                          "--pretrain.checkpoint_every_s=0", "--pretrain.log_every=5", "--model.precision=fp32"]
    env = dict(os.environ, OMP_NUM_THREADS=str(threads), ULMTL_CACHE_DIR=cache, PYTHONWARNINGS="ignore")
    result = subprocess.run(command, env=env, capture_output=True, text=True)
    if result.returncode != 0:
        raise SystemExit(f"{' '.join(command)} failed:\n{result.stderr[-3000:]}")
    metrics = json.loads((output / "metrics.json").read_text())
    return {"processes": processes, "threads_per_process": threads, "batch_per_process": batch,
            "tokens_seen": metrics["tokens_seen"], "tokens_per_s": metrics["tokens_per_s"],
            "valid_perplexity": metrics["valid_perplexity"]}


def main(argv=None) -> dict:
    parser = common_parser(__doc__)
    parser.add_argument("--processes", type=int, default=2)
    parser.add_argument("--tokens", type=int, default=90000, help="token budget of each run")
    parser.add_argument("--max-docs", type=int, default=20000, help="paragraphs of the corpus to tokenize")
    parser.add_argument("--quick", action="store_true", help="a third of the tokens")
    args = parser.parse_args(argv)
    tokens = args.tokens // 3 if args.quick else args.tokens
    cores = os.cpu_count() or 1
    cache = tempfile.mkdtemp(prefix="ulmtl-scaling-")
    work = Path(tempfile.mkdtemp(prefix="ulmtl-scaling-runs-"))
    # Tokenize once first (a tiny budget), so that neither timed run pays for it.
    run(1, cores, 64, 4480, args.max_docs, work / "warmup", cache)
    single = run(1, cores, 64, tokens, args.max_docs, work / "one", cache)
    multi = run(args.processes, max(1, cores // args.processes), 64 // args.processes, tokens, args.max_docs,
                work / "many", cache)
    row = {"benchmark": "scaling", "single": single, "multi": multi,
           "speedup": round(multi["tokens_per_s"] / single["tokens_per_s"], 3),
           "model": "400/1152/3 fp32", "global_batch": 64, "date": date.today().isoformat(),
           "hardware": hardware(),
           "command": "python benchmarks/scaling.py " + " ".join(argv if argv is not None else sys.argv[1:])}
    for name, r in (("1 process", single), (f"{args.processes} processes", multi)):
        print(f"{name:12s} {r['threads_per_process']} thread(s) each, batch {r['batch_per_process']} each: "
              f"{r['tokens_per_s']:.0f} tokens/s ({r['tokens_seen']} tokens, valid ppl {r['valid_perplexity']})")
    print(f"speedup {row['speedup']:.2f}x")
    append_result(RESULTS, row)
    print(json.dumps(row))
    return row


if __name__ == "__main__":
    main()
