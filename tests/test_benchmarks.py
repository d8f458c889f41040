"""The benchmark scripts' pure parts: every variant is a valid config, tables and plots render."""
from __future__ import annotations

import importlib
import json
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from ulmtl.config import RecipeConfig, apply_overrides, to_dict

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))


def bench(name: str):
    return importlib.import_module(name)


@pytest.mark.parametrize("variant", sorted(bench("ablations").VARIANTS))
def test_every_ablation_variant_is_a_valid_config(variant):
    ablations = bench("ablations")
    config = apply_overrides(RecipeConfig(dataset="trec"), ablations.VARIANTS[variant] + ablations.QUICK)
    if variant == "clas_full":
        assert config.classifier.unfreeze_plan == (0, 0, 0, 0) and not config.classifier.discriminative
        assert config.classifier.schedule == "constant"
    if variant == "lm_none":
        assert config.finetune_lm is False
    if variant == "clas_chain_thaw":
        assert config.classifier.unfreezing == "chain_thaw" and not config.classifier.discriminative


def flat(config) -> dict:
    """Every field of a recipe config, sections as ``section.field``."""
    out = {}
    for key, value in to_dict(config).items():
        out.update({f"{key}.{k}": v for k, v in value.items()} if isinstance(value, dict) else {key: value})
    return out


# What each transformer variant changes in the transformer's defaults (full mode; --quick: QUICK_CHANGES).
TRANSFORMER_CHANGES = {
    "lm_none": {"finetune_lm": False},
    "full": {},
    "all_at_once": {"classifier.unfreeze_plan": [0], "classifier.stage_epochs": [5],
                    "classifier.stage_lr_mult": [1.0]},
    "chain_thaw": {"classifier.unfreezing": "chain_thaw"},
    "one_lr": {"classifier.discriminative": False},
    "linear_schedule": {"classifier.schedule": "linear"},
    "pool_first": {"transformer.pooling": "first"},
    "pool_mean": {"transformer.pooling": "mean"},
}
QUICK_CHANGES = {"all_at_once": {"classifier.stage_epochs": [2]}}  # as many epochs as quick's 1 + 1


@pytest.mark.parametrize("quick", [False, True], ids=["full", "quick"])
@pytest.mark.parametrize("variant", sorted(bench("ablations").TRANSFORMER_VARIANTS))
def test_every_transformer_ablation_variant_is_a_valid_config_that_changes_one_thing(variant, quick):
    from ulmtl.cli import parse_args
    from ulmtl.config import TRANSFORMER_CLASSIFIER
    ablations = bench("ablations")
    assert set(TRANSFORMER_CHANGES) == set(ablations.TRANSFORMER_VARIANTS)
    base = ablations.base_argv("transformer", quick, [], 0, None)
    defaults = parse_args(RecipeConfig(dataset="trec"), base)
    config = parse_args(RecipeConfig(dataset="trec"),
                        base + ablations.variant_argv("transformer", variant, quick))
    # The transformer's defaults (ulmtl.config.backbone_defaults), the bundled encoder, the mode's sizes.
    assert defaults.backbone == "transformer" and defaults.pretrained == ""
    assert defaults.classifier.optimizer == "fused_adamw" and defaults.classifier.unfreeze_plan == (1, 0)
    assert defaults.classifier.lr == TRANSFORMER_CLASSIFIER.lr and defaults.transformer.pooling == "concat"
    assert (defaults.max_train, defaults.classifier.stage_epochs) == ((500, (1, 1)) if quick else (0, (1, 4)))
    expected = {**TRANSFORMER_CHANGES[variant], **(QUICK_CHANGES.get(variant, {}) if quick else {})}
    before, after = flat(defaults), flat(config)
    assert {k: v for k, v in after.items() if before[k] != v} == expected


def test_ablation_rows_without_a_backbone_are_the_awd_lstms(tmp_path):
    from common import finished_row
    ablations = bench("ablations")
    results = tmp_path / "results.jsonl"
    key = {"dataset": "trec", "variant": "lm_none", "seed": 0}
    results.write_text(json.dumps({"benchmark": "ablation", **key, "error": 0.2}) + "\n")
    defaults = ablations.ROW_DEFAULTS
    assert finished_row(results, "ablation", {**key, "backbone": "awd_lstm"}, defaults)
    assert finished_row(results, "ablation", {**key, "backbone": "transformer"}, defaults) is None


def test_learning_curve_variants_and_quick_settings_are_valid_configs():
    curves = bench("learning_curves")
    for overrides in curves.ULMFIT_VARIANTS.values():
        apply_overrides(RecipeConfig(), overrides + curves.QUICK)
    assert apply_overrides(RecipeConfig(), curves.ULMFIT_VARIANTS["semi_supervised"]).lm_texts == "all"
    apply_overrides(RecipeConfig(), bench("strategies").QUICK)


