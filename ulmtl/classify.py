"""Stage 3: the text classifier, a scikit-learn estimator.

``TextClassifier(config, encoders=...)`` stores its settings only; ``fit`` trains one classifier per
direction (forward, backward) on top of a fine-tuned LM encoder; ``predict_proba`` averages the
directions' probabilities (the paper's bidirectional ensemble). Strategies:

* ``"finetune"``: full ULMFiT: gradual unfreezing, discriminative LRs, slanted triangular LRs;
* ``"feature_extraction"``: the encoder stays frozen, only the head trains;
* ``"scratch"``: no pretrained weights; the vocabulary comes from the training texts;
* ``"auto"``: tries the three on a validation split of the training texts and refits the best
  (``ulmtl.selection``).

Multi-label classification: labels ``y`` that are sets of labels (a list, tuple or set per text, or
an indicator matrix: a 2-D 0/1 array or a DataFrame with one column per label). The head then
gives one logit per label, trained with binary cross-entropy; ``predict_proba`` gives each label's
sigmoid probability, ``predict`` the tuple of labels whose probability is at least ``threshold_``.
"""
from __future__ import annotations

from contextlib import nullcontext
from pathlib import Path

import numpy as np
import pandas as pd
import torch
from datasets import Dataset, DatasetDict, List
from fastai.callback.core import Callback, CancelValidException
from fastai.losses import BCEWithLogitsLossFlat, CrossEntropyLossFlat
from fastai.metrics import AccumMetric, accuracy
from sklearn.base import BaseEstimator, ClassifierMixin
from sklearn.metrics import f1_score

from ulmtl.backbones import ClassifierBackbone, backbone_for
from ulmtl.classifier_checkpoint import load_classifier, save_classifier
from ulmtl.config import (
    DEFAULT_THRESHOLD, ClassifierConfig, ConfigError, ModelConfig, TokenizerConfig, TransformerConfig,
)
from ulmtl.datasets import DataError
from ulmtl.distributed import is_main, world
from ulmtl.loaders import ClassificationLoader
from ulmtl.precision import autocast, resolve_precision
from ulmtl.schedule import training_plan
from ulmtl.selection import fit_auto
from ulmtl.training import (
    ScheduledLR, TrainingLog, group_lrs, train_only_groups, make_learner, prepare_torch, set_seed,
)



class SkipValidation(Callback):
    """No validation set was given: skip fastai's per-epoch validation."""

    def before_validate(self):
        raise CancelValidException()


def _texts_and_labels(X, y) -> tuple[list[str], list | None, list[str] | None]:
    """Texts, labels and (for a ClassLabel column) the class names, from lists or a Dataset."""
    names = None
    if isinstance(X, pd.DataFrame):
        if "text" not in X.columns:
            raise DataError(f"a DataFrame needs a 'text' column (columns: {[str(c) for c in X.columns]})")
        if y is None and "label" in X.columns:
            y = X["label"]
        X = X["text"]
    if isinstance(X, (dict, set, frozenset)):
        raise DataError(f"expected a list of texts, got a {type(X).__name__} (its order and its keys are not "
                        f"a list of texts); pass a list, a pandas Series, or a DataFrame / Dataset with a "
                        f"'text' column")
    if isinstance(X, DatasetDict):
        if "train" not in X:
            raise DataError("a DatasetDict passed to fit needs a 'train' split")
        X = X["train"]
    if isinstance(X, Dataset):
        if "text" not in X.column_names:
            raise DataError(f"dataset has no 'text' column (columns: {X.column_names})")
        if y is None and "label" in X.column_names:
            y = X["label"]
            feature = X.features["label"]
            if isinstance(feature, List):  # multi-label: each text's class ids -> its tuple of names
                names = list(feature.feature.names)
                y = [tuple(names[i] for i in ids) for ids in y]
            else:
                names = list(getattr(feature, "names", None) or []) or None
        X = X["text"]
    if isinstance(X, str):
        raise DataError("expected a list of texts, got a single string")
    if X is None or not hasattr(X, "__iter__"):
        raise DataError(f"expected a list of texts, got {type(X).__name__}")
    texts = list(X)
    if not texts:
        raise DataError("expected a list of texts, got an empty one")
    for i, text in enumerate(texts):
        if not isinstance(text, str):
            raise DataError(f"text {i} is {type(text).__name__}, not a string")
        if not text.strip():
            raise DataError(f"text {i} is empty or whitespace only")
    if y is not None:
        if isinstance(y, pd.DataFrame) or (isinstance(y, np.ndarray) and y.ndim == 2):
            y, names = _indicator_sets(y)
        if isinstance(y, str) or not hasattr(y, "__iter__"):
            raise DataError(f"expected a list of labels, got {type(y).__name__}")
        y = list(y)
        if len(y) != len(texts):
            raise DataError(f"{len(texts)} texts but {len(y)} labels")
        if any(isinstance(label, LABEL_SETS) for label in y):
            return texts, _label_sets(y), names
        y = [label.item() if isinstance(label, np.generic) else label for label in y]
        kinds = {}
        for i, label in enumerate(y):
            kinds.setdefault(_checked_kind(label, f"label {i}"), (i, label))
        _refuse_mixed_kinds(kinds, "label")
    return texts, y, names


