"""Speed of ulmtl against stock fastai and against this machine's limits, in one run.

    python benchmarks/speed.py [--quick] [--data-dir DIR]

Measures, on the same data and model (AWD-LSTM 400/1152/3, bptt 70, batch 64):
  * LM training tokens/s: ulmtl's pretrain vs fastai's language_model_learner fit (fp32), and the
    machine's limit: the model's FLOPs per token over the matmul GFLOP/s measured here (fp32, bf16);
  * classifier training documents/s; predict texts/s of TextClassifier.predict_proba vs fastai's
    learn.predict (one text at a time) and learn.get_preds on a test_dl;
  * tokenization tokens/s with 1 and 2 processes vs spaCy's own tokenizer alone;
  * peak resident memory after each phase (ru_maxrss: the peak so far of this process).
Prints a table; the last line is one JSON object with the ratios. Appends it to results.jsonl.
"""
from __future__ import annotations

import json
import os
import resource
import shutil
import tempfile
import time
from datetime import date
from pathlib import Path

import pandas as pd
import torch
from common import RESULTS, append_result, hardware, parser as common_parser



def peak_rss_mb() -> float:
    return round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1)


def matmul_gflops(dtype: torch.dtype, size: int = 2048, seconds: float = 2.0) -> float:
    a, b = torch.randn(size, size, dtype=dtype), torch.randn(size, size, dtype=dtype)
    a @ b
    count, started = 0, time.perf_counter()
    while time.perf_counter() - started < seconds:
        a @ b
        count += 1
    return 2 * size ** 3 * count / (time.perf_counter() - started) / 1e9


def encoder_flops_per_token(emb: int, hidden: int, layers: int) -> float:
    """Forward multiply-adds of the LSTM layers, x2: what prediction costs per token."""
    macs = 0
    for layer in range(layers):
        inputs = emb if layer == 0 else hidden
        outputs = emb if layer == layers - 1 else hidden
        macs += 4 * outputs * (inputs + outputs)
    return 2 * macs


def lm_flops_per_token(emb: int, hidden: int, layers: int, vocab: int) -> float:
    """Forward + backward (about 3x forward) of the LSTM layers and the decoder."""
    return 3 * (encoder_flops_per_token(emb, hidden, layers) + 2 * emb * vocab)


class StopAfterBatches:
    """A fastai callback factory: stop fitting after n training batches, timing the steady part."""

    def __new__(cls, n: int, skip: int = 2):
        from fastai.callback.core import Callback, CancelFitException

        class _Stop(Callback):
            order = 99

            def before_fit(self):
                self.count, self.tokens, self.started = 0, 0, None

            def after_batch(self):
                if not self.training:
                    return
                self.count += 1
                if self.count == skip:
                    self.started = time.perf_counter()
                elif self.count > skip:
                    self.tokens += self.xb[0].numel()
                if self.count >= n + skip:
                    self.seconds = time.perf_counter() - self.started
                    raise CancelFitException()
        return _Stop()


def fastai_lm_tokens_per_s(texts: list[str], batches: int) -> tuple[float, int]:
    from fastai.text.all import AWD_LSTM, TextDataLoaders, language_model_learner
    torch.set_flush_denormal(False)  # stock: as a user runs it
    df = pd.DataFrame({"text": texts})
    dls = TextDataLoaders.from_df(df, text_col="text", is_lm=True, bs=64, seq_len=70, valid_pct=0.02, seed=0)
    learn = language_model_learner(dls, AWD_LSTM, pretrained=False)
    stop = StopAfterBatches(batches)
    learn.fit(1, 1e-3, cbs=[stop])
    return stop.tokens / stop.seconds, len(dls.vocab)


def ulmtl_lm_tokens_per_s(texts: list[str], batches: int, workdir: Path, precision: str) -> tuple[float, int]:
    from datasets import Dataset

    from ulmtl.config import ModelConfig, PretrainConfig
    from ulmtl.pretrain import prepare_corpus
    from ulmtl.loaders import LanguageModelLoader
    from ulmtl.backbones.awd_lstm import build_language_model, lm_layer_groups, training_callbacks
    from ulmtl.precision import resolve_precision
    from ulmtl.training import make_learner, prepare_torch
    from ulmtl.config import TokenizerConfig
    device = prepare_torch()
    config = PretrainConfig(valid_fraction=0.02)
    train, valid, vocab = prepare_corpus(Dataset.from_dict({"text": texts}), config,
                                         TokenizerConfig(max_vocab=60000, min_freq=3))
    model = build_language_model(len(vocab), ModelConfig())
    precision = resolve_precision(precision, device)
    learn = make_learner(LanguageModelLoader(train, 64, 70, shuffle=True), LanguageModelLoader(valid, 16, 70),
                         model, lm_layer_groups, config, device=device, progress=False, precision=precision,
                         callbacks=training_callbacks(model, config.ar_alpha, config.tar_beta, precision))
    stop = StopAfterBatches(batches)
    learn.fit(1, cbs=[stop])
    return stop.tokens / stop.seconds, len(vocab)


