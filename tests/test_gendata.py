"""tools/gendata_custom.py and tools/nw_ucla_gendata.py."""
import glob
import json
import os
import pickle
import shutil
import subprocess
import sys

import numpy as np
import pytest
from conftest import SHARED

from feeder.layouts import get_layout, layout_to_dict
from feeder.preprocess import to_fixed_length
from tools import nw_ucla_gendata
from tools.gendata_custom import InputError, convert, main

REPO_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
NW_UCLA_ARCHIVE = os.path.join(REPO_ROOT, "data", "nw_ucla", "nw_ucla_skeletons.npz")
NW_UCLA_JSON = os.path.join(SHARED, "data", "nw_ucla", "all_sqe")
UCLA = get_layout("nw-ucla")
V = UCLA.num_joints


def sequence(frames, persons=None, coords=3, seed=0):
    """Random (T, V, C) skeleton, or (M, T, V, C) if persons is given."""
    rng = np.random.default_rng(seed)
    shape = (frames, V, coords) if persons is None else (persons, frames, V, coords)
    return rng.normal(size=shape).astype(np.float32)


def make_dataset(root, arrays, csv_lines):
    """root/seq/<name>.npy for each array, root/labels.csv from the lines (header included)."""
    os.makedirs(root / "seq", exist_ok=True)
    for name, array in arrays.items():
        np.save(root / "seq" / f"{name}.npy", array)
    (root / "labels.csv").write_text("\n".join(csv_lines) + "\n")


def run(root, *extra):
    return main(["--sequences", str(root / "seq"), "--labels", str(root / "labels.csv"), "--layout", "nw-ucla",
                 "--frames", "50", "--out_folder", str(root / "out"), *extra])


def load_split(out, split):
    with open(out / f"{split}_label.pkl", "rb") as f:
        names, labels = pickle.load(f)
    return np.load(out / f"{split}_position.npy"), names, labels


GOOD = {"walk": sequence(7, seed=1), "jump": sequence(120, persons=2, seed=2),
        "bow": sequence(50, persons=1, seed=3), "clap": sequence(33, seed=4)}
GOOD_CSV = ["name,label,split", "walk,2,train", "jump,0,train", "bow,1,val", "clap,1,train"]


def test_end_to_end(tmp_path, capsys):
    make_dataset(tmp_path, GOOD, GOOD_CSV)
    assert run(tmp_path) == 0
    out = tmp_path / "out"
    train, names, labels = load_split(out, "train")
    assert names == ["clap", "jump", "walk"] and labels == [1, 0, 2]
    assert train.shape == (3, 3, 50, V, 2) and train.dtype == np.float32
    val, val_names, val_labels = load_split(out, "val")
    assert val.shape == (1, 3, 50, V, 2) and val_names == ["bow"] and val_labels == [1]
    # each row is the preprocessing of its sequence, persons last and zero-padded to M = 2
    jump = to_fixed_length(GOOD["jump"].transpose(3, 1, 2, 0), UCLA, 50)
    np.testing.assert_array_equal(train[1], jump)
    walk = np.zeros((3, 7, V, 2), np.float32)
    walk[..., 0] = GOOD["walk"].transpose(2, 0, 1)
    np.testing.assert_array_equal(train[2], to_fixed_length(walk, UCLA, 50))
    assert not train[2, ..., 1].any()

    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["pipeline"] == "lineage-frameN" and manifest["frames"] == 50
    assert manifest["layout"] == layout_to_dict(UCLA) and manifest["persons"] == 2
    assert manifest["counts"] == {"train": 3, "val": 1} and manifest["num_classes"] == 3
    assert manifest["skipped"] == 0 and manifest["rotated"] is True
    assert manifest["source"] and "gendata_custom.py" in manifest["created_by"]
    assert sorted(os.listdir(out)) == ["manifest.json", "train_label.pkl", "train_position.npy",
                                       "val_label.pkl", "val_position.npy"]
    report = capsys.readouterr().out
    assert "split" in report and "samples" in report and "skipped" in report


