"""What every dataset reader shares: whole-batch reads, the data check, subsets, and the collate.

A reader turns one file format into samples (N, C, T, V, M) float32 with integer labels and names; it
knows nothing of augmentation (feeder/views.py makes the views, on the device). Subclasses set `data`
(an array or memory map indexed by sample), `label` (int64), `sample_name`, `layout`, `data_path`,
`label_path`, and may centre-crop at read time (`p_interval` [p] with `window_size`).
"""
from __future__ import annotations

import numpy as np
import torch
from torch.utils.data import Dataset

from torchlight.errors import DataError

from . import augment


def identity_collate(batch):
    """The DataLoader collate for readers whose `__getitems__` already returns a whole batch."""
    return batch


class SkeletonDataset(Dataset):
    view_recipe = None  # the legacy feeder classes (Feeder_dual, ...) carry the views their arguments ask for

    def set_centre_crop(self, p_interval, window_size, min_crop_frames=64):
        """`p_interval: [p]` with `window_size`: keep the middle p of each sample's valid frames, resized to
        window_size frames, when it is read (MAMP / STARS' test views). A random crop [p0, p1] is a view
        (feeder/views.py), not a read."""
        self.centre_crop = None
        if p_interval is None:
            return
        p = [float(v) for v in (p_interval if isinstance(p_interval, (list, tuple)) else [p_interval])]
        if len(p) != 1 or not 0 < p[0] <= 1:
            raise DataError(f"{self.data_path}: a reader's p_interval is one centre-crop fraction [p] in (0, 1], got "
                            f"{p}; a random crop [p0, p1] belongs to the views (views: {{recipe: clip, p_interval: "
                            f"{p}, window_size: ...}})")
        if int(window_size) <= 0:
            raise DataError(f"{self.data_path}: p_interval needs window_size (the frames to resize to)")
        self.centre_crop = (p, int(window_size), int(min_crop_frames))

    def check(self, chunk: int = 1024):
        """Find non-finite or all-zero samples now, with their index and name, not at step 10,000."""
        for start in range(0, len(self.data), chunk):
            block = np.asarray(self.data[start:start + chunk])
            flat = block.reshape(len(block), -1)
            bad = ~np.isfinite(flat).all(axis=1)
            if bad.any():
                i = start + int(np.argmax(bad))
                raise DataError(f"{self.data_path}: sample {i} ({self.sample_name[i]}) contains NaN or inf")
            empty = ~flat.any(axis=1)
            if empty.any():
                i = start + int(np.argmax(empty))
                raise DataError(f"{self.data_path}: sample {i} ({self.sample_name[i]}) is all zeros "
                                f"(a missing skeleton?); remove it from the dataset")

    def select(self, rows) -> None:
        """Keep only these rows (e.g. a semi-supervised subset); they are read into memory."""
        rows = np.asarray(rows, dtype=np.int64)
        self.data = np.asarray(self.data[rows], dtype=np.float32)
        self.label = self.label[rows]
        self.sample_name = [self.sample_name[i] for i in rows]

    @property
    def num_classes(self) -> int:
        return int(self.label.max()) + 1

    def __len__(self):
        return len(self.label)

    def _read(self, x: torch.Tensor) -> torch.Tensor:
        if getattr(self, "centre_crop", None) is None:
            return x
        p, frames, min_frames = self.centre_crop
        return augment.valid_crop_resize(x, p, frames, min_frames)

    def __getitem__(self, index):
        x = torch.from_numpy(np.array(self.data[index], dtype=np.float32))
        return self._read(x[None])[0], int(self.label[index]), index

    def __getitems__(self, indices):
        """A whole batch with one memory-mapped read: (x (B, C, T, V, M), labels (B,), indices (B,))."""
        idx = np.asarray(indices)
        x = np.asarray(self.data[np.sort(idx)], dtype=np.float32)
        x = x[np.argsort(np.argsort(idx))]  # back to the sampler's order
        return self._read(torch.from_numpy(x)), torch.from_numpy(self.label[idx]), torch.from_numpy(idx)


def legacy_views(recipe_cls, dataset, **args):
    """The view recipe a legacy feeder class's augmentation arguments describe (feeder/views.py)."""
    return recipe_cls(layout=dataset.layout, **args)
