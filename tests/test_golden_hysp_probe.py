"""HYSP's hyperbolic evaluation head against upstream's (tests/golden/hysp_probe.npz; how it was made:
tests/golden/notes/hysp_probe.md).

The golden is upstream's own head (paolomandica/HYSP `src/`, geoopt 0.5.1) on fixed features: exp_0 of the
feature, MobiusLinear, nn.CrossEntropyLoss on its outputs used as logits, torch SGD (lr 10, momentum 0.9, no
weight decay, as EvalLearner builds it for the `hyper: true` eval configs). Two cases at the NW-UCLA demo's
width (16 samples, 256 features, 10 classes): `a` features of norm 0.2-2.5 with upstream's init scale of
the weight, `b` non-negative features of norm up to 40 (mapped to the boundary) with a larger weight.
Here: `net.hysp._Classifier` / `HYSP.forward_head` with the same weights, in float64 (to 1e-8 relative to
each quantity's largest entry; 1e-7 after three steps) and with float32 parameters as the processor runs it.
"""
import math
import os

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from net.hysp import HYSP, _Classifier

GOLDEN = os.path.join(os.path.dirname(os.path.abspath(__file__)), "golden", "hysp_probe.npz")
CASES = ("a", "b")
N, D, C = 16, 256, 10


@pytest.fixture(scope="module")
def golden():
    return dict(np.load(GOLDEN))


def _head(g, case, dtype):
    head = _Classifier(D, C, hyper=True, c=1.0).to(dtype)
    layer = head.net[0]
    with torch.no_grad():
        layer.weight.copy_(torch.from_numpy(g[f"{case}_W0"]))
        layer.bias.copy_(torch.from_numpy(g[f"{case}_b0"]))
    return head, layer


def _close(ours, ref, tol, what):
    ours = ours.detach().cpu().double().numpy() if torch.is_tensor(ours) else np.asarray(ours, np.float64)
    ref = np.asarray(ref, np.float64)
    scale = max(np.abs(ref).max(), 1e-300)
    err = np.abs(ours - ref).max() / scale
    assert err <= tol, f"{what}: max |ours - upstream| / max |upstream| = {err:.3g} > {tol:g}"
    return err


def _sgd(layer, g):
    lr, momentum, wd, _ = g["meta_lr_momentum_wd_steps"]
    return torch.optim.SGD(layer.parameters(), lr=float(lr), momentum=float(momentum), weight_decay=float(wd),
                           nesterov=False)


@pytest.mark.parametrize("case", CASES)
def test_float64_forward_loss_gradients_and_sgd_steps(golden, case):
    g = golden
    head, layer = _head(g, case, torch.float64)
    x = torch.from_numpy(g[f"{case}_x"]).double()
    y = torch.from_numpy(g[f"{case}_y"])
    opt = _sgd(layer, g)
    steps = int(g["meta_lr_momentum_wd_steps"][3])
    for step in range(steps):
        out = head(x)
        loss = F.cross_entropy(out, y)  # upstream: nn.CrossEntropyLoss on the float64 ball coordinates
        opt.zero_grad()
        loss.backward()
        if step == 0:
            assert out.dtype == torch.float64
            _close(out, g[f"{case}_out"], 1e-8, "head output")
            _close(loss, g[f"{case}_loss"], 1e-8, "cross-entropy")
            _close(layer.weight.grad, g[f"{case}_gW"], 1e-8, "weight gradient")
            _close(layer.bias.grad, g[f"{case}_gb"], 1e-8, "bias gradient")
        opt.step()
        if step == 0:
            _close(layer.weight, g[f"{case}_W1"], 1e-8, "weight after one SGD step")
            _close(layer.bias, g[f"{case}_b1"], 1e-8, "bias after one SGD step")
    # After the first lr-10 step every output sits on the projection radius 1 - 1e-5, where the maps amplify
    # rounding ~1e5-fold (the two codes differ at 3e-9 here): 1e-7 for the later steps.
    _close(layer.weight, g[f"{case}_W3"], 1e-7, f"weight after {steps} SGD steps (momentum)")
    _close(layer.bias, g[f"{case}_b3"], 1e-7, f"bias after {steps} SGD steps (momentum)")


