"""Baselines on the same pretrained encoder as ulmtl's transformer backbone (the bundled
all-MiniLM-L6-v2 unless --encoder names another folder): what a user would run instead of ulmtl.

- ``plain_finetune``: ``AutoModelForSequenceClassification`` on the encoder, AdamW, a linear warm-up
  over the first 10% of the steps then a linear decay to 0 (``get_linear_schedule_with_warmup``),
  fp32, no gradient clipping: the loop of Hugging Face's ``run_glue_no_trainer.py``. Settings of the
  text-classification example's README command (lr 2e-5, batch 32, 3 epochs); the example itself
  has no warm-up by default, the 10% is ours. ``plain_finetune_lr1e-4`` is the run quoted in issue
  17 (lr 1e-4, batch 32, 5 epochs; 96.4% on TREC-6).
- ``setfit``: the ``setfit`` package (1.2) with its defaults on the same encoder (contrastive pairs
  with CosineSimilarityLoss, 1 epoch, then scikit-learn logistic regression), except that the pairs
  are 20 per text (``num_iterations=20``, setfit's default before 1.0): 1.2's own default draws every
  pair of texts, quadratically many (about 15 million with all 5,452 TREC-6 labels).
- ``frozen_embeddings``: mean-pooled token states of the frozen encoder (the pooling of
  all-MiniLM-L6-v2's ``1_Pooling`` config), L2-normalised, logistic regression (C=1, max_iter 1000).

    python benchmarks/encoder_baselines.py --datasets trec,mr --seeds 0,1,2 \
        --sizes 50,100,250,500,1000,2000,all [--variants plain_finetune,setfit,frozen_embeddings] [--quick]
    python benchmarks/encoder_baselines.py --variants plain_finetune_lr1e-4  # issue 17's settings
    python benchmarks/encoder_baselines.py --plain-lr 1e-4 --plain-epochs 5  # the same run, spelled out

Training subsets are ulmtl's (``--max_train`` and ``--seed`` of the recipes: the learning curves'
splits). Rows go to benchmarks/results.jsonl as benchmark "learning_curve", so that
``learning_curves.py --plot`` shows them beside ulmtl's variants; a run already there is skipped.
``--quick`` trains 1 epoch (plain fine-tune) and 5 pairs per text (SetFit): a check that it runs.
"""
from __future__ import annotations

import argparse
import math
import sys
import tempfile
import time
from dataclasses import asdict, dataclass, replace
from datetime import date
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from sklearn.linear_model import LogisticRegression

from common import RESULTS, append_result, finished_row, hardware
from ulmtl import CheckpointError, ConfigError, DataError
from ulmtl.backbones.transformer import bundled_encoder
from ulmtl.cli import parse_args
from ulmtl.config import RecipeConfig
from ulmtl.recipe import load_recipe_data


@dataclass(frozen=True)
class PlainFinetuneSettings:
    lr: float = 2e-5
    batch_size: int = 32
    epochs: int = 3
    warmup_ratio: float = 0.1  # linear warm-up over this fraction of the steps, then linear decay to 0
    weight_decay: float = 0.0  # the Trainer's default
    max_len: int = 256  # tokens per text (512 for polarity's long reviews)
    predict_batch_size: int = 64


@dataclass(frozen=True)
class SetFitSettings:
    num_iterations: int = 20  # pairs per text; 0: setfit 1.2's default, every pair (oversampling)


@dataclass(frozen=True)
class FrozenEmbeddingSettings:
    C: float = 1.0
    max_iter: int = 1000
    max_len: int = 256
    batch_size: int = 64


PLAIN_SETTINGS = {"plain_finetune": PlainFinetuneSettings(),
                  "plain_finetune_lr1e-4": PlainFinetuneSettings(lr=1e-4, epochs=5)}
LONG_DOCUMENTS_MAX_LEN = {"polarity": 512}
QUICK_PLAIN_EPOCHS = 1
QUICK_SETFIT_ITERATIONS = 5


def device() -> torch.device:
    return torch.device("cuda" if torch.cuda.is_available() else "cpu")


def class_indices(labels) -> tuple[np.ndarray, np.ndarray]:
    """(the sorted label set, each label's index in it)."""
    return np.unique(np.asarray(labels), return_inverse=True)


# --------------------------------------------------------------------------- plain fine-tune

