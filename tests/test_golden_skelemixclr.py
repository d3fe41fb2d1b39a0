"""SkeleMixCLR+ and SkeleMixCLR (v1) against the genuine upstream code (tests/golden/skelemixclr.npz and
skelemixclr_v1.npz, see tests/golden/README.md).

Upstream draws each mix's partner shift with torch.randint and its region (body parts, temporal length and start)
with python `random`; the goldens hold the values drawn, and `MixReplay` makes `SkeleMixCLR.make_mix` use them:
the shift through the module's `torch.randint`, the region through `mix_region`, rebuilt from the recorded part
indices, length and start with this project's own body-part lists (and checked cell by cell against the mask
upstream built). The replay keeps the graph A that our model builds from `graph_args` (strategy `agcn`) rather
than loading upstream's, so the numbers also check the graph.
"""
import numpy as np
import pytest
import torch

import net.skelemixclr as skelemixclr
from net.skelemixclr import TEMPORAL_STRIDE, SkeleMixCLR
from upstream_golden import FLOAT64_TOL, GoldenRun, assert_within, load_golden, section

GOLDENS = {"skelemixclr": "net.skelemixclr.SkeleMixCLR", "skelemixclr_v1": "net.skelemixclr.SkeleMixCLRv1"}
# float32: the same steps rounded at every op. The first step starts from float32-exact weights and inputs; its
# gradients reach several hundred on weights of 0.02 (the lineage's N(0, 0.02) init, lr 0.1), so that update moves
# the weights far and the second step's gradients carry step 0's float32 rounding amplified about 1e4 times (in
# float64, perturbing the initial weights by 6e-8 relative changes step 1's gradients by 2e-3). Worst seen (README):
# step 0 1.6e-4 (on gradients that are zero in exact arithmetic, 1e-14 in float64, beside others of several
# hundred), step 1's gradients 1.6e-2, losses / queues / weights 6.3e-5.
FLOAT32_TOL = 1e-3
FLOAT32_TOL_LATER_GRADIENTS = 5e-2


def our_model_args(meta):
    """Upstream's model_args in our names: its encoder net/st_gcn_swap.py is our net.st_gcn.Model (mask pooling
    lives in net/skelemixclr.py), and its graph (net/utils/ntu_rgb_d.py, `strategy: spatial` there) is our `agcn`."""
    args = dict(meta["model_args"], base_encoder="net.st_gcn.Model")
    args["graph_args"] = dict(args["graph_args"], strategy="agcn")
    return args


def config(name, meta):
    optim, args = meta["optim"], our_model_args(meta)
    rows = len(args["swap_cfg"]["swap_params"]) if "swap_cfg" in args else 1  # a query view per row
    return {"model": GOLDENS[name], "model_args": args, "optimizer": "SGD", "momentum": 0.9,
            "base_lr": optim["base_lr"], "nesterov": optim["nesterov"], "weight_decay": optim["weight_decay"],
            "step": optim["step"], "views": {"recipe": "multi_resolution", "frames": [meta["input_shape"][2]] * rows}}


def rename(key):
    return None if key.startswith("queue_label") else key  # v1's label queue: kept by upstream, never read


class MixReplay:
    """Feeds the recorded SkeleMix draws of one step to `SkeleMixCLR.make_mix`, in upstream's call order."""

    def __init__(self, arrays):
        self.arrays, self.mixes, self.used = arrays, [], 0

    def load(self, step):
        extra = section(self.arrays, f"step{step}/extra")
        count = len({k.split("/")[0] for k in extra if k.startswith("mix")})
        self.mixes = [{f: extra[f"mix{j}/{f}"] for f in ("shift", "parts", "length", "start", "cells")}
                      for j in range(count)]
        self.used = 0

    def check_all_used(self):
        assert self.used == len(self.mixes), f"golden: {self.used} of {len(self.mixes)} recorded mixes used"

    def current(self):
        assert self.used < len(self.mixes), f"golden: no recorded mix left (call {self.used})"
        return self.mixes[self.used]

    def randint(self, low, high, size, generator=None, device=None):
        """make_mix's one draw: the cyclic partner shift, upstream's torch.randint(1, N - 1, (1,))."""
        shift = int(self.current()["shift"])
        assert tuple(size) == (1,) and low <= shift < high, f"recorded shift {shift} outside [{low}, {high})"
        return torch.tensor([shift], device=device)

    def mix_region(self, n, num_frames, num_joints, spa, tem, parts=None, random_joints=None, per_sample=False,
                   generator=None, device=None):
        """The recorded region, built from our (P, V) body-part matrix: (cells (1, T/4, V), frames (1, T, V))."""
        mix = self.current()
        self.used += 1
        assert parts is not None and not per_sample, "the goldens use semantic parts, one region per batch"
        chosen, length, start = [int(p) for p in mix["parts"]], int(mix["length"]), int(mix["start"])
        units = num_frames // TEMPORAL_STRIDE
        assert spa[0] <= len(chosen) <= spa[1] and tem[0] <= length <= tem[1] and 0 <= start <= units - length
        joints = parts[chosen].any(dim=0)
        segment = torch.zeros(units, dtype=torch.bool, device=device)
        segment[start:start + length] = True
        cells = segment[:, None] & joints[None, :]
        assert np.array_equal(cells.cpu().numpy(), mix["cells"]), "our body parts give another mask than upstream's"
        return cells[None], cells[None].repeat_interleave(TEMPORAL_STRIDE, dim=1)


