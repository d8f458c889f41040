"""fastai's language-model files in the layouts the published ones have, written here at tiny sizes.

Each fixture reproduces a real layout in structure: key names and order, nesting, what the
optimizer entry holds, torch's serialization format of the time, the vocabulary's special tokens
and padding. fastai v2's files are written by fastai itself (``save_model``, ``make_vocab``,
``learn.export``); v1's and 0.7's as their code wrote them (fastai v1 ``WeightDropout`` /
``OptimWrapper.get_state``, fastai 0.7 ``WeightDrop`` / ``RNN_Encoder`` / ``tok2id.py``).
"""
from __future__ import annotations

import functools
import importlib.util
import json
import os
import pickle
from collections import OrderedDict
from collections import Counter
from pathlib import Path

import numpy as np
import pytest
import torch
from fastai.data.core import Datasets
from fastai.learner import Learner, save_model
from fastai.optimizer import Adam
from fastai.text.data import make_vocab

from ulmtl import CheckpointError, ModelConfig, Vocab, import_fastai_lm, load_checkpoint
from ulmtl.fastai_files import _Inert, _read_torch_file, find_fastai_files, load_fastai_weights, load_itos_pickle
from ulmtl.backbones.awd_lstm import build_language_model, lm_layer_groups

# fastai v2's defaults.text_spec_tok, and v1's order of the same tokens.
SPECIAL_V2 = ["xxunk", "xxpad", "xxbos", "xxeos", "xxfld", "xxrep", "xxwrep", "xxup", "xxmaj"]
SPECIAL_V1 = ["xxunk", "xxpad", "xxbos", "xxeos", "xxfld", "xxmaj", "xxup", "xxrep", "xxwrep"]
WORDS = ["the", ".", "movie", "was", "a", "film", "good", "bad", "great", "awful", "plot", "and", "story"]
EMB, HIDDEN = 8, 12
RECIPES = Path(__file__).resolve().parents[1] / "recipes"


def v2_vocab() -> list[str]:
    """fastai v2's own make_vocab: special tokens, words, then 'xxfake' up to a multiple of 8."""
    return make_vocab(Counter({word: 100 - i for i, word in enumerate(WORDS)}), min_freq=1)


def v1_vocab() -> list[str]:
    """fastai v1's Vocab.create: its special-token order, then 'xxfake' while len % 8 != 0."""
    itos = SPECIAL_V1 + WORDS
    while len(itos) % 8:
        itos.append("xxfake")
    return itos


def fastai07_vocab() -> list[str]:
    """fastai 0.7's tok2id.py: '_unk_', '_pad_', then tokens by frequency, its markers among them."""
    return ["_unk_", "_pad_", "xbos", "xfld", "1", "t_up", "tk_rep", "tk_wrep"] + WORDS


def source_model(n_tokens: int, hidden: int = HIDDEN, seed: int = 0) -> torch.nn.Module:
    torch.manual_seed(seed)
    model = build_language_model(n_tokens, ModelConfig(emb_size=EMB, hidden_size=hidden, n_layers=2))
    with torch.no_grad():
        for parameter in model.parameters():
            parameter.normal_()
    return model.eval()


def v2_state_to_v1(state: dict) -> OrderedDict:
    """fastai v1's key order and its extra ``module.weight_hh_l0``: the dropped-out copy of the raw
    weight that v1's WeightDropout kept in the wrapped LSTM's ``_parameters``."""
    out = OrderedDict()
    for key, tensor in state.items():
        out[key] = tensor
        if key.endswith(".module.weight_ih_l0"):
            raw = state[key.replace("module.weight_ih_l0", "weight_hh_l0_raw")]
            out[key.replace("weight_ih", "weight_hh")] = torch.nn.functional.dropout(raw, p=0.5)
    return out


