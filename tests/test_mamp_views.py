"""MAMP / STARS temporal views: valid-frame crop + resize and the per-sequence rotation."""
import numpy as np
import pytest
import torch
import torch.nn.functional as F

from feeder import augment
from feeder.npz_feeder import Feeder
from feeder.ntu_feeder import DataError


def padded_batch(lengths, frames=300, seed=0):
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(len(lengths), 3, frames, 25, 2, generator=g)
    for i, n in enumerate(lengths):
        x[i, :, n:] = 0
    return x


def upstream_centre_crop(sample, valid, p, window):
    """MAMP's valid_crop_resize for one [p] written out: int() bias, F.interpolate bilinear on (C*V*M, L)."""
    c, _, v, m = sample.shape
    bias = int((1 - p) * valid / 2)
    crop = sample[:, bias:valid - bias]
    rows = crop.permute(0, 2, 3, 1).reshape(c * v * m, crop.shape[1])[None, None]
    out = F.interpolate(rows, size=(c * v * m, window), mode="bilinear", align_corners=False)[0, 0]
    return out.view(c, v, m, window).permute(0, 3, 1, 2)


def test_centre_crop_resize_equals_upstream_interpolation():
    lengths = [100, 37, 250, 300, 64]
    x = padded_batch(lengths)
    assert augment.valid_lengths(x).tolist() == lengths
    out = augment.valid_crop_resize(x, [0.95], 120)
    assert out.shape == (5, 3, 120, 25, 2)
    for i, n in enumerate(lengths):
        torch.testing.assert_close(out[i], upstream_centre_crop(x[i], n, 0.95, 120), rtol=0, atol=5e-7)


def test_random_crop_bounds_and_min_length():
    valid = torch.tensor([300, 100, 40, 64] * 250)
    start, length = augment.sample_valid_crop_params(valid, [0.5, 1.0], 64, torch.Generator().manual_seed(0))
    assert (start >= 0).all() and (start + length <= valid).all()
    assert (length >= torch.minimum(valid, torch.tensor(64))).all()
    long = valid == 300
    assert length[long].min() >= 150 and length[long].max() >= 290  # U(0.5, 1) of 300 frames
    assert (length[valid == 40] == 40).all()  # shorter than 64: the whole valid part
    # every start in [0, valid - length] is reachable
    assert set(start[valid == 100].tolist()) >= {0} and start[valid == 100].max() >= 30


def test_resize_of_a_linear_ramp_is_linear():
    x = torch.zeros(1, 3, 300, 25, 2)
    x[0, :, :80] = torch.arange(1, 81, dtype=torch.float32).view(1, 80, 1, 1)
    out = augment.crop_resize(x, torch.tensor([10]), torch.tensor([60]), 120)[0, 0, :, 0, 0]
    # half-pixel centres: output t samples source 10 + (t + 0.5) / 2 - 0.5, clamped at the ends
    src = np.clip((np.arange(120) + 0.5) * 0.5 - 0.5, 0, 59) + 10
    np.testing.assert_allclose(out.numpy(), src + 1, rtol=0, atol=1e-5)


def test_uniform_rotation_is_rz_ry_rx():
    x = torch.randn(2, 3, 10, 25, 2)
    angles = torch.tensor([[0.1, -0.2, 0.25], [-0.3, 0.05, 0.0]])
    out = augment.uniform_rotate(x, angles=angles)
    for i, (a, b, c) in enumerate(angles.double().tolist()):
        rx = np.array([[1, 0, 0], [0, np.cos(a), np.sin(a)], [0, -np.sin(a), np.cos(a)]])
        ry = np.array([[np.cos(b), 0, -np.sin(b)], [0, 1, 0], [np.sin(b), 0, np.cos(b)]])
        rz = np.array([[np.cos(c), np.sin(c), 0], [-np.sin(c), np.cos(c), 0], [0, 0, 1]])
        expected = np.einsum("ij,jtvm->itvm", rz @ ry @ rx, x[i].double().numpy())
        np.testing.assert_allclose(out[i].numpy(), expected, atol=1e-5)
    angles = augment.sample_uniform_angles(4000, generator=torch.Generator().manual_seed(0))
    assert angles.abs().max() <= 0.3 and angles.min() < -0.29 and angles.max() > 0.29


def write_npz(path, lengths):
    x = padded_batch(lengths).numpy().transpose(0, 2, 4, 3, 1).reshape(len(lengths), 300, 150)
    y = np.eye(60)[np.arange(len(lengths)) % 60]
    np.savez(path, x_train=x, y_train=y, x_test=x, y_test=y)


def test_npz_feeder_views(tmp_path):
    write_npz(tmp_path / "d.npz", [100, 250, 300])
    test = Feeder(str(tmp_path / "d.npz"), split="test", p_interval=[0.95], window_size=120)
    assert not test.view_recipe.augments
    x, _, _ = test.__getitems__([2, 0])
    assert x.shape == (2, 3, 120, 25, 2)
    torch.testing.assert_close(test[0][0], x[1])
    train = Feeder(str(tmp_path / "d.npz"), split="train", p_interval=[0.5, 1], window_size=120, random_rot=True)
    assert train.view_recipe.augments
    raw, _, _ = train.__getitems__([0, 1])
    assert raw.shape[2] == 300  # random crops are made on the device, per batch
    g = torch.Generator().manual_seed(0)
    assert train.view_recipe(raw, g)["clip"].shape == (2, 3, 120, 25, 2)
    with pytest.raises(DataError, match="window_size"):
        Feeder(str(tmp_path / "d.npz"), split="test", p_interval=[0.9])
    with pytest.raises(DataError, match="p_interval"):
        Feeder(str(tmp_path / "d.npz"), split="test", p_interval=[1.0, 0.5], window_size=120)