class _TorchWithShift:
    """net/skelemixclr.py's `torch`, except randint (only make_mix calls it) answers the recorded shift."""

    def __init__(self, replay):
        self.randint = replay.randint

    def __getattr__(self, name):
        return getattr(torch, name)


def keep_own_graph(monkeypatch):
    """Load every state entry but the encoders' graph A: the model keeps the A it built from graph_args."""
    genuine = torch.nn.Module.load_state_dict

    def load_state_dict(self, state, strict=True, **kw):
        own = {k: v.clone() for k, v in self.state_dict().items() if k.endswith(".A")}
        result = genuine(self, state, strict, **kw)
        with torch.no_grad():
            for k, v in own.items():
                self.get_buffer(k).copy_(v)
        return result

    monkeypatch.setattr(SkeleMixCLR, "load_state_dict", load_state_dict)


@pytest.mark.parametrize("name", sorted(GOLDENS))
def test_agcn_graph_is_upstreams(name):
    """The A that upstream's encoders registered equals the one our model builds, bit for bit (float32)."""
    from torchlight.util import instantiate

    meta, arrays = load_golden(name)
    torch.manual_seed(0)
    model = instantiate(GOLDENS[name], our_model_args(meta), where="model_args")
    for enc in ("encoder_q", "encoder_k"):
        ours, ref = getattr(model, enc).A, arrays[f"init/{enc}.A"]
        assert ours.dtype == torch.float32 and ref.dtype == np.float32
        if not np.array_equal(ours.numpy(), ref):
            pytest.fail(f"{enc}.A differs from upstream's in {int((ours.numpy() != ref).sum())} of {ref.size} entries")


@pytest.mark.parametrize("dtype", [torch.float64, torch.float32], ids=["float64", "float32"])
@pytest.mark.parametrize("name", sorted(GOLDENS))
def test_skelemixclr_steps_equal_upstream(tmp_path, monkeypatch, name, dtype):
    meta, _ = load_golden(name)
    keep_own_graph(monkeypatch)
    run = GoldenRun(name, tmp_path, config(name, meta), dtype=dtype, rename=rename)
    mixes = MixReplay(run.arrays)
    monkeypatch.setattr(skelemixclr, "mix_region", mixes.mix_region)
    monkeypatch.setattr(skelemixclr, "torch", _TorchWithShift(mixes))
    worst = {}  # "step<i>" / "final" -> {quantity: worst difference}
    for i in range(run.steps):
        mixes.load(i)
        out = run.step(i)
        mixes.check_all_used()
        run.compare_step(i, out)
        for part in ("loss_ins", "loss_reg"):
            run.note(part, out[part], run.arrays[f"step{i}/extra/{part}"])
        worst[f"step{i}"] = dict(run.worst)
        run.worst.clear()
    run.compare_final()
    worst["final"] = dict(run.worst)
    print(f"{name} {dtype}: {worst}")
    assert set(worst["step0"]) >= {"loss", "loss_ins", "loss_reg", "gradients", "queues", "lr"}
    assert set(worst["final"]) >= {"weights", "counters"}
    for where, seen in worst.items():
        if dtype == torch.float64:
            assert_within(seen, FLOAT64_TOL, f"{name} {dtype} {where}")
            continue
        later = where not in ("step0", "final")
        if later:
            assert_within({"gradients": seen.pop("gradients")}, FLOAT32_TOL_LATER_GRADIENTS, f"{name} {dtype} {where}")
        assert_within(seen, FLOAT32_TOL, f"{name} {dtype} {where}")
