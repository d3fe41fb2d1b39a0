"""NW-UCLA skeletons: pack the raw release into one small archive, and make frame-N arrays.

    python tools/nw_ucla_gendata.py pack --src <all_sqe dir> --out data/nw_ucla/nw_ucla_skeletons.npz
    python tools/nw_ucla_gendata.py frames --src data/nw_ucla/nw_ucla_skeletons.npz \\
        --out_folder data/nw_ucla/frame50 --frames 50 [--split cross_view]
    python tools/nw_ucla_gendata.py raw --out_folder data/nw_ucla/raw   # whole sequences, MAMP / STARS

The release (`all_sqe/*.json`, see data/nw_ucla/SOURCE.md) is 1,484 JSON files of
{"file_name", "skeletons": [T][20][3] metres, "label": 1..10}, named a<action>_s<subject>_e<rep>_v<view>.

The archive keeps every frame as integer multiples of `unit_m` (default 1 mm: the JSON has 6
significant digits, Kinect v1 joints jitter by centimetres). `frame_deltas` (total_frames, 20, 3),
int16 when it fits, holds the frames of all sequences, concatenated in sorted-name order, each
minus the previous frame of its sequence (a sequence's first frame is absolute), which compresses
best of the encodings tried. `names`, `lengths`, `labels` (0-based), `views`, `subjects` describe
the sequences; `load_packed` decodes it all.

`frames` mode converts the archive or the JSON folder with tools.gendata_custom.convert (layout
'nw-ucla', one person); cross-view split: views 1, 2 -> train, view 3 -> val.
"""
from __future__ import annotations

import argparse
import glob
import json
import os
import re
import shlex
import sys

REPO_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

import numpy as np  # noqa: E402

from feeder.layouts import get_layout, layout_to_dict  # noqa: E402
from tools.gendata_custom import InputError, convert  # noqa: E402
from torchlight.io import atomic_pickle, atomic_write, atomic_write_json  # noqa: E402

NAME_PATTERN = re.compile(r"a(\d+)_s(\d+)_e(\d+)_v(\d+)")
NUM_JOINTS = 20
NUM_CLASSES = 10
TRAIN_VIEWS = {"cross_view": (1, 2)}
SOURCE = "NW-UCLA Multiview Action 3D (Wang et al., CVPR 2014), all_sqe release"


def read_record(path: str) -> tuple:
    """(name, (T, 20, 3) float64 metres, 0-based label) of one all_sqe JSON file."""
    name = os.path.basename(path)[:-len(".json")]
    with open(path) as f:
        try:
            record = json.load(f)
        except json.JSONDecodeError as e:
            raise ValueError(f"{os.path.basename(path)}: not valid JSON ({e})") from None
    try:
        skeleton = np.asarray(record.get("skeletons", []), dtype=np.float64)
    except ValueError:  # ragged lists
        skeleton = np.zeros(0)
    label = record.get("label")
    if (record.get("file_name") != name or NAME_PATTERN.fullmatch(name) is None or skeleton.ndim != 3
            or skeleton.shape[1:] != (NUM_JOINTS, 3) or label not in range(1, NUM_CLASSES + 1)):
        raise ValueError(f"{os.path.basename(path)}: not an NW-UCLA all_sqe record "
                         f"(file_name, skeletons [T][20][3], label 1..10)")
    return name, skeleton, label - 1


def read_json_folder(folder: str) -> dict:
    """All sequences of an all_sqe folder: names, skeletons (list of (T, 20, 3) float64 metres),
    lengths, labels (0-based), views, subjects."""
    paths = sorted(glob.glob(os.path.join(folder, "*.json")))
    if not paths:
        raise FileNotFoundError(f"no .json files in {folder}")
    names, skeletons, labels = zip(*(read_record(p) for p in paths))
    ids = np.array([[int(g) for g in NAME_PATTERN.fullmatch(n).groups()] for n in names])
    return {"names": np.array(names), "skeletons": skeletons,
            "lengths": np.array([len(s) for s in skeletons], np.int32),
            "labels": np.asarray(labels, np.int16), "subjects": ids[:, 1].astype(np.int16),
            "views": ids[:, 3].astype(np.int16)}


