"""YAML configs: `base:` inheritance, typed `--dotted.key value` overrides, did-you-mean errors."""
from __future__ import annotations

import copy
import difflib
import os

import yaml

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


from .errors import ConfigError  # noqa: F401 - imported from here by older code


def closest(name: str, candidates) -> str:
    """' (did you mean `x`?)' for the nearest candidate, or ''."""
    match = difflib.get_close_matches(str(name), [str(c) for c in candidates], n=1, cutoff=0.5)
    return f" (did you mean `{match[0]}`?)" if match else ""


def resolve_path(path: str | None) -> str | None:
    """Config paths are relative to the project root, wherever the command runs from."""
    if path is None or path == "" or os.path.isabs(path):
        return path
    return os.path.normpath(os.path.join(ROOT, path))


def deep_merge(base: dict, override: dict) -> dict:
    out = copy.deepcopy(base)
    for key, value in override.items():
        if isinstance(value, dict) and isinstance(out.get(key), dict):
            out[key] = deep_merge(out[key], value)
        else:
            out[key] = copy.deepcopy(value)
    return out


def load_yaml(path: str, _seen: tuple = ()) -> dict:
    """Load a YAML config, resolving `base:` (a path or list of paths, relative to this file)."""
    path = os.path.abspath(path)
    if path in _seen:
        raise ConfigError(f"config {path}: `base:` chain loops back to itself ({' -> '.join(_seen)})")
    if not os.path.isfile(path):
        raise ConfigError(f"config file not found: {path}")
    try:
        with open(path) as f:
            cfg = yaml.safe_load(f) or {}
    except yaml.YAMLError as e:
        raise ConfigError(f"config {path} is not valid YAML: {e}") from None
    if not isinstance(cfg, dict):
        raise ConfigError(f"config {path}: the top level must be a mapping of keys, got {type(cfg).__name__}")
    bases = cfg.pop("base", None) or []
    if isinstance(bases, str):
        bases = [bases]
    merged: dict = {}
    for b in bases:
        b_path = b if os.path.isabs(b) else os.path.join(os.path.dirname(path), b)
        merged = deep_merge(merged, load_yaml(b_path, _seen + (path,)))
    return deep_merge(merged, cfg)


def coerce(value, default, key: str):
    """Cast `value` (from YAML or the command line) to the type of `default`."""
    if default is None or value is None:
        return value
    if isinstance(default, bool):
        if isinstance(value, bool):
            return value
        if isinstance(value, str) and value.lower() in ("true", "false", "yes", "no", "1", "0"):
            return value.lower() in ("true", "yes", "1")
        if isinstance(value, int) and value in (0, 1):
            return bool(value)
    elif isinstance(default, float):
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            return float(value)
        if isinstance(value, str):
            try:
                return float(value)  # YAML reads `1e-4` (no dot) as a string
            except ValueError:
                pass
    elif isinstance(default, int):
        if isinstance(value, int) and not isinstance(value, bool):
            return value
        if isinstance(value, float) and value.is_integer():
            return int(value)
        if isinstance(value, str):
            try:
                return int(value)
            except ValueError:
                pass
    elif isinstance(default, str):
        if isinstance(value, bool):  # YAML's true/false for a key like `cache_features: auto|true|false`
            return str(value).lower()
        if isinstance(value, (str, int, float)):
            return str(value)
    elif isinstance(default, (list, tuple)):
        if isinstance(value, (list, tuple)):
            return list(value)
        return [value]  # `--step 80` means [80]
    elif isinstance(default, dict):
        if isinstance(value, dict):
            return value
    else:
        return value
    raise ConfigError(f"config key `{key}`: {value!r} is not a valid {type(default).__name__} "
                      f"(default {default!r})")


def parse_overrides(args: list) -> list:
    """['--a.b', '3', '--c=x'] -> [('a.b', 3), ('c', 'x')], values parsed as YAML scalars/lists."""
    pairs, i = [], 0
    while i < len(args):
        arg = args[i]
        if not arg.startswith("--"):
            raise ConfigError(f"unexpected command-line argument {arg!r}: overrides look like --key value")
        key = arg[2:]
        if "=" in key:
            key, raw = key.split("=", 1)
            i += 1
        elif i + 1 < len(args) and not args[i + 1].startswith("--"):
            raw = args[i + 1]
            i += 2
        else:
            raw = "true"  # a bare flag
            i += 1
        try:
            value = yaml.safe_load(raw)
        except yaml.YAMLError:
            value = raw
        pairs.append((key.replace("-", "_"), value))
    return pairs


def set_dotted(cfg: dict, key: str, value, defaults: dict):
    """Apply one `a.b.c=value` override; unknown top-level keys fail with a suggestion."""
    parts = key.split(".")
    if parts[0] not in cfg and parts[0] not in defaults:
        raise ConfigError(f"unknown config key `{parts[0]}`{closest(parts[0], list(defaults) + list(cfg))}")
    node = cfg
    for depth, p in enumerate(parts[:-1]):
        if node.get(p) is None:
            node[p] = {}
        if not isinstance(node[p], dict):
            raise ConfigError(f"`{'.'.join(parts[:depth + 1])}` is not a mapping, cannot set `{key}`")
        node = node[p]
    leaf = parts[-1]
    default = node.get(leaf) if len(parts) > 1 else cfg.get(leaf, defaults.get(leaf))
    node[leaf] = coerce(value, default, key)


def validate(cfg: dict, defaults: dict, aliases: dict | None = None, source: str = "config") -> dict:
    """Check top-level keys against `defaults`, coerce their types, fill in the defaults."""
    aliases = aliases or {}
    cfg = dict(cfg)
    for alias, target in aliases.items():
        if alias in cfg:
            value = cfg.pop(alias)
            if target in cfg and cfg[target] != value:
                raise ConfigError(f"{source}: `{alias}` ({value!r}) and `{target}` ({cfg[target]!r}) are the same "
                                  f"setting with different values; keep one")
            cfg[target] = value
    unknown = [k for k in cfg if k not in defaults]
    if unknown:
        k = unknown[0]
        raise ConfigError(f"{source}: unknown config key `{k}`{closest(k, defaults)}")
    out = copy.deepcopy(defaults)
    for k, v in cfg.items():
        if isinstance(defaults[k], dict) and isinstance(v, dict):
            out[k] = deep_merge(defaults[k], v)  # `wandb: {enable: true}` keeps the other defaults
        else:
            out[k] = coerce(v, defaults[k], k)
    return out


def dump(cfg: dict) -> str:
    return yaml.safe_dump(cfg, sort_keys=False, default_flow_style=None)
