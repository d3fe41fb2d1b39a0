"""Convert skeleton sequences of any layout into lineage frame-N training arrays.

    python tools/gendata_custom.py --sequences DIR --labels labels.csv --layout nw-ucla \\
        --frames 50 --out_folder OUT [--max_persons 2] [--no_rotate] [--strict]

DIR holds one `<name>.npy` per sequence, shaped (T, V, C) or (M, T, V, C) with C = 3 (x, y, z)
or C = 2 (a zero z channel is added). labels.csv has a header with the columns name,label,split
(split: train or val; label: an integer >= 0). OUT receives, per split, `<split>_position.npy`
float32 (N, 3, frames, V, M) and `<split>_label.pkl` = pickle of (names, labels), in sorted-name
order, and `manifest.json`, written last: a folder without a manifest is incomplete.

Each sample goes through feeder.preprocess.to_fixed_length (centre, resize to `frames`, rotate the
shoulders onto x). A bad input is reported with its file (and CSV line) and skipped; with
--strict the run stops at the first one. Other tools reuse `convert()`.
"""
from __future__ import annotations

import argparse
import csv
import json
import os
import pickle
import re
import shlex
import sys

REPO_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

import numpy as np  # noqa: E402
from numpy.lib.format import open_memmap  # noqa: E402
from tqdm import tqdm  # noqa: E402

from feeder.layouts import get_layout, layout_to_dict  # noqa: E402
from feeder.preprocess import check_sequence, fixed_length_sample  # noqa: E402
from tools.raw.common import InputError, Problems, say  # noqa: E402

SPLITS = ("train", "val")
CSV_COLUMNS = ("name", "label", "split")
PIPELINE = "lineage-frameN"
COPY_CHUNK = 256  # rows per copy when compacting a split with skipped samples


def parse_label(value) -> int:
    """An int >= 0 from an int or a decimal string; ValueError naming the bad value otherwise."""
    if isinstance(value, (int, np.integer)) and not isinstance(value, (bool, np.bool_)):
        label = int(value)
    elif isinstance(value, str) and re.fullmatch(r"\s*-?[0-9]+\s*", value):
        label = int(value)
    else:
        raise ValueError(f"bad label {value!r}: not an integer")
    if label < 0:
        raise ValueError(f"bad label {label}: negative")
    return label


def parse_split(value) -> str:
    split = value.strip() if isinstance(value, str) else value
    if split not in SPLITS:
        raise ValueError(f"bad split {value!r}: must be one of {', '.join(SPLITS)}")
    return split


def read_labels(path: str, problems: Problems) -> tuple[dict, set]:
    """labels.csv -> ({name: (label, split, line)}, names of rejected rows).

    A missing column is fatal (InputError); a bad row is reported with its line and left out.
    """
    csv_name = os.path.basename(path)
    rows, rejected = {}, set()
    with open(path, newline="", encoding="utf-8-sig") as f:
        reader = csv.DictReader(f)
        header = [c.strip() for c in reader.fieldnames or []]
        missing = [c for c in CSV_COLUMNS if c not in header]
        if missing:
            raise InputError(f"{csv_name} line 1", f"missing column(s) {', '.join(missing)} in the header "
                             f"{header}; expected {','.join(CSV_COLUMNS)}")
        reader.fieldnames = header
        for row in reader:
            where = f"{csv_name} line {reader.line_num}"
            name = (row["name"] or "").strip()
            try:
                if not name:
                    raise ValueError("empty name")
                if name in rows:
                    raise ValueError(f"name {name!r} repeats line {rows[name][2]}")
                rows[name] = (parse_label(row["label"]), parse_split(row["split"]), reader.line_num)
            except ValueError as e:
                rejected.add(name)
                problems.add(where, str(e))
    return rows, rejected - set(rows)


def _partial(path: str) -> str:
    return path + ".partial"


def _write_split(buffer_path, capacity, slot_of, kept, final_path, shape, persons):
    """Write the kept rows of a split's buffer (their first `persons` person slots), in sorted-name order, to
    final_path's temp name."""
    out = _partial(final_path)
    shape = shape[:-1] + (persons,)
    if len(kept) == 0:
        with open(out, "wb") as f:
            np.save(f, np.zeros((0,) + shape, np.float32))
    elif len(kept) == capacity and persons == np.load(buffer_path, mmap_mode="r").shape[-1]:
        os.replace(buffer_path, out)  # every slot filled: the buffer already is the output
    else:
        rows = [slot_of[name] for name in kept]
        buffer = np.load(buffer_path, mmap_mode="r")
        dest = open_memmap(out, mode="w+", dtype=np.float32, shape=(len(kept),) + shape)
        for start in range(0, len(rows), COPY_CHUNK):
            dest[start:start + COPY_CHUNK] = buffer[rows[start:start + COPY_CHUNK], ..., :persons]
        dest.flush()
        del dest, buffer
    return out


PERSON_CAP = 2  # the lineage's M: the most person slots an automatic count gives


