"""fastai's language-model files, read without running anything they hold.

Weights (``.pth``, or ``.h5`` for fastai 0.7) come in four layouts, all brought to the names of
fastai v2's ``AWD_LSTM`` + ``LinearDecoder``, which ulmtl builds:

* fastai v2 ``learn.save``: ``0.encoder.weight``, ``0.encoder_dp.emb.weight``,
  ``0.rnns.N.weight_hh_l0_raw``, ``0.rnns.N.module.{weight_ih_l0,bias_ih_l0,bias_hh_l0}``,
  ``1.decoder.{weight,bias}``;
* fastai v1 (fastai's WT103 archives): the same, plus ``0.rnns.N.module.weight_hh_l0``, v1's
  dropped-out copy of the raw weight, removed as fastai's ``clean_raw_keys`` does;
* fastai 0.7 (the paper's ``fwd_wt103.h5`` / ``bwd_wt103.h5``): ``0.encoder_with_dropout.embed.weight``,
  ``0.rnns.N.module.weight_hh_l0_raw``, no decoder bias (zeros here), hidden size 1150;
* any of these saved with the optimizer, ``{'model': ..., 'opt': ...}``: the ``opt`` entry is
  discarded.

Vocabularies (``itos*.pkl``) are pickled lists of strings; fastai 0.7's special tokens are renamed
to today's (:func:`modern_itos`), fastai v2's ``xxfake`` padding is accepted by :class:`Vocab`.
"""
from __future__ import annotations

import collections
import io
import pickle
import re
import tarfile
import urllib.request
import zipfile
from pathlib import Path

import torch

from ulmtl.checkpoint import CheckpointError
from ulmtl.config import ModelConfig
from ulmtl.text import BOS, FLD, PAD, TK_REP, TK_UP, TK_WREP, UNK

FASTAI_WT103_URLS = {
    "forward": "https://s3.amazonaws.com/fast-ai-modelzoo/wt103-fwd.tgz",
    "backward": "https://s3.amazonaws.com/fast-ai-modelzoo/wt103-bwd.tgz",
}
WEIGHT_SUFFIXES = (".pth", ".h5")
# fastai 0.7's special tokens (courses/dl2/imdb_scripts: tok2id.py, create_toks.py; fastai/text.py)
# and today's names for them.
FASTAI07_TOKENS = {"_unk_": UNK, "_pad_": PAD, "xbos": BOS, "xfld": FLD, "t_up": TK_UP,
                   "tk_rep": TK_REP, "tk_wrep": TK_WREP}
EXPORT_ADVICE = ("pass the language model's weights saved with learn.save(name) (models/<name>.pth) and "
                 "its vocabulary as a pickled list (pickle.dump(list(learn.dls.vocab), open('itos.pkl', 'wb')))")
HDF5_MAGIC = b"\x89HDF\r\n\x1a\n"


# --------------------------------------------------------------------------- safe reading

class _Inert:
    """Stands for every class or function a weights file names outside ``_REAL``: building it
    keeps no argument and calls nothing (``global_name`` says what it stands for)."""

    global_name = ""

    def __new__(cls, *args, **kwargs):
        return object.__new__(cls)

    def __init__(self, *args, **kwargs):
        pass

    def __call__(self, *args, **kwargs):  # a pickle may call what an inert call returned
        return type(self)()

    def __setstate__(self, state):
        pass

    def __setitem__(self, key, value):
        pass

    def append(self, item):
        pass

    def extend(self, items):
        pass


# The only real objects a weights file gets: the tensor-rebuild functions torch.load(weights_only=True)
# allows for plain tensors and parameters, and OrderedDict. (torch's own unpickler wrapper turns
# storage names such as torch.FloatStorage into its inert StorageType before asking.)
_REAL = {
    ("collections", "OrderedDict"): collections.OrderedDict,
    ("torch._utils", "_rebuild_tensor"): torch._utils._rebuild_tensor,
    ("torch._utils", "_rebuild_tensor_v2"): torch._utils._rebuild_tensor_v2,
    ("torch._utils", "_rebuild_parameter"): torch._utils._rebuild_parameter,
}
# The names fastai's optimizer entries hold: v1's OptimWrapper state, functools.partial(torch.optim.Adam,
# ...) and numpy float64 hyper-parameters; v2's fastcore L of hyper-parameter dicts with numpy scalars
# (whose bytes protocol 2 writes with _codecs.encode). A file naming anything else is refused.
_OPTIMIZER_NAMES = {"functools.partial", "_codecs.encode", "numpy.dtype", "numpy.ndarray",
                    "numpy.core.multiarray.scalar", "numpy._core.multiarray.scalar",
                    "numpy.core.multiarray._reconstruct", "numpy._core.multiarray._reconstruct"}
