"""2-D skeletons from video pose estimators -> lineage training arrays with a score channel.

    python tools/pose_import.py --format openpose --input runs/ --labels labels.csv --out_folder data/mine
    python tools/pose_import.py --format kinetics --input data/kinetics-skeleton --faithful --out_folder OUT
    python tools/pose_import.py --format penn_action --input Penn_Action/labels --out_folder data/penn

Formats (readers in tools/pose_formats/; docs/pose_data.md has the details):
  openpose     OpenPose --write_json folders, BODY_25 or COCO-18 (detected from the keypoint count)
  kinetics     st-gcn Kinetics-skeleton JSON + label JSON; --faithful reproduces st-gcn's arrays
  pose         .pose files (pose-format; MediaPipe Holistic POSE_LANDMARKS or OpenPose BODY_25)
  coco         COCO keypoint annotation JSON (17 keypoints, visibility)
  mmpose       MMPose / RTMPose inferencer prediction JSON
  pyskl        pyskl 2-D annotation pickles (keypoint + keypoint_score, COCO-17)
  penn_action  Penn Action labels/*.mat, with the official train / test split

OUT receives `{train,val}_position.npy` float32 (N, C, frames, V, M) with the channels x, y, score
(C = 3; `--channels xy` gives C = 2), `{train,val}_label.pkl` = pickle of (names, labels) in
sorted-name order, and `manifest.json`, written last. Missing joints are x = y = score = 0; by
default every sequence is centred and scaled by its visible joints and resized to `--frames` with a
mask-aware resize. Labels and splits come from the format (kinetics, pyskl, penn_action) or from a
CSV (`--labels`, columns name,label,split, as tools/gendata_custom.py), which wins when given. Bad
inputs are reported (file and frame), skipped and listed at the end; `--strict` stops at the first.
A run that is stopped continues where it was when started again with the same inputs and settings.
"""
from __future__ import annotations

import argparse
import os
import shlex
import shutil
import sys
from types import SimpleNamespace

REPO_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

from feeder.layouts import get_layout, joint_map, layout_to_dict  # noqa: E402
from feeder.preprocess import (NORMALIZE_2D, clean_2d, person_gaps_2d, select_persons_2d,  # noqa: E402
                               to_fixed_length_2d, visible_2d)
from tools.raw.common import InputError, Problems, parallel_map, say  # noqa: E402
from tools.raw.store import SampleStore, fingerprint  # noqa: E402
from tools.gendata_custom import SPLITS, parse_label, parse_split, print_summary, read_labels  # noqa: E402
from tools.pose_formats import READERS  # noqa: E402
from tools.pose_formats.coco import COCO_GROUPS  # noqa: E402

FORMATS = tuple(READERS)
CHANNELS = {"xys": ("x", "y", "score"), "xy": ("x", "y")}
PARTIAL = ".partial-pose"
NOTE_CROWD = "more persons than --max_persons in a frame: the highest summed scores kept"
NOTE_GAP = "a person disappears and comes back: the frames between stay missing (never interpolated)"


def pose2d_sample(sequence, frames: int, max_persons: int, normalize: str, image_size, min_score: float,
                  channels: int, joints=None) -> tuple:
    """(sample (channels, frames, V, max_persons), notes) of one read Sequence2D by the 2-D pipeline;
    `joints` (--to_layout) picks and orders the joints of the target layout."""
    notes = list(sequence.notes)
    size = image_size if image_size is not None else sequence.image_size
    data = sequence.data if joints is None else sequence.data[:, :, joints]
    x = clean_2d(data, min_score, sequence.frame_names)
    present = visible_2d(x).any(axis=1)  # (T, P)
    crowded = present.sum(axis=1).max() if sequence.per_frame else present.any(axis=0).sum()
    if crowded > max_persons:
        notes.append(NOTE_CROWD)
    if person_gaps_2d(select_persons_2d(x, max_persons, sequence.per_frame)):
        notes.append(NOTE_GAP)
    sample = to_fixed_length_2d(x, frames, max_persons, sequence.per_frame, normalize, size, min_score, channels,
                                sequence.frame_names)
    return sample, notes


def convert_one(job) -> tuple:
    """(name, sample or None, error or None, notes) for one planned item; runs in workers."""
    name, load, process, settings = job
    try:
        sequence = load()
        if process is not None:
            return name, process(sequence), None, list(sequence.notes)
        sample, notes = pose2d_sample(sequence, **settings)
        return name, sample, None, notes
    except (ValueError, OSError, EOFError) as e:
        return name, None, str(e), []


