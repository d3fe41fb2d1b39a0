"""Replay an upstream golden (tests/golden/<method>.npz) through this project's real pretraining step.

A golden holds what the genuine upstream code computed for a few optimizer steps of a small model in float64
(tests/golden/README.md says how each was made): the initial state, the input views of every step, every
random draw the step made (dropout masks, ...), and the loss, gradients, queues and final state that came out.
`GoldenRun` builds `processor.pretrain.Pretrain` from a config on a tiny dataset, loads the initial state,
feeds the recorded views and draws, runs `Pretrain.train_step` (forward, backward, optimizer step, the
method's after-step hook) and compares each recorded quantity.
"""
from __future__ import annotations

import json
import os
import pickle
from collections import defaultdict

import numpy as np
import torch

GOLDEN_DIR = os.path.join(os.path.dirname(os.path.abspath(__file__)), "golden")
# Worst difference allowed, relative to the larger of 1 and the largest magnitude of the reference tensor.
# float32: the same computation summed in another order and rounded at every op; set per method in its test.
FLOAT64_TOL = 1e-8


def load_golden(name: str) -> tuple:
    """(meta dict, {key: np.ndarray}) of tests/golden/<name>.npz, packed (`pack`) or one array per key."""
    with np.load(os.path.join(GOLDEN_DIR, f"{name}.npz")) as z:
        arrays = {k: z[k] for k in z.files}
    meta = json.loads(str(arrays.pop("meta")))
    return meta, unpack(arrays) if "index" in arrays else arrays


def pack(arrays: dict) -> dict:
    """{key: array} as one flat blob per dtype plus an index (key, dtype, shape): a golden of a few thousand
    small arrays then costs no per-array zip and .npy headers (about 0.2 KB each)."""
    index, blobs = [], defaultdict(list)
    for key in sorted(arrays):
        a = np.asarray(arrays[key])
        index.append([key, a.dtype.str, list(a.shape)])
        blobs[a.dtype.str].append(a.ravel())
    out = {f"blob{dtype}": np.concatenate(parts) for dtype, parts in blobs.items()}
    out["index"] = np.array(json.dumps(index))
    return out


def unpack(packed: dict) -> dict:
    arrays, offsets = {}, defaultdict(int)
    for key, dtype, shape in json.loads(str(packed["index"])):
        size = int(np.prod(shape))
        start = offsets[dtype]
        arrays[key] = packed[f"blob{dtype}"][start:start + size].reshape(shape)
        offsets[dtype] = start + size
    return arrays


def section(arrays: dict, prefix: str) -> dict:
    """{rest: array} of the keys under `prefix/`."""
    cut = len(prefix) + 1
    return {k[cut:]: v for k, v in arrays.items() if k.startswith(prefix + "/")}


def dropout_masks(arrays: dict, step: int) -> dict:
    """{module name: [bool mask tensors in call order]} recorded in step `step`."""
    packed, shapes = section(arrays, f"step{step}/dropout"), section(arrays, f"step{step}/dropout_shape")
    book = defaultdict(list)
    for key in sorted(packed, key=lambda k: (k.rsplit("/", 1)[0], int(k.rsplit("/", 1)[1]))):
        module, _ = key.rsplit("/", 1)
        shape = tuple(int(s) for s in shapes[key])
        bits = np.unpackbits(packed[key])[: int(np.prod(shape))]
        book[module].append(torch.from_numpy(bits.astype(bool).reshape(shape)))
    return book


def difference(ours: torch.Tensor, ref) -> float:
    """max |ours - ref| / max(1, max |ref|), in float64."""
    ref = torch.as_tensor(np.asarray(ref), dtype=torch.float64)
    ours = ours.detach().to(torch.float64).reshape(ref.shape)
    scale = max(1.0, float(ref.abs().max())) if ref.numel() else 1.0
    return float((ours - ref).abs().max()) / scale if ref.numel() else 0.0


class DropoutReplay:
    """Makes every dropout module of a model apply the recorded keep masks, in their recorded order.

    `order` may map a module name to the permutation of its calls (upstream called the module in another
    order than this implementation does, e.g. the extreme view first)."""

    def __init__(self, model: torch.nn.Module):
        self.book, self.calls = {}, defaultdict(int)
        for name, module in model.named_modules():
            if isinstance(module, torch.nn.Dropout) and module.p > 0:
                module.forward = self._replay(name, module)

    def load(self, book: dict, order: dict | None = None):
        order = order or {}
        self.book = {k: [v[i] for i in order.get(k, range(len(v)))] for k, v in book.items()}
        self.calls.clear()

    def _replay(self, name, module):
        def forward(x):
            if not module.training:
                return x
            masks = self.book.get(name)
            if not masks or self.calls[name] >= len(masks):
                raise AssertionError(f"golden: no recorded dropout mask left for {name} (call {self.calls[name]})")
            mask = masks[self.calls[name]]
            self.calls[name] += 1
            assert mask.shape == x.shape, f"golden: {name} got input {tuple(x.shape)}, mask {tuple(mask.shape)}"
            return x * mask.to(x.dtype) / (1 - module.p)
        return forward

    def check_all_used(self):
        for name, masks in self.book.items():
            assert self.calls[name] == len(masks), f"golden: {name} used {self.calls[name]} of {len(masks)} masks"


