"""Batched skeleton augmentations in torch.

Every function takes a whole batch x of shape (N, C=3, T, V, M) (batch, xyz, frames, joints,
persons), draws one random parameter set per sample with torch on x.device (from `generator`
when given) and returns a new tensor; the input is never modified. Passing the parameters
explicitly (`start`, `matrix`, `apply`, ...) skips the drawing, which is how the tests check
each function against the per-sample numpy reference in tests/augment_numpy.py.

The algorithms are those of the SkeletonCLR / AimCLR feeders (feeder/tools.py there); each
docstring names the one it reproduces.
"""
from __future__ import annotations

import torch


# ----------------------------------------------------------------------------- parameters

def sample_apply(n, p, generator=None, device=None):
    """(n,) bool: True with probability p, like upstream's `random.random() < p`."""
    return torch.rand(n, generator=generator, device=device) < p


def crop_padding(num_frames, padding_ratio):
    """Number of reflected frames P added at each end by temporal_crop."""
    pad = int(num_frames // padding_ratio)
    if pad > num_frames:
        raise ValueError(f"padding_ratio {padding_ratio} pads {pad} > T={num_frames} frames; use a ratio >= 1")
    return pad


def sample_temporal_crop_params(n, num_frames, padding_ratio, generator=None, device=None):
    """(n,) long window starts, uniform in [0, 2P] inclusive."""
    pad = crop_padding(num_frames, padding_ratio)
    return torch.randint(0, 2 * pad + 1, (n,), generator=generator, device=device)


def sample_shear_params(n, amplitude, generator=None, device=None, dtype=torch.float32):
    """(n, 3, 3) shear matrices [[1, a, d], [b, 1, e], [c, f, 1]] with a..f ~ U(-r, r)."""
    u = torch.rand(n, 6, generator=generator, device=device, dtype=dtype)
    a, b, c, d, e, f = ((u * 2 - 1) * amplitude).unbind(1)
    one = torch.ones_like(a)
    return torch.stack([one, a, d, b, one, e, c, f, one], dim=1).view(n, 3, 3)


def sample_rotate_params(n, generator=None, device=None, dtype=torch.float32):
    """(n, 3) x, y, z angles in radians: U(0, 30) deg about a random main axis, U(0, 1) deg
    about the other two."""
    main = torch.randint(0, 3, (n,), generator=generator, device=device)
    u = torch.rand(n, 3, generator=generator, device=device, dtype=dtype)
    max_deg = torch.where(torch.nn.functional.one_hot(main, 3).bool(), 30.0, 1.0).to(dtype)
    return torch.deg2rad(u * max_deg)


def sample_gaussian_blur_params(n, sigma_range=(0.1, 2.0), generator=None, device=None, dtype=torch.float32):
    """(n,) sigmas ~ U(sigma_range)."""
    lo, hi = sigma_range
    return lo + (hi - lo) * torch.rand(n, generator=generator, device=device, dtype=dtype)


def sample_axis_mask_params(n, generator=None, device=None, coords=3):
    """(n,) long coordinate index in {0, ..., coords - 1} to zero (x, y, z; x, y for 2-D data)."""
    return torch.randint(0, coords, (n,), generator=generator, device=device)


def _on_samples(x, apply, fn):
    """x with the samples where `apply` is True replaced by fn(those samples, their indices).

    Only the selected samples are computed, which halves the work at p = 0.5 compared with a
    torch.where over the whole batch (at the price of one host sync on GPU for nonzero).
    """
    index = apply.nonzero().squeeze(1)
    return x.index_copy(0, index, fn(x.index_select(0, index), index))


def _select_frames(x, frames):
    """out[n, :, t] = x[n, :, frames[n, t]] for an (N, T') long tensor, as one row gather."""
    n, c, t = x.shape[:3]
    rows = torch.arange(n * c, device=x.device).view(n, c, 1) * t + frames.view(n, 1, -1)
    out = x.flatten(3).flatten(0, 2).index_select(0, rows.view(-1))
    return out.view(n, c, frames.shape[1], *x.shape[3:])


# ----------------------------------------------------------------------------- augmentations

def temporal_crop(x, padding_ratio, generator=None, start=None):
    """Reflect-pad P = T // padding_ratio frames at both ends, take T frames from a random start
    in [0, 2P] (SkeletonCLR / AimCLR feeder/tools.py temperal_crop)."""
    if padding_ratio <= 0:
        return x
    n, _, t = x.shape[:3]
    pad = crop_padding(t, padding_ratio)
    if start is None:
        start = sample_temporal_crop_params(n, t, padding_ratio, generator, x.device)
    # frame index in the unpadded sequence; reflection maps -1 -> 0 and T -> T - 1, so the
    # padded copy never has to be built
    k = start.view(n, 1) - pad + torch.arange(t, device=x.device)
    k = torch.where(k < 0, -1 - k, torch.where(k >= t, 2 * t - 1 - k, k))
    return _select_frames(x, k)


def shear(x, amplitude, generator=None, matrix=None):
    """p -> S p with S = [[1, a, d], [b, 1, e], [c, f, 1]], a..f ~ U(-r, r) per sample
    (SkeletonCLR / AimCLR feeder/tools.py shear)."""
    if amplitude <= 0:
        return x
    if matrix is None:
        matrix = sample_shear_params(x.shape[0], amplitude, generator, x.device, x.dtype)
    # trailing dims flattened so that einsum is a single bmm (no permuted copies)
    return torch.einsum("nij,njk->nik", matrix.to(x.dtype), x.flatten(2)).view(x.shape)


def random_flip(x, permutation, p=0.5, generator=None, apply=None):
    """With probability p, permute the joints by the left/right swap `permutation`
    (AimCLR feeder/tools.py random_spatial_flip)."""
    if len(permutation) != x.shape[3]:
        raise ValueError(f"flip permutation has {len(permutation)} joints, data has V={x.shape[3]}")
    if apply is None:
        apply = sample_apply(x.shape[0], p, generator, x.device)
    v, m = x.shape[3:]
    # permute (joint, person) pairs as one index over the flattened V*M columns: far faster
    # than an index_select on the joint axis with M = 2 contiguous values per joint
    joints = torch.as_tensor(permutation, device=x.device)
    columns = (joints.view(v, 1) * m + torch.arange(m, device=x.device)).view(-1)
    return _on_samples(x, apply, lambda xs, _: xs.reshape(-1, v * m).index_select(1, columns).view(xs.shape))


def rotation_matrix(angles):
    """(N, 3, 3) matrix M with p' = p M equal to rotating row vectors about x, then y, then z."""
    c, s = torch.cos(angles), torch.sin(angles)
    zero, one = torch.zeros_like(c[:, 0]), torch.ones_like(c[:, 0])

    def mat(*rows):
        return torch.stack(rows, dim=1).view(-1, 3, 3)

    rx = mat(one, zero, zero, zero, c[:, 0], s[:, 0], zero, -s[:, 0], c[:, 0])
    ry = mat(c[:, 1], zero, -s[:, 1], zero, one, zero, s[:, 1], zero, c[:, 1])
    rz = mat(c[:, 2], s[:, 2], zero, -s[:, 2], c[:, 2], zero, zero, zero, one)
    return rx.mT @ ry.mT @ rz.mT


def random_rotate(x, generator=None, angles=None):
    """Rotate about x, y, z in turn: U(0, 30) deg about a random main axis, U(0, 1) deg about
    the other two (AimCLR feeder/tools.py random_rotate)."""
    if angles is None:
        angles = sample_rotate_params(x.shape[0], generator, x.device, x.dtype)
    flat = x.flatten(2)
    return torch.einsum("nij,nik->njk", rotation_matrix(angles.to(x.dtype)), flat).view(x.shape)


def gaussian_noise(x, std=0.01, p=0.5, generator=None, noise=None, apply=None):
    """With probability p, add i.i.d. N(0, std^2) noise to every coordinate, padding included
    (AimCLR feeder/tools.py gaus_noise)."""
    if apply is None:
        apply = sample_apply(x.shape[0], p, generator, x.device)
    index = apply.nonzero().squeeze(1)
    # noise is only drawn for the selected samples (drawing normals dominates the cost)
    if noise is None:
        noise = x.new_empty((len(index), *x.shape[1:])).normal_(0.0, std, generator=generator)
    else:
        noise = noise.index_select(0, index)
    return x.index_add(0, index, noise.to(x.dtype))


def blur_matrix(sigma, num_frames, kernel_size=15, normalize=False):
    """(N, T, T) banded matrix B with (B x)[t] = sum_k w_k x[t + k], zero outside [0, T)."""
    radius = kernel_size // 2
    taps = torch.arange(-radius, radius + 1, device=sigma.device, dtype=sigma.dtype)
    w = torch.exp(-taps * taps / (2 * sigma.view(-1, 1) ** 2))
    if normalize:
        w = w / w.sum(1, keepdim=True)
    # z[j] = w[j - (T - 1) + radius] on 2T - 1 slots (negative padding crops when T <= radius);
    # B[t, s] = z[s - t + T - 1] is then a flipped sliding window over z, built without indexing
    z = torch.nn.functional.pad(w, (num_frames - 1 - radius,) * 2)
    return z.unfold(1, num_frames, 1).flip(1)


def gaussian_blur(x, sigma_range=(0.1, 2.0), kernel_size=15, p=0.5, normalize=False, generator=None,
                  sigma=None, apply=None):
    """With probability p, convolve along time with a Gaussian of sigma ~ U(sigma_range), zero
    padded, weights exp(-k^2 / 2 sigma^2) for |k| <= kernel_size // 2 (AimCLR feeder/tools.py
    GaussianBlurConv). Upstream does not normalise the kernel, so the signal is also scaled by
    sum(w); normalize=True divides by it."""
    n, c, t = x.shape[:3]
    if apply is None:
        apply = sample_apply(n, p, generator, x.device)
    if sigma is None:
        sigma = sample_gaussian_blur_params(n, sigma_range, generator, x.device, x.dtype)
    sigma = sigma.to(x.dtype)

    # T is short (50-300), so one batched matmul with a banded T x T matrix beats a depthwise
    # conv1d with N*C*V*M groups and needs no padded copy
    def blur(xs, index):
        frames_first = xs.transpose(1, 2).flatten(2)
        out = torch.bmm(blur_matrix(sigma[index], t, kernel_size, normalize), frames_first)
        return out.view(len(xs), t, c, *x.shape[3:]).transpose(1, 2)

    return _on_samples(x, apply, blur)


def axis_mask(x, p=0.5, generator=None, axis=None, apply=None):
    """With probability p, zero one coordinate channel chosen uniformly among the C channels of x: x, y, z
    (AimCLR feeder/tools.py axis_mask), or x, y of 2-D data."""
    n, c = x.shape[:2]
    if apply is None:
        apply = sample_apply(n, p, generator, x.device)
    if axis is None:
        axis = sample_axis_mask_params(n, generator, x.device, coords=c)
    index = apply.nonzero().squeeze(1)
    channels = index * c + axis.index_select(0, index)
    return x.flatten(2).flatten(0, 1).index_fill(0, channels, 0).view(x.shape)


def time_flip(x, p=0.5, generator=None, apply=None):
    """With probability p, reverse the frame order (AimCLR feeder/tools.py random_time_flip)."""
    if apply is None:
        apply = sample_apply(x.shape[0], p, generator, x.device)
    t = x.shape[2]
    forward = torch.arange(t, device=x.device)
    return _select_frames(x, torch.where(apply.view(-1, 1), t - 1 - forward, forward))


# ----------------------------------------------------------------------------- pipelines

AUGMENTATIONS = {
    "1": "random_flip",
    "2": "random_rotate",
    "3": "gaussian_noise",
    "4": "gaussian_blur",
    "5": "axis_mask",
    "6": "time_flip",
}


def extreme_augment(x, aug_method="12345", flip_permutation=None, generator=None, blur_normalize=False, coords=3):
    """Apply the AimCLR "extreme" augmentations named by the digits of aug_method, in that order
    (AimCLR feeder _strong_aug, which always runs them in the order 1..6: the same for sorted
    codes such as the default). flip_permutation defaults to the NTU RGB+D left/right swap.

    coords=2 (2-D data, channels x, y[, score]): the rotation is in the image plane, the noise, blur and axis
    mask act on x, y only, and missing joints (score 0) stay exactly zero."""
    if coords == 2:
        return _extreme_augment_2d(x, aug_method, flip_permutation, generator, blur_normalize)
    unknown = sorted(set(aug_method) - set(AUGMENTATIONS))
    if unknown:
        raise ValueError(f"unknown augmentation code(s) {unknown} in {aug_method!r}; known: {AUGMENTATIONS}")
    for code in aug_method:
        if code == "1":
            if flip_permutation is None:
                from feeder.layouts import NTU_RGBD
                flip_permutation = NTU_RGBD.flip_permutation
            x = random_flip(x, flip_permutation, generator=generator)
        elif code == "2":
            x = random_rotate(x, generator=generator)
        elif code == "3":
            x = gaussian_noise(x, generator=generator)
        elif code == "4":
            x = gaussian_blur(x, normalize=blur_normalize, generator=generator)
        elif code == "5":
            x = axis_mask(x, generator=generator)
        else:
            x = time_flip(x, generator=generator)
    return x


def _extreme_augment_2d(x, aug_method, flip_permutation, generator, blur_normalize):
    unknown = sorted(set(aug_method) - set(AUGMENTATIONS))
    if unknown:
        raise ValueError(f"unknown augmentation code(s) {unknown} in {aug_method!r}; known: {AUGMENTATIONS}")
    xy, rest = x[:, :2], x[:, 2:]
    for code in aug_method:
        if code == "1":  # the joints swap left / right: the score travels with its joint
            swapped = random_flip(torch.cat([xy, rest], 1), flip_permutation, generator=generator)
            xy, rest = swapped[:, :2], swapped[:, 2:]
        elif code == "2":
            xy = rotate_2d(xy, generator=generator)
        elif code == "3":
            xy = gaussian_noise(xy, generator=generator)
        elif code == "4":
            xy = _masked_blur(xy, rest, generator)
        elif code == "5":
            xy = axis_mask(xy, generator=generator)
        else:
            frames = torch.cat([xy, rest], 1)
            frames = time_flip(frames, generator=generator)
            xy, rest = frames[:, :2], frames[:, 2:]
    return keep_missing(torch.cat([xy, rest], 1))


def _masked_blur(xy, rest, generator):
    """The temporal Gaussian blur of 2-D joints as a normalised convolution over the visible frames only, so a
    joint next to frames where it is missing is not pulled towards (0, 0) (a spike); without a score channel,
    the plain normalised blur."""
    n = xy.shape[0]
    apply = sample_apply(n, 0.5, generator, xy.device)
    sigma = sample_gaussian_blur_params(n, (0.1, 2.0), generator, xy.device, xy.dtype)
    visible = (rest[:, :1] > 0).to(xy.dtype) if rest.shape[1] else torch.ones_like(xy[:, :1])
    num = gaussian_blur(xy * visible, sigma=sigma, apply=apply, normalize=True)
    den = gaussian_blur(visible, sigma=sigma, apply=apply, normalize=True)
    return torch.where(den > 0, num / den.clamp_min(1e-12), torch.zeros_like(num))


# ----------------------------------------------------------------------------- 2-D (image-plane) data

def shear_2d(x, amplitude, generator=None, matrix=None):
    """(x, y) -> S (x, y), S = [[1, a], [b, 1]] with a, b ~ U(-r, r) per sample; other channels (the score)
    kept: the 2-D counterpart of the lineage's shear."""
    if amplitude <= 0:
        return x
    if matrix is None:
        u = torch.rand(x.shape[0], 2, generator=generator, device=x.device, dtype=x.dtype)
        a, b = ((u * 2 - 1) * amplitude).unbind(1)
        one = torch.ones_like(a)
        matrix = torch.stack([one, a, b, one], dim=1).view(-1, 2, 2)
    xy = torch.einsum("nij,njk->nik", matrix.to(x.dtype), x[:, :2].flatten(2)).view(x[:, :2].shape)
    return torch.cat([xy, x[:, 2:]], 1)


def scale_2d(x, scale_range=(0.8, 1.2), generator=None, factor=None):
    """(x, y) times one factor per sample ~ U(scale_range); other channels kept."""
    lo, hi = (float(v) for v in scale_range)
    if factor is None:
        factor = lo + (hi - lo) * torch.rand(x.shape[0], generator=generator, device=x.device, dtype=x.dtype)
    xy = x[:, :2] * factor.view(-1, 1, 1, 1, 1).to(x.dtype)
    return torch.cat([xy, x[:, 2:]], 1)


def rotate_2d(x, max_deg=30.0, generator=None, angles=None):
    """A rotation in the image plane by U(-max_deg, max_deg) degrees per sample; other channels kept (there is
    no rotation out of the image plane for 2-D data)."""
    if angles is None:
        angles = torch.deg2rad((torch.rand(x.shape[0], generator=generator, device=x.device, dtype=x.dtype) * 2 - 1)
                               * max_deg)
    c, s = torch.cos(angles).view(-1, 1, 1, 1), torch.sin(angles).view(-1, 1, 1, 1)
    px, py = x[:, 0], x[:, 1]
    xy = torch.stack([c * px - s * py, s * px + c * py], 1)
    return torch.cat([xy, x[:, 2:]], 1)


def keep_missing(x):
    """2-D data with a score channel (C = 3): x, y set back to 0 where the score is 0 (missing joints stay one
    thing, whatever an augmentation did around them); other data unchanged."""
    if x.shape[1] < 3:
        return x
    visible = (x[:, 2:3] > 0).to(x.dtype)
    return torch.cat([x[:, :2] * visible, x[:, 2:]], 1)


def normal_augment(x, shear_amplitude, padding_ratio, generator=None):
    """Temporal crop then shear: the SkeletonCLR "normal" view (feeder _aug)."""
    return shear(temporal_crop(x, padding_ratio, generator), shear_amplitude, generator)


# ----------------------------------------------------------------------------- MAMP / STARS views

def valid_lengths(x):
    """(N,) number of frames holding any non-zero value (MAMP's valid_frame_num, a count)."""
    return (x.sum(dim=(1, 3, 4)) != 0).sum(dim=1)


def sample_valid_crop_params(valid, p_interval, min_frames=64, generator=None):
    """(start, length) per sample, MAMP's valid_crop_resize: one p gives the centre crop keeping the
    middle p of the valid frames; two give a random crop of floor(valid * U(p0, p1)) frames, at
    least min_frames (64 upstream) and at most the valid frames, at a random start."""
    valid = valid.long()
    if len(p_interval) == 1:
        bias = torch.floor((1 - float(p_interval[0])) * valid.double() / 2).long()
        return bias, valid - 2 * bias
    lo, hi = (float(p) for p in p_interval)
    u = torch.rand(len(valid), 2, generator=generator, device=valid.device, dtype=torch.float64)
    length = torch.floor(valid * (lo + (hi - lo) * u[:, 0])).long()
    length = torch.minimum(length.clamp(min=min_frames), valid)
    start = torch.floor(u[:, 1] * (valid - length + 1)).long()
    return start, length


def crop_resize(x, start, length, frames):
    """Frames [start, start + length) of each sample, linearly resized to `frames` (torch's
    interpolate, align_corners=False: half-pixel centres, source clamped at 0)."""
    n = x.shape[0]
    length = length.clamp(min=1).to(x.dtype).view(n, 1)
    # float32 scale, then scale * (t + 0.5) - 0.5 rounded once (torch's kernel fuses it): 1-ulp agreement
    scale = (length / frames).double()
    src = ((torch.arange(frames, device=x.device, dtype=torch.float64) + 0.5) * scale - 0.5).to(x.dtype).clamp(min=0)
    lo = src.floor()
    last = length - 1
    weight = torch.where(lo < last, src - lo, torch.zeros_like(src))
    lo = torch.minimum(lo, last).long()
    hi = torch.minimum(lo + 1, last.long())
    x0 = _select_frames(x, start.view(n, 1) + lo)
    x1 = _select_frames(x, start.view(n, 1) + hi)
    w = weight.view(n, 1, frames, 1, 1)
    return x0 * (1 - w) + x1 * w


def valid_crop_resize(x, p_interval, frames, min_frames=64, generator=None):
    """MAMP's temporal view: crop the valid frames (centre or random, see sample_valid_crop_params)
    and resize to `frames`. x: (N, C, T, V, M), zero-padded at the end."""
    start, length = sample_valid_crop_params(valid_lengths(x), p_interval, min_frames, generator)
    return crop_resize(x, start, length, frames)


def sample_uniform_angles(n, theta=0.3, generator=None, device=None, dtype=torch.float32):
    """(n, 3) x, y, z angles ~ U(-theta, theta) radians (MAMP's random_rot)."""
    return (torch.rand(n, 3, generator=generator, device=device, dtype=dtype) * 2 - 1) * theta


def uniform_rotate(x, theta=0.3, generator=None, angles=None):
    """One rotation per sequence, R = Rz Ry Rx with angles U(-theta, theta) (MAMP random_rot)."""
    if angles is None:
        angles = sample_uniform_angles(x.shape[0], theta, generator, x.device, x.dtype)
    return random_rotate(x, angles=angles)
