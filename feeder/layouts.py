"""Skeleton layouts: which joints exist and how they connect.

A layout is the one description of a skeleton that every part of the project reads: the
ST-GCN graph (net/graph.py), the bone stream and the left/right flip (feeder/), and the
centring / rotation of offline preprocessing (feeder/preprocess.py). Built in: the Kinect
layouts `ntu-rgb+d` and `nw-ucla`, and the 2-D pose-estimator layouts `coco-17`, `openpose-18`,
`openpose-25`, `mediapipe-33` and `penn-action-13` (joint names in JOINT_NAMES); any other comes
from a small YAML file:

    num_joints: 17
    center: 0                 # 0-based joint the graph's spatial partition is centred on
    edges: [[1, 0], [2, 1]]   # 0-based undirected links
    flip_pairs: [[1, 4]]      # left/right joints swapped by a horizontal flip
    shoulders: [5, 6]         # optional: left, right shoulder (enables the y-rotation)
"""
from __future__ import annotations

import os
import re
from collections import deque
from dataclasses import dataclass

import yaml


@dataclass(frozen=True)
class Layout:
    name: str
    num_joints: int
    edges: tuple  # 0-based (a, b) undirected links, self loops excluded
    center: int
    flip_pairs: tuple = ()  # 0-based (left, right)
    shoulders: tuple | None = None  # 0-based (left, right), for the y-rotation of preprocessing

    def __post_init__(self):
        v = self.num_joints
        for a, b in self.edges:
            if not (0 <= a < v and 0 <= b < v):
                raise ValueError(f"layout {self.name!r}: edge ({a}, {b}) names a joint outside 0..{v - 1}")
        if not 0 <= self.center < v:
            raise ValueError(f"layout {self.name!r}: center {self.center} is outside 0..{v - 1}")
        for a, b in self.flip_pairs:
            if not (0 <= a < v and 0 <= b < v):
                raise ValueError(f"layout {self.name!r}: flip pair ({a}, {b}) is outside 0..{v - 1}")
        if self.shoulders is not None and not all(0 <= s < v for s in self.shoulders):
            raise ValueError(f"layout {self.name!r}: shoulders {self.shoulders} outside 0..{v - 1}")
        parents = self.parents  # raises if the graph is not connected
        del parents

    @property
    def parents(self) -> list:
        """Parent of every joint on the way to the centre (the centre is its own parent).

        Found by breadth-first search from the centre, so any connected edge list works; for
        NTU this gives exactly the lineage's 25 bone pairs (tested against the golden file).
        """
        nbrs = [[] for _ in range(self.num_joints)]
        for a, b in self.edges:
            nbrs[a].append(b)
            nbrs[b].append(a)
        parent = [-1] * self.num_joints
        parent[self.center] = self.center
        queue = deque([self.center])
        while queue:
            j = queue.popleft()
            for n in sorted(nbrs[j]):
                if parent[n] < 0:
                    parent[n] = j
                    queue.append(n)
        missing = [j for j, p in enumerate(parent) if p < 0]
        if missing:
            raise ValueError(f"layout {self.name!r}: joints {missing} are not connected to the centre {self.center}")
        return parent

    @property
    def flip_permutation(self) -> list:
        perm = list(range(self.num_joints))
        for a, b in self.flip_pairs:
            perm[a], perm[b] = b, a
        return perm


def _one_based(pairs):
    return tuple((a - 1, b - 1) for a, b in pairs)


NTU_RGBD = Layout(
    name="ntu-rgb+d",
    num_joints=25,
    edges=_one_based([(1, 2), (2, 21), (3, 21), (4, 3), (5, 21), (6, 5), (7, 6), (8, 7), (9, 21),
                      (10, 9), (11, 10), (12, 11), (13, 1), (14, 13), (15, 14), (16, 15), (17, 1),
                      (18, 17), (19, 18), (20, 19), (22, 23), (23, 8), (24, 25), (25, 12)]),
    center=21 - 1,
    # left arm 5-8 <-> right arm 9-12, left leg 13-16 <-> right leg 17-20, hands 22,23 <-> 24,25
    flip_pairs=_one_based([(5, 9), (6, 10), (7, 11), (8, 12), (13, 17), (14, 18), (15, 19),
                           (16, 20), (22, 24), (23, 25)]),
    shoulders=(5 - 1, 9 - 1),
)

