"""What a run leaves to look at: plots, ``report.md`` and the model card of a saved classifier.

:func:`write_report` writes ``confusion_matrix.png`` (not for multi-label runs, whose report has a
per-label table instead), ``training.png`` (losses and accuracy, or micro-F1, per epoch, each layer
group's learning rate over the batches: the slanted triangular schedule and the unfreezing stages)
and ``report.md`` into a run folder; :func:`model_card` is the
``README.md`` that :meth:`TextClassifier.save` writes next to the weights. Plots use matplotlib's
object API (``Figure``), which needs no display and leaves pyplot's global state alone.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np

from ulmtl.backbones.transformer import BUNDLED_NAME

CONFUSION_PLOT = "confusion_matrix.png"
TRAINING_PLOT = "training.png"
REPORT_FILE = "report.md"
TOP_LOSSES = 10
TEXT_CHARS = 200  # of each text shown in the top-losses table


# --------------------------------------------------------------------------- describing a classifier

def backbone_of(classifier) -> str:
    return classifier.trained_backbone.name


def pretrained_of(classifier) -> str:
    """The pretrained encoder a classifier was fitted from, as far as the classifier knows it."""
    if classifier.chosen_strategy_ == "scratch":
        return "none (strategy scratch: random initial weights)"
    encoders = classifier.trained_encoders_
    if backbone_of(classifier) == "transformer":
        source = encoders.get("forward") if isinstance(encoders, dict) else encoders
        return f"{BUNDLED_NAME} (bundled)" if not source or str(source) == "bundled" else str(source)
    if encoders is None:
        return "not recorded (a loaded classifier saved again)"
    if isinstance(encoders, dict):
        return ", ".join(f"{d}: {p}" for d, p in encoders.items())
    return str(encoders)


def _other_backbone_named(classifier) -> str:
    """"<backbone> " when strategy "auto" chose another backbone than the classifier's own (the
    first candidate's: a loaded classifier's ``backbone`` is the trained one); else ""."""
    trained, candidates = backbone_of(classifier), (classifier.selection_ or {}).get("candidates") or [{}]
    own = candidates[0].get("backbone", trained)
    return f"{trained} " if trained != own else ""


def schedule_lines(classifier) -> list[str]:
    """One line per training stage: trainable layer groups, epochs, peak LR of the top and bottom group."""
    config = classifier.trained_config_
    history = next(iter(classifier.history_.values()), [])
    given = classifier.resolved_config().strategy
    strategy = given if given == classifier.chosen_strategy_ else \
        f"{given} (chose {_other_backbone_named(classifier)}{classifier.chosen_strategy_})"
    lines = [f"strategy {strategy}, unfreezing {config.unfreezing}, LR schedule {config.schedule} "
             f"(cut_frac {config.cut_frac}, ratio {config.ratio:g}), discriminative LRs "
             f"{'on (decay ' + format(config.lr_decay, 'g') + ')' if config.discriminative else 'off'}"]
    for number, stage in enumerate(history, 1):
        if stage.get("stage") == "contrastive":
            lines.append(f"stage {number}: contrastive pairs (SetFit's), {stage['pairs']} pairs in "
                         f"{stage['steps']} steps of {stage['batch_size']}, LR {stage['lr']:.3g}, loss "
                         f"{stage['first_loss']:.3f} to {stage['final_loss']:.3f}")
            continue
        groups, peak = stage["groups"], stage["peak_lrs"]
        n_groups = len(peak)
        lines.append(f"stage {number}: layer groups {groups} of 0..{n_groups - 1} trainable, "
                     f"{stage['epochs']} epoch(s), peak LR {peak[-1]:.3g} (top group) to {peak[0]:.3g} "
                     f"(bottom group)")
    return lines


def _metrics_table(metrics: dict) -> list[str]:
    if "micro_f1" in metrics:
        return _multilabel_table(metrics)
    lines = [f"accuracy **{metrics['accuracy']}**, error {metrics['error']}, "
             f"macro-F1 **{metrics['macro_f1']}** on {metrics['n_test']} texts", "",
             "| class | precision | recall | F1 | support |",
             "|---|---|---|---|---|"]
    lines += [f"| {_cell(c)} | {m['precision']} | {m['recall']} | {m['f1']} | {m['support']} |"
              for c, m in metrics["per_class"].items()]
    return lines


def _multilabel_table(metrics: dict) -> list[str]:
    """Micro- and macro-F1, subset accuracy and the per-label table of :func:`ulmtl.recipe.multilabel_metrics`."""
    lines = [f"micro-F1 **{metrics['micro_f1']}**, macro-F1 **{metrics['macro_f1']}** (micro precision "
             f"{metrics['micro_precision']}, recall {metrics['micro_recall']}), subset accuracy "
             f"{metrics['subset_accuracy']}, Hamming loss {metrics['hamming_loss']} on {metrics['n_test']} texts, "
             f"decision threshold {metrics['threshold']}", "",
             "| label | precision | recall | F1 | support | predicted |",
             "|---|---|---|---|---|---|"]
    lines += [f"| {_cell(c)} | {m['precision']} | {m['recall']} | {m['f1']} | {m['support']} | {m['predicted']} |"
              for c, m in metrics["per_label"].items()]
    return lines


def _cell(value) -> str:
    """``value`` as one Markdown table cell: one line, pipes escaped."""
    return " ".join(str(value).split()).replace("|", "\\|")


# --------------------------------------------------------------------------- the model card

def model_card(classifier, metrics: dict | None, facts: dict[str, str], command: str) -> str:
    """The ``README.md`` of a saved classifier: intended use, training data, model, metrics, provenance."""
    from ulmtl import __version__
    classes = [str(c) for c in classifier.classes_.tolist()]
    counts = getattr(classifier, "train_counts_", {})
    n_train = sum(counts.values())
    task = (f"Assigns a set of labels, any of {len(classes)} ({', '.join(classes)}), to a text: each label whose "
            f"probability is at least {classifier.threshold_}" if classifier.multilabel_ else
            f"Assigns one of {len(classes)} classes ({', '.join(classes)}) to a text")
    lines = ["# ulmtl text classifier", "",
             "## Intended use", "",
             f"{task}. It was trained on the "
             f"data below and is meant for texts like those; check it on a labelled sample of your own "
             f"texts (`ulmtl evaluate THIS_FOLDER FILE`) before relying on it, and more so on texts of "
             f"another domain, language or length.", "",
             "    ulmtl predict THIS_FOLDER texts.txt --output predictions.csv", "",
             "    from ulmtl import TextClassifier",
             "    TextClassifier.load(\"THIS_FOLDER\").predict([\"a text\"])", "",
             "## Training data", ""]
    if classifier.multilabel_:
        lines.append("Training texts with each label (a text may have several, or none):" if counts
                     else "Not recorded.")
    else:
        lines.append(f"{n_train} labelled training texts:" if counts else "Not recorded.")
    if counts:
        lines += ["", f"| {'label' if classifier.multilabel_ else 'class'} | training texts |", "|---|---|"]
        lines += [f"| {_cell(c)} | {n} |" for c, n in counts.items()]
    lines += [f"- {key}: {value}" for key, value in facts.items() if key.startswith("data")]
    lines += ["", "## Model", "",
              f"- backbone: {backbone_of(classifier)}",
              f"- pretrained model: {facts.get('pretrained model') or pretrained_of(classifier)}",
              f"- directions: {', '.join(classifier.models_)}"]
    lines += [f"- {key}: {value}" for key, value in facts.items()
              if not key.startswith("data") and key != "pretrained model"]
    lines += [f"- {line}" for line in schedule_lines(classifier)]
    if classifier.selection_:
        lines.append(f"- strategy auto: {classifier.selection_['reason']}")
    lines += ["", "## Metrics", ""]
    lines += _metrics_table(metrics) if metrics else ["None recorded with this save (a classifier saved "
                                                      "from Python: `save(folder, metrics=...)`)."]
    lines += ["", "## Provenance", "", f"- command: `{command}`", f"- ulmtl version: {__version__}", ""]
    return "\n".join(lines)


# --------------------------------------------------------------------------- plots

def plot_confusion(matrix: list[list[int]], classes: list[str], path: Path) -> Path:
    """The confusion matrix (rows: true class, columns: predicted), coloured by each row's share."""
    from matplotlib.figure import Figure
    counts = np.asarray(matrix, dtype=float)
    share = counts / np.maximum(counts.sum(axis=1, keepdims=True), 1)
    size = 2.5 + 0.55 * len(classes)
    figure = Figure(figsize=(size + 1, size))
    axes = figure.subplots()
    image = axes.imshow(share, cmap="Blues", vmin=0, vmax=1)
    figure.colorbar(image, ax=axes, label="share of the true class")
    ticks = range(len(classes))
    labels = [c if len(c) <= 16 else c[:15] + "…" for c in classes]
    axes.set_xticks(ticks, labels, rotation=45, ha="right")
    axes.set_yticks(ticks, labels)
    for i in ticks:
        for j in ticks:
            axes.text(j, i, str(int(counts[i, j])), ha="center", va="center",
                      color="white" if share[i, j] > 0.5 else "black", fontsize=8)
    axes.set_xlabel("predicted")
    axes.set_ylabel("true")
    axes.set_title(f"confusion matrix ({int(counts.sum())} test texts)")
    figure.tight_layout()
    figure.savefig(path, dpi=100)
    return path


