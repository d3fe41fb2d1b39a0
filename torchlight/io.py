"""Atomic writes and checkpoint / weight loading that never falls back silently to random init."""
from __future__ import annotations

import errno
import json
import os
import pickle
import tempfile
from dataclasses import dataclass, field

import torch


class CheckpointError(RuntimeError):
    """A checkpoint that cannot be used; the message names the file and what to do."""


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


def atomic_save(obj, path: str):
    atomic_write(path, lambda f: torch.save(obj, f))


def atomic_write_text(path: str, text: str):
    atomic_write(path, lambda f: f.write(text), mode="w")


def atomic_write_json(path: str, obj):
    atomic_write_text(path, json.dumps(obj, indent=2, sort_keys=False) + "\n")


def atomic_pickle(path: str, obj):
    atomic_write(path, lambda f: pickle.dump(obj, f))


def load_checkpoint(path: str):
    """torch.load on CPU with a clear error for a missing, truncated or foreign file."""
    if not path or not os.path.isfile(path):
        raise CheckpointError(f"checkpoint not found: {path}")
    if os.path.getsize(path) == 0:
        raise CheckpointError(f"checkpoint {path} is empty (0 bytes): an interrupted copy? Use an earlier one.")
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as e:
        if "weights_only" not in str(e):
            raise CheckpointError(f"checkpoint {path} is corrupt or truncated ({e}); use an earlier one") from None
        # Lightning checkpoints and old full pickles hold non-tensor objects.
        pass
    except Exception as e:  # noqa: BLE001 - torch raises IndexError, struct.error, ... on garbage
        raise CheckpointError(f"checkpoint {path} is corrupt or truncated ({type(e).__name__}: {e}); "
                              f"use an earlier one") from None
    try:
        return torch.load(path, map_location="cpu", weights_only=False)
    except Exception as e:  # noqa: BLE001 - any unpickling failure means the same to the user
        raise CheckpointError(f"checkpoint {path} could not be read ({type(e).__name__}: {e})") from None


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


def load_weights(model: torch.nn.Module, path: str, ignore=(), rename=None, allow_missing=()) -> LoadReport:
    """Strictly load `path` into `model`.

    ignore: key prefixes dropped from the file before loading (lineage `ignore_weights`).
    rename: {old_prefix: new_prefix} applied to the file's keys (e.g. {'model.': ''} for Lightning).
    allow_missing: model key prefixes that may stay at their initial values (the new head).
    Anything else missing, unexpected or of the wrong shape raises CheckpointError; a 1x1-conv
    head and a linear head convert into each other (the ActCLR checkpoints use a conv head).
    """
    state = extract_state_dict(load_checkpoint(path), path)
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
