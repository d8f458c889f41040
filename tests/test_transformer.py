"""The transformer backbone: a tiny random BERT the tests build, plus one run of the bundled encoder."""
from __future__ import annotations

import json
import re
import warnings
from dataclasses import replace
from functools import partial
from pathlib import Path

import numpy as np
import pytest
import torch

from ulmtl import RecipeConfig, TextClassifier, parse_args
from ulmtl.backbones import resolve_backbone
from ulmtl.backbones import transformer
from ulmtl.checkpoint import CheckpointError
from ulmtl.config import (
    TRANSFORMER_CLASSIFIER, TRANSFORMER_FINETUNE, ConfigError, OptimizerSettings, TransformerConfig,
)
from ulmtl.finetune import finetune_lm
from ulmtl.recipe import SMOKE_RECIPE

TEXTS = ["the movie was great fun", "a dull and boring film", "what a great and fun plot",
         "boring plot and a dull cast", "who wrote the film", "how long is the movie"]
POS_NEG = (["great fun movie", "a great film", "fun and great"] * 8, ["dull boring film", "a boring plot",
                                                                      "dull and boring"] * 8)


def make_encoder(folder: Path, layers: int = 2, dropout: float = 0.1) -> Path:
    """A randomly initialised 2-layer BERT (hidden 32, 512 positions, ``dropout`` on its hidden
    states and attention) and a WordPiece tokenizer for TEXTS."""
    from tokenizers import BertWordPieceTokenizer
    from transformers import BertConfig, BertModel, BertTokenizerFast
    folder.mkdir(parents=True, exist_ok=True)
    # A fixed vocabulary, numbered in sorted order (the WordPiece trainer breaks ties in hash order,
    # which changes from run to run): every word of TEXTS, and every letter on its own and as a
    # continuation, for other words.
    words = sorted({word for text in TEXTS for word in re.findall(r"\w+|[^\w\s]", text.lower())})
    letters = sorted(set("".join(words)))
    pieces = list(dict.fromkeys(  # a word of one letter is also a letter
        ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", *words, *letters, *("##" + letter for letter in letters)]))
    wordpiece = BertWordPieceTokenizer({piece: i for i, piece in enumerate(pieces)}, lowercase=True)
    tokenizer = BertTokenizerFast(tokenizer_object=wordpiece._tokenizer, unk_token="[UNK]", pad_token="[PAD]",
                                  cls_token="[CLS]", sep_token="[SEP]", mask_token="[MASK]")
    tokenizer.save_pretrained(folder)
    torch.manual_seed(0)
    config = BertConfig(vocab_size=len(tokenizer), hidden_size=32, num_hidden_layers=layers, num_attention_heads=2,
                        intermediate_size=64, max_position_embeddings=512, hidden_dropout_prob=dropout,
                        attention_probs_dropout_prob=dropout)
    BertModel(config).save_pretrained(folder)
    return folder


@pytest.fixture(scope="module")
def encoder_dir(tmp_path_factory) -> Path:
    return make_encoder(tmp_path_factory.mktemp("tiny-bert"))


@pytest.fixture(scope="module")
def tokenizer(encoder_dir):
    return transformer.load_tokenizer(str(encoder_dir))


def small_config(**changes):
    return replace(replace(TRANSFORMER_CLASSIFIER, batch_size=8, lr=1e-3), **changes)


def sentiment():
    pos, neg = POS_NEG
    return pos + neg, ["pos"] * len(pos) + ["neg"] * len(neg)


def test_layer_groups_hold_every_parameter_once(encoder_dir, tokenizer):
    model = transformer.build_classifier(str(encoder_dir), tokenizer, 3, TransformerConfig(block_groups=2), 50, 0.1)
    groups = transformer.classifier_groups(model, block_groups=2)
    assert len(groups) == 4  # embeddings, 2 block groups, head
    ids = [id(p) for group in groups for p in group]
    assert len(ids) == len(set(ids)) == len(list(model.parameters()))
    names = {id(p): n for n, p in model.named_parameters()}
    assert all("embeddings" in names[id(p)] for p in groups[0])
    assert all(names[id(p)].startswith("encoder.encoder.layer.0.") for p in groups[1])
    assert all(names[id(p)].startswith("encoder.encoder.layer.1.") for p in groups[2])
    assert all(names[id(p)].startswith("head.") for p in groups[3])


def test_gradual_unfreezing_trains_the_planned_groups_with_discriminative_lrs(encoder_dir):
    texts, labels = sentiment()
    config = small_config(unfreeze_plan=(1, 2, 0), stage_epochs=(1, 1, 1), stage_lr_mult=(10.0, 2.0, 1.0),
                          lr_decay=2.0)
    clf = TextClassifier(config, encoders=encoder_dir, model_config=TransformerConfig(block_groups=2),
                         verbose=False).fit(texts, labels)
    history = clf.history_["forward"]
    first, second, third = (set(h["trainable_params"]) for h in history)
    assert first and all(n.startswith("head.") for n in first)
    assert second - first and all(n.startswith("encoder.encoder.layer.1.") for n in second - first)
    assert len(third) == len(list(clf.models_["forward"].parameters()))
    for stage, mult in zip(history, (10.0, 2.0, 1.0)):
        lrs = stage["peak_lrs"]
        assert lrs[-1] == pytest.approx(1e-3 * mult)
        assert np.allclose(np.array(lrs[1:]) / np.array(lrs[:-1]), 2.0)


def test_frozen_groups_do_not_move(encoder_dir):
    texts, labels = sentiment()
    config = small_config(strategy="feature_extraction")
    before = transformer.load_encoder(str(encoder_dir)).state_dict()
    clf = TextClassifier(config, encoders=encoder_dir, model_config=TransformerConfig(), verbose=False).fit(
        texts, labels)
    after = clf.models_["forward"].encoder.state_dict()
    assert all(torch.equal(before[k], after[k]) for k in before)


def test_a_last_batch_of_one_text_trains(encoder_dir):
    """49 texts in batches of 8 leave one text over: it joins the batch before it (batch
    normalization cannot train on one row), and every stage trains."""
    texts, labels = sentiment()
    texts, labels = texts + texts[:1], labels + labels[:1]
    assert len(texts) % 8 == 1
    clf = TextClassifier(small_config(stage_epochs=(1, 1)), encoders=encoder_dir, model_config=TransformerConfig(),
                         verbose=False).fit(texts, labels)
    assert [len(h["epoch_values"]) for h in clf.history_["forward"]] == [1, 1]


def test_head_min_steps_trains_the_head_stage_for_more_epochs(encoder_dir):
    """48 texts in batches of 8 make 6 steps an epoch: a head stage of at least 12 steps runs 2
    epochs (on cached features), and the stage after it keeps the plan's 1."""
    texts, labels = sentiment()
    clf = TextClassifier(small_config(stage_epochs=(1, 1), head_min_steps=12), encoders=encoder_dir,
                         model_config=TransformerConfig(), verbose=False).fit(texts, labels)
    head, everything = clf.history_["forward"]
    assert (head["epochs"], len(head["epoch_values"]), head["cached_features"]) == (2, 2, True)
    assert (everything["epochs"], len(everything["epoch_values"])) == (1, 1)


def test_a_head_stage_of_few_steps_warns_unless_head_min_steps_is_set(encoder_dir):
    """48 texts in batches of 8: the head alone gets 6 optimizer steps, below FEW_HEAD_STEPS."""
    texts, labels = sentiment()
    with pytest.warns(UserWarning, match=r"head trains alone for 6 optimizer step\(s\).*head_min_steps=50"):
        TextClassifier(small_config(stage_epochs=(1, 1)), encoders=encoder_dir, model_config=TransformerConfig(),
                       verbose=False).fit(texts, labels)
    with warnings.catch_warnings():
        warnings.filterwarnings("error", message="the head trains alone")
        TextClassifier(small_config(stage_epochs=(1, 1), head_min_steps=12), encoders=encoder_dir,
                       model_config=TransformerConfig(), verbose=False).fit(texts, labels)


def test_masking_never_touches_special_tokens(tokenizer):
    blocks = transformer.mlm_blocks(tokenizer, TEXTS * 4, block=12)
    loader = transformer.MaskedLMLoader(blocks, tokenizer, batch_size=4, mlm_probability=0.5, shuffle=True)
    special = torch.tensor([tokenizer.cls_token_id, tokenizer.sep_token_id, tokenizer.pad_token_id])
    masked_any = False
    for ids, labels, targets in loader:
        original = torch.where(labels != -100, labels, ids)
        chosen = labels != -100
        assert not torch.isin(original[chosen], special).any()
        assert torch.equal(targets, labels[chosen])
        masked_any |= bool((ids == tokenizer.mask_token_id).any())
    assert masked_any


def test_processes_read_the_masks_of_one_process_with_the_global_batch(tokenizer):
    blocks = transformer.mlm_blocks(tokenizer, TEXTS * 8, block=8)
    one = transformer.MaskedLMLoader(blocks, tokenizer, batch_size=6, shuffle=True, seed=2)
    ranks = [transformer.MaskedLMLoader(blocks, tokenizer, batch_size=3, shuffle=True, seed=2, rank=r, world_size=2)
             for r in range(2)]
    for _ in range(2):  # two epochs: new masks, in step
        torch.manual_seed(0)
        whole = list(one)
        torch.manual_seed(1)  # the masks do not depend on the global RNG
        shares = [list(loader) for loader in ranks]
        assert len(whole) == len(shares[0]) == len(shares[1]) == len(one) > 1
        for batch, first, second in zip(whole, *shares):
            for k in range(2):  # ids, labels: rows 0, 2, 4 on rank 0 and 1, 3, 5 on rank 1
                assert torch.equal(batch[k][0::2], first[k]) and torch.equal(batch[k][1::2], second[k])
    assert transformer.masked_lm_loss(torch.zeros(0, 5), torch.zeros(0, dtype=torch.long)).item() == 0.0


def test_padding_and_batch_neighbours_do_not_change_features(encoder_dir, tokenizer):
    model = transformer.build_classifier(str(encoder_dir), tokenizer, 2, TransformerConfig(), 50, 0.1).eval()
    docs = transformer.encode_texts(tokenizer, ["a great film", "what a great and fun plot boring dull cast"], 0)
    with torch.no_grad():
        alone = model.features(torch.from_numpy(transformer.pad_right(docs[:1], tokenizer.pad_token_id)))
        together = model.features(torch.from_numpy(transformer.pad_right(docs, tokenizer.pad_token_id)))
    assert torch.allclose(alone[0], together[0], atol=1e-5)


def test_long_documents_are_read_in_overlapping_windows(encoder_dir, tokenizer):
    model = transformer.build_classifier(str(encoder_dir), tokenizer, 2, TransformerConfig(window=6, overlap=1),
                                         50, 0.1)
    ids = torch.tensor([[10, 11, 12, 13, 14, 15, 16, 17, 18, 19], [20, 21, 0, 0, 0, 0, 0, 0, 0, 0]])
    windows, mask, documents = model.windows(ids)
    # 4 tokens a window, a step of 3: tokens 10-13, 13-16, 16-19 (3 windows); the short text 1 window.
    assert documents.tolist() == [0, 0, 0, 1]
    cls, sep = tokenizer.cls_token_id, tokenizer.sep_token_id
    assert windows[0].tolist() == [cls, 10, 11, 12, 13, sep]
    assert windows[2].tolist() == [cls, 16, 17, 18, 19, sep]
    assert windows[3, :4].tolist() == [cls, 20, 21, sep] and mask[3].tolist() == [1, 1, 1, 1, 0, 0]
    covered = set(windows[:3].flatten().tolist())
    assert set(range(10, 20)) <= covered
    with torch.no_grad():
        assert model.eval()(ids).shape == (2, 2)


def long_batch(tokenizer) -> torch.Tensor:
    """Two long documents and a short one: several windows of 6 tokens (overlap 1) each, and one."""
    ids = tokenizer(["great fun movie a great film fun and great", "dull boring film a boring plot dull",
                     "fun"], add_special_tokens=False)["input_ids"]
    width = max(map(len, ids))
    return torch.tensor([row + [tokenizer.pad_token_id] * (width - len(row)) for row in ids])


@pytest.mark.parametrize("windows_at_once", [1, 2, 3])
def test_windows_encoded_in_checkpointed_chunks_give_the_gradient_of_one_pass(encoder_dir, tokenizer,
                                                                              windows_at_once):
    ids, target = long_batch(tokenizer), torch.tensor([1, 0, 1])

    def gradients(chunk: int) -> tuple[float, dict, int]:
        torch.manual_seed(0)
        model = transformer.build_classifier(str(encoder_dir), tokenizer, 2,
                                             TransformerConfig(window=6, overlap=1, windows_at_once=chunk), 50, 0.1)
        calls = []
        # a pre-hook: the recomputation stops once it has what backward needs, before forward hooks
        model.encoder.register_forward_pre_hook(lambda module, args: calls.append(1))
        model.double().train()  # float64: the two runs sum in different orders, exact to 1e-9 here
        for module in model.modules():  # dropout off: the two runs draw their masks in different shapes
            if isinstance(module, torch.nn.Dropout):
                module.p = 0.0
        loss = torch.nn.functional.cross_entropy(model(ids), target)
        loss.backward()
        return float(loss), {n: p.grad.clone() for n, p in model.named_parameters() if p.grad is not None}, len(calls)

    windows = len(transformer.build_classifier(str(encoder_dir), tokenizer, 2, TransformerConfig(window=6, overlap=1),
                                               50, 0.1).windows(ids)[0])
    assert windows > 3
    loss, grads, calls = gradients(0)
    chunked_loss, chunked_grads, chunked_calls = gradients(windows_at_once)
    assert calls == 1  # one pass over every window
    # each chunk is encoded in the forward pass and again in backward: the checkpointing acts
    chunks = -(-windows // windows_at_once)
    assert chunked_calls == 2 * chunks
    assert chunked_loss == pytest.approx(loss, rel=1e-6)
    assert grads.keys() == chunked_grads.keys() and any("encoder.embeddings" in n for n in grads)
    for name, grad in grads.items():
        torch.testing.assert_close(chunked_grads[name], grad, rtol=1e-7, atol=1e-9)


def test_a_frozen_encoder_and_prediction_read_every_window_in_one_pass(encoder_dir, tokenizer):
    model = transformer.build_classifier(str(encoder_dir), tokenizer, 2,
                                         TransformerConfig(window=6, overlap=1, windows_at_once=2), 50, 0.1)
    calls = []
    model.encoder.register_forward_pre_hook(lambda module, args: calls.append(1))
    with torch.no_grad():
        model.eval()(long_batch(tokenizer))
    for parameter in model.encoder.parameters():
        parameter.requires_grad_(False)
    model.train()(long_batch(tokenizer)).sum().backward()
    assert len(calls) == 2  # nothing to recompute for: no chunks, no checkpoint


def test_save_and_load_give_identical_predictions(encoder_dir, tmp_path):
    texts, labels = sentiment()
    clf = TextClassifier(small_config(stage_epochs=(1, 1)), encoders=encoder_dir,
                         model_config=TransformerConfig(window=8, overlap=2), verbose=False).fit(texts, labels)
    before = clf.predict_proba(TEXTS)
    clf.save(tmp_path / "clf")
    assert not list((tmp_path / "clf").rglob("*.bin")) and not list((tmp_path / "clf").rglob("*.pkl"))
    loaded = TextClassifier.load(tmp_path / "clf")
    np.testing.assert_array_equal(loaded.predict_proba(TEXTS), before)
    assert list(loaded.classes_) == ["neg", "pos"]
    # A folder saved before TransformerConfig.pooling existed loads as concat pooling.
    saved = tmp_path / "clf" / "forward" / "config.json"
    record = json.loads(saved.read_text())
    assert record["transformer"].pop("pooling") == "concat"
    saved.write_text(json.dumps(record))
    older = TextClassifier.load(tmp_path / "clf")
    assert older.models_["forward"].pooling == "concat"
    np.testing.assert_array_equal(older.predict_proba(TEXTS), before)


def head_inputs(model) -> int:
    """The width of the features the classifier's head reads (its first Linear layer's input)."""
    return next(m for m in model.head.modules() if isinstance(m, torch.nn.Linear)).in_features


def test_pool_reads_the_first_token_or_the_masked_mean_or_both_and_the_max():
    # Two documents: 0 in windows 0 and 1, 1 in window 2. Each window: a first special token, text,
    # a last special token (the mask's last 1), padding. Special tokens and padding are +-100 or
    # 50, which no text-token pooling may see.
    states = torch.tensor([[[1., 1.], [2., -2.], [4., 0.], [-100., -100.], [100., 100.]],
                           [[50., 50.], [0., 6.], [6., -4.], [1., 1.], [-100., -100.]],
                           [[3., 3.], [5., 7.], [-100., -100.], [100., 100.], [100., 100.]]])
    mask = torch.tensor([[1, 1, 1, 1, 0], [1, 1, 1, 1, 1], [1, 1, 1, 0, 0]])
    documents = torch.tensor([0, 0, 1])
    first = [[1., 1.], [3., 3.]]
    mean = [[13 / 5, 1 / 5], [5., 7.]]  # document 0: (2, -2), (4, 0), (0, 6), (6, -4), (1, 1)
    maximum = [[6., 6.], [5., 7.]]
    pooled = {name: transformer.pool(states, mask, documents, 2, name).tolist()
              for name in ("first", "mean", "concat")}
    assert pooled["first"] == first
    assert np.allclose(pooled["mean"], mean)
    assert np.allclose(pooled["concat"], np.concatenate([first, maximum, mean], axis=1))


def test_each_pooling_sizes_the_head_and_reads_its_part_of_the_concat_features(encoder_dir, tokenizer):
    models = {name: transformer.build_classifier(str(encoder_dir), tokenizer, 2, TransformerConfig(
        window=6, overlap=1, pooling=name), 50, 0.1).eval() for name in ("concat", "first", "mean")}
    texts = ["what a great and fun plot boring dull cast who wrote", "a film"]
    docs = transformer.encode_texts(tokenizer, texts, 0)
    ids = torch.from_numpy(transformer.pad_right(docs, tokenizer.pad_token_id))
    assert len(models["concat"].windows(ids)[2]) > 2  # the long text spans several windows
    with torch.no_grad():
        features = {name: model.features(ids) for name, model in models.items()}
        assert models["mean"](ids).shape == (2, 2)
    size = 32  # make_encoder's hidden size
    for name, part, width in (("concat", slice(None), 3 * size), ("first", slice(0, size), size),
                              ("mean", slice(2 * size, None), size)):
        assert head_inputs(models[name]) == features[name].shape[1] == width
        assert torch.allclose(features[name], features["concat"][:, part], atol=1e-5)


def test_save_and_load_keep_mean_pooling_and_identical_predictions(encoder_dir, tmp_path):
    texts, labels = sentiment()
    clf = TextClassifier(small_config(stage_epochs=(1, 1)), encoders=encoder_dir,
                         model_config=TransformerConfig(pooling="mean"), verbose=False).fit(texts, labels)
    assert head_inputs(clf.models_["forward"]) == 32
    before = clf.predict_proba(TEXTS)
    clf.save(tmp_path / "clf")
    loaded = TextClassifier.load(tmp_path / "clf")
    assert loaded.models_["forward"].pooling == loaded.model_configs_["forward"].pooling == "mean"
    np.testing.assert_array_equal(loaded.predict_proba(TEXTS), before)


def test_scratch_keeps_the_architecture_but_not_the_weights(encoder_dir):
    texts, labels = sentiment()
    clf = TextClassifier(small_config(strategy="scratch"), encoders=encoder_dir, model_config=TransformerConfig(),
                         verbose=False).fit(texts, labels)
    pretrained = transformer.load_encoder(str(encoder_dir)).embeddings.word_embeddings.weight
    trained = clf.models_["forward"].encoder.embeddings.word_embeddings.weight
    assert trained.shape == pretrained.shape and not torch.allclose(trained, pretrained, atol=1e-2)


def test_lstm_only_settings_are_refused(encoder_dir):
    texts, labels = sentiment()
    with pytest.raises(ConfigError, match="directions"):
        TextClassifier(small_config(directions=("forward", "backward")), encoders=encoder_dir,
                       model_config=TransformerConfig()).fit(texts, labels)
    with pytest.raises(ConfigError, match="ar_alpha"):
        TextClassifier(small_config(ar_alpha=2.0), encoders=encoder_dir,
                       model_config=TransformerConfig()).fit(texts, labels)


def test_encoders_keys_other_than_forward_are_refused(encoder_dir):
    texts, labels = sentiment()
    for encoders in ({"fwd": encoder_dir}, {"forward": encoder_dir, "backward": encoder_dir}):
        clf = TextClassifier(small_config(), encoders=encoders, model_config=TransformerConfig(),
                             verbose=False)
        with pytest.raises(ConfigError, match=r"encoders has key\(s\) \['(fwd|backward)'\], but the "
                                              r"directions trained are \['forward'\]"):
            clf.fit(texts, labels)


def test_without_a_config_fit_uses_the_classifier_defaults_of_the_backbone_it_then_has(encoder_dir):
    from sklearn.base import clone

    from ulmtl.config import ClassifierConfig
    clf = TextClassifier()
    assert clf.get_params()["config"] is None and clf.resolved_config() == ClassifierConfig()
    clf.set_params(model_config=TransformerConfig(), encoders=str(encoder_dir), verbose=False)
    assert clf.resolved_config() == TRANSFORMER_CLASSIFIER and clone(clf).resolved_config() == TRANSFORMER_CLASSIFIER
    clf.resolved_config().lr = 0.5  # a copy: the preset and the next fit keep theirs
    assert TRANSFORMER_CLASSIFIER.lr == 1e-4 and clf.resolved_config().lr == 1e-4
    texts, labels = sentiment()
    clf.fit(texts, labels)
    assert clf.trained_config_ == TRANSFORMER_CLASSIFIER and clf.config is None
    given = small_config(lr=5e-4)
    fitted = TextClassifier(given, model_config=TransformerConfig(), encoders=str(encoder_dir), verbose=False)
    fitted.fit(texts, labels)
    given.lr = 0.5  # the caller's config changed after fit: the fitted model keeps what it trained with
    assert fitted.trained_config_.lr == 5e-4 and fitted.resolved_config().lr == 0.5


def test_masked_lm_fine_tuning_adds_a_tied_head_and_lowers_perplexity(encoder_dir, tmp_path):
    config = replace(TRANSFORMER_FINETUNE, epochs=3, lr=2e-3, batch_size=4)
    metrics = finetune_lm(TEXTS * 6, str(encoder_dir), tmp_path / "lm", config,
                          transformer_config=TransformerConfig(mlm_block=16))
    assert metrics["new_mlm_head"] is True
    assert metrics["valid_perplexity"] < metrics["valid_perplexity_before"]
    assert metrics["peak_lrs"] == pytest.approx([2e-3 / 1.3 ** k for k in (3, 2, 1, 0)])
    saved = sorted(p.name for p in (tmp_path / "lm").iterdir())
    assert "model.safetensors" in saved and "ulmtl.json" in saved and "tokenizer.json" in saved
    assert json.loads((tmp_path / "lm" / "ulmtl.json").read_text())["stage"] == "finetune"
    model, new_head = transformer.load_masked_lm(str(tmp_path / "lm"))
    assert not new_head
    assert model.get_output_embeddings().weight is model.get_input_embeddings().weight
    texts, labels = sentiment()
    clf = TextClassifier(small_config(stage_epochs=(1, 1)), encoders=tmp_path / "lm",
                         model_config=TransformerConfig(), verbose=False).fit(texts, labels)
    assert clf.predict(["great fun"]).shape == (1,)


def test_a_pickle_in_an_encoder_folder_is_refused(encoder_dir, tmp_path):
    folder = make_encoder(tmp_path / "enc")
    (folder / "pytorch_model.bin").write_bytes(b"\x80\x04junk")
    with pytest.raises(CheckpointError, match="pickle"):
        transformer.resolve_encoder(folder)


def test_weights_that_differ_from_the_published_digest_are_refused(tmp_path):
    weights = tmp_path / "model.safetensors"
    weights.write_bytes(b"not the published weights")
    with pytest.raises(CheckpointError, match="sha256"):
        transformer.check_digest(weights, transformer.BUNDLED_SHA256)
    transformer.check_digest(weights, transformer.sha256_of(weights))


def test_backbone_resolution_and_its_defaults(encoder_dir, tmp_path):
    assert resolve_backbone("auto", "") == "transformer"
    assert resolve_backbone("auto", "", smoke=True) == "awd_lstm"
    assert resolve_backbone("auto", str(encoder_dir)) == "transformer"
    assert resolve_backbone("auto", "bert-base/uncased") == "transformer"
    assert resolve_backbone("auto", str(tmp_path)) == "awd_lstm"  # a folder of fastai's files, say
    config = parse_args(RecipeConfig(), ["--classifier.lr=3e-4"])
    assert config.backbone == "transformer"
    assert config.classifier.lr == 3e-4  # the user's override wins over the backbone's default
    assert config.classifier.betas == TRANSFORMER_CLASSIFIER.betas and config.finetune.ar_alpha == 0
    smoke = parse_args(RecipeConfig(), ["--smoke"], SMOKE_RECIPE)
    assert smoke.backbone == "awd_lstm" and smoke.classifier.lr == 0.01


def test_recipe_runs_all_stages_on_a_transformer(encoder_dir, tmp_path):
    from ulmtl.recipe import run_recipe
    rows = [{"text": t, "label": "pos"} for t in POS_NEG[0]] + [{"text": t, "label": "neg"} for t in POS_NEG[1]]
    train = tmp_path / "train.jsonl"
    train.write_text("\n".join(json.dumps(r) for r in rows))
    config = parse_args(RecipeConfig(dataset="custom"), ["--smoke", f"--train={train}", f"--pretrained={encoder_dir}",
                                                         f"--output={tmp_path / 'run'}"], SMOKE_RECIPE)
    assert config.backbone == "transformer"
    result = run_recipe(config)
    assert result["lm_finetune"]["forward"]["new_mlm_head"] is True
    assert json.loads((tmp_path / "run" / "config.json").read_text())["backbone"] == "transformer"
    loaded = TextClassifier.load(tmp_path / "run" / "model")
    assert loaded.predict(["great fun"])[0] in ("pos", "neg")


def test_the_bundled_encoder_trains_and_round_trips(tmp_path):
    """The real all-MiniLM-L6-v2 from its package: digest checked, one short fit, save and load."""
    texts, labels = sentiment()
    config = small_config(stage_epochs=(1, 1), batch_size=16)
    clf = TextClassifier(config, encoders="", model_config=TransformerConfig(), verbose=False).fit(texts, labels)
    assert clf.models_["forward"].encoder.config.hidden_size == 384
    clf.save(tmp_path / "clf")
    np.testing.assert_array_equal(TextClassifier.load(tmp_path / "clf").predict_proba(TEXTS),
                                  clf.predict_proba(TEXTS))


def test_bf16_precision_trains_under_autocast(encoder_dir):
    from ulmtl.training import BF16Autocast
    texts, labels = sentiment()
    clf = TextClassifier(small_config(stage_epochs=(1, 1)), encoders=encoder_dir,
                         model_config=TransformerConfig(precision="bf16"), verbose=False)
    clf.fit(texts, labels)
    assert clf.predict_proba(TEXTS).shape == (len(TEXTS), 2)
    from ulmtl.training import make_learner
    from ulmtl.loaders import ClassificationLoader
    loader = ClassificationLoader([np.array([5, 6])], np.array([0]), 1,
                                  collate=partial(transformer.pad_right, pad_id=0))
    learn = make_learner(loader, loader, torch.nn.Linear(2, 2), lambda m: [list(m.parameters())],
                         OptimizerSettings(), precision="bf16", train_norms=False)
    assert any(isinstance(cb, BF16Autocast) for cb in learn.cbs)


def test_an_encoder_saved_in_half_precision_trains_in_fp32(encoder_dir, tmp_path):
    """transformers loads a checkpoint in the dtype it was saved in; the head is fp32, so an fp16
    encoder would fail in its first forward pass and train without fp32 master weights."""
    from transformers import AutoModel
    half = tmp_path / "fp16-encoder"
    AutoModel.from_pretrained(encoder_dir).half().save_pretrained(half, safe_serialization=True)
    for name in ("tokenizer.json", "tokenizer_config.json", "vocab.txt", "special_tokens_map.json"):
        if (encoder_dir / name).exists():
            (half / name).write_bytes((encoder_dir / name).read_bytes())
    assert json.loads((half / "config.json").read_text())["dtype"] == "float16"
    assert {p.dtype for p in transformer.load_encoder(str(half)).parameters()} == {torch.float32}
    texts, labels = sentiment()
    clf = TextClassifier(small_config(stage_epochs=(1, 1)), encoders=half, model_config=TransformerConfig(precision="fp32"),
                         verbose=False).fit(texts, labels)
    assert {p.dtype for p in clf.models_["forward"].parameters()} == {torch.float32}
    assert clf.score(texts, labels) >= 0.0


@pytest.mark.parametrize("name,value", [("drop_mult", 0.5), ("bptt", 20), ("ar_alpha", 2.0)])
def test_awd_lstm_settings_that_cannot_act_on_a_transformer_are_refused(encoder_dir, name, value):
    texts, labels = sentiment()
    with pytest.raises(ConfigError, match=f"classifier.{name}' .*which a transformer encoder cannot act on"):
        TextClassifier(small_config(**{name: value}), encoders=encoder_dir,
                       model_config=TransformerConfig()).fit(texts, labels)
    with pytest.raises(ConfigError, match=f"finetune.{name}' .*which a transformer encoder cannot act on"):
        finetune_lm(TEXTS * 6, str(encoder_dir), "unused", replace(TRANSFORMER_FINETUNE, **{name: value}),
                    transformer_config=TransformerConfig())


@pytest.mark.parametrize("name", ["window", "mlm_block"])
def test_a_window_or_block_beyond_the_encoders_positions_is_refused(encoder_dir, name):
    texts, labels = sentiment()
    too_long = TransformerConfig(**{name: 513})  # the test encoder has 512 positions
    with pytest.raises(ConfigError, match=f"transformer.{name}' is 513 tokens, but the encoder .* reads at most 512"):
        finetune_lm(TEXTS * 6, str(encoder_dir), "unused", TRANSFORMER_FINETUNE, transformer_config=too_long)
    if name == "window":
        with pytest.raises(ConfigError, match="transformer.window' is 513 tokens"):
            TextClassifier(small_config(), encoders=encoder_dir, model_config=too_long).fit(texts, labels)


def test_a_special_tokens_text_inside_a_text_is_read_as_words(encoder_dir):
    """A document holding the text "[PAD]" or "[SEP]" must not get the padding or separator id: the
    windows take the padding id for the end of the document."""
    tokenizer = transformer.load_tokenizer(str(encoder_dir))
    special = {tokenizer.pad_token_id, tokenizer.sep_token_id, tokenizer.cls_token_id, tokenizer.mask_token_id}
    ids = transformer.encode_texts(tokenizer, ["great [PAD] fun [SEP] film"], 0)[0]
    assert not special & set(ids.tolist()) and len(ids) > 3
    blocks = transformer.mlm_blocks(tokenizer, ["great [PAD] fun [SEP] film"], 64)  # one row: all of it
    assert blocks.ravel().tolist().count(tokenizer.sep_token_id) == 1  # the text's own end only
    assert tokenizer.pad_token_id not in blocks.ravel().tolist()


def test_stage_2_replaces_an_earlier_output_whole(encoder_dir, tmp_path):
    """The fine-tuned masked LM is written beside the output folder and put in its place: nothing of
    an earlier run's folder stays behind, and no partial folder is left."""
    output = tmp_path / "lm"
    output.mkdir()
    (output / "merges.txt").write_text("#version: 0.2\n")  # an earlier run's BPE tokenizer (a RoBERTa)
    finetune_lm(TEXTS * 6, str(encoder_dir), output, replace(TRANSFORMER_FINETUNE, epochs=1, batch_size=4),
                transformer_config=TransformerConfig(head_epochs=0, mlm_block=16))
    assert not (output / "merges.txt").exists()
    assert {"model.safetensors", "ulmtl.json", "metrics.json", "tokenizer.json"} <= {p.name for p in output.iterdir()}
    assert [p.name for p in tmp_path.iterdir()] == ["lm"]
