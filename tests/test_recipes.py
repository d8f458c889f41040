"""Every recipe's ``--smoke`` run: tiny model, tiny subset, real files where the data is present."""
from __future__ import annotations

import ast
import importlib.util
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

RECIPES = Path(__file__).resolve().parents[1] / "recipes"


def recipe(name: str):
    spec = importlib.util.spec_from_file_location(f"recipe_{name}", RECIPES / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def check_outputs(output: Path, n_classes: int) -> dict:
    metrics = json.loads((output / "metrics.json").read_text())
    config = json.loads((output / "config.json").read_text())
    assert config["smoke"] is True
    test = metrics["test"]
    assert 0.0 <= test["accuracy"] <= 1.0 and test["error"] == pytest.approx(1 - test["accuracy"], abs=1e-3)
    assert len(test["confusion_matrix"]) == n_classes and len(test["per_class"]) == n_classes
    assert sum(map(sum, test["confusion_matrix"])) == test["n_test"]
    assert (output / "model" / "forward" / "weights.safetensors").exists()
    check_report(output, metrics)
    return metrics


def check_report(output: Path, metrics: dict) -> None:
    """The plots are images, the report names the run's classes and metrics, the model card its metrics."""
    from matplotlib.image import imread
    for name in ("confusion_matrix.png", "training.png"):
        assert (output / name).read_bytes().startswith(b"\x89PNG"), name
        height, width = imread(output / name).shape[:2]
        assert height > 100 and width > 100, name
    report = (output / "report.md").read_text()
    assert f"accuracy **{metrics['test']['accuracy']}**" in report
    assert all(f"| {c} |" in report for c in metrics["test"]["per_class"])
    assert "![training](training.png)" in report and "## Most confidently wrong test texts" in report
    card = (output / "model" / "README.md").read_text()
    assert f"macro-F1 **{metrics['test']['macro_f1']}**" in card and "ulmtl version: " in card


@pytest.mark.parametrize("name, n_classes", [("trec", 6), ("mr", 2)])
def test_dataset_recipe_smoke(name, n_classes, shared_data, tmp_path):
    out = tmp_path / name
    recipe(name).main(["--smoke", "--output", str(out), "--data-dir", str(shared_data)])
    metrics = check_outputs(out, n_classes)
    assert metrics["lm_finetune"]["forward"]["valid_perplexity"] > 0
    assert (out / "lm-forward" / "weights.safetensors").exists()


def test_polarity_recipe_smoke_reads_long_documents(shared_data, tmp_path):
    out = tmp_path / "polarity"
    recipe("polarity").main(["--smoke", "--output", str(out), "--data-dir", str(shared_data), "--fold=3"])
    check_outputs(out, 2)


def test_recipe_with_scratch_strategy_and_override(shared_data, tmp_path):
    out = tmp_path / "scratch"
    recipe("trec").main(["--smoke", "--output", str(out), "--data-dir", str(shared_data),
                         "--classifier.strategy=scratch", "--seed=7"])
    metrics = check_outputs(out, 6)
    assert metrics["strategy"] == "scratch" and metrics["seed"] == 7 and metrics["lm_finetune"] == {}
    assert metrics["data"]["splits"] == {"train": 5452, "test": 500}  # rows read, before --max_train
    saved = json.loads((out / "config.json").read_text())  # the seed each stage used, not the default
    assert saved["seed"] == saved["finetune"]["seed"] == saved["classifier"]["seed"] == 7


def test_recipe_holds_out_a_validation_split_for_tuning(shared_data, tmp_path):
    out = tmp_path / "valid"
    recipe("trec").main(["--smoke", "--output", str(out), "--data-dir", str(shared_data),
                         "--classifier.strategy=scratch", "--valid_fraction=0.25"])
    metrics = check_outputs(out, 6)
    # ~200 smoke texts (stratified rounding): a quarter is held out and scored, the rest trains.
    n_valid = metrics["valid"]["n_test"]
    assert metrics["n_train"] + n_valid == pytest.approx(200, abs=3)
    assert n_valid == pytest.approx((metrics["n_train"] + n_valid) / 4, abs=3)
    assert 0.0 <= metrics["valid"]["accuracy"] <= 1.0 and len(metrics["valid"]["per_class"]) == 6
    epochs = [json.loads(line) for line in (out / "train_log.jsonl").read_text().splitlines()]
    assert all("accuracy" in record for record in epochs if "epoch_done" in record)


def test_recipe_rejects_a_bad_valid_fraction(shared_data, tmp_path, capsys):
    with pytest.raises(SystemExit) as exit_info:
        recipe("trec").main(["--smoke", "--output", str(tmp_path / "bad"), "--data-dir", str(shared_data),
                             "--classifier.strategy=scratch", "--valid_fraction=1.5"])
    assert exit_info.value.code == 2
    assert "config key 'valid_fraction' must be in [0, 1)" in capsys.readouterr().err
    assert not (tmp_path / "bad").exists()  # refused before the run wrote anything


def test_custom_recipe_on_a_csv_without_test_file(tmp_path):
    rows = ["review,stars"]
    for i in range(120):
        good = i % 2 == 0
        rows.append(f"\"{'great lovely film' if good else 'dull awful film'} number {i}\",{'5' if good else '1'}")
    (tmp_path / "reviews.csv").write_text("\n".join(rows) + "\n")
    out = tmp_path / "custom"
    recipe("custom").main(["--smoke", "--train", str(tmp_path / "reviews.csv"), "--text-column", "review",
                           "--label-column", "stars", "--output", str(out)])
    metrics = check_outputs(out, 2)
    assert metrics["test"]["n_test"] == 12
    assert set(metrics["test"]["per_class"]) == {"1", "5"}


def test_custom_recipe_reports_a_missing_column(tmp_path, capsys):
    (tmp_path / "data.csv").write_text("text,label\nhello,1\nbye,0\n")
    with pytest.raises(Exception, match="no column 'stars'"):
        recipe("custom").main(["--smoke", "--train", str(tmp_path / "data.csv"), "--label-column", "stars",
                               "--output", str(tmp_path / "out")])


def test_recipe_rejects_unknown_override(tmp_path, capsys):
    with pytest.raises(SystemExit) as exit_info:
        recipe("trec").main(["--classifier.learning_rate=3", "--output", str(tmp_path)])
    assert exit_info.value.code == 2
    assert "classifier.learning_rate" in capsys.readouterr().err


@pytest.mark.parametrize("path", sorted(RECIPES.glob("*.py")), ids=lambda path: path.stem)
def test_every_recipe_runs_through_run_cli(path):
    """``python recipes/X.py`` goes through the one entry that turns bad input into exit status 2."""
    tree = ast.parse(path.read_text())
    guard = [node for node in tree.body if isinstance(node, ast.If) and "__main__" in ast.unparse(node.test)]
    assert len(guard) == 1 and [ast.unparse(node) for node in guard[0].body] == ["run_cli(main)"]


@pytest.mark.slow
def test_a_recipe_that_fails_on_its_data_exits_2_without_a_traceback(tmp_path):
    """imdb (one of the recipes that once ended in a bare main()) without its data, offline."""
    env = dict(os.environ, OMP_NUM_THREADS="1", ULMTL_CACHE_DIR=str(tmp_path / "cache"),
               PYTHONPATH=str(RECIPES.parent), HF_DATASETS_OFFLINE="1", HF_HUB_OFFLINE="1")
    result = subprocess.run([sys.executable, str(RECIPES / "imdb.py"), "--smoke", "--data-dir",
                             str(tmp_path / "nodata"), "--output", str(tmp_path / "out")],
                            capture_output=True, text=True, env=env, cwd=tmp_path, timeout=300)
    assert result.returncode == 2 and "Traceback" not in result.stderr, result.stderr
    assert result.stderr.startswith("error: dataset 'imdb'"), result.stderr


def test_pretrain_general_smoke(tmp_path):
    corpus = tmp_path / "corpus"
    corpus.mkdir()
    lines = [f"The {w} sat on the mat near the {v} ." for w in ("cat", "dog", "bird", "man") for v in
             ("door", "window", "tree", "river", "house")] * 12
    (corpus / "a.txt").write_text("\n".join(lines) + "\n")
    (corpus / "b.txt").write_text("\n\n" + "\n".join(reversed(lines)) + "\n")
    out = tmp_path / "lm"
    metrics = recipe("pretrain_general").main(["--smoke", "--corpus", str(corpus), "--output", str(out)])
    assert metrics["tokens_seen"] > 0 and metrics["valid_perplexity"] > 1
    config = json.loads((out / "config.json").read_text())
    assert config["kind"] == "lm" and config["model"]["hidden_size"] == 16


def test_without_a_stage1_lm_the_recipe_says_how_to_make_one(shared_data, tmp_path, monkeypatch):
    import ulmtl.recipe
    from ulmtl.checkpoint import CheckpointError

    def offline(output, direction):
        raise OSError("Name or service not known")

    monkeypatch.setattr(ulmtl.recipe, "fetch_fastai_wt103", offline)
    monkeypatch.setenv("ULMTL_CACHE_DIR", str(tmp_path / "empty-cache"))
    with pytest.raises(CheckpointError, match="pretrain_general.py"):
        recipe("trec").main(["--backbone=awd_lstm", "--output", str(tmp_path / "out"), "--data-dir", str(shared_data)])


def test_recipe_uses_the_cached_stage1_lm(shared_data, tmp_path, monkeypatch):
    from ulmtl import default_lm_dir
    monkeypatch.setenv("ULMTL_CACHE_DIR", str(tmp_path / "cache"))
    recipe("pretrain_general").main(["--smoke", "--corpus", str(shared_data / "general_corpus" / "inaugural.txt")])
    assert (default_lm_dir("forward") / "weights.safetensors").exists()
    out = tmp_path / "trec"
    recipe("trec").main(["--smoke", "--output", str(out), "--data-dir", str(shared_data)])
    assert not (out / "stage1-forward").exists()  # no tiny LM was trained: the cached one served
    lm = json.loads((out / "lm-forward" / "config.json").read_text())
    assert lm["pretrained"] == "pretrain"


