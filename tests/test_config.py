"""Typed configs: the paper's defaults, command-line overrides, JSON round trip, CLI errors."""
from __future__ import annotations

import dataclasses
import json

import pytest

from ulmtl.cli import normalize_argv, parse_args
from ulmtl.config import (
    ClassifierConfig, ConfigError, FinetuneConfig, ModelConfig, PretrainConfig, PretrainRunConfig,
    RecipeConfig, TokenizerConfig, apply_overrides, load_config, save_config,
)


# --------------------------------------------------------------------------- defaults

def test_model_defaults_are_awd_lstm_400_1152_3():
    m = ModelConfig()
    assert (m.emb_size, m.hidden_size, m.n_layers) == (400, 1152, 3)
    # The paper's classifier dropouts (0.4 / 0.3 / 0.4 / 0.05 / 0.5).
    assert (m.clas_output_p, m.clas_hidden_p, m.clas_input_p, m.clas_embed_p, m.clas_weight_p) == (
        0.4, 0.3, 0.4, 0.05, 0.5)


@pytest.mark.parametrize("cls", [PretrainConfig, FinetuneConfig, ClassifierConfig])
def test_stage_defaults_are_the_papers(cls):
    c = cls()
    assert c.bptt == 70
    assert c.batch_size == 64
    assert c.betas == (0.7, 0.99)
    assert c.cut_frac == 0.1
    assert c.ratio == 32


@pytest.mark.parametrize("cls", [FinetuneConfig, ClassifierConfig])
def test_discriminative_decay_is_2_6(cls):
    assert cls().lr_decay == 2.6


def test_classifier_head_and_learning_rates():
    c = ClassifierConfig()
    assert c.head_hidden == 50
    assert c.lr == 0.01
    assert FinetuneConfig().lr == 4e-3
    assert c.unfreeze_plan == (1, 2, 3, 0)


def test_recipe_nests_fresh_stage_configs():
    a, b = RecipeConfig(), RecipeConfig()
    assert a.classifier == ClassifierConfig() and a.model == ModelConfig()
    assert a.tokenizer == TokenizerConfig() and a.finetune == FinetuneConfig()
    assert a.classifier is not b.classifier


# --------------------------------------------------------------------------- overrides

def test_override_nested_float_in_scientific_notation():
    base = RecipeConfig()
    out = apply_overrides(base, ["--classifier.lr=5e-3"])
    assert out.classifier.lr == 5e-3 and isinstance(out.classifier.lr, float)
    assert base.classifier.lr == 0.01, "the original config must not change"
    assert out.finetune.lr == base.finetune.lr


def test_override_variable_length_int_tuple():
    out = apply_overrides(RecipeConfig(), ["--classifier.stage_epochs=1,2"])
    assert out.classifier.stage_epochs == (1, 2)
    out = apply_overrides(RecipeConfig(), ["--classifier.stage_epochs=(3, 4, 5)"])
    assert out.classifier.stage_epochs == (3, 4, 5)


def test_override_fixed_length_tuple_and_string_tuple():
    out = apply_overrides(RecipeConfig(), ["--classifier.betas=0.8,0.9",
                                           "--classifier.directions=forward,backward"])
    assert out.classifier.betas == (0.8, 0.9)
    assert out.classifier.directions == ("forward", "backward")
    with pytest.raises(ConfigError, match="classifier.betas"):
        apply_overrides(RecipeConfig(), ["--classifier.betas=0.8"])


@pytest.mark.parametrize("raw,expected", [("true", True), ("1", True), ("yes", True), ("on", True),
                                          ("false", False), ("0", False), ("No", False), ("off", False)])
def test_override_bools(raw, expected):
    out = apply_overrides(RecipeConfig(), [f"--smoke={raw}", f"--classifier.discriminative={raw}"])
    assert out.smoke is expected
    assert out.classifier.discriminative is expected


def test_override_top_level_ints_strings_and_dashes():
    out = apply_overrides(RecipeConfig(), ["--seed=7", "--output=runs/x", "--max-train=100",
                                           "--model.n_layers=2"])
    assert (out.seed, out.output, out.max_train, out.model.n_layers) == (7, "runs/x", 100, 2)


def test_later_override_wins():
    out = apply_overrides(RecipeConfig(), ["--classifier.lr=1e-3", "--classifier.lr=2e-3"])
    assert out.classifier.lr == 2e-3


@pytest.mark.parametrize("override,key", [
    ("--classifier.nope=1", "classifier.nope"),
    ("--nosection.lr=1", "nosection.lr"),
    ("--classifier.lr.deeper=1", "classifier.lr"),
])
def test_unknown_key_raises_naming_it(override, key):
    with pytest.raises(ConfigError) as info:
        apply_overrides(RecipeConfig(), [override])
    assert key in str(info.value)


@pytest.mark.parametrize("override,key", [
    ("--classifier.lr=fast", "classifier.lr"),
    ("--classifier.bptt=7.5", "classifier.bptt"),
    ("--smoke=maybe", "smoke"),
    ("--classifier.stage_epochs=1,x", "classifier.stage_epochs"),
])
def test_wrong_type_raises_naming_the_key(override, key):
    with pytest.raises(ConfigError) as info:
        apply_overrides(RecipeConfig(), [override])
    assert repr(key) in str(info.value)


