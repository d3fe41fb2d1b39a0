"""The CTR-GCN / MAMP / STARS NTU RGB+D preprocessing (`NTU60_XSub.npz` and friends), one sample at a time.

Upstream it is three scripts run in a row (Uason-Chen/CTR-GCN and maoyunyao/MAMP, data/ntu*/):
`get_raw_skes_data.py` groups each file's body records by body ID, `get_raw_denoised_data.py`
drops noisy body IDs and keeps up to two actors, and `seq_transformation.py` moves the origin,
pads every sample to a fixed length and writes the splits with one-hot labels. Here:

    skeleton = ntu.read_skeleton(path, columns=ntu.XYZ)       # colours are not needed
    row, report = sample_to_npz_row(skeleton, name, "ntu60")   # (300, 150) float32
    train, test = split_indices(names, "xsub")                # upstream sample order
    y_train = one_hot(labels[train], 60)                       # float64, as upstream saves it

Every function states which upstream step it reproduces. The arithmetic is upstream's: float32
joints parsed through float64, float32 motion (numpy's var), float32 sums to find empty frames and
float32 subtraction for the translation. Upstream needs numpy < 1.24 (`np.int`), so where numpy 2
would round differently (a Python float times a numpy float32 scalar) the numpy 1 result is
computed explicitly. On the six genuine files of the golden set the outputs are bit-identical
(tests/test_ctrgcn_pipeline.py).

Quirks kept on purpose, because trained models expect data made this way:
- frames without any body are deleted before anything else, so later frames move earlier;
- a body ID's frames are numbered consecutively from its first appearance: if it disappears and
  comes back, its later frames are shifted back to close the gap;
- a file with a single body ID skips all denoising (even a 5-frame body is kept) and keeps its
  all-zero frames; files with several body IDs lose them;
- the motion-range rule (MOTION_LOW .. MOTION_HIGH) exists upstream but is never reached;
- an actor "does not overlap" when the intervals share at most one frame (the later body then
  overwrites that frame), and actor 2 starts from the virtual interval [0, 0], so its interval
  always begins at frame 0; a body overlapping both actors is silently discarded;
- NTU120's script pads a one-actor sample by repeating that actor, NTU60's with zeros;
- the "denoising failed" logs take the label from the last two digits of the name (A105 -> 5).
Failures where upstream crashes (or asserts) raise ValueError with the reason instead.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import NamedTuple

import numpy as np

from tools.raw import ntu

NUM_JOINTS = 25
ACTOR_WIDTH = NUM_JOINTS * 3  # 75 values per actor and frame: joint-major, then x y z
MAX_FRAMES = 300  # upstream pads to the longest denoised sample, 300 frames on NTU60

# get_raw_denoised_data thresholds
LENGTH_THRESHOLD = 11  # a body ID seen in this many frames or fewer is noise
SPREAD_X_OVER_Y = 0.8  # a frame is noisy when its x extent exceeds 0.8 times its y extent
SPREAD_NOISY_RATIO = 0.69754  # a body ID with at least this fraction of noisy frames is noise
MOTION_LOW, MOTION_HIGH = 0.089925, 2.0  # defined upstream, but the motion rule is unreachable (disabled)
TWO_PERSON_LABEL = 50  # the debug logs treat int(name[-2:]) >= 50 as a two-person action

# seq_transformation: how a one-actor sample fills the second actor's 75 columns
SINGLE_ACTOR_FILL = {"ntu60": "zeros", "ntu120": "copy"}

# benchmark -> (name field, training ids, test ids), in the order upstream concatenates them
SPLITS = {
    "xsub": ("performer", ntu.NTU60_TRAIN_SUBJECTS,
             tuple(i for i in range(1, 41) if i not in ntu.NTU60_TRAIN_SUBJECTS)),
    "xview": ("camera", (2, 3), (1,)),
    "xsub120": ("performer", ntu.NTU120_TRAIN_SUBJECTS,
                tuple(i for i in range(1, 107) if i not in ntu.NTU120_TRAIN_SUBJECTS)),
    "xset": ("setup", tuple(range(2, 33, 2)), tuple(range(1, 33, 2))),
}
# benchmark -> (MAMP / STARS file name, CTR-GCN file name); the arrays are the same
NPZ_FILES = {
    "xsub": ("NTU60_XSub.npz", "NTU60_CS.npz"),
    "xview": ("NTU60_XView.npz", "NTU60_CV.npz"),
    "xsub120": ("NTU120_XSub.npz", "NTU120_CSub.npz"),
    "xset": ("NTU120_XSet.npz", "NTU120_CSet.npz"),
}

# headers and message formats of the upstream log files (for reports that read like upstream's)
LOG_HEADERS = {
    "frames_drop.log": None,
    "noise_length.log": "{:^20}\t{:^17}\t{:^8}\t{}".format("Skeleton", "bodyID", "Motion", "Length"),
    "noise_spread.log": "{:^20}\t{:^17}\t{:^8}\t{:^8}".format("Skeleton", "bodyID", "Motion", "Rate"),
    "noise_motion.log": "{:^20}\t{:^17}\t{:^8}".format("Skeleton", "bodyID", "Motion"),
    "denoised_failed_1.log": None,
    "denoised_failed_2.log": None,
    "missing_skes.log": "{:^20}\t{}\t{}".format("Skeleton", "num_frames", "num_missing"),
    "missing_skes_1.log": "{:^20}\t{}\t{}\t{}\t{}\t{}".format("Skeleton", "num_frames", "Actor1", "Actor2",
                                                             "Start", "End"),
    "missing_skes_2.log": "{:^20}\t{}\t{}\t{}".format("Skeleton", "num_frames", "Actor1", "Actor2"),
}


class BodyTrack(NamedTuple):
    """All records of one body ID, as get_raw_skes_data collects them."""
    body_id: int
    start: int  # first frame, counted among the frames that have a body
    joints: np.ndarray  # (L, 25, 3) float32 camera-space x y z
    colors: np.ndarray | None  # (L, 25, 2) float32 colour-image x y (None if not parsed)
    motion: np.float32 | None  # set only when the file has several body IDs

    @property
    def length(self) -> int:
        return len(self.joints)

    @property
    def end(self) -> int:
        """Last frame, always start + length - 1: upstream numbers a body's frames consecutively."""
        return self.start + self.length - 1


