"""Test error against the number of labelled examples (the paper's Figure 3): ULMFiT fine-tuning,
feature extraction, training from scratch, the semi-supervised variant (LM fine-tuned on every text
of the dataset, classifier on the few labels) and the TF-IDF / fastText baselines, several seeds,
on the AWD-LSTM or the transformer backbone.

    python benchmarks/learning_curves.py --pretrained runs/lm-general-forward --datasets trec,mr \
        --sizes 50,100,250,500,1000,2000,all --seeds 0,1,2 [--quick] [--section.key=value ...]
    python benchmarks/learning_curves.py --backbone transformer --datasets trec,mr \
        --sizes 50,100,250,500,1000,2000,all --seeds 0,1,2 --variants finetune,semi_supervised,feature_extraction
    python benchmarks/learning_curves.py --plot          # table + PNG from results.jsonl only

The transformer's variants run the recipe with the transformer's defaults on the bundled
all-MiniLM-L6-v2 (or the encoder --pretrained names); they are plotted and tabled as
"transformer <variant>". Rows go to benchmarks/results.jsonl (benchmark "learning_curve"); a run
already there (same backbone, dataset, size, variant, seed, mode, stage-1 LM and extra settings) is
skipped, so an interrupted grid resumes when the same command is run again. Extra
``--classifier.*`` / ``--finetune.*`` settings make a separate curve (its own output folders and
shared LM, its own table marked #1, #2...); the baselines do not read them, so their rows are shared
by every curve. --plot prints the markdown tables (mean error and std over seeds), with the rows of
the baselines on the pretrained encoder that benchmarks/encoder_baselines.py writes and the choices
of benchmarks/few_labels.py, and writes benchmarks/learning_curves.png: the default
settings' curves of every transformer variant and baseline, and the best AWD-LSTM variant.
"""
from __future__ import annotations

import sys
from collections import defaultdict
from datetime import date
from pathlib import Path

import numpy as np

from baselines import METHODS
from encoder_baselines import ENCODER_VARIANTS
from few_labels import chosen_rows
from common import (
    QUICK_TRAINING, RESULTS, add_outputs, append_result, finetuned_lm_for, finished_row, hardware, latest_per_run,
    parser as common_parser, read_results, run_tag, same_run_row, run_settings, training_settings, write_block,
)
from ulmtl.cli import parse_args
from ulmtl.config import RecipeConfig
from ulmtl.recipe import architecture_overrides, load_recipe_data, run_recipe

PLOT = Path(__file__).with_name("learning_curves.png")
QUICK = QUICK_TRAINING
TRANSFORMER_QUICK = ["--finetune.epochs=1", "--classifier.stage_epochs=1,1"]  # its plan has two stages
ROW_DEFAULTS = {"backbone": "awd_lstm"}  # rows written before the transformer's curves name none
ULMFIT_VARIANTS = {
    "finetune": ["--classifier.strategy=finetune"],
    "semi_supervised": ["--classifier.strategy=finetune", "--lm_texts=all"],
    "feature_extraction": ["--classifier.strategy=feature_extraction"],
    "scratch": ["--classifier.strategy=scratch"],
}
# With all labels, finetune and semi_supervised are one configuration (the LM on every text, the
# classifier on every label): run once, reported under both names.
SAME_RUN_WITH_ALL_LABELS = {"finetune": "semi_supervised", "semi_supervised": "finetune"}


def shared_lm(args, dataset: str, seed: int, base: list[str], tag: str, prefix: str = "") -> Path:
    """The LM fine-tuned on every text of the dataset (labels unused): the same for every number of
    labels, so it is fine-tuned once per dataset, seed and settings and reused (the semi-supervised
    setting, and plain fine-tuning when all labels are used, whose LM texts are the same)."""
    config = parse_args(RecipeConfig(dataset=dataset), base + [f"--output={args.output}"])
    return finetuned_lm_for(config, Path(args.output) / f"{dataset}-{prefix}lm-all{tag}-s{seed}", all_texts=True)