def plain_schedule(optimizer: torch.optim.Optimizer, settings: PlainFinetuneSettings, n_train: int):
    """Linear warm-up over ``warmup_ratio`` of the steps (rounded up), then linear decay to 0."""
    from transformers import get_linear_schedule_with_warmup
    steps = settings.epochs * math.ceil(n_train / settings.batch_size)
    return get_linear_schedule_with_warmup(optimizer, math.ceil(settings.warmup_ratio * steps), steps)


def plain_train(train_texts, targets: np.ndarray, n_classes: int, encoder: str | Path, seed: int,
                settings: PlainFinetuneSettings) -> tuple:
    """All layers of ``AutoModelForSequenceClassification`` trained with AdamW on batches in random
    order, padded to their longest text: (model, tokenizer, non-padding tokens trained on, seconds
    of the training loop alone)."""
    from transformers import AutoModelForSequenceClassification, AutoTokenizer
    train_texts = list(train_texts)
    torch.manual_seed(seed)
    tokenizer = AutoTokenizer.from_pretrained(encoder)
    model = AutoModelForSequenceClassification.from_pretrained(encoder, num_labels=n_classes)
    model = model.float().to(device())
    optimizer = torch.optim.AdamW(model.parameters(), lr=settings.lr, weight_decay=settings.weight_decay)
    scheduler = plain_schedule(optimizer, settings, len(train_texts))
    model.train()
    tokens, started = 0, time.perf_counter()
    for _ in range(settings.epochs):
        for batch in torch.randperm(len(train_texts)).split(settings.batch_size):
            inputs = tokenizer([train_texts[i] for i in batch.tolist()], padding=True, truncation=True,
                               max_length=settings.max_len, return_tensors="pt").to(device())
            loss = model(**inputs, labels=torch.as_tensor(targets[batch.numpy()], device=device())).loss
            loss.backward()
            optimizer.step()
            scheduler.step()
            optimizer.zero_grad()
            tokens += int(inputs["attention_mask"].sum())
    return model.eval(), tokenizer, tokens, time.perf_counter() - started


def plain_predict(model, tokenizer, texts, batch_size: int, max_len: int) -> np.ndarray:
    """Class indices of ``texts``, in batches of ``batch_size`` in input order, under ``no_grad``."""
    texts, predicted = list(texts), []
    with torch.no_grad():
        for start in range(0, len(texts), batch_size):
            inputs = tokenizer(texts[start:start + batch_size], padding=True, truncation=True,
                               max_length=max_len, return_tensors="pt").to(device())
            predicted.append(model(**inputs).logits.argmax(-1).cpu().numpy())
    return np.concatenate(predicted)


def plain_finetune(train_texts, train_labels, test_texts, encoder: str | Path, seed: int,
                   settings: PlainFinetuneSettings = PlainFinetuneSettings()) -> tuple[np.ndarray, float]:
    """:func:`plain_train` then :func:`plain_predict`: (test predictions, seconds)."""
    started = time.perf_counter()
    classes, targets = class_indices(train_labels)
    model, tokenizer, _, _ = plain_train(train_texts, targets, len(classes), encoder, seed, settings)
    predicted = plain_predict(model, tokenizer, test_texts, settings.predict_batch_size, settings.max_len)
    return classes[predicted], time.perf_counter() - started


# --------------------------------------------------------------------------- SetFit

def setfit(train_texts, train_labels, test_texts, encoder: str | Path, seed: int,
           settings: SetFitSettings = SetFitSettings()) -> tuple[np.ndarray, float]:
    """The ``setfit`` package's Trainer with its default training arguments (but for the pairs per
    text); nothing is saved or reported. (test predictions, seconds)."""
    from datasets import Dataset
    from setfit import SetFitModel, Trainer, TrainingArguments
    started = time.perf_counter()
    classes, targets = class_indices(train_labels)
    model = SetFitModel.from_pretrained(str(encoder), device=str(device()))
    with tempfile.TemporaryDirectory() as output:
        args = TrainingArguments(output_dir=output, num_iterations=settings.num_iterations or None, seed=seed,
                                 report_to="none", save_strategy="no", show_progress_bar=False)
        train = Dataset.from_dict({"text": list(train_texts), "label": targets.tolist()})
        Trainer(model=model, args=args, train_dataset=train).train()
    predicted = np.asarray(model.predict(list(test_texts), as_numpy=True))
    return classes[predicted], time.perf_counter() - started


