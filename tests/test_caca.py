"""3s-CACA (net/caca.py): CMAL and CSCL against numpy / hand-written loops, the phase switch at
cross_epoch, the EMA targets, the evaluation heads, the published configs, and the pretraining loop end
to end on real NW-UCLA sequences (with exact resume)."""
import os
import re

import numpy as np
import pytest
import torch

from net.caca import CACA, CACA3Views, cmal_loss, cscl_loss, neighbour_mask, vote_mask
from processor.evaluation import Evaluation
from processor.knn import KNN
from processor.pretrain import Pretrain
from torchlight.config import load_yaml
from torchlight.io import load_checkpoint, load_weights
from torchlight.log import read_metrics

from conftest import REPO_ROOT, demo_config

NTU = {"layout": "ntu-rgb+d", "strategy": "spatial"}
TINY = {"hidden_channels": 8, "feature_dim": 16, "projection_hidden_size": 32, "projection_size": 8,
        "prediction_hidden_size": 32, "dropout": 0.0}
# the 25 (child, parent) pairs of the NTU skeleton, 1-based, as upstream lists them
NTU_BONES = [(1, 2), (2, 21), (3, 21), (4, 3), (5, 21), (6, 5), (7, 6), (8, 7), (9, 21), (10, 9), (11, 10), (12, 11),
             (13, 1), (14, 13), (15, 14), (16, 15), (17, 1), (18, 17), (19, 18), (20, 19), (21, 21), (22, 23),
             (23, 8), (24, 25), (25, 12)]


# --- numpy references ------------------------------------------------------------------------------
def np_dist(a, b):
    a = a / np.linalg.norm(a, axis=1, keepdims=True)
    b = b / np.linalg.norm(b, axis=1, keepdims=True)
    return 2 - 2 * (a * b).sum(1)


def np_cmal(p1, p2, z1, z2):
    return float(np.mean(np_dist(p1, p2) - 0.5 * (np_dist(p1, z1) + np_dist(p2, z2))))


def np_cos(a, b):
    n, m = len(a), len(b)
    out = np.zeros((n, m))
    for i in range(n):
        for j in range(m):
            out[i, j] = a[i] @ b[j] / (np.linalg.norm(a[i]) * np.linalg.norm(b[j]))
    return out


def np_neighbours(sim, k):
    n = sim.shape[0]
    mask = np.eye(n)
    for i in range(n):
        for j in np.argsort(-sim[i], kind="stable")[:k]:
            mask[i, j] = 1
    return mask


def np_cscl(sim, y):
    total = 0.0
    for i in range(sim.shape[0]):
        logz = np.log(np.exp(sim[i]).sum())
        total += -sum(y[i, j] * (sim[i, j] - logz) for j in range(sim.shape[1]))
    return total / sim.shape[0]


def np_motion(x):
    out = np.zeros_like(x)
    out[:, :, :-1] = x[:, :, 1:] - x[:, :, :-1]
    return out


def np_bone(x):
    out = np.zeros_like(x)
    for child, parent in NTU_BONES:
        out[:, :, :, child - 1] = x[:, :, :, child - 1] - x[:, :, :, parent - 1]
    return out


def numpy_of(t):
    return t.detach().double().numpy()


# --- losses ----------------------------------------------------------------------------------------
def test_cmal_matches_numpy():
    g = torch.Generator().manual_seed(0)
    p1, p2, z1, z2 = (torch.randn(6, 5, generator=g, dtype=torch.float64) for _ in range(4))
    assert cmal_loss(p1, p2, z1, z2).item() == pytest.approx(np_cmal(*map(numpy_of, (p1, p2, z1, z2))), abs=1e-12)
    # the gradient flows into the online predictions only
    p1.requires_grad_(), z1.requires_grad_()
    cmal_loss(p1, p2, z1, z2).backward()
    assert p1.grad is not None and z1.grad is None


def test_identical_views_and_targets_give_minus_one_per_pair():
    """p1 = p2 (pull 0) and z orthogonal to p (d = 2 each): loss 0 - (2 + 2) / 2 = -2."""
    p = torch.eye(4)[:2]
    z = torch.eye(4)[2:]
    assert cmal_loss(p, p, z, z).item() == pytest.approx(-2.0)


