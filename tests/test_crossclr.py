"""CrosSCLR against independent computations: the mined positives and cross logits (numpy), the phase
switch at cross_epoch, momentum of every key encoder, the queues, state-dict keys, the multi-stream
evaluation interface, single-stream loading, and the processors end to end on real NW-UCLA data."""
import os

import numpy as np
import pytest
import torch

from net.crossclr import CrosSCLR, CrosSCLR3Views, cross_view_loss
from net.skeletonclr import SkeletonCLR
from processor.evaluation import Evaluation
from processor.knn import KNN
from processor.pretrain import Pretrain
from torchlight.config import load_yaml
from torchlight.io import atomic_save, load_checkpoint, load_weights
from torchlight.log import read_metrics

from conftest import REPO_ROOT, demo_config

SMALL = dict(hidden_channels=8, hidden_dim=8, feature_dim=6, queue_size=10, dropout=0.0,
             graph_args={"layout": "nw-ucla", "strategy": "spatial"})
STREAMS = ("joint", "motion", "bone")
SUFFIX = {"joint": "", "motion": "_motion", "bone": "_bone"}
# NW-UCLA parent of every joint (1-based, written out here from the Kinect v1 skeleton; joint 3 is the centre)
UCLA_PARENT = [2, 3, 3, 3, 3, 5, 6, 7, 3, 9, 10, 11, 1, 13, 14, 15, 1, 17, 18, 19]


# --- independent references ---------------------------------------------------------------------------
def np_stream(x: np.ndarray, s: str) -> np.ndarray:
    """x (N, C, T, V, M) numpy -> the stream, by explicit loops over frames / joints."""
    out = np.zeros_like(x)
    if s == "joint":
        return x.copy()
    if s == "motion":
        for t in range(x.shape[2] - 1):
            out[:, :, t] = x[:, :, t + 1] - x[:, :, t]
        return out
    for v, p in enumerate(UCLA_PARENT):
        out[:, :, :, v] = x[:, :, :, v] - x[:, :, :, p - 1]
    return out


def np_log_softmax(z):
    z = z - z.max(1, keepdims=True)
    return z - np.log(np.exp(z).sum(1, keepdims=True))


def np_cross_loss(q_a, k_a, queue_a, q_b, queue_b, topk, context, t):
    """CVC-KM loss of stream a against partner b, row by row in float64."""
    n, K = q_a.shape[0], queue_a.shape[1]
    losses = []
    for i in range(n):
        sim_a = q_a[i] @ queue_a
        sim_b = q_b[i] @ queue_b
        mined = np.zeros(K)
        mined[np.argsort(-sim_b, kind="stable")[:topk]] = 1
        logits = [np.array([q_a[i] @ k_a[i]]), sim_a] + ([sim_a * sim_b] if context else [])
        pos = [np.ones(1), mined] + ([mined] if context else [])
        logits, pos = np.concatenate(logits) / t, np.concatenate(pos)
        losses.append(-(np_log_softmax(logits[None])[0] * pos).sum() / pos.sum())
    return float(np.mean(losses))


def np_info_nce(q, k, queue, t):
    logits = np.concatenate([(q * k).sum(1, keepdims=True), q @ queue], axis=1) / t
    return float(np.mean(-np_log_softmax(logits)[:, 0]))


def unit(a):
    return a / np.linalg.norm(a, axis=1, keepdims=True)


# --- the loss -----------------------------------------------------------------------------------------
@pytest.mark.parametrize("topk, context", [(1, True), (2, True), (1, False), (3, False)])
def test_cross_view_loss_matches_numpy(topk, context):
    rng = np.random.default_rng(topk)
    q_a, k_a, q_b = (unit(rng.standard_normal((5, 6))) for _ in range(3))
    queue_a, queue_b = (unit(rng.standard_normal((6, 9)).T).T for _ in range(2))
    t = 0.07
    ref = np_cross_loss(q_a, k_a, queue_a, q_b, queue_b, topk, context, t)
    tq = [torch.tensor(a) for a in (q_a, k_a, queue_a, q_b, queue_b)]
    l_pos = (tq[0] * tq[1]).sum(1, keepdim=True)
    got = cross_view_loss(l_pos, tq[0] @ tq[2], tq[3] @ tq[4], topk, context, t).item()
    assert got == pytest.approx(ref, rel=1e-6)


