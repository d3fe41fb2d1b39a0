"""The official PKU-MMD raw release (part I = phase 1, part II = phase 2) and how each lineage cuts it.

    x = read_sequence("0002-L.txt")              # (T, 2, 25, 3): every frame of one untrimmed video
    rows = read_labels("label/0002-L.txt")        # [(class_id, start, end, confidence), ...]
    train, test = read_split("cross-subject.txt")  # video names such as "0002-L" or "A01N02-L"
    lineage_instance(x, start, end)               # (3, <=300, 25, 2): the AimCLR / CrosSCLR sample
    mamp_instance(x, start, end)                  # (300, 150) or None: the MAMP / STARS sample

A skeleton file holds one frame per line: 150 numbers = 2 persons x 25 joints (Kinect v2 / NTU
order) x (x, y, z), the second person all zeros when absent. A label file holds one action instance
per line, `class_id,start,end,confidence`. A split file has four lines: a title, the comma-separated
training videos, a title, the comma-separated test videos.

Video names: part I `0fff-V` (fff = 002..364), part II `AaaNnn-V` (aa = 01..26, nn = 01..13, the
subject); V is the Kinect view L, M or R. Class ids are 1-based. Part II has 41 classes but seems to
keep part I's ids (third-party code reports ids up to 51), and upstream heads are 51 wide for both.

The two lineages cut the same label row differently, by one frame:
  * AimCLR (and CrosSCLR, ASAR, HYSP...) keeps the 1-based inclusive frames start..end, i.e. rows
    start-1 .. end-1, goes through an intermediate NTU-style `.skeleton` file and the lineage reader,
    and centre-crops anything longer than 300 frames;
  * MAMP / STARS keeps the rows start .. end-1 (0-based, end excluded), drops an all-zero cut and
    keeps the first 300 frames.
"""
from __future__ import annotations

import os
import re
from typing import NamedTuple

import numpy as np

from tools.raw.common import InputError

NUM_PERSONS = 2
NUM_JOINTS = 25
VALUES_PER_FRAME = NUM_PERSONS * NUM_JOINTS * 3
MAX_FRAMES = 300  # both lineages' fixed array length
NUM_CLASSES = 51  # class ids 1..51 (part II: 41 of them in use, it seems)
SUFFIX = ".txt"
LINEAGE_SUFFIX = ".skeleton"  # AimCLR's label pickles keep the intermediate file's extension
VIEWS = ("L", "M", "R")  # the lineage codes them 001, 002, 003

PART1_RE = re.compile(r"0(\d{3})-([LMR])")
PART2_RE = re.compile(r"A(\d{2})N(\d{2})-([LMR])")
PART1_LINEAGE_RE = re.compile(r"F(\d{3})V(\d{3})C(\d{3,})L(\d{3,})")
PART2_LINEAGE_RE = re.compile(r"A0(\d{2})N0(\d{2})V(\d{3})C(\d{3,})L(\d{3,})")

# the official split files, per part and benchmark
SPLIT_FILES = {
    1: {"xsub": "cross-subject.txt", "xview": "cross-view.txt"},
    2: {"xsub": "cross_subject_v2.txt", "xview": "cross_view_v2.txt"},
}
# AimCLR's ignore lists (their content was never published)
LINEAGE_IGNORE_FILES = {1: "samples_with_missing_skeletons.txt", 2: "samples_with_missing_skeletons_v2.txt"}


class PkuVideo(NamedTuple):
    part: int  # 1 or 2
    file_id: int  # part I: the number in `0fff-V`; 0 in part II
    group: int  # part II: the A number; 0 in part I
    subject: int  # part II: the N number; 0 in part I (its names do not carry the subject)
    view: str  # L, M or R

    @property
    def name(self) -> str:
        if self.part == 1:
            return f"0{self.file_id:03d}-{self.view}"
        return f"A{self.group:02d}N{self.subject:02d}-{self.view}"


def video_name(path_or_name: str) -> str:
    """`.../0002-L.txt` -> `0002-L`."""
    name = os.path.basename(path_or_name)
    return name.removesuffix(SUFFIX)


