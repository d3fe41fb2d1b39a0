"""The online kNN monitor measures the random-init encoder first, as the offline `knn` processor would, logs
every later epoch against it, and warns when pretraining leaves the encoder below it (a real run on 200
NW-UCLA sequences whose optimizer shrinks the encoder to nothing)."""
import json

import pytest

from conftest import demo_config, nw_ucla_subset
from processor.knn import KNN
from processor.pretrain import Pretrain

TINY = {"hidden_channels": 8, "hidden_dim": 32, "feature_dim": 16, "queue_size": 64}


@pytest.fixture(scope="module")
def nw_ucla_200(nw_ucla_frame50, tmp_path_factory):
    """20 training and 10 test sequences of every NW-UCLA class (200 / 100), real data."""
    return nw_ucla_subset(nw_ucla_frame50, tmp_path_factory.mktemp("nw_ucla_200"), {"train": 20, "val": 10})


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
    """A real run whose optimizer destroys the encoder: weight decay 1.0 at lr 0.5 without momentum halves every
    weight (BN scales and biases too) at each of the 13 steps per epoch, so the features collapse towards a
    constant and the kNN monitor falls to about chance (10 classes), far below the random init."""
    work = tmp_path / "decayed"
    cfg = monitored(nw_ucla_200, work, num_epoch=2, base_lr=0.5, momentum=0.0, weight_decay=1.0)
    proc = Pretrain(cfg)
    proc.run()
    warnings = [line for line in (work / "log.txt").read_text().splitlines() if "warning:" in line]
    history = metrics(work)
    assert [h["epoch"] for h in history] == [1, 2]
    assert all(h["knn_gap_k1"] < -5 and h["knn_gap_k5"] < -5 for h in history), history
    assert len(warnings) == 2 and all("below its random init" in w and "'Small datasets'" in w for w in warnings)
    assert all(f"after epoch {e} " in w for e, w in zip((1, 2), warnings))


def test_no_warning_while_the_encoder_is_above_random_init_for_some_k(nw_ucla_200, tmp_path):
    """The warning needs every k below: a run is only flagged when no neighbourhood size says it helps."""
    proc = Pretrain(monitored(nw_ucla_200, tmp_path / "w", num_epoch=1))
    log = tmp_path / "w" / "log.txt"
    proc.random_init_knn = {"knn_top1_k1": 40.0, "knn_top1_k5": 30.0}
    before = log.read_text()
    gaps = proc.compare_to_random_init({"knn_top1_k1": 35.0, "knn_top1_k5": 31.0}, epoch=0)
    assert gaps == {"knn_gap_k1": -5.0, "knn_gap_k5": 1.0}
    assert log.read_text() == before
    proc.compare_to_random_init({"knn_top1_k1": 35.0, "knn_top1_k5": 29.0}, epoch=0)
    assert "warning: after epoch 1 the encoder is below its random init" in log.read_text()[len(before):]


def test_resume_keeps_the_random_init_measure(nw_ucla_200, tmp_path):
    work = tmp_path / "resumed"
    Pretrain(monitored(nw_ucla_200, work, num_epoch=1)).run()
    first = (work / "log.txt").read_text()
    proc = Pretrain(monitored(nw_ucla_200, work, num_epoch=2))
    proc.run()
    log = (work / "log.txt").read_text()[len(first):]
    assert "random-init encoder" not in log  # measured once, restored from the checkpoint
    assert "knn_gap_k1" in metrics(work)[1] and proc.random_init_knn is not None
