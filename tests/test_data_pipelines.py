"""Each raw-data pipeline converts a tiny dataset in the official layout, and training runs on it."""
import json
import os
import pickle
import shutil

import numpy as np
import pytest
from conftest import REPO_ROOT
from test_processors import TINY_MODEL

from tools.raw import ntu, pku
from processor.evaluation import Evaluation
from processor.pretrain import Pretrain
from tools import lineage_frames, ntu_gendata, ntu_npz_gendata, pku_gendata
from torchlight.config import load_yaml

NTU_FILES = [os.path.join(REPO_ROOT, "tests", "data", "ntu_rgbd", n + ".skeleton")
             for n in ("S001C001P001R001A001", "S001C003P008R002A058")]
NTU_MODEL = {"graph_args": {"layout": "ntu-rgb+d", "strategy": "spatial"}}


def run_pretrain(data_dir, work_dir, num_class):
    """One epoch of SkeletonCLR (tiny encoder) on lineage frame-N data; returns the epoch's metrics."""
    cfg = load_yaml(os.path.join(REPO_ROOT, "config", "demo", "skeletonclr_pretrain.yaml"))
    cfg["train_feeder_args"].update(data_path=str(data_dir / "train_position.npy"),
                                    label_path=str(data_dir / "train_label.pkl"))
    cfg["model_args"].update({**TINY_MODEL, **NTU_MODEL, "num_class": num_class, "queue_size": 8})
    cfg.update(work_dir=str(work_dir), num_epoch=1, batch_size=4, progress=False, tensorboard=False)
    Pretrain(cfg, name="pretrain_skeletonclr").run()
    with open(work_dir / "metrics.jsonl") as f:
        return json.loads(f.readline())


def run_finetune_npz(npz, work_dir, num_class):
    """One epoch of fine-tuning a randomly initialised ST-GCN on an .npz (MAMP format)."""
    cfg = load_yaml(os.path.join(REPO_ROOT, "config", "demo", "skeletonclr_linear.yaml"))
    cfg["train_feeder"] = cfg["test_feeder"] = "feeder.npz_feeder.Feeder"
    cfg["train_feeder_args"] = {"data_path": str(npz), "split": "train"}
    cfg["test_feeder_args"] = {"data_path": str(npz), "split": "test"}
    cfg["model_args"].update({"hidden_channels": 8, "hidden_dim": 32, **NTU_MODEL, "num_class": num_class})
    cfg.update(work_dir=str(work_dir), weights=None, num_epoch=1, batch_size=4, progress=False,
               tensorboard=False, protocol="finetune", base_lr=0.01, eval_interval=1)
    Evaluation(cfg, name="finetune_evaluation").run()
    with open(work_dir / "results.json") as f:
        return json.load(f)


def test_ntu_raw_files_to_frame50_to_one_epoch(tmp_path):
    tree = tmp_path / "raw"
    tree.mkdir()
    names = [f"S001C00{c}P00{p}R001A{a:03d}" for c in (1, 2) for p in (1, 3) for a in (1, 2, 3)]
    for i, name in enumerate(names):
        shutil.copyfile(NTU_FILES[i % 2], tree / (name + ".skeleton"))
    assert ntu_gendata.main(["--data_path", str(tree), "--out_folder", str(tmp_path / "raw300"),
                             "--benchmark", "xsub", "--workers", "1"]) == 0
    assert lineage_frames.main(["--in_folder", str(tmp_path / "raw300"), "--out_folder", str(tmp_path / "f50")]) == 0
    data = tmp_path / "f50" / "xsub"
    assert np.load(data / "train_position.npy").shape == (6, 3, 50, 25, 2)  # subject 1 trains, 3 tests
    metrics = run_pretrain(data, tmp_path / "work", num_class=60)
    assert np.isfinite(metrics["loss"]) and (tmp_path / "work" / "latest.pt").is_file()


# ---- PKU-MMD --------------------------------------------------------------------------------------

PKU_VIDEOS = {"0002-L": "train", "0002-M": "train", "0003-R": "test", "0005-L": "test"}