def v1_optimizer_state(model: torch.nn.Module) -> dict:
    """fastai v1's OptimWrapper.get_state after a step: torch's Adam state, numpy float64 hyper-
    parameters per layer group and ``opt_func``, a functools.partial of torch.optim.Adam."""
    groups = [{"params": [p for p in group], "lr": np.float64(1e-3)} for group in lm_layer_groups(model)]
    opt = torch.optim.Adam(groups, betas=(0.9, 0.99))
    model(torch.randint(0, 8, (2, 5)))[0].sum().backward()
    opt.step()
    n = len(groups)
    return {"opt_state": opt.state_dict(), "lr": [np.float64(1e-3)] * n, "wd": [np.float64(0.01)] * n,
            "beta": [np.float64(0.99)] * n, "mom": [np.float64(0.8)] * n,
            "opt_func": functools.partial(torch.optim.Adam, betas=(0.9, 0.99)), "true_wd": True, "bn_wd": True}


def v2_state_to_fastai07(state: dict, encoder_only: bool = False) -> OrderedDict:
    """fastai 0.7's RNN_Encoder + LinearDecoder(bias=False): ``encoder_with_dropout.embed``, the raw
    weight registered last on the wrapped LSTM (WeightDrop._setup), one tensor for the tied three."""
    embedding = state["0.encoder.weight"]
    out = OrderedDict([("0.encoder.weight", embedding), ("0.encoder_with_dropout.embed.weight", embedding)])
    layers = sorted({k.split(".")[2] for k in state if k.startswith("0.rnns.")})
    for layer in layers:
        prefix = f"0.rnns.{layer}."
        for name in ("weight_ih_l0", "bias_ih_l0", "bias_hh_l0"):
            out[f"{prefix}module.{name}"] = state[f"{prefix}module.{name}"]
        out[f"{prefix}module.weight_hh_l0_raw"] = state[f"{prefix}weight_hh_l0_raw"]
    if encoder_only:  # 0.7's save_encoder: the RNN_Encoder's own state dict, no "0." prefix
        return OrderedDict((k[2:], v) for k, v in out.items())
    out["1.decoder.weight"] = embedding
    return out


def write_pickle(path: Path, value) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "wb") as handle:
        pickle.dump(value, handle)
    return path


def legacy_save(value, path: Path) -> Path:
    """torch.save in the format before torch 1.6, which fastai v1's and 0.7's files have."""
    path.parent.mkdir(parents=True, exist_ok=True)
    torch.save(value, path, _use_new_zipfile_serialization=False)
    return path


def write_layout(layout: str, folder: Path) -> tuple[torch.nn.Module, list[str]]:
    """A folder holding fastai's files in ``layout``; returns the model they came from and the itos."""
    folder.mkdir(parents=True, exist_ok=True)
    if layout == "v2":  # learn.save(..., with_opt=True) after fit: fastai's save_model
        itos = v2_vocab()
        model = source_model(len(itos))
        opt = Adam(lm_layer_groups(model), lr=1e-3)
        opt.set_hyper("lr", np.array([1e-4, 1e-3, 1e-2]))  # fit(slice(...)) leaves numpy scalars
        model(torch.randint(0, 8, (2, 5)))[0].sum().backward()
        opt.step()
        save_model(folder / "lm.pth", model, opt)
        write_pickle(folder / "itos.pkl", itos)
    elif layout == "v1":  # fastai's WT103 archive: lstm_fwd.pth + itos_wt103.pkl
        itos = v1_vocab()
        model = source_model(len(itos))
        state = v2_state_to_v1(model.state_dict())
        legacy_save({"model": state, "opt": v1_optimizer_state(model)}, folder / "lstm_fwd.pth")
        write_pickle(folder / "itos_wt103.pkl", itos)
    else:  # fastai 0.7, the paper's models/wt103: fwd_wt103.h5, bwd_wt103.h5, *_enc.h5, itos_wt103.pkl
        itos = fastai07_vocab()
        model = source_model(len(itos), hidden=HIDDEN + 2)  # 0.7's hidden size (1150) is not 1152
        with torch.no_grad():
            model[1].decoder.bias.zero_()  # 0.7's decoder has no bias
        state = model.state_dict()
        legacy_save(v2_state_to_fastai07(state), folder / "fwd_wt103.h5")
        legacy_save(v2_state_to_fastai07(state, encoder_only=True), folder / "fwd_wt103_enc.h5")
        backward = source_model(len(itos), hidden=HIDDEN + 2, seed=1).state_dict()
        legacy_save(v2_state_to_fastai07(backward), folder / "bwd_wt103.h5")
        write_pickle(folder / "itos_wt103.pkl", itos)
    return model, itos