def test_neighbour_mask_is_diagonal_plus_topk():
    sim = torch.tensor([[0.1, 0.9, 0.3, 0.2],
                        [0.8, 0.0, 0.7, 0.1],
                        [0.2, 0.1, 0.3, 0.6],
                        [0.5, 0.4, 0.3, 0.2]])
    expect = torch.tensor([[1., 1., 1., 0.],   # top-2: 1, 2; plus self
                           [1., 1., 1., 0.],   # top-2: 0, 2; plus self
                           [0., 0., 1., 1.],   # top-2: 3, 2 (self among them)
                           [1., 1., 0., 1.]])  # top-2: 0, 1; plus self
    assert torch.equal(neighbour_mask(sim, 2), expect)
    g = torch.Generator().manual_seed(1)
    rand = torch.randn(7, 7, generator=g)
    assert np.array_equal(neighbour_mask(rand, 3).numpy(), np_neighbours(rand.numpy(), 3))


def test_vote_needs_two_streams_agreeing_in_both_directions():
    n = 4
    eye = torch.eye(n)

    def sim_with(pairs):  # a similarity whose top-1 off-diagonal neighbour of row i is pairs[i]
        s = torch.full((n, n), -1.0) + 2 * eye
        for i, j in pairs.items():
            s[i, j] = 0.5
        return s

    # with topk 2 each row's mask is {self, that neighbour}
    joint = (sim_with({0: 1, 1: 0, 2: 3, 3: 2}), sim_with({0: 1, 1: 0, 2: 3, 3: 2}))
    motion = (sim_with({0: 1, 1: 0, 2: 3, 3: 0}), sim_with({0: 1, 1: 0, 2: 0, 3: 0}))
    bone = (sim_with({0: 2, 1: 2, 2: 1, 3: 1}), sim_with({0: 3, 1: 2, 2: 1, 3: 1}))
    y = vote_mask([joint, motion, bone], topk=2, threshold=2)
    expect = eye.clone()
    expect[0, 1] = expect[1, 0] = 1  # joint and motion agree both ways
    # (2, 3): joint both ways, motion only S12 -> one stream; (1, 2): bone both ways only -> one stream
    assert torch.equal(y, expect)
    assert torch.equal(vote_mask([joint, motion, bone], topk=2, threshold=1),
                       ((neighbour_mask(joint[0], 2) * neighbour_mask(joint[1], 2)
                         + neighbour_mask(motion[0], 2) * neighbour_mask(motion[1], 2)
                         + neighbour_mask(bone[0], 2) * neighbour_mask(bone[1], 2)) >= 1).float())


def test_vote_and_cscl_match_numpy_on_random_similarities():
    g = torch.Generator().manual_seed(2)
    n = 6
    sims = [(torch.randn(n, n, generator=g, dtype=torch.float64), torch.randn(n, n, generator=g, dtype=torch.float64))
            for _ in range(3)]
    votes = sum(np_neighbours(a.numpy(), 2) * np_neighbours(b.numpy(), 2) for a, b in sims)
    y = (votes >= 2).astype(float)
    assert np.array_equal(vote_mask(sims, 2, 2).numpy(), y)
    for a, _ in sims:
        assert cscl_loss(a, torch.from_numpy(y)).item() == pytest.approx(np_cscl(a.numpy(), y), abs=1e-10)


# --- models ----------------------------------------------------------------------------------------
def batch_of(x1, x2, epoch, layout="ntu-rgb+d"):
    return {"views": {"query": x1, "key": x2}, "epoch": epoch, "layout": layout, "label": None, "index": None, "generator": None}


def views(seed=0, n=5):
    g = torch.Generator().manual_seed(seed)
    x1 = torch.randn(n, 3, 8, 25, 2, generator=g)
    return x1, x1 + 0.3 * torch.randn(x1.shape, generator=g)


def run_module(module, x: np.ndarray):
    return numpy_of(module(torch.from_numpy(x).float()))


def test_single_stream_loss_equals_independent_computation():
    torch.manual_seed(0)
    model = CACA(graph_args=NTU, **TINY)
    x1, x2 = views()
    out = model(batch_of(x1, x2, 0))
    torch.manual_seed(0)
    ref = CACA(graph_args=NTU, **TINY)  # the same weights, fresh BN statistics
    with torch.no_grad():
        p = [run_module(lambda v: ref.online_predictor.net(ref.online_projector.net(ref.online_backbone(v))), x.numpy())
             for x in (x1, x2)]
        z = [run_module(lambda v: ref.target_projector.net(ref.target_backbone(v)), x.numpy()) for x in (x1, x2)]
    assert out["loss"].item() == pytest.approx(np_cmal(p[0], p[1], z[0], z[1]), abs=1e-5)


