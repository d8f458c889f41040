"""The contrastive stage (SetFit's pairs) on a tiny random BERT: pairs, training, the hook in fit."""
from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from test_transformer import make_encoder, sentiment, small_config
from ulmtl import RecipeConfig, TextClassifier, parse_args
from ulmtl.backbones import transformer
from ulmtl.config import TransformerConfig
from ulmtl.contrastive import (
    LOG_EVERY, contrastive_finetune, contrastive_pairs, first_windows, pair_loss, sentence_embeddings,
    wants_contrastive,
)
from ulmtl.report import model_card, plot_training

LABELS = np.array([0, 0, 0, 1, 1, 2, 2, 2, 2, 3])  # label 3 has a single text


@pytest.fixture(scope="module")
def encoder_dir(tmp_path_factory):
    return make_encoder(tmp_path_factory.mktemp("tiny-bert"))


@pytest.fixture(scope="module")
def tokenizer(encoder_dir):
    return transformer.load_tokenizer(str(encoder_dir))


def test_pairs_are_balanced_with_targets_that_say_whether_the_labels_agree():
    pairs = contrastive_pairs(LABELS, iterations=20, max_pairs=10 ** 6, seed=0)
    assert len(pairs) == 2 * 20 * len(LABELS)
    assert pairs.target.sum() == len(pairs) / 2
    same = LABELS[pairs.first] == LABELS[pairs.second]
    assert np.array_equal(same, pairs.target == 1.0)
    # Every text leads one positive and one negative pair per round.
    for target in (0.0, 1.0):
        leading = np.bincount(pairs.first[pairs.target == target], minlength=len(LABELS))
        assert leading.tolist() == [20] * len(LABELS)
    # A text is paired with itself only when its label has no other text.
    assert set(pairs.first[pairs.first == pairs.second].tolist()) == {9}
    # Positives reach more than one partner (a random one each round).
    assert len(set(pairs.second[(pairs.first == 5) & (pairs.target == 1.0)].tolist())) > 1


def test_pairs_are_deterministic_for_a_seed_and_cut_at_max_pairs():
    first, again = (contrastive_pairs(LABELS, 5, 10 ** 6, seed=3) for _ in range(2))
    other = contrastive_pairs(LABELS, 5, 10 ** 6, seed=4)
    assert all(np.array_equal(getattr(first, k), getattr(again, k)) for k in ("first", "second", "target"))
    assert not np.array_equal(first.second, other.second)
    cut = contrastive_pairs(LABELS, 5, max_pairs=13, seed=3)
    assert len(cut) == 12 and cut.target.sum() == 6


@pytest.mark.parametrize("labels", [np.zeros(5, dtype=np.int64), np.array([1]), np.zeros((4, 2))])
def test_pairs_refuse_labels_without_two_classes_or_not_one_per_text(labels):
    with pytest.raises(ValueError, match="contrastive pairs need"):
        contrastive_pairs(labels, 2, 100, seed=0)


def test_auto_runs_the_stage_for_small_training_sets_only():
    auto = TransformerConfig(contrastive="auto", contrastive_auto_max=100)
    assert wants_contrastive(auto, 100) and not wants_contrastive(auto, 101)
    assert wants_contrastive(TransformerConfig(contrastive="on"), 10 ** 6)
    assert not wants_contrastive(TransformerConfig(contrastive="off"), 2)
    assert TransformerConfig().contrastive == "off"


def test_mean_pooling_ignores_padding(encoder_dir, tokenizer):
    encoder = transformer.load_encoder(str(encoder_dir)).eval()
    docs = transformer.encode_texts(tokenizer, ["a great film", "what a great and fun plot boring dull cast"],
                                    0)
    special = transformer.special_ids(tokenizer)
    with torch.no_grad():
        alone = sentence_embeddings(encoder, *first_windows(docs[:1], special, 256))
        together = sentence_embeddings(encoder, *first_windows(docs, special, 256))
    assert torch.allclose(alone[0], together[0], atol=1e-5)
    ids, mask = first_windows(docs, special, window=4)  # first and last special token, 2 of text
    assert ids.shape == (2, 4) and ids[1].tolist() == [special[0], *docs[1][:2], special[1]]