# Kinect v1 (20 joints), joint order of the NW-UCLA release (see data/nw_ucla/SOURCE.md).
NW_UCLA = Layout(
    name="nw-ucla",
    num_joints=20,
    edges=_one_based([(1, 2), (2, 3), (4, 3), (5, 3), (6, 5), (7, 6), (8, 7), (9, 3), (10, 9),
                      (11, 10), (12, 11), (13, 1), (14, 13), (15, 14), (16, 15), (17, 1), (18, 17),
                      (19, 18), (20, 19)]),
    center=3 - 1,
    flip_pairs=_one_based([(5, 9), (6, 10), (7, 11), (8, 12), (13, 17), (14, 18), (15, 19), (16, 20)]),
    shoulders=(5 - 1, 9 - 1),
)

# --- 2-D layouts of video pose estimators (docs/pose_data.md). Joint names, in order, are in
# JOINT_NAMES; flip pairs are (left, right) by those names, shoulders (left, right). A 2-D layout
# names shoulders too, but 2-D data is never rotated out of the image plane.

COCO_17 = Layout(
    name="coco-17",
    num_joints=17,
    # the COCO keypoint order; pyskl's `coco` graph: a tree rooted at the nose, the shoulders
    # hanging from it (COCO's eye-eye, ear-shoulder, shoulder-shoulder and hip-hip links left out)
    edges=((15, 13), (13, 11), (16, 14), (14, 12), (11, 5), (12, 6), (9, 7), (7, 5), (10, 8), (8, 6),
           (5, 0), (6, 0), (1, 0), (3, 1), (2, 0), (4, 2)),
    center=0,
    flip_pairs=((1, 2), (3, 4), (5, 6), (7, 8), (9, 10), (11, 12), (13, 14), (15, 16)),
    shoulders=(5, 6),
)

# OpenPose COCO-18 (st-gcn's `openpose` layout of Kinetics-skeleton): the same edges and centre
# (the neck) as st-gcn's graph, so its Kinetics checkpoints see the same adjacency.
OPENPOSE_18 = Layout(
    name="openpose-18",
    num_joints=18,
    edges=((4, 3), (3, 2), (7, 6), (6, 5), (13, 12), (12, 11), (10, 9), (9, 8), (11, 5), (8, 2), (5, 1),
           (2, 1), (0, 1), (15, 0), (14, 0), (17, 15), (16, 14)),
    center=1,
    flip_pairs=((5, 2), (6, 3), (7, 4), (11, 8), (12, 9), (13, 10), (15, 14), (17, 16)),
    shoulders=(5, 2),
)

# OpenPose BODY_25: the pairs OpenPose draws (a tree: limbs from the neck, legs from the mid hip,
# feet from the ankles), centred on the neck like openpose-18.
OPENPOSE_25 = Layout(
    name="openpose-25",
    num_joints=25,
    edges=((1, 8), (1, 2), (1, 5), (2, 3), (3, 4), (5, 6), (6, 7), (8, 9), (9, 10), (10, 11), (8, 12),
           (12, 13), (13, 14), (1, 0), (0, 15), (15, 17), (0, 16), (16, 18), (14, 19), (19, 20), (14, 21),
           (11, 22), (22, 23), (11, 24)),
    center=1,
    flip_pairs=((5, 2), (6, 3), (7, 4), (12, 9), (13, 10), (14, 11), (16, 15), (18, 17), (19, 22),
                (20, 23), (21, 24)),
    shoulders=(5, 2),
)

