"""kNN classification of frozen features: the training split is the memory bank.

Cosine similarity of L2-normalised pooled encoder features; `knn_k` is a list (k=1 is what STARS
reports); `knn_weighting: none` counts votes, `exp` weights each neighbour by exp(sim / knn_t)
(InstDisc / the lineage's kNN monitor). Augmentation is off for bank and queries.
"""
from __future__ import annotations

import os

import torch
import torch.nn.functional as F

from torchlight.config import ConfigError
from torchlight.io import atomic_write_json

from .evaluation import Evaluation


def knn_predict(query: torch.Tensor, bank: torch.Tensor, bank_labels: torch.Tensor, num_classes: int, k: int,
                weighting: str = "exp", t: float = 0.1, chunk: int = 1024) -> torch.Tensor:
    """Class scores (Nq, num_classes) of each query from its k most similar bank entries.

    query, bank: L2-normalised (Nq, d), (Nb, d). Works in chunks of queries to bound memory.
    """
    k = min(k, bank.shape[0])
    out = []
    for q in query.split(chunk):
        sim, idx = (q @ bank.T).topk(k, dim=1)
        weight = (sim / t).exp() if weighting == "exp" else torch.ones_like(sim)
        scores = torch.zeros(q.shape[0], num_classes, device=q.device, dtype=weight.dtype)
        scores.scatter_add_(1, bank_labels[idx], weight)
        out.append(scores)
    return torch.cat(out)


def knn_accuracies(bank, bank_labels, query, query_labels, ks, num_classes: int, weighting: str = "exp",
                   t: float = 0.1) -> dict:
    """{k: top-1 %} of the kNN classifier on cosine similarity of the (unnormalised) features."""
    bank, query = F.normalize(bank, dim=1), F.normalize(query, dim=1)
    out = {}
    for k in ks:
        scores = knn_predict(query, bank, bank_labels, num_classes, int(k), weighting, t)
        out[int(k)] = round(100.0 * (scores.argmax(1) == query_labels).float().mean().item(), 4)
    return out


class ReadOnly:
    """For jobs that only read an encoder (knn, extract): nothing trains, so nothing resumes."""

    def _find_resume(self):
        return None

    def build_optimizer(self):
        self.optimizer = torch.optim.SGD([torch.zeros(1, requires_grad=True)], lr=0.0)  # the loop's contract


class KNN(ReadOnly, Evaluation):
    description = "kNN evaluation of frozen encoder features (k list, cosine, optional exp weighting)"
    DEFAULTS = {"knn_k": [1, 20], "knn_t": 0.1, "knn_weighting": "exp", "num_epoch": 0}

    def wrap_model(self):
        self.cached = False
        if self.cfg["recalibrate_bn"]:
            self.recalibrate_bn()
        if self.cfg["knn_weighting"] not in ("exp", "none"):
            raise ConfigError(f"config key `knn_weighting`: {self.cfg['knn_weighting']!r} is not 'exp' or 'none'")
        if not self.cfg["weights"]:
            self.log("NOTE: no `weights` given: kNN of a RANDOMLY INITIALISED encoder (a baseline)")
        self.module = self.model

    def train(self):
        self.evaluate(0)  # nothing trains: the base loop's run() times it, summarises and cleans up

    @torch.no_grad()
    def evaluate(self, epoch: int) -> dict:
        bank, bank_labels, _ = self.features(self.train_set, "bank features")
        query, labels, _ = self.features(self.test_set, "query features")
        num_classes = max(self.train_set.num_classes, self.test_set.num_classes)
        per_k = knn_accuracies(bank, bank_labels, query, labels, self.cfg["knn_k"], num_classes,
                               self.cfg["knn_weighting"], self.cfg["knn_t"])
        self.result = per_k
        self.log("kNN top1: " + ", ".join(f"k={k}: {v:.2f}%" for k, v in per_k.items()))
        if self.is_main:
            first = per_k[int(self.cfg["knn_k"][0])]
            atomic_write_json(os.path.join(self.work_dir, "results.json"), {
                "processor": self.name, "protocol": "knn", "stream": self.cfg["stream"], "top1": first,
                "best_top1": first, "best_epoch": 0, "epoch": 0, "knn_top1": {str(k): v for k, v in per_k.items()},
                "knn_weighting": self.cfg["knn_weighting"], "knn_t": self.cfg["knn_t"], "weights": self.cfg["weights"],
                "config": self.cfg["config"], "test_samples": len(self.test_set), "bank_samples": len(self.train_set),
                **self.subset_info(),
            })
        return {f"knn_top1_k{k}": v for k, v in per_k.items()}

    def summary_lines(self) -> list:
        return ["   kNN top1 " + ", ".join(f"k={k}: {v:.2f}%" for k, v in self.result.items()) + "; results.json"]
