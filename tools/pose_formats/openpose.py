"""OpenPose `--write_json` folders and st-gcn's Kinetics-skeleton JSON (both OpenPose output).

OpenPose writes one `<video>_<12-digit frame>_keypoints.json` per frame:
    {"version": 1.3, "people": [{"person_id": [-1], "pose_keypoints_2d": [x, y, c] * V, ...}]}
with V = 25 (BODY_25) or 18 (COCO-18) and 0, 0, 0 for a joint it did not find. An input folder
holding such files is one sequence (named after the folder); a folder of such folders is one
sequence per subfolder. The frame numbers must run without a gap.

Kinetics-skeleton (st-gcn) has one `<id>.json` per video:
    {"data": [{"frame_index": t, "skeleton": [{"pose": [x, y] * 18, "score": [c] * 18}]}],
     "label": name, "label_index": k}
with x, y normalised to [0, 1], plus a label file {"<id>": {"has_skeleton", "label", "label_index"}}.
`load_kinetics_stgcn` + `stgcn_kinetics_process` reproduce st-gcn's feeder_kinetics.py (the
`--faithful` mode): the first 5 skeletons of a frame, x - 0.5 and y - 0.5, x = y = 0 where the score
is 0, the persons of each frame sorted by summed score, the first 2 kept, a 300-frame window.
"""
from __future__ import annotations

import functools
import os
import re

import numpy as np

from feeder.layouts import get_layout

from .common import (Item, Plan, Sequence2D, expand_inputs, number_ranges, person_block, read_json, stack_frames,
                     stem, unknown_keys_note)

FRAME_KEYS = ("version", "people", "part_candidates")
PERSON_KEYS = ("person_id", "pose_keypoints_2d", "face_keypoints_2d", "hand_left_keypoints_2d",
               "hand_right_keypoints_2d", "pose_keypoints_3d", "face_keypoints_3d", "hand_left_keypoints_3d",
               "hand_right_keypoints_3d")
FRAME_FILE = re.compile(r"(\d+)_keypoints\.json$")
LAYOUT_BY_COUNT = {25: "openpose-25", 18: "openpose-18"}


def _dedup(notes):
    return list(dict.fromkeys(notes))


# --------------------------------------------------------------------------- OpenPose folders

def _has_frames(folder: str) -> bool:
    return any(f.endswith("_keypoints.json") for f in os.listdir(folder))


def sequence_folders(inputs) -> list:
    """[(name, folder)]: an input holding frame files is one sequence, else each subfolder that does."""
    found = []
    for path in inputs:
        path = os.path.normpath(path)
        if not os.path.isdir(path):
            raise FileNotFoundError(f"OpenPose input is not a folder: {path}")
        if _has_frames(path):
            found.append((os.path.basename(path), path))
        else:
            found += [(d, os.path.join(path, d)) for d in sorted(os.listdir(path))
                      if os.path.isdir(os.path.join(path, d)) and _has_frames(os.path.join(path, d))]
    return found


def frame_files(folder: str) -> list:
    """The frame files of a folder in frame order; ValueError naming the frames missing from the
    numbering, a number given twice or a JSON file without a number."""
    numbered = {}
    for f in sorted(os.listdir(folder)):
        if not f.endswith(".json"):
            continue
        m = FRAME_FILE.search(f)
        if not m:
            raise ValueError(f"{f}: no frame number in the name (expected <video>_<number>_keypoints.json)")
        n = int(m.group(1))
        if n in numbered:
            raise ValueError(f"frame {n} is given twice: {numbered[n]} and {f}")
        numbered[n] = f
    if not numbered:
        raise ValueError("no *_keypoints.json frame file")
    numbers = sorted(numbered)
    missing = sorted(set(range(numbers[0], numbers[-1] + 1)) - set(numbers))
    if missing:
        raise ValueError(f"frame(s) {number_ranges(missing)} missing from the numbering "
                         f"{numbers[0]}..{numbers[-1]} ({len(missing)} of {numbers[-1] - numbers[0] + 1} frames)")
    return [os.path.join(folder, numbered[n]) for n in numbers]


def _frame_people(path: str) -> tuple:
    """(people list, notes) of one frame file; ValueError naming the file."""
    name = os.path.basename(path)
    try:
        frame = read_json(path)
    except ValueError as e:
        raise ValueError(f"{name}: {e}") from None
    if not isinstance(frame, dict) or not isinstance(frame.get("people"), list):
        raise ValueError(f"{name}: no 'people' list (not an OpenPose --write_json frame)")
    notes = unknown_keys_note(frame, FRAME_KEYS, "an OpenPose frame")
    for i, person in enumerate(frame["people"]):
        if not isinstance(person, dict) or "pose_keypoints_2d" not in person:
            raise ValueError(f"{name}: person {i} has no 'pose_keypoints_2d'")
        notes += unknown_keys_note(person, PERSON_KEYS, "an OpenPose person")
    return frame["people"], notes


