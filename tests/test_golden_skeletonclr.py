"""SkeletonCLR against the genuine upstream code (tests/golden/skeletonclr.npz, see tests/golden/README.md)."""
import pytest
import torch

from upstream_golden import FLOAT64_TOL, GoldenRun, assert_within

CFG = {"model": "net.skeletonclr.SkeletonCLR", "optimizer": "SGD", "momentum": 0.9}


def config(meta):
    """Our config from the golden's upstream settings (the lineage's keys are ours)."""
    optim = meta["optim"]
    return {**CFG, "model_args": meta["model_args"], "base_lr": optim["base_lr"], "nesterov": optim["nesterov"],
            "weight_decay": optim["weight_decay"], "step": optim["step"]}


@pytest.mark.parametrize("dtype, tol", [(torch.float64, FLOAT64_TOL), (torch.float32, 1e-4)])
def test_skeletonclr_steps_equal_upstream(tmp_path, dtype, tol):
    from upstream_golden import load_golden

    meta, _ = load_golden("skeletonclr")
    run = GoldenRun("skeletonclr", tmp_path, config(meta), dtype=dtype)
    worst = run.replay()
    assert set(worst) >= {"loss", "gradients", "queues", "weights", "lr"}
    assert_within(worst, tol, f"SkeletonCLR {dtype}")
