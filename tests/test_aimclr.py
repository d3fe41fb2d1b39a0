"""AimCLR against independent computations: EADM, DDM, mining, the loss of both phases, the epoch
boundary of the mining, the views' order, the configs; and end to end on real NW-UCLA sequences."""
import os
import re

import numpy as np
import pytest
from conftest import assert_data_paths
import torch
import yaml

from net.aimclr import AimCLR, attention_drop, ddm_loss, multi_positive_nce, neighbour_positives



SMALL = dict(hidden_channels=4, hidden_dim=8, feature_dim=6, queue_size=10, dropout=0.0,
             graph_args={"layout": "nw-ucla", "strategy": "spatial"})


# ----------------------------------------------------------------------------- numpy references
def np_log_softmax(z):
    z = z - z.max(axis=1, keepdims=True)
    return z - np.log(np.exp(z).sum(axis=1, keepdims=True))


def np_attention_drop(x, keep_prob=0.7, lam=1e-4):
    """Returns (output, gradient mask): SimAM attention per (sample, channel) plane, then the joint
    and entry keep masks, each scaled by numel / kept over the batch."""
    nm, c, t, v = x.shape
    att = np.empty_like(x)
    for n in range(nm):
        for ch in range(c):
            plane = x[n, ch]
            d = (plane - plane.mean()) ** 2
            var = d.sum() / (t * v - 1)
            att[n, ch] = 1.0 / (1.0 + np.exp(-(d / (4 * (var + lam)) + 0.5)))
    joint_keep = np.zeros((nm, v))
    for n in range(nm):
        for j in range(v):
            joint_keep[n, j] = float(att[n, :, :, j].mean() < keep_prob)
    entry_keep = (att < keep_prob).astype(np.float64)
    js = joint_keep.size / joint_keep.sum() if joint_keep.sum() else 0.0
    es = entry_keep.size / entry_keep.sum() if entry_keep.sum() else 0.0
    mask = joint_keep[:, None, None, :] * js * entry_keep * es
    return x * mask, mask, joint_keep


def np_mined_nce(logits, queue_sims, topk):
    """Loop over samples: positives = the key and the union of each query's top-k queue columns."""
    log_p = np_log_softmax(logits)
    losses = []
    for n in range(logits.shape[0]):
        cols = {0}
        for sim in queue_sims:
            cols |= {1 + int(j) for j in np.argsort(-sim[n])[:topk]}
        losses.append(-np.mean([log_p[n, j] for j in sorted(cols)]))
    return float(np.mean(losses))


# ----------------------------------------------------------------------------- EADM
def test_attention_drop_matches_numpy_and_masks_carry_no_gradient():
    rng = np.random.default_rng(0)
    x = rng.standard_normal((3, 4, 5, 6))
    x[:, :, :, 2] *= 4  # a salient joint, so that the spatial drop has something to drop
    x[0, 1, 3, 4] = 9.0  # a salient entry
    expect, mask, joint_keep = np_attention_drop(x)
    assert 0 < joint_keep.sum() < joint_keep.size  # the test exercises both kept and dropped joints
    assert 0 < (mask == 0).mean() < 1
    xt = torch.tensor(x, requires_grad=True)
    out = attention_drop(xt, 0.7, 1e-4)
    np.testing.assert_allclose(out.detach().numpy(), expect, rtol=1e-5, atol=1e-7)
    out.sum().backward()
    np.testing.assert_allclose(xt.grad.numpy(), mask, rtol=1e-5)  # d out / d x is the mask alone


def test_attention_drop_drops_the_outstanding_joint_and_rescales():
    """Every plane 1 except joint 3 at 11: joint 3's attention sigmoid(64 / (4 * 320 / 19) + 0.5) = 0.81
    >= 0.7 (the others 0.64), so joint 3 goes (spatial, and its entries in the temporal mask); kept
    entries are scaled by 5/4 (joints) * 20/16 (entries)."""
    x = torch.ones(1, 2, 4, 5)
    x[..., 3] = 11.0
    out = attention_drop(x)
    expect = torch.full_like(x, 1.25 * 1.25)
    expect[..., 3] = 0.0
    torch.testing.assert_close(out, expect)


def test_attention_drop_all_dropped_is_finite_and_none_dropped_is_identity():
    x = torch.randn(2, 3, 4, 5)
    # sigmoid(. + 0.5) >= 0.62 everywhere: keep_prob 0.5 drops every joint and entry (upstream: 0/0 = NaN)
    out = attention_drop(x, keep_prob=0.5)
    assert torch.isfinite(out).all() and (out == 0).all()
    torch.testing.assert_close(attention_drop(x, keep_prob=1.0), x)  # attention < 1: nothing dropped


