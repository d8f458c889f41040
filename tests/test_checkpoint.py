"""Checkpoint folders: safetensors + JSON round trip, pickle refusal, atomic saves."""
from __future__ import annotations

import json
import os
import pickle
from collections import Counter

import pytest
import torch

import ulmtl.checkpoint as checkpoint_module
from ulmtl.backbones.awd_lstm import read_checkpoint
from ulmtl.checkpoint import (
    CONFIG_FILE, SAVE_MARKER, VOCAB_FILE, WEIGHTS_FILE, CheckpointError, CheckpointRecord, load_checkpoint,
    load_tensors, replace_folder, save_checkpoint,
)
from ulmtl.config import ClassifierConfig, ModelConfig, PretrainConfig, TokenizerConfig, TransformerConfig, to_dict
from ulmtl.text import Vocab


@pytest.fixture
def vocab():
    """The tokens of a small vocabulary, in id order."""
    return Vocab.build(Counter({"movie": 5, "good": 4, "bad": 3})).itos


def _tied_state_dict():
    torch.manual_seed(0)
    emb = torch.nn.Parameter(torch.randn(16, 4))
    return {
        "encoder.weight": emb,
        "decoder.weight": emb,               # tied, as in the AWD-LSTM language model
        "encoder_dp.emb.weight": emb,        # a third alias
        "rnn.weight_hh": torch.randn(4, 4),
        "rnn.weight_hh_t": None,             # filled below: a transposed *view*, not an alias
        "decoder.bias": torch.zeros(16),
        "steps": torch.tensor([3], dtype=torch.long),
    }


def _state():
    sd = _tied_state_dict()
    sd["rnn.weight_hh_t"] = sd["rnn.weight_hh"].t()
    return sd


def test_round_trip_with_tied_tensors(tmp_path, vocab):
    sd = _state()
    config = {"kind": "lm", "model": {"emb_size": 4}, "direction": "forward"}
    folder = save_checkpoint(tmp_path / "lm", sd, vocab, config)
    assert sorted(p.name for p in folder.iterdir()) == sorted([WEIGHTS_FILE, VOCAB_FILE, CONFIG_FILE])
    ckpt = load_checkpoint(folder)
    assert set(ckpt.state_dict) == set(sd)
    for key, tensor in sd.items():
        loaded = ckpt.state_dict[key]
        assert loaded.dtype == tensor.dtype and loaded.shape == tensor.shape
        assert torch.equal(loaded, tensor.detach()), key
    # Aliases come back as the very same tensor object.
    assert ckpt.state_dict["decoder.weight"] is ckpt.state_dict["encoder.weight"]
    assert ckpt.state_dict["encoder_dp.emb.weight"] is ckpt.state_dict["encoder.weight"]
    # The tied tensor is stored once.
    with open(folder / WEIGHTS_FILE, "rb") as handle:
        header = json.loads(handle.read(int.from_bytes(handle.read(8), "little")))
    assert "encoder.weight" in header and "decoder.weight" not in header
    assert ckpt.tokens == vocab
    assert ckpt.config == config and ckpt.kind == "lm"


def test_transposed_view_is_not_taken_for_an_alias(tmp_path, vocab):
    w = torch.arange(9.0).reshape(3, 3)
    sd = {"w": w, "w_t": w.t(), "e_float": torch.zeros(0), "e_long": torch.zeros(0, dtype=torch.long)}
    ckpt = load_checkpoint(save_checkpoint(tmp_path / "c", sd, vocab, {}))
    assert torch.equal(ckpt.state_dict["w_t"], w.t())
    assert ckpt.state_dict["w_t"] is not ckpt.state_dict["w"]
    assert ckpt.state_dict["e_long"].dtype == torch.long


def test_round_trip_into_a_module_with_tied_weights(tmp_path, vocab):
    def make():
        m = torch.nn.Sequential(torch.nn.Embedding(16, 4), torch.nn.Linear(4, 16))
        m[1].weight = m[0].weight
        return m
    src = make()
    save_checkpoint(tmp_path / "m", src.state_dict(), vocab, {"kind": "lm"})
    dst = make()
    dst.load_state_dict(load_checkpoint(tmp_path / "m").state_dict)
    assert dst[1].weight is dst[0].weight
    for (k, a), (_, b) in zip(src.state_dict().items(), dst.state_dict().items()):
        assert torch.equal(a, b), k


