"""Matmul precision, for every backbone: which one a run gets ("auto" resolved on its device) and
the autocast context that applies it."""
from __future__ import annotations

import warnings

import torch

PRECISIONS = ("auto", "fp32", "bf16")


def cpu_has_bf16_units() -> bool:
    """Whether this CPU has AMX or AVX-512-BF16, the units that make bf16 matmuls fast (without them,
    e.g. AVX2 only, bf16 matmuls are far slower than fp32)."""
    probes = [getattr(torch.cpu, name, None) for name in ("_is_amx_tile_supported", "_is_avx512_bf16_supported")]
    return any(probe() for probe in probes if probe is not None)


def resolve_precision(precision: str, device: torch.device) -> str:
    """"fp32" or "bf16" for a config value of "auto", "fp32" or "bf16" on ``device``.

    "auto" is bf16 on a CUDA GPU with bf16 and fp32 on the CPU: the CPU bf16 path is tested for
    correctness, but its speed could not be measured on a CPU with AMX yet, so it is opt-in
    (``--model.precision=bf16``; ``benchmarks/speed.py --precision bf16`` measures it)."""
    if precision not in PRECISIONS:
        raise ValueError(f"model.precision must be one of {PRECISIONS}, got {precision!r}")
    if precision == "auto":
        return "bf16" if device.type == "cuda" and torch.cuda.is_bf16_supported() else "fp32"
    if precision == "bf16" and device.type == "cpu" and not cpu_has_bf16_units():
        warnings.warn("model.precision=bf16 on a CPU without AMX / AVX-512-BF16: bf16 matmuls are far "
                      "slower than fp32 here", RuntimeWarning, stacklevel=2)
    return precision


def autocast(precision: str, device: torch.device):
    """The autocast context for a resolved precision (disabled for fp32)."""
    return torch.autocast(device.type, dtype=torch.bfloat16, enabled=precision == "bf16")