# ----------------------------------------------------------------------------- losses
def test_ddm_loss_matches_numpy():
    rng = np.random.default_rng(1)
    z, teacher = rng.standard_normal((4, 7)) * 3, rng.standard_normal((4, 7))
    p = np.exp(teacher) / np.exp(teacher).sum(1, keepdims=True)
    expect = np.mean([-sum(p[n, j] * np.log(np.exp(z[n, j]) / np.exp(z[n]).sum()) for j in range(7))
                      for n in range(4)])
    assert ddm_loss(torch.tensor(z), torch.tensor(p)).item() == pytest.approx(expect, rel=1e-6)


def test_neighbour_positives_are_the_union_of_each_querys_topk():
    sims = [torch.tensor([[0.9, 0.1, 0.5, 0.0], [0.0, 0.2, 0.1, 0.8]]),
            torch.tensor([[0.9, 0.0, 0.1, 0.3], [0.7, 0.0, 0.1, 0.2]]),
            torch.tensor([[0.0, 0.6, 0.1, 0.2], [0.1, 0.0, 0.9, 0.3]])]
    # top-1 columns: row 0 -> {0, 0, 1}, row 1 -> {3, 0, 2}; +1 for the key column in front
    expect = torch.tensor([[1, 1, 1, 0, 0], [1, 1, 0, 1, 1]], dtype=torch.float32)
    assert torch.equal(neighbour_positives(*sims, topk=1), expect)
    # top-2: row 0 -> {0, 2} | {0, 3} | {1, 3}
    assert neighbour_positives(*sims, topk=2)[0].tolist() == [1, 1, 1, 1, 1]
    assert neighbour_positives(sims[0], topk=2)[1].tolist() == [1, 0, 1, 0, 1]


def test_multi_positive_nce_matches_numpy():
    rng = np.random.default_rng(2)
    z = rng.standard_normal((3, 6)) * 2
    pos = np.array([[1, 0, 1, 0, 0, 0], [1, 1, 1, 1, 0, 0], [1, 0, 0, 0, 0, 0]], dtype=np.float64)
    log_p = np_log_softmax(z)
    expect = np.mean([-(log_p[n] * pos[n]).sum() / pos[n].sum() for n in range(3)])
    assert multi_positive_nce(torch.tensor(z), torch.tensor(pos)).item() == pytest.approx(expect, rel=1e-6)


# ----------------------------------------------------------------------------- the model
@pytest.mark.parametrize("epoch, mining", [(0, False), (1, True)])
def test_model_loss_equals_independent_computation(epoch, mining):
    """mining_epoch 1: 0-based epoch 0 (upstream epoch 1) is InfoNCE + DDM, epoch 1 (upstream 2) mines."""
    torch.manual_seed(0)
    topk, T = 2, 0.07
    model = AimCLR(**SMALL, mining_epoch=1, topk=topk).train()
    x_e, x_q, x_k = torch.randn(3, 3, 3, 12, 20, 1)
    queue = model.queue.clone().numpy().astype(np.float64)
    out = model({"views": {"extreme": x_e, "query": x_q, "key": x_k}, "epoch": epoch})
    assert float(out["mining"]) == float(mining)
    enc = model.encoder_q
    with torch.no_grad():  # the same encoders again (dropout 0, train-mode BN: batch statistics)
        q = enc(x_q).double().numpy()
        fmap = enc.forward_feature_map(x_e).double().numpy()
        dropped = np_attention_drop(fmap)[0]
        q_e = enc.fc(torch.tensor(fmap.mean(axis=(2, 3))).float()).double().numpy()
        q_ed = enc.fc(torch.tensor(dropped.mean(axis=(2, 3))).float()).double().numpy()
        k = model.encoder_k(x_k).double().numpy()
    unit = [z / np.linalg.norm(z, axis=1, keepdims=True) for z in (q, q_e, q_ed, k)]
    q, q_e, q_ed, k = unit
    sims = [z @ queue for z in (q, q_e, q_ed)]
    logits = [np.concatenate([(z * k).sum(1, keepdims=True), s], axis=1) / T for z, s in zip((q, q_e, q_ed), sims)]
    teacher = np.exp(np_log_softmax(logits[0]))
    ddm = np.mean([-(teacher * np_log_softmax(lg)).sum(1).mean() for lg in logits[1:]])
    nce = np_mined_nce(logits[0], sims, topk) if mining else float(np.mean(-np_log_softmax(logits[0])[:, 0]))
    assert out["ddm"].item() == pytest.approx(ddm, rel=1e-4)
    assert out["nce"].item() == pytest.approx(nce, rel=1e-4)
    assert out["loss"].item() == pytest.approx(nce + ddm, rel=1e-4)
    np.testing.assert_allclose(model.queue[:, :3].numpy(), k.T, rtol=1e-4, atol=1e-6)  # keys enqueued
    assert int(model.queue_ptr) == 3
    out["loss"].backward()
    assert all(p.grad is None for p in model.encoder_k.parameters())
    assert enc.st_gcn_networks[0].gcn.conv.weight.grad.abs().sum() > 0