class Tracks(NamedTuple):
    num_frames: int  # frames that have at least one body
    dropped_frames: tuple  # file frames (0-based) without any body, removed
    bodies: list  # BodyTrack per body ID, in order of first appearance


class BodyInfo(NamedTuple):
    body_id: int
    start: int
    end: int
    motion: float | None


@dataclass
class DenoiseReport:
    """What the denoising kept, dropped and why, for one sample (upstream's logs, as data)."""
    name: str
    file_frames: int  # frame count in the file
    dropped_frames: tuple = ()  # file frames without a body (upstream frames_drop.log)
    bodies: list = field(default_factory=list)  # BodyInfo of every body ID before denoising
    too_short: list = field(default_factory=list)  # (body_id, length, motion): dropped by length
    spread_checked: bool = False  # the spread rule ran (two or more IDs left after the length rule)
    spread: list = field(default_factory=list)  # (body_id, ratio, motion, new motion or None if dropped)
    two_actors: bool = False  # multi-ID and two or more IDs survived: the (T, 150) branch
    actor1: list = field(default_factory=list)  # BodyInfo of the bodies in columns 0:75
    actor2: list = field(default_factory=list)  # BodyInfo of the bodies in columns 75:150
    discarded: list = field(default_factory=list)  # BodyInfo overlapping both actors (dropped silently)
    missing_actor: tuple | None = None  # (frames, actor1 empty, actor2 empty, first, last) for 2 actors
    removed_frames: int = 0  # all-zero frames cut from a multi-ID sample (upstream missing_skes.log)
    frames: int = 0  # frames in the output

    @property
    def multi_id(self) -> bool:
        return len(self.bodies) > 1

    def summary(self) -> list:
        """One line per thing that was dropped or changed (empty when the sample was clean)."""
        lines = []
        if self.dropped_frames:
            lines.append(f"{len(self.dropped_frames)} frames without a body removed: {list(self.dropped_frames)}")
        for body_id, length, _ in self.too_short:
            lines.append(f"body {body_id} dropped: tracked in {length} frames (<= {LENGTH_THRESHOLD})")
        for body_id, ratio, motion, new in self.spread:
            if new is None:
                lines.append(f"body {body_id} dropped: {ratio:.1%} of its frames are wider than tall "
                             f"(>= {SPREAD_NOISY_RATIO:.3%})")
        for info in self.discarded:
            lines.append(f"body {info.body_id} [{info.start}, {info.end}] dropped: overlaps both actors")
        if self.removed_frames:
            lines.append(f"{self.removed_frames} all-zero frames removed")
        return lines

    def actors_info(self) -> str | None:
        """The text upstream writes to actors_info/<name>.txt (multi-ID samples only)."""
        if not self.multi_id:
            return None
        text = "{:^17}\t{}\t{:^8}\n".format("bodyID", "Interval", "Motion")
        text += "".join(_info_line(b) for b in self.bodies) + "\n"
        short = "".join(f"Filter out: {b}, {n:d} (length).\n" for b, n, _ in self.too_short)
        text += short + ("\n" if short else "")
        if self.spread_checked:
            spread = "".join(f"Filter out: {b} (spread rate >= {SPREAD_NOISY_RATIO:.2f}).\n" if new is None
                             else f"{b}: motion {motion:.6f} -> {new:.6f}\n"
                             for b, _, motion, new in self.spread)
            text += spread + ("\n" if spread else "")
        if not self.two_actors:
            text += f"Main actor: {self.actor1[0].body_id}"
        else:
            for title, members in (("Actor1", self.actor1), ("Actor2", self.actor2)):
                text += "\n" + f"{title:^17}\tInterval\t{'Motion':^8}\n" + "".join(map(_info_line, members))
        return text + "\n"

    def log_messages(self) -> dict:
        """Upstream log file name -> the messages this sample adds to it (often none)."""
        name = self.name
        out = {key: [] for key in LOG_HEADERS}
        if self.dropped_frames:
            dropped = list(self.dropped_frames)
            out["frames_drop.log"].append(f"{name}: {len(dropped)} frames missed: {dropped}\n")
        for body_id, length, motion in self.too_short:
            out["noise_length.log"].append(f"{name}\t{body_id}\t{motion:.6f}\t{length:^6d}")
        for body_id, ratio, motion, new in self.spread:
            if new is None:
                out["noise_spread.log"].append(f"{name}\t{body_id}\t{motion:.6f}\t{ratio:.6f}")
        if self.multi_id and name[-2:].isdigit():
            label = int(name[-2:])  # upstream's label here: the last two digits only
            if self.two_actors and label < TWO_PERSON_LABEL:
                out["denoised_failed_1.log"].append(name)
            elif not self.two_actors and label >= TWO_PERSON_LABEL:
                out["denoised_failed_2.log"].append(name)
        if self.missing_actor is not None:
            frames, cnt1, cnt2, first, last = self.missing_actor
            if cnt1 > cnt2:
                out["missing_skes_1.log"].append(
                    f"{name}\t{frames:^10d}\t{cnt1:^6d}\t{cnt2:^6d}\t{first:^5d}\t{last:^3d}")
            elif cnt2 > 0:
                out["missing_skes_2.log"].append(f"{name}\t{frames:^10d}\t{cnt1:^6d}\t{cnt2:^6d}")
        if self.removed_frames:
            before = self.frames + self.removed_frames
            out["missing_skes.log"].append(f"{name}\t{before:^10d}\t{self.removed_frames:^11d}")
        return out