@pytest.mark.parametrize("name", sorted(bench("tuning").CANDIDATES))
def test_every_tuning_candidate_is_a_valid_config(name):
    strategy, overrides = bench("tuning").CANDIDATES[name]
    config = apply_overrides(RecipeConfig(dataset="trec"), overrides + [f"--classifier.strategy={strategy}",
                                                                        "--valid_fraction=0.1"])
    clf = config.classifier
    assert len(clf.stage_epochs) == len(clf.stage_lr_mult) == len(clf.unfreeze_plan) or strategy == "scratch"
    if name == "finetune-all-layers":
        assert clf.unfreeze_plan == (0,) and clf.stage_epochs == (5,)


@pytest.mark.parametrize("name", sorted(bench("tuning").TRANSFORMER_CANDIDATES))
def test_every_transformer_tuning_candidate_is_a_valid_config_on_the_transformer(name):
    from ulmtl.cli import parse_args
    tuning = bench("tuning")
    strategy, overrides = tuning.TRANSFORMER_CANDIDATES[name]
    config = parse_args(RecipeConfig(dataset="trec"), tuning.stage1_overrides("transformer", None) + overrides
                        + [f"--classifier.strategy={strategy}", "--valid_fraction=0.1"])
    assert config.backbone == "transformer" and config.pretrained == ""
    assert len(config.classifier.stage_epochs) == len(config.classifier.stage_lr_mult)
    assert config.finetune_lm == ("--finetune_lm=false" not in overrides)


def test_transformer_tuning_shares_one_masked_lm_and_runs_the_valid_best_candidate_on_test(tmp_path, monkeypatch):
    tuning = bench("tuning")
    made, ran = [], []
    valid_scores = {"transformer-default": 0.95, "transformer-no-lm": 0.97, "transformer-8-epochs": 0.96}

    def fake_lm(config, target, direction):
        made.append((Path(target).name, direction, config.backbone))
        return Path(target)

    def fake_recipe(config):
        ran.append(config)
        name = Path(config.output).name.rsplit("-", 2)[0][len("trec-"):]
        valid = {"accuracy": valid_scores[name]} if config.valid_fraction else None
        return {"directions": ["forward"], "valid": valid, "test": {"accuracy": 0.9, "macro_f1": 0.9},
                "per_direction": {"forward": {"accuracy": 0.9}}, "n_train": 100, "seconds": 1.0}

    monkeypatch.setattr(tuning, "finetuned_lm_for", fake_lm)
    monkeypatch.setattr(tuning, "run_recipe", fake_recipe)
    rows = tuning.main(["--backbone", "transformer", "--datasets", "trec", "--candidates", ",".join(valid_scores),
                        "--results", str(tmp_path / "results.jsonl"), "--output", str(tmp_path / "runs")])
    assert [c.backbone for c in ran] == ["transformer"] * 4
    # one masked LM, for the two candidates with stage 2; none for the one without
    assert set(made) == {("trec-transformer-lm-s0", "forward", "transformer")}
    lm = str(tmp_path / "runs" / "trec-transformer-lm-s0")
    assert [(c.pretrained, c.finetune_lm) for c in ran[:3]] == [(lm, False), ("", False), (lm, False)]
    assert ran[2].classifier.stage_epochs == (1, 8)
    final = rows[-1]  # the valid-best candidate, on all training texts and the test split
    assert final["phase"] == "final" and final["candidate"] == "transformer-no-lm" and ran[3].valid_fraction == 0
    assert all(r["backbone"] == "transformer" for r in rows)


def test_tuning_refuses_what_a_backbone_cannot_do(capsys):
    tuning = bench("tuning")
    for argv, message in [(["--datasets", "trec"], "need --pretrained"),
                          (["--backbone", "transformer", "--ensemble"], "both directions at once"),
                          (["--backbone", "transformer", "--candidates", "finetune-paper"],
                           "unknown transformer candidates")]:
        with pytest.raises(SystemExit):
            tuning.main(argv)
        assert message in capsys.readouterr().err


def test_a_result_row_names_the_commit_of_the_code_that_measured_it(tmp_path):
    root = Path(__file__).resolve().parents[1]
    if shutil.which("git") is None or not (root / ".git").exists():
        pytest.skip("not a git checkout")
    head = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=root, capture_output=True, text=True,
                          check=True).stdout.strip()
    results = tmp_path / "results.jsonl"
    bench("common").append_result(results, {"benchmark": "demo", "seed": 0})
    row = json.loads(results.read_text())
    assert row["seed"] == 0 and row["code"] in (head, head + "+changes")


def test_tfidf_baseline_learns_an_easy_task():
    baselines = bench("baselines")
    texts = [f"{w} movie {i}" for i, w in enumerate(["great", "awful"] * 40)]
    labels = [i % 2 for i in range(80)]
    predicted = baselines.tfidf_logreg(texts[:60], labels[:60], texts[60:], seed=0)
    assert (predicted == labels[60:]).mean() == 1.0


