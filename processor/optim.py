"""Optimisation of a processor's model: optimisers, parameter groups, the learning-rate schedule, the step.

`Optimisation` is a mixin of processor/base.py's Processor (it reads `self.cfg`, `self.model`,
`self.scaler`); the pieces that need no processor (RiemannianSGD, clip_per_tensor, lr_at) are functions.
"""
from __future__ import annotations

import math

import torch

from torchlight.errors import ConfigError


class RiemannianSGD(torch.optim.SGD):
    """torch SGD with geoopt's RiemannianSGD first momentum step, for Euclidean parameters (HYSP's optimiser):
    geoopt starts the momentum buffer at the raw gradient g and then applies buf <- m buf + (g + wd p), so the
    first update is (1 + m) g + wd p where torch's is g + wd p; every later step is the same as torch's."""

    @torch.no_grad()
    def step(self, closure=None):
        for group in self.param_groups:
            if group["momentum"] > 0:
                for p in group["params"]:
                    if p.grad is not None and "momentum_buffer" not in self.state[p]:
                        self.state[p]["momentum_buffer"] = p.grad.clone()
        return super().step(closure)


@torch.no_grad()
def clip_per_tensor(params, max_norm: float) -> None:
    """Scale each gradient whose norm exceeds max_norm down to it (STARS' clip_gradients), one by one."""
    for p in params:
        norm = p.grad.norm(2)
        p.grad.mul_(torch.clamp(max_norm / (norm + 1e-6), max=1.0))


def lr_at(cfg: dict, epoch_float: float) -> float:
    """Learning rate at a fractional epoch (0-based): linear warm-up, then step / cosine / constant."""
    base, warm = cfg["base_lr"], cfg["warm_up_epoch"]
    if warm > 0 and epoch_float < warm:
        return base * epoch_float / warm
    if cfg["scheduler"] == "step":  # lineage: epoch e (1-based) uses base * rate^#{s in step: e > s}
        return base * cfg["lr_decay_rate"] ** sum(int(epoch_float) >= s for s in cfg["step"])
    if cfg["scheduler"] == "cosine":
        span = max(cfg["num_epoch"] - warm, 1e-8)
        progress = min(max((epoch_float - warm) / span, 0.0), 1.0)
        return cfg["min_lr"] + (base - cfg["min_lr"]) * 0.5 * (1 + math.cos(math.pi * progress))
    return base


class Optimisation:
    def trainable_parameters(self):
        return [p for p in self.model.parameters() if p.requires_grad]

    def param_groups(self) -> list:
        """Optimiser groups; a model may ask for its own (e.g. layer-wise lr decay) via `param_groups()`."""
        groups = self.model.param_groups(self.cfg) if hasattr(self.model, "param_groups") else None
        return groups if groups is not None else [{"params": self.trainable_parameters()}]

    def build_optimizer(self):
        cfg = self.cfg
        groups = [g for g in self.param_groups() if g["params"]]
        if not groups:
            raise ConfigError("the model has no trainable parameters")
        for g in groups:
            g.setdefault("lr_scale", 1.0)
        kw = dict(lr=cfg["base_lr"], weight_decay=cfg["weight_decay"])
        if cfg["optimizer"] in ("SGD", "RiemannianSGD"):
            sgd = torch.optim.SGD if cfg["optimizer"] == "SGD" else RiemannianSGD
            self.optimizer = sgd(groups, momentum=cfg["momentum"], nesterov=cfg["nesterov"], **kw)
        elif cfg["optimizer"] == "Adam":
            self.optimizer = torch.optim.Adam(groups, betas=tuple(cfg["betas"]), **kw)
        else:
            self.optimizer = torch.optim.AdamW(groups, betas=tuple(cfg["betas"]), **kw)

    def lr_at(self, epoch_float: float) -> float:
        return lr_at(self.cfg, epoch_float)

    def set_lr(self, epoch_float: float) -> float:
        lr = self.lr_at(epoch_float)
        for g in self.optimizer.param_groups:
            g["lr"] = lr * g.get("lr_scale", 1.0)
        return lr

    def backward_step(self, loss: torch.Tensor):
        self.optimizer.zero_grad(set_to_none=True)
        self.scaler.scale(loss).backward()
        self.optimizer_step()

    def optimizer_step(self):
        """Clip (if asked), step through the AMP scaler and log an fp16 overflow; gradients are in place."""
        if self.cfg["clip_grad"] or self.cfg["clip_grad_per_tensor"]:
            self.scaler.unscale_(self.optimizer)
            params = [p for g in self.optimizer.param_groups for p in g["params"] if p.grad is not None]
            if self.cfg["clip_grad"]:
                torch.nn.utils.clip_grad_norm_(params, self.cfg["clip_grad"])
            if self.cfg["clip_grad_per_tensor"]:
                clip_per_tensor(params, self.cfg["clip_grad_per_tensor"])
        scale = self.scaler.get_scale() if self.scaler.is_enabled() else None
        self.scaler.step(self.optimizer)
        self.scaler.update()
        if scale is not None and self.scaler.get_scale() < scale:  # fp16 gradients overflowed: step skipped
            self.amp_skipped_steps += 1
            self.log(f"fp16 overflow at iteration {self.iteration}: step skipped, loss scale {scale:g} -> "
                     f"{self.scaler.get_scale():g}")
