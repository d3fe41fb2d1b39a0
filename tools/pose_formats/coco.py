"""COCO keypoint annotations and MMPose / RTMPose inferencer predictions (COCO-17 by default).

COCO: a JSON with `images` (id, file_name, width, height; `frame_id`, `vid_id` in video sets such
as PoseTrack) and `annotations` (image_id, keypoints = [x, y, v] * 17 with v = 0 not labelled,
1 labelled but hidden, 2 visible; `track_id` in video sets). v > 0 gives score 1, v = 0 a missing
joint. How images become sequences (`--coco_group`): `file` (default) one sequence per JSON file,
its images the frames in frame_id (else file_name) order; `image` one single-frame sequence per
image (named after the image file); `video` one sequence per `vid_id`. With a `track_id` on every
annotation the persons are tracks, otherwise detections ranked per frame. The images' width and
height are the image size. Extra image / annotation keys are normal in COCO files and not warned.

MMPose: the JSON that MMPoseInferencer writes with `pred_out_dir`, one per input:
    video: [{"frame_id": 0, "instances": [{"keypoints": [[x, y]] * V, "keypoint_scores": [s] * V,
                                           "bbox": [[x1, y1, x2, y2]], "bbox_score": s}]}, ...]
    image: [instance, ...] (one frame)
and demo/topdown_demo_with_mmdet.py's {"meta_info": ..., "instance_info": [{"frame_id", "instances"}]}.
Each file is one sequence named after it; frame ids must run without a gap; unknown keys are
warned about. The image size is not in the file (give --image_size for --normalize image).
"""
from __future__ import annotations

import functools

import numpy as np

from feeder.layouts import get_layout

from .common import (Item, Plan, Sequence2D, expand_inputs, number_ranges, person_block, read_json, stack_frames,
                     stem, unknown_keys_note)

COCO_GROUPS = ("file", "image", "video")


# --------------------------------------------------------------------------- COCO

def _read_coco(path: str, joints: int) -> tuple:
    """(images in file order, {image id: [annotations]}) of a COCO keypoint file."""
    coco = read_json(path)
    if not isinstance(coco, dict) or not isinstance(coco.get("images"), list) \
            or not isinstance(coco.get("annotations"), list):
        raise ValueError("expected a COCO annotation file: a dict with 'images' and 'annotations' lists")
    for c in coco.get("categories") or []:
        if isinstance(c, dict) and isinstance(c.get("keypoints"), list) and len(c["keypoints"]) != joints:
            raise ValueError(f"category {c.get('name', c.get('id'))!r} has {len(c['keypoints'])} keypoints, "
                             f"the layout has {joints} joints")
    by_image = {}
    for i, a in enumerate(coco["annotations"]):
        if not isinstance(a, dict) or "image_id" not in a:
            raise ValueError(f"annotation {i}: no image_id")
        if a.get("iscrowd") or "keypoints" not in a:  # crowd regions carry no keypoints
            continue
        by_image.setdefault(a["image_id"], []).append(a)
    images = []
    for i, img in enumerate(coco["images"]):
        if not isinstance(img, dict) or "id" not in img:
            raise ValueError(f"image {i}: no id")
        images.append(img)
    return images, by_image


def _frame_order(images: list) -> list:
    if all("frame_id" in img for img in images):
        return sorted(images, key=lambda img: img["frame_id"])
    return sorted(images, key=lambda img: str(img.get("file_name", img["id"])))


def coco_groups(images: list, group: str, path: str) -> dict:
    """{sequence name: [images in frame order]}."""
    if group == "file":
        return {stem(path): _frame_order(images)}
    if group == "image":
        return {stem(str(img.get("file_name", img["id"]))): [img] for img in images}
    groups = {}
    for img in images:
        if "vid_id" not in img:
            raise ValueError(f"image {img['id']} has no vid_id (--coco_group video needs one on every image)")
        groups.setdefault(str(img["vid_id"]), []).append(img)
    return {name: _frame_order(imgs) for name, imgs in groups.items()}


def load_coco_group(frames: list, joints: int, sizes, frame_names: list) -> Sequence2D:
    """frames: per frame the [(keypoints, track_id)] of its annotations (as planned)."""
    tracked = all(track is not None for people in frames for _, track in people)
    rows = []
    for t, people in enumerate(frames):
        row = []
        for m, (keypoints, track) in enumerate(people):
            p = person_block(keypoints, joints, 3, f"{frame_names[t]} annotation {m}")
            v = p[:, 2]
            row.append((np.stack([p[:, 0], p[:, 1], np.where(v > 0, 1.0, 0.0)], 1), track))
        rows.append(row)
    if not any(any(p[:, 2].any() for p, _ in row) for row in rows):
        raise ValueError(f"no labelled keypoint in any of its {len(frames)} image(s)")
    if tracked and any(rows):
        slots = list(dict.fromkeys(track for row in rows for _, track in row))
        data = np.zeros((3, len(rows), joints, len(slots)))
        for t, row in enumerate(rows):
            for p, track in row:
                data[:, t, :, slots.index(track)] = p.T
    else:
        data = stack_frames([[p for p, _ in row] for row in rows], joints)
    return Sequence2D(data, per_frame=not tracked, image_size=sizes, frame_names=frame_names)