def test_learning_curve_table_and_plot(tmp_path, monkeypatch):
    curves = bench("learning_curves")
    monkeypatch.setattr(curves, "PLOT", tmp_path / "curves.png")
    rows = [{"benchmark": "learning_curve", "dataset": "trec", "variant": v, "n_train": n, "seed": s,
             "error": e, "quick": False} for v, n, s, e in
            [("finetune", 100, 0, 0.3), ("finetune", 100, 1, 0.5), ("scratch", 100, 0, 0.6), ("finetune", 500, 0, 0.2)]]
    results = tmp_path / "results.jsonl"
    results.write_text("".join(json.dumps(r) + "\n" for r in rows))
    table = curves.plot(results, quick=False)
    assert "| labelled examples | finetune | scratch |" in table
    assert "| 100 | 0.400 (0.100) [2] | 0.600 (0.000) [1] |" in table and "| 500 | 0.200 (0.000) [1] |  |" in table
    assert (tmp_path / "curves.png").stat().st_size > 1000
    assert "#1" not in table


def test_learning_curves_of_two_pretrained_models_go_to_separate_tables(tmp_path, monkeypatch):
    curves = bench("learning_curves")
    monkeypatch.setattr(curves, "PLOT", tmp_path / "curves.png")
    rows = [{"benchmark": "learning_curve", "dataset": "trec", "variant": "finetune", "n_train": 100, "seed": s,
             "error": e, "quick": False, "pretrained": lm} for s, e, lm in
            [(2, 0.9, "runs/lm-b"), (0, 0.3, "runs/lm-a"), (1, 0.5, "runs/lm-a")]]
    rows.append({**rows[0], "dataset": "mr", "error": 0.7})  # another dataset's model does not count
    rows.append({"benchmark": "learning_curve", "dataset": "trec", "variant": "tfidf_logreg", "n_train": 100,
                 "seed": 0, "error": 0.4, "quick": False, "pretrained": "runs/lm-b"})
    results = tmp_path / "results.jsonl"
    results.write_text("".join(json.dumps(r) + "\n" for r in rows))
    table = curves.plot(results, quick=False)
    assert "| 100 | 0.400 (0.100) [2] | 0.400 (0.000) [1] |" in table  # the latest model's seeds only
    assert "| 100 | 0.700 (0.000) [1] |" in table.split("mr:")[1] and "mr #" not in table
    assert "trec #1: test error" in table and "trained with `--pretrained=runs/lm-b`" in table
    assert "| 100 | 0.900 (0.000) [1] | 0.400 (0.000) [1] |" in table


def test_the_plot_draws_every_transformer_curve_and_baseline_but_only_the_best_awd_lstm_variant():
    curves = bench("learning_curves")
    errors = {("finetune", 100): [0.5, 0.7], ("finetune", 500): [0.4],  # mean over sizes 0.5
              ("scratch", 100): [0.45], ("scratch", 500): [0.35],  # 0.4: the best AWD-LSTM variant
              ("transformer finetune", 100): [0.1], ("tfidf_logreg", 100): [0.4], ("setfit", 100): [0.2]}
    drawn = curves.plotted_curves(errors)
    assert [variant for variant, _ in drawn] == ["scratch", "tfidf_logreg", "setfit", "transformer finetune"]
    assert drawn[0][1] == "AWD-LSTM scratch (best on test of 2 AWD-LSTM variants)"
    assert curves.plotted_curves({("fasttext", 50): [0.3]}) == [("fasttext", "fasttext")]


def test_the_few_labels_runs_join_the_curves_as_the_variant_validation_chose(tmp_path, monkeypatch):
    curves = bench("learning_curves")
    monkeypatch.setattr(curves, "PLOT", tmp_path / "curves.png")
    rows = [{"benchmark": "learning_curve", "dataset": "trec", "variant": "tfidf_logreg", "n_train": 99, "seed": 0,
             "error": 0.4, "quick": False}]
    rows += [{"benchmark": "few_labels", "dataset": "trec", "size": 100, "n_train": 99, "seed": seed,
              "variant": variant, "valid_accuracy": valid, "test_accuracy": test, "quick": False}
             for seed, variant, valid, test in [(0, "off", 0.5, 0.95), (0, "on", 0.8, 0.9),  # on: better valid
                                                (1, "off", 0.7, 0.6), (1, "on", 0.7, 0.99)]]  # tie: off
    results = tmp_path / "results.jsonl"
    results.write_text("".join(json.dumps(r) + "\n" for r in rows))
    table = curves.plot(results, quick=False)
    assert f"| labelled examples | tfidf_logreg | {curves.FEW_LABELS_CURVE} |" in table
    assert "| 99 | 0.400 (0.000) [1] | 0.250 (0.150) [2] |" in table  # errors 0.1 and 0.4: test never chose


def test_the_few_labels_block_names_the_command_of_every_grid_it_shows():
    rows = [{"dataset": dataset, "size": size, "seed": seed} for dataset, size, seed in
            [("trec", 500, 2), ("trec", 50, 0), ("mr", 100, 1), ("trec", 250, 0)]]
    assert bench("few_labels").grid_command(rows) == \
        "python benchmarks/few_labels.py --datasets mr,trec --sizes 50,100,250,500 --seeds 0,1,2"


