"""Benchmark: NTU `.skeleton` files -> lineage 300-frame arrays, files/s.

    python bench/gendata.py [--files 600] [--workers 2]

Side by side, on the same fake tree (genuine NTU files copied under official names):
- reference: a straightforward line-by-line reader written here the way the upstream reader
  works (readline per record, a dict per joint, float() per value) filling the array serially;
- skelssl parser: tools.raw.ntu.read_skeleton(XYZ) + lineage_xyz, one process;
- skelssl tool: tools/ntu_gendata.py end to end (memmap output, label files, report), with 1
  and with N worker processes.
"""
import argparse
import glob
import itertools
import os
import shutil
import sys
import tempfile
import time

REPO_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

import numpy as np  # noqa: E402

from tools.raw import ntu  # noqa: E402
from tools import ntu_gendata  # noqa: E402
from torchlight.hardware import host_summary  # noqa: E402

SOURCES = [os.path.join(REPO_ROOT, "..", "shared", "data", "ntu_rgbd_sample"),
           os.path.join(REPO_ROOT, "tests", "data", "ntu_rgbd")]
JOINT_KEYS = ("x", "y", "z", "depthX", "depthY", "colorX", "colorY", "orientationW", "orientationX",
              "orientationY", "orientationZ", "trackingState")
BODY_KEYS = ("bodyID", "clipedEdges", "handLeftConfidence", "handLeftState", "handRightConfidence",
             "handRightState", "isResticted", "leanX", "leanY", "trackingState")


def line_by_line(path, max_body=2, num_joint=25, max_frame=300):
    """The plain reader: one readline per record, everything into dicts, then the array."""
    with open(path) as f:
        frames = []
        for _ in range(int(f.readline())):
            bodies = []
            for _ in range(int(f.readline())):
                body = dict(zip(BODY_KEYS, (float(v) for v in f.readline().split())))
                body["joints"] = [dict(zip(JOINT_KEYS, (float(v) for v in f.readline().split())))
                                  for _ in range(int(f.readline()))]
                bodies.append(body)
            frames.append(bodies)
    data = np.zeros((3, max_frame, num_joint, max_body), np.float32)
    for t, bodies in enumerate(frames):
        for m, body in enumerate(bodies[:max_body]):
            for j, joint in enumerate(body["joints"][:num_joint]):
                data[:, t, j, m] = [joint["x"], joint["y"], joint["z"]]
    return data


def make_tree(folder, count):
    sources = next((sorted(glob.glob(os.path.join(d, "*.skeleton"))) for d in SOURCES
                    if glob.glob(os.path.join(d, "*.skeleton"))), None)
    if not sources:
        sys.exit("no genuine .skeleton file found (../shared/data/ntu_rgbd_sample or tests/data/ntu_rgbd)")
    combos = itertools.product(range(1, 18), range(1, 4), range(1, 41), range(1, 61))  # setup, camera, ...
    names = [f"S{s:03d}C{c:03d}P{p:03d}R001A{a:03d}" for s, c, p, a in itertools.islice(combos, count)]
    for i, name in enumerate(names):
        shutil.copyfile(sources[i % len(sources)], os.path.join(folder, name + ".skeleton"))
    return names, len(sources)


def timed(fn):
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--files", type=int, default=600)
    parser.add_argument("--workers", type=int, default=os.cpu_count() or 2)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        tree = os.path.join(tmp, "raw")
        os.makedirs(tree)
        names, distinct = make_tree(tree, args.files)
        paths = [os.path.join(tree, n + ".skeleton") for n in names]
        print(f"host: {host_summary()}")
        print(f"{len(paths)} files (copies of {distinct} genuine NTU files), {os.cpu_count()} CPUs")
        for p in paths[:6]:  # the two readers agree
            np.testing.assert_array_equal(line_by_line(p), ntu.lineage_xyz(ntu.read_skeleton(p, ntu.XYZ)))
        rows = [("reference line-by-line reader, 1 process", timed(lambda: [line_by_line(p) for p in paths])),
                ("skelssl read_skeleton + lineage_xyz, 1 process",
                 timed(lambda: [ntu.lineage_xyz(ntu.read_skeleton(p, ntu.XYZ)) for p in paths]))]
        for workers in sorted({1, args.workers}):
            out = os.path.join(tmp, f"out{workers}")
            quiet = ["--data_path", tree, "--out_folder", out, "--workers", str(workers),
                     "--ignored_sample_path", "none"]
            stdout, stderr = sys.stdout, sys.stderr
            sys.stdout = sys.stderr = open(os.devnull, "w")
            try:
                seconds = timed(lambda quiet=quiet: ntu_gendata.main(quiet))
            finally:
                sys.stdout.close()
                sys.stdout, sys.stderr = stdout, stderr
            rows.append((f"skelssl tools/ntu_gendata.py end to end, {workers} worker(s)", seconds))
    base = rows[0][1]
    print(f"{'variant':<58}{'files/s':>9}{'speed-up':>10}")
    for label, seconds in rows:
        print(f"{label:<58}{len(paths) / seconds:>9.1f}{base / seconds:>9.2f}x")


if __name__ == "__main__":
    main()
