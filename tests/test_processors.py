"""End to end on real NW-UCLA sequences: pretrain -> linear / kNN, exact resume, and bad input."""
import json
import os
import pickle
import signal
import subprocess
import sys
import time

import numpy as np
import pytest
import torch

from processor.base import TrainingError
from processor.evaluation import Evaluation
from processor.knn import KNN, knn_predict
from processor.pretrain import Pretrain
from torchlight.config import ConfigError
from torchlight.io import CheckpointError, load_checkpoint
from torchlight.log import read_metrics
from feeder.ntu_feeder import DataError

from conftest import REPO_ROOT, demo_config

TINY_MODEL = {"hidden_channels": 8, "hidden_dim": 32, "feature_dim": 16, "queue_size": 64}


def pretrain_config(data, work_dir, **overrides):
    model_args = {**TINY_MODEL, **overrides.pop("model_args", {})}
    # lr 0.1 (the NTU value; the demo's 0.025 is for its 30-epoch schedule): these runs are 1-2 epochs
    settings = {"num_epoch": 2, "batch_size": 16, "save_interval": 1, "base_lr": 0.1, **overrides}
    return demo_config("skeletonclr_pretrain.yaml", data, work_dir, model_args=model_args, **settings)


def eval_config(name, data, work_dir, weights, **overrides):
    model_args = {k: v for k, v in TINY_MODEL.items() if k in ("hidden_channels", "hidden_dim")}
    model_args.update(overrides.pop("model_args", {}))
    settings = {"batch_size": 16, **overrides}
    return demo_config(name, data, work_dir, weights=str(weights) if weights else None,
                       model_args=model_args, **settings)


@pytest.fixture(scope="module")
def pretrained(nw_ucla_small, tmp_path_factory):
    work = tmp_path_factory.mktemp("pretext")
    Pretrain(pretrain_config(nw_ucla_small, work), name="pretrain_skeletonclr").run()
    return work


def test_pretraining_writes_the_run(pretrained):
    history = read_metrics(pretrained / "metrics.jsonl")
    assert [h["epoch"] for h in history] == [1, 2]
    assert all(np.isfinite(h["loss"]) for h in history)
    state = load_checkpoint(str(pretrained / "latest.pt"))
    assert state["epoch"] == 2 and state["processor"] == "pretrain_skeletonclr"
    assert {"model", "optimizer", "scaler", "rng", "config", "history"} <= set(state)
    assert int(state["model"]["queue_ptr"]) == (2 * 3 * 16) % 64  # 50 samples -> 3 full batches an epoch
    assert (pretrained / "epoch1_model.pt").exists() and (pretrained / "epoch2_model.pt").exists()
    assert (pretrained / "config.yaml").read_text().startswith("# command line:")
    assert (pretrained / "curves.png").stat().st_size > 10000  # drawn at the end of the run


def test_linear_evaluation_and_cached_features_agree(pretrained, nw_ucla_small, tmp_path):
    runs = {}
    for cache in (True, False):
        cfg = eval_config("skeletonclr_linear.yaml", nw_ucla_small, tmp_path / f"lin_{cache}",
                          pretrained / "latest.pt", num_epoch=3, eval_interval=1, batch_size=16,
                          cache_features=cache, base_lr=0.5)
        Evaluation(cfg, name="linear_evaluation").run()
        runs[cache] = read_metrics(tmp_path / f"lin_{cache}" / "metrics.jsonl")
    for a, b in zip(runs[True], runs[False]):
        assert a["loss"] == pytest.approx(b["loss"], rel=1e-4)
        assert a["test_top1"] == pytest.approx(b["test_top1"], abs=1e-6)
    result = json.loads((tmp_path / "lin_True" / "results.json").read_text())
    assert {"top1", "top5", "best_top1", "best_epoch", "epoch", "processor", "config"} <= set(result)
    assert result["epoch"] == 3 and result["best_top1"] >= result["top1"]
    with open(tmp_path / "lin_True" / "test_result.pkl", "rb") as f:
        scores = pickle.load(f)
    assert len(scores) == 30 and next(iter(scores.values())).shape == (10,)


def test_linear_probe_trains_only_the_head(pretrained, nw_ucla_small, tmp_path):
    cfg = eval_config("skeletonclr_linear.yaml", nw_ucla_small, tmp_path, pretrained / "latest.pt", num_epoch=1,
                      cache_features=False, batch_size=16)
    proc = Evaluation(cfg, name="linear_evaluation")
    before = {k: v.clone() for k, v in proc.module.state_dict().items()}
    proc.run()
    after = proc.module.state_dict()
    changed = sorted(k for k in before if not torch.equal(before[k], after[k]))
    assert changed == ["encoder_q.fc.bias", "encoder_q.fc.weight"]  # BN statistics frozen too