def test_the_few_labels_table_gives_each_variant_fixed_and_the_one_validation_chose():
    rows = [{"dataset": "trec", "size": 100, "n_train": 99, "seed": seed, "variant": variant, "valid_accuracy": valid,
             "test_accuracy": test, "seconds": 1.0}
            for seed, variant, valid, test in [(0, "off", 0.5, 0.95), (0, "on", 0.8, 0.9),  # on: better valid
                                               (1, "off", 0.7, 0.6), (1, "on", 0.7, 0.8)]]  # tie: off
    mean = bench("few_labels").report(rows).splitlines()[-1]
    assert mean == "| trec | 100 | mean | test 0.7750 [2] | test 0.8500 [2] | | **0.7500** (std 0.1500) |"


def test_a_curve_with_other_training_settings_gets_its_own_table_beside_the_baselines(tmp_path, monkeypatch):
    curves = bench("learning_curves")
    monkeypatch.setattr(curves, "PLOT", tmp_path / "curves.png")
    other = ["--classifier.stage_epochs=5", "--data_dir=/elsewhere"]
    rows = [{"benchmark": "learning_curve", "dataset": "trec", "variant": v, "n_train": 100, "seed": 0,
             "error": e, "quick": False, "settings": settings} for v, e, settings in
            [("finetune", 0.5, []), ("tfidf_logreg", 0.4, []), ("finetune", 0.3, other)]]
    results = tmp_path / "results.jsonl"
    results.write_text("".join(json.dumps(r) + "\n" for r in rows))
    table = curves.plot(results, quick=False)
    default, tuned = table.split("trec #1")
    assert "| 100 | 0.500 (0.000) [1] | 0.400 (0.000) [1] |" in default
    assert "`--classifier.stage_epochs=5`" in tuned and "/elsewhere" not in tuned
    assert "| labelled examples | finetune | tfidf_logreg |" in tuned  # the shared baseline row, beside it
    assert "| 100 | 0.300 (0.000) [1] | 0.400 (0.000) [1] |" in tuned


def test_grids_with_other_modes_or_settings_use_other_folders():
    from common import run_tag
    assert run_tag([], quick=False) == "" and run_tag(["--data_dir=/x"], quick=False) == ""
    assert run_tag([], quick=True) == "-quick"
    tags = {run_tag(["--classifier.stage_epochs=5"], False), run_tag(["--classifier.stage_epochs=4"], False),
            run_tag(["--finetune.epochs=4"], False), run_tag(["--finetune.epochs=4"], True)}
    assert len(tags) == 4 and "" not in tags
    # Fewer labelled texts or another fold: other runs, whose shared LM reads other texts.
    data_tags = {run_tag(["--max_train=500"], False), run_tag(["--fold=3"], False), run_tag(["--lm_texts=all"], False)}
    assert len(data_tags) == 3 and "" not in data_tags


def test_generated_blocks_rewrite_only_their_own_markers(tmp_path):
    from common import write_block
    paper = bench("paper_table")
    md = tmp_path / "RESULTS.md"
    md.write_text("intro\n<!-- paper_table:start -->\nold\n<!-- paper_table:end -->\noutro\n")
    results = tmp_path / "results.jsonl"
    results.write_text(json.dumps({"benchmark": "paper_table", "dataset": "trec", "forward_error": 9.0,
                                   "ensemble_error": 9.0, "quick": False, "date": "2026-11-29",
                                   "n_train": 5452, "command": "x"}) + "\n")
    write_block("paper_table", paper.table(results), "python benchmarks/paper_table.py --table", md)
    write_block("speed", "| a | b |", "python benchmarks/speed.py", md)  # no markers yet: appended
    text = md.read_text()
    assert text.startswith("intro\n") and "outro\n" in text and "old" not in text
    assert "| trec | 3.6 | 9.0 |  | 9.0 |" in text
    assert "generated by `python benchmarks/paper_table.py --table`" in text
    assert text.rstrip().endswith("| a | b |\n<!-- speed:end -->")


def test_learning_curve_grid_resumes_without_repeating_a_finished_run(shared_data, tmp_path, monkeypatch):
    curves = bench("learning_curves")
    monkeypatch.setattr(curves, "architecture_overrides", lambda pretrained: [])
    results = tmp_path / "results.jsonl"
    argv = ["--pretrained", "lm", "--datasets", "trec", "--sizes", "50", "--seeds", "0",
            "--variants", "tfidf_logreg", "--results", str(results), "--output", str(tmp_path / "runs"),
            f"--data_dir={shared_data}"]
    monkeypatch.setattr(curves, "PLOT", tmp_path / "curves.png")
    curves.main(argv)
    curves.main(argv)  # the same grid again: nothing to do
    rows = [json.loads(line) for line in results.read_text().splitlines()]
    assert len(rows) == 1 and rows[0]["n_train"] == 50 and rows[0]["settings"] == [f"--data_dir={shared_data}"]
    curves.main(argv[:-1] + ["--seeds", "0,1", argv[-1]])  # one more seed: only that one runs
    assert [json.loads(line)["seed"] for line in results.read_text().splitlines()] == [0, 1]
    curves.main(argv + ["--classifier.stage_epochs=5"])  # a baseline ignores classifier settings: no rerun
    assert len(results.read_text().splitlines()) == 2