# --------------------------------------------------------------------------- frozen embeddings

def mean_pooled_embeddings(texts, encoder: str | Path, settings: FrozenEmbeddingSettings) -> np.ndarray:
    """The frozen encoder's token states averaged over each text's real tokens (padding masked
    out), L2-normalised: sentence-transformers' mean pooling."""
    from transformers import AutoModel, AutoTokenizer
    tokenizer = AutoTokenizer.from_pretrained(encoder)
    model = AutoModel.from_pretrained(encoder).float().to(device()).eval()
    texts, embeddings = list(texts), []
    with torch.no_grad():
        for start in range(0, len(texts), settings.batch_size):
            inputs = tokenizer(texts[start:start + settings.batch_size], padding=True, truncation=True,
                               max_length=settings.max_len, return_tensors="pt").to(device())
            states = model(**inputs).last_hidden_state
            mask = inputs["attention_mask"].unsqueeze(-1).to(states.dtype)
            mean = (states * mask).sum(1) / mask.sum(1).clamp(min=1e-9)
            embeddings.append(F.normalize(mean, p=2, dim=1).cpu().numpy())
    return np.concatenate(embeddings)


def frozen_embeddings(train_texts, train_labels, test_texts, encoder: str | Path, seed: int,
                      settings: FrozenEmbeddingSettings = FrozenEmbeddingSettings()
                      ) -> tuple[np.ndarray, float]:
    """Logistic regression on the frozen encoder's sentence embeddings; (test predictions, seconds)."""
    started = time.perf_counter()
    embeddings = mean_pooled_embeddings(list(train_texts) + list(test_texts), encoder, settings)
    model = LogisticRegression(C=settings.C, max_iter=settings.max_iter, random_state=seed)
    model.fit(embeddings[:len(train_texts)], np.asarray(train_labels))
    return model.predict(embeddings[len(train_texts):]), time.perf_counter() - started


BASELINES = ("plain_finetune", "setfit", "frozen_embeddings")
# The rows learning_curves.py shows: the two named plain fine-tunes, SetFit, frozen embeddings.
ENCODER_VARIANTS = ["plain_finetune", "plain_finetune_lr1e-4", "setfit", "frozen_embeddings"]


def plain_variant(settings: PlainFinetuneSettings) -> str:
    """The name of the named settings ``settings`` are (whatever their max_len), else a name
    spelling them out."""
    for name, named in PLAIN_SETTINGS.items():
        if replace(settings, max_len=named.max_len) == named:
            return name
    return (f"plain_finetune_lr{settings.lr:g}_b{settings.batch_size}_e{settings.epochs}"
            f"_w{settings.warmup_ratio:g}")


def variant_runs(args, dataset: str) -> dict[str, tuple]:
    """variant name -> (function, settings) of each of ``args.variants``; ``--quick`` changes the
    settings, not the names (its rows are marked quick)."""
    max_len = LONG_DOCUMENTS_MAX_LEN.get(dataset, PlainFinetuneSettings.max_len)
    plain = PlainFinetuneSettings(lr=args.plain_lr, batch_size=args.plain_batch, epochs=args.plain_epochs,
                                  warmup_ratio=args.plain_warmup, max_len=max_len)
    pairs = SetFitSettings(num_iterations=args.setfit_iterations)
    plain_name = plain_variant(plain)
    setfit_name = "setfit" if pairs == SetFitSettings() else f"setfit_it{pairs.num_iterations}"
    if args.quick:
        plain, pairs = replace(plain, epochs=QUICK_PLAIN_EPOCHS), SetFitSettings(QUICK_SETFIT_ITERATIONS)
    runs = {"plain_finetune": (plain_name, plain_finetune, plain),
            "setfit": (setfit_name, setfit, pairs),
            "frozen_embeddings": ("frozen_embeddings", frozen_embeddings,
                                  FrozenEmbeddingSettings(max_len=max_len))}
    for name, named in PLAIN_SETTINGS.items():
        if name != "plain_finetune":
            named = replace(named, max_len=max_len)
            runs[name] = (name, plain_finetune, replace(named, epochs=QUICK_PLAIN_EPOCHS) if args.quick else named)
    return {runs[base][0]: runs[base][1:] for base in args.variants.split(",")}