LABEL_SETS = (list, tuple, set, frozenset, np.ndarray)  # what a text's labels are in multi-label data


def _refuse_mixed_kinds(kinds: dict, what: str) -> None:
    """A DataError when the labels (``kinds``: each kind's first (index, label)) are of several types."""
    if len(kinds) > 1:
        examples = ", ".join(f"{what} {i} is {label!r} ({kind})" for kind, (i, label) in sorted(kinds.items()))
        raise DataError(f"labels of mixed types: {examples}; give every label the same type "
                        f"(e.g. all strings)")


def _checked_kind(label, where: str) -> str:
    """The kind of one label (see :func:`_label_kind`); a DataError naming ``where`` when it is
    missing or of no label type."""
    if label is None or (isinstance(label, float) and np.isnan(label)):
        raise DataError(f"{where} is missing")
    kind = _label_kind(label)
    if kind is None:
        raise DataError(f"{where} is a {type(label).__name__} ({label!r}); labels must be strings, numbers or "
                        f"booleans")
    return kind


def _label_sets(y: list) -> list[tuple]:
    """Multi-label ``y`` (a list, tuple or set of labels per text) as one tuple of labels per text
    (each label once; a text may have none)."""
    sets, kinds = [], {}
    for i, labels in enumerate(y):
        if not isinstance(labels, LABEL_SETS):
            raise DataError(f"label {i} is {labels!r}, one label, but other texts have a list of labels: give "
                            f"every text a list of labels (multi-label) or every text one label")
        items = labels.tolist() if isinstance(labels, np.ndarray) else list(labels)
        for item in items:
            kinds.setdefault(_checked_kind(item, f"a label of text {i}"), (i, item))
        sets.append(tuple(dict.fromkeys(items)))
    _refuse_mixed_kinds(kinds, "a label of text")
    return sets


def _indicator_sets(y) -> tuple[list[tuple], list]:
    """An indicator matrix (one 0/1 column per label: a DataFrame, its columns the labels, or a 2-D
    array, its column numbers the labels) as one tuple of labels per text, and the labels."""
    names = [str(c) for c in y.columns] if isinstance(y, pd.DataFrame) else list(range(y.shape[1]))
    values = np.asarray(y, dtype=object)
    bad = np.argwhere(~np.isin(values, [0, 1]))
    if len(bad):
        i, j = bad[0]
        raise DataError(f"label row {i}, column {names[j]!r} is {values[i, j]!r}; an indicator matrix of "
                        f"labels holds 0 or 1 ({len(bad)} entries are not)")
    return [tuple(names[j] for j in np.flatnonzero(row.astype(bool))) for row in values], names


