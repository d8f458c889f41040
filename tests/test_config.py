"""Typed configs: the paper's defaults, command-line overrides, JSON round trip, CLI errors."""
from __future__ import annotations

import dataclasses
import json
import math
import os
import subprocess
import sys
import typing
from pathlib import Path
from typing import Literal

import pytest

from ulmtl.cli import normalize_argv, parse_args
from ulmtl.config import (
    ClassifierConfig, ConfigError, FinetuneConfig, Limit, ModelConfig, OptimizerSettings, PretrainConfig,
    PretrainRunConfig, RecipeConfig, TokenizerConfig, apply_overrides, load_config, save_config,
)

REPO = Path(__file__).resolve().parents[1]


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


@pytest.mark.parametrize("cls,lr,drop_mult,clip", [(PretrainConfig, 3e-3, 1.0, 0.4), (FinetuneConfig, 4e-3, 0.3, 0.4),
                                                   (ClassifierConfig, 0.01, 1.0, 0.0)])
def test_stage_configs_share_the_optimizer_settings_with_their_own_defaults(cls, lr, drop_mult, clip):
    shared = {f.name for f in dataclasses.fields(OptimizerSettings)}
    assert issubclass(cls, OptimizerSettings) and shared <= {f.name for f in dataclasses.fields(cls)}
    c = cls()
    assert (c.lr, c.drop_mult, c.clip, c.weight_decay, c.ar_alpha, c.tar_beta, c.seed) == (
        lr, drop_mult, clip, 0.01, 2.0, 1.0, 42)


