"""300-frame arrays (tools/ntu_gendata.py, tools/pku_gendata.py) -> the lineage's frame-N training data.

    python tools/lineage_frames.py --in_folder data/ntu60 --out_folder data/ntu60_frame50 \\
        [--frames 50] [--streams motion,bone] [--benchmark xsub,xview]

For every benchmark folder of in_folder holding `{train,val}_data_joint.npy` (or the lineage's
`_data.npy`) and `_label.pkl`, writes `<out_folder>/<benchmark>/{part}_position.npy` float32
(N, 3, frames, V, M), a copy of `{part}_label.pkl` and `manifest.json` (last). This is the
AimCLR / CrosSCLR / ActCLR / 3s-CACA / ASAR / HYSP `*_frame50` step (feeder/preprocess.py:
centre on the spine-shoulder joint per frame, linear resize in time, per-frame rotation of the
shoulders onto x), and with `--frames 64` SkeleMixCLR's `NTU60_frame64`.

--streams adds precomputed streams: `motion` is the lineage's `{part}_motion.npy` (frame
differences of the raw sequence, resized, not rotated: what upstream writes beside the
positions); `bone` is `{part}_bone.npy`, the bone stream of the positions (feeder/streams.py).
Training configs normally compute streams on the fly (`stream: motion`), which differs from the
precomputed lineage motion: that one is taken before centring and resizing.
A sample with no valid frame (person 0's joint 0 zero throughout) is reported and left out.
"""
from __future__ import annotations

import argparse
import os
import shlex
import sys

REPO_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

import numpy as np  # noqa: E402
import torch  # noqa: E402
from tqdm import tqdm  # noqa: E402

from feeder.layouts import get_layout, layout_to_dict  # noqa: E402
from feeder.ntu_feeder import DataError, read_labels  # noqa: E402
from feeder.preprocess import motion_fixed_length, to_fixed_length  # noqa: E402
from tools.raw.common import InputError, Problems, say  # noqa: E402
from tools.raw.store import SampleStore, fingerprint  # noqa: E402
from feeder.streams import bone  # noqa: E402

PARTS = ("train", "val")
DATA_NAMES = ("{}_data_joint.npy", "{}_data.npy")  # ours / 2s-AGCN, and the st-gcn / AimCLR name
STREAMS = ("motion", "bone")
READ_CHUNK = 64


def find_inputs(folder: str, part: str) -> tuple:
    for pattern in DATA_NAMES:
        path = os.path.join(folder, pattern.format(part))
        if os.path.isfile(path):
            return path, os.path.join(folder, f"{part}_label.pkl")
    return None, None