def plot_training(history: list[dict], path: Path, title: str = "") -> Path:
    """Training loss over the batches and per epoch (validation loss and accuracy when validated);
    the learning rate of each layer group while it trains, stage after stage (a contrastive stage,
    whose loss is another quantity, is left out)."""
    history = [stage for stage in history if stage.get("stage") != "contrastive"]
    from matplotlib.figure import Figure
    figure = Figure(figsize=(11, 4))
    loss_axes, accuracy_axes, lr_axes = figure.subplots(1, 3)
    offset, boundaries = 0, []
    epoch_x, epoch_values = [], []
    n_groups = max((len(stage["peak_lrs"]) for stage in history), default=0)
    colours = [f"C{k % 10}" for k in range(n_groups)]
    for number, stage in enumerate(history, 1):
        trace = stage.get("trace", {})
        batches = np.asarray(trace.get("batch", []), dtype=float) + offset
        if len(trace.get("loss", [])):
            loss_axes.plot(batches[:len(trace["loss"])], trace["loss"], color="C0", lw=1,
                           label="training loss (smoothed, per batch)" if number == 1 else None)
        lrs = np.asarray(trace.get("lrs", []), dtype=float)
        for group in stage["groups"] if len(lrs) else []:
            lr_axes.plot(batches, lrs[:, group], color=colours[group], lw=1.2,
                         label=_group_label(group, n_groups) if group not in {g for s in history[:number - 1]
                                                                  for g in s["groups"]} else None)
        n_batches = trace.get("n_batches", 0)
        values = stage.get("epoch_values", [])
        for epoch, value in enumerate(values, 1):
            epoch_x.append(offset + n_batches * epoch / max(len(values), 1))
            epoch_values.append(value)
        offset += n_batches
        boundaries.append(offset)
    for key, colour, marker in (("train_loss", "C0", "o"), ("valid_loss", "C1", "s")):
        points = [(x, v[key]) for x, v in zip(epoch_x, epoch_values) if key in v]
        if points:
            loss_axes.plot(*zip(*points), color=colour, marker=marker, ls="--",
                           label=key.replace("_", " ") + " (per epoch)")
    metric = "micro_f1" if any("micro_f1" in v for v in epoch_values) else "accuracy"
    accuracy = [(x, v[metric]) for x, v in zip(epoch_x, epoch_values) if metric in v]
    if accuracy:
        accuracy_axes.plot(*zip(*accuracy), color="C2", marker="o")
        accuracy_axes.set_ylim(0, 1)
    else:
        accuracy_axes.text(0.5, 0.5, "no validation split\n(--valid_fraction=0.1 holds one out)",
                           ha="center", va="center", transform=accuracy_axes.transAxes)
    for axes in (loss_axes, accuracy_axes, lr_axes):
        axes.set_xlim(0, max(offset, 1))
        for x in boundaries[:-1]:
            axes.axvline(x, color="grey", ls=":", lw=1)
        axes.set_xlabel("training batch (dotted: next unfreezing stage)")
    loss_axes.set_title("loss")
    accuracy_axes.set_title(f"validation {metric.replace('micro_f1', 'micro-F1')} per epoch")
    lr_axes.set_title("learning rate per trainable layer group")
    lr_axes.set_yscale("log")
    if loss_axes.get_legend_handles_labels()[0]:
        loss_axes.legend(fontsize=7)
    handles, labels = lr_axes.get_legend_handles_labels()
    if handles:  # top group first, as it is unfrozen first
        pairs = sorted(zip(labels, handles), key=lambda pair: -int(pair[0].split()[1]))
        lr_axes.legend([h for _, h in pairs], [label for label, _ in pairs], fontsize=7)
    if title:
        figure.suptitle(title)
    figure.tight_layout()
    figure.savefig(path, dpi=100)
    return path


