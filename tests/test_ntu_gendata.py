"""NTU RGB+D raw files: parser, writer, splits, the lineage tools, bad input, resume, pyskl import."""
import json
import lzma
import os
import pickle
import shutil
import signal
import subprocess
import sys
import time

import numpy as np
import pytest
from conftest import NTU_SIX, REPO_ROOT

from tools.raw import ntu
from tools.raw.common import InputError
from tools.raw.store import SampleStore
from tools import lineage_frames, ntu_gendata, pyskl_import

DATA = os.path.join(REPO_ROOT, "tests", "data")
A001 = os.path.join(DATA, "ntu_rgbd", "S001C001P001R001A001.skeleton")  # LF, one body, 103 frames
A058 = os.path.join(DATA, "ntu_rgbd", "S001C003P008R002A058.skeleton")  # CRLF, two bodies, 70 frames


def golden(golden_dir, name):
    return np.load(os.path.join(golden_dir, "ntu_pipeline", name))


# ---- names and splits --------------------------------------------------------------------------

def test_parse_name_and_labels():
    assert ntu.parse_name("S001C002P003R002A013.skeleton") == (1, 2, 3, 2, 13)
    assert ntu.parse_name("S018C001P045R001A120").label == 119
    for bad in ("S01C002P003R002A013", "S001C002P003R002A013x", "readme.skeleton", "A013S001C002P003R002"):
        with pytest.raises(InputError, match="does not parse"):
            ntu.parse_name(bad)


def test_split_of_the_six_genuine_samples_as_in_the_golden_readme():
    expected = {"S001C001P001R001A001": ("train", "val"), "S001C001P001R001A011": ("train", "val"),
                "S001C003P008R002A058": ("train", "train"), "S002C001P003R001A003": ("val", "val"),
                "S003C001P015R001A034": ("train", "val"), "S004C002P003R001A017": ("val", "train")}
    for name, (xsub, xview) in expected.items():
        parsed = ntu.parse_name(name)
        assert ("train" if ntu.is_train(parsed, "xsub") else "val") == xsub
        assert ("train" if ntu.is_train(parsed, "xview") else "val") == xview


def release_names():
    with lzma.open(os.path.join(DATA, "ntu120_release_names.txt.xz"), "rt") as f:
        return f.read().split()


def test_split_rules_give_the_official_counts_on_the_full_release():
    names = release_names()
    assert len(names) == 114480 and len([n for n in names if ntu.parse_name(n).setup <= 17]) == 56880
    for benchmarks, dataset in ((["xsub", "xview"], "ntu60"), (["xsub120", "xset"], "ntu120")):
        ignored = ntu.read_missing_list(ntu.MISSING_LISTS[dataset])
        splits = ntu_gendata.plan_splits([n for n in names if n not in ignored], benchmarks)
        for b in benchmarks:
            folder = ntu_gendata.folder_of(b)
            got = {p: len(splits[f"{folder}/{p}"]) for p in ("train", "val")}
            assert got == ntu.OFFICIAL_COUNTS[b], b
    # without the list, NTU60 has the counts the st-gcn paper prints
    raw = ntu_gendata.plan_splits(names, ["xsub", "xview"])
    assert [len(raw[k]) for k in ("xsub/train", "xsub/val", "xview/train", "xview/val")] == [40320, 16560, 37920, 18960]


def test_missing_lists_are_read_with_or_without_header_and_crlf(tmp_path):
    assert len(ntu.read_missing_list(ntu.MISSING_LISTS["ntu60"])) == 302
    full = ntu.read_missing_list(ntu.MISSING_LISTS["ntu120"])
    assert len(full) == 535 and ntu.read_missing_list(ntu.MISSING_LISTS["ntu60"]) <= full
    bare = tmp_path / "list.txt"
    bare.write_bytes(b"S001C002P005R002A008\r\nS001C002P006R001A008\r\n\r\n")
    assert ntu.read_missing_list(str(bare)) == {"S001C002P005R002A008", "S001C002P006R001A008"}


# ---- the parser and the writer -----------------------------------------------------------------

def test_writer_reproduces_the_genuine_files_byte_for_byte(tmp_path):
    for path, newline in ((A001, "\n"), (A058, "\r\n")):
        out = tmp_path / os.path.basename(path)
        ntu.write_skeleton(str(out), ntu.read_skeleton(path), newline=newline)
        assert out.read_bytes() == open(path, "rb").read(), path


