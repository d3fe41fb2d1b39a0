"""Supervised evaluation of an encoder: linear probe and fine-tuning, one loop.

`protocol: linear` freezes everything but the classifier and keeps the model in eval() mode (the
lineage protocol: pretrained BN statistics, no dropout). When the training feeder does not
augment, the frozen features are computed once and the classifier trains on the cached features,
which gives the same result as the full forward pass in a fraction of the time. `frozen_encoder: train`
runs the frozen encoder in train() mode instead (HYSP's probe did: batch statistics, running statistics
that drift, dropout), so nothing is cached.
`protocol: finetune` trains every parameter in train() mode.
Each evaluation writes results.json and the test scores; "best" is selected on the test split, as
the lineage does (optimistic) and is labelled so; "last" is the final epoch.
"""
from __future__ import annotations

import json
import os
import time

import numpy as np

import torch
import torch.nn.functional as F
from tqdm import tqdm

from feeder.streams import to_stream
from torchlight import dist
from torchlight.config import ConfigError
from torchlight.dist import all_reduce_sum
from torchlight.io import atomic_pickle, atomic_save, atomic_write_json

from .base import Processor, TrainingError

SELECTION_NOTE = "best_top1 is selected on the test split (optimistic, as the lineage reports it); top1 is the last epoch"


SUBSET_RULES = {
    "balanced": "per class c with n_c samples: the first max(1, round(n_c * fraction)) (or the first min(n_c, shots) "
                "with shots_per_class) of the class's indices in a numpy permutation drawn with default_rng(seed); "
                "rows sorted",
    "hysp": "HYSP's rule: sklearn.utils.resample(rows, replace=False, n_samples=int(N * fraction), stratify=labels, "
            "random_state=RandomState(seed)); rows sorted (upstream drew it from numpy's global RNG after "
            "pl.seed_everything(123))",
    "mamp": "MAMP / STARS's rule: np.random.seed(seed + rank), a permutation of the rows, the first "
            "int(N * fraction), not stratified, one subset per process (2 processes train on 2 subsets); rows sorted",
}


def class_balanced_subset(labels, fraction: float, seed: int, shots: int = 0) -> list:
    """Sorted row indices: max(1, round(n_c * fraction)) per class, or `shots` per class when given,
    chosen by a seeded permutation."""
    labels = np.asarray(labels)
    order = np.random.default_rng(seed).permutation(len(labels))
    rows = []
    for c in np.unique(labels):
        members = order[labels[order] == c]
        rows += members[:shots if shots > 0 else max(1, round(len(members) * fraction))].tolist()
    return sorted(int(r) for r in rows)


def label_subset(rule: str, labels, fraction: float, seed: int, shots: int = 0, rank: int = 0) -> list:
    """Sorted rows of a semi-supervised / few-shot subset by one of SUBSET_RULES."""
    labels = np.asarray(labels)
    if rule == "balanced" or shots > 0:
        return class_balanced_subset(labels, fraction, seed, shots)
    n = int(len(labels) * fraction)
    if rule == "hysp":
        from sklearn.utils import resample

        rows = resample(np.arange(len(labels)), replace=False, n_samples=n, stratify=labels,
                        random_state=np.random.RandomState(seed))
    else:  # mamp
        rows = np.random.RandomState(seed + rank).permutation(len(labels))[:n]
    return sorted(int(r) for r in rows)


def read_json(path: str):
    try:
        with open(path) as f:
            return json.load(f)
    except (OSError, ValueError):
        return None


def topk_accuracy(scores: torch.Tensor, labels: torch.Tensor, ks) -> dict:
    ranked = scores.topk(max(ks), dim=1).indices
    hit = ranked == labels[:, None]
    return {f"top{k}": round(100.0 * hit[:, :k].any(dim=1).float().mean().item(), 4) for k in ks}


