"""The three stages end to end with a tiny AWD-LSTM (2 layers, 16 units) on synthetic text."""
from __future__ import annotations

import json
import pickle

import numpy as np
import pytest
import torch

from conftest import TINY, synthetic
from ulmtl import (
    ClassifierConfig, FinetuneConfig, ModelConfig, PretrainConfig, TextClassifier, TokenizerConfig,
    finetune_lm, import_fastai_lm, load_checkpoint, pretrain,
)
from ulmtl.checkpoint import CheckpointError
from ulmtl.fastai_files import load_itos_pickle
from ulmtl.backbones.awd_lstm import build_classifier, build_language_model, remap_embeddings
from ulmtl.schedule import discriminative_lrs


@pytest.fixture(scope="module")
def stage1(tmp_path_factory):
    out = tmp_path_factory.mktemp("stage1") / "lm"
    texts, _ = synthetic(600, seed=1, lm_tail=True)
    from datasets import Dataset
    metrics = pretrain(Dataset.from_dict({"text": texts}), out,
                       PretrainConfig(epochs=2, batch_size=8, bptt=10, lr=1e-2, checkpoint_every_s=0,
                                      valid_fraction=0.1),
                       TINY, TokenizerConfig(max_vocab=500, min_freq=1))
    return out, metrics


@pytest.fixture(scope="module")
def stage2(stage1, tmp_path_factory):
    out = tmp_path_factory.mktemp("stage2") / "lm"
    texts, _ = synthetic(300, seed=2, lm_tail=True)
    metrics = finetune_lm(texts, stage1[0], out, FinetuneConfig(epochs=2, batch_size=8, bptt=10),
                          TokenizerConfig(min_freq=1))
    return out, metrics


def small_classifier_config(**changes) -> ClassifierConfig:
    base = dict(batch_size=16, bptt=10, max_len=100, stage_epochs=(1, 1, 1, 2), lr=0.02)
    base.update(changes)
    return ClassifierConfig(**base)


def test_pretraining_lowers_perplexity_and_writes_checkpoint(stage1):
    out, metrics = stage1
    checkpoint = load_checkpoint(out)
    assert checkpoint.kind == "lm" and checkpoint.config["model"]["hidden_size"] == 16
    assert metrics["tokens_seen"] > 0 and metrics["tokens_per_s"] > 0
    # A uniform guess over the vocabulary has perplexity len(vocab); training must beat it.
    assert metrics["valid_perplexity"] < len(checkpoint.tokens) / 2
    records = [json.loads(line) for line in (out / "train_log.jsonl").read_text().splitlines()]
    per_epoch = [r["perplexity"] for r in records if "epoch_done" in r]
    assert len(per_epoch) == 2 and per_epoch[1] < per_epoch[0]


def test_pretraining_stops_at_a_token_budget_and_resumes(tmp_path):
    from dataclasses import replace

    from datasets import Dataset
    texts, _ = synthetic(300, seed=8, lm_tail=True)
    corpus = Dataset.from_dict({"text": texts})
    config = PretrainConfig(epochs=2, batch_size=8, bptt=10, valid_fraction=0.1,
                            checkpoint_every_s=1e-6, token_budget=2000)
    first = pretrain(corpus, tmp_path / "lm", config, TINY, TokenizerConfig(min_freq=1))
    assert first["stopped_by_budget"] and 2000 <= first["tokens_seen"] < 2000 + 8 * 10
    saved = load_checkpoint(tmp_path / "lm" / "resume").config["progress"]
    assert saved["tokens"] == first["tokens_seen"] and saved["epoch"] == 0
    second = pretrain(corpus, tmp_path / "lm", replace(config, token_budget=0), TINY, TokenizerConfig(min_freq=1))
    # The resumed run picks up where the first stopped and ends after exactly two epochs of tokens.
    assert not second["stopped_by_budget"]
    assert second["tokens_seen"] == 2 * first["train_tokens_per_epoch"]
    assert second["valid_perplexity"] < first["valid_perplexity"]


