"""Two CPU processes (gloo, launched by torchrun) train like one process with the same global batch."""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from ulmtl import load_checkpoint

SCRIPT = """
import sys
from ulmtl import ModelConfig, PretrainConfig, TokenizerConfig, pretrain
corpus, out, batch = sys.argv[1], sys.argv[2], int(sys.argv[3])
# Dropout off (weight dropout at 1e-9: fastai's WeightDropout needs p > 0), so the only
# difference between the runs is how the global batch is spread over processes.
model = ModelConfig(emb_size=16, hidden_size=16, n_layers=2, lm_output_p=0.0, lm_hidden_p=0.0,
                    lm_input_p=0.0, lm_embed_p=0.0, lm_weight_p=1e-9)
pretrain(corpus, out, PretrainConfig(epochs=2, batch_size=batch, bptt=10, valid_fraction=0.1,
                                     checkpoint_every_s=0, log_every=5), model, TokenizerConfig(min_freq=1))
"""


def free_port() -> int:
    """A port nothing listens on now (a fixed one can still be held by an earlier run's socket)."""
    import socket
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def write_corpus(path: Path) -> Path:
    words = ["the", "cat", "dog", "sat", "ran", "on", "a", "mat", "hill", "quickly", "slowly", "red", "big"]
    lines = [" ".join(words[(i * 5 + j * 3) % len(words)] for j in range(5 + i % 4)) + " ." for i in range(300)]
    path.write_text("\n".join(lines) + "\n")
    return path


@pytest.mark.skipif(not torch.distributed.is_available(), reason="torch.distributed not available")
def test_two_gloo_processes_match_one_process_with_the_same_global_batch(tmp_path, ulmtl_cache_dir):
    corpus = write_corpus(tmp_path / "corpus.txt")
    script = tmp_path / "train.py"
    script.write_text(SCRIPT)
    env = dict(os.environ, OMP_NUM_THREADS="1", PYTHONWARNINGS="ignore")
    single, double = tmp_path / "single", tmp_path / "double"
    subprocess.run([sys.executable, str(script), str(corpus), str(single), "8"], env=env, check=True,
                   timeout=300, capture_output=True)
    result = subprocess.run([sys.executable, "-m", "torch.distributed.run", "--nproc_per_node=2",
                             f"--master_port={free_port()}", str(script), str(corpus), str(double), "4"],
                            env=env, timeout=300, capture_output=True, text=True)
    assert result.returncode == 0, result.stderr[-3000:]
    one, two = load_checkpoint(single), load_checkpoint(double)
    assert two.config["metrics"]["processes"] == 2
    assert one.config["metrics"]["valid_perplexity"] < len(one.tokens)  # better than a uniform guess
    assert two.config["metrics"]["tokens_seen"] == one.config["metrics"]["tokens_seen"]
    assert two.config["metrics"]["valid_loss"] == pytest.approx(one.config["metrics"]["valid_loss"], rel=1e-3)
    for key, tensor in one.state_dict.items():
        assert torch.allclose(tensor, two.state_dict[key], atol=1e-3), key
    # The logged training loss is the global batch's (the mean over processes), as in one process.
    def losses(folder):
        return {r["batch"] + 1000 * r["epoch"]: r["loss"] for r in
                map(json.loads, (folder / "train_log.jsonl").read_text().splitlines()) if "loss" in r}
    assert losses(double) and losses(double).keys() == losses(single).keys()
    for batch, loss in losses(single).items():
        assert losses(double)[batch] == pytest.approx(loss, rel=2e-3, abs=2e-3), batch
    # Written once: one log line per epoch, no leftover temporary folders.
    records = [json.loads(line) for line in (double / "train_log.jsonl").read_text().splitlines()]
    assert [r["epoch_done"] for r in records if "epoch_done" in r] == [0, 1]
    assert not list(tmp_path.glob("double.*"))


RESUMABLE = """
import os, sys
from ulmtl import ModelConfig, PretrainConfig, TokenizerConfig, pretrain
corpus, out, every = sys.argv[1], sys.argv[2], float(sys.argv[3])
# torchrun starts its workers in their own sessions: the test needs their pids to kill them.
with open(out + ".pid." + os.environ["RANK"], "w") as handle:
    handle.write(str(os.getpid()))
pretrain(corpus, out, PretrainConfig(epochs=2, batch_size=4, bptt=10, valid_fraction=0.1,
                                     checkpoint_every_s=every, log_every=1000),
         ModelConfig(emb_size=16, hidden_size=16, n_layers=2), TokenizerConfig(min_freq=1))
"""