def test_positives_are_the_partners_neighbours_and_the_context_block_is_the_product():
    """Hand-made similarities: the positive column is the partner's best, not the stream's own best, and
    the loss equals the formula with the context block sim_a * sim_b written out."""
    sim_a = torch.tensor([[0.9, 0.1, -0.2, 0.3]])  # own best: column 0
    sim_b = torch.tensor([[0.0, 0.2, 0.8, -0.5]])  # partner's best: column 2
    l_pos = torch.tensor([[0.5]])
    t = 0.5
    logits = np.array([0.5, 0.9, 0.1, -0.2, 0.3, 0.0, 0.02, -0.16, -0.15]) / t
    lsm = logits - np.log(np.exp(logits).sum())
    expect = -(lsm[0] + lsm[1 + 2] + lsm[5 + 2]) / 3  # the key, column 2 of the queue and of the context
    assert cross_view_loss(l_pos, sim_a, sim_b, 1, True, t).item() == pytest.approx(expect, rel=1e-6)
    no_ctx = logits[:5] - np.log(np.exp(logits[:5]).sum())
    assert cross_view_loss(l_pos, sim_a, sim_b, 1, False, t).item() == pytest.approx(-(no_ctx[0] + no_ctx[3]) / 2,
                                                                                      rel=1e-6)


def run_step(model, epoch, seed=0):
    """One forward of the pretraining model on random joint views; returns (out, views, queues before)."""
    g = torch.Generator().manual_seed(seed)
    x_q, x_k = torch.randn(2, 4, 3, 12, 20, 1, generator=g)
    queues = {s: getattr(model, "queue" + SUFFIX[s]).clone().numpy() for s in model.STREAMS}
    out = model({"views": {"query": x_q, "key": x_k}, "epoch": epoch, "layout": "nw-ucla"})
    return out, (x_q, x_k), queues


def features_after(model, views):
    """q and k of every stream, recomputed from numpy-derived streams with the (updated) encoders."""
    q, k = {}, {}
    with torch.no_grad():
        for s in model.STREAMS:
            xq = torch.tensor(np_stream(views[0].numpy(), s))
            xk = torch.tensor(np_stream(views[1].numpy(), s))
            q[s] = unit(model.encoder("q", s)(xq).double().numpy())
            k[s] = unit(model.encoder("k", s)(xk).double().numpy())
    return q, k


@pytest.mark.parametrize("context", [True, False])
def test_cross_phase_loss_equals_independent_computation(context):
    torch.manual_seed(0)
    model = CrosSCLR3Views(**SMALL, cross_epoch=3, topk=2, context=context).train()
    out, views, queues = run_step(model, epoch=3)
    q, k = features_after(model, views)
    total = 0.0
    for a in STREAMS:
        partners = [b for b in STREAMS if b != a]
        ref = np.mean([np_cross_loss(q[a], k[a], queues[a], q[b], queues[b], 2, context, 0.07) for b in partners])
        assert out[f"loss_{a}"].item() == pytest.approx(ref, rel=1e-4), a
        total += ref
    assert out["loss"].item() == pytest.approx(total, rel=1e-4)
    assert out["cross"].item() == 1.0


def test_two_stream_model_has_one_partner():
    torch.manual_seed(1)
    model = CrosSCLR(**SMALL, cross_epoch=0).train()
    out, views, queues = run_step(model, epoch=0)
    q, k = features_after(model, views)
    ref_j = np_cross_loss(q["joint"], k["joint"], queues["joint"], q["motion"], queues["motion"], 1, True, 0.07)
    ref_m = np_cross_loss(q["motion"], k["motion"], queues["motion"], q["joint"], queues["joint"], 1, True, 0.07)
    assert out["loss_joint"].item() == pytest.approx(ref_j, rel=1e-4)
    assert out["loss_motion"].item() == pytest.approx(ref_m, rel=1e-4)
    assert not hasattr(model, "encoder_q_bone") and not hasattr(model, "queue_bone")


def test_phase_switch_at_cross_epoch_zero_based():
    """cross_epoch 150 means upstream's 1-based epochs 1..150 are SkeletonCLR: here 0-based 0..149;
    0-based epoch 150 (upstream's 151) is the first mining epoch."""
    torch.manual_seed(2)
    model = CrosSCLR3Views(**SMALL, cross_epoch=150).train()
    assert [model.is_cross(e) for e in (0, 148, 149, 150, 299)] == [False, False, False, True, True]
    out, views, queues = run_step(model, epoch=149)
    q, k = features_after(model, views)
    assert out["cross"].item() == 0.0
    for s in STREAMS:  # the SkeletonCLR phase: each stream's own InfoNCE
        assert out[f"loss_{s}"].item() == pytest.approx(np_info_nce(q[s], k[s], queues[s], 0.07), rel=1e-4), s
    out, _, _ = run_step(model, epoch=150, seed=1)
    assert out["cross"].item() == 1.0 and "pos_top1_joint" not in out


