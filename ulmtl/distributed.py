"""Data-parallel training on ``torch.distributed``: the smallest layer ulmtl needs.

Launch any stage or recipe with ``torchrun --nproc_per_node=N recipes/<name>.py ...``. Each process
reads its own rows of every global batch (the batch one process would read with the global batch
size); after every backward pass the gradients are averaged across processes with one all-reduce
over a flat buffer, so every process takes the same optimizer step as one process with the global
batch: each process's loss is weighted by its share of the global batch's items (rows, or masked
tokens), and batch normalization uses the statistics of the global batch. gloo on CPU, nccl on
GPUs, chosen automatically. Only rank 0 writes checkpoints, metrics and logs.

fastai's own ``DistributedTrainer`` wraps the model in ``DistributedDataParallel`` and assumes CUDA;
averaging gradients in a callback keeps the model unwrapped, so fastai's RNN callbacks
(``ModelResetter``, AR/TAR) work unchanged on CPU and GPU.
"""
from __future__ import annotations

from contextlib import contextmanager

import atexit
import os

import torch
import torch.distributed as dist
from fastai.callback.core import Callback
from fastai.torch_core import find_bs
from torch import nn
from torch._utils import _flatten_dense_tensors, _unflatten_dense_tensors
from torch.distributed.nn.functional import all_reduce as differentiable_all_reduce


def world() -> tuple[int, int]:
    """(rank, world size) of this process: from torchrun's environment, (0, 1) otherwise."""
    if dist.is_available() and dist.is_initialized():
        return dist.get_rank(), dist.get_world_size()
    return int(os.environ.get("RANK", 0)), int(os.environ.get("WORLD_SIZE", 1))


def setup() -> tuple[int, int]:
    """Join the process group when launched by torchrun (gloo on CPU, nccl with CUDA)."""
    rank, size = world()
    if size > 1 and not dist.is_initialized():
        backend = "nccl" if torch.cuda.is_available() else "gloo"
        if backend == "nccl":
            torch.cuda.set_device(int(os.environ.get("LOCAL_RANK", 0)))
        dist.init_process_group(backend=backend)
        atexit.register(leave_process_group)
    return world()


def leave_process_group() -> None:
    """Leave the process group (registered at exit by :func:`setup`): left to the interpreter's
    teardown, gloo's threads can abort a finished run ('terminate called without an active
    exception', exit code -6)."""
    if dist.is_available() and dist.is_initialized():
        dist.destroy_process_group()


def is_main() -> bool:
    """True on rank 0 (and in a plain single process): the process that writes files."""
    return world()[0] == 0


def barrier() -> None:
    if dist.is_available() and dist.is_initialized():
        dist.barrier()


@contextmanager
def main_process_first():
    """Run the block on rank 0 first, then on the other processes (which then read the caches
    rank 0 wrote); one process: just the block."""
    if not is_main():
        barrier()
    yield
    if is_main():
        barrier()


def broadcast_parameters(model: torch.nn.Module) -> None:
    """Start every process from rank 0's weights."""
    if not (dist.is_available() and dist.is_initialized()):
        return
    for tensor in list(model.parameters()) + list(model.buffers()):
        dist.broadcast(tensor.data, src=0)


def mean_across_processes(value: float) -> float:
    """The mean of a number over all processes."""
    if not (dist.is_available() and dist.is_initialized()):
        return value
    tensor = _collective_tensor(torch.tensor([float(value)], dtype=torch.float64))
    dist.all_reduce(tensor)
    return float(tensor.item()) / dist.get_world_size()


def _collective_tensor(tensor: torch.Tensor) -> torch.Tensor:
    """``tensor`` where the backend's collectives run: on the GPU under nccl, as it is under gloo."""
    return tensor.cuda() if dist.get_backend() == "nccl" else tensor


def any_process(flag: bool) -> bool:
    """True on every process when ``flag`` is true on any of them.

    Decisions that lead to a collective operation (stop on a time budget, save a checkpoint) must
    be taken by all processes together, or one waits forever for the others."""
    if not (dist.is_available() and dist.is_initialized()):
        return bool(flag)
    tensor = _collective_tensor(torch.tensor([1.0 if flag else 0.0]))
    dist.all_reduce(tensor, op=dist.ReduceOp.MAX)
    return bool(tensor.item() > 0)


def from_main_process(values: list[int]) -> list[int]:
    """Rank 0's integers, on every process (a name every process must agree on)."""
    if not (dist.is_available() and dist.is_initialized()):
        return list(values)
    tensor = _collective_tensor(torch.tensor(values, dtype=torch.int64))
    dist.broadcast(tensor, src=0)
    return [int(v) for v in tensor.tolist()]


