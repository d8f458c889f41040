"""Strategy ``"auto"``: the decision guide as a function.

:func:`select_strategy` fits each candidate (a backbone and a strategy) on one seeded, stratified
part of the training texts and scores it on the rest (or, for few texts, on each of k stratified
folds in turn), in order (each backbone's cheapest first), within a time budget, and keeps the best; :func:`fit_auto` is how ``TextClassifier.fit`` uses it: the candidates are the
classifier's backbone's strategies (feature_extraction, finetune, scratch; for the transformer with
``contrastive="auto"``, finetune with the contrastive stage too), then (``auto_backbones="both"``)
the other backbone's with its own defaults, the winner is refitted
on every training text, and the record of the choice becomes ``selection_``. Only the texts given
to ``fit`` are split and scored: a test split never reaches the selection.
"""
from __future__ import annotations

import dataclasses
import math
import time
import warnings
from collections import Counter
from dataclasses import dataclass
from typing import Callable, Literal

import torch
from sklearn.base import clone
from sklearn.model_selection import StratifiedKFold, train_test_split

from ulmtl.backbones import BACKBONES
from ulmtl.checkpoint import CheckpointError
from ulmtl.datasets import DataError
from ulmtl.distributed import from_main_process, is_main
from ulmtl.training import NonFiniteLoss

# Cheapest first: the head alone on frozen features; gradual unfreezing (the lower groups train
# in the later stages only); every group from the first batch, and (AWD-LSTM) a vocabulary built.
STRATEGIES = ("feature_extraction", "finetune", "scratch")
# What ends a candidate without ending the selection: training that diverged or ran out of device
# memory. Anything else (a bad encoder path, bad data) is the caller's error and is raised.
CANDIDATE_FAILURES = (NonFiniteLoss, torch.OutOfMemoryError)
# auto_folds=0 cross-validates when one hold-out would hold fewer texts than this (the standard
# error of an accuracy measured on n texts is up to 0.5 / sqrt(n): 11 points at 20, 5 at 100), with
# round(1 / auto_valid_fraction) folds, at most AUTO_MAX_FOLDS.
AUTO_MIN_HOLD_OUT = 100
AUTO_MAX_FOLDS = 10

Status = Literal["ran", "skipped", "failed"]


@dataclass(frozen=True)
class Candidate:
    """One way to fit: a backbone and a strategy, with the transformer's contrastive stage or not;
    ``unavailable`` says why it cannot run (then it is reported as skipped, not run)."""

    backbone: str
    strategy: str
    unavailable: str = ""
    contrastive: bool = False

    @property
    def name(self) -> str:
        return f"{self.backbone} {self.strategy}" + (" + contrastive" if self.contrastive else "")


@dataclass
class Trial:
    """What became of one candidate: its status, validation accuracy, seconds, and why."""

    candidate: Candidate
    status: Status
    valid_accuracy: float | None = None
    seconds: float = 0.0
    reason: str = ""
    fold_accuracies: tuple[float, ...] = ()

    def to_dict(self) -> dict:
        return {"name": self.candidate.name, "backbone": self.candidate.backbone,
                "strategy": self.candidate.strategy, "contrastive": self.candidate.contrastive,
                "status": self.status, "valid_accuracy": None if self.valid_accuracy is None else round(self.valid_accuracy, 4),
                "fold_accuracies": [round(a, 4) for a in self.fold_accuracies],
                "seconds": round(self.seconds, 2), "reason": self.reason}


@dataclass
class Selection:
    """Every candidate's trial in the order tried, the winner and why it won."""

    trials: list[Trial]
    winner: Candidate
    reason: str
    n_fit: int
    n_valid: int
    valid_fraction: float
    budget_s: float
    seed: int
    folds: int = 1

    def to_dict(self) -> dict:
        won = next(t for t in self.trials if t.candidate == self.winner)
        return {"candidates": [t.to_dict() for t in self.trials],
                "winner": {"name": self.winner.name, "backbone": self.winner.backbone,
                           "strategy": self.winner.strategy, "contrastive": self.winner.contrastive,
                           "valid_accuracy": round(won.valid_accuracy, 4)},
                "reason": self.reason, "n_fit": self.n_fit, "n_valid": self.n_valid, "folds": self.folds,
                "valid_fraction": self.valid_fraction, "budget_s": self.budget_s, "seed": self.seed}