def test_two_dimensional_input_gets_a_zero_z(tmp_path, capsys):
    make_dataset(tmp_path, {"flat": sequence(20, coords=2)}, ["name,label,split", "flat,0,train"])
    assert run(tmp_path, "--no_rotate", "--max_persons", "1") == 0
    train, _, _ = load_split(tmp_path / "out", "train")
    assert train.shape == (1, 3, 50, V, 1) and not train[0, 2].any() and train[0, :2].any()
    assert "flat.npy: 2-D coordinates, a zero z channel was added" in capsys.readouterr().out


def test_person_slots_follow_the_data(tmp_path, capsys):
    """No sample has a second person: one slot by default (an always-empty slot enters the input BatchNorm and
    every pooled feature); --max_persons 2 keeps the lineage's two."""
    make_dataset(tmp_path, {"a": sequence(12), "b": sequence(9, seed=2)}, ["name,label,split", "a,0,train", "b,1,val"])
    assert run(tmp_path) == 0
    train, _, _ = load_split(tmp_path / "out", "train")
    assert train.shape == (1, 3, 50, V, 1)
    assert json.loads((tmp_path / "out" / "manifest.json").read_text())["persons"] == 1
    assert "no sample has a person in slot 2: 1 person slot(s) written" in capsys.readouterr().out
    assert run(tmp_path, "--max_persons", "2") == 0
    two, _, _ = load_split(tmp_path / "out", "train")
    assert two.shape == (1, 3, 50, V, 2) and not two[..., 1].any()
    np.testing.assert_array_equal(two[..., 0], train[..., 0])


def test_yaml_layout_and_more_persons_than_kept(tmp_path, capsys):
    layout = tmp_path / "tri.yaml"
    layout.write_text("num_joints: 3\ncenter: 1\nedges: [[0, 1], [1, 2]]\nshoulders: [0, 2]\n")
    os.makedirs(tmp_path / "seq")
    np.save(tmp_path / "seq" / "crowd.npy", np.random.default_rng(5).normal(size=(3, 9, 3, 3)))
    (tmp_path / "labels.csv").write_text("name,label,split\ncrowd,4,val\n")
    assert main(["--sequences", str(tmp_path / "seq"), "--labels", str(tmp_path / "labels.csv"),
                 "--layout", str(layout), "--frames", "20", "--out_folder", str(tmp_path / "out")]) == 0
    val, names, labels = load_split(tmp_path / "out", "val")
    assert val.shape == (1, 3, 20, 3, 2) and names == ["crowd"] and labels == [4]
    assert "more than 2 persons" in capsys.readouterr().out
    assert json.loads((tmp_path / "out" / "manifest.json").read_text())["layout"]["name"] == "tri"


# (what to add to the good dataset, the source named in the report, the reason)
BAD_INPUTS = {
    "wrong rank": ({"flat": np.ones((5, V), np.float32)}, ["flat,0,train"], "flat.npy", "wrong rank"),
    "wrong joints": ({"ntu": sequence(9)[:, :5]}, ["ntu,0,train"], "ntu.npy", "wrong number of joints"),
    "nan": ({"holes": np.where(sequence(9) > 1.5, np.nan, sequence(9))}, ["holes,0,train"], "holes.npy",
            "contains NaN or inf"),
    "inf": ({"far": np.full((4, V, 3), np.inf, np.float32)}, ["far,0,train"], "far.npy", "contains NaN or inf"),
    "all zeros": ({"still": np.zeros((6, V, 3), np.float32)}, ["still,0,val"], "still.npy", "all zeros"),
    "empty": ({"void": np.zeros((0, V, 3), np.float32)}, ["void,0,val"], "void.npy", "empty"),
    "no file": ({}, ["ghost,0,train"], "labels.csv line 6", "no sequence file ghost.npy"),
    "no label row": ({"stray": sequence(9)}, [], "stray.npy", "no label row"),
    "negative label": ({"neg": sequence(9)}, ["neg,-1,train"], "labels.csv line 6", "bad label -1"),
    "text label": ({"txt": sequence(9)}, ["txt,two,train"], "labels.csv line 6", "bad label 'two'"),
    "bad split": ({"tst": sequence(9)}, ["tst,0,test"], "labels.csv line 6", "bad split 'test'"),
}