def test_pretraining_from_a_memory_mapped_stream(tmp_path):
    from datasets import Dataset
    texts, _ = synthetic(300, seed=9, lm_tail=True)
    metrics = pretrain(Dataset.from_dict({"text": texts}), tmp_path / "lm",
                       PretrainConfig(epochs=2, batch_size=8, bptt=10, stream=True, checkpoint_every_s=0),
                       TINY, TokenizerConfig(min_freq=1))
    assert metrics["tokens_seen"] == 2 * metrics["train_tokens_per_epoch"]
    records = [json.loads(line) for line in (tmp_path / "lm" / "train_log.jsonl").read_text().splitlines()]
    per_epoch = [r["perplexity"] for r in records if "epoch_done" in r]
    assert per_epoch[1] < per_epoch[0]


def test_lm_finetuning_lowers_perplexity_with_discriminative_lrs(stage2):
    out, metrics = stage2
    assert metrics["valid_perplexity"] < metrics["valid_perplexity_before"]
    assert metrics["peak_lrs"] == pytest.approx(discriminative_lrs(4e-3, 3, 2.6))
    last = metrics["last_lrs"]
    # STLR ends near lr/ratio, with the same multiplier for every group: the 2.6 ratios survive.
    assert last[1] / last[0] == pytest.approx(2.6) and last[2] / last[1] == pytest.approx(2.6)
    assert last[-1] < metrics["peak_lrs"][-1] / 10


def test_embedding_remap_keeps_known_rows_and_means_new_ones():
    weight = torch.arange(12, dtype=torch.float32).reshape(4, 3)
    new = remap_embeddings(weight, ["a", "b", "c", "d"], ["c", "zzz", "a"])
    assert torch.equal(new[0], weight[2]) and torch.equal(new[2], weight[0])
    assert torch.allclose(new[1], weight.mean(0))


def test_gradual_unfreezing_trains_one_more_group_each_stage(stage2):
    texts, labels = synthetic(200, seed=3)
    clf = TextClassifier(small_classifier_config(), encoders=stage2[0], verbose=False).fit(texts, labels)
    history = clf.history_["forward"]
    assert [h["trainable_groups"] for h in history] == [1, 2, 3, 4]
    groups = [set(h["trainable_params"]) for h in history]
    assert all(name.startswith("1.") for name in groups[0])                 # the head only
    assert any(n.startswith("0.module.rnns.1.") for n in groups[1])         # + the top LSTM
    assert not any(n.startswith("0.module.rnns.0.") for n in groups[1])
    assert any(n.startswith("0.module.rnns.0.") for n in groups[2])
    assert not any(n.startswith("0.module.encoder") for n in groups[2])
    assert any(n.startswith("0.module.encoder") for n in groups[3])         # everything
    for stage, mult in zip(history, (2.0, 1.0, 0.5, 0.1)):
        assert stage["peak_lrs"] == pytest.approx(discriminative_lrs(0.02 * mult, 4, 2.6))
        final = stage["final_lrs"]
        assert [final[i + 1] / final[i] for i in range(3)] == pytest.approx([2.6] * 3)


def test_feature_extraction_keeps_encoder_frozen_and_scratch_trains_all(stage2):
    texts, labels = synthetic(120, seed=4)
    frozen = TextClassifier(small_classifier_config(strategy="feature_extraction"), encoders=stage2[0],
                            verbose=False).fit(texts, labels)
    (only,) = frozen.history_["forward"]
    assert only["epochs"] == 5 and all(n.startswith("1.") for n in only["trainable_params"])
    encoder = load_checkpoint(stage2[0]).state_dict["0.encoder.weight"]
    assert torch.equal(frozen.models_["forward"][0].module.encoder.weight.detach(), encoder)
    scratch = TextClassifier(small_classifier_config(strategy="scratch"), model_config=TINY,
                             tokenizer=TokenizerConfig(min_freq=1), verbose=False).fit(texts, labels)
    (all_stage,) = scratch.history_["forward"]
    assert any(n.startswith("0.module.encoder") for n in all_stage["trainable_params"])