def convert(sequences, labels: dict, layout, frames: int = 50, out_folder: str = ".",
            max_persons: int | None = None, rotate: bool = True, center: bool = True, strict: bool = False,
            file_suffix: str = "", source: str = "", command: str | None = None,
            problems: Problems | None = None, total: int | None = None) -> dict:
    """Write lineage frame-N arrays for `sequences` to out_folder; returns the summary.

    sequences: iterable of (name, array) with the array (T, V, C) or (M, T, V, C), or a
        zero-argument callable returning it (so a reader's failure is reported like bad data).
    labels: {name: (label, split)}, label an int >= 0, split 'train' or 'val'.
    file_suffix: appended to names in reports (e.g. '.npy'), so they name the files.
    max_persons: person slots (M) of the output; None follows the data: as many as the busiest sample has
        (a person with any non-zero value), up to PERSON_CAP. An always-empty second slot is not harmless:
        it enters ST-GCN's input BatchNorm statistics as zeros and its (input-independent) features are
        averaged into every sample's pooled feature: on NW-UCLA an empty second slot lowers a random-init
        encoder's kNN from 36.0 / 24.9 to 33.3 / 20.0 (k = 1 / 20, mean of 3 seeds; docs/results_nw_ucla.md).
    Bad samples are reported and skipped (InputError at the first one if strict). Raises
    InputError if no sample is usable; then nothing is written.
    """
    layout = get_layout(layout)
    problems = problems if problems is not None else Problems(strict)
    command = command or shlex.join(sys.argv)
    os.makedirs(out_folder, exist_ok=True)
    manifest_path = os.path.join(out_folder, "manifest.json")
    if os.path.exists(manifest_path):  # the outputs are about to change: no longer complete
        os.remove(manifest_path)

    checked = {}
    for name, (label, split) in labels.items():
        try:
            checked[name] = (parse_label(label), parse_split(split))
        except ValueError as e:
            problems.add(name + file_suffix, str(e))
    auto_persons = max_persons is None
    slots = PERSON_CAP if auto_persons else max_persons
    sample_shape = (3, frames, layout.num_joints, slots)
    persons_seen = 0
    paths = {s: os.path.join(out_folder, f"{s}_position.npy") for s in SPLITS}
    names_in = {s: sorted(n for n, (_, sp) in checked.items() if sp == s) for s in SPLITS}
    slot_of = {s: {n: i for i, n in enumerate(names_in[s])} for s in SPLITS}
    buffer_paths = {s: paths[s] + ".buffer" for s in SPLITS}
    temp_paths = list(buffer_paths.values())
    buffers = {}  # split -> memmap with one slot per labelled name, in sorted-name order
    done = {s: {} for s in SPLITS}  # split -> {name: label}
    notes = {}  # remark -> number of sequences

    def note(remark, where):
        if remark not in notes:
            say(f"note: {where}: {remark} (said once; the count is in the summary)")
        notes[remark] = notes.get(remark, 0) + 1

    try:
        for s in SPLITS:
            if names_in[s]:
                buffers[s] = open_memmap(buffer_paths[s], mode="w+", dtype=np.float32,
                                         shape=(len(names_in[s]),) + sample_shape)
        for name, sequence in tqdm(sequences, total=total, desc=f"frame-{frames}", unit="seq"):
            where = name + file_suffix
            if name not in checked:
                if name not in labels:  # a bad label row was reported already
                    problems.add(where, "no label row for this sequence")
                continue
            label, split = checked[name]
            if name in done[split]:
                problems.add(where, "given twice", split)
                continue
            try:
                a, flat = check_sequence(sequence() if callable(sequence) else sequence, layout)
                positions = fixed_length_sample(a, layout, frames, slots, center, rotate)
            except (ValueError, OSError, EOFError) as e:
                problems.add(where, str(e), split)
                continue
            if flat:
                note("2-D coordinates, a zero z channel was added", where)
            if a.shape[0] > slots:
                note(f"more than {slots} persons, the first {slots} kept", where)
            persons_seen = max(persons_seen, int(np.abs(positions).sum(axis=(0, 1, 2)).astype(bool).sum()))
            buffers[split][slot_of[split][name]] = positions
            done[split][name] = label
        for b in buffers.values():
            b.flush()
        buffers.clear()

        all_labels = [lab for d in done.values() for lab in d.values()]
        summary = {
            "counts": {s: len(done[s]) for s in SPLITS},
            "classes": {s: len(set(done[s].values())) for s in SPLITS},
            "skipped": {s: sum(1 for *_, sp in problems.items if sp == s) for s in SPLITS},
            "num_classes": max(all_labels, default=-1) + 1,
            "notes": notes,
            "problems": list(problems.items),
        }
        if not all_labels:
            print_summary(summary, problems, out_folder)
            raise InputError(out_folder, "no usable sample; nothing was written")
        persons = max(persons_seen, 1) if auto_persons else slots
        if auto_persons and persons < slots:
            say(f"note: no sample has a person in slot {persons + 1}: {persons} person slot(s) written "
                f"(--max_persons {slots} keeps {slots})")
        outputs = []
        for s in SPLITS:
            kept = sorted(done[s])
            temp_paths.append(_partial(paths[s]))
            outputs.append((_write_split(buffer_paths[s], len(names_in[s]), slot_of[s], kept, paths[s],
                                         sample_shape, persons), paths[s]))
            label_path = os.path.join(out_folder, f"{s}_label.pkl")
            temp_paths.append(_partial(label_path))
            with open(_partial(label_path), "wb") as f:
                pickle.dump((kept, [done[s][n] for n in kept]), f)
            outputs.append((_partial(label_path), label_path))

        manifest = {
            "pipeline": PIPELINE,
            "frames": frames,
            # the whole definition, so the feeder rebuilds a custom layout without its YAML file
            "layout": layout_to_dict(layout),
            "persons": persons,
            "centered_on_joint": layout.center if center else None,
            "rotated": bool(rotate and layout.shoulders is not None),
            "counts": summary["counts"],
            "num_classes": summary["num_classes"],  # max label + 1
            "skipped": len(problems.items),
            "source": source,
            "created_by": command,
        }
        temp_paths.append(_partial(manifest_path))
        with open(_partial(manifest_path), "w") as f:
            json.dump(manifest, f, indent=2)
        for temp, final in outputs:
            os.replace(temp, final)
        os.replace(_partial(manifest_path), manifest_path)  # last: marks the folder complete
    finally:
        buffers.clear()
        for path in temp_paths:
            if os.path.exists(path):
                os.remove(path)
    print_summary(summary, problems, out_folder)
    return summary