@pytest.mark.parametrize("case", CASES)
def test_float32_parameters_as_the_processor_trains_them(golden, case):
    """float32 parameters and features (the head still computes in float64) and the processor's loss
    (cross-entropy of the outputs cast to float32), against upstream's head with its float32 parameters.
    Upstream's float32 path squares its float32 bias in float32 inside the Möbius addition (ours casts the
    bias to float64 first), and the float32 loss rounds: agreement to 5e-7 of each quantity's largest entry."""
    g = golden
    head, layer = _head(g, case, torch.float32)
    x = torch.from_numpy(g[f"{case}_x"])
    y = torch.from_numpy(g[f"{case}_y"])
    out = head(x)
    assert out.dtype == torch.float64 and layer.weight.dtype == torch.float32
    loss = F.cross_entropy(out.float(), y)
    opt = _sgd(layer, g)
    opt.zero_grad()
    loss.backward()
    _close(out, g[f"{case}_out32"], 5e-7, "head output (float32 parameters)")
    _close(loss, g[f"{case}_loss32"], 5e-7, "cross-entropy (float32)")
    _close(layer.weight.grad, g[f"{case}_gW32"], 5e-7, "weight gradient (float32)")
    _close(layer.bias.grad, g[f"{case}_gb32"], 5e-7, "bias gradient (float32)")
    opt.step()
    _close(layer.weight, g[f"{case}_W1_32"], 5e-7, "weight after one SGD step (float32)")
    _close(layer.bias, g[f"{case}_b1_32"], 5e-7, "bias after one SGD step (float32)")


def test_the_model_builds_this_head_and_maps_features_through_exp0(golden):
    """HYSP(pretrain=False, hyper=True).forward_head is exp_0 then the Möbius layer, under upstream's key."""
    g = golden
    torch.manual_seed(0)
    model = HYSP(pretrain=False, in_channels=3, hidden_channels=16, out_channels=D, num_classes=C, hyper=True,
                 graph_args={"layout": "nw-ucla", "strategy": "spatial"})
    sd = model.state_dict()
    assert "online_projector.net.0.weight" in sd and "online_projector.net.0.bias" in sd
    model.load_state_dict({**sd, "online_projector.net.0.weight": torch.from_numpy(g["b_W0"]),
                           "online_projector.net.0.bias": torch.from_numpy(g["b_b0"])})
    with torch.no_grad():
        out = model.forward_head(torch.from_numpy(g["b_x"]))
    _close(out, g["b_out32"], 5e-7, "HYSP.forward_head")


def test_what_upstream_does_that_explains_the_nw_ucla_probe(golden):
    """Upstream's quirks, recorded by the golden and shared by this head (tests/golden/notes/hysp_probe.md):
    the outputs used as logits are points of the unit ball, so the cross-entropy cannot go below
    ln(1 + (C - 1) exp(-sqrt(C / (C - 1)))) (1.42 for 10 classes, ln 10 = 2.30); one plain SGD step at lr 10
    puts every output on the projection radius and takes the bias, a 'point of the ball', out of the ball."""
    g = golden
    floor = math.log(1 + (C - 1) * math.exp(-math.sqrt(C / (C - 1))))
    for case in CASES:
        assert np.linalg.norm(g[f"{case}_out"], axis=1).max() < 1
        assert np.linalg.norm(g[f"{case}_b0"]) < 1 < np.linalg.norm(g[f"{case}_b1"])
    head, layer = _head(g, "a", torch.float64)
    x = torch.from_numpy(g["a_x"]).double()
    y = torch.from_numpy(g["a_y"])
    opt = _sgd(layer, g)
    for _ in range(2):
        out = head(x)
        opt.zero_grad()
        F.cross_entropy(out, y).backward()
        opt.step()
    with torch.no_grad():
        radius = head(x).norm(dim=1)
        np.testing.assert_allclose(radius.numpy(), 1 - 1e-5, rtol=0, atol=1e-12)
        # even the best unit-norm logits for every sample stay above the floor
        best = torch.full((N, C), -1 / math.sqrt(C * (C - 1)), dtype=torch.float64)
        best[torch.arange(N), y] = math.sqrt((C - 1) / C)
        assert abs(best.norm(dim=1) - 1).max() < 1e-12
        assert abs(F.cross_entropy(best, y).item() - floor) < 1e-12
        assert F.cross_entropy(head(x), y).item() > floor