_OPTIMIZER_PACKAGES = ("fastai.", "fastcore.", "torch.optim.")


class _RestrictedPickle:
    """The ``pickle_module`` given to ``torch.load``, so that torch still reads the storages of
    both its formats (zip, and the legacy one of fastai v1's and 0.7's files) while this decides
    what every name in the pickle means. Nothing the file names is imported or called:

    * the tensor-rebuild functions and ``OrderedDict`` (``_REAL``) are the real ones; they build
      tensors and dicts only, and their arguments are tensors, numbers, strings or ``_Inert``;
    * every other name becomes a fresh subclass of :class:`_Inert` and is recorded in ``names``.
      A ``functools.partial``, an optimizer class or ``os.system`` is thus never called: a
      ``__reduce__`` payload builds an inert object instead of running.

    :func:`load_fastai_weights` then decides from ``names`` and the structure: a Learner
    (``learn.export()``) or a whole pickled model is refused saying what to pass instead; a file
    naming anything but what fastai's optimizer entries hold is refused; the ``opt`` entry, read
    as inert junk, is discarded.
    """

    def __init__(self):
        self.__name__ = "ulmtl.fastai_files._RestrictedPickle"  # torch.load reads it (dill check)
        self.names: set[str] = set()
        names = self.names

        class Unpickler(pickle.Unpickler):
            def find_class(self, module, name):
                if (module, name) in _REAL:
                    return _REAL[(module, name)]
                names.add(f"{module}.{name}")
                return type(f"Inert[{module}.{name}]", (_Inert,), {"global_name": f"{module}.{name}"})

        self.Unpickler = Unpickler

    def load(self, file, **kwargs):
        return self.Unpickler(file, **kwargs).load()


def _is_torchscript(path: Path) -> bool:
    """Whether torch.load would pass this zip to torch.jit.load (it looks for constants.pkl, as here)."""
    try:
        with zipfile.ZipFile(path) as archive:
            return any(name.rsplit("/", 1)[-1] == "constants.pkl" for name in archive.namelist())
    except zipfile.BadZipFile:
        return False  # torch.load cannot open it either, and says so


def _read_torch_file(path: Path) -> tuple[object, set[str]]:
    """The object a torch file holds, read through :class:`_RestrictedPickle`, and the names of
    the classes and functions it holds (each read as :class:`_Inert`)."""
    if not path.is_file():
        raise CheckpointError(f"{path}: no such file")
    with open(path, "rb") as handle:
        head = handle.read(8)
    if not head:
        raise CheckpointError(f"{path}: the file is empty (0 bytes); download or save it again")
    if head == HDF5_MAGIC:
        raise CheckpointError(f"{path}: an HDF5 file (e.g. Keras), not fastai's weights; fastai's .h5 files are "
                              f"torch.save'd state dicts")
    if head.startswith(b"PK\x03\x04") and _is_torchscript(path):
        raise CheckpointError(f"{path}: a TorchScript archive (torch.jit.save), not a state dict: torch.load would "
                              f"hand it to torch.jit.load, which runs its code; save model.state_dict() instead")
    restricted = _RestrictedPickle()
    try:
        obj = torch.load(str(path), map_location="cpu", pickle_module=restricted, weights_only=False)
        failure = ""
    except Exception as err:
        failure = str(err).splitlines()[0] if str(err) else type(err).__name__
    learners = sorted(n for n in restricted.names if n.startswith("fastai.") and n.endswith("Learner"))
    if learners:  # v2's export pickles the Learner itself, v1's holds its class under 'cls'
        raise CheckpointError(f"{path}: a fastai Learner pickled whole ({learners[0]}, what learn.export() "
                              f"writes): loading it would run code from the file, so ulmtl does not; {EXPORT_ADVICE}")
    if failure:
        raise CheckpointError(f"{path}: cannot be read as torch weights ({failure}); the file may be truncated "
                              f"or not written by torch.save")
    return obj, restricted.names


# --------------------------------------------------------------------------- layouts

def _without_module(key: str) -> str:
    """``key`` without its last ``module`` part (fastai's ``_rm_module``)."""
    parts = key.split(".")
    if "module" in parts:
        del parts[len(parts) - 1 - parts[::-1].index("module")]
    return ".".join(parts)


_FASTAI07_RAW = re.compile(r"^0\.rnns\.\d+\.module\.weight_hh_l0_raw$")


