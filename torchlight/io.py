"""Atomic writes and checkpoint / weight loading that never falls back silently to random init."""
from __future__ import annotations

import argparse
import errno
import json
import os
import pickle
import tempfile
import warnings
from dataclasses import dataclass, field

import torch


from .errors import CheckpointError, WorkDirBusy  # noqa: F401 - imported from here by older code


def _fsync_dir(path: str):
    try:
        fd = os.open(os.path.dirname(os.path.abspath(path)) or ".", os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


_UMASK = os.umask(0)
os.umask(_UMASK)


def atomic_write(path: str, write_fn, mode: str = "wb"):
    """Write through `write_fn(file)` to a temp file beside `path`, fsync, then rename over it.

    A crash at any moment leaves either the old file or the new one, never half of one.
    """
    directory = os.path.dirname(os.path.abspath(path))
    os.makedirs(directory, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix="." + os.path.basename(path) + ".", suffix=".tmp", dir=directory)
    try:
        with os.fdopen(fd, mode) as f:
            write_fn(f)
            f.flush()
            os.fsync(f.fileno())
        os.chmod(tmp, 0o666 & ~_UMASK)  # mkstemp makes 0600; give the file the usual permissions
        os.replace(tmp, path)
    except BaseException as e:
        try:
            os.unlink(tmp)
        except OSError:
            pass
        if isinstance(e, OSError):
            hint = " (is the disk full?)" if e.errno in (errno.ENOSPC, errno.EFBIG, errno.EDQUOT) else ""
            raise OSError(e.errno, f"could not write {path}: {e.strerror}{hint}; the previous version (if any) "
                                   f"is untouched") from e
        raise
    _fsync_dir(path)


def remove_stale_temp_files(directory: str) -> list:
    """Delete the temp files of atomic writes that a killed process left behind in `directory`."""
    removed = []
    if not os.path.isdir(directory):
        return removed
    for name in os.listdir(directory):
        if name.startswith(".") and name.endswith(".tmp") and name.count(".") >= 3:
            try:
                os.unlink(os.path.join(directory, name))
                removed.append(name)
            except OSError:
                pass
    return removed


class WorkDirLock:
    """One writer per work_dir: an exclusive flock on `<work_dir>/.lock`, held while the run lives.

    The kernel drops the lock when the process dies, however it dies (SIGKILL included), so a killed
    run never leaves a stale lock and the same command resumes at once. The file records who holds it
    (pid, host, command, start time) for the message a second run gets. (flock is advisory and local:
    two hosts writing one work_dir over NFS are not stopped by it.)
    """

    NAME = ".lock"

    def __init__(self, work_dir: str, command: str = ""):
        import fcntl
        import socket
        import time

        self.path = os.path.join(work_dir, self.NAME)
        self.file = open(self.path, "a+")
        try:
            fcntl.flock(self.file, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            self.file.seek(0)
            holder = self.file.read().strip() or "another process"
            self.file.close()
            raise WorkDirBusy(f"work_dir {work_dir} is in use by {holder}: two runs must not write one work_dir "
                              f"(both would write latest.pt). Wait for it to end, stop it, or choose another "
                              f"--work_dir") from None
        self.file.seek(0)
        self.file.truncate()
        self.file.write(f"process {os.getpid()} on {socket.gethostname()} since "
                        f"{time.strftime('%Y-%m-%d %H:%M:%S')} ({command or 'python'})\n")
        self.file.flush()

    def release(self):
        if not self.file.closed:
            self.file.close()  # closing the last descriptor drops the flock


def atomic_save(obj, path: str):
    atomic_write(path, lambda f: torch.save(obj, f))


def atomic_write_text(path: str, text: str):
    atomic_write(path, lambda f: f.write(text), mode="w")


def atomic_write_json(path: str, obj):
    atomic_write_text(path, json.dumps(obj, indent=2, sort_keys=False) + "\n")


def atomic_pickle(path: str, obj):
    atomic_write(path, lambda f: pickle.dump(obj, f))


# --- reading files that may come from strangers --------------------------------------------------
# A pickle can name any importable function and call it while loading (os.system, ...). Checkpoints are
# read by torch's weights-only unpickler (tensors, containers, numbers, strings), with exactly the
# non-tensor types the supported layouts need; data pickles (labels, scores, annotations) by
# `load_pickle`, which admits builtin containers and scalars and numpy arrays, dtypes and scalars.

# The non-tensor types of the checkpoint layouts we read: MAE / MAMP keep their argparse arguments,
# Lightning (HYSP) keeps its hyper-parameters in an AttributeDict (a dict subclass: read as a dict).
CHECKPOINT_GLOBALS = [argparse.Namespace] + [
    (dict, name) for name in ("pytorch_lightning.utilities.parsing.AttributeDict",
                              "lightning_fabric.utilities.data.AttributeDict",
                              "lightning.fabric.utilities.data.AttributeDict")]
TRUST_HINT = ("If you trust the file, convert it once with `python tools/convert_checkpoint.py {path} <out.pt>` "
              "(it copies the tensors out without running anything the file names), or load it as it is with "
              "`trust_checkpoint: true` (`--trust_checkpoint true`; a full pickle runs whatever code the file "
              "names)")


def _allowed_name(entry) -> str:
    return entry[1] if isinstance(entry, tuple) else f"{entry.__module__}.{entry.__qualname__}"


def unsafe_globals(path: str) -> list:
    """The globals a checkpoint names beyond what loading it here admits (empty if torch cannot tell)."""
    try:
        found = torch.serialization.get_unsafe_globals_in_checkpoint(path)
    except Exception:  # noqa: BLE001 - an older torch, or a file it cannot scan
        return []
    allowed = {_allowed_name(g) for g in CHECKPOINT_GLOBALS}
    return [g for g in found if g not in allowed]


def load_checkpoint(path: str, trust: bool = False):
    """torch.load on CPU without running code: the weights-only unpickler plus CHECKPOINT_GLOBALS.

    A file that needs anything else is refused, naming the file and the globals it asks for, unless
    `trust` (a full pickle, with a warning). Missing, empty, truncated or foreign files get a clear error.
    """
    if not path or not os.path.isfile(path):
        raise CheckpointError(f"checkpoint not found: {path}")
    if os.path.getsize(path) == 0:
        raise CheckpointError(f"checkpoint {path} is empty (0 bytes): an interrupted copy? Use an earlier one.")
    try:
        with torch.serialization.safe_globals(CHECKPOINT_GLOBALS):
            return torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as e:
        if "weights_only" not in str(e) and "Weights only" not in str(e):
            raise CheckpointError(f"checkpoint {path} is corrupt or truncated ({e}); use an earlier one") from None
    except Exception as e:  # noqa: BLE001 - torch raises IndexError, struct.error, ... on garbage
        raise CheckpointError(f"checkpoint {path} is corrupt or truncated ({type(e).__name__}: {e}); "
                              f"use an earlier one") from None
    names = unsafe_globals(path)
    what = f"it names {', '.join(f'`{g}`' for g in names)}" if names else "it holds objects beyond tensors"
    if not trust:
        raise CheckpointError(f"checkpoint {path} was refused: {what}, and unpickling such a file can run code. "
                              + TRUST_HINT.format(path=path) + ".")
    warnings.warn(f"loading {path} with a full pickle (trust_checkpoint): {what}; this runs any code the file "
                  f"names", stacklevel=2)
    try:
        return torch.load(path, map_location="cpu", weights_only=False)
    except Exception as e:  # noqa: BLE001 - any unpickling failure means the same to the user
        raise CheckpointError(f"checkpoint {path} could not be read ({type(e).__name__}: {e})") from None


class UnsafePickleError(pickle.UnpicklingError):
    """A data pickle that asks for something beyond plain data; the message names the file and the global."""


def _latin1_encode(text, encoding="latin1", errors="strict"):
    """`_codecs.encode` as pickles of bytes use it (protocol 2 writes bytes as latin-1 text), that codec only."""
    if encoding not in ("latin1", "latin-1"):
        raise UnsafePickleError(f"codec {encoding!r} is not admitted in a data pickle")
    return text.encode("latin1", errors)


def _plain_data_globals() -> dict:
    import collections

    import numpy as np

    allowed = {("collections", "OrderedDict"): collections.OrderedDict, ("_codecs", "encode"): _latin1_encode,
               ("numpy", "ndarray"): np.ndarray, ("numpy", "dtype"): np.dtype}
    for builtins in ("builtins", "__builtin__"):  # Python 2 pickles spell the module __builtin__
        for t in (set, frozenset, bytearray, complex, slice, range, bool, int, float, str, bytes, list, tuple, dict):
            allowed[(builtins, t.__name__)] = t
    multiarray = getattr(np, "_core", None) or np.core
    for core in ("numpy.core", "numpy._core"):  # numpy 1.x / 2.x spellings
        allowed[(f"{core}.multiarray", "_reconstruct")] = multiarray.multiarray._reconstruct
        allowed[(f"{core}.multiarray", "scalar")] = multiarray.multiarray.scalar
        allowed[(f"{core}.numeric", "_frombuffer")] = multiarray.numeric._frombuffer  # pickle protocol 5
    return allowed


class PlainDataUnpickler(pickle.Unpickler):
    """Unpickles builtin containers and scalars, numpy arrays, dtypes and scalars; refuses any other global."""

    def __init__(self, file, path: str):
        super().__init__(file)
        self.path, self.allowed = path, _plain_data_globals()

    def find_class(self, module, name):
        found = self.allowed.get((module, name))
        if found is None:
            raise UnsafePickleError(f"{self.path} asks to load `{module}.{name}`, which plain data (containers, "
                                    f"numbers, strings, numpy arrays) never needs: refused, since unpickling it "
                                    f"could run code")
        return found


def load_pickle(path: str):
    """A data pickle (labels, scores, annotations) read without running code: UnsafePickleError if the file
    names anything beyond plain data; the usual OSError / UnpicklingError / EOFError for unreadable files."""
    with open(path, "rb") as f:
        return PlainDataUnpickler(f, path).load()


def extract_state_dict(obj, path: str = "<checkpoint>") -> dict:
    """The model weights of any supported checkpoint layout, with `module` wrapper segments removed.

    Accepts a bare state_dict (lineage torchlight), {'model': ...} (SkelSSL, MAE/MAMP),
    {'state_dict': ...} (Lightning / HYSP, whose `model.` prefix the caller can rename).
    """
    if isinstance(obj, dict) and isinstance(obj.get("model"), dict):
        obj = obj["model"]
    elif isinstance(obj, dict) and isinstance(obj.get("state_dict"), dict):
        obj = obj["state_dict"]
    if not isinstance(obj, dict) or not all(isinstance(v, torch.Tensor) for v in obj.values()):
        raise CheckpointError(f"{path} holds no state_dict (expected tensors, or a dict with 'model' / 'state_dict')")
    # DataParallel / DDP insert a `module` segment; drop whole segments only (never `submodule.`).
    return {".".join(p for p in k.split(".") if p != "module"): v for k, v in obj.items()}


def matches_prefix(key: str, prefix: str) -> bool:
    """Lineage-compatible prefix match at a boundary: `queue` matches `queue`, `queue_ptr`, `queue.x`
    but `encoder_q.fc` does not match `encoder_q.fc2`."""
    return key == prefix or key.startswith(prefix + ".") or key.startswith(prefix + "_")


@dataclass
class LoadReport:
    path: str
    loaded: list = field(default_factory=list)
    ignored: list = field(default_factory=list)
    missing: list = field(default_factory=list)
    unexpected: list = field(default_factory=list)
    reshaped: list = field(default_factory=list)

    def summary(self) -> str:
        def few(keys):
            return ", ".join(keys[:6]) + (" ..." if len(keys) > 6 else "")
        lines = [f"weights {self.path}: {len(self.loaded)} tensors loaded"]
        for name in ("ignored", "missing", "unexpected", "reshaped"):
            keys = getattr(self, name)
            if keys:
                lines.append(f"  {name} ({len(keys)}): {few(keys)}")
        return "\n".join(lines)


def load_weights(model: torch.nn.Module, path: str, ignore=(), rename=None, allow_missing=(),
                 trust: bool = False, state: dict | None = None) -> LoadReport:
    """Strictly load `path` into `model`.

    ignore: key prefixes dropped from the file before loading (lineage `ignore_weights`).
    rename: {old_prefix: new_prefix} applied to the file's keys (e.g. {'model.': ''} for Lightning).
    allow_missing: model key prefixes that may stay at their initial values (the new head).
    Anything else missing, unexpected or of the wrong shape raises CheckpointError; a 1x1-conv
    head and a linear head convert into each other (the ActCLR checkpoints use a conv head).
    trust: load a file that needs a full pickle (see load_checkpoint).
    state: the file's state_dict when the caller has read it already (it is not read again).
    """
    if state is None:
        state = extract_state_dict(load_checkpoint(path, trust=trust), path)
    report = LoadReport(path)
    renamed = {}
    for key, value in state.items():
        for old, new in (rename or {}).items():
            if key.startswith(old):
                key = new + key[len(old):]
                break
        renamed[key] = value
    own = model.state_dict()
    to_load = {}
    for key, value in renamed.items():
        if any(matches_prefix(key, p) for p in ignore):
            report.ignored.append(key)
        elif key not in own:
            report.unexpected.append(key)
        else:
            target = own[key]
            if value.shape != target.shape:
                if value.numel() == target.numel() and value.dim() in (2, 4) and target.dim() in (2, 4) \
                        and value.shape[:2] == target.shape[:2]:
                    value = value.reshape(target.shape)  # Conv2d(d, k, 1) <-> Linear(d, k)
                    report.reshaped.append(key)
                else:
                    raise CheckpointError(f"{path}: `{key}` has shape {tuple(value.shape)} in the file but "
                                          f"{tuple(target.shape)} in the model; is it a checkpoint of another "
                                          f"architecture or config (hidden sizes, num_class)?")
            to_load[key] = value
    report.loaded = list(to_load)
    report.missing = [k for k in own if k not in to_load]
    bad_missing = [k for k in report.missing if not any(matches_prefix(k, p) for p in allow_missing)]
    if report.unexpected or bad_missing:
        hint = ("the file belongs to another method or architecture, or `ignore_weights` misses them"
                if report.unexpected else "they would silently stay randomly initialised")
        raise CheckpointError(
            f"{path} does not fit {type(model).__name__}: "
            + (f"{len(bad_missing)} model tensors are missing from the file ({', '.join(bad_missing[:5])}"
               f"{' ...' if len(bad_missing) > 5 else ''}); " if bad_missing else "")
            + (f"{len(report.unexpected)} tensors in the file have no place in the model "
               f"({', '.join(report.unexpected[:5])}{' ...' if len(report.unexpected) > 5 else ''}); "
               if report.unexpected else "")
            + f"{hint}. Add prefixes to `ignore_weights` (file side) or check the model config.")
    model.load_state_dict(to_load, strict=False)
    return report