def validation_split(labels: list, fraction: float, seed: int) -> tuple[list[int], list[int]]:
    """Seeded stratified split of ``labels``' indices: (fitted on, validated on). Refused with a
    DataError when a class has too few examples to be in both parts."""
    counts = Counter(labels)
    n = len(labels)
    n_valid = math.ceil(fraction * n)  # as train_test_split rounds
    where = (f"strategy 'auto' validates on classifier.auto_valid_fraction={fraction:g} of the {n} "
             f"training texts")
    _refuse_single_examples(counts, f"{where}, stratified")
    if n_valid < len(counts) or n - n_valid < len(counts):
        raise DataError(f"{where} ({n_valid} texts held out, {n - n_valid} left to fit on), but each part "
                        f"needs one text of each of the {len(counts)} classes; change auto_valid_fraction or "
                        f"give more examples")
    fit, valid = train_test_split(list(range(n)), test_size=n_valid, stratify=labels, random_state=seed)
    return sorted(fit), sorted(valid)


def _refuse_single_examples(counts: Counter, where: str) -> None:
    """A DataError, after ``where``, naming the classes with one example (a stratified split needs 2)."""
    rare = sorted(str(c) for c, k in counts.items() if k < 2)
    if rare:
        raise DataError(f"{where}: every class needs 2 examples or more, and class(es) {rare} have 1; give "
                        f"more examples or choose a strategy")


def number_of_folds(labels: list, fraction: float, folds: int) -> int:
    """How many folds ``auto_folds=folds`` means for the training ``labels``: 1 (one hold-out of
    ``fraction``) or k >= 2 (stratified k-fold). 0 chooses: one hold-out when it holds at least
    AUTO_MIN_HOLD_OUT texts; else round(1 / fraction) folds, at most AUTO_MAX_FOLDS and at most the
    largest class's count (a stratified split cannot make more), one hold-out if that leaves fewer
    than 2. A DataError when an explicit k is more than that count."""
    largest = max(Counter(labels).values())
    if folds == 0:
        if math.ceil(fraction * len(labels)) >= AUTO_MIN_HOLD_OUT:
            return 1
        k = min(AUTO_MAX_FOLDS, max(2, round(1 / fraction)), largest)
        return k if k >= 2 else 1
    if folds > largest:
        raise DataError(f"strategy 'auto' cross-validates over classifier.auto_folds={folds} stratified folds of "
                        f"the {len(labels)} training texts, but no class has {folds} texts (the largest has "
                        f"{largest}); lower auto_folds or give more examples")
    return folds


def validation_folds(labels: list, fraction: float, folds: int, seed: int) -> list[tuple[list[int], list[int]]]:
    """The (fitted on, validated on) index pairs of ``auto_folds=folds`` (:func:`number_of_folds`):
    one seeded stratified hold-out, or k seeded stratified folds (each text validated once; a class
    with fewer than k texts is in fewer folds, and every fit part has each class while it has 2
    texts or more). Refused with a DataError when a class has one text."""
    k = number_of_folds(labels, fraction, folds)
    if k == 1:
        return [validation_split(labels, fraction, seed)]
    _refuse_single_examples(Counter(labels), f"strategy 'auto' cross-validates over {k} stratified folds of the "
                                             f"{len(labels)} training texts")
    splitter = StratifiedKFold(n_splits=k, shuffle=True, random_state=seed)
    with warnings.catch_warnings():  # a class with fewer than k texts: handled above, in fewer folds
        warnings.filterwarnings("ignore", "The least populated class", UserWarning)
        return [(sorted(fit.tolist()), sorted(valid.tolist()))
                for fit, valid in splitter.split(list(range(len(labels))), labels)]


