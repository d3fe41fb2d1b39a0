"""STARS stage 2 against the genuine upstream code (tests/golden/stars.npz; how it was made:
tests/golden/notes/stars.md).

Upstream's two-step route on a 4-block, width-16 transformer: steps 0-1 are the "second stage" (only the
head trains), steps 2-3 the "third stage" (blocks depth//2.., the final norm and the head, lr * layer_decay^(depth
- i)), which starts from the second stage's saved model (head, BatchNorm statistics and queue carried over) with
a fresh AdamW. Besides the loss, gradients (after the per-tensor clipping, as the optimiser used them), queues
and weights, the test compares the optimiser upstream built: which tensors it trains, the lr and weight decay of
each one at each step, the gradient norms the clipping saw, and AdamW's moments after each stage. Ours runs
with `legacy_view1_no_grad: true`: upstream's view-1 predictions come back through a no-grad un-shuffle, so
only the first loss term trains (half the symmetric gradient).

Upstream runs the encoder twice, on two equal views (its view 1 shuffled and unshuffled); replaying both views
reproduces everything, BatchNorm running statistics included. This project's configs give one view, and one
pass: the same loss, gradients and weights, but the head's BatchNorms take one running-statistics update a
step where upstream's take two (test_one_view_...).
"""
import numpy as np
import pytest
import torch

import processor.optim
from upstream_golden import FLOAT64_TOL, GoldenRun, assert_within, load_golden, section

RUNNING = ("running_mean", "running_var", "num_batches_tracked")
# These two biases have a gradient that is zero in exact arithmetic (the projector's BatchNorm removes any shift
# of the pooled feature, the predictor's one any shift of z), so AdamW moves them by lr * g / (|g| + eps) of
# rounding noise: up to 3e-9 apart in float64, up to lr a step in float32 (2 steps a stage on each side, the
# third stage starting from upstream's state: <= 4e-3 apart). z, hence the queue, holds the projector's bias,
# and the projector's running mean follows the final norm's bias.
ZERO_GRADIENT = ("encoder_student.norm.bias", "encoder_student.head.projector.0.bias")
FLOAT32_TOL = 1e-4
FLOAT32_ZERO_GRADIENT_TOL = 5e-3  # "zero-gradient biases", "queues", "batchnorm statistics"


def config(meta, stage: str, second_pass: bool = True) -> dict:
    """Our config from the golden's upstream settings (second_pass: upstream's second encoder pass)."""
    up, optim = meta["model_args"], meta["optim"]
    keys = ("dim_in", "dim_feat", "depth", "num_heads", "mlp_ratio", "num_frames", "num_joints", "patch_size",
            "t_patch_size", "qkv_bias", "qk_scale", "drop_rate", "attn_drop_rate", "drop_path_rate", "feature_dim",
            "queue_size", "Temperature", "topk")
    model_args = {k: up[k] for k in keys}
    model_args.update(hidden_dim=up["predictor_hidden_dim"], fully_tune=optim["fully_tune"],
                      legacy_view1_no_grad=True, second_pass=second_pass, **meta["stage_args"][stage])
    adamw = meta["adamw"]
    assert not adamw["amsgrad"] and not adamw["maximize"] and adamw["eps"] == 1e-8
    return {"model": "net.stars.STARS", "model_args": model_args, "optimizer": "AdamW", "betas": adamw["betas"],
            # upstream passed no weight decay: AdamW's default, recorded from upstream's optimiser
            "weight_decay": adamw[f"{stage}_defaults_weight_decay"], "base_lr": optim["base_lr"],
            "scheduler": "constant", "clip_grad_per_tensor": optim["clip_grad"], "sync_bn": True}


