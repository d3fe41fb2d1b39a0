"""`.pose` files of the pose-format package (MediaPipe Holistic, OpenPose BODY_25, ...).

Only the body component is read: `POSE_LANDMARKS` (MediaPipe BlazePose, layout mediapipe-33; x and
y, the z of MediaPipe is dropped) or `pose_keypoints_2d` (OpenPose BODY_25, openpose-25), with the
component's confidence as the score and masked points as missing. The header's width and height
are the image size. Persons of a .pose body are tracks. pose-format is an optional dependency
(requirements-pose.txt), imported only here.

The points are matched to the layout's joints by name (JOINT_NAMES, case-insensitive), so another
point order works; a component with fewer points than the layout (pose-format's reduced files) is
bad input unless `--partial_joints` imports it by name with the other joints missing.
"""
from __future__ import annotations

import functools

import numpy as np

from feeder.layouts import get_layout

from .common import Item, Plan, Sequence2D, expand_inputs, layout_names, stem

BODY_COMPONENTS = {"POSE_LANDMARKS": "mediapipe-33", "pose_keypoints_2d": "openpose-25"}


def _read_pose(path: str):
    try:
        from pose_format import Pose
    except ImportError:
        raise ValueError("reading .pose files needs the optional package pose-format "
                         "(pip install -r requirements-pose.txt)") from None
    with open(path, "rb") as f:
        buffer = f.read()
    try:
        return Pose.read(buffer)
    except Exception as e:  # noqa: BLE001 - the package raises many kinds on a corrupt file
        raise ValueError(f"cannot be read as a .pose file ({type(e).__name__}: {e})") from None


def _body_component(pose):
    """(component, index of its first point) of the first known body component."""
    offset = 0
    for component in pose.header.components:
        if component.name in BODY_COMPONENTS:
            return component, offset
        offset += len(component.points)
    names = [c.name for c in pose.header.components]
    raise ValueError(f"no body component ({' or '.join(BODY_COMPONENTS)}) among its components {names}")


def detect_layout(path: str):
    component, _ = _body_component(_read_pose(path))
    return get_layout(BODY_COMPONENTS[component.name])


def joint_index(points, layout, partial: bool) -> tuple:
    """(layout joint of each point, notes); ValueError when the points do not fit the layout."""
    names = layout_names(layout)
    lookup = {n.lower(): j for j, n in enumerate(names)} if names else {}
    by_name = bool(names) and all(p.lower() in lookup for p in points)
    if by_name:
        index = [lookup[p.lower()] for p in points]
        if len(set(index)) != len(index):
            raise ValueError("a point name repeats in the body component")
        if len(points) == layout.num_joints:
            return index, []
        if partial:
            return index, [f"{len(points)} of the layout's {layout.num_joints} joints in the file, "
                           f"matched by name; the others are missing"]
    elif len(points) == layout.num_joints:
        return list(range(len(points))), ["point names differ from the layout's; taken in file order"]
    raise ValueError(f"the body component has {len(points)} points, layout {layout.name!r} has "
                     f"{layout.num_joints}" + (" (--partial_joints imports a subset of its points by name)"
                                               if by_name else ""))


def load_pose_file(path: str, layout_name, partial: bool = False) -> Sequence2D:
    layout = get_layout(layout_name)
    pose = _read_pose(path)
    component, offset = _body_component(pose)
    index, notes = joint_index(component.points, layout, partial)
    points = slice(offset, offset + len(component.points))
    data = np.ma.getdata(pose.body.data)[:, :, points, :2].astype(np.float64)  # (T, P, N, 2)
    mask = np.ma.getmaskarray(pose.body.data)[:, :, points, :2].any(axis=-1)
    confidence = np.ma.getdata(pose.body.confidence)[:, :, points].astype(np.float64)
    score = np.where(mask, 0.0, confidence)
    frames, persons = data.shape[:2]
    if frames == 0:
        raise ValueError("no frames")
    out = np.zeros((3, frames, layout.num_joints, persons))
    out[0][:, index] = data[..., 0].transpose(0, 2, 1)
    out[1][:, index] = data[..., 1].transpose(0, 2, 1)
    out[2][:, index] = score.transpose(0, 2, 1)
    dims = pose.header.dimensions
    size = (float(dims.width), float(dims.height)) if dims.width and dims.height else None
    return Sequence2D(out, per_frame=False, image_size=size, notes=notes)


def plan_pose(inputs, opts, problems) -> Plan:
    files = expand_inputs(inputs, (".pose",))
    if not files:
        raise FileNotFoundError(f"no .pose file in {', '.join(inputs)}")
    layout = opts.layout
    if layout is None:  # from the body component of the first readable file
        for path in files:
            try:
                layout = detect_layout(path)
                break
            except (OSError, ValueError) as e:
                if "pose-format" in str(e):
                    raise
        if layout is None:
            raise ValueError("no readable .pose file with a body component among the inputs")
    items = [Item(stem(p), p, functools.partial(load_pose_file, p, layout, opts.partial_joints)) for p in files]
    return Plan(items, layout, files)
