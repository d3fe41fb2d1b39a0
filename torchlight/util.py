"""Import by dotted name and build objects from config dicts, checking the keys first."""
from __future__ import annotations

import importlib
import inspect

from .config import ConfigError, closest


def import_class(name: str):
    """'net.st_gcn.Model' -> the class; a clear error for a wrong module or attribute."""
    if not isinstance(name, str) or "." not in name:
        raise ConfigError(f"expected a dotted class path like `net.st_gcn.Model`, got {name!r}")
    module_name, attr = name.rsplit(".", 1)
    try:
        module = importlib.import_module(module_name)
    except ModuleNotFoundError as e:
        if e.name and module_name.startswith(e.name):
            raise ConfigError(f"cannot import `{name}`: no module named `{e.name}`") from None
        raise
    if not hasattr(module, attr):
        public = [a for a in dir(module) if not a.startswith("_")]
        raise ConfigError(f"cannot import `{name}`: module `{module_name}` has no `{attr}`{closest(attr, public)}")
    return getattr(module, attr)


def check_kwargs(fn, kwargs: dict, where: str):
    """Fail on keys `fn` does not accept, naming the config section and the closest valid key."""
    params = inspect.signature(fn).parameters
    if any(p.kind == p.VAR_KEYWORD for p in params.values()):
        return
    valid = [n for n, p in params.items() if n != "self" and p.kind != p.VAR_POSITIONAL]
    for key in kwargs:
        if key not in valid:
            raise ConfigError(f"`{where}` has unknown key `{key}`{closest(key, valid)}; "
                              f"{getattr(fn, '__qualname__', fn)} accepts {valid}")


def instantiate(class_path: str, kwargs: dict | None, where: str, **extra):
    cls = import_class(class_path)
    kwargs = dict(kwargs or {})
    kwargs.update(extra)
    check_kwargs(cls.__init__ if inspect.isclass(cls) else cls, kwargs, where)
    return cls(**kwargs)
