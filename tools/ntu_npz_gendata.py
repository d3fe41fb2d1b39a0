"""NTU RGB+D 60 / 120 official `.skeleton` files -> CTR-GCN / MAMP / STARS `.npz` files.

    python tools/ntu_npz_gendata.py --data_path nturgb+d_skeletons/ --out_folder data/ntu \\
        [--benchmark xsub,xview | xsub120,xset] [--names mamp | ctrgcn] [--workers N] [--strict]

Writes `<out_folder>/NTU60_XSub.npz`, `NTU60_XView.npz` (NTU120: `NTU120_XSub.npz`,
`NTU120_XSet.npz`; `--names ctrgcn` gives CTR-GCN's NTU60_CS / NTU60_CV / NTU120_CSub / NTU120_CSet)
with x_train / x_test float32 (N, 300, 150) and one-hot float64 y_train / y_test, exactly as MAMP
and STARS read them: the three upstream scripts (raw bodies, denoising, translation + padding) in
one pass, per sample (tools/raw/ctrgcn.py; bit-identical to upstream on genuine files), samples
in upstream's order (subject by subject, camera by camera). `denoising.log` lists what the
denoising dropped, per sample. Parallel, memory-mapped and resumable like tools/ntu_gendata.py;
unreadable files are reported and left out (or stop the run with --strict).
"""
from __future__ import annotations

import argparse
import os
import shlex
import sys

REPO_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

from tools.raw import ctrgcn, ntu  # noqa: E402
from tools.raw.common import InputError, Problems, parallel_map, say  # noqa: E402
from tools.raw.store import SampleStore, fingerprint, write_npz  # noqa: E402
from tools.ntu_gendata import find_files, read_ignore_list  # noqa: E402

NAMINGS = ("mamp", "ctrgcn")


def convert_file(job) -> tuple:
    """(name, (300, 150) row or None, error or None, denoising summary lines); runs in workers."""
    name, path, dataset, frames = job
    try:
        skeleton = ntu.read_skeleton(path, ntu.XYZ)
        row, report = ctrgcn.sample_to_npz_row(skeleton, name, dataset, frames)
    except InputError as e:
        return name, None, e.reason, []
    except (ValueError, OSError) as e:
        return name, None, str(e), []
    return name, row, None, report.summary()