def stage1_argv(backbone: str, pretrained: str | None) -> list[str]:
    """The recipe arguments that choose the backbone and its stage-1 LM (the transformer: the
    encoder, when one is named; the AWD-LSTM's architecture comes with its checkpoint)."""
    if backbone == "transformer":
        return ["--backbone=transformer"] + ([f"--pretrained={pretrained}"] if pretrained else [])
    return architecture_overrides(pretrained) + [f"--pretrained={pretrained}"]


def run(args, overrides: list[str]) -> None:
    transformer = args.backbone == "transformer"
    stage1 = stage1_argv(args.backbone, args.pretrained)
    prefix = "transformer-" if transformer else ""
    tag = run_tag(overrides, args.quick)
    for dataset in args.datasets.split(","):
        for size in args.sizes.split(","):
            for seed in [int(s) for s in args.seeds.split(",")]:
                n = 0 if size == "all" else int(size)
                quick = (TRANSFORMER_QUICK if transformer else QUICK) if args.quick else []
                base = quick + overrides + [f"--max_train={n}", f"--seed={seed}"] + stage1
                for variant in args.variants.split(","):
                    # The baselines do not read training settings: one row serves every curve.
                    settings = overrides if variant in ULMFIT_VARIANTS else \
                        [o for o in overrides if o not in training_settings(overrides)]
                    key = {"dataset": dataset, "size": size, "variant": variant, "seed": seed, "quick": args.quick,
                           "pretrained": (args.pretrained or "bundled") if transformer else args.pretrained,
                           "settings": settings}
                    if variant in ULMFIT_VARIANTS:
                        key["backbone"] = args.backbone
                    if finished_row(args.results, "learning_curve", key, ROW_DEFAULTS):
                        print(f"== {dataset} size {size} {variant} seed {seed}: done earlier, in {args.results}")
                        continue
                    output = Path(args.output) / f"{dataset}-{size}-{prefix}{variant}{tag}-s{seed}"
                    argv = base + [f"--output={output}"]
                    twin_row = same_run_row(args.results, "learning_curve", key, SAME_RUN_WITH_ALL_LABELS,
                                            ROW_DEFAULTS) \
                        if n == 0 else None
                    if twin_row:
                        accuracy, n_train = twin_row["accuracy"], twin_row["n_train"]
                    elif variant in ULMFIT_VARIANTS:
                        extra = list(ULMFIT_VARIANTS[variant])
                        if variant == "semi_supervised" or (variant == "finetune" and n == 0):
                            lm = shared_lm(args, dataset, seed, base, tag, prefix)
                            extra = ["--classifier.strategy=finetune", f"--pretrained={lm}", "--finetune_lm=false"]
                        config = parse_args(RecipeConfig(dataset=dataset), argv + extra)
                        result = run_recipe(config)
                        accuracy, n_train = result["test"]["accuracy"], result["n_train"]
                    else:
                        config = parse_args(RecipeConfig(dataset=dataset), argv)
                        data = load_recipe_data(config)
                        predicted = METHODS[variant](data["train"]["text"], data["train"]["label"],
                                                     data["test"]["text"], seed)
                        if predicted is None:
                            continue
                        accuracy = round(float(np.mean(predicted == np.asarray(data["test"]["label"]))), 4)
                        n_train = len(data["train"])
                    row = {"benchmark": "learning_curve", **key, "n_train": n_train, "accuracy": accuracy,
                           "error": round(1 - accuracy, 4), "same_run_as": twin_row["variant"] if twin_row else None,
                           "date": date.today().isoformat(),
                           "hardware": hardware(), "command": "python benchmarks/learning_curves.py " +
                           " ".join(sys.argv[1:])}
                    append_result(args.results, row)
                    print(f"== {dataset} n={n_train} {prefix}{variant} seed {seed}: error {row['error']}", flush=True)


