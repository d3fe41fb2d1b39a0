"""NTU RGB+D 60 / 120 official `.skeleton` files -> the lineage's 300-frame arrays, per benchmark.

    python tools/ntu_gendata.py --data_path nturgb+d_skeletons/ --out_folder data/ntu60 \\
        [--benchmark xsub,xview | xsub120,xset] [--ignored_sample_path LIST | none] [--workers N] \\
        [--body_selection file_order | energy] [--pre_normalize] [--strict]

Writes `<out_folder>/<benchmark>/{train,val}_data_joint.npy` float32 (N, 3, 300, 25, 2) and
`{train,val}_label.pkl` = (names with `.skeleton`, 0-based labels) in sorted-name order, plus
`manifest.json` (written last: a folder without one is incomplete). xsub120 writes to `xsub/`.

Defaults reproduce the st-gcn / AimCLR lineage: the first two bodies listed in each frame, no
normalisation. `--body_selection energy --pre_normalize` gives 2s-AGCN's arrays instead. The
official missing-skeleton list of the dataset is bundled and used unless another is given.
Files are parsed in parallel into memory-mapped arrays; an interrupted run continues where it
stopped when started again with the same arguments. Bad files (empty, truncated, NaN, all-zero
joints, a name that does not parse) are reported and skipped, or stop the run with --strict.
"""
from __future__ import annotations

import argparse
import os
import shlex
import sys

REPO_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

from tools.raw import ntu  # noqa: E402
from tools.raw.common import InputError, Problems, parallel_map, say  # noqa: E402
from tools.raw.store import SampleStore, fingerprint  # noqa: E402

PARTS = ("train", "val")
BODY_SELECTIONS = ("file_order", "energy")
MAX_BODY = 2


def folder_of(benchmark: str) -> str:
    return "xsub" if benchmark == "xsub120" else benchmark


def find_files(data_paths: list, problems: Problems) -> dict:
    """{sample name: path} of every `.skeleton` file; duplicates and unparsable names reported."""
    found = {}
    for folder in data_paths:
        if not os.path.isdir(folder):
            raise InputError(folder, "not a folder (--data_path takes the unpacked nturgb+d_skeletons folder)")
        for entry in sorted(os.listdir(folder)):
            if not entry.endswith(ntu.SUFFIX):
                continue
            path = os.path.join(folder, entry)
            try:
                ntu.parse_name(entry)
            except InputError as e:
                problems.add(path, e.reason)
                continue
            name = ntu.sample_name(entry)
            if name in found:
                problems.add(path, f"also found as {found[name]}; the first one is used")
                continue
            found[name] = path
    return found


def plan_splits(names: list, benchmarks: list) -> dict:
    """{"<folder>/<part>": sorted names} for each benchmark (NTU60 benchmarks keep only NTU60 files)."""
    splits = {}
    for benchmark in benchmarks:
        dataset = ntu.DATASETS[ntu.BENCHMARKS[benchmark][0]]
        for part in PARTS:
            splits[f"{folder_of(benchmark)}/{part}"] = []
        for name in sorted(names):
            parsed = ntu.parse_name(name)
            if parsed.setup > dataset["setups"] or parsed.action > dataset["classes"]:
                continue
            part = "train" if ntu.is_train(parsed, benchmark) else "val"
            splits[f"{folder_of(benchmark)}/{part}"].append(name)
    return splits


def convert_file(job) -> tuple:
    """(name, (3, 300, 25, 2) array or None, error or None, notes) for one file; runs in workers."""
    name, path, body_selection, pre_normalize, max_frames = job
    try:
        skeleton = ntu.read_skeleton(path, ntu.XYZ)
        if len(skeleton.frame) == 0:
            raise InputError(os.path.basename(path), "no body in any frame")
        if not skeleton.joints.any():
            raise InputError(os.path.basename(path), "all joints are zero")
        if body_selection == "energy":
            x = ntu.energy_xyz(skeleton, MAX_BODY, max_frames)
        else:
            x = ntu.lineage_xyz(skeleton, MAX_BODY, max_frames)
        if pre_normalize:
            x = ntu.pre_normalize(x)
    except InputError as e:
        return name, None, e.reason, []
    except (ValueError, OSError) as e:
        return name, None, str(e), []
    notes = []
    if (skeleton.slot >= MAX_BODY).any():
        kept = "the 2 most active bodies kept" if body_selection == "energy" else "the first 2 listed kept per frame"
        notes.append(f"frames with more than {MAX_BODY} bodies ({kept})")
    return name, x, None, notes