def test_knn_matches_brute_force(pretrained, nw_ucla_small, tmp_path):
    cfg = eval_config("skeletonclr_knn.yaml", nw_ucla_small, tmp_path, pretrained / "latest.pt", knn_k=[1, 5])
    proc = KNN(cfg, name="knn")
    proc.run()
    result = json.loads((tmp_path / "results.json").read_text())
    assert set(result["knn_top1"]) == {"1", "5"} and 0 <= result["top1"] <= 100
    # knn_predict against a plain numpy vote
    rng = np.random.default_rng(0)
    bank = rng.standard_normal((40, 8))
    bank /= np.linalg.norm(bank, axis=1, keepdims=True)
    query = rng.standard_normal((7, 8))
    query /= np.linalg.norm(query, axis=1, keepdims=True)
    labels = rng.integers(0, 4, 40)
    scores = knn_predict(torch.tensor(query), torch.tensor(bank), torch.tensor(labels), 4, k=5, weighting="exp",
                         t=0.1).numpy()
    sim = query @ bank.T
    for i in range(7):
        top = np.argsort(-sim[i])[:5]
        expect = np.zeros(4)
        np.add.at(expect, labels[top], np.exp(sim[i, top] / 0.1))
        np.testing.assert_allclose(scores[i], expect, rtol=1e-6)


def _run_cli(cfg, work_dir, processor="pretrain_skeletonclr"):
    import yaml
    path = work_dir.parent / f"{work_dir.name}.yaml"
    path.write_text(yaml.safe_dump(cfg))
    return [sys.executable, os.path.join(REPO_ROOT, "main.py"), processor, "--config", str(path)]


def test_sigkill_and_resume_is_bit_exact(nw_ucla_small, tmp_path):
    """A run killed (SIGKILL) after epoch 2 and restarted with the same command continues exactly."""
    epochs = 4
    full = pretrain_config(nw_ucla_small, tmp_path / "full", num_epoch=epochs, num_worker=0)
    subprocess.run(_run_cli(full, tmp_path / "full"), check=True, capture_output=True, timeout=600)
    killed = pretrain_config(nw_ucla_small, tmp_path / "killed", num_epoch=epochs, num_worker=0)
    cmd = _run_cli(killed, tmp_path / "killed")
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    metrics = tmp_path / "killed" / "metrics.jsonl"
    deadline = time.time() + 300
    while time.time() < deadline and len(read_metrics(metrics)) < 2 and proc.poll() is None:
        time.sleep(0.05)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    done_before_kill = len(read_metrics(metrics))
    assert 2 <= done_before_kill < epochs, "the kill came too late to test anything"
    subprocess.run(cmd, check=True, capture_output=True, timeout=600)  # auto-resume from latest.pt
    a, b = read_metrics(tmp_path / "full" / "metrics.jsonl"), read_metrics(metrics)
    assert [h["epoch"] for h in b] == list(range(1, epochs + 1))
    assert [h["loss"] for h in a] == [h["loss"] for h in b]  # bit for bit
    wa = load_checkpoint(str(tmp_path / "full" / "latest.pt"))["model"]
    wb = load_checkpoint(str(tmp_path / "killed" / "latest.pt"))["model"]
    assert all(torch.equal(wa[k], wb[k]) for k in wa)


def test_resume_refuses_a_different_config(pretrained, nw_ucla_small):
    cfg = pretrain_config(nw_ucla_small, pretrained, base_lr=0.5)
    with pytest.raises(ConfigError, match="base_lr"):
        Pretrain(cfg, name="pretrain_skeletonclr")


def test_resume_refuses_weights_whose_contents_changed(pretrained, nw_ucla_small, tmp_path):
    """A finished evaluation in a work_dir, then the same config with other contents at the same `weights`
    path: refused (it would otherwise report the old run's results), naming the file."""
    import shutil

    weights = tmp_path / "encoder.pt"
    shutil.copy(pretrained / "epoch1_model.pt", weights)
    cfg = eval_config("skeletonclr_linear.yaml", nw_ucla_small, tmp_path / "lin", weights, num_epoch=1)
    Evaluation(cfg, name="linear_evaluation").run()
    Evaluation(cfg, name="linear_evaluation")  # unchanged: resumes
    shutil.copy(pretrained / "epoch2_model.pt", weights)
    with pytest.raises(ConfigError, match=r"other contents of `weights` .*encoder\.pt"):
        Evaluation(cfg, name="linear_evaluation")