def encode_deltas(skeletons, unit_m: float) -> np.ndarray:
    """Sequences in metres -> concatenated frame differences in units of unit_m (int16 if it fits)."""
    steps = np.rint(np.concatenate(skeletons) / unit_m).astype(np.int64)
    deltas = steps.copy()
    deltas[1:] -= steps[:-1]
    starts = np.cumsum([0] + [len(s) for s in skeletons[:-1]])
    deltas[starts] = steps[starts]
    fits_int16 = np.abs(deltas).max() <= np.iinfo(np.int16).max
    return deltas.astype(np.int16 if fits_int16 else np.int32)


def decode_deltas(deltas: np.ndarray, lengths: np.ndarray, unit_m: float) -> list:
    """Inverse of encode_deltas: per-sequence (T, 20, 3) float32 metres."""
    running = np.cumsum(deltas, axis=0, dtype=np.int64)
    ends = np.cumsum(lengths)
    before = np.concatenate([np.zeros((1,) + running.shape[1:], np.int64), running[ends[:-1] - 1]])
    steps = running - np.repeat(before, lengths, axis=0)  # restart the sum at each sequence
    return np.split((steps * unit_m).astype(np.float32), ends[:-1])


def load_packed(path: str) -> dict:
    """The archive written by `pack`, in the form read_json_folder returns (float32 metres)."""
    with np.load(path) as z:
        data = {k: z[k] for k in ("names", "lengths", "labels", "views", "subjects")}
        data["skeletons"] = decode_deltas(z["frame_deltas"], data["lengths"], float(z["unit_m"]))
    return data


def load_any(src: str) -> dict:
    return read_json_folder(src) if os.path.isdir(src) else load_packed(src)


def pack(src: str, out: str, unit_mm: float = 1.0) -> dict:
    """Write the archive of every sequence in `src`; returns sizes and the round-trip error."""
    data = read_json_folder(src)
    unit_m = unit_mm / 1000
    os.makedirs(os.path.dirname(os.path.abspath(out)), exist_ok=True)
    partial = out + ".partial.npz"  # np.savez adds .npz to other names
    np.savez_compressed(partial, frame_deltas=encode_deltas(data["skeletons"], unit_m), unit_m=unit_m,
                        **{k: data[k] for k in ("names", "lengths", "labels", "views", "subjects")})
    back = load_packed(partial)
    error = max(np.abs(a - b).max() for a, b in zip(data["skeletons"], back["skeletons"]))
    if not (back["names"] == data["names"]).all() or error > unit_m / 2 + 1e-6:
        os.remove(partial)
        raise RuntimeError(f"round trip failed: max error {error} m")
    os.replace(partial, out)
    return {"sequences": len(data["names"]), "frames": int(data["lengths"].sum()),
            "bytes": os.path.getsize(out), "max_error_m": float(error)}


def split_labels(data: dict, split: str) -> dict:
    train_views = TRAIN_VIEWS[split]
    return {str(n): (int(lab), "train" if v in train_views else "val")
            for n, lab, v in zip(data["names"], data["labels"], data["views"])}


def make_frames(src: str, out_folder: str, frames: int = 50, split: str = "cross_view",
                command: str | None = None, strict: bool = True) -> dict:
    """Frame-N arrays of all sequences in `src` (archive or JSON folder); returns the summary."""
    data = load_any(src)
    sequences = ((str(n), s[None]) for n, s in zip(data["names"], data["skeletons"]))
    return convert(sequences, split_labels(data, split), "nw-ucla", frames=frames,
                   out_folder=out_folder, max_persons=1, strict=strict,
                   file_suffix=".json" if os.path.isdir(src) else "",
                   source=f"{SOURCE}, {split} split, from {src}", command=command,
                   total=len(data["names"]))


