"""pyskl / mmaction2 3-D annotation pickles (e.g. `ntu60_3danno.pkl`) -> the lineage or MAMP format.

    python tools/pyskl_import.py --anno ntu60_3danno.pkl --out_folder data/ntu60_pyskl \\
        [--format lineage,npz] [--max_frames 300]

The pickle is {"split": {"xsub_train": [names], "xsub_val": [...], ...}, "annotations":
[{"frame_dir": name, "label": int, "keypoint": (M, T, V, C) float, ...}]}. For each benchmark
of the split dict (a `<benchmark>_train` / `<benchmark>_val` pair):
- lineage: `<out>/<benchmark>/{train,val}_data_joint.npy` (N, C, max_frames, V, 2) + `_label.pkl`
  (as tools/ntu_gendata.py writes; then tools/lineage_frames.py makes the frame-50 data);
- npz: `<out>/<DATASET>_<Benchmark>.npz` with x_train (N, max_frames, 2*V*C), one-hot y_train,
  x_test, y_test, as MAMP / STARS read it (`NTU60_XSub.npz`, `NTU120_XSet.npz`, ...).
Keypoints are copied as they are (pyskl's own denoising / normalisation stays); a third person
is dropped (reported), a longer sequence is reported and left out. Samples keep the split's order.
"""
from __future__ import annotations

import argparse
import os
import pickle
import shlex
import sys

REPO_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

import numpy as np  # noqa: E402
from tqdm import tqdm  # noqa: E402

from tools.raw.common import InputError, Problems, say  # noqa: E402
from tools.raw.ctrgcn import one_hot  # noqa: E402
from tools.raw.store import SampleStore, fingerprint, npz_rows, write_npz  # noqa: E402
from torchlight.io import load_pickle  # noqa: E402

FORMATS = ("lineage", "npz")
MAX_PERSONS = 2
# the test part is called val in the lineage, test in the npz
PARTS = {"train": "train", "val": "test"}


def npz_name(benchmark: str, num_classes: int) -> str:
    """MAMP's file names: NTU60_XSub, NTU60_XView, NTU120_XSub, NTU120_XSet (other data: <N>cls)."""
    dataset = {60: "NTU60", 120: "NTU120"}.get(num_classes, f"{num_classes}cls")
    bench = {"xsub": "XSub", "xview": "XView", "xset": "XSet"}.get(benchmark, benchmark)
    return f"{dataset}_{bench}.npz"


def load_annotations(path: str) -> tuple:
    """(split dict, {name: annotation}) with the structure checked; InputError naming what is wrong."""
    try:
        anno = load_pickle(path)  # plain data only: a downloaded annotation file runs no code
    except (OSError, pickle.UnpicklingError, EOFError, ValueError) as e:
        raise InputError(path, f"cannot be read as a pickle ({type(e).__name__}: {e})") from None
    if not isinstance(anno, dict) or not {"split", "annotations"} <= set(anno):
        raise InputError(path, "expected a dict with the keys 'split' and 'annotations' (pyskl format)")
    by_name = {}
    for i, a in enumerate(anno["annotations"]):
        missing = [k for k in ("frame_dir", "label", "keypoint") if k not in a]
        if missing:
            raise InputError(f"{path} annotation {i}", f"missing key(s) {', '.join(missing)}")
        by_name[a["frame_dir"]] = a
    return anno["split"], by_name


def benchmarks_of(split: dict, path: str) -> list:
    found = sorted(k[:-len("_train")] for k in split
                   if k.endswith("_train") and k[:-len("_train")] + "_val" in split)
    if not found:
        raise InputError(path, f"no <benchmark>_train / <benchmark>_val pair in its split keys {sorted(split)}")
    return found


def check_keypoint(a: dict, max_frames: int, joints: int) -> np.ndarray:
    """(M, T, V, C) keypoints as float32 (3, max_frames, V, 2); ValueError with the reason."""
    k = np.asarray(a["keypoint"], dtype=np.float32)
    if k.ndim != 4 or k.shape[-1] != 3:
        raise ValueError(f"keypoint shape {k.shape}: expected (M, T, V, 3) (a 2-D annotation file?)")
    if k.shape[2] != joints:
        raise ValueError(f"{k.shape[2]} joints, the first annotation has {joints}")
    if k.shape[1] > max_frames:
        raise ValueError(f"{k.shape[1]} frames, longer than {max_frames}")
    if not np.isfinite(k).all():
        raise ValueError("NaN or inf in the keypoints")
    if not k.any():
        raise ValueError("all keypoints are zero")
    out = np.zeros((3, max_frames, k.shape[2], MAX_PERSONS), np.float32)
    kept = k[:MAX_PERSONS]
    out[:, :k.shape[1], :, :len(kept)] = kept.transpose(3, 1, 2, 0)
    return out


