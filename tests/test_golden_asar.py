"""ASAR against the genuine upstream code (tests/golden/asar.npz, see tests/golden/README.md).

Four steps at 0-based epochs 149, 150, 150, 151: the first enqueues the keys, the next three sample actively
(k-means over the gradient embeddings of the keys and the old-queue candidates), the lr drops in the fourth.
Injected besides the dropout masks: upstream's key-batch shuffle (its key-encoder dropout masks were drawn
for the shuffled batch, so they are put back in sample order) and the k-means initial centroids.
"""
import contextlib

import pytest
import torch

import net.asar
from upstream_golden import FLOAT64_TOL, GoldenRun, assert_within, load_golden, section

CFG = {"model": "net.asar.ASAR", "optimizer": "SGD", "momentum": 0.9, "num_epoch": 300}
# Upstream's hard-coded constants (net/asar.py), and its untransposed old-queue candidates: the golden's
# batch equals feature_dim (8), the only case where upstream's concatenation runs.
OURS = {"nn_num": 5, "T1": 0.07, "T2": 0.07, "active_sampling_epoch": 150, "kmeans_iters": 100, "kmeans_tol": 1e-4,
        "legacy_queue_candidates": True}


def config(meta):
    """Our config from the golden's upstream settings (the lineage's keys are ours)."""
    optim = meta["optim"]
    return {**CFG, "model_args": {**meta["model_args"], **OURS}, "base_lr": optim["base_lr"],
            "nesterov": optim["nesterov"], "weight_decay": optim["weight_decay"], "step": optim["step"]}


class RecordedKMeans:
    """Stands in for net.asar.kmeans: runs ours from upstream's recorded initial centroids (the first
    `n_clusters` entries of the permutation ours draws) and compares its input, the gradient embeddings,
    and its assignment with upstream's."""

    def __init__(self, run: GoldenRun):
        self.run, self.step, self.calls = run, None, 0
        self.original = net.asar.kmeans

    def __call__(self, x, n_clusters, generator=None, *args, **kwargs):
        extra = section(self.run.arrays, f"step{self.step}/extra")
        assert "kmeans_init" in extra, f"step {self.step}: ours ran k-means, upstream did not"
        self.calls += 1
        init = torch.as_tensor(extra["kmeans_init"], dtype=torch.long)
        rest = torch.tensor([i for i in range(x.shape[0]) if i not in set(init.tolist())], dtype=torch.long)
        perm = torch.cat([init, rest])
        self.run.note("gradient embeddings", x, extra["kmeans_input"])
        real_randperm = torch.randperm

        def recorded_randperm(n, *a, **k):
            assert n == len(perm), f"k-means drew a permutation of {n}, the golden recorded {len(perm)} candidates"
            return perm.to(k.get("device") or "cpu")

        with contextlib.ExitStack() as stack:
            stack.callback(setattr, torch, "randperm", real_randperm)
            torch.randperm = recorded_randperm
            assign = self.original(x, n_clusters, generator, *args, **kwargs)
        self.run.note("kmeans assignment", assign, extra["kmeans_assign"])
        return assign


def unshuffle_key_masks(run: GoldenRun, step: int):
    """Upstream ran the key encoder on the batch shuffled by `_batch_shuffle_single_gpu`, so its dropout masks
    of encoder_k are in shuffled order; ours runs on the batch in sample order: reorder the masks."""
    unshuffle = torch.as_tensor(run.arrays[f"step{step}/extra/unshuffle"], dtype=torch.long)
    n = len(unshuffle)
    for name, masks in run.dropout.book.items():
        if name.startswith("encoder_k."):
            run.dropout.book[name] = [m.reshape(n, -1, *m.shape[1:])[unshuffle].reshape(m.shape) for m in masks]


@pytest.mark.parametrize("dtype, tol", [(torch.float64, FLOAT64_TOL), (torch.float32, 1e-4)])
def test_asar_steps_equal_upstream(tmp_path, monkeypatch, dtype, tol):
    meta, arrays = load_golden("asar")
    n = meta["input_shape"][0]
    for i in range(len(meta["epochs"])):  # upstream wrote N keys every step (not its 2N fall-through)
        assert int(arrays[f"step{i}/extra/enqueued"]) == n
    run = GoldenRun("asar", tmp_path, config(meta), dtype=dtype)
    kmeans = RecordedKMeans(run)
    monkeypatch.setattr(net.asar, "kmeans", kmeans)
    for i in range(run.steps):
        kmeans.step, calls = i, kmeans.calls
        out = run.step(i, before=lambda views, i=i: unshuffle_key_masks(run, i))
        active = f"step{i}/extra/kmeans_init" in run.arrays
        assert bool(out["active"]) == active and kmeans.calls == calls + active, f"step {i}: phase differs"
        run.compare_step(i, out)
    run.compare_final()
    worst = dict(run.worst)
    phases = [f"step{i}/extra/kmeans_init" in arrays for i in range(run.steps)]
    assert phases == [False, True, True, True] and kmeans.calls == 3  # the switch to active sampling is covered
    assert set(worst) >= {"loss", "gradients", "queues", "weights", "lr", "gradient embeddings", "kmeans assignment"}
    assert_within(worst, tol, f"ASAR {dtype}")
