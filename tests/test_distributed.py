"""Distributed = single process: a 2-process torchrun (gloo, CPU) equals one process with the same
global batch, for a method with a queue and BatchNorm (SkeletonCLR, `sync_bn: true`)."""
import json
import os
import socket
import subprocess
import sys

import numpy as np
import torch
import yaml

from test_processors import pretrain_config
from torchlight.io import load_checkpoint
from torchlight.util import instantiate

REPO_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
TORCHRUN = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node=2"]



def failure(out) -> str:
    """The workers' own errors come first in torchrun's stderr, the launcher's summary last: show both."""
    err = out.stderr
    return err if len(err) <= 6000 else err[:4000] + "\n[...]\n" + err[-2000:]


GLOBAL_BN_SCRIPT = """
import sys, numpy as np, torch
import torch.distributed as dist
from torchlight.dist import GlobalBatchNorm, all_gather_grad
dist.init_process_group("gloo")
r = dist.get_rank()
x = torch.from_numpy(np.load({data!r}))[r * 6:(r + 1) * 6].clone().requires_grad_(True)
bn = GlobalBatchNorm(3, momentum=0.1)
with torch.no_grad():
    bn.weight.copy_(torch.tensor([1.0, 2.0, 0.5])); bn.bias.copy_(torch.tensor([0.0, -1.0, 3.0]))
y = bn(x)
(y * torch.arange(y.numel()).reshape(y.shape).sin()).sum().backward()
grads = [p.grad.clone() for p in (bn.weight, bn.bias)]
for g in grads:
    dist.all_reduce(g)  # what DDP does (it then divides by 2: undone here, the loss was a sum)
z = torch.arange(4.0).reshape(2, 2).add(10 * r).requires_grad_(True)
gathered = all_gather_grad(z)  # (4, 2): rank 0's rows, then rank 1's
(gathered * torch.arange(8.0).reshape(4, 2)).sum().backward()  # every rank's loss sees all rows
np.savez({out!r}.format(r), gathered=gathered.detach().numpy(), gz=z.grad.numpy(),
         y=y.detach().numpy(), gx=x.grad.numpy(), gw=grads[0].numpy(), gb=grads[1].numpy(),
         rm=bn.running_mean.numpy(), rv=bn.running_var.numpy())
dist.destroy_process_group()
"""


def test_global_batchnorm_and_gather_equal_one_big_batch(tmp_path):
    rng = np.random.default_rng(0)
    x = (rng.standard_normal((12, 3, 5)) * 3 + 100).astype(np.float32)  # large offset: a stable variance
    np.save(tmp_path / "x.npy", x)
    script = tmp_path / "bn.py"
    script.write_text(GLOBAL_BN_SCRIPT.format(root=REPO_ROOT, data=str(tmp_path / "x.npy"),
                                              out=str(tmp_path / "rank{}.npz")))
    out = subprocess.run(TORCHRUN + [f"--master_port={free_port()}", str(script)], capture_output=True, text=True,
                         timeout=300)
    assert out.returncode == 0, failure(out)
    ranks = [np.load(tmp_path / f"rank{r}.npz") for r in range(2)]

    xt = torch.from_numpy(x).requires_grad_(True)
    bn = torch.nn.BatchNorm1d(3, momentum=0.1)
    with torch.no_grad():
        bn.weight.copy_(torch.tensor([1.0, 2.0, 0.5]))
        bn.bias.copy_(torch.tensor([0.0, -1.0, 3.0]))
    y = bn(xt)
    (torch.cat([(y[r * 6:(r + 1) * 6] * torch.arange(6 * 15).reshape(6, 3, 5).sin()) for r in range(2)]).sum()
     ).backward()
    np.testing.assert_allclose(np.concatenate([r["y"] for r in ranks]), y.detach().numpy(), atol=1e-4)
    for r, out in enumerate(ranks):  # all_gather_grad: rank order; each part's gradient summed over both losses
        np.testing.assert_array_equal(out["gathered"], np.concatenate([np.arange(4.0).reshape(2, 2) + 10 * q
                                                                       for q in range(2)]))
        np.testing.assert_array_equal(out["gz"], 2 * np.arange(8.0).reshape(4, 2)[2 * r:2 * r + 2])
    np.testing.assert_allclose(np.concatenate([r["gx"] for r in ranks]), xt.grad.numpy(), atol=1e-4)
    for r in ranks:
        np.testing.assert_allclose(r["gw"], bn.weight.grad.numpy(), rtol=1e-4, atol=1e-4)
        np.testing.assert_allclose(r["gb"], bn.bias.grad.numpy(), rtol=1e-4, atol=1e-4)
        np.testing.assert_allclose(r["rm"], bn.running_mean.numpy(), rtol=1e-5)
        np.testing.assert_allclose(r["rv"], bn.running_var.numpy(), rtol=1e-4)