def print_summary(summary: dict, problems: Problems, out_folder: str) -> None:
    lines = [f"{'split':<10}{'samples':>9}{'classes':>9}{'skipped':>9}"]
    for s in SPLITS:
        lines.append(f"{s:<10}{summary['counts'][s]:>9}{summary['classes'][s]:>9}{summary['skipped'][s]:>9}")
    unassigned = sum(1 for *_, sp in problems.items if sp is None)
    if unassigned:
        lines.append(f"{'(no split)':<10}{'-':>9}{'-':>9}{unassigned:>9}")
    lines += problems.report_lines()
    lines += [f"note: {note}: {count}" for note, count in summary["notes"].items()]
    if any(summary["counts"].values()):
        lines.append(f"wrote {out_folder} ({summary['num_classes']} classes)")
    say("\n".join(lines))


def load_npy(path: str) -> np.ndarray:
    try:
        return np.load(path, allow_pickle=False)
    except (ValueError, OSError, EOFError) as e:
        raise ValueError(f"cannot read as .npy: {e}") from None


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sequences", required=True, help="folder of <name>.npy sequences")
    parser.add_argument("--labels", required=True, help="CSV with the columns name,label,split")
    parser.add_argument("--layout", required=True, help="built-in layout name or a layout .yaml")
    parser.add_argument("--frames", type=int, default=50)
    parser.add_argument("--out_folder", required=True)
    parser.add_argument("--max_persons", type=int, default=None,
                        help=f"person slots; default: as many as the data has (up to {PERSON_CAP})")
    parser.add_argument("--no_rotate", action="store_true", help="skip the shoulder rotation")
    parser.add_argument("--strict", action="store_true", help="stop at the first bad input")
    args = parser.parse_args(argv)
    if args.frames < 1 or (args.max_persons is not None and args.max_persons < 1):
        parser.error("--frames and --max_persons must be at least 1")
    try:
        layout = get_layout(args.layout)
    except (ValueError, FileNotFoundError) as e:
        parser.error(str(e))
    problems = Problems(args.strict)
    try:
        rows, rejected = read_labels(args.labels, problems)
        files = {f[:-len(".npy")] for f in os.listdir(args.sequences) if f.endswith(".npy")}
        csv_name = os.path.basename(args.labels)
        for name, (_, split, line) in rows.items():
            if name not in files:
                problems.add(f"{csv_name} line {line}", f"no sequence file {name}.npy in {args.sequences}", split)
        names = sorted(files - rejected)
        sequences = ((n, lambda n=n: load_npy(os.path.join(args.sequences, n + ".npy"))) for n in names)
        convert(sequences, {n: r[:2] for n, r in rows.items() if n in files}, layout,
                frames=args.frames, out_folder=args.out_folder, max_persons=args.max_persons,
                rotate=not args.no_rotate, file_suffix=".npy", source=os.path.abspath(args.sequences),
                command=shlex.join(["python", "tools/gendata_custom.py"] + (sys.argv[1:] if argv is None else argv)),
                problems=problems, total=len(names))
    except (InputError, OSError) as e:
        say(f"error: {e}")
        if args.strict and isinstance(e, InputError):
            say("stopped at the first problem (--strict)")
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