def parse_video(name: str) -> PkuVideo:
    """`0002-L[.txt]` or `A01N02-R[.txt]` -> its numbers; InputError for anything else."""
    stem = video_name(name)
    if m := PART1_RE.fullmatch(stem):
        return PkuVideo(1, int(m.group(1)), 0, 0, m.group(2))
    if m := PART2_RE.fullmatch(stem):
        return PkuVideo(2, 0, int(m.group(1)), int(m.group(2)), m.group(3))
    raise InputError(name, "not a PKU-MMD video name (part I `0002-L`, part II `A01N02-L`)")


def lineage_videos(part: int) -> list:
    """The video names AimCLR's cutting scripts try, in their order (absent ones are skipped):
    part I files 0002..0364, part II A01..A26 x N01..N13, each in the views L, M, R."""
    if part == 1:
        return [f"0{i:03d}-{v}" for i in range(2, 365) for v in VIEWS]
    return [f"A{a:02d}N{n:02d}-{v}" for a in range(1, 27) for n in range(1, 14) for v in VIEWS]


# ---- sample names --------------------------------------------------------------------------------

def lineage_sample_name(video: str, class_id: int, index: int) -> str:
    """AimCLR's name for instance `index` (1-based row of the label file) of `video`, without
    `.skeleton`: part I `F002V001C041L001`, part II `A010N008V001C041L001` (fields zero-padded to
    three digits, wider when the number is)."""
    v = parse_video(video)
    tail = f"V{VIEWS.index(v.view) + 1:03d}C{class_id:03d}L{index:03d}"
    if v.part == 1:
        return f"F{v.file_id:03d}{tail}"
    return f"A{v.group:03d}N{v.subject:03d}{tail}"


class LineageName(NamedTuple):
    video: str
    class_id: int
    index: int

    @property
    def label(self) -> int:
        return self.class_id - 1


def parse_lineage_name(name: str) -> LineageName:
    """`F002V001C041L001[.skeleton]` -> ("0002-L", 41, 1): the video whose split decides the
    sample's part, as AimCLR's gendata matches it, and the class its label comes from."""
    stem = name.removesuffix(LINEAGE_SUFFIX)
    if m := PART1_LINEAGE_RE.fullmatch(stem):
        file_id, view, class_id, index = (int(g) for g in m.groups())
        video = PkuVideo(1, file_id, 0, 0, _view(view, name)).name
    elif m := PART2_LINEAGE_RE.fullmatch(stem):
        group, subject, view, class_id, index = (int(g) for g in m.groups())
        video = PkuVideo(2, 0, group, subject, _view(view, name)).name
    else:
        raise InputError(name, "not a lineage sample name (F002V001C041L001 or A010N008V001C041L001)")
    return LineageName(video, class_id, index)


def _view(code: int, name: str) -> str:
    if not 1 <= code <= len(VIEWS):
        raise InputError(name, f"view code {code:03d}: expected 001 (L), 002 (M) or 003 (R)")
    return VIEWS[code - 1]


def mamp_sample_name(video: str, row: int) -> str:
    """MAMP's instance name: the skeleton file name and the 0-based label row, `0002-L.txt_0`."""
    return f"{video_name(video)}{SUFFIX}_{row}"


def class_label(class_id: int, num_classes: int = NUM_CLASSES) -> int:
    """The 0-based training label of a 1-based class id (both lineages subtract one)."""
    if not 1 <= class_id <= num_classes:
        raise ValueError(f"class id {class_id} outside 1..{num_classes}")
    return class_id - 1


# ---- reading -------------------------------------------------------------------------------------