def main(argv=None) -> list[dict]:
    """Run the grid; a missing dataset or encoder, or a bad setting, ends with its message."""
    argv = list(sys.argv[1:] if argv is None else argv)
    try:
        return run(argv)
    except (CheckpointError, ConfigError, DataError) as err:
        sys.exit(f"error: {err}")


def run(argv: list[str]) -> list[dict]:
    """Each (dataset, size, seed, variant) not in the results file yet: trained, scored, appended."""
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--datasets", default="trec,mr")
    parser.add_argument("--sizes", default="50,100,250,500,1000,2000,all")
    parser.add_argument("--seeds", default="0,1,2")
    parser.add_argument("--variants", default=",".join(BASELINES))
    parser.add_argument("--encoder", default=None, help="an encoder folder (default: the bundled one)")
    parser.add_argument("--plain-lr", type=float, default=PlainFinetuneSettings.lr)
    parser.add_argument("--plain-epochs", type=int, default=PlainFinetuneSettings.epochs)
    parser.add_argument("--plain-batch", type=int, default=PlainFinetuneSettings.batch_size)
    parser.add_argument("--plain-warmup", type=float, default=PlainFinetuneSettings.warmup_ratio,
                        help="fraction of the steps of linear warm-up")
    parser.add_argument("--setfit-iterations", type=int, default=SetFitSettings.num_iterations,
                        help="pairs per text (0: setfit's own default, every pair)")
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--data-dir", default=None)
    parser.add_argument("--results", default=str(RESULTS))
    args = parser.parse_args(argv)
    variants = args.variants.split(",")
    known = [*BASELINES, *(name for name in PLAIN_SETTINGS if name not in BASELINES)]
    unknown = set(variants) - set(known)
    if unknown:
        parser.error(f"--variants: unknown {', '.join(sorted(unknown))} (choose from {', '.join(known)})")
    plain_flags = {"--plain-lr": args.plain_lr, "--plain-epochs": args.plain_epochs,
                   "--plain-batch": args.plain_batch, "--plain-warmup": args.plain_warmup}
    given = [flag for flag, value in plain_flags.items() if value != parser.get_default(flag[2:].replace("-", "_"))]
    named = [name for name in variants if name in PLAIN_SETTINGS and name != "plain_finetune"]
    if given and named:
        parser.error(f"{', '.join(given)} set the plain_finetune variant; {', '.join(named)} has settings "
                     "of its own (run it without them, or use --variants plain_finetune)")
    encoder = args.encoder or str(bundled_encoder())
    encoder_name = args.encoder or "bundled"
    rows = []
    for dataset in args.datasets.split(","):
        runs = variant_runs(args, dataset)
        for size in args.sizes.split(","):
            for seed in [int(s) for s in args.seeds.split(",")]:
                n = 0 if size == "all" else int(size)
                overrides = [f"--max_train={n}", f"--seed={seed}"] + \
                    ([f"--data_dir={args.data_dir}"] if args.data_dir else [])
                data = load_recipe_data(parse_args(RecipeConfig(dataset=dataset), overrides))
                train, test = data["train"], data["test"]
                for variant, (fit_predict, settings) in runs.items():
                    key = {"dataset": dataset, "size": size, "variant": variant, "seed": seed,
                           "quick": args.quick, "pretrained": encoder_name, "settings": []}
                    if finished_row(args.results, "learning_curve", key):
                        print(f"== {dataset} size {size} {variant} seed {seed}: done earlier, "
                              f"in {args.results}")
                        continue
                    predicted, seconds = fit_predict(train["text"], train["label"], test["text"], encoder,
                                                     seed, settings)
                    accuracy = round(float(np.mean(predicted == np.asarray(test["label"]))), 4)
                    row = {"benchmark": "learning_curve", **key, "n_train": len(train), "accuracy": accuracy,
                           "error": round(1 - accuracy, 4), "seconds": round(seconds, 1),
                           "baseline_settings": asdict(settings), "device": str(device()),
                           "date": date.today().isoformat(), "hardware": hardware(),
                           "command": "python benchmarks/encoder_baselines.py " + " ".join(argv)}
                    append_result(args.results, row)
                    rows.append(row)
                    print(f"== {dataset} n={len(train)} {variant} seed {seed}: accuracy {accuracy} "
                          f"({row['seconds']} s)", flush=True)
    return rows


if __name__ == "__main__":
    main()