def test_ablation_table_keeps_runs_with_other_settings_apart(tmp_path):
    ablations = bench("ablations")
    rows = [{"benchmark": "ablation", "dataset": "trec", "variant": "lm_none", "seed": s, "error": e, "quick": False,
             "settings": settings} for s, e, settings in
            [(0, 0.2, []), (1, 0.4, ["--data_dir=/x"]), (0, 0.9, ["--finetune.epochs=4"]),
             (0, 0.1, ["--max_train=500"])]]
    rows += [{"benchmark": "ablation", "dataset": "mr", "variant": v, "seed": 0, "error": e, "quick": False,
              "settings": []} for v, e in [("clas_chain_thaw", 0.3), ("lm_none", 0.5)]]
    results = tmp_path / "results.jsonl"
    results.write_text("".join(json.dumps(r) + "\n" for r in rows))
    lines = ablations.table(results, quick=False).splitlines()
    assert lines[0] == "| variant | settings | trec | mr |"
    assert lines[2:] == ["| lm_none | defaults | 0.300 (0.100) [2] | 0.500 (0.000) [1] |",
                         "| clas_chain_thaw | defaults |  | 0.300 (0.000) [1] |",
                         "| lm_none | --finetune.epochs=4 | 0.900 (0.000) [1] |  |",
                         "| lm_none | --max_train=500 | 0.100 (0.000) [1] |  |"]


def test_with_all_labels_semi_supervised_reuses_the_finetune_run(shared_data, tmp_path, monkeypatch):
    curves = bench("learning_curves")
    monkeypatch.setattr(curves, "architecture_overrides", lambda pretrained: [])
    monkeypatch.setattr(curves, "PLOT", tmp_path / "curves.png")
    monkeypatch.setattr(curves, "run_recipe", lambda config: pytest.fail("the same configuration ran twice"))
    results = tmp_path / "results.jsonl"
    settings = [f"--data_dir={shared_data}"]
    results.write_text(json.dumps({"benchmark": "learning_curve", "dataset": "trec", "size": "all",
                                   "variant": "finetune", "seed": 0, "quick": False, "pretrained": "lm",
                                   "settings": settings, "n_train": 5452, "accuracy": 0.8, "error": 0.2}) + "\n")
    curves.main(["--pretrained", "lm", "--datasets", "trec", "--sizes", "all", "--seeds", "0", "--variants",
                 "finetune,semi_supervised", "--results", str(results), "--output", str(tmp_path / "runs")] + settings)
    rows = [json.loads(line) for line in results.read_text().splitlines()]
    assert [(r["variant"], r["error"], r.get("same_run_as")) for r in rows] == \
        [("finetune", 0.2, None), ("semi_supervised", 0.2, "finetune")]


def test_the_ablation_tables_keep_the_backbones_apart(tmp_path, capsys):
    ablations = bench("ablations")
    row = {"benchmark": "ablation", "dataset": "trec", "seed": 0, "quick": False, "settings": []}
    rows = [{**row, "variant": "lm_none", "error": 0.2},  # written before rows named their backbone
            {**row, "backbone": "transformer", "variant": "pool_mean", "error": 0.3},
            {**row, "backbone": "transformer", "variant": "lm_none", "error": 0.1,
             "settings": ["--transformer.window=128"]}]
    results = tmp_path / "results.jsonl"
    results.write_text("".join(json.dumps(r) + "\n" for r in rows))
    awd_lstm = ablations.table(results, quick=False).splitlines()
    assert awd_lstm[2:] == ["| lm_none | defaults | 0.200 (0.000) [1] |"]
    assert ablations.table(results, quick=False, backbone="transformer").splitlines()[2:] == [
        "| pool_mean | defaults | 0.300 (0.000) [1] |",
        "| lm_none | --transformer.window=128 | 0.100 (0.000) [1] |"]
    ablations.main(["--table", "--results", str(results)])
    printed = capsys.readouterr().out
    assert "awd_lstm:" in printed and "transformer:" in printed and "| pool_mean | defaults |" in printed


def test_full_ulmfit_runs_once_for_both_ablation_tables(tmp_path, monkeypatch):
    ablations = bench("ablations")
    monkeypatch.setattr(ablations, "architecture_overrides", lambda pretrained: [])
    monkeypatch.setattr(ablations, "run_recipe", lambda config: pytest.fail("the same configuration ran twice"))
    results = tmp_path / "results.jsonl"
    results.write_text(json.dumps({"benchmark": "ablation", "dataset": "trec", "variant": "lm_full_discr_stlr",
                                   "seed": 0, "quick": False, "pretrained": "lm", "settings": [],
                                   "accuracy": 0.8, "error": 0.2}) + "\n")
    ablations.main(["--pretrained", "lm", "--datasets", "trec", "--seeds", "0", "--variants",
                    "lm_full_discr_stlr,clas_freez_discr_stlr", "--results", str(results),
                    "--output", str(tmp_path / "runs")])
    rows = [json.loads(line) for line in results.read_text().splitlines()]
    assert [(r["variant"], r["error"], r.get("same_run_as")) for r in rows] == \
        [("lm_full_discr_stlr", 0.2, None), ("clas_freez_discr_stlr", 0.2, "lm_full_discr_stlr")]


