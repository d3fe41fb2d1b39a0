"""The CTR-GCN / MAMP / STARS `.npz` format as a dataset.

`NpzReader` reads it; `Feeder` is the reader plus the views its augmentation arguments ask for (the
class name MAMP / STARS configs use). `NTU60_XSub.npz` and friends hold `x_train` / `x_test` float32
(N, T=300, 150) — 2 persons x 25 joints x xyz, person-major — and one-hot `y_train` / `y_test`. Samples come out in the lineage
layout (C=3, T, V=25, M=2) with integer labels, so every processor and augmentation works on them.
An `.npz` member cannot be memory-mapped, so with `mmap: true` the split is extracted once to a
`.npy` beside the file (atomically) and memory-mapped from there: NTU60's x_train is 7 GB.
"""
from __future__ import annotations

import os
import zipfile

import numpy as np

from torchlight.errors import DataError
from torchlight.io import atomic_write

from . import views
from .base import SkeletonDataset
from .layouts import get_layout
from .ntu_feeder import split_p_interval

SPLITS = {"train": "train", "val": "test", "test": "test"}


def _extract(npz_path: str, key: str) -> str:
    """`<npz>.<key>.npy`, written once from the archive member without loading it whole."""
    out = f"{os.path.splitext(npz_path)[0]}.{key}.npy"
    if os.path.isfile(out) and os.path.getmtime(out) >= os.path.getmtime(npz_path):
        return out
    with zipfile.ZipFile(npz_path) as z:
        member = f"{key}.npy"
        if member not in z.namelist():
            raise DataError(f"{npz_path} has no `{key}` (it holds {sorted(n[:-4] for n in z.namelist())})")

        def copy(f):
            with z.open(member) as src:
                while chunk := src.read(1 << 24):
                    f.write(chunk)
        atomic_write(out, copy)
    return out


class RowSubset:
    """Rows of a (memory-mapped) array, read on demand: a class subset of NTU120 stays on disk."""

    def __init__(self, data, rows: np.ndarray):
        self.base, self.rows = data, rows
        self.shape, self.ndim, self.dtype = (len(rows),) + tuple(data.shape[1:]), data.ndim, data.dtype

    def __len__(self):
        return len(self.rows)

    def __getitem__(self, index):
        return self.base[self.rows[index]]


class NpzReader(SkeletonDataset):
    """One split of a CTR-GCN / MAMP `.npz`; `split` is train or test (val means test).

    Sample names are `<split>_<index>` (the format stores none). `p_interval: [p]` with `window_size`
    centre-crops each sample when read (MAMP / STARS' test view). `class_range: [lo, hi]` keeps the samples
    whose 0-based label is in lo..hi-1 and relabels them 0..hi-lo-1: STARS' few-shot set is NTU120 XSub with
    [60, 120] (the actions A61-A120, exactly the samples NTU60 does not hold).
    """

    def __init__(self, data_path, split="train", mmap=True, layout=None, check_data=True, p_interval=None,
                 window_size=-1, min_crop_frames=64, class_range=None):
        if split not in SPLITS:
            raise DataError(f"{data_path}: split must be one of {sorted(SPLITS)}, got {split!r}")
        if not os.path.isfile(data_path):
            raise DataError(f"data file not found: {data_path} (see the README's data section to prepare it)")
        part = SPLITS[split]
        try:
            with np.load(data_path) as npz:
                onehot = npz[f"y_{part}"]
                x = None if mmap else npz[f"x_{part}"]
        except (KeyError, zipfile.BadZipFile, ValueError, OSError) as e:
            raise DataError(f"{data_path} is not a CTR-GCN / MAMP .npz with x_{part} / y_{part} ({e})") from None
        if x is None:
            x = np.load(_extract(data_path, f"x_{part}"), mmap_mode="r")
        if x.ndim != 3 or x.shape[2] != 150 or len(x) != len(onehot):
            raise DataError(f"{data_path}: x_{part} must be (N, T, 150) with one label row per sample; got "
                            f"{x.shape} and {onehot.shape}")
        n, t = x.shape[:2]
        # (N, T, M*V*C) -> (N, C, T, V, M) as a view, so memory-mapping is kept
        self.data = x.reshape(n, t, 2, 25, 3).transpose(0, 4, 1, 3, 2)
        self.label = onehot.argmax(axis=1).astype(np.int64)
        self.sample_name = [f"{part}_{i}" for i in range(n)]
        if class_range is not None:
            self._keep_classes(data_path, class_range)
            n = len(self.label)
        self.data_path, self.label_path = data_path, data_path
        self.set_centre_crop(p_interval, window_size, min_crop_frames)
        if n == 0:
            raise DataError(f"dataset {data_path} ({part}) is empty")
        self.layout = get_layout(layout or "ntu-rgb+d")
        if check_data:
            self.check()

    def _keep_classes(self, data_path: str, class_range):
        ok = isinstance(class_range, (list, tuple)) and len(class_range) == 2 and all(
            isinstance(c, int) for c in class_range) and 0 <= class_range[0] < class_range[1]
        if not ok:
            raise DataError(f"{data_path}: class_range must be [lo, hi] with 0 <= lo < hi (0-based labels, hi "
                            f"excluded), got {class_range!r}")
        lo, hi = class_range
        rows = np.flatnonzero((self.label >= lo) & (self.label < hi))
        self.data = RowSubset(self.data, rows)
        self.label = self.label[rows] - lo
        self.sample_name = [self.sample_name[i] for i in rows]


class Feeder(NpzReader):
    """The reader plus one view (`clip`) from the augmentation arguments of Feeder_single (off by default):
    the class name MAMP / STARS configs use, kept for config compatibility."""

    def __init__(self, data_path, split="train", shear_amplitude=-1.0, temperal_padding_ratio=-1, mmap=True,
                 layout=None, check_data=True, p_interval=None, window_size=-1, random_rot=False, min_crop_frames=64,
                 class_range=None):
        centre, random_crop = split_p_interval(p_interval)
        super().__init__(data_path, split, mmap, layout, check_data, centre, window_size, min_crop_frames,
                         class_range)
        self.view_recipe = views.Clip(layout=self.layout, shear_amplitude=shear_amplitude,
                                      temperal_padding_ratio=temperal_padding_ratio, p_interval=random_crop,
                                      window_size=window_size, random_rot=random_rot, min_crop_frames=min_crop_frames)
