"""Training curves of a run from its metrics.jsonl (one record per epoch), drawn without a display.

Used at the end of every run (work_dir/curves.png) and by `tools/visualize.py curves`.
"""
from __future__ import annotations

import json
import os

from .io import atomic_write


def pyplot():
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    return plt


def save_fig(fig, path: str, dpi: int = 110):
    atomic_write(path, lambda f: fig.savefig(f, format=os.path.splitext(path)[1][1:] or "png", dpi=dpi))


def read_metrics(work_dir: str) -> list:
    path = os.path.join(work_dir, "metrics.jsonl")
    if not os.path.isfile(path):
        raise FileNotFoundError(f"{path} not found (is {work_dir} a run's work_dir?)")
    with open(path) as f:
        return [json.loads(line) for line in f if line.strip()]


CURVE_PANELS = (("loss", lambda k: k == "loss" or k.startswith("loss_")),
                ("learning rate", lambda k: k == "lr"),
                ("accuracy (%)", lambda k: k.endswith("top1") or k.startswith("knn_top1") or k.endswith("top5")))


def random_init_level(records: list, key: str):
    """The random-init encoder's value of a kNN monitor key (accuracy - its logged gap), or None."""
    gap = key.replace("top1", "gap")
    for r in records:
        if key in r and gap in r and key != gap:
            return r[key] - r[gap]
    return None


def plot_curves(runs: list, path: str, labels: list):
    """One panel per quantity (loss terms, lr, accuracies / kNN monitor) over epochs, a line per run;
    runs: lists of metrics records."""
    plt = pyplot()
    panels = [(title, keep) for title, keep in CURVE_PANELS
              if any(keep(k) for recs in runs for r in recs for k in r)]
    fig, axes = plt.subplots(1, len(panels), figsize=(4.5 * len(panels), 3.6), squeeze=False)
    for ax, (title, keep) in zip(axes[0], panels):
        for recs, label in zip(runs, labels):
            keys = sorted({k for r in recs for k in r if keep(k)})
            for k in keys:
                scale = 100.0 if k == "pos_top1" else 1.0  # the methods log it as a fraction
                pts = [(r["epoch"], r[k] * scale) for r in recs if k in r]
                line, = ax.plot(*zip(*pts), "-o" if len(pts) < 30 else "-", ms=2, label=f"{label}: {k}")
                baseline = random_init_level(recs, k)
                if baseline is not None:  # what pretraining has to beat, as the kNN monitor measured it
                    ax.axhline(baseline, ls="--", lw=1, color=line.get_color(), label=f"{label}: {k}, random init")
        ax.set_title(title)
        ax.set_xlabel("epoch")
        ax.grid(alpha=0.3)
        ax.legend(fontsize=6)
        if title == "learning rate":
            ax.ticklabel_format(axis="y", style="sci", scilimits=(-2, 2))
    fig.tight_layout()
    save_fig(fig, path)
    plt.close(fig)
