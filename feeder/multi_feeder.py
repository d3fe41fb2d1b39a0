"""SkeleMixCLR+'s feeder (upstream `feeder.ntu_feeder.Feeder_multi`): one query view per entry of
`frames`, each resized to that frame count, then a key view at `frames[0]`.

Views are [query_1, ..., query_F, key]; every view is resized (linear interpolation over time, a
no-op when the data already have that many frames), temporally cropped with reflection padding
and sheared independently, on the device, as Feeder_single's normal view.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F

from .ntu_feeder import DataError, Feeder_single


def resize_frames(x: torch.Tensor, frames: int) -> torch.Tensor:
    """(N, C, T, V, M) -> (N, C, frames, V, M) by linear interpolation over time with half-pixel
    centres and clamped ends (OpenCV's INTER_LINEAR, which upstream's `frames_resize` uses)."""
    n, c, t, v, m = x.shape
    if t == frames:
        return x
    flat = x.permute(0, 1, 3, 4, 2).reshape(n, c * v * m, t)
    out = F.interpolate(flat, size=frames, mode="linear", align_corners=False)
    return out.view(n, c, v, m, frames).permute(0, 1, 4, 2, 3).contiguous()


class Feeder_multi(Feeder_single):  # noqa: N801 - upstream class name, kept for config compatibility
    def __init__(self, data_path, label_path, frames=(64,), shear_amplitude=0.5, temperal_padding_ratio=6,
                 mmap=True, **kwargs):
        super().__init__(data_path, label_path, shear_amplitude=shear_amplitude,
                         temperal_padding_ratio=temperal_padding_ratio, mmap=mmap, **kwargs)
        frames = [int(f) for f in (frames if isinstance(frames, (list, tuple)) else [frames])]
        if not frames or min(frames) <= 0:
            raise DataError(f"{data_path}: `frames` must be a non-empty list of positive frame counts, got {frames}")
        self.frames = frames

    @property
    def num_views(self) -> int:
        return len(self.frames) + 1

    @property
    def augments(self) -> bool:
        return True

    def make_views(self, x, generator=None):
        queries = [self.normal_view(resize_frames(x, f), generator) for f in self.frames]
        return queries + [self.normal_view(resize_frames(x, self.frames[0]), generator)]
