"""ST-GCN numerics on this CPU: the strided residual conv must give correct gradients at any width.

oneDNN 3.12 (torch 2.13 CPU) corrupts memory in the backward-weights of a strided 1x1 conv on
channels-last input whose channel count is not a multiple of its block (net/st_gcn.py,
StridedConv1x1): with 1 thread the process dies, with 2 the weight gradients are sometimes wrong.
"""
import copy
import os
import subprocess
import sys

import torch

from net.st_gcn import Model, StridedConv1x1

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def small_model(h=4):
    torch.manual_seed(0)
    return Model(in_channels=3, hidden_channels=h, hidden_dim=16, num_class=5, dropout=0.0,
                 graph_args={"layout": "nw-ucla", "strategy": "spatial"})


def test_strided_conv_equals_torch_conv():
    conv = StridedConv1x1(4, 8, 1, (2, 1)).double()
    ref = torch.nn.Conv2d(4, 8, 1, (2, 1)).double()
    ref.load_state_dict(conv.state_dict())
    x = torch.randn(3, 4, 13, 20, dtype=torch.float64, requires_grad=True)
    x_ref = x.detach().clone().requires_grad_()
    conv(x).square().sum().backward()
    ref(x_ref).square().sum().backward()
    assert torch.allclose(conv.weight.grad, ref.weight.grad)
    assert torch.allclose(x.grad, x_ref.grad)
    assert conv(x).shape == ref(x).shape == (3, 8, 7, 20)


def test_weight_gradients_match_float64_at_a_narrow_width():
    """Every parameter gradient of a 4-channel ST-GCN (block 4's residual sees 4 channels) in float32
    equals the float64 computation, on every one of several repeats (the oneDNN bug was intermittent)."""
    model = small_model()
    model64 = copy.deepcopy(model).double()
    x = torch.randn(4, 3, 16, 20, 1)
    for _ in range(8):
        model.zero_grad()
        model64.zero_grad()
        model(x).square().sum().backward()
        model64(x.double()).square().sum().backward()
        for (name, p), p64 in zip(model.named_parameters(), model64.parameters()):
            assert torch.allclose(p.grad.double(), p64.grad, rtol=1e-3, atol=1e-4), name


def test_one_thread_backward_does_not_corrupt_memory():
    """In a fresh process with one thread (where the oneDNN path crashed every time), repeated backward
    passes of a narrow ST-GCN finish and print their gradient norm."""
    code = ("import torch; torch.set_num_threads(1)\n"
            "from tests.test_st_gcn import small_model\n"
            "m = small_model(); x = torch.randn(4, 3, 16, 20, 1)\n"
            "for _ in range(10):\n"
            "    m.zero_grad(); m(x).square().sum().backward()\n"
            "print(float(m.st_gcn_networks[4].residual[0].weight.grad.norm()))\n")
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=120,
                         env={**os.environ, "PYTHONPATH": ROOT})
    assert out.returncode == 0, out.stderr[-1500:]
    assert float(out.stdout.split()[-1]) > 0
