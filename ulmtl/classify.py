"""Stage 3: the text classifier, a scikit-learn estimator.

``TextClassifier(config, encoders=...)`` stores its settings only; ``fit`` trains one classifier per
direction (forward, backward) on top of a fine-tuned LM encoder; ``predict_proba`` averages the
directions' probabilities (the paper's bidirectional ensemble). Strategies:

* ``"finetune"``: full ULMFiT: gradual unfreezing, discriminative LRs, slanted triangular LRs;
* ``"feature_extraction"``: the encoder stays frozen, only the head trains;
* ``"scratch"``: no pretrained weights; the vocabulary comes from the training texts;
* ``"auto"``: tries the three (and, for the transformer with ``contrastive="auto"``, finetune with
  the contrastive stage; with ``auto_backbones="both"``, the other backbone's too) on a validation
  split or folds of the training texts and refits the best (``ulmtl.selection``).

Multi-label classification: labels ``y`` that are sets of labels (a list, tuple or set per text, or
an indicator matrix: a 2-D 0/1 array or a DataFrame with one column per label). The head then
gives one logit per label, trained with binary cross-entropy; ``predict_proba`` gives each label's
sigmoid probability, ``predict`` the tuple of labels whose probability is at least ``threshold_``.
"""
from __future__ import annotations

import warnings
from contextlib import nullcontext
from dataclasses import replace
from pathlib import Path

import numpy as np
import torch
from fastai.callback.core import Callback, CancelValidException
from fastai.losses import BCEWithLogitsLossFlat, CrossEntropyLossFlat
from fastai.metrics import AccumMetric, accuracy
from sklearn.base import BaseEstimator, ClassifierMixin
from sklearn.metrics import f1_score

from ulmtl.backbones import ClassifierBackbone, backbone_for
from ulmtl.classifier_checkpoint import load_classifier, save_classifier
from ulmtl.config import (
    ClassifierConfig, ConfigError, ModelConfig, TokenizerConfig, TransformerConfig,
)
from ulmtl.datasets import DataError
from ulmtl.labels import best_threshold, check_label_mode, label_kind, texts_and_labels
from ulmtl.distributed import is_main, world
from ulmtl.loaders import ClassificationLoader
from ulmtl.precision import autocast, resolve_precision
from ulmtl.schedule import head_alone_steps, training_plan
from ulmtl.selection import fit_auto
from ulmtl.training import (
    ScheduledLR, TrainingLog, group_lrs, train_only_groups, make_learner, prepare_torch, set_seed,
)


def _check_encoder_keys(encoders, directions) -> None:
    """A ConfigError when ``encoders`` (a dict) names a direction that is not trained."""
    if isinstance(encoders, dict):
        extra = [key for key in encoders if key not in directions]
        if extra:
            raise ConfigError(f"encoders has key(s) {extra}, but the directions trained are "
                              f"{list(directions)} (classifier.directions): drop those keys, or train those "
                              f"directions")


class SkipValidation(Callback):
    """No validation set was given: skip fastai's per-epoch validation."""

    def before_validate(self):
        raise CancelValidException()


# Fewer optimizer steps than this for the head alone, with head_min_steps unset, gets a warning: at
# 50 and 100 labels (2-4 steps an epoch) a minimum of 50 steps raised validation accuracy on TREC-6
# and MR in every run measured (benchmarks/RESULTS.md, eleventh session).
FEW_HEAD_STEPS = 8
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


def _warn_of_few_head_steps(config: ClassifierConfig, steps: int) -> None:
    """A warning when the plan trains the head alone for fewer than FEW_HEAD_STEPS optimizer steps
    and ``head_min_steps`` is unset."""
    if config.head_min_steps or not 0 < steps < FEW_HEAD_STEPS or not is_main():
        return
    warnings.warn(f"the head trains alone for {steps} optimizer step(s) (classifier.batch_size="
                  f"{config.batch_size}); with the transformer and 50-100 labels, classifier.head_min_steps=50 "
                  f"raised validation accuracy in every run measured (it runs on cached features: "
                  f"seconds): see the README's decision guide", UserWarning, stacklevel=2)


