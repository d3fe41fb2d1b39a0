"""Use a trained encoder on data: pooled features, predictions, nearest neighbours.

    python main.py extract --config config/demo/skeletonclr_extract.yaml --weights <checkpoint>
    python main.py extract --config ... --weights <checkpoint> --sequences my_clips/    # new sequences, unlabelled

What is embedded: the `test_feeder` split (any reader), or, with `sequences: DIR`, a folder of one `.npy` /
`.npz` per sequence prepared by the pipeline the encoder was trained on (feeder/sequence_feeder.py:
`sequences_pipeline: lineage | pose2d`, `sequences_frames`, and `sequences_persons`: the person slots the
training data had, 1 for NW-UCLA and Penn Action, 2 for NTU). Written to work_dir:

- `features.npz`: `features` (N, d) float32 (the encoder's pooled features, as every evaluation uses them),
  `names`, `labels` (-1: unknown);
- `predictions.csv` when the weights hold a trained classifier (a linear evaluation's or fine-tuning's
  checkpoint): name, label, then the top-5 classes with their softmax scores (`class_names`: a text file with
  one class name per line, or a data folder's manifest.json with its `classes`; else the class indices);
- `neighbours.csv` when `reference_feeder` names a reader (e.g. the training split of the pretraining data):
  each sample's `neighbours` nearest reference samples by cosine similarity, with their labels.
Works for every method's encoder (`model` as its evaluation config builds it) and every reader.
"""
from __future__ import annotations

import csv
import io
import json
import os

import numpy as np
import torch
import torch.nn.functional as F

from torchlight.config import ConfigError, resolve_path
from torchlight.io import atomic_write, atomic_write_text
from torchlight.util import instantiate

from .evaluation import Evaluation
from .knn import ReadOnly