# --- momentum and queues ------------------------------------------------------------------------------
def momentum_moves(model, epoch):
    """{stream: whether its key encoder moved, and moved exactly to m*k + (1-m)*q}."""
    before = {s: [p.clone() for p in model.encoder("k", s).parameters()] for s in STREAMS}
    online = {s: [p.clone() for p in model.encoder("q", s).parameters()] for s in STREAMS}
    run_step(model, epoch)
    moved = {}
    for s in STREAMS:
        after = list(model.encoder("k", s).parameters())
        if all(torch.equal(a, b) for a, b in zip(after, before[s])):
            moved[s] = False
            continue
        for a, b, o in zip(after, before[s], online[s]):
            torch.testing.assert_close(a, 0.9 * b + 0.1 * o)
        moved[s] = True
    return moved


def perturbed_model(**kwargs):
    """q and k apart (as after training steps) so a momentum update is visible."""
    torch.manual_seed(3)
    model = CrosSCLR3Views(**SMALL, momentum=0.9, cross_epoch=1, **kwargs).train()
    with torch.no_grad():
        for s in STREAMS:
            for p in model.encoder("q", s).parameters():
                p.add_(0.1 * torch.randn_like(p))
    return model


def test_all_three_key_encoders_move_in_both_phases():
    assert momentum_moves(perturbed_model(), epoch=0) == dict.fromkeys(STREAMS, True)
    assert momentum_moves(perturbed_model(), epoch=1) == dict.fromkeys(STREAMS, True)


def test_legacy_momentum_moves_only_the_motion_key_encoder_in_the_cross_phase():
    model = perturbed_model(legacy_crossclr_momentum=True)
    assert momentum_moves(model, epoch=0) == dict.fromkeys(STREAMS, True)
    assert momentum_moves(model, epoch=1) == {"joint": False, "motion": True, "bone": False}


def test_queues_are_written_together_at_one_pointer():
    torch.manual_seed(4)
    model = CrosSCLR3Views(**SMALL, cross_epoch=1).train()
    for epoch, start in ((0, 0), (1, 4), (1, 8)):  # 4 keys a step, K = 10: the third write wraps
        out, views, _ = run_step(model, epoch, seed=epoch + start)
        _, k = features_after(model, views)
        cols = [(start + i) % 10 for i in range(4)]
        for s in STREAMS:
            queue, ptr = model.queue_of(s)
            np.testing.assert_allclose(queue[:, cols].numpy().T, k[s], rtol=1e-4, atol=1e-5)
            assert int(ptr) == (start + 4) % 10


# --- state dict and evaluation ------------------------------------------------------------------------
def test_upstream_state_dict_layout():
    model = CrosSCLR3Views(num_class=60)
    sd = model.state_dict()
    assert len(sd) == 3 * 364
    for s in STREAMS:
        assert sd["queue" + SUFFIX[s]].shape == (128, 32768) and sd["queue_ptr" + SUFFIX[s]].dtype == torch.int64
        assert sd[f"encoder_k{SUFFIX[s]}.fc.2.weight"].shape == (128, 256)
    ev = CrosSCLR3Views(pretrain=False, num_class=60)
    assert len(ev.state_dict()) == 3 * 179
    assert ev.head_prefixes() == ["encoder_q.fc", "encoder_q_motion.fc", "encoder_q_bone.fc"]
    assert CrosSCLR3Views.derives_streams and CrosSCLR.derives_streams


def test_legacy_shared_projector_is_upstreams_module_structure():
    """Upstream builds the motion / bone projectors around the joint projector module itself."""
    model = CrosSCLR3Views(**SMALL, legacy_shared_projector=True)
    for role in ("q", "k"):
        joint_fc = model.encoder(role, "joint").fc
        for s in ("motion", "bone"):
            assert model.encoder(role, s).fc[2] is joint_fc
    keys = set(model.state_dict())
    assert {"encoder_q_motion.fc.0.weight", "encoder_q_motion.fc.2.0.weight", "encoder_q_motion.fc.2.2.bias",
            "encoder_k_bone.fc.2.2.weight"} <= keys and "encoder_q_motion.fc.2.weight" not in keys
    # the optimiser sees a shared tensor once; every key copy starts equal to its query
    assert len(list(model.parameters())) == len({id(p) for p in model.parameters()})
    for s in STREAMS:
        for a, b in zip(model.encoder("q", s).state_dict().values(), model.encoder("k", s).state_dict().values()):
            assert torch.equal(a, b)


