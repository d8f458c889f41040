"""The networks ulmtl trains (the AWD-LSTM of ``ulmtl.backbones.awd_lstm``, the encoders of
``ulmtl.backbones.transformer``) and which one a run uses."""
from __future__ import annotations

from pathlib import Path

from ulmtl.backbones.transformer import is_encoder_folder

BACKBONES = ("awd_lstm", "transformer")


def resolve_backbone(backbone: str, pretrained: str, smoke: bool = False) -> str:
    """The backbone of a run. ``"auto"``: the transformer when ``pretrained`` is a Hugging Face
    encoder folder or hub id (``owner/name``), the AWD-LSTM when it is anything else (a ulmtl
    AWD-LSTM checkpoint, fastai's files); without ``pretrained``, the bundled transformer encoder,
    except for ``smoke`` runs, which check the pipeline with a tiny AWD-LSTM trained on the spot."""
    if backbone != "auto":
        return backbone
    if pretrained:
        path = Path(pretrained.replace("{direction}", "forward"))
        if is_encoder_folder(path) or (not path.exists() and pretrained.count("/") == 1
                                       and not pretrained.startswith((".", "/", "~"))):
            return "transformer"
        return "awd_lstm"
    return "awd_lstm" if smoke else "transformer"
