"""SkelSSL command line: `python main.py <processor> --config x.yaml [--dotted.key value ...]`.

Multi-GPU / multi-node: `torchrun --nproc_per_node=N main.py <processor> --config x.yaml`.
"""
from __future__ import annotations

import shlex
import sys

from processor import PROCESSORS, get_processor
from torchlight.config import load_yaml, parse_overrides, set_dotted
from torchlight.errors import RUN_ERRORS, ConfigError

USAGE = "usage: python main.py <processor> --config path.yaml [--key value] [--section.key value] ..."


def help_text() -> str:
    width = max(len(n) for n in PROCESSORS)
    lines = [USAGE, "", "processors:"]
    lines += [f"  {name:<{width}}  {desc}" for name, (_, desc, _) in PROCESSORS.items()]
    lines += ["", "Every config key can be overridden on the command line, nested ones with dots:",
              "  python main.py linear_evaluation --config c.yaml --base_lr 1.0 --model_args.num_class 10"]
    return "\n".join(lines)


def build_config(processor_cls, implied: dict, argv: list) -> dict:
    overrides = parse_overrides(argv)
    config_path = next((v for k, v in overrides if k == "config"), None)
    if config_path is None:
        raise ConfigError("missing --config path.yaml\n" + USAGE)
    defaults = processor_cls.defaults()
    cfg = {**implied, **load_yaml(str(config_path))}
    cfg["config"] = str(config_path)
    for key, value in overrides:
        if key != "config":
            set_dotted(cfg, key, value, defaults)
    return cfg


def main(argv=None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if not argv or argv[0] in ("-h", "--help", "help"):
        print(help_text())
        return 0
    name, rest = argv[0], argv[1:]
    try:
        processor_cls, implied = get_processor(name)
        cfg = build_config(processor_cls, implied, rest)
        command = "python main.py " + " ".join(shlex.quote(a) for a in argv)
        processor_cls(cfg, name=name, command=command).run()
    except RUN_ERRORS as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    except OSError as e:  # disk full, unwritable file: the message names the file; checkpoints are atomic
        print(f"error: {e}. The last complete checkpoint in work_dir is intact: fix the cause and rerun the same "
              f"command to resume.", file=sys.stderr)
        return 3
    return 0


def cli():
    """The `skelssl` console script (pyproject.toml): the same as `python main.py`."""
    sys.exit(main())


if __name__ == "__main__":
    cli()