def read_metrics(path):
    return [json.loads(line) for line in path.read_text().splitlines()]


def free_port() -> str:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return str(s.getsockname()[1])


def test_two_process_pretraining_equals_one_process(nw_ucla_small, tmp_path):
    """Same global batch (24, two steps), no augmentation or dropout (the only randomness left is the
    data order, which the global sampler shares: one process's batch k is the union of the ranks'
    batch k). The losses agree to float precision; the queue holds the same keys (written in rank
    order by DDP, in batch order by one process); the trained encoders compute the same features to
    1e-3 relative. They are compared as functions, not tensor by tensor, because the first layer sits
    behind BatchNorm channels of near-zero variance that magnify summation-order differences (7e-7
    after one step, 1e-4 after two, of weights up to 0.05) and a conv bias in front of a BatchNorm has
    no true gradient at all."""
    settings = dict(num_epoch=1, num_worker=0, batch_size=24, base_lr=0.01, sync_bn=True, save_interval=0,
                    train_feeder_args={"shear_amplitude": -1, "temperal_padding_ratio": -1},
                    model_args={"dropout": 0.0})
    runs = {}
    for name, launcher in (("single", [sys.executable]), ("ddp", TORCHRUN + [f"--master_port={free_port()}"])):
        work = tmp_path / name
        (tmp_path / f"{name}.yaml").write_text(yaml.safe_dump(pretrain_config(nw_ucla_small, work, **settings)))
        out = subprocess.run(launcher + [os.path.join(REPO_ROOT, "main.py"), "pretrain_skeletonclr", "--config",
                                         str(tmp_path / f"{name}.yaml")], capture_output=True, text=True, timeout=600)
        assert out.returncode == 0, failure(out)
        runs[name] = work
    assert "world size 2" in (runs["ddp"] / "log.txt").read_text()
    la, lb = (np.array([h["loss"] for h in read_metrics(runs[n] / "metrics.jsonl")]) for n in ("single", "ddp"))
    np.testing.assert_allclose(lb, la, rtol=1e-5)
    wa, wb = (load_checkpoint(str(runs[n] / "latest.pt"))["model"] for n in ("single", "ddp"))
    assert wa.keys() == wb.keys()
    qa, qb = (w["queue"][:, w["queue"][0].argsort()] for w in (wa, wb))  # same columns, other order
    torch.testing.assert_close(qa, qb, rtol=1e-3, atol=1e-5)
    # the two trained encoders compute the same function (compared as functions: a conv bias in front
    # of a BatchNorm has no true gradient, so its value is float noise in both runs)
    cfg = pretrain_config(nw_ucla_small, tmp_path, **settings)
    x = torch.from_numpy(np.load(nw_ucla_small / "train_position.npy"))
    feats = []
    for w in (wa, wb):
        model = instantiate(cfg["model"], cfg["model_args"], where="model_args")
        model.load_state_dict(w)
        with torch.no_grad():
            feats.append(model.eval().forward_features(x))
    scale = float(feats[0].abs().max())
    assert float((feats[0] - feats[1]).abs().max()) <= 1e-3 * scale