@torch.no_grad()
def extract_features(model, loader, stream: str, layout, device, autocast, desc="features", progress=True,
                     fn=None):
    """Pooled encoder features of a whole split, in dataset order: (N, d), labels (N,), indices (N,).
    fn: the feature function (default model.forward_features)."""
    model.eval()
    fn = fn or model.forward_features
    feats, labels, indices = [], [], []
    for x, y, idx in tqdm(loader, desc=desc, leave=False, disable=not progress):
        x = to_stream(x.to(device, non_blocking=True), stream, layout)
        with autocast():
            feats.append(fn(x).float())
        labels.append(y)
        indices.append(idx)
    return torch.cat(feats), torch.cat(labels).to(device), torch.cat(indices)


@torch.no_grad()
def recalibrate_bn(model, loader, stream: str, layout, device, fn=None):
    """Re-estimate the model's BatchNorm statistics on a clean split (dropout off), in place; eval mode after.

    A randomly initialised encoder has no statistics of its own (its eval-mode features are ~1e-7 and carry
    nothing), so a fair random-init baseline needs this; apply it to the pretrained encoder too when comparing
    against one. fn: the feature function whose BatchNorms matter (default model.forward_features).
    """
    norms = [m for m in model.modules() if isinstance(m, torch.nn.modules.batchnorm._BatchNorm)]
    model.eval()
    for m in norms:
        m.reset_running_stats()
        m.momentum, m.saved_momentum = None, m.momentum  # None: a cumulative average over the split
        m.train()
    fn = fn or model.forward_features
    for x, _, _ in loader:
        fn(to_stream(x.to(device), stream, layout))
    for m in norms:
        m.momentum = m.saved_momentum
        del m.saved_momentum
    model.eval()


def head_dims(head: torch.nn.Module) -> tuple:
    """(in, out) features of a classification head: a Linear, or a module wrapping linear layers (HYSP's
    hyperbolic head wraps a MobiusLinear): the first layer's input, the last layer's output."""
    layers = [m for m in head.modules() if hasattr(m, "in_features") and hasattr(m, "out_features")]
    if not layers:
        raise TypeError(f"cannot find the input width of the head {type(head).__name__}")
    return layers[0].in_features, layers[-1].out_features


class FeatureSet(torch.utils.data.Dataset):
    """Cached features served like a dataset (whole batches at once)."""

    def __init__(self, features, labels, sample_name):
        self.features, self.label, self.sample_name = features, labels, sample_name

    def __len__(self):
        return len(self.label)

    def __getitems__(self, indices):
        idx = torch.as_tensor(indices, device=self.features.device)
        return self.features[idx], self.label[idx], torch.as_tensor(indices)


class CombinedHead(torch.nn.Module):
    """The classifier(s) of a model as one module over its pooled features: one stream's head, or
    several streams' heads combined by the model's forward_head (a multi-stream model)."""

    def __init__(self, model, prefixes):
        super().__init__()
        self.heads = torch.nn.ModuleList(model.get_submodule(p) for p in prefixes)
        self.combine = model.forward_head

    def forward(self, features):
        return self.combine(features)