def _group_label(group: int, n_groups: int) -> str:
    return f"group {group}" + (" (top)" if group == n_groups - 1 else " (bottom)" if group == 0 else "")


# --------------------------------------------------------------------------- the run report

def top_losses(texts: list[str], truth: np.ndarray, proba: np.ndarray, classes: list[str],
               k: int = TOP_LOSSES) -> list[dict]:
    """The ``k`` wrongly classified texts with the largest loss (-log p(true class)), largest first."""
    loss = -np.log(np.clip(proba[np.arange(len(truth)), truth], 1e-12, 1.0))
    predicted = proba.argmax(axis=1)
    wrong = np.flatnonzero(predicted != truth)
    order = wrong[np.argsort(-loss[wrong], kind="stable")][:k]
    return [{"index": int(i), "text": texts[i], "true": classes[truth[i]], "predicted": classes[predicted[i]],
             "p_predicted": float(proba[i, predicted[i]]), "loss": float(loss[i])} for i in order]


def top_losses_multilabel(texts: list[str], truth: np.ndarray, proba: np.ndarray, classes: list[str],
                          threshold: float, k: int = TOP_LOSSES) -> list[dict]:
    """The ``k`` texts whose predicted set of labels is wrong with the largest loss (binary
    cross-entropy summed over the labels), largest first; ``truth`` is a 0/1 matrix."""
    p = np.clip(proba, 1e-12, 1 - 1e-12)
    loss = -(truth * np.log(p) + (1 - truth) * np.log(1 - p)).sum(axis=1)
    predicted = proba >= threshold
    wrong = np.flatnonzero(np.any(predicted != (truth == 1), axis=1))
    order = wrong[np.argsort(-loss[wrong], kind="stable")][:k]

    def names(row) -> str:
        return ", ".join(classes[j] for j in np.flatnonzero(row)) or "(none)"
    return [{"index": int(i), "text": texts[i], "true": names(truth[i]), "predicted": names(predicted[i]),
             "loss": float(loss[i])} for i in order]


