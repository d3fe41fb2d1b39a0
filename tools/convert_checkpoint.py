"""Upstream checkpoints -> a tensors-only SkelSSL weights file, optionally just the encoder.

    python tools/convert_checkpoint.py mamp_ntu60_xsub.pth pretrained_weights/mamp_ntu60_xsub.pt
    python tools/convert_checkpoint.py last_epoch.pt stars_ntu60_xsub_encoder.pt --encoder_only
    python tools/convert_checkpoint.py epoch-300.ckpt hysp.pt  [--drop target_]   (HYSP: `model.` stripped)
    python tools/convert_checkpoint.py crossclr_3views.pt crossclr_motion.pt --stream motion   (one stream)

Every loader here already reads the upstream layouts as they are (`weights:` points at them, without
running code: torchlight.io.load_checkpoint), so this tool is for what loading cannot do: a file that
names other objects (a class of a package you lack, or anything a full pickle would have to run) is
read *inertly*: every such object becomes an empty stand-in that records its arguments, nothing the file
names is imported or called, and only the tensors are kept (the report lists the stand-ins; `--trust`
uses a full pickle instead). Also: renaming keys once instead of in every config, keeping only the
encoder an evaluation needs, and a report of what the file holds. Recognised layouts:
- `skelssl`: this project's checkpoints ({model, optimizer, ..., config}).
- `mamp`: MAE-style {model, optimizer, epoch, scaler, args} (MAMP stage 1).
- `lightning`: {state_dict, pytorch-lightning_version | global_step, ...} (HYSP); its `model.` prefix is
  stripped when every key has it and no --rename is given, and the run's stream / hyper / curriculum
  settings from `hyper_parameters['cfg']` are recorded in `converted_from`.
- `stars`: a flat state_dict whose encoder is under `encoder_student.` (STARS stage 2).
- `lineage`: a flat state_dict of the torchlight lineage (SkeletonCLR, AimCLR, CrosSCLR, ActCLR,
  3s-CACA, SkeleMixCLR, ASAR): `encoder_q.` / per-stream encoders.
Output: {"model": state_dict, "converted_from": {...}}, written atomically; `module.` segments are
dropped. `--encoder_only` keeps the evaluation encoder's keys (renamed as the evaluation configs do:
`encoder_student.` -> ``, MAMP without decoder / mask token, lineage `encoder_q.*` without the
projector), so it loads with no `rename_weights` / `ignore_weights`.
"""
from __future__ import annotations

import argparse
import os
import pickle
import sys
import types


import torch  # noqa: E402

from feeder.streams import STREAMS  # noqa: E402
from torchlight.io import CheckpointError, atomic_save, extract_state_dict, load_checkpoint  # noqa: E402

class InertObject:
    """What an inert load makes of any object the file names beyond tensors and plain data: it records the
    arguments, state, items and appended values it is given, and runs nothing."""

    def __new__(cls, *args, **kwargs):
        obj = object.__new__(cls)
        obj.args, obj.items, obj.values, obj.state = args, {}, [], None
        return obj

    def __init__(self, *args, **kwargs):
        pass

    def __setstate__(self, state):
        self.state = state

    def __setitem__(self, key, value):
        self.items[key] = value

    def append(self, value):
        self.values.append(value)

    def extend(self, values):
        self.values.extend(values)


def inert_pickle_module(stand_ins: list):
    """A pickle module for torch.load whose unpickler resolves torch's weights-only globals (tensors,
    storages, containers) and plain numpy data, and makes every other global an InertObject subclass."""
    from torch import _weights_only_unpickler

    from torchlight.io import _plain_data_globals

    real = dict(_weights_only_unpickler._get_allowed_globals())
    real.update({f"{m}.{n}": obj for (m, n), obj in _plain_data_globals().items()})

    class Unpickler(pickle.Unpickler):
        def find_class(self, module, name):
            found = real.get(f"{module}.{name}")
            if found is not None:
                return found
            stand_ins.append(f"{module}.{name}")
            return type(name, (InertObject,), {"__module__": f"inert.{module}"})

    module = types.ModuleType("inert_pickle")
    module.Unpickler, module.Pickler = Unpickler, pickle.Pickler
    module.load = lambda f, **kw: Unpickler(f, **kw).load()
    module.__dict__.update({k: getattr(pickle, k) for k in ("UnpicklingError", "HIGHEST_PROTOCOL")})
    return module