def test_head_min_steps_lengthens_the_awd_lstm_head_stage(stage2):
    """120 texts in batches of 16 make 8 steps an epoch: feature extraction's 5 epochs (40 steps)
    become 8 for a minimum of 60."""
    texts, labels = synthetic(120, seed=4)
    clf = TextClassifier(small_classifier_config(strategy="feature_extraction", head_min_steps=60),
                         encoders=stage2[0], verbose=False).fit(texts, labels)
    (only,) = clf.history_["forward"]
    assert only["epochs"] == 8 and len(only["epoch_values"]) == 8


def test_run_dropouts_and_precision_act_in_stages_2_and_3_over_the_encoders_saved_ones(stage1, stage2, tmp_path):
    """The encoder decides the architecture; the run's --model dropouts and precision are used."""
    run = ModelConfig(lm_output_p=0.11, lm_hidden_p=0.12, lm_input_p=0.13, lm_embed_p=0.014, lm_weight_p=0.15,
                      clas_output_p=0.21, clas_hidden_p=0.22, clas_input_p=0.23, clas_embed_p=0.024,
                      clas_weight_p=0.25, precision="fp32")  # the default 400/1152/3 sizes: not the encoder's
    saved = load_checkpoint(stage2[0]).config["model"]
    assert saved["clas_input_p"] == 0.4 and saved["precision"] == "auto" and saved["hidden_size"] == 16
    texts, labels = synthetic(60, seed=4)
    config = small_classifier_config(unfreeze_plan=(0,), stage_epochs=(1,), stage_lr_mult=(1.0,), drop_mult=1.0)
    clf = TextClassifier(config, encoders=stage2[0], model_config=run, verbose=False).fit(texts, labels)
    model = clf.models_["forward"]
    encoder = model[0].module
    assert encoder.n_hid == 16 and len(encoder.rnns) == 2
    assert encoder.input_dp.p == pytest.approx(0.23) and encoder.encoder_dp.embed_p == pytest.approx(0.024)
    assert [dp.p for dp in encoder.hidden_dps] == pytest.approx([0.22, 0.22])
    assert [rnn.weight_p for rnn in encoder.rnns] == pytest.approx([0.25, 0.25])
    head_dropouts = [m.p for m in model[1].modules() if isinstance(m, torch.nn.Dropout)]
    assert head_dropouts[0] == pytest.approx(0.21)
    used = clf.model_configs_["forward"]
    assert (used.hidden_size, used.precision, used.clas_input_p) == (16, "fp32", 0.23)
    # Stage 2 likewise: the fine-tuned LM records (and was built with) the run's LM dropouts.
    texts, _ = synthetic(60, seed=5, lm_tail=True)
    finetune_lm(texts, stage1[0], tmp_path / "ft", FinetuneConfig(epochs=1, batch_size=8, bptt=10),
                TokenizerConfig(min_freq=1), model_config=run)
    tuned = load_checkpoint(tmp_path / "ft").config["model"]
    assert (tuned["lm_input_p"], tuned["precision"], tuned["hidden_size"]) == (0.13, "fp32", 16)


def test_chain_thaw_trains_the_head_then_one_group_at_a_time_then_all(stage2):
    texts, labels = synthetic(120, seed=4)
    config = small_classifier_config(unfreezing="chain_thaw", discriminative=False, chain_thaw_epochs=1,
                                     chain_thaw_lr_mult=0.05, stage_lr_mult=(1.0, 1.0, 1.0, 0.1))
    history = TextClassifier(config, encoders=stage2[0], verbose=False).fit(texts, labels).history_["forward"]
    assert [h["groups"] for h in history] == [[3], [0], [1], [2], [0, 1, 2, 3]]
    assert [h["epochs"] for h in history] == [1, 1, 1, 1, 2]
    assert np.allclose([h["peak_lrs"] for h in history], [[0.02] * 4] + [[0.001] * 4] * 3 + [[0.002] * 4])
    bottom, top_lstm = set(history[1]["trainable_params"]), set(history[3]["trainable_params"])
    assert any(n.startswith("0.module.encoder") for n in bottom)
    assert not any(n.startswith("0.module.rnns") for n in bottom)
    assert any(n.startswith("0.module.rnns.1.") for n in top_lstm)
    assert not any(n.startswith(("0.module.encoder", "0.module.rnns.0.")) for n in top_lstm)
    # The head's linear weights rest while a lower group trains (fastai keeps BatchNorm trainable).
    head_linear = {n for n in history[0]["trainable_params"] if n.endswith(".weight")} - bottom
    assert head_linear