def launch(script: Path, corpus: Path, out: Path, every: float, env: dict) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-m", "torch.distributed.run", "--nproc_per_node=2",
                             f"--master_port={free_port()}", str(script), str(corpus), str(out), str(every)],
                            env=env, stdout=subprocess.DEVNULL, stderr=open(out.with_suffix(".err"), "w"),
                            start_new_session=True)


def wait_until_gone(pids: list[int], timeout: float = 30) -> None:
    """Block until every process has exited (a zombie nobody reaps counts as gone)."""
    import time
    deadline = time.time() + timeout
    for pid in pids:
        while time.time() < deadline:
            try:
                state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
            except (FileNotFoundError, ProcessLookupError):
                break
            if state in ("Z", "X"):
                break
            time.sleep(0.02)
        else:
            raise AssertionError(f"process {pid} still running {timeout} s after SIGKILL")


@pytest.mark.skipif(not torch.distributed.is_available(), reason="torch.distributed not available")
def test_killed_two_process_run_resumes_to_the_same_weights(tmp_path, ulmtl_cache_dir):
    """SIGKILL to the whole torchrun group mid-training; a second launch continues every process
    from its own saved hidden state and RNG and ends where an uninterrupted run ends."""
    import signal

    from test_resume import wait_for_resume_checkpoint
    corpus = write_corpus(tmp_path / "corpus.txt")
    script = tmp_path / "train.py"
    script.write_text(RESUMABLE)
    env = dict(os.environ, OMP_NUM_THREADS="1", PYTHONWARNINGS="ignore")
    straight, interrupted = tmp_path / "straight", tmp_path / "interrupted"
    process = launch(script, corpus, straight, 0.0, env)
    assert process.wait(timeout=300) == 0, straight.with_suffix(".err").read_text()[-3000:]

    process = launch(script, corpus, interrupted, 1e-6, env)  # resume checkpoint every batch
    wait_for_resume_checkpoint(interrupted, process, min_batches=12)
    assert process.poll() is None, interrupted.with_suffix(".err").read_text()[-3000:]
    # torchrun's workers run in sessions of their own: killing the launcher's group alone leaves
    # them training (and saving) while the test reads the checkpoint.
    workers = [int(interrupted.with_name(f"interrupted.pid.{rank}").read_text()) for rank in (0, 1)]
    for pid in workers:
        os.kill(pid, signal.SIGKILL)
    os.killpg(process.pid, signal.SIGKILL)
    process.wait()
    wait_until_gone(workers)
    assert not (interrupted / "weights.safetensors").exists(), "killed before the end, as intended"
    saved = load_checkpoint(interrupted / "resume")
    assert saved.config["progress"]["processes"] == 2
    from ulmtl.checkpoint import load_tensors
    tensors, _ = load_tensors(interrupted / "resume" / "optimizer.safetensors")
    assert "hidden.0.h" in tensors and "rank1.hidden.0.h" in tensors  # each process's own state
    assert not torch.equal(tensors["hidden.0.h"], tensors["rank1.hidden.0.h"])

    process = launch(script, corpus, interrupted, 1e-6, env)
    assert process.wait(timeout=300) == 0, interrupted.with_suffix(".err").read_text()[-3000:]
    a, b = load_checkpoint(straight), load_checkpoint(interrupted)
    assert b.config["metrics"]["tokens_seen"] == a.config["metrics"]["tokens_seen"]
    assert 0 < saved.config["progress"]["tokens"] < a.config["metrics"]["tokens_seen"]
    for key, tensor in a.state_dict.items():
        assert torch.allclose(tensor, b.state_dict[key], atol=1e-6, rtol=0), key


@pytest.mark.skipif(not torch.distributed.is_available(), reason="torch.distributed not available")
def test_recipe_runs_under_torchrun_and_writes_once(shared_data, tmp_path):
    """A whole recipe (LM fine-tuning, classifier, test metrics) under two gloo processes."""
    out = tmp_path / "trec"
    recipe = Path(__file__).resolve().parents[1] / "recipes" / "trec.py"
    env = dict(os.environ, OMP_NUM_THREADS="1", PYTHONWARNINGS="ignore", ULMTL_CACHE_DIR=str(tmp_path / "cache"))
    result = subprocess.run([sys.executable, "-m", "torch.distributed.run", "--nproc_per_node=2",
                             f"--master_port={free_port()}", str(recipe), "--smoke", "--output", str(out),
                             "--data-dir", str(shared_data)], env=env, timeout=600, capture_output=True, text=True)
    assert result.returncode == 0, result.stderr[-3000:]
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["n_train"] > 0 and 0.0 <= metrics["test"]["accuracy"] <= 1.0
    assert result.stdout.count("test accuracy") == 1  # reported (and written) by rank 0 only
    lines = (out / "train_log.jsonl").read_text().splitlines()
    assert len(lines) == len(set(lines))
    assert (out / "model").is_dir() and not list(tmp_path.glob("trec.*"))