def test_parser_reads_the_structure_and_values():
    s = ntu.read_skeleton(A058)
    assert s.num_frames == 70 and len(s.frame) == 140 and s.joints.shape == (140, 25, 12)
    assert set(s.body_id.tolist()) == {72057594037944738, 72057594037944734}
    assert s.body_id[0] == 72057594037944738  # the file lists ...738 first
    first_joint = open(A001).read().split("\n")[4].split()  # line 5: frame 1, body 1, joint 1
    np.testing.assert_array_equal(ntu.read_skeleton(A001).joints[0, 0], [float(v) for v in first_joint])
    xyz = ntu.read_skeleton(A058, ntu.XYZ)
    np.testing.assert_array_equal(xyz.joints, s.joints[..., :3])


def test_lineage_reading_equals_upstream_on_the_six_genuine_files(ntu_six_files, golden_dir):
    raw = golden(golden_dir, "lineage_raw300.npz")
    for name in NTU_SIX:
        x = ntu.lineage_xyz(ntu.read_skeleton(os.path.join(ntu_six_files, name + ".skeleton"), ntu.XYZ))
        np.testing.assert_array_equal(x, raw[name], err_msg=name)


def test_pre_normalization_and_energy_selection_equal_2s_agcn(ntu_six_files, golden_dir):
    prenorm, agcn = golden(golden_dir, "lineage_prenorm300.npz"), golden(golden_dir, "agcn_gendata_prenorm300.npz")
    for name in NTU_SIX:
        skeleton = ntu.read_skeleton(os.path.join(ntu_six_files, name + ".skeleton"), ntu.XYZ)
        np.testing.assert_allclose(ntu.pre_normalize(ntu.lineage_xyz(skeleton)), prenorm[name], atol=1e-6, rtol=0)
        np.testing.assert_allclose(ntu.pre_normalize(ntu.energy_xyz(skeleton)), agcn[name], atol=1e-6, rtol=0)
    # A058: the energy order puts body ...734 (more motion) first, swapping the file order
    a058 = ntu.read_skeleton(os.path.join(ntu_six_files, "S001C003P008R002A058.skeleton"), ntu.XYZ)
    np.testing.assert_array_equal(ntu.energy_xyz(a058)[..., 0], ntu.lineage_xyz(a058)[..., 1])


def test_pre_normalization_by_hand():
    """One body, 3 frames then padding: tail filled by repetition, spine-mid at the origin in every
    frame, frame 0's shoulders along +x. (The spine is along z only between the two rotations: the
    second one turns about the axis shoulder x X, as 2s-AGCN does, which tilts the spine again.)"""
    rng = np.random.default_rng(1)
    x = np.zeros((3, 8, 25, 2), np.float32)
    x[:, :3, :, 0] = rng.normal(size=(3, 3, 25))
    out = ntu.pre_normalize(x)
    np.testing.assert_array_equal(out[:, 3:6], out[:, 0:3])  # repeated from the start
    np.testing.assert_allclose(out[:, :, 1, 0], 0, atol=1e-6)
    shoulders = out[:, 0, 8, 0] - out[:, 0, 4, 0]
    np.testing.assert_allclose(shoulders[1:], 0, atol=1e-6)
    assert shoulders[0] > 0
    # a rigid transform: distances between joints are kept
    d_in = np.linalg.norm(x[:, 0, 3, 0] - x[:, 0, 20, 0])
    np.testing.assert_allclose(np.linalg.norm(out[:, 0, 3, 0] - out[:, 0, 20, 0]), d_in, rtol=1e-5)


# ---- bad input ---------------------------------------------------------------------------------

def corrupt(tmp_path, name, transform):
    """A copy of A001 under `name` with its lines passed through transform(list of lines)."""
    lines = open(A001).read().split("\n")
    path = tmp_path / (name + ".skeleton")
    path.write_text("\n".join(transform(lines)))
    return str(path)


def three_bodies(lines):
    """Frame 1 of A001 listed with a third body (a copy of the first): header 27 lines per body."""
    body = lines[2:29]
    return lines[:1] + ["3"] + body + body + body + lines[29:]