def run(anno_path: str, out_folder: str, formats: tuple, max_frames: int = 300, strict: bool = False,
        command: str = "", num_classes: int | None = None) -> dict:
    split, annotations = load_annotations(anno_path)
    benchmarks = benchmarks_of(split, anno_path)
    problems = Problems(strict)
    splits = {}
    for b in benchmarks:
        for part in PARTS:
            names = list(split[f"{b}_{part}"])
            for n in [n for n in names if n not in annotations]:
                problems.add(f"{anno_path} split {b}_{part}", f"{n} has no annotation", part)
            splits[f"{b}/{part}"] = [n for n in names if n in annotations]
    wanted = {n for names in splits.values() for n in names}
    if not wanted:
        raise InputError(anno_path, "its splits list no annotated sample")
    first = np.asarray(annotations[min(wanted)]["keypoint"])
    if first.ndim != 4:
        raise InputError(f"{anno_path} annotation {min(wanted)}",
                         f"keypoint shape {first.shape}: expected (M, T, V, 3)")
    joints = first.shape[2]
    labels = {n: int(annotations[n]["label"]) for n in wanted}
    if num_classes is None:  # pyskl names its files ntu60_3danno.pkl / ntu120_3danno.pkl
        base = os.path.basename(anno_path).lower()
        num_classes = 120 if base.startswith("ntu120") else 60 if base.startswith("ntu60") else None
    if num_classes is None or max(labels.values()) >= num_classes:
        num_classes = max(num_classes or 0, max(labels.values()) + 1)
    crowded_note = f"more than {MAX_PERSONS} persons, the first {MAX_PERSONS} kept"
    store = SampleStore(out_folder, splits, (3, max_frames, joints, MAX_PERSONS),
                        {"inputs": fingerprint([anno_path]), "max_frames": max_frames}, partial=".partial-pyskl")
    try:
        problems.add_earlier(store.skipped_before, lambda n: f"{anno_path} annotation {n}")
        for name in tqdm(store.todo(), desc="pyskl", unit="seq"):
            a = annotations[name]
            try:
                sample = check_keypoint(a, max_frames, joints)
            except ValueError as e:
                problems.add(f"{anno_path} annotation {name}", str(e))
                store.skip(name, str(e))
                continue
            if np.asarray(a["keypoint"]).shape[0] > MAX_PERSONS:
                store.note(name, crowded_note)
            store.put(name, sample)
            store.commit(every=2000)
        counts, finished = {}, {}
        for key, kept, arrays in store.finished():
            counts[key] = len(kept)
            finished[key] = (kept, arrays["data"])
        outputs = []
        for benchmark in benchmarks:
            if "npz" in formats:
                rows = {}
                for part, npz_part in PARTS.items():
                    kept, array = finished[f"{benchmark}/{part}"]
                    rows[f"x_{npz_part}"] = npz_rows(array, os.path.join(store.folder, f"{benchmark}_{part}.rows.npy"))
                    rows[f"y_{npz_part}"] = one_hot([labels[n] for n in kept], num_classes)
                outputs.append(store.stage_file(os.path.join(out_folder, npz_name(benchmark, num_classes)),
                                                lambda f, rows=rows: write_npz(f, **rows)))
            if "lineage" in formats:
                folder = os.path.join(out_folder, benchmark)
                for part in PARTS:
                    kept, array = finished[f"{benchmark}/{part}"]
                    outputs.append(store.stage_pickle(os.path.join(folder, f"{part}_label.pkl"),
                                                      (kept, [labels[n] for n in kept])))
                    outputs.append(store.stage_array(array, os.path.join(folder, f"{part}_data_joint.npy")))
                outputs.append(store.stage_json(os.path.join(folder, "manifest.json"), {
                    "pipeline": "pyskl-import", "benchmark": benchmark, "frames": max_frames,
                    "persons": MAX_PERSONS, "num_classes": num_classes,
                    "counts": {p: counts[f"{benchmark}/{p}"] for p in PARTS},
                    "skipped": dict(store.skipped), "notes": store.notes,
                    "source": os.path.abspath(anno_path), "created_by": command}))
        crowded = sorted(store.notes.get(crowded_note, []))
        store.publish(outputs)
    finally:
        store.close()
    lines = [f"{'benchmark':<10}{'part':<7}{'samples':>9}"]
    lines += [f"{b:<10}{p:<7}{counts[f'{b}/{p}']:>9}" for b in benchmarks for p in PARTS]
    lines += problems.report_lines()
    if crowded:
        lines.append(f"note: {crowded_note}: {len(crowded)} sample(s), e.g. {crowded[0]} (listed in the manifests)")
    lines.append(f"wrote {out_folder} ({num_classes} classes; formats {', '.join(formats)})")
    say("\n".join(lines))
    return counts


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--anno", required=True, help="pyskl 3-D annotation pickle")
    parser.add_argument("--out_folder", required=True)
    parser.add_argument("--format", default="lineage,npz", help="comma-separated: lineage,npz")
    parser.add_argument("--max_frames", type=int, default=300)
    parser.add_argument("--num_classes", type=int, default=None,
                        help="one-hot width of the npz (default: 60 / 120 from an ntu60_* / ntu120_* file name, "
                             "else the largest label + 1)")
    parser.add_argument("--strict", action="store_true", help="stop at the first bad annotation")
    args = parser.parse_args(argv)
    formats = tuple(f.strip() for f in args.format.split(",") if f.strip())
    if not formats or any(f not in FORMATS for f in formats):
        parser.error(f"--format {args.format!r}: choose from {', '.join(FORMATS)}")
    command = shlex.join(["python", "tools/pyskl_import.py"] + (sys.argv[1:] if argv is None else list(argv)))
    try:
        run(args.anno, args.out_folder, formats, args.max_frames, args.strict, command, args.num_classes)
    except InputError as e:
        say(f"error: {e}")
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