LAYOUTS = ["v2", "v1", "0.7"]


@pytest.mark.parametrize("layout", LAYOUTS)
def test_each_layout_imports_to_the_same_language_model(layout, tmp_path):
    source, itos = write_layout(layout, tmp_path / "fastai")
    weights, vocab_file = find_fastai_files(tmp_path / "fastai", "forward")
    out = import_fastai_lm(weights, vocab_file, tmp_path / "converted")
    checkpoint = load_checkpoint(out)
    assert checkpoint.config["model"]["hidden_size"] == (HIDDEN + 2 if layout == "0.7" else HIDDEN)
    assert checkpoint.config["source"]["layout"] == {"v2": "fastai v2 + optimizer", "v1": "fastai v1 + optimizer",
                                                     "0.7": "fastai 0.7"}[layout]
    if layout == "0.7":
        assert checkpoint.tokens[:8] == ["xxunk", "xxpad", "xxbos", "xxfld", "1", "xxup", "xxrep", "xxwrep"]
    else:
        assert checkpoint.tokens == itos and itos[-1] == "xxfake" and len(itos) % 8 == 0
    # The imported LM computes what the fastai one did (v1's dropped-out copy was not taken for
    # the raw weight; 0.7's missing decoder bias is zeros).
    imported = build_language_model(len(itos), ModelConfig(**{k: checkpoint.config["model"][k] for k in
                                                               ("emb_size", "hidden_size", "n_layers")}))
    imported.load_state_dict(checkpoint.state_dict, strict=False)
    imported[1].decoder.weight = imported[0].encoder.weight
    tokens = torch.randint(0, len(itos), (2, 7))
    with torch.no_grad():
        source.reset(), imported.eval().reset()
        assert torch.allclose(source(tokens)[0], imported(tokens)[0], atol=1e-5)


def test_fastai_v2_optimizer_file_is_refused_by_weights_only_but_imported_here(tmp_path):
    """The reason for ulmtl's own reader: torch.load(weights_only=True) refuses a file fastai wrote."""
    write_layout("v2", tmp_path)
    with pytest.raises(Exception, match="Weights only load failed"):
        torch.load(tmp_path / "lm.pth", weights_only=True)
    state, layout = load_fastai_weights(tmp_path / "lm.pth")
    assert layout == "fastai v2 + optimizer" and "0.rnns.1.weight_hh_l0_raw" in state


def test_fastai_v1_raw_copies_are_dropped_as_fastai_does(tmp_path):
    write_layout("v1", tmp_path)
    raw = torch.load(tmp_path / "lstm_fwd.pth", weights_only=False)["model"]
    assert "0.rnns.0.module.weight_hh_l0" in raw
    state, _ = load_fastai_weights(tmp_path / "lstm_fwd.pth")
    assert "0.rnns.0.module.weight_hh_l0" not in state
    assert torch.equal(state["0.rnns.0.weight_hh_l0_raw"], raw["0.rnns.0.weight_hh_l0_raw"])


