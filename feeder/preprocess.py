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


def check_sequence(array, layout) -> tuple[np.ndarray, bool]:
    """A sequence as float32 (M, T, V, 3) and whether it had only x, y; ValueError if unusable."""
    a = np.asarray(array)
    shape = a.shape
    if a.ndim == 3:
        a = a[None]
    if a.ndim != 4:
        raise ValueError(f"wrong rank: shape {shape}, expected (T, V, C) or (M, T, V, C)")
    persons, length, joints, coords = a.shape
    if a.dtype.kind not in "iuf":
        raise ValueError(f"not numeric: dtype {a.dtype}")
    if coords not in (2, 3):
        raise ValueError(f"wrong number of coordinates: C = {coords} in shape {shape}, expected 2 or 3")
    if joints != layout.num_joints:
        raise ValueError(f"wrong number of joints: V = {joints} in shape {shape}, "
                         f"layout {layout.name!r} has {layout.num_joints}")
    if length == 0 or persons == 0:
        raise ValueError(f"empty: shape {shape} has no frames")
    a = a.astype(np.float32)
    bad = np.count_nonzero(~np.isfinite(a))
    if bad:
        raise ValueError(f"contains NaN or inf ({bad} values)")
    if not a.any():
        raise ValueError("all zeros")
    if coords == 2:
        a = np.concatenate([a, np.zeros_like(a[..., :1])], axis=-1)
    return a, coords == 2


def fixed_length_sample(a: np.ndarray, layout, frames: int, max_persons: int, center: bool,
                        rotate: bool) -> np.ndarray:
    """(M, T, V, 3) checked sequence -> lineage positions (3, frames, V, max_persons)."""
    # trailing all-zero frames are padding; inner frames count even if joint 0 is zero, so data
    # centred on joint 0 works (the lineage's joint-0 count would call it empty)
    moving = np.flatnonzero(np.abs(a).sum(axis=(0, 2, 3)) > 0)
    x = np.zeros((3, a.shape[1], layout.num_joints, max_persons), np.float32)
    kept = a[:max_persons]
    x[..., :len(kept)] = kept.transpose(3, 1, 2, 0)
    return to_fixed_length(x, layout, frames, center=center, rotate=rotate, length=moving[-1] + 1)


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


# --------------------------------------------------------------------------- 2-D skeletons
# Sequences from video pose estimators, (C=3, T, V, M) with the channels (x, y, score), in the
# lineage's array order. The rules (docs/pose_data.md): a joint is visible when its score is
# above `min_score` and it is not at a missing marker; every other joint is one thing inside,
# x = y = score = 0, never NaN; normalisation and the time resize look only at visible joints
# and leave the missing ones exactly 0. 2-D data is never rotated out of the image plane.

NORMALIZE_2D = ("visible", "image", "none")


def _frame_label(frame_names, t) -> str:
    return frame_names[t] if frame_names is not None else f"frame {t}"


def clean_2d(x: np.ndarray, min_score: float = 0.0, frame_names=None) -> np.ndarray:
    """Raw (3, T, V, M) (x, y, score) -> float32 with every missing joint exactly (0, 0, 0).

    Missing: a score that is NaN or <= min_score (score 0, visibility 0, the -1 marker), or both
    coordinates 0 (OpenPose's 0,0,0) or both -1. A joint that would be visible but has a NaN or
    infinite coordinate or score contradicts itself: ValueError naming the frame (its name from
    frame_names when given), the joint and the person. NaN in a joint with score 0 or NaN is only
    a missing marker.
    """
    x = np.asarray(x, dtype=np.float64)
    if x.ndim != 4 or x.shape[0] != 3:
        raise ValueError(f"expected (3, T, V, M) x, y, score, got shape {x.shape}")
    px, py, score = x
    with np.errstate(invalid="ignore"):
        present = score > min_score  # NaN compares False: missing
    marker = ((px == 0) & (py == 0)) | ((px == -1) & (py == -1))
    visible = present & ~marker
    bad = visible & ~(np.isfinite(px) & np.isfinite(py) & np.isfinite(score))
    if bad.any():
        t, v, m = (int(i) for i in np.argwhere(bad)[0])
        raise ValueError(f"{_frame_label(frame_names, t)}: joint {v} of person {m} has score {score[t, v, m]:g} "
                         f"but coordinates ({px[t, v, m]:g}, {py[t, v, m]:g}): NaN or inf in a visible joint "
                         f"({int(bad.sum())} such joint(s) in the sequence)")
    return np.where(visible[None], x, 0).astype(np.float32)