def _info_line(b: BodyInfo) -> str:
    return f"{b.body_id}\t{[b.start, b.end]!s:^8}\t{b.motion:f}\n"


def upstream_logs(reports) -> dict:
    """Log file name -> its full text as upstream writes it for these samples, in this order."""
    texts = {}
    per_sample = [r.log_messages() for r in reports]
    for key, header in LOG_HEADERS.items():
        lines = ([header] if header is not None else []) + [m for msgs in per_sample for m in msgs[key]]
        texts[key] = "".join(line + "\n" for line in lines)
    return texts


# ---- get_raw_skes_data ---------------------------------------------------------------------------

def body_motion(joints: np.ndarray) -> np.float32:
    """Upstream's motion of a body: the variance of x, y and z over all its joints and frames pooled,
    summed over the three (not a per-joint variance over time). float32, as numpy computes it."""
    return np.sum(np.var(np.ascontiguousarray(joints, np.float32).reshape(-1, 3), axis=0))


def body_tracks(skeleton: ntu.Skeleton) -> Tracks:
    """Group a file's body records by body ID (get_raw_skes_data.get_raw_bodies_data).

    Frames with no body are deleted and the rest renumbered 0..num_frames-1. A body ID starts at
    the (renumbered) frame where it first appears and its frames are numbered consecutively from
    there, whatever frames it is missing from. Joints are x y z and colours colorX colorY, parsed
    to float32. The motion is computed only when the file has two or more body IDs.
    Raises ValueError if no frame has a body (upstream asserts) or the joints are not Kinect v2's 25.
    """
    if skeleton.joints.shape[1] != NUM_JOINTS:
        raise ValueError(f"{skeleton.joints.shape[1]} joints per body; this pipeline needs {NUM_JOINTS}")
    present = np.zeros(skeleton.num_frames, bool)
    present[skeleton.frame] = True
    dropped = tuple(int(t) for t in np.flatnonzero(~present))
    if len(dropped) == skeleton.num_frames:
        raise ValueError(f"none of the {skeleton.num_frames} frames has a body")
    renumbered = np.cumsum(present) - 1  # file frame -> index among the frames that have a body
    ids, first = np.unique(skeleton.body_id, return_index=True)
    with_colors = skeleton.joints.shape[2] >= 7
    bodies = []
    for k in np.argsort(first):
        rows = np.flatnonzero(skeleton.body_id == ids[k])  # file order
        joints = skeleton.joints[rows, :, :3].astype(np.float32)
        colors = skeleton.joints[rows, :, 5:7].astype(np.float32) if with_colors else None
        bodies.append(BodyTrack(int(ids[k]), int(renumbered[skeleton.frame[rows[0]]]), joints, colors, None))
    if len(bodies) > 1:
        bodies = [b._replace(motion=body_motion(b.joints)) for b in bodies]
    return Tracks(int(present.sum()), dropped, bodies)


