"""HYSP (net/hysp.py): the Poincaré-ball maths against independent float64 numpy formulas and closed
forms, its boundary cases, what the distance's gradient does (the self-pacing argument), the curriculum
against upstream's formula for every epoch, the EMA, the loss against an independent computation, the
Möbius head, the [strong, weak] feeder, the configs, the converters, and the loops end to end on real
NW-UCLA sequences (with exact resume and a Lightning-structured checkpoint)."""
import argparse
import json
import math
import os
import re

import numpy as np
import pytest
import torch

from feeder import augment
from feeder.ntu_feeder import Feeder_double
from net.hysp import (HYSP, MobiusLinear, cosine_distance, curriculum_weight, expmap0, mobius_add, mobius_matvec,
                      poincare_distance, project)
from processor.evaluation import Evaluation
from processor.knn import KNN
from processor.pretrain import Pretrain
from tools import convert_checkpoint, convert_config
from torchlight.config import load_yaml
from torchlight.io import load_checkpoint, load_weights
from torchlight.log import read_metrics

from conftest import REPO_ROOT, demo_config

UCLA = {"layout": "nw-ucla", "strategy": "spatial"}
NTU = {"layout": "ntu-rgb+d", "strategy": "spatial"}
TINY = {"hidden_channels": 8, "out_channels": 16, "projection_hidden_size": [32, 32],
        "predictor_hidden_size": [32, 32], "dropout": 0.0}


# --- independent float64 numpy references --------------------------------------------------------
def np_expmap0(v, c=1.0):
    n = np.linalg.norm(v, axis=-1, keepdims=True)
    safe = np.where(n > 0, n, 1.0)
    return np.where(n > 0, np.tanh(math.sqrt(c) * safe) * v / (math.sqrt(c) * safe), 0.0)


def np_project(x, c=1.0, eps=1e-5):
    r = (1 - eps) / math.sqrt(c)
    n = np.linalg.norm(x, axis=-1, keepdims=True)
    return np.where(n > r, x / np.where(n > 0, n, 1) * r, x)


def np_mobius_add(x, y, c=1.0):
    xy, x2, y2 = (x * y).sum(-1, keepdims=True), (x * x).sum(-1, keepdims=True), (y * y).sum(-1, keepdims=True)
    return ((1 + 2 * c * xy + c * y2) * x + (1 - c * x2) * y) / (1 + 2 * c * xy + c * c * x2 * y2)


def np_dist(x, y, c=1.0):
    """The arcosh form of the Poincaré distance (not the Möbius form the code uses)."""
    num = 2 * c * ((x - y) ** 2).sum(-1)
    den = (1 - c * (x * x).sum(-1)) * (1 - c * (y * y).sum(-1))
    return np.arccosh(1 + num / den) / math.sqrt(c)


def np_cos_dist(a, b):
    a = a / np.linalg.norm(a, axis=-1, keepdims=True)
    b = b / np.linalg.norm(b, axis=-1, keepdims=True)
    return 2 - 2 * (a * b).sum(-1)


def np_mobius_linear(w, b, x, c=1.0):
    sc = math.sqrt(c)
    xn = np.linalg.norm(x, axis=-1, keepdims=True)
    mx = x @ w.T
    mxn = np.linalg.norm(mx, axis=-1, keepdims=True)
    out = np.tanh(mxn / xn * np.arctanh(sc * xn)) / sc * mx / np.where(mxn > 0, mxn, 1)
    out = np.where(mxn > 0, out, 0.0)
    return np_project(np_mobius_add(out, np.broadcast_to(b, out.shape), c), c)


def ball_points(n, d, rng, max_radius=0.95, c=1.0):
    u = rng.standard_normal((n, d))
    u /= np.linalg.norm(u, axis=1, keepdims=True)
    return u * rng.uniform(0, max_radius, (n, 1)) / math.sqrt(c)


def t(a):
    return torch.from_numpy(np.ascontiguousarray(a))


# --- the ball ------------------------------------------------------------------------------------
@pytest.mark.parametrize("c", [1.0, 0.5, 2.0])
def test_expmap0_matches_numpy_and_the_closed_form_distance_to_the_origin(c):
    rng = np.random.default_rng(0)
    v = rng.standard_normal((64, 16)) * rng.uniform(0.01, 1.5, (64, 1))
    x = expmap0(t(v), c)
    assert x.dtype == torch.float64
    assert np.allclose(x.numpy(), np_project(np_expmap0(v, c), c), rtol=1e-12, atol=1e-14)
    # d(0, exp_0 v) = 2 / sqrt(c) artanh(sqrt(c) |x|) = 2 |v| (where the projection did not act)
    d0 = poincare_distance(torch.zeros_like(x), x, c).numpy()
    assert np.allclose(d0, 2 / math.sqrt(c) * np.arctanh(math.sqrt(c) * np.linalg.norm(x.numpy(), axis=1)),
                       rtol=1e-10)
    small = np.linalg.norm(v, axis=1) * math.sqrt(c) < 4
    assert np.allclose(d0[small], 2 * np.linalg.norm(v, axis=1)[small], rtol=1e-9)
    # float32 input: still mapped in float64, as upstream's `x.double()`
    assert torch.allclose(expmap0(t(v).float(), c), expmap0(t(v).float().double(), c), rtol=0, atol=0)


