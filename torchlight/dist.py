"""torch.distributed from the variables torchrun sets; everything works without a process group."""
from __future__ import annotations

import os

import torch
import torch.distributed as dist


def is_initialized() -> bool:
    return dist.is_available() and dist.is_initialized()


def rank() -> int:
    return dist.get_rank() if is_initialized() else 0


def world_size() -> int:
    return dist.get_world_size() if is_initialized() else 1


def is_main() -> bool:
    return rank() == 0


def init_distributed(device_type: str) -> tuple:
    """Join the process group when launched by torchrun (WORLD_SIZE > 1): nccl on GPU, gloo on CPU.

    Returns (rank, world_size, local_rank).
    """
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world <= 1 or is_initialized():
        return rank(), world_size(), int(os.environ.get("LOCAL_RANK", "0"))
    local_rank = int(os.environ.get("LOCAL_RANK", "0"))
    backend = "nccl" if device_type == "cuda" else "gloo"
    if device_type == "cuda":
        torch.cuda.set_device(local_rank)
    dist.init_process_group(backend=backend)
    return dist.get_rank(), dist.get_world_size(), local_rank


@torch.no_grad()
def all_gather_cat(tensor: torch.Tensor) -> torch.Tensor:
    """Concatenate `tensor` from every rank along dim 0, in rank order (no gradient)."""
    if not is_initialized() or world_size() == 1:
        return tensor
    parts = [torch.empty_like(tensor) for _ in range(world_size())]
    dist.all_gather(parts, tensor.contiguous())
    return torch.cat(parts, dim=0)


class _AllReduceSum(torch.autograd.Function):
    """Sum over ranks; the gradient of every rank's copy is the sum of all ranks' gradients."""

    @staticmethod
    def forward(ctx, tensor):
        out = tensor.clone()
        dist.all_reduce(out)
        return out

    @staticmethod
    def backward(ctx, grad):
        grad = grad.clone()
        dist.all_reduce(grad)
        return grad


class _AllGather(torch.autograd.Function):
    """Concatenation over ranks (dim 0); each rank gets back the gradient of its own part, summed over
    every rank's loss."""

    @staticmethod
    def forward(ctx, tensor):
        ctx.n = tensor.shape[0]
        parts = [torch.empty_like(tensor) for _ in range(world_size())]
        dist.all_gather(parts, tensor.contiguous())
        return torch.cat(parts, dim=0)

    @staticmethod
    def backward(ctx, grad):
        grad = grad.contiguous().clone()
        dist.all_reduce(grad)
        return grad[rank() * ctx.n:(rank() + 1) * ctx.n]


def all_reduce_grad(tensor: torch.Tensor) -> torch.Tensor:
    """Differentiable sum over ranks (identity without a process group). (torch's own
    torch.distributed.nn.functional collectives are deprecated and can abort the process at exit.)"""
    if not is_initialized() or world_size() == 1:
        return tensor
    return _AllReduceSum.apply(tensor)


def all_gather_grad(tensor: torch.Tensor) -> torch.Tensor:
    """all_gather_cat that lets gradients flow back to every rank's part (summed over ranks), so a loss
    over the global batch, averaged by DDP, has the gradient of one big batch."""
    if not is_initialized() or world_size() == 1:
        return tensor
    return _AllGather.apply(tensor)


def broadcast(tensor: torch.Tensor, src: int = 0) -> torch.Tensor:
    """`tensor` as rank `src` holds it, written in place on every rank (identity without a process group)."""
    if is_initialized() and world_size() > 1:
        dist.broadcast(tensor, src)
    return tensor


def all_reduce_sum(tensor: torch.Tensor) -> torch.Tensor:
    if is_initialized() and world_size() > 1:
        dist.all_reduce(tensor)
    return tensor


class GlobalBatchNorm(torch.nn.modules.batchnorm._BatchNorm):
    """BatchNorm whose training statistics are those of the global batch over every rank, on any
    device: torch's SyncBatchNorm needs a GPU, so CPU (gloo) runs with `sync_bn` use this one.
    The sums go through a differentiable all_reduce, so with DDP's gradient averaging the gradients
    are those of one big batch. Outside distributed training it is a plain BatchNorm."""

    def _check_input_dim(self, x):
        if x.dim() < 2:
            raise ValueError(f"expected at least 2-D input, got {x.dim()}-D")

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not (self.training and is_initialized() and world_size() > 1):
            return super().forward(x)
        dims = [0] + list(range(2, x.dim()))
        shape = [1, -1] + [1] * (x.dim() - 2)
        count = torch.tensor([x.numel() // x.shape[1]], dtype=torch.float64, device=x.device)
        dist.all_reduce(count)
        n = float(count)
        mean = all_reduce_grad(x.sum(dims)) / n
        centred = x - mean.view(shape)
        var = all_reduce_grad((centred * centred).sum(dims)) / n  # two passes: stable for large offsets
        y = centred * torch.rsqrt(var.view(shape) + self.eps)
        if self.affine:
            y = y * self.weight.view(shape) + self.bias.view(shape)
        if self.track_running_stats:
            with torch.no_grad():
                self.num_batches_tracked += 1
                m = self.momentum if self.momentum is not None else 1.0 / float(self.num_batches_tracked)
                self.running_mean.mul_(1 - m).add_(mean.detach(), alpha=m)
                self.running_var.mul_(1 - m).add_(var.detach() * n / max(n - 1, 1), alpha=m)
        return y


def convert_global_batchnorm(module: torch.nn.Module) -> torch.nn.Module:
    """Every BatchNorm1d/2d/3d in `module` -> GlobalBatchNorm with the same parameters and buffers."""
    if isinstance(module, torch.nn.modules.batchnorm._BatchNorm) and not isinstance(module, GlobalBatchNorm):
        new = GlobalBatchNorm(module.num_features, module.eps, module.momentum, module.affine,
                              module.track_running_stats)
        if module.affine:  # the same Parameter objects: requires_grad (a frozen key encoder) is kept
            new.weight, new.bias = module.weight, module.bias
        for name in ("running_mean", "running_var", "num_batches_tracked"):
            setattr(new, name, getattr(module, name))
        new.train(module.training)
        return new
    for name, child in module.named_children():
        setattr(module, name, convert_global_batchnorm(child))
    return module


def cleanup():
    if is_initialized():
        dist.destroy_process_group()
