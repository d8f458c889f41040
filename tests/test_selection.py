"""Strategy "auto" (ulmtl.selection): the candidates, cheapest first, on a validation split of the
training texts; the best refitted on all of them; the record in the classifier and in metrics.json."""
from __future__ import annotations

import json
from dataclasses import replace

import pytest
from sklearn.dummy import DummyClassifier
from sklearn.feature_extraction.text import CountVectorizer
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import make_pipeline

from conftest import TINY, synthetic
from test_transformer import POS_NEG, make_encoder, sentiment, small_config

from ulmtl import ClassifierConfig, ModelConfig, TextClassifier, TransformerConfig, parse_args, RecipeConfig
from ulmtl.config import TRANSFORMER_CLASSIFIER
from ulmtl.command import main
from ulmtl.datasets import DataError
from ulmtl.schedule import training_plan
from ulmtl.selection import (
    AUTO_MIN_HOLD_OUT, STRATEGIES, Candidate, candidate_estimator, candidates_for, number_of_folds, select_strategy,
    validation_folds, validation_split, with_strategy,
)
from ulmtl.training import NonFiniteLoss

CANDIDATES = [Candidate("awd_lstm", strategy) for strategy in STRATEGIES]


def tagged(n: int, prefix: str) -> tuple[list[str], list[str]]:
    """Separable texts, each carrying its own token (``<prefix><i>``) that shows who saw it."""
    return ([f"{'great fun' if i % 2 else 'dull boring'} film {prefix}{i}" for i in range(n)],
            ["pos" if i % 2 else "neg" for i in range(n)])


class Maker:
    """Builds each candidate's estimator from a table {strategy: factory}; keeps the strategies asked
    for and the estimators made."""

    def __init__(self, factories: dict):
        self.factories, self.tried, self.made = factories, [], []

    def __call__(self, candidate: Candidate):
        self.tried.append(candidate.strategy)
        self.made.append(self.factories[candidate.strategy]())
        return self.made[-1]


def words() -> object:
    return make_pipeline(CountVectorizer(), LogisticRegression())


def constant() -> object:
    return DummyClassifier(strategy="constant", constant="pos")


def seen(estimator) -> set[str]:
    """The per-text tokens an estimator's vectorizer was fitted on."""
    return {w for w in estimator.steps[0][1].vocabulary_ if w.startswith("train")}


# --------------------------------------------------------------------------- select_strategy

def test_candidates_run_cheapest_first_and_the_best_wins():
    texts, labels = tagged(40, "train")
    maker = Maker({"feature_extraction": constant, "finetune": words, "scratch": words})
    selection = select_strategy(maker, CANDIDATES, texts, labels, 0.25, 0, seed=3)
    assert maker.tried == list(STRATEGIES)  # in the order given: cheapest first
    record = selection.to_dict()
    assert [c["status"] for c in record["candidates"]] == ["ran"] * 3
    assert [c["valid_accuracy"] for c in record["candidates"]] == [0.5, 1.0, 1.0]
    assert all(c["seconds"] >= 0 for c in record["candidates"])
    # finetune and scratch tie at 1.0: the one tried first (the cheaper) wins.
    assert selection.winner.strategy == "finetune" and record["winner"]["valid_accuracy"] == 1.0
    assert record["reason"] == ("highest validation accuracy 1.0000 vs 0.5000 (awd_lstm feature_extraction); "
                                "tied with awd_lstm scratch: the one tried first wins")
    assert (record["n_fit"], record["n_valid"]) == (30, 10)


def test_the_split_is_stratified_seeded_and_only_of_the_given_texts():
    texts, labels = tagged(40, "train")
    maker = Maker({"feature_extraction": words, "finetune": words, "scratch": words})
    select_strategy(maker, CANDIDATES, texts, labels, 0.25, 0, seed=3)
    fitted_on = [seen(estimator) for estimator in maker.made]
    # Every candidate is fitted on the same 30 of the 40 texts; the other 10 only validate.
    assert fitted_on[0] == fitted_on[1] == fitted_on[2] and len(fitted_on[0]) == 30
    fit, valid = validation_split(labels, 0.25, seed=3)
    assert {f"train{i}" for i in fit} == fitted_on[0] and not set(fit) & set(valid)
    assert sorted(labels[i] for i in valid).count("pos") == 5  # stratified: 5 of each class
    assert validation_split(labels, 0.25, seed=3) == (fit, valid)
    assert validation_split(labels, 0.25, seed=4) != (fit, valid)


