"""Write a converted dataset to disk sample by sample: memory-mapped, resumable, atomic at the end.

    store = SampleStore(out_folder, {"xsub/train": names, "xsub/val": ...}, (3, 300, 25, 2), settings)
    for name in store.todo():
        store.put(name, array)          # into every split that lists the name (one array per kind)
        store.skip(name, reason)        # or leave it out, with the reason kept for the report
        store.commit(every=500)         # progress survives a kill from here on
    for split, names, arrays in store.finished():
        ...                             # {kind: array}: write the final files (npy / npz) atomically

`kinds` names several arrays stored per sample (e.g. position and motion); the default is one.
Nothing is held in RAM beyond one sample: each split (and kind) is a float32 `.npy` memmap under
`<out_folder>/.partial/`, together with the plan (names, shape, settings) and the done list. A run
interrupted at any point restarts from its last commit when called again with the same plan;
a different plan (other files, other settings) starts over. Finished files are never touched
until the new ones are complete.
"""
from __future__ import annotations

import hashlib
import json
import os
import shutil
import time

import numpy as np
from numpy.lib.format import open_memmap

from torchlight.io import atomic_write_json

COPY_CHUNK = 256  # rows per copy when compacting a split with skipped samples


class SampleStore:
    def __init__(self, out_folder: str, splits: dict, sample_shape: tuple, settings: dict, kinds=("data",)):
        self.folder = os.path.join(out_folder, ".partial")
        self.splits = {k: list(v) for k, v in splits.items()}
        self.shape, self.kinds = tuple(sample_shape), tuple(kinds)
        self.plan = {"splits": self.splits, "sample_shape": list(self.shape), "kinds": list(self.kinds),
                     "settings": settings}
        digest = hashlib.sha256(json.dumps(self.plan, sort_keys=True).encode()).hexdigest()[:16]
        self.slots = {}  # name -> [(split, row)]
        for split, names in self.splits.items():
            for row, name in enumerate(names):
                self.slots.setdefault(name, []).append((split, row))
        self.done, self.skipped = set(), {}
        self.resumed = 0
        plan_path = os.path.join(self.folder, "plan.json")
        if self._same_plan(plan_path, digest):
            state = self._read(os.path.join(self.folder, "done.json")) or {}
            self.done, self.skipped = set(state.get("done", [])), dict(state.get("skipped", {}))
            self.resumed = len(self.done) + len(self.skipped)
            self.arrays = {(s, k): np.load(self._path(s, k), mmap_mode="r+") for s, k in self._files()}
        else:
            shutil.rmtree(self.folder, ignore_errors=True)
            os.makedirs(self.folder)
            self.arrays = {(s, k): open_memmap(self._path(s, k), mode="w+", dtype=np.float32,
                                               shape=(len(self.splits[s]),) + self.shape) for s, k in self._files()}
            atomic_write_json(plan_path, {"digest": digest, **self.plan})
        self._last_commit, self._since_commit = time.monotonic(), 0

    def _files(self):
        return [(s, k) for s, names in self.splits.items() if names for k in self.kinds]

    def _path(self, split: str, kind: str) -> str:
        return os.path.join(self.folder, f"{split.replace('/', '__')}.{kind}.npy")

    @staticmethod
    def _read(path):
        try:
            with open(path) as f:
                return json.load(f)
        except (OSError, ValueError):
            return None

    def _same_plan(self, plan_path, digest) -> bool:
        plan = self._read(plan_path)
        if not plan or plan.get("digest") != digest:
            return False
        return all(os.path.exists(self._path(s, k)) for s, k in self._files())

    def todo(self) -> list:
        """Names still to convert, in plan order."""
        return [n for n in self.slots if n not in self.done and n not in self.skipped]

    def put(self, name: str, *samples: np.ndarray) -> None:
        """Store the sample (one array per kind, in `kinds` order) in every split listing `name`."""
        for split, row in self.slots[name]:
            for kind, sample in zip(self.kinds, samples, strict=True):
                self.arrays[split, kind][row] = sample
        self.done.add(name)
        self._since_commit += 1

    def skip(self, name: str, reason: str) -> None:
        self.skipped[name] = reason
        self._since_commit += 1

    def commit(self, every: int = 0, seconds: float = 30.0) -> None:
        """Make progress durable: flush the arrays, then record what is done (in that order)."""
        due = self._since_commit >= every or time.monotonic() - self._last_commit >= seconds
        if not self._since_commit or (every and not due):
            return
        for array in self.arrays.values():
            array.flush()
        atomic_write_json(os.path.join(self.folder, "done.json"),
                          {"done": sorted(self.done), "skipped": self.skipped})
        self._last_commit, self._since_commit = time.monotonic(), 0

    def finished(self):
        """Yield (split, kept names in plan order, {kind: float32 array of those rows}) per split.

        An array is the memmap itself when nothing was skipped, else a compacted copy.
        Call after every name is done or skipped; `cleanup()` removes the partial folder.
        """
        self.commit()
        left = self.todo()
        if left:
            raise RuntimeError(f"{len(left)} samples not converted yet, e.g. {left[0]}")
        for split, names in self.splits.items():
            kept_rows = [i for i, n in enumerate(names) if n in self.done]
            kept = [names[i] for i in kept_rows]
            if not names:
                yield split, [], {k: np.zeros((0,) + self.shape, np.float32) for k in self.kinds}
            elif len(kept) == len(names):
                yield split, kept, {k: self.arrays[split, k] for k in self.kinds}
            else:
                yield split, kept, {k: self._compact(split, k, kept_rows) for k in self.kinds}

    def _compact(self, split, kind, rows):
        out = open_memmap(self._path(split, kind) + ".kept.npy", mode="w+", dtype=np.float32,
                          shape=(len(rows),) + self.shape)
        for start in range(0, len(rows), COPY_CHUNK):
            out[start:start + COPY_CHUNK] = self.arrays[split, kind][rows[start:start + COPY_CHUNK]]
        out.flush()
        return out

    def cleanup(self) -> None:
        self.arrays.clear()
        shutil.rmtree(self.folder, ignore_errors=True)


def save_npy(path: str, array: np.ndarray) -> None:
    """Write `array` to path.npy atomically; a memmap already in a file is moved, not copied."""
    tmp = path + ".partial"
    if isinstance(array, np.memmap) and array.filename:  # a whole .npy file from SampleStore
        array.flush()
        shutil.move(array.filename, tmp)
    else:
        with open(tmp, "wb") as f:
            np.save(f, array)
    os.replace(tmp, path)


def npz_rows(array: np.ndarray, path: str) -> np.ndarray:
    """(N, C, T, V, M) samples as the (N, T, M * V * C) rows of a MAMP / CTR-GCN npz, in a memmap at path."""
    n, c, t, v, m = array.shape
    rows = open_memmap(path, mode="w+", dtype=np.float32, shape=(n, t, m * v * c))
    for start in range(0, n, COPY_CHUNK):
        block = np.asarray(array[start:start + COPY_CHUNK]).transpose(0, 2, 4, 3, 1)
        rows[start:start + COPY_CHUNK] = block.reshape(len(block), t, -1)
    rows.flush()
    return rows


def save_npz(path: str, **arrays) -> None:
    """np.savez (uncompressed, as MAMP / CTR-GCN write it) atomically; memmaps stream from disk."""
    tmp = path + ".partial"
    with open(tmp, "wb") as f:
        np.savez(f, **arrays)
    os.replace(tmp, path)