class Extract(ReadOnly, Evaluation):
    description = "features (and predictions, nearest neighbours) of a trained encoder on a split or new sequences"
    DEFAULTS = {
        "num_epoch": 0, "sequences": None, "sequences_pipeline": "lineage", "sequences_frames": 50,
        "sequences_persons": 2, "sequences_layout": None, "sequences_labels": None, "class_names": None, "topk": 5,
        "reference_feeder": None, "reference_feeder_args": {}, "neighbours": 5,
    }

    def build_data(self):
        if self.cfg["sequences"]:
            args = {"data_path": resolve_path(self.cfg["sequences"]), "frames": self.cfg["sequences_frames"],
                    "pipeline": self.cfg["sequences_pipeline"], "labels": resolve_path(self.cfg["sequences_labels"]),
                    "max_persons": self.cfg["sequences_persons"]}
            layout = self.cfg["sequences_layout"] or (self.cfg["model_args"].get("graph_args") or {}).get("layout")
            if layout:
                args["layout"] = layout
            self.test_set = instantiate("feeder.sequence_feeder.SequenceFolder", args, where="sequences")
            for name, why in self.test_set.skipped.items():
                self.log(f"skipped {name}: {why}")
        else:
            if not self.cfg["test_feeder"]:
                raise ConfigError("extract needs `sequences` (a folder of .npy / .npz sequences) or `test_feeder`")
            self.test_set = self.make_dataset("test_feeder", labelled=False)
        self.train_set = self.test_set  # what Evaluation's checks read; nothing trains
        self.reference_set = None
        if self.cfg["reference_feeder"]:
            self.reference_set = self.make_dataset("reference_feeder")
        self.layout = self.test_set.layout
        self.log(f"extracting {len(self.test_set)} samples from {self.test_set.data_path}")

    def allowed_missing(self) -> list:
        return self.model.head_prefixes()  # a pretraining checkpoint holds no classifier: features only

    def load_pretrained(self, path: str):
        """The encoder, and the classifier when the file holds one that fits (a linear evaluation's or fine-tuning's
        checkpoint): `ignore_weights` entries naming the classifier are dropped then, so one config serves both."""
        from torchlight.io import extract_state_dict, load_checkpoint, matches_prefix

        state = extract_state_dict(load_checkpoint(path, trust=self.cfg["trust_checkpoint"]), path)
        own = self.model.state_dict()
        heads = self.model.head_prefixes()

        def head_keys(keys):
            return {k for k in keys if any(matches_prefix(k, h) for h in heads)}
        fits = head_keys(state) == head_keys(own) and all(state[k].shape == own[k].shape for k in head_keys(own))
        if fits:
            self.cfg["ignore_weights"] = [p for p in self.cfg["ignore_weights"] if not any(
                matches_prefix(h, p) or matches_prefix(p, h) for h in heads)]
        super().load_pretrained(path, state)  # the file is read once
        self.has_head = fits

    def wrap_model(self):
        self.cached = False
        if not self.cfg["weights"]:
            raise ConfigError("extract needs `weights`: the checkpoint of the encoder (and classifier) to use")
        self.module = self.model

    def train(self):
        self.evaluate(0)

    @torch.no_grad()
    def evaluate(self, epoch: int) -> dict:
        feats, labels, _ = self.features(self.test_set, "features")
        names = list(self.test_set.sample_name)
        labels = labels.cpu().numpy()
        self.written = ["features.npz"]
        if self.is_main:
            arrays = {"features": feats.cpu().numpy().astype(np.float32), "names": np.array(names),
                      "labels": labels}
            atomic_write(os.path.join(self.work_dir, "features.npz"), lambda f: np.savez(f, **arrays))
            if getattr(self, "has_head", False):
                self.write_predictions(feats, names, labels)
            if self.reference_set is not None:
                self.write_neighbours(feats, names, labels)
        self.log(f"{len(names)} x {feats.shape[1]} features -> {os.path.join(self.work_dir, 'features.npz')}")
        return {}

    def write_predictions(self, feats, names, labels):
        scores = F.softmax(self.module.forward_head(feats).float(), dim=1)
        k = min(int(self.cfg["topk"]), scores.shape[1])
        top = scores.topk(k, dim=1)
        classes = self.class_names(scores.shape[1])
        rows = [["name", "label"] + [c for i in range(1, k + 1) for c in (f"class_{i}", f"score_{i}")]]
        for n, y, idx, val in zip(names, labels, top.indices.tolist(), top.values.tolist()):
            label = classes[y] if 0 <= y < len(classes) else ""
            rows.append([n, label] + [c for i, v in zip(idx, val) for c in (classes[i], f"{v:.4f}")])
        self.write_csv("predictions.csv", rows)
        known = labels >= 0
        if known.any():
            top1 = float((top.indices[:, 0].cpu().numpy()[known] == labels[known]).mean() * 100)
            self.log(f"predictions.csv: top-1 {top1:.2f}% on the {int(known.sum())} labelled samples")

    def write_neighbours(self, feats, names, labels):
        ref, ref_labels, _ = self.features(self.reference_set, "reference features")
        sim = F.normalize(feats, dim=1) @ F.normalize(ref, dim=1).T
        k = min(int(self.cfg["neighbours"]), sim.shape[1])
        top = sim.topk(k, dim=1)
        ref_names, ref_labels = self.reference_set.sample_name, ref_labels.cpu().tolist()
        classes = self.class_names(max(self.reference_set.num_classes, 1))
        rows = [["name", "label"] + [c for i in range(1, k + 1) for c in (f"neighbour_{i}", f"label_{i}", f"cosine_{i}")]]
        for n, y, idx, val in zip(names, labels, top.indices.tolist(), top.values.tolist()):
            label = classes[y] if 0 <= y < len(classes) else ""
            rows.append([n, label] + [c for i, v in zip(idx, val)
                                      for c in (ref_names[i], classes[ref_labels[i]], f"{v:.4f}")])
        self.write_csv("neighbours.csv", rows)

    def class_names(self, count: int) -> list:
        path = resolve_path(self.cfg["class_names"]) if self.cfg["class_names"] else None
        if not path:
            return [str(i) for i in range(count)]
        with open(path, encoding="utf-8") as f:
            if path.endswith(".json"):  # a data folder's manifest.json (tools/pose_import.py writes `classes`)
                names = [str(c) for c in json.load(f).get("classes") or []]
            else:
                names = [line.strip() for line in f if line.strip()]
        if len(names) < count:
            raise ConfigError(f"config key `class_names`: {path} names {len(names)} classes, the model has {count}")
        return names

    def write_csv(self, filename: str, rows: list):
        buf = io.StringIO()
        csv.writer(buf).writerows(rows)
        atomic_write_text(os.path.join(self.work_dir, filename), buf.getvalue())
        self.written.append(filename)

    def summary_lines(self) -> list:
        return [f"   wrote {', '.join(self.written)} in {self.work_dir}"]
