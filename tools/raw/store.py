"""Write a converted dataset to disk sample by sample: memory-mapped, resumable, published atomically.

    store = SampleStore(out_folder, {"xsub/train": names, "xsub/val": ...}, (3, 300, 25, 2), settings)
    for name in store.todo():
        store.put(name, array)          # into every split that lists the name (one array per kind)
        store.skip(name, reason)        # or leave it out, with the reason kept for the report
        store.note(name, remark)        # something worth reporting about a kept sample
        store.commit(every=500)         # progress survives a kill from here on
    outputs = []
    for split, names, arrays in store.finished():
        outputs.append(store.stage_array(arrays["data"], final_path))     # no copy for a memmap
        outputs.append(store.stage_file(final_label_path, write_fn))
    store.publish(outputs)              # every final file appears, or (after a kill) will on the next run

Nothing is held in RAM beyond one sample: each split (and kind) is a float32 `.npy` memmap under
`<out_folder>/<partial>/`, with the plan (names, shape, settings, the inputs' sizes and times) and
the done list. Started again with the same plan, a run continues from its last commit; a different
plan (other files, changed file contents, other settings) starts over.

Publishing: the list of (staged file, final path) is recorded first, then each staged file is
renamed over its final path, manifests last (and old manifests removed first, so a folder without
one is incomplete). A run killed while publishing finishes the renames when it is started again,
before anything else: finished outputs are never a mix of two runs once a run has started again.
A lock file keeps two runs from writing the same folder.
"""
from __future__ import annotations

import fcntl
import hashlib
import json
import os
import pickle
import shutil
import time

import numpy as np
from numpy.lib.format import open_memmap

from torchlight.io import atomic_write, atomic_write_json

from .common import InputError

COPY_CHUNK = 256  # rows per copy when compacting a split with skipped samples
MANIFEST = "manifest.json"


def fingerprint(paths) -> dict:
    """{path: [size, mtime_ns]}: enough to notice that an input changed between two runs."""
    out = {}
    for p in paths:
        st = os.stat(p)
        out[os.path.abspath(p)] = [st.st_size, st.st_mtime_ns]
    return out


