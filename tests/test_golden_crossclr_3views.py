"""3s-CrosSCLR against the genuine upstream code (tests/golden/crossclr_3views.npz, see tests/golden/README.md).

One SkeletonCLR-phase step, then two cross-view mining steps (cross_epoch 1), with upstream's two quirks on:
only the motion key encoder moves in the cross phase, and the motion / bone projectors end in the joint's."""
import pytest
import torch

from upstream_golden import FLOAT64_TOL, GoldenRun, assert_within, load_golden

CFG = {"model": "net.crossclr.CrosSCLR3Views", "stream": "all", "optimizer": "SGD", "momentum": 0.9}
UPSTREAM_QUIRKS = {"legacy_crossclr_momentum": True, "legacy_shared_projector": True}
STREAMS = ("joint", "motion", "bone")


def config(meta):
    """Our config from the golden's upstream settings: upstream's processor keys (cross_epoch, topk, context)
    are model_args here."""
    optim = meta["optim"]
    model_args = {**meta["model_args"], **meta["processor_args"], **UPSTREAM_QUIRKS}
    return {**CFG, "model_args": model_args, "base_lr": optim["base_lr"], "nesterov": optim["nesterov"],
            "weight_decay": optim["weight_decay"], "step": optim["step"]}


@pytest.mark.parametrize("dtype, tol", [(torch.float64, FLOAT64_TOL), (torch.float32, 1e-4)],
                         ids=["float64", "float32"])
def test_crossclr_3views_steps_equal_upstream(tmp_path, dtype, tol):
    meta, arrays = load_golden("crossclr_3views")
    run = GoldenRun("crossclr_3views", tmp_path, config(meta), dtype=dtype)
    phases = []
    for i in range(run.steps):
        out = run.step(i)
        run.compare_step(i, out)
        phases.append(float(out["cross"]))
        for s in STREAMS:  # each stream's own loss (upstream's loss, loss_motion, loss_bone)
            run.note("stream losses", out[f"loss_{s}"], arrays[f"step{i}/extra/loss_{s}"])
    run.compare_final()
    worst = dict(run.worst)
    assert set(worst) >= {"loss", "stream losses", "gradients", "queues", "weights", "lr"}
    assert_within(worst, tol, f"3s-CrosSCLR {dtype}")
    assert phases == [float(arrays[f"step{i}/extra/cross"]) for i in range(run.steps)] == [0.0, 1.0, 1.0]
