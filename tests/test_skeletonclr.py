"""SkeletonCLR (MoCo v2) against independent computations: loss, momentum, queue, keys."""
import numpy as np
import pytest
import torch
import torch.nn.functional as F

from net.modules import enqueue, info_nce, moco_logits, momentum_update
from net.skeletonclr import SkeletonCLR

SMALL = dict(hidden_channels=4, hidden_dim=8, feature_dim=6, queue_size=10, dropout=0.0,
             graph_args={"layout": "nw-ucla", "strategy": "spatial"})


def numpy_info_nce(q, k, queue, t):
    """-log softmax of the positive among [q.k, q.queue] / t, averaged; float64 numpy."""
    q = q / np.linalg.norm(q, axis=1, keepdims=True)
    k = k / np.linalg.norm(k, axis=1, keepdims=True)
    logits = np.concatenate([(q * k).sum(1, keepdims=True), q @ queue], axis=1) / t
    logits -= logits.max(1, keepdims=True)
    return float(np.mean(-logits[:, 0] + np.log(np.exp(logits).sum(1))))


def test_info_nce_matches_numpy():
    rng = np.random.default_rng(0)
    q, k = rng.standard_normal((5, 6)), rng.standard_normal((5, 6))
    queue = rng.standard_normal((6, 11))
    queue /= np.linalg.norm(queue, axis=0, keepdims=True)
    logits = moco_logits(F.normalize(torch.tensor(q), dim=1), F.normalize(torch.tensor(k), dim=1),
                         torch.tensor(queue), 0.07)
    assert info_nce(logits).item() == pytest.approx(numpy_info_nce(q, k, queue, 0.07), rel=1e-6)


def test_perfectly_aligned_pairs_with_orthogonal_queue_give_known_loss():
    """q = k and q orthogonal to every queue entry: loss = log(1 + K * exp(-1/T))."""
    q = torch.eye(4)[:2]
    queue = torch.eye(4)[:, 2:].repeat(1, 3)  # K = 6 columns, all orthogonal to q
    loss = info_nce(moco_logits(q, q, queue, 0.5)).item()
    assert loss == pytest.approx(np.log(1 + 6 * np.exp(-1 / 0.5)), rel=1e-6)


def test_model_loss_equals_independent_computation():
    torch.manual_seed(0)
    model = SkeletonCLR(**SMALL).train()
    x_q, x_k = torch.randn(2, 3, 3, 12, 20, 1)
    queue_before = model.queue.clone().numpy()
    k_params_before = [p.clone() for p in model.encoder_k.parameters()]
    q_params = [p.clone() for p in model.encoder_q.parameters()]
    out = model({"views": {"query": x_q, "key": x_k}})
    with torch.no_grad():  # recompute with the already-updated key encoder
        q = model.encoder_q(x_q).numpy()
        k = model.encoder_k(x_k).numpy()
    assert out["loss"].item() == pytest.approx(numpy_info_nce(q, k, queue_before, 0.07), rel=1e-5)
    for before, online, after in zip(k_params_before, q_params, model.encoder_k.parameters()):
        torch.testing.assert_close(after, 0.999 * before + 0.001 * online)
    # the keys entered the queue at the pointer, L2-normalised
    k_n = k / np.linalg.norm(k, axis=1, keepdims=True)
    np.testing.assert_allclose(model.queue[:, :3].numpy(), k_n.T, rtol=1e-5, atol=1e-6)
    assert int(model.queue_ptr) == 3


def test_key_encoder_starts_equal_and_frozen():
    model = SkeletonCLR(**SMALL)
    for (name, q), k in zip(model.encoder_q.state_dict().items(), model.encoder_k.state_dict().values()):
        assert torch.equal(q, k), name
    assert not any(p.requires_grad for p in model.encoder_k.parameters())


def test_enqueue_wraps_around():
    queue = torch.zeros(2, 5)
    ptr = torch.tensor([3])
    keys = torch.arange(8.0).view(4, 2)
    enqueue(queue, ptr, keys)
    assert queue[:, [3, 4, 0, 1]].T.tolist() == keys.tolist()
    assert int(ptr) == 2


def test_momentum_update_formula():
    a, b = torch.nn.Linear(3, 2), torch.nn.Linear(3, 2)
    expect = [0.9 * pb + 0.1 * pa for pa, pb in zip(a.parameters(), b.parameters())]
    momentum_update(a, b, 0.9)
    for e, p in zip(expect, b.parameters()):
        torch.testing.assert_close(p, e)


def test_lineage_state_dict_layout():
    """364 entries as the lineage's SkeletonCLR / AimCLR pretraining checkpoints (spec 4.3)."""
    model = SkeletonCLR(num_class=60, queue_size=32768)
    sd = model.state_dict()
    assert len(sd) == 364
    assert sd["queue"].shape == (128, 32768) and sd["queue_ptr"].dtype == torch.int64
    assert sd["encoder_q.fc.0.weight"].shape == (256, 256) and sd["encoder_k.fc.2.weight"].shape == (128, 256)
    eval_model = SkeletonCLR(pretrain=False, num_class=60)
    assert len(eval_model.state_dict()) == 179 and eval_model.head_prefixes() == ["encoder_q.fc"]


@pytest.mark.parametrize("p", [0.5, 0.3])
def test_fast_dropout_is_dropout(p):
    """Keeps a fraction 1 - p of the entries, scales them by 1 / (1 - p), is off in eval mode,
    and follows the input's memory layout (channels-last included)."""
    from net.st_gcn import FastDropout

    drop = FastDropout(p)
    x = torch.ones(64, 8, 30, 25).contiguous(memory_format=torch.channels_last)
    y = drop(x)
    kept = (y != 0).float().mean().item()
    assert kept == pytest.approx(1 - p, abs=0.01)
    assert torch.allclose(y[y != 0], torch.tensor(1 / (1 - p)))
    assert y.is_contiguous(memory_format=torch.channels_last)
    assert (y[:, 0] != 0).float().mean().item() == pytest.approx(1 - p, abs=0.02)  # no structure per channel
    x = torch.ones(3, 5, requires_grad=True)
    drop(x).sum().backward()
    assert all(g == 0 or g == pytest.approx(1 / (1 - p)) for g in x.grad.unique().tolist())
    drop.eval()
    assert torch.equal(drop(x), x)