def read_ignore_list(ignored_path: str | None, dataset: str) -> tuple:
    """(path or None, names) of the missing-skeleton list to apply; the bundled official one by default."""
    if ignored_path == "none":
        return None, set()
    path = ignored_path or ntu.MISSING_LISTS[dataset]
    names = ntu.read_missing_list(path)
    if not names:
        raise InputError(path, "no sample name (SsssCcccPpppRrrrAaaa, one per line) in this missing-skeleton list")
    return path, names


def run(data_paths: list, out_folder: str, benchmarks: list, ignored_path: str | None, workers: int = 1,
        body_selection: str = "file_order", pre_normalize: bool = False, strict: bool = False,
        max_frames: int = ntu.MAX_FRAMES, command: str = "", commit_every: int = 500) -> dict:
    """Convert, write every benchmark's files, print the report; returns {split: count}."""
    datasets = {ntu.BENCHMARKS[b][0] for b in benchmarks}
    if len(datasets) != 1:
        raise InputError("--benchmark", f"{','.join(benchmarks)} mixes NTU60 and NTU120 benchmarks; "
                                        "convert them into separate out folders")
    dataset = datasets.pop()
    problems = Problems(strict)
    files = find_files(data_paths, problems)
    ignored_path, ignored = read_ignore_list(ignored_path, dataset)
    names = sorted(n for n in files if n not in ignored)
    splits = plan_splits(names, benchmarks)
    wanted = sorted({n for v in splits.values() for n in v})
    if not wanted:
        raise InputError(", ".join(data_paths), f"no {dataset.upper()} .skeleton file to convert")
    settings = {"body_selection": body_selection, "pre_normalize": pre_normalize, "max_frames": max_frames,
                "inputs": fingerprint(files[n] for n in wanted)}
    store = SampleStore(out_folder, splits, (3, max_frames, ntu.NUM_JOINTS, MAX_BODY), settings)
    try:
        if store.resumed:
            say(f"resuming: {store.resumed} of {len(wanted)} files were converted by an earlier run")
        problems.add_earlier(store.skipped_before, lambda n: os.path.basename(files[n]))
        jobs = [(n, files[n], body_selection, pre_normalize, max_frames) for n in store.todo()]
        try:
            for name, x, error, notes in parallel_map(convert_file, jobs, workers, "ntu .skeleton", "file"):
                if error is not None:
                    problems.add(os.path.basename(files[name]), error)  # raises under --strict
                    store.skip(name, error)
                else:
                    store.put(name, x)
                for note in notes:
                    store.note(name, note)
                store.commit(every=commit_every)
        finally:
            store.commit()
        counts, outputs = {}, []
        labels = {n: ntu.parse_name(n).label for n in wanted}
        for split, kept, arrays in store.finished():
            folder, part = os.path.join(out_folder, os.path.dirname(split)), os.path.basename(split)
            outputs.append(store.stage_pickle(os.path.join(folder, f"{part}_label.pkl"),
                                              ([n + ntu.SUFFIX for n in kept], [labels[n] for n in kept])))
            outputs.append(store.stage_array(arrays["data"], os.path.join(folder, f"{part}_data_joint.npy")))
            counts[split] = len(kept)
        for benchmark in benchmarks:
            folder = folder_of(benchmark)
            in_benchmark = set(splits[f"{folder}/train"] + splits[f"{folder}/val"])
            outputs.append(store.stage_json(os.path.join(out_folder, folder, "manifest.json"), {
                "pipeline": "ntu-raw300" + ("-prenorm" if pre_normalize else ""),
                "dataset": dataset, "benchmark": benchmark,
                "layout": {"name": "ntu-rgb+d"},
                "frames": max_frames, "persons": MAX_BODY,
                "body_selection": body_selection, "pre_normalized": pre_normalize,
                "counts": {p: counts[f"{folder}/{p}"] for p in PARTS},
                "official_counts": ntu.OFFICIAL_COUNTS[benchmark],
                "ignored_list": os.path.abspath(ignored_path) if ignored_path else None,
                "skipped": {os.path.basename(files[n]): r for n, r in store.skipped.items() if n in in_benchmark},
                "notes": {k: sorted(n for n in v if n in in_benchmark) for k, v in store.notes.items()},
                "source": [os.path.abspath(p) for p in data_paths],
                "created_by": command,
            }))
        notes = dict(store.notes)
        store.publish(outputs)
    finally:
        store.close()
    print_report(benchmarks, counts, problems, notes, len(ignored & set(files)), out_folder)
    return counts


