"""PKU-MMD part I / part II official release -> the lineage arrays and / or MAMP's `.npz`.

    python tools/pku_gendata.py --part 1 --skeleton_path PKU_Skeleton_Renew/ \\
        --label_path Train_Label_PKU_final/ --split_path Split/ --out_folder data/pku_part1 \\
        [--format lineage,npz] [--benchmark xsub,xview] [--ignored_sample_path LIST] [--workers N]

The release holds one skeleton file per untrimmed video (`0002-L.txt`, part II `A01N02-L.txt`),
a label file of the same name (`class_id,start,end,confidence` per action instance) and the split
files (part I `cross-subject.txt` / `cross-view.txt`, part II `cross_subject_v2.txt` /
`cross_view_v2.txt`). Every labelled instance becomes one sample (tools/raw/pku.py has how each
lineage cuts it; they differ by one frame):
- lineage (AimCLR / CrosSCLR / 3s-CACA / ASAR / HYSP): `<out>/<benchmark>/{train,val}_data_joint.npy`
  (N, 3, 300, 25, 2) + `{train,val}_label.pkl` (names `F002V001C041L001.skeleton`, label = class - 1),
  sorted by name; longer instances centre-cropped to 300. Then tools/lineage_frames.py makes the
  frame-50 data (`pku_part1_frame50`), exactly as for NTU.
- npz (MAMP / STARS): `<out>/PKUv1_XSub.npz` (part II: PKUv2_...) with x_train (N, 300, 150),
  one-hot y_train of width 51, x_test, y_test; the first 300 frames kept; all-zero cuts dropped.
Upstream writes both in file-system order; here samples are sorted (video, then label row).
"""
from __future__ import annotations

import argparse
import os
import shlex
import sys

REPO_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

import numpy as np  # noqa: E402

from tools.raw import pku  # noqa: E402
from tools.raw.common import InputError, Problems, parallel_map, say  # noqa: E402
from tools.raw.ctrgcn import one_hot  # noqa: E402
from tools.raw.store import SampleStore, fingerprint, npz_rows, write_npz  # noqa: E402

FORMATS = ("lineage", "npz")
BENCHMARKS = ("xsub", "xview")
PARTS = ("train", "val")
SAMPLE_SHAPE = (3, pku.MAX_FRAMES, pku.NUM_JOINTS, pku.NUM_PERSONS)


def npz_name(part: int, benchmark: str) -> str:
    return f"PKUv{part}_{'XSub' if benchmark == 'xsub' else 'XView'}.npz"


def find_videos(skeleton_path: str, label_path: str, part: int, problems: Problems) -> dict:
    """{video: label rows} for every skeleton file with a label file; problems for the others."""
    if not os.path.isdir(skeleton_path):
        raise InputError(skeleton_path, "not a folder (--skeleton_path takes the unpacked skeleton folder)")
    if not os.path.isdir(label_path):
        raise InputError(label_path, "not a folder (--label_path takes the unpacked label folder)")
    videos = {}
    for entry in sorted(os.listdir(skeleton_path)):
        if not entry.endswith(pku.SUFFIX):
            continue
        try:
            video = pku.parse_video(entry)
        except InputError as e:
            problems.add(entry, e.reason)
            continue
        if video.part != part:
            problems.add(entry, f"a part {video.part} video name, but --part {part}")
            continue
        labels = os.path.join(label_path, entry)
        if not os.path.isfile(labels):
            problems.add(entry, f"no label file {labels}")
            continue
        try:
            videos[video.name] = pku.read_labels(labels)
        except InputError as e:
            problems.add(str(e.source), e.reason)
    return videos


def cut_video(job) -> tuple:
    """(video, {sample: array}, [(sample, reason)]) for one video; runs in worker processes.
    An unreadable video gives [(None, (file and line, reason))]."""
    video, path, rows, fmt = job
    try:
        sequence = pku.read_sequence(path)
    except InputError as e:  # the whole video: (None, (where, why))
        return video, {}, [(None, (e.source, e.reason))]
    except OSError as e:
        return video, {}, [(None, (video + pku.SUFFIX, str(e)))]
    samples, problems = {}, []
    for row, (class_id, start, end, _) in enumerate(rows):
        if fmt == "lineage":
            name = pku.lineage_sample_name(video, class_id, row + 1)
            try:
                x = pku.lineage_instance(sequence, start, end)
            except ValueError as e:
                problems.append((name, str(e)))
                continue
            if not x.any():
                problems.append((name, f"frames {start}..{end} hold no skeleton"))
                continue
            padded = np.zeros(SAMPLE_SHAPE, np.float32)
            padded[:, :x.shape[1]] = x
            samples[name] = padded
        else:
            name = pku.mamp_sample_name(video, row)
            x = pku.mamp_instance(sequence, start, end)
            if x is None:
                problems.append((name, f"frames [{start}, {end}) hold no skeleton (MAMP drops it)"))
                continue
            samples[name] = x.reshape(pku.MAX_FRAMES, pku.NUM_PERSONS, pku.NUM_JOINTS, 3).transpose(3, 0, 2, 1)
    return video, samples, problems