class GoldenRun:
    """One golden replayed through `Pretrain`.

    cfg: the processor config without data and work_dir (model, model_args, optimizer keys, stream, ...).
    rename: upstream state_dict name -> ours (None drops an upstream entry this implementation has no
    counterpart of, e.g. an unused buffer); the golden's names are mapped before every comparison.
    """

    def __init__(self, name: str, tmp_path, cfg: dict, dtype=torch.float64, rename=None):
        from processor.pretrain import Pretrain

        self.meta, self.arrays = load_golden(name)
        self.dtype, self.rename = dtype, rename or (lambda k: k)
        x = self.arrays["step0/view0"].astype(np.float32)
        data = tmp_path / "data"
        data.mkdir(exist_ok=True)
        np.save(data / "train_position.npy", x)
        with open(data / "train_label.pkl", "wb") as f:
            pickle.dump(([f"golden_{i}" for i in range(len(x))], [0] * len(x)), f)
        cfg = {"train_feeder": "feeder.ntu_feeder.LineageReader", "num_worker": 0, "seed": 0, "use_gpu": False,
               "progress": False, "tensorboard": False, "batch_size": len(x), "save_interval": 0, **cfg,
               "train_feeder_args": {"data_path": str(data / "train_position.npy"),
                                     "label_path": str(data / "train_label.pkl"), **cfg.get("train_feeder_args", {})},
               "work_dir": str(tmp_path / "work"), "config": f"golden {name}"}
        self.processor = Pretrain(cfg)
        self.model = self.processor.module.to(dtype)
        init = self.mapped(section(self.arrays, "init"))
        missing, unexpected = self.model.load_state_dict(init, strict=False)
        assert not missing and not unexpected, f"golden {name}: state differs, missing {missing}, unexpected {unexpected}"
        self.dropout = DropoutReplay(self.model)
        self.worst = defaultdict(float)  # quantity -> worst relative difference seen

    def mapped(self, state: dict) -> dict:
        """Upstream names -> ours, as tensors of the run's dtype (integer entries keep theirs)."""
        out = {}
        for k, v in state.items():
            name = self.rename(k)
            if name is None:
                continue
            t = torch.from_numpy(np.asarray(v))
            out[name] = t.to(self.dtype) if t.is_floating_point() else t
        return out

    @property
    def steps(self) -> int:
        return len(self.meta["epochs"])

    def views(self, step: int) -> list:
        count = len(section({k: 0 for k in self.arrays if k.startswith(f"step{step}/view")}, f"step{step}"))
        return [torch.from_numpy(self.arrays[f"step{step}/view{j}"]).to(self.dtype) for j in range(count)]

    def step(self, i: int, views=None, dropout_order=None, before=None) -> dict:
        """Run step i as the pretraining loop does and return the method's outputs; `before(batch_views)` may
        inject further draws."""
        epoch = int(self.arrays[f"step{i}/epoch"])
        views = self.views(i) if views is None else views
        if not isinstance(views, dict):  # recorded in upstream's order = the method's declared views
            assert len(views) == len(self.model.views), \
                f"golden: {len(views)} recorded views for the method's {self.model.views}: map them by name"
            views = dict(zip(self.model.views, views))
        self.processor.views = lambda x, generator=None: dict(views)
        self.dropout.load(dropout_masks(self.arrays, i), dropout_order)
        lr = self.processor.set_lr(epoch)
        self.note("lr", torch.tensor(lr, dtype=torch.float64), self.arrays[f"step{i}/lr"])
        if before is not None:
            before(views)
        first = next(iter(views.values()))
        n = first.shape[0]
        out = self.processor.train_step(first, torch.zeros(n, dtype=torch.long), torch.arange(n), epoch, i)
        self.dropout.check_all_used()
        return out

    def note(self, quantity: str, ours, ref):
        self.worst[quantity] = max(self.worst[quantity], difference(torch.as_tensor(ours), ref))

    def compare_step(self, i: int, out: dict):
        self.note("loss", out["loss"], self.arrays[f"step{i}/loss"])
        grads = self.mapped(section(self.arrays, f"step{i}/grad"))
        params = dict(self.model.named_parameters())
        assert grads, f"golden step {i} holds no gradients"
        for name, ref in grads.items():
            assert params[name].grad is not None, f"step {i}: {name} got no gradient (upstream's did)"
            self.note("gradients", params[name].grad, ref)
        trained = {n for n, p in params.items() if p.grad is not None and p.grad.abs().sum() > 0}
        assert trained <= set(grads), f"step {i}: gradients upstream did not have: {sorted(trained - set(grads))[:5]}"
        state = self.model.state_dict()
        for name, ref in self.mapped(section(self.arrays, f"step{i}/state")).items():
            self.note("queues", state[name], ref)

    def compare_final(self):
        state = self.model.state_dict()
        final = self.mapped(section(self.arrays, "final"))
        assert set(final) == set(state), f"final state keys differ: {sorted(set(final) ^ set(state))[:5]}"
        for name, ref in final.items():
            self.note("weights" if state[name].is_floating_point() else "counters", state[name], ref)

    def replay(self, **step_kwargs) -> dict:
        """Every step, compared; then the final state. Returns {quantity: worst relative difference}."""
        for i in range(self.steps):
            self.compare_step(i, self.step(i, **step_kwargs))
        self.compare_final()
        return dict(self.worst)


def assert_within(worst: dict, tol: float, name: str):
    bad = {k: v for k, v in worst.items() if not v <= tol}
    assert not bad, f"{name}: differences to the upstream golden above {tol:g}: {bad} (all: {worst})"