def visible_2d(x: np.ndarray) -> np.ndarray:
    """(T, V, M) bool: the joints of a cleaned (3, T, V, M) sequence that are visible (score > 0)."""
    return x[2] > 0


def select_persons_2d(x: np.ndarray, max_persons: int, per_frame: bool = True) -> np.ndarray:
    """Keep `max_persons` persons of a cleaned (3, T, V, P) sequence, zero-padded to that many.

    per_frame=True (detections with no identity over time: OpenPose, MMPose, Kinetics-skeleton):
    in every frame the persons are ranked by their summed score (ST-GCN's Kinetics rule), ties in
    input order. per_frame=False (tracks: .pose, pyskl, Penn Action): the tracks are ranked by
    their score summed over the whole sequence and keep their slot in every frame.
    """
    total = x[2].sum(axis=1)  # (T, P)
    if per_frame:
        order = np.argsort(-total, axis=1, kind="stable")[:, :max_persons]  # (T, K)
        kept = np.take_along_axis(x, order[None, :, None, :], axis=3)
    else:
        kept = x[..., np.argsort(-total.sum(axis=0), kind="stable")[:max_persons]]
    out = np.zeros(x.shape[:3] + (max_persons,), np.float32)
    out[..., :kept.shape[3]] = kept
    return out


def trim_empty_frames_2d(x: np.ndarray) -> np.ndarray:
    """Drop the frames before the first and after the last one with a visible joint.

    ValueError if no frame has one (a sequence with nobody in it)."""
    seen = np.flatnonzero(visible_2d(x).any(axis=(1, 2)))
    if len(seen) == 0:
        raise ValueError(f"no visible joint in any of the {x.shape[1]} frames (nobody in the sequence)")
    return x[:, seen[0]:seen[-1] + 1]


def normalize_2d(x: np.ndarray, mode: str = "visible", image_size=None) -> np.ndarray:
    """Centre and scale the x, y of a cleaned (3, T, V, M) sequence; the score is kept.

    visible: one centre and scale per sequence from the bounding box of all its visible joints
        (every frame, every person): centre = the box centre, scale = its longer side, so the
        joints land in [-0.5, 0.5] and the aspect ratio is kept; the same for pixel and for
        normalised coordinates.
    image: centre = the image centre, scale = the image's longer side; image_size is
        (width, height), or (T, 2) per frame. Coordinates normalised to [0, 1] have the size
        (1, 1), which gives ST-GCN's Kinetics centring x - 0.5, y - 0.5.
    none: coordinates as they are.
    Missing joints stay exactly 0 (score 0) in every mode. ValueError when the scale is 0.
    """
    if mode not in NORMALIZE_2D:
        raise ValueError(f"unknown 2-D normalisation {mode!r}: use one of {', '.join(NORMALIZE_2D)}")
    vis = visible_2d(x)
    if mode == "none":
        return np.asarray(x, np.float32)
    if mode == "visible":
        if not vis.any():
            raise ValueError("no visible joint to normalise by")
        px, py = x[0][vis].astype(np.float64), x[1][vis].astype(np.float64)
        center = np.array([px.min() + px.max(), py.min() + py.max()]) / 2
        scale = max(px.max() - px.min(), py.max() - py.min())
        if not scale > 0:
            raise ValueError("every visible joint is at the same point: no scale to normalise by")
        center, scale = center[:, None, None, None], np.float64(scale)
    else:
        if image_size is None:
            raise ValueError("the image size is unknown: give it (--image_size W H) or normalise by the visible joints")
        size = np.asarray(image_size, np.float64)
        if size.shape not in ((2,), (x.shape[1], 2)) or not (np.isfinite(size).all() and (size > 0).all()):
            raise ValueError(f"bad image size {size.tolist() if size.size <= 4 else size.shape}: "
                             f"expected positive (width, height) or one per frame")
        size = np.broadcast_to(size, (x.shape[1], 2))
        center = (size / 2).T[:, :, None, None]  # (2, T, 1, 1)
        scale = size.max(axis=1)[None, :, None, None]
    xy = (x[:2].astype(np.float64) - center) / scale
    return np.concatenate([np.where(vis[None], xy, 0), x[2:3]]).astype(np.float32)