def test_projection_radius_by_dtype_keeps_inside_points_and_directions():
    rng = np.random.default_rng(1)
    u = rng.standard_normal((10, 8))
    u /= np.linalg.norm(u, axis=1, keepdims=True)
    for dtype, eps in ((torch.float64, 1e-5), (torch.float32, 4e-3)):
        for c in (1.0, 4.0):
            far = torch.from_numpy(u * np.array([0.5, 0.99, 1.0, 1.5, 1e6] * 2)[:, None] / math.sqrt(c)).to(dtype)
            p = project(far, c)
            r = np.linalg.norm(p.double().numpy(), axis=1)
            limit = (1 - eps) / math.sqrt(c)
            assert np.all(r <= limit * (1 + 1e-6)), (dtype, c, r.max(), limit)
            inside = np.linalg.norm(far.double().numpy(), axis=1) <= limit
            assert torch.equal(p[torch.from_numpy(inside)], far[torch.from_numpy(inside)])
            cos = (p.double().numpy() * u).sum(1) / r
            assert np.allclose(cos, 1.0, atol=1e-6)
            assert np.allclose(r[~inside], limit, rtol=1e-6)
    # half precision is projected in float32 (fp16 cannot hold 1 - 1e-5)
    assert project(torch.full((2, 4), 10.0, dtype=torch.float16)).dtype == torch.float32


@pytest.mark.parametrize("c", [1.0, 0.3])
def test_mobius_add_and_distance_match_numpy_and_their_identities(c):
    rng = np.random.default_rng(2)
    x, y, z = (ball_points(200, 12, rng, 0.97, c) for _ in range(3))
    assert np.allclose(mobius_add(t(x), t(y), c).numpy(), np_mobius_add(x, y, c), rtol=1e-12, atol=1e-14)
    zero = torch.zeros(200, 12, dtype=torch.float64)
    assert torch.allclose(mobius_add(zero, t(x), c), t(x)) and torch.allclose(mobius_add(t(x), zero, c), t(x))
    assert mobius_add(-t(x), t(x), c).abs().max() < 1e-12  # (-x) + x = 0
    d = poincare_distance(t(x), t(y), c).numpy()
    assert np.allclose(d, np_dist(x, y, c), rtol=1e-8, atol=1e-10)
    assert np.allclose(d, poincare_distance(t(y), t(x), c).numpy(), rtol=1e-10)  # symmetric
    assert poincare_distance(t(x), t(x), c).abs().max() < 1e-6
    dz = poincare_distance(t(x), t(z), c).numpy() + poincare_distance(t(z), t(y), c).numpy()
    assert np.all(d <= dz + 1e-9)  # triangle inequality on every sample


def test_boundary_cases_give_finite_values_and_gradients():
    cases = {
        "zero": torch.zeros(3, 8),
        "huge": torch.randn(3, 8) * 1e6 / math.sqrt(8),
        "on_radius": torch.ones(3, 8) * (0.99999 / math.sqrt(8)),
        "over_radius": torch.ones(3, 8) * (2.0 / math.sqrt(8)),
        "fp16": (torch.randn(3, 8) * 30).half(),
        "bf16": (torch.randn(3, 8) * 30).bfloat16(),
    }
    for name, v in cases.items():
        for other in (torch.zeros(3, 8), torch.randn(3, 8) * 1e6, -v.float()):
            a = v.clone().float().requires_grad_(True) if v.dtype == torch.float32 else v.clone().requires_grad_(True)
            b = other.clone().requires_grad_(True)
            x, y = expmap0(a), expmap0(b)
            assert torch.isfinite(x).all() and (x.norm(dim=1) < 1).all(), name
            loss = poincare_distance(x, y).sum() + cosine_distance(x, y).sum()
            loss.backward()
            assert torch.isfinite(loss), name
            assert torch.isfinite(a.grad).all() and torch.isfinite(b.grad).all(), name
    # the exponential map at 0: value 0, gradient the identity
    v = torch.zeros(1, 5, dtype=torch.float64, requires_grad=True)
    jac = torch.autograd.functional.jacobian(lambda z: expmap0(z), v).view(5, 5)
    assert torch.equal(expmap0(v.detach()), v.detach()) and torch.allclose(jac, torch.eye(5, dtype=torch.float64))
    # points on and over the boundary as direct inputs to the distance
    edge = project(torch.ones(2, 4, dtype=torch.float64) * 10).requires_grad_(True)
    d = poincare_distance(edge, -edge.detach())
    d.sum().backward()
    assert torch.isfinite(d).all() and torch.isfinite(edge.grad).all()


def test_distance_saturates_at_the_artanh_clamp_as_upstream():
    """geoopt clamps artanh's argument at 1 - 1e-7: the distance caps at ln(2e7) = 16.81 with no gradient."""
    u = torch.tensor([[1.0, 0.0]], dtype=torch.float64)
    w = torch.tensor([[0.0, 1.0]], dtype=torch.float64)
    q = (6.0 * u).requires_grad_(True)
    d = poincare_distance(expmap0(q), expmap0(6.0 * w))
    d.backward()
    assert d.item() == pytest.approx(math.log((2 - 1e-7) / 1e-7), rel=1e-9) and q.grad.abs().max() == 0
    q2 = (2.0 * u).requires_grad_(True)  # far from the boundary: the true distance and a gradient
    d2 = poincare_distance(expmap0(q2), expmap0(2.0 * w))
    d2.backward()
    assert d2.item() < math.log(2e7) and q2.grad.abs().max() > 0