def read_sequence(path: str, dtype=np.float32) -> np.ndarray:
    """(T, 2, 25, 3) array of one skeleton file; InputError naming the file and line for a row
    without 150 values, a value that is not a number, NaN / inf, or a file without any row.

    Blank lines are skipped, as numpy.loadtxt (both lineages' reader) does. Values are parsed to
    float64 and then cast, which is what both lineages store (float32 of the float64 parse).
    """
    source = os.path.basename(path)
    with open(path, "rb") as f:
        lines = f.read().splitlines()
    numbers = [i + 1 for i, line in enumerate(lines) if line.strip()]  # 1-based line of each frame
    if not numbers:
        raise InputError(source, "empty file: no frame")
    rows = [lines[n - 1].split() for n in numbers]
    for n, row in zip(numbers, rows):
        if len(row) != VALUES_PER_FRAME:
            raise InputError(f"{source} line {n}",
                             f"{len(row)} values, expected {VALUES_PER_FRAME} (2 persons x 25 joints x xyz)")
    try:
        values = np.array([token for row in rows for token in row], dtype=np.float64)
    except ValueError:
        for n, row in zip(numbers, rows):
            for token in row:
                try:
                    float(token)
                except ValueError:
                    raise InputError(f"{source} line {n}",
                                     f"not a number: {token.decode(errors='replace')!r}") from None
        raise
    values = values.reshape(len(rows), NUM_PERSONS, NUM_JOINTS, 3)
    finite = np.isfinite(values).all(axis=(1, 2, 3))
    if not finite.all():
        frame = int(np.argmin(finite))
        raise InputError(f"{source} line {numbers[frame]}", f"NaN or inf in frame {frame + 1}")
    return values.astype(dtype, copy=False)


def _integers(tokens: list, source: str) -> list:
    out = []
    for token in tokens:
        text = token.strip()
        try:
            value = float(text)
        except ValueError:
            raise InputError(source, f"not a number: {text!r}") from None
        if not value.is_integer():
            raise InputError(source, f"not an integer: {text!r}")
        out.append(int(value))
    return out


def read_labels(path: str) -> list:
    """[(class_id, start, end, confidence), ...] of a label file, in file order (the order that
    numbers the instances). Blank lines are skipped; InputError naming the line for a row that is
    not four non-negative integers (class id >= 1)."""
    source = os.path.basename(path)
    with open(path, encoding="utf-8", errors="replace") as f:
        text = f.read()
    rows = []
    for n, line in enumerate(text.splitlines(), 1):
        if not line.strip():
            continue
        where = f"{source} line {n}"
        fields = _integers(line.split(","), where)
        if len(fields) != 4:
            raise InputError(where, f"{len(fields)} values, expected 4: class_id,start_frame,end_frame,confidence")
        class_id, start, end, confidence = fields
        if class_id < 1 or start < 0 or end < 0:
            raise InputError(where, f"class id must be >= 1 and frames >= 0, got {line.strip()!r}")
        rows.append((class_id, start, end, confidence))
    return rows


def read_split(path: str) -> tuple:
    """(training videos, test videos) as sets of names such as `0002-L` / `A01N02-L`.

    Line 2 holds the training list and line 4 the test list (lines 1 and 3 are titles and are not
    read), comma-separated with any spacing, CRLF or LF, a trailing comma allowed. InputError for a
    name that is not a video name or a video in both lists. Both lineages put every video that is
    not in the training list into the test part (`is_train`), listed in line 4 or not.
    """
    source = os.path.basename(path)
    with open(path, encoding="utf-8", errors="replace") as f:
        lines = f.read().splitlines()
    lists = []
    for index in (1, 3):
        names = [t.strip() for t in lines[index].split(",")] if index < len(lines) else []
        names = [t for t in names if t]
        for name in names:
            if not (PART1_RE.fullmatch(name) or PART2_RE.fullmatch(name)):
                raise InputError(f"{source} line {index + 1}", f"{name!r} is not a video name like 0002-L or A01N02-L")
        lists.append(set(names))
    train, test = lists
    if not train:
        raise InputError(f"{source} line 2", "no training video (expected a title line, then the comma-separated list)")
    both = train & test
    if both:
        raise InputError(source, f"{len(both)} video(s) in both lists, e.g. {min(both)}")
    return train, test


def is_train(video: str, train_videos: set) -> bool:
    return video_name(video) in train_videos


def read_ignore_list(path: str) -> set:
    """Lineage sample names (without `.skeleton`) in an AimCLR-style ignore list, one per line."""
    with open(path, encoding="utf-8", errors="replace") as f:
        names = (line.strip() for line in f)
        return {n.removesuffix(LINEAGE_SUFFIX) for n in names if n}


# ---- cutting an instance -------------------------------------------------------------------------