def tokenization(texts: list[str], workdir: Path) -> dict:
    import spacy
    from datasets import Dataset

    from ulmtl.datasets import tokenize
    nlp = spacy.blank("en")
    started = time.perf_counter()
    n_tokens = sum(len(doc) for doc in nlp.tokenizer.pipe(texts, batch_size=1000))
    spacy_seconds = time.perf_counter() - started
    spacy_rate = n_tokens / spacy_seconds
    rates, seconds_by_processes = {}, {}
    for processes in (1, 2):
        os.environ["ULMTL_CACHE_DIR"] = str(workdir / f"tok{processes}")
        ds = Dataset.from_dict({"text": texts})
        started = time.perf_counter()
        out = tokenize(ds, num_proc=processes)
        seconds = time.perf_counter() - started
        rates[processes] = sum(len(t) for t in out["tokens"]) / seconds
        seconds_by_processes[processes] = seconds
    # ulmtl's tokens include fastai's markers (xxbos, xxmaj, ...), about 12% more than spaCy's on
    # the same text; texts/s compares the same input.
    return {"spacy_tokens_per_s": spacy_rate, "ulmtl_1proc_tokens_per_s": rates[1],
            "ulmtl_2proc_tokens_per_s": rates[2], "spacy_texts_per_s": len(texts) / spacy_seconds,
            "ulmtl_1proc_texts_per_s": len(texts) / seconds_by_processes[1]}


def best_seconds(work, repeats: int = 2) -> float:
    """The fastest of ``repeats`` timed calls (this VM's speed drifts by 10-20% between runs)."""
    times = []
    for _ in range(repeats):
        started = time.perf_counter()
        work()
        times.append(time.perf_counter() - started)
    return min(times)


def classifier(train_texts, train_labels, predict_texts, n_single: int, precision: str) -> dict:
    from fastai.text.all import AWD_LSTM, TextDataLoaders, text_classifier_learner

    from ulmtl.classify import TextClassifier
    from ulmtl.config import ClassifierConfig, ModelConfig
    results = {}
    config = ClassifierConfig(strategy="scratch", stage_epochs=(1,), unfreeze_plan=(0,), stage_lr_mult=(1.0,))
    clf = TextClassifier(config, model_config=ModelConfig(precision=precision), verbose=False)
    started = time.perf_counter()
    clf.fit(train_texts, train_labels)
    results["ulmtl_train_docs_per_s"] = len(train_texts) / (time.perf_counter() - started)
    results["ulmtl_predict_texts_per_s"] = len(predict_texts) / best_seconds(lambda: clf.predict_proba(predict_texts))
    from ulmtl.text import tokenize_texts
    results["predict_tokens_per_text"] = sum(map(len, tokenize_texts(predict_texts))) / len(predict_texts)

    df = pd.DataFrame({"text": train_texts, "label": [str(y) for y in train_labels]})
    dls = TextDataLoaders.from_df(df, text_col="text", label_col="label", bs=64, seq_len=70, valid_pct=0.1, seed=0)
    learn = text_classifier_learner(dls, AWD_LSTM, pretrained=False)
    started = time.perf_counter()
    learn.fit(1, 1e-2)
    results["fastai_train_docs_per_s"] = len(df) / (time.perf_counter() - started)
    started = time.perf_counter()
    for text in predict_texts[:n_single]:
        learn.predict(text)
    results["fastai_predict_texts_per_s"] = n_single / (time.perf_counter() - started)
    results["fastai_get_preds_texts_per_s"] = len(predict_texts) / best_seconds(
        lambda: learn.get_preds(dl=learn.dls.test_dl(predict_texts)))
    return results