@pytest.fixture(scope="module")
def pku_tree(tmp_path_factory):
    """A fake part I release: four 400-frame videos (person 2 in the second half), label files of
    four instances (one starting at frame 0, which the lineage cannot cut) and both split files."""
    root = tmp_path_factory.mktemp("pku")
    for d in ("skeleton", "label", "split"):
        (root / d).mkdir()
    rng = np.random.default_rng(0)
    for i, video in enumerate(PKU_VIDEOS):
        x = np.zeros((400, 2, 25, 3))
        x[:, 0] = rng.normal(size=(400, 25, 3)).cumsum(axis=0) * 0.01 + [0, 0, 3]
        x[200:, 1] = x[200:, 0] + [0.8, 0, 0]
        pku.write_sequence(str(root / "skeleton" / f"{video}.txt"), x)
        pku.write_labels(str(root / "label" / f"{video}.txt"),
                         [(1 + i, 1, 60, 1), (11 + i, 150, 260, 2), (21, 0, 30, 1), (31, 300, 390, 1)])
    train = [v for v, s in PKU_VIDEOS.items() if s == "train"]
    pku.write_split(str(root / "split" / "cross-subject.txt"), train, set(PKU_VIDEOS) - set(train))
    pku.write_split(str(root / "split" / "cross-view.txt"), ["0002-M", "0003-R"], ["0002-L", "0005-L"])
    return root


def test_pku_release_to_both_formats(pku_tree, tmp_path, capsys):
    out = tmp_path / "out"
    assert pku_gendata.main(["--part", "1", "--skeleton_path", str(pku_tree / "skeleton"), "--label_path",
                             str(pku_tree / "label"), "--split_path", str(pku_tree / "split"),
                             "--out_folder", str(out), "--workers", "2"]) == 0
    report = capsys.readouterr().out
    assert "F003V003C021L003: start frame 0" in report  # reported with video and instance
    with open(out / "xsub" / "train_label.pkl", "rb") as f:
        names, labels = pickle.load(f)
    # 2 training videos x 3 cuttable instances, sorted by name; label = class - 1
    assert names == sorted(names) and len(names) == 6 and names[0] == "F002V001C001L001.skeleton"
    assert labels == [pku.parse_lineage_name(n).label for n in names]
    x = np.load(out / "xsub" / "train_data_joint.npy")
    sequence = pku.read_sequence(str(pku_tree / "skeleton" / "0002-L.txt"))
    # instance 2 of 0002-L: frames 150..260 (1-based, inclusive), person 2 from frame 200 on
    np.testing.assert_array_equal(x[names.index("F002V001C011L002.skeleton"), :, :111],
                                  sequence[149:260].transpose(3, 0, 2, 1))
    assert not x[names.index("F002V001C011L002.skeleton"), :, 111:].any()
    with np.load(out / "PKUv1_XView.npz") as z:
        # MAMP keeps the frame-0 instance (rows 0..29), so 4 per video; width-51 one-hot
        assert z["x_train"].shape == (8, 300, 150) and z["y_test"].shape == (8, 51)
        # x_train[1] is 0002-M's label row 1, (12, 150, 260): rows 150..259
        second = pku.read_sequence(str(pku_tree / "skeleton" / "0002-M.txt"))
        np.testing.assert_array_equal(z["x_train"][1, :110], second[150:260].reshape(110, 150))
        assert not z["x_train"][1, 110:].any() and z["y_train"][1].argmax() == 11
    assert lineage_frames.main(["--in_folder", str(out), "--out_folder", str(tmp_path / "f50"),
                                "--benchmark", "xsub"]) == 0
    metrics = run_pretrain(tmp_path / "f50" / "xsub", tmp_path / "pre", num_class=51)
    assert np.isfinite(metrics["loss"])
    results = run_finetune_npz(out / "PKUv1_XSub.npz", tmp_path / "ft", num_class=51)
    assert results["epoch"] == 1 and 0 <= results["top1"] <= 100