def check_label_mode(config: ClassifierConfig, multilabel: bool, has_valid: bool) -> None:
    """Refuse the settings that cannot act on these labels: a threshold for single-label data, and
    a threshold to tune without a validation split."""
    if not multilabel:
        if config.tune_threshold or config.threshold != DEFAULT_THRESHOLD:
            key = "tune_threshold" if config.tune_threshold else "threshold"
            raise ConfigError(f"classifier.{key} is for multi-label data (a set of labels per text), but these "
                              f"labels are one class per text, whose prediction is the most probable class")
    elif config.tune_threshold and not has_valid:
        raise ConfigError("classifier.tune_threshold picks the threshold on a validation split, and there is "
                          "none: pass valid=(texts, labels) to fit, or --valid_fraction=0.1 to a recipe")


THRESHOLDS = np.round(np.arange(0.05, 0.96, 0.01), 2)  # what tune_threshold chooses from


def micro_f1(truth: np.ndarray, predicted: np.ndarray) -> float:
    """Micro-averaged F1 of 0/1 label matrices (1.0 when neither holds a label)."""
    tp = float(np.sum((truth == 1) & predicted))
    wrong = float(np.sum((truth == 1) != predicted))
    return 1.0 if tp + wrong == 0 else 2 * tp / (2 * tp + wrong)


def best_threshold(truth: np.ndarray, proba: np.ndarray, start: float) -> tuple[float, float]:
    """(threshold, micro-F1): the threshold in THRESHOLDS with the best micro-F1 of ``proba`` against
    the 0/1 matrix ``truth``; of equal ones, the nearest to ``start``."""
    scores = [micro_f1(truth, proba >= t) for t in THRESHOLDS]
    best = max(range(len(THRESHOLDS)), key=lambda k: (round(scores[k], 12), -abs(THRESHOLDS[k] - start)))
    return float(THRESHOLDS[best]), scores[best]


def _label_kind(label) -> str | None:
    """'bool', 'number' or 'string' (ints and floats mix: equal numbers are one class); None for others."""
    if isinstance(label, bool):
        return "bool"
    if isinstance(label, (int, float)):
        return "number"
    if isinstance(label, str):
        return "string"
    return None


TRACE_POINTS = 200  # per-batch learning rates and losses kept per stage (evenly spaced batches)


def _epoch_values(recorder) -> list[dict]:
    """fastai's per-epoch record (train_loss; valid_loss and accuracy when validated), as floats."""
    names = list(recorder.metric_names[1:-1])
    return [{n: float(v) for n, v in zip(names, values) if v is not None} for values in recorder.values]


