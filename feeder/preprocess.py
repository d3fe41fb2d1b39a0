"""Offline "frame-N" preprocessing of one skeleton sample (the AimCLR / CrosSCLR lineage).

The lineage trains on `*_frame50` arrays: every raw sequence is centred on one joint, resized
in time to a fixed number of frames and rotated about the vertical axis so the shoulders lie
along x. This module reproduces that step for one sample at a time, in numpy, for any layout:

    positions = to_fixed_length(raw, get_layout("ntu-rgb+d"), frames=50)

`raw` is (C=3, T, V, M), zero-padded at the end (the output of the NTU reader, or any sequence
converted by tools/gendata_custom.py). The result is float32 (C, frames, V, M). On the golden NTU
samples it matches the upstream NTU60_frame50 positions within 1.7e-7 (float32 rounding in the
rotation) and the motion arrays bit for bit (tests/test_preprocess.py).
"""
from __future__ import annotations

import numpy as np

from feeder.layouts import Layout

ROTATION_EPS = 1e-4  # the lineage's guard in arccos(v_x / (|v| + eps))


def valid_length(x: np.ndarray) -> int:
    """Number of frames in which joint 0 of person 0 is non-zero (the lineage's sequence length).

    It is a count, used as the frame range [0, length): sequences are expected to be
    zero-padded at the end only.
    """
    return int(np.count_nonzero(np.abs(x[:, :, 0, 0]).sum(axis=0) > 0))


def valid_frames(x: np.ndarray, length: int | None = None) -> np.ndarray:
    """The first `length` frames of x as float32 (default: the lineage's valid_length).

    Raises ValueError if that leaves no frame.
    """
    x = np.asarray(x, dtype=np.float32)
    if length is None:
        length = valid_length(x)
        if length == 0:
            raise ValueError("empty sample: joint 0 of person 0 is zero in every frame")
    if length <= 0:
        raise ValueError("empty sample: no frames")
    return x[:, :length]


def center_on_joint(x: np.ndarray, joint: int) -> np.ndarray:
    """Subtract `joint` from every joint, per frame and per person (zero frames stay zero)."""
    return x - x[:, :, joint:joint + 1, :]


def resize_time(x: np.ndarray, frames: int) -> np.ndarray:
    """Linear resize of (C, T, V, M) along T to `frames`, as cv2.resize(INTER_LINEAR) on float32.

    Half-pixel centres, source positions in double clamped to [0, T-1], the weight rounded to
    float32 and x0 + w * (x1 - x0) with one rounding (a fused multiply-add, emulated in float64:
    the float32 product is exact there). This form is bit-identical to the upstream OpenCV
    output on the golden samples; the textbook (1-w)*x0 + w*x1 in float32 is off by 1 ulp.
    """
    length = x.shape[1]
    src = np.maximum((np.arange(frames) + 0.5) * (length / frames) - 0.5, 0)
    lo = np.minimum(np.floor(src).astype(np.int64), length - 1)
    weight = np.where(lo < length - 1, src - lo, 0).astype(np.float32)[None, :, None, None]
    hi = np.minimum(lo + 1, length - 1)
    x0 = x[:, lo].astype(np.float32)
    step = x[:, hi].astype(np.float32) - x0
    return (x0 + weight.astype(np.float64) * step).astype(np.float32)


def rotate_shoulders_to_x(x: np.ndarray, shoulders: tuple) -> np.ndarray:
    """Rotate each frame about y so the left->right shoulder vector (y dropped) lies along x.

    One angle per frame and person; its sign is chosen once per person-sequence from the sum of
    the vector's z component, as in the lineage. An absent (all-zero) person stays zero.
    The lineage's eps makes the alignment inexact: shoulders already along +x at distance d are
    still turned by arccos(d / (d + 1e-4)), about 1.3 degrees for d = 0.4 (metres).
    """
    left, right = shoulders
    v = x[:, :, right, :] - x[:, :, left, :]  # (C, T, M)
    vx, vz = v[0], v[2]
    norm = np.sqrt(vx * vx + vz * vz)
    theta = np.arccos(vx / (norm + ROTATION_EPS))  # (T, M)
    theta = np.where(vz.sum(axis=0, keepdims=True) >= 0, -theta, theta)
    # float32 angles as upstream; the products in float64 round once, which lands closest to it
    cos = np.cos(theta).astype(np.float64)[:, None, :]  # (T, 1, M)
    sin = np.sin(theta).astype(np.float64)[:, None, :]
    px, py, pz = x[0].astype(np.float64), x[1], x[2].astype(np.float64)
    return np.stack([cos * px - sin * pz, py, sin * px + cos * pz]).astype(np.float32)


def to_fixed_length(x: np.ndarray, layout: Layout, frames: int = 50, center: bool = True,
                    rotate: bool = True, length: int | None = None) -> np.ndarray:
    """Lineage frame-N positions of one raw (3, T, V, M) sample -> float32 (3, frames, V, M).

    Order as upstream: cut to the valid length, centre on layout.center, resize in time, then
    rotate the shoulders onto x (only if the layout names shoulders and rotate=True).
    `length` overrides the lineage's frame count (valid_length) when the caller knows the true
    length, e.g. for data centred on joint 0, whose joint 0 is zero in every frame.
    Raises ValueError if no frame is left (by default: person 0, joint 0 is zero throughout).
    """
    x = valid_frames(x, length)
    if center:
        x = center_on_joint(x, layout.center)
    x = resize_time(x, frames)
    if rotate and layout.shoulders is not None:
        x = rotate_shoulders_to_x(x, layout.shoulders)
    return x


def motion_fixed_length(x: np.ndarray, frames: int = 50) -> np.ndarray:
    """Lineage frame-N motion: frame differences of the raw sample, resized like the positions.

    The difference is taken before any centring and the last valid frame's difference runs into
    the zero padding (a spike), exactly as upstream; the motion is not rotated.
    """
    x = np.asarray(x, dtype=np.float32)
    length = valid_frames(x).shape[1]
    motion = np.zeros_like(x)
    motion[:, :-1] = x[:, 1:] - x[:, :-1]
    return resize_time(motion[:, :length], frames)
