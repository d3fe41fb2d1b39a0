"""The official NTU RGB+D 60 / 120 raw release: `.skeleton` files, sample names, splits, lists.

    skeleton = read_skeleton("S001C001P001R001A001.skeleton")
    x = lineage_xyz(skeleton)               # (3, T, 25, 2) as the st-gcn / AimCLR lineage reads it
    parse_name("S001C001P001R001A001")      # NtuName(setup=1, camera=1, performer=1, ...)

A `.skeleton` file is line-structured text: the frame count, then per frame the body count and per
body a 10-value header line, the joint count and one 12-value line per joint (x y z depthX depthY
colorX colorY orientationW..Z trackingState). `read_skeleton` keeps every value, one row per body
record, so each pipeline (lineage, 2s-AGCN, CTR-GCN / MAMP) selects bodies its own way from the
same parse, and `write_skeleton` emits the official bytes again (tests build fake datasets with it).
"""
from __future__ import annotations

import os
import re
from typing import NamedTuple

import numpy as np

from tools.raw.common import InputError

NAME_RE = re.compile(r"S(\d{3})C(\d{3})P(\d{3})R(\d{3})A(\d{3})")
SUFFIX = ".skeleton"
NUM_JOINTS = 25
JOINT_VALUES = 12  # x y z depthX depthY colorX colorY orientationW X Y Z trackingState
BODY_VALUES = 10  # bodyID clippedEdges handLeftConfidence handLeftState handRightConfidence
#                   handRightState isRestricted leanX leanY trackingState
INT_BODY_FIELDS = (0, 1, 2, 3, 4, 5, 6)  # printed as integers (leanX, leanY are floats, state int)
MAX_FRAMES = 300  # the lineage's fixed array length; the longest NTU sequence has 300 frames

# official training sets (the other ids are the test sets), spec/foundation.md section 1.4
NTU60_TRAIN_SUBJECTS = (1, 2, 4, 5, 8, 9, 13, 14, 15, 16, 17, 18, 19, 25, 27, 28, 31, 34, 35, 38)
NTU120_TRAIN_SUBJECTS = NTU60_TRAIN_SUBJECTS + (
    45, 46, 47, 49, 50, 52, 53, 54, 55, 56, 57, 58, 59, 70, 74, 78, 80, 81, 82, 83, 84, 85, 86, 89, 91,
    92, 93, 94, 95, 97, 98, 100, 103)
TRAIN_CAMERAS = (2, 3)
# benchmark -> (dataset, the name field that decides, the training ids or a rule)
BENCHMARKS = {
    "xsub": ("ntu60", "performer", NTU60_TRAIN_SUBJECTS),
    "xview": ("ntu60", "camera", TRAIN_CAMERAS),
    "xsub120": ("ntu120", "performer", NTU120_TRAIN_SUBJECTS),
    "xset": ("ntu120", "setup", tuple(range(2, 33, 2))),  # even setups train
}
DATASETS = {"ntu60": {"setups": 17, "classes": 60}, "ntu120": {"setups": 32, "classes": 120}}
# samples per split after the missing-skeleton lists are removed (spec 1.4, from CTR-GCN's statistics)
OFFICIAL_COUNTS = {
    "xsub": {"train": 40091, "val": 16487},
    "xview": {"train": 37646, "val": 18932},
    "xsub120": {"train": 63026, "val": 50919},
    "xset": {"train": 54468, "val": 59477},
}
REPO_ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
MISSING_LISTS = {d: os.path.join(REPO_ROOT, "data", "ntu_rgbd", f"{d}_samples_with_missing_skeletons.txt")
                 for d in DATASETS}


class NtuName(NamedTuple):
    setup: int
    camera: int
    performer: int
    replication: int
    action: int

    @property
    def label(self) -> int:
        return self.action - 1  # 0-based everywhere in the lineage


class Skeleton(NamedTuple):
    """Every body record of one file, in file order."""
    num_frames: int
    frame: np.ndarray  # (B,) int64: the frame of each body record
    slot: np.ndarray  # (B,) int64: its position among the bodies listed in that frame
    body_id: np.ndarray  # (B,) int64: Kinect tracking id
    info: np.ndarray  # (B, 9) float64: the header values after bodyID
    joints: np.ndarray  # (B, V, 12) float64


def sample_name(path_or_name: str) -> str:
    name = os.path.basename(path_or_name)
    return name[:-len(SUFFIX)] if name.endswith(SUFFIX) else name


