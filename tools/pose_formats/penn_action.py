"""Penn Action's `labels/*.mat` (13 joints, layout penn-action-13).

Each file (scipy.io.loadmat) has `x`, `y` (T, 13) pixel coordinates, `visibility` (T, 13) 0/1,
`action` (the class name), `train` (1 = train, -1 = test: the official split, our `val`) and
`dimensions` [H, W, T] (the image size). visibility 0 makes a joint missing (Penn Action still
gives a guessed position for it); a file without `visibility` is read as all visible (noted).
Labels are the index of the action in PENN_ACTION_CLASSES (sorted names). scipy comes with
scikit-learn (requirements.txt).
"""
from __future__ import annotations

import functools

import numpy as np

from feeder.layouts import get_layout

from .common import Item, Plan, Sequence2D, expand_inputs, stem

PENN_ACTION_CLASSES = ("baseball_pitch", "baseball_swing", "bench_press", "bowl", "clean_and_jerk", "golf_swing",
                       "jump_rope", "jumping_jacks", "pullup", "pushup", "situp", "squat", "strum_guitar",
                       "tennis_forehand", "tennis_serve")


def _scalar(m: dict, key: str):
    a = np.asarray(m[key]).ravel()
    return a[0] if a.size == 1 else None


def read_penn(path: str, joints: int = 13) -> tuple:
    """(x, y, visibility or None, (width, height) or None, action, split or None, notes)."""
    from scipy.io import loadmat
    try:
        m = loadmat(path)
    except Exception as e:  # noqa: BLE001 - scipy raises several kinds on a file that is not a MAT file
        raise ValueError(f"cannot be read as a .mat file ({type(e).__name__}: {e})") from None
    missing = [k for k in ("x", "y") if k not in m]
    if missing:
        raise ValueError(f"no {' / '.join(repr(k) for k in missing)} field (a Penn Action label file has "
                         f"x, y, visibility, action, train)")
    x, y = (np.asarray(m[k], dtype=np.float64) for k in ("x", "y"))
    if x.ndim != 2 or x.shape != y.shape:
        raise ValueError(f"x {x.shape} and y {y.shape}: expected two (T, {joints}) arrays")
    if x.shape[1] != joints:
        raise ValueError(f"{x.shape[1]} joints in x, the layout has {joints}")
    if x.shape[0] == 0:
        raise ValueError("no frames")
    notes, vis = [], None
    if "visibility" in m:
        vis = np.asarray(m["visibility"], dtype=np.float64)
        if vis.shape != x.shape:
            raise ValueError(f"visibility {vis.shape}, x is {x.shape}")
    else:
        notes.append("no visibility field: every joint read as visible")
    size = None
    if "dimensions" in m and np.asarray(m["dimensions"]).size >= 2:
        h, w = np.asarray(m["dimensions"], dtype=np.float64).ravel()[:2]
        size = (w, h)
    action = str(_scalar(m, "action")) if "action" in m and _scalar(m, "action") is not None else None
    train = _scalar(m, "train") if "train" in m else None
    split = {1: "train", -1: "val"}.get(int(train)) if train is not None else None
    return x, y, vis, size, action, split, notes


def penn_sequence(x, y, vis, size, notes) -> Sequence2D:
    score = np.ones_like(x) if vis is None else (vis > 0).astype(np.float64)
    data = np.stack([x, y, score])[..., None]  # (3, T, 13, 1): one person
    return Sequence2D(data, per_frame=False, image_size=size, notes=list(notes))


def plan_penn_action(inputs, opts, problems) -> Plan:
    layout = opts.layout or get_layout("penn-action-13")
    files = expand_inputs(inputs, (".mat",))
    if not files:
        raise FileNotFoundError(f"no .mat file in {', '.join(inputs)}")
    items = []
    for path in files:
        try:
            x, y, vis, size, action, split, notes = read_penn(path, layout.num_joints)
            if action is None:
                label = None
            elif action in PENN_ACTION_CLASSES:
                label = PENN_ACTION_CLASSES.index(action)
            else:
                raise ValueError(f"unknown action {action!r}: not one of Penn Action's 15 classes")
        except (OSError, ValueError) as e:
            problems.add(path, str(e))
            continue
        items.append(Item(stem(path), path, functools.partial(penn_sequence, x, y, vis, size, notes), label, split))
    return Plan(items, layout, files, classes=list(PENN_ACTION_CLASSES))