@pytest.mark.parametrize("c", [1.0, 0.5])
def test_self_pacing_what_the_gradient_does(c):
    """The paper's self-pacing argument: the pull of a confident (large-radius) target. Numerically: the
    Euclidean gradient of d_c wrt the online point x has norm 2 / (1 - c|x|^2) whatever the target
    (the Riemannian gradient of a distance has unit norm): the target's radius does not scale it. The loss
    itself grows with the target's radius (directions >= 90 degrees from x), and so does the gradient wrt
    the Euclidean pre-image q of x for a target at a small angle (the expmap's radial / tangential gains)."""
    for rx in (0.1, 0.5, 0.9):
        for theta in (0.3, math.pi / 2, 3.0):
            grads, dists = [], []
            for ry in (0.1, 0.3, 0.5, 0.7, 0.9, 0.99):
                x = torch.tensor([rx / math.sqrt(c), 0.0, 0.0], dtype=torch.float64, requires_grad=True)
                y = torch.tensor([math.cos(theta), math.sin(theta), 0.0], dtype=torch.float64) * ry / math.sqrt(c)
                d = poincare_distance(x[None], y[None], c)
                d.backward()
                grads.append(x.grad.norm().item())
                dists.append(d.item())
            assert np.allclose(grads, 2 / (1 - rx ** 2), rtol=1e-8)  # c|x|^2 = rx^2, (rx, theta, grads)
            if theta >= math.pi / 2:
                assert np.all(np.diff(dists) > 0), (rx, theta, dists)
    # wrt the pre-image q (norm 2.94 = artanh 0.9), target 0.2 rad away: the pull grows with the target's radius
    pulls = []
    for ry in (0.1, 0.5, 0.9, 0.99):
        q = torch.tensor([[math.atanh(0.9), 0.0]], dtype=torch.float64, requires_grad=True)
        y = torch.tensor([[math.cos(0.2), math.sin(0.2)]], dtype=torch.float64) * ry
        poincare_distance(expmap0(q), y).sum().backward()
        pulls.append(q.grad.norm().item())
    assert np.all(np.diff(pulls) > 0), pulls


# --- schedule, EMA, loss -------------------------------------------------------------------------
def upstream_lambda(epoch, e0, e1):
    """HyperTrainLearner.forward, transcribed: the clip goes through float32 tensors."""
    lam = (epoch - (e0 - 1)) / ((e1 - 1) - (e0 - 1))
    lam = torch.max(torch.tensor([0, lam])).item()
    return torch.min(torch.tensor([1, lam])).item()


@pytest.mark.parametrize("e0,e1,epochs", [(50, 100, 600), (15, 30, 120), (1, 2, 3), (1, 3, 4)])
def test_curriculum_equals_upstream_for_every_epoch(e0, e1, epochs):
    model = HYSP(graph_args=NTU, initial_hyper_epoch=e0, final_hyper_epoch=e1, **TINY)
    assert [model.hyper_weight(e) for e in range(epochs)] == [upstream_lambda(e, e0, e1) for e in range(epochs)]
    if (e0, e1) == (50, 100):  # 0-based: cosine up to epoch 49, 0.02 at 50, Poincaré from 99
        assert model.hyper_weight(49) == 0.0 and model.hyper_weight(50) == float(np.float32(0.02))
        assert model.hyper_weight(98) < 1.0 == model.hyper_weight(99)
    assert HYSP(graph_args=NTU, curriculum=False, **TINY).hyper_weight(0) == 1.0
    assert HYSP(graph_args=NTU, hyper=False, **TINY).hyper_weight(500) == 0.0
    assert curriculum_weight(0, 1, 2) == 0.0 and curriculum_weight(1, 1, 2) == 1.0
    with pytest.raises(ValueError, match="final_hyper_epoch"):
        HYSP(graph_args=NTU, initial_hyper_epoch=5, final_hyper_epoch=5, **TINY)


def test_targets_start_equal_frozen_and_follow_the_ema_on_parameters_only():
    torch.manual_seed(0)
    model = HYSP(graph_args=NTU, moving_average_decay=0.9, **TINY)
    sd = model.state_dict()
    for part in ("encoder", "projector"):
        target = getattr(model, f"target_{part}")
        assert all(torch.equal(sd[f"online_{part}.{k}"], v) for k, v in target.state_dict().items())
        assert not any(p.requires_grad for p in target.parameters())
    assert {k.split(".")[0] for k in sd} == {"online_encoder", "online_projector", "online_predictor",
                                            "target_encoder", "target_projector"}
    with torch.no_grad():
        for name, b in model.named_buffers():
            if name.startswith("online_") and b.is_floating_point():
                b.add_(3.0)
        for p in model.parameters():
            if p.requires_grad:
                p.add_(1.0)
    before = {k: v.clone() for k, v in model.state_dict().items()}
    model.update_targets()
    params = {n for n, _ in model.named_parameters()}
    for k, v in model.state_dict().items():
        if k.startswith("target_") and k in params:
            assert torch.allclose(v, 0.9 * before[k] + 0.1 * before[k.replace("target_", "online_", 1)], atol=1e-6), k
        else:  # online weights, and the targets' BN statistics / graph buffer, untouched
            assert torch.equal(v, before[k]), k


def _views(n=6, seed=0):
    g = torch.Generator().manual_seed(seed)
    return [torch.randn(n, 3, 12, 25, 2, generator=g) for _ in range(2)]