def parse_name(name: str) -> NtuName:
    """`SsssCcccPpppRrrrAaaa[.skeleton]` -> its five numbers; InputError if it is not that."""
    stem = sample_name(name)
    match = NAME_RE.fullmatch(stem)
    if match is None:
        raise InputError(name, "file name does not parse as SsssCcccPpppRrrrAaaa (e.g. S001C002P003R002A013)")
    return NtuName(*(int(g) for g in match.groups()))


def is_train(name: NtuName, benchmark: str) -> bool:
    _, field, train_ids = BENCHMARKS[benchmark]
    return getattr(name, field) in train_ids


def read_missing_list(path: str) -> set:
    """Sample names in an official missing-skeleton list (with or without its header, CRLF or LF)."""
    with open(path, encoding="utf-8", errors="replace") as f:
        return {m.group(0) for line in f if (m := NAME_RE.fullmatch(line.strip()))}


def _ints(tokens, source, line):
    try:
        return [int(t) for t in tokens]
    except ValueError:
        text = b" ".join(tokens).decode(errors="replace")
        raise InputError(f"{source} line {line}", f"expected integers, got {text!r}") from None


XYZ = (0, 1, 2)
ALL_COLUMNS = tuple(range(JOINT_VALUES))


def read_skeleton(path: str, columns: tuple = ALL_COLUMNS) -> Skeleton:
    """Parse one `.skeleton` file; InputError naming the file and line for anything malformed.

    columns: which of the 12 per-joint values to convert (`XYZ` for positions only); the joints
    array then has that many in its last axis. Converting text to float is most of the cost, so
    the lineage tools read XYZ only (about 4x faster). The header lines are walked in Python
    (a few hundred per file); all joint lines are split and converted in one go.
    """
    source = os.path.basename(path)
    with open(path, "rb") as f:
        lines = f.read().split(b"\n")
    if not any(line.strip() for line in lines):
        raise InputError(source, "empty file")
    total = len(lines)
    num_frames = _ints(lines[0].split(), source, 1)
    if len(num_frames) != 1 or num_frames[0] < 0:
        raise InputError(f"{source} line 1", "the first line must hold the frame count")
    num_frames = num_frames[0]
    frames, slots, headers, starts, joint_lines = [], [], [], [], []
    pos = 1  # 0-based index of the next line
    num_joints = None
    for t in range(num_frames):
        if pos >= total or not lines[pos].strip():
            raise InputError(source, f"truncated: the file ends in frame {t + 1} of {num_frames} (line {pos + 1})")
        count = _ints(lines[pos].split(), source, pos + 1)
        if len(count) != 1 or count[0] < 0:
            raise InputError(f"{source} line {pos + 1}", f"expected the body count of frame {t + 1}")
        pos += 1
        for m in range(count[0]):
            if pos + 1 >= total:
                raise InputError(source, f"truncated: the file ends in frame {t + 1} of {num_frames} (line {pos + 1})")
            header = lines[pos].split()
            if len(header) != BODY_VALUES:
                raise InputError(f"{source} line {pos + 1}",
                                 f"body header of frame {t + 1} has {len(header)} values, expected {BODY_VALUES}")
            joint_count = _ints(lines[pos + 1].split(), source, pos + 2)
            if len(joint_count) != 1 or joint_count[0] <= 0:
                raise InputError(f"{source} line {pos + 2}", f"expected the joint count of frame {t + 1}")
            if num_joints is None:
                num_joints = joint_count[0]
            elif joint_count[0] != num_joints:
                raise InputError(f"{source} line {pos + 2}",
                                 f"{joint_count[0]} joints, earlier bodies have {num_joints}")
            start, end = pos + 2, pos + 2 + num_joints
            if end > total:
                raise InputError(source, f"truncated: the file ends in frame {t + 1} of {num_frames} (line {total})")
            headers.append(header)
            frames.append(t)
            slots.append(m)
            starts.append(start)
            joint_lines.extend(lines[start:end])
            pos = end
    if any(line.strip() for line in lines[pos:]):
        raise InputError(f"{source} line {pos + 1}", f"unexpected content after the last of {num_frames} frames")

    num_joints = num_joints or NUM_JOINTS
    tokens = b" ".join(joint_lines).split()
    try:
        if len(tokens) != len(starts) * num_joints * JOINT_VALUES:
            raise ValueError("misaligned")
        joints = np.array([list(map(float, tokens[c::JOINT_VALUES])) for c in columns], np.float64).T
        info = np.array([list(map(float, h[1:])) for h in headers], np.float64).reshape(len(headers), BODY_VALUES - 1)
        body_id = np.array([int(h[0]) for h in headers], np.int64)
    except ValueError:
        _raise_bad_line(lines, starts, num_joints, source)
        raise
    joints = joints.reshape(len(starts), num_joints, len(columns))
    if not np.isfinite(joints).all():
        b, j, _ = np.argwhere(~np.isfinite(joints))[0]
        raise InputError(f"{source} line {starts[b] + j + 1}", f"NaN or inf in the joints of frame {frames[b] + 1}")
    return Skeleton(num_frames, np.array(frames, np.int64), np.array(slots, np.int64), body_id, info, joints)