def test_a_spent_budget_skips_the_later_candidates_and_says_so():
    texts, labels = tagged(40, "train")
    maker = Maker({"feature_extraction": words, "finetune": words, "scratch": words})
    selection = select_strategy(maker, CANDIDATES, texts, labels, 0.25, time_budget_s=1e-6, seed=0)
    record = selection.to_dict()
    assert maker.tried == ["feature_extraction"]  # the cheapest runs regardless
    assert [c["status"] for c in record["candidates"]] == ["ran", "skipped", "skipped"]
    assert all(c["reason"].startswith("time budget of 1e-06 s spent") for c in record["candidates"][1:])
    assert selection.winner.strategy == "feature_extraction"
    assert record["reason"].startswith("the only candidate that ran (validation accuracy 1.0000); awd_lstm "
                                       "finetune skipped: time budget of 1e-06 s spent")


def test_failed_and_unavailable_candidates_are_reported_and_the_rest_run():
    texts, labels = tagged(40, "train")

    def diverges():
        raise NonFiniteLoss("classifier training (forward): loss is nan at batch 3")

    maker = Maker({"finetune": diverges, "scratch": constant})
    candidates = [Candidate("awd_lstm", "feature_extraction", "no pretrained encoders given (encoders=None)"),
                  *CANDIDATES[1:]]
    record = select_strategy(maker, candidates, texts, labels, 0.25, 0, seed=0).to_dict()
    assert maker.tried == ["finetune", "scratch"]
    assert [(c["status"], c["reason"]) for c in record["candidates"]] == [
        ("skipped", "no pretrained encoders given (encoders=None)"),
        ("failed", "NonFiniteLoss: classifier training (forward): loss is nan at batch 3"), ("ran", "")]
    assert record["winner"]["strategy"] == "scratch"
    with pytest.raises(DataError, match="no candidate could be fitted .*finetune: failed, NonFiniteLoss"):
        select_strategy(Maker({"finetune": diverges}), candidates[:2], texts, labels, 0.25, 0, seed=0)


def test_with_folds_every_text_is_validated_once_by_a_fresh_fit_on_the_others():
    texts, labels = tagged(40, "train")
    maker = Maker({"feature_extraction": constant, "finetune": words, "scratch": words})
    record = select_strategy(maker, CANDIDATES, texts, labels, 0.25, 0, seed=3, folds=4).to_dict()
    assert len(maker.made) == 3 * 4  # one estimator per candidate and fold
    splits = validation_folds(labels, 0.25, 4, seed=3)
    validated = sorted(i for _, valid in splits for i in valid)
    assert validated == list(range(40))  # each text validated exactly once
    for (fit, valid), estimator in zip(splits, maker.made[4:8]):  # finetune's four fits
        assert seen(estimator) == {f"train{i}" for i in fit} and not set(fit) & set(valid)
        assert sorted(labels[i] for i in valid).count("pos") == 5  # stratified
    assert (record["folds"], record["n_valid"], record["n_fit"]) == (4, 40, 30)
    assert record["candidates"][0]["fold_accuracies"] == [0.5] * 4
    assert record["candidates"][0]["valid_accuracy"] == 0.5  # pooled over the folds
    assert validation_folds(labels, 0.25, 4, seed=3) == splits != validation_folds(labels, 0.25, 4, seed=4)