@pytest.mark.parametrize("epoch,lam", [(0, 0.0), (1, 0.5), (2, 1.0)])
def test_loss_equals_an_independent_computation(epoch, lam):
    torch.manual_seed(0)
    model = HYSP(graph_args=NTU, initial_hyper_epoch=1, final_hyper_epoch=3, **TINY)
    x1, x2 = _views()
    out = model({"views": {"strong": x1, "weak": x2}, "epoch": epoch})
    assert out["lambda_hyper"].item() == lam
    with torch.no_grad():  # the same networks (no dropout; BN in train mode gives the same batch statistics)
        q1, q2 = (model.online_predictor(model.online_projector(model.online_encoder(v))).double().numpy()
                  for v in (x1, x2))
        k1, k2 = (model.target_projector(model.target_encoder(v)).double().numpy() for v in (x1, x2))
    total = 0.0
    for q, k in ((q1, k2), (q2, k1)):
        x, y = np_project(np_expmap0(q)), np_project(np_expmap0(k))
        total = total + (1 - lam) * np_cos_dist(x, y) + lam * np_dist(x, y)
    assert out["loss"].item() == pytest.approx(float(np.mean(total / 2)), rel=1e-6)  # float32 nets, any threads
    out["loss"].backward()
    grads = [p.grad for p in model.parameters() if p.requires_grad]
    assert all(g is not None and torch.isfinite(g).all() for g in grads)
    assert all(p.grad is None for p in model.parameters() if not p.requires_grad)
    # hyper: false is plain cosine BYOL on the raw outputs (upstream's TrainLearner)
    plain = HYSP(graph_args=NTU, hyper=False, **TINY)
    plain.load_state_dict(model.state_dict())
    expect = np.mean((np_cos_dist(q1, k2) + np_cos_dist(q2, k1)) / 2)
    assert plain({"views": {"strong": x1, "weak": x2}, "epoch": epoch})["loss"].item() == pytest.approx(float(expect), rel=1e-5)


def test_clip_r_bounds_the_distance():
    torch.manual_seed(0)
    model = HYSP(graph_args=NTU, curriculum=False, clip_r=2.0, **TINY)
    q, k = torch.randn(4, 32) * 50, torch.randn(4, 32) * 50
    _, hyp, x, y = model.pair_losses(q, k, 1.0)
    assert (hyp <= 8.0 + 1e-9).all() and torch.allclose(x.norm(dim=1), torch.tanh(torch.tensor(2.0)).double())


# --- the evaluation heads ------------------------------------------------------------------------
def test_mobius_linear_matches_numpy_and_ignores_autocast():
    torch.manual_seed(0)
    layer = MobiusLinear(16, 5)
    assert layer.bias.norm() < 0.1 and layer.weight.std().item() == pytest.approx(
        1 / math.sqrt(2 * 16 * 5) / 100, rel=0.3)
    with torch.no_grad():
        layer.weight.normal_(0, 0.5)
        layer.bias.copy_(expmap0(torch.randn(5) * 0.3).float())
        layer.weight[2] = 0.0  # a zero row of W x
    rng = np.random.default_rng(3)
    x = ball_points(7, 16, rng, 0.9)
    expected = np_mobius_linear(layer.weight.detach().double().numpy(), layer.bias.detach().double().numpy(), x)
    out = layer(t(x).float())
    assert out.dtype == torch.float64
    assert np.allclose(out.detach().numpy(), expected, rtol=1e-6, atol=1e-7)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        assert torch.equal(layer(t(x).float()), out)
    zero_rows = torch.zeros(2, 16)
    assert torch.allclose(mobius_matvec(layer.weight.double(), zero_rows.double()), torch.zeros(2, 5).double())


def test_evaluation_heads_keys_and_param_groups():
    lin = HYSP(graph_args=NTU, pretrain=False, hyper=False, num_classes=7, encoder_lr=0.1, **TINY)
    hyp = HYSP(graph_args=NTU, pretrain=False, hyper=True, num_classes=7, encoder_lr=0.1, **TINY)
    for m in (lin, hyp):
        head = [k for k in m.state_dict() if k.startswith("online_projector")]
        assert head == ["online_projector.net.0.weight", "online_projector.net.0.bias"]
        assert m.head_prefixes() == ["online_projector"]
        assert tuple(m.state_dict()["online_projector.net.0.weight"].shape) == (7, 16)
        groups = m.param_groups({"base_lr": 10.0})
        assert groups[0]["lr_scale"] == pytest.approx(0.01) and len(groups[1]["params"]) == 2
    x = _views(3)[0]
    assert lin.eval()(x).dtype == torch.float32 and hyp.eval()(x).dtype == torch.float64
    # fp16 autocast with a loss scaler (the linear protocol's amp: fp16): finite and float64 head grads
    scaler = torch.amp.GradScaler("cpu")
    opt = torch.optim.SGD(hyp.online_projector.parameters(), lr=10.0, momentum=0.9)
    with torch.autocast("cpu", dtype=torch.float16):
        loss = torch.nn.functional.cross_entropy(hyp(x).float(), torch.tensor([0, 1, 2]))
    scaler.scale(loss).backward()
    scaler.step(opt)
    scaler.update()
    assert all(torch.isfinite(p).all() for p in hyp.online_projector.parameters())


# --- data ----------------------------------------------------------------------------------------
def test_feeder_double_is_strong_then_weak(nw_ucla_small):
    ds = Feeder_double(str(nw_ucla_small / "train_position.npy"), str(nw_ucla_small / "train_label.pkl"),
                       shear_amplitude=0.5, temperal_padding_ratio=6)
    assert ds.view_recipe.names == ("strong", "weak") and ds.view_recipe.aug_method == "123456"
    x = ds.__getitems__(list(range(8)))[0]
    views = ds.view_recipe(x, torch.Generator().manual_seed(5))
    g = torch.Generator().manual_seed(5)
    normal = ds.view_recipe.normal
    strong = augment.extreme_augment(normal(x, g), "123456", ds.layout.flip_permutation, generator=g)
    weak = normal(x, g)
    assert torch.equal(views["strong"], strong) and torch.equal(views["weak"], weak)


