"""The baselines on the pretrained encoder (benchmarks/encoder_baselines.py), on a tiny random BERT."""
from __future__ import annotations

import argparse
import importlib
import json
import sys
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
import torch

from test_transformer import POS_NEG, make_encoder

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))
baselines = importlib.import_module("encoder_baselines")


@pytest.fixture(scope="module")
def encoder_dir(tmp_path_factory) -> Path:
    return make_encoder(tmp_path_factory.mktemp("tiny-bert"))


def two_classes():
    pos, neg = POS_NEG
    texts, labels = pos[:6] + neg[:6], ["pos"] * 6 + ["neg"] * 6
    return texts, labels, ["a great fun film", "a dull plot", "boring", "great"]


SMALL = {
    "plain_finetune": (baselines.plain_finetune,
                       baselines.PlainFinetuneSettings(batch_size=4, epochs=1, lr=1e-3)),
    "setfit": (baselines.setfit, baselines.SetFitSettings(num_iterations=2)),
    "frozen_embeddings": (baselines.frozen_embeddings, baselines.FrozenEmbeddingSettings()),
}


@pytest.mark.parametrize("name", sorted(SMALL))
def test_each_baseline_predicts_one_label_of_the_label_set_per_test_text(name, encoder_dir):
    fit_predict, settings = SMALL[name]
    texts, labels, test = two_classes()
    predicted, seconds = fit_predict(texts, labels, test, encoder_dir, 0, settings)
    assert len(predicted) == len(test) and set(predicted) <= {"pos", "neg"}
    assert seconds > 0


def test_plain_finetune_warms_up_linearly_then_decays_to_zero():
    settings = baselines.PlainFinetuneSettings(lr=1e-3, batch_size=4, epochs=2, warmup_ratio=0.3)
    optimizer = torch.optim.AdamW([torch.nn.Parameter(torch.zeros(1))], lr=settings.lr)
    # 5 batches x 2 epochs = 10 steps, 3 of them warm-up
    scheduler = baselines.plain_schedule(optimizer, settings, n_train=18)
    lrs = [scheduler.get_last_lr()[0]]
    for _ in range(10):
        optimizer.step()
        scheduler.step()
        lrs.append(scheduler.get_last_lr()[0])
    assert lrs[:4] == pytest.approx([0, 1e-3 / 3, 2e-3 / 3, 1e-3])
    assert all(a > b for a, b in zip(lrs[3:], lrs[4:])) and lrs[-1] == pytest.approx(0)
    assert lrs[7] == pytest.approx(1e-3 * 3 / 7)
    default = baselines.PlainFinetuneSettings()
    assert (default.lr, default.batch_size, default.epochs, default.warmup_ratio) == (2e-5, 32, 3, 0.1)


def test_frozen_embeddings_do_not_depend_on_the_batch_or_its_padding(encoder_dir):
    settings = baselines.FrozenEmbeddingSettings(batch_size=2)
    alone = baselines.mean_pooled_embeddings(["a great film"], encoder_dir, settings)
    padded = baselines.mean_pooled_embeddings(["a dull and boring film with a boring plot and a dull cast",
                                               "a great film"], encoder_dir, settings)
    assert np.allclose(alone[0], padded[1], atol=1e-6)
    assert not np.allclose(padded[0], padded[1], atol=1e-3)
    assert np.allclose(np.linalg.norm(padded, axis=1), 1.0)


def test_the_plain_fine_tunes_settings_name_their_rows():
    assert baselines.plain_variant(baselines.PlainFinetuneSettings(max_len=512)) == "plain_finetune"
    issue_17 = baselines.PlainFinetuneSettings(lr=1e-4, epochs=5, batch_size=32)
    assert baselines.plain_variant(issue_17) == "plain_finetune_lr1e-4"
    other = replace(issue_17, warmup_ratio=0.06)
    assert baselines.plain_variant(other) == "plain_finetune_lr0.0001_b32_e5_w0.06"