def custom_recipe():
    spec = importlib.util.spec_from_file_location("recipe_custom", RECIPES / "custom.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.mark.parametrize("layout", LAYOUTS)
def test_each_layout_fine_tunes_and_classifies_end_to_end(layout, tmp_path):
    folder = tmp_path / "fastai"
    write_layout(layout, folder)
    rows = [f"the {word} movie was {word} and the plot was {word} .,{label}"
            for word, label in [("good", "pos"), ("awful", "neg"), ("great", "pos"), ("bad", "neg")] * 10]
    data = tmp_path / "reviews.csv"
    data.write_text("text,label\n" + "\n".join(rows) + "\n")
    out = tmp_path / "run"
    metrics = custom_recipe().main(["--smoke", "--train", str(data), "--pretrained", str(folder),
                                     "--output", str(out), "--finetune.batch_size=4", "--finetune.bptt=8"])
    assert 0 <= metrics["test"]["accuracy"] <= 1 and metrics["lm_finetune"]["forward"]["known_tokens"] > 5
    stage1 = json.loads((out / "stage1-forward" / "config.json").read_text())
    assert stage1["source"]["weights"].endswith({"v2": "lm.pth", "v1": "lstm_fwd.pth", "0.7": "fwd_wt103.h5"}[layout])


def test_a_fastai07_folder_gives_each_direction_its_own_weights(tmp_path):
    write_layout("0.7", tmp_path)
    assert find_fastai_files(tmp_path, "forward") == (tmp_path / "fwd_wt103.h5", tmp_path / "itos_wt103.pkl")
    assert find_fastai_files(tmp_path, "backward") == (tmp_path / "bwd_wt103.h5", tmp_path / "itos_wt103.pkl")
    with pytest.raises(CheckpointError, match="an encoder alone"):
        load_fastai_weights(tmp_path / "fwd_wt103_enc.h5")


def test_a_folder_with_several_weights_files_is_refused(tmp_path):
    write_layout("v2", tmp_path)
    (tmp_path / "lm2.pth").write_bytes((tmp_path / "lm.pth").read_bytes())
    with pytest.raises(CheckpointError, match=r"several fastai weights \(lm.pth, lm2.pth\)"):
        find_fastai_files(tmp_path, "forward")


class _WritesFile:
    """Unpickling this would create ``marker``."""

    def __init__(self, marker: Path, how: str):
        self.marker, self.how = str(marker), how

    def __reduce__(self):
        if self.how == "open":
            return open, (self.marker, "w")
        return os.system, (f"touch '{self.marker}'",)


@pytest.mark.parametrize("how", ["open", "os.system"])
@pytest.mark.parametrize("serialization", ["zip", "legacy"])
def test_an_optimizer_entry_carrying_a_payload_is_refused_and_never_runs(how, serialization, tmp_path):
    model = source_model(len(v2_vocab()))
    marker = tmp_path / "pwned"
    opt = {"opt_func": functools.partial(torch.optim.Adam, betas=(0.9, 0.99)), "lr": [np.float64(1e-3)],
           "payload": _WritesFile(marker, how)}
    path = tmp_path / "lm.pth"
    torch.save({"model": model.state_dict(), "opt": opt}, path,
               _use_new_zipfile_serialization=serialization == "zip")
    write_pickle(tmp_path / "itos.pkl", v2_vocab())
    name = f"{open.__module__}.open" if how == "open" else f"{os.system.__module__}.system"
    with pytest.raises(CheckpointError, match=f"{path}: refusing to load: the file names {name}"):
        import_fastai_lm(path, tmp_path / "itos.pkl", tmp_path / "out")
    assert not marker.exists() and not (tmp_path / "out").exists()


def test_optimizer_entries_are_read_as_inert_stand_ins(tmp_path):
    """v1's functools.partial and numpy float64s are never built: each is an _Inert stand-in, and
    a pickle that calls the partial gets another one (an Adam is never made)."""
    write_layout("v1", tmp_path)
    obj, names = _read_torch_file(tmp_path / "lstm_fwd.pth")
    opt = obj["opt"]
    assert isinstance(opt["opt_func"], _Inert) and opt["opt_func"].global_name == "functools.partial"
    assert isinstance(opt["lr"][0], _Inert) and "torch.optim.adam.Adam" in names

    class CallsPartial:
        def __reduce__(self):
            return functools.partial(torch.optim.Adam, [torch.zeros(1)]), ()

    path = tmp_path / "called.pth"
    torch.save({"model": source_model(len(v2_vocab())).state_dict(), "opt": CallsPartial()}, path)
    obj, _ = _read_torch_file(path)
    assert isinstance(obj["opt"], _Inert)
    assert load_fastai_weights(path)[1] == "fastai v2 + optimizer"


def _as_tensor(i: int) -> torch.Tensor:
    return torch.full((3,), i)


def test_a_learn_export_file_says_what_to_pass_instead(tmp_path):
    """fastai v2's learn.export(): a whole Learner pickled with cloudpickle."""
    model = source_model(len(v2_vocab()))
    dls = Datasets(list(range(4)), tfms=[[_as_tensor], [_as_tensor]]).dataloaders(bs=2)
    Learner(dls, model, loss_func=torch.nn.CrossEntropyLoss(), path=tmp_path).export("export.pkl")
    with pytest.raises(CheckpointError, match=r"export.pkl: a fastai Learner pickled whole \(fastai.learner.Learner, "
                                              r"what learn.export\(\) writes\).*learn.save\(name\)"):
        load_fastai_weights(tmp_path / "export.pkl")
    with pytest.raises(CheckpointError, match=r"export.pkl: a torch archive, not a pickled list of tokens"):
        load_itos_pickle(tmp_path / "export.pkl")
    with pytest.raises(CheckpointError, match=r"no weights \(.pth / .h5\) and vocabulary \(itos .pkl\); "
                                              r"its export.pkl \(learn.export\(\)\) is not loaded"):
        find_fastai_files(tmp_path, "forward")


def test_a_whole_pickled_model_is_refused(tmp_path):
    torch.save(source_model(len(v2_vocab())), tmp_path / "model.pth")
    with pytest.raises(CheckpointError, match="a whole pickled model .*not a state dict"):
        load_fastai_weights(tmp_path / "model.pth")


def test_a_torchscript_archive_is_refused_before_torch_hands_it_to_jit_load(tmp_path):
    torch.jit.save(torch.jit.script(torch.nn.Linear(2, 2)), tmp_path / "lm.pth")
    with pytest.raises(CheckpointError, match="a TorchScript archive"):
        load_fastai_weights(tmp_path / "lm.pth")


@pytest.mark.parametrize("size", [0, 20])
def test_an_empty_or_truncated_vocabulary_names_the_file(size, tmp_path):
    full = pickle.dumps(v2_vocab())
    path = tmp_path / "itos.pkl"
    path.write_bytes(full[:size])
    with pytest.raises(CheckpointError, match=f"{path}: " + ("the vocabulary file is empty" if size == 0 else
                                                               "truncated or not a pickle")):
        load_itos_pickle(path)


@pytest.mark.parametrize("serialization", ["zip", "legacy"])
def test_empty_or_truncated_weights_name_the_file(serialization, tmp_path):
    path = tmp_path / "lm.pth"
    torch.save(source_model(len(v2_vocab())).state_dict(), path,
               _use_new_zipfile_serialization=serialization == "zip")
    data = path.read_bytes()
    path.write_bytes(data[:len(data) // 2])
    with pytest.raises(CheckpointError, match=f"{path}: cannot be read as torch weights"):
        load_fastai_weights(path)
    path.write_bytes(b"")
    with pytest.raises(CheckpointError, match=f"{path}: the file is empty"):
        load_fastai_weights(path)


def test_vocab_accepts_fastai_padding_and_nothing_else_repeated():
    itos = v2_vocab()
    assert itos.count("xxfake") >= 1
    vocab = Vocab(itos)
    assert "xxfake" not in vocab.stoi and vocab.numericalize(["movie", "xxfake"]) == [itos.index("movie"), 0]
    assert Vocab(SPECIAL_V2 + WORDS[:7] + ["xxfake"] * 8).stoi["the"] == 9  # 16 already: 8 padding
    with pytest.raises(ValueError, match=r"duplicate tokens: \['xxfake'\]"):
        Vocab(SPECIAL_V2 + WORDS[:7] + ["xxfake"] * 9)
    with pytest.raises(ValueError, match=r"duplicate tokens: \['the'\]"):
        Vocab(SPECIAL_V2 + ["the", "the"] + ["xxfake"] * 5)