# benchmarks/few_labels.py's runs: the transformer's classifier with the contrastive stage on or
# off, chosen on validation (no stage 2), on the same subsets.
FEW_LABELS_CURVE = "transformer contrastive on/off, chosen on validation"
VARIANT_ORDER = ["finetune", "semi_supervised", "feature_extraction", "scratch", "tfidf_logreg", "fasttext",
                 *ENCODER_VARIANTS, *(f"transformer {v}" for v in ULMFIT_VARIANTS), FEW_LABELS_CURVE]


def curve_variant(row: dict) -> str:
    """The name a row's curve goes by: its variant, "transformer <variant>" for the transformer's."""
    backbone = row.get("backbone", ROW_DEFAULTS["backbone"])
    return row["variant"] if backbone == ROW_DEFAULTS["backbone"] else f"{backbone} {row['variant']}"


def curve_settings(rows: list[dict]) -> list[tuple[str, ...]]:
    """The settings that set each row's curve apart: its run settings, plus ``--pretrained=...`` when
    its pretrained model is not the one of the latest row of its dataset, variant and run settings,
    so that curves of two stage-1 LMs (or encoders) never mix in one cell and a rerun with another
    model takes the default table (the bag-of-words baselines read no pretrained model)."""
    def cell(row: dict) -> tuple:
        return row["dataset"], curve_variant(row), tuple(run_settings(row.get("settings", [])))

    latest = {cell(row): row.get("pretrained") for row in rows}
    return [cell(row)[2] + (() if row.get("pretrained") == latest[cell(row)] or row["variant"] in METHODS
                            else (f"--pretrained={row.get('pretrained')}",)) for row in rows]


def curve_names(rows: list[dict]) -> dict[tuple[str, ...], str]:
    """Curve settings (``_settings``) -> curve suffix: "" for the defaults, then " #1", " #2"... in
    order of appearance."""
    names: dict[tuple[str, ...], str] = {(): ""}
    for row in rows:
        names.setdefault(row["_settings"], f" #{len(names)}")
    return names


def plotted_curves(errors: dict[tuple[str, int], list[float]]) -> list[tuple[str, str]]:
    """(variant, legend label) of the curves one panel draws, from its (variant, size) -> errors with
    the default settings: every transformer variant and baseline, and of the AWD-LSTM's variants only
    the one with the lowest test error averaged over the sizes it ran (chosen on test, so optimistic
    for the AWD-LSTM; the table keeps all of them)."""
    variants = [v for v in VARIANT_ORDER if any(key[0] == v for key in errors)]
    awd_lstm = [v for v in variants if v in ULMFIT_VARIANTS]
    best = min(awd_lstm, key=lambda v: np.mean([np.mean(e) for (w, _), e in errors.items() if w == v]),
               default=None)
    return [(v, f"AWD-LSTM {v} (best on test of {len(awd_lstm)} AWD-LSTM variants)" if v == best else v)
            for v in variants if v not in awd_lstm or v == best]