def plan(videos: dict, splits: dict, fmt: str, ignored: set) -> tuple:
    """({"<benchmark>/<part>": sample names}, {sample: (video, label)}) for one format."""
    samples = {}
    for video, rows in sorted(videos.items()):
        for row, (class_id, *_ ) in enumerate(rows):
            if fmt == "lineage":
                name = pku.lineage_sample_name(video, class_id, row + 1)
                if name in ignored:
                    continue
            else:
                name = pku.mamp_sample_name(video, row)
            samples[name] = (video, class_id - 1)
    out = {}
    for benchmark, train_videos in splits.items():
        for part in PARTS:
            out[f"{benchmark}/{part}"] = [n for n, (v, _) in samples.items()
                                          if pku.is_train(v, train_videos) == (part == "train")]
    return out, samples


def convert(fmt, videos, splits, paths, out_folder, part, ignored, problems, workers, command) -> dict:
    """One format's samples: converted (resumably, in its own partial folder), then published."""
    skeleton_path, label_path = paths
    names, samples = plan(videos, splits, fmt, ignored)
    out_of_range = {n for n, (_, label) in samples.items() if not 0 <= label < pku.NUM_CLASSES}
    inputs = [os.path.join(d, v + pku.SUFFIX) for v in sorted(videos) for d in (skeleton_path, label_path)]
    store = SampleStore(out_folder, names, SAMPLE_SHAPE, {"format": fmt, "part": part, "inputs": fingerprint(inputs)},
                        partial=f".partial-{fmt}")
    try:
        if store.resumed:
            say(f"resuming {fmt}: {store.resumed} of {len(samples)} samples were done by an earlier run")
        problems.add_earlier(store.skipped_before, lambda n: f"{samples[n][0]}{pku.SUFFIX} instance {n}")
        for name in sorted(out_of_range & set(store.todo())):
            reason = f"class id {samples[name][1] + 1} outside 1..{pku.NUM_CLASSES}"
            problems.add(f"{samples[name][0]}{pku.SUFFIX} instance {name}", reason)
            store.skip(name, reason)
        todo = set(store.todo())
        jobs = [(v, os.path.join(skeleton_path, v + pku.SUFFIX), rows, fmt) for v, rows in sorted(videos.items())
                if any(n in todo for n in samples_of(v, rows, fmt))]
        try:
            for video, cut, bad in parallel_map(cut_video, jobs, workers, f"pku {fmt}", "video"):
                for name, reason in bad:
                    if name is None:  # the whole video is unreadable
                        problems.add(*reason)
                        for n in samples_of(video, videos[video], fmt):
                            if n in todo:
                                store.skip(n, f"{reason[0]}: {reason[1]}")
                    elif name in todo:
                        problems.add(f"{video}{pku.SUFFIX} instance {name}", reason)
                        store.skip(name, reason)
                for name, x in cut.items():
                    if name in todo:
                        store.put(name, x)
                store.commit(every=2000)
        finally:
            store.commit()
        counts = {key: (kept, arrays["data"]) for key, kept, arrays in store.finished()}
        outputs = []
        for benchmark in splits:
            if fmt == "lineage":
                folder = os.path.join(out_folder, benchmark)
                for p in PARTS:
                    kept, array = counts[f"{benchmark}/{p}"]
                    outputs.append(store.stage_pickle(os.path.join(folder, f"{p}_label.pkl"), (
                        [n + pku.LINEAGE_SUFFIX for n in kept], [samples[n][1] for n in kept])))
                    outputs.append(store.stage_array(array, os.path.join(folder, f"{p}_data_joint.npy")))
                in_benchmark = set(names[f"{benchmark}/train"] + names[f"{benchmark}/val"])
                outputs.append(store.stage_json(os.path.join(folder, "manifest.json"), {
                    "pipeline": "pku-raw300", "dataset": f"pku_part{part}", "benchmark": benchmark,
                    "layout": {"name": "ntu-rgb+d"}, "frames": pku.MAX_FRAMES, "persons": pku.NUM_PERSONS,
                    "counts": {p: len(counts[f"{benchmark}/{p}"][0]) for p in PARTS},
                    "skipped": {n: r for n, r in store.skipped.items() if n in in_benchmark},
                    "source": os.path.abspath(skeleton_path), "created_by": command}))
            else:
                rows = {}
                for p, npz_part in (("train", "train"), ("val", "test")):
                    kept, array = counts[f"{benchmark}/{p}"]
                    rows[f"x_{npz_part}"] = npz_rows(array, os.path.join(store.folder, f"{benchmark}_{p}.rows.npy"))
                    rows[f"y_{npz_part}"] = one_hot([samples[n][1] for n in kept], pku.NUM_CLASSES)
                outputs.append(store.stage_file(os.path.join(out_folder, npz_name(part, benchmark)),
                                                lambda f, rows=rows: write_npz(f, **rows)))
        store.publish(outputs)
    finally:
        store.close()
    return {k: len(v[0]) for k, v in counts.items()}