def test_evaluation_features_and_head_against_numpy():
    torch.manual_seed(5)
    model = CrosSCLR3Views(**SMALL, pretrain=False, num_class=5).eval()
    x = torch.randn(3, 3, 12, 20, 1)
    with torch.no_grad():
        f = model.forward_features(x)
        logits = model(x)
        per_stream = [model.encoder("q", s).forward_features(torch.tensor(np_stream(x.numpy(), s))) for s in STREAMS]
    assert f.shape == (3, 3 * 8)
    torch.testing.assert_close(f, torch.cat(per_stream, dim=1))
    heads = [(model.encoder("q", s).fc.weight.detach().numpy(), model.encoder("q", s).fc.bias.detach().numpy())
             for s in STREAMS]
    fn = f.numpy()
    expect = np.mean([fn[:, 8 * i:8 * (i + 1)] @ w.T + b for i, (w, b) in enumerate(heads)], axis=0)
    np.testing.assert_allclose(logits.numpy(), expect, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("legacy", [False, True])
def test_pretraining_checkpoint_loads_for_3view_and_single_stream_evaluation(tmp_path, legacy):
    torch.manual_seed(6)
    pre = CrosSCLR3Views(**SMALL, legacy_shared_projector=legacy)
    path = str(tmp_path / "epoch300_model.pt")
    atomic_save(pre.state_dict(), path)  # a bare state_dict, as upstream saves
    cfg = load_yaml(os.path.join(REPO_ROOT, "config", "_crossclr_linear_eval.yaml"))
    ev = CrosSCLR3Views(**SMALL, pretrain=False, num_class=5)
    report = load_weights(ev, path, ignore=cfg["ignore_weights"], allow_missing=ev.head_prefixes())
    assert sorted(report.missing) == sorted(f"{h}.{p}" for h in ev.head_prefixes() for p in ("weight", "bias"))
    for s in STREAMS:
        assert torch.equal(ev.encoder("q", s).st_gcn_networks[9].tcn[2].weight,
                           pre.encoder("q", s).st_gcn_networks[9].tcn[2].weight)
    # one stream (bone) into a SkeletonCLR evaluation model, `stream: bone`
    one = SkeletonCLR(**{k: v for k, v in SMALL.items() if k not in ("feature_dim", "queue_size")},
                      pretrain=False, num_class=5)
    load_weights(one, path, rename={"encoder_q.": "unused_joint.", "encoder_q_bone.": "encoder_q."},
                 ignore=["unused_joint", "encoder_q.fc", "encoder_q_motion", "encoder_k", "queue"],
                 allow_missing=["encoder_q.fc"])
    bone = pre.encoder_q_bone.state_dict()
    for key, value in one.encoder_q.state_dict().items():
        if not key.startswith("fc."):
            assert torch.equal(value, bone[key]), key


# --- end to end ---------------------------------------------------------------------------------------
TINY = {"hidden_channels": 8, "hidden_dim": 32, "feature_dim": 16, "queue_size": 64}


def pretrain(data, work, num_epoch):
    cfg = demo_config("crossclr_pretrain.yaml", data, work, num_epoch=num_epoch, batch_size=25, save_interval=1)
    cfg["model_args"] = {**cfg["model_args"], **TINY, "cross_epoch": 1}
    Pretrain(cfg, name="pretrain_crossclr_3views").run()


def test_pretrain_both_phases_resume_and_evaluate(nw_ucla_small, tmp_path):
    """Demo config, 2 epochs (epoch 1 SkeletonCLR, epoch 2 mines across views) with finite losses; a run
    stopped after epoch 1 and resumed into the mining epoch equals it bit for bit; the checkpoint then
    goes through the 3-stream linear probe (6 trainable tensors) and kNN."""
    pretrain(nw_ucla_small, tmp_path / "full", 2)
    a = read_metrics(tmp_path / "full" / "metrics.jsonl")
    assert [h["cross"] for h in a] == [0.0, 1.0] and all(np.isfinite(h["loss"]) for h in a)
    pretrain(nw_ucla_small, tmp_path / "part", 1)
    pretrain(nw_ucla_small, tmp_path / "part", 2)  # resumes from latest.pt
    b = read_metrics(tmp_path / "part" / "metrics.jsonl")
    assert [h["loss"] for h in a] == [h["loss"] for h in b]
    wa, wb = (load_checkpoint(str(tmp_path / w / "latest.pt"))["model"] for w in ("full", "part"))
    assert all(torch.equal(wa[k], wb[k]) for k in wa)

    weights = str(tmp_path / "full" / "latest.pt")
    model_args = {"hidden_channels": 8, "hidden_dim": 32}
    cfg = demo_config("crossclr_linear.yaml", nw_ucla_small, tmp_path / "linear", weights=weights, num_epoch=5,
                      batch_size=25, recalibrate_bn=False)
    cfg["model_args"] = {**cfg["model_args"], **model_args}
    proc = Evaluation(cfg, name="linear_evaluation")
    trainable = [n for n, p in proc.model.named_parameters() if p.requires_grad]
    assert len(trainable) == 6 and all(".fc." in n for n in trainable)
    proc.run()
    assert 0.0 <= proc.best_top1 <= 100.0
    cfg = demo_config("crossclr_knn.yaml", nw_ucla_small, tmp_path / "knn", weights=weights)
    cfg["model_args"] = {**cfg["model_args"], **model_args}
    knn = KNN(cfg, name="knn")
    knn.run()
    assert set(knn.result) == {1, 20}
