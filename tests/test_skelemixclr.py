"""SkeleMixCLR(+) against independent computations: the mixed sample, the mask grid, mask pooling, the
three losses, the queue, Feeder_multi's resize, the configs, and a 2-epoch run that resumes exactly."""
import os
import re

import numpy as np
import pytest
import torch

from feeder.multi_feeder import resize_frames
from net.skelemixclr import SkeleMixCLR, SkeleMixCLRv1, mask_pool

# 1-based joint ids of the five parts, written out here from the paper / upstream lists
NTU_PARTS = [{4, 3, 21, 2, 1}, {9, 10, 11, 12, 24, 25}, {5, 6, 7, 8, 22, 23}, {17, 18, 19, 20}, {13, 14, 15, 16}]
UCLA_PARTS = [{1, 2, 3, 4}, {5, 6, 7, 8}, {9, 10, 11, 12}, {13, 14, 15, 16}, {17, 18, 19, 20}]
SMALL = dict(hidden_channels=4, hidden_dim=8, feature_dim=6, queue_size=12, dropout=0.0)
NTU = {"layout": "ntu-rgb+d", "strategy": "spatial"}
UCLA = {"layout": "nw-ucla", "strategy": "spatial"}


def small(graph=UCLA, cls=SkeleMixCLR, **kw):
    torch.manual_seed(0)
    return cls(graph_args=graph, **SMALL, **kw)


def region_of(cells):
    """(units, joints) of a (U, V) numpy bool grid: the sorted unit rows and 1-based joint set."""
    units = sorted(set(np.nonzero(cells.any(1))[0].tolist()))
    joints = set((np.nonzero(cells.any(0))[0] + 1).tolist())
    return units, joints


def check_region(cells, parts, spa, tem):
    """The grid is a full rectangle: a contiguous run of tem units x the union of spa parts."""
    units, joints = region_of(cells)
    assert tem[0] <= len(units) <= tem[1] and units == list(range(units[0], units[0] + len(units)))
    chosen = [p for p in parts if p <= joints]
    assert set().union(*chosen) == joints and spa[0] <= len(chosen) <= spa[1]
    for u in range(cells.shape[0]):
        for v in range(cells.shape[1]):
            assert cells[u, v] == (u in units and v + 1 in joints)


