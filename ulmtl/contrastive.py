"""SetFit's contrastive stage (Tunstall et al. 2022) for the transformer classifier.

Before the classifier's training plan, the encoder learns from pairs of labelled texts: every text
is paired with one text of its label (target cosine similarity 1) and one of another label (0), in
``TransformerConfig.contrastive_iterations`` rounds; the loss is sentence-transformers'
``CosineSimilarityLoss``, the squared error between the target and the cosine of the two texts'
mean-pooled token states (the pooling of all-MiniLM-L6-v2). A few labels give many pairs: 100
texts give 4,000 with the default 20 rounds. The training loop is SetFit's defaults: one epoch of
shuffled batches, AdamW (weight decay 0.01 off biases and norms), a linear warm-up over the first
10% of the steps then a linear decay to 0, gradients clipped at norm 1.

The pairs follow SetFit before 1.0 (each text once per round, as the paper describes); SetFit 1.2
with ``num_iterations=20`` makes as many pairs, drawn from a shuffled list of all pairs (self-pairs
included), so a text's share of the pairs varies there.
"""
from __future__ import annotations

import math
import time
from dataclasses import dataclass
from typing import Callable

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from ulmtl.config import TransformerConfig
from ulmtl.precision import autocast, resolve_precision
from ulmtl.training import NonFiniteLoss

WARMUP_FRACTION = 0.1  # SetFit's warmup_proportion
WEIGHT_DECAY = 0.01  # SetFit's l2_weight, which its trainer gives the encoder's AdamW
MAX_GRAD_NORM = 1.0  # the Hugging Face Trainer's default, under SetFit's trainer
LOG_EVERY = 50  # steps between progress lines


@dataclass(frozen=True)
class Pairs:
    """Pairs of texts (indices into the training texts) and their target cosine similarity."""

    first: np.ndarray
    second: np.ndarray
    target: np.ndarray  # 1.0: the same label; 0.0: different labels

    def __len__(self) -> int:
        return len(self.first)


def wants_contrastive(settings: TransformerConfig, n_texts: int) -> bool:
    """Whether the contrastive stage runs for a training set of ``n_texts`` texts."""
    if settings.contrastive == "auto":
        return n_texts <= settings.contrastive_auto_max
    return settings.contrastive == "on"


