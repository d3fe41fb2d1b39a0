"""`python main.py extract`: features, predictions and nearest neighbours of a trained encoder, on a split of any
reader or on a folder of new sequences prepared as the training data were."""
import csv
import os
import pickle

import numpy as np
import pytest
import torch

from conftest import SHARED
from processor.evaluation import Evaluation
from processor.extract import Extract
from processor.pretrain import Pretrain
from test_processors import TINY_MODEL, eval_config, pretrain_config

EVAL_MODEL = {k: v for k, v in TINY_MODEL.items() if k in ("hidden_channels", "hidden_dim")}


@pytest.fixture(scope="module")
def trained(nw_ucla_small, tmp_path_factory):
    """A 1-epoch pretraining and a 10-epoch linear probe of it (the probe's latest.pt: encoder + classifier)."""
    root = tmp_path_factory.mktemp("extract")
    Pretrain(pretrain_config(nw_ucla_small, root / "pre", num_epoch=1)).run()
    linear = Evaluation(eval_config("skeletonclr_linear.yaml", nw_ucla_small, root / "linear",
                                    root / "pre" / "latest.pt", num_epoch=10, eval_interval=10))
    linear.run()
    return root


def extract_config(data, work, weights, **overrides):
    from conftest import demo_config

    cfg = demo_config("skeletonclr_linear.yaml", data, work, weights=str(weights), model_args=EVAL_MODEL, **overrides)
    for key in ("train_feeder", "train_feeder_args", "base_lr", "step", "num_epoch", "eval_interval", "nesterov",
                "weight_decay", "optimizer", "batch_size"):
        cfg.pop(key, None)
    return cfg


def read_csv(path):
    with open(path) as f:
        return list(csv.reader(f))


def test_predictions_of_the_linear_probe_are_its_own(nw_ucla_small, trained, tmp_path):
    """Extract with the probe's checkpoint: features of the val split, and predictions whose top-1 accuracy is
    the probe's last-epoch accuracy (the same model, another code path)."""
    import json

    proc = Extract(extract_config(nw_ucla_small, tmp_path, trained / "linear" / "latest.pt"))
    proc.run()
    with np.load(tmp_path / "features.npz") as z:
        feats, names, labels = z["features"], list(z["names"]), z["labels"]
    with open(nw_ucla_small / "val_label.pkl", "rb") as f:
        val_names, val_labels = pickle.load(f)
    assert names == val_names and labels.tolist() == val_labels and feats.shape == (len(names), 32)
    rows = read_csv(tmp_path / "predictions.csv")
    assert rows[0][:4] == ["name", "label", "class_1", "score_1"] and len(rows) == len(names) + 1
    scores = np.array([[float(r[i]) for i in range(3, 13, 2)] for r in rows[1:]])
    assert (np.diff(scores, axis=1) <= 0).all() and (scores.sum(axis=1) <= 1 + 1e-4).all()
    top1 = np.mean([int(r[2]) == y for r, y in zip(rows[1:], val_labels)]) * 100
    probe = json.loads((trained / "linear" / "results.json").read_text())
    assert top1 == pytest.approx(probe["top1"], abs=1e-6)
    # the features are the encoder's pooled features of the clean samples
    model = proc.module.eval()
    x = torch.from_numpy(np.load(nw_ucla_small / "val_position.npy")[:4])
    with torch.no_grad():
        torch.testing.assert_close(torch.from_numpy(feats[:4]), model.forward_features(x), rtol=1e-4, atol=1e-5)


def test_a_pretraining_checkpoint_gives_features_and_neighbours(nw_ucla_small, trained, tmp_path):
    cfg = extract_config(nw_ucla_small, tmp_path, trained / "pre" / "latest.pt", neighbours=3,
                         ignore_weights=["encoder_q.fc", "encoder_k", "queue"],
                         reference_feeder="feeder.ntu_feeder.LineageReader",
                         reference_feeder_args={"data_path": str(nw_ucla_small / "train_position.npy"),
                                                "label_path": str(nw_ucla_small / "train_label.pkl")})
    Extract(cfg).run()
    assert not (tmp_path / "predictions.csv").exists()  # no trained classifier in a pretraining checkpoint
    with np.load(tmp_path / "features.npz") as z:
        query = z["features"]
    ref_cfg = extract_config(nw_ucla_small, tmp_path / "ref", trained / "pre" / "latest.pt",
                             ignore_weights=["encoder_q.fc", "encoder_k", "queue"])
    ref_cfg["test_feeder_args"] = {"data_path": str(nw_ucla_small / "train_position.npy"),
                                   "label_path": str(nw_ucla_small / "train_label.pkl")}
    Extract(ref_cfg).run()
    with np.load(tmp_path / "ref" / "features.npz") as z:
        ref, ref_names = z["features"], list(z["names"])
    unit = lambda a: a / np.linalg.norm(a, axis=1, keepdims=True)  # noqa: E731
    sim = unit(query.astype(np.float64)) @ unit(ref.astype(np.float64)).T
    rows = read_csv(tmp_path / "neighbours.csv")
    assert rows[0][2:5] == ["neighbour_1", "label_1", "cosine_1"] and len(rows) == len(query) + 1
    for q, row in enumerate(rows[1:]):
        listed = [ref_names.index(row[i]) for i in (2, 5, 8)]
        cosines = [float(row[i]) for i in (4, 7, 10)]
        # the three most similar reference samples (ties aside), each with its own cosine
        np.testing.assert_allclose(cosines, np.sort(sim[q])[::-1][:3], atol=2e-4)
        np.testing.assert_allclose(cosines, sim[q, listed], atol=2e-4)


