"""The lineage format: (N, C, T, V, M) float32 `.npy` + a `.pkl` of (sample names, labels).

`LineageReader` reads it (memory-mapped, whole batches at once) and checks it when it opens. The lineage's
class names stay importable, so old YAMLs run unchanged: `Feeder_single`, `Feeder_dual`, `Feeder_triple`
and `Feeder_double` are this reader plus the view recipe their augmentation arguments describe
(feeder/views.py: `clip`, `normal_pair`, `extreme_normal_pair`, `strong_weak`).
"""
from __future__ import annotations

import json
import os

import numpy as np

from torchlight.errors import DataError
from torchlight.io import load_pickle

from . import views
from .base import SkeletonDataset, identity_collate
from .layouts import get_layout

LAYOUT_BY_JOINTS = {25: "ntu-rgb+d", 20: "nw-ucla"}
__all__ = ["LineageReader", "Feeder_single", "Feeder_dual", "Feeder_triple", "Feeder_double", "read_labels",
           "split_p_interval", "LAYOUT_BY_JOINTS", "DataError", "identity_collate"]  # the last two: older imports


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
    if labels.size and (labels.dtype.kind not in "iu" or labels.min() < -1):
        raise DataError(f"label file {label_path}: labels must be integers >= 0, or -1 for an unlabelled sample "
                        f"(found {labels.min()!r})")
    return names, labels.astype(np.int64)


class LineageReader(SkeletonDataset):
    """`data_path` (N, C=2|3, T, V, M) .npy and `label_path` (names, labels) .pkl. The layout comes from
    `layout`, else the folder's manifest.json (the data tools write one), else the joint count (25: NTU, 20:
    NW-UCLA). `p_interval: [p]` with `window_size` centre-crops each sample when read (MAMP / STARS)."""

    def __init__(self, data_path, label_path, mmap=True, layout=None, check_data=True, p_interval=None,
                 window_size=-1, min_crop_frames=64):
        self.data_path, self.label_path = data_path, label_path
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
        self.set_centre_crop(p_interval, window_size, min_crop_frames)
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
        if v not in LAYOUT_BY_JOINTS:
            raise DataError(f"{self.data_path}: no built-in layout has {v} joints; pass `layout:` (a YAML file)")
        return LAYOUT_BY_JOINTS[v]


def split_p_interval(p_interval):
    """(the reader's centre crop [p] or None, the views' random crop [p0, p1] or None) of a legacy p_interval."""
    if p_interval is None:
        return None, None
    p = list(p_interval) if isinstance(p_interval, (list, tuple)) else [p_interval]
    if len(p) == 2 and not (0 < float(p[0]) <= float(p[1]) <= 1):
        raise DataError(f"p_interval must be [p] or [p_low, p_high] within (0, 1], got {p}")
    return (p, None) if len(p) == 1 else (None, p)


class Feeder_single(LineageReader):  # noqa: N801 - lineage class name, kept for config compatibility
    """The reader plus one view (`clip`): temporal crop with reflection padding (`temperal_padding_ratio` > 0,
    lineage spelling) and shear (`shear_amplitude` > 0); MAMP's random crop (`p_interval: [p0, p1]`) and
    rotation (`random_rot`). Everything off by default, as in evaluation."""

    recipe = views.Clip

    def __init__(self, data_path, label_path, shear_amplitude=-1.0, temperal_padding_ratio=-1, mmap=True,
                 layout=None, check_data=True, p_interval=None, window_size=-1, random_rot=False,
                 min_crop_frames=64):
        centre, random_crop = split_p_interval(p_interval)
        super().__init__(data_path, label_path, mmap, layout, check_data, centre, window_size, min_crop_frames)
        self.view_recipe = self.recipe(
            layout=self.layout, shear_amplitude=shear_amplitude, temperal_padding_ratio=temperal_padding_ratio,
            p_interval=random_crop, window_size=window_size, random_rot=random_rot, min_crop_frames=min_crop_frames,
            **self.recipe_args())

    def recipe_args(self) -> dict:
        return {}


class Feeder_dual(Feeder_single):  # noqa: N801
    """The reader plus two independently augmented views, `query` and `key` (SkeletonCLR, CrosSCLR)."""

    recipe = views.NormalPair


class Feeder_triple(Feeder_single):  # noqa: N801
    """The reader plus AimCLR's views: `extreme` (normal, then the `aug_method` digits), `query`, `key`."""

    recipe = views.ExtremeNormalPair

    def __init__(self, *args, aug_method="12345", blur_normalize=False, **kwargs):
        self.aug_method, self.blur_normalize = str(aug_method), blur_normalize
        super().__init__(*args, **kwargs)

    def recipe_args(self) -> dict:
        return {"aug_method": self.aug_method, "blur_normalize": self.blur_normalize}


class Feeder_double(Feeder_triple):  # noqa: N801
    """The reader plus HYSP's views: `strong` (normal, then `aug_method`, default "123456": with the time
    flip) and `weak` (normal)."""

    recipe = views.StrongWeak

    def __init__(self, *args, aug_method="123456", **kwargs):
        super().__init__(*args, aug_method=aug_method, **kwargs)