def test_a_stages_own_default_keeps_the_shared_range_and_errors_name_the_section():
    with pytest.raises(ConfigError, match="'finetune.lr' must be > 0"):
        apply_overrides(RecipeConfig(), ["--finetune.lr=0"])
    with pytest.raises(ConfigError, match="'classifier.clip' must be >= 0"):
        apply_overrides(RecipeConfig(), ["--classifier.clip=-1"])


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
    out = apply_overrides(RecipeConfig(), ["--classifier.stage_epochs=1,2", "--classifier.unfreeze_plan=1,0",
                                           "--classifier.stage_lr_mult=1,1"])
    assert out.classifier.stage_epochs == (1, 2)
    out = apply_overrides(RecipeConfig(), ["--classifier.stage_epochs=(3, 4, 5)", "--classifier.unfreeze_plan=[1, 2, 0]",
                                           "--classifier.stage_lr_mult=1,1,1"])
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
    apply_overrides(RecipeConfig(), ["--classifier.stage_epochs=1,2,1,2", "--classifier.lr=5e-3",
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
                        smoke_overrides=["--classifier.max_len=100", "--classifier.lr=9e-3"])
    assert config.smoke is True
    assert config.output == "runs/o" and config.data_dir == "/d"
    assert config.classifier.max_len == 100
    # The user's own overrides are applied after the smoke settings.
    assert config.classifier.lr == 2e-3


def test_parse_args_reads_overrides_that_fit_only_the_chosen_backbones_defaults(capsys):
    # The transformer's plan has two stages (the recipe's own AWD-LSTM plan four): two epochs fit it.
    config = parse_args(RecipeConfig(), ["--backbone=transformer", "--classifier.stage_epochs=1,1"])
    assert config.backbone == "transformer"
    assert config.classifier.unfreeze_plan == (1, 0) and config.classifier.stage_epochs == (1, 1)
    with pytest.raises(SystemExit) as info:
        parse_args(RecipeConfig(), ["--backbone=awd_lstm", "--classifier.stage_epochs=1,1"])
    assert info.value.code == 2 and "config key 'classifier.stage_epochs'" in capsys.readouterr().err


@pytest.mark.parametrize("flag", ["--smoke=1", "--smoke=yes", "--smoke=True"])
def test_parse_args_any_true_smoke_spelling_applies_smoke_overrides(flag):
    config = parse_args(RecipeConfig(), [flag], smoke_overrides=["--classifier.max_len=100"])
    assert config.smoke is True and config.classifier.max_len == 100


def test_parse_args_smoke_false_does_not_apply_smoke_overrides():
    config = parse_args(RecipeConfig(backbone="awd_lstm"), ["--smoke", "--smoke=false"],
                        smoke_overrides=["--classifier.max_len=100"])
    assert config.smoke is False and config.classifier.max_len == 1400


def test_parse_args_without_smoke_ignores_smoke_overrides():
    config = parse_args(RecipeConfig(backbone="awd_lstm"), [], smoke_overrides=["--classifier.max_len=100"])
    assert config == RecipeConfig(backbone="awd_lstm")


def test_normalize_argv():
    assert normalize_argv(["--smoke", "--pretrained", "p", "--x.y=1"]) == [
        "--smoke=true", "--pretrained=p", "--x.y=1"]


# --------------------------------------------------------------------------- every setting checked on build

# String fields that name files, folders or columns: any text goes (an unknown dataset name is
# load_dataset's error). Every other str field must be a Literal (or, encoding, a known codec).
FREE_TEXT = {"dataset", "data_dir", "output", "pretrained", "train_file", "test_file", "text_column",
             "label_column", "label_separator", "label_columns", "corpus"}


def _numbers_outside(limit: Limit, kind) -> list[str]:
    """Override texts just outside ``limit``, plus non-finite ones for a float field."""
    bad = []
    if limit.low != -math.inf:
        bad.append(limit.low if limit.low_open else limit.low - 1)
    if limit.high != math.inf:
        bad.append(limit.high if limit.high_open else limit.high + 1)
    bad = [str(int(v)) if kind is int else repr(float(v)) for v in bad]
    return bad + (["nan", "inf", "-inf"] if kind is float else [])


def _bad_overrides(root) -> list[tuple[str, str]]:
    """(override, dotted key) for a bad value of every enumerated and numeric setting of ``root``,
    generated from the field types and limits, so that a new field is covered without a new test."""
    cases = []

    def walk(cls, prefix: str):
        hints = typing.get_type_hints(cls)
        for item in dataclasses.fields(cls):
            kind, key = hints[item.name], prefix + item.name
            if dataclasses.is_dataclass(kind):
                walk(kind, key + ".")
                continue
            default = getattr(cls(), item.name)
            tuple_of = typing.get_args(kind)[0] if typing.get_origin(kind) is tuple else None
            scalar = tuple_of if tuple_of is not None else kind
            if scalar is bool:
                continue
            if typing.get_origin(scalar) is Literal:
                choices = typing.get_args(scalar)
                bad = [choices[0].capitalize(), choices[0] + "x"]
            elif scalar in (int, float):
                limit = item.metadata.get("limit")
                assert limit is not None, f"{cls.__name__}.{item.name} has no limit: give it one with limited()"
                bad = _numbers_outside(limit, scalar)
            else:
                assert item.name in FREE_TEXT | {"encoding"}, \
                    f"{cls.__name__}.{item.name} is free text: make it a Literal or check it"
                bad = ["no-such-codec"] if item.name == "encoding" else []
            for value in bad:
                text = ",".join([value] * len(default)) if tuple_of is not None else value
                cases.append((f"--{key}={text}", key))

    walk(root, "")
    return cases


BAD_OVERRIDES = [(root, override, key) for root in (RecipeConfig, PretrainRunConfig)
                 for override, key in _bad_overrides(root)]


@pytest.mark.parametrize("root,override,key", BAD_OVERRIDES,
                         ids=[f"{root.__name__}:{override}" for root, override, _ in BAD_OVERRIDES])
def test_every_out_of_range_or_misspelled_setting_exits_2_at_parse_time(root, override, key, capsys):
    with pytest.raises(SystemExit) as info:
        parse_args(root(), [override])
    assert info.value.code == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and err.count("\n") == 1, err
    assert f"config key {key!r}" in err, err


def test_the_generated_cases_cover_the_enumerated_and_numeric_settings():
    keys = {key for _, _, key in BAD_OVERRIDES}
    assert {"classifier.strategy", "classifier.directions", "model.precision", "pretrain.direction",
            "finetune.schedule", "lm_texts", "encoding", "classifier.lr", "tokenizer.max_vocab",
            "pretrain.betas", "classifier.stage_epochs", "seed"} <= keys
    assert len(BAD_OVERRIDES) > 250


# The probes of issue 18 / 23, each with the key the error must name.
PROBES = [
    (["--classifier.directions=forwad"], "classifier.directions"),
    (["--classifier.directions=forward,backwrd"], "classifier.directions"),
    (["--classifier.schedule=stlrr"], "classifier.schedule"),
    (["--classifier.unfreezing=chainthaw"], "classifier.unfreezing"),
    (["--classifier.stage_epochs=1"], "classifier.stage_epochs"),
    (["--classifier.strategy=Finetune"], "classifier.strategy"),
    (["--model.precision=fp16"], "model.precision"),
    (["--classifier.batch_size=0"], "classifier.batch_size"),
    (["--classifier.bptt=0"], "classifier.bptt"),
    (["--classifier.drop_mult=-1"], "classifier.drop_mult"),
    (["--seed=-1"], "seed"),
    (["--encoding=bogus"], "encoding"),
    (["--classifier.lr=0"], "classifier.lr"),
    (["--classifier.unfreeze_plan=1,0", "--classifier.stage_lr_mult=1,1", "--classifier.stage_epochs=0,0"],
     "classifier.stage_epochs"),
    (["--tokenizer.max_vocab=0"], "tokenizer.max_vocab"),
    (["--classifier.lr=nan"], "classifier.lr"),
    (["--classifier.lr=inf"], "classifier.lr"),
    (["--finetune.lr=NaN"], "finetune.lr"),
    (["--classifier.ratio=0"], "classifier.ratio"),
    (["--classifier.directions=forward,forward"], "classifier.directions"),
    (["--backbone=awd_lstm", "--classifier.max_len=50"], "classifier.max_len"),
    (["--folds=3", "--fold=3"], "fold"),
    (["--valid_fraction=1"], "valid_fraction"),
    (["--lm_texts=everything"], "lm_texts"),
    (["--seed=4294967296"], "seed"),
]


@pytest.mark.parametrize("argv,key", PROBES, ids=[" ".join(argv) for argv, _ in PROBES])
def test_issue_probes_exit_2_naming_the_key(argv, key, capsys):
    with pytest.raises(SystemExit) as info:
        parse_args(RecipeConfig(), argv)
    assert info.value.code == 2
    err = capsys.readouterr().err
    assert err.startswith(f"error: config key {key!r} ") and err.count("\n") == 1, err


def test_literal_error_lists_the_choices():
    with pytest.raises(ConfigError) as info:
        apply_overrides(RecipeConfig(), ["--classifier.strategy=Finetune"])
    assert str(info.value) == ("config key 'classifier.strategy' must be one of 'finetune', "
                               "'feature_extraction', 'scratch', 'auto'; got 'Finetune'")


def test_checks_run_on_direct_construction_and_on_load(tmp_path):
    with pytest.raises(ConfigError, match=r"config key 'ClassifierConfig.batch_size' must be >= 1; got 0"):
        ClassifierConfig(batch_size=0)
    with pytest.raises(ConfigError, match="'PretrainConfig.lr' must be a finite number"):
        PretrainConfig(lr=float("nan"))
    with pytest.raises(ConfigError, match="'ModelConfig.precision' must be one of"):
        dataclasses.replace(ModelConfig(), precision="fp16")
    data = dataclasses.asdict(RecipeConfig())
    data["finetune"]["cut_frac"] = 1.0
    (tmp_path / "c.json").write_text(json.dumps(data))
    with pytest.raises(ConfigError, match=r"'finetune.cut_frac' must be in \(0, 1\); got 1.0"):
        load_config(RecipeConfig, tmp_path / "c.json")


def test_direct_construction_normalises_lists_and_ints():
    config = ClassifierConfig(stage_epochs=[1, 1], unfreeze_plan=[1, 0], stage_lr_mult=[1, 2], lr=1)
    assert config.stage_epochs == (1, 1) and config.stage_lr_mult == (1.0, 2.0)
    assert isinstance(config.lr, float)


def test_the_edges_of_each_range_are_accepted():
    RecipeConfig(dataset="polarity", folds=10, fold=9)
    RecipeConfig(dataset="custom", encoding="latin-1")
    RecipeConfig(valid_fraction=0.0, seed=0, max_train=0,
                 tokenizer=TokenizerConfig(max_vocab=10, min_freq=1),
                 classifier=ClassifierConfig(lr_decay=1.0, ratio=1.0, clip=0.0, head_dropout=0.0,
                                             betas=(0.0, 0.0), bptt=5, max_len=5, unfreeze_plan=(0,),
                                             stage_epochs=(1,), stage_lr_mult=(1.0,)))
    PretrainRunConfig(pretrain=PretrainConfig(time_budget_s=0, token_budget=0, checkpoint_every_s=0))


def test_stage1_vocabulary_is_the_tokenizer_section_with_its_own_defaults():
    run = PretrainRunConfig()
    assert (run.tokenizer.max_vocab, run.tokenizer.min_freq) == (30000, 3)
    assert (RecipeConfig().tokenizer.max_vocab, RecipeConfig().tokenizer.min_freq) == (60000, 2)
    assert not {"max_vocab", "min_freq"} & {f.name for f in dataclasses.fields(PretrainConfig)}
    assert apply_overrides(run, ["--tokenizer.max_vocab=2000"]).tokenizer.max_vocab == 2000


def test_architecture_comes_from_the_checkpoint_and_runtime_settings_from_the_run():
    run = ModelConfig(clas_input_p=0.2, lm_weight_p=0.3, precision="bf16")
    saved = dataclasses.asdict(ModelConfig(emb_size=16, hidden_size=32, n_layers=2, clas_input_p=0.0,
                                           precision="fp32"))
    used = run.with_architecture_of(saved)
    assert (used.emb_size, used.hidden_size, used.n_layers) == (16, 32, 2)
    assert (used.clas_input_p, used.lm_weight_p, used.precision) == (0.2, 0.3, "bf16")
    with pytest.raises(ConfigError, match="model.n_layers"):
        run.with_architecture_of(dict(saved, n_layers=0))


@pytest.mark.slow
def test_probes_fail_before_any_data_is_read(tmp_path):
    """A bad override beats a missing --train file: the run stops at parse time, with no cache."""
    env = dict(os.environ, OMP_NUM_THREADS="1", ULMTL_CACHE_DIR=str(tmp_path / "cache"),
               PYTHONPATH=str(REPO), HF_DATASETS_OFFLINE="1", HF_HUB_OFFLINE="1")
    result = subprocess.run([sys.executable, str(REPO / "recipes" / "custom.py"), "--train",
                             str(tmp_path / "missing.csv"), "--classifier.directions=forward,backwrd",
                             "--output", str(tmp_path / "out")],
                            capture_output=True, text=True, env=env, cwd=tmp_path, timeout=300)
    assert result.returncode == 2 and "Traceback" not in result.stderr, result.stderr
    assert result.stderr.startswith("error: config key 'classifier.directions' must be one of"), result.stderr
    assert not (tmp_path / "cache").exists() and not (tmp_path / "out").exists()


def test_every_schedule_choice_is_one_that_schedule_py_knows():
    from ulmtl.config import Schedule
    from ulmtl.schedule import schedule_value
    for name in typing.get_args(Schedule):
        assert float(schedule_value(name, 0.5, 1.0, 0.1, 32.0)) > 0


def test_a_stage_seed_that_a_recipe_would_replace_is_refused(capsys):
    from ulmtl.cli import parse_args
    from ulmtl.config import RecipeConfig
    with pytest.raises(SystemExit) as exit_info:
        parse_args(RecipeConfig(dataset="trec"), ["--finetune.seed=7"])
    assert exit_info.value.code == 2 and "set --seed instead" in capsys.readouterr().err
    config = parse_args(RecipeConfig(dataset="trec"), ["--seed=7", "--classifier.seed=7"])
    assert config.seed == config.classifier.seed == 7


CANNOT_ACT = [
    ("trec", ["--train", "mine.csv"], "train_file"),
    ("trec", ["--text-column", "body"], "text_column"),
    ("mr", ["--encoding", "latin-1"], "encoding"),
    ("trec", ["--skip-empty"], "skip_empty"),
    ("trec", ["--label-separator", "|"], "label_separator"),
    ("mr", ["--fine=true"], "fine"),
    ("trec", ["--fold=3"], "fold"),
    ("mr", ["--folds", "10"], "folds"),
    ("polarity", ["--folds", "5"], "folds"),
    ("polarity", ["--fold=10"], "fold"),
    ("custom", ["--train", "mine.csv", "--data-dir", "data"], "data_dir"),
]


@pytest.mark.parametrize("dataset,argv,key", CANNOT_ACT, ids=[f"{d} {' '.join(a)}" for d, a, _ in CANNOT_ACT])
def test_a_setting_the_dataset_cannot_act_on_exits_2_naming_it(dataset, argv, key, capsys):
    with pytest.raises(SystemExit) as info:
        parse_args(RecipeConfig(dataset=dataset), argv)
    assert info.value.code == 2
    err = capsys.readouterr().err
    assert err.startswith(f"error: config key {key!r} ") and err.count("\n") == 1, err


@pytest.mark.parametrize("dataset,argv", [("trec", ["--fine=true"]), ("polarity", ["--folds", "10"]),
                                          ("polarity", ["--fold=9"]), ("custom", ["--train", "a.csv", "--skip-empty"]),
                                          ("mr", ["--data-dir", "data"])])
def test_the_settings_a_dataset_takes_are_accepted(dataset, argv):
    parse_args(RecipeConfig(dataset=dataset), argv)


@pytest.mark.parametrize("argv,key", [(["--classifier.drop_mult=0.5"], "classifier.drop_mult"),
                                      (["--finetune.bptt=30"], "finetune.bptt"),
                                      (["--classifier.ar_alpha=2"], "classifier.ar_alpha")])
def test_awd_lstm_settings_are_refused_at_parse_time_for_a_transformer_run(argv, key, capsys):
    with pytest.raises(SystemExit) as info:
        parse_args(RecipeConfig(), ["--backbone=transformer", *argv])
    assert info.value.code == 2
    err = capsys.readouterr().err
    assert err.startswith(f"error: config key {key!r} ") and "transformer encoder cannot act on" in err, err
    parse_args(RecipeConfig(), ["--backbone=awd_lstm", *argv])  # the AWD-LSTM reads them


def test_a_transformer_smoke_run_keeps_the_transformers_settings_and_any_max_len():
    from ulmtl.recipe import SMOKE_RECIPE
    config = parse_args(RecipeConfig(), ["--smoke", "--backbone=transformer", "--classifier.max_len=50"],
                        SMOKE_RECIPE)
    assert (config.classifier.bptt, config.finetune.bptt, config.classifier.max_len) == (70, 70, 50)
    assert config.model == RecipeConfig().model and config.max_train == 200  # the AWD-LSTM's sizes: not read
    awd = parse_args(RecipeConfig(), ["--smoke"], SMOKE_RECIPE)
    assert (awd.backbone, awd.classifier.bptt, awd.model.emb_size) == ("awd_lstm", 20, 16)


@pytest.mark.parametrize("argv,key", [(["--model.emb_size=16"], "model.emb_size"),
                                      (["--tokenizer.min_freq=1"], "tokenizer.min_freq"),
                                      (["--backbone=awd_lstm", "--transformer.window=128"], "transformer.window")])
def test_the_other_backbones_settings_are_refused_at_parse_time(argv, key, capsys):
    with pytest.raises(SystemExit) as info:
        parse_args(RecipeConfig(), argv)
    assert info.value.code == 2
    err = capsys.readouterr().err
    assert err.startswith(f"error: config key {key!r} is a setting of the ") and "--backbone" in err, err


def test_the_tokenizer_acts_on_a_transformer_run_whose_auto_tries_the_awd_lstm():
    config = parse_args(RecipeConfig(), ["--tokenizer.min_freq=1", "--classifier.strategy=auto"])
    assert config.backbone == "transformer" and config.tokenizer.min_freq == 1