@pytest.mark.parametrize("case, transform, message", [
    ("empty", lambda lines: [""], "empty file"),
    ("truncated", lambda lines: lines[:1500], r"truncated: the file ends in frame \d+ of 103"),
    ("nan", lambda lines: lines[:10] + [lines[10].replace(lines[10].split()[0], "nan", 1)] + lines[11:],
     "line 11.*NaN or inf in the joints of frame 1"),
    ("text", lambda lines: lines[:10] + [lines[10].replace(lines[10].split()[1], "abc", 1)] + lines[11:],
     "line 11.*not a number: 'abc'"),
    ("short_line", lambda lines: lines[:10] + [" ".join(lines[10].split()[:11])] + lines[11:],
     "line 11.*11 values, expected 12"),
    ("extra", lambda lines: lines + ["42"], "unexpected content after the last of 103 frames"),
])
def test_malformed_files_name_the_file_line_and_reason(tmp_path, case, transform, message):
    path = corrupt(tmp_path, "S001C001P001R001A001", transform)
    with pytest.raises(InputError, match=message) as e:
        ntu.read_skeleton(path)
    assert "S001C001P001R001A001.skeleton" in str(e.value)


def fake_tree(folder, names, source=A001):
    """A fake release: genuine content under official-form names."""
    os.makedirs(folder, exist_ok=True)
    for name in names:
        shutil.copyfile(source, os.path.join(folder, name + ".skeleton"))
    return str(folder)


def read_split(folder, part):
    with open(os.path.join(folder, f"{part}_label.pkl"), "rb") as f:
        names, labels = pickle.load(f)
    return np.load(os.path.join(folder, f"{part}_data_joint.npy")), names, labels


def test_gendata_reports_and_skips_every_bad_file_and_strict_stops(tmp_path, capsys):
    tree = fake_tree(tmp_path / "raw", ["S001C001P001R001A001", "S001C002P002R001A002", "S001C003P003R001A003"])
    corrupt(tmp_path / "raw", "S001C001P004R001A004", lambda lines: [""])
    corrupt(tmp_path / "raw", "S001C001P005R001A005", lambda lines: lines[:300])
    corrupt(tmp_path / "raw", "S001C001P008R001A006",
            lambda lines: ["1", "1", lines[2], "25"] + ["0 0 0 0 0 0 0 0 0 0 0 2"] * 25)
    corrupt(tmp_path / "raw", "S001C001P009R001A007", three_bodies)
    shutil.copyfile(A001, os.path.join(tree, "S01C001P001R001A001.skeleton"))  # a name that does not parse
    out = tmp_path / "out"
    assert ntu_gendata.main(["--data_path", tree, "--out_folder", str(out), "--workers", "1"]) == 0
    captured = capsys.readouterr()
    report = captured.out + captured.err
    x, names, labels = read_split(out / "xsub", "train")
    assert names == ["S001C001P001R001A001.skeleton", "S001C001P009R001A007.skeleton",
                     "S001C002P002R001A002.skeleton"] and labels == [0, 6, 1]
    assert "S001C001P009R001A007.skeleton" in names  # three bodies: kept, noted
    for needle in ("S001C001P004R001A004.skeleton: empty file", "S001C001P005R001A005.skeleton: truncated",
                   "S001C001P008R001A006.skeleton: all joints are zero", "S01C001P001R001A001.skeleton",
                   "does not parse", "frames with more than 2 bodies", "skipped 4 file(s)"):
        assert needle in report, needle
    with open(out / "xsub" / "manifest.json") as f:
        manifest = json.load(f)
    assert list(manifest["notes"].values()) == [["S001C001P009R001A007"]]  # every such file is listed
    assert manifest["skipped"]["S001C001P005R001A005.skeleton"].startswith("truncated")
    assert ntu_gendata.main(["--data_path", tree, "--out_folder", str(tmp_path / "strict"), "--strict",
                             "--workers", "1"]) == 1
    assert not (tmp_path / "strict" / "xsub").exists()


def test_three_bodies_keep_the_first_two_listed(tmp_path):
    path = corrupt(tmp_path, "S001C001P001R001A001", three_bodies)
    s = ntu.read_skeleton(path, ntu.XYZ)
    assert s.slot.max() == 2
    x = ntu.lineage_xyz(s)
    np.testing.assert_array_equal(x[:, 0, :, 1], x[:, 0, :, 0])  # slot 1 = the second listed body
    assert not x[:, 1:, :, 1].any()