def samples_of(video, rows, fmt):
    if fmt == "lineage":
        return [pku.lineage_sample_name(video, c, i + 1) for i, (c, *_ ) in enumerate(rows)]
    return [pku.mamp_sample_name(video, i) for i in range(len(rows))]


def run(part, skeleton_path, label_path, split_path, out_folder, formats, benchmarks, ignored_path=None,
        workers=1, strict=False, command="") -> dict:
    problems = Problems(strict)
    splits = {}
    for b in benchmarks:
        path = os.path.join(split_path, pku.SPLIT_FILES[part][b]) if os.path.isdir(split_path) else split_path
        if not os.path.isfile(path):
            raise InputError(path, f"split file not found (part {part} {b} is {pku.SPLIT_FILES[part][b]})")
        splits[b] = pku.read_split(path)[0]
    videos = find_videos(skeleton_path, label_path, part, problems)
    if not videos:
        raise InputError(skeleton_path, "no skeleton file with a label file")
    ignored = pku.read_ignore_list(ignored_path) if ignored_path else set()
    os.makedirs(out_folder, exist_ok=True)
    counts = {fmt: convert(fmt, videos, splits, (skeleton_path, label_path), out_folder, part, ignored, problems,
                           workers, command) for fmt in formats}
    lines = [f"{'format':<9}{'benchmark':<11}{'train':>8}{'val/test':>10}"]
    for fmt, c in counts.items():
        lines += [f"{fmt:<9}{b:<11}{c[f'{b}/train']:>8}{c[f'{b}/val']:>10}" for b in benchmarks]
    lines.append(f"{len(videos)} videos, {sum(len(r) for r in videos.values())} labelled instances")
    lines += problems.report_lines()
    lines.append(f"wrote {out_folder}")
    say("\n".join(lines))
    return counts


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--part", type=int, choices=(1, 2), required=True)
    parser.add_argument("--skeleton_path", required=True, help="folder of <video>.txt skeleton files")
    parser.add_argument("--label_path", required=True, help="folder of <video>.txt label files")
    parser.add_argument("--split_path", required=True, help="folder holding the official split files")
    parser.add_argument("--out_folder", required=True)
    parser.add_argument("--format", default="lineage,npz", help="comma-separated: lineage,npz")
    parser.add_argument("--benchmark", default="xsub,xview")
    parser.add_argument("--ignored_sample_path", default=None, help="lineage sample names to leave out")
    parser.add_argument("--workers", type=int, default=max(1, min(8, os.cpu_count() or 1)))
    parser.add_argument("--strict", action="store_true", help="stop at the first bad file or instance")
    args = parser.parse_args(argv)
    formats = tuple(f.strip() for f in args.format.split(",") if f.strip())
    benchmarks = tuple(b.strip() for b in args.benchmark.split(",") if b.strip())
    if not formats or any(f not in FORMATS for f in formats):
        parser.error(f"--format {args.format!r}: choose from {', '.join(FORMATS)}")
    if not benchmarks or any(b not in BENCHMARKS for b in benchmarks):
        parser.error(f"--benchmark {args.benchmark!r}: choose from {', '.join(BENCHMARKS)}")
    command = shlex.join(["python", "tools/pku_gendata.py"] + (sys.argv[1:] if argv is None else list(argv)))
    try:
        run(args.part, args.skeleton_path, args.label_path, args.split_path, args.out_folder, formats, benchmarks,
            args.ignored_sample_path, args.workers, args.strict, command)
    except InputError as e:
        say(f"error: {e}")
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
