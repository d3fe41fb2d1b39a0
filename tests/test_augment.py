"""Batched torch augmentations (feeder/augment.py) against the per-sample numpy reference
(tests/augment_numpy.py), plus their invariants."""
import numpy as np
import pytest
import torch

from feeder import augment as A
import augment_numpy as R
from feeder.layouts import NTU_RGBD

N, C, T, V, M = 6, 3, 50, 25, 2
FLIP = NTU_RGBD.flip_permutation


@pytest.fixture
def x():
    g = torch.Generator().manual_seed(1234)
    x = torch.randn(N, C, T, V, M, generator=g)
    x[::2, :, :, :, 1] = 0  # single-person samples
    x[1, :, 40:] = 0  # a zero-padded tail
    return x


@pytest.fixture
def gen():
    return torch.Generator().manual_seed(0)


def reference(fn, x, *per_sample_params):
    """Apply the numpy reference sample by sample in float64."""
    xs = x.double().numpy()
    outs = [fn(xs[i], *(p[i] for p in per_sample_params)) for i in range(len(xs))]
    return torch.from_numpy(np.stack(outs))


def if_applied(fn):
    """Reference for a probabilistic augmentation: the first per-sample parameter is `apply`."""
    return lambda s, a, *p: fn(s, *p) if a else s


def check(out, ref, atol=1e-5, rtol=1e-5):
    # plain allclose: torch.testing.assert_close costs a second of lazy imports on first use
    assert out.shape == ref.shape and out.dtype == torch.float32
    ref = ref.to(out.dtype)
    assert torch.allclose(out, ref, atol=atol, rtol=rtol), f"max abs error {(out - ref).abs().max().item():.3g}"


# ----------------------------------------------------------------------------- equivalence

def test_temporal_crop_matches_reference(x, gen):
    ratio = 6
    pad = T // ratio
    start = A.sample_temporal_crop_params(N, T, ratio, gen)
    start[:3] = torch.tensor([0, 2 * pad, 1])  # both extremes of the window
    out = A.temporal_crop(x, ratio, start=start)
    check(out, reference(lambda s, st: R.temporal_crop(s, ratio, int(st)), x, start.numpy()))


def test_shear_matches_reference(x, gen):
    matrix = A.sample_shear_params(N, 0.5, gen)
    check(A.shear(x, 0.5, matrix=matrix), reference(R.shear, x, matrix.double().numpy()))


def test_flip_matches_reference(x):
    apply = torch.tensor([True, False, True, True, False, True])
    out = A.random_flip(x, FLIP, apply=apply)
    ref = reference(if_applied(R.flip), x, apply.numpy(), [FLIP] * N)
    check(out, ref, atol=0)


def test_rotate_matches_reference(x, gen):
    angles = A.sample_rotate_params(N, gen)
    check(A.random_rotate(x, angles=angles), reference(R.rotate, x, angles.double().numpy()))


def test_gaussian_noise_matches_reference(x, gen):
    noise = torch.randn(x.shape, generator=gen) * 0.01
    apply = torch.tensor([True, True, False, True, False, True])
    out = A.gaussian_noise(x, noise=noise, apply=apply)
    check(out, reference(if_applied(R.gaussian_noise), x, apply.numpy(), noise.double().numpy()))


@pytest.mark.parametrize("normalize", [False, True])
def test_gaussian_blur_matches_reference(x, gen, normalize):
    sigma = A.sample_gaussian_blur_params(N, (0.1, 2.0), gen)
    sigma[:2] = torch.tensor([0.1, 2.0])
    apply = torch.tensor([True, True, True, False, True, True])
    out = A.gaussian_blur(x, normalize=normalize, sigma=sigma, apply=apply)
    ref = reference(if_applied(lambda s, sg: R.gaussian_blur(s, float(sg), normalize)),
                    x, apply.numpy(), sigma.numpy())
    check(out, ref, atol=1e-4)