@pytest.mark.parametrize("case", BAD_INPUTS)
def test_bad_input_is_reported_and_skipped(tmp_path, capsys, case):
    arrays, rows, source, reason = BAD_INPUTS[case]
    make_dataset(tmp_path, {**GOOD, **arrays}, GOOD_CSV + rows)
    assert run(tmp_path) == 0
    report = capsys.readouterr().out
    assert f"skipped {source}: {reason}" in report  # as it happens
    assert f"skipped 1:\n  {source}: {reason}" in report  # and in the final report
    counts = json.loads((tmp_path / "out" / "manifest.json").read_text())["counts"]
    assert counts == {"train": 3, "val": 1}


@pytest.mark.parametrize("case", BAD_INPUTS)
def test_strict_stops_at_the_first_problem(tmp_path, capsys, case):
    arrays, rows, source, reason = BAD_INPUTS[case]
    make_dataset(tmp_path, {**GOOD, **arrays}, GOOD_CSV + rows)
    assert run(tmp_path, "--strict") == 1
    report = capsys.readouterr().out
    assert f"error: {source}: {reason}" in report and "stopped at the first problem" in report
    assert not (tmp_path / "out" / "manifest.json").exists()
    assert not glob.glob(str(tmp_path / "out" / "*.partial")) + glob.glob(str(tmp_path / "out" / "*.buffer"))


def test_csv_missing_a_column_stops(tmp_path, capsys):
    make_dataset(tmp_path, GOOD, ["name,label", "walk,2"])
    assert run(tmp_path) == 1
    assert "error: labels.csv line 1: missing column(s) split" in capsys.readouterr().out


def test_nothing_usable_exits_non_zero_and_writes_nothing(tmp_path, capsys):
    make_dataset(tmp_path, {"still": np.zeros((6, V, 3))}, ["name,label,split", "still,0,train"])
    assert run(tmp_path) == 1
    assert "no usable sample" in capsys.readouterr().out
    assert not os.listdir(tmp_path / "out")


def test_interrupted_run_leaves_no_complete_looking_output(tmp_path):
    make_dataset(tmp_path, GOOD, GOOD_CSV)
    assert run(tmp_path) == 0

    def interrupted():
        yield "bow", GOOD["bow"]
        raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        convert(interrupted(), {"bow": (1, "val")}, "nw-ucla", out_folder=str(tmp_path / "out"))
    left = sorted(os.listdir(tmp_path / "out"))
    assert "manifest.json" not in left and not [f for f in left if f.endswith((".partial", ".buffer"))]


def test_convert_reports_reader_failures_and_strict_raises(tmp_path, capsys):
    def unreadable():
        raise OSError("disk on fire")

    sequences = [("good", sequence(12)), ("broken", unreadable)]
    labels = {"good": (0, "train"), "broken": (1, "train")}
    summary = convert(iter(sequences), labels, "nw-ucla", out_folder=str(tmp_path / "a"), file_suffix=".x")
    assert summary["counts"] == {"train": 1, "val": 0} and summary["skipped"]["train"] == 1
    assert "broken.x: disk on fire" in capsys.readouterr().out
    assert np.load(tmp_path / "a" / "val_position.npy").shape == (0, 3, 50, V, 1)  # one person: one slot
    with pytest.raises(InputError, match="broken.x: disk on fire"):
        convert(iter(sequences), labels, "nw-ucla", out_folder=str(tmp_path / "b"), file_suffix=".x", strict=True)