# ---- get_raw_denoised_data -----------------------------------------------------------------------

def drop_short_bodies(bodies: list, report: DenoiseReport) -> list:
    """Length rule (denoising_by_length): drop body IDs seen in LENGTH_THRESHOLD frames or fewer."""
    kept = []
    for b in bodies:
        if b.length <= LENGTH_THRESHOLD:
            report.too_short.append((b.body_id, b.length, float(b.motion)))
        else:
            kept.append(b)
    return kept


def noisy_spread_frames(joints: np.ndarray) -> np.ndarray:
    """(L,) bool: frames whose x extent is more than SPREAD_X_OVER_Y times their y extent
    (get_valid_frames_by_spread, on the camera-space joints). The extents are float32; the
    product and comparison are float64 as numpy 1 evaluates `0.8 * np.float32`."""
    x_extent = joints[:, :, 0].max(axis=1) - joints[:, :, 0].min(axis=1)
    y_extent = joints[:, :, 1].max(axis=1) - joints[:, :, 1].min(axis=1)
    return ~(x_extent.astype(np.float64) <= SPREAD_X_OVER_Y * y_extent.astype(np.float64))


def drop_spread_noise(bodies: list, report: DenoiseReport) -> list:
    """Spread rule (denoising_by_spread), for two or more body IDs.

    Bodies are visited in order of first appearance and the visit stops as soon as one body is
    left (so the rest are neither checked nor updated). A body with a fraction of noisy frames
    >= SPREAD_NOISY_RATIO is dropped; one with some noisy frames keeps them all, but its motion
    becomes min(motion, motion of its clean frames).
    """
    report.spread_checked = True
    alive = list(bodies)
    for b in bodies:
        if len(alive) == 1:
            break
        noisy = noisy_spread_frames(b.joints)
        num_noisy = int(noisy.sum())
        if num_noisy == 0:
            continue
        ratio = num_noisy / float(b.length)
        i = next(k for k, a in enumerate(alive) if a.body_id == b.body_id)
        if ratio >= SPREAD_NOISY_RATIO:
            del alive[i]
            report.spread.append((b.body_id, ratio, float(b.motion), None))
        else:
            motion = min(b.motion, body_motion(b.joints[~noisy]))
            alive[i] = b._replace(motion=motion)
            report.spread.append((b.body_id, ratio, float(b.motion), float(motion)))
    return alive


