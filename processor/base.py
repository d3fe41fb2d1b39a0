"""The base processor: config -> data, model, optimiser, schedule, DDP, AMP, checkpoints, logging.

Subclasses write `train_epoch(epoch) -> dict` and optionally `evaluate(epoch) -> dict`; the epoch
loop, checkpointing and exact resume live here, once.
"""
from __future__ import annotations

import copy
import json
import math
import os
import resource
import sys
import time

import torch
from torch.utils.data import DataLoader
from torch.utils.data.distributed import DistributedSampler

from feeder.base import identity_collate
from feeder.views import recipe_for
from torchlight import dist
from torchlight.config import dump, resolve_path, validate
from torchlight.errors import CheckpointError, ConfigError, TrainingError  # noqa: F401 - TrainingError: re-export
from torchlight.io import (WorkDirLock, atomic_save, atomic_write_text, load_checkpoint,
                           load_weights, remove_stale_temp_files)
from torchlight.log import Logger
from torchlight.seed import WorkerInit, get_rng_state, seed_everything, set_rng_state
from torchlight.util import instantiate

# Keys every processor understands. Lineage keys keep their meaning (spec §8); a few are accepted
# only so old YAMLs load (device, use_gpu, debug, pavi_log, print_log, save_log).
BASE_DEFAULTS = {
    "work_dir": "./work_dir/tmp",
    "config": None,
    "phase": "train",
    "seed": 0,
    "deterministic": False,
    "use_gpu": True,
    "device": [0],
    "amp": "off",
    "compile": False,
    "sync_bn": False,
    "resume": "auto",
    "weights": None,
    "trust_checkpoint": False,  # load `weights` / `resume` files that need a full pickle (runs their code)
    "ignore_weights": [],
    "rename_weights": {},
    "model": None,
    "model_args": {},
    "train_feeder": "feeder.ntu_feeder.LineageReader",
    "train_feeder_args": {},
    "views": None,  # the view recipe of the training batches (feeder/views.py): {recipe: name, its arguments}
    "test_feeder": None,
    "test_feeder_args": {},
    "num_worker": 2,
    "batch_size": 128,
    "test_batch_size": 128,
    "stream": "joint",
    "optimizer": "SGD",
    "base_lr": 0.01,
    "scheduler": "step",
    "step": [],
    "lr_decay_rate": 0.1,
    "warm_up_epoch": 0,
    "min_lr": 0.0,
    "momentum": 0.9,
    "nesterov": False,
    "allow_tf32": False,  # TF32 matrix products on CUDA (HYSP's scripts switch them on)
    "weight_decay": 1e-4,
    "betas": [0.9, 0.999],
    "num_epoch": 80,
    "start_epoch": 0,
    "log_interval": 100,
    "save_interval": 10,
    "eval_interval": 5,
    "skip_nonfinite": False,
    "clip_grad": None,        # max global gradient norm (None: no clipping)
    "clip_grad_per_tensor": None,  # max norm of each parameter's gradient separately (STARS: 3.0)
    "show_topk": [1, 5],
    "save_result": True,
    "progress": True,
    "tensorboard": True,
    "wandb": {"enable": False, "project": "skelssl", "name": None, "group": None, "entity": None,
              "mode": "offline"},
    "debug": False,
    "pavi_log": False,
    "print_log": True,
    "save_log": True,
}
ALIASES = {"view": "stream"}  # CrosSCLR-lineage processors call the stream `view`
# Keys that may change between a run and its resume (they do not change what is computed).
RUNTIME_KEYS = {"resume", "trust_checkpoint", "num_worker", "device", "use_gpu", "log_interval", "print_log",
                "save_log", "progress", "num_epoch", "eval_interval", "save_interval", "tensorboard", "wandb", "debug",
                "pavi_log", "test_batch_size", "config", "work_dir"}


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


