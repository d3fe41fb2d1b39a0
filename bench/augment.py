"""Benchmark: per-sample numpy augmentation (as an upstream DataLoader worker does it) against
the batched torch version, for the AimCLR triple view: two "normal" views (crop + shear) and
a third view with the extreme set applied after the normal one.

    python bench/augment.py --batch 128 --repeats 5

Each variant runs in its own subprocess so its peak memory (max RSS above the RSS before the
first call; tracemalloc peak for numpy, in a separate untimed pass) is not mixed with the others.
"""
import os
import sys


import argparse
import json
import resource
import subprocess
import time

import numpy as np
from torchlight.hardware import host_summary  # noqa: E402

SHEAR, PADDING = 0.5, 6


def rss_mb():
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20


def maxrss_mb():
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # kB on Linux


def make_batch(args):
    rng = np.random.default_rng(0)
    return rng.standard_normal((args.batch, 3, args.frames, args.joints, args.persons)).astype(np.float32)


def numpy_reference():
    """The per-sample numpy augmentations (tests/augment_numpy.py, the tests' reference), loaded by path."""
    import importlib.util

    path = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "tests", "augment_numpy.py")
    spec = importlib.util.spec_from_file_location("augment_numpy", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.extreme_augment_sample, module.normal_augment_sample


def numpy_views(batch, aug_method, flip, rng):
    extreme_augment_sample, normal_augment_sample = numpy_reference()

    views = ([], [], [])
    for sample in batch:  # one __getitem__ each, then the default collate stacks them
        views[0].append(normal_augment_sample(sample, SHEAR, PADDING, rng))
        views[1].append(normal_augment_sample(sample, SHEAR, PADDING, rng))
        views[2].append(extreme_augment_sample(normal_augment_sample(sample, SHEAR, PADDING, rng),
                                               aug_method, flip, rng))
    return [np.stack(v) for v in views]


def torch_views(x, aug_method, flip, generator):
    from feeder.augment import extreme_augment, normal_augment

    return (normal_augment(x, SHEAR, PADDING, generator),
            normal_augment(x, SHEAR, PADDING, generator),
            extreme_augment(normal_augment(x, SHEAR, PADDING, generator), aug_method, flip, generator))


def worker(args):
    from feeder.layouts import NTU_RGBD

    flip = NTU_RGBD.flip_permutation if args.joints == NTU_RGBD.num_joints else list(range(args.joints))
    batch = make_batch(args)
    result = {}
    if args.worker == "numpy":
        rng = np.random.default_rng(0)
        run = lambda: numpy_views(batch, args.aug, flip, rng)  # noqa: E731
    else:
        import torch

        torch.set_num_threads(args.threads)
        x, generator = torch.from_numpy(batch), torch.Generator().manual_seed(0)
        run = lambda: torch_views(x, args.aug, flip, generator)  # noqa: E731
        result["threads"] = torch.get_num_threads()
    before = rss_mb()
    run()  # warm-up
    times = []
    for _ in range(args.repeats):
        start = time.perf_counter()
        run()
        times.append(time.perf_counter() - start)
    seconds = float(np.median(times))  # the median resists other load on a shared machine
    result["samples_per_s"] = args.batch / seconds
    result["ms_per_batch"] = 1000 * seconds
    result["peak_rss_mb"] = max(maxrss_mb() - before, 0.0)
    if args.worker == "numpy":
        import tracemalloc

        tracemalloc.start()
        run()
        result["tracemalloc_mb"] = tracemalloc.get_traced_memory()[1] / 2**20
        tracemalloc.stop()
    print(json.dumps(result))


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--batch", type=int, default=128)
    p.add_argument("--repeats", type=int, default=5)
    p.add_argument("--frames", type=int, default=50)
    p.add_argument("--joints", type=int, default=25)
    p.add_argument("--persons", type=int, default=2)
    p.add_argument("--aug", default="12345", help="extreme augmentation codes for the third view")
    p.add_argument("--threads", type=int, default=os.cpu_count(), help="torch threads for the batched run")
    p.add_argument("--worker", choices=["numpy", "torch"], help=argparse.SUPPRESS)
    args = p.parse_args()
    if args.worker:
        return worker(args)

    common = [f"--{k}={getattr(args, k)}" for k in ("batch", "repeats", "frames", "joints", "persons", "aug")]
    variants = [("numpy per-sample (1 worker)", ["--worker=numpy"])]
    variants += [(f"torch batched, {n} thread{'s' * (n > 1)}", ["--worker=torch", f"--threads={n}"])
                 for n in sorted({1, args.threads})]
    rows = []
    for label, extra in variants:
        out = subprocess.run([sys.executable, os.path.abspath(__file__), *common, *extra],
                             check=True, capture_output=True, text=True).stdout
        rows.append((label, json.loads(out.strip().splitlines()[-1])))

    print(f"triple view (2 x normal crop+shear, normal + extreme '{args.aug}'), "
          f"batch {args.batch}, T={args.frames}, V={args.joints}, M={args.persons}, "
          f"{args.repeats} repeats, CPU")
    base = rows[0][1]["samples_per_s"]
    header = f"{'variant':<30} {'samples/s':>10} {'ms/batch':>9} {'peak MB':>8} {'speed-up':>9}"
    print(f"host: {host_summary()}")
    print(header)
    print("-" * len(header))
    for label, r in rows:
        peak = f"{r['peak_rss_mb']:.1f}"
        print(f"{label:<30} {r['samples_per_s']:>10.0f} {r['ms_per_batch']:>9.1f} {peak:>8} "
              f"{r['samples_per_s'] / base:>8.1f}x")
    print(f"median of {args.repeats} batches after a warm-up; "
          f"peak MB = max RSS above the RSS before the first call; numpy tracemalloc peak: "
          f"{rows[0][1]['tracemalloc_mb']:.1f} MB")


if __name__ == "__main__":
    main()