def test_a_group_frozen_after_training_stays_put():
    """fastai zeroes gradients rather than dropping them: without dropping them, Adam's weight decay
    (and momentum) would keep moving a group after it is frozen."""
    from types import SimpleNamespace

    from fastai.optimizer import Adam

    from ulmtl.training import train_only_groups

    lower, upper = torch.nn.Linear(3, 3), torch.nn.Linear(3, 1)
    learn = SimpleNamespace(opt=Adam([list(lower.parameters()), list(upper.parameters())], lr=0.1, wd=0.1))
    x = torch.randn(8, 3)

    def step():
        upper(lower(x)).pow(2).mean().backward()
        learn.opt.step()
        learn.opt.zero_grad()

    train_only_groups(learn, [1])
    step()
    assert not lower.weight.requires_grad and upper.weight.requires_grad
    train_only_groups(learn, [0])
    before = upper.weight.detach().clone()
    lower_before = lower.weight.detach().clone()
    step()
    step()
    assert torch.equal(upper.weight.detach(), before)
    assert not torch.equal(lower.weight.detach(), lower_before)


def test_classifier_learns_and_round_trips(stage2, tmp_path):
    texts, labels = synthetic(400, seed=5)
    test_texts, test_labels = synthetic(100, seed=6)
    # Unfreeze after one epoch, one LR for all groups: a 16-unit LM's features need the lower
    # layers to move fast on this toy task (the paper's schedule is measured on real data instead).
    config = small_classifier_config(unfreeze_plan=(1, 0), stage_epochs=(1, 4), stage_lr_mult=(1.0, 1.0),
                                     discriminative=False)
    clf = TextClassifier(config, encoders=stage2[0], verbose=False).fit(texts, labels)
    assert list(clf.classes_) == ["neg", "pos"]
    assert clf.score(test_texts, test_labels) >= 0.8
    # predict keeps the input order although batches are sorted by length
    shuffled = test_texts[::-1]
    assert list(clf.predict(shuffled)) == list(clf.predict(test_texts))[::-1]
    clf.save(tmp_path / "clf")
    loaded = TextClassifier.load(tmp_path / "clf")
    np.testing.assert_array_equal(loaded.predict_proba(test_texts), clf.predict_proba(test_texts))


def test_forward_backward_ensemble_averages_probabilities(stage1, tmp_path):
    texts, labels = synthetic(120, seed=7)
    from datasets import Dataset
    backward = tmp_path / "bwd"
    pretrain(Dataset.from_dict({"text": texts}), backward,
             PretrainConfig(direction="backward", epochs=1, batch_size=8, bptt=10, checkpoint_every_s=0),
             TINY, TokenizerConfig(min_freq=1))
    config = small_classifier_config(directions=("forward", "backward"), stage_epochs=(1, 1, 1, 1))
    clf = TextClassifier(config, encoders={"forward": stage1[0], "backward": backward},
                         verbose=False).fit(texts, labels)
    parts = clf.predict_proba_by_direction(texts[:20])
    assert set(parts) == {"forward", "backward"}
    np.testing.assert_allclose(clf.predict_proba(texts[:20]), (parts["forward"] + parts["backward"]) / 2)
    with pytest.raises(CheckpointError, match="backward LM cannot serve as the forward encoder"):
        TextClassifier(config, encoders={"forward": backward, "backward": backward},
                       verbose=False).fit(texts, labels)


def test_bpt3c_reads_a_document_longer_than_bptt_in_chunks():
    config = ClassifierConfig(bptt=5, max_len=100)
    model = build_classifier(50, 2, TINY, config).eval()
    calls = []
    model[0].module.register_forward_hook(lambda module, args, out: calls.append(args[0].shape[1]))
    doc = torch.randint(10, 50, (1, 23))
    with torch.no_grad():
        out = model(doc)[0]
        assert calls == [5, 5, 5, 5, 3]
        changed = doc.clone()
        changed[0, 0] = 9  # a token in the first chunk still changes the prediction
        assert not torch.allclose(out, model(changed)[0])