def test_tables_count_a_rerun_seed_once():
    from common import latest_per_run
    rows = [{"dataset": "trec", "variant": "v", "seed": 0, "error": 0.5},
            {"dataset": "trec", "variant": "v", "seed": 0, "error": 0.3},
            {"dataset": "trec", "variant": "v", "seed": 1, "error": 0.4}]
    kept = latest_per_run(rows, ("dataset", "variant", "seed"))
    assert sorted(r["error"] for r in kept) == [0.3, 0.4]


def test_shared_lm_is_fine_tuned_in_the_asked_direction(shared_data, tmp_path):
    """tuning.py shares one fine-tuned LM per direction; a backward one must come from a backward LM."""
    from ulmtl.checkpoint import load_checkpoint
    from ulmtl.cli import parse_args
    from ulmtl.config import ConfigError, RecipeConfig
    from common import finetuned_lm_for
    from ulmtl.recipe import SMOKE_RECIPE

    config = parse_args(RecipeConfig(dataset="trec"), ["--smoke", f"--data_dir={shared_data}"], SMOKE_RECIPE)
    template = str(tmp_path / "trec-lm-{direction}")
    for direction in ("forward", "backward"):
        target = finetuned_lm_for(config, template.replace("{direction}", direction), direction=direction)
        assert load_checkpoint(target).config["direction"] == direction
        assert load_checkpoint(tmp_path / f"stage1-{direction}").config["direction"] == direction
    forward = tmp_path / "trec-lm-forward"
    written = (forward / "weights.safetensors").stat().st_mtime_ns
    assert finetuned_lm_for(config, forward) == forward  # the same settings: reused, not retrained
    assert (forward / "weights.safetensors").stat().st_mtime_ns == written
    longer = parse_args(RecipeConfig(dataset="trec"), ["--smoke", f"--data_dir={shared_data}",
                                                       f"--finetune.epochs={config.finetune.epochs + 1}"], SMOKE_RECIPE)
    with pytest.raises(ConfigError, match=r"trec-lm-forward holds an LM fine-tuned with other settings.*epochs"):
        finetuned_lm_for(longer, forward)  # never silently reuse an LM trained otherwise
    with pytest.raises(ConfigError, match="direction 'forward'"):
        finetuned_lm_for(config, forward, direction="backward")


def test_auto_strategy_report_counts_the_runs_where_auto_picked_a_test_best_strategy():
    auto = bench("auto_strategy")

    def row(seed, winner, test, valid, **kind):
        best = max(test.values())
        return {"dataset": "trec", "size": 100, "seed": seed, "n_train": 100, "n_valid": 20, "winner": winner,
                "valid": valid, "test": test, "seconds": {s: 10.0 for s in test}, "auto_seconds": 25.0,
                "best_on_test": [s for s in test if test[s] == best], "regret": round(best - test[winner], 4),
                **kind}

    rows = [row(0, "finetune", {"feature_extraction": 0.7, "finetune": 0.9, "scratch": 0.5},
                {"feature_extraction": 0.65, "finetune": 0.85, "scratch": 0.4}),
            row(1, "feature_extraction", {"feature_extraction": 0.7, "finetune": 0.8, "scratch": 0.5},
                {"feature_extraction": 0.75, "finetune": None, "scratch": 0.4}),
            row(0, "finetune+contrastive", {"feature_extraction": 0.7, "finetune": 0.8, "scratch": 0.5,
                                            "finetune+contrastive": 0.92},
                {"feature_extraction": 0.6, "finetune": 0.7, "scratch": 0.3, "finetune+contrastive": 0.8},
                folds=5, contrastive="auto", backbones="both", n_valid=100)]
    text = auto.report(rows)
    # Rows written before folds and the contrastive candidate count as one hold-out without it.
    assert ("- trec, 100 labels (hold-out, contrastive candidate off, backbones own): auto picked a test-best candidate in 1 "
            "of 2 runs; its mean test accuracy 0.800; mean regret 0.050; auto took 2.5x") in text
    assert ("- trec, 100 labels (5 folds, contrastive candidate on, backbones both): auto picked a test-best candidate in 1 of "
            "1 runs; its mean test accuracy 0.920") in text
    lines = [line for line in text.splitlines() if line.startswith("| trec")]
    assert lines[0].split(" | ")[3] == "hold-out, 20 texts"
    assert lines[0].split(" | ")[6:9] == ["FT", "FT", "0.000"]
    assert lines[1].split(" | ")[4].startswith("0.750 / - / 0.400 / - / -")
    assert lines[2].split(" | ")[3:5] == ["5 folds, 100 texts", "0.600 / 0.700 / 0.300 / 0.800 / -"]
    assert lines[2].split(" | ")[6:8] == ["FT+C", "FT+C"]