def assign_labels(plan, fmt: str, labels_csv: str | None, split: str | None, problems: Problems,
                  unlabelled: bool = False) -> list:
    """The items that have a label and a split (from the CSV, else the format, else --split); with unlabelled,
    a sequence without a label gets -1 (new data to embed with `extract`)."""
    items = []
    if labels_csv:
        rows, rejected = read_labels(labels_csv, problems)
        csv_name = os.path.basename(labels_csv)
        names = {it.name for it in plan.items}
        for name, (_, row_split, line) in rows.items():
            if name not in names:
                problems.add(f"{csv_name} line {line}", f"no sequence {name!r} among the inputs", row_split)
        for it in plan.items:
            if it.name in rows:
                it.label, it.split = rows[it.name][:2]
                items.append(it)
            elif it.name not in rejected:
                problems.add(it.source, f"no label row for {it.name!r} in {csv_name}")
        plan.classes = None  # the CSV's labels need not follow the format's class names
        return items
    if plan.items and all(it.label is None for it in plan.items) and not unlabelled:
        raise InputError(fmt, "these inputs carry no labels: give --labels CSV (columns name,label,split), or "
                         "--unlabelled for data to embed")
    if plan.items and all(it.split is None for it in plan.items) and split is None:
        raise InputError(fmt, "these inputs carry no train / val split: give --split train|val or --labels CSV")
    for it in plan.items:
        it.split = it.split or split
        try:
            if it.label is None and not unlabelled:
                raise ValueError("no label for this sequence (give --labels CSV)")
            it.label = -1 if it.label is None else parse_label(it.label)
            it.split = parse_split(it.split)
        except ValueError as e:
            problems.add(it.source, str(e), it.split if it.split in SPLITS else None)
            continue
        items.append(it)
    return items