def plain(obj):
    """The loaded structure with stand-ins replaced by the data they hold: the items a dict subclass was
    given, or its pickled state when that is a dict; None when they hold neither."""
    if isinstance(obj, InertObject):
        obj = obj.items or (obj.state if isinstance(obj.state, dict) else None)
    if isinstance(obj, dict):
        return {k: plain(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return type(obj)(plain(v) for v in obj)
    return obj


def load_inert(path: str) -> tuple:
    """(content, stand-in names) of a checkpoint read without importing or calling what it names."""
    stand_ins: list = []
    try:
        obj = torch.load(path, map_location="cpu", weights_only=False, pickle_module=inert_pickle_module(stand_ins))
    except Exception as e:  # noqa: BLE001 - any failure means the file cannot be read this way
        raise CheckpointError(f"{path} could not be read inertly ({type(e).__name__}: {e}); if you trust it, "
                              f"convert with --trust") from None
    return plain(obj), sorted(set(stand_ins))


def read_checkpoint(path: str, trust: bool = False) -> tuple:
    """(content, stand-in names): the safe load; a refused file inertly, or with a full pickle if `trust`."""
    try:
        return load_checkpoint(path), []
    except CheckpointError as e:
        if "was refused" not in str(e):
            raise
        if trust:
            return load_checkpoint(path, trust=True), []
        return load_inert(path)


# what an evaluation encoder keeps, per layout: (keep prefixes, rename {old: new}, drop prefixes)
ENCODER = {
    "mamp": ((), {}, ("decoder", "mask_token")),
    "stars": (("encoder_student.",), {"encoder_student.": ""}, ()),
    "lineage": (("encoder_q.",), {}, ("encoder_q.fc",)),
    "skelssl": ((), {}, ()),
    "lightning": (("online_encoder.",), {}, ()),  # HYSP: the evaluation keeps online_encoder.*
}


def detect(obj) -> str:
    if isinstance(obj, dict) and "state_dict" in obj and ("pytorch-lightning_version" in obj or "global_step" in obj):
        return "lightning"
    if isinstance(obj, dict) and isinstance(obj.get("model"), dict):
        return "skelssl" if "config" in obj else "mamp"
    if isinstance(obj, dict) and obj and all(isinstance(v, torch.Tensor) for v in obj.values()):
        return "stars" if any(".encoder_student." in f".{k}" for k in obj) else "lineage"
    raise CheckpointError("not a checkpoint layout this tool knows (expected a state_dict, {'model': ...} or a "
                          "Lightning {'state_dict': ...})")


def rename_keys(state: dict, rename: dict) -> dict:
    out = {}
    for key, value in state.items():
        for old, new in rename.items():
            if key.startswith(old):
                key = new + key[len(old):]
                break
        if key in out:
            raise CheckpointError(f"renaming makes two tensors `{key}`: check --rename")
        out[key] = value
    return out


def one_stream(state: dict, stream: str) -> dict:
    """The tensors of one stream of a multi-stream model, named as the single-stream model names them.

    A top-level module or buffer named `<name>_<stream>` (3s-CACA's `online_backbone_motion`, CrosSCLR's
    `encoder_q_motion`, `queue_motion`) becomes `<name>`; those of the other streams are left out. CrosSCLR
    keeps its joint stream unsuffixed (`encoder_q`): for `joint` those stay, for another stream they go.
    """
    if stream not in STREAMS:
        raise CheckpointError(f"--stream {stream!r}: one of {', '.join(STREAMS)}")

    def split(key):  # (top-level name without its stream suffix, that stream or None), rest of the key
        top, dot, rest = key.partition(".")
        for s in STREAMS:
            if top.endswith("_" + s):
                return top[: -len(s) - 1], s, dot + rest
        return top, None, dot + rest

    parsed = {k: split(k) for k in state}
    tops = {k.partition(".")[0] for k in state}
    per_stream = {top for top, s, _ in parsed.values() if s is not None}
    if not per_stream:
        raise CheckpointError("--stream: no per-stream tensors (`<name>_joint|motion|bone`) in this checkpoint")
    out = {}
    for key, (top, s, rest) in parsed.items():
        shared = s is None and top not in per_stream
        crossclr_joint = s is None and stream == "joint" and f"{top}_joint" not in tops
        if s == stream or shared or crossclr_joint:
            out[top + rest] = state[key]
    return out


def convert(path: str, encoder_only: bool = False, rename=None, drop=(), stream=None, trust: bool = False) -> tuple:
    """(state_dict, info) of an upstream checkpoint."""
    obj, stand_ins = read_checkpoint(path, trust)
    kind = detect(obj)
    state = extract_state_dict(obj, path)
    state = {k: v.detach().clone().contiguous() for k, v in state.items()}
    if kind == "lightning" and not rename and state and all(k.startswith("model.") for k in state):
        rename = {"model.": ""}  # HYSP's LightningModule holds the network as `self.model`
    if stream:
        state = one_stream(state, stream)
    if rename:
        state = rename_keys(state, rename)
    state = {k: v for k, v in state.items() if not any(k.startswith(d) for d in drop)}
    if encoder_only:
        keep, ren, drop_enc = ENCODER[kind]
        if keep:
            state = {k: v for k, v in state.items() if any(k.startswith(p) for p in keep)}
        state = {k: v for k, v in rename_keys(state, ren).items() if not any(k.startswith(d) for d in drop_enc)}
        if not state:
            raise CheckpointError(f"{path}: no encoder tensors left (layout `{kind}`); check --rename / --drop")
    info = {"source": os.path.abspath(path), "layout": kind, "encoder_only": encoder_only, "stream": stream,
            "tensors": len(state), "parameters": int(sum(v.numel() for v in state.values()))}
    if stand_ins:
        info["inert_objects"] = stand_ins
    if isinstance(obj, dict):
        for key in ("epoch", "global_step"):
            if isinstance(obj.get(key), int):
                info[key] = obj[key]
    if kind == "lightning":
        info.update(lightning_summary(obj))
    return state, info


def lightning_summary(obj: dict) -> dict:
    """The settings of a Lightning checkpoint's `hyper_parameters` (HYSP: {'cfg': Namespace}) that say what
    was trained, as plain values, so the converted file records them without pickled objects."""
    hp = obj.get("hyper_parameters") or {}
    cfg = hp.get("cfg", hp) if isinstance(hp, dict) else hp
    cfg = vars(cfg) if hasattr(cfg, "__dict__") and not isinstance(cfg, dict) else cfg
    if not isinstance(cfg, dict):
        return {}
    out = {}
    for key in ("model", "stream", "hyper", "curriculum", "initial_hyper_epoch", "final_hyper_epoch", "num_epoch",
                "protocol", "precision"):
        value = cfg.get(key)
        if isinstance(value, (str, int, float, bool)):
            out[f"upstream_{key}"] = value
    return out


def parse_rename(items) -> dict:
    out = {}
    for item in items or []:
        if "=" not in item:
            raise SystemExit(f"error: --rename {item!r}: use OLD=NEW (NEW may be empty)")
        old, new = item.split("=", 1)
        out[old] = new
    return out


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("src")
    p.add_argument("dst")
    p.add_argument("--encoder_only", action="store_true", help="keep only the evaluation encoder's tensors")
    p.add_argument("--rename", nargs="*", help="key prefix renames OLD=NEW, applied first")
    p.add_argument("--drop", nargs="*", default=[], help="key prefixes to leave out")
    p.add_argument("--trust", action="store_true",
                   help="read a file the safe loader refuses with a full pickle (runs whatever code it names) "
                        "instead of inertly; only for files you trust")
    p.add_argument("--stream", choices=STREAMS,
                   help="one stream of a multi-stream model (3s-CrosSCLR, 3s-CACA) as a single-stream checkpoint")
    args = p.parse_args(argv)
    try:
        if args.trust:
            print(f"warning: --trust: {args.src} may be read with a full pickle, which runs any code it names",
                  file=sys.stderr)
        state, info = convert(args.src, args.encoder_only, parse_rename(args.rename), tuple(args.drop), args.stream,
                              args.trust)
    except CheckpointError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    atomic_save({"model": state, "converted_from": info}, args.dst)
    torch.load(args.dst, map_location="cpu", weights_only=True)  # the point of converting: safe to load
    print(f"{args.src}: layout `{info['layout']}`, {info['tensors']} tensors, {info['parameters']:,} parameters"
          f"{' (encoder only)' if args.encoder_only else ''} -> {args.dst}")
    if info.get("inert_objects"):
        print(f"  read inertly: {', '.join(info['inert_objects'])} became stand-ins (nothing was imported or run)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
