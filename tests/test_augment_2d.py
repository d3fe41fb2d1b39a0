"""2-D (image-plane) views: shear, scale and rotation act on x, y only, the score travels with its joint, and a
missing joint (x = y = score = 0) stays exactly zero through every augmentation, with no spike next to it."""
import math

import pytest
import torch

from feeder import augment
from feeder.layouts import get_layout
from feeder.views import make_recipe
from torchlight.errors import ConfigError

PENN = get_layout("penn-action-13")


def pose_batch(n=6, t=20, seed=0):
    """(n, 3, t, 13, 1) x, y in [-0.5, 0.5], score in (0, 1], with joints missing (all zero) here and there."""
    g = torch.Generator().manual_seed(seed)
    x = torch.rand(n, 3, t, 13, 1, generator=g) - 0.5
    x[:, 2] = torch.rand(n, t, 13, 1, generator=g) * 0.9 + 0.1
    missing = torch.rand(n, 1, t, 13, 1, generator=g) < 0.2
    return torch.where(missing, torch.zeros_like(x), x), missing


def test_shear_scale_rotation_move_x_y_only():
    x, _ = pose_batch()
    for y in (augment.shear_2d(x, 0.5), augment.scale_2d(x, (0.5, 2.0)), augment.rotate_2d(x, 45)):
        torch.testing.assert_close(y[:, 2], x[:, 2], rtol=0, atol=0)
        assert not torch.allclose(y[:, :2], x[:, :2])
    # an in-plane rotation keeps every joint's distance to the origin
    r = augment.rotate_2d(x, 180)
    torch.testing.assert_close(r[:, :2].norm(dim=1), x[:, :2].norm(dim=1), rtol=1e-5, atol=1e-6)
    angles = torch.full((x.shape[0],), math.pi / 2)
    quarter = augment.rotate_2d(x, angles=angles)  # (x, y) -> (-y, x)
    torch.testing.assert_close(quarter[:, 0], -x[:, 1])
    torch.testing.assert_close(quarter[:, 1], x[:, 0])


@pytest.mark.parametrize("recipe", [
    {"recipe": "normal_pair", "coords": 2, "shear_amplitude": 0.5, "temperal_padding_ratio": 6, "scale": [0.8, 1.2],
     "rotate_deg": 30},
    {"recipe": "extreme_normal_pair", "coords": 2, "shear_amplitude": 0.5, "temperal_padding_ratio": 6,
     "aug_method": "123456"},
    {"recipe": "strong_weak", "coords": 2, "shear_amplitude": 0.3, "temperal_padding_ratio": 6},
])
def test_missing_joints_stay_zero_and_scores_travel_with_their_joints(recipe):
    x, missing = pose_batch()
    views = make_recipe(recipe, PENN)(x, torch.Generator().manual_seed(1))
    for name, v in views.items():
        assert v.shape == x.shape and torch.isfinite(v).all(), name
        gone = v[:, 2] == 0  # missing after the view: every channel zero there
        assert torch.equal(v[:, 0][gone], torch.zeros_like(v[:, 0][gone])), name
        assert torch.equal(v[:, 1][gone], torch.zeros_like(v[:, 1][gone])), name
        # the scores are the input's, only reordered (time crop / flip / joint swap), never changed
        assert set(v[:, 2].unique().tolist()) <= set(x[:, 2].unique().tolist()), name
    assert int((views[list(views)[0]][:, 2] == 0).sum()) > 0  # the batch has missing joints to keep


def test_the_2d_blur_does_not_pull_a_joint_towards_a_gap():
    """A joint standing still at (0.3, -0.2), missing in frames 8-11: the blur leaves it exactly where it is."""
    x = torch.zeros(4, 3, 20, 13, 1)
    x[:, 0], x[:, 1], x[:, 2] = 0.3, -0.2, 1.0
    x[:, :, 8:12, 5] = 0.0
    rest = x[:, 2:]
    blurred = augment._masked_blur(x[:, :2], rest, torch.Generator().manual_seed(0))
    visible = rest[:, 0] > 0
    torch.testing.assert_close(blurred[:, 0][visible], torch.full_like(blurred[:, 0][visible], 0.3))
    torch.testing.assert_close(blurred[:, 1][visible], torch.full_like(blurred[:, 1][visible], -0.2))
    plain = augment.gaussian_blur(x[:, :2], p=1.0, generator=torch.Generator().manual_seed(0), normalize=True)
    assert (plain[:, 0, 7, 5] - 0.3).abs().max() > 1e-3  # the plain blur would have made a spike there


def test_2d_options_need_coords_2():
    with pytest.raises(ConfigError, match="coords: 2"):
        make_recipe({"recipe": "normal_pair", "scale": [0.9, 1.1]})
    with pytest.raises(ConfigError, match="coords"):
        make_recipe({"recipe": "normal_pair", "coords": 4})


def test_the_axis_mask_of_2d_data_zeroes_x_or_y_of_the_chosen_sample_only():
    """AimCLR's axis mask draws among the channels it is given: x or y for 2-D data (drawing among x, y, z
    there zeroed the next sample's x, or indexed past the batch)."""
    x, _ = pose_batch(n=64)
    xy = x[:, :2] + 1.0  # no zeros of its own
    for seed in range(5):
        apply = torch.ones(64, dtype=torch.bool)
        out = augment.axis_mask(xy, generator=torch.Generator().manual_seed(seed), apply=apply)
        zeroed = (out == 0).flatten(2).all(-1)  # (n, 2): channel entirely zero
        assert torch.equal(zeroed.sum(1), torch.ones(64, dtype=torch.long)), seed
        torch.testing.assert_close(out[~zeroed], xy[~zeroed], rtol=0, atol=0)
        assert zeroed[:, 0].any() and zeroed[:, 1].any()
    views = make_recipe({"recipe": "extreme_normal_pair", "coords": 2, "aug_method": "5"}, PENN)(
        x, torch.Generator().manual_seed(0))
    assert torch.isfinite(views["extreme"]).all()