def test_gaussian_blur_shorter_than_kernel_matches_reference(gen):
    short = torch.randn(3, C, 5, V, M, generator=gen)
    sigma = torch.tensor([0.3, 1.0, 2.0])
    out = A.gaussian_blur(short, sigma=sigma, apply=torch.ones(3, dtype=torch.bool))
    check(out, reference(lambda s, sg: R.gaussian_blur(s, float(sg)), short, sigma.numpy()), atol=1e-4)


def test_axis_mask_matches_reference(x):
    axis = torch.tensor([0, 1, 2, 0, 1, 2])
    apply = torch.tensor([True, True, True, False, True, False])
    out = A.axis_mask(x, axis=axis, apply=apply)
    check(out, reference(if_applied(R.axis_mask), x, apply.numpy(), axis.numpy()), atol=0)


def test_time_flip_matches_reference(x):
    apply = torch.tensor([False, True, True, False, True, True])
    check(A.time_flip(x, apply=apply), reference(if_applied(R.time_flip), x, apply.numpy()), atol=0)


def test_normal_augment_is_crop_then_shear(x):
    out = A.normal_augment(x, 0.5, 6, generator=torch.Generator().manual_seed(7))
    g = torch.Generator().manual_seed(7)  # replay the same draws
    start = A.sample_temporal_crop_params(N, T, 6, g)
    matrix = A.sample_shear_params(N, 0.5, g)
    ref = reference(lambda s, st, mt: R.shear(R.temporal_crop(s, 6, int(st)), mt), x, start.numpy(),
                    matrix.double().numpy())
    check(out, ref)


# ----------------------------------------------------------------------------- invariants

ALL = {
    "temporal_crop": lambda x, g: A.temporal_crop(x, 6, g),
    "shear": lambda x, g: A.shear(x, 0.5, g),
    "random_flip": lambda x, g: A.random_flip(x, FLIP, generator=g),
    "random_rotate": lambda x, g: A.random_rotate(x, g),
    "gaussian_noise": lambda x, g: A.gaussian_noise(x, generator=g),
    "gaussian_blur": lambda x, g: A.gaussian_blur(x, generator=g),
    "axis_mask": lambda x, g: A.axis_mask(x, generator=g),
    "time_flip": lambda x, g: A.time_flip(x, generator=g),
    "extreme_augment": lambda x, g: A.extreme_augment(x, "123456", FLIP, g),
    "normal_augment": lambda x, g: A.normal_augment(x, 0.5, 6, g),
}


@pytest.mark.parametrize("name", sorted(ALL))
def test_shape_kept_input_untouched_and_reproducible(x, name):
    before = x.clone()
    out = ALL[name](x, torch.Generator().manual_seed(3))
    assert out.shape == x.shape and out.dtype == x.dtype
    assert torch.equal(x, before)
    assert torch.equal(out, ALL[name](x, torch.Generator().manual_seed(3)))


@pytest.mark.parametrize("name", ["shear", "random_rotate", "temporal_crop", "gaussian_noise"])
def test_samples_get_different_parameters(name):
    g = torch.Generator().manual_seed(5)
    one = torch.randn(1, C, T, V, M, generator=g)
    out = ALL[name](one.expand(8, -1, -1, -1, -1).contiguous(), g)
    assert len({tuple(o.flatten()[:40].tolist()) for o in out}) > 1