def test_the_stage_moves_the_encoder_and_lowers_the_pair_loss(encoder_dir, tokenizer):
    texts, labels = sentiment()
    label_ids = np.array([int(v == "pos") for v in labels])
    docs = transformer.encode_texts(tokenizer, texts, 0)
    special = transformer.special_ids(tokenizer)
    settings = TransformerConfig(contrastive="on", contrastive_iterations=4, contrastive_lr=1e-3)
    encoder = transformer.load_encoder(str(encoder_dir))
    before = {k: v.clone() for k, v in encoder.state_dict().items()}
    pairs = contrastive_pairs(label_ids, 4, 10 ** 6, seed=1)
    everything = np.arange(len(pairs))

    def loss() -> float:
        with torch.no_grad():
            return pair_loss(encoder.eval(), docs, pairs, everything, special, settings.window,
                             torch.device("cpu")).item()

    start = loss()
    torch.manual_seed(0)
    logged = []
    record = contrastive_finetune(encoder, special, docs, label_ids, settings, seed=1,
                                  device=torch.device("cpu"), log=logged.append)
    assert loss() < start / 2
    assert any(not torch.equal(before[k], v) for k, v in encoder.state_dict().items())
    assert record["pairs"] == 2 * 4 * len(texts) and record["positive_pairs"] == 4 * len(texts)
    assert record["steps"] == math.ceil(record["pairs"] / 16)
    assert record["final_loss"] < record["first_loss"]
    # A progress line every LOG_EVERY steps, and one for the last step.
    steps = record["steps"]
    assert [line["step"] for line in logged] == list(range(LOG_EVERY, steps, LOG_EVERY)) + [steps]


@pytest.mark.parametrize("mode", ["off", "on"])
def test_fit_runs_the_stage_before_the_plan_and_records_it(encoder_dir, tmp_path, mode):
    """feature_extraction freezes the encoder during the plan, so its weights show what the
    contrastive stage (alone) did to it."""
    texts, labels = sentiment()
    settings = TransformerConfig(contrastive=mode, contrastive_iterations=2, contrastive_lr=1e-3)
    pretrained = transformer.load_encoder(str(encoder_dir)).state_dict()
    clf = TextClassifier(small_config(strategy="feature_extraction"), encoders=encoder_dir,
                         model_config=settings, verbose=False).fit(texts, labels)
    after = clf.models_["forward"].encoder.state_dict()
    history = clf.history_["forward"]
    unchanged = all(torch.equal(pretrained[k], after[k].cpu()) for k in pretrained)
    if mode == "off":
        assert unchanged and "stage" not in history[0]
        return
    assert not unchanged
    stage, plan = history[0], history[1:]
    assert stage["stage"] == "contrastive" and stage["pairs"] == 2 * 2 * len(texts)
    assert stage["steps"] == math.ceil(stage["pairs"] / 16) and stage["seconds"] >= 0
    assert math.isfinite(stage["final_loss"])
    assert len(plan) == 1 and plan[0]["groups"] == [len(plan[0]["peak_lrs"]) - 1]  # the head alone
    card = model_card(clf, None, {}, "test")
    assert f"stage 1: contrastive pairs (SetFit's), {stage['pairs']} pairs" in card
    assert plot_training(history, tmp_path / "training.png").exists()
    loaded = TextClassifier.load(clf.save(tmp_path / "clf"))
    assert loaded.history_["forward"][0] == stage


@pytest.mark.parametrize("override, key", [
    ("--transformer.contrastive=maybe", "transformer.contrastive"),
    ("--transformer.contrastive_iterations=0", "transformer.contrastive_iterations"),
    ("--transformer.contrastive_max_pairs=1", "transformer.contrastive_max_pairs"),
    ("--transformer.contrastive_batch_size=0", "transformer.contrastive_batch_size"),
    ("--transformer.contrastive_lr=0", "transformer.contrastive_lr"),
    ("--transformer.contrastive_auto_max=0", "transformer.contrastive_auto_max"),
])
def test_bad_contrastive_settings_exit_at_parse_time(capsys, override, key):
    with pytest.raises(SystemExit) as info:
        parse_args(RecipeConfig(), [override])
    assert info.value.code == 2
    assert key in capsys.readouterr().err


def test_contrastive_settings_parse():
    config = parse_args(RecipeConfig(), ["--transformer.contrastive=on", "--transformer.contrastive_lr=1e-5"])
    assert config.transformer.contrastive == "on" and config.transformer.contrastive_lr == 1e-5