def import_poses(fmt: str, inputs, out_folder: str, labels: str | None = None, split: str | None = None,
                 layout=None, to_layout=None, frames: int | None = None, max_persons: int = 2, channels: str = "xys",
                 normalize: str = "visible", image_size=None, min_score: float = 0.0, label_json: str | None = None,
                 faithful: bool = False, num_person_in: int = 5, benchmark: str | None = None,
                 coco_group: str = "file", partial_joints: bool = False, unlabelled: bool = False,
                 strict: bool = False, workers: int = 1,
                 command: str | None = None) -> dict:
    """Read `inputs` in format `fmt` and write the training arrays to out_folder; returns the summary.

    Raises InputError for a problem that stops the whole run (unreadable inputs, no labels, no
    usable sample: then nothing is written) and, with strict=True, at the first bad input.
    """
    if fmt not in READERS:
        raise ValueError(f"unknown format {fmt!r}: use one of {', '.join(FORMATS)}")
    if channels not in CHANNELS:
        raise ValueError(f"unknown channels {channels!r}: use xys or xy")
    if normalize not in NORMALIZE_2D:
        raise ValueError(f"unknown normalisation {normalize!r}: use one of {', '.join(NORMALIZE_2D)}")
    if faithful and (fmt != "kinetics" or channels != "xys"):
        raise ValueError("--faithful is st-gcn's Kinetics conversion: --format kinetics with the score channel")
    if coco_group not in COCO_GROUPS:
        raise ValueError(f"unknown --coco_group {coco_group!r}: use one of {', '.join(COCO_GROUPS)}")
    frames = frames or (300 if faithful else 50)
    inputs = [inputs] if isinstance(inputs, str) else list(inputs)
    command = command or shlex.join(sys.argv)
    problems = Problems(strict)
    opts = SimpleNamespace(layout=get_layout(layout) if layout not in (None, "auto") else None, split=split,
                           label_json=label_json, faithful=faithful, frames=frames, num_person_in=num_person_in,
                           max_persons=max_persons, benchmark=benchmark, coco_group=coco_group,
                           partial_joints=partial_joints)
    try:
        plan = READERS[fmt](inputs, opts, problems)
    except (ValueError, FileNotFoundError) as e:
        raise InputError(", ".join(inputs), str(e)) from None
    if faithful and plan.layout.num_joints != 18:
        raise InputError(fmt, f"--faithful reads st-gcn's 18 joints, layout {plan.layout.name!r} has "
                         f"{plan.layout.num_joints}")
    items, first = [], {}
    for it in assign_labels(plan, fmt, labels, split, problems, unlabelled):
        if it.name in first:
            problems.add(it.source, f"sample name {it.name!r} given twice (also {first[it.name].source})", it.split)
            continue
        first[it.name] = it
        items.append(it)
    if not items:
        print_summary(_summary({}, {}, problems, None), problems, out_folder)
        raise InputError(out_folder, "no usable sample; nothing was written")

    layout_, joints = plan.layout, None
    if to_layout is not None:
        if plan.process is not None:
            raise InputError(fmt, "--to_layout works on the 2-D pipeline, not with --faithful")
        try:
            joints = joint_map(layout_, to_layout)
        except ValueError as e:
            raise InputError(fmt, f"--to_layout: {e}") from None
        layout_ = get_layout(to_layout)
    num_channels = len(CHANNELS[channels])
    shape = (num_channels, frames, layout_.num_joints, max_persons)
    image_size = tuple(float(v) for v in image_size) if image_size is not None else None
    settings = {"frames": frames, "max_persons": max_persons, "normalize": normalize, "image_size": image_size,
                "min_score": min_score, "channels": num_channels, "joints": joints}
    by_name = {it.name: it for it in items}
    splits = {s: sorted(it.name for it in items if it.split == s) for s in SPLITS}
    store = SampleStore(out_folder, splits, shape,
                        {"format": fmt, "inputs": fingerprint(plan.inputs), "pipeline": settings,
                         "faithful": faithful, "layout": layout_to_dict(layout_),
                         "labels": {n: [it.label, it.split] for n, it in sorted(by_name.items())}}, partial=PARTIAL)
    try:
        problems.add_earlier(store.skipped_before, lambda n: by_name[n].source)
        jobs = [(n, by_name[n].load, plan.process, settings) for n in store.todo()]
        said = set(store.notes)
        for name, sample, error, notes in parallel_map(convert_one, jobs, workers, f"{fmt} -> {frames} frames", "seq"):
            it = by_name[name]
            if error is not None:
                store.skip(name, error)
                problems.add(it.source, error, it.split)
                continue
            for note in dict.fromkeys(notes):
                if note not in said:
                    said.add(note)
                    say(f"note: {it.source}: {note} (said once; the count is in the summary)")
                store.note(name, note)
            store.put(name, sample)
            store.commit(every=500)
        finished = {s: (kept, arrays["data"]) for s, kept, arrays in store.finished()}
        done = {s: {n: by_name[n].label for n in finished[s][0]} for s in SPLITS}
        summary = _summary(done, {k: len(v) for k, v in store.notes.items()}, problems, plan.classes)
        if not any(done.values()):
            print_summary(summary, problems, out_folder)
            store.close()
            shutil.rmtree(store.folder, ignore_errors=True)
            raise InputError(out_folder, "no usable sample; nothing was written")
        outputs = []
        for s in SPLITS:
            kept, array = finished[s]
            outputs.append(store.stage_array(array, os.path.join(out_folder, f"{s}_position.npy")))
            outputs.append(store.stage_pickle(os.path.join(out_folder, f"{s}_label.pkl"),
                                              (kept, [done[s][n] for n in kept])))
        manifest = {
            "pipeline": "pose2d",
            "format": fmt,
            "frames": frames,
            "layout": layout_to_dict(layout_),
            "persons": max_persons,
            "channels": list(CHANNELS[channels]),
            "normalize": normalize,
            "image_size": list(image_size) if image_size is not None else None,
            "min_score": min_score,
            "missing_joints": "x = y = score = 0",
            "resize": "mask-aware linear: a joint missing in either neighbouring frame takes the nearer one",
            "counts": summary["counts"],
            "num_classes": summary["num_classes"],
            "classes": plan.classes,
            "skipped": [{"input": src, "reason": reason} for src, reason, _ in problems.items],
            "notes": {k: sorted(set(v)) for k, v in store.notes.items()},
            "source": [os.path.abspath(p) for p in inputs],
            "created_by": command,
        }
        if joints is not None:
            manifest["mapped_from"] = {"layout": plan.layout.name, "joints": joints}
        manifest.update(plan.description)
        if faithful:
            manifest.pop("resize")
        outputs.append(store.stage_json(os.path.join(out_folder, "manifest.json"), manifest))
        store.publish(outputs)
    finally:
        store.close()
    print_summary(summary, problems, out_folder)
    return summary