class TextClassifier(ClassifierMixin, BaseEstimator):
    """ULMFiT text classifier: ``fit`` / ``predict`` / ``predict_proba`` / ``score`` on raw strings.

    A scikit-learn estimator: ``get_params`` / ``set_params`` cover the constructor's arguments,
    so ``sklearn.base.clone``, ``Pipeline`` and ``cross_val_score`` work on it.

    ``encoders`` maps each direction in ``config.directions`` to a stage-2 (or stage-1) LM
    checkpoint folder; a single path is taken as the forward encoder. Not needed for ``scratch``.
    ``model_config`` chooses the backbone: a :class:`ModelConfig` (AWD-LSTM, the default) or a
    :class:`TransformerConfig` (a Hugging Face encoder: ``encoders`` is its folder or hub id, and
    empty means the bundled all-MiniLM-L6-v2; ``scratch`` takes its architecture, not its weights).
    Without ``config`` (None), fit uses the classifier defaults of the backbone ``model_config`` then
    names (``TRANSFORMER_CLASSIFIER`` for the transformer): :meth:`resolved_config`. ``model_config``
    None means the AWD-LSTM's defaults, ``tokenizer`` None the default :class:`TokenizerConfig`; the
    constructor stores every argument as given (scikit-learn's convention), and fit resolves them.
    ``log_path`` always gets the training log (JSON lines); ``verbose`` prints progress too.

    Fitted, it has ``classes_``, ``multilabel_`` and ``trained_tokenizer_``; a multi-label one (fitted on sets of labels) also
    ``threshold_``, the decision threshold ``predict`` uses (``config.threshold``, or the one tuned on
    the validation split): set it to trade precision for recall.
    """

    def __init__(self, config: ClassifierConfig | None = None, encoders: dict | str | Path | None = None,
                 model_config: ModelConfig | TransformerConfig | None = None, tokenizer: TokenizerConfig | None = None,
                 log_path: str | Path | None = None, verbose: bool = True):
        self.model_config = model_config
        self.config = config
        self.encoders = encoders
        self.tokenizer = tokenizer
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

    def resolved_config(self) -> ClassifierConfig:
        """A copy of the classifier config fit uses (a later change to ``config`` does not reach a
        fitted model): ``config``, or the classifier defaults of the backbone ``model_config`` names
        when ``config`` is None (so ``set_params(model_config=...)`` brings that backbone's defaults)."""
        return replace(self.config if self.config is not None else self.backbone.classifier_defaults)

    def resolved_model_config(self) -> ModelConfig | TransformerConfig:
        """``model_config``, or the AWD-LSTM's defaults (a :class:`ModelConfig`) when it is None."""
        return self.model_config if self.model_config is not None else ModelConfig()

    def resolved_tokenizer(self) -> TokenizerConfig:
        """A copy of ``tokenizer``, or the default :class:`TokenizerConfig` when it is None: what fit
        prepares texts with (``trained_tokenizer_`` once fitted, which predict uses)."""
        return replace(self.tokenizer) if self.tokenizer is not None else TokenizerConfig()

    @property
    def backbone(self) -> ClassifierBackbone:
        """The backbone :meth:`resolved_model_config` is the architecture section of."""
        return backbone_for(self.resolved_model_config())

    @property
    def trained_backbone(self) -> ClassifierBackbone:
        """The backbone of the fitted models: ``backbone``, or the other one when strategy "auto"
        chose it (``auto_backbones="both"``); ``trained_config_`` is the config they trained with."""
        self._check_fitted()
        return backbone_for(next(iter(self.model_configs_.values())))

    def fit(self, X, y=None, valid: tuple | None = None) -> "TextClassifier":
        """Train on texts ``X`` with labels ``y`` (or one split of a Dataset: its text and label columns,
        ClassLabel ids as their names).

        ``valid``: optional ``(texts, labels)`` evaluated after every epoch (and, for multi-label
        data with ``config.tune_threshold``, the split the threshold is chosen on).
        Labels that are sets (see the module) make a multi-label classifier. With strategy "auto"
        the strategy is chosen on a split of ``X`` alone (:func:`ulmtl.selection.fit_auto`); ``valid``
        serves the refit's per-epoch reports only, so it stays an independent check of the choice.
        A fit that fails leaves the classifier unfitted (nothing of an earlier fit either).
        """
        self._forget_fit()
        try:
            return self._fit(X, y, valid)
        except BaseException:
            self._forget_fit()
            raise

    def _forget_fit(self) -> None:
        """Drop every learned attribute (the names ending in ``_``): the classifier is unfitted."""
        for key in [key for key in vars(self) if key.endswith("_") and not key.startswith("_")]:
            delattr(self, key)

    def _fit(self, X, y, valid: tuple | None) -> "TextClassifier":
        """:meth:`fit` on an unfitted classifier."""
        texts, labels, names = texts_and_labels(X, y)
        if labels is None:
            raise DataError("fit needs labels: pass y, or a dataset with a 'label' column")
        config = self.trained_config_ = self.resolved_config()
        _check_encoder_keys(self.encoders, config.directions)
        self.multilabel_ = isinstance(labels[0], tuple)
        check_label_mode(config, self.multilabel_, valid is not None)
        if names is None:
            names = sorted({v for s in labels for v in s} if self.multilabel_ else set(labels))
        self.classes_ = np.array(names)
        if self.multilabel_ and len(self.classes_) < 2:
            raise DataError(f"the training labels hold {len(self.classes_)} distinct label(s) "
                            f"({self.classes_.tolist()}); a multi-label classifier needs two or more")
        label_ids = self._encode_labels(labels, where="training")
        if not self.multilabel_ and len(set(label_ids.tolist())) < 2:
            raise DataError(f"only one class ({self.classes_[label_ids[0]]!r}) in the training labels; "
                            f"a classifier needs two or more")
        valid_ids = None
        if valid is not None:
            valid_texts, valid_labels, _ = texts_and_labels(valid[0], valid[1])
            valid_ids = self._encode_labels(valid_labels, where="validation")
        if config.strategy == "auto":
            if self.multilabel_:
                raise ConfigError("classifier.strategy=auto chooses among strategies by accuracy on single-label "
                                  "data; for multi-label data choose finetune, feature_extraction or scratch")
            return fit_auto(self, texts, self.classes_[label_ids].tolist(), lambda clf: clf.fit(X, y, valid))
        backbone = self.backbone
        backbone.check(config, self.resolved_model_config(), self.multilabel_)
        set_seed(config.seed)
        self.device_ = prepare_torch()
        sources = backbone.sources(self.encoders, config)
        tokenizer = self.trained_tokenizer_ = self.resolved_tokenizer()
        inputs = backbone.prepare(texts, tokenizer)
        valid_inputs = backbone.prepare(valid_texts, tokenizer) if valid is not None else None
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
        self.selection_, self.chosen_strategy_ = None, config.strategy
        self.trained_encoders_ = self.encoders
        self.threshold_ = config.threshold if self.multilabel_ else None
        if self.multilabel_ and config.tune_threshold:
            self.threshold_, f1 = best_threshold(valid_ids, self.predict_proba(valid_texts), config.threshold)
            if self.verbose and is_main():
                print(f"ulmtl: decision threshold {self.threshold_} (micro-F1 {f1:.4f} on the validation split)",
                      flush=True)
        return self

    def _encode_labels(self, labels, where: str, unseen_ok: bool = False) -> np.ndarray:
        """Class ids (single-label), or a float 0/1 matrix, one column per class (multi-label). A
        label never seen in training is a DataError, or with ``unseen_ok`` id -1 (multi-label: no
        column); labels of another mode or type than the classes are always a DataError."""
        classes = self.classes_.tolist()
        index = {c: i for i, c in enumerate(classes)}
        if self.multilabel_ != isinstance(labels[0], tuple):
            kinds = ("a set of labels per text", "one label per text")
            raise DataError(f"the {where} labels are {kinds[self.multilabel_]}, but this classifier was "
                            f"trained on {kinds[not self.multilabel_]}")
        given = [v for s in labels for v in s] if self.multilabel_ else labels
        kind, trained = (label_kind(given[0]) if given else None), label_kind(classes[0])
        if kind is not None and kind != trained:
            raise DataError(f"the {where} labels are {kind}s ({given[0]!r}), but the training labels are "
                            f"{trained}s ({classes})")
        unseen = sorted({str(v) for v in given if v not in index})
        if unseen and not unseen_ok:
            raise DataError(f"{where} labels {unseen} never appear in the training labels {classes}")
        if not self.multilabel_:
            return np.array([index.get(v, -1) for v in labels], dtype=np.int64)
        matrix = np.zeros((len(labels), len(index)), dtype=np.float32)
        for row, label_set in enumerate(labels):
            matrix[row, [index[v] for v in label_set if v in index]] = 1
        return matrix

    def _loss_and_metrics(self) -> tuple:
        """Cross-entropy and accuracy; multi-label: binary cross-entropy and micro-F1 at ``config.threshold``."""
        if not self.multilabel_:
            return CrossEntropyLossFlat(), [accuracy]
        micro = AccumMetric(f1_score, activation="sigmoid", thresh=self.trained_config_.threshold, to_np=True,
                            invert_arg=True, flatten=False, name="micro_f1", average="micro", zero_division=0)
        return BCEWithLogitsLossFlat(), [micro]

    def _fit_direction(self, backbone: ClassifierBackbone, direction: str, source, inputs: list,
                       label_ids: np.ndarray, valid_inputs: list | None, valid_ids) -> tuple:
        """(vocab, trained model, history, settings) of one direction's classifier on ``backbone``."""
        config = self.trained_config_
        vocab, model, settings = backbone.build(direction, source, inputs, len(self.classes_),
                                                self.resolved_model_config(), config, self.trained_tokenizer_,
                                                self.verbose)
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
        """The progress writer of a stage before the classifier's (printing only when verbose)."""
        return TrainingLog(self.log_path, label=label, echo=self.verbose).write

    def _train(self, learn, direction: str, has_valid: bool, head_features=None) -> tuple:
        """Run the training plan on ``learn``: (the trained model, what each stage trained and how).

        ``head_features``: a context in which ``learn`` trains the head on cached features of the
        frozen encoder, used for the stages that train the head alone."""
        config = self.trained_config_
        if not has_valid:
            learn.add_cb(SkipValidation())
        history = []
        n_groups = len(learn.opt.param_lists)
        plan = training_plan(config, n_groups, len(learn.dls.train))
        _warn_of_few_head_steps(config, head_alone_steps(plan, n_groups, len(learn.dls.train)))
        for trainable, epochs, max_lrs in plan:
            train_only_groups(learn, trainable)
            schedule = ScheduledLR(max_lrs, config.schedule, config.cut_frac, config.ratio)
            log = TrainingLog(self.log_path, every=50, label=f"classifier-{direction}", echo=self.verbose)
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
        texts, _, _ = texts_and_labels(X, None)
        inputs = self.trained_backbone.prepare(texts, self.trained_tokenizer_)
        return {direction: self._direction_proba(direction, model, inputs, batch_size)
                for direction, model in self.models_.items()}

    def predict_proba(self, X, batch_size: int | None = None) -> np.ndarray:
        """Class probabilities, shape (n_texts, n_classes), in the order of ``X``; directions averaged.
        Multi-label: each label's own (sigmoid) probability; a row need not sum to 1."""
        by_direction = self.predict_proba_by_direction(X, batch_size)
        return sum(by_direction.values()) / len(by_direction)

    def _direction_proba(self, direction, model, inputs, batch_size) -> np.ndarray:
        backbone, vocab, config = self.trained_backbone, self.vocabs_[direction], self.trained_config_
        batch_size = batch_size or config.batch_size * 2
        docs = backbone.encode(vocab, inputs, config)
        loader = ClassificationLoader(docs, None, batch_size, backwards=direction == "backward",
                                      collate=backbone.collate(vocab, config))
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
        self.models_ = {d: self.trained_backbone.quantize_int8(m) for d, m in self.models_.items()}
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
        accuracy, the share of texts whose predicted set of labels is exactly theirs. A text whose
        label (multi-label: one of whose labels) never appears in training counts as wrong."""
        self._check_fitted()
        texts, labels, _ = texts_and_labels(X, y)
        if labels is None:
            raise DataError("score needs labels")
        truth = self._encode_labels(labels, where="scored", unseen_ok=True)
        if self.multilabel_:
            known = set(self.classes_.tolist())
            seen = np.array([known.issuperset(label_set) for label_set in labels])
            exact = np.all((self.predict_proba(texts) >= self.threshold_) == (truth == 1), axis=1)
            return float(np.mean(seen & exact))
        return float(np.mean(self.predict_proba(texts).argmax(axis=1) == truth))

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