@pytest.mark.parametrize("epoch", [1, 2])
def test_three_stream_loss_equals_independent_computation(epoch):
    """cross_epoch 2: 0-based epoch 1 is upstream's epoch 2 (CMAL only), epoch 2 is upstream's 3 (CSCL on)."""
    torch.manual_seed(0)
    model = CACA3Views(graph_args=NTU, cross_epoch=2, topk=2, lamb=10.0, **TINY)
    x1, x2 = views(1, n=6)
    out = model(batch_of(x1, x2, epoch))
    torch.manual_seed(0)
    ref = CACA3Views(graph_args=NTU, cross_epoch=2, **TINY)
    streams = {"joint": lambda x: x, "motion": np_motion, "bone": np_bone}
    outs = {}
    with torch.no_grad():
        for s, f in streams.items():
            ob, op, pr = (getattr(ref, f"online_{part}_{s}") for part in ("backbone", "projector", "predictor"))
            tb, tp = getattr(ref, f"target_backbone_{s}"), getattr(ref, f"target_projector_{s}")
            v = [f(x.numpy()) for x in (x1, x2)]
            p = [run_module(lambda a: pr.net(op.net(ob(a))), a) for a in v]
            z = [run_module(lambda a: tp.net(tb(a)), a) for a in v]
            outs[s] = (p, z)
    cross = epoch >= 2
    total = 0.0
    sims = {s: (np_cos(p[0], z[1]), np_cos(p[1], z[0])) for s, (p, z) in outs.items()}
    votes = sum(np_neighbours(a, 2) * np_neighbours(b, 2) for a, b in sims.values())
    y = (votes >= 2).astype(float)
    for s, (p, z) in outs.items():
        loss_s = np_cmal(p[0], p[1], z[0], z[1])
        assert out[f"cmal_{s}"].item() == pytest.approx(loss_s, abs=1e-5)
        if cross:
            cscl = np_cscl(sims[s][0], y) + np_cscl(sims[s][1], y)
            assert out[f"cscl_{s}"].item() == pytest.approx(cscl, rel=1e-5)
            loss_s += 10.0 * cscl
        else:
            assert f"cscl_{s}" not in out
        total += loss_s
    assert out["loss"].item() == pytest.approx(total, rel=1e-5, abs=1e-5)
    if cross:
        assert out["positives_per_row"].item() == pytest.approx(y.sum(1).mean())


def test_phase_switch_and_ema_schedule():
    """Upstream runs CSCL when its 1-based epoch > cross_epoch: 0-based epoch >= cross_epoch here."""
    model = CACA3Views(graph_args=NTU, cross_epoch=60, **TINY)
    upstream_cross = [e > 60 for e in range(1, 101)]  # upstream's train(epoch + 1) over range(100)
    assert [model.cross_phase(e) for e in range(100)] == upstream_cross
    assert [model.ema_active(e) for e in range(100)] == [not c for c in upstream_cross]
    model.ema_in_cross_phase = True
    assert all(model.ema_active(e) for e in range(100))
    assert not CACA3Views(graph_args=NTU, pretrain=False, num_class=5, **TINY).ema_active(0)


def test_targets_start_equal_frozen_and_follow_the_ema():
    torch.manual_seed(0)
    model = CACA3Views(graph_args=NTU, cross_epoch=1, moving_average_decay=0.9, **TINY)
    sd = model.state_dict()
    for s in ("joint", "motion", "bone"):
        for part in ("backbone", "projector"):
            online, target = getattr(model, f"online_{part}_{s}"), getattr(model, f"target_{part}_{s}")
            assert all(torch.equal(sd[f"online_{part}_{s}.{k}"], v) for k, v in target.state_dict().items())
            assert not any(p.requires_grad for p in target.parameters())
            assert all(p.requires_grad for p in online.parameters())
    with torch.no_grad():
        for p in model.parameters():
            if p.requires_grad:
                p.add_(1.0)
    before = {k: v.clone() for k, v in model.state_dict().items()}
    model.after_optimizer_step(0)  # phase 1: target <- 0.9 target + 0.1 online (parameters only)
    after = model.state_dict()
    params = {n for n, _ in model.named_parameters()} | {n for n, p in model.named_parameters(remove_duplicate=False)}
    for k, v in after.items():
        if k.startswith("target_"):
            online_key = k.replace("target_", "online_", 1)
            if k in params:
                assert torch.allclose(v, 0.9 * before[k] + 0.1 * before[online_key], atol=1e-6), k
            else:  # BN running statistics keep their own values
                assert torch.equal(v, before[k]), k
        else:
            assert torch.equal(v, before[k]), k
    frozen = {k: v.clone() for k, v in after.items()}
    model.after_optimizer_step(1)  # cross phase: targets frozen (upstream's commented-out update)
    assert all(torch.equal(v, frozen[k]) for k, v in model.state_dict().items())


