"""Multi-stream ensemble: a weighted sum of the test scores saved by joint / motion / bone evaluations.

    python tools/ensemble.py work_dir/ntu60_xsub/aimclr_joint/linear_eval \\
        work_dir/ntu60_xsub/aimclr_motion/linear_eval work_dir/ntu60_xsub/aimclr_bone/linear_eval \\
        [--weights 0.6 0.4 0.6] [--scores best|last] [--labels val_label.pkl] [--out DIR] [--search]

Each argument is an evaluation's work_dir (its `test_result.pkl` = scores of the best-on-test epoch,
`test_result_last.pkl` = the last epoch; both {sample_name: logits}, the lineage's format, so an
upstream run's file works too: pass its `.pkl` path). Scores are matched by sample name (the
lineage's scripts paired them by position). Labels come from `--labels` (a lineage
`(names, labels)` pickle) or from the first run's saved `config.yaml` (its test feeder).

Default weights follow the stream each run reports in its results.json: joint 0.6, bone 0.6,
motion 0.4 (AimCLR's ensemble scripts for NTU and PKU-MMD, which the 3s-CACA / ActCLR lineage reuse);
`--weights` overrides them in argument order. `--search` also reports the best weights on a 0.1 grid
(HYSP's procedure; tuned on the test split, so it is labelled as such and not the default).
Writes `<out>/results.json` (every stream alone and the ensemble, top-1 / top-5, `stream_weights`).
"""
from __future__ import annotations

import argparse
import itertools
import json
import os
import sys


import numpy as np  # noqa: E402

from feeder.ntu_feeder import DataError, read_labels  # noqa: E402
from torchlight.io import atomic_write_json, load_pickle  # noqa: E402

STREAM_WEIGHTS = {"joint": 0.6, "bone": 0.6, "motion": 0.4}


class EnsembleError(RuntimeError):
    pass


def score_file(run: str, which: str) -> str:
    if os.path.isfile(run):
        return run
    path = os.path.join(run, "test_result.pkl" if which == "best" else "test_result_last.pkl")
    if not os.path.isfile(path):
        raise EnsembleError(f"{run}: no {os.path.basename(path)} (run the evaluation with save_result: true)")
    return path


def read_scores(path: str) -> dict:
    try:
        scores = load_pickle(path)  # plain data only: a score file someone sent runs no code
    except Exception as e:  # noqa: BLE001 - any unpickling problem is a bad score file
        raise EnsembleError(f"{path} cannot be read ({type(e).__name__}: {e})") from None
    if not isinstance(scores, dict) or not scores:
        raise EnsembleError(f"{path}: expected a non-empty {{sample_name: logits}} dict")
    return {str(k): np.asarray(v, dtype=np.float64) for k, v in scores.items()}


def run_info(run: str) -> dict:
    path = os.path.join(run, "results.json") if os.path.isdir(run) else None
    if path and os.path.isfile(path):
        with open(path) as f:
            return json.load(f)
    return {}


def labels_from_run(run: str) -> dict:
    """{sample_name: label} of the test feeder in the run's saved config.yaml."""
    import yaml

    from torchlight.util import instantiate

    path = os.path.join(run, "config.yaml")
    if not os.path.isfile(path):
        raise EnsembleError(f"{run}: no config.yaml to find the test labels in; pass --labels")
    with open(path) as f:
        cfg = yaml.safe_load(f)
    args = {**(cfg.get("test_feeder_args") or {}), "check_data": False}
    try:
        ds = instantiate(cfg["test_feeder"], args, where=f"{path}: test_feeder_args")
    except DataError as e:
        raise EnsembleError(f"{path}: cannot open the test data for its labels ({e}); pass --labels") from None
    return dict(zip(ds.sample_name, ds.label.tolist()))


def accuracy(scores: np.ndarray, labels: np.ndarray) -> dict:
    ranked = np.argsort(-scores, axis=1, kind="stable")
    hit = ranked[:, :5] == labels[:, None]
    return {"top1": round(100.0 * hit[:, 0].mean(), 4), "top5": round(100.0 * hit.any(axis=1).mean(), 4)}