def test_a_shared_transformer_lm_gives_the_classifier_the_recipes_own_stage_2_gives(tmp_path):
    """The transformer ablations fine-tune one masked LM per dataset and seed and reuse it: the
    classifier must be the one the recipe trains after its own stage 2."""
    from test_transformer import POS_NEG, TEXTS, make_encoder
    from common import finetuned_lm_for
    from ulmtl.config import ConfigError
    from ulmtl import TextClassifier
    from ulmtl.cli import parse_args
    from ulmtl.recipe import SMOKE_RECIPE, run_recipe

    encoder = make_encoder(tmp_path / "encoder")
    rows = [{"text": t, "label": "pos"} for t in POS_NEG[0]] + [{"text": t, "label": "neg"} for t in POS_NEG[1]]
    train = tmp_path / "train.jsonl"
    train.write_text("\n".join(json.dumps(r) for r in rows))

    def config(*extra):
        return parse_args(RecipeConfig(dataset="custom"), ["--smoke", f"--train={train}", *extra], SMOKE_RECIPE)

    run_recipe(config(f"--pretrained={encoder}", f"--output={tmp_path / 'own'}"))
    lm = finetuned_lm_for(config(f"--pretrained={encoder}", f"--output={tmp_path}"), tmp_path / "lm")
    assert finetuned_lm_for(config(f"--pretrained={encoder}"), lm) == lm  # finished: reused as it is
    other = shutil.copytree(encoder, tmp_path / "another-encoder")
    with pytest.raises(ConfigError, match="stage-1 model"):  # never reused for another stage-1 model
        finetuned_lm_for(config(f"--pretrained={other}"), lm)
    run_recipe(config(f"--pretrained={lm}", "--finetune_lm=false", f"--output={tmp_path / 'shared'}"))
    own, shared = (TextClassifier.load(tmp_path / name / "model") for name in ("own", "shared"))
    np.testing.assert_array_equal(own.predict_proba(TEXTS), shared.predict_proba(TEXTS))


def test_transformer_ablation_variants_but_lm_none_share_one_masked_lm(tmp_path, monkeypatch):
    ablations = bench("ablations")
    made, ran = [], []

    def fake_lm(config, target, all_texts):
        made.append(Path(target))
        return Path(target)

    def fake_recipe(config):
        ran.append(config)
        return {"test": {"accuracy": 0.9, "error": 0.1}}

    monkeypatch.setattr(ablations, "finetuned_lm_for", fake_lm)
    monkeypatch.setattr(ablations, "run_recipe", fake_recipe)
    ablations.main(["--backbone", "transformer", "--datasets", "trec", "--seeds", "0", "--variants",
                    "lm_none,full,pool_mean", "--results", str(tmp_path / "results.jsonl"),
                    "--output", str(tmp_path / "runs")])
    assert not any(c.finetune_lm for c in ran)  # lm_none has no stage 2, the others reuse the one LM
    assert len(made) == 2 and len(set(made)) == 1
    assert [c.pretrained for c in ran] == ["", str(made[0]), str(made[0])]
    assert ran[2].transformer.pooling == "mean"


def test_transformer_learning_curves_run_the_recipe_on_the_transformer_and_plot_apart(tmp_path, monkeypatch):
    curves = bench("learning_curves")
    monkeypatch.setattr(curves, "PLOT", tmp_path / "curves.png")
    made, ran = [], []

    def fake_lm(config, target, all_texts):
        made.append((Path(target).name, all_texts, config.backbone))
        return Path(target)

    def fake_recipe(config):
        ran.append(config)
        return {"test": {"accuracy": 0.9}, "n_train": 100}

    monkeypatch.setattr(curves, "finetuned_lm_for", fake_lm)
    monkeypatch.setattr(curves, "run_recipe", fake_recipe)
    results = tmp_path / "results.jsonl"
    awd = {"benchmark": "learning_curve", "dataset": "trec", "size": "100", "variant": "finetune", "seed": 0,
           "quick": True, "pretrained": "lm", "settings": [], "n_train": 100, "accuracy": 0.7, "error": 0.3}
    results.write_text(json.dumps(awd) + "\n")
    argv = ["--backbone", "transformer", "--datasets", "trec", "--sizes", "100", "--seeds", "0", "--quick",
            "--variants", "finetune,semi_supervised", "--results", str(results), "--output", str(tmp_path / "runs")]
    curves.main(argv)
    assert [c.backbone for c in ran] == ["transformer", "transformer"]  # the AWD-LSTM's row is not this run
    assert ran[0].finetune_lm and ran[0].classifier.stage_epochs == (1, 1) and ran[0].max_train == 100
    assert made == [("trec-transformer-lm-all-quick-s0", True, "transformer")] and not ran[1].finetune_lm
    curves.main(argv)  # finished: nothing runs again
    assert len(ran) == 2
    table = curves.plot(results, quick=True)
    assert "| labelled examples | finetune | transformer finetune | transformer semi_supervised |" in table
    assert "| 100 | 0.300 (0.000) [1] | 0.100 (0.000) [1] | 0.100 (0.000) [1] |" in table