def _modern_keys(state: dict) -> tuple[dict, str]:
    """fastai v2 names for a v2, v1 or 0.7 LM state dict, and which layout it was."""
    keys = set(state)
    layout = "fastai v2"
    out = {}
    for key, tensor in state.items():
        if ".module." in key and _without_module(key) + "_raw" in keys:
            layout = "fastai v1"  # v1's dropped-out copy of the raw weight (fastai's clean_raw_keys)
            continue
        if key == "0.encoder_with_dropout.embed.weight" or _FASTAI07_RAW.match(key):
            layout = "fastai 0.7"
            key = "0.encoder_dp.emb.weight" if key.startswith("0.encoder_") else _without_module(key)
        out[key] = tensor
    if "0.encoder.weight" in out and "1.decoder.bias" not in out:
        embedding = out["0.encoder.weight"]  # 0.7: a decoder without bias
        out["1.decoder.bias"] = torch.zeros(embedding.shape[0], dtype=embedding.dtype)
    return out, layout


def load_fastai_weights(path: str | Path) -> tuple[dict, str]:
    """A fastai AWD-LSTM LM state dict in today's names, and its layout ("fastai v2", "fastai v1",
    "fastai 0.7", plus " + optimizer" when saved with one). Nothing in the file is run."""
    path = Path(path)
    state, names = _read_torch_file(path)
    with_opt = ""
    if isinstance(state, dict) and "model" in state:  # fastai: "if 'model' in wgts: wgts = wgts['model']"
        state, with_opt = state["model"], " + optimizer"
    if isinstance(state, _Inert):
        raise CheckpointError(f"{path}: a whole pickled model ({state.global_name}), not a state dict: loading it "
                              f"would run code from the file; save model.state_dict() (fastai: learn.save) instead")
    unexpected = sorted(n for n in names if n not in _OPTIMIZER_NAMES and not n.startswith(_OPTIMIZER_PACKAGES))
    if unexpected:
        raise CheckpointError(f"{path}: refusing to load: the file names {', '.join(unexpected[:3])}, which "
                              f"fastai's weight files never hold (nothing from the file was run)")
    if not isinstance(state, dict):
        raise CheckpointError(f"{path}: holds a {type(state).__name__}, not a state dict")
    bad = [k for k, v in state.items() if not (isinstance(k, str) and type(v) in (torch.Tensor, torch.nn.Parameter))]
    if bad:
        raise CheckpointError(f"{path}: entry {bad[0]!r} of the state dict is not a tensor")
    state = {k: v.detach() for k, v in state.items()}  # plain tensors: no hooks from the file
    if "0.encoder.weight" not in state:
        if "encoder.weight" in state:
            raise CheckpointError(f"{path}: an encoder alone (learn.save_encoder, or 0.7's *_enc.h5); ulmtl needs "
                                  f"the whole language model, decoder included (learn.save, or fwd_wt103.h5)")
        raise CheckpointError(f"{path}: not a fastai AWD-LSTM language model state dict (no '0.encoder.weight'; "
                              f"keys start {sorted(state)[:3]})")
    state, layout = _modern_keys(state)
    return state, layout + with_opt


def infer_model_config(state: dict) -> ModelConfig:
    """Embedding size, hidden size and layers of an AWD-LSTM LM state dict (today's names)."""
    if "0.rnns.0.weight_hh_l0_raw" not in state:
        raise CheckpointError(f"not an AWD-LSTM state dict: no '0.rnns.0.weight_hh_l0_raw' "
                              f"(LSTM keys: {[k for k in state if k.startswith('0.rnns.')][:4]})")
    emb_size = state["0.encoder.weight"].shape[1]
    n_layers = len({k.split(".")[2] for k in state if k.startswith("0.rnns.")})
    hidden_size = state["0.rnns.0.weight_hh_l0_raw"].shape[1]
    return ModelConfig(emb_size=emb_size, hidden_size=hidden_size, n_layers=n_layers)


# --------------------------------------------------------------------------- vocabularies

class _ItosUnpickler(pickle.Unpickler):
    """An unpickler that builds no objects but lists and strings."""

    def find_class(self, module, name):
        raise pickle.UnpicklingError(f"refusing to load {module}.{name}: a vocabulary file may only "
                                     f"hold a list of strings (save one with pickle.dump(list(vocab), f))")