# MediaPipe BlazePose (33 landmarks): MediaPipe's POSE_CONNECTIONS, which leave the face apart from
# the body and the mouth apart from everything, plus four links that make one graph: nose-mouth
# corners and nose-shoulders (as the COCO tree joins the head). Centred on the nose.
MEDIAPIPE_33 = Layout(
    name="mediapipe-33",
    num_joints=33,
    edges=((0, 1), (1, 2), (2, 3), (3, 7), (0, 4), (4, 5), (5, 6), (6, 8), (9, 10), (11, 12), (11, 13),
           (13, 15), (15, 17), (15, 19), (15, 21), (17, 19), (12, 14), (14, 16), (16, 18), (16, 20),
           (16, 22), (18, 20), (11, 23), (12, 24), (23, 24), (23, 25), (24, 26), (25, 27), (26, 28),
           (27, 29), (28, 30), (29, 31), (30, 32), (27, 31), (28, 32),
           (0, 9), (0, 10), (0, 11), (0, 12)),
    center=0,
    flip_pairs=((1, 4), (2, 5), (3, 6), (7, 8), (9, 10), (11, 12), (13, 14), (15, 16), (17, 18), (19, 20),
                (21, 22), (23, 24), (25, 26), (27, 28), (29, 30), (31, 32)),
    shoulders=(11, 12),
)

# Penn Action (13 joints: COCO-17 without the eyes and ears, the head in place of the nose); the
# COCO tree restricted to them, rooted at the head.
PENN_ACTION_13 = Layout(
    name="penn-action-13",
    num_joints=13,
    edges=((1, 0), (2, 0), (3, 1), (5, 3), (4, 2), (6, 4), (7, 1), (8, 2), (9, 7), (11, 9), (10, 8),
           (12, 10)),
    center=0,
    flip_pairs=((1, 2), (3, 4), (5, 6), (7, 8), (9, 10), (11, 12)),
    shoulders=(1, 2),
)

JOINT_NAMES = {
    "coco-17": ("nose", "left_eye", "right_eye", "left_ear", "right_ear", "left_shoulder", "right_shoulder",
                "left_elbow", "right_elbow", "left_wrist", "right_wrist", "left_hip", "right_hip", "left_knee",
                "right_knee", "left_ankle", "right_ankle"),
    "openpose-18": ("Nose", "Neck", "RShoulder", "RElbow", "RWrist", "LShoulder", "LElbow", "LWrist", "RHip",
                    "RKnee", "RAnkle", "LHip", "LKnee", "LAnkle", "REye", "LEye", "REar", "LEar"),
    "openpose-25": ("Nose", "Neck", "RShoulder", "RElbow", "RWrist", "LShoulder", "LElbow", "LWrist", "MidHip",
                    "RHip", "RKnee", "RAnkle", "LHip", "LKnee", "LAnkle", "REye", "LEye", "REar", "LEar",
                    "LBigToe", "LSmallToe", "LHeel", "RBigToe", "RSmallToe", "RHeel"),
    "mediapipe-33": ("NOSE", "LEFT_EYE_INNER", "LEFT_EYE", "LEFT_EYE_OUTER", "RIGHT_EYE_INNER", "RIGHT_EYE",
                     "RIGHT_EYE_OUTER", "LEFT_EAR", "RIGHT_EAR", "MOUTH_LEFT", "MOUTH_RIGHT", "LEFT_SHOULDER",
                     "RIGHT_SHOULDER", "LEFT_ELBOW", "RIGHT_ELBOW", "LEFT_WRIST", "RIGHT_WRIST", "LEFT_PINKY",
                     "RIGHT_PINKY", "LEFT_INDEX", "RIGHT_INDEX", "LEFT_THUMB", "RIGHT_THUMB", "LEFT_HIP",
                     "RIGHT_HIP", "LEFT_KNEE", "RIGHT_KNEE", "LEFT_ANKLE", "RIGHT_ANKLE", "LEFT_HEEL",
                     "RIGHT_HEEL", "LEFT_FOOT_INDEX", "RIGHT_FOOT_INDEX"),
    "penn-action-13": ("head", "left_shoulder", "right_shoulder", "left_elbow", "right_elbow", "left_wrist",
                       "right_wrist", "left_hip", "right_hip", "left_knee", "right_knee", "left_ankle",
                       "right_ankle"),
}

# A joint of one layout found in another by name (`joint_map`, pose_import --to_layout): names compared in
# one spelling (RShoulder, LEFT_SHOULDER and right_shoulder alike); a joint a layout lacks can stand for
# another joint's point. Penn Action's "head" is annotated on the face, nearest the nose of the others.
JOINT_STAND_INS = {"head": ("nose",)}


