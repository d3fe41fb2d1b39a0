"""Per-sample numpy reference of the skeleton augmentations in feeder/augment.py.

This is the plain form the SkeletonCLR / AimCLR feeders use inside a DataLoader worker: one
sample (C, T, V, M) at a time, a matrix product per sample, explicit concatenation and
slicing. It is written independently of the batched torch version and serves two purposes:
the reference that tests/test_augment.py checks feeder/augment.py against, and the "before"
side of bench/augment.py. Do not use it for training.

Each augmentation comes as a deterministic function taking its explicit parameters
(`shear(sample, matrix)`) and a `random_<name>(sample, ..., rng)` wrapper that draws them
from a numpy Generator, as upstream draws them from `random` / `np.random`.
"""
from __future__ import annotations

import math

import numpy as np


# ----------------------------------------------------------------------------- deterministic

def temporal_crop(sample, padding_ratio, start):
    """Reflect-pad T // padding_ratio frames at each end, keep T frames from `start`
    (SkeletonCLR feeder/tools.py temperal_crop)."""
    if padding_ratio <= 0:
        return sample
    num_frames = sample.shape[1]
    pad = int(num_frames // padding_ratio)
    if pad == 0:
        return sample.copy()
    padded = np.concatenate([sample[:, :pad][:, ::-1], sample, sample[:, -pad:][:, ::-1]], axis=1)
    return padded[:, start:start + num_frames].copy()


def shear(sample, matrix):
    """Multiply every joint's xyz by the 3 x 3 shear matrix (SkeletonCLR feeder/tools.py shear)."""
    c, t, v, m = sample.shape
    return np.dot(matrix, sample.reshape(c, -1)).reshape(c, t, v, m).astype(sample.dtype)


def flip(sample, permutation):
    """Swap left and right joints (AimCLR feeder/tools.py random_spatial_flip)."""
    return sample[:, :, permutation, :].copy()


def rotate(sample, angles):
    """Rotate row vectors about x, y, then z by `angles` (radians), p' = p R^T each
    (AimCLR feeder/tools.py random_rotate)."""
    seq = np.transpose(sample, (1, 2, 3, 0))  # T, V, M, C
    for axis, angle in enumerate(angles):
        c, s = math.cos(angle), math.sin(angle)
        if axis == 0:
            r = np.array([[1, 0, 0], [0, c, s], [0, -s, c]])
        elif axis == 1:
            r = np.array([[c, 0, -s], [0, 1, 0], [s, 0, c]])
        else:
            r = np.array([[c, s, 0], [-s, c, 0], [0, 0, 1]])
        seq = np.matmul(seq, r.T)
    return np.transpose(seq, (3, 0, 1, 2)).astype(sample.dtype)


def gaussian_noise(sample, noise):
    """Add the given noise array (AimCLR feeder/tools.py gaus_noise)."""
    return (sample + noise).astype(sample.dtype)


def gaussian_kernel(sigma, kernel_size=15, normalize=False):
    """Weights exp(-k^2 / 2 sigma^2) for k = -r..r; upstream leaves them unnormalised."""
    radius = kernel_size // 2
    k = np.arange(-radius, radius + 1, dtype=np.float64)
    w = np.exp(-k ** 2 / (2 * float(sigma) ** 2))
    return w / w.sum() if normalize else w


def gaussian_blur(sample, sigma, normalize=False, kernel_size=15):
    """Convolve every (channel, joint, person) series along time with the Gaussian kernel,
    zero padding kernel_size // 2, in float64 (AimCLR feeder/tools.py GaussianBlurConv)."""
    w = gaussian_kernel(sigma, kernel_size, normalize)
    radius = kernel_size // 2
    num_frames = sample.shape[1]
    padded = np.pad(sample.astype(np.float64), ((0, 0), (radius, radius), (0, 0), (0, 0)))
    out = np.zeros(padded[:, :num_frames].shape)
    for j, wj in enumerate(w):
        out += wj * padded[:, j:j + num_frames]
    return out.astype(sample.dtype)


def axis_mask(sample, axis):
    """Zero one coordinate channel (AimCLR feeder/tools.py axis_mask)."""
    out = sample.copy()
    out[axis] = 0
    return out


def time_flip(sample):
    """Reverse the frame order (AimCLR feeder/tools.py random_time_flip)."""
    return sample[:, ::-1].copy()


# ----------------------------------------------------------------------------- random

def random_temporal_crop(sample, padding_ratio, rng):
    if padding_ratio <= 0:
        return sample
    pad = int(sample.shape[1] // padding_ratio)
    return temporal_crop(sample, padding_ratio, rng.integers(0, 2 * pad + 1))


def random_shear(sample, amplitude, rng):
    if amplitude <= 0:
        return sample
    a, b, c = rng.uniform(-amplitude, amplitude, 3)
    d, e, f = rng.uniform(-amplitude, amplitude, 3)
    return shear(sample, np.array([[1, a, d], [b, 1, e], [c, f, 1]]))


def random_flip(sample, permutation, rng, p=0.5):
    return flip(sample, permutation) if rng.random() < p else sample


def random_rotate(sample, rng):
    main_axis = rng.integers(0, 3)
    angles = [math.radians(rng.uniform(0, 30 if axis == main_axis else 1)) for axis in range(3)]
    return rotate(sample, angles)


def random_gaussian_noise(sample, rng, std=0.01, p=0.5):
    if rng.random() < p:
        return gaussian_noise(sample, rng.normal(0.0, std, sample.shape))
    return sample


def random_gaussian_blur(sample, rng, sigma_range=(0.1, 2.0), p=0.5, normalize=False, kernel_size=15):
    if rng.random() < p:
        return gaussian_blur(sample, rng.uniform(*sigma_range), normalize, kernel_size)
    return sample


def random_axis_mask(sample, rng, p=0.5):
    return axis_mask(sample, rng.integers(0, 3)) if rng.random() < p else sample


def random_time_flip(sample, rng, p=0.5):
    return time_flip(sample) if rng.random() < p else sample


def normal_augment_sample(sample, shear_amplitude, padding_ratio, rng):
    """Temporal crop then shear: the SkeletonCLR "normal" view of one sample."""
    return random_shear(random_temporal_crop(sample, padding_ratio, rng), shear_amplitude, rng)


def extreme_augment_sample(sample, aug_method, flip_permutation, rng, blur_normalize=False):
    """The AimCLR "extreme" augmentations named by the digits of aug_method, in that order:
    1 flip, 2 rotate, 3 noise, 4 blur, 5 axis mask, 6 time flip."""
    for code in aug_method:
        if code == "1":
            sample = random_flip(sample, flip_permutation, rng)
        elif code == "2":
            sample = random_rotate(sample, rng)
        elif code == "3":
            sample = random_gaussian_noise(sample, rng)
        elif code == "4":
            sample = random_gaussian_blur(sample, rng, normalize=blur_normalize)
        elif code == "5":
            sample = random_axis_mask(sample, rng)
        elif code == "6":
            sample = random_time_flip(sample, rng)
        else:
            raise ValueError(f"unknown augmentation code {code!r} in {aug_method!r}")
    return sample
