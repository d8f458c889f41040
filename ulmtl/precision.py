"""Matmul precision, for every backbone: which one a run gets ("auto" resolved on its device) and
the autocast context that applies it."""
from __future__ import annotations

import functools
import time
import warnings

import torch

PRECISIONS = ("auto", "fp32", "bf16")


def cpu_has_bf16_units() -> bool:
    """Whether this CPU has AMX or AVX-512-BF16, the units that make bf16 matmuls fast (without them,
    e.g. AVX2 only, bf16 matmuls are far slower than fp32)."""
    probes = [getattr(torch.cpu, name, None) for name in ("_is_amx_tile_supported", "_is_avx512_bf16_supported")]
    return any(probe() for probe in probes if probe is not None)


# "auto" picks bf16 on a CPU only when a bf16 matmul of an encoder's shape runs at least this many
# times faster than fp32 there (measured once per process by :func:`cpu_bf16_matmul_speedup`).
BF16_MIN_SPEEDUP = 1.3


@functools.lru_cache(maxsize=None)
def cpu_bf16_matmul_speedup() -> float:
    """How many times faster a (512 x 384) @ (384 x 1536) matmul (a small encoder's feed-forward on
    a batch of tokens) runs in bf16 than in fp32 on this CPU: the best of 5 timings of 4 products each."""
    def best(a: torch.Tensor, b: torch.Tensor) -> float:
        a @ b
        times = []
        for _ in range(5):
            started = time.perf_counter()
            for _ in range(4):
                a @ b
            times.append(time.perf_counter() - started)
        return min(times)
    generator = torch.Generator().manual_seed(0)
    a, b = torch.randn(512, 384, generator=generator), torch.randn(384, 1536, generator=generator)
    return best(a, b) / best(a.bfloat16(), b.bfloat16())


def resolve_precision(precision: str, device: torch.device, bf16_pays_on_cpu: bool = False) -> str:
    """"fp32" or "bf16" for a config value of "auto", "fp32" or "bf16" on ``device``.

    "auto" is bf16 on a CUDA GPU with bf16. On a CPU it is bf16 only for a model whose bf16 path pays
    there (``bf16_pays_on_cpu``: the transformer's matmuls; not the AWD-LSTM, whose CPU bf16 LSTM was
    measured slower than fp32), on a CPU with AMX or AVX-512-BF16 whose bf16 matmuls this process
    measured at least ``BF16_MIN_SPEEDUP`` times faster than fp32; otherwise fp32, so "auto" never
    picks a path slower than fp32."""
    if precision not in PRECISIONS:
        raise ValueError(f"model.precision must be one of {PRECISIONS}, got {precision!r}")
    if precision == "auto":
        if device.type == "cuda":
            return "bf16" if torch.cuda.is_bf16_supported() else "fp32"
        fast = bf16_pays_on_cpu and cpu_has_bf16_units() and cpu_bf16_matmul_speedup() >= BF16_MIN_SPEEDUP
        return "bf16" if fast else "fp32"
    if precision == "bf16" and device.type == "cpu" and not cpu_has_bf16_units():
        warnings.warn("model.precision=bf16 on a CPU without AMX / AVX-512-BF16: bf16 matmuls are far "
                      "slower than fp32 here", RuntimeWarning, stacklevel=2)
    return precision


def autocast(precision: str, device: torch.device):
    """The autocast context for a resolved precision (disabled for fp32)."""
    return torch.autocast(device.type, dtype=torch.bfloat16, enabled=precision == "bf16")
