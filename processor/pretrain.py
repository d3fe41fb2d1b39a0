"""One self-supervised pretraining loop for every method: `losses = model(batch)`.

The feeder's augmentations make the views on the training device (batched), the stream is derived
once here, and the method returns a dict whose `loss` is minimised; every other scalar is logged.
"""
from __future__ import annotations

import copy
import os
import time
from collections import defaultdict

import torch
from tqdm import tqdm

from feeder.streams import to_stream
from torchlight.config import ConfigError
from torchlight.dist import all_reduce_sum
from torchlight.io import atomic_save
from feeder.views import check_views
from torchlight.util import import_class

from .base import Processor
from .evaluation import extract_features, recalibrate_bn
from .knn import knn_accuracies


class Pretrain(Processor):
    description = "self-supervised pretraining of any method in net/"
    DEFAULTS = {
        "eval_interval": -1, "save_interval": 5,
        # online kNN monitor (STARS, solo-learn): every knn_interval epochs (0: off), weighted kNN of the
        # test split's features against the train split's; the method's `monitor_features` if it has one
        "knn_interval": 0, "knn_k": [20], "knn_t": 0.1,
        "knn_feeder": None, "knn_train_feeder_args": {}, "knn_test_feeder_args": {},
        # `knn_top1`: write best_epoch.pt whenever the monitor's best accuracy (over knn_k) beats every earlier
        # epoch's: STARS chose its stage-2 weights so, on the test split (optimistic; the lineage reports so)
        "save_best_by": None,
        # BatchNorm statistics of a copy of the model re-estimated on the monitor's clean training split before
        # each monitor (the random-init encoder has none of its own), as `knn --recalibrate_bn true` does offline
        "knn_recalibrate_bn": True,
        # every epoch draws the same augmentation parameters batch by batch: the lineage reseeded its
        # DataLoader workers with their bare ids each epoch, so its augmentations repeated epoch after epoch
        "replay_augmentation": False,
    }

    def build_data(self):
        self.train_set = self.make_dataset("train_feeder", labelled=False)
        self.train_loader = self.make_loader(self.train_set, self.cfg["batch_size"], train=True)
        method = import_class(self.cfg["model"])
        self.views = self.view_recipe(self.train_set, getattr(method, "default_views", None))
        self.log(f"training data: {len(self.train_set)} samples from {self.train_set.data_path}, views "
                 f"{self.views!r}, stream {self.cfg['stream']}")
        if self.cfg["knn_interval"] > 0:
            feeder = self.cfg["knn_feeder"] or "feeder.ntu_feeder.Feeder_single"
            self.knn_sets = []
            for part in ("train", "test"):
                if not self.cfg[f"knn_{part}_feeder_args"]:
                    raise ConfigError(f"config key `knn_{part}_feeder_args` is required with knn_interval > 0")
                self.knn_sets.append(self.make_dataset(f"knn_{part}_feeder", feeder))

    def build_model(self):
        super().build_model()
        unused = check_views(self.model.views, self.views, self.cfg["model"])
        if unused:
            self.log(f"warning: the views {unused} are made for every batch but {self.cfg['model']} does not consume "
                     f"them (it takes {list(self.model.views)}): set `views` to spare the work")

    @torch.no_grad()
    def knn_monitor(self) -> dict:
        """{knn_top1_k<k>: accuracy %} of the weighted kNN monitor (model left in train mode after), computed as
        the offline `knn` processor computes it (cosine, knn_k, exp weighting at knn_t, BatchNorm statistics
        re-estimated on a copy of the model with knn_recalibrate_bn)."""
        module = self.module
        if self.cfg["knn_recalibrate_bn"]:
            module = copy.deepcopy(module)
            recalibrate_bn(module, self.plain_loader(self.knn_sets[0]), self.cfg["stream"], self.knn_sets[0].layout,
                           self.device, module.monitor_features)
        fn = module.monitor_features
        (bank, bank_y, _), (query, query_y, _) = (
            extract_features(module, self.plain_loader(ds), self.cfg["stream"], ds.layout, self.device,
                             self.autocast, desc=f"kNN monitor {part}", progress=self.is_main and self.cfg["progress"],
                             fn=fn) for part, ds in zip(("train", "test"), self.knn_sets))
        classes = max(ds.num_classes for ds in self.knn_sets)
        per_k = knn_accuracies(bank, bank_y, query, query_y, self.cfg["knn_k"], classes, "exp", self.cfg["knn_t"])
        self.module.train()
        return {f"knn_top1_k{k}": v for k, v in per_k.items()}

    def train(self):
        """The epoch loop, after measuring the random-init encoder on the kNN monitor (once per run, before the
        first step; kept in the checkpoints): every later monitor is logged against it."""
        if self.cfg["knn_interval"] > 0 and self.random_init_knn is None:
            self.random_init_knn = self.knn_monitor()
            self.log("kNN monitor of the random-init encoder (epoch 0): " + ", ".join(
                f"{k} {v:.2f}" for k, v in self.random_init_knn.items()) + " (pretraining has to beat this)")
            if self.is_main:
                atomic_save({"model": self.module.state_dict(), "epoch": 0, "knn_top1": self.random_init_knn},
                            os.path.join(self.work_dir, "epoch0_model.pt"))
        super().train()

    random_init_knn = None

    def extra_state(self) -> dict:
        return {"random_init_knn": self.random_init_knn}

    def load_extra_state(self, extra: dict):
        self.random_init_knn = extra.get("random_init_knn")

    def compare_to_random_init(self, monitor: dict, epoch: int) -> dict:
        """{knn_gap_k<k>: accuracy - random init's}; a warning when the encoder is below it for every k."""
        if not self.random_init_knn:
            return {}
        gaps = {k.replace("top1", "gap"): round(v - self.random_init_knn[k], 4) for k, v in monitor.items()
                if k in self.random_init_knn}
        if gaps and all(g < 0 for g in gaps.values()):
            detail = ", ".join(f"{k.replace('knn_top1_', '')}: {monitor[k]:.2f} vs {self.random_init_knn[k]:.2f}"
                               for k in monitor if k in self.random_init_knn)
            self.log(f"warning: after epoch {epoch + 1} the encoder is below its random init on the kNN monitor "
                     f"({detail}): pretraining is not helping on this data yet; on a small dataset see the README, "
                     f"'Small datasets'")
        return gaps

    def make_batch(self, x, label, index, epoch: int) -> dict:
        """The batch dict of the method contract (net/base.py): named views on the device, in the run's stream."""
        views = self.views(x, self.generator)
        if self.cfg["stream"] != "all":  # 'all': multi-stream methods derive their streams themselves
            views = {name: to_stream(v, self.cfg["stream"], self.train_set.layout) for name, v in views.items()}
        return {"views": views, "label": label, "index": index, "epoch": epoch, "generator": self.generator,
                "layout": self.train_set.layout}

    def allowed_missing(self) -> list:
        """A method's parts that a stage-1 checkpoint does not hold (STARS' head and queue)."""
        return self.model.fresh_prefixes()

    def train_step(self, x, label, index, epoch: int, step: int) -> dict | None:
        """One optimisation step on a batch from the loader; the method's outputs, or None when a
        non-finite loss was skipped (`skip_nonfinite`)."""
        x = x.to(self.device, non_blocking=True)
        label = label.to(self.device, non_blocking=True)
        batch = self.make_batch(x, label, index, epoch)
        with self.autocast():
            out = self.model(batch)
        self.iteration += 1
        if not self.check_finite(out["loss"], epoch, step, index, self.train_set):
            return None
        self.module.before_backward(epoch)  # e.g. HYSP's EMA where upstream's Lightning hook ran it
        self.backward_step(out["loss"])
        self.module.after_optimizer_step(epoch)  # e.g. BYOL-style targets, from the new online weights
        return out

    def train_epoch(self, epoch: int) -> dict:
        self.model.train()
        self.set_loader_epoch(self.train_loader, epoch)
        if self.cfg["replay_augmentation"]:
            self.generator.manual_seed(self.cfg["seed"] * 1000 + self.rank)
        sums, count, seen, t0 = defaultdict(float), 0, 0, time.time()
        steps = len(self.train_loader)
        bar = tqdm(self.train_loader, desc=f"epoch {epoch + 1}/{self.cfg['num_epoch']}", leave=False,
                   disable=not (self.is_main and self.cfg["progress"]), dynamic_ncols=True)
        lr = self.set_lr(epoch)
        for step, (x, label, index) in enumerate(bar):
            lr = self.set_lr(epoch + step / steps)
            out = self.train_step(x, label, index, epoch, step)
            if out is None:
                continue
            loss = out["loss"]
            for k, v in out.items():
                sums[k] += float(v.detach()) if torch.is_tensor(v) else float(v)
            count += 1
            seen += len(x)
            if step % self.cfg["log_interval"] == 0:
                self.logger.scalars({k: float(v.detach()) for k, v in out.items()} | {"lr": lr}, self.iteration,
                                    prefix="train/")
            bar.set_postfix(loss=f"{loss.item():.4f}", lr=f"{lr:.3g}",
                            samples_s=f"{seen * self.world_size / (time.time() - t0):.1f}")
        if self.world_size > 1:  # average over every rank's batches, not rank 0's shard
            totals = all_reduce_sum(torch.tensor([count] + list(sums.values()), dtype=torch.float64,
                                                 device=self.device))
            count, sums = int(totals[0]), dict(zip(sums, totals[1:].tolist()))
        stats = {k: v / max(count, 1) for k, v in sums.items()}
        stats["lr"] = lr
        stats["samples_per_s"] = round(seen * self.world_size / (time.time() - t0), 2)
        if self.cfg["knn_interval"] > 0 and (epoch + 1) % self.cfg["knn_interval"] == 0:
            monitor = self.knn_monitor()
            stats.update(monitor)
            stats.update(self.compare_to_random_init(monitor, epoch))
            self.logger.scalars(monitor, epoch + 1, prefix="monitor/")
            self.log(f"kNN monitor after epoch {epoch + 1}: " + ", ".join(f"{k} {v:.2f}" for k, v in monitor.items()))
            self.save_best(monitor, epoch)
        return stats

    def save_best(self, monitor: dict, epoch: int):
        """best_epoch.pt (the model's weights) when this epoch's best kNN accuracy beats every earlier one."""
        if self.cfg["save_best_by"] is None:
            return
        if self.cfg["save_best_by"] != "knn_top1" or self.cfg["knn_interval"] <= 0:
            raise ConfigError("config key `save_best_by`: only `knn_top1` is known, and it needs knn_interval > 0")
        best = max(monitor.values())
        earlier = [v for h in self.history for k, v in h.items() if k.startswith("knn_top1_k")]
        if earlier and best <= max(earlier):
            return
        if self.is_main:
            atomic_save({"model": self.module.state_dict(), "epoch": epoch + 1, "knn_top1": best,
                         "selection": "the best kNN monitor accuracy on the test split so far (STARS' best_epoch.pt)"},
                        os.path.join(self.work_dir, "best_epoch.pt"))
        self.log(f"best_epoch.pt: epoch {epoch + 1}, kNN top-1 {best:.2f} (selected on the test split)")

    def summary_lines(self) -> list:
        if not self.history:
            return []
        first, last = self.history[0], self.history[-1]
        return [f"   loss {first.get('loss', float('nan')):.4f} (epoch {first['epoch']}) -> "
                f"{last.get('loss', float('nan')):.4f} (epoch {last['epoch']}); "
                f"checkpoints: latest.pt, epoch<N>_model.pt every {self.cfg['save_interval']} epochs"]