def run(data_paths, out_folder, benchmarks, ignored_path=None, workers=1, naming="mamp", strict=False,
        frames=ctrgcn.MAX_FRAMES, commit_every=500, command="") -> dict:
    datasets = {ntu.BENCHMARKS[b][0] for b in benchmarks}
    if len(datasets) != 1:
        raise InputError("--benchmark", f"{','.join(benchmarks)} mixes NTU60 and NTU120 benchmarks")
    dataset = datasets.pop()
    limits = ntu.DATASETS[dataset]
    problems = Problems(strict)
    files = find_files(data_paths, problems)
    _, ignored = read_ignore_list(ignored_path, dataset)
    names = sorted(n for n in files if n not in ignored and ntu.parse_name(n).setup <= limits["setups"]
                   and ntu.parse_name(n).action <= limits["classes"])
    if not names:
        raise InputError(", ".join(data_paths), f"no {dataset.upper()} .skeleton file to convert")
    splits = {}
    for b in benchmarks:
        train, test = ctrgcn.split_indices(names, b)
        splits[f"{b}/train"], splits[f"{b}/test"] = [names[i] for i in train], [names[i] for i in test]
    store = SampleStore(out_folder, splits, (frames, 2 * ctrgcn.ACTOR_WIDTH),
                        {"pipeline": "ctrgcn", "dataset": dataset, "inputs": fingerprint(files[n] for n in names)},
                        partial=".partial-npz")
    try:
        if store.resumed:
            say(f"resuming: {store.resumed} of {len(names)} files were converted by an earlier run")
        problems.add_earlier(store.skipped_before, lambda n: os.path.basename(files[n]))
        jobs = [(n, files[n], dataset, frames) for n in store.todo()]
        try:
            for name, row, error, summary in parallel_map(convert_file, jobs, workers, "ntu .skeleton -> npz",
                                                          "file"):
                if error is not None:
                    problems.add(os.path.basename(files[name]), error)  # raises under --strict
                    store.skip(name, error)
                else:
                    store.put(name, row)
                for line in summary:  # what the denoising dropped, kept across a resume
                    store.note(name, line)
                store.commit(every=commit_every)
        finally:
            store.commit()
        labels = {n: ntu.parse_name(n).label for n in names}
        parts = {key: (kept, arrays["data"]) for key, kept, arrays in store.finished()}
        counts, outputs = {}, []
        for b in benchmarks:
            arrays = {}
            for part in ("train", "test"):
                kept, x = parts[f"{b}/{part}"]
                arrays[f"x_{part}"] = x
                arrays[f"y_{part}"] = ctrgcn.one_hot([labels[n] for n in kept], limits["classes"])
                counts[f"{b}/{part}"] = len(kept)
            npz = os.path.join(out_folder, ctrgcn.NPZ_FILES[b][NAMINGS.index(naming)])
            outputs.append(store.stage_file(npz, lambda f, arrays=arrays: write_npz(f, **arrays)))
        log_lines = sorted(f"{n}\t{line}" for line, ns in store.notes.items() for n in ns)
        changed = len({n for ns in store.notes.values() for n in ns})
        outputs.append(store.stage_file(os.path.join(out_folder, "denoising.log"),
                                        lambda f: f.write("".join(x + "\n" for x in log_lines).encode())))
        store.publish(outputs)
    finally:
        store.close()
    lines = [f"{'benchmark':<10}{'part':<7}{'samples':>9}{'official':>10}{'diff':>8}"]
    for b in benchmarks:
        for part, official_part in (("train", "train"), ("test", "val")):
            n, official = counts[f"{b}/{part}"], ntu.OFFICIAL_COUNTS[b][official_part]
            lines.append(f"{b:<10}{part:<7}{n:>9}{official:>10}{n - official:>+8}")
    lines.append(f"the denoising changed {changed} of {len(names)} files (see denoising.log)")
    lines += problems.report_lines("file(s)")
    lines.append(f"wrote {out_folder}")
    say("\n".join(lines))
    return counts


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data_path", required=True, nargs="+", help="folder(s) of .skeleton files")
    parser.add_argument("--out_folder", required=True)
    parser.add_argument("--benchmark", default="xsub,xview", help="xsub,xview (NTU60) or xsub120,xset (NTU120)")
    parser.add_argument("--names", choices=NAMINGS, default="mamp",
                        help="file names: mamp (NTU60_XSub.npz, what STARS reads) or ctrgcn (NTU60_CS.npz)")
    parser.add_argument("--ignored_sample_path", default=None,
                        help="missing-skeleton list (default: the bundled official list; 'none' keeps all)")
    parser.add_argument("--workers", type=int, default=max(1, min(8, os.cpu_count() or 1)))
    parser.add_argument("--strict", action="store_true", help="stop at the first bad file")
    parser.add_argument("--commit_every", type=int, default=500, help="files between two progress records")
    args = parser.parse_args(argv)
    benchmarks = [b.strip() for b in args.benchmark.split(",") if b.strip()]
    if not benchmarks or any(b not in ntu.BENCHMARKS for b in benchmarks):
        parser.error(f"--benchmark {args.benchmark!r}: choose from {', '.join(ntu.BENCHMARKS)}")
    if args.ignored_sample_path not in (None, "none") and not os.path.isfile(args.ignored_sample_path):
        parser.error(f"--ignored_sample_path {args.ignored_sample_path}: no such file")
    command = shlex.join(["python", "tools/ntu_npz_gendata.py"] + (sys.argv[1:] if argv is None else list(argv)))
    try:
        run(args.data_path, args.out_folder, benchmarks, args.ignored_sample_path, args.workers, args.names,
            args.strict, commit_every=args.commit_every, command=command)
    except InputError as e:
        say(f"error: {e}")
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