def load_itos_pickle(path: str | Path) -> list[str]:
    """fastai's ``itos_*.pkl``: a pickled list of strings, read without running any code."""
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"{path}: no such file")
    data = path.read_bytes()
    if not data:
        raise CheckpointError(f"{path}: the vocabulary file is empty (0 bytes); download or save it again")
    if data.startswith(b"PK\x03\x04"):
        raise CheckpointError(f"{path}: a torch archive, not a pickled list of tokens (learn.export()'s "
                              f"export.pkl is one); {EXPORT_ADVICE}")
    try:
        itos = _ItosUnpickler(io.BytesIO(data)).load()
    except pickle.UnpicklingError as err:
        if str(err).startswith("refusing"):
            raise CheckpointError(f"{path}: {err}") from None
        raise CheckpointError(f"{path}: truncated or not a pickle ({err}); download or save it again") from None
    except (EOFError, ValueError, TypeError, IndexError) as err:
        raise CheckpointError(f"{path}: truncated or not a pickle ({type(err).__name__}: {err}); download or "
                              f"save it again") from None
    if not isinstance(itos, list) or not all(isinstance(t, str) for t in itos):
        raise CheckpointError(f"{path}: expected a list of strings, got {type(itos).__name__}")
    return itos


def modern_itos(itos: list[str]) -> list[str]:
    """A fastai 0.7 vocabulary (``_unk_``, ``_pad_`` first) with today's special tokens
    (``xxunk``, ``xxpad``, ``xxbos``, ``xxfld``, ``xxup``, ``xxrep``, ``xxwrep``); others unchanged."""
    if itos[:2] != ["_unk_", "_pad_"]:
        return itos
    present = set(itos)
    clashes = [new for old, new in FASTAI07_TOKENS.items() if old in present and new in present]
    if clashes:
        raise CheckpointError(f"a fastai 0.7 vocabulary (_unk_, _pad_ first) that also holds today's special "
                              f"tokens {clashes}: cannot rename its own to them")
    return [FASTAI07_TOKENS.get(token, token) for token in itos]


# --------------------------------------------------------------------------- folders and downloads

def _direction_of(path: Path) -> str:
    words = set(re.split(r"[^a-z]+", path.stem.lower()))
    if words & {"fwd", "forward"}:
        return "forward"
    if words & {"bwd", "backward"}:
        return "backward"
    return ""


def find_fastai_files(folder: str | Path, direction: str = "forward") -> tuple[Path, Path]:
    """The weights (``.pth`` / ``.h5``) and vocabulary (``.pkl``) of a fastai LM in ``folder``.

    A folder with both directions (fastai 0.7's ``fwd_wt103.h5`` + ``bwd_wt103.h5``) gives the
    one of ``direction``; encoder-only files (``*_enc.h5``) and ``export.pkl`` are skipped, and a
    folder where the choice is still not unique is refused."""
    folder = Path(folder)
    files = sorted(p for p in folder.iterdir() if p.is_file())
    weights = [p for p in files if p.suffix.lower() in WEIGHT_SUFFIXES and not p.stem.endswith("_enc")]
    if len(weights) > 1:
        weights = [p for p in weights if _direction_of(p) == direction] or weights
    pickles = [p for p in files if p.suffix.lower() == ".pkl" and p.name != "export.pkl"]
    if len(pickles) > 1:
        pickles = [p for p in pickles if p.name.startswith("itos")] or pickles
    exported = (folder / "export.pkl").exists()
    if not weights or not pickles:
        missing = " and ".join(what for what, found in (("weights (.pth / .h5)", weights),
                                                        ("vocabulary (itos .pkl)", pickles)) if not found)
        advice = f"; its export.pkl (learn.export()) is not loaded: {EXPORT_ADVICE}" if exported else ""
        raise CheckpointError(f"{folder}: not a ulmtl checkpoint folder (no weights.safetensors), nor a folder "
                              f"with fastai's weights and vocabulary: no {missing}{advice}")
    for what, found in (("weights", weights), ("vocabularies", pickles)):
        if len(found) > 1:
            raise CheckpointError(f"{folder}: several fastai {what} ({', '.join(p.name for p in found)}); keep one "
                                  f"per folder (a '{{direction}}' placeholder in --pretrained picks a folder per "
                                  f"direction)")
    return weights[0], pickles[0]


def download_fastai_wt103(direction: str, dest: str | Path) -> tuple[Path, Path]:
    """Download and unpack fastai's WT103 LM (needs network): returns (weights .pth, itos .pkl)."""
    dest = Path(dest)
    dest.mkdir(parents=True, exist_ok=True)
    url = FASTAI_WT103_URLS[direction]
    archive = dest / Path(url).name
    if not archive.exists():
        print(f"ulmtl: downloading {url}")
        tmp = archive.with_suffix(".part")
        urllib.request.urlretrieve(url, tmp)
        tmp.rename(archive)
    with tarfile.open(archive) as tar:
        members = [m for m in tar.getmembers() if m.isfile() and m.name.endswith((".pth", ".h5", ".pkl"))]
        for member in members:
            member.name = Path(member.name).name  # no paths outside dest
            tar.extract(member, dest, filter="data")
    return find_fastai_files(dest, direction)