def write_report(output: str | Path, result: dict, classifier, texts: list[str], truth: np.ndarray,
                 proba: np.ndarray) -> Path:
    """``confusion_matrix.png`` (single-label), ``training.png`` and ``report.md`` of a run in ``output``:
    ``result`` is its metrics.json, ``proba`` the test texts' class probabilities (``truth``: their
    class ids, or for a multi-label run a 0/1 matrix)."""
    output = Path(output)
    classes = [str(c) for c in classifier.classes_.tolist()]
    test = result["test"]
    multilabel = classifier.multilabel_
    if not multilabel:
        plot_confusion(test["confusion_matrix"], classes, output / CONFUSION_PLOT)
    direction = next(iter(classifier.history_))
    plot_training(classifier.history_[direction], output / TRAINING_PLOT,
                  f"{result['dataset']}: classifier training ({direction})")
    data = result.get("data", {})
    counts = classifier.train_counts_
    lines = [f"# ulmtl run: {result['dataset']}", "",
             f"Run {result['run_id']}, {result['seconds']} s. Files here: `metrics.json` (everything "
             f"below as numbers), `config.json` (the resolved settings), `train_log.jsonl`, `model/` (the "
             f"classifier, with its model card `model/README.md`).", "",
             "## What was trained", "",
             f"- backbone: {backbone_of(classifier)}",
             f"- pretrained model: {result.get('pretrained_model') or pretrained_of(classifier)}",
             "- LM fine-tuning: " + (", ".join(f"{d}: {_brief(m)}" for d, m in result["lm_finetune"].items())
                                     or "none") + (f" (not used: strategy auto chose the {backbone_of(classifier)})"
                                                   if result["lm_finetune"] and _other_backbone_named(classifier)
                                                   else ""),
             f"- directions: {', '.join(result['directions'])}"]
    lines += [f"- {line}" for line in schedule_lines(classifier)]
    lines += _selection_table(classifier.selection_)
    lines += ["", "## Data", "",
              f"- {result['n_train']} training texts, {test['n_test']} test texts"
              + (f", {result['valid']['n_test']} validation texts" if result.get("valid") else ""),
              (f"- labels ({len(classes)}, a set per text): " if multilabel else f"- classes ({len(classes)}): ")
              + ", ".join(f"{c} ({counts.get(c, 0)} train)" for c in classes)]
    lines += [f"- read {f['rows_read']} rows from {f['path']} ({f['split']}), kept {f['rows_kept']}"
              for f in data.get("files", [])]
    if not data.get("files") and data.get("splits"):
        splits = ", ".join(f"{n} {s}" for s, n in data["splits"].items())
        lines.append(f"- read {data.get('source')}: {splits} rows")
    lines += ["", "## Test metrics", ""] + _metrics_table(test)
    headline, shown = ("micro_f1", "micro-F1") if multilabel else ("accuracy", "accuracy")
    if len(result.get("per_direction", {})) > 1:
        lines += ["", f"| direction | {shown} | macro-F1 |", "|---|---|---|"]
        lines += [f"| {d} | {m[headline]} | {m['macro_f1']} |" for d, m in result["per_direction"].items()]
    if result.get("valid"):
        valid = result["valid"]
        tuned = " (the threshold was tuned on it)" if multilabel and classifier.resolved_config().tune_threshold else ""
        lines += ["", f"Validation: {shown} {valid[headline]}, macro-F1 "
                      f"{valid['macro_f1']}{tuned}"]
    lines += ["", "## Plots", ""]
    lines += (["No confusion matrix: a text may have several labels, so the per-label table above takes its "
               "place."] if multilabel else [f"![confusion matrix]({CONFUSION_PLOT})"])
    lines += ["", f"![training]({TRAINING_PLOT})", "", "## Most confidently wrong test texts", ""]
    lines += _multilabel_losses(texts, truth, proba, classes, classifier.threshold_) if multilabel \
        else _losses(texts, truth, proba, classes)
    path = output / REPORT_FILE
    path.write_text("\n".join(lines) + "\n")
    return path