def test_new_sequences_are_prepared_as_the_training_data(nw_ucla_small, nw_ucla_frame50, trained, tmp_path):
    """Raw NW-UCLA sequences in a folder (.npy and .npz) give the same features as the same samples of the
    frame-50 arrays (tools/nw_ucla_gendata.py made them with the same preprocessing); a bad file is skipped."""
    from tools.nw_ucla_gendata import load_any

    data = load_any(os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "data", "nw_ucla",
                                 "nw_ucla_skeletons.npz"))
    with open(nw_ucla_frame50 / "val_label.pkl", "rb") as f:
        val_names, _ = pickle.load(f)
    folder = tmp_path / "new"
    folder.mkdir()
    picked = val_names[:3]
    for i, name in enumerate(picked):
        seq = data["skeletons"][list(map(str, data["names"])).index(name)]
        if i == 0:
            np.savez(folder / f"{name}.npz", data=seq)
        else:
            np.save(folder / f"{name}.npy", seq)
    np.save(folder / "broken.npy", np.zeros((5, 7, 3)))  # 7 joints: not this layout
    cfg = extract_config(nw_ucla_small, tmp_path / "out", trained / "pre" / "latest.pt", sequences=str(folder),
                         sequences_persons=1, ignore_weights=["encoder_q.fc", "encoder_k", "queue"])
    Extract(cfg).run()
    with np.load(tmp_path / "out" / "features.npz") as z:
        feats, names, labels = z["features"], list(z["names"]), z["labels"]
    assert names == sorted(picked) and (labels == -1).all()
    assert "skipped broken.npy: 7 joints" in (tmp_path / "out" / "log.txt").read_text()
    x = np.load(nw_ucla_frame50 / "val_position.npy")[[val_names.index(n) for n in names]]
    proc = Extract(extract_config(nw_ucla_small, tmp_path / "check", trained / "pre" / "latest.pt",
                                  ignore_weights=["encoder_q.fc", "encoder_k", "queue"]))
    with torch.no_grad():
        expected = proc.module.eval().forward_features(torch.from_numpy(x))
    torch.testing.assert_close(torch.from_numpy(feats), expected, rtol=1e-4, atol=1e-5)
    proc.lock.release()


def test_pose2d_sequences_equal_the_importer(tmp_path):
    """A Penn Action clip as a (T, 13, 3) x, y, visibility file through `sequences_pipeline: pose2d` equals
    tools/pose_import.py's sample of the same clip."""
    penn = os.path.join(SHARED, "data", "penn_action", "labels")
    if not os.path.isdir(penn):
        pytest.skip(f"Penn Action labels not found at {penn}")
    import scipy.io

    from feeder.sequence_feeder import SequenceFolder
    from tools.pose_import import main as pose_import

    mat = scipy.io.loadmat(os.path.join(penn, "0001.mat"))
    clip = np.stack([mat["x"], mat["y"], mat["visibility"]], axis=-1).astype(np.float32)  # (T, 13, 3)
    (tmp_path / "seq").mkdir()
    np.save(tmp_path / "seq" / "0001.npy", clip)
    (tmp_path / "mat").mkdir()
    os.symlink(os.path.join(penn, "0001.mat"), tmp_path / "mat" / "0001.mat")
    assert pose_import(["--format", "penn_action", "--input", str(tmp_path / "mat"), "--out_folder",
                        str(tmp_path / "imported"), "--frames", "50", "--max_persons", "1"]) == 0
    split = "train" if (tmp_path / "imported" / "train_label.pkl").exists() and \
        np.load(tmp_path / "imported" / "train_position.npy").shape[0] else "val"
    imported = np.load(tmp_path / "imported" / f"{split}_position.npy")[0]
    ours = SequenceFolder(str(tmp_path / "seq"), layout="penn-action-13", frames=50, pipeline="pose2d",
                          max_persons=1).data[0]
    np.testing.assert_allclose(ours, imported, rtol=1e-6, atol=1e-6)


def test_extract_needs_weights(nw_ucla_small, tmp_path):
    from torchlight.errors import ConfigError

    with pytest.raises(ConfigError, match="weights"):
        Extract(extract_config(nw_ucla_small, tmp_path, "")).run()


def test_unlabelled_data_is_embedded_but_never_trained_on(nw_ucla_small, trained, tmp_path):
    """Labels -1 (pose_import.py --unlabelled) pass the reader; extract embeds them with an empty label column,
    and an evaluation refuses them naming the label file."""
    from torchlight.errors import ConfigError

    names, labels = pickle.load(open(nw_ucla_small / "val_label.pkl", "rb"))
    (tmp_path / "new").mkdir()
    os.symlink(nw_ucla_small / "val_position.npy", tmp_path / "new" / "val_position.npy")
    with open(tmp_path / "new" / "val_label.pkl", "wb") as f:
        pickle.dump((names, [-1] * len(names)), f)
    cfg = extract_config(nw_ucla_small, tmp_path / "out", trained / "linear" / "latest.pt")
    cfg["test_feeder_args"] = {"data_path": str(tmp_path / "new" / "val_position.npy"),
                               "label_path": str(tmp_path / "new" / "val_label.pkl")}
    Extract(cfg).run()
    with np.load(tmp_path / "out" / "features.npz") as z:
        assert (z["labels"] == -1).all() and len(z["names"]) == len(names)
    rows = read_csv(tmp_path / "out" / "predictions.csv")
    assert len(rows) == len(names) + 1 and all(r[1] == "" for r in rows[1:])
    linear = eval_config("skeletonclr_linear.yaml", nw_ucla_small, tmp_path / "linear",
                         trained / "pre" / "latest.pt", num_epoch=1)
    linear["test_feeder_args"] = cfg["test_feeder_args"]
    with pytest.raises(ConfigError, match=r"test_feeder_args: .* of .*val_label.pkl are unlabelled"):
        Evaluation(linear).run()
