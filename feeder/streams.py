"""Input streams: joint, motion and bone, computed on the device after augmentation.

One definition for every processor (the lineage computed them in three places, and one of them
silently fed joints to motion / bone models).
"""
from __future__ import annotations

import torch

from .layouts import get_layout

STREAMS = ("joint", "motion", "bone")


def motion(x: torch.Tensor) -> torch.Tensor:
    """m[:, :, t] = x[:, :, t+1] - x[:, :, t]; the last frame is 0.  x: (N, C, T, V, M)."""
    out = torch.zeros_like(x)
    out[:, :, :-1] = x[:, :, 1:] - x[:, :, :-1]
    return out


def bone(x: torch.Tensor, layout="ntu-rgb+d") -> torch.Tensor:
    """b[..., v, :] = x[..., v, :] - x[..., parent(v), :]; the centre joint's bone is 0."""
    parents = torch.tensor(get_layout(layout).parents, device=x.device)
    return x - x.index_select(3, parents)


def to_stream(x: torch.Tensor, stream: str, layout="ntu-rgb+d") -> torch.Tensor:
    """x as the given stream; 'all' leaves the joints to a multi-stream model that derives its streams."""
    if stream in ("joint", "all"):
        return x
    if stream == "motion":
        return motion(x)
    if stream == "bone":
        return bone(x, layout)
    raise ValueError(f"unknown stream {stream!r}: use one of {STREAMS}")