def test_upstream_key_names_and_evaluation_model_loads_a_pretraining_checkpoint(tmp_path):
    pre = CACA3Views(graph_args=NTU, **TINY)
    prefixes = {k.split(".")[0] for k in pre.state_dict()}
    assert prefixes == {f"{a}_{s}" for a in ("online_backbone", "online_projector", "online_predictor",
                                             "target_backbone", "target_projector")
                        for s in ("joint", "motion", "bone")}
    assert "online_projector_joint.net.0.weight" in pre.state_dict()  # upstream's projection_MLP.net
    assert "online_backbone_joint.st_gcn_networks.9.tcn.2.weight" in pre.state_dict()
    assert not any(".fc." in k for k in pre.state_dict())  # the backbones have no classifier
    single = CACA(graph_args=NTU, **TINY)
    assert {k.split(".")[0] for k in single.state_dict()} == {
        "online_backbone", "online_projector", "online_predictor", "target_backbone", "target_projector"}
    path = tmp_path / "pre.pt"
    torch.save(pre.state_dict(), path)
    ev = CACA3Views(graph_args=NTU, pretrain=False, num_class=7, **TINY)
    ignore = load_yaml(os.path.join(REPO_ROOT, "config", "_caca_eval.yaml"))["ignore_weights"]
    load_weights(ev, str(path), ignore=ignore, allow_missing=ev.head_prefixes())
    for k, v in ev.state_dict().items():
        if k.startswith("online_backbone"):
            assert torch.equal(v, pre.state_dict()[k]), k
    assert [tuple(ev.get_submodule(h).weight.shape) for h in ev.head_prefixes()] == [(7, 16)] * 3


def test_three_stream_evaluation_concatenates_features_and_sums_heads():
    torch.manual_seed(0)
    ev = CACA3Views(graph_args=NTU, pretrain=False, num_class=4, **TINY).eval()
    x, _ = views(3, n=3)
    with torch.no_grad():
        f = ev.forward_features(x)
        per_stream = [numpy_of(getattr(ev, f"online_backbone_{s}")(torch.from_numpy(fn(x.numpy())).float()))
                      for s, fn in (("joint", lambda a: a), ("motion", np_motion), ("bone", np_bone))]
        assert np.allclose(numpy_of(f), np.concatenate(per_stream, 1), atol=1e-6)
        logits = sum(per_stream[i] @ numpy_of(getattr(ev, f"online_projector_{s}").weight).T
                     + numpy_of(getattr(ev, f"online_projector_{s}").bias)
                     for i, s in enumerate(("joint", "motion", "bone")))
        assert np.allclose(numpy_of(ev.forward_head(f)), logits, atol=1e-6)
        assert np.allclose(numpy_of(ev(x)), logits, atol=1e-6)
    assert CACA3Views.derives_streams and not getattr(CACA, "derives_streams", False)


# --- configs ---------------------------------------------------------------------------------------
PUBLISHED = {("ntu60", "xsub"): ("78.57", 100, 60), ("ntu60", "xview"): ("84.50", 100, 60),
             ("ntu120", "xsub"): ("68.54", 80, 40), ("ntu120", "xset"): ("71.10", 80, 40),
             ("pku_part1", "xsub"): ("88.05", 150, 100), ("pku_part2", "xsub"): ("53.48", 250, 200)}
CLASSES = {"ntu60": 60, "ntu120": 120, "pku_part1": 51, "pku_part2": 51}


def header_command(path):
    with open(path) as f:
        return re.search(r"# Run: python main\.py (\S+) --config (\S+)", f.read()).groups()


