"""An LSTM layer that runs its matmuls in bfloat16 on the CPU under ``torch.autocast``.

PyTorch's CPU ``nn.LSTM`` ignores bf16 autocast (it stays fp32), and with bf16 weights it leaves
oneDNN for a slow path. CPUs with AMX / AVX-512-bf16 run bf16 matmuls faster than fp32, so
:class:`AutocastLSTM` computes

* the input projection of the whole sequence as one ``(T*B, I) @ (I, 4H)`` matmul,
* one ``(B, H) @ (H, 4H)`` recurrent matmul per time step,
* the weight gradients as two large matmuls over the whole sequence,

in bf16 (fp32 accumulation inside the matmul), with the gate nonlinearities, the cell state and
all saved activations in fp32. Outside CPU bf16 autocast it *is* ``nn.LSTM`` (a subclass with the
same parameters and state-dict keys, so fastai's ``WeightDropout`` and saved weights work
unchanged); on CUDA, cuDNN already honours autocast.
"""
from __future__ import annotations

import warnings

import torch
from torch import nn


def cpu_bf16_autocast_active(x: torch.Tensor) -> bool:
    """True inside ``torch.autocast("cpu", dtype=torch.bfloat16)`` for a CPU tensor."""
    return (x.device.type == "cpu" and torch.is_autocast_enabled("cpu")
            and torch.get_autocast_dtype("cpu") == torch.bfloat16)


class _BF16LSTMSequence(torch.autograd.Function):
    """One unidirectional LSTM layer over a (T, B, I) fp32 sequence; bf16 matmuls."""

    @staticmethod
    def forward(ctx, x, h0, c0, w_ih, w_hh, b_ih, b_hh):
        steps, batch, _ = x.shape
        hidden = w_hh.shape[1]
        low = torch.bfloat16
        x_low, w_ih_low, w_hh_low = x.to(low), w_ih.to(low), w_hh.to(low)
        bias = b_ih + b_hh if b_ih is not None else None
        gates_x = (x_low.reshape(steps * batch, -1) @ w_ih_low.t()).float().view(steps, batch, 4 * hidden)
        if bias is not None:
            gates_x += bias
        hs = x.new_empty(steps + 1, batch, hidden)
        cs = x.new_empty(steps + 1, batch, hidden)
        tanh_cs = x.new_empty(steps, batch, hidden)
        acts = x.new_empty(steps, batch, 4 * hidden)
        hs[0], cs[0] = h0, c0
        w_hh_t = w_hh_low.t()
        for t in range(steps):
            pre = gates_x[t] + (hs[t].to(low) @ w_hh_t).float()
            act = acts[t]
            torch.sigmoid(pre, out=act)
            torch.tanh(pre[:, 2 * hidden:3 * hidden], out=act[:, 2 * hidden:3 * hidden])
            i, f, g, o = act.chunk(4, 1)
            torch.addcmul(f * cs[t], i, g, out=cs[t + 1])
            torch.tanh(cs[t + 1], out=tanh_cs[t])
            torch.mul(o, tanh_cs[t], out=hs[t + 1])
        ctx.save_for_backward(x_low, w_ih_low, w_hh_low, hs, cs, tanh_cs, acts)
        ctx.has_bias = bias is not None
        return hs[1:].clone(), hs[steps].clone(), cs[steps].clone()

    @staticmethod
    def backward(ctx, grad_out, grad_hn, grad_cn):
        x_low, w_ih_low, w_hh_low, hs, cs, tanh_cs, acts = ctx.saved_tensors
        steps, batch, _ = x_low.shape
        hidden = w_hh_low.shape[1]
        low = torch.bfloat16
        grad_gates = acts.new_empty(steps, batch, 4 * hidden)
        dh = grad_hn.clone() if grad_hn is not None else hs.new_zeros(batch, hidden)
        dc = grad_cn.clone() if grad_cn is not None else hs.new_zeros(batch, hidden)
        for t in range(steps - 1, -1, -1):
            if grad_out is not None:
                dh += grad_out[t]
            i, f, g, o = acts[t].chunk(4, 1)
            tc = tanh_cs[t]
            dc += dh * o * (1 - tc * tc)
            gi, gf, gg, go = grad_gates[t].chunk(4, 1)
            torch.mul(dc * g, i * (1 - i), out=gi)
            torch.mul(dc * cs[t], f * (1 - f), out=gf)
            torch.mul(dc * i, 1 - g * g, out=gg)
            torch.mul(dh * tc, o * (1 - o), out=go)
            dc = dc * f
            dh = (grad_gates[t].to(low) @ w_hh_low).float()
        flat = grad_gates.view(steps * batch, 4 * hidden).to(low)
        grad_x = (flat @ w_ih_low).float().view(steps, batch, -1)
        grad_w_ih = (flat.t() @ x_low.reshape(steps * batch, -1)).float()
        grad_w_hh = (flat.t() @ hs[:-1].reshape(steps * batch, hidden).to(low)).float()
        grad_b = grad_gates.sum((0, 1)) if ctx.has_bias else None
        return grad_x, dh, dc, grad_w_ih, grad_w_hh, grad_b, grad_b


class AutocastLSTM(nn.LSTM):
    """``nn.LSTM`` (one layer, unidirectional) that uses bf16 matmuls under CPU bf16 autocast."""

    def forward(self, input, hx=None):  # noqa: A002 - nn.LSTM's signature
        if not cpu_bf16_autocast_active(input) or self.num_layers != 1 or self.bidirectional \
                or self.proj_size or input.dim() != 3:
            return super().forward(input, hx)
        x = input.float()
        x = x.transpose(0, 1) if self.batch_first else x
        batch = x.shape[1]
        if hx is None:
            zeros = x.new_zeros(batch, self.hidden_size)
            h0, c0 = zeros, zeros
        else:
            h0, c0 = hx[0][0].float(), hx[1][0].float()
        with torch.autocast("cpu", enabled=False):
            out, hn, cn = _BF16LSTMSequence.apply(
                x.contiguous(), h0, c0, self.weight_ih_l0, self.weight_hh_l0,
                getattr(self, "bias_ih_l0", None), getattr(self, "bias_hh_l0", None))
        out = out.transpose(0, 1) if self.batch_first else out
        return out, (hn.unsqueeze(0), cn.unsqueeze(0))


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


def use_autocast_lstm(module: nn.Module) -> nn.Module:
    """Swap every one-layer ``nn.LSTM`` inside ``module`` for an :class:`AutocastLSTM` in place
    (same parameter objects, so weights, state-dict keys and optimizers are unaffected)."""
    for child in module.modules():
        if type(child) is nn.LSTM:
            child.__class__ = AutocastLSTM
    return module