class Replay:
    """Both stages of the golden through `Pretrain`, with the checks the shared GoldenRun does not make."""

    def __init__(self, tmp_path, monkeypatch, dtype, two_views: bool):
        self.meta, self.arrays = load_golden("stars")
        self.tmp_path, self.dtype, self.two_views = tmp_path, dtype, two_views
        self.worst = {}
        self.norms = {}
        real_clip = processor.optim.clip_per_tensor

        def recording_clip(params, max_norm):
            self.norms = {id(p): p.grad.norm(2).item() for p in params}
            return real_clip(params, max_norm)

        monkeypatch.setattr(processor.optim, "clip_per_tensor", recording_clip)

    def groups(self, run: GoldenRun, i: int):
        """Our optimiser's groups (one tensor each) against upstream's, in order, with lr and weight decay."""
        names = [str(n) for n in self.arrays[f"step{i}/extra/group_names"]]
        ours = run.processor.optimizer.param_groups
        assert [g["name"] for g in ours] == names, f"step {i}: our optimiser trains other tensors than upstream's"
        assert all(len(g["params"]) == 1 for g in ours)
        run.note("group lr", torch.tensor([g["lr"] for g in ours], dtype=torch.float64),
                 self.arrays[f"step{i}/extra/group_lr"])
        run.note("group weight decay", torch.tensor([g["weight_decay"] for g in ours], dtype=torch.float64),
                 self.arrays[f"step{i}/extra/group_weight_decay"])

    def clip_norms(self, run: GoldenRun, i: int):
        ref = section(self.arrays, f"step{i}/extra/grad_norm_before_clip")
        params = dict(run.model.named_parameters())
        assert {id(params[n]) for n in ref} == set(self.norms), f"step {i}: clipped other tensors than upstream"
        for n, r in ref.items():
            run.note("gradient norms before clipping", torch.tensor(self.norms[id(params[n])], dtype=torch.float64), r)
        clipped = [n for n, r in ref.items() if r > self.meta["optim"]["clip_grad"]]
        assert 0 < len(clipped) < len(ref), f"step {i}: the golden should clip some tensors, not all"

    def adam(self, run: GoldenRun, i: int):
        names = {id(p): n for n, p in run.model.named_parameters()}
        state = {names[id(p)]: s for p, s in run.processor.optimizer.state.items()}
        for key in ("exp_avg", "exp_avg_sq", "step"):
            ref = section(self.arrays, f"step{i}/extra/adam/{key}")
            assert set(ref) == set(state), f"step {i}: AdamW holds state for other tensors than upstream's"
            for n, r in ref.items():
                run.note(f"adamw {key}", state[n][key], r)

    def state(self, run: GoldenRun, ref: dict, skip_running: bool):
        """Our whole state against an upstream state_dict (weights, BatchNorm statistics, queue, counters)."""
        ours = run.model.state_dict()
        assert set(ref) == set(ours), f"state keys differ: {sorted(set(ref) ^ set(ours))[:5]}"
        for name, r in ref.items():
            if skip_running and name.endswith(RUNNING):
                continue
            quantity = ("counters" if not ours[name].is_floating_point() else "zero-gradient biases"
                        if name in ZERO_GRADIENT else "queues" if name == "queue" else "batchnorm statistics"
                        if name.endswith(RUNNING) else "weights")
            run.note(quantity, ours[name], r)

    def step(self, run: GoldenRun, i: int):
        out = run.step(i, views={"clip": run.views(i)[0]}, before=lambda _: self.groups(run, i))
        run.compare_step(i, out)
        self.clip_norms(run, i)

    def stage(self, name: str, steps: list, start: dict | None) -> GoldenRun:
        (self.tmp_path / name).mkdir()
        run = GoldenRun("stars", self.tmp_path / name, config(self.meta, name, self.two_views), dtype=self.dtype)
        if start is not None:  # upstream's third stage loads the second stage's saved model (IO.load_weights)
            run.model.load_state_dict(run.mapped(start), strict=True)
        for i in steps:
            assert self.meta["stages"][i] == name
            self.step(run, i)
        self.adam(run, steps[-1])
        return run

    def replay(self) -> dict:
        second = self.stage("second", [0, 1], None)
        boundary = section(self.arrays, "step1/extra/state")
        self.state(second, boundary, skip_running=not self.two_views)
        third = self.stage("third", [2, 3], boundary)
        self.state(third, section(self.arrays, "final"), skip_running=not self.two_views)
        self.runs = (second, third)
        worst = {}
        for run in self.runs:
            for k, v in run.worst.items():
                worst[k] = max(worst.get(k, 0.0), v)
        return worst