def test_overwrite_replaces_previous_checkpoint(tmp_path, vocab):
    save_checkpoint(tmp_path / "c", {"a": torch.ones(2)}, vocab, {"v": 1})
    save_checkpoint(tmp_path / "c", {"a": torch.zeros(2)}, vocab, {"v": 2})
    ckpt = load_checkpoint(tmp_path / "c")
    assert ckpt.config == {"v": 2} and torch.equal(ckpt.state_dict["a"], torch.zeros(2))
    assert sorted(p.name for p in tmp_path.iterdir()) == ["c"], "no .partial or .old folders left"


class _Payload:
    """Unpickling this runs a shell command that creates a marker file."""

    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f"touch '{self.marker}'",))


@pytest.mark.parametrize("name", ["extra.pkl", "model.pth", "pytorch_model.bin", "opt.PT", "x.ckpt"])
def test_pickle_payload_is_refused_and_never_runs(tmp_path, vocab, name):
    folder = save_checkpoint(tmp_path / "c", {"a": torch.ones(2)}, vocab, {})
    marker = tmp_path / "pwned"
    (folder / name).write_bytes(pickle.dumps(_Payload(marker)))
    with pytest.raises(CheckpointError, match="pickle"):
        load_checkpoint(folder)
    assert not marker.exists(), "the pickle payload ran"
    # Sanity check of the test itself: the payload does run when unpickled.
    pickle.loads((folder / name).read_bytes())
    assert marker.exists()


def test_pickle_payload_under_an_innocent_name_is_refused(tmp_path, vocab):
    folder = save_checkpoint(tmp_path / "c", {"a": torch.ones(2)}, vocab, {})
    marker = tmp_path / "pwned"
    (folder / "notes.dat").write_bytes(pickle.dumps(_Payload(marker), protocol=4))
    torch.save({"a": 1}, folder / "archive.txt")  # zip-based torch archive, renamed
    with pytest.raises(CheckpointError):
        load_checkpoint(folder)
    (folder / "notes.dat").unlink()
    with pytest.raises(CheckpointError, match="archive.txt"):
        load_checkpoint(folder)
    assert not marker.exists()


def test_weights_file_that_is_a_pickle_is_refused(tmp_path, vocab):
    folder = save_checkpoint(tmp_path / "c", {"a": torch.ones(2)}, vocab, {})
    marker = tmp_path / "pwned"
    (folder / WEIGHTS_FILE).write_bytes(pickle.dumps(_Payload(marker)))
    with pytest.raises(CheckpointError, match="safetensors"):
        load_checkpoint(folder)
    assert not marker.exists()


def test_missing_folder_and_files(tmp_path, vocab):
    with pytest.raises(CheckpointError, match="no such checkpoint folder"):
        load_checkpoint(tmp_path / "nope")
    for name in (WEIGHTS_FILE, VOCAB_FILE, CONFIG_FILE):
        folder = save_checkpoint(tmp_path / name, {"a": torch.ones(2)}, vocab, {})
        (folder / name).unlink()
        with pytest.raises(CheckpointError, match=name):
            load_checkpoint(folder)


def test_corrupt_files(tmp_path, vocab):
    folder = save_checkpoint(tmp_path / "c", {"a": torch.ones(2)}, vocab, {})
    (folder / CONFIG_FILE).write_text("{broken")
    with pytest.raises(CheckpointError, match=CONFIG_FILE):
        load_checkpoint(folder)
    folder = save_checkpoint(tmp_path / "d", {"a": torch.ones(2)}, vocab, {})
    (folder / VOCAB_FILE).write_text('{"not": "a list"}')
    with pytest.raises(CheckpointError, match=VOCAB_FILE):
        load_checkpoint(folder)


def test_vocabulary_round_trip_in_utf8(tmp_path):
    tokens = Vocab.build(Counter({"café": 4, "naïve": 3, "日本": 2, "plain": 9})).itos
    folder = save_checkpoint(tmp_path / "c", {"a": torch.ones(2)}, tokens, {})
    # Written as UTF-8 whatever the locale.
    assert json.loads((folder / VOCAB_FILE).read_bytes().decode("utf-8")) == tokens
    assert load_checkpoint(folder).tokens == tokens


@pytest.mark.parametrize("content", ['{"a": 1}', '["a", 2]', '"xxunk"', "[[\"a\"]]", "[not json"])
def test_vocabulary_that_is_not_a_json_list_of_strings_is_refused(tmp_path, vocab, content):
    folder = save_checkpoint(tmp_path / "c", {"a": torch.ones(2)}, vocab, {})
    (folder / VOCAB_FILE).write_text(content)
    with pytest.raises(CheckpointError, match=f"{VOCAB_FILE}: (a vocabulary must be a JSON list of strings|"
                                              f"invalid JSON)"):
        load_checkpoint(folder)