def test_bpt3c_pools_only_over_the_last_max_len_tokens():
    config = ClassifierConfig(bptt=5, max_len=10)
    model = build_classifier(50, 2, TINY, config).eval()
    doc = torch.randint(10, 50, (1, 30))
    with torch.no_grad():
        encoded, mask = model[0](doc)
    assert encoded.shape[1] == 10 and mask.shape == (1, 10)


def test_fastai_format_weights_load_without_unpickling_code(tmp_path):
    itos = ["xxunk", "xxpad", "xxbos", "xxeos", "xxfld", "xxrep", "xxwrep", "xxup", "xxmaj", "the", "a", "movie"]
    model = build_language_model(len(itos), TINY)
    state = model.state_dict()
    torch.save({"model": state, "opt": {"lr": 0.01}}, tmp_path / "lstm_fwd.pth")
    with open(tmp_path / "itos_wt103.pkl", "wb") as handle:
        pickle.dump(itos, handle)
    out = import_fastai_lm(tmp_path / "lstm_fwd.pth", tmp_path / "itos_wt103.pkl", tmp_path / "converted")
    checkpoint = load_checkpoint(out)
    assert checkpoint.tokens == itos
    assert torch.equal(checkpoint.state_dict["0.encoder.weight"], state["0.encoder.weight"])
    assert torch.equal(checkpoint.state_dict["1.decoder.bias"], state["1.decoder.bias"])

    marker = tmp_path / "pwned"

    class Payload:
        def __reduce__(self):
            import os
            return os.system, (f"touch {marker}",)

    with open(tmp_path / "evil.pkl", "wb") as handle:
        pickle.dump(Payload(), handle)
    with pytest.raises(ValueError, match="refusing"):
        load_itos_pickle(tmp_path / "evil.pkl")
    torch.save({"model": state, "extra": Payload()}, tmp_path / "evil.pth")
    with pytest.raises(ValueError, match="refusing to load: the file names posix.system"):
        import_fastai_lm(tmp_path / "evil.pth", tmp_path / "itos_wt103.pkl", tmp_path / "evil_out")
    assert not marker.exists()


def test_fit_rejects_bad_input(stage2):
    from ulmtl.datasets import DataError
    clf = TextClassifier(small_classifier_config(), encoders=stage2[0], verbose=False)
    with pytest.raises(DataError, match="only one class"):
        clf.fit(["a b", "c d"], ["x", "x"])
    with pytest.raises(DataError, match="text 1 is empty"):
        clf.fit(["a b", "  "], ["x", "y"])
    with pytest.raises(DataError, match="2 texts but 3 labels"):
        clf.fit(["a b", "c d"], ["x", "y", "z"])
    with pytest.raises(RuntimeError, match="not fitted"):
        clf.predict(["a"])


def test_resume_with_another_number_of_processes_is_refused(tmp_path):
    from dataclasses import replace

    from datasets import Dataset

    from ulmtl.config import ConfigError
    texts, _ = synthetic(200, seed=9, lm_tail=True)
    corpus = Dataset.from_dict({"text": texts})
    config = PretrainConfig(epochs=2, batch_size=8, bptt=10, valid_fraction=0.1,
                            checkpoint_every_s=1e-6, token_budget=800)
    pretrain(corpus, tmp_path / "lm", config, TINY, TokenizerConfig(min_freq=1))
    saved = tmp_path / "lm" / "resume" / "config.json"
    state = json.loads(saved.read_text())
    assert state["progress"]["processes"] == 1
    state["progress"]["processes"] = 2  # as if written by `torchrun --nproc_per_node=2`
    saved.write_text(json.dumps(state))
    with pytest.raises(ConfigError, match=r"written by a run with 2 process\(es\).*now 1"):
        pretrain(corpus, tmp_path / "lm", replace(config, token_budget=0), TINY, TokenizerConfig(min_freq=1))


# --------------------------------------------------------------------------- scikit-learn

def _lowercase(texts: list[str]) -> list[str]:
    return [text.lower() for text in texts]


def _tiny_scratch() -> TextClassifier:
    return TextClassifier(small_classifier_config(strategy="scratch", stage_epochs=(2, 1, 1, 2)),
                          model_config=TINY, tokenizer=TokenizerConfig(min_freq=1), verbose=False)