class Evaluation(Processor):
    description = "supervised evaluation (linear probe or fine-tuning) of an encoder"
    DEFAULTS = {
        "protocol": "linear",
        "cache_features": "auto",
        "head_norm": False,
        "recalibrate_bn": False,
        "label_smoothing": 0.0,
        "label_fraction": 1.0,  # semi-supervised: train on this class-balanced fraction of the labels
        "subset_seed": 0,
        "subset_rule": "balanced",  # how the labelled subset is drawn (SUBSET_RULES: balanced, hysp, mamp)
        "frozen_encoder": "eval",  # linear protocol: the frozen encoder's mode while the classifier trains
        "accumulate_grad_batches": 1,  # one optimiser step per this many micro-batches of batch_size / N
        "shots_per_class": 0,  # few-shot: train / kNN bank on this many labelled samples per class (0: off)
        "base_lr": 3.0,
        "step": [80],
        "weight_decay": 0.0,
        "num_epoch": 100,
        "eval_interval": 5,
        "save_interval": -1,
    }

    # --- set-up -------------------------------------------------------------------------------------
    def build_data(self):
        if self.cfg["protocol"] not in ("linear", "finetune"):
            raise ConfigError(f"config key `protocol`: {self.cfg['protocol']!r} is not one of ['linear', 'finetune']")
        if not self.cfg["test_feeder"]:
            raise ConfigError("config key `test_feeder` (and `test_feeder_args`) is required for evaluation")
        self.train_set = self.make_dataset("train_feeder")
        if self.cfg["label_fraction"] < 1 or self.cfg["shots_per_class"] > 0:
            self.use_label_subset()
        self.views = self.view_recipe(self.train_set, None)
        if len(self.views.names) != 1:
            raise ConfigError(f"an evaluation trains on one view per sample; the view recipe {self.views!r} makes "
                              f"{len(self.views.names)}: use `views: {{recipe: clip, ...}}` or Feeder_single")
        self.test_set = self.make_dataset("test_feeder")
        if self.cfg["num_epoch"] > 0:
            self.train_loader = self.make_loader(self.train_set, self.cfg["batch_size"], train=True)
        # every rank evaluates the whole test split (simple and exact; a sharded test is a later speed-up)
        self.test_loader = self.plain_loader(self.test_set)
        self.layout = self.train_set.layout
        self.log(f"train {len(self.train_set)} samples ({self.train_set.data_path}), "
                 f"test {len(self.test_set)} ({self.test_set.data_path}), stream {self.cfg['stream']}")

    def use_label_subset(self):
        """Keep a seeded, class-balanced `label_fraction` of the training set (semi-supervised
        protocol); the chosen rows and names are saved to work_dir/label_subset.json and reused
        from there on resume. The same (data, fraction, seed) gives the same subset on every
        machine and every rank (upstream drew it from the global RNG, per rank, unbalanced)."""
        fraction, seed = float(self.cfg["label_fraction"]), int(self.cfg["subset_seed"])
        shots, rule = int(self.cfg["shots_per_class"]), self.cfg["subset_rule"]
        if rule not in SUBSET_RULES:
            raise ConfigError(f"config key `subset_rule`: {rule!r} is not one of {list(SUBSET_RULES)}")
        if not 0 < fraction <= 1:
            raise ConfigError(f"config key `label_fraction`: {fraction} is not in (0, 1]")
        if shots > 0 and fraction < 1:
            raise ConfigError("config keys `label_fraction` and `shots_per_class` exclude each other: set one")
        per_rank = rule == "mamp" and self.world_size > 1
        path = os.path.join(self.work_dir, f"label_subset{f'_rank{self.rank}' if per_rank else ''}.json")
        ds = self.train_set
        wanted = {"data_path": os.path.abspath(ds.data_path), "samples": len(ds), "fraction": fraction, "seed": seed,
                  "shots_per_class": shots, "subset_rule": rule}
        saved = read_json(path)
        if saved and {k: saved.get(k, "balanced" if k == "subset_rule" else None) for k in wanted} == wanted:
            rows = saved["rows"]
        else:
            rows = label_subset(rule, ds.label, fraction, seed, shots, self.rank)
            if self.is_main or per_rank:  # the per-rank subsets of `mamp` are each rank's own file
                atomic_write_json(path, {**wanted, "rule": SUBSET_RULES[rule], "rows": rows,
                                         "names": [ds.sample_name[i] for i in rows]})
        ds.select(rows)
        share = f"{shots} per class" if shots else f"{fraction:g} of each class"
        self.log(f"label subset: {len(rows)} labelled training samples ({share}, seed {seed}; list in {path})")

    def build_model(self):
        super().build_model()
        multi = getattr(self.model, "derives_streams", False)
        if multi != (self.cfg["stream"] == "all"):
            raise ConfigError(
                f"config key `stream`: {self.cfg['model']} derives joint, motion and bone itself: set `stream: all`"
                if multi else
                f"config key `stream`: `all` needs a multi-stream model (derives_streams), not {self.cfg['model']}; "
                "evaluate one stream (joint, motion or bone), or combine streams with tools/ensemble.py")
        self.head_prefixes = self.model.head_prefixes()
        n_out = head_dims(self.model.get_submodule(self.head_prefixes[0]))[1]
        if self.cfg["head_norm"]:
            # MAMP / STARS linear probe: standardise the features with a parameter-free BatchNorm
            # (batch statistics while training, running ones at test), so the probe does not
            # depend on the scale of the features (a random-init ST-GCN's are ~1e-7).
            for prefix in self.head_prefixes:
                head = self.model.get_submodule(prefix)
                parent, _, attr = prefix.rpartition(".")
                norm = torch.nn.BatchNorm1d(head_dims(head)[0], affine=False, eps=1e-6)
                if self.world_size > 1:  # the statistics of the global batch, as one process would have
                    norm = dist.convert_global_batchnorm(norm)
                setattr(self.model.get_submodule(parent) if parent else self.model, attr,
                        torch.nn.Sequential(norm, head))
        for name, ds in (("training", self.train_set), ("test", self.test_set)):
            if n_out is not None and ds.num_classes > n_out:
                raise ConfigError(f"{name} labels go up to {ds.num_classes - 1} ({ds.label_path}) but the model "
                                  f"has num_class {n_out}; set model_args.num_class")
        if self.cfg["protocol"] == "linear":
            for name, p in self.model.named_parameters():
                p.requires_grad = any(name == h or name.startswith(h + ".") for h in self.head_prefixes)
            self.log(f"linear probe: trainable {[n for n, p in self.model.named_parameters() if p.requires_grad]}")
        self.best_top1, self.best_epoch = -1.0, 0

    def allowed_missing(self) -> list:
        return self.model.head_prefixes()

    def wrap_model(self):
        if not self.cfg["weights"] and self.epoch == 0:
            self.log("NOTE: no `weights` given: evaluating a RANDOMLY INITIALISED encoder (a baseline)")
        cache = self.cfg["cache_features"]
        if cache not in ("auto", "true", "false"):
            raise ConfigError(f"config key `cache_features`: {cache!r} is not one of auto, true, false")
        if self.cfg["frozen_encoder"] not in ("eval", "train"):
            raise ConfigError(f"config key `frozen_encoder`: {self.cfg['frozen_encoder']!r} is not one of eval, train")
        train_mode = self.cfg["frozen_encoder"] == "train"
        if train_mode and cache == "true":
            raise ConfigError("config keys `frozen_encoder: train` and `cache_features: true` exclude each other: "
                              "features of an encoder in train mode change at every step")
        self.cached = self.cfg["protocol"] == "linear" and not train_mode and (
            cache == "true" or (cache == "auto" and not self.views.augments))
        if self.cfg["recalibrate_bn"] and self.epoch == 0:
            self.recalibrate_bn()
        if not self.cached:
            super().wrap_model()
            return
        self.cache_features()
        self.module = self.model  # only the classifier runs in training; DDP wraps just that
        head = CombinedHead(self.module, self.head_prefixes)
        self.train_head = head if self.world_size == 1 else torch.nn.parallel.DistributedDataParallel(
            head, device_ids=[self.device.index] if self.device.type == "cuda" else None)

    def recalibrate_bn(self):
        recalibrate_bn(self.model, self.plain_loader(self.train_set), self.cfg["stream"], self.layout, self.device)
        self.log(f"BatchNorm statistics re-estimated on the {len(self.train_set)} training samples")

    def features(self, dataset, desc: str):
        return extract_features(self.model, self.plain_loader(dataset), stream=self.cfg["stream"], layout=self.layout,
                                device=self.device, autocast=self.autocast, desc=desc,
                                progress=self.is_main and self.cfg["progress"])

    def cache_features(self):
        t0 = time.time()
        f_train, y_train, _ = self.features(self.train_set, "train features")
        f_test, y_test, _ = self.features(self.test_set, "test features")
        self.train_loader = self.make_loader(FeatureSet(f_train, y_train, self.train_set.sample_name),
                                             self.cfg["batch_size"], train=True, on_device=True)
        self.test_features = (f_test, y_test)
        self.log(f"frozen features cached in {time.time() - t0:.1f} s: train {tuple(f_train.shape)}, "
                 f"test {tuple(f_test.shape)}; the classifier trains on them")

    # --- forward ------------------------------------------------------------------------------------
    def logits(self, x):
        """Logits from a raw batch, or from cached features."""
        if self.cached:
            return self.train_head(x)
        return self.model(to_stream(x, self.cfg["stream"], self.layout))

    def train_epoch(self, epoch: int) -> dict:
        if self.cfg["protocol"] == "linear" and self.cfg["frozen_encoder"] == "eval":
            self.model.eval()  # frozen BN statistics and no dropout: the lineage protocol
            for prefix in self.head_prefixes:  # only matters for head_norm
                self.module.get_submodule(prefix).train()
        else:
            self.model.train()
        self.set_loader_epoch(self.train_loader, epoch)
        total, correct, loss_sum = 0, 0, 0.0
        bar = tqdm(self.train_loader, desc=f"epoch {epoch + 1}/{self.cfg['num_epoch']}", leave=False,
                   disable=not (self.is_main and self.cfg["progress"]), dynamic_ncols=True)
        lr = self.set_lr(epoch)
        for step, (x, y, index) in enumerate(bar):
            lr = self.set_lr(epoch + step / len(self.train_loader))
            out = self.train_step(x, y, index, epoch, step)
            if out is None:
                continue
            loss_sum += out["loss"].item() * len(y)
            correct += int((out["logits"].argmax(1) == out["label"]).sum())
            total += len(y)
            bar.set_postfix(loss=f"{out['loss'].item():.4f}", lr=f"{lr:.3g}")
        if self.world_size > 1:  # every rank's shard, not rank 0's alone
            sums = all_reduce_sum(torch.tensor([loss_sum, correct, total], dtype=torch.float64, device=self.device))
            loss_sum, correct, total = sums[0].item(), int(sums[1]), int(sums[2])
        return {"loss": loss_sum / max(total, 1), "train_top1": round(100.0 * correct / max(total, 1), 4), "lr": lr}

    def train_step(self, x, y, index, epoch: int, step: int) -> dict | None:
        """A loader batch's step (view, forward, check, optimiser step): {logits, loss, label}, None if skipped."""
        x, y = x.to(self.device, non_blocking=True), y.to(self.device, non_blocking=True)
        if not self.cached and self.views.augments:
            x = self.views(x, self.generator)[self.views.names[0]]
        out, loss = self.micro_batches(x, y)
        self.iteration += 1
        if not self.check_finite(loss, epoch, step, index, self.train_set):
            return None
        self.optimizer_step()
        return {"logits": out, "loss": loss, "label": y}

    def micro_batches(self, x, y) -> tuple:
        """(logits, mean loss) of a batch, its gradient accumulated over `accumulate_grad_batches` equal
        micro-batches (each forward sees 1/N of the batch: its own BatchNorm statistics, as N GPUs or
        Lightning's accumulation had), each loss weighted 1/N; the optimiser step follows once."""
        chunks = int(self.cfg["accumulate_grad_batches"])
        if chunks < 1 or len(y) % chunks:
            raise ConfigError(f"config key `accumulate_grad_batches`: {chunks} must be >= 1 and divide the batch "
                              f"of {len(y)} per process")
        self.optimizer.zero_grad(set_to_none=True)
        outs, total = [], 0.0
        for xc, yc in zip(x.chunk(chunks), y.chunk(chunks)):
            with self.autocast():
                out = self.logits(xc)
                loss = F.cross_entropy(out.float(), yc, label_smoothing=self.cfg["label_smoothing"]) / chunks
            if torch.isfinite(loss.detach()):  # a non-finite loss is reported by check_finite, not backpropagated
                self.scaler.scale(loss).backward()
            outs.append(out.detach())
            total = total + loss.detach()
        return torch.cat(outs), total

    @torch.no_grad()
    def test_scores(self) -> tuple:
        self.model.eval()
        if self.cached:
            f, y = self.test_features
            return self.module.forward_head(f).float(), y
        scores, labels = [], []
        for x, y, _ in self.test_loader:
            with self.autocast():
                scores.append(self.module(to_stream(x.to(self.device), self.cfg["stream"], self.layout)).float())
            labels.append(y)
        return torch.cat(scores), torch.cat(labels).to(self.device)

    def evaluate(self, epoch: int) -> dict:
        scores, labels = self.test_scores()
        if not torch.isfinite(scores).all():
            raise TrainingError(f"non-finite test scores after epoch {epoch + 1}: the classifier diverged; "
                                f"lower base_lr")
        acc = topk_accuracy(scores, labels, self.cfg["show_topk"])
        top1 = acc["top1"]
        is_best = top1 >= self.best_top1  # a tie moves "best" to the later epoch, as the lineage's `>=`
        if is_best:
            self.best_top1, self.best_epoch = top1, epoch + 1
        if self.is_main:
            self.save_scores(scores, "test_result_last.pkl")
            if is_best:
                self.save_scores(scores, "test_result.pkl")
                atomic_save({"model": self.module.state_dict(), "epoch": epoch + 1, "top1": top1},
                            os.path.join(self.work_dir, "best_model.pt"))
            self.write_results(acc, epoch + 1)
        self.log(f"eval epoch {epoch + 1}: " + ", ".join(f"{k} {v:.2f}%" for k, v in acc.items())
                 + f" | best-on-test top1 {self.best_top1:.2f}% (epoch {self.best_epoch})")
        return {f"test_{k}": v for k, v in acc.items()}

    def save_scores(self, scores, filename):
        """{sample_name: logits} as the lineage's test_result.pkl, for multi-stream ensembles."""
        if self.cfg["save_result"]:
            names = self.test_set.sample_name
            s = scores.cpu().numpy()
            atomic_pickle(os.path.join(self.work_dir, filename), dict(zip(names, s)))

    def write_results(self, acc: dict, epoch: int):
        atomic_write_json(os.path.join(self.work_dir, "results.json"), {
            "processor": self.name, "protocol": self.cfg["protocol"], "stream": self.cfg["stream"],
            **acc, "best_top1": self.best_top1, "best_epoch": self.best_epoch, "epoch": epoch,
            "num_epoch": self.cfg["num_epoch"], "selection": SELECTION_NOTE, "weights": self.cfg["weights"],
            "config": self.cfg["config"], "test_samples": len(self.test_set), **self.subset_info(),
        })

    def subset_info(self) -> dict:
        return {"label_fraction": self.cfg["label_fraction"], "shots_per_class": self.cfg["shots_per_class"],
                "train_samples": len(self.train_set)}

    def extra_state(self) -> dict:
        return {"best_top1": self.best_top1, "best_epoch": self.best_epoch}

    def load_extra_state(self, extra):
        self.best_top1, self.best_epoch = extra.get("best_top1", -1.0), extra.get("best_epoch", 0)

    def summary_lines(self) -> list:
        last = next((h for h in reversed(self.history) if "test_top1" in h), None)
        if last is None:
            return []
        return [f"   last top1 {last['test_top1']:.2f}% (epoch {last['epoch']}), best-on-test top1 "
                f"{self.best_top1:.2f}% (epoch {self.best_epoch}); results.json, test_result.pkl, best_model.pt"]