def test_gendata_resumes_after_sigkill_and_never_touches_finished_files(tmp_path):
    names = [f"S001C00{c}P{p:03d}R001A{a:03d}" for c in (1, 2) for p in (1, 3) for a in range(1, 61)]
    tree = fake_tree(tmp_path / "raw", names, source=A058)
    clean = tmp_path / "clean"
    assert ntu_gendata.main(["--data_path", tree, "--out_folder", str(clean), "--workers", "1"]) == 0
    before = {p: (clean / "xsub" / p).read_bytes() for p in ("train_data_joint.npy", "train_label.pkl")}
    (tmp_path / "raw" / "S001C001P001R001A001.skeleton").write_bytes(open(A001, "rb").read())  # new content
    cmd = [sys.executable, os.path.join(REPO_ROOT, "tools", "ntu_gendata.py"), "--data_path", tree,
           "--out_folder", str(clean), "--workers", "1", "--commit_every", "10"]
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    done = clean / ".partial" / "done.json"
    deadline = time.time() + 60
    while not done.exists() and proc.poll() is None and time.time() < deadline:
        time.sleep(0.02)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert done.exists(), "the run ended before its first commit; make the tree larger"
    # killed mid-run: the finished files of the earlier run are intact
    assert {p: (clean / "xsub" / p).read_bytes() for p in before} == before
    resumed = subprocess.run(cmd, capture_output=True, text=True, check=True)
    assert "resuming:" in resumed.stdout + resumed.stderr
    fresh = tmp_path / "fresh"
    assert ntu_gendata.main(["--data_path", tree, "--out_folder", str(fresh), "--workers", "2"]) == 0
    for b in ("xsub", "xview"):
        for part in ("train", "val"):
            for f in (f"{part}_data_joint.npy", f"{part}_label.pkl"):
                assert (clean / b / f).read_bytes() == (fresh / b / f).read_bytes(), (b, f)
    assert not (clean / ".partial").exists()
    x, names, _ = read_split(fresh / "xsub", "train")
    np.testing.assert_array_equal(x[names.index("S001C001P001R001A001.skeleton")],
                                  ntu.lineage_xyz(ntu.read_skeleton(A001, ntu.XYZ)))


def test_ntu60_benchmarks_leave_out_ntu120_files_and_the_missing_list(tmp_path):
    names = ["S001C001P001R001A001", "S018C001P001R001A001", "S001C001P001R001A061",
             "S001C002P005R002A008"]  # NTU120 setup, NTU120 action, on the missing list
    tree = fake_tree(tmp_path / "raw", names)
    assert ntu_gendata.main(["--data_path", tree, "--out_folder", str(tmp_path / "o60"), "--workers", "1"]) == 0
    assert read_split(tmp_path / "o60" / "xsub", "train")[1] == ["S001C001P001R001A001.skeleton"]
    assert ntu_gendata.main(["--data_path", tree, "--out_folder", str(tmp_path / "o120"), "--workers", "1",
                             "--benchmark", "xsub120,xset"]) == 0
    _, train, _ = read_split(tmp_path / "o120" / "xsub", "train")
    _, xset_val, labels = read_split(tmp_path / "o120" / "xset", "val")
    assert len(train) == 3 and "S001C002P005R002A008.skeleton" not in train
    assert set(xset_val) == {"S001C001P001R001A001.skeleton", "S001C001P001R001A061.skeleton"}
    assert sorted(labels) == [0, 60]
    assert ntu_gendata.main(["--data_path", tree, "--out_folder", str(tmp_path / "mix"),
                             "--benchmark", "xsub,xset"]) == 1


# ---- the whole lineage pipeline on the genuine files -------------------------------------------