def check_mixed(x, mixed, partner, cells, fill="swap"):
    """Loop over every entry: the region (4 frames per unit) holds the partner's values (both persons),
    everywhere else the sample's own."""
    n, c, t, v, m = x.shape
    for i in range(n):
        grid = cells[i if cells.shape[0] > 1 else 0]
        for f in range(t):
            for j in range(v):
                inside = grid[f // 4, j]
                for p in range(m):
                    got, own = mixed[i, :, f, j, p], x[i, :, f, j, p]
                    if not inside:
                        np.testing.assert_array_equal(got, own)
                    elif fill == "swap":
                        np.testing.assert_array_equal(got, x[partner[i], :, f, j, p])
                    elif fill == "zeros":
                        assert not got.any()
                    else:  # Gaussian: new values
                        assert not np.allclose(got, own)


@pytest.mark.parametrize("seed", [0, 1])
def test_ntu_mix_pastes_the_partners_parts_and_frames(seed):
    model = small(NTU)
    x = torch.randn(5, 3, 32, 25, 2)
    g = torch.Generator().manual_seed(seed)
    parts = model.parts_matrix(None, 25, x.device)
    partner, mixed, cells = model.make_mix(x, [2, 3, 3, 6, 3, 1.0], parts, g)
    partner, cells = partner.numpy(), cells.numpy()
    shift = partner[0]
    assert 1 <= shift <= 3 and (partner == (np.arange(5) + shift) % 5).all()  # one cyclic shift in [1, N-2]
    assert cells.shape == (1, 8, 25)  # one region for the whole batch, T/4 x V
    check_region(cells[0], NTU_PARTS, (2, 3), (3, 6))
    check_mixed(x.numpy(), mixed.numpy(), partner, cells)


def test_per_sample_regions_and_nw_ucla_parts():
    model = small(UCLA, swap_cfg={"per_sample": True})
    x = torch.randn(8, 3, 16, 20, 1)
    g = torch.Generator().manual_seed(3)
    partner, mixed, cells = model.make_mix(x, [1, 4, 1, 3, 1, 1.0], model.parts_matrix(None, 20, None), g)
    cells = cells.numpy()
    assert cells.shape == (8, 4, 20)
    for grid in cells:
        check_region(grid, UCLA_PARTS, (1, 4), (1, 3))
    assert len({grid.tobytes() for grid in cells}) > 1  # the samples drew their own regions
    check_mixed(x.numpy(), mixed.numpy(), partner.numpy(), cells)


@pytest.mark.parametrize("mode", ["zeros", "Gaussian"])
def test_zero_and_gaussian_fill(mode):
    model = small(UCLA, swap_cfg={"swap_mode": mode})
    x = torch.randn(4, 3, 16, 20, 2)
    partner, mixed, cells = model.make_mix(x, [2, 3, 1, 4, 1, 1.0], model.parts_matrix(None, 20, None),
                                           torch.Generator().manual_seed(0))
    check_mixed(x.numpy(), mixed.numpy(), partner.numpy(), cells.numpy(), fill=mode)


def test_random_spatial_mode_picks_10_to_15_joints():
    model = small(NTU, swap_cfg={"spatial_mode": "random", "per_sample": True})
    x = torch.randn(32, 3, 16, 25, 1)
    _, _, cells = model.make_mix(x, [0, 0, 2, 2, 1, 1.0], None, torch.Generator().manual_seed(0))
    counts = cells.any(dim=1).sum(dim=1).numpy()
    assert counts.min() >= 10 and counts.max() <= 15 and len(set(counts.tolist())) > 1


def test_frames_not_a_multiple_of_the_stride_are_refused():
    model = small(UCLA)
    with pytest.raises(ValueError, match="divisible by 4"):
        model.make_mix(torch.randn(4, 3, 50, 20, 1), [2, 3, 1, 2, 1, 1.0], model.parts_matrix(None, 20, None))


@pytest.mark.parametrize("per_sample", [False, True])
def test_mask_pooling_is_the_mean_over_masked_cells(per_sample):
    rng = np.random.default_rng(0)
    n, m, d, t, v = 3, 2, 5, 4, 6
    fmap = rng.standard_normal((n * m, d, t, v))
    cells = rng.random((n if per_sample else 1, t, v)) < 0.4
    cells[:, 0, 0], cells[:, 0, 1] = True, False
    trimmed, residual = mask_pool(torch.tensor(fmap), torch.tensor(cells), n)
    for i in range(n):
        grid = cells[i if per_sample else 0]
        exp_t = np.mean([fmap[i * m + p][:, grid].mean(axis=1) for p in range(m)], axis=0)
        exp_c = np.mean([fmap[i * m + p][:, ~grid].mean(axis=1) for p in range(m)], axis=0)
        np.testing.assert_allclose(trimmed[i].numpy(), exp_t, rtol=1e-10)
        np.testing.assert_allclose(residual[i].numpy(), exp_c, rtol=1e-10)


def np_ce(logits):
    """-log softmax of column 0, averaged; float64."""
    logits = logits - logits.max(1, keepdims=True)
    return float(np.mean(-logits[:, 0] + np.log(np.exp(logits).sum(1))))


def unit(a):
    return a / np.linalg.norm(a, axis=1, keepdims=True)


@pytest.mark.parametrize("cls", [SkeleMixCLR, SkeleMixCLRv1])
def test_losses_and_queue_equal_an_independent_computation(cls):
    """L = sum_v w L_ins + sum_mix w (L_t + L_c) / 2 for v2 (mean over mixes for v1), with
    L_t = CE[t.k[partner], t.Q, t.c] / T, L_c = CE[c.k, c.Q, c.t] / T, and only the un-mixed key enqueued."""
    kw = {"repeat": 2, "tem_u": 3} if cls is SkeleMixCLRv1 else {"swap_cfg": {"swap_params": [[1, 2, 1, 3, 2, 0.7]]}}
    model = small(UCLA, cls, **kw).train()
    x_q, x_k = torch.randn(2, 5, 3, 16, 20, 1)
    g = torch.Generator().manual_seed(7)
    g_copy = torch.Generator().manual_seed(7)
    queue = model.queue.clone().numpy()
    out = model({"views": {"query": x_q, "key": x_k}, "generator": g, "layout": None})
    w = 1.0 if cls is SkeleMixCLRv1 else 0.7
    with torch.no_grad():  # the features again: encoder_q unchanged, encoder_k already updated
        parts = model.parts_matrix(None, 20, None)
        mixes = [model.make_mix(x_q, model.swap_params[0], parts, g_copy) for _ in range(2)]
        q = unit(model.encoder_q(x_q).double().numpy())
        k = unit(model.encoder_k(x_k).double().numpy())
        feats = [[unit(f.double().numpy()) for f in model.mixed_features(xm, cells)] for _, xm, cells in mixes]
    T = 0.2
    l_ins = np_ce(np.concatenate([(q * k).sum(1, keepdims=True), q @ queue], 1) / T)
    regs, trims, resids = [], [], []
    for (partner, _, _), (t, c) in zip(mixes, feats):
        kp = k[partner.numpy()]
        l_t = np_ce(np.concatenate([(t * kp).sum(1, keepdims=True), t @ queue, (t * c).sum(1, keepdims=True)], 1) / T)
        l_c = np_ce(np.concatenate([(c * k).sum(1, keepdims=True), c @ queue, (c * t).sum(1, keepdims=True)], 1) / T)
        regs.append(w * (0.5 * l_t + 0.5 * l_c))
        trims.append(l_t)
        resids.append(l_c)
    l_reg = np.mean(regs) if cls is SkeleMixCLRv1 else np.sum(regs)
    assert out["loss_ins"].item() == pytest.approx(w * l_ins, rel=1e-5)
    assert out["loss_reg"].item() == pytest.approx(l_reg, rel=1e-5)
    assert out["loss"].item() == pytest.approx(w * l_ins + l_reg, rel=1e-5)
    assert out["loss_trim"].item() == pytest.approx(np.mean(trims), rel=1e-5)
    assert out["loss_resid"].item() == pytest.approx(np.mean(resids), rel=1e-5)
    # the queue took the 5 un-mixed keys at the pointer, nothing else
    np.testing.assert_allclose(model.queue[:, :5].numpy(), k.T, rtol=1e-5, atol=1e-6)
    np.testing.assert_array_equal(model.queue[:, 5:].numpy(), queue[:, 5:])
    assert int(model.queue_ptr) == 5


def test_stop_gradient_on_the_other_region_and_partner_key():
    """The trimmed loss's gradient reaches encoder_q only through t (c is a detached negative)."""
    model = small(UCLA, swap_cfg={"swap_params": [[2, 3, 1, 3, 1, 1.0]]}).train()
    x_q, x_k = torch.randn(2, 4, 3, 16, 20, 1)
    out = model({"views": {"query": x_q, "key": x_k}, "generator": torch.Generator().manual_seed(0), "layout": None})
    out["loss"].backward()
    assert all(p.grad is None for p in model.encoder_k.parameters())
    assert model.encoder_q.fc[0].weight.grad.abs().sum() > 0


def test_state_dict_keys_of_upstream():
    model = SkeleMixCLR(num_class=60)
    sd = model.state_dict()
    assert len(sd) == 374  # SkeletonCLR's 364 + BN (5 entries) in both projectors
    assert sd["encoder_q.fc.0.weight"].shape == (256, 256) and sd["encoder_q.fc.1.running_var"].shape == (256,)
    assert sd["encoder_k.fc.3.weight"].shape == (128, 256) and sd["queue"].shape == (128, 32768)
    assert not any(k.startswith("encoder_q.fc.2") for k in sd)
    for (name, q), kv in zip(model.encoder_q.state_dict().items(), model.encoder_k.state_dict().values()):
        assert torch.equal(q, kv), name
    ev = SkeleMixCLR(pretrain=False, num_class=60)
    assert len(ev.state_dict()) == 179 and ev.head_prefixes() == ["encoder_q.fc"]


def test_feeder_multi_resize_is_linear_with_half_pixel_centres():
    rng = np.random.default_rng(0)
    x = rng.standard_normal((2, 3, 10, 4, 2)).astype(np.float32)
    out = resize_frames(torch.tensor(x), 16).numpy()
    for f in range(16):
        s = min(max((f + 0.5) * 10 / 16 - 0.5, 0.0), 9.0)
        lo = int(np.floor(s))
        hi, a = min(lo + 1, 9), s - lo
        np.testing.assert_allclose(out[:, :, f], (1 - a) * x[:, :, lo] + a * x[:, :, hi], rtol=1e-5, atol=1e-6)
    assert resize_frames(torch.tensor(x), 10).numpy() is not None and np.array_equal(
        resize_frames(torch.tensor(x), 10).numpy(), x)


ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


@pytest.mark.parametrize("bench", ["ntu60/xsub", "ntu60/xview", "ntu120/xsub", "ntu120/xset"])
def test_ntu_configs_hold_the_shipped_values(bench):
    from torchlight.config import load_yaml

    ds, b = bench.split("/")
    pre = f"config/{ds}/pretext/pretext_skelemixclr_{b}_joint.yaml"
    lin = f"config/{ds}/linear_eval/linear_eval_skelemixclr_{b}_joint.yaml"
    with open(os.path.join(ROOT, pre)) as f:
        assert f"python main.py pretrain_skeletonclr_multi_swapv2 --config {pre}" in f.read()
    cfg, ev = load_yaml(os.path.join(ROOT, pre)), load_yaml(os.path.join(ROOT, lin))
    a = cfg["model_args"]
    assert (a["Temperature"], a["queue_size"], a["momentum"], a["mlp"], a["swap_cfg"]["swap_params"],
            a["swap_cfg"]["swap_mode"], a["swap_cfg"]["spatial_mode"]) == \
        (0.2, 32768, 0.999, True, [[2, 3, 7, 11, 3, 1.0]], "swap", "semantic")
    assert cfg["train_feeder_args"]["frames"] == [64] and "frame64" in cfg["train_feeder_args"]["data_path"]
    assert (cfg["base_lr"], cfg["step"], cfg["num_epoch"], cfg["batch_size"], cfg["weight_decay"]) == \
        (0.1, [300], 300, 128, 1e-4)
    assert a["num_class"] == ev["model_args"]["num_class"] == int(re.search(r"\d+", ds).group())
    assert (ev["num_epoch"], ev["base_lr"], ev["step"]) == (150, 3.0, [80])
    assert ev["weights"] == cfg["work_dir"] + "/epoch300_model.pt"
    assert ev["test_feeder_args"]["data_path"] == cfg["knn_test_feeder_args"]["data_path"]


def test_pretrain_two_epochs_and_resume_exactly(nw_ucla_small, tmp_path):
    """The demo config on the small NW-UCLA subset (50 -> 64 frames by Feeder_multi): finite losses,
    and a run stopped after epoch 1 and resumed ends bit for bit where the uninterrupted one does."""
    from processor.pretrain import Pretrain
    from conftest import demo_config
    from torchlight.io import load_checkpoint
    from torchlight.log import read_metrics

    def cfg(work, **kw):
        c = demo_config("skelemixclr_pretrain.yaml", nw_ucla_small, work, num_epoch=2, batch_size=25,
                        save_interval=1, model_args={"hidden_channels": 4, "hidden_dim": 16, "feature_dim": 8,
                                                     "queue_size": 20, "dropout": 0.0}, **kw)
        c["model_args"]["swap_cfg"] = {**c["model_args"]["swap_cfg"], "swap_params": [[2, 3, 7, 11, 1, 1.0]]}
        return c

    Pretrain(cfg(tmp_path / "full"), name="pretrain_skeletonclr_multi_swapv2").run()
    history = read_metrics(tmp_path / "full" / "metrics.jsonl")
    assert [h["epoch"] for h in history] == [1, 2]
    assert all(np.isfinite(h[k]) for h in history for k in ("loss", "loss_ins", "loss_reg", "loss_trim"))
    Pretrain({**cfg(tmp_path / "split"), "num_epoch": 1}, name="pretrain_skeletonclr_multi_swapv2").run()
    Pretrain(cfg(tmp_path / "split"), name="pretrain_skeletonclr_multi_swapv2").run()
    a = load_checkpoint(str(tmp_path / "full" / "latest.pt"))["model"]
    b = load_checkpoint(str(tmp_path / "split" / "latest.pt"))["model"]
    assert int(a["queue_ptr"]) == (2 * 2 * 25) % 20
    for key in a:
        torch.testing.assert_close(a[key], b[key], rtol=0, atol=0, msg=key)
