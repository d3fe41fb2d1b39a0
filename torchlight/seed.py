"""Seeding and RNG state capture, so that resume continues the same random streams."""
from __future__ import annotations

import random

import numpy as np
import torch


def seed_everything(seed: int):
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


def get_rng_state(generator: torch.Generator | None = None) -> dict:
    np_state = np.random.get_state()
    state = {
        "python": random.getstate(),
        # numpy's state as plain tensors/ints so checkpoints load with weights_only=True
        "numpy": [np_state[0], torch.from_numpy(np_state[1].astype(np.int64)), int(np_state[2]),
                  int(np_state[3]), float(np_state[4])],
        "torch": torch.get_rng_state(),
    }
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        state["cuda"] = torch.cuda.get_rng_state_all()
    if generator is not None:
        state["generator"] = generator.get_state()
    return state


def set_rng_state(state: dict, generator: torch.Generator | None = None):
    random.setstate(_as_tuple(state["python"]))
    n = state["numpy"]
    np.random.set_state((n[0], n[1].numpy().astype(np.uint32), n[2], n[3], n[4]))
    torch.set_rng_state(state["torch"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])
    if generator is not None and "generator" in state:
        generator.set_state(state["generator"])


def _as_tuple(x):
    return tuple(_as_tuple(i) for i in x) if isinstance(x, (list, tuple)) else x


class WorkerInit:
    """DataLoader worker seeding that differs per worker, per epoch and per rank.

    (The lineage seeded every worker with its bare id, so every epoch replayed the same stream.)
    Set `.epoch` before creating the epoch's iterator; workers are re-created each epoch.
    """

    def __init__(self, seed: int, rank: int = 0):
        self.seed, self.rank, self.epoch = seed, rank, 0

    def __call__(self, worker_id: int):
        s = np.random.SeedSequence([self.seed, self.epoch, self.rank, worker_id]).generate_state(2)
        seed = int(s[0]) << 32 | int(s[1])
        random.seed(seed)
        np.random.seed(seed % 2**32)
        torch.manual_seed(seed)