def rank_by_motion(bodies: list) -> list:
    """Most motion first; equal motions keep their order of first appearance (Python's stable sort)."""
    return sorted(bodies, key=lambda b: b.motion, reverse=True)


def one_actor_points(body: BodyTrack, num_frames: int) -> np.ndarray:
    """(num_frames, 75) float32, zero outside the body's frames (get_one_actor_points)."""
    _check_fits(body, num_frames)
    out = np.zeros((num_frames, ACTOR_WIDTH), np.float32)
    out[body.start:body.end + 1] = body.joints.reshape(-1, ACTOR_WIDTH)
    return out


def _check_fits(body: BodyTrack, num_frames: int) -> None:
    if body.end >= num_frames:  # only if an ID is listed twice in one frame; upstream crashes
        raise ValueError(f"body {body.body_id} has {body.length} records from frame {body.start}, "
                         f"past the {num_frames} frames (listed twice in a frame?)")


def two_actor_points(ranked: list, num_frames: int, report: DenoiseReport) -> np.ndarray:
    """(num_frames, 150) float32 from bodies ranked by motion (the else branch of get_two_actors_points).

    Actor 1 (columns 0:75) is the body with the most motion. Each further body, in rank order,
    joins actor 1 if it does not overlap actor 1's interval so far, else actor 2 if it does not
    overlap actor 2's, else it is discarded; the interval it joins grows to cover it. "Does not
    overlap" is min(ends) - max(starts) <= 0, so sharing one frame is allowed (the later body
    overwrites it). Actor 2's interval starts as the virtual [0, 0]: the first candidate always
    fits, and afterwards the interval always begins at frame 0.
    """
    out = np.zeros((num_frames, 2 * ACTOR_WIDTH), np.float32)
    first = ranked[0]
    spans = [[first.start, first.end], [0, 0]]  # actor 2's starts as the virtual [0, 0]
    for rank, b in enumerate(ranked):
        _check_fits(b, num_frames)
        info = BodyInfo(b.body_id, b.start, b.end, float(b.motion))
        if rank == 0:
            actor = 0
        else:
            free = [min(end, b.end) - max(start, b.start) <= 0 for start, end in spans]
            if not any(free):
                report.discarded.append(info)
                continue
            actor = free.index(True)
            spans[actor] = [min(spans[actor][0], b.start), max(spans[actor][1], b.end)]
        out[b.start:b.end + 1, actor * ACTOR_WIDTH:(actor + 1) * ACTOR_WIDTH] = b.joints.reshape(-1, ACTOR_WIDTH)
        (report.actor1 if actor == 0 else report.actor2).append(info)
    return out