def test_section_cannot_be_set_as_a_value():
    with pytest.raises(ConfigError, match="classifier"):
        apply_overrides(RecipeConfig(), ["--classifier=1"])


@pytest.mark.parametrize("bad", ["classifier.lr=1", "--classifier.lr"])
def test_malformed_override_is_rejected(bad):
    with pytest.raises(ConfigError):
        apply_overrides(RecipeConfig(), [bad])


# --------------------------------------------------------------------------- save / load

@pytest.mark.parametrize("config", [
    RecipeConfig(),
    apply_overrides(RecipeConfig(), ["--classifier.stage_epochs=1,2", "--classifier.lr=5e-3",
                                     "--smoke=true", "--classifier.directions=forward,backward"]),
    PretrainRunConfig(),
])
def test_save_load_round_trip(tmp_path, config):
    path = tmp_path / "sub" / "config.json"
    save_config(config, path)
    loaded = load_config(type(config), path)
    assert loaded == config
    assert isinstance(loaded.classifier.betas if hasattr(loaded, "classifier") else loaded.pretrain.betas,
                      tuple)
    assert not list(tmp_path.rglob("*.tmp")), "the temporary file must be renamed away"


def test_load_rejects_unknown_key_and_wrong_type(tmp_path):
    data = dataclasses.asdict(RecipeConfig())
    data["classifier"]["bogus"] = 1
    (tmp_path / "a.json").write_text(json.dumps(data))
    with pytest.raises(ConfigError, match="classifier.bogus"):
        load_config(RecipeConfig, tmp_path / "a.json")

    data = dataclasses.asdict(RecipeConfig())
    data["classifier"]["bptt"] = "seventy"
    (tmp_path / "b.json").write_text(json.dumps(data))
    with pytest.raises(ConfigError, match="classifier.bptt"):
        load_config(RecipeConfig, tmp_path / "b.json")


def test_load_fills_missing_keys_with_defaults(tmp_path):
    (tmp_path / "c.json").write_text(json.dumps({"classifier": {"lr": 0.02}}))
    loaded = load_config(RecipeConfig, tmp_path / "c.json")
    assert loaded.classifier.lr == 0.02
    assert loaded.classifier.bptt == 70 and loaded.model == ModelConfig()


# --------------------------------------------------------------------------- CLI

def test_parse_args_bad_override_exits_2_naming_key(capsys):
    with pytest.raises(SystemExit) as info:
        parse_args(RecipeConfig(), ["--classifier.nope=3"])
    assert info.value.code == 2
    err = capsys.readouterr().err
    assert "classifier.nope" in err and err.startswith("error:")


def test_parse_args_bad_value_exits_2_naming_key(capsys):
    with pytest.raises(SystemExit) as info:
        parse_args(RecipeConfig(), ["--classifier.lr=fast"])
    assert info.value.code == 2
    assert "classifier.lr" in capsys.readouterr().err


def test_parse_args_value_flag_without_value_exits_2(capsys):
    with pytest.raises(SystemExit) as info:
        parse_args(RecipeConfig(), ["--output"])
    assert info.value.code == 2
    assert "--output" in capsys.readouterr().err


def test_parse_args_help_exits_0(capsys):
    with pytest.raises(SystemExit) as info:
        parse_args(RecipeConfig(), ["--help"], usage="usage: thing")
    assert info.value.code == 0
    assert "usage: thing" in capsys.readouterr().out


def test_parse_args_flags_smoke_and_value_forms():
    config = parse_args(RecipeConfig(), ["--smoke", "--output", "runs/o", "--data-dir=/d",
                                         "--classifier.lr=2e-3"],
                        smoke_overrides=["--classifier.stage_epochs=1", "--classifier.lr=9e-3"])
    assert config.smoke is True
    assert config.output == "runs/o" and config.data_dir == "/d"
    assert config.classifier.stage_epochs == (1,)
    # The user's own overrides are applied after the smoke settings.
    assert config.classifier.lr == 2e-3


@pytest.mark.parametrize("flag", ["--smoke=1", "--smoke=yes", "--smoke=True"])
def test_parse_args_any_true_smoke_spelling_applies_smoke_overrides(flag):
    config = parse_args(RecipeConfig(), [flag], smoke_overrides=["--classifier.stage_epochs=1"])
    assert config.smoke is True and config.classifier.stage_epochs == (1,)


def test_parse_args_smoke_false_does_not_apply_smoke_overrides():
    config = parse_args(RecipeConfig(), ["--smoke", "--smoke=false"],
                        smoke_overrides=["--classifier.stage_epochs=1"])
    assert config.smoke is False and config.classifier.stage_epochs == (1, 1, 1, 2)


def test_parse_args_without_smoke_ignores_smoke_overrides():
    config = parse_args(RecipeConfig(), [], smoke_overrides=["--classifier.stage_epochs=1"])
    assert config == RecipeConfig()


def test_normalize_argv():
    assert normalize_argv(["--smoke", "--pretrained", "p", "--x.y=1"]) == [
        "--smoke=true", "--pretrained=p", "--x.y=1"]
