"""AimCLR against the genuine upstream code (tests/golden/aimclr.npz, see tests/golden/README.md).

Beyond the shared comparison (loss, gradients, queue, final state) this checks the method's own values against
what upstream computed in the same step: the InfoNCE / mined-NCE term and the DDM term, whether the step mined,
the EADM keep masks (joints and entries of the extreme view's last feature map) and the mined positives.
"""
import numpy as np
import pytest
import torch

import net.aimclr as aimclr
from upstream_golden import FLOAT64_TOL, GoldenRun, assert_within, load_golden

CFG = {"model": "net.aimclr.AimCLR", "optimizer": "SGD", "momentum": 0.9}


def config(meta):
    """Our config from the golden's upstream settings (upstream's processor arguments mining_epoch and topk, and
    EADM's constants, are model_args here)."""
    optim = meta["optim"]
    model_args = {**meta["model_args"], **meta["processor_args"], "keep_prob": meta["keep_prob"],
                  "e_lambda": meta["e_lambda"]}
    return {**CFG, "model_args": model_args, "base_lr": optim["base_lr"], "nesterov": optim["nesterov"],
            "weight_decay": optim["weight_decay"], "step": optim["step"]}


def unpack(arrays, key, shape_key):
    shape = tuple(int(s) for s in arrays[shape_key])
    return np.unpackbits(arrays[key])[: int(np.prod(shape))].reshape(shape).astype(bool)


@pytest.mark.parametrize("dtype, tol", [(torch.float64, FLOAT64_TOL), (torch.float32, 1e-4)])
def test_aimclr_steps_equal_upstream(tmp_path, monkeypatch, dtype, tol):
    meta, arrays = load_golden("aimclr")
    run = GoldenRun("aimclr", tmp_path, config(meta), dtype=dtype)

    # Record (without changing them) the EADM keep masks and the mined positives our forward computes.
    seen = {"keep": [], "positives": []}
    keep_scaled, positives = aimclr._keep_scaled, aimclr.neighbour_positives

    def keep_recorded(keep):
        seen["keep"].append(keep.detach().bool().clone())
        return keep_scaled(keep)

    def positives_recorded(*queue_logits, topk=1):
        mask = positives(*queue_logits, topk=topk)
        seen["positives"].append(mask.detach().bool().clone())
        return mask

    monkeypatch.setattr(aimclr, "_keep_scaled", keep_recorded)
    monkeypatch.setattr(aimclr, "neighbour_positives", positives_recorded)

    mined_steps = 0
    for i in range(run.steps):
        seen["keep"].clear()
        seen["positives"].clear()
        out = run.step(i)  # upstream calls encoder_q on the query, then the extreme view: our order (no `order`)
        run.compare_step(i, out)
        ref = lambda key: arrays[f"step{i}/extra/{key}"]  # noqa: E731
        run.note("nce", out["nce"], ref("nce"))
        run.note("ddm", out["ddm"], (ref("ddm_e") + ref("ddm_ed")) / 2)
        assert bool(out["mining"]) == bool(ref("mining")), f"step {i}: mining {bool(out['mining'])}, upstream's differs"
        joints, entries = seen["keep"]  # attention_drop scales the joint mask, then the entry mask
        assert torch.equal(joints.reshape(-1), torch.from_numpy(ref("eadm_joint_keep").astype(bool)).reshape(-1)), \
            f"step {i}: EADM joint keep mask differs from upstream's"
        assert torch.equal(entries, torch.from_numpy(unpack(arrays, f"step{i}/extra/eadm_entry_keep",
                                                            f"step{i}/extra/eadm_entry_shape"))), \
            f"step {i}: EADM entry keep mask differs from upstream's"
        if bool(ref("mining")):
            mined_steps += 1
            (mask,) = seen["positives"]
            assert torch.equal(mask, torch.from_numpy(ref("pos_mask").astype(bool))), \
                f"step {i}: mined positives {mask.int().tolist()} differ from upstream's {ref('pos_mask').tolist()}"
        else:
            assert not seen["positives"]
    run.compare_final()
    worst = dict(run.worst)
    assert 0 < mined_steps < run.steps  # the golden spans the switch to nearest-neighbour mining
    assert set(worst) >= {"loss", "nce", "ddm", "gradients", "queues", "weights", "lr"}
    assert_within(worst, tol, f"AimCLR {dtype}")
    print(f"AimCLR {dtype}: {worst}")