def remove_missing_frames(seq: np.ndarray, report: DenoiseReport, two_actors: bool) -> np.ndarray:
    """Cut frames whose values sum to 0 in float32 (remove_missing_frames; meant as "all zero").

    For two actors it first records how many frames each actor is empty in, and whether actor 1
    is empty in the first / last frame (upstream's missing_skes_1/2 logs).
    """
    if two_actors:
        empty1 = seq[:, :ACTOR_WIDTH].sum(axis=1) == 0
        empty2 = seq[:, ACTOR_WIDTH:].sum(axis=1) == 0
        report.missing_actor = (len(seq), int(empty1.sum()), int(empty2.sum()), int(empty1[0]), int(empty1[-1]))
    keep = seq.sum(axis=1) != 0
    report.removed_frames = int(len(seq) - keep.sum())
    return seq[keep] if report.removed_frames else seq


def denoise(skeleton: ntu.Skeleton, name: str = "") -> tuple:
    """One file -> ((T, 75) or (T, 150) float32 camera-space joints, DenoiseReport).

    get_raw_skes_data followed by get_raw_denoised_data for one sample:
    - one body ID in the file: its joints as they are, no rule applied, no frame removed;
    - several: the length rule, then (if two or more are left) the spread rule, then (if still
      two or more) the actors by motion: (T, 150); if one is left: (T, 75). Either way frames
      that are all zero are then removed.
    The motion-range rule is not applied: upstream returns before reaching it.
    Raises ValueError where upstream would crash (every body ID dropped by the length rule, ...).
    """
    tracks = body_tracks(skeleton)
    report = DenoiseReport(name=name, file_frames=skeleton.num_frames, dropped_frames=tracks.dropped_frames)
    report.bodies = [BodyInfo(b.body_id, b.start, b.end, None if b.motion is None else float(b.motion))
                     for b in tracks.bodies]
    if len(tracks.bodies) == 1:
        seq = one_actor_points(tracks.bodies[0], tracks.num_frames)
        report.frames = len(seq)
        return seq, report
    bodies = drop_short_bodies(tracks.bodies, report)
    if not bodies:
        raise ValueError(f"every body ID is tracked in {LENGTH_THRESHOLD} frames or fewer (upstream crashes)")
    if len(bodies) > 1:
        bodies = drop_spread_noise(bodies, report)
    if len(bodies) == 1:
        b = bodies[0]
        report.actor1.append(BodyInfo(b.body_id, b.start, b.end, float(b.motion)))
        seq = remove_missing_frames(one_actor_points(b, tracks.num_frames), report, two_actors=False)
    else:
        report.two_actors = True
        seq = two_actor_points(rank_by_motion(bodies), tracks.num_frames, report)
        seq = remove_missing_frames(seq, report, two_actors=True)
    report.frames = len(seq)
    return seq, report


# ---- seq_transformation --------------------------------------------------------------------------

def _actors(seq: np.ndarray) -> int:
    if seq.ndim != 2 or seq.shape[1] not in (ACTOR_WIDTH, 2 * ACTOR_WIDTH):
        raise ValueError(f"expected a (T, 75) or (T, 150) sequence, got shape {seq.shape}")
    return seq.shape[1] // ACTOR_WIDTH


def translate(seq: np.ndarray) -> np.ndarray:
    """seq_translation: subtract one origin from every frame, actors and joints, in float32.

    The origin is joint 2 (spine middle, columns 3:6) of actor 1 in the first frame where actor 1
    has a non-zero value. With two actors, the frames in which an actor's values sum to 0 are set
    back to zero for that actor; a one-actor sample has no such step (a zero frame becomes -origin).
    Returns a new array. Raises ValueError if actor 1 is zero everywhere (upstream crashes).
    """
    seq = np.asarray(seq, np.float32)
    actors = _actors(seq)
    nonzero = np.flatnonzero(np.any(seq[:, :ACTOR_WIDTH] != 0, axis=1))
    if len(nonzero) == 0:
        raise ValueError("actor 1 is zero in every frame: no origin")
    origin = seq[nonzero[0], 3:6].copy()
    out = seq - np.tile(origin, NUM_JOINTS * actors)
    if actors == 2:
        for actor in (0, 1):
            columns = slice(actor * ACTOR_WIDTH, (actor + 1) * ACTOR_WIDTH)
            out[seq[:, columns].sum(axis=1) == 0, columns] = 0
    return out


