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


def all_gather_grad(tensor: torch.Tensor) -> torch.Tensor:
    """all_gather_cat that lets gradients flow back to every rank's part (summed over ranks), so a loss
    over the global batch, averaged by DDP, has the gradient of one big batch."""
    if not is_initialized() or world_size() == 1:
        return tensor
    from torch.distributed.nn.functional import all_gather
    return torch.cat(all_gather(tensor.contiguous()), dim=0)


def all_reduce_sum(tensor: torch.Tensor) -> torch.Tensor:
    if is_initialized() and world_size() > 1:
        dist.all_reduce(tensor)
    return tensor


def cleanup():
    if is_initialized():
        dist.destroy_process_group()