def make_raw(src: str, out_folder: str, split: str = "cross_view", command: str | None = None) -> dict:
    """Whole sequences for the MAMP / STARS views (valid-frame crop + resize at training time):
    `{train,val}_data_joint.npy` float32 (N, 3, T_max, 20, 1), zero-padded after each sequence and
    moved so the centre joint of its first frame is the origin (as the CTR-GCN / MAMP NTU data),
    `{train,val}_label.pkl` in sorted-name order and manifest.json (last)."""
    data = load_any(src)
    layout = get_layout("nw-ucla")
    labels = split_labels(data, split)
    longest = int(max(len(s) for s in data["skeletons"]))
    order = sorted(range(len(data["names"])), key=lambda i: str(data["names"][i]))
    os.makedirs(out_folder, exist_ok=True)
    manifest = os.path.join(out_folder, "manifest.json")
    if os.path.exists(manifest):
        os.remove(manifest)
    counts = {}
    for part in ("train", "val"):
        rows = [i for i in order if labels[str(data["names"][i])][1] == part]
        x = np.zeros((len(rows), 3, longest, NUM_JOINTS, 1), np.float32)
        for k, i in enumerate(rows):
            s = np.asarray(data["skeletons"][i], np.float32)  # (T, V, 3)
            x[k, :, :len(s), :, 0] = (s - s[0, layout.center]).transpose(2, 0, 1)
        names = [str(data["names"][i]) for i in rows]
        atomic_pickle(os.path.join(out_folder, f"{part}_label.pkl"), (names, [labels[n][0] for n in names]))
        atomic_write(os.path.join(out_folder, f"{part}_data_joint.npy"), lambda f, x=x: np.save(f, x))
        counts[part] = len(rows)
    atomic_write_json(manifest, {"pipeline": "nw-ucla-raw", "layout": layout_to_dict(layout), "frames": longest,
                                 "persons": 1, "origin": "centre joint of the first frame", "counts": counts,
                                 "num_classes": NUM_CLASSES, "source": f"{SOURCE}, {split} split, from {src}",
                                 "created_by": command})
    return counts


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    modes = parser.add_subparsers(dest="mode", required=True)
    p = modes.add_parser("pack", help="JSON folder -> compact .npz archive")
    p.add_argument("--src", required=True, help="the all_sqe folder of .json files")
    p.add_argument("--out", default="data/nw_ucla/nw_ucla_skeletons.npz")
    p.add_argument("--unit_mm", type=float, default=1.0, help="coordinate resolution kept (default 1 mm)")
    f = modes.add_parser("frames", help="archive or JSON folder -> frame-N training arrays")
    f.add_argument("--src", default="data/nw_ucla/nw_ucla_skeletons.npz", help=".npz archive or JSON folder")
    f.add_argument("--out_folder", default="data/nw_ucla/frame50")
    f.add_argument("--frames", type=int, default=50)
    f.add_argument("--split", choices=sorted(TRAIN_VIEWS), default="cross_view")
    r = modes.add_parser("raw", help="archive or JSON folder -> whole zero-padded sequences (MAMP / STARS)")
    r.add_argument("--src", default="data/nw_ucla/nw_ucla_skeletons.npz", help=".npz archive or JSON folder")
    r.add_argument("--out_folder", default="data/nw_ucla/raw")
    r.add_argument("--split", choices=sorted(TRAIN_VIEWS), default="cross_view")
    args = parser.parse_args(argv)
    command = shlex.join(["python", "tools/nw_ucla_gendata.py"] + (sys.argv[1:] if argv is None else argv))
    try:
        if args.mode == "pack":
            stats = pack(args.src, args.out, args.unit_mm)
            print(f"packed {stats['sequences']} sequences, {stats['frames']} frames into {args.out}: "
                  f"{stats['bytes'] / 1e6:.2f} MB, max round-trip error {stats['max_error_m'] * 1e3:.3f} mm")
        elif args.mode == "raw":
            counts = make_raw(args.src, args.out_folder, args.split, command)
            print(f"wrote {args.out_folder}: {counts['train']} train / {counts['val']} val sequences")
        else:
            make_frames(args.src, args.out_folder, args.frames, args.split, command)
    except (InputError, OSError, ValueError, RuntimeError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