def _summary(done: dict, notes: dict, problems: Problems, classes) -> dict:
    labels = [lab for d in done.values() for lab in d.values()]
    return {
        "counts": {s: len(done.get(s, {})) for s in SPLITS},
        "classes": {s: len({v for v in done.get(s, {}).values() if v >= 0}) for s in SPLITS},
        "skipped": {s: sum(1 for *_, sp in problems.items if sp == s) for s in SPLITS},
        "num_classes": max(len(classes or ()), max(labels, default=-1) + 1),
        "notes": notes,
        "problems": list(problems.items),
    }


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter,
                                     epilog="Formats:\n" + __doc__.split("Formats (")[1].split("\n\n")[0].split("\n", 1)[1])
    parser.add_argument("--format", required=True, choices=FORMATS)
    parser.add_argument("--input", required=True, nargs="+", help="files or folders (see the format)")
    parser.add_argument("--out_folder", required=True)
    parser.add_argument("--labels", help="CSV with the columns name,label,split (wins over the format's own labels)")
    parser.add_argument("--split", choices=SPLITS, help="the split of every sequence that has none of its own")
    parser.add_argument("--layout", default="auto",
                        help="built-in layout or .yaml (default: the format's: openpose / pose detect it, "
                             "kinetics openpose-18, coco / mmpose / pyskl coco-17, penn_action penn-action-13)")
    parser.add_argument("--to_layout", help="write another built-in layout's joints, found by name (e.g. "
                             "mediapipe-33 -> penn-action-13, whose head is the nose), to use a model trained on it")
    parser.add_argument("--frames", type=int, default=None, help="frames per sample (default 50; 300 with --faithful)")
    parser.add_argument("--max_persons", type=int, default=2)
    parser.add_argument("--channels", choices=tuple(CHANNELS), default="xys",
                        help="xys: x, y, score (C = 3, default); xy: x, y only (C = 2)")
    parser.add_argument("--normalize", choices=NORMALIZE_2D, default="visible",
                        help="visible: centre and scale per sequence by the visible joints' box (default); "
                             "image: by the image size; none: coordinates as read")
    parser.add_argument("--image_size", type=float, nargs=2, metavar=("W", "H"),
                        help="image width and height (for --normalize image; overrides the files' own)")
    parser.add_argument("--min_score", type=float, default=0.0, help="a joint with a score <= this is missing")
    parser.add_argument("--label_json", help="kinetics: the kinetics_<split>_label.json of the --input files")
    parser.add_argument("--faithful", action="store_true",
                        help="kinetics: st-gcn's conversion (x - 0.5, 300 frames, no resize, persons sorted per frame)")
    parser.add_argument("--num_person_in", type=int, default=5, help="kinetics --faithful: skeletons read a frame")
    parser.add_argument("--benchmark", help="pyskl: which <benchmark>_train / _val lists (e.g. xsub)")
    parser.add_argument("--coco_group", choices=COCO_GROUPS, default="file",
                        help="coco: one sequence per file (default), per image, or per vid_id")
    parser.add_argument("--partial_joints", action="store_true",
                        help="pose: import a body component with fewer points than the layout, by name")
    parser.add_argument("--unlabelled", action="store_true",
                        help="a sequence without a label gets -1: new data for `main.py extract` (training refuses it)")
    parser.add_argument("--strict", action="store_true", help="stop at the first bad input")
    parser.add_argument("--workers", type=int, default=1)
    args = parser.parse_args(argv)
    if (args.frames is not None and args.frames < 1) or args.max_persons < 1 or args.workers < 1:
        parser.error("--frames, --max_persons and --workers must be at least 1")
    if args.image_size is not None and not all(v > 0 for v in args.image_size):
        parser.error("--image_size takes a positive width and height")
    if args.layout != "auto":
        try:
            get_layout(args.layout)
        except (ValueError, FileNotFoundError) as e:
            parser.error(str(e))
    command = shlex.join(["python", "tools/pose_import.py"] + (sys.argv[1:] if argv is None else list(argv)))
    try:
        import_poses(args.format, args.input, args.out_folder, labels=args.labels, split=args.split,
                     layout=args.layout, to_layout=args.to_layout, frames=args.frames, max_persons=args.max_persons,
                     channels=args.channels,
                     normalize=args.normalize, image_size=args.image_size, min_score=args.min_score,
                     label_json=args.label_json, faithful=args.faithful, num_person_in=args.num_person_in,
                     benchmark=args.benchmark, coco_group=args.coco_group, partial_joints=args.partial_joints,
                     unlabelled=args.unlabelled, strict=args.strict, workers=args.workers, command=command)
    except (InputError, ValueError, OSError) as e:
        say(f"error: {e}")
        if args.strict and isinstance(e, InputError):
            say("stopped at the first problem (--strict)")
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