def test_auto_folds_zero_cross_validates_only_when_a_hold_out_would_be_small():
    two = ["a", "b"]
    assert AUTO_MIN_HOLD_OUT == 100
    assert number_of_folds(two * 250, 0.2, 0) == 1  # a hold-out of 100 texts
    assert number_of_folds(two * 245, 0.2, 0) == 5  # of 98: round(1 / fraction) folds
    assert number_of_folds(two * 50, 0.25, 0) == 4
    assert number_of_folds(two * 50, 0.01, 0) == 10  # at most AUTO_MAX_FOLDS
    assert number_of_folds(["a", "b", "c"] * 4, 0.2, 0) == 4  # at most the largest class's count
    assert number_of_folds(two * 50, 0.2, 1) == 1 and number_of_folds(two * 250, 0.2, 7) == 7
    with pytest.raises(DataError, match=r"auto_folds=7 stratified folds of the 12 training texts, but no class "
                                        r"has 7 texts \(the largest has 4\)"):
        number_of_folds(["a", "b", "c"] * 4, 0.2, 7)
    splits = validation_folds(["a", "b", "c"] * 4, 0.2, 0, seed=0)  # a tiny set still splits
    assert len(splits) == 4 and sorted(i for _, valid in splits for i in valid) == list(range(12))


def test_a_class_rarer_than_the_folds_is_in_fewer_folds_and_always_in_the_fit_part():
    labels = ["a", "b"] * 20 + ["rare", "rare"]
    splits = validation_folds(labels, 0.2, 0, seed=1)  # 5 folds; "rare" has 2 texts
    assert len(splits) == 5 and sorted(i for _, valid in splits for i in valid) == list(range(42))
    assert sum("rare" in [labels[i] for i in valid] for _, valid in splits) == 2
    assert all({"a", "b", "rare"} <= {labels[i] for i in fit} for fit, _ in splits)
    with pytest.raises(DataError, match=r"cross-validates over 5 stratified folds of the 41 training texts: "
                                        r"every class needs 2 examples or more, and class\(es\) \['odd'\]"):
        validation_folds(labels[:40] + ["odd"], 0.2, 0, seed=1)


def test_classes_too_small_to_split_are_refused_before_any_fit():
    texts, labels = tagged(9, "train")
    maker = Maker({})
    with pytest.raises(DataError, match=r"every class needs 2 examples or more, and class\(es\) \['odd'\] "
                                        r"have 1"):
        select_strategy(maker, CANDIDATES, texts + ["odd one"], labels + ["odd"], 0.2, 0, seed=0)
    with pytest.raises(DataError, match=r"auto_valid_fraction=0.1 of the 9 training texts \(1 texts held "
                                        r"out, 8 left to fit on\), but each part needs one text of each of "
                                        r"the 2"):
        select_strategy(maker, CANDIDATES, texts, labels, 0.1, 0, seed=0)
    assert maker.tried == []


# --------------------------------------------------------------------------- configuration

def test_auto_is_a_strategy_of_the_command_line_and_its_fields_act_only_with_it(capsys):
    config = parse_args(RecipeConfig(), ["--classifier.strategy=auto", "--classifier.auto_budget_s=30",
                                         "--classifier.auto_valid_fraction=0.3", "--classifier.auto_folds=3"])
    assert (config.classifier.strategy, config.classifier.auto_budget_s) == ("auto", 30.0)
    assert config.classifier.auto_folds == 3
    with pytest.raises(SystemExit) as info:
        parse_args(RecipeConfig(), ["--classifier.auto_budget_s=30"])
    assert info.value.code == 2
    assert capsys.readouterr().err == ("error: config key 'classifier.auto_budget_s' is used by strategy "
                                       "'auto' only (strategy is 'finetune'); got 30.0\n")
    with pytest.raises(ValueError, match="strategy 'auto' has no plan of its own"):
        training_plan(ClassifierConfig(strategy="auto"), 4)


# --------------------------------------------------------------------------- TextClassifier

@pytest.fixture(scope="module")
def encoder_dir(tmp_path_factory):
    return make_encoder(tmp_path_factory.mktemp("tiny-bert"))


def test_auto_keeps_head_min_steps_for_the_strategies_with_a_head_stage_and_drops_it_for_scratch():
    config = ClassifierConfig(strategy="auto", head_min_steps=40, auto_folds=3)
    assert with_strategy(config, "finetune").head_min_steps == 40
    assert with_strategy(config, "feature_extraction").head_min_steps == 40
    scratch = with_strategy(config, "scratch")
    assert (scratch.strategy, scratch.head_min_steps, scratch.auto_folds) == ("scratch", 0, 0)


