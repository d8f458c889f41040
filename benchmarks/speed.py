"""Speed of ulmtl against stock fastai and against this machine's limits, in one run.

    python benchmarks/speed.py [--quick] [--backbone both|transformer|awd_lstm] [--data-dir DIR]

The transformer rows (--backbone transformer or both), the bundled all-MiniLM-L6-v2 on the same texts:
  * training tokens/s (1 epoch, all layers trainable, TREC-6 questions) of TextClassifier (fp32 and
    bf16 autocast) vs the plain transformers loop (encoder_baselines.plain_train: batches of 32 in
    random order padded to the longest, AdamW), with each one's validation accuracy after that epoch;
    the head-only stage (feature_extraction) with and without cached frozen features;
  * predict texts/s on MR and polarity v2.0 of predict_proba (fp32, bf16, int8) vs the plain loop
    (batches of 32 in input order, no_grad, fp32) and SetFit's predict (embedding + logistic
    regression), the change of TREC-6 test accuracy under bf16 / int8, and the fp32 and bf16 limits:
    the encoder's FLOPs per token (at the mean window length) over the matmul GFLOP/s measured here.
The AWD-LSTM rows (--backbone awd_lstm or both), on the same data and model (400/1152/3, bptt 70, batch 64):
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

import numpy as np
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


# --------------------------------------------------------------------------- transformer backbone

def transformer_flops_per_token(config, context: float) -> float:
    """Forward FLOPs per token of a BERT-style encoder: the projections and feed-forward of every
    layer (2 FLOPs per multiply-add) plus attention over ``context`` tokens (scores and mixing)."""
    hidden, layers, inner = config.hidden_size, config.num_hidden_layers, config.intermediate_size
    return 2 * layers * (4 * hidden * hidden + 2 * hidden * inner + 2 * context * hidden)


def ulmtl_window_tokens(clf, texts: list[str]) -> tuple[int, float]:
    """(tokens the encoder reads for ``texts``, special tokens of every window included; their mean
    window length) under ``clf``'s windows and max_len."""
    from ulmtl.backbones.transformer import encode_texts
    settings = clf.model_configs_["forward"]
    body = settings.window - 2
    step = body - settings.overlap
    tokens, windows = 0, 0
    for doc in encode_texts(clf.vocabs_["forward"], texts, clf.trained_config_.max_len):
        n = 1 + max(0, -(-(len(doc) - body) // step))
        tokens += len(doc) + (n - 1) * settings.overlap + 2 * n
        windows += n
    return tokens, tokens / windows


def timed(work) -> tuple[float, object]:
    """(the fastest of two calls' seconds, the last result)."""
    times, result = [], None
    for _ in range(2):
        started = time.perf_counter()
        result = work()
        times.append(time.perf_counter() - started)
    return min(times), result


def transformer_speed(root: Path, quick: bool, gflops: dict) -> tuple[dict, dict]:
    """Training and prediction speed of ulmtl's transformer path against the plain loops a user writes
    with ``transformers`` (encoder_baselines.plain_train / plain_predict), SetFit's predict, and the
    machine's limit. (measures, ratios)"""
    from dataclasses import replace

    from sentence_transformers import SentenceTransformer
    from sklearn.linear_model import LogisticRegression
    from transformers import AutoConfig

    from encoder_baselines import PlainFinetuneSettings, class_indices, plain_predict, plain_train
    from ulmtl import TextClassifier
    from ulmtl.backbones.transformer import bundled_encoder
    from ulmtl.config import TRANSFORMER_CLASSIFIER, TransformerConfig
    from ulmtl.datasets import load_dataset
    encoder = str(bundled_encoder())
    trec, mr = load_dataset("trec", root), load_dataset("mr", root)
    polarity = load_dataset("polarity", root)
    n_train, n_valid = (320, 200) if quick else (3200, 500)
    n_mr, n_polarity = (500, 16) if quick else (len(mr["test"]) + len(mr["train"]), 200)
    texts, labels = list(trec["train"]["text"]), list(trec["train"]["label"])
    train_texts, train_labels = texts[:n_train], labels[:n_train]
    valid_texts, valid_labels = texts[-n_valid:], labels[-n_valid:]
    mr_texts = (list(mr["test"]["text"]) + list(mr["train"]["text"]))[:n_mr]
    polarity_texts = list(polarity["test"]["text"])[:n_polarity]
    classes, targets = class_indices(train_labels)
    out = {}
    started_all = time.perf_counter()

    def say(what: str) -> None:
        print(f"speed: {what} ({time.perf_counter() - started_all:.0f} s)", flush=True)

    # Training, all layers trainable, 1 epoch, the same texts; tokens counted as the plain loop's
    # tokenizer counts them (special tokens included, no padding).
    plain = PlainFinetuneSettings(lr=1e-4, epochs=1, max_len=256)
    model, tokenizer, tokens, seconds = plain_train(train_texts, targets, len(classes), encoder, 0, plain)
    out["plain_train_tokens_per_s"] = tokens / seconds
    predicted = plain_predict(model, tokenizer, valid_texts, 32, 256)
    out["plain_valid_accuracy_1_epoch"] = float(np.mean(classes[predicted] == np.asarray(valid_labels)))
    say(f"plain training loop {out['plain_train_tokens_per_s']:.0f} tokens/s")
    all_layers = replace(TRANSFORMER_CLASSIFIER, unfreeze_plan=(0,), stage_epochs=(1,), stage_lr_mult=(1.0,),
                         lr=1e-4, seed=0)
    fitted = {}
    for precision in ("fp32", "bf16"):
        clf = TextClassifier(all_layers, model_config=TransformerConfig(precision=precision), verbose=False)
        started = time.perf_counter()
        clf.fit(train_texts, train_labels)
        out[f"ulmtl_train_{precision}_tokens_per_s"] = tokens / (time.perf_counter() - started)
        out[f"ulmtl_valid_accuracy_1_epoch_{precision}"] = clf.score(valid_texts, valid_labels)
        fitted[precision] = clf
        say(f"ulmtl training {precision} {out[f'ulmtl_train_{precision}_tokens_per_s']:.0f} tokens/s")
    # Head only (feature_extraction, 4 epochs): frozen encoder, cached features vs the encoder every batch.
    head_only = replace(TRANSFORMER_CLASSIFIER, strategy="feature_extraction", stage_epochs=(4,),
                        unfreeze_plan=(1,), stage_lr_mult=(10.0,), seed=0)
    for cache in (True, False):
        clf = TextClassifier(head_only, model_config=TransformerConfig(precision="fp32", cache_features=cache),
                             verbose=False)
        started = time.perf_counter()
        clf.fit(train_texts, train_labels)
        out[f"ulmtl_head_only_{'cached' if cache else 'uncached'}_tokens_per_s"] = (
            4 * tokens / (time.perf_counter() - started))
        say(f"head only, cache {cache}")

    # Prediction: the plain loop (batches of 32 in input order, no_grad, fp32, at most 512 tokens)
    # against TextClassifier.predict_proba (length-sorted batches of 64, inference_mode, windows).
    reference = fitted["fp32"]
    reference_window = reference.models_["forward"].window, reference.models_["forward"].overlap
    config = AutoConfig.from_pretrained(encoder)
    for name, corpus in (("mr", mr_texts), ("polarity", polarity_texts)):
        seconds, _ = timed(lambda: plain_predict(model, tokenizer, corpus, 32, 512))
        out[f"plain_predict_{name}_texts_per_s"] = len(corpus) / seconds
        out[f"plain_predict_{name}_tokens_per_text"] = float(np.mean(
            [len(ids) for ids in tokenizer(corpus, truncation=True, max_length=512)["input_ids"]]))
        window_tokens, context = ulmtl_window_tokens(reference, corpus)
        limit = gflops["fp32"] * 1e9 / transformer_flops_per_token(config, context)
        out[f"predict_{name}_tokens_per_text"] = window_tokens / len(corpus)
        out[f"predict_limit_fp32_{name}_texts_per_s"] = limit * len(corpus) / window_tokens
        out[f"predict_limit_bf16_{name}_texts_per_s"] = (out[f"predict_limit_fp32_{name}_texts_per_s"]
                                                         * gflops["bf16"] / gflops["fp32"])
        for precision in ("fp32", "bf16"):
            clf = fitted["fp32"]
            clf.model_configs_["forward"] = replace(clf.model_configs_["forward"], precision=precision)
            seconds, _ = timed(lambda: clf.predict_proba(corpus))
            out[f"ulmtl_predict_{name}_{precision}_texts_per_s"] = len(corpus) / seconds
            if name == "polarity":  # the plain loop's tokens: one window of 512 (510 and two special)
                full, network = clf.trained_config_, clf.models_["forward"]
                clf.trained_config_ = replace(full, max_len=510)
                network.window, network.overlap = 512, 0
                seconds, _ = timed(lambda: clf.predict_proba(corpus))
                clf.trained_config_ = full
                network.window, network.overlap = reference_window
                out[f"ulmtl_predict_polarity_512_{precision}_texts_per_s"] = len(corpus) / seconds
        say(f"predict {name}")
    # Does a precision change what is predicted? TREC-6 test accuracy of the same fp32-trained model.
    test_texts, test_labels = list(trec["test"]["text"]), list(trec["test"]["label"])
    reference.model_configs_["forward"] = replace(reference.model_configs_["forward"], precision="fp32")
    fp32_predictions = reference.predict(test_texts)
    for precision in ("fp32", "bf16"):
        reference.model_configs_["forward"] = replace(reference.model_configs_["forward"], precision=precision)
        predictions = reference.predict(test_texts)
        out[f"ulmtl_test_accuracy_{precision}"] = float(np.mean(predictions == np.asarray(test_labels)))
        out[f"ulmtl_test_agreement_{precision}_vs_fp32"] = float(np.mean(predictions == fp32_predictions))
    reference.quantize_int8()
    for name, corpus in (("mr", mr_texts), ("polarity", polarity_texts)):
        seconds, _ = timed(lambda: reference.predict_proba(corpus))
        out[f"ulmtl_predict_{name}_int8_texts_per_s"] = len(corpus) / seconds
    predictions = reference.predict(test_texts)
    out["ulmtl_test_accuracy_int8"] = float(np.mean(predictions == np.asarray(test_labels)))
    out["ulmtl_test_agreement_int8_vs_fp32"] = float(np.mean(predictions == fp32_predictions))
    # SetFit's prediction: the sentence embedding (batches of 32) and a logistic regression.
    body = SentenceTransformer(encoder, device="cpu")
    head = LogisticRegression(max_iter=200).fit(body.encode(train_texts[:200], batch_size=32), targets[:200])
    seconds, _ = timed(lambda: head.predict(body.encode(mr_texts, batch_size=32)))
    out["setfit_predict_mr_texts_per_s"] = len(mr_texts) / seconds

    best = {name: max(out[f"ulmtl_predict_{name}_{p}_texts_per_s"] for p in ("fp32", "bf16", "int8"))
            for name in ("mr", "polarity")}
    summary = {
        "transformer_predict_speedup_vs_plain": best["mr"] / out["plain_predict_mr_texts_per_s"],
        "transformer_predict_speedup_vs_plain_polarity": best["polarity"] / out["plain_predict_polarity_texts_per_s"],
        "transformer_predict_speedup_vs_plain_polarity_same_512_tokens": (
            max(out[f"ulmtl_predict_polarity_512_{p}_texts_per_s"] for p in ("fp32", "bf16"))
            / out["plain_predict_polarity_texts_per_s"]),
        # Tokens read per second (ulmtl reads up to max_len tokens of a review, the plain loop 512).
        "transformer_predict_tokens_speedup_vs_plain_polarity": (
            best["polarity"] * out["predict_polarity_tokens_per_text"]
            / (out["plain_predict_polarity_texts_per_s"] * out["plain_predict_polarity_tokens_per_text"])),
        "transformer_predict_fp32_speedup_vs_plain": (out["ulmtl_predict_mr_fp32_texts_per_s"]
                                                      / out["plain_predict_mr_texts_per_s"]),
        "transformer_train_speedup_vs_plain": (max(out["ulmtl_train_fp32_tokens_per_s"],
                                                   out["ulmtl_train_bf16_tokens_per_s"])
                                               / out["plain_train_tokens_per_s"]),
        "transformer_train_fp32_speedup_vs_plain": out["ulmtl_train_fp32_tokens_per_s"] / out["plain_train_tokens_per_s"],
        "transformer_head_only_speedup_vs_plain": (out["ulmtl_head_only_cached_tokens_per_s"]
                                                   / out["plain_train_tokens_per_s"]),
        "transformer_predict_fraction_of_fp32_limit": best["mr"] / out["predict_limit_fp32_mr_texts_per_s"],
        "transformer_predict_polarity_fp32_fraction_of_fp32_limit": (
            out["ulmtl_predict_polarity_fp32_texts_per_s"] / out["predict_limit_fp32_polarity_texts_per_s"]),
        "transformer_predict_fp32_fraction_of_fp32_limit": (out["ulmtl_predict_mr_fp32_texts_per_s"]
                                                            / out["predict_limit_fp32_mr_texts_per_s"]),
        "transformer_predict_bf16_fraction_of_bf16_limit": (out["ulmtl_predict_mr_bf16_texts_per_s"]
                                                            / out["predict_limit_bf16_mr_texts_per_s"]),
    }
    return out, summary


def awd_lstm_speed(root: Path, quick: bool, precision: str, gflops: dict, memory: dict) -> tuple[dict, dict]:
    """LM training, classifier training and prediction of ulmtl's AWD-LSTM path against stock fastai,
    and tokenization against spaCy. (measures, ratios)"""
    from ulmtl.datasets import load_corpus, load_dataset
    n_paragraphs, lm_batches = (3000, 6) if quick else (20000, 30)
    n_predict, n_single = (2000, 50) if quick else (10000, 200)
    workdir = Path(tempfile.mkdtemp(prefix="ulmtl-speed-"))
    corpus = list(load_corpus(root / "general_corpus")["text"][:n_paragraphs])
    trec = load_dataset("trec", root)
    train_texts, train_labels = list(trec["train"]["text"]), list(trec["train"]["label"])
    predict_texts = (train_texts * 3)[:n_predict]
    out = {}
    out["fastai_lm_tokens_per_s"], fastai_vocab = fastai_lm_tokens_per_s(corpus, lm_batches)
    memory["fastai_lm"] = peak_rss_mb()
    out["ulmtl_lm_tokens_per_s"], vocab = ulmtl_lm_tokens_per_s(corpus, lm_batches, workdir, precision)
    memory["ulmtl_lm"] = peak_rss_mb()
    flops = lm_flops_per_token(400, 1152, 3, vocab)
    out["lm_limit_fp32_tokens_per_s"] = gflops["fp32"] * 1e9 / flops
    out["lm_limit_bf16_tokens_per_s"] = gflops["bf16"] * 1e9 / flops
    n_train = 2000 if quick else len(train_texts)
    predict_flops_per_token = encoder_flops_per_token(400, 1152, 3)
    out.update(classifier(train_texts[:n_train], train_labels[:n_train], predict_texts, n_single, precision))
    memory["classifier"] = peak_rss_mb()
    out["predict_limit_fp32_texts_per_s"] = gflops["fp32"] * 1e9 / (
        predict_flops_per_token * out["predict_tokens_per_text"])
    out.update(tokenization(corpus, workdir))
    memory["tokenization"] = peak_rss_mb()
    shutil.rmtree(workdir, ignore_errors=True)
    out["lm_vocab_ulmtl"], out["lm_vocab_fastai"] = vocab, fastai_vocab
    summary = {
        "lm_train_speedup_vs_fastai": out["ulmtl_lm_tokens_per_s"] / out["fastai_lm_tokens_per_s"],
        "predict_speedup_vs_fastai_predict": out["ulmtl_predict_texts_per_s"] / out["fastai_predict_texts_per_s"],
        "predict_speedup_vs_fastai_get_preds": out["ulmtl_predict_texts_per_s"] / out["fastai_get_preds_texts_per_s"],
        "tokenize_ratio_vs_spacy": out["ulmtl_1proc_tokens_per_s"] / out["spacy_tokens_per_s"],
        "tokenize_texts_ratio_vs_spacy": out["ulmtl_1proc_texts_per_s"] / out["spacy_texts_per_s"],
        "predict_fraction_of_fp32_limit": out["ulmtl_predict_texts_per_s"] / out["predict_limit_fp32_texts_per_s"],
        "tokenize_2proc_over_1proc": out["ulmtl_2proc_tokens_per_s"] / out["ulmtl_1proc_tokens_per_s"],
    }
    return out, summary


def main(argv=None) -> dict:
    parser = common_parser(__doc__)
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--data-dir", default=None)
    parser.add_argument("--backbone", default="both", choices=["awd_lstm", "transformer", "both"])
    parser.add_argument("--precision", default="auto", choices=["auto", "fp32", "bf16"],
                        help="the AWD-LSTM's LM training and classifier (model.precision); fastai is always "
                             "fp32; the transformer rows measure fp32, bf16 and int8 each")
    args = parser.parse_args(argv)
    from fastprogress import fastprogress
    fastprogress.NO_BAR = True
    from ulmtl.datasets import resolve_data_dir
    root = resolve_data_dir(args.data_dir)
    gflops = {"fp32": matmul_gflops(torch.float32), "bf16": matmul_gflops(torch.bfloat16)}
    memory, out, summary = {"matmul": peak_rss_mb()}, {"fp32_gflops": gflops["fp32"], "bf16_gflops": gflops["bf16"]}, {}
    if args.backbone in ("transformer", "both"):
        measures, ratios = transformer_speed(root, args.quick, gflops)
        out.update(measures)
        summary.update(ratios)
        memory["transformer"] = peak_rss_mb()
    if args.backbone in ("awd_lstm", "both"):
        measures, ratios = awd_lstm_speed(root, args.quick, args.precision, gflops, memory)
        out.update(measures)
        summary.update(ratios)
    print(f"{'measure':48s} value")
    for key, value in out.items():
        print(f"{key:48s} {value:12.3f}" if value < 10 else f"{key:48s} {value:12.1f}")
    for key, value in memory.items():
        print(f"{'peak_rss_mb_after_' + key:48s} {value:12.1f}")
    command = ("python benchmarks/speed.py" + (" --quick" if args.quick else "") + f" --backbone {args.backbone}"
               + f" --precision {args.precision}")
    row = {"benchmark": "speed", "quick": args.quick, **{k: round(v, 3) for k, v in summary.items()},
           "measures": {k: round(v, 3) for k, v in out.items()}, "peak_rss_mb": memory,
           "date": date.today().isoformat(), "hardware": hardware(), "backbone": args.backbone,
           "precision": args.precision, "command": command}
    append_result(RESULTS, row)
    print(json.dumps({k: round(v, 3) for k, v in summary.items()}))
    return row


if __name__ == "__main__":
    main()