def gather_from_processes(tensor: torch.Tensor) -> list[torch.Tensor]:
    """Every process's copy of a same-shaped tensor, in rank order (CPU tensors)."""
    if not (dist.is_available() and dist.is_initialized()):
        return [tensor.detach().cpu()]
    local = _collective_tensor(tensor.detach().contiguous())
    copies = [torch.empty_like(local) for _ in range(dist.get_world_size())]
    dist.all_gather(copies, local)
    return [copy.cpu() for copy in copies]


class GlobalBatchNorm(nn.BatchNorm1d):
    """``BatchNorm1d`` that, while training under torchrun, normalizes with the mean and variance
    of the global batch (every process's rows) and updates its running statistics with them, as
    one process reading the global batch would; otherwise plain ``BatchNorm1d``. The statistics
    are all-reduced with autograd, so the gradient flows through them to every process's rows.
    (``torch.nn.SyncBatchNorm`` does this on GPUs only.)"""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not (self.training and dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1):
            return super().forward(x)
        self._check_input_dim(x)
        values = x.float()
        dims = [0] + list(range(2, x.dim()))
        shape = [1, -1] + [1] * (x.dim() - 2)
        local = torch.tensor([x.numel() // x.shape[1]], dtype=torch.float32, device=x.device)
        sums = differentiable_all_reduce(torch.cat([values.sum(dims), local]))
        count = float(sums[-1])
        if count < 2:
            raise ValueError(f"Expected more than 1 value per channel when training, got {int(count)} "
                             f"in the global batch")
        mean = sums[:-1] / count
        centred = values - mean.view(shape)
        variance = differentiable_all_reduce(centred.pow(2).sum(dims)) / count
        out = centred * torch.rsqrt(variance + self.eps).view(shape)
        if self.affine:
            out = out * self.weight.view(shape) + self.bias.view(shape)
        if self.track_running_stats:
            with torch.no_grad():
                self.num_batches_tracked.add_(1)
                momentum = self.momentum if self.momentum is not None else 1.0 / float(self.num_batches_tracked)
                self.running_mean.lerp_(mean.detach().to(self.running_mean.dtype), momentum)
                unbiased = variance.detach() * count / (count - 1)
                self.running_var.lerp_(unbiased.to(self.running_var.dtype), momentum)
        return out.to(x.dtype)


def use_global_batch_norm(model: nn.Module) -> None:
    """Make every ``BatchNorm1d`` of ``model`` (the heads' only kind of batch norm) a
    :class:`GlobalBatchNorm`, in place, keeping its parameters and buffers (the optimizer's tensors)."""
    for parent in list(model.modules()):
        for name, child in parent.named_children():
            if type(child) is nn.BatchNorm1d:
                norm = GlobalBatchNorm(child.num_features, child.eps, child.momentum, child.affine,
                                       child.track_running_stats)
                norm.weight, norm.bias = child.weight, child.bias
                norm.running_mean, norm.running_var = child.running_mean, child.running_var
                norm.num_batches_tracked = child.num_batches_tracked
                norm.train(child.training)
                setattr(parent, name, norm)


class AverageGradients(Callback):
    """Train every process on its share of the global batch like one process on all of it: batch
    norms use the global batch's statistics (:class:`GlobalBatchNorm`); before each backward pass
    the loss (a mean over this process's items: rows, or masked tokens) is scaled by
    ``processes * items / global items``; after it, every gradient is replaced by its mean over
    all processes, which is then the gradient of the global batch's mean loss."""

    order = -5

    def before_fit(self):
        broadcast_parameters(self.learn.model)
        use_global_batch_norm(self.learn.model)

    def before_backward(self):
        items = find_bs(self.learn.yb)
        counts = _collective_tensor(torch.tensor([float(items)], dtype=torch.float64))
        dist.all_reduce(counts)
        total = float(counts.item())
        self.learn.loss_grad = self.learn.loss_grad * (items * dist.get_world_size() / max(total, 1.0))

    def after_backward(self):
        grads = [p.grad for p in self.learn.model.parameters() if p.grad is not None]
        if not grads:
            return
        flat = _flatten_dense_tensors(grads)
        dist.all_reduce(flat)
        flat /= dist.get_world_size()
        for grad, averaged in zip(grads, _unflatten_dense_tensors(flat, grads)):
            grad.copy_(averaged)
