"""SkeleMixCLR+'s feeder class (upstream `feeder.ntu_feeder.Feeder_multi`), kept for config compatibility: the
lineage reader plus the `multi_resolution` view recipe (feeder/views.py): one query per entry of `frames`,
each resized to that frame count, then a key at frames[0], each normally augmented.
"""
from __future__ import annotations

from . import views
from .ntu_feeder import Feeder_single
from .views import resize_frames

__all__ = ["Feeder_multi", "resize_frames"]  # resize_frames: imported from here by older code


class Feeder_multi(Feeder_single):  # noqa: N801 - upstream class name, kept for config compatibility
    recipe = views.MultiResolution

    def __init__(self, data_path, label_path, frames=(64,), shear_amplitude=0.5, temperal_padding_ratio=6,
                 mmap=True, **kwargs):
        self.frames = frames
        super().__init__(data_path, label_path, shear_amplitude=shear_amplitude,
                         temperal_padding_ratio=temperal_padding_ratio, mmap=mmap, **kwargs)

    def recipe_args(self) -> dict:
        return {"frames": self.frames}