def contrastive_pairs(label_ids: np.ndarray, iterations: int, max_pairs: int, seed: int) -> Pairs:
    """``iterations`` rounds; in each, every text (in a random order) gets a positive pair (a random
    other text of its label; itself when its label has no other) then a negative pair (a random
    text of another label). Cut to the first ``max_pairs`` (rounded down to even), then shuffled:
    the order they train in. Deterministic for a seed."""
    labels = np.asarray(label_ids)
    if labels.ndim != 1 or len(labels) < 2:
        raise ValueError(f"contrastive pairs need one label per text and two texts or more; got labels of "
                         f"shape {labels.shape}")
    if len(np.unique(labels)) < 2:
        raise ValueError("contrastive pairs need two labels or more")
    rng = np.random.default_rng(seed)
    n = len(labels)
    # Texts sorted by label: each label's texts are one run [start, start + size) of ``order``.
    order = np.argsort(labels, kind="stable")
    position = np.empty(n, dtype=np.int64)
    position[order] = np.arange(n)
    _, first_of, inverse, sizes = np.unique(labels[order], return_index=True, return_inverse=True,
                                            return_counts=True)
    start = first_of[inverse][position]  # per text: where its label's run starts, and its length
    size = sizes[inverse][position]
    rounds = []
    for _ in range(iterations):
        texts = rng.permutation(n)
        same = start[texts] + rng.integers(0, np.maximum(size[texts] - 1, 1))
        same += same >= position[texts]  # skip the text itself
        positive = np.where(size[texts] > 1, order[np.minimum(same, n - 1)], texts)
        other = rng.integers(0, n - size[texts])
        negative = order[other + size[texts] * (other >= start[texts])]
        rounds.append(np.stack([texts, positive, texts, negative], axis=1).reshape(-1, 2))
    pairs = np.concatenate(rounds)[:max_pairs - max_pairs % 2]
    target = np.tile([1.0, 0.0], len(pairs) // 2).astype(np.float32)
    shuffled = rng.permutation(len(pairs))
    return Pairs(pairs[shuffled, 0], pairs[shuffled, 1], target[shuffled])


def first_windows(docs: list[np.ndarray], special_ids: tuple[int, int, int], window: int
                  ) -> tuple[torch.Tensor, torch.Tensor]:
    """(ids, attention mask) of each document's first ``window`` tokens, framed by the first and
    last special tokens and padded on the right: what sentence-transformers reads of a text."""
    first, last, pad = special_ids
    rows = [np.concatenate([[first], doc[:window - 2], [last]]) for doc in docs]
    ids = np.full((len(rows), max(len(r) for r in rows)), pad, dtype=np.int64)
    mask = np.zeros_like(ids)
    for i, row in enumerate(rows):
        ids[i, :len(row)], mask[i, :len(row)] = row, 1
    return torch.from_numpy(ids), torch.from_numpy(mask)


def sentence_embeddings(encoder: nn.Module, ids: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Token states averaged over the real (non-padding) tokens, special tokens included, in fp32."""
    states = encoder(input_ids=ids, attention_mask=mask).last_hidden_state.float()
    weights = mask.unsqueeze(-1).float()
    return (states * weights).sum(1) / weights.sum(1).clamp(min=1e-9)


def pair_loss(encoder: nn.Module, docs: list[np.ndarray], pairs: Pairs, rows: np.ndarray,
              special_ids: tuple[int, int, int], window: int, device: torch.device) -> torch.Tensor:
    """CosineSimilarityLoss of pairs ``rows``: the mean squared error between each pair's target and
    the cosine similarity of its two texts' embeddings."""
    texts = np.concatenate([pairs.first[rows], pairs.second[rows]])
    ids, mask = first_windows([docs[i] for i in texts], special_ids, window)
    embeddings = sentence_embeddings(encoder, ids.to(device), mask.to(device))
    cosine = F.cosine_similarity(embeddings[:len(rows)], embeddings[len(rows):])
    return F.mse_loss(cosine, torch.as_tensor(pairs.target[rows], device=device))


def contrastive_finetune(encoder: nn.Module, special_ids: tuple[int, int, int], docs: list[np.ndarray],
                         label_ids: np.ndarray, settings: TransformerConfig, seed: int, device: torch.device,
                         log: Callable[[dict], None] | None = None) -> dict:
    """Train ``encoder`` (in place, on ``device``) on the contrastive pairs of ``docs`` (token ids
    without special tokens) and their labels; returns the stage's record for the classifier's
    history. ``log`` gets a progress record every LOG_EVERY steps. Under torchrun every process
    runs the same stage (same pairs, same seed); the classifier's training then starts from the
    main process's weights."""
    from transformers import get_linear_schedule_with_warmup
    started = time.perf_counter()
    pairs = contrastive_pairs(label_ids, settings.contrastive_iterations, settings.contrastive_max_pairs,
                              seed)
    batches = [np.arange(i, min(i + settings.contrastive_batch_size, len(pairs)))
               for i in range(0, len(pairs), settings.contrastive_batch_size)]
    encoder.to(device)
    decay = [p for p in encoder.parameters() if p.ndim >= 2]
    no_decay = [p for p in encoder.parameters() if p.ndim < 2]
    optimizer = torch.optim.AdamW([{"params": decay, "weight_decay": WEIGHT_DECAY},
                                   {"params": no_decay, "weight_decay": 0.0}], lr=settings.contrastive_lr)
    warmup = math.ceil(WARMUP_FRACTION * len(batches))
    scheduler = get_linear_schedule_with_warmup(optimizer, warmup, len(batches))
    precision = resolve_precision(settings.precision, device, bf16_pays_on_cpu=True)
    was_training = encoder.training
    encoder.train()
    losses = []
    for step, rows in enumerate(batches, 1):
        with autocast(precision, device):
            loss = pair_loss(encoder, docs, pairs, rows, special_ids, settings.window, device)
        if not torch.isfinite(loss):
            raise NonFiniteLoss(f"contrastive stage: the loss is {loss.item()} at step {step} of "
                                f"{len(batches)}")
        loss.backward()
        nn.utils.clip_grad_norm_(encoder.parameters(), MAX_GRAD_NORM)
        optimizer.step()
        scheduler.step()
        optimizer.zero_grad(set_to_none=True)
        losses.append(loss.item())
        if log is not None and (step % LOG_EVERY == 0 or step == len(batches)):
            log({"step": step, "steps": len(batches), "loss": round(float(np.mean(losses[-LOG_EVERY:])), 4),
                 "lr": float(f"{scheduler.get_last_lr()[0]:.3g}"),
                 "elapsed_s": round(time.perf_counter() - started, 1)})
    encoder.train(was_training)
    tenth = max(1, len(losses) // 10)  # the loss record: mean of the first and of the last tenth of the steps
    return {"stage": "contrastive", "pairs": len(pairs), "positive_pairs": int(pairs.target.sum()),
            "iterations": settings.contrastive_iterations, "steps": len(batches),
            "batch_size": settings.contrastive_batch_size, "lr": settings.contrastive_lr,
            "first_loss": float(np.mean(losses[:tenth])), "final_loss": float(np.mean(losses[-tenth:])),
            "seconds": round(time.perf_counter() - started, 1)}