def test_two_process_linear_evaluation_equals_one_process(nw_ucla_small, tmp_path):
    """The linear probe on 2 processes (features cached per rank, each rank's shard of every global
    batch) trains the same classifier as one process: losses and test accuracy per epoch agree."""
    from test_processors import eval_config

    pre = tmp_path / "pre"
    (tmp_path / "pre.yaml").write_text(yaml.safe_dump(pretrain_config(nw_ucla_small, pre, num_epoch=1, num_worker=0)))
    subprocess.run([sys.executable, os.path.join(REPO_ROOT, "main.py"), "pretrain_skeletonclr", "--config",
                    str(tmp_path / "pre.yaml")], check=True, capture_output=True, timeout=600)
    runs = {}
    for name, launcher in (("single", [sys.executable]), ("ddp", TORCHRUN + [f"--master_port={free_port()}"])):
        work = tmp_path / name
        cfg = eval_config("skeletonclr_linear.yaml", nw_ucla_small, work, pre / "latest.pt", num_epoch=8,
                          eval_interval=1, batch_size=16, num_worker=0, head_norm=True, base_lr=0.5)
        (tmp_path / f"{name}.yaml").write_text(yaml.safe_dump(cfg))
        out = subprocess.run(launcher + [os.path.join(REPO_ROOT, "main.py"), "linear_evaluation", "--config",
                                         str(tmp_path / f"{name}.yaml")], capture_output=True, text=True, timeout=600)
        assert out.returncode == 0, failure(out)
        runs[name] = read_metrics(work / "metrics.jsonl")
    for a, b in zip(runs["single"], runs["ddp"]):
        assert abs(a["loss"] - b["loss"]) <= 1e-5 * max(1.0, abs(a["loss"])), (a, b)
        assert a["test_top1"] == b["test_top1"]
    assert runs["single"][-1]["loss"] < runs["single"][0]["loss"] - 0.1, runs["single"]  # the probe learns
    ha, hb = (load_checkpoint(str(tmp_path / n / "latest.pt"))["model"] for n in ("single", "ddp"))
    for k in ("encoder_q.fc.1.weight", "encoder_q.fc.1.bias"):
        torch.testing.assert_close(ha[k], hb[k], rtol=1e-3, atol=1e-4)


def test_two_process_hysp_pretraining_equals_one_process(nw_ucla_small, tmp_path):
    """The other kind of method: no queue, BatchNorm statistics inside the projector and predictor
    (BYOL-style; with sync_bn: true every BatchNorm sees the global batch) and EMA targets updated after
    each optimiser step, in HYSP's Poincaré loss. Same global batch, no augmentation, no dropout: the
    losses agree and the online and target encoders compute the same functions as one process's."""
    from conftest import demo_config

    tiny = {"hidden_channels": 8, "out_channels": 16, "projection_hidden_size": [32, 32],
            "predictor_hidden_size": [32, 32], "dropout": 0.0, "curriculum": False}
    settings = dict(num_epoch=1, num_worker=0, batch_size=24, base_lr=0.01, sync_bn=True, save_interval=0,
                    progress=False, train_feeder="feeder.ntu_feeder.LineageReader", model_args=tiny,
                    views={"recipe": "strong_weak", "aug_method": ""})  # two views, neither augmented
    runs = {}
    for name, launcher in (("single", [sys.executable]), ("ddp", TORCHRUN + [f"--master_port={free_port()}"])):
        work = tmp_path / name
        cfg = demo_config("hysp_pretrain.yaml", nw_ucla_small, work, **settings)
        cfg["train_feeder_args"] = {k: cfg["train_feeder_args"][k] for k in ("data_path", "label_path")}
        (tmp_path / f"{name}.yaml").write_text(yaml.safe_dump(cfg))
        out = subprocess.run(launcher + [os.path.join(REPO_ROOT, "main.py"), "pretrain_hysp", "--config",
                                         str(tmp_path / f"{name}.yaml")], capture_output=True, text=True, timeout=600)
        assert out.returncode == 0, failure(out)
        runs[name] = work
    assert "world size 2" in (runs["ddp"] / "log.txt").read_text()
    ha, hb = (read_metrics(runs[n] / "metrics.jsonl")[-1] for n in ("single", "ddp"))
    assert ha["lambda_hyper"] == hb["lambda_hyper"] == 1.0
    # rtol 1e-4: near the ball's boundary the distance magnifies float32 summation-order differences
    # (1.4e-5 seen); a BatchNorm on each rank's half batch instead of the global one moves it by percents
    np.testing.assert_allclose([hb["loss"], hb["radius_online"]], [ha["loss"], ha["radius_online"]], rtol=1e-4)
    wa, wb = (load_checkpoint(str(runs[n] / "latest.pt"))["model"] for n in ("single", "ddp"))
    assert wa.keys() == wb.keys()
    x = torch.from_numpy(np.load(nw_ucla_small / "train_position.npy"))
    for part in ("online_encoder", "target_encoder"):
        feats = []
        for w in (wa, wb):
            model = instantiate(cfg["model"], cfg["model_args"], where="model_args")
            model.load_state_dict(w)
            with torch.no_grad():
                feats.append(model.eval().get_submodule(part)(x))
        assert float((feats[0] - feats[1]).abs().max()) <= 1e-3 * float(feats[0].abs().max()), part
