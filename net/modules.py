"""Small building blocks shared by the self-supervised methods: init, projector, momentum, queue, InfoNCE."""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from torchlight.dist import all_gather_cat


def at_least_float32(x: torch.Tensor) -> torch.Tensor:
    """x in float32 when it is half precision (autocast), unchanged in float32 / float64: losses and
    similarity logits never run in fp16 / bf16, and float64 stays float64 (the upstream goldens)."""
    return x if x.dtype in (torch.float32, torch.float64) else x.float()


def weights_init(m: nn.Module):
    """The lineage's initialisation: conv / linear N(0, 0.02), BN weight N(1, 0.02), biases 0."""
    if isinstance(m, (nn.Conv1d, nn.Conv2d, nn.Linear)):
        nn.init.normal_(m.weight, 0.0, 0.02)
        if m.bias is not None:
            nn.init.zeros_(m.bias)
    elif isinstance(m, (nn.BatchNorm1d, nn.BatchNorm2d)) and m.weight is not None:
        nn.init.normal_(m.weight, 1.0, 0.02)
        nn.init.zeros_(m.bias)


def mlp_projector(dim: int, out_dim: int) -> nn.Sequential:
    """Linear-ReLU-Linear (MoCo v2); keys fc.0.* and fc.2.* as in the lineage checkpoints."""
    return nn.Sequential(nn.Linear(dim, dim), nn.ReLU(inplace=True), nn.Linear(dim, out_dim))


def copy_params(src: nn.Module, dst: nn.Module):
    """Start the key encoder equal to the query encoder and keep it out of the optimiser."""
    dst.load_state_dict(src.state_dict())
    for p in dst.parameters():
        p.requires_grad = False


TARGET_INITS = ("copy", "independent")


def init_target(online: nn.Module, target: nn.Module, mode: str = "copy"):
    """Start a key / target network from the online one: an exact copy (`copy`), or its own draw of the
    lineage init (`independent`: the lineage's processors re-applied weights_init to the whole model after
    the copy, so their key encoders started as unrelated random networks). Out of the optimiser either way."""
    if mode not in TARGET_INITS:
        raise ValueError(f"target_init {mode!r}: use one of {', '.join(TARGET_INITS)}")
    copy_params(online, target)
    if mode == "independent":
        target.apply(weights_init)


@torch.no_grad()
def momentum_update(online: nn.Module, target: nn.Module, m: float):
    """target <- m * target + (1 - m) * online, parameters only (buffers keep their own statistics)."""
    t_params = list(target.parameters())
    o_params = list(online.parameters())
    torch._foreach_mul_(t_params, m)
    torch._foreach_add_(t_params, o_params, alpha=1.0 - m)


def init_queue(module: nn.Module, dim: int, size: int, suffix: str = ""):
    """Register `queue{suffix}` (dim, size), L2-normalised random columns, and `queue_ptr{suffix}`."""
    module.register_buffer("queue" + suffix, F.normalize(torch.randn(dim, size), dim=0))
    module.register_buffer("queue_ptr" + suffix, torch.zeros(1, dtype=torch.long))


@torch.no_grad()
def enqueue(queue: torch.Tensor, ptr: torch.Tensor, keys: torch.Tensor, gathered: bool = False):
    """Write the keys of every rank (gathered in rank order) at the pointer, wrapping around.

    One write of the whole global batch, so multi-GPU runs fill the queue like one big batch.
    gathered: `keys` already are the global batch, identical on every rank (ASAR's selection).
    """
    keys = keys.detach() if gathered else all_gather_cat(keys.detach())
    keys = keys.to(queue.dtype)
    size = queue.shape[1]
    idx = (int(ptr) + torch.arange(keys.shape[0], device=queue.device)) % size
    queue[:, idx] = keys.T
    ptr[0] = (int(ptr) + keys.shape[0]) % size


def moco_logits(q: torch.Tensor, k: torch.Tensor, queue: torch.Tensor, temperature: float) -> torch.Tensor:
    """[q·k | q·queue] / T for L2-normalised q, k; the positive is column 0."""
    pos = (q * k).sum(dim=1, keepdim=True)
    neg = q @ queue.to(q.dtype)
    return torch.cat([pos, neg], dim=1) / temperature


def info_nce(logits: torch.Tensor) -> torch.Tensor:
    target = torch.zeros(logits.shape[0], dtype=torch.long, device=logits.device)
    return F.cross_entropy(at_least_float32(logits), target)


def top1_of_positive(logits: torch.Tensor) -> torch.Tensor:
    """How often the positive (column 0) is the most similar: a cheap health signal of a contrastive run."""
    return (logits.argmax(dim=1) == 0).float().mean()