def test_streams_match_upstream_process_stream():
    from feeder.streams import to_stream
    bones = [(1, 2), (2, 21), (3, 21), (4, 3), (5, 21), (6, 5), (7, 6), (8, 7), (9, 21), (10, 9), (11, 10),
             (12, 11), (13, 1), (14, 13), (15, 14), (16, 15), (17, 1), (18, 17), (19, 18), (20, 19), (21, 21),
             (22, 23), (23, 8), (24, 25), (25, 12)]  # upstream's list: (21, 21) before (22, 23)
    x = torch.randn(2, 3, 10, 25, 2, dtype=torch.float64)
    bone = torch.zeros_like(x)
    for a, b in bones:
        bone[:, :, :, a - 1] = x[:, :, :, a - 1] - x[:, :, :, b - 1]
    motion = torch.zeros_like(x)
    motion[:, :, :-1] = x[:, :, 1:] - x[:, :, :-1]
    assert torch.equal(to_stream(x, "bone"), bone) and torch.equal(to_stream(x, "motion"), motion)


# --- configs -------------------------------------------------------------------------------------
BENCHES = [("ntu60", "xview"), ("ntu60", "xsub"), ("ntu120", "xsub"), ("ntu120", "xset"), ("pku_part1", "xsub")]
EVAL = {("ntu60", "xview"): (1.0, False, 1024), ("ntu60", "xsub"): (10.0, True, 256),
        ("ntu120", "xsub"): (10.0, True, 256), ("ntu120", "xset"): (10.0, False, 1024),
        ("pku_part1", "xsub"): (1.0, False, 256)}
PRE = {("ntu60", "xview"): (600, [400], 0.2), ("ntu60", "xsub"): (400, [300, 400], 0.2),
       ("ntu120", "xsub"): (400, [300, 400], 0.2), ("ntu120", "xset"): (400, [300, 400], 0.2),
       ("pku_part1", "xsub"): (600, [200, 400], 0.4)}
COMMAND = re.compile(r"python main\.py (\S+) --config (\S+)")


@pytest.mark.parametrize("ds,bench", BENCHES)
@pytest.mark.parametrize("stream", ["joint", "motion", "bone"])
def test_configs_hold_the_published_values(ds, bench, stream):
    rel = {fam: f"config/{ds}/{fam}/{name}_hysp_{bench}_{stream}.yaml" for fam, name in
           (("pretext", "pretext"), ("linear_eval", "linear_eval"), ("semi", "semi10"),
            ("finetune_eval", "finetune_eval"))}
    cfg = {fam: load_yaml(os.path.join(REPO_ROOT, p)) for fam, p in rel.items()}
    procs = {"pretext": "pretrain_hysp", "linear_eval": "linear_evaluation", "semi": "semi_evaluation",
             "finetune_eval": "finetune_evaluation"}
    for fam, path in rel.items():
        with open(os.path.join(REPO_ROOT, path)) as f:
            assert COMMAND.search(f.read()).groups() == (procs[fam], path)
        assert cfg[fam]["model"] == "net.hysp.HYSP" and cfg[fam]["stream"] == stream
    pre = cfg["pretext"]
    args = pre["model_args"]
    assert (args["hidden_channels"], args["out_channels"], args["projection_hidden_size"],
            args["predictor_hidden_size"], args["moving_average_decay"], args["hyper"], args["curriculum"],
            args["initial_hyper_epoch"], args["final_hyper_epoch"], args["hyper_c"]) == \
        (64, 1024, [1024, 1024], [1024, 1024], 0.999, True, True, 50, 100, 1.0)
    assert (pre["num_epoch"], pre["step"], pre["base_lr"]) == PRE[(ds, bench)]
    assert (pre["batch_size"], pre["weight_decay"], pre["momentum"], pre["nesterov"], pre["amp"],
            pre["train_feeder"]) == (512, 1e-4, 0.9, False, "off", "feeder.ntu_feeder.Feeder_double")
    assert pre["train_feeder_args"]["data_path"] == f"./data/{ds}_frame50/{bench}/train_position.npy"
    lr, hyper, batch = EVAL[(ds, bench)]
    for fam in ("linear_eval", "semi", "finetune_eval"):
        ev = cfg[fam]
        assert ev["weights"] == f"{pre['work_dir']}/epoch300_model.pt" and 300 % pre["save_interval"] == 0
        assert (ev["base_lr"], ev["model_args"]["hyper"], ev["batch_size"], ev["model_args"]["encoder_lr"],
                ev["weight_decay"], ev["num_epoch"]) == (lr, hyper, batch, 0.1, 0.0, 100)
        assert ev["model_args"]["num_classes"] == {"ntu60": 60, "ntu120": 120, "pku_part1": 51}[ds]
        assert ev["step"] == ([70] if ds == "pku_part1" else [60, 80])
        assert ev["amp"] == ("fp16" if fam == "linear_eval" else "off")
        assert ev["protocol"] == ("linear" if fam == "linear_eval" else "finetune")
    assert cfg["semi"]["label_fraction"] == 0.1 and "label_fraction" not in cfg["finetune_eval"]


# --- converters ----------------------------------------------------------------------------------
def lightning_checkpoint(model, cfg_ns) -> dict:
    """The structure trainer.save_checkpoint writes for HYSP's HyperTrainLearner (self.model = HYSP)."""
    return {"epoch": 299, "global_step": 2e4 // 1, "pytorch-lightning_version": "1.9.4",
            "state_dict": {f"model.{k}": v for k, v in model.state_dict().items()},
            "loops": {"fit_loop": {"state_dict": {}}}, "callbacks": {"PeriodicCheckpoint": {}},
            "optimizer_states": [{"state": {}, "param_groups": [{"lr": 0.2, "momentum": 0.9}]}],
            "lr_schedulers": [{"milestones": {400: 1}, "gamma": 0.1}], "hparams_name": "cfg",
            "hyper_parameters": {"cfg": cfg_ns}}