def test_mining_epoch_boundary_matches_the_upstream_1_based_loop():
    """Upstream: `for epoch in range(0, 300): train(epoch + 1)`, InfoNCE while epoch <= mining_epoch (150)."""
    model = AimCLR(**SMALL, mining_epoch=150)
    upstream = [not (e1 <= 150) for e1 in range(1, 301)]
    ours = [model.mines(e0) for e0 in range(300)]
    assert ours == upstream
    assert sum(ours) == 150 and not model.mines(149) and model.mines(150)


def test_upstream_keys_and_evaluation_model():
    from net.skeletonclr import SkeletonCLR

    sd = AimCLR(num_class=60).state_dict()
    assert sd.keys() == SkeletonCLR(num_class=60).state_dict().keys()  # EADM adds no keys
    assert {"queue", "queue_ptr", "encoder_q.fc.0.weight", "encoder_k.fc.2.bias"} <= set(sd)
    ev = AimCLR(pretrain=False, num_class=60)
    assert ev.state_dict().keys() == SkeletonCLR(pretrain=False, num_class=60).state_dict().keys()
    assert ev.head_prefixes() == ["encoder_q.fc"]
    x = torch.randn(2, 3, 10, 25, 2)
    assert ev.forward_features(x).shape == (2, 256) and ev.forward_head(ev.forward_features(x)).shape == (2, 60)


def test_feeder_triple_puts_the_extreme_view_first(nw_ucla_small):
    """Upstream calls model(data1, data2, data3) = (im_q_extreme, im_q, im_k) with data1 = _strong_aug."""
    from feeder.ntu_feeder import Feeder_triple

    ds = Feeder_triple(str(nw_ucla_small / "train_position.npy"), str(nw_ucla_small / "train_label.pkl"),
                       shear_amplitude=-1, temperal_padding_ratio=-1, aug_method="2")  # rotation: always applied
    x = ds.__getitems__(list(range(4)))[0]
    views = ds.view_recipe(x, torch.Generator().manual_seed(0))
    assert list(views) == ["extreme", "query", "key"]
    assert torch.equal(views["query"], x) and torch.equal(views["key"], x)  # normal views, no augmentation asked
    assert not torch.allclose(views["extreme"], x)


# ----------------------------------------------------------------------------- end to end
def tiny_config(data, work, **overrides):
    from conftest import demo_config

    model_args = {"hidden_channels": 8, "hidden_dim": 32, "feature_dim": 16, "queue_size": 64, "mining_epoch": 1}
    settings = {"num_epoch": 2, "batch_size": 25, "save_interval": 1, **overrides}
    return demo_config("aimclr_pretrain.yaml", data, work, model_args=model_args, **settings)


def test_pretraining_mines_from_the_second_epoch_and_resumes_exactly(nw_ucla_small, tmp_path):
    from processor.evaluation import Evaluation
    from processor.pretrain import Pretrain
    from torchlight.log import read_metrics

    Pretrain(tiny_config(nw_ucla_small, tmp_path / "full"), name="pretrain_aimclr").run()
    history = read_metrics(tmp_path / "full" / "metrics.jsonl")
    assert [h["epoch"] for h in history] == [1, 2] and [h["mining"] for h in history] == [0.0, 1.0]
    assert all(np.isfinite(h[k]) for h in history for k in ("loss", "nce", "ddm"))
    Pretrain(tiny_config(nw_ucla_small, tmp_path / "split", num_epoch=1), name="pretrain_aimclr").run()
    Pretrain(tiny_config(nw_ucla_small, tmp_path / "split"), name="pretrain_aimclr").run()  # resumes
    from conftest import same_checkpoints
    a, _ = same_checkpoints(tmp_path / "full", tmp_path / "split")
    assert a["epoch"] == 2 and int(a["model"]["queue_ptr"]) == (2 * 2 * 25) % 64
    # the demo linear probe loads it (ignore_weights drops the pretraining-only keys)
    from conftest import demo_config
    cfg = demo_config("aimclr_linear.yaml", nw_ucla_small, tmp_path / "linear", weights=str(tmp_path / "full" /
                      "latest.pt"), model_args={"hidden_channels": 8, "hidden_dim": 32}, num_epoch=1,
                      batch_size=25, eval_interval=1)
    Evaluation(cfg, name="linear_evaluation").run()
    assert (tmp_path / "linear" / "results.json").exists()


