"""Lineage-format datasets: (N, C, T, V, M) float32 `.npy` + `.pkl` (sample names, labels).

The class names of the lineage (`Feeder_single`, `Feeder_dual`, `Feeder_triple`) stay importable
so old YAMLs work; their constructor arguments keep their meaning. What changed: a dataset only
reads (memory-mapped, whole batches at once) and checks its data when it opens; the augmentations
its arguments ask for run afterwards on the training device, batched (`make_views`).
"""
from __future__ import annotations

import json
import os

import numpy as np
import torch
from torch.utils.data import Dataset

from torchlight.io import load_pickle

from . import augment
from .layouts import get_layout

_LAYOUT_BY_JOINTS = {25: "ntu-rgb+d", 20: "nw-ucla"}


class DataError(ValueError):
    """Bad dataset files or samples; the message names the file, index and sample."""


def read_labels(label_path: str) -> tuple:
    if not os.path.isfile(label_path):
        raise DataError(f"label file not found: {label_path}")
    try:
        obj = load_pickle(label_path)  # plain data only: a label file from the internet runs no code
    except Exception as e:  # noqa: BLE001 - any unpickling problem is a bad label file
        raise DataError(f"label file {label_path} cannot be read ({type(e).__name__}: {e})") from None
    if not (isinstance(obj, (tuple, list)) and len(obj) == 2):
        raise DataError(f"label file {label_path}: expected a pickled (sample_names, labels) pair")
    names, labels = [str(n) for n in obj[0]], np.asarray(obj[1])
    if len(names) != len(labels):
        raise DataError(f"label file {label_path}: {len(names)} names but {len(labels)} labels")
    if labels.size and (labels.dtype.kind not in "iu" or labels.min() < 0):
        raise DataError(f"label file {label_path}: labels must be integers >= 0 (found {labels.min()!r})")
    return names, labels.astype(np.int64)


def identity_collate(batch):
    return batch


class Feeder_single(Dataset):  # noqa: N801 - lineage class name, kept for config compatibility
    """One view per sample. Augmentation (off by default, as in evaluation):
    temporal crop with reflection padding (`temperal_padding_ratio` > 0, lineage spelling) and shear
    (`shear_amplitude` > 0)."""

    num_views = 1

    def __init__(self, data_path, label_path, shear_amplitude=-1.0, temperal_padding_ratio=-1, mmap=True,
                 layout=None, check_data=True, p_interval=None, window_size=-1, random_rot=False, min_crop_frames=64):
        self.data_path, self.label_path = data_path, label_path
        self.shear_amplitude, self.padding_ratio = float(shear_amplitude), int(temperal_padding_ratio)
        self.set_temporal_view(p_interval, window_size, random_rot, min_crop_frames)
        if not os.path.isfile(data_path):
            raise DataError(f"data file not found: {data_path} (see the README's data section to prepare it)")
        try:
            self.data = np.load(data_path, mmap_mode="r" if mmap else None)
        except Exception as e:  # noqa: BLE001
            raise DataError(f"data file {data_path} cannot be read as .npy ({type(e).__name__}: {e})") from None
        self.sample_name, self.label = read_labels(label_path)
        if self.data.ndim != 5 or self.data.shape[1] not in (2, 3):
            raise DataError(f"data file {data_path}: expected shape (N, C=3, T, V, M), got {self.data.shape}")
        if len(self.data) != len(self.label):
            raise DataError(f"{data_path} has {len(self.data)} samples but {label_path} has {len(self.label)} labels")
        if len(self.label) == 0:
            raise DataError(f"dataset {data_path} is empty")
        self.layout = get_layout(layout or self._layout_from_manifest() or self._layout_from_joints())
        if self.layout.num_joints != self.data.shape[3]:
            raise DataError(f"data file {data_path} has {self.data.shape[3]} joints but layout "
                            f"{self.layout.name!r} has {self.layout.num_joints}")
        if check_data:
            self.check()

    def _layout_from_manifest(self):
        manifest = os.path.join(os.path.dirname(self.data_path), "manifest.json")
        if not os.path.isfile(manifest):
            return None
        with open(manifest) as f:
            layout = json.load(f).get("layout") or {}
        return layout if "edges" in layout else layout.get("name")  # older manifests hold only the name

    def _layout_from_joints(self):
        v = self.data.shape[3]
        if v not in _LAYOUT_BY_JOINTS:
            raise DataError(f"{self.data_path}: no built-in layout has {v} joints; pass `layout:` (a YAML file)")
        return _LAYOUT_BY_JOINTS[v]

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

    def __getitem__(self, index):
        x = torch.from_numpy(np.array(self.data[index], dtype=np.float32))
        return self._centre_crop(x[None])[0], int(self.label[index]), index

    def set_temporal_view(self, p_interval, window_size, random_rot, min_crop_frames):
        """MAMP / STARS views: `p_interval` [p] centre-crops the valid frames to their middle p (here,
        when a batch is read: deterministic), [p0, p1] crops a random fraction (on the device, in
        make_views); either way resized to `window_size` frames. `random_rot` rotates each sequence
        by U(-0.3, 0.3) rad about x, y, z. (Upstream's min crop of 64 frames: `min_crop_frames`.)"""
        if p_interval is not None:
            p_interval = [float(p) for p in (p_interval if isinstance(p_interval, (list, tuple)) else [p_interval])]
            ok = len(p_interval) in (1, 2) and all(0 < p <= 1 for p in p_interval) and p_interval == sorted(p_interval)
            if not ok:
                raise DataError(f"{self.data_path}: p_interval must be [p] or [p_low, p_high] within (0, 1], "
                                f"got {p_interval}")
            if int(window_size) <= 0:
                raise DataError(f"{self.data_path}: p_interval needs window_size (the frames to resize to)")
        self.p_interval, self.window_size = p_interval, int(window_size)
        self.random_rot, self.min_crop_frames = bool(random_rot), int(min_crop_frames)

    def _centre_crop(self, x: torch.Tensor) -> torch.Tensor:
        if self.p_interval is None or len(self.p_interval) != 1:
            return x
        return augment.valid_crop_resize(x, self.p_interval, self.window_size, self.min_crop_frames)

    def __getitems__(self, indices):
        """A whole batch with one memory-mapped read: (x (B, C, T, V, M), labels (B,), indices (B,))."""
        idx = np.asarray(indices)
        x = np.asarray(self.data[np.sort(idx)], dtype=np.float32)
        x = x[np.argsort(np.argsort(idx))]  # back to the sampler's order
        return self._centre_crop(torch.from_numpy(x)), torch.from_numpy(self.label[idx]), torch.from_numpy(idx)

    @property
    def augments(self) -> bool:
        random_crop = self.p_interval is not None and len(self.p_interval) == 2
        return self.shear_amplitude > 0 or self.padding_ratio > 0 or random_crop or self.random_rot

    def normal_view(self, x, generator):
        if self.p_interval is not None and len(self.p_interval) == 2:
            x = augment.valid_crop_resize(x, self.p_interval, self.window_size, self.min_crop_frames, generator)
        if self.random_rot:
            x = augment.uniform_rotate(x, generator=generator)
        return augment.normal_augment(x, self.shear_amplitude, self.padding_ratio, generator=generator)

    def make_views(self, x: torch.Tensor, generator: torch.Generator | None = None) -> list:
        """The augmented views of a batch already on the training device."""
        return [self.normal_view(x, generator)]