def test_weights_of_another_architecture_are_refused(pretrained, nw_ucla_small, tmp_path):
    cfg = eval_config("skeletonclr_linear.yaml", nw_ucla_small, tmp_path, pretrained / "latest.pt",
                      model_args={"hidden_channels": 16, "hidden_dim": 32})
    with pytest.raises(CheckpointError, match="latest.pt.*shape"):
        Evaluation(cfg, name="linear_evaluation")


def test_a_typo_in_ignore_weights_never_gives_silent_random_init(pretrained, nw_ucla_small, tmp_path):
    cfg = eval_config("skeletonclr_linear.yaml", nw_ucla_small, tmp_path, pretrained / "latest.pt",
                      ignore_weights=["encoder_q.fc", "encoder_k", "queue", "encoder_q.data_bn"])
    with pytest.raises(CheckpointError, match="missing.*encoder_q.data_bn"):
        Evaluation(cfg, name="linear_evaluation")


def _write_dataset(folder, x, labels, names=None):
    folder.mkdir(parents=True, exist_ok=True)
    np.save(folder / "train_position.npy", x)
    names = names or [f"s{i}" for i in range(len(labels))]
    with open(folder / "train_label.pkl", "wb") as f:
        pickle.dump((names, list(labels)), f)


@pytest.mark.parametrize("fault, message", [
    ("missing", "data file not found"),
    ("nan", r"sample 3 \(bad_sample\) contains NaN"),
    ("zeros", r"sample 3 \(bad_sample\) is all zeros"),
    ("count", "5 samples but .* 4 labels"),
    ("empty", "is empty"),
    ("shape", "expected shape"),
])
def test_bad_data_stops_when_the_dataset_opens(nw_ucla_small, tmp_path, fault, message):
    x = np.load(nw_ucla_small / "train_position.npy")[:5].copy()
    labels, names = [0, 1, 2, 3, 4], ["a", "b", "c", "bad_sample", "e"]
    if fault == "nan":
        x[3, 0, 10, 4, 0] = np.nan
    elif fault == "zeros":
        x[3] = 0
    elif fault == "count":
        labels, names = labels[:4], names[:4]
    elif fault == "empty":
        x, labels, names = x[:0], [], []
    elif fault == "shape":
        x = x[:, :, :, :, 0]
    data = tmp_path / "data"
    if fault != "missing":
        _write_dataset(data, x, labels, names)
    cfg = pretrain_config(data, tmp_path / "work")
    with pytest.raises(DataError, match=message):
        Pretrain(cfg, name="pretrain_skeletonclr")


def test_labels_beyond_num_class_are_caught_before_training(pretrained, nw_ucla_small, tmp_path):
    cfg = eval_config("skeletonclr_linear.yaml", nw_ucla_small, tmp_path, None, model_args={"num_class": 5})
    with pytest.raises(ConfigError, match="num_class"):
        Evaluation(cfg, name="linear_evaluation")


def test_divergence_stops_with_the_step_and_samples(nw_ucla_small, tmp_path):
    # an lr that diverges after a good first epoch: x 1e30 at the step of epoch 2
    cfg = pretrain_config(nw_ucla_small, tmp_path, num_epoch=3, step=[1], lr_decay_rate=1e30)
    with pytest.raises(TrainingError, match=r"non-finite loss .* at epoch \d+, step \d+ \(samples \['a\d\d_s.*"
                                             r"Last good checkpoint: .*latest\.pt"):
        Pretrain(cfg, name="pretrain_skeletonclr").run()


def test_skip_nonfinite_skips_the_steps_and_the_run_goes_on(nw_ucla_small, tmp_path):
    """skip_nonfinite: the non-finite steps are logged and skipped and the run reaches its end (a diverged
    lr leaves the weights ruined, so it is meant for the odd bad batch, not for an lr that diverges)."""
    cfg = pretrain_config(nw_ucla_small, tmp_path, num_epoch=3, step=[1], lr_decay_rate=1e30, skip_nonfinite=True)
    Pretrain(cfg, name="pretrain_skeletonclr").run()
    log = (tmp_path / "log.txt").read_text()
    assert log.count("step skipped (skip_nonfinite: true)") >= 2 and "at epoch 2, step" in log
    assert load_checkpoint(str(tmp_path / "latest.pt"))["epoch"] == 3


def test_unknown_model_arg_names_the_closest(nw_ucla_small, tmp_path):
    cfg = pretrain_config(nw_ucla_small, tmp_path, model_args={"temperature": 0.1})
    with pytest.raises(ConfigError, match="Temperature"):
        Pretrain(cfg, name="pretrain_skeletonclr")


