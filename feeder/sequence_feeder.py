"""New sequences, one file each, as a dataset: what `python main.py extract --sequences DIR` reads.

`<name>.npy` holds one sequence (T, V, C) or (M, T, V, C); `<name>.npz` holds one such array (under `data`,
else its only array). Each goes through the pipeline its model's training data went through, so a trained
encoder sees what it was trained on:

- `pipeline: lineage` (3-D, Kinect-style, C = 3 or 2 with z = 0): centred on the layout's centre joint per
  frame, resized to `frames`, the shoulders rotated onto x (tools/gendata_custom.py, the lineage's frame-N step);
- `pipeline: pose2d` (x, y, score from a 2-D pose estimator, C = 3): missing joints to 0, the persons with the
  highest scores kept, centred and scaled by the visible joints, a mask-aware resize (tools/pose_import.py).

The labels are -1 (unknown) unless `labels` names a CSV with the columns name,label. A file that cannot be used
is skipped and listed in `skipped` ({file: reason}); the processor prints them.
"""
from __future__ import annotations

import csv
import os

import numpy as np

from torchlight.errors import DataError

from .base import SkeletonDataset
from .layouts import get_layout
from .preprocess import check_sequence, fixed_length_sample, to_fixed_length_2d

PIPELINES = ("lineage", "pose2d")


def read_sequence(path: str) -> np.ndarray:
    """The array of a .npy / .npz sequence file (never a pickle), as float32 (M, T, V, C)."""
    if path.endswith(".npz"):
        with np.load(path, allow_pickle=False) as z:
            keys = list(z.files)
            if not keys:
                raise ValueError("the .npz holds no array")
            a = z["data"] if "data" in keys else z[keys[0]] if len(keys) == 1 else None
            if a is None:
                raise ValueError(f"the .npz holds several arrays {keys} and none is named `data`")
    else:
        a = np.load(path, allow_pickle=False)
    a = np.asarray(a)
    if a.ndim == 3:
        a = a[None]
    if a.ndim != 4 or a.dtype.kind not in "iuf":
        raise ValueError(f"expected a numeric (T, V, C) or (M, T, V, C) array, got {a.dtype} {a.shape}")
    if a.shape[1] == 0:
        raise ValueError("no frames")
    return a.astype(np.float32)


class SequenceFolder(SkeletonDataset):
    def __init__(self, data_path, layout="ntu-rgb+d", frames=50, pipeline="lineage", max_persons=2, labels=None,
                 channels=3, center=True, rotate=True):
        if pipeline not in PIPELINES:
            raise DataError(f"{data_path}: pipeline {pipeline!r} is not one of {PIPELINES}")
        if not os.path.isdir(data_path):
            raise DataError(f"sequence folder not found: {data_path}")
        self.data_path = self.label_path = data_path
        self.layout = get_layout(layout)
        known = read_label_csv(labels) if labels else {}
        files = sorted(f for f in os.listdir(data_path) if f.endswith((".npy", ".npz")))
        if not files:
            raise DataError(f"{data_path} holds no .npy / .npz sequence files")
        samples, names, self.skipped = [], [], {}
        for f in files:
            try:
                a = read_sequence(os.path.join(data_path, f))
                samples.append(self._prepare(a, frames, pipeline, max_persons, channels, center, rotate))
                names.append(os.path.splitext(f)[0])
            except ValueError as e:
                self.skipped[f] = str(e)
        if not samples:
            raise DataError(f"{data_path}: no usable sequence ({len(self.skipped)} skipped: "
                            f"{dict(list(self.skipped.items())[:3])})")
        self.data = np.stack(samples)
        self.sample_name = names
        self.label = np.array([known.get(n, -1) for n in names], dtype=np.int64)
        self.centre_crop = None

    def _prepare(self, a, frames, pipeline, max_persons, channels, center, rotate):
        """One sequence as its training data were made (the functions the data tools use)."""
        if a.shape[2] != self.layout.num_joints:
            raise ValueError(f"{a.shape[2]} joints, layout {self.layout.name!r} has {self.layout.num_joints}")
        if pipeline == "pose2d":
            if a.shape[3] != 3:
                raise ValueError(f"pose2d needs x, y, score (C = 3), got C = {a.shape[3]}")
            return to_fixed_length_2d(a.transpose(3, 1, 2, 0), frames, max_persons, channels=channels)
        checked, _ = check_sequence(a, self.layout)
        return fixed_length_sample(checked, self.layout, frames, max_persons, center, rotate)

    @property
    def num_classes(self) -> int:
        return int(max(self.label.max(), -1)) + 1


def read_label_csv(path: str) -> dict:
    """{name: label} of a CSV with the columns name,label (a split column, if any, is ignored)."""
    with open(path, newline="", encoding="utf-8-sig") as f:
        reader = csv.DictReader(f)
        if not reader.fieldnames or not {"name", "label"} <= {c.strip() for c in reader.fieldnames}:
            raise DataError(f"{path}: expected the columns name,label")
        out = {}
        for row in reader:
            try:
                out[row["name"].strip()] = int(row["label"])
            except (TypeError, ValueError):
                raise DataError(f"{path} line {reader.line_num}: bad label {row.get('label')!r}") from None
        return out