def plot(results: Path, quick: bool) -> str:
    """Mean (std) error per dataset, curve (variant, training settings, and pretrained model where it
    is not its latest row's: :func:`curve_settings`) and training size: one
    markdown table per dataset and settings (the baselines, which ignore training settings, in
    every one; few_labels.py's choices as one more curve), and a PNG with one panel per dataset
    (the curves :func:`plotted_curves` picks)."""
    rows = read_results(results, "learning_curve", quick)
    for row, settings in zip(rows, curve_settings(rows)):
        row["_settings"], row["_variant"] = settings, curve_variant(row)
    rows = latest_per_run(rows, ("dataset", "_variant", "_settings", "n_train", "seed"))
    names = curve_names(rows)
    groups: dict = defaultdict(list)  # (dataset, settings, variant, n_train) -> errors
    for row in rows:
        groups[(row["dataset"], row["_settings"], row["_variant"], row["n_train"])].append(row["error"])
    for row in chosen_rows(read_results(results, "few_labels", quick)):
        groups[(row["dataset"], (), FEW_LABELS_CURVE, row["n_train"])].append(round(1 - row["test_accuracy"], 4))
    datasets = sorted({k[0] for k in groups})
    lines = []
    for dataset in datasets:  # one table per dataset and settings: sizes down, variants across
        for settings, name in names.items():
            own = [v for v in VARIANT_ORDER if any(k[:3] == (dataset, settings, v) for k in groups)]
            if not own:
                continue
            baselines = [v for v in VARIANT_ORDER if v in [*METHODS, *ENCODER_VARIANTS] and v not in own and
                         any(k[:3] == (dataset, (), v) for k in groups)] if settings else []
            variants = own + baselines
            title = f"{dataset}{name}: test error, mean (std) over seeds [number of seeds]"
            if settings:
                title += "; ulmtl variants trained with " + " ".join(f"`{o}`" for o in settings)
            lines += [title, "", "| labelled examples | " + " | ".join(variants) + " |",
                      "|---" * (len(variants) + 1) + "|"]
            for n in sorted({k[3] for k in groups if k[:2] == (dataset, settings)}):
                cells = []
                for variant in variants:
                    errors = groups.get((dataset, settings if variant in own else (), variant, n))
                    cells.append(f"{np.mean(errors):.3f} ({np.std(errors):.3f}) [{len(errors)}]" if errors else "")
                lines.append(f"| {n:,} | " + " | ".join(cells) + " |")
            lines.append("")
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    colours = [*(f"C{i}" for i in range(10)), "black", "teal", "navy", "olive", "crimson", "gold"]
    fig, axes = plt.subplots(1, max(len(datasets), 1), figsize=(7 * max(len(datasets), 1), 7), squeeze=False)
    for ax, dataset in zip(axes[0], datasets):
        errors = {(variant, n): values for (d, settings, variant, n), values in groups.items()
                  if d == dataset and not settings}
        for variant, label in plotted_curves(errors):
            index = VARIANT_ORDER.index(variant)
            sizes = sorted(n for v, n in errors if v == variant)
            means = [np.mean(errors[(variant, n)]) for n in sizes]
            stds = [np.std(errors[(variant, n)]) for n in sizes]
            style = "-" if variant.startswith("transformer ") else ":" if variant in ULMFIT_VARIANTS else "--"
            ax.errorbar(sizes, means, yerr=stds, marker="os^vD<>ph*"[index % 10], capsize=3, label=label,
                        color=colours[index % len(colours)], linestyle=style)
        ax.set_xscale("log")
        ax.set_xlabel("labelled training examples")
        ax.set_ylabel("test error")
        ax.set_title(f"{dataset} (mean and std over seeds)")
        ax.legend(fontsize=8, loc="upper center", bbox_to_anchor=(0.5, -0.12))
    fig.tight_layout()
    fig.savefig(PLOT, dpi=100, bbox_inches="tight")
    return "\n".join(lines)


def main(argv=None) -> None:
    argv = list(sys.argv[1:] if argv is None else argv)
    parser = common_parser(__doc__, pretrained=False, datasets="trec,mr")
    parser.add_argument("--backbone", default="awd_lstm", choices=["awd_lstm", "transformer"])
    parser.add_argument("--sizes", default="50,100,250,500,1000,2000,all")
    parser.add_argument("--seeds", default="0,1,2")
    parser.add_argument("--variants", default="finetune,semi_supervised,feature_extraction,scratch,"
                                              "tfidf_logreg,fasttext")
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--plot", action="store_true")
    add_outputs(parser, "runs/learning_curves")
    args, overrides = parser.parse_known_args(argv)
    if not args.plot:
        if args.backbone == "awd_lstm" and not args.pretrained:
            parser.error("--pretrained (the AWD-LSTM's stage-1 LM) is required to run (or pass --plot, or "
                         "--backbone transformer)")
        run(args, overrides)
    tables = plot(Path(args.results), args.quick)
    if Path(args.results) == RESULTS and not args.quick:  # the project's own results: RESULTS.md's block
        write_block("learning_curves", tables, "python benchmarks/learning_curves.py --plot")
    print(tables)
    print(f"plot: {PLOT}")


if __name__ == "__main__":
    main()
