"""A pretraining run killed mid-epoch (SIGKILL) resumes from its last checkpoint and ends with the
same weights as an uninterrupted run with the same seed."""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from ulmtl import load_checkpoint

SCRIPT = """
import sys
from ulmtl import ModelConfig, PretrainConfig, TokenizerConfig, pretrain
corpus, out, every = sys.argv[1], sys.argv[2], float(sys.argv[3])
pretrain(corpus, out, PretrainConfig(epochs=2, batch_size=8, bptt=10, valid_fraction=0.1,
                                     checkpoint_every_s=every, log_every=1000),
         ModelConfig(emb_size=16, hidden_size=16, n_layers=2), TokenizerConfig(min_freq=1))
"""


def write_corpus(path: Path) -> Path:
    words = ["the", "cat", "dog", "sat", "ran", "on", "a", "mat", "hill", "quickly", "slowly", "red", "big"]
    lines = []
    for i in range(500):
        lines.append(" ".join(words[(i * 7 + j * 3) % len(words)] for j in range(6 + i % 5)) + " .")
    path.write_text("\n".join(lines) + "\n")
    return path


def wait_for_resume_checkpoint(output: Path, process: subprocess.Popen, min_batches: int,
                               timeout: float = 240) -> None:
    """Poll ``output/resume`` until it records ``min_batches`` batches (or the second epoch), the
    process ends, or ``timeout`` passes: the moment a test kills a run mid-training."""
    progress_file = output / "resume" / "config.json"
    deadline = time.time() + timeout
    while time.time() < deadline and process.poll() is None:
        try:
            progress = json.loads(progress_file.read_text())["progress"]
        except (ValueError, KeyError, FileNotFoundError):
            progress = {"batch": 0, "epoch": 0}
        if progress["epoch"] == 1 or progress["batch"] >= min_batches:
            return
        time.sleep(0.02)


def run(corpus: Path, out: Path, every: float, env: dict) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-c", SCRIPT, str(corpus), str(out), str(every)], env=env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


@pytest.mark.slow
def test_killed_pretraining_resumes_to_identical_weights(tmp_path, ulmtl_cache_dir):
    corpus = write_corpus(tmp_path / "corpus.txt")
    env = dict(os.environ, OMP_NUM_THREADS="1", PYTHONWARNINGS="ignore")

    straight = tmp_path / "straight"
    assert run(corpus, straight, 0.0, env).wait(timeout=300) == 0

    interrupted = tmp_path / "interrupted"
    process = run(corpus, interrupted, 1e-6, env)  # a resume checkpoint after every batch
    wait_for_resume_checkpoint(interrupted, process, min_batches=30)
    process.send_signal(signal.SIGKILL)
    process.wait()
    assert not (interrupted / "weights.safetensors").exists(), "killed before the end, as intended"
    killed_at = load_checkpoint(interrupted / "resume").config["progress"]
    assert killed_at["tokens"] > 0

    assert run(corpus, interrupted, 1e-6, env).wait(timeout=300) == 0
    a, b = load_checkpoint(straight), load_checkpoint(interrupted)
    assert a.tokens == b.tokens
    for key, tensor in a.state_dict.items():
        assert torch.equal(tensor, b.state_dict[key]), key
    total = a.config["metrics"]["tokens_seen"]
    assert b.config["metrics"]["tokens_seen"] == total
    assert 0 < killed_at["tokens"] < total, "the kill landed in the middle of training"