def count_joints(folder: str) -> int | None:
    """Keypoints per person in the first frame of the folder that has a person (None if none has)."""
    for path in frame_files(folder):
        people, _ = _frame_people(path)
        if people:
            return len(people[0]["pose_keypoints_2d"]) // 3
    return None


def load_openpose_folder(folder: str, joints: int) -> Sequence2D:
    paths = frame_files(folder)
    frames, notes = [], []
    for path in paths:
        people, frame_notes = _frame_people(path)
        notes += frame_notes
        name = os.path.basename(path)
        frames.append([person_block(p["pose_keypoints_2d"], joints, 3, f"{name} person {i}")
                       for i, p in enumerate(people)])
    if not any(frames):
        raise ValueError(f"nobody in any of its {len(paths)} frames (every 'people' list is empty)")
    return Sequence2D(stack_frames(frames, joints), per_frame=True,
                      frame_names=[os.path.basename(p) for p in paths], notes=_dedup(notes))


def plan_openpose(inputs, opts, problems) -> Plan:
    folders = sequence_folders(inputs)
    if not folders:
        raise FileNotFoundError(f"no folder of *_keypoints.json frame files in {', '.join(inputs)}")
    layout = opts.layout
    if layout is None:  # detect BODY_25 / COCO-18 from the keypoint count of the first person found
        for name, folder in folders:
            try:
                count = count_joints(folder)
            except ValueError:
                continue  # reported when the folder itself is converted
            if count is not None:
                if count not in LAYOUT_BY_COUNT:
                    raise ValueError(f"{folder}: {count} keypoints a person is neither BODY_25 (25) nor "
                                     f"COCO-18 (18); give --layout")
                layout = get_layout(LAYOUT_BY_COUNT[count])
                break
        if layout is None:
            raise ValueError("no person in any frame of the inputs: cannot tell BODY_25 from COCO-18")
    items = [Item(name, folder, functools.partial(load_openpose_folder, folder, layout.num_joints))
             for name, folder in folders]
    # a folder's time changes when frame files come or go; stat-ing every frame file of a large
    # dataset to notice an edit in place would cost more than the resume saves
    return Plan(items, layout, [folder for _, folder in folders])


# --------------------------------------------------------------------------- Kinetics-skeleton

KINETICS_FILE_KEYS = ("data", "label", "label_index")
KINETICS_FRAME_KEYS = ("frame_index", "skeleton")
KINETICS_SKELETON_KEYS = ("pose", "score")
KINETICS_LABEL_KEYS = ("has_skeleton", "label", "label_index")


def _kinetics_frames(path: str, joints: int, expected_label) -> tuple:
    """({frame_index: [(V, 3) x, y, score]}, notes); ValueError naming the frame."""
    video = read_json(path)
    if not isinstance(video, dict) or not isinstance(video.get("data"), list):
        raise ValueError("no 'data' list (not a Kinetics-skeleton file)")
    notes = unknown_keys_note(video, KINETICS_FILE_KEYS, "a Kinetics-skeleton file")
    if expected_label is not None and "label_index" in video and video["label_index"] != expected_label:
        raise ValueError(f"label_index {video['label_index']} differs from the label file's {expected_label}")
    frames = {}
    for i, frame in enumerate(video["data"]):
        if not isinstance(frame, dict) or "frame_index" not in frame or not isinstance(frame.get("skeleton"), list):
            raise ValueError(f"data[{i}]: expected {{'frame_index', 'skeleton': [...]}}")
        t = frame["frame_index"]
        if not isinstance(t, int) or isinstance(t, bool) or t < 0:
            raise ValueError(f"data[{i}]: bad frame_index {t!r}")
        notes += unknown_keys_note(frame, KINETICS_FRAME_KEYS, "a Kinetics-skeleton frame")
        people = []
        for m, skeleton in enumerate(frame["skeleton"]):
            where = f"frame_index {t} skeleton {m}"
            if not isinstance(skeleton, dict) or "pose" not in skeleton or "score" not in skeleton:
                raise ValueError(f"{where}: expected {{'pose', 'score'}}")
            notes += unknown_keys_note(skeleton, KINETICS_SKELETON_KEYS, "a Kinetics-skeleton skeleton")
            pose = person_block(skeleton["pose"], joints, 2, where)
            score = person_block(skeleton["score"], joints, 1, where)
            people.append(np.concatenate([pose, score], axis=1))
        frames[t] = people  # a frame_index given twice: the later entry wins, as in st-gcn
    return frames, _dedup(notes)


def load_kinetics(path: str, joints: int = 18, expected_label=None) -> Sequence2D:
    """A Kinetics-skeleton file for the 2-D pipeline: frames placed by frame_index (frames not
    listed have nobody), coordinates normalised to [0, 1] (image size 1 x 1)."""
    frames, notes = _kinetics_frames(path, joints, expected_label)
    if not any(frames.values()):
        raise ValueError(f"nobody in any of its {len(frames)} frames (every 'skeleton' list is empty)")
    length = max(frames) + 1
    data = stack_frames([frames.get(t, []) for t in range(length)], joints)
    return Sequence2D(data, per_frame=True, image_size=(1.0, 1.0),
                      frame_names=[f"frame_index {t}" for t in range(length)], notes=notes)