def auto_transformer(encoder_dir, **changes) -> TextClassifier:
    changes = {"auto_backbones": "own", **changes}
    config = small_config(strategy="auto", stage_epochs=(1, 1), **changes)
    return TextClassifier(config, encoders=encoder_dir, model_config=TransformerConfig(), verbose=False)


@pytest.fixture(scope="module")
def fitted(encoder_dir):
    texts, labels = sentiment()
    valid = (["great fun", "dull boring"], ["pos", "neg"])
    return auto_transformer(encoder_dir).fit(texts, labels, valid=valid)


def test_fit_selects_among_the_backbones_strategies_and_refits_the_winner_on_all_texts(fitted):
    record = fitted.selection_
    assert [c["strategy"] for c in record["candidates"]] == list(STRATEGIES)
    assert {c["backbone"] for c in record["candidates"]} == {"transformer"}
    ran = [c for c in record["candidates"] if c["status"] == "ran"]
    assert len(ran) == 3 and record["winner"]["valid_accuracy"] == max(c["valid_accuracy"] for c in ran)
    assert fitted.chosen_strategy_ == record["winner"]["strategy"]
    # The selection cross-validated over the 48 training texts alone (not the 2 of `valid`): a hold-out
    # of 10 is too small, so 5 folds of 9 or 10; the refit took all 48.
    assert (record["folds"], record["n_fit"], record["n_valid"], record["n_refit"]) == (5, 38, 48, 48)
    assert all(len(c["fold_accuracies"]) == 5 for c in ran)
    assert sum(fitted.train_counts_.values()) == 48
    # The refit trained the winner's plan, reporting on `valid` after every epoch.
    plan = training_plan(small_config(strategy=fitted.chosen_strategy_, stage_epochs=(1, 1)), 5)
    stages = fitted.history_["forward"]
    assert [s["epochs"] for s in stages] == [s.epochs for s in plan]
    assert all("accuracy" in epoch for stage in stages for epoch in stage["epoch_values"])
    assert fitted.config.strategy == "auto"  # the estimator's parameters stay as given


def test_the_selection_is_saved_with_the_classifier(fitted, tmp_path):
    fitted.save(tmp_path / "model")
    saved = json.loads((tmp_path / "model" / "forward" / "config.json").read_text())
    assert saved["classifier"]["strategy"] == "auto" and saved["selection"] == fitted.selection_
    loaded = TextClassifier.load(tmp_path / "model")
    assert loaded.selection_ == fitted.selection_ and loaded.chosen_strategy_ == fitted.chosen_strategy_
    probe = ["great fun", "dull boring"]
    assert (loaded.predict(probe) == fitted.predict(probe)).all()
    assert f"- strategy auto: {fitted.selection_['reason']}" in (tmp_path / "model" / "README.md").read_text()


def test_auto_is_deterministic_under_the_seed(encoder_dir, fitted):
    texts, labels = sentiment()
    again = auto_transformer(encoder_dir).fit(texts, labels)
    first = [(c["name"], c["valid_accuracy"]) for c in fitted.selection_["candidates"]]
    assert [(c["name"], c["valid_accuracy"]) for c in again.selection_["candidates"]] == first
    assert again.chosen_strategy_ == fitted.chosen_strategy_
    assert (again.predict_proba(texts) == fitted.predict_proba(texts)).all()