@pytest.mark.slow
@pytest.mark.skipif(not torch.distributed.is_available(), reason="torch.distributed not available")
def test_transformer_recipe_runs_under_torchrun_and_writes_once(tmp_path):
    """Masked-LM fine-tuning and the classifier on a tiny BERT under two gloo processes."""
    from test_transformer import POS_NEG, make_encoder
    encoder = make_encoder(tmp_path / "bert")
    rows = [{"text": t, "label": "pos"} for t in POS_NEG[0]] + [{"text": t, "label": "neg"} for t in POS_NEG[1]]
    train = tmp_path / "train.jsonl"
    train.write_text("\n".join(json.dumps(r) for r in rows * 2))
    out = tmp_path / "run"
    recipe = Path(__file__).resolve().parents[1] / "recipes" / "custom.py"
    env = dict(os.environ, OMP_NUM_THREADS="1", PYTHONWARNINGS="ignore", ULMTL_CACHE_DIR=str(tmp_path / "cache"),
               PYTHONPATH=str(Path(__file__).resolve().parents[1]))
    result = subprocess.run([sys.executable, "-m", "torch.distributed.run", "--nproc_per_node=2",
                             f"--master_port={free_port()}", str(recipe), "--smoke", f"--train={train}",
                             f"--pretrained={encoder}", "--output", str(out), "--finetune.batch_size=2"],
                            env=env, timeout=600, capture_output=True, text=True)
    assert result.returncode == 0, result.stderr[-3000:]
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["config"]["backbone"] == "transformer"
    assert metrics["lm_finetune"]["forward"]["processes"] == 2
    assert result.stdout.count("test accuracy") == 1  # reported (and written) by rank 0 only
    assert (out / "model" / "forward" / "weights.safetensors").exists() and not list(tmp_path.glob("run.*"))


TRANSFORMER_SCRIPT = """
import json, sys
from dataclasses import replace
from pathlib import Path
from ulmtl import TextClassifier
from ulmtl.config import TRANSFORMER_CLASSIFIER, TRANSFORMER_FINETUNE, TransformerConfig
from ulmtl.distributed import is_main
from ulmtl.finetune import finetune_lm
encoder, data, out, batch = sys.argv[1], json.loads(Path(sys.argv[2]).read_text()), Path(sys.argv[3]), int(sys.argv[4])
# The encoder's dropout is off (its config), and so is the head's: the runs differ only in how
# each global batch is spread over processes.
settings = TransformerConfig(pooled_dropout=0.0, precision="fp32", mlm_block=16)
config = replace(TRANSFORMER_CLASSIFIER, batch_size=batch, lr=1e-3, head_dropout=0.0, stage_epochs=(1, 2))
clf = TextClassifier(config, encoders=encoder, model_config=settings, verbose=False).fit(
    data["texts"], data["labels"], valid=(data["valid_texts"], data["valid_labels"]))
finetune_lm(data["lm_texts"], encoder, out / "lm", replace(TRANSFORMER_FINETUNE, epochs=2, lr=2e-3, batch_size=batch),
            transformer_config=settings)
if is_main():
    clf.save(out / "clf")
    (out / "result.json").write_text(json.dumps({
        "valid_loss": [e["valid_loss"] for h in clf.history_["forward"] for e in h["epoch_values"]],
        "proba": clf.predict_proba(data["valid_texts"] + data["texts"]).tolist()}))
"""


def distinct_reviews(adjectives: tuple[str, str], count: int) -> list[str]:
    """``count`` different short reviews in the words of the tiny encoder's vocabulary."""
    first, second = adjectives
    tails = [first, second, f"{first} and {second}", f"{second} and {first}"]
    reviews = [f"{start} {noun} was {tail}" for tail in tails for noun in ("movie", "film", "plot", "cast")
               for start in ("the", "a", "what")]
    return reviews[:count]