def test_lightning_checkpoint_converts_and_loads(tmp_path):
    convert_lightning(tmp_path)


def convert_lightning(tmp_path):
    torch.manual_seed(0)
    pre = HYSP(graph_args=UCLA, **TINY)
    cfg_ns = argparse.Namespace(model="hysp", stream="motion", hyper=True, curriculum=True, initial_hyper_epoch=50,
                                final_hyper_epoch=100, num_epoch=600, precision=32,
                                model_args=argparse.Namespace(hyper_c=1.0))
    src = tmp_path / "epoch-300.ckpt"
    torch.save(lightning_checkpoint(pre, cfg_ns), src)
    with pytest.raises(Exception):
        torch.load(src, weights_only=True)  # the Namespace needs unpickling: why converting helps
    assert convert_checkpoint.main([str(src), str(tmp_path / "hysp.pt")]) == 0
    out = torch.load(tmp_path / "hysp.pt", weights_only=True)
    info = out["converted_from"]
    assert (info["layout"], info["upstream_stream"], info["upstream_hyper"], info["epoch"]) == \
        ("lightning", "motion", True, 299)
    assert list(out["model"]) == list(pre.state_dict())
    ev = HYSP(graph_args=UCLA, pretrain=False, hyper=True, num_classes=10, **TINY)
    ignore = load_yaml(os.path.join(REPO_ROOT, "config", "_hysp_eval.yaml"))["ignore_weights"]
    report = load_weights(ev, str(tmp_path / "hysp.pt"), ignore=ignore, allow_missing=ev.head_prefixes())
    assert sorted(report.missing) == ["online_projector.net.0.bias", "online_projector.net.0.weight"]
    assert all(torch.equal(v, pre.state_dict()[k]) for k, v in ev.state_dict().items() if k.startswith("online_enc"))
    # the raw .ckpt loads as well, with the prefix renamed in the config
    load_weights(ev, str(src), ignore=ignore, rename={"model.": ""}, allow_missing=ev.head_prefixes())
    enc = convert_checkpoint.main([str(src), str(tmp_path / "enc.pt"), "--encoder_only"])
    assert enc == 0 and all(k.startswith("online_encoder.") for k in torch.load(tmp_path / "enc.pt")["model"])
    return tmp_path / "hysp.pt"


UPSTREAM_PRETEXT = """work_dir: checkpoints/hysp_xsub_joint
resume_from: None
weights: None
device: 4
num_workers: 64
batch_size: 512
val_batch_size: 512
num_epoch: 400
stream: joint
hyper: True
precision: 32
nesterov: False
weight_decay: 1e-4
base_lr: 0.2
optimizer: RiemannianSGD
scheduler: step
step: [300, 400]
warmup_step: 10
log_interval: 25
save_interval: 25
eval_interval: -1
wandb: {enable: True, name: "HYSP - 60 xsub joint", group: dev, project: hysp, entity: x, save_dir: ./}
model: hysp
model_args: {pretrain: True, in_channels: 3, hidden_channels: 64, out_channels: 1024,
  projection_hidden_size: [1024,1024], predictor_hidden_size: [1024,1024], moving_average_decay: 0.999,
  dropout: 0.5, graph_args: {layout: ntu-rgb+d, strategy: spatial}, edge_importance_weighting: True, hyper_c: 1.}
curriculum: True
initial_hyper_epoch: 50
final_hyper_epoch: 100
train_feeder_args: {data_path: ./data/ntu60_frame50/xsub/train_position.npy,
  label_path: ./data/ntu60_frame50/xsub/train_label.pkl, shear_amplitude: 0.5, temperal_padding_ratio: 6,
  mmap: True, new_augs: False}
val_feeder_args: {data_path: ./data/ntu60_frame50/xsub/val_position.npy,
  label_path: ./data/ntu60_frame50/xsub/val_label.pkl, shear_amplitude: 0.5, temperal_padding_ratio: 6,
  mmap: True, new_augs: False}
"""
UPSTREAM_EVAL = """work_dir: checkpoints/hysp/ntu60/xview_joint
weights: checkpoints/hysp/ntu60/xview_joint/epoch-300.ckpt
ignore_weights: [online_projector, online_predictor, target_encoder, target_projector, queue]
device: [0,1]
batch_size: 256
num_workers: 24
test_batch_size: 128
num_epoch: 100
stream: bone
protocol: PROTOCOL
hyper: true
precision: PRECISION
nesterov: False
weight_decay: 0.0
base_lr: 10.
encoder_lr: 0.1
optimizer: SGD
step: [60, 80]
model: hysp
model_args: {pretrain: False, base_encoder: stgcn, in_channels: 3, hidden_channels: 64, out_channels: 1024,
  num_classes: 60, graph_args: {layout: ntu-rgb+d, strategy: spatial}, edge_importance_weighting: True, hyper_c: 1.}
save_interval: -1
eval_interval: 5
wandb: {enable: False, name: HYSP - eval, group: dev, project: hysp}
train_feeder_args: {data_path: ./data/ntu60_frame50/xview/train_position.npy,
  label_path: ./data/ntu60_frame50/xview/train_label.pkl, shear_amplitude: -1, temperal_padding_ratio: -1, mmap: True}
test_feeder_args: {data_path: ./data/ntu60_frame50/xview/val_position.npy,
  label_path: ./data/ntu60_frame50/xview/val_label.pkl, shear_amplitude: -1, temperal_padding_ratio: -1, mmap: True}
"""