class Feeder_dual(Feeder_single):  # noqa: N801
    """Two independently augmented views (SkeletonCLR, CrosSCLR)."""

    num_views = 2

    def make_views(self, x, generator=None):
        return [self.normal_view(x, generator), self.normal_view(x, generator)]


class Feeder_triple(Feeder_single):  # noqa: N801
    """AimCLR's views: [normal + extreme augmentations (`aug_method` digits), normal, normal]."""

    num_views = 3

    def __init__(self, *args, aug_method="12345", blur_normalize=False, **kwargs):
        super().__init__(*args, **kwargs)
        self.aug_method, self.blur_normalize = str(aug_method), blur_normalize

    @property
    def augments(self) -> bool:
        return True

    def make_views(self, x, generator=None):
        extreme = augment.extreme_augment(self.normal_view(x, generator), self.aug_method,
                                          self.layout.flip_permutation, generator=generator,
                                          blur_normalize=self.blur_normalize)
        return [extreme, self.normal_view(x, generator), self.normal_view(x, generator)]


class Feeder_double(Feeder_triple):  # noqa: N801
    """HYSP's views: [strong, weak] = [normal + extreme augmentations, normal]. Strong is HYSP feeder
    `_strong_aug`: temporal crop and shear, then spatial flip, rotation, Gaussian noise, Gaussian blur,
    axis mask and time flip in that order (`aug_method` "123456"; AimCLR's default "12345" has no
    time flip). Weak is `_aug`: temporal crop and shear."""

    num_views = 2

    def __init__(self, *args, aug_method="123456", **kwargs):
        super().__init__(*args, aug_method=aug_method, **kwargs)

    def make_views(self, x, generator=None):
        strong = augment.extreme_augment(self.normal_view(x, generator), self.aug_method,
                                         self.layout.flip_permutation, generator=generator,
                                         blur_normalize=self.blur_normalize)
        return [strong, self.normal_view(x, generator)]
