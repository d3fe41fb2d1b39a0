"""pyskl / mmaction2 2-D annotation pickles (`*_hrnet.pkl`, COCO-17 keypoints).

    {"split": {"xsub_train": [names], "xsub_val": [...], ...} or {"train": [...], "val": [...]},
     "annotations": [{"frame_dir": name, "label": int, "img_shape": (h, w), "total_frames": T,
                      "keypoint": (M, T, V, 2) float, "keypoint_score": (M, T, V) float}]}

The persons of an annotation are tracks. The benchmark (`--benchmark xsub`) picks the
`<benchmark>_train` / `<benchmark>_val` lists; a file with only `train` / `val` (or one pair) needs
none. The pickle is read through common.read_pickle (plain data and numpy arrays only). 3-D
annotations (keypoint (M, T, V, 3), no score) are tools/pyskl_import.py's.
"""
from __future__ import annotations

import functools

import numpy as np

from feeder.layouts import get_layout

from .common import Item, Plan, Sequence2D, read_pickle


def split_lists(split: dict, benchmark: str | None) -> dict:
    """{"train": names, "val": names} from a pyskl split dict; ValueError naming the choices."""
    if benchmark:
        keys = (f"{benchmark}_train", f"{benchmark}_val")
        if not all(k in split for k in keys):
            raise ValueError(f"no {keys[0]} / {keys[1]} lists among its split keys {sorted(split)}")
    elif "train" in split and "val" in split:
        keys = ("train", "val")
    else:
        pairs = sorted(k[:-len("_train")] for k in split if k.endswith("_train") and k[:-len("_train")] + "_val" in split)
        if len(pairs) != 1:
            raise ValueError(f"choose a benchmark with --benchmark (split keys {sorted(split)})" if pairs else
                             f"no train / val lists among its split keys {sorted(split)}")
        keys = (f"{pairs[0]}_train", f"{pairs[0]}_val")
    return {"train": list(split[keys[0]]), "val": list(split[keys[1]])}


def load_pyskl_annotation(anno: dict, joints: int) -> Sequence2D:
    kp = np.asarray(anno["keypoint"], dtype=np.float64)
    if kp.ndim != 4:
        raise ValueError(f"keypoint of shape {kp.shape}, expected (M, T, V, 2)")
    if "keypoint_score" not in anno:
        if kp.shape[-1] == 3:
            raise ValueError("keypoint (M, T, V, 3) without keypoint_score: a 3-D annotation "
                             "(tools/pyskl_import.py converts those)")
        raise ValueError("no keypoint_score")
    if kp.shape[-1] != 2:
        raise ValueError(f"keypoint of shape {kp.shape}, expected (M, T, V, 2) with a keypoint_score")
    score = np.asarray(anno["keypoint_score"], dtype=np.float64)
    if score.shape != kp.shape[:3]:
        raise ValueError(f"keypoint_score of shape {score.shape}, keypoint is {kp.shape}")
    if kp.shape[2] != joints:
        raise ValueError(f"{kp.shape[2]} joints, the layout has {joints}")
    if kp.shape[0] == 0 or kp.shape[1] == 0:
        raise ValueError(f"empty: keypoint of shape {kp.shape}")
    data = np.concatenate([kp, score[..., None]], axis=-1).transpose(3, 1, 2, 0)
    size = None
    shape = anno.get("img_shape")
    if shape is not None and len(shape) == 2:
        size = (float(shape[1]), float(shape[0]))  # img_shape is (height, width)
    return Sequence2D(data, per_frame=False, image_size=size)


def plan_pyskl(inputs, opts, problems) -> Plan:
    layout = opts.layout or get_layout("coco-17")
    if len(inputs) != 1:
        raise ValueError(f"give one annotation pickle, not {len(inputs)} inputs")
    path = inputs[0]
    anno = read_pickle(path)
    if not isinstance(anno, dict) or not isinstance(anno.get("annotations"), list):
        raise ValueError(f"{path}: expected a dict with an 'annotations' list (pyskl format)")
    by_name = {}
    for i, a in enumerate(anno["annotations"]):
        missing = [k for k in ("frame_dir", "keypoint") if not isinstance(a, dict) or k not in a]
        if missing:
            problems.add(f"{path} annotation {i}", f"missing key(s) {', '.join(missing)}")
            continue
        by_name[a["frame_dir"]] = a
    splits = split_lists(anno["split"], opts.benchmark) if isinstance(anno.get("split"), dict) \
        else {None: sorted(by_name)}
    items, seen = [], {}
    for split, names in splits.items():
        for name in names:
            where = f"{path} annotation {name}"
            if name not in by_name:
                problems.add(f"{path} split {split}", f"{name} has no annotation", split)
                continue
            if name in seen:
                problems.add(where, f"listed in both the {seen[name]} and the {split} split", split)
                continue
            seen[name] = split
            a = by_name[name]
            label = a.get("label")
            keep = {k: a[k] for k in ("keypoint", "keypoint_score", "img_shape") if k in a}
            items.append(Item(str(name), where, functools.partial(load_pyskl_annotation, keep, layout.num_joints),
                              int(label) if isinstance(label, (int, np.integer)) else None, split))
    return Plan(items, layout, [path])
