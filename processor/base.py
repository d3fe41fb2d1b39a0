"""The base processor: config -> data, model, optimiser, schedule, DDP, AMP, checkpoints, logging.

Subclasses write `train_epoch(epoch) -> dict` and optionally `evaluate(epoch) -> dict`; the epoch
loop, checkpointing and exact resume live here, once.
"""
from __future__ import annotations

import copy
import os
import resource
import sys
import time

import numpy as np
import torch
from torch.utils.data import DataLoader
from torch.utils.data.distributed import DistributedSampler

from feeder.base import identity_collate
from feeder.views import recipe_for
from torchlight import dist
from torchlight.config import dump, resolve_path, validate
from torchlight.errors import ConfigError, TrainingError
from torchlight.hardware import bf16_advice, host_summary
from torchlight.io import WorkDirLock, atomic_write_text, load_weights, remove_stale_temp_files
from torchlight.log import Logger
from torchlight.seed import WorkerInit, seed_everything
from torchlight.util import instantiate

from .checkpoint import RUNTIME_KEYS, Checkpoints, json_line
from .optim import Optimisation, RiemannianSGD, clip_per_tensor

__all__ = ["Processor", "BASE_DEFAULTS", "ALIASES", "RUNTIME_KEYS", "TrainingError", "RiemannianSGD",
           "clip_per_tensor", "peak_rss_mb"]  # the last names: imported from here by older code

# Keys every processor understands. Lineage keys keep their meaning (spec §8).
BASE_DEFAULTS = {
    "work_dir": "./work_dir/tmp",
    "config": None,
    "phase": "train",
    "seed": 0,
    "deterministic": False,
    "use_gpu": True,
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
}
# Keys of the lineage's YAMLs that nothing here reads: an old file still loads, and the log says what to do instead.
UNREAD_LEGACY_KEYS = {
    "device": "GPUs are the visible ones (CUDA_VISIBLE_DEVICES), one process each under torchrun",
    "debug": "nothing here reads it; a short run is `--num_epoch 1`",
    "pavi_log": "PAVI is not supported; see `tensorboard` and `wandb`",
    "print_log": "rank 0 always prints the log",
    "save_log": "rank 0 always writes work_dir/log.txt",
}
ALIASES = {"view": "stream"}  # CrosSCLR-lineage processors call the stream `view`



class Processor(Checkpoints, Optimisation):
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
        self.unread = {k: cfg[k] for k in UNREAD_LEGACY_KEYS if k in cfg}
        cfg = {k: v for k, v in cfg.items() if k not in self.unread}
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
        for key, value in self.unread.items():
            self.log(f"warning: config key `{key}: {value}` is a lineage key that is not read: {UNREAD_LEGACY_KEYS[key]}")
        if getattr(self, "_stale", None):
            self.log(f"removed {len(self._stale)} unfinished temp file(s) of a killed run: {', '.join(self._stale)}")
        self.log(f"device {self.device}, world size {self.world_size}, amp {cfg['amp']}, "
                 f"{sum(p.numel() for p in self.model.parameters()) / 1e6:.3f} M parameters "
                 f"({sum(p.numel() for p in self.model.parameters() if p.requires_grad) / 1e6:.3f} M trainable); "
                 f"{host_summary(self.device)}")
        advice = bf16_advice(self.device, cfg["amp"])
        if advice:
            self.log(f"warning: {advice}")

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

    def make_dataset(self, feeder_key: str, feeder: str | None = None, labelled: bool = True):
        """The dataset of config `<feeder_key>` (or the class `feeder`) built with `<feeder_key>_args`. labelled: every
        sample must carry a label (label -1 marks an unlabelled one, as `pose_import.py --unlabelled` writes)."""
        args = {k: resolve_path(v) if k in ("data_path", "label_path") and v else v
                for k, v in self.cfg[f"{feeder_key}_args"].items()}
        dataset = instantiate(feeder or self.cfg[feeder_key], args, where=f"{feeder_key}_args")
        unlabelled = int((np.asarray(dataset.label) < 0).sum())
        if labelled and unlabelled:
            raise ConfigError(f"{feeder_key}_args: {unlabelled} of the {len(dataset)} samples of "
                              f"{dataset.label_path} are unlabelled (label -1); this job needs labels (`extract` "
                              f"embeds unlabelled data)")
        return dataset

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

    def load_pretrained(self, path: str, state: dict | None = None):
        """`weights` into the model (state: the file's state_dict when a subclass has read it already)."""
        if self.cfg["trust_checkpoint"]:
            self.log(f"warning: trust_checkpoint is on: {path} may be loaded with a full pickle, which runs any code "
                     f"the file names. Only for files you trust; `tools/convert_checkpoint.py` makes a safe copy")
        rename = self.cfg["rename_weights"] or {}
        if isinstance(rename, list):  # lineage form ['old.new'] is ActCLR's copy rule, not a rename
            raise ConfigError("`rename_weights` takes a mapping {old_prefix: new_prefix}")
        self.weights_report = load_weights(self.model, path, ignore=self.cfg["ignore_weights"], rename=rename,
                                           allow_missing=self.allowed_missing(), trust=self.cfg["trust_checkpoint"],
                                           state=state)
        self.log(self.weights_report.summary())

    def wrap_model(self):
        self.module = self.model  # the unwrapped model: state_dict, evaluation, method calls
        if self.cfg["compile"]:
            self.model = torch.compile(self.model)
        if self.world_size > 1 and any(p.requires_grad for p in self.module.parameters()):
            self.model = torch.nn.parallel.DistributedDataParallel(
                self.model, device_ids=[self.device.index] if self.device.type == "cuda" else None)

    def autocast(self):
        return torch.autocast(self.device.type, dtype=self.amp_dtype, enabled=self.amp_dtype is not None)

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
                    f.write(json_line(record))
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


def _fmt(v):
    if isinstance(v, float):
        return f"{v:.4g}" if abs(v) < 1e4 else f"{v:.1f}"
    return str(v)


def peak_rss_mb() -> float:
    """Peak resident memory of this process (Linux reports KB, macOS bytes)."""
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return rss / 2**20 if sys.platform == "darwin" else rss / 1024