def test_script_runs_from_the_repo_root(tmp_path):
    make_dataset(tmp_path, GOOD, GOOD_CSV)
    result = subprocess.run([sys.executable, "tools/gendata_custom.py", "--sequences", str(tmp_path / "seq"),
                             "--labels", str(tmp_path / "labels.csv"), "--layout", "nw-ucla",
                             "--out_folder", str(tmp_path / "out")], cwd=REPO_ROOT, capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    assert "train" in result.stdout and (tmp_path / "out" / "manifest.json").exists()


# ---- NW-UCLA ----

def needs_json():
    if not os.path.isdir(NW_UCLA_JSON):
        pytest.skip(f"NW-UCLA JSON release not available: {NW_UCLA_JSON}")


def test_pack_round_trips_real_sequences(tmp_path):
    needs_json()
    subset = tmp_path / "all_sqe"
    os.makedirs(subset)
    picked = ["a01_s01_e00_v01", "a04_s01_e01_v01", "a06_s03_e02_v03", "a12_s10_e04_v02"]
    for name in picked:
        shutil.copy(os.path.join(NW_UCLA_JSON, name + ".json"), subset)
    stats = nw_ucla_gendata.pack(str(subset), str(tmp_path / "ucla.npz"))
    assert stats["sequences"] == 4 and stats["max_error_m"] <= 0.0005 + 1e-6
    data = nw_ucla_gendata.load_packed(str(tmp_path / "ucla.npz"))
    assert data["names"].tolist() == picked
    assert data["views"].tolist() == [1, 1, 3, 2] and data["subjects"].tolist() == [1, 1, 3, 10]
    for name, frames, label in zip(picked, data["skeletons"], data["labels"]):
        with open(subset / f"{name}.json") as f:
            record = json.load(f)
        assert label == record["label"] - 1
        np.testing.assert_allclose(frames, np.array(record["skeletons"]), rtol=0, atol=0.0005 + 1e-6)
    # the JSON folder is accepted as a source for frames too
    summary = nw_ucla_gendata.make_frames(str(subset), str(tmp_path / "f50"), 50)
    assert summary["counts"] == {"train": 3, "val": 1}


def test_bundled_archive_matches_the_release():
    data = nw_ucla_gendata.load_packed(NW_UCLA_ARCHIVE)
    assert len(data["names"]) == 1484 and data["lengths"].sum() == 58534
    assert [int((data["views"] == v).sum()) for v in (1, 2, 3)] == [516, 504, 464]
    assert sorted(set(data["labels"].tolist())) == list(range(10))
    assert os.path.getsize(NW_UCLA_ARCHIVE) < 10e6
    needs_json()
    for i in np.random.default_rng(0).choice(1484, 8, replace=False):
        with open(os.path.join(NW_UCLA_JSON, data["names"][i] + ".json")) as f:
            record = json.load(f)
        np.testing.assert_allclose(data["skeletons"][i], record["skeletons"], rtol=0, atol=0.0005 + 1e-6)
        assert data["labels"][i] == record["label"] - 1


def test_nw_ucla_frames_cross_view(nw_ucla_frame50):
    manifest = json.loads((nw_ucla_frame50 / "manifest.json").read_text())
    assert manifest["counts"] == {"train": 1020, "val": 464} and manifest["num_classes"] == 10
    assert manifest["layout"] == layout_to_dict(UCLA) and manifest["persons"] == 1
    for split, count in (("train", 1020), ("val", 464)):
        positions, names, labels = load_split(nw_ucla_frame50, split)
        assert positions.shape == (count, 3, 50, 20, 1) and np.isfinite(positions).all()
        assert names == sorted(names) and len(labels) == count and sorted(set(labels)) == list(range(10))
        views = {name.rsplit("_v", 1)[1] for name in names}
        assert views == ({"01", "02"} if split == "train" else {"03"})


def test_nw_ucla_raw_sequences_for_mamp(tmp_path):
    from conftest import NW_UCLA_ARCHIVE
    from tools.nw_ucla_gendata import load_packed, make_raw

    counts = make_raw(NW_UCLA_ARCHIVE, str(tmp_path), command="test")
    assert counts == {"train": 1020, "val": 464}
    data = load_packed(NW_UCLA_ARCHIVE)
    x = np.load(tmp_path / "val_data_joint.npy")
    with open(tmp_path / "val_label.pkl", "rb") as f:
        names, labels = pickle.load(f)
    assert names == sorted(names) and x.shape == (464, 3, 201, 20, 1)
    i = list(data["names"]).index(names[7])
    seq = data["skeletons"][i]  # (T, 20, 3)
    expected = (seq - seq[0, 2]).transpose(2, 0, 1)  # origin: centre joint (3, 0-based 2) of frame 0
    np.testing.assert_allclose(x[7, :, :len(seq), :, 0], expected, atol=1e-6)
    assert not x[7, :, len(seq):].any() and labels[7] == int(data["labels"][i])