def main(argv=None) -> dict:
    parser = common_parser(__doc__)
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--data-dir", default=None)
    parser.add_argument("--precision", default="auto", choices=["auto", "fp32", "bf16"],
                        help="ulmtl's LM training and classifier (model.precision); fastai is always fp32")
    args = parser.parse_args(argv)
    from fastprogress import fastprogress
    fastprogress.NO_BAR = True
    from ulmtl.datasets import load_corpus, load_dataset, resolve_data_dir
    root = resolve_data_dir(args.data_dir)
    n_paragraphs, lm_batches = (3000, 6) if args.quick else (20000, 30)
    n_predict, n_single = (2000, 50) if args.quick else (10000, 200)
    workdir = Path(tempfile.mkdtemp(prefix="ulmtl-speed-"))
    corpus = list(load_corpus(root / "general_corpus")["text"][:n_paragraphs])
    trec = load_dataset("trec", root)
    train_texts, train_labels = list(trec["train"]["text"]), list(trec["train"]["label"])
    predict_texts = (train_texts * 3)[:n_predict]
    memory, out = {}, {}

    out["fp32_gflops"] = matmul_gflops(torch.float32)
    out["bf16_gflops"] = matmul_gflops(torch.bfloat16)
    memory["matmul"] = peak_rss_mb()
    out["fastai_lm_tokens_per_s"], fastai_vocab = fastai_lm_tokens_per_s(corpus, lm_batches)
    memory["fastai_lm"] = peak_rss_mb()
    out["ulmtl_lm_tokens_per_s"], vocab = ulmtl_lm_tokens_per_s(corpus, lm_batches, workdir, args.precision)
    memory["ulmtl_lm"] = peak_rss_mb()
    flops = lm_flops_per_token(400, 1152, 3, vocab)
    out["lm_limit_fp32_tokens_per_s"] = out["fp32_gflops"] * 1e9 / flops
    out["lm_limit_bf16_tokens_per_s"] = out["bf16_gflops"] * 1e9 / flops
    n_train = 2000 if args.quick else len(train_texts)
    predict_flops_per_token = encoder_flops_per_token(400, 1152, 3)
    out.update(classifier(train_texts[:n_train], train_labels[:n_train], predict_texts, n_single, args.precision))
    memory["classifier"] = peak_rss_mb()
    out["predict_limit_fp32_texts_per_s"] = out["fp32_gflops"] * 1e9 / (
        predict_flops_per_token * out["predict_tokens_per_text"])
    out.update(tokenization(corpus, workdir))
    memory["tokenization"] = peak_rss_mb()
    shutil.rmtree(workdir, ignore_errors=True)

    summary = {
        "lm_train_speedup_vs_fastai": out["ulmtl_lm_tokens_per_s"] / out["fastai_lm_tokens_per_s"],
        "predict_speedup_vs_fastai_predict": out["ulmtl_predict_texts_per_s"] / out["fastai_predict_texts_per_s"],
        "predict_speedup_vs_fastai_get_preds": out["ulmtl_predict_texts_per_s"] / out["fastai_get_preds_texts_per_s"],
        "tokenize_ratio_vs_spacy": out["ulmtl_1proc_tokens_per_s"] / out["spacy_tokens_per_s"],
        "tokenize_texts_ratio_vs_spacy": out["ulmtl_1proc_texts_per_s"] / out["spacy_texts_per_s"],
        "predict_fraction_of_fp32_limit": out["ulmtl_predict_texts_per_s"] / out["predict_limit_fp32_texts_per_s"],
        "tokenize_2proc_over_1proc": out["ulmtl_2proc_tokens_per_s"] / out["ulmtl_1proc_tokens_per_s"],
    }
    print(f"{'measure':40s} value")
    for key, value in out.items():
        print(f"{key:40s} {value:12.1f}")
    for key, value in memory.items():
        print(f"{'peak_rss_mb_after_' + key:40s} {value:12.1f}")
    row = {"benchmark": "speed", "quick": args.quick, **{k: round(v, 3) for k, v in summary.items()},
           "measures": {k: round(v, 1) for k, v in out.items()}, "peak_rss_mb": memory,
           "lm_vocab": {"ulmtl": vocab, "fastai": fastai_vocab}, "date": date.today().isoformat(),
           "hardware": hardware(),
           "precision": args.precision,
           "command": "python benchmarks/speed.py" + (" --quick" if args.quick else "") + f" --precision {args.precision}"}
    append_result(RESULTS, row)
    print(json.dumps({k: round(v, 3) for k, v in summary.items()}))
    return row


if __name__ == "__main__":
    main()