def test_contrastive_auto_makes_finetune_with_the_stage_a_candidate_of_its_own(encoder_dir):
    clf = auto_transformer(encoder_dir)
    assert [c.name for c in candidates_for(clf, 48)] == [f"transformer {s}" for s in STRATEGIES]
    settings = TransformerConfig(contrastive="auto", contrastive_auto_max=100)
    clf.set_params(model_config=settings)
    candidates = candidates_for(clf, 48)
    assert [c.name for c in candidates] == [f"transformer {s}" for s in STRATEGIES] + [
        "transformer finetune + contrastive"]
    # The selection decides the stage: off in the first three, on in the last.
    made = [candidate_estimator(clf, c) for c in candidates]
    assert [m.model_config.contrastive for m in made] == ["off", "off", "off", "on"]
    assert [m.config.strategy for m in made] == [*STRATEGIES, "finetune"]
    assert clf.model_config.contrastive == "auto"  # the classifier's own parameters stay as given
    assert candidates_for(clf, 101)[-1].unavailable == ("more than transformer.contrastive_auto_max=100 "
                                                        "training texts (101)")
    # "on" or "off" act in every candidate as given: no candidate of its own.
    clf.set_params(model_config=TransformerConfig(contrastive="on"))
    assert len(candidates_for(clf, 48)) == 3 and candidate_estimator(clf, candidates[0]).model_config.contrastive == "on"


def test_a_selection_with_the_contrastive_candidate_refits_the_winner_as_it_was_validated(encoder_dir, tmp_path):
    texts, labels = sentiment()
    clf = auto_transformer(encoder_dir, auto_folds=1).set_params(
        model_config=TransformerConfig(contrastive="auto", contrastive_iterations=2, contrastive_lr=1e-3))
    clf.fit(texts, labels)
    record = clf.selection_
    assert [(c["name"], c["status"]) for c in record["candidates"]][-1] == ("transformer finetune + contrastive", "ran")
    assert record["folds"] == 1 and record["candidates"][-1]["contrastive"] is True
    ran_stage = clf.history_["forward"][0].get("stage") == "contrastive"
    assert ran_stage == record["winner"]["contrastive"]
    # Saved and loaded, the classifier has the parameters it was given (contrastive "auto", decided
    # again by a new fit), the selection record saying what ran, and the same predictions.
    loaded = TextClassifier.load(clf.save(tmp_path / "model"))
    assert loaded.model_config.contrastive == "auto" and loaded.selection_ == record
    assert (loaded.predict_proba(texts) == clf.predict_proba(texts)).all()


def test_auto_backbones_both_adds_the_other_backbones_strategies_with_its_own_defaults(encoder_dir):
    transformer = auto_transformer(encoder_dir, auto_backbones="both", seed=7)
    candidates = candidates_for(transformer, 48)
    assert [c.name for c in candidates] == [f"{b} {s}" for b in ("transformer", "awd_lstm") for s in STRATEGIES]
    # The AWD-LSTM has no encoders here: from scratch only.
    assert [bool(c.unavailable) for c in candidates] == [False] * 3 + [True, True, False]
    made = candidate_estimator(transformer, candidates[5])
    assert made.backbone.name == "awd_lstm" and made.encoders is None and made.model_config == ModelConfig()
    assert made.config == with_strategy(replace(ClassifierConfig(), seed=7), "scratch")
    # The other way round: the transformer's three, on the bundled encoder, with its defaults.
    awd = TextClassifier(ClassifierConfig(strategy="auto", seed=7), model_config=TINY, verbose=False)
    candidates = candidates_for(awd, 48)
    assert [(c.name, bool(c.unavailable)) for c in candidates][3:] == [
        (f"transformer {s}", False) for s in STRATEGIES]
    made = candidate_estimator(awd, candidates[4])
    assert made.backbone.name == "transformer" and made.encoders is None
    assert made.config == with_strategy(replace(TRANSFORMER_CLASSIFIER, seed=7), "finetune")
    assert len(candidates_for(awd.set_params(config=ClassifierConfig(strategy="auto", auto_backbones="own")),
                              48)) == 3