def test_sampled_parameters_lie_in_their_ranges(gen):
    n = 200
    start = A.sample_temporal_crop_params(n, T, 6, gen)
    assert start.min() >= 0 and start.max() <= 2 * (T // 6)
    matrix = A.sample_shear_params(n, 0.5, gen)
    assert torch.all(matrix.diagonal(dim1=1, dim2=2) == 1) and matrix.abs().max() <= 1
    assert (matrix - torch.eye(3)).abs().max() <= 0.5
    degrees = torch.rad2deg(A.sample_rotate_params(n, gen))
    assert degrees.min() >= 0 and degrees.max() <= 30 + 1e-4
    assert torch.all((degrees <= 1 + 1e-4).sum(1) >= 2)  # only the main axis goes beyond 1 degree
    sigma = A.sample_gaussian_blur_params(n, (0.1, 2.0), gen)
    assert sigma.min() >= 0.1 and sigma.max() <= 2.0
    assert 0.3 < A.sample_apply(n, 0.5, gen).float().mean() < 0.7
    noise = A.gaussian_noise(torch.zeros(4, C, T, V, M), std=0.01, p=1, generator=gen)
    assert abs(noise.std().item() - 0.01) < 0.001


def test_zero_joints_stay_zero(x, gen):
    for out in (A.shear(x, 0.5, gen), A.random_rotate(x, gen)):
        assert torch.all(out[::2, :, :, :, 1] == 0)
        assert torch.all(out[1, :, 40:] == 0)


def test_crop_at_centre_start_is_identity(x):
    assert torch.equal(A.temporal_crop(x, 6, start=torch.full((N,), T // 6)), x)


def test_disabled_settings_return_input(x, gen):
    assert A.temporal_crop(x, 0, gen) is x
    assert A.shear(x, 0, gen) is x
    assert A.shear(x, -1.0, gen) is x
    for name in ("random_flip", "gaussian_noise", "gaussian_blur", "axis_mask", "time_flip"):
        fn = getattr(A, name)
        out = fn(x, FLIP, p=0, generator=gen) if name == "random_flip" else fn(x, p=0, generator=gen)
        assert torch.equal(out, x), name
    assert torch.equal(A.extreme_augment(x, "", FLIP, gen), x)


def test_flip_twice_is_identity(x):
    apply = torch.ones(N, dtype=torch.bool)
    once = A.random_flip(x, FLIP, apply=apply)
    assert not torch.equal(once, x)
    assert torch.equal(A.random_flip(once, FLIP, apply=apply), x)


def test_blur_of_constant_signal():
    sigma = torch.tensor([0.1, 0.5, 1.0, 2.0])
    x = torch.full((4, C, T, V, M), 2.0)
    apply = torch.ones(4, dtype=torch.bool)
    k = torch.arange(-7, 8, dtype=torch.float64)
    total = torch.exp(-k[None] ** 2 / (2 * sigma.double()[:, None] ** 2)).sum(1).float()
    raw = A.gaussian_blur(x, sigma=sigma, apply=apply)[:, :, 7:T - 7]
    check(raw, (2.0 * total).view(4, 1, 1, 1, 1).expand_as(raw))
    kept = A.gaussian_blur(x, sigma=sigma, apply=apply, normalize=True)[:, :, 7:T - 7]
    check(kept, torch.full_like(kept, 2.0))


def test_axis_mask_zeroes_exactly_one_channel(x, gen):
    out = A.axis_mask(x, p=1, generator=gen)
    zeroed = (out == 0).flatten(2).all(-1)  # (N, C)
    assert torch.equal(zeroed.sum(1), torch.ones(N, dtype=torch.long))


def test_extreme_augment_rejects_unknown_code(x):
    with pytest.raises(ValueError, match="unknown augmentation"):
        A.extreme_augment(x, "127", FLIP)
    assert set(A.AUGMENTATIONS) == set("123456")


def test_numpy_pipelines_run(x):
    rng = np.random.default_rng(0)
    s = x[0].numpy()
    out = R.extreme_augment_sample(R.normal_augment_sample(s, 0.5, 6, rng), "123456", FLIP, rng)
    assert out.shape == s.shape and out.dtype == s.dtype


def test_non_contiguous_and_float64_inputs(x):
    def run(v):
        g = torch.Generator().manual_seed(9)
        return A.extreme_augment(A.normal_augment(v, 0.5, 6, g), "123456", FLIP, g)

    strided = x.permute(0, 1, 2, 4, 3).contiguous().permute(0, 1, 2, 4, 3)
    assert not strided.is_contiguous()
    assert torch.equal(run(strided), run(x))
    double = run(x.double())
    assert double.dtype == torch.float64 and double.shape == x.shape
