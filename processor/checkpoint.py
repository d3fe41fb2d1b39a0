"""Checkpoints of a run: the full training state, atomic saves, and the exact resume of an interrupted run.

`Checkpoints` is a mixin of processor/base.py's Processor: a checkpoint holds the model, optimiser (matched by
parameter name on restore), AMP scaler, epoch, iteration, every rank's RNG streams, the history, the method's
extra state and the config; `latest.pt` is rewritten every epoch and resumed from automatically when the
config matches.
"""
from __future__ import annotations

import json
import os

import torch

from torchlight.config import resolve_path
from torchlight.errors import CheckpointError, ConfigError
from torchlight.io import atomic_save, atomic_write_text, load_checkpoint
from torchlight.seed import get_rng_state, set_rng_state

# Keys that may change between a run and its resume (they do not change what is computed).
RUNTIME_KEYS = {"resume", "trust_checkpoint", "num_worker", "device", "use_gpu", "log_interval", "print_log",
                "save_log", "progress", "num_epoch", "eval_interval", "save_interval", "tensorboard", "wandb", "debug",
                "pavi_log", "test_batch_size", "config", "work_dir"}


def json_line(record: dict) -> str:
    return json.dumps(record) + "\n"


class Checkpoints:
    def state(self, rng) -> dict:
        return {
            "model": self.module.state_dict(),
            "optimizer": self.optimizer.state_dict(),
            "optimizer_params": self.optimizer_param_names(),
            "scaler": self.scaler.state_dict(),
            "epoch": self.epoch,
            "iteration": self.iteration,
            "rng": rng,  # one entry per rank under DDP
            "history": self.history,
            "config": self.cfg,
            "weights_sha256": self.weights_digest(),
            "processor": self.name,
            "extra": self.extra_state(),
            "version": 1,
        }

    def optimizer_param_names(self) -> list:
        """Parameter names per optimiser group, in the optimiser's order (its state is keyed by position)."""
        names = {id(p): n for n, p in getattr(self, "module", self.model).named_parameters()}  # no DDP prefix
        return [[names[id(p)] for p in g["params"]] for g in self.optimizer.param_groups]

    def load_optimizer_state(self, saved: dict, saved_names: list | None, path: str):
        """Load the optimiser state by parameter NAME: a code change that reorders modules must not
        hand one parameter's momentum to another (torch matches by position only)."""
        current = self.optimizer_param_names()
        if saved_names is not None and saved_names != current:
            if [sorted(g) for g in saved_names] != [sorted(g) for g in current]:
                missing = sorted(set(sum(current, [])) - set(sum(saved_names, [])))[:5]
                raise CheckpointError(f"{path}: the optimiser state does not match this model's trainable "
                                      f"parameters (e.g. {missing}); resume with the code / config that wrote it")
            old_index = {n: i for i, n in enumerate(sum(saved_names, []))}
            flat = sum(current, [])
            saved = {"state": {i: saved["state"][old_index[n]] for i, n in enumerate(flat)
                               if old_index[n] in saved["state"]},
                     "param_groups": [dict(g, params=[flat.index(n) for n in names])
                                      for g, names in zip(saved["param_groups"], current)]}
            self.log("optimiser state re-ordered by parameter name (the model's parameter order changed)")
        self.optimizer.load_state_dict(saved)

    def extra_state(self) -> dict:
        return {}

    def load_extra_state(self, extra: dict):
        pass

    def save_checkpoint(self):
        rng = get_rng_state(self.generator)
        if self.world_size > 1:  # every rank's random streams, so a resumed DDP run continues exactly
            gathered = [None] * self.world_size
            torch.distributed.all_gather_object(gathered, rng)
            rng = gathered
        if not self.is_main:
            return
        state = self.state(rng)
        atomic_save(state, os.path.join(self.work_dir, "latest.pt"))
        interval = self.cfg["save_interval"]
        if interval > 0 and (self.epoch % interval == 0 or self.epoch == self.cfg["num_epoch"]):
            atomic_save(state, os.path.join(self.work_dir, f"epoch{self.epoch}_model.pt"))

    def _find_resume(self) -> str | None:
        resume = self.cfg["resume"]
        if resume in (None, "", "none", "no", False):
            return None
        latest = os.path.join(self.work_dir, "latest.pt")
        if resume != "auto":
            path = resolve_path(resume)
            if not os.path.isfile(path):
                raise CheckpointError(f"resume checkpoint not found: {path}")
            return path
        if not os.path.isfile(latest):
            return None
        try:
            checkpoint = load_checkpoint(latest)
            saved = checkpoint["config"]
        except (CheckpointError, KeyError, TypeError) as e:
            raise CheckpointError(f"{latest} exists but cannot be resumed from ({e}); move it away or pass "
                                  f"--resume none to start over in {self.work_dir}") from None
        changed = sorted(k for k in set(saved) | set(self.cfg)
                         if k not in RUNTIME_KEYS and saved.get(k) != self.cfg.get(k))
        if changed:
            raise ConfigError(f"{self.work_dir} holds a run with a different config (keys {changed}); "
                              f"use another work_dir, or --resume none to overwrite it")
        saved_digest, digest = checkpoint.get("weights_sha256"), self.weights_digest()
        if saved_digest is not None and digest is not None and saved_digest != digest:
            raise ConfigError(f"{self.work_dir} holds a run started from other contents of `weights` "
                              f"({self.cfg['weights']} changed since); use another work_dir, or --resume none "
                              f"to start over from the new file")
        return latest

    def weights_digest(self) -> str | None:
        """sha256 of the `weights` file (once): the same path with other contents is another run. None
        without weights, or when the file is gone (a resumed run no longer reads it)."""
        path = resolve_path(self.cfg["weights"]) if self.cfg.get("weights") else None
        if not path or not os.path.isfile(path):
            return None
        if getattr(self, "_weights_digest", None) is None:
            import hashlib

            digest = hashlib.sha256()
            with open(path, "rb") as f:
                for chunk in iter(lambda: f.read(1 << 20), b""):
                    digest.update(chunk)
            self._weights_digest = digest.hexdigest()
        return self._weights_digest

    def restore(self, path: str):
        state = load_checkpoint(path, trust=self.cfg["trust_checkpoint"])
        self.model.load_state_dict(state["model"])
        self.load_optimizer_state(state["optimizer"], state.get("optimizer_params"), path)
        self.scaler.load_state_dict(state["scaler"])
        self.epoch, self.iteration = state["epoch"], state["iteration"]
        self.history = [h for h in state["history"] if h["epoch"] <= self.epoch]
        rng = state["rng"]
        if isinstance(rng, list):
            if len(rng) != self.world_size:
                raise CheckpointError(f"{path} was written by {len(rng)} processes; resume it with the same number "
                                      f"(this run has {self.world_size})")
            rng = rng[self.rank]
        set_rng_state(rng, self.generator)
        self.load_extra_state(state.get("extra", {}))
        if self.is_main:  # the metrics file may hold an epoch that the checkpoint does not
            atomic_write_text(os.path.join(self.work_dir, "metrics.jsonl"),
                              "".join(json_line(h) for h in self.history))
        self.log(f"resumed from {path} after epoch {self.epoch}")