def canonical_joint_name(name: str) -> str:
    """'RShoulder' / 'RIGHT_SHOULDER' / 'right_shoulder' -> 'right_shoulder'; 'MidHip' -> 'mid_hip'."""
    name = re.sub(r"^([RL])(?=[A-Z][a-z])", lambda m: {"R": "Right", "L": "Left"}[m.group(1)], name)
    name = re.sub(r"(?<=[a-z])(?=[A-Z])", "_", name)
    return name.lower()


def joint_map(source, target) -> list:
    """For each joint of `target`, its index in `source`, both built-in layouts with joint names."""
    source, target = get_layout(source), get_layout(target)
    for layout in (source, target):
        if layout.name not in JOINT_NAMES:
            raise ValueError(f"layout {layout.name!r} has no joint names; joints map by name between "
                             f"{sorted(JOINT_NAMES)}")
    index = {canonical_joint_name(n): i for i, n in enumerate(JOINT_NAMES[source.name])}
    mapping, missing = [], []
    for name in map(canonical_joint_name, JOINT_NAMES[target.name]):
        found = [index[n] for n in (name,) + JOINT_STAND_INS.get(name, ()) if n in index]
        if found:
            mapping.append(found[0])
        else:
            missing.append(name)
    if missing:
        raise ValueError(f"layout {source.name!r} has no joint for {missing} of {target.name!r}")
    return mapping


BUILTIN = {layout.name: layout for layout in (NTU_RGBD, NW_UCLA, COCO_17, OPENPOSE_18, OPENPOSE_25, MEDIAPIPE_33,
                                              PENN_ACTION_13)}
LAYOUT_KEYS = ("num_joints", "edges", "center", "flip_pairs", "shoulders")


def layout_from_dict(d: dict, name: str = "custom") -> Layout:
    unknown = sorted(set(d) - set(LAYOUT_KEYS) - {"name"})
    if unknown:
        raise ValueError(f"layout {name!r}: unknown key(s) {unknown}; known keys are {list(LAYOUT_KEYS)}")
    for key in ("num_joints", "edges", "center"):
        if key not in d:
            raise ValueError(f"layout {name!r}: missing required key {key!r}")
    return Layout(
        name=d.get("name", name),
        num_joints=int(d["num_joints"]),
        edges=tuple((int(a), int(b)) for a, b in d["edges"]),
        center=int(d["center"]),
        flip_pairs=tuple((int(a), int(b)) for a, b in d.get("flip_pairs", [])),
        shoulders=tuple(int(s) for s in d["shoulders"]) if d.get("shoulders") is not None else None,
    )


def layout_to_dict(layout: Layout) -> dict:
    """A JSON/YAML-ready description that `layout_from_dict` turns back into the same Layout."""
    return {"name": layout.name, "num_joints": layout.num_joints, "edges": [list(e) for e in layout.edges],
            "center": layout.center, "flip_pairs": [list(p) for p in layout.flip_pairs],
            "shoulders": list(layout.shoulders) if layout.shoulders is not None else None}


def get_layout(layout) -> Layout:
    """A Layout from a built-in name, a YAML file path, a dict, or a Layout."""
    if isinstance(layout, Layout):
        return layout
    if isinstance(layout, dict):
        return layout_from_dict(layout)
    if layout in BUILTIN:
        return BUILTIN[layout]
    if isinstance(layout, str) and layout.endswith((".yaml", ".yml")):
        if not os.path.isfile(layout):
            raise FileNotFoundError(f"layout file not found: {layout}")
        with open(layout) as f:
            d = yaml.safe_load(f) or {}
        if not isinstance(d, dict):
            raise ValueError(f"layout file {layout}: expected a mapping of {list(LAYOUT_KEYS)}")
        return layout_from_dict(d, name=os.path.splitext(os.path.basename(layout))[0])
    raise ValueError(f"unknown layout {layout!r}: use one of {sorted(BUILTIN)} or a .yaml layout file")