def test_a_winner_of_the_other_backbone_predicts_saves_and_loads_as_that_backbone(tmp_path):
    """An AWD-LSTM whose own candidate cannot learn (lr 1e-9: one class for every text, half right
    on the stratified hold-out): the bundled transformer wins."""
    texts, labels = synthetic(40, seed=5)
    config = ClassifierConfig(strategy="auto", auto_folds=1, batch_size=16, bptt=10, max_len=100,
                              unfreeze_plan=(1, 0), stage_epochs=(1, 1), stage_lr_mult=(1.0, 1.0), lr=1e-9)
    clf = TextClassifier(config, model_config=TINY, verbose=False).fit(texts, labels)
    record = clf.selection_
    scores = {c["name"]: c["valid_accuracy"] for c in record["candidates"]}
    assert scores["awd_lstm scratch"] == 0.5 and record["winner"]["backbone"] == "transformer"
    assert clf.backbone.name == "awd_lstm" and clf.trained_backbone.name == "transformer"
    assert clf.trained_config_.lr == TRANSFORMER_CLASSIFIER.lr and clf.config == config  # params as given
    assert clf.score(texts, labels) > 0.5
    loaded = TextClassifier.load(clf.save(tmp_path / "model"))
    assert loaded.trained_backbone.name == "transformer" and loaded.chosen_strategy_ == clf.chosen_strategy_
    assert loaded.config.strategy == "auto" and loaded.config.auto_folds == 1 and loaded.config.max_len == 1024
    assert (loaded.predict_proba(texts) == clf.predict_proba(texts)).all()
    card = (tmp_path / "model" / "README.md").read_text()
    assert f"strategy auto (chose transformer {clf.chosen_strategy_})" in card


def test_an_awd_lstm_without_encoders_has_scratch_only():
    texts, labels = synthetic(40, seed=5)
    config = ClassifierConfig(strategy="auto", auto_backbones="own", batch_size=16, bptt=10, max_len=100,
                              unfreeze_plan=(1, 0), stage_epochs=(1, 1), stage_lr_mult=(1.0, 1.0), lr=0.02)
    clf = TextClassifier(config, model_config=TINY, verbose=False).fit(texts, labels)
    record = clf.selection_
    assert [(c["strategy"], c["status"]) for c in record["candidates"]] == [
        ("feature_extraction", "skipped"), ("finetune", "skipped"), ("scratch", "ran")]
    assert record["candidates"][0]["reason"] == "no pretrained awd_lstm encoders given"
    assert clf.chosen_strategy_ == "scratch" and sum(clf.train_counts_.values()) == 40


# --------------------------------------------------------------------------- the recipe

def test_a_recipe_run_reports_the_selection_in_metrics_json_and_on_screen(encoder_dir, tmp_path, capsys):
    rows = [{"text": t, "label": label} for texts, label in zip(POS_NEG, ("pos", "neg")) for t in texts]
    (tmp_path / "train.jsonl").write_text("\n".join(json.dumps(r) for r in rows))
    out = tmp_path / "run"
    main(["train", str(tmp_path / "train.jsonl"), "--pretrained", str(encoder_dir), "--smoke",
          "--classifier.strategy=auto", "--output", str(out)])
    metrics = json.loads((out / "metrics.json").read_text())
    record = metrics["auto"]
    assert metrics["strategy"] == "auto" and metrics["chosen_strategy"] == record["winner"]["strategy"]
    assert [c["strategy"] for c in record["candidates"]] == list(STRATEGIES)
    assert all(c["status"] == "ran" and c["valid_accuracy"] is not None for c in record["candidates"])
    # The selection saw the training split alone (44 of the 48 rows; the rest are the test split),
    # each text validated once over the folds.
    assert record["n_valid"] == record["n_refit"] == metrics["n_train"] == 44 and record["folds"] == 5
    assert metrics["n_train"] + metrics["test"]["n_test"] == 48
    assert metrics["lm_finetune"]  # stage 2 ran, as for finetune
    screen = capsys.readouterr().out
    # --smoke keeps to the run's backbone: the other's candidates would train at its full defaults.
    assert "ulmtl: --smoke: strategy auto tries the transformer's strategies only" in screen
    assert {c["backbone"] for c in record["candidates"]} == {"transformer"}
    assert metrics["config"]["classifier"]["auto_backbones"] == "own" and metrics["chosen_backbone"] == "transformer"
    assert "ulmtl: auto: candidate" in screen
    assert f"{record['winner']['name']} wins: {record['reason']}" in screen
    report = (out / "report.md").read_text()
    assert "## Strategy selection (auto)" in report
    assert "5-fold cross-validation of 44 training texts (fitted on 35 or more per fold" in report