def convert_benchmark(in_dir: str, out_dir: str, frames: int, streams: tuple, layout, problems: Problems,
                      command: str) -> dict:
    inputs = {p: find_inputs(in_dir, p) for p in PARTS}
    if not all(path for path, _ in inputs.values()):
        raise InputError(in_dir, f"needs {DATA_NAMES[0].format('train')} and {DATA_NAMES[0].format('val')} "
                                 "(with their _label.pkl); make them with tools/ntu_gendata.py")
    if os.path.isdir(os.path.join(os.path.dirname(os.path.abspath(in_dir)), ".partial")) or \
            os.path.isdir(os.path.join(in_dir, ".partial")):
        raise InputError(in_dir, "an unfinished conversion is still writing there; run it again to finish it first")
    data, labels, names = {}, {}, {}
    for part, (data_path, label_path) in inputs.items():
        try:
            names[part], label = read_labels(label_path)
        except DataError as e:
            raise InputError(label_path, str(e)) from None
        seen = set()
        for n in names[part]:
            if n in seen:
                raise InputError(label_path, f"sample name {n!r} appears twice")
            seen.add(n)
        data[part] = np.load(data_path, mmap_mode="r")
        if data[part].ndim != 5 or data[part].shape[1] != 3 or len(data[part]) != len(names[part]):
            raise InputError(data_path, f"shape {data[part].shape}: expected (N={len(names[part])}, 3, T, V, M)")
        if data[part].shape[3] != layout.num_joints:
            raise InputError(data_path, f"{data[part].shape[3]} joints, layout {layout.name!r} has {layout.num_joints}")
        labels[part] = label.tolist()
    sample_shape = (3, frames, layout.num_joints, data["train"].shape[4])
    # keys carry the part: a name may appear in both parts only by mistake, and must stay distinct
    splits = {p: [f"{p}:{n}" for n in names[p]] for p in PARTS}
    kinds = ("position",) + streams
    settings = {"frames": frames, "layout": layout.name, "inputs": fingerprint(p for pair in inputs.values()
                                                                               for p in pair)}
    store = SampleStore(out_dir, splits, sample_shape, settings, kinds=kinds)
    try:
        problems.add_earlier(store.skipped_before, lambda k: f"{k.split(':', 1)[0]} sample {k.split(':', 1)[1]}")
        todo = set(store.todo())
        for part in PARTS:
            keys = splits[part]
            bar = tqdm(total=len(keys), desc=f"{os.path.basename(in_dir)}/{part}", unit="seq")
            for start in range(0, len(keys), READ_CHUNK):
                bar.update(len(keys[start:start + READ_CHUNK]))
                block = None
                for i, key in enumerate(keys[start:start + READ_CHUNK]):
                    if key not in todo:
                        continue
                    if block is None:
                        block = np.asarray(data[part][start:start + READ_CHUNK])
                    raw = block[i]
                    try:
                        out = [to_fixed_length(raw, layout, frames)]
                    except ValueError as e:
                        problems.add(f"{os.path.basename(inputs[part][0])} sample {start + i} "
                                     f"({key.split(':', 1)[1]})", str(e), part)
                        store.skip(key, str(e))
                        continue
                    if "motion" in streams:
                        out.append(motion_fixed_length(raw, frames))
                    if "bone" in streams:
                        out.append(bone(torch.from_numpy(out[0][None]), layout)[0].numpy())
                    store.put(key, *out)
                store.commit(every=2000)
            bar.close()
        counts, outputs = {}, []
        for part, kept, arrays in store.finished():
            rows = {k: i for i, k in enumerate(splits[part])}
            kept_names = [k.split(":", 1)[1] for k in kept]
            outputs.append(store.stage_pickle(os.path.join(out_dir, f"{part}_label.pkl"),
                                              (kept_names, [labels[part][rows[k]] for k in kept])))
            outputs += [store.stage_array(arrays[kind], os.path.join(out_dir, f"{part}_{kind}.npy")) for kind in kinds]
            counts[part] = len(kept)
        outputs.append(store.stage_json(os.path.join(out_dir, "manifest.json"), {
            "pipeline": "lineage-frameN", "frames": frames, "layout": layout_to_dict(layout),
            "persons": sample_shape[-1], "centered_on_joint": layout.center, "rotated": layout.shoulders is not None,
            "streams": list(kinds), "counts": counts,
            "num_classes": max(max(v, default=-1) for v in labels.values()) + 1,
            "skipped": {k.split(":", 1)[1]: r for k, r in store.skipped.items()},
            "source": os.path.abspath(in_dir), "created_by": command,
        }))
        store.publish(outputs)
    finally:
        store.close()
    return counts


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--in_folder", required=True, help="output folder of tools/ntu_gendata.py or pku_gendata.py")
    parser.add_argument("--out_folder", required=True)
    parser.add_argument("--frames", type=int, default=50)
    parser.add_argument("--streams", default="", help="comma-separated extras: motion,bone")
    parser.add_argument("--benchmark", default=None, help="comma-separated subfolders (default: all that hold data)")
    parser.add_argument("--layout", default="ntu-rgb+d", help="layout name or YAML (PKU-MMD uses ntu-rgb+d)")
    parser.add_argument("--strict", action="store_true", help="stop at the first bad sample")
    args = parser.parse_args(argv)
    streams = tuple(s.strip() for s in args.streams.split(",") if s.strip())
    if any(s not in STREAMS for s in streams):
        parser.error(f"--streams {args.streams!r}: choose from {', '.join(STREAMS)}")
    if args.frames < 1:
        parser.error("--frames must be at least 1")
    if not os.path.isdir(args.in_folder):
        parser.error(f"--in_folder {args.in_folder}: not a folder")
    layout = get_layout(args.layout)
    if args.benchmark:
        benchmarks = [b.strip() for b in args.benchmark.split(",") if b.strip()]
    else:
        benchmarks = sorted(d for d in os.listdir(args.in_folder)
                            if find_inputs(os.path.join(args.in_folder, d), "train")[0])
        if not benchmarks:
            parser.error(f"no benchmark folder with train data in {args.in_folder}")
    command = shlex.join(["python", "tools/lineage_frames.py"] + (sys.argv[1:] if argv is None else list(argv)))
    problems = Problems(args.strict)
    lines = [f"{'benchmark':<10}{'part':<7}{'samples':>9}"]
    try:
        for b in benchmarks:
            counts = convert_benchmark(os.path.join(args.in_folder, b), os.path.join(args.out_folder, b),
                                       args.frames, streams, layout, problems, command)
            lines += [f"{b:<10}{p:<7}{counts[p]:>9}" for p in PARTS]
    except InputError as e:
        say(f"error: {e}")
        return 1
    lines += problems.report_lines("sample(s)")
    lines.append(f"wrote {args.out_folder}")
    say("\n".join(lines))
    return 0


if __name__ == "__main__":
    sys.exit(main())