@pytest.fixture(scope="module")
def transformer_runs(tmp_path_factory):
    """A tiny BERT (dropout off) trained as a classifier (strategy finetune) and as a masked LM, in
    one process with batch 8 and under torchrun in two processes with batch 4 each."""
    from test_transformer import TEXTS, make_encoder
    tmp_path = tmp_path_factory.mktemp("transformer-ddp")
    encoder = make_encoder(tmp_path / "bert", dropout=0.0)
    # 45 different texts (a batch of copies of one text leaves batch normalization nothing to
    # normalize, and float noise decides its steps): the last global batch of 5 splits 3 + 2, so
    # the processes' shares differ.
    pos, neg = (distinct_reviews(words, count) for words, count in ((("great", "fun"), 23), (("dull", "boring"), 22)))
    data = {"texts": pos + neg, "labels": ["pos"] * 23 + ["neg"] * 22,
            "valid_texts": TEXTS[:4], "valid_labels": ["pos", "neg", "pos", "neg"], "lm_texts": TEXTS * 20}
    (tmp_path / "data.json").write_text(json.dumps(data))
    script = tmp_path / "train.py"
    script.write_text(TRANSFORMER_SCRIPT)
    args = [str(script), str(encoder), str(tmp_path / "data.json")]
    env = dict(os.environ, OMP_NUM_THREADS="1", PYTHONWARNINGS="ignore", ULMTL_CACHE_DIR=str(tmp_path / "cache"),
               PYTHONPATH=str(Path(__file__).resolve().parents[1]))
    single, double = tmp_path / "single", tmp_path / "double"
    result = subprocess.run([sys.executable, *args, str(single), "8"], env=env, timeout=300,
                            capture_output=True, text=True)
    assert result.returncode == 0, result.stderr[-3000:]
    result = subprocess.run([sys.executable, "-m", "torch.distributed.run", "--nproc_per_node=2",
                             f"--master_port={free_port()}", *args, str(double), "4"],
                            env=env, timeout=300, capture_output=True, text=True)
    assert result.returncode == 0, result.stderr[-3000:]
    return encoder, single, double


def max_difference(a: dict, b: dict) -> float:
    assert a.keys() == b.keys()
    return max(float((a[k].float() - b[k].float()).abs().max()) for k in a)


@pytest.mark.slow
@pytest.mark.skipif(not torch.distributed.is_available(), reason="torch.distributed not available")
def test_two_gloo_processes_train_the_transformer_classifier_like_one_process(transformer_runs):
    """Gradual unfreezing (the head on cached features, then every group), batch norms in the head:
    the same validation losses, predictions and weights. The head's epoch on cached features (the
    same features to the last bit, batch norms on the global batch, each process's loss weighted by
    its rows) matches to float rounding. Once the encoder trains, to 5e-3 only, and weights to 1e-2:
    the bias of the encoder's top LayerNorm shifts every pooled feature, which the head's batch norm
    takes out again, so its gradient is float noise, which Adam turns into steps of the LR's size
    (1e-3); how far that moves the loss depends on the CPU's kernels."""
    from safetensors.torch import load_file
    _, single, double = transformer_runs
    one, two = (json.loads((folder / "result.json").read_text()) for folder in (single, double))
    assert len(one["valid_loss"]) == 3 and one["valid_loss"][-1] < one["valid_loss"][0]
    assert two["valid_loss"][0] == pytest.approx(one["valid_loss"][0], rel=2e-5)
    assert two["valid_loss"][1:] == pytest.approx(one["valid_loss"][1:], rel=5e-3)
    np.testing.assert_allclose(two["proba"], one["proba"], atol=2e-3)
    weights = [load_file(str(folder / "clf" / "forward" / "weights.safetensors")) for folder in (single, double)]
    assert max_difference(*weights) < 1e-2


@pytest.mark.slow
@pytest.mark.skipif(not torch.distributed.is_available(), reason="torch.distributed not available")
def test_two_gloo_processes_fine_tune_the_transformer_masked_lm_like_one_process(transformer_runs):
    """The masks of every global batch and the weight of each process's masked tokens are the
    single process's: the same validation loss and weights."""
    from safetensors.torch import load_file
    _, single, double = transformer_runs
    one, two = (json.loads((folder / "lm" / "metrics.json").read_text()) for folder in (single, double))
    assert two["processes"] == 2 and two["train_tokens"] == one["train_tokens"]
    assert one["valid_perplexity"] < one["valid_perplexity_before"]
    assert two["valid_perplexity_before"] == one["valid_perplexity_before"]
    assert two["valid_loss"] == pytest.approx(one["valid_loss"], rel=1e-3)
    weights = [load_file(str(folder / "lm" / "model.safetensors")) for folder in (single, double)]
    assert max_difference(*weights) < 1e-4