def _linear_index(length: int, frames: int):
    """Source frames and weights of resize_time's linear resize (the same formulas)."""
    src = np.maximum((np.arange(frames) + 0.5) * (length / frames) - 0.5, 0)
    lo = np.minimum(np.floor(src).astype(np.int64), length - 1)
    weight = np.where(lo < length - 1, src - lo, 0).astype(np.float32)
    return lo, np.minimum(lo + 1, length - 1), weight


def resize_time_2d(x: np.ndarray, frames: int) -> np.ndarray:
    """Mask-aware resize of a cleaned (3, T, V, M) sequence to `frames` frames.

    Each output frame sits between two source frames as in resize_time (linear, half-pixel
    centres). A joint visible in both is interpolated linearly, x, y and score, bit for bit as
    resize_time; where either is missing the joint is copied from the nearer source frame (the
    later one at equal distance), so a visible joint is never pulled toward the (0, 0) of a
    missing one and a missing joint stays exactly (0, 0, 0). A fully visible sequence gives
    resize_time's output.
    """
    lo, hi, weight = _linear_index(x.shape[1], frames)
    x0, x1 = x[:, lo].astype(np.float32), x[:, hi].astype(np.float32)
    w = weight[None, :, None, None]
    linear = (x0 + w.astype(np.float64) * (x1 - x0)).astype(np.float32)
    nearest = np.where(w >= 0.5, x1, x0)
    both = (x0[2] > 0) & (x1[2] > 0)
    return np.where(both[None], linear, nearest).astype(np.float32)


def person_gaps_2d(x: np.ndarray) -> list:
    """[(person, first absent frame, last absent frame)] for each person of a (3, T, V, M)
    sequence who disappears and comes back (no visible joint in frames between two with one)."""
    gaps = []
    present = visible_2d(x).any(axis=1)  # (T, M)
    for m in range(present.shape[1]):
        seen = np.flatnonzero(present[:, m])
        if len(seen) and len(seen) != seen[-1] - seen[0] + 1:
            absent = np.setdiff1d(np.arange(seen[0], seen[-1] + 1), seen)
            gaps.append((m, int(absent[0]), int(absent[-1])))
    return gaps


def to_fixed_length_2d(x: np.ndarray, frames: int = 50, max_persons: int = 2, per_frame: bool = True,
                       normalize: str = "visible", image_size=None, min_score: float = 0.0,
                       channels: int = 3, frame_names=None) -> np.ndarray:
    """Raw 2-D (3, T, V, P) x, y, score -> float32 (channels, frames, V, max_persons).

    clean_2d (missing joints -> 0), select_persons_2d, drop the empty frames at both ends,
    normalize_2d, resize_time_2d; channels=2 drops the score (missing joints are then (0, 0),
    the same as a joint at the centre). Raises ValueError for a sequence with nobody in it.
    """
    if channels not in (2, 3):
        raise ValueError(f"channels must be 2 (x, y) or 3 (x, y, score), not {channels}")
    x = clean_2d(x, min_score, frame_names)
    x = select_persons_2d(x, max_persons, per_frame)
    seen = np.flatnonzero(visible_2d(x).any(axis=(1, 2)))
    x = trim_empty_frames_2d(x)
    if image_size is not None and np.ndim(image_size) == 2 and len(seen):
        image_size = np.asarray(image_size)[seen[0]:seen[-1] + 1]
    x = normalize_2d(x, normalize, image_size)
    return resize_time_2d(x, frames)[:channels]