def test_paper_table_gains_the_transformers_column(shared_data, tmp_path, monkeypatch):
    paper = bench("paper_table")
    ran = []

    def fake_recipe(config):
        ran.append(config)
        return {"per_direction": {"forward": {"error": 0.04}}, "test": {"error": 0.04}, "n_train": 5452}

    monkeypatch.setattr(paper, "run_recipe", fake_recipe)
    monkeypatch.setattr(paper, "write_block", lambda *args: None)
    results = tmp_path / "results.jsonl"
    results.write_text(json.dumps({"benchmark": "paper_table", "dataset": "trec", "forward_error": 23.2,
                                   "backward_error": 19.8, "ensemble_error": 19.2, "quick": False,
                                   "date": "2026-11-30", "n_train": 5452, "command": "x"}) + "\n")
    paper.main(["--backbone", "transformer", "--datasets", "trec", "--data-dir", str(shared_data),
                "--results", str(results), "--output", str(tmp_path / "runs")])
    assert ran[0].backbone == "transformer" and ran[0].classifier.directions == ("forward",)
    row = json.loads(results.read_text().splitlines()[-1])
    assert row["backbone"] == "transformer" and row["command"] == "python recipes/trec.py --backbone=transformer"
    line = next(line for line in paper.table(results).splitlines() if line.startswith("| trec"))
    assert line.startswith("| trec | 3.6 | 23.2 | 19.8 | 19.2 | 2026-11-30, 5452 train | 4.0 | ")


def test_the_head_epochs_variants_train_the_head_longer_and_the_table_chooses_on_validation():
    head = bench("head_epochs")
    from ulmtl.schedule import training_plan
    longer = head.classifier("feature_extraction x10 +contrastive", seed=3, quick=False)
    assert [stage.epochs for stage in training_plan(longer.config, 4)] == [50]
    assert longer.model_config.contrastive == "on" and longer.config.seed == 3
    head_only = head.classifier("finetune x10 head", seed=0, quick=False)
    assert [stage.epochs for stage in training_plan(head_only.config, 4)] == [10, 4]
    assert head_only.model_config.contrastive == "off"
    steps = head.classifier("finetune head>=50 steps", seed=0, quick=False)
    assert [stage.epochs for stage in training_plan(steps.config, 4, batches_per_epoch=2)] == [25, 4]
    assert [stage.epochs for stage in training_plan(steps.config, 4, batches_per_epoch=64)] == [1, 4]
    both = head.classifier("finetune head>=50 steps +contrastive", seed=0, quick=False)
    assert both.config.head_min_steps == 50 and both.model_config.contrastive == "on"
    assert both.config.discriminative and not head.classifier("finetune one LR", seed=0, quick=False).config.discriminative
    one_lr = head.classifier("finetune head>=50 steps one LR", seed=0, quick=False).config
    assert (one_lr.head_min_steps, one_lr.discriminative, one_lr.stage_epochs) == (50, False, (1, 4))
    rows = [{"dataset": "mr", "size": 50, "seed": seed, "variant": variant, "valid_accuracy": valid,
             "test_accuracy": test, "seconds": 2.0}
            for seed, variant, valid, test in [(0, "feature_extraction", 0.6, 0.9), (0, "finetune +contrastive", 0.7, 0.5),
                                               (1, "feature_extraction", 0.7, 0.8), (1, "finetune +contrastive", 0.7, 0.4)]]
    lines = head.report(rows).splitlines()
    assert lines[2] == "| mr | 50 | feature_extraction | 0.650 (0.050) | 0.850 (0.050) | 2 | 2 |"
    # seed 0: the contrastive variant's validation is better; seed 1: a tie goes to the cheaper
    assert lines[-1] == ("| mr | 50 | chosen on validation (finetune +contrastive, feature_extraction) | | **0.650** "
                         "| | 2 |")
    with pytest.raises(SystemExit):
        head.main(["--variants", "finetune,bogus"])


def test_head_epochs_table_runs_nothing_and_shows_the_full_mode_rows(tmp_path, capsys):
    results = tmp_path / "results.jsonl"
    rows = [{"benchmark": "head_epochs", "dataset": "trec", "size": 50, "seed": 0, "variant": "finetune",
             "valid_accuracy": 0.3, "test_accuracy": 0.4, "seconds": 1.0, "quick": quick} for quick in (False, True)]
    results.write_text("".join(json.dumps(r) + "\n" for r in rows))
    assert bench("head_epochs").main(["--table", "--results", str(results)]) == rows[:1]
    assert "| trec | 50 | finetune | 0.300 (0.000) | 0.400 (0.000) | 1 | 1 |" in capsys.readouterr().out