def ensemble(score_dicts: list, label_of: dict, weights) -> tuple:
    """(per-stream accuracies, ensemble accuracy, names) over the samples every run scored."""
    names = sorted(score_dicts[0])
    for i, d in enumerate(score_dicts[1:], 1):
        if set(d) != set(names):
            extra, missing = sorted(set(d) - set(names))[:3], sorted(set(names) - set(d))[:3]
            raise EnsembleError(f"run {i + 1} scored other samples than run 1 (only in it: {extra}, "
                                f"missing from it: {missing})")
    unlabelled = [n for n in names if n not in label_of]
    if unlabelled:
        raise EnsembleError(f"{len(unlabelled)} scored samples have no label (e.g. {unlabelled[:3]}): "
                            f"wrong --labels file?")
    labels = np.array([label_of[n] for n in names])
    stacked = [np.stack([d[n] for n in names]) for d in score_dicts]
    shapes = {s.shape for s in stacked}
    if len(shapes) != 1:
        raise EnsembleError(f"the runs' score shapes differ: {sorted(shapes)}")
    alone = [accuracy(s, labels) for s in stacked]
    combined = sum(w * s for w, s in zip(weights, stacked))
    return alone, accuracy(combined, labels), stacked, labels


def grid_search(stacked: list, labels: np.ndarray) -> tuple:
    grid = [round(0.1 * i, 1) for i in range(11)]
    best = (-1.0, None)
    for w in itertools.product(grid, repeat=len(stacked)):
        if not any(w):
            continue
        top1 = accuracy(sum(a * s for a, s in zip(w, stacked)), labels)["top1"]
        if top1 > best[0]:
            best = (top1, list(w))
    return best


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("runs", nargs="+", help="evaluation work_dirs (or score .pkl files)")
    p.add_argument("--weights", type=float, nargs="+", help="one weight per run (default: by stream)")
    p.add_argument("--scores", choices=["best", "last"], default="best",
                   help="best-on-test epoch (the lineage's test_result.pkl) or the last epoch")
    p.add_argument("--labels", help="a lineage (names, labels) label pickle")
    p.add_argument("--out", help="folder for results.json (default: <parent of the first run>/ensemble)")
    p.add_argument("--search", action="store_true", help="also report the best weights on a 0.1 grid (test-tuned)")
    args = p.parse_args(argv)
    try:
        infos = [run_info(r) for r in args.runs]
        streams = [i.get("stream", "?") for i in infos]
        if args.weights is None:
            if not all(s in STREAM_WEIGHTS for s in streams):
                raise EnsembleError(f"cannot tell every run's stream ({streams}); pass --weights")
            weights = [STREAM_WEIGHTS[s] for s in streams]
        elif len(args.weights) != len(args.runs):
            raise EnsembleError(f"{len(args.weights)} weights for {len(args.runs)} runs")
        else:
            weights = args.weights
        files = [score_file(r, args.scores) for r in args.runs]
        scores = [read_scores(f) for f in files]
        if args.labels:
            names, labels = read_labels(args.labels)
            label_of = dict(zip(names, labels.tolist()))
        else:
            label_of = labels_from_run(args.runs[0])
        alone, combined, stacked, labels = ensemble(scores, label_of, weights)
    except (EnsembleError, DataError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    out = args.out or os.path.join(os.path.dirname(os.path.abspath(args.runs[0].rstrip("/"))), "ensemble")
    result = {"protocol": "ensemble", "of_protocol": infos[0].get("protocol"), "config": infos[0].get("config"),
              "weights": infos[0].get("weights"),  # the first run's checkpoint, as in every results.json
              "top1": combined["top1"], "top5": combined["top5"], "stream_weights": weights,
              "scores": args.scores, "test_samples": len(labels),
              "runs": [{"path": f, "stream": s, **a} for f, s, a in zip(files, streams, alone)]}
    print(f"{'run':<60} {'stream':<7} {'weight':>6} {'top1':>8} {'top5':>8}")
    for f, s, w, a in zip(files, streams, weights, alone):
        shown = f if len(f) <= 60 else "..." + f[-57:]  # the run's end names it
        print(f"{shown:<60} {s:<7} {w:>6.2f} {a['top1']:>8.2f} {a['top5']:>8.2f}")
    print(f"{'ensemble':<60} {'':<7} {'':>6} {combined['top1']:>8.2f} {combined['top5']:>8.2f}")
    if args.search:
        top1, w = grid_search(stacked, labels)
        result["test_tuned"] = {"top1": top1, "weights": w,
                                "note": "weights chosen on the test split (HYSP's procedure): optimistic"}
        print(f"best weights on a 0.1 grid, tuned on the test split: {w} -> top1 {top1:.2f}")
    os.makedirs(out, exist_ok=True)
    atomic_write_json(os.path.join(out, "results.json"), result)
    print(f"wrote {os.path.join(out, 'results.json')}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