def test_interrupted_save_leaves_previous_checkpoint_intact(tmp_path, vocab, monkeypatch):
    folder = tmp_path / "c"
    save_checkpoint(folder, {"a": torch.ones(3)}, vocab, {"version": 1})

    def crash_mid_write(tensors, filename, metadata=None):
        with open(filename, "wb") as handle:
            handle.write(b"\x10\x00\x00\x00\x00\x00\x00\x00{\"a\": ")  # half a file
        raise KeyboardInterrupt("killed while writing")

    monkeypatch.setattr(checkpoint_module, "save_file", crash_mid_write)
    with pytest.raises(KeyboardInterrupt):
        save_checkpoint(folder, {"a": torch.zeros(3)}, vocab, {"version": 2})
    ckpt = load_checkpoint(folder)
    assert ckpt.config == {"version": 1}
    assert torch.equal(ckpt.state_dict["a"], torch.ones(3))

    # The next successful save replaces it (and clears the leftover partial folder).
    monkeypatch.undo()
    save_checkpoint(folder, {"a": torch.zeros(3)}, vocab, {"version": 3})
    assert load_checkpoint(folder).config == {"version": 3}
    assert sorted(p.name for p in tmp_path.iterdir()) == ["c"]


def dead_pid() -> int:
    """The process id of a process that has ended."""
    import subprocess
    import sys
    ended = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True,
                           text=True, check=True)
    return int(ended.stdout)


def test_a_save_removes_what_killed_saves_left_and_spares_a_live_process_and_the_users_folders(tmp_path, vocab):
    dead = dead_pid()
    save_checkpoint(tmp_path / "c", {"a": torch.ones(2)}, vocab, {"v": 1})
    for leftover in (f"c.partial-{dead}", f"c.old-{dead}", f"c.partial-{os.getppid()}"):
        (tmp_path / leftover).mkdir()
        (tmp_path / leftover / "model.safetensors").write_bytes(b"half")
        (tmp_path / leftover / SAVE_MARKER).touch()
    (tmp_path / "c.old-2020").mkdir()  # a user's own copy, named like a leftover: not ulmtl's to remove
    (tmp_path / "c.old-2020" / "notes.txt").write_text("mine")
    (tmp_path / "ab.partial-1").mkdir()  # a glob-like name must not match another folder's leftovers
    (tmp_path / "ab.partial-1" / SAVE_MARKER).touch()
    save_checkpoint(tmp_path / "c", {"a": torch.zeros(2)}, vocab, {"v": 2})
    save_checkpoint(tmp_path / "a[b]", {"a": torch.zeros(2)}, vocab, {"v": 2})
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a[b]", "ab.partial-1", "c", "c.old-2020",
                                                          f"c.partial-{os.getppid()}"]
    assert load_checkpoint(tmp_path / "c").config == {"v": 2}
    assert not (tmp_path / "c" / SAVE_MARKER).exists()


def test_a_save_killed_between_its_renames_loses_nothing(tmp_path, vocab):
    folder = save_checkpoint(tmp_path / "c", {"a": torch.ones(2)}, vocab, {"v": 1})
    (folder / "train_log.jsonl").write_text('{"epoch": 1}\n')  # kept in the folder, carried by each save
    (folder / SAVE_MARKER).touch()  # what replace_folder does before moving the folder aside
    folder.rename(tmp_path / f"c.old-{dead_pid()}")  # ... and then the process was killed
    assert load_checkpoint(folder).config == {"v": 1}  # a load puts it back
    folder.rename(tmp_path / f"c.old-{dead_pid()}")
    save_checkpoint(folder, {"a": torch.zeros(2)}, vocab, {"v": 2})  # so does a save, before writing its own
    save_checkpoint(folder, {"a": torch.zeros(2)}, vocab, {"v": 3})
    assert sorted(p.name for p in tmp_path.iterdir()) == ["c"]
    assert sorted(p.name for p in folder.iterdir()) == sorted([CONFIG_FILE, VOCAB_FILE, WEIGHTS_FILE,
                                                                "train_log.jsonl"])
    assert load_checkpoint(folder).config == {"v": 3}


def test_replacing_a_folder_leaves_no_marker_in_the_new_one(tmp_path):
    (tmp_path / "new").mkdir()
    (tmp_path / "new" / SAVE_MARKER).touch()
    (tmp_path / "out").mkdir()
    replace_folder(tmp_path / "new", tmp_path / "out")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out"]
    assert list((tmp_path / "out").iterdir()) == []


