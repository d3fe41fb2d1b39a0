"""One table of every evaluation under some folders, next to the numbers the papers report.

    python tools/results.py work_dir/ [more folders] [--csv results.csv] [--md results.md]

Finds every `results.json` (linear, fine-tune, semi, kNN, few-shot, ensemble), and describes each
row by what the run itself recorded: the method from the pretraining run that wrote its weights
(that run's `config.yaml` model class; "random init" without weights), the dataset and benchmark
from the evaluation config's path (config/<dataset>/.../*_<benchmark>_...), the stream and
protocol from results.json. The paper column comes from tools/paper_results.yaml (one data file,
each number with its source). Prints Markdown; `--csv` / `--md` also write files.
"""
from __future__ import annotations

import argparse
import csv
import glob
import io
import json
import os
import re
import sys

import yaml

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
PAPER_FILE = os.path.join(ROOT, "tools", "paper_results.yaml")
DATASETS = {"ntu60": "ntu60", "ntu120": "ntu120", "pku_part1": "pku_part1", "pku_part2": "pku_part2",
            "demo": "nw_ucla", "nw_ucla": "nw_ucla"}
# model class -> method name (the class of the pretraining run; evaluation models say nothing)
METHOD_OF_CLASS = {"MAMP": "MAMP", "STARS": "STARS", "SkeletonCLR": "SkeletonCLR", "AimCLR": "AimCLR",
                   "CrosSCLR": "CrosSCLR", "CrosSCLR3Views": "CrosSCLR", "CACA": "3s-CACA",
                   "SkeleMixCLR": "SkeleMixCLR", "ASAR": "ASAR", "HYSP": "HYSP"}
# file-name words -> method, when the pretraining run is not at hand (longest first)
METHOD_WORDS = [("skelemixclr_plus", "SkeleMixCLR+"), ("skelemixclr", "SkeleMixCLR"), ("skeletonclr", "SkeletonCLR"),
                ("aimclr", "AimCLR"), ("crossclr", "CrosSCLR"), ("caca", "3s-CACA"), ("asar", "ASAR"),
                ("hysp", "HYSP"), ("stars", "STARS"), ("clrtuning", "STARS"), ("mamp", "MAMP")]
COLUMNS = ["method", "dataset", "benchmark", "stream", "protocol", "top1_last", "top1_best", "top5", "paper_top1",
           "epochs", "config", "work_dir"]


def load_paper(path: str = PAPER_FILE) -> dict:
    with open(path) as f:
        data = yaml.safe_load(f)
    return {tuple(r[:5]): (r[5], data["sources"][r[6]]) for r in data["results"]}


def pretraining_method(weights: str | None) -> str | None:
    """The method of the run that wrote `weights`, from the config.yaml beside it (None if unknown)."""
    if not weights:
        return "random init"
    cfg_path = os.path.join(os.path.dirname(os.path.realpath(weights)), "config.yaml")
    if not os.path.isfile(cfg_path):
        return None
    with open(cfg_path) as f:
        cfg = yaml.safe_load(f) or {}
    model = str(cfg.get("model", "")).rsplit(".", 1)[-1]
    method = METHOD_OF_CLASS.get(model, model or None)
    if method == "SkeleMixCLR" and (cfg.get("model_args") or {}).get("plus"):
        method = "SkeleMixCLR+"
    return method


def from_config_path(config: str | None) -> dict:
    """dataset, benchmark and a method guess from config/<dataset>/<family>/<name>.yaml."""
    out = {"dataset": "", "benchmark": "", "method": None}
    if not config:
        return out
    parts = config.replace("\\", "/").split("/")
    for p in parts:
        if p in DATASETS:
            out["dataset"] = DATASETS[p]
    name = os.path.basename(config)
    bench = re.search(r"(xsub|xview|xset|cs|cv)(?=[_.])", name)
    if bench:
        out["benchmark"] = {"cs": "xsub", "cv": "xview"}.get(bench.group(1), bench.group(1))
    elif out["dataset"] == "nw_ucla":
        out["benchmark"] = "xview"
    elif out["dataset"].startswith("pku"):
        out["benchmark"] = "xsub"
    for word, method in METHOD_WORDS:
        if word in name:
            out["method"] = method
            break
    return out