def select_strategy(make_candidate: Callable[[Candidate], object], candidates: list[Candidate],
                    texts: list[str], labels: list, valid_fraction: float, time_budget_s: float, seed: int,
                    announce: Callable[[str], None] = lambda line: None, folds: int = 1) -> Selection:
    """Try ``candidates`` in the given order (each backbone's cheapest first) and keep the best.

    Each estimator ``make_candidate(candidate)`` returns is fitted on a seeded stratified
    ``1 - valid_fraction`` of ``texts`` / ``labels`` and scored (``score``: accuracy) on the rest;
    with ``folds`` (``auto_folds``, :func:`number_of_folds`) meaning k >= 2 folds, a fresh estimator
    is fitted on each fold's complement and the accuracy is pooled over all k validation folds.
    Once one candidate has run, one that would start after ``time_budget_s`` seconds (0: no
    budget) is skipped. The winner has the highest validation accuracy; of tied ones, the one tried
    first (the cheaper). ``announce`` receives one line per candidate as it starts.
    """
    splits = validation_folds(labels, valid_fraction, folds, seed)
    k = len(splits)
    n_fit, n_valid = min(len(fit) for fit, _ in splits), sum(len(valid) for _, valid in splits)
    plan = (f"fitting on {n_fit} training texts, validating on {n_valid}" if k == 1 else
            f"{k}-fold cross-validation of {len(labels)} training texts (fitting on {n_fit} or more per fold)")
    trials, started = [], time.perf_counter()
    for number, candidate in enumerate(candidates, 1):
        # Under torchrun every process must take the same branch: rank 0's clock decides.
        spent = from_main_process([round((time.perf_counter() - started) * 1e6)])[0] / 1e6
        if candidate.unavailable:
            trials.append(Trial(candidate, "skipped", reason=candidate.unavailable))
            continue
        if time_budget_s and spent >= time_budget_s and any(t.status == "ran" for t in trials):
            trials.append(Trial(candidate, "skipped", reason=f"time budget of {time_budget_s:g} s spent "
                                                             f"({spent:.1f} s used)"))
            continue
        announce(f"trying {candidate.name} ({number}/{len(candidates)}): {plan}")
        begun = time.perf_counter()
        try:
            accuracies = [_fit_and_score(make_candidate(candidate), texts, labels, fit_rows, valid_rows)
                          for fit_rows, valid_rows in splits]
        except CANDIDATE_FAILURES as err:
            trials.append(Trial(candidate, "failed", seconds=time.perf_counter() - begun,
                                reason=f"{type(err).__name__}: {str(err).splitlines()[0][:200]}"))
            continue
        pooled = sum(a * len(valid) for a, (_, valid) in zip(accuracies, splits)) / n_valid
        trials.append(Trial(candidate, "ran", pooled, time.perf_counter() - begun,
                            fold_accuracies=tuple(accuracies) if k > 1 else ()))
    ran = [t for t in trials if t.status == "ran"]
    if not ran:
        raise DataError("strategy 'auto': no candidate could be fitted (" + "; ".join(
            f"{t.candidate.name}: {t.status}, {t.reason}" for t in trials) + ")")
    best = max(ran, key=lambda t: t.valid_accuracy)  # max keeps the first of equal ones: the cheaper
    return Selection(trials, best.candidate, _reason(best, trials), n_fit, n_valid, valid_fraction,
                     time_budget_s, seed, k)


def _fit_and_score(estimator, texts: list[str], labels: list, fit_rows: list[int], valid_rows: list[int]) -> float:
    """``estimator`` fitted on the texts at ``fit_rows``, its accuracy on those at ``valid_rows``."""
    estimator.fit([texts[i] for i in fit_rows], [labels[i] for i in fit_rows])
    return float(estimator.score([texts[i] for i in valid_rows], [labels[i] for i in valid_rows]))


