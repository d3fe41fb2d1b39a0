"""Accuracy over pretraining epochs: evaluate every saved checkpoint of a run, and random-init baselines.

    python tools/eval_curve.py --pretext work_dir/demo/skeletonclr/pretext \
        --linear config/demo/skeletonclr_linear.yaml --knn config/demo/skeletonclr_knn.yaml \
        --out work_dir/demo/skeletonclr/curve [--random_seeds 0 1 2] [--watch 300]

For each `epoch<N>_model.pt` (and `--random_seeds` randomly initialised encoders as epoch 0) it runs
linear evaluation and kNN under two protocols and appends a row per (epoch, protocol, seed) to
`<out>/curve.csv`, then draws `<out>/curve.png`:
- `lineage`: the seeds' protocol as configured (encoder frozen with its own BatchNorm statistics).
- `recalibrated`: BatchNorm statistics re-estimated on the clean training split, and a
  parameter-free BatchNorm before the linear classifier (lr 0.1), for pretrained and random-init
  encoders alike: the fair comparison with a random-init encoder, whose own statistics are empty.
Finished rows are skipped, so the script can be re-run or left watching a training run (`--watch S`
polls every S seconds until the run's final checkpoint is evaluated).
"""
from __future__ import annotations

import argparse
import csv
import glob
import os
import re
import time


from processor.evaluation import Evaluation  # noqa: E402
from processor.knn import KNN  # noqa: E402
from torchlight.config import load_yaml  # noqa: E402
from torchlight.io import atomic_write_text  # noqa: E402

PROTOCOLS = {
    "lineage": {},
    "recalibrated": {"recalibrate_bn": True, "head_norm": True, "base_lr": 0.1},
}
FIELDS = ["epoch", "seed", "protocol", "linear_top1", "linear_best_top1", "knn_k1", "knn_k20"]


def evaluate(linear_cfg: str, knn_cfg: str, weights, seed: int, protocol: str, work_dir: str) -> dict:
    extra = {"weights": weights, "seed": seed, "config": linear_cfg, "progress": False, "tensorboard": False, "resume": "none"}
    lin = {**load_yaml(linear_cfg), **PROTOCOLS[protocol], **extra, "work_dir": os.path.join(work_dir, "linear")}
    Evaluation(lin, name="linear_evaluation").run()
    knn_extra = {"recalibrate_bn": True} if protocol == "recalibrated" else {}
    knn = {**load_yaml(knn_cfg), **knn_extra, **extra, "config": knn_cfg, "knn_k": [1, 20], "work_dir": os.path.join(work_dir, "knn")}
    proc = KNN(knn, name="knn")
    proc.run()
    import json
    with open(os.path.join(work_dir, "linear", "results.json")) as f:
        res = json.load(f)
    return {"linear_top1": res["top1"], "linear_best_top1": res["best_top1"], "knn_k1": proc.result[1],
            "knn_k20": proc.result[20]}


def read_rows(path: str) -> list:
    if not os.path.isfile(path):
        return []
    with open(path) as f:
        return list(csv.DictReader(f))


def write_rows(path: str, rows: list):
    lines = [",".join(FIELDS)] + [",".join(str(r[k]) for k in FIELDS) for r in rows]
    atomic_write_text(path, "\n".join(lines) + "\n")


def checkpoints(pretext: str) -> dict:
    found = {}
    for path in glob.glob(os.path.join(pretext, "epoch*_model.pt")):
        m = re.search(r"epoch(\d+)_model\.pt$", path)
        if m:
            found[int(m.group(1))] = path
    return dict(sorted(found.items()))


def plot(rows: list, path: str, title: str, method: str = "pretrained", protocols=tuple(PROTOCOLS)):
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import numpy as np

    fig, axes = plt.subplots(1, len(protocols), figsize=(5.5 * len(protocols), 4), sharey=True, squeeze=False)
    axes = axes[0]
    for ax, protocol in zip(axes, protocols):
        sel = [r for r in rows if r["protocol"] == protocol]
        for metric, style in (("linear_top1", "-o"), ("knn_k1", "-s"), ("knn_k20", "-^")):
            pre = sorted((int(r["epoch"]), float(r[metric])) for r in sel if int(r["epoch"]) > 0)
            rand = [float(r[metric]) for r in sel if int(r["epoch"]) == 0]
            line = None
            if pre:
                line, = ax.plot(*zip(*pre), style, ms=3, label=f"{metric} ({method})")
            if rand:
                ax.axhline(np.mean(rand), ls="--", lw=1, color=line.get_color() if line else None,
                           label=f"{metric} random init (mean of {len(rand)})")
        ax.set_title(f"{protocol} protocol")
        ax.set_xlabel("pretraining epoch")
        ax.grid(alpha=0.3)
        ax.legend(fontsize=7)
    axes[0].set_ylabel("top-1 accuracy on the test split (%)")
    fig.suptitle(title)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--pretext", required=True, help="work_dir of the pretraining run")
    p.add_argument("--linear", required=True, help="linear-evaluation config")
    p.add_argument("--knn", required=True, help="kNN config")
    p.add_argument("--out", required=True)
    p.add_argument("--random_seeds", type=int, nargs="*", default=[0, 1, 2])
    p.add_argument("--every", type=int, default=1, help="evaluate every n-th checkpoint")
    p.add_argument("--watch", type=float, default=0, help="poll interval (s) while the run is still going")
    p.add_argument("--final_epoch", type=int, default=None, help="stop watching once this epoch is evaluated")
    p.add_argument("--protocols", nargs="+", choices=list(PROTOCOLS), default=list(PROTOCOLS),
                   help="`lineage` only for encoders without BatchNorm (the transformer)")
    p.add_argument("--method", default="SkeletonCLR", help="legend label of the pretrained curve")
    p.add_argument("--title", default="SkeletonCLR on NW-UCLA (cross-view)")
    args = p.parse_args()
    os.makedirs(args.out, exist_ok=True)
    csv_path = os.path.join(args.out, "curve.csv")
    rows = read_rows(csv_path)
    done = {(int(r["epoch"]), int(r["seed"]), r["protocol"]) for r in rows}
    while True:
        todo = [(0, seed, None) for seed in args.random_seeds]
        ckpts = checkpoints(args.pretext)
        todo += [(e, 0, path) for i, (e, path) in enumerate(ckpts.items()) if i % args.every == 0
                 or e == max(ckpts)]
        for epoch, seed, weights in todo:
            for protocol in args.protocols:
                if (epoch, seed, protocol) in done:
                    continue
                wd = os.path.join(args.out, "runs", f"epoch{epoch}_seed{seed}_{protocol}")
                res = evaluate(args.linear, args.knn, weights, seed, protocol, wd)
                rows.append({"epoch": epoch, "seed": seed, "protocol": protocol, **res})
                done.add((epoch, seed, protocol))
                rows.sort(key=lambda r: (int(r["epoch"]), r["protocol"], int(r["seed"])))
                write_rows(csv_path, rows)
                plot(rows, os.path.join(args.out, "curve.png"), args.title, args.method, args.protocols)
                print(f"epoch {epoch} seed {seed} {protocol}: {res}", flush=True)
        finished = args.final_epoch is None or any(int(r["epoch"]) >= args.final_epoch for r in rows)
        if not args.watch or finished:
            break
        time.sleep(args.watch)
    print(f"wrote {csv_path} and curve.png")


if __name__ == "__main__":
    main()