def protocol_of(res: dict) -> str:
    proto = res.get("protocol", "?")
    if proto == "knn":
        k = next(iter(res.get("knn_top1", {"?": 0})))
        proto = f"knn k={k}"
    if res.get("shots_per_class"):
        proto = f"{res['shots_per_class']}-shot {proto}"
    elif res.get("label_fraction", 1) < 1:
        proto = f"semi {100 * res['label_fraction']:g}% {proto}"
    return proto


def describe(path: str) -> dict:
    with open(path) as f:
        res = json.load(f)
    where = from_config_path(res.get("config"))
    method = pretraining_method(res.get("weights")) or where["method"] or "?"
    stream = res.get("stream", "")
    if res.get("protocol") == "ensemble":  # a sum of the runs' scores: reported as their protocol, streams joined
        stream = "+".join(sorted(r.get("stream", "?") for r in res.get("runs", [])))
        res = {**res, "protocol": res.get("of_protocol") or "linear"}
    last, best = res.get("top1"), res.get("best_top1")
    return {"method": method, "dataset": where["dataset"], "benchmark": where["benchmark"], "stream": stream,
            "protocol": protocol_of(res), "top1_last": last, "top1_best": best if best != last else "",
            "top5": res.get("top5", ""), "epochs": res.get("num_epoch", "") if res.get("protocol") != "knn" else "",
            "config": res.get("config") or "", "work_dir": os.path.dirname(path)}


def paper_number(row: dict, paper: dict):
    proto = row["protocol"].split(" k=")[0]
    stream = "3s" if row["stream"] in ("bone+joint+motion", "all") else row["stream"]  # all: one 3-stream model
    hit = paper.get((row["method"], row["dataset"], row["benchmark"], stream, proto))
    return hit[0] if hit else ""


def collect(folders: list) -> list:
    paper = load_paper()
    rows = []
    for folder in folders:
        if not os.path.isdir(folder):
            raise SystemExit(f"error: {folder} is not a folder")
        for path in sorted(glob.glob(os.path.join(folder, "**", "results.json"), recursive=True)):
            try:
                row = describe(path)
            except (OSError, ValueError) as e:
                print(f"warning: skipped {path} ({e})", file=sys.stderr)
                continue
            row["paper_top1"] = paper_number(row, paper)
            rows.append(row)
    return sorted(rows, key=lambda r: (r["dataset"], r["benchmark"], r["method"], r["protocol"], r["stream"]))


def to_markdown(rows: list) -> str:
    header = ["method", "dataset", "benchmark", "stream", "protocol", "top-1 last", "top-1 best-on-test", "top-5",
              "paper", "epochs", "work_dir"]
    keys = ["method", "dataset", "benchmark", "stream", "protocol", "top1_last", "top1_best", "top5", "paper_top1",
            "epochs", "work_dir"]
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for r in rows:
        lines.append("| " + " | ".join(str(r[k]) for k in keys) + " |")
    return "\n".join(lines) + "\n"


def to_csv(rows: list) -> str:
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=COLUMNS)
    writer.writeheader()
    writer.writerows(rows)
    return buf.getvalue()


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("folders", nargs="+", help="work_dir folders to search for results.json")
    p.add_argument("--csv", help="also write the table as CSV")
    p.add_argument("--md", help="also write the table as Markdown")
    args = p.parse_args(argv)
    from torchlight.io import atomic_write_text

    rows = collect(args.folders)
    if not rows:
        raise SystemExit(f"error: no results.json under {', '.join(args.folders)}")
    md = to_markdown(rows)
    print(md, end="")
    if args.md:
        atomic_write_text(args.md, md)
    if args.csv:
        atomic_write_text(args.csv, to_csv(rows))
    print(f"{len(rows)} results" + "".join(f"; wrote {f}" for f in (args.md, args.csv) if f))


if __name__ == "__main__":
    main()
