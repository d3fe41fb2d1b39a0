"""The online kNN monitor measures the random-init encoder first, as the offline `knn` processor would, logs
every later epoch against it, and warns when pretraining leaves the encoder below it (a real run on 200
NW-UCLA sequences whose two views are the same clip: the contrastive task is trivial and the encoder drifts
below its random init)."""
import json
import pickle

import numpy as np
import pytest

from conftest import demo_config
from processor.knn import KNN
from processor.pretrain import Pretrain

TINY = {"hidden_channels": 8, "hidden_dim": 32, "feature_dim": 16, "queue_size": 64}


@pytest.fixture(scope="module")
def nw_ucla_200(nw_ucla_frame50, tmp_path_factory):
    """20 training and 10 test sequences of every NW-UCLA class (200 / 100), real data."""
    out = tmp_path_factory.mktemp("nw_ucla_200")
    for part, per_class in (("train", 20), ("val", 10)):
        x = np.load(nw_ucla_frame50 / f"{part}_position.npy", mmap_mode="r")
        with open(nw_ucla_frame50 / f"{part}_label.pkl", "rb") as f:
            names, labels = pickle.load(f)
        labels = np.asarray(labels)
        idx = np.sort(np.concatenate([np.flatnonzero(labels == c)[:per_class] for c in range(10)]))
        np.save(out / f"{part}_position.npy", np.asarray(x[idx]))
        with open(out / f"{part}_label.pkl", "wb") as f:
            pickle.dump(([names[i] for i in idx], [int(labels[i]) for i in idx]), f)
    return out


def split(data, part):
    return {"data_path": str(data / f"{part}_position.npy"), "label_path": str(data / f"{part}_label.pkl")}


def monitored(data, work, **overrides):
    cfg = demo_config("skeletonclr_pretrain.yaml", data, work, model_args=TINY, batch_size=16, save_interval=0,
                      knn_interval=1, knn_k=[1, 5], knn_train_feeder_args=split(data, "train"),
                      knn_test_feeder_args=split(data, "val"), test_batch_size=256, **overrides)
    return cfg


def metrics(work):
    return [json.loads(line) for line in (work / "metrics.jsonl").read_text().splitlines()]


def test_the_random_init_measure_is_the_offline_knn_of_the_initial_encoder(nw_ucla_200, tmp_path):
    work = tmp_path / "pre"
    proc = Pretrain(monitored(nw_ucla_200, work, num_epoch=1))
    proc.run()
    cfg = demo_config("skeletonclr_knn.yaml", nw_ucla_200, tmp_path / "knn", weights=str(work / "epoch0_model.pt"),
                      model_args={"hidden_channels": 8, "hidden_dim": 32}, knn_k=[1, 5], knn_t=0.1,
                      ignore_weights=["encoder_q.fc", "encoder_k", "queue"])
    assert cfg["recalibrate_bn"] and cfg["knn_weighting"] == "exp" and cfg["test_batch_size"] == 256  # as the monitor
    offline = KNN(cfg)
    offline.run()
    assert proc.random_init_knn == {f"knn_top1_k{k}": v for k, v in offline.result.items()}
    log = (work / "log.txt").read_text()
    assert "kNN monitor of the random-init encoder (epoch 0)" in log
    first = metrics(work)[0]
    assert first["knn_gap_k1"] == pytest.approx(first["knn_top1_k1"] - proc.random_init_knn["knn_top1_k1"])


def test_a_run_that_leaves_the_encoder_below_random_init_warns(nw_ucla_200, tmp_path):
    work = tmp_path / "same_clip"
    cfg = monitored(nw_ucla_200, work, num_epoch=3, base_lr=0.5, train_feeder="feeder.ntu_feeder.LineageReader",
                    views={"recipe": "normal_pair"})  # no augmentation: both views are the same clip
    cfg["train_feeder_args"] = split(nw_ucla_200, "train")
    Pretrain(cfg).run()
    warnings = [line for line in (work / "log.txt").read_text().splitlines() if "warning:" in line]
    below = [h["epoch"] for h in metrics(work) if h["knn_gap_k1"] < 0 and h["knn_gap_k5"] < 0]
    assert below, "the trivial task should leave the encoder below its random init"
    assert len(warnings) == len(below) and all("random init" in w for w in warnings)
    assert all(f"after epoch {e} " in w for e, w in zip(below, warnings))


def test_resume_keeps_the_random_init_measure(nw_ucla_200, tmp_path):
    work = tmp_path / "resumed"
    Pretrain(monitored(nw_ucla_200, work, num_epoch=1)).run()
    first = (work / "log.txt").read_text()
    proc = Pretrain(monitored(nw_ucla_200, work, num_epoch=2))
    proc.run()
    log = (work / "log.txt").read_text()[len(first):]
    assert "random-init encoder" not in log  # measured once, restored from the checkpoint
    assert "knn_gap_k1" in metrics(work)[1] and proc.random_init_knn is not None