def test_get_params_and_clone_copy_the_settings_not_the_fitted_state():
    from sklearn.base import clone, is_classifier
    clf = _tiny_scratch()
    params = clf.get_params()
    assert sorted(params) == ["config", "encoders", "log_path", "model_config", "tokenizer", "verbose"]
    assert is_classifier(clf)
    texts, labels = synthetic(40, seed=6)
    clf.fit(texts, labels)
    copy = clone(clf)
    assert not hasattr(copy, "models_") and not hasattr(copy, "classes_")
    assert copy.get_params()["config"] == clf.config and copy.config is not clf.config
    assert copy.model_config == TINY and copy.verbose is False
    copy.set_params(config=small_classifier_config(strategy="scratch", lr=0.01), verbose=True)
    assert copy.config.lr == 0.01 and copy.verbose is True and clf.config.lr == 0.02
    with pytest.raises(ValueError, match="bogus"):
        copy.set_params(bogus=1)
    with pytest.raises(TypeError, match="cannot be pickled"):  # clone never pickles; pickling stays refused
        pickle.dumps(clf)


def test_the_constructor_stores_its_arguments_as_given_and_a_save_keeps_the_fitted_tokenizer(tmp_path):
    from sklearn.utils.estimator_checks import check_no_attributes_set_in_init
    clf = TextClassifier()
    assert clf.get_params() == {"config": None, "encoders": None, "log_path": None, "model_config": None,
                                "tokenizer": None, "verbose": True}
    check_no_attributes_set_in_init("TextClassifier", clf)
    assert clf.resolved_model_config() == ModelConfig() and clf.resolved_tokenizer() == TokenizerConfig()
    assert clf.backbone.name == "awd_lstm"
    fitted = _tiny_scratch()
    texts, labels = synthetic(40, seed=6)
    fitted.fit(texts, labels)
    fitted.set_params(tokenizer=None)  # after fit: the fitted model keeps the vocabulary settings it trained with
    assert fitted.trained_tokenizer_ == TokenizerConfig(min_freq=1)
    loaded = TextClassifier.load(fitted.save(tmp_path / "clf"))
    assert loaded.tokenizer == loaded.trained_tokenizer_ == TokenizerConfig(min_freq=1)
    assert np.array_equal(loaded.predict(texts), fitted.predict(texts))


def test_pipeline_and_cross_val_score():
    from sklearn.model_selection import StratifiedKFold, cross_val_score
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import FunctionTransformer
    texts, labels = synthetic(80, seed=7)
    texts = [text.upper() for text in texts]  # the pipeline lowercases them again
    pipeline = make_pipeline(FunctionTransformer(_lowercase), _tiny_scratch())
    pipeline.fit(texts[:60], labels[:60])
    predicted = pipeline.predict(texts[60:])
    assert set(predicted) <= {"neg", "pos"} and len(predicted) == 20
    fitted = pipeline[-1]
    assert fitted.classes_.tolist() == ["neg", "pos"]
    assert "good" in fitted.vocabs_["forward"].itos and "GOOD" not in fitted.vocabs_["forward"].itos
    assert pipeline.score(texts[60:], labels[60:]) == pytest.approx(np.mean(predicted == np.array(labels[60:])))
    unfitted = _tiny_scratch()
    scores = cross_val_score(unfitted, texts, np.array(labels), cv=2)
    assert not hasattr(unfitted, "models_")  # each fold fitted a clone
    # The same folds by hand: a fresh classifier fitted on each (the seed makes training repeatable).
    by_hand = []
    for train, test in StratifiedKFold(2).split(texts, labels):
        clf = _tiny_scratch().fit([texts[i] for i in train], [labels[i] for i in train])
        by_hand.append(clf.score([texts[i] for i in test], [labels[i] for i in test]))
    assert scores.tolist() == pytest.approx(by_hand)