def _reason(best: Trial, trials: list[Trial]) -> str:
    """Why ``best`` won, in one line."""
    others = [t for t in trials if t is not best]
    ran = [t for t in others if t.status == "ran"]
    left_out = "; ".join(f"{t.candidate.name} {t.status}: {t.reason}" for t in others if t.status != "ran")
    if not ran:
        return f"the only candidate that ran (validation accuracy {best.valid_accuracy:.4f})" + \
            (f"; {left_out}" if left_out else "")
    tied = [t.candidate.name for t in ran if t.valid_accuracy == best.valid_accuracy]
    lower = [f"{t.valid_accuracy:.4f} ({t.candidate.name})" for t in ran
             if t.valid_accuracy != best.valid_accuracy]
    text = f"highest validation accuracy {best.valid_accuracy:.4f}"
    if lower:
        text += f" vs {', '.join(lower)}"
    if tied:
        text += f"; tied with {', '.join(tied)}: the one tried first wins"
    return text + (f"; {left_out}" if left_out else "")


def with_strategy(config, strategy: str):
    """The ClassifierConfig ``config`` with ``strategy`` and the auto-only fields at their defaults
    (scratch: ``head_min_steps`` too, it has no head stage)."""
    resets = {f.name: f.default for f in dataclasses.fields(config)
              if f.name.startswith("auto_") or (strategy == "scratch" and f.name == "head_min_steps")}
    return dataclasses.replace(config, strategy=strategy, **resets)


def chooses_contrastive(classifier) -> bool:
    """Whether ``classifier``'s selection decides the contrastive stage: a transformer with
    ``contrastive="auto"``."""
    return classifier.backbone.name == "transformer" and classifier.resolved_model_config().contrastive == "auto"


def candidates_for(classifier, n_texts: int) -> list[Candidate]:
    """The candidates of ``classifier`` for ``n_texts`` training texts: its backbone's strategies,
    cheapest first, then (``auto_backbones="both"``) those of the other backbone
    (:func:`other_backbone`). The transformer's are always available (no encoders: the bundled one;
    scratch takes its architecture); the AWD-LSTM's pretrained ones need ``encoders``. With
    :func:`chooses_contrastive`, the three run without the contrastive stage and finetune with it
    comes after them (the dearest; unavailable above ``contrastive_auto_max`` texts, where the stage
    is off)."""
    candidates = _own_candidates(classifier, n_texts)
    if classifier.resolved_config().auto_backbones == "both":
        candidates += _own_candidates(other_backbone(classifier), n_texts)
    return candidates


def _own_candidates(classifier, n_texts: int) -> list[Candidate]:
    backbone = classifier.backbone
    lacking = backbone.needs_encoders and classifier.encoders is None
    candidates = [Candidate(backbone.name, strategy, f"no pretrained {backbone.name} encoders given"
                            if lacking and strategy != "scratch" else "") for strategy in STRATEGIES]
    if chooses_contrastive(classifier):
        limit = classifier.resolved_model_config().contrastive_auto_max
        candidates.append(Candidate(backbone.name, "finetune", f"more than transformer.contrastive_auto_max="
                                    f"{limit} training texts ({n_texts})" if n_texts > limit else "",
                                    contrastive=True))
    return candidates


def other_backbone(classifier):
    """An unfitted classifier of the backbone ``classifier`` is not of, with that backbone's
    classifier defaults and architecture section, ``classifier``'s seed and tokenizer, and no
    encoders (the transformer: its bundled encoder; the AWD-LSTM: scratch only)."""
    other = next(b for name, b in BACKBONES.items() if name != classifier.backbone.name)
    config = dataclasses.replace(other.classifier_defaults, seed=classifier.resolved_config().seed)
    return type(classifier)(config, encoders=None, model_config=other.default_settings(),
                            tokenizer=classifier.tokenizer, log_path=classifier.log_path,
                            verbose=classifier.verbose)


