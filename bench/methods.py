"""Pretraining step of every method, side by side: samples/s and peak memory of the real step.

    python bench/methods.py [--configs config/demo/skeletonclr_pretrain.yaml ...] [--batch 64] [--steps 5] [--epoch 29]

Each config (default: every `config/demo/*pretrain*.yaml` and `*clrtuning*.yaml`, i.e. each method's
demo pretraining on the bundled NW-UCLA data) is built by the Pretrain processor exactly as
`main.py` builds it, in its own subprocess (so peak RSS is its own), and `Pretrain.train_step` (views
made on the device, forward, loss, backward, optimiser step) is timed over `--steps` batches after
one warm-up step. Every method runs at the same batch size, so the samples/s compare the methods;
SkeletonCLR is the reference row.
"""
from __future__ import annotations

import argparse
import glob
import json
import os
import subprocess
import sys
from torchlight.hardware import host_summary  # noqa: E402

REPO_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def measure(config: str, batch: int, steps: int, epoch: int = 0) -> dict:
    import resource
    import time

    import torch

    from device_check import build  # the config's processor as main.py builds it, quiet, in a temp work_dir

    proc = build(config, "cuda" if torch.cuda.is_available() else "cpu", "fp32", batch)
    name, cfg = proc.name, proc.cfg
    proc.model.train()
    it = iter(proc.train_loader)
    times = []
    for step in range(steps + 1):
        try:
            x, label, index = next(it)
        except StopIteration:
            it = iter(proc.train_loader)
            x, label, index = next(it)
        t0 = time.perf_counter()
        proc.train_step(x, label, index, epoch, step)
        if step:  # the first step warms up
            times.append(time.perf_counter() - t0)
    seconds = sorted(times)[len(times) // 2]
    return {"config": config, "processor": name, "model": cfg["model"], "batch": batch,
            "samples_per_s": round(batch / seconds, 1), "s_per_step": round(seconds, 3),
            "peak_rss_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024),
            "threads": torch.get_num_threads()}


def default_configs() -> list:
    found = sorted(glob.glob(os.path.join(REPO_ROOT, "config", "demo", "*pretrain*.yaml"))
                   + glob.glob(os.path.join(REPO_ROOT, "config", "demo", "*clrtuning*.yaml")))
    rel = [os.path.relpath(p, REPO_ROOT) for p in found]
    first = [c for c in rel if "skeletonclr" in c]
    return first + [c for c in rel if c not in first]


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--configs", nargs="*", default=None)
    p.add_argument("--batch", type=int, default=64)
    p.add_argument("--steps", type=int, default=5)
    p.add_argument("--epoch", type=int, default=0,
                   help="0-based epoch the steps belong to: a later phase (AimCLR's mining, ASAR's active "
                        "sampling, HYSP's Poincare loss) is timed with e.g. --epoch 29")
    p.add_argument("--one", help=argparse.SUPPRESS)  # child process: measure this config, print JSON
    args = p.parse_args()
    if args.one:
        print(json.dumps(measure(args.one, args.batch, args.steps, args.epoch)))
        return
    rows = []
    for config in args.configs or default_configs():
        out = subprocess.run([sys.executable, __file__, "--one", config, "--batch", str(args.batch), "--steps",
                              str(args.steps), "--epoch", str(args.epoch)], capture_output=True, text=True, cwd=REPO_ROOT)
        if out.returncode != 0:
            print(f"{config}: failed\n{out.stderr[-1500:]}", file=sys.stderr)
            continue
        rows.append(json.loads(out.stdout.strip().splitlines()[-1]))
    ref = next((r for r in rows if "skeletonclr" in r["config"]), None)
    print(f"host: {host_summary()}")
    print(f"{'config':<45} {'model':<28} {'samples/s':>10} {'s/step':>8} {'vs SkeletonCLR':>15} {'peak MB':>8}")
    for r in rows:
        rel = f"{r['samples_per_s'] / ref['samples_per_s']:.2f}x" if ref else "-"
        print(f"{r['config']:<45} {r['model']:<28} {r['samples_per_s']:>10} {r['s_per_step']:>8} {rel:>15} "
              f"{r['peak_rss_mb']:>8}")
    print(f"(batch {args.batch}, epoch {args.epoch}, median of {args.steps} steps after a warm-up, {rows[0]['threads'] if rows else '?'} "
          f"threads, one process per config)")


if __name__ == "__main__":
    main()
