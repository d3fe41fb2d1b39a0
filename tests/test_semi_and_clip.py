"""Semi-supervised label subsets, label smoothing and per-tensor gradient clipping."""
import json

import numpy as np
import pytest
import torch

from processor.base import clip_per_tensor
from processor.evaluation import Evaluation, class_balanced_subset
from torchlight.config import ConfigError
from test_processors import eval_config


def test_class_balanced_subset_by_hand():
    labels = np.array([0] * 50 + [1] * 30 + [2] * 3)
    rows = class_balanced_subset(labels, 0.1, seed=7)
    picked = labels[rows]
    assert [int((picked == c).sum()) for c in range(3)] == [5, 3, 1]  # round(n * 0.1), at least one
    assert rows == sorted(rows) and len(set(rows)) == len(rows)
    assert rows == class_balanced_subset(labels, 0.1, seed=7)
    assert rows != class_balanced_subset(labels, 0.1, seed=8)
    # the rule as documented: the first members of each class in a default_rng(seed) permutation
    order = np.random.default_rng(7).permutation(len(labels))
    expected = sorted(order[labels[order] == 0][:5].tolist() + order[labels[order] == 1][:3].tolist()
                      + order[labels[order] == 2][:1].tolist())
    assert rows == expected


def test_semi_supervised_evaluation_trains_on_the_saved_subset(nw_ucla_small, tmp_path):
    cfg = eval_config("skeletonclr_linear.yaml", nw_ucla_small, tmp_path / "semi", None, num_epoch=1,
                      label_fraction=0.2, subset_seed=3, label_smoothing=0.1, batch_size=5)
    proc = Evaluation(cfg, name="linear_evaluation")
    proc.run()
    saved = json.loads((tmp_path / "semi" / "label_subset.json").read_text())
    assert len(saved["rows"]) == 10 and len(proc.train_set) == 10  # 1 of 5 per class, 10 classes
    assert sorted(proc.train_set.label.tolist()) == list(range(10))
    assert saved["names"] == proc.train_set.sample_name


def test_clip_per_tensor_scales_each_gradient_separately():
    a, b = torch.zeros(3, requires_grad=True), torch.zeros(2, requires_grad=True)
    a.grad, b.grad = torch.tensor([3.0, 4.0, 0.0]), torch.tensor([0.3, 0.4])  # norms 5 and 0.5
    clip_per_tensor([a, b], 3.0)
    torch.testing.assert_close(a.grad, torch.tensor([3.0, 4.0, 0.0]) * 3 / (5 + 1e-6))
    torch.testing.assert_close(b.grad, torch.tensor([0.3, 0.4]))  # under the limit: untouched


def test_online_knn_monitor_equals_the_knn_evaluation_of_the_saved_encoder(nw_ucla_small, tmp_path):
    """The monitor (live model, during pretraining) and the kNN processor (tested against a brute-force
    kNN in test_processors) must agree on the checkpoint written at the same epoch. (A numpy
    re-computation is too fragile here: one epoch of a tiny model gives near-identical features.)"""
    from processor.knn import KNN
    from processor.pretrain import Pretrain
    from test_processors import pretrain_config

    data = {"data_path": str(nw_ucla_small / "train_position.npy"),
            "label_path": str(nw_ucla_small / "train_label.pkl")}
    test = {"data_path": str(nw_ucla_small / "val_position.npy"), "label_path": str(nw_ucla_small / "val_label.pkl")}
    cfg = pretrain_config(nw_ucla_small, tmp_path / "pre", num_epoch=2, knn_interval=2, knn_k=[1, 5], knn_t=0.1,
                          knn_train_feeder_args=data, knn_test_feeder_args=test)
    Pretrain(cfg, name="pretrain_skeletonclr").run()
    records = [json.loads(line) for line in (tmp_path / "pre" / "metrics.jsonl").read_text().splitlines()]
    assert "knn_top1_k1" not in records[0] and "knn_top1_k5" in records[1]  # every knn_interval epochs
    knn = KNN(eval_config("skeletonclr_knn.yaml", nw_ucla_small, tmp_path / "knn", tmp_path / "pre" / "latest.pt",
                          knn_k=[1, 5], knn_t=0.1, knn_weighting="exp"), name="knn")
    knn.run()
    results = json.loads((tmp_path / "knn" / "results.json").read_text())
    for k in (1, 5):
        assert records[1][f"knn_top1_k{k}"] == results["knn_top1"][str(k)], k


def test_shots_per_class_by_hand():
    labels = np.array([0] * 50 + [1] * 30 + [2] * 3)
    rows = class_balanced_subset(labels, 1.0, seed=7, shots=5)
    assert [int((labels[rows] == c).sum()) for c in range(3)] == [5, 5, 3]  # a class with fewer keeps all
    order = np.random.default_rng(7).permutation(len(labels))
    assert rows == sorted(sum((order[labels[order] == c][:5].tolist() for c in range(3)), []))


def test_few_shot_knn_uses_a_k_shot_bank_and_matches_brute_force(nw_ucla_small, tmp_path):
    """STARS' few-shot protocol is kNN; with `shots_per_class` the bank is a seeded K-shot support set."""
    from processor.knn import KNN

    cfg = eval_config("skeletonclr_knn.yaml", nw_ucla_small, tmp_path, None, knn_k=[1], knn_weighting="none",
                      shots_per_class=2, subset_seed=4)
    proc = KNN(cfg, name="knn")
    proc.run()
    saved = json.loads((tmp_path / "label_subset.json").read_text())
    result = json.loads((tmp_path / "results.json").read_text())
    assert result["bank_samples"] == 20 == len(saved["rows"]) and saved["shots_per_class"] == 2
    assert sorted(proc.train_set.label.tolist()) == sorted(list(range(10)) * 2)
    bank, bank_y, _ = proc.features(proc.train_set, "bank")
    query, query_y, _ = proc.features(proc.test_set, "query")
    bank = (bank / bank.norm(dim=1, keepdim=True)).numpy()
    query = (query / query.norm(dim=1, keepdim=True)).numpy()
    nearest = (query @ bank.T).argmax(axis=1)
    expected = 100.0 * float((bank_y.numpy()[nearest] == query_y.numpy()).mean())
    assert abs(result["knn_top1"]["1"] - expected) < 1e-3
    bad = eval_config("skeletonclr_knn.yaml", nw_ucla_small, tmp_path / "bad", None, shots_per_class=2,
                      label_fraction=0.5)
    with pytest.raises(ConfigError, match="shots_per_class"):
        KNN(bad, name="knn").run()