def lineage_cut_problem(num_frames: int, start: int, end: int) -> str | None:
    """Why the AimCLR lineage cannot cut frames start..end of a `num_frames`-frame video, or None.

    Upstream writes `end - start + 1` as the frame count of the intermediate file but only the rows
    `[start - 1 : end]` (Python slicing) exist, so a start of 0 or an end past the video leaves the
    reader short of frames and it crashes; such instances never reach the lineage's arrays.
    """
    length = end - start + 1
    if length <= 0:
        return None
    if start < 1:
        return f"start frame {start}: the lineage counts frames from 1 (its cut would come out empty)"
    if end > num_frames:
        return f"end frame {end} is past the {num_frames}-frame video"
    return None


def lineage_instance(sequence: np.ndarray, start: int, end: int, max_frames: int = MAX_FRAMES) -> np.ndarray:
    """(3, T, 25, 2) float32 sample of the AimCLR lineage for the label row (start, end), T <= max_frames.

    * frames start..end, 1-based and inclusive (rows start-1 .. end-1);
    * body slot 0 is person 1 as it is (zeros where absent); slot 1 is person 2 when the sum of its
      75 values is not zero, else zeros (upstream decides "two persons" by that sum);
    * a cut longer than max_frames keeps max_frames frames from (length - max_frames) // 2;
    * an empty or inverted interval gives T = 0 (upstream stores an all-zero sample for it).
    ValueError (reason from lineage_cut_problem) where upstream crashes. The caller pads to
    max_frames with zeros, as the lineage's arrays are.
    """
    problem = lineage_cut_problem(len(sequence), start, end)
    if problem:
        raise ValueError(problem)
    length = end - start + 1
    if length <= 0:
        return np.zeros((3, 0, NUM_JOINTS, NUM_PERSONS), np.float32)
    cut = np.array(sequence[start - 1:end], dtype=np.float32).reshape(length, NUM_PERSONS, NUM_JOINTS, 3)
    second_absent = cut[:, 1].astype(np.float64).reshape(length, -1).sum(axis=1) == 0
    cut[second_absent, 1] = 0
    if length > max_frames:
        first = (length - max_frames) // 2
        cut = cut[first:first + max_frames]
    return np.ascontiguousarray(cut.transpose(3, 0, 2, 1))


def mamp_instance(sequence: np.ndarray, start: int, end: int, max_frames: int = MAX_FRAMES) -> np.ndarray | None:
    """(max_frames, 150) float32 sample of MAMP / STARS for the label row (start, end), or None.

    Rows start .. end-1 (the label's frames taken 0-based, end excluded: one frame later and one
    shorter than the AimCLR cut), both persons as in the file, the first max_frames rows kept, zero
    rows after the cut. None when the cut sums to zero (empty interval, past the video, or all
    zeros), which upstream drops.
    """
    cut = np.asarray(sequence)[start:end].reshape(-1, VALUES_PER_FRAME)
    if cut.astype(np.float64).sum() == 0:
        return None
    out = np.zeros((max_frames, VALUES_PER_FRAME), np.float32)
    kept = min(len(cut), max_frames)
    out[:kept] = cut[:kept]
    return out


# ---- writing (official layout; tests build fake PKU-MMD trees with these) -----------------------------

def write_sequence(path: str, sequence: np.ndarray) -> None:
    """Write a (T, 2, 25, 3) or (T, 150) array as the release does: `%f` numbers separated by one
    space, LF line ends, and every line after the first starting with a space (the release's
    writer puts the separator before each value after the very first)."""
    rows = np.asarray(sequence, np.float64).reshape(-1, VALUES_PER_FRAME).tolist()
    template = " ".join(["%f"] * VALUES_PER_FRAME)
    with open(path, "w", newline="") as f:
        f.write(" ".join(template % tuple(row) + "\n" for row in rows))


def write_labels(path: str, rows) -> None:
    """One `class_id,start,end,confidence` line per instance, LF line ends."""
    with open(path, "w", newline="") as f:
        f.write("".join(",".join(str(int(v)) for v in row) + "\n" for row in rows))


def write_split(path: str, train, test) -> None:
    """A four-line split file: title, `, `-separated training videos, title, test videos."""
    with open(path, "w", newline="") as f:
        f.write(f"Training videos:\n{', '.join(sorted(train))}\nValidation videos:\n{', '.join(sorted(test))}\n")