def candidate_estimator(classifier, candidate: Candidate, log_path=None):
    """An unfitted classifier that fits as ``candidate`` says: a copy of ``classifier`` (or, for the
    other backbone's candidates, of :func:`other_backbone`) with its strategy (the auto-only fields
    reset) and, where the selection decides it, the contrastive stage on or off."""
    base = classifier if candidate.backbone == classifier.backbone.name else other_backbone(classifier)
    params = {"config": with_strategy(base.resolved_config(), candidate.strategy), "log_path": log_path}
    if chooses_contrastive(base):
        params["model_config"] = dataclasses.replace(base.resolved_model_config(),
                                                     contrastive="on" if candidate.contrastive else "off")
    return clone(base).set_params(**params)


def fit_auto(classifier, texts: list[str], labels: list, refit: Callable[[object], object]):
    """Strategy "auto" for a TextClassifier: select on its training texts, then ``refit(winner)``
    (the winner's unfitted classifier, :func:`candidate_estimator`, fitted there on all the training
    data) and take the winner's fitted state. Sets ``selection_`` (a dict) and
    ``chosen_strategy_``; prints the table when ``classifier.verbose``. The candidates log to the
    screen only: ``log_path`` gets the refit's training alone."""
    config = classifier.resolved_config()
    say = (lambda line: print(f"ulmtl: auto: {line}", flush=True)) if classifier.verbose and is_main() \
        else (lambda line: None)
    selection = select_strategy(lambda candidate: candidate_estimator(classifier, candidate),
                                candidates_for(classifier, len(texts)), texts, labels, config.auto_valid_fraction,
                                config.auto_budget_s, config.seed, say, config.auto_folds)
    say(f"{selection.winner.name} wins: {selection.reason}; refitting it on all {len(texts)} training texts")
    begun = time.perf_counter()
    fitted = candidate_estimator(classifier, selection.winner, classifier.log_path)
    refit(fitted)
    for key, value in vars(fitted).items():
        if key.endswith("_") and not key.startswith("_"):
            setattr(classifier, key, value)
    if chooses_contrastive(classifier) and selection.winner.backbone == classifier.backbone.name:
        # Saved as given ("auto"); what ran is the winner's record.
        classifier.model_configs_ = {direction: dataclasses.replace(settings, contrastive="auto")
                                     for direction, settings in classifier.model_configs_.items()}
    classifier.selection_ = {**selection.to_dict(), "n_refit": len(texts),
                             "refit_seconds": round(time.perf_counter() - begun, 2)}
    classifier.chosen_strategy_ = selection.winner.strategy
    for line in table(classifier.selection_):
        say(line)
    return classifier


def table(record: dict) -> list[str]:
    """A selection record (``Selection.to_dict``) as aligned lines of text, winner marked."""
    rows = [("candidate", "status", "valid acc", "seconds", "note")]
    for trial in record["candidates"]:
        accuracy = "" if trial["valid_accuracy"] is None else f"{trial['valid_accuracy']:.4f}"
        mark = "winner" if trial["name"] == record["winner"]["name"] else trial["reason"]
        rows.append((trial["name"], trial["status"], accuracy, f"{trial['seconds']:.1f}", mark))
    widths = [max(len(row[i]) for row in rows) for i in range(4)]
    return [("  ".join(cell.ljust(w) for cell, w in zip(row[:4], widths)) + "  " + row[4]).rstrip()
            for row in rows]


def restore(saved: dict, strategy: str, where) -> tuple[dict | None, str]:
    """(``selection_``, ``chosen_strategy_``) of a classifier loaded from a checkpoint config
    ``saved`` whose classifier section has ``strategy``; CheckpointError naming ``where`` when its
    selection record does not fit."""
    selection = saved.get("selection")
    if selection is None:
        if strategy == "auto":
            raise CheckpointError(f"{where}: strategy 'auto' but no field 'selection' saying which "
                                  f"strategy won")
        return None, strategy
    winner = selection.get("winner") if isinstance(selection, dict) else None
    chosen = winner.get("strategy") if isinstance(winner, dict) else None
    if chosen not in STRATEGIES:
        raise CheckpointError(f"{where}: field 'selection' must record the winner's strategy (one of "
                              f"{', '.join(STRATEGIES)}); got {chosen!r}")
    return selection, chosen
