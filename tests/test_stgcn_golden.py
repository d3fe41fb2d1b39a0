"""The ST-GCN encoder against the upstream golden outputs (shared/golden/README.md).

A real ActCLR linear-evaluation checkpoint (NTU60 x-view, joint) loads strictly through the
project's loader into `net.skeletonclr.SkeletonCLR(pretrain=False)` and reproduces the logits and
features the upstream code gives, on a random input and on six real NTU samples.
"""
import os

import numpy as np
import pytest
import torch
from conftest import GOLDEN

from feeder.streams import bone, motion
from net.skeletonclr import SkeletonCLR
from torchlight.io import load_weights

LINEAGE_ARGS = dict(pretrain=False, base_encoder="net.st_gcn.Model", in_channels=3, hidden_channels=16,
                    hidden_dim=256, num_class=60, dropout=0.5,
                    graph_args={"layout": "ntu-rgb+d", "strategy": "spatial"}, edge_importance_weighting=True)


@pytest.fixture(scope="module")
def actclr(golden_dir):
    model = SkeletonCLR(**LINEAGE_ARGS)
    report = load_weights(model, os.path.join(golden_dir, "actclr_ntu60_xview_joint_linear.pt"))
    model.eval()
    return model, report


def test_checkpoint_loads_strictly_with_the_conv_head_converted(actclr):
    model, report = actclr
    assert len(report.loaded) == 179 and not report.missing and not report.unexpected
    assert report.reshaped == ["encoder_q.fc.weight"]  # ActCLR's Conv2d(256, 60, 1) head -> Linear
    assert list(model.state_dict()) == [line.split("\t")[0] for line in _golden_keys()]


def _golden_keys():
    path = os.path.join(GOLDEN, "actclr_stgcn_keys.txt")
    with open(path) as f:
        return [line for line in f.read().splitlines() if line and not line.startswith("#")]


def test_random_input_logits_and_features(actclr, golden_dir):
    model, _ = actclr
    g = np.load(os.path.join(golden_dir, "actclr_stgcn_golden.npz"))
    with torch.no_grad():
        feature = model.forward_features(torch.from_numpy(g["input"]))
        logits = model.forward_head(feature)
    np.testing.assert_allclose(feature.numpy(), g["feature"], rtol=1e-5, atol=1e-4)
    np.testing.assert_allclose(logits.numpy(), g["logits"], rtol=1e-5, atol=1e-3)
    # the same checkpoint on the motion / bone streams derived by feeder.streams
    for stream, key in ((motion, "logits_motion_input"), (lambda x: bone(x, "ntu-rgb+d"), "logits_bone_input")):
        x = stream(torch.from_numpy(g["input"]))
        with torch.no_grad():
            np.testing.assert_allclose(model(x).numpy(), g[key], rtol=1e-5, atol=1e-3)


def test_streams_equal_the_upstream_definitions(golden_dir):
    g = np.load(os.path.join(golden_dir, "actclr_stgcn_golden.npz"))
    x = torch.from_numpy(g["input"])
    np.testing.assert_array_equal(motion(x).numpy(), g["motion"])
    np.testing.assert_array_equal(bone(x, "ntu-rgb+d").numpy(), g["bone"])


def test_real_ntu_samples_are_classified_as_upstream(actclr, golden_dir):
    model, _ = actclr
    g = np.load(os.path.join(golden_dir, "ntu_pipeline", "actclr_real_logits.npz"))
    with torch.no_grad():
        feature = model.forward_features(torch.from_numpy(g["input"]))
        logits = model.forward_head(feature)
    np.testing.assert_allclose(feature.numpy(), g["feature"], rtol=1e-5, atol=1e-4)
    np.testing.assert_allclose(logits.numpy(), g["logits"], rtol=1e-5, atol=1e-4)
    assert logits.argmax(1).tolist() == g["true_label"].tolist()


def test_batched_forward_equals_per_sample(actclr, golden_dir):
    model, _ = actclr
    x = torch.from_numpy(np.load(os.path.join(golden_dir, "actclr_stgcn_golden.npz"))["input"])
    with torch.no_grad():
        batched = model.forward_features(x)
        single = torch.cat([model.forward_features(x[i:i + 1]) for i in range(len(x))])
    torch.testing.assert_close(batched, single, rtol=1e-5, atol=1e-4)


def test_graph_conv_equals_the_lineage_einsum():
    """Mixing joints before the 1x1 conv (net/st_gcn.py) equals the upstream conv-then-einsum."""
    from net.st_gcn import GraphConv

    torch.manual_seed(0)
    gc = GraphConv(5, 7, 3)
    x = torch.randn(4, 5, 6, 25)
    A = torch.rand(3, 25, 25)
    y = gc.conv(x).view(4, 3, 7, 6, 25)
    reference = torch.einsum("nkctv,kvw->nctw", y, A)
    torch.testing.assert_close(gc(x, A), reference, rtol=1e-5, atol=1e-5)
    xc = x.contiguous(memory_format=torch.channels_last)
    torch.testing.assert_close(gc(xc, A), reference, rtol=1e-5, atol=1e-5)
