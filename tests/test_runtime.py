"""Run-time paths: fine-tuning, AMP, logging back-ends, torchrun, test phase, worker seeding."""
import glob
import json
import os
import subprocess
import sys

import numpy as np
import pytest
import torch

from processor.evaluation import Evaluation
from processor.pretrain import Pretrain
from torchlight.log import read_metrics
from torchlight.seed import WorkerInit

from conftest import REPO_ROOT
from test_processors import eval_config, pretrain_config


def test_finetune_trains_every_parameter(nw_ucla_small, tmp_path):
    cfg = eval_config("skeletonclr_linear.yaml", nw_ucla_small, tmp_path, None, num_epoch=1, base_lr=0.01,
                      protocol="finetune", weight_decay=1e-4, nesterov=True, eval_interval=1)
    proc = Evaluation(cfg, name="finetune_evaluation")
    before = {k: v.clone() for k, v in proc.module.named_parameters()}
    proc.run()
    unchanged = [k for k, v in proc.module.named_parameters() if torch.equal(before[k], v)]
    assert unchanged == []
    assert json.loads((tmp_path / "results.json").read_text())["protocol"] == "finetune"


def test_bf16_autocast_pretraining_runs(nw_ucla_small, tmp_path):
    proc = Pretrain(pretrain_config(nw_ucla_small, tmp_path, num_epoch=1, amp="bf16"), name="pretrain_skeletonclr")
    proc.run()
    assert np.isfinite(read_metrics(tmp_path / "metrics.jsonl")[0]["loss"])


def test_tensorboard_and_offline_wandb_logs(nw_ucla_small, tmp_path, monkeypatch):
    monkeypatch.setenv("WANDB_SILENT", "true")
    cfg = pretrain_config(nw_ucla_small, tmp_path, num_epoch=1, tensorboard=True,
                          wandb={"enable": True, "project": "skelssl-test"})
    Pretrain(cfg, name="pretrain_skeletonclr").run()
    assert glob.glob(str(tmp_path / "tensorboard" / "events.out.tfevents.*"))
    assert glob.glob(str(tmp_path / "wandb" / "offline-run-*"))  # offline by default: nothing is sent


def test_test_phase_evaluates_given_weights(nw_ucla_small, tmp_path):
    train = eval_config("skeletonclr_linear.yaml", nw_ucla_small, tmp_path / "train", None, num_epoch=2,
                        eval_interval=1, base_lr=0.1)
    Evaluation(train, name="linear_evaluation").run()
    test = eval_config("skeletonclr_linear.yaml", nw_ucla_small, tmp_path / "test", tmp_path / "train" / "latest.pt",
                       phase="test", ignore_weights=[])
    proc = Evaluation(test, name="linear_evaluation")
    proc.run()
    tested = json.loads((tmp_path / "test" / "results.json").read_text())
    assert tested["top1"] == json.loads((tmp_path / "train" / "results.json").read_text())["top1"]
    assert tested["epoch"] == 0  # weights evaluated as given, no training epoch


def test_worker_seeds_differ_per_worker_epoch_and_rank():
    seeds = set()
    for rank in (0, 1):
        init = WorkerInit(seed=0, rank=rank)
        for epoch in (0, 1):
            init.epoch = epoch
            for worker in (0, 1):
                init(worker)
                seeds.add(torch.initial_seed())
    assert len(seeds) == 8


def test_torchrun_two_processes(nw_ucla_small, tmp_path):
    """The DDP path (gloo on CPU) from the variables torchrun sets: pretraining then linear evaluation."""
    import yaml
    cfg = pretrain_config(nw_ucla_small, tmp_path / "pre", num_epoch=1, num_worker=0)
    (tmp_path / "pre.yaml").write_text(yaml.safe_dump(cfg))
    run = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node=2", "--master_port=29517",
           os.path.join(REPO_ROOT, "main.py")]
    out = subprocess.run(run + ["pretrain_skeletonclr", "--config", str(tmp_path / "pre.yaml")],
                         capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr[-2000:]
    assert "world size 2" in (tmp_path / "pre" / "log.txt").read_text()
    # the DDP run resumes (optimiser state matched by the unwrapped parameter names) for one more epoch
    out = subprocess.run(run + ["pretrain_skeletonclr", "--config", str(tmp_path / "pre.yaml"), "--num_epoch", "2"],
                         capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr[-2000:]
    resumed = read_metrics(tmp_path / "pre" / "metrics.jsonl")
    assert [h["epoch"] for h in resumed] == [1, 2]
    # ... and equals an uninterrupted 2-epoch DDP run (every rank's RNG streams are in the checkpoint)
    cfg = pretrain_config(nw_ucla_small, tmp_path / "pre_full", num_epoch=2, num_worker=0)
    (tmp_path / "pre_full.yaml").write_text(yaml.safe_dump(cfg))
    out = subprocess.run(run + ["pretrain_skeletonclr", "--config", str(tmp_path / "pre_full.yaml")],
                         capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr[-2000:]
    assert [h["loss"] for h in read_metrics(tmp_path / "pre_full" / "metrics.jsonl")] == [h["loss"] for h in resumed]
    lin = eval_config("skeletonclr_linear.yaml", nw_ucla_small, tmp_path / "lin", tmp_path / "pre" / "latest.pt",
                      num_epoch=2, eval_interval=1, num_worker=0)
    (tmp_path / "lin.yaml").write_text(yaml.safe_dump(lin))
    out = subprocess.run(run + ["linear_evaluation", "--config", str(tmp_path / "lin.yaml")],
                         capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr[-2000:]
    assert json.loads((tmp_path / "lin" / "results.json").read_text())["epoch"] == 2


def test_evaluation_takes_one_stream(nw_ucla_small, tmp_path):
    from torchlight.config import ConfigError
    cfg = eval_config("skeletonclr_linear.yaml", nw_ucla_small, tmp_path, None, stream="all")
    with pytest.raises(ConfigError, match="one stream"):
        Evaluation(cfg, name="linear_evaluation")