def _selection_table(selection: dict | None) -> list[str]:
    """Strategy "auto"'s candidates as a Markdown table, and why the winner won (none without auto)."""
    if not selection:
        return []
    lines = ["", "## Strategy selection (auto)", "",
             f"{_validation(selection)} (seed {selection['seed']}); {selection['winner']['name']} won: "
             f"{selection['reason']}. It was refitted on all {selection['n_refit']} training texts in "
             f"{selection['refit_seconds']} s.", "",
             "| candidate | status | validation accuracy | seconds | note |", "|---|---|---|---|---|"]
    for c in selection["candidates"]:
        accuracy = "" if c["valid_accuracy"] is None else c["valid_accuracy"]
        lines.append(f"| {c['name']} | {c['status']} | {accuracy} | {c['seconds']} | {_cell(c['reason'])} |")
    return lines


def _validation(selection: dict) -> str:
    """How the candidates were validated: one hold-out, or k folds (records before folds: one)."""
    folds = selection.get("folds", 1)
    if folds == 1:
        return f"Fitted on {selection['n_fit']} training texts, validated on {selection['n_valid']}"
    return (f"{folds}-fold cross-validation of {selection['n_valid']} training texts (fitted on "
            f"{selection['n_fit']} or more per fold, accuracy pooled over the folds)")


def _losses(texts: list[str], truth: np.ndarray, proba: np.ndarray, classes: list[str]) -> list[str]:
    worst = top_losses(texts, truth, proba, classes)
    if not worst:
        return ["None: every test text is classified correctly."]
    return (["| # | true | predicted | p(predicted) | loss | text |", "|---|---|---|---|---|---|"]
            + [f"| {w['index']} | {_cell(w['true'])} | {_cell(w['predicted'])} | {w['p_predicted']:.3f} | "
               f"{w['loss']:.2f} | {_cell(_shorten(w['text']))} |" for w in worst])


def _multilabel_losses(texts: list[str], truth: np.ndarray, proba: np.ndarray, classes: list[str],
                       threshold: float) -> list[str]:
    worst = top_losses_multilabel(texts, truth, proba, classes, threshold)
    if not worst:
        return ["None: every test text has exactly its set of labels."]
    return (["| # | true labels | predicted labels | loss | text |", "|---|---|---|---|---|"]
            + [f"| {w['index']} | {_cell(w['true'])} | {_cell(w['predicted'])} | {w['loss']:.2f} | "
               f"{_cell(_shorten(w['text']))} |" for w in worst])


def _brief(lm_metrics: dict) -> str:
    """An LM fine-tuning's validation perplexity before and after, and its training tokens."""
    return (f"validation perplexity {lm_metrics.get('valid_perplexity_before')} -> "
            f"{lm_metrics.get('valid_perplexity')} ({lm_metrics.get('train_tokens')} training tokens)")


def _shorten(text: str) -> str:
    return text if len(text) <= TEXT_CHARS else text[:TEXT_CHARS - 1] + "…"