def _raise_bad_line(lines, starts, num_joints, source):
    """Name the first body or joint line that does not hold the right count of numbers."""
    for start in starts:
        for k in (start - 2, *range(start, start + num_joints)):
            tokens = lines[k].split()
            expected = BODY_VALUES if k == start - 2 else JOINT_VALUES
            if len(tokens) != expected:
                raise InputError(f"{source} line {k + 1}", f"{len(tokens)} values, expected {expected}")
            for i, tok in enumerate(tokens):
                try:
                    int(tok) if k == start - 2 and i == 0 else float(tok)
                except ValueError:
                    raise InputError(f"{source} line {k + 1}",
                                     f"not a number: {tok.decode(errors='replace')!r}") from None


def _number(value: float) -> str:
    # the official files print 7 significant digits, C# style: 0.1725972, -7.257856E-05
    return "%.7G" % value


def write_skeleton(path: str, skeleton: Skeleton, newline: str = "\r\n") -> None:
    """Write `skeleton` in the official byte layout (the release uses CRLF line ends)."""
    out = [str(skeleton.num_frames)]
    b = 0
    count = len(skeleton.frame)
    for t in range(skeleton.num_frames):
        start = b
        while b < count and skeleton.frame[b] == t:
            b += 1
        out.append(str(b - start))
        for k in range(start, b):
            info = skeleton.info[k]
            header = [str(int(skeleton.body_id[k]))]
            header += [str(int(v)) for v in info[:6]] + [_number(v) for v in info[6:8]] + [str(int(info[8]))]
            out.append(" ".join(header))
            out.append(str(skeleton.joints.shape[1]))
            for joint in skeleton.joints[k]:
                out.append(" ".join([_number(v) for v in joint[:-1]] + [str(int(joint[-1]))]))
    with open(path, "w", newline="") as f:
        f.write(newline.join(out) + newline)


def lineage_xyz(skeleton: Skeleton, max_body: int = 2, max_frames: int = MAX_FRAMES) -> np.ndarray:
    """(3, max_frames, V, max_body) float32 as the st-gcn / AimCLR lineage reads a file.

    Body slot m holds the m-th body listed in each frame (file order, no tracking by id: a
    listing order that changes between frames swaps the slots, as upstream); bodies past
    max_body are dropped; frames after the sequence and frames with no body are zero.
    Raises ValueError for a sequence longer than max_frames (upstream would crash on it).
    """
    if skeleton.num_frames > max_frames:
        raise ValueError(f"{skeleton.num_frames} frames, longer than the {max_frames} the arrays hold")
    out = np.zeros((3, max_frames, skeleton.joints.shape[1], max_body), np.float32)
    keep = skeleton.slot < max_body
    # advanced indices on axes 1 and 3 put the body axis first: (B, 3, V)
    out[:, skeleton.frame[keep], :, skeleton.slot[keep]] = skeleton.joints[keep][:, :, :3].transpose(0, 2, 1)
    return out


def energy_xyz(skeleton: Skeleton, max_body: int = 2, max_frames: int = MAX_FRAMES, read_bodies: int = 4) -> np.ndarray:
    """As lineage_xyz, but the 2s-AGCN selection: of the first `read_bodies` slots keep the
    `max_body` with the most motion ("energy": the sum over x, y, z of the std over the slot's
    non-zero frames and its joints), most energetic first.
    """
    slots = lineage_xyz(skeleton, read_bodies, max_frames).astype(np.float64)  # (3, T, V, S)
    energy = np.zeros(read_bodies)
    for m in range(read_bodies):
        body = slots[..., m]
        valid = body.sum(axis=(0, 2)) != 0
        if valid.any():
            energy[m] = sum(body[c, valid].std() for c in range(3))
    order = energy.argsort()[::-1][:max_body]  # a descending stable-for-ties order as upstream
    return slots[..., order].astype(np.float32)