@pytest.mark.parametrize("ds,bench", sorted(PUBLISHED))
def test_three_stream_configs_hold_the_published_values(ds, bench):
    pub, epochs, cross = PUBLISHED[(ds, bench)]
    rel_pre = f"config/{ds}/pretext/pretext_caca_3views_{bench}.yaml"
    rel_lin = f"config/{ds}/linear_eval/linear_eval_caca_3views_{bench}.yaml"
    assert header_command(os.path.join(REPO_ROOT, rel_pre)) == ("pretrain_skeleton_3views", rel_pre)
    assert header_command(os.path.join(REPO_ROOT, rel_lin)) == ("linear_evaluation_3views", rel_lin)
    pre, lin = load_yaml(os.path.join(REPO_ROOT, rel_pre)), load_yaml(os.path.join(REPO_ROOT, rel_lin))
    for cfg in (pre, lin):
        with open(os.path.join(REPO_ROOT, rel_pre if cfg is pre else rel_lin)) as f:
            assert f"{pub} %" in f.read()
    a = pre["model_args"]
    assert pre["model"] == lin["model"] == "net.caca.CACA3Views" and pre["stream"] == lin["stream"] == "all"
    assert (a["pretrain"], a["feature_dim"], a["projection_hidden_size"], a["projection_size"],
            a["prediction_hidden_size"], a["moving_average_decay"], a["use_momentum"], a["hidden_channels"],
            a["topk"], a["lamb"], a["vote_threshold"], a["ema_in_cross_phase"], a["cross_epoch"]) == \
        (True, 512, 2048, 512, 2048, 0.996, True, 16, 2, 10.0, 2, False, cross)
    assert (pre["num_epoch"], pre["base_lr"], pre["momentum"], pre["nesterov"], pre["weight_decay"], pre["batch_size"],
            pre["train_feeder"], pre["train_feeder_args"]["shear_amplitude"],
            pre["train_feeder_args"]["temperal_padding_ratio"]) == \
        (epochs, 0.1, 0.9, False, 1e-4, 128, "feeder.ntu_feeder.Feeder_dual", 0.5, 6)
    assert pre["train_feeder_args"]["data_path"] == f"./data/{ds}_frame50/{bench}/train_position.npy"
    assert lin["test_feeder_args"]["data_path"] == f"./data/{ds}_frame50/{bench}/val_position.npy"
    assert lin["weights"] == f"{pre['work_dir']}/epoch{epochs}_model.pt" and epochs % pre["save_interval"] == 0
    assert (lin["model_args"]["pretrain"], lin["model_args"]["num_class"], lin["base_lr"], lin["step"],
            lin["num_epoch"], lin["weight_decay"], lin["nesterov"]) == (False, CLASSES[ds], 3.0, [80], 100, 0.0, False)


@pytest.mark.parametrize("bench", ["xsub", "xview"])
@pytest.mark.parametrize("stream", ["joint", "motion", "bone"])
def test_single_stream_configs(bench, stream):
    rel_pre = f"config/ntu60/pretext/pretext_caca_{bench}_{stream}.yaml"
    rel_lin = f"config/ntu60/linear_eval/linear_eval_caca_{bench}_{stream}.yaml"
    assert header_command(os.path.join(REPO_ROOT, rel_pre)) == ("pretrain_skeleton", rel_pre)
    assert header_command(os.path.join(REPO_ROOT, rel_lin)) == ("linear_evaluation", rel_lin)
    pre, lin = load_yaml(os.path.join(REPO_ROOT, rel_pre)), load_yaml(os.path.join(REPO_ROOT, rel_lin))
    assert pre["model"] == lin["model"] == "net.caca.CACA" and pre["stream"] == lin["stream"] == stream
    assert (pre["num_epoch"], pre["knn_interval"], pre["knn_k"], pre["model_args"]["moving_average_decay"]) == \
        (60, 5, [20], 0.996)
    assert pre["knn_test_feeder_args"]["data_path"] == f"./data/ntu60_frame50/{bench}/val_position.npy"
    assert lin["weights"] == f"{pre['work_dir']}/epoch60_model.pt" and lin["model_args"]["num_class"] == 60


# --- end to end --------------------------------------------------------------------------------------
def demo(name, data, work_dir, **overrides):
    return demo_config(name, data, work_dir, model_args={**TINY, **overrides.pop("model_args", {})}, **overrides)


def pretrain_cfg(data, work_dir, **overrides):
    return demo("caca_pretrain.yaml", data, work_dir, model_args={"cross_epoch": 1},
                **{"num_epoch": 2, "batch_size": 25, "save_interval": 1, **overrides})


@pytest.fixture(scope="module")
def pretrained(nw_ucla_small, tmp_path_factory):
    work = tmp_path_factory.mktemp("caca_pretext")
    Pretrain(pretrain_cfg(nw_ucla_small, work), name="pretrain_skeleton_3views").run()
    return work