def test_convert_config_maps_hysp_pretext(tmp_path):
    src = tmp_path / "pretext_xsub.yaml"
    src.write_text(UPSTREAM_PRETEXT)
    cfg, processor, notes, unmapped = convert_config.convert(str(src), out_path=str(tmp_path / "o.yaml"))
    full = convert_config.validate_output(cfg, processor, str(tmp_path / "o.yaml"))
    assert processor == "pretrain_hysp" and full["model"] == "net.hysp.HYSP"
    args = full["model_args"]
    assert (args["hyper"], args["curriculum"], args["initial_hyper_epoch"], args["final_hyper_epoch"],
            args["base_encoder"]) == (True, True, 50, 100, "net.st_gcn.Model")
    assert (full["amp"], full["optimizer"], full["base_lr"], full["step"], full["weight_decay"], full["batch_size"],
            full["train_feeder"], full["weights"]) == \
        ("off", "RiemannianSGD", 0.2, [300, 400], 1e-4, 512, "feeder.ntu_feeder.Feeder_double", None)
    assert args["ema_update"] == "before_backward"
    assert "new_augs" not in full["train_feeder_args"]
    lost = " ".join(unmapped)
    for key in ("val_batch_size", "val_feeder_args", "new_augs", "wandb.save_dir"):
        assert key in lost, key
    assert any("RiemannianSGD" in n for n in notes)
    assert convert_config.main([str(src), "--out", str(tmp_path / "o.yaml")]) == 0


@pytest.mark.parametrize("protocol,processor,precision,amp", [("linear", "linear_evaluation", 16, "fp16"),
                                                             ("semi", "semi_evaluation", 32, "off"),
                                                             ("supervised", "finetune_evaluation", 32, "off")])
def test_convert_config_maps_hysp_evaluations(tmp_path, protocol, processor, precision, amp):
    src = tmp_path / "eval_xview.yaml"
    src.write_text(UPSTREAM_EVAL.replace("PROTOCOL", protocol).replace("PRECISION", str(precision)))
    cfg, name, notes, unmapped = convert_config.convert(str(src), out_path=str(tmp_path / "o.yaml"))
    full = convert_config.validate_output(cfg, name, str(tmp_path / "o.yaml"))
    assert name == processor and full["amp"] == amp and full["stream"] == "bone"
    assert (full["model_args"]["hyper"], full["model_args"]["encoder_lr"], full["base_lr"]) == (True, 0.1, 10.0)
    assert full["batch_size"] == 256 * 2 * 2  # per GPU x 2 GPUs x accumulate_grad_batches 2
    assert full["rename_weights"] == {"model.": ""} and full["weights"].endswith("epoch-300.ckpt")
    assert full["work_dir"].endswith(f"/{protocol}")
    assert full.get("label_fraction", 1.0) == (0.1 if protocol == "semi" else 1.0)
    assert full["train_feeder"] == full["test_feeder"] == "feeder.ntu_feeder.Feeder_single"


def test_nw_ucla_demo_clips_the_saturated_projections(nw_ucla_small):
    """The demo's clip_r 1.0 against its reason: on real NW-UCLA sequences the default-initialised projector
    of the demo model puts online and target points at radius ~1.000 (where the distance saturates) unless
    clipped, and at tanh(1) with the clip; the Poincaré loss stays finite and differentiable."""
    cfg = load_yaml(os.path.join(REPO_ROOT, "config", "demo", "hysp_pretrain.yaml"))
    assert cfg["model_args"]["clip_r"] == 1.0 and cfg["train_feeder_args"]["aug_method"] == "12346"
    feeder_args = {k: v for k, v in cfg["train_feeder_args"].items() if k not in ("data_path", "label_path")}
    ds = Feeder_double(str(nw_ucla_small / "train_position.npy"), str(nw_ucla_small / "train_label.pkl"),
                       **feeder_args)
    views = ds.view_recipe(ds.__getitems__(list(range(0, 50, 5)))[0], torch.Generator().manual_seed(0))
    radii = {}
    for clip_r in (None, 1.0):
        torch.manual_seed(0)
        model = HYSP(**{**cfg["model_args"], "clip_r": clip_r}).train()
        out = model({"views": views, "epoch": cfg["model_args"]["final_hyper_epoch"]})
        assert out["lambda_hyper"].item() == 1.0 and torch.isfinite(out["loss"])
        out["loss"].backward()
        radii[clip_r] = (out["radius_online"].item(), out["radius_target"].item())
    assert min(radii[None]) > 0.999
    assert radii[1.0] == pytest.approx((math.tanh(1.0), math.tanh(1.0)), abs=1e-6)


# --- end to end ----------------------------------------------------------------------------------
def demo(name, data, work_dir, **overrides):
    return demo_config(name, data, work_dir, model_args={**TINY, **overrides.pop("model_args", {})}, **overrides)


def pretrain_cfg(data, work_dir, **overrides):
    return demo("hysp_pretrain.yaml", data, work_dir, model_args={"initial_hyper_epoch": 1, "final_hyper_epoch": 3},
                **{"num_epoch": 2, "batch_size": 25, "save_interval": 1, **overrides})


@pytest.fixture(scope="module")
def pretrained(nw_ucla_small, tmp_path_factory):
    work = tmp_path_factory.mktemp("hysp_pretext")
    Pretrain(pretrain_cfg(nw_ucla_small, work), name="pretrain_hysp").run()
    return work