def align(seq: np.ndarray, frames: int = MAX_FRAMES, fill: str = "zeros") -> np.ndarray:
    """align_frames for one sample: (frames, 150) float32, zero after the sequence.

    A one-actor sample fills columns 75:150 with zeros (fill="zeros", NTU60's script) or with a
    copy of the actor (fill="copy", NTU120's script). Upstream's `frames` is the longest
    sample of the dataset (300 on NTU60); ValueError if this one is longer.
    """
    seq = np.asarray(seq, np.float32)
    actors = _actors(seq)
    if fill not in ("zeros", "copy"):
        raise ValueError(f"fill must be 'zeros' or 'copy', not {fill!r}")
    if len(seq) > frames:
        raise ValueError(f"{len(seq)} frames, longer than the {frames} the array holds")
    out = np.zeros((frames, 2 * ACTOR_WIDTH), np.float32)
    out[:len(seq), :actors * ACTOR_WIDTH] = seq
    if actors == 1 and fill == "copy":
        out[:len(seq), ACTOR_WIDTH:] = seq
    return out


def sample_to_npz_row(skeleton: ntu.Skeleton, name: str = "", dataset: str = "ntu60",
                      frames: int = MAX_FRAMES) -> tuple:
    """One file -> ((frames, 150) float32 row of x_train / x_test, DenoiseReport): denoise, translate, align.

    dataset picks the one-actor fill ("ntu60": zeros, "ntu120": a copy, as each upstream script).
    """
    if dataset not in SINGLE_ACTOR_FILL:
        raise ValueError(f"dataset must be one of {sorted(SINGLE_ACTOR_FILL)}, not {dataset!r}")
    seq, report = denoise(skeleton, name)
    return align(translate(seq), frames, SINGLE_ACTOR_FILL[dataset]), report


def split_indices(names, benchmark: str) -> tuple:
    """(train, test) int64 positions into `names`, in the order seq_transformation.get_indices gives.

    Each part is concatenated id by id, in the order of SPLITS[benchmark] (training subjects as
    listed; cameras 2 then 3; even setups ascending; test ids ascending), each block in the order
    of `names` (upstream: skes_available_name.txt, sorted). A name whose id is in neither list
    (e.g. a subject above 40 in xsub) is in neither part, as upstream.
    """
    if benchmark not in SPLITS:
        raise ValueError(f"benchmark must be one of {sorted(SPLITS)}, not {benchmark!r}")
    key, train_ids, test_ids = SPLITS[benchmark]
    values = np.array([getattr(ntu.parse_name(n), key) for n in names], np.int64).reshape(-1)

    def blocks(ids):
        rank = np.full(max(max(ids), int(values.max(initial=0))) + 1, len(ids), np.int64)
        rank[list(ids)] = np.arange(len(ids))
        position = rank[values]
        inside = np.flatnonzero(position < len(ids))
        return inside[np.argsort(position[inside], kind="stable")].astype(np.int64)

    return blocks(train_ids), blocks(test_ids)


def one_hot(labels, num_classes: int) -> np.ndarray:
    """(N, num_classes) float64 with a 1 at each 0-based label (one_hot_vector; np.zeros' dtype,
    which np.savez keeps: MAMP reads the label back as the column of the non-zero entry)."""
    labels = np.asarray(labels, np.int64).reshape(-1)
    if labels.size and (labels.min() < 0 or labels.max() >= num_classes):
        raise ValueError(f"labels must be in [0, {num_classes}), got {labels.min()}..{labels.max()}")
    out = np.zeros((len(labels), num_classes))
    out[np.arange(len(labels)), labels] = 1
    return out