def test_a_named_plain_fine_tune_runs_by_its_rows_name():
    args = argparse.Namespace(variants="plain_finetune,plain_finetune_lr1e-4", plain_lr=2e-5, plain_epochs=3,
                              plain_batch=32, plain_warmup=0.1, setfit_iterations=20, quick=False)
    runs = baselines.variant_runs(args, "polarity")
    assert list(runs) == ["plain_finetune", "plain_finetune_lr1e-4"]
    fit_predict, settings = runs["plain_finetune_lr1e-4"]
    assert fit_predict is baselines.plain_finetune
    assert settings == baselines.PlainFinetuneSettings(lr=1e-4, epochs=5, max_len=512)
    assert runs["plain_finetune"][1] == baselines.PlainFinetuneSettings(max_len=512)
    quick = baselines.variant_runs(argparse.Namespace(**{**vars(args), "quick": True}), "trec")
    assert quick["plain_finetune_lr1e-4"][1].epochs == baselines.QUICK_PLAIN_EPOCHS


def test_plain_flags_beside_a_named_plain_fine_tune_are_refused(tmp_path, capsys):
    with pytest.raises(SystemExit):
        baselines.main(["--variants", "plain_finetune_lr1e-4", "--plain-lr", "3e-5",
                        "--results", str(tmp_path / "results.jsonl")])
    assert "--plain-lr set the plain_finetune variant" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        baselines.main(["--variants", "plain_finetune_lr2e-4", "--results", str(tmp_path / "results.jsonl")])
    assert "unknown plain_finetune_lr2e-4" in capsys.readouterr().err
    assert not (tmp_path / "results.jsonl").exists()


def test_rows_record_command_date_seed_and_hardware_and_a_rerun_skips_them(shared_data, encoder_dir,
                                                                           tmp_path):
    results = tmp_path / "results.jsonl"
    argv = ["--datasets", "trec", "--sizes", "30", "--seeds", "3", "--variants", "frozen_embeddings",
            "--encoder", str(encoder_dir), "--data-dir", str(shared_data), "--results", str(results),
            "--quick"]
    rows = baselines.main(argv)
    written = [json.loads(line) for line in results.read_text().splitlines()]
    assert written == rows and len(rows) == 1
    row = rows[0]
    assert row["benchmark"] == "learning_curve" and row["variant"] == "frozen_embeddings" and row["quick"]
    assert row["seed"] == 3 and row["n_train"] == 30 and row["hardware"] and row["date"]
    assert row["command"] == "python benchmarks/encoder_baselines.py " + " ".join(argv)
    assert 0 <= row["accuracy"] <= 1 and row["error"] == pytest.approx(1 - row["accuracy"])
    assert baselines.main(argv) == [] and len(results.read_text().splitlines()) == 1


def test_a_missing_dataset_ends_with_a_message_naming_its_folder(encoder_dir, tmp_path):
    with pytest.raises(SystemExit) as exit_:
        baselines.main(["--datasets", "trec", "--sizes", "30", "--seeds", "0", "--encoder", str(encoder_dir),
                        "--data-dir", str(tmp_path), "--results", str(tmp_path / "results.jsonl")])
    assert str(exit_.value).startswith("error: ") and str(tmp_path / "trec") in str(exit_.value)
    assert not (tmp_path / "results.jsonl").exists()


def test_learning_curves_table_shows_the_encoder_baselines(tmp_path, monkeypatch):
    curves = importlib.import_module("learning_curves")
    monkeypatch.setattr(curves, "PLOT", tmp_path / "curves.png")
    other = ["--classifier.stage_epochs=5"]
    rows = [{"benchmark": "learning_curve", "dataset": "trec", "variant": v, "n_train": 100, "seed": 0,
             "error": e, "quick": False, "settings": settings} for v, e, settings in
            [("finetune", 0.5, []), ("setfit", 0.12, []), ("plain_finetune", 0.4, []),
             ("finetune", 0.3, other)]]
    results = tmp_path / "results.jsonl"
    results.write_text("".join(json.dumps(r) + "\n" for r in rows))
    default, tuned = curves.plot(results, quick=False).split("trec #1")
    assert "| labelled examples | finetune | plain_finetune | setfit |" in default
    assert "| 100 | 0.500 (0.000) [1] | 0.400 (0.000) [1] | 0.120 (0.000) [1] |" in default
    assert "| labelled examples | finetune | plain_finetune | setfit |" in tuned  # shared by every curve