def _batch_trace(lrs: list[list[float]], losses: list) -> dict:
    """Every group's learning rate and the (smoothed) training loss at up to TRACE_POINTS batches
    of a stage, first and last included: the schedule as it ran."""
    n = len(lrs)
    step = max(1, -(-n // TRACE_POINTS))
    batches = sorted(set(range(0, n, step)) | ({n - 1} if n else set()))
    return {"batch": batches, "n_batches": n, "lrs": [lrs[i] for i in batches],
            "loss": [float(losses[i]) for i in batches if i < len(losses)]}


class TextClassifier(ClassifierMixin, BaseEstimator):
    """ULMFiT text classifier: ``fit`` / ``predict`` / ``predict_proba`` / ``score`` on raw strings.

    A scikit-learn estimator: ``get_params`` / ``set_params`` cover the constructor's arguments,
    so ``sklearn.base.clone``, ``Pipeline`` and ``cross_val_score`` work on it.

    ``encoders`` maps each direction in ``config.directions`` to a stage-2 (or stage-1) LM
    checkpoint folder; a single path is taken as the forward encoder. Not needed for ``scratch``.
    ``model_config`` chooses the backbone: a :class:`ModelConfig` (AWD-LSTM, the default) or a
    :class:`TransformerConfig` (a Hugging Face encoder: ``encoders`` is its folder or hub id, and
    empty means the bundled all-MiniLM-L6-v2; ``scratch`` takes its architecture, not its weights).

    Fitted, it has ``classes_`` and ``multilabel_``; a multi-label one (fitted on sets of labels) also
    ``threshold_``, the decision threshold ``predict`` uses (``config.threshold``, or the one tuned on
    the validation split): set it to trade precision for recall.
    """

    def __init__(self, config: ClassifierConfig | None = None, encoders: dict | str | Path | None = None,
                 model_config: ModelConfig | TransformerConfig | None = None, tokenizer: TokenizerConfig | None = None,
                 log_path: str | Path | None = None, verbose: bool = True):
        self.config = config or ClassifierConfig()
        self.encoders = encoders
        self.model_config = model_config or ModelConfig()
        self.tokenizer = tokenizer or TokenizerConfig()
        self.log_path = log_path
        self.verbose = verbose

    def __getstate__(self):
        """An unfitted classifier pickles (it is settings only); a fitted one refuses."""
        if hasattr(self, "models_"):
            raise TypeError("a fitted TextClassifier cannot be pickled: unpickling runs code, which is what "
                            "its safetensors + JSON format avoids; use clf.save(folder) and "
                            "TextClassifier.load(folder)")
        return self.__dict__

    # ------------------------------------------------------------------ fitting

    @property
    def backbone(self) -> ClassifierBackbone:
        """The backbone ``model_config`` is the architecture section of."""
        return backbone_for(self.model_config)

    def fit(self, X, y=None, valid: tuple | None = None) -> "TextClassifier":
        """Train on texts ``X`` with labels ``y`` (or a Dataset / DatasetDict with text and label).

        ``valid``: optional ``(texts, labels)`` evaluated after every epoch (and, for multi-label
        data with ``config.tune_threshold``, the split the threshold is chosen on).
        Labels that are sets (see the module) make a multi-label classifier. With strategy "auto"
        the strategy is chosen on a split of ``X`` alone (:func:`ulmtl.selection.fit_auto`); ``valid``
        serves the refit's per-epoch reports only, so it stays an independent check of the choice.
        """
        texts, labels, names = _texts_and_labels(X, y)
        if labels is None:
            raise DataError("fit needs labels: pass y, or a dataset with a 'label' column")
        self.multilabel_ = isinstance(labels[0], tuple)
        check_label_mode(self.config, self.multilabel_, valid is not None)
        if self.multilabel_:
            self.classes_ = np.array(names if names is not None else sorted({v for s in labels for v in s}))
            if len(self.classes_) < 2:
                raise DataError(f"the training labels hold {len(self.classes_)} distinct label(s) "
                                f"({self.classes_.tolist()}); a multi-label classifier needs two or more")
            label_ids = self._encode_labels(labels, where="training")
        elif names is not None:
            self.classes_ = np.array(names)
            label_ids = np.asarray(labels, dtype=np.int64)
        else:
            self.classes_ = np.array(sorted(set(labels)))
            index = {c: i for i, c in enumerate(self.classes_.tolist())}
            label_ids = np.array([index[v] for v in labels], dtype=np.int64)
        if not self.multilabel_ and len(set(label_ids.tolist())) < 2:
            raise DataError(f"only one class ({self.classes_[label_ids[0]]!r}) in the training labels; "
                            f"a classifier needs two or more")
        valid_ids = None
        if valid is not None:
            valid_texts, valid_labels, _ = _texts_and_labels(valid[0], valid[1])
            valid_ids = self._encode_labels(valid_labels, where="validation")
        if self.config.strategy == "auto":
            if self.multilabel_:
                raise ConfigError("classifier.strategy=auto chooses among strategies by accuracy on single-label "
                                  "data; for multi-label data choose finetune, feature_extraction or scratch")
            return fit_auto(self, texts, self.classes_[label_ids].tolist(), lambda clf: clf.fit(X, y, valid))
        backbone = self.backbone
        backbone.check(self.config, self.model_config, self.multilabel_)
        set_seed(self.config.seed)
        self.device_ = prepare_torch()
        sources = backbone.sources(self.encoders, self.config)
        inputs = backbone.prepare(texts, self.tokenizer)
        valid_inputs = backbone.prepare(valid_texts, self.tokenizer) if valid is not None else None
        fitted = {direction: self._fit_direction(backbone, direction, source, inputs, label_ids, valid_inputs,
                                                 valid_ids)
                  for direction, source in sources.items()}
        # Set only once every direction is trained: a fit that fails leaves no half-fitted classifier.
        self.vocabs_, self.models_, self.history_, self.model_configs_ = (
            {d: parts[i] for d, parts in fitted.items()} for i in range(4))
        self.quantized_ = False
        counts = (label_ids.sum(axis=0) if self.multilabel_
                  else np.bincount(label_ids, minlength=len(self.classes_)))
        self.train_counts_ = {str(c): int(n) for c, n in zip(self.classes_.tolist(), counts)}
        self.selection_, self.chosen_strategy_ = None, self.config.strategy
        self.threshold_ = self.config.threshold if self.multilabel_ else None
        if self.multilabel_ and self.config.tune_threshold:
            self.threshold_, f1 = best_threshold(valid_ids, self.predict_proba(valid_texts), self.config.threshold)
            if self.verbose and is_main():
                print(f"ulmtl: decision threshold {self.threshold_} (micro-F1 {f1:.4f} on the validation split)",
                      flush=True)
        return self

    def _encode_labels(self, labels, where: str) -> np.ndarray:
        """Class ids (single-label), or a float 0/1 matrix, one column per class (multi-label)."""
        index = {c: i for i, c in enumerate(self.classes_.tolist())}
        if self.multilabel_ != isinstance(labels[0], tuple):
            kinds = ("a set of labels per text", "one label per text")
            raise DataError(f"the {where} labels are {kinds[self.multilabel_]}, but this classifier was "
                            f"trained on {kinds[not self.multilabel_]}")
        given = [v for s in labels for v in s] if self.multilabel_ else labels
        unseen = sorted({str(v) for v in given if v not in index})
        if unseen:
            raise DataError(f"{where} labels {unseen} never appear in the training labels "
                            f"{self.classes_.tolist()}")
        if not self.multilabel_:
            return np.array([index[v] for v in labels], dtype=np.int64)
        matrix = np.zeros((len(labels), len(index)), dtype=np.float32)
        for row, label_set in enumerate(labels):
            matrix[row, [index[v] for v in label_set]] = 1
        return matrix

    def _loss_and_metrics(self) -> tuple:
        """Cross-entropy and accuracy; multi-label: binary cross-entropy and micro-F1 at ``config.threshold``."""
        if not self.multilabel_:
            return CrossEntropyLossFlat(), [accuracy]
        micro = AccumMetric(f1_score, activation="sigmoid", thresh=self.config.threshold, to_np=True,
                            invert_arg=True, flatten=False, name="micro_f1", average="micro", zero_division=0)
        return BCEWithLogitsLossFlat(), [micro]

    def _fit_direction(self, backbone: ClassifierBackbone, direction: str, source, inputs: list,
                       label_ids: np.ndarray, valid_inputs: list | None, valid_ids) -> tuple:
        """(vocab, trained model, history, settings) of one direction's classifier on ``backbone``."""
        config = self.config
        vocab, model, settings = backbone.build(direction, source, inputs, len(self.classes_), self.model_config,
                                                config, self.tokenizer, self.verbose)
        backwards = direction == "backward"
        docs = backbone.encode(vocab, inputs, config)
        rank, processes = world()
        collate = backbone.collate(vocab, config)
        train = ClassificationLoader(docs, label_ids, config.batch_size, shuffle=True, seed=config.seed,
                                     backwards=backwards, rank=rank, world_size=processes, collate=collate)
        if valid_inputs is not None:
            valid = ClassificationLoader(backbone.encode(vocab, valid_inputs, config), valid_ids, config.batch_size,
                                         backwards=backwards, collate=collate)
        else:
            valid = ClassificationLoader(docs[:1], label_ids[:1], 1, collate=collate)
        before = backbone.before_training(model, vocab, docs, label_ids, settings, config, self.multilabel_,
                                          self.device_, self._stage_log)
        precision = resolve_precision(settings.precision, self.device_, bf16_pays_on_cpu=backbone.bf16_pays_on_cpu)
        loss, metrics = self._loss_and_metrics()
        learn = make_learner(train, valid, model, backbone.layer_groups(settings), config, metrics=metrics,
                             device=self.device_, progress=False, precision=precision,
                             stage=f"classifier training ({direction})",
                             callbacks=backbone.callbacks(model, config, precision),
                             train_norms=backbone.train_norms, loss_func=loss)
        model, history = self._train(learn, direction, has_valid=valid_inputs is not None,
                                     head_features=backbone.head_features(learn, settings, self.device_))
        return vocab, model, before + history, settings

    def _stage_log(self, label: str):
        """The progress writer of a stage before the classifier's (None when not verbose)."""
        return TrainingLog(self.log_path, label=label).write if self.verbose else None

    def _train(self, learn, direction: str, has_valid: bool, head_features=None) -> tuple:
        """Run the training plan on ``learn``: (the trained model, what each stage trained and how).

        ``head_features``: a context in which ``learn`` trains the head on cached features of the
        frozen encoder, used for the stages that train the head alone."""
        config = self.config
        if not has_valid:
            learn.add_cb(SkipValidation())
        history = []
        n_groups = len(learn.opt.param_lists)
        for trainable, epochs, max_lrs in training_plan(config, n_groups):
            train_only_groups(learn, trainable)
            schedule = ScheduledLR(max_lrs, config.schedule, config.cut_frac, config.ratio)
            log = TrainingLog(self.log_path, every=50, label=f"classifier-{direction}")
            if not self.verbose:
                log.write = lambda record: None
            cache = head_features is not None and tuple(trainable) == (n_groups - 1,)
            with head_features() if cache else nullcontext():
                learn.fit(epochs, cbs=[schedule, log])
            history.append({
                "trainable_groups": len(trainable), "groups": list(trainable), "epochs": epochs,
                "cached_features": cache,
                "peak_lrs": [float(x) for x in max_lrs],
                "final_lrs": [float(x) for x in group_lrs(learn)],
                "trainable_params": [n for n, p in learn.model.named_parameters() if p.requires_grad],
                "epoch_values": _epoch_values(learn.recorder),
                "trace": _batch_trace(schedule.history, learn.recorder.losses),
            })
        learn.model.eval()
        return learn.model, history

    # ------------------------------------------------------------------ predicting

    def _check_fitted(self) -> None:
        if not hasattr(self, "models_"):
            raise RuntimeError("this TextClassifier is not fitted yet: call fit() or TextClassifier.load()")

    def predict_proba_by_direction(self, X, batch_size: int | None = None) -> dict[str, np.ndarray]:
        """Class probabilities of each direction's classifier, in the order of ``X`` (multi-label:
        each label's sigmoid probability)."""
        self._check_fitted()
        texts, _, _ = _texts_and_labels(X, None)
        inputs = self.backbone.prepare(texts, self.tokenizer)
        return {direction: self._direction_proba(direction, model, inputs, batch_size)
                for direction, model in self.models_.items()}

    def predict_proba(self, X, batch_size: int | None = None) -> np.ndarray:
        """Class probabilities, shape (n_texts, n_classes), in the order of ``X``; directions averaged.
        Multi-label: each label's own (sigmoid) probability; a row need not sum to 1."""
        by_direction = self.predict_proba_by_direction(X, batch_size)
        return sum(by_direction.values()) / len(by_direction)

    def _direction_proba(self, direction, model, inputs, batch_size) -> np.ndarray:
        backbone, vocab = self.backbone, self.vocabs_[direction]
        batch_size = batch_size or self.config.batch_size * 2
        docs = backbone.encode(vocab, inputs, self.config)
        loader = ClassificationLoader(docs, None, batch_size, backwards=direction == "backward",
                                      collate=backbone.collate(vocab, self.config))
        if getattr(self, "quantized_", False):
            device, precision = torch.device("cpu"), "fp32"  # int8 kernels take fp32 activations
        else:
            device = next(model.parameters()).device
            precision = resolve_precision(self.model_configs_[direction].precision, device,
                                          bf16_pays_on_cpu=backbone.bf16_pays_on_cpu)
        model = backbone.ready(model, precision)
        outputs = []
        model.eval()
        with torch.inference_mode(), autocast(precision, device):
            for (x,) in loader:
                logits = backbone.logits(model, x.to(device))
                scores = torch.sigmoid(logits.float()) if self.multilabel_ else torch.softmax(logits.float(), dim=-1)
                outputs.append(scores.cpu().numpy())
        probs = np.empty((len(docs), len(self.classes_)), dtype=np.float64)
        probs[loader.order] = np.concatenate(outputs)
        return probs

    def quantize_int8(self) -> "TextClassifier":
        """Predict with int8 weights from now on: every Linear layer of the transformer classifier
        becomes a dynamic int8 Linear (``torch.ao.quantization.quantize_dynamic``: weights stored
        in int8, activations quantized per batch), which is faster than fp32 on CPUs without fast
        bf16. Predictions can differ slightly from the fp32 model's; ``benchmarks/speed.py`` reports
        by how much. A quantized classifier predicts only: it cannot be saved or trained further."""
        self._check_fitted()
        self.models_ = {d: self.backbone.quantize_int8(m) for d, m in self.models_.items()}
        self.quantized_ = True
        return self

    def predict(self, X) -> np.ndarray | list[tuple]:
        """Predicted class of every text; multi-label: a tuple of the labels of every text whose
        probability is at least ``threshold_`` (possibly empty)."""
        proba = self.predict_proba(X)
        if self.multilabel_:
            classes = self.classes_.tolist()
            return [tuple(classes[j] for j in np.flatnonzero(row >= self.threshold_)) for row in proba]
        return self.classes_[proba.argmax(axis=1)]

    def score(self, X, y=None) -> float:
        """Accuracy on texts ``X`` with labels ``y`` (or a labelled Dataset); multi-label: subset
        accuracy, the share of texts whose predicted set of labels is exactly theirs."""
        self._check_fitted()
        texts, labels, names = _texts_and_labels(X, y)
        if labels is None:
            raise DataError("score needs labels")
        if self.multilabel_:
            truth = self._encode_labels(labels, where="scored") == 1
            return float(np.mean(np.all((self.predict_proba(texts) >= self.threshold_) == truth, axis=1)))
        if names is not None:
            labels = [names[i] for i in labels]
        truth = self.classes_[self._encode_labels(labels, where="scored")]
        return float(np.mean(self.predict(texts) == truth))

    # ------------------------------------------------------------------ saving

    def save(self, folder: str | Path, run_id: str = "", metrics: dict | None = None,
             facts: dict[str, str] | None = None) -> Path:
        """One checkpoint folder per direction under ``folder`` (safetensors + JSON), the model card
        ``README.md`` (with ``metrics``, e.g. the test block of a run's metrics.json, and ``facts``,
        extra lines about the training data and pretrained model, when given), then
        ``classifier.json``, the record that the folder is complete and which save (``run_id``, a
        fresh one if not given) wrote it. Folders of directions this classifier lacks are removed
        (:func:`ulmtl.classifier_checkpoint.save_classifier`)."""
        self._check_fitted()
        return save_classifier(self, folder, run_id, metrics, facts)

    @classmethod
    def load(cls, folder: str | Path) -> "TextClassifier":
        """Load a classifier written by :meth:`save` (no unpickling); a folder whose save did not
        finish, or that mixes two saves, is refused."""
        return load_classifier(cls, folder)
