"""What the pose-file readers share: the sample they return, the plan they make, file reading.

A reader's `plan(inputs, options, problems)` finds the sequences and returns a Plan: one Item per
sequence (its name, the file or folder that messages name, a picklable `load` returning a
Sequence2D, and the label and split when the format has them) and the layout. `load` raises
ValueError with the reason (naming the frame) for a bad sequence; the importer reports it with
the item's source and goes on (or stops, with --strict).
"""
from __future__ import annotations

import json
import os
import pickle
from dataclasses import dataclass, field
from typing import Callable

import numpy as np

from feeder.layouts import JOINT_NAMES, Layout
from torchlight.io import load_pickle


@dataclass
class Sequence2D:
    """One sequence as read: data (3, T, V, P) x, y, score with the file's own missing markers."""
    data: np.ndarray
    per_frame: bool  # True: unlinked detections, ranked per frame; False: tracks with one slot each
    image_size: object = None  # (width, height), (T, 2) per frame, or None when the file does not say
    frame_names: list | None = None  # how messages name frame t (e.g. its file); default "frame t"
    notes: list = field(default_factory=list)  # remarks for the report (unknown keys, ...)


@dataclass
class Item:
    name: str
    source: str  # the file or folder named in messages
    load: Callable  # () -> Sequence2D (or the format's own sample, see Plan.process); picklable
    label: int | None = None
    split: str | None = None


@dataclass
class Plan:
    items: list
    layout: Layout
    inputs: list  # files whose size and time tell whether a resumed run has the same inputs
    classes: list | None = None  # class names by label, when the format names them
    process: Callable | None = None  # (loaded) -> final sample, replacing the 2-D pipeline (faithful modes)
    description: dict = field(default_factory=dict)  # extra manifest entries of the format


def read_json(path: str):
    """The parsed file; ValueError naming what is wrong (the caller names the file)."""
    try:
        with open(path, encoding="utf-8") as f:
            return json.load(f)
    except json.JSONDecodeError as e:
        raise ValueError(f"not valid JSON ({e})") from None
    except UnicodeDecodeError as e:
        raise ValueError(f"not a text file ({e})") from None


def unknown_keys_note(obj: dict, known, what: str) -> list:
    """Unknown keys are warned about, never fatal: [the note] or []. Readers take only the keys
    they know, and pose estimators add keys between versions."""
    extra = sorted(set(obj) - set(known))
    return [f"unknown key(s) {', '.join(map(repr, extra))} in {what} ignored"] if extra else []


def expand_inputs(inputs, suffixes: tuple, recursive: bool = False) -> list:
    """Files among `inputs` (files, or folders searched for the suffixes), sorted, no repeats."""
    found = []
    for path in inputs:
        if os.path.isdir(path):
            if recursive:
                found += [os.path.join(d, f) for d, _, fs in os.walk(path) for f in fs if f.endswith(suffixes)]
            else:
                found += [os.path.join(path, f) for f in os.listdir(path) if f.endswith(suffixes)]
        elif os.path.isfile(path):
            found.append(path)
        else:
            raise FileNotFoundError(f"input not found: {path}")
    return sorted(dict.fromkeys(os.path.normpath(p) for p in found))


def stem(path: str) -> str:
    return os.path.splitext(os.path.basename(os.path.normpath(path)))[0]


def layout_names(layout: Layout) -> tuple | None:
    return JOINT_NAMES.get(layout.name)


def read_pickle(path: str):
    """An annotation pickle's content, read without running code (torchlight.io.load_pickle: containers,
    numbers, strings and numpy arrays only); ValueError with the reason if it cannot be read or asks for more."""
    try:
        return load_pickle(path)
    except (pickle.UnpicklingError, EOFError, AttributeError, ImportError, IndexError, TypeError) as e:
        raise ValueError(f"cannot be read as a data pickle ({type(e).__name__}: {e})") from None


def person_block(values, joints: int, width: int, where: str) -> np.ndarray:
    """A flat [x, y, c, x, y, c, ...] list (width values a joint) as float (joints, width)."""
    try:
        a = np.asarray(values, dtype=np.float64)
    except (TypeError, ValueError):
        raise ValueError(f"{where}: keypoints are not a list of numbers") from None
    if a.ndim != 1:
        raise ValueError(f"{where}: keypoints of shape {a.shape}, expected a flat list")
    if a.size != joints * width:
        raise ValueError(f"{where}: {a.size / width:g} keypoints ({a.size} values, {width} a joint), "
                         f"the layout has {joints} joints")
    return a.reshape(joints, width)


def stack_frames(frames: list, joints: int) -> np.ndarray:
    """[per frame: list of (V, 3) persons] -> (3, T, V, P) with P the most persons in a frame
    (at least 1); absent persons are zero."""
    persons = max([len(f) for f in frames] + [1])
    out = np.zeros((3, len(frames), joints, persons))
    for t, people in enumerate(frames):
        for m, p in enumerate(people):
            out[:, t, :, m] = p.T
    return out


def number_ranges(numbers) -> str:
    """[3, 4, 5, 9] -> '3-5, 9'."""
    numbers, parts, i = sorted(numbers), [], 0
    while i < len(numbers):
        j = i
        while j + 1 < len(numbers) and numbers[j + 1] == numbers[j] + 1:
            j += 1
        parts.append(f"{numbers[i]}" if i == j else f"{numbers[i]}-{numbers[j]}")
        i = j + 1
    return ", ".join(parts)