def test_pku_bad_input_is_reported_and_strict_stops(pku_tree, tmp_path, capsys):
    tree = tmp_path / "tree"
    shutil.copytree(pku_tree, tree)
    (tree / "skeleton" / "0003-R.txt").write_text("1.0 2.0\n")  # a row of 2 values
    (tree / "skeleton" / "0009-L.txt").write_text("")  # no label file for it
    (tree / "skeleton" / "readme.txt").write_text("hello")
    args = ["--part", "1", "--skeleton_path", str(tree / "skeleton"), "--label_path", str(tree / "label"),
            "--split_path", str(tree / "split"), "--format", "lineage", "--workers", "1"]
    assert pku_gendata.main(args + ["--out_folder", str(tmp_path / "out")]) == 0
    report = capsys.readouterr().out
    for needle in ("0003-R.txt line 1: 2 values, expected 150", "0009-L.txt: no label file",
                   "readme.txt: not a PKU-MMD video name"):
        assert needle in report, needle
    with open(tmp_path / "out" / "xsub" / "val_label.pkl", "rb") as f:
        assert all(not n.startswith("F003") for n in pickle.load(f)[0])
    assert pku_gendata.main(args + ["--out_folder", str(tmp_path / "strict"), "--strict"]) == 1


# ---- NTU -> CTR-GCN / MAMP npz ---------------------------------------------------------------------

def test_ntu_npz_of_the_six_genuine_files_equals_upstream_in_upstream_order(golden_dir, ntu_six_files, tmp_path):
    folder = ntu_six_files
    final = np.load(os.path.join(golden_dir, "ntu_pipeline", "ctrgcn_final.npz"))
    assert ntu_npz_gendata.main(["--data_path", folder, "--out_folder", str(tmp_path), "--workers", "2"]) == 0
    # upstream order: x-sub by subject in the training-list order, x-view camera 2 then camera 3
    expected = {"NTU60_XSub.npz": (["S001C001P001R001A001", "S001C001P001R001A011", "S001C003P008R002A058",
                                    "S003C001P015R001A034"], ["S002C001P003R001A003", "S004C002P003R001A017"]),
                "NTU60_XView.npz": (["S004C002P003R001A017", "S001C003P008R002A058"],
                                    ["S001C001P001R001A001", "S001C001P001R001A011", "S002C001P003R001A003",
                                     "S003C001P015R001A034"])}
    for file, parts in expected.items():
        with np.load(tmp_path / file) as z:
            for part, names in zip(("train", "test"), parts):
                np.testing.assert_array_equal(z[f"x_{part}"], np.stack([final[n] for n in names]))
                assert z[f"y_{part}"].dtype == np.float64 and z[f"y_{part}"].shape == (len(names), 60)
                assert z[f"y_{part}"].argmax(1).tolist() == [ntu.parse_name(n).label for n in names]


def test_ntu_npz_pipeline_reports_bad_files_and_trains_one_epoch(tmp_path, capsys):
    tree = tmp_path / "raw"
    tree.mkdir()
    names = [f"S001C00{c}P00{p}R001A{a:03d}" for c in (1, 2) for p in (1, 3) for a in (1, 2, 3)]
    for i, name in enumerate(names):
        shutil.copyfile(NTU_FILES[i % 2], tree / (name + ".skeleton"))
    (tree / "S001C001P001R001A004.skeleton").write_text("103\n1\n")  # truncated
    assert ntu_npz_gendata.main(["--data_path", str(tree), "--out_folder", str(tmp_path / "npz"),
                                 "--benchmark", "xview", "--names", "ctrgcn", "--workers", "1"]) == 0
    assert "S001C001P001R001A004.skeleton: truncated" in capsys.readouterr().out
    with np.load(tmp_path / "npz" / "NTU60_CV.npz") as z:
        assert z["x_train"].shape == (6, 300, 150) and z["x_test"].shape == (6, 300, 150)
    results = run_finetune_npz(tmp_path / "npz" / "NTU60_CV.npz", tmp_path / "ft", num_class=60)
    assert results["epoch"] == 1