def test_unread_lineage_keys_load_with_a_warning(pretrained, nw_ucla_small, tmp_path):
    """An old YAML's device / print_log / pavi_log still loads; the log names each as not read (and why)."""
    cfg = eval_config("skeletonclr_knn.yaml", nw_ucla_small, tmp_path, pretrained / "latest.pt", device=[0, 1, 2, 3],
                      print_log=False, pavi_log=True)
    KNN(cfg, name="knn").run()
    log = (tmp_path / "log.txt").read_text()
    assert "warning: config key `device: [0, 1, 2, 3]` is a lineage key that is not read: GPUs are the visible" in log
    assert "`print_log: False` is a lineage key that is not read" in log and "`pavi_log: True`" in log
    assert "device:" not in (tmp_path / "config.yaml").read_text()  # the saved config holds what is read


def test_any_users_data_with_a_custom_layout_trains_end_to_end(tmp_path):
    """The path a user with their own skeletons walks: a layout YAML, tools/gendata_custom.py, then
    pretraining and kNN through the CLI config system, with the layout rebuilt from the manifest."""
    from tools.gendata_custom import main as gendata

    layout = tmp_path / "arm.yaml"
    layout.write_text("num_joints: 5\ncenter: 0\nedges: [[0, 1], [1, 2], [0, 3], [3, 4]]\n"
                      "flip_pairs: [[1, 3], [2, 4]]\nshoulders: [1, 3]\n")
    rng = np.random.default_rng(0)
    (tmp_path / "seq").mkdir()
    rows = ["name,label,split"]
    for i in range(24):
        t = int(rng.integers(20, 60))
        label = i % 3  # three actions moving different joints
        x = rng.normal(scale=0.02, size=(t, 5, 3)) + np.linspace(0, 1, 5)[None, :, None]
        x[:, label + 2, 1] += np.sin(np.linspace(0, 6, t))
        np.save(tmp_path / "seq" / f"s{i:02d}.npy", x)
        rows.append(f"s{i:02d},{label},{'train' if i < 18 else 'val'}")
    (tmp_path / "labels.csv").write_text("\n".join(rows) + "\n")
    assert gendata(["--sequences", str(tmp_path / "seq"), "--labels", str(tmp_path / "labels.csv"), "--layout",
                    str(layout), "--frames", "32", "--out_folder", str(tmp_path / "data")]) == 0
    graph = {"layout": str(layout), "strategy": "spatial"}
    cfg = pretrain_config(tmp_path / "data", tmp_path / "pre", batch_size=8,
                          model_args={"num_class": 3, "graph_args": graph})
    proc = Pretrain(cfg, name="pretrain_skeletonclr")
    assert proc.train_set.layout.name == "arm" and proc.train_set.layout.flip_permutation == [0, 3, 4, 1, 2]
    proc.run()
    knn = eval_config("skeletonclr_knn.yaml", tmp_path / "data", tmp_path / "knn", tmp_path / "pre" / "latest.pt",
                      knn_k=[1], model_args={"num_class": 3, "graph_args": graph})
    KNN(knn, name="knn").run()
    assert json.loads((tmp_path / "knn" / "results.json").read_text())["test_samples"] == 6


def test_optimizer_state_follows_parameter_names_on_resume(pretrained, nw_ucla_small, tmp_path):
    """A checkpoint written by code with another module order resumes with each momentum buffer on
    its own parameter (torch alone would match them by position); other parameters are refused."""
    import shutil

    state = load_checkpoint(str(pretrained / "latest.pt"))
    names = state["optimizer_params"][0]
    order = list(range(len(names)))[::-1]  # the "old code" listed the parameters in reverse
    old = {"state": {i: state["optimizer"]["state"][j] for i, j in enumerate(order)},
           "param_groups": [dict(state["optimizer"]["param_groups"][0], params=list(range(len(names))))]}
    work = tmp_path / "work"
    shutil.copytree(pretrained, work)
    from torchlight.io import atomic_save
    atomic_save({**state, "optimizer": old, "optimizer_params": [[names[j] for j in order]]}, str(work / "latest.pt"))
    proc = Pretrain(pretrain_config(nw_ucla_small, work), name="pretrain_skeletonclr")
    params = dict(proc.module.named_parameters())
    for i, name in enumerate(names):
        buf = proc.optimizer.state[params[name]]["momentum_buffer"]
        assert torch.equal(buf, state["optimizer"]["state"][i]["momentum_buffer"]), name
    proc.lock.release()  # built, never run: free the work_dir for the next one
    atomic_save({**state, "optimizer_params": [names[:-1] + ["encoder_q.not_a_parameter"]]}, str(work / "latest.pt"))
    with pytest.raises(CheckpointError, match="optimiser state does not match"):
        Pretrain(pretrain_config(nw_ucla_small, work), name="pretrain_skeletonclr")