# ----------------------------------------------------------------------------- configs
DATASETS = {"ntu60": (("xsub", "xview"), 60, "ntu60_frame50"), "ntu120": (("xsub", "xset"), 120, "ntu120_frame50"),
            "pku_part1": (("xsub",), 51, "pku_part1_frame50")}
AIMCLR_CONFIGS = [f"config/{ds}/{fam}/{fam}_aimclr_{b}_{s}.yaml" for ds, (benches, _, _) in DATASETS.items()
                  for b in benches for s in ("joint", "motion", "bone") for fam in ("pretext", "linear_eval")]


def published():
    from conftest import REPO_ROOT
    with open(os.path.join(REPO_ROOT, "tools", "paper_results.yaml")) as f:
        rows = yaml.safe_load(f)["results"]
    return {(r[1], r[2], r[3]): r[5] for r in rows if r[0] == "AimCLR" and r[4] == "linear"}


@pytest.mark.parametrize("path", AIMCLR_CONFIGS)
def test_dataset_configs_hold_the_published_values(path):
    from test_configs import COMMAND, header, processor_for, resolved

    name = processor_for(path)
    command = COMMAND.search(header(path))
    assert command and command.groups() == (name, path), f"{path}: header command"
    _, cfg = resolved(path)
    dataset, family, filename = path.split("/")[1:]
    benches, classes, folder = DATASETS[dataset]
    bench, stream = re.fullmatch(r".*_aimclr_(\w+)_(joint|motion|bone)\.yaml", filename).groups()
    assert cfg["model"] == "net.aimclr.AimCLR" and cfg["model_args"]["num_class"] == classes
    assert cfg["stream"] == stream
    assert cfg["work_dir"] == f"./work_dir/{dataset}_{bench}/aimclr_{stream}/{family}"
    assert_data_paths(cfg, f"{folder}/{bench}", path)
    numbers = published()
    if (dataset, bench, stream) in numbers:  # the header quotes the README's number, and the 3-stream one
        text = header(path)
        assert f"{numbers[dataset, bench, stream]:.2f} %" in text and f"{numbers[dataset, bench, '3s']:.2f} %" in text
    if family == "pretext":
        assert name == "pretrain_aimclr"
        args = cfg["model_args"]
        assert (args["pretrain"], args["feature_dim"], args["queue_size"], args["momentum"], args["Temperature"],
                args["mlp"], args["hidden_channels"], args["hidden_dim"], args["dropout"], args["mining_epoch"],
                args["topk"], args["keep_prob"]) == (True, 128, 32768, 0.999, 0.07, True, 16, 256, 0.5, 150, 1, 0.7)
        feeder = cfg["train_feeder_args"]
        assert cfg["train_feeder"] == "feeder.ntu_feeder.Feeder_triple"
        assert (feeder["shear_amplitude"], feeder["temperal_padding_ratio"], feeder["aug_method"]) == (0.5, 6, "12345")
        assert (cfg["optimizer"], cfg["base_lr"], cfg["momentum"], cfg["nesterov"], cfg["weight_decay"], cfg["step"],
                cfg["num_epoch"], cfg["batch_size"], cfg["save_interval"], cfg["eval_interval"]) == \
               ("SGD", 0.1, 0.9, False, 1e-4, [250], 300, 128, 5, -1)
        return
    assert name == "linear_evaluation" and not cfg["model_args"]["pretrain"]
    for key in ("train_feeder", "test_feeder"):
        assert cfg[key] == "feeder.ntu_feeder.Feeder_single"
        assert (cfg[f"{key}_args"]["shear_amplitude"], cfg[f"{key}_args"]["temperal_padding_ratio"]) == (-1, -1)
    assert cfg["ignore_weights"] == ["encoder_q.fc", "encoder_k", "queue"]
    _, pretext = resolved(path.replace("linear_eval", "pretext"))
    assert cfg["weights"] == f"{pretext['work_dir']}/epoch{pretext['num_epoch']}_model.pt"
    assert (cfg["protocol"], cfg["base_lr"], cfg["momentum"], cfg["nesterov"], cfg["weight_decay"], cfg["step"],
            cfg["num_epoch"], cfg["batch_size"], cfg["eval_interval"]) == ("linear", 3.0, 0.9, False, 0.0, [80], 100,
                                                                           128, 5)