def test_pretraining_runs_both_phases(pretrained):
    history = read_metrics(pretrained / "metrics.jsonl")
    assert [h["epoch"] for h in history] == [1, 2]
    assert all(np.isfinite(h["loss"]) for h in history)
    assert "cscl_joint" not in history[0] and np.isfinite(history[1]["cscl_joint"])  # cross_epoch 1: epoch 2 only
    assert history[1]["positives_per_row"] >= 1.0  # the diagonal is always positive
    e1 = load_checkpoint(str(pretrained / "epoch1_model.pt"))["model"]
    e2 = load_checkpoint(str(pretrained / "epoch2_model.pt"))["model"]
    targets = [k for k in e1 if k.startswith("target_") and "running" not in k and "num_batches" not in k]
    onlines = [k for k in e1 if k.startswith("online_") and k.endswith("weight")]
    # epoch 1: the targets moved away from the online weights' copy by EMA; epoch 2: frozen, online still trains
    assert any(not torch.equal(e1[k], e1[k.replace("target_", "online_", 1)]) for k in targets if "weight" in k)
    assert all(torch.equal(e1[k], e2[k]) for k in targets)
    assert any(not torch.equal(e1[k], e2[k]) for k in onlines)


def test_resume_continues_exactly(pretrained, nw_ucla_small, tmp_path):
    """1 epoch, then the same command with num_epoch 2 resumes (into the cross phase) and equals the
    2-epoch run of the fixture: losses and weights bit for bit on CPU."""
    resumed = tmp_path / "resumed"
    Pretrain(pretrain_cfg(nw_ucla_small, resumed, num_epoch=1), name="pretrain_skeleton_3views").run()
    Pretrain(pretrain_cfg(nw_ucla_small, resumed, num_epoch=2), name="pretrain_skeleton_3views").run()
    a, b = read_metrics(pretrained / "metrics.jsonl"), read_metrics(resumed / "metrics.jsonl")
    assert [h["epoch"] for h in b] == [1, 2]
    assert [h["loss"] for h in a] == [h["loss"] for h in b]
    wa = load_checkpoint(str(pretrained / "latest.pt"))["model"]
    wb = load_checkpoint(str(resumed / "latest.pt"))["model"]
    assert all(torch.equal(wa[k], wb[k]) for k in wa)


def test_three_stream_linear_probe_and_knn(pretrained, nw_ucla_small, tmp_path):
    weights = str(pretrained / "latest.pt")
    cfg = demo("caca_linear.yaml", nw_ucla_small, tmp_path / "lin", weights=weights, num_epoch=2, batch_size=16,
               eval_interval=1)
    run = Evaluation(cfg, name="linear_evaluation_3views")
    run.run()
    trainable = sorted(n for n, p in run.model.named_parameters() if p.requires_grad)
    assert trainable == sorted(f"online_projector_{s}.1.{w}" for s in ("joint", "motion", "bone")
                               for w in ("weight", "bias"))  # head_norm: Sequential(BatchNorm, Linear)
    history = read_metrics(tmp_path / "lin" / "metrics.jsonl")
    assert len(history) == 2 and all(np.isfinite(h["loss"]) for h in history)
    knn = demo("caca_knn.yaml", nw_ucla_small, tmp_path / "knn", weights=weights, knn_k=[1, 5])
    k = KNN(knn, name="knn")
    k.run()
    import json
    with open(tmp_path / "knn" / "results.json") as f:
        res = json.load(f)
    assert 0.0 <= res["top1"] <= 100.0


def test_three_stream_probe_cached_features_equal_the_full_forward(pretrained, nw_ucla_small, tmp_path):
    """The multi-stream probe on cached concatenated features (heads combined by forward_head) trains
    exactly as the probe that runs the frozen encoders on every batch."""
    weights = str(pretrained / "latest.pt")
    runs = {}
    for cache in ("true", "false"):
        cfg = demo("caca_linear.yaml", nw_ucla_small, tmp_path / cache, weights=weights, num_epoch=2, batch_size=16,
                   eval_interval=1, cache_features=cache)
        Evaluation(cfg, name="linear_evaluation_3views").run()
        runs[cache] = read_metrics(tmp_path / cache / "metrics.jsonl")
    assert len(runs["true"]) == len(runs["false"]) == 2
    for a, b in zip(runs["true"], runs["false"]):
        assert a["loss"] == pytest.approx(b["loss"], rel=1e-4)
        assert a["test_top1"] == pytest.approx(b["test_top1"], abs=1e-6)