def test_interrupted_save_between_files(tmp_path, vocab, monkeypatch):
    folder = tmp_path / "c"
    save_checkpoint(folder, {"a": torch.ones(3)}, vocab, {"version": 1})

    def fail(path, tokens):
        raise OSError("disk full")

    monkeypatch.setattr(checkpoint_module, "_write_vocab", fail)
    with pytest.raises(OSError):
        save_checkpoint(folder, {"a": torch.zeros(3)}, vocab, {"version": 2})
    assert load_checkpoint(folder).config == {"version": 1}


def test_extra_tensors_are_saved_with_the_checkpoint_and_load_back(tmp_path, vocab):
    tensors = {"exp_avg": torch.randn(3, 2), "step": torch.tensor(7)}
    folder = save_checkpoint(tmp_path / "c", {"a": torch.ones(2)}, vocab, {},
                             extra_tensors={"opt.safetensors": (tensors, {"epoch": 2, "lrs": [0.1, 0.2]})})
    loaded, meta = load_tensors(folder / "opt.safetensors")
    assert meta == {"epoch": 2, "lrs": [0.1, 0.2]}
    assert all(torch.equal(loaded[k], v) for k, v in tensors.items())
    assert [p.name for p in tmp_path.iterdir()] == ["c"]


def test_config_that_is_not_an_object_and_vocab_without_padding_are_refused(tmp_path, vocab):
    folder = save_checkpoint(tmp_path / "c", {"a": torch.ones(2)}, vocab, {})
    (folder / CONFIG_FILE).write_text("[1, 2]")
    with pytest.raises(CheckpointError, match=f"{CONFIG_FILE}: expected a JSON object, got list"):
        load_checkpoint(folder)
    folder = save_checkpoint(tmp_path / "d", {"a": torch.ones(2)}, ["xxunk", "movie"], {})
    assert load_checkpoint(folder).tokens == ["xxunk", "movie"]  # the folder itself knows no special tokens
    with pytest.raises(CheckpointError, match=f"{VOCAB_FILE}: the vocabulary has no 'xxpad' token"):
        read_checkpoint(folder)  # the AWD-LSTM's vocabulary does


def test_record_writes_the_keys_of_earlier_folders(tmp_path, vocab):
    record = CheckpointRecord(kind="lm", direction="backward", model=ModelConfig(emb_size=8), stage="pretrain",
                              pretrain=PretrainConfig(), tokenizer=TokenizerConfig(), metrics={"valid_loss": 1.5})
    config = load_checkpoint(save_checkpoint(tmp_path / "lm", {"a": torch.ones(2)}, vocab, record)).config
    # As the stages wrote it by hand before the record: no "backbone" key for the AWD-LSTM, no empty keys.
    assert config == {"kind": "lm", "direction": "backward", "model": to_dict(ModelConfig(emb_size=8)),
                      "stage": "pretrain", "pretrain": to_dict(PretrainConfig()),
                      "tokenizer": to_dict(TokenizerConfig()), "metrics": {"valid_loss": 1.5}}
    classifier = CheckpointRecord(kind="classifier", backbone="transformer", transformer=TransformerConfig(),
                                  classifier=ClassifierConfig(), classes=["a", "b"], history=[], run_id="r")
    assert classifier.to_json() == {"kind": "classifier", "backbone": "transformer", "direction": "forward",
                                    "transformer": to_dict(TransformerConfig()),
                                    "classifier": to_dict(ClassifierConfig()), "classes": ["a", "b"],
                                    "history": [], "run_id": "r"}


@pytest.mark.parametrize("fields, message", [
    (dict(kind="model", model=ModelConfig(), stage="pretrain"), "kind must be one of"),
    (dict(kind="lm", direction="sideways", model=ModelConfig(), stage="pretrain"), "direction must be one of"),
    (dict(kind="lm", stage="pretrain"), "architecture section"),
    (dict(kind="lm", backbone="transformer", model=ModelConfig(), stage="finetune"), "architecture section"),
    (dict(kind="lm", model=ModelConfig()), "its stage"),
    (dict(kind="classifier", model=ModelConfig(), classes=["a", "b"], classifier=ClassifierConfig()), "run_id"),
])
def test_record_refuses_what_no_stage_writes(fields, message):
    with pytest.raises(ValueError, match=message):
        CheckpointRecord(**fields)