def print_report(benchmarks, counts, problems, notes, ignored, out_folder) -> None:
    lines = [f"{'benchmark':<10}{'part':<7}{'samples':>9}{'official':>10}{'diff':>8}"]
    for benchmark in benchmarks:
        for part in PARTS:
            n = counts[f"{folder_of(benchmark)}/{part}"]
            official = ntu.OFFICIAL_COUNTS[benchmark][part]
            lines.append(f"{benchmark:<10}{part:<7}{n:>9}{official:>10}{n - official:>+8}")
    lines.append(f"left out by the missing-skeleton list: {ignored}; "
                 "'official' counts are for the full release without the listed samples")
    lines += problems.report_lines("file(s)")
    for note, names in notes.items():
        lines.append(f"note: {note}: {len(names)} file(s), e.g. {names[0]} (all listed in the manifests)")
    lines.append(f"wrote {out_folder}")
    say("\n".join(lines))


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data_path", required=True, nargs="+",
                        help="folder(s) of .skeleton files (NTU120: both the s001-s017 and s018-s032 folders)")
    parser.add_argument("--out_folder", required=True)
    parser.add_argument("--benchmark", default="xsub,xview", help="comma-separated: xsub,xview (NTU60) "
                                                                  "or xsub120,xset (NTU120)")
    parser.add_argument("--ignored_sample_path", default=None,
                        help="missing-skeleton list (default: the bundled official list; 'none' keeps all)")
    parser.add_argument("--workers", type=int, default=max(1, min(8, os.cpu_count() or 1)))
    parser.add_argument("--body_selection", choices=BODY_SELECTIONS, default="file_order",
                        help="file_order: the lineage's first two listed bodies; energy: 2s-AGCN's two most active")
    parser.add_argument("--pre_normalize", action="store_true", help="apply 2s-AGCN's pre_normalization")
    parser.add_argument("--max_frames", type=int, default=ntu.MAX_FRAMES)
    parser.add_argument("--strict", action="store_true", help="stop at the first bad file")
    parser.add_argument("--commit_every", type=int, default=500,
                        help="files between two progress records (what a resumed run skips)")
    args = parser.parse_args(argv)
    benchmarks = [b.strip() for b in args.benchmark.split(",") if b.strip()]
    unknown = [b for b in benchmarks if b not in ntu.BENCHMARKS]
    if unknown or not benchmarks:
        parser.error(f"unknown benchmark {unknown or args.benchmark!r}; choose from {', '.join(ntu.BENCHMARKS)}")
    if args.ignored_sample_path not in (None, "none") and not os.path.isfile(args.ignored_sample_path):
        parser.error(f"--ignored_sample_path {args.ignored_sample_path}: no such file")
    command = shlex.join(["python", "tools/ntu_gendata.py"] + (sys.argv[1:] if argv is None else list(argv)))
    try:
        run(args.data_path, args.out_folder, benchmarks, args.ignored_sample_path, args.workers,
            args.body_selection, args.pre_normalize, args.strict, args.max_frames, command, args.commit_every)
    except InputError as e:
        say(f"error: {e}")
        if args.strict:
            say("stopped at the first problem (--strict); run again to continue from there")
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