def test_raw_files_to_frame50_to_the_real_checkpoint(ntu_six_files, golden_dir, tmp_path):
    """gendata -> frame-50 -> the real ActCLR checkpoint: every step as upstream, all six classified."""
    import torch
    from test_stgcn_golden import LINEAGE_ARGS

    from net.skeletonclr import SkeletonCLR
    from torchlight.io import load_weights

    raw, frames = tmp_path / "raw300", tmp_path / "frame50"
    assert ntu_gendata.main(["--data_path", ntu_six_files, "--out_folder", str(raw), "--workers", "2"]) == 0
    assert lineage_frames.main(["--in_folder", str(raw), "--out_folder", str(frames), "--streams", "motion,bone"]) == 0
    position, motion = golden(golden_dir, "lineage_frame50.npz"), golden(golden_dir, "lineage_frame50_motion.npz")
    x = {}
    for b in ("xsub", "xview"):
        for part in ("train", "val"):
            with open(frames / b / f"{part}_label.pkl", "rb") as f:
                names, labels = pickle.load(f)
            assert labels == [ntu.parse_name(n).label for n in names]
            p = np.load(frames / b / f"{part}_position.npy")
            m = np.load(frames / b / f"{part}_motion.npy")
            bone = np.load(frames / b / f"{part}_bone.npy")
            for i, n in enumerate(names):
                key = ntu.sample_name(n)
                np.testing.assert_allclose(p[i], position[key], atol=1e-6, rtol=0)
                np.testing.assert_array_equal(m[i], motion[key])
                np.testing.assert_array_equal(bone[i, :, :, 20], 0)  # the centre joint has no bone
                np.testing.assert_allclose(bone[i, :, :, 0], p[i, :, :, 0] - p[i, :, :, 1], atol=1e-6)
                x[key] = p[i]
    model = SkeletonCLR(**LINEAGE_ARGS)
    load_weights(model, os.path.join(golden_dir, "actclr_ntu60_xview_joint_linear.pt"))
    model.eval()
    names = sorted(x)
    with torch.no_grad():
        logits = model.forward_head(model.forward_features(torch.from_numpy(np.stack([x[n] for n in names]))))
    expected = golden(golden_dir, "actclr_real_logits.npz")
    assert logits.argmax(1).tolist() == [ntu.parse_name(n).label for n in names]
    np.testing.assert_allclose(logits.numpy(), expected["logits"], rtol=1e-5, atol=1e-4)


# ---- pyskl import ------------------------------------------------------------------------------

def test_pyskl_annotations_import_to_both_formats(tmp_path):
    from feeder.npz_feeder import Feeder

    annotations, split = [], {"xsub_train": [], "xsub_val": []}
    for path, name in ((A001, "S001C001P001R001A001"), (A058, "S001C003P008R002A058"),
                       (A001, "S002C001P003R001A003")):
        s = ntu.read_skeleton(path, ntu.XYZ)
        x = ntu.lineage_xyz(s)[:, :s.num_frames]
        persons = 2 if x[..., 1].any() else 1
        annotations.append({"frame_dir": name, "label": ntu.parse_name(name).label, "total_frames": s.num_frames,
                            "keypoint": x[..., :persons].transpose(3, 1, 2, 0)})
        split["xsub_train" if ntu.is_train(ntu.parse_name(name), "xsub") else "xsub_val"].append(name)
    annotations.append({"frame_dir": "bad", "label": 3, "keypoint": np.full((1, 5, 25, 3), np.nan)})
    split["xsub_val"].append("bad")
    anno = tmp_path / "ntu60_3danno.pkl"
    with open(anno, "wb") as f:
        pickle.dump({"split": split, "annotations": annotations}, f)
    out = tmp_path / "out"
    assert pyskl_import.main(["--anno", str(anno), "--out_folder", str(out)]) == 0
    x, names, labels = read_split(out / "xsub", "train")
    assert names == split["xsub_train"] and labels == [0, 57]
    np.testing.assert_array_equal(x[1], ntu.lineage_xyz(ntu.read_skeleton(A058, ntu.XYZ)))
    train = Feeder(str(out / "NTU60_XSub.npz"), split="train")
    np.testing.assert_array_equal(np.asarray(train.data), x)
    assert train.label.tolist() == [0, 57]
    with np.load(out / "NTU60_XSub.npz") as z:
        assert z["y_train"].shape == (2, 60) and z["x_test"].shape == (1, 300, 150)  # "bad" left out
    assert pyskl_import.main(["--anno", str(anno), "--out_folder", str(tmp_path / "s"), "--strict"]) == 1


class Crash(Exception):
    """A stand-in for the process dying at this point (the state on disk is what a kill leaves)."""