class Processor:
    DEFAULTS: dict = {}
    description = ""

    @classmethod
    def defaults(cls) -> dict:
        merged = {}
        for klass in reversed(cls.__mro__):
            merged.update(copy.deepcopy(klass.__dict__.get("DEFAULTS", {})))
        return {**BASE_DEFAULTS, **merged}

    def __init__(self, cfg: dict, name: str = "processor", command: str = ""):
        self.name = name
        self.cfg = cfg = validate(cfg, self.defaults(), ALIASES, source=cfg.get("config") or "config")
        self._check_choices()
        use_cuda = cfg["use_gpu"] and torch.cuda.is_available()
        self.rank, self.world_size, local_rank = dist.init_distributed("cuda" if use_cuda else "cpu")
        self.device = torch.device(f"cuda:{local_rank}" if use_cuda else "cpu")
        self.is_main = self.rank == 0
        self.work_dir = resolve_path(cfg["work_dir"])
        self.lock = None
        if self.is_main:  # only rank 0 writes the work_dir, and only one run at a time
            self._check_work_dir()
            self.lock = WorkDirLock(self.work_dir, command)
        try:
            self._set_up(cfg, name, command, use_cuda)
        except BaseException:  # a run that cannot start leaves the work_dir free at once
            if self.lock is not None:
                self.lock.release()
            raise

    def _set_up(self, cfg: dict, name: str, command: str, use_cuda: bool):
        self.logger = Logger(self.work_dir, enabled=self.is_main, tensorboard=cfg["tensorboard"],
                             wandb_cfg=cfg["wandb"], run_config=cfg)
        self.command = command
        self.history: list = []
        self.epoch = 0
        self.iteration = 0
        seed_everything(cfg["seed"] + self.rank)
        if cfg["deterministic"]:
            torch.use_deterministic_algorithms(True)
            torch.backends.cudnn.benchmark = False
        elif use_cuda:
            torch.backends.cudnn.benchmark = True
        if use_cuda:
            torch.backends.cuda.matmul.allow_tf32 = bool(cfg["allow_tf32"])
        self.generator = torch.Generator(device=self.device)
        self.generator.manual_seed(cfg["seed"] * 1000 + self.rank)
        self.amp_dtype = {"off": None, "bf16": torch.bfloat16, "fp16": torch.float16}[cfg["amp"]]
        self.scaler = torch.amp.GradScaler(self.device.type, enabled=cfg["amp"] == "fp16")
        self.amp_skipped_steps = 0
        resume_path = self._find_resume()
        self.build_data()
        self.build_model()
        if resume_path is None and cfg["weights"]:
            self.load_pretrained(resolve_path(cfg["weights"]))
        self.model.to(self.device)
        self.build_optimizer()
        if resume_path is not None:
            self.restore(resume_path)
        else:
            self.epoch = cfg["start_epoch"]
        self.wrap_model()
        if self.is_main:
            atomic_write_text(os.path.join(self.work_dir, "config.yaml"),
                              f"# command line: {command}\n" + dump(cfg))
        self.log(f"{name}: config\n{dump(cfg)}")
        if getattr(self, "_stale", None):
            self.log(f"removed {len(self._stale)} unfinished temp file(s) of a killed run: {', '.join(self._stale)}")
        self.log(f"device {self.device}, world size {self.world_size}, amp {cfg['amp']}, "
                 f"{sum(p.numel() for p in self.model.parameters()) / 1e6:.3f} M parameters "
                 f"({sum(p.numel() for p in self.model.parameters() if p.requires_grad) / 1e6:.3f} M trainable)")

    # --- set-up -------------------------------------------------------------------------------------
    def _check_work_dir(self):
        """work_dir must be a writable folder, checked before anything runs; a killed run's leftover
        temp files (never a finished file) are removed."""
        try:
            os.makedirs(self.work_dir, exist_ok=True)
            probe = os.path.join(self.work_dir, ".write_test")
            with open(probe, "w") as f:
                f.write("ok")
            os.unlink(probe)
        except OSError as e:
            raise ConfigError(f"config key `work_dir`: {self.work_dir} is not a writable folder ({e.strerror}); "
                              f"choose another with --work_dir") from None
        self._stale = remove_stale_temp_files(self.work_dir)

    def _check_choices(self):
        cfg = self.cfg
        choices = {"amp": ("off", "bf16", "fp16"), "optimizer": ("SGD", "Adam", "AdamW", "RiemannianSGD"),
                   "scheduler": ("step", "cosine", "constant"), "phase": ("train", "test"),
                   "stream": ("joint", "motion", "bone", "all")}
        for key, allowed in choices.items():
            if cfg[key] not in allowed:
                raise ConfigError(f"config key `{key}`: {cfg[key]!r} is not one of {list(allowed)}")
        if cfg["model"] is None:
            raise ConfigError("config key `model` is required (a dotted class path such as net.skeletonclr.SkeletonCLR)")

    def log(self, msg: str):
        self.logger.info(msg)

    def make_dataset(self, feeder_key: str):
        args = dict(self.cfg[f"{feeder_key}_args"])
        for key in ("data_path", "label_path"):
            if args.get(key):
                args[key] = resolve_path(args[key])
        return instantiate(self.cfg[feeder_key], args, where=f"{feeder_key}_args")

    def view_recipe(self, dataset, default: dict | None):
        """The views of the training batches (feeder.views.recipe_for): config `views`, legacy feeder, default."""
        return recipe_for(self.cfg["views"], dataset, default, self.cfg["train_feeder"])

    def plain_loader(self, dataset):
        """The whole split in order, no augmentation, every rank (evaluation, kNN monitor)."""
        return torch.utils.data.DataLoader(dataset, batch_size=self.cfg["test_batch_size"], shuffle=False,
                                           num_workers=self.cfg["num_worker"], collate_fn=identity_collate)

    def make_loader(self, dataset, batch_size: int, train: bool, on_device: bool = False):
        """on_device: the dataset already holds device tensors (cached features): no workers, no pinning."""
        sampler = DistributedSampler(dataset, num_replicas=self.world_size, rank=self.rank, shuffle=train,
                                     seed=self.cfg["seed"], drop_last=train)
        per_rank = batch_size // self.world_size if train else batch_size
        if train and batch_size % self.world_size:
            raise ConfigError(f"batch_size {batch_size} is the global batch; it must divide by the "
                              f"{self.world_size} processes")
        worker_init = WorkerInit(self.cfg["seed"], self.rank)
        loader = DataLoader(dataset, batch_size=per_rank, sampler=sampler,
                            num_workers=0 if on_device else self.cfg["num_worker"], collate_fn=identity_collate,
                            drop_last=train, worker_init_fn=worker_init,
                            pin_memory=self.device.type == "cuda" and not on_device)
        if train and len(loader) == 0:
            raise ConfigError(f"the training set ({len(dataset)} samples) is smaller than one batch "
                              f"({batch_size}); lower `batch_size`")
        loader.worker_init = worker_init
        return loader

    def set_loader_epoch(self, loader, epoch: int):
        loader.sampler.set_epoch(epoch)
        loader.worker_init.epoch = epoch

    def build_data(self):
        raise NotImplementedError

    def model_kwargs(self) -> dict:
        return dict(self.cfg["model_args"])

    def build_model(self):
        self.model = instantiate(self.cfg["model"], self.model_kwargs(), where="model_args")
        encoder = next((m for m in self.model.modules() if hasattr(m, "graph")), None)  # any ST-GCN of the method
        graph = getattr(encoder, "graph", None)
        data = getattr(self, "train_set", None)
        if graph is not None and data is not None and graph.num_node != data.layout.num_joints:
            raise ConfigError(f"model graph layout {graph.layout.name!r} has {graph.num_node} joints but the data "
                              f"({data.data_path}) has {data.layout.num_joints}; set model_args.graph_args.layout")
        if self.cfg["sync_bn"] and self.world_size > 1:  # torch's SyncBatchNorm is GPU-only
            self.model = (torch.nn.SyncBatchNorm.convert_sync_batchnorm(self.model) if self.device.type == "cuda"
                          else dist.convert_global_batchnorm(self.model))

    def allowed_missing(self) -> list:
        return []

    def load_pretrained(self, path: str):
        if self.cfg["trust_checkpoint"]:
            self.log(f"warning: trust_checkpoint is on: {path} may be loaded with a full pickle, which runs any code "
                     f"the file names. Only for files you trust; `tools/convert_checkpoint.py` makes a safe copy")
        rename = self.cfg["rename_weights"] or {}
        if isinstance(rename, list):  # lineage form ['old.new'] is ActCLR's copy rule, not a rename
            raise ConfigError("`rename_weights` takes a mapping {old_prefix: new_prefix}")
        report = load_weights(self.model, path, ignore=self.cfg["ignore_weights"], rename=rename,
                              allow_missing=self.allowed_missing(), trust=self.cfg["trust_checkpoint"])
        self.log(report.summary())

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

    def wrap_model(self):
        self.module = self.model  # the unwrapped model: state_dict, evaluation, method calls
        if self.cfg["compile"]:
            self.model = torch.compile(self.model)
        if self.world_size > 1 and any(p.requires_grad for p in self.module.parameters()):
            self.model = torch.nn.parallel.DistributedDataParallel(
                self.model, device_ids=[self.device.index] if self.device.type == "cuda" else None)

    # --- schedule -----------------------------------------------------------------------------------
    def lr_at(self, epoch_float: float) -> float:
        """Learning rate at a fractional epoch (0-based): linear warm-up, then step / cosine / constant."""
        cfg = self.cfg
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

    def set_lr(self, epoch_float: float) -> float:
        lr = self.lr_at(epoch_float)
        for g in self.optimizer.param_groups:
            g["lr"] = lr * g.get("lr_scale", 1.0)
        return lr

    def autocast(self):
        return torch.autocast(self.device.type, dtype=self.amp_dtype, enabled=self.amp_dtype is not None)

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

    def check_finite(self, loss: torch.Tensor, epoch: int, step: int, index, dataset) -> bool:
        """False (skip the step) or raise when the loss is NaN / inf, naming the batch's samples."""
        finite = torch.isfinite(loss.detach()).all().float()
        if dist.world_size() > 1:  # every rank must skip or stop together, or DDP's all-reduce hangs
            torch.distributed.all_reduce(finite, op=torch.distributed.ReduceOp.MIN)
        if finite.item() == 1.0:
            return True
        names = [dataset.sample_name[int(i)] for i in index[:8]] if hasattr(dataset, "sample_name") else []
        msg = (f"non-finite loss {loss.item()} at epoch {epoch + 1}, step {step} (samples {names}"
               f"{' ...' if len(index) > 8 else ''})")
        if self.cfg["skip_nonfinite"]:
            self.log(msg + ": step skipped (skip_nonfinite: true)")
            return False
        last = os.path.join(self.work_dir, "latest.pt")
        raise TrainingError(msg + f". Last good checkpoint: {last if os.path.isfile(last) else 'none yet'}. "
                                  f"Lower base_lr, check those samples, or set skip_nonfinite: true")

    # --- checkpoints --------------------------------------------------------------------------------
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
                              "".join(_json_line(h) for h in self.history))
        self.log(f"resumed from {path} after epoch {self.epoch}")

    # --- the loop -----------------------------------------------------------------------------------
    def train_epoch(self, epoch: int) -> dict:
        raise NotImplementedError

    def evaluate(self, epoch: int) -> dict:
        return {}

    def eval_due(self, epoch: int) -> bool:
        interval = self.cfg["eval_interval"]
        return interval > 0 and ((epoch + 1) % interval == 0 or epoch + 1 == self.cfg["num_epoch"])

    def run(self):
        start = time.time()
        try:
            if self.cfg["phase"] == "test":
                result = self.evaluate(self.epoch - 1)  # evaluate() takes the 0-based epoch just finished
                self.log(f"test: {result}")
            else:
                self.train()
            self.finish(time.time() - start)
        finally:
            self.logger.close()
            dist.cleanup()
            if self.lock is not None:
                self.lock.release()

    def train(self):
        cfg = self.cfg
        if self.epoch >= cfg["num_epoch"]:
            self.log(f"nothing to train: the run already finished {self.epoch} of {cfg['num_epoch']} epochs")
        for epoch in range(self.epoch, cfg["num_epoch"]):
            t0 = time.time()
            record = {"epoch": epoch + 1, **self.train_epoch(epoch)}
            if self.eval_due(epoch):
                record.update(self.evaluate(epoch))
            record["time"] = round(time.time() - t0, 3)
            self.epoch = epoch + 1
            self.history.append(record)
            self.save_checkpoint()
            if self.is_main:
                with open(os.path.join(self.work_dir, "metrics.jsonl"), "a") as f:
                    f.write(_json_line(record))
            self.logger.scalars({k: v for k, v in record.items() if k != "epoch"}, epoch + 1, prefix="epoch/")
            self.log(" ".join(f"{k} {_fmt(v)}" for k, v in record.items()))

    def summary_lines(self) -> list:
        return []

    def finish(self, seconds: float):
        if not self.is_main:
            return
        if self.device.type == "cuda":
            mem = f"peak GPU memory {torch.cuda.max_memory_allocated(self.device) / 2**20:.0f} MB"
        else:
            mem = f"peak RSS {peak_rss_mb():.0f} MB"
        plot = self.plot_history()
        lines = [f"== {self.name} finished in {seconds / 60:.1f} min, {mem}",
                 *self.summary_lines(),
                 *([f"   training curves: {plot}"] if plot else []),
                 f"   work_dir: {self.work_dir} ({', '.join(sorted(os.listdir(self.work_dir)))})"]
        self.log("\n".join(lines))


    def plot_history(self) -> str | None:
        """work_dir/curves.png from metrics.jsonl (loss, lr, accuracies); a run with fewer than two
        epochs, or without matplotlib, has none. A plotting problem never fails the run."""
        path = os.path.join(self.work_dir, "curves.png")
        if len(self.history) < 2:
            return None
        try:
            from torchlight.plots import plot_curves, read_metrics
            plot_curves([read_metrics(self.work_dir)], path, [self.name])
        except Exception as e:  # noqa: BLE001
            self.log(f"note: no curves.png ({type(e).__name__}: {e})")
            return None
        return path


def _json_line(record: dict) -> str:
    return json.dumps(record) + "\n"


def _fmt(v):
    if isinstance(v, float):
        return f"{v:.4g}" if abs(v) < 1e4 else f"{v:.1f}"
    return str(v)


def peak_rss_mb() -> float:
    """Peak resident memory of this process (Linux reports KB, macOS bytes)."""
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return rss / 2**20 if sys.platform == "darwin" else rss / 1024