def load_kinetics_stgcn(path: str, joints: int = 18, expected_label=None, max_frame: int = 300,
                        num_person_in: int = 5) -> Sequence2D:
    """st-gcn's filling of one file: (3, max_frame, V, num_person_in) float64, the first
    num_person_in skeletons of each frame in file order. Bad files raise ValueError where st-gcn
    would crash or pass NaN on: a frame_index outside the window, NaN / inf, a wrong joint count."""
    frames, notes = _kinetics_frames(path, joints, expected_label)
    late = [t for t in frames if t >= max_frame]
    if late:
        raise ValueError(f"frame_index {min(late)} is outside the {max_frame}-frame window")
    data = np.zeros((3, max_frame, joints, num_person_in))
    for t, people in frames.items():
        for m, p in enumerate(people[:num_person_in]):
            if not np.isfinite(p).all():
                raise ValueError(f"frame_index {t} skeleton {m}: NaN or inf in the pose or score")
            data[:, t, :, m] = p.T
    if not data[2].any():
        raise ValueError("no joint with a score above 0 in any frame (nobody in the sequence)")
    return Sequence2D(data, per_frame=True, image_size=(1.0, 1.0), notes=notes)


def stgcn_kinetics_process(sequence: Sequence2D, num_person_out: int = 2) -> np.ndarray:
    """feeder_kinetics.py's steps after filling, in float64 like it, cast to float32 at the end."""
    data = sequence.data.copy()
    data[0:2] = data[0:2] - 0.5
    data[0][data[2] == 0] = 0
    data[1][data[2] == 0] = 0
    order = (-data[2].sum(axis=1)).argsort(axis=1)  # (T, M); numpy's default sort, as upstream
    for t, persons in enumerate(order):
        data[:, t] = data[:, t][:, :, persons]
    return data[..., :num_person_out].astype(np.float32)


def _read_label_file(path: str) -> dict:
    try:
        labels = read_json(path)
    except (OSError, ValueError) as e:
        raise ValueError(f"label file {path}: {e}") from None
    if not isinstance(labels, dict):
        raise ValueError(f"label file {path}: expected {{'<id>': {{'has_skeleton', 'label', 'label_index'}}}}")
    return labels


def kinetics_parts(inputs, opts) -> list:
    """[(split or None, input paths, label file or None)]: st-gcn's folder (kinetics_train/,
    kinetics_val/ and their kinetics_<split>_label.json) gives both splits; otherwise the inputs
    with --label_json and --split (or the labels CSV)."""
    if len(inputs) == 1 and os.path.isdir(inputs[0]) and opts.label_json is None:
        root = inputs[0]
        parts = [(split, [os.path.join(root, f"kinetics_{split}")], os.path.join(root, f"kinetics_{split}_label.json"))
                 for split in ("train", "val") if os.path.isdir(os.path.join(root, f"kinetics_{split}"))]
        if parts:
            return [(s, p, lab if os.path.isfile(lab) else None) for s, p, lab in parts]
    return [(opts.split, list(inputs), opts.label_json)]


def plan_kinetics(inputs, opts, problems) -> Plan:
    layout = opts.layout or get_layout("openpose-18")
    faithful = bool(opts.faithful)
    items, files, class_names = [], [], {}
    for split, paths, label_path in kinetics_parts(inputs, opts):
        labels = _read_label_file(label_path) if label_path else None
        skip = {os.path.normpath(label_path)} if label_path else set()
        for path in [p for p in expand_inputs(paths, (".json",), recursive=True) if p not in skip]:
            name = stem(path)
            label = None
            if labels is not None:
                entry = labels.get(name)
                if not isinstance(entry, dict) or not isinstance(entry.get("label_index"), int):
                    problems.add(path, f"no entry with a label_index for {name!r} in {label_path}", split)
                    continue
                if entry.get("has_skeleton") is False:  # st-gcn's ignore_empty_sample
                    problems.add(path, f"has_skeleton is false in {os.path.basename(label_path)}", split)
                    continue
                label = entry["label_index"]
                if "label" in entry:
                    class_names.setdefault(label, entry["label"])
            if faithful:
                load = functools.partial(load_kinetics_stgcn, path, layout.num_joints, label, opts.frames,
                                         opts.num_person_in)
            else:
                load = functools.partial(load_kinetics, path, layout.num_joints, label)
            # st-gcn names a sample by its file name, .json included
            items.append(Item(name + ".json" if faithful else name, path, load, label, split))
            files.append(path)
    classes = None
    if class_names and sorted(class_names) == list(range(len(class_names))):
        classes = [class_names[k] for k in range(len(class_names))]
    plan = Plan(items, layout, files, classes)
    if faithful:
        plan.process = functools.partial(stgcn_kinetics_process, num_person_out=opts.max_persons)
        plan.description = {"pipeline": "stgcn-kinetics", "normalize": "x - 0.5, y - 0.5 (st-gcn feeder_kinetics)",
                            "num_person_in": opts.num_person_in}
    return plan