def test_a_run_stopped_after_converting_reports_earlier_skips_and_sees_fixed_files(tmp_path, monkeypatch, capsys):
    tree = fake_tree(tmp_path / "raw", ["S001C001P001R001A001", "S001C002P002R001A002"])
    bad = corrupt(tmp_path / "raw", "S001C001P004R001A004", lambda lines: lines[:300])
    out = str(tmp_path / "out")
    args = ["--data_path", tree, "--out_folder", out, "--workers", "1"]
    real_finished = SampleStore.finished

    def crash(self):
        raise Crash()
        yield from real_finished(self)

    monkeypatch.setattr(SampleStore, "finished", crash)
    with pytest.raises(Crash):
        ntu_gendata.main(args)
    monkeypatch.setattr(SampleStore, "finished", real_finished)
    capsys.readouterr()
    # the same inputs: the earlier skip is reported again, and --strict refuses to finish without it
    assert ntu_gendata.main(args + ["--strict"]) == 1
    assert "S001C001P004R001A004.skeleton: truncated" in capsys.readouterr().out
    # the file repaired: the plan changed, so it is converted this time
    shutil.copyfile(A001, bad)
    assert ntu_gendata.main(args) == 0
    assert "S001C001P004R001A004.skeleton" in read_split(tmp_path / "out" / "xsub", "train")[1]


def test_a_kill_while_publishing_is_completed_by_the_next_run(tmp_path, monkeypatch):
    tree = fake_tree(tmp_path / "raw", ["S001C001P001R001A001", "S001C002P002R001A002", "S001C001P003R001A003"])
    out = tmp_path / "out"
    args = ["--data_path", tree, "--out_folder", str(out), "--workers", "1"]
    assert ntu_gendata.main(args + ["--pre_normalize"]) == 0
    old = {f: (out / "xsub" / f).read_bytes() for f in ("train_data_joint.npy", "val_data_joint.npy")}
    real_replace, calls = os.replace, []

    def dying_replace(src, dst):
        if ".partial" in str(src) and ".partial" not in str(dst):  # the final renames
            calls.append(dst)
            if len(calls) == 3:
                raise Crash()
        return real_replace(src, dst)

    monkeypatch.setattr(os, "replace", dying_replace)
    with pytest.raises(Crash):
        ntu_gendata.main(args)  # without --pre_normalize: new arrays, killed after two renames
    monkeypatch.setattr(os, "replace", real_replace)
    assert not (out / "xsub" / "manifest.json").exists()  # a mixed folder is marked incomplete
    assert ntu_gendata.main(args) == 0
    clean = tmp_path / "clean"
    assert ntu_gendata.main(["--data_path", tree, "--out_folder", str(clean), "--workers", "1"]) == 0
    for b in ("xsub", "xview"):
        for f in ("train_data_joint.npy", "val_data_joint.npy", "train_label.pkl", "val_label.pkl"):
            assert (out / b / f).read_bytes() == (clean / b / f).read_bytes(), (b, f)
    assert (out / "xsub" / "train_data_joint.npy").read_bytes() != old["train_data_joint.npy"]


def test_lineage_frames_refuses_duplicate_names_and_unfinished_inputs(tmp_path):
    folder = tmp_path / "in" / "xsub"
    folder.mkdir(parents=True)
    x = ntu.lineage_xyz(ntu.read_skeleton(A001, ntu.XYZ))[None].repeat(3, axis=0)
    for part in ("train", "val"):
        np.save(folder / f"{part}_data_joint.npy", x)
        with open(folder / f"{part}_label.pkl", "wb") as f:
            pickle.dump((["a", "b", "a"] if part == "train" else ["a", "b", "c"], [0, 1, 2]), f)
    assert lineage_frames.main(["--in_folder", str(tmp_path / "in"), "--out_folder", str(tmp_path / "o")]) == 1
    with open(folder / "train_label.pkl", "wb") as f:
        pickle.dump((["a", "b", "c"], [0, 1, 2]), f)
    (tmp_path / "in" / ".partial").mkdir()
    assert lineage_frames.main(["--in_folder", str(tmp_path / "in"), "--out_folder", str(tmp_path / "o")]) == 1
    (tmp_path / "in" / ".partial").rmdir()
    assert lineage_frames.main(["--in_folder", str(tmp_path / "in"), "--out_folder", str(tmp_path / "o")]) == 0


def test_an_ignore_list_without_names_is_an_error(tmp_path):
    tree = fake_tree(tmp_path / "raw", ["S001C001P001R001A001"])
    wrong = tmp_path / "list.txt"
    wrong.write_text("S001C001P001R001A001.skeleton\n")  # names must be bare
    assert ntu_gendata.main(["--data_path", tree, "--out_folder", str(tmp_path / "o"),
                             "--ignored_sample_path", str(wrong)]) == 1