class SampleStore:
    def __init__(self, out_folder: str, splits: dict, sample_shape: tuple, settings: dict, kinds=("data",),
                 partial: str = ".partial"):
        os.makedirs(out_folder, exist_ok=True)
        self.out_folder = out_folder
        self.folder = os.path.join(out_folder, partial)
        self._lock = open(os.path.join(out_folder, partial + ".lock"), "w")
        try:
            fcntl.flock(self._lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            raise InputError(out_folder, "another conversion is writing into this folder right now") from None
        self._finish_publishing()
        self.splits = {k: list(v) for k, v in splits.items()}
        self.shape, self.kinds = tuple(sample_shape), tuple(kinds)
        self.plan = {"splits": self.splits, "sample_shape": list(self.shape), "kinds": list(self.kinds),
                     "settings": settings}
        digest = hashlib.sha256(json.dumps(self.plan, sort_keys=True).encode()).hexdigest()[:16]
        self.slots = {}  # name -> [(split, row)]
        for split, names in self.splits.items():
            for row, name in enumerate(names):
                self.slots.setdefault(name, []).append((split, row))
        self.done, self.skipped, self.notes = set(), {}, {}
        plan_path = os.path.join(self.folder, "plan.json")
        if self._same_plan(plan_path, digest):
            state = self._read(self._state_path) or {}
            self.done, self.skipped = set(state.get("done", [])), dict(state.get("skipped", {}))
            self.notes = {k: list(v) for k, v in state.get("notes", {}).items()}
            self.arrays = {(s, k): np.load(self._path(s, k), mmap_mode="r+") for s, k in self._files()}
        else:
            shutil.rmtree(self.folder, ignore_errors=True)
            os.makedirs(self.folder)
            self.arrays = {(s, k): open_memmap(self._path(s, k), mode="w+", dtype=np.float32,
                                               shape=(len(self.splits[s]),) + self.shape) for s, k in self._files()}
            atomic_write_json(plan_path, {"digest": digest, **self.plan})
        self.resumed = len(self.done) + len(self.skipped)
        self.skipped_before = dict(self.skipped)  # reported again by the caller: the report lists them all
        self._last_commit, self._since_commit = time.monotonic(), 0

    @property
    def _state_path(self) -> str:
        return os.path.join(self.folder, "done.json")

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

    def note(self, name: str, remark: str) -> None:
        self.notes.setdefault(remark, []).append(name)

    def commit(self, every: int = 0, seconds: float = 30.0) -> None:
        """Make progress durable: flush the arrays, then record what is done (in that order)."""
        due = self._since_commit >= every or time.monotonic() - self._last_commit >= seconds
        if not self._since_commit or (every and not due):
            return
        for array in self.arrays.values():
            array.flush()
        atomic_write_json(self._state_path, {"done": sorted(self.done), "skipped": self.skipped,
                                             "notes": {k: sorted(set(v)) for k, v in self.notes.items()}})
        self._last_commit, self._since_commit = time.monotonic(), 0

    def finished(self):
        """Yield (split, kept names in plan order, {kind: float32 array of those rows}) per split.

        An array is the memmap itself when nothing was skipped, else a compacted copy.
        Call after every name is done or skipped, then stage the outputs and `publish` them.
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

    # --- publishing -----------------------------------------------------------------------------
    def staged_path(self, final_path: str) -> str:
        """Where to write the file that will become final_path."""
        rel = os.path.relpath(os.path.abspath(final_path), os.path.abspath(self.out_folder))
        path = os.path.join(self.folder, "publish", rel)
        os.makedirs(os.path.dirname(path), exist_ok=True)
        return path

    def stage_file(self, final_path: str, write_fn) -> tuple:
        """Write a small output through write_fn(file) into the staging area; returns the pair to publish."""
        staged = self.staged_path(final_path)
        atomic_write(staged, write_fn)
        return staged, final_path

    def stage_pickle(self, final_path: str, obj) -> tuple:
        return self.stage_file(final_path, lambda f: pickle.dump(obj, f))

    def stage_json(self, final_path: str, obj) -> tuple:
        return self.stage_file(final_path, lambda f: f.write(json.dumps(obj, indent=2).encode() + b"\n"))

    def stage_array(self, array: np.ndarray, final_path: str) -> tuple:
        """An output array: a store memmap is published as it is (renamed, never copied)."""
        if isinstance(array, np.memmap) and array.filename:
            array.flush()
            return array.filename, final_path
        return self.stage_file(final_path, lambda f: np.save(f, array))

    def publish(self, pairs: list) -> None:
        """Rename every (staged, final) pair into place, manifests last; survives a kill (see above)."""
        self.arrays.clear()
        pairs = sorted(pairs, key=lambda p: os.path.basename(p[1]) == MANIFEST)  # stable: manifests last
        atomic_write_json(self._state_path, {"publishing": [[os.path.abspath(s), os.path.abspath(f)]
                                                            for s, f in pairs]})
        self._finish_publishing()

    def _finish_publishing(self) -> None:
        state = self._read(self._state_path) or {}
        pairs = state.get("publishing")
        if pairs is None:
            return
        for staged, final in pairs:  # folders about to change are no longer complete
            if os.path.basename(final) == MANIFEST and os.path.exists(staged) and os.path.exists(final):
                os.remove(final)
        for staged, final in pairs:
            if os.path.exists(staged):
                os.makedirs(os.path.dirname(final), exist_ok=True)
                os.replace(staged, final)
        shutil.rmtree(self.folder, ignore_errors=True)

    def close(self) -> None:
        self.arrays.clear()
        self._lock.close()


def npz_rows(array: np.ndarray, path: str) -> np.ndarray:
    """(N, C, T, V, M) samples as the (N, T, M * V * C) rows of a MAMP / CTR-GCN npz, in a memmap at path."""
    n, c, t, v, m = array.shape
    rows = open_memmap(path, mode="w+", dtype=np.float32, shape=(n, t, m * v * c))
    for start in range(0, n, COPY_CHUNK):
        block = np.asarray(array[start:start + COPY_CHUNK]).transpose(0, 2, 4, 3, 1)
        rows[start:start + COPY_CHUNK] = block.reshape(len(block), t, -1)
    rows.flush()
    return rows


def write_npz(f, **arrays) -> None:
    """np.savez (uncompressed, as MAMP / CTR-GCN write it) into an open file; memmaps stream from disk."""
    np.savez(f, **arrays)