def rotation_matrix(axis: np.ndarray, angle: float) -> np.ndarray:
    """Rotation by `angle` (radians) about `axis`, as a 3x3 matrix for column vectors.

    Built from the unit quaternion (cos(a/2), -sin(a/2) * axis), the 2s-AGCN convention; the
    identity for a (near) zero axis or angle.
    """
    axis = np.asarray(axis, np.float64)
    if np.abs(axis).sum() < 1e-6 or abs(angle) < 1e-6:
        return np.eye(3)
    axis = axis / np.sqrt(axis @ axis)
    a = np.cos(angle / 2.0)
    b, c, d = -axis * np.sin(angle / 2.0)
    return np.array([
        [a * a + b * b - c * c - d * d, 2 * (b * c + a * d), 2 * (b * d - a * c)],
        [2 * (b * c - a * d), a * a + c * c - b * b - d * d, 2 * (c * d + a * b)],
        [2 * (b * d + a * c), 2 * (c * d - a * b), a * a + d * d - b * b - c * c]])


def _angle(v1: np.ndarray, v2) -> float:
    v2 = np.asarray(v2, np.float64)
    if np.abs(v1).sum() < 1e-6:
        return 0.0
    cos = (v1 / np.linalg.norm(v1)) @ (v2 / np.linalg.norm(v2))
    return float(np.arccos(np.clip(cos, -1.0, 1.0)))


def pre_normalize(x: np.ndarray, zaxis=(0, 1), xaxis=(8, 4)) -> np.ndarray:
    """2s-AGCN's `pre_normalization` of one (3, T, V, M) sample (the AimCLR lineage never uses it).

    1. a body whose first frame is empty has its non-empty frames moved to the front; the empty
       tail after the last frame is filled by repeating the sequence from its start;
    2. subtract joint 1 (spine-mid) of body 0, per frame; joints that are zero stay zero;
    3. rotate every non-empty frame so that body 0's zaxis bone in frame 0 is parallel to z,
    4. then so that its xaxis[1] -> xaxis[0] (left -> right shoulder) vector in frame 0 is
       parallel to x.
    Arithmetic as upstream: float32 storage, float64 rotation products.
    """
    s = np.ascontiguousarray(np.asarray(x, np.float32).transpose(3, 1, 2, 0))  # (M, T, V, C)
    if s.sum() == 0:
        return x.astype(np.float32)
    length = s.shape[1]
    for p in range(len(s)):
        person = s[p]
        if person.sum() == 0:
            continue
        if person[0].sum() == 0:
            kept = person[person.sum(axis=(1, 2)) != 0].copy()
            person[:] = 0
            person[:len(kept)] = kept
        frame_sums = person.sum(axis=(1, 2))
        empty = np.flatnonzero(frame_sums == 0)
        for f in empty:  # the first empty frame with only empty frames after it starts the tail
            if person[f:].sum() == 0:
                reps = int(np.ceil((length - f) / f))
                person[f:] = np.concatenate([person[:f]] * reps)[:length - f]
                break
    center = s[0][:, 1:2, :].copy()  # (T, 1, C) spine-mid of body 0
    for p in range(len(s)):
        if s[p].sum() == 0:
            continue
        mask = (s[p].sum(-1) != 0)[..., None]
        s[p] = (s[p] - center) * mask
    # (from, to) joints of the bone to align: zaxis bottom -> top, xaxis left -> right shoulder
    for (start, end), target in (((zaxis[0], zaxis[1]), (0, 0, 1)), ((xaxis[1], xaxis[0]), (1, 0, 0))):
        v = (s[0, 0, end] - s[0, 0, start]).astype(np.float64)
        matrix = rotation_matrix(np.cross(v, target), _angle(v, target))
        for p in range(len(s)):
            if s[p].sum() == 0:
                continue
            nonempty = s[p].sum(axis=(1, 2)) != 0
            s[p, nonempty] = (s[p, nonempty].astype(np.float64) @ matrix.T).astype(np.float32)
    return s.transpose(3, 1, 2, 0)