QUANTITIES = {"loss", "gradients", "queues", "weights", "zero-gradient biases", "counters", "lr", "group lr",
              "group weight decay", "gradient norms before clipping", "adamw exp_avg", "adamw exp_avg_sq", "adamw step"}
NOISE_DRIVEN = {"zero-gradient biases", "queues", "batchnorm statistics"}


def test_stars_steps_equal_upstream_float64(tmp_path, monkeypatch):
    worst = Replay(tmp_path, monkeypatch, torch.float64, two_views=True).replay()
    assert set(worst) >= QUANTITIES | {"batchnorm statistics"}
    assert_within(worst, FLOAT64_TOL, "STARS float64")


def test_stars_steps_equal_upstream_float32(tmp_path, monkeypatch):
    worst = Replay(tmp_path, monkeypatch, torch.float32, two_views=True).replay()
    assert set(worst) >= QUANTITIES | {"batchnorm statistics"}
    assert_within({k: v for k, v in worst.items() if k not in NOISE_DRIVEN}, FLOAT32_TOL, "STARS float32")
    assert_within({k: v for k, v in worst.items() if k in NOISE_DRIVEN}, FLOAT32_ZERO_GRADIENT_TOL, "STARS float32")


def test_one_view_as_configured_differs_only_in_batchnorm_statistics(tmp_path, monkeypatch):
    """The configs' one pass: every quantity as upstream's except the head's BatchNorm running statistics,
    which upstream's second, identical pass updates once more each step."""
    replay = Replay(tmp_path, monkeypatch, torch.float64, two_views=False)
    worst = replay.replay()
    assert set(worst) >= QUANTITIES
    assert_within(worst, FLOAT64_TOL, "STARS one view")
    boundary, final = section(replay.arrays, "step1/extra/state"), section(replay.arrays, "final")
    for run, ref, count in zip(replay.runs, (boundary, final), (2, 4 + 2)):  # the third starts from upstream's 4
        ours = run.model.state_dict()
        for bn in ("encoder_student.head.projector.0", "encoder_student.head.predictor.1"):
            assert int(ref[f"{bn}.num_batches_tracked"]) == 2 * (count if run is replay.runs[0] else 4)
            assert int(ours[f"{bn}.num_batches_tracked"]) == count
            # the predictor BN sees W z, whose batch mean is W times the projector bias, ~0: its running mean stays ~0
            for stat in ("running_mean", "running_var") if "projector" in bn else ("running_var",):
                assert not np.allclose(ours[f"{bn}.{stat}"].numpy(), ref[f"{bn}.{stat}"], rtol=0, atol=1e-3)


def test_legacy_view1_no_grad_halves_the_gradient_and_keeps_the_loss():
    """Upstream's p1 carries no gradient: with the two views equal, the gradient is half the symmetric loss's."""
    from net.stars import STARS

    meta, arrays = load_golden("stars")
    args = config(meta, "third")["model_args"]
    x = torch.from_numpy(arrays["step0/view0"]).double()
    out = {}
    for legacy in (False, True):
        model = STARS(**{**args, "legacy_view1_no_grad": legacy}).double()
        model.load_state_dict({k: torch.from_numpy(v) for k, v in section(arrays, "init").items()})
        loss = model({"views": {"clip": x}, "index": torch.arange(len(x))})["loss"]
        loss.backward()
        out[legacy] = loss.item(), {n: p.grad for n, p in model.named_parameters() if p.grad is not None}
    assert out[True][0] == pytest.approx(out[False][0], rel=1e-12)
    assert out[True][1].keys() == out[False][1].keys()
    for n, g in out[True][1].items():
        torch.testing.assert_close(2 * g, out[False][1][n], rtol=1e-9, atol=1e-12)
