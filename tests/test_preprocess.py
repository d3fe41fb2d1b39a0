"""feeder/preprocess.py: the lineage frame-N step against the upstream golden arrays and by hand."""
import os

import numpy as np
import pytest
from conftest import GOLDEN as GOLDEN_ROOT

from feeder.layouts import get_layout
from feeder.preprocess import ROTATION_EPS, motion_fixed_length, resize_time, to_fixed_length

GOLDEN = os.path.join(GOLDEN_ROOT, "ntu_pipeline")
NTU = get_layout("ntu-rgb+d")
# a five-joint toy: 0 hip, 1 left shoulder, 2 right shoulder, 3 head, 4 neck (the centre); the
# lineage counts frames by joint 0, so that one must not sit at the origin
TOY_EDGES = [[4, 0], [4, 1], [4, 2], [4, 3]]
TOY = get_layout({"name": "toy", "num_joints": 5, "edges": TOY_EDGES, "center": 4, "shoulders": [1, 2]})


def golden(name):
    path = os.path.join(GOLDEN, name)
    if not os.path.exists(path):
        pytest.skip(f"golden data not available: {path}")
    return np.load(path)


def rotate_y(x, angle):
    """R_y(angle) applied to the (x, y, z) column of every joint of a (3, T, V, M) array."""
    c, s = np.cos(angle), np.sin(angle)
    return np.stack([c * x[0] - s * x[2], x[1], s * x[0] + c * x[2]])


def toy_sequence(frames=50, scale=1.0):
    """(3, frames, 5, 1) with the centre at the origin and the shoulders 0.4 apart along +x."""
    rng = np.random.default_rng(0)
    x = np.zeros((3, frames, 5, 1))
    x[:, :, 0, 0] = np.array([0.0, -0.5, 0.0])[:, None] + 0.01 * rng.normal(size=(3, frames))
    x[:, :, 1, 0] = [[-0.2], [0.0], [0.0]]
    x[:, :, 2, 0] = [[0.2], [0.0], [0.0]]
    x[:, :, 3, 0] = np.array([0.0, 0.3, 0.05])[:, None] + 0.01 * rng.normal(size=(3, frames))
    return (x * scale).astype(np.float32)


def test_golden_frame50_positions():
    raw, expected = golden("lineage_raw300.npz"), golden("lineage_frame50.npz")
    assert len(raw.files) == 6
    for name in raw.files:
        out = to_fixed_length(raw[name], NTU, frames=50)
        assert out.dtype == np.float32 and out.shape == (3, 50, 25, 2)
        # achieved 1.7e-7 (float32 rounding of the per-frame rotation), the README suggests 1e-6
        np.testing.assert_allclose(out, expected[name], rtol=0, atol=1e-6, err_msg=name)


def test_golden_frame50_motion_is_bit_exact():
    raw, expected = golden("lineage_raw300.npz"), golden("lineage_frame50_motion.npz")
    for name in raw.files:
        np.testing.assert_array_equal(motion_fixed_length(raw[name], frames=50), expected[name], err_msg=name)


def test_aligned_sequence_of_target_length_is_unchanged():
    x = toy_sequence()
    np.testing.assert_array_equal(to_fixed_length(x, TOY, rotate=False), x)
    # with the rotation: only the lineage's eps tilt, arccos(d / (d + eps)) for shoulder width d
    tilt = np.arccos(0.4 / (0.4 + ROTATION_EPS))
    out = to_fixed_length(x, TOY)
    np.testing.assert_allclose(out, rotate_y(x, -tilt), atol=1e-6)
    assert np.abs(out - x).max() < 0.03


@pytest.mark.parametrize("angle", [0.7, -0.7, 2.5, -2.5])
def test_rotated_skeleton_is_rotated_back(angle):
    x = toy_sequence(scale=1000.0)  # millimetres: the eps tilt is then below 1e-3 rad
    out = to_fixed_length(rotate_y(x, angle).astype(np.float32), TOY)
    np.testing.assert_allclose(out, x, atol=1e-3 * np.abs(x).max())


def test_absent_person_stays_zero_and_layout_without_shoulders_is_not_rotated():
    x = np.zeros((3, 60, 5, 2), np.float32)
    x[..., :1] = toy_sequence(60)
    out = to_fixed_length(x, TOY)
    assert not out[..., 1].any()
    no_shoulders = get_layout({"num_joints": 5, "edges": TOY_EDGES, "center": 4})
    np.testing.assert_array_equal(to_fixed_length(x, no_shoulders), to_fixed_length(x, TOY, rotate=False))


def test_resize_upsamples_with_half_pixel_centres():
    ramp = np.arange(10, dtype=np.float32).reshape(1, 10, 1, 1)
    src = np.clip((np.arange(50) + 0.5) * 10 / 50 - 0.5, 0, 9)
    np.testing.assert_allclose(resize_time(ramp, 50)[0, :, 0, 0], src, atol=1e-6)


def test_resize_by_half_averages_frame_pairs():
    x = np.random.default_rng(1).normal(size=(3, 100, 4, 2)).astype(np.float32)
    np.testing.assert_allclose(resize_time(x, 50), (x[:, 0::2] + x[:, 1::2]) / 2, atol=1e-6)


def test_zero_padding_after_the_sequence_is_ignored():
    x = toy_sequence(40)
    padded = np.concatenate([x, np.zeros((3, 260, 5, 1), np.float32)], axis=1)
    np.testing.assert_array_equal(to_fixed_length(padded, TOY), to_fixed_length(x, TOY))


def test_empty_sample_raises():
    with pytest.raises(ValueError, match="empty sample"):
        to_fixed_length(np.zeros((3, 300, 25, 2), np.float32), NTU)
