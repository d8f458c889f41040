"""What a run leaves to look at: the recorded schedule, the plots, top losses, the model card."""
from __future__ import annotations

import numpy as np
import pytest
from matplotlib.image import imread

from test_transformer import make_encoder, sentiment, small_config
from ulmtl import TextClassifier
from ulmtl.checkpoint import check_no_pickle
from ulmtl.config import TransformerConfig
from ulmtl.classify import TRACE_POINTS, _batch_trace
from ulmtl.report import model_card, plot_confusion, plot_training, top_losses
from ulmtl.schedule import schedule_value


@pytest.fixture(scope="module")
def fitted(tmp_path_factory):
    """A tiny random BERT classifier, trained in two stages (the top group, then all four)."""
    encoder_dir = make_encoder(tmp_path_factory.mktemp("tiny-bert"))
    texts, labels = sentiment()
    config = small_config(unfreeze_plan=(1, 0), stage_epochs=(2, 1), stage_lr_mult=(10.0, 1.0), lr_decay=2.0)
    return TextClassifier(config, encoders=encoder_dir, model_config=TransformerConfig(block_groups=2),
                          verbose=False).fit(texts, labels)


def test_history_records_each_groups_lr_as_the_schedule_set_it(fitted):
    config = fitted.config
    first, second = fitted.history_["forward"]
    batches_per_epoch = -(-48 // config.batch_size)  # 48 texts
    for stage, epochs in ((first, 2), (second, 1)):
        trace = stage["trace"]
        assert trace["n_batches"] == epochs * batches_per_epoch
        assert trace["batch"][0] == 0 and trace["batch"][-1] == trace["n_batches"] - 1
        for batch, lrs in zip(trace["batch"], trace["lrs"]):
            expected = schedule_value("stlr", batch / trace["n_batches"], np.array(stage["peak_lrs"]),
                                      config.cut_frac, config.ratio)
            np.testing.assert_allclose(lrs, expected)
        assert len(trace["loss"]) == len(trace["batch"])
        assert len(stage["epoch_values"]) == epochs and "train_loss" in stage["epoch_values"][0]
    assert first["groups"] == [3] and second["groups"] == [0, 1, 2, 3]


def test_a_long_stage_keeps_an_evenly_spaced_trace():
    lrs = [[float(i)] for i in range(1001)]
    trace = _batch_trace(lrs, [0.5] * 1001)
    assert len(trace["batch"]) <= TRACE_POINTS + 1 and trace["batch"][-1] == 1000
    assert trace["lrs"] == [[float(i)] for i in trace["batch"]]
    assert len(set(np.diff(trace["batch"][:-1]))) == 1


def test_plots_are_images(fitted, tmp_path):
    history = fitted.history_["forward"]
    for path in (plot_training(history, tmp_path / "training.png", "title"),
                 plot_confusion([[5, 1], [2, 4]], ["neg", "pos"], tmp_path / "confusion.png")):
        height, width = imread(path).shape[:2]
        assert height > 100 and width > 100


def test_top_losses_are_the_most_confidently_wrong():
    proba = np.array([[0.9, 0.1], [0.2, 0.8], [0.6, 0.4], [0.01, 0.99], [0.3, 0.7]])
    truth = np.array([0, 0, 1, 0, 1])
    worst = top_losses(["a", "b", "c", "d", "e"], truth, proba, ["neg", "pos"], k=2)
    assert [w["text"] for w in worst] == ["d", "b"]  # wrong ones by -log p(true); "a", "e" are right
    assert worst[0]["true"] == "neg" and worst[0]["predicted"] == "pos"
    assert worst[0]["loss"] == pytest.approx(-np.log(0.01))


def test_api_save_writes_a_card_that_load_accepts(fitted, tmp_path):
    folder = fitted.save(tmp_path / "clf")
    card = (folder / "README.md").read_text()
    assert "- command: `Python API`" in card and "None recorded with this save" in card
    assert "48 labelled training texts" in card and "| neg | 24 |" in card
    assert "- backbone: transformer" in card and "stage 2: layer groups [0, 1, 2, 3]" in card
    check_no_pickle(folder)
    loaded = TextClassifier.load(folder)
    assert loaded.train_counts_ == {"neg": 24, "pos": 24}
    assert loaded.history_["forward"][0]["trace"] == fitted.history_["forward"][0]["trace"]


def test_card_lists_the_metrics_it_is_given(fitted):
    metrics = {"accuracy": 0.75, "error": 0.25, "macro_f1": 0.7, "n_test": 8,
               "per_class": {"neg": {"precision": 1.0, "recall": 0.5, "f1": 0.667, "support": 4},
                             "pos": {"precision": 0.667, "recall": 1.0, "f1": 0.8, "support": 4}}}
    card = model_card(fitted, metrics, {"data": "reviews.csv: 48 rows"}, "ulmtl train reviews.csv")
    assert "accuracy **0.75**" in card and "| neg | 1.0 | 0.5 | 0.667 | 4 |" in card
    assert "- data: reviews.csv: 48 rows" in card and "- command: `ulmtl train reviews.csv`" in card