def plan_coco(inputs, opts, problems) -> Plan:
    layout = opts.layout or get_layout("coco-17")
    files = expand_inputs(inputs, (".json",))
    if not files:
        raise FileNotFoundError(f"no .json file in {', '.join(inputs)}")
    items = []
    for path in files:
        try:
            images, by_image = _read_coco(path, layout.num_joints)
            groups = coco_groups(images, opts.coco_group, path)
        except (OSError, ValueError) as e:
            problems.add(path, str(e))
            continue
        for name, imgs in groups.items():
            frames = [[(a["keypoints"], a.get("track_id")) for a in by_image.get(img["id"], [])] for img in imgs]
            sizes = [(img.get("width"), img.get("height")) for img in imgs]
            numeric = all(isinstance(v, (int, float)) and not isinstance(v, bool) for wh in sizes for v in wh)
            sizes = np.asarray(sizes, np.float64) if numeric else None
            names = [str(img.get("file_name", f"image {img['id']}")) for img in imgs]
            source = path if opts.coco_group == "file" else f"{path} {opts.coco_group} {name}"
            items.append(Item(name, source, functools.partial(load_coco_group, frames, layout.num_joints, sizes,
                                                              names)))
    return Plan(items, layout, files)


# --------------------------------------------------------------------------- MMPose

MMPOSE_FILE_KEYS = ("meta_info", "instance_info")
MMPOSE_FRAME_KEYS = ("frame_id", "instances")
MMPOSE_INSTANCE_KEYS = ("keypoints", "keypoint_scores", "bbox", "bbox_score", "keypoints_visible", "track_id")


def _mmpose_frames(content) -> tuple:
    """([(frame_id, instances)], notes) of an inferencer / demo prediction file."""
    notes = []
    if isinstance(content, dict):
        if not isinstance(content.get("instance_info"), list):
            raise ValueError("a dict without an 'instance_info' list: not an MMPose prediction file")
        notes += unknown_keys_note(content, MMPOSE_FILE_KEYS, "an MMPose prediction file")
        content = content["instance_info"]
    if not isinstance(content, list) or not content:
        raise ValueError("expected a non-empty list of frames or instances (MMPose predictions)")
    if all(isinstance(f, dict) and "instances" in f for f in content):
        frames = []
        for i, f in enumerate(content):
            fid = f.get("frame_id", i)
            if not isinstance(fid, int) or isinstance(fid, bool):
                raise ValueError(f"frame {i}: bad frame_id {fid!r}")
            notes += unknown_keys_note(f, MMPOSE_FRAME_KEYS, "an MMPose frame")
            if not isinstance(f["instances"], list):
                raise ValueError(f"frame_id {fid}: 'instances' is not a list")
            frames.append((fid, f["instances"]))
        return frames, notes
    if all(isinstance(f, dict) and "keypoints" in f for f in content):
        return [(0, content)], notes  # one image's instances
    raise ValueError("neither a list of {'frame_id', 'instances'} frames nor a list of instances with 'keypoints'")


def load_mmpose(path: str, joints: int) -> Sequence2D:
    frames, notes = _mmpose_frames(read_json(path))
    ids = [fid for fid, _ in frames]
    if len(set(ids)) != len(ids):
        dup = sorted({i for i in ids if ids.count(i) > 1})
        raise ValueError(f"frame_id {number_ranges(dup)} given twice")
    missing = sorted(set(range(min(ids), max(ids) + 1)) - set(ids))
    if missing:
        raise ValueError(f"frame_id(s) {number_ranges(missing)} missing from the numbering {min(ids)}..{max(ids)}")
    rows = []
    for fid, instances in sorted(frames, key=lambda f: f[0]):
        row = []
        for m, inst in enumerate(instances):
            where = f"frame_id {fid} instance {m}"
            if not isinstance(inst, dict) or "keypoints" not in inst or "keypoint_scores" not in inst:
                raise ValueError(f"{where}: needs 'keypoints' and 'keypoint_scores'")
            notes += unknown_keys_note(inst, MMPOSE_INSTANCE_KEYS, "an MMPose instance")
            try:
                xy = np.asarray(inst["keypoints"], dtype=np.float64)
            except (TypeError, ValueError):
                raise ValueError(f"{where}: keypoints are not a list of [x, y] numbers") from None
            if xy.ndim != 2 or xy.shape[1] != 2:
                raise ValueError(f"{where}: keypoints of shape {xy.shape}, expected {joints} [x, y] pairs")
            if xy.shape[0] != joints:
                raise ValueError(f"{where}: {xy.shape[0]} keypoints, the layout has {joints} joints")
            score = person_block(inst["keypoint_scores"], joints, 1, where)
            row.append(np.concatenate([xy, score], axis=1))
        rows.append(row)
    if not any(rows):
        raise ValueError(f"nobody in any of its {len(rows)} frames (every 'instances' list is empty)")
    return Sequence2D(stack_frames(rows, joints), per_frame=True,
                      frame_names=[f"frame_id {fid}" for fid in sorted(ids)], notes=list(dict.fromkeys(notes)))


def plan_mmpose(inputs, opts, problems) -> Plan:
    layout = opts.layout or get_layout("coco-17")
    files = expand_inputs(inputs, (".json",))
    if not files:
        raise FileNotFoundError(f"no .json file in {', '.join(inputs)}")
    items = [Item(stem(p), p, functools.partial(load_mmpose, p, layout.num_joints)) for p in files]
    return Plan(items, layout, files)