def test_a_failed_refit_leaves_an_unfitted_classifier():
    from ulmtl.config import ConfigError
    from ulmtl.datasets import DataError
    texts, labels = synthetic(40, seed=6)
    clf = _tiny_scratch().fit(texts, labels)
    with pytest.raises(DataError, match="only one class"):
        clf.fit(texts[:4], ["x"] * 4)
    assert not [key for key in vars(clf) if key.endswith("_")]
    with pytest.raises(RuntimeError, match="not fitted"):
        clf.predict(texts[:2])
    clf.fit(texts, labels)
    three = [label if i % 3 else "neutral" for i, label in enumerate(labels)]
    with pytest.raises(ConfigError, match="threshold"):  # a setting for multi-label data only
        clf.set_params(config=small_classifier_config(strategy="scratch", threshold=0.3)).fit(texts, three)
    with pytest.raises(RuntimeError, match="not fitted"):
        clf.predict(texts[:2])


def test_log_path_is_written_when_not_verbose_and_nothing_is_printed(tmp_path, capsys):
    texts, labels = synthetic(40, seed=6)
    clf = _tiny_scratch().set_params(log_path=tmp_path / "log.jsonl")
    assert clf.verbose is False
    capsys.readouterr()
    clf.fit(texts, labels)
    assert capsys.readouterr().out == ""
    records = [json.loads(line) for line in (tmp_path / "log.jsonl").read_text().splitlines()]
    assert records and {r["stage"] for r in records} == {"classifier-forward"}
    assert any("epoch_done" in r for r in records)


def test_encoders_of_directions_not_trained_are_refused(tmp_path):
    from ulmtl.config import ConfigError
    texts, labels = synthetic(20, seed=6)
    clf = TextClassifier(small_classifier_config(directions=("forward",)), verbose=False,
                         encoders={"forward": tmp_path / "fwd", "backward": tmp_path / "bwd"})
    with pytest.raises(ConfigError, match=r"encoders has key\(s\) \['backward'\], but the directions trained "
                                          r"are \['forward'\]"):
        clf.fit(texts, labels)
    assert not hasattr(clf, "models_")


def test_class_label_ids_are_names_in_fit_validation_and_score():
    from datasets import ClassLabel, Dataset, Features, Value

    from ulmtl.datasets import DataError
    features = Features({"text": Value("string"), "label": ClassLabel(names=["neg", "pos"])})
    texts, labels = synthetic(50, seed=6)
    ids = [["neg", "pos"].index(label) for label in labels]
    train = Dataset.from_dict({"text": texts[:40], "label": ids[:40]}, features=features)
    valid = Dataset.from_dict({"text": texts[40:], "label": ids[40:]}, features=features)
    clf = _tiny_scratch().fit(train, valid=(valid, None))
    assert clf.classes_.tolist() == ["neg", "pos"]
    assert clf.history_["forward"][0]["epoch_values"][0]["valid_loss"] > 0  # validated on the names
    predicted = clf.predict(valid)
    assert clf.score(valid) == pytest.approx(np.mean(predicted == np.array(labels[40:])))
    assert clf.score(valid["text"], valid["label"]) == clf.score(texts[40:], labels[40:])
    _tiny_scratch().fit(train, valid=(valid["text"], valid["label"]))
    with pytest.raises(DataError, match=r"the validation labels are numbers \(1\), but the training labels "
                                        r"are strings \(\['neg', 'pos'\]\)"):
        _tiny_scratch().fit(train, valid=(valid["text"], ids[40:]))
    unlabelled = Dataset.from_dict({"text": texts[40:], "label": [-1] * 10}, features=features)
    with pytest.raises(DataError, match="label 0 is -1, not a class id.*-1 marks an unlabelled text"):
        clf.score(unlabelled)


def test_score_counts_a_label_never_seen_in_training_as_wrong():
    from sklearn.metrics import accuracy_score

    from ulmtl.datasets import DataError
    texts, labels = synthetic(40, seed=6)
    clf = _tiny_scratch().fit(texts[:30], labels[:30])
    truth = labels[30:36] + ["neutral"] * 4
    assert clf.score(texts[30:], truth) == pytest.approx(accuracy_score(truth, clf.predict(texts[30:])))
    assert clf.score(texts[30:], truth) <= 0.6
    with pytest.raises(DataError, match=r"the scored labels are numbers \(1\), but the training labels are "
                                        r"strings"):
        clf.score(texts[30:32], [1, 0])