def test_pretraining_crosses_into_the_hyperbolic_phase(pretrained):
    history = read_metrics(pretrained / "metrics.jsonl")
    assert [h["epoch"] for h in history] == [1, 2] and [h["lambda_hyper"] for h in history] == [0.0, 0.5]
    assert all(np.isfinite(h["loss"]) for h in history)
    assert history[0]["loss"] == pytest.approx(history[0]["loss_euc"])
    assert history[1]["loss"] == pytest.approx(0.5 * history[1]["loss_euc"] + 0.5 * history[1]["loss_hyp"], rel=0.2)
    e1 = load_checkpoint(str(pretrained / "epoch1_model.pt"))["model"]
    assert any(not torch.equal(e1[k], e1[k.replace("target_", "online_", 1)])
               for k in e1 if k.startswith("target_") and k.endswith("weight"))


@pytest.mark.parametrize("ema_update", ["before_backward", "after_step"])
def test_targets_move_from_the_online_weights_before_or_after_the_step(nw_ucla_small, tmp_path, ema_update):
    """before_backward (upstream's Lightning hook): the targets follow the online weights the forward pass used;
    after_step: the weights the optimiser step wrote. One real training step, both timings."""
    cfg = pretrain_cfg(nw_ucla_small, tmp_path)
    cfg["model_args"].update(moving_average_decay=0.5, ema_update=ema_update)
    proc = Pretrain(cfg, name="pretrain_hysp")
    model = proc.module
    online0 = {n: p.detach().clone() for n, p in model.named_parameters() if n.startswith("online_")}
    target0 = {n: p.detach().clone() for n, p in model.named_parameters() if n.startswith("target_")}
    x, label, index = next(iter(proc.train_loader))
    proc.train_step(x, label, index, 0, 0)
    online1 = {n: p.detach() for n, p in model.named_parameters() if n.startswith("online_")}
    source = online0 if ema_update == "before_backward" else online1
    moved = 0
    for name, p in model.named_parameters():
        if name.startswith("target_"):
            twin = name.replace("target_", "online_", 1)
            torch.testing.assert_close(p.detach(), 0.5 * target0[name] + 0.5 * source[twin], rtol=0, atol=1e-6)
            moved += not torch.equal(online0[twin], online1[twin])
    assert moved > 10  # the step changed the online weights, so the two timings give other targets


def test_resume_continues_exactly(pretrained, nw_ucla_small, tmp_path):
    resumed = tmp_path / "resumed"
    Pretrain(pretrain_cfg(nw_ucla_small, resumed, num_epoch=1), name="pretrain_hysp").run()
    Pretrain(pretrain_cfg(nw_ucla_small, resumed, num_epoch=2), name="pretrain_hysp").run()
    a, b = read_metrics(pretrained / "metrics.jsonl"), read_metrics(resumed / "metrics.jsonl")
    assert [h["loss"] for h in a] == [h["loss"] for h in b]
    wa = load_checkpoint(str(pretrained / "latest.pt"))["model"]
    wb = load_checkpoint(str(resumed / "latest.pt"))["model"]
    assert all(torch.equal(wa[k], wb[k]) for k in wa)


@pytest.mark.parametrize("hyper", [True, False])
def test_linear_probe_and_knn_from_the_checkpoint(pretrained, nw_ucla_small, tmp_path, hyper):
    weights = str(pretrained / "latest.pt")
    cfg = demo("hysp_linear.yaml", nw_ucla_small, tmp_path / "lin", weights=weights, num_epoch=2, batch_size=16,
               eval_interval=1, model_args={"hyper": hyper}, base_lr=10.0 if hyper else 1.0)
    run = Evaluation(cfg, name="linear_evaluation")
    run.run()
    assert sorted(n for n, p in run.model.named_parameters() if p.requires_grad) == \
        ["online_projector.net.0.bias", "online_projector.net.0.weight"]
    history = read_metrics(tmp_path / "lin" / "metrics.jsonl")
    assert len(history) == 2 and all(np.isfinite(h["loss"]) for h in history)
    assert (tmp_path / "lin" / "test_result.pkl").is_file()  # scores for tools/ensemble.py
    if hyper:
        knn = demo("hysp_knn.yaml", nw_ucla_small, tmp_path / "knn", weights=weights, knn_k=[1, 5])
        KNN(knn, name="knn").run()
        with open(tmp_path / "knn" / "results.json") as f:
            assert 0.0 <= json.load(f)["top1"] <= 100.0


def test_finetune_uses_the_encoder_lr(pretrained, nw_ucla_small, tmp_path):
    cfg = demo("hysp_linear.yaml", nw_ucla_small, tmp_path / "ft", weights=str(pretrained / "latest.pt"),
               num_epoch=1, batch_size=16, eval_interval=1, protocol="finetune", base_lr=1.0,
               label_fraction=0.5)
    run = Evaluation(cfg, name="semi_evaluation")
    lrs = sorted(g["lr_scale"] for g in run.optimizer.param_groups)
    assert lrs == [pytest.approx(0.1), 1.0]
    run.run()
    assert len(read_metrics(tmp_path / "ft" / "metrics.jsonl")) == 1


def test_converted_lightning_checkpoint_runs_a_linear_probe(nw_ucla_small, tmp_path):
    path = convert_lightning(tmp_path)
    cfg = demo("hysp_linear.yaml", nw_ucla_small, tmp_path / "lin", weights=str(path), num_epoch=1, batch_size=16,
               eval_interval=1)
    Evaluation(cfg, name="linear_evaluation").run()
    assert len(read_metrics(tmp_path / "lin" / "metrics.jsonl")) == 1
