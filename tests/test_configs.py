"""Every shipped config loads, names only known keys and builds-compatible classes, without data.

Which configs: every `*.yaml` under config/ except files whose name starts with `_` (those are
`base:` files, only meaningful through the configs that include them).

Which processor checks a config: its path decides (`processor_for`): a path containing `pretext` or
`pretrain` -> `pretrain_skeletonclr`, `linear` -> `linear_evaluation`, `knn` -> `knn`, `finetune`
-> `finetune_evaluation`. Convention for the dataset configs (config/ntu60, config/ntu120): the
first comment lines give the exact command, `python main.py <processor> --config <this file's
path>`; the test checks that the command names this file and the same processor, so the comment
cannot drift from the file. (The NW-UCLA demo configs are run by run.sh and carry no command line.)

Checks, as `python main.py <processor> --config <file>` would make them before touching data:
top-level keys against the processor's defaults (`torchlight.config.validate`, aliases such as
`view` -> `stream`), choice-valued keys, `model` importable and `model_args` accepted by its
constructor (and `graph_args` by the graph), the feeders importable and their args accepted. No
data file is opened (the NTU data are not here). The dataset configs also get consistency checks:
num_class matches the dataset, data paths match the benchmark in the file name, evaluation weights
come from the matching pretext config's last checkpoint.
"""
import glob
import os
import re
import subprocess
import types

import pytest
import yaml

import main
import processor.base
from net.graph import Graph
from processor import PROCESSORS, get_processor
from torchlight.config import ConfigError, load_yaml, validate
from torchlight.util import check_kwargs, import_class

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
CONFIG_DIR = os.path.join(ROOT, "config")
CONFIGS = sorted(os.path.relpath(p, ROOT) for p in glob.glob(os.path.join(CONFIG_DIR, "**", "*.yaml"), recursive=True)
                 if not os.path.basename(p).startswith("_"))
NTU_CONFIGS = [p for p in CONFIGS if p.split(os.sep)[1] in ("ntu60", "ntu120")]
COMMAND = re.compile(r"python main\.py (\S+) --config (\S+)")

# name -> (path pattern, processor); the first match wins
RULES = [("pretext", "pretrain_skeletonclr"), ("pretrain", "pretrain_skeletonclr"), ("linear", "linear_evaluation"),
         ("knn", "knn"), ("finetune", "finetune_evaluation")]


def processor_for(path: str) -> str:
    for pattern, name in RULES:
        if pattern in path:
            return name
    raise AssertionError(f"{path}: cannot tell its processor from its path; name it after one of "
                         f"{[p for p, _ in RULES]}")


def resolved(path: str):
    """(processor class, validated config) as main.py builds them, without running anything."""
    cls, implied = get_processor(processor_for(path))
    cfg = {**implied, **load_yaml(os.path.join(ROOT, path)), "config": path}
    return cls, validate(cfg, cls.defaults(), processor.base.ALIASES, source=path)


def header(path: str) -> str:
    lines = []
    with open(os.path.join(ROOT, path)) as f:
        for line in f:
            if not line.startswith("#"):
                break
            lines.append(line)
    return "".join(lines)


def test_config_inventory():
    """The dataset families and their counts: 6 pretext, 6 linear, 2 kNN, 2 finetune per dataset."""
    expected = set()
    for ds, benches in (("ntu60", ("xsub", "xview")), ("ntu120", ("xsub", "xset"))):
        for b in benches:
            for s in ("joint", "motion", "bone"):
                expected.add(f"config/{ds}/pretext/pretext_skeletonclr_{b}_{s}.yaml")
                expected.add(f"config/{ds}/linear_eval/linear_eval_skeletonclr_{b}_{s}.yaml")
            expected.add(f"config/{ds}/knn/knn_skeletonclr_{b}_joint.yaml")
            expected.add(f"config/{ds}/finetune_eval/finetune_eval_skeletonclr_{b}_joint.yaml")
    assert len(expected) == 32
    assert expected <= {p.replace(os.sep, "/") for p in CONFIGS}, sorted(expected - set(CONFIGS))


@pytest.mark.parametrize("path", CONFIGS)
def test_config_is_valid(path):
    cls, cfg = resolved(path)
    processor.base.Processor._check_choices(types.SimpleNamespace(cfg=cfg))

    model_cls = import_class(cfg["model"])
    check_kwargs(model_cls.__init__, cfg["model_args"], "model_args")
    args = cfg["model_args"]
    if "base_encoder" in args:
        import_class(args["base_encoder"])
    if args.get("graph_args"):
        check_kwargs(Graph.__init__, args["graph_args"], "model_args.graph_args")
        Graph(**args["graph_args"])  # the layout name and strategy are known (no data involved)

    for key in ("train_feeder", "test_feeder"):
        if cfg[key] is None:
            continue
        feeder = import_class(cfg[key])
        check_kwargs(feeder.__init__, cfg[f"{key}_args"], f"{key}_args")
        assert {"data_path", "label_path"} <= set(cfg[f"{key}_args"]), f"{path}: {key}_args needs both paths"
    if issubclass(cls, import_class("processor.evaluation.Evaluation")):
        assert cfg["test_feeder"], f"{path}: evaluation needs test_feeder"


@pytest.mark.parametrize("path", NTU_CONFIGS)
def test_dataset_config_consistency(path):
    name = processor_for(path)
    command = COMMAND.search(header(path))
    assert command, f"{path}: the first comment lines must give `python main.py <processor> --config {path}`"
    assert command.groups() == (name, path.replace(os.sep, "/")), f"{path}: header command {command.group(0)!r}"

    _, cfg = resolved(path)
    dataset, family, filename = path.split(os.sep)[1:]
    bench, stream = re.fullmatch(r".*_skeletonclr_(\w+)_(joint|motion|bone)\.yaml", filename).groups()
    assert cfg["model_args"]["num_class"] == {"ntu60": 60, "ntu120": 120}[dataset]
    assert cfg["stream"] == stream
    assert cfg["work_dir"] == f"./work_dir/{dataset}_{bench}/skeletonclr_{stream}/{family}"
    for key in ("train_feeder_args", "test_feeder_args"):
        split = "train" if key.startswith("train") else "val"
        if cfg[key]:
            assert cfg[key]["data_path"] == f"./data/{dataset}_frame50/{bench}/{split}_position.npy"
            assert cfg[key]["label_path"] == f"./data/{dataset}_frame50/{bench}/{split}_label.pkl"

    if family == "pretext":
        args = cfg["model_args"]
        assert (args["pretrain"], args["feature_dim"], args["queue_size"], args["momentum"], args["Temperature"],
                args["mlp"], args["hidden_channels"], args["hidden_dim"], args["dropout"]) == \
               (True, 128, 32768, 0.999, 0.07, True, 16, 256, 0.5)
        assert cfg["train_feeder"] == "feeder.ntu_feeder.Feeder_dual"
        assert (cfg["train_feeder_args"]["shear_amplitude"], cfg["train_feeder_args"]["temperal_padding_ratio"]) == (0.5, 6)
        assert (cfg["base_lr"], cfg["momentum"], cfg["nesterov"], cfg["weight_decay"], cfg["step"], cfg["num_epoch"],
                cfg["batch_size"], cfg["save_interval"], cfg["eval_interval"]) == \
               (0.1, 0.9, False, 1e-4, [250], 300, 128, 5, -1)
        assert cfg["batch_size"] % 4 == 0 and args["queue_size"] % cfg["batch_size"] == 0  # torchrun x4, enqueue
        return

    # evaluations: no augmentation, weights = the matching pretext run's last checkpoint
    assert not cfg["model_args"]["pretrain"]
    for key in ("train_feeder", "test_feeder"):
        assert cfg[key] == "feeder.ntu_feeder.Feeder_single"
        assert (cfg[f"{key}_args"]["shear_amplitude"], cfg[f"{key}_args"]["temperal_padding_ratio"]) == (-1, -1)
    assert cfg["ignore_weights"] == ["encoder_q.fc", "encoder_k", "queue"]
    pretext_path = os.path.join("config", dataset, "pretext", f"pretext_skeletonclr_{bench}_{stream}.yaml")
    _, pretext = resolved(pretext_path)
    assert cfg["weights"] == f"{pretext['work_dir']}/epoch{pretext['num_epoch']}_model.pt"
    if family == "linear_eval":
        assert (cfg["protocol"], cfg["base_lr"], cfg["momentum"], cfg["nesterov"], cfg["weight_decay"], cfg["step"],
                cfg["num_epoch"], cfg["batch_size"], cfg["eval_interval"], cfg["save_interval"]) == \
               ("linear", 3.0, 0.9, False, 0.0, [80], 100, 128, 5, -1)
    elif family == "finetune_eval":
        assert (cfg["protocol"], cfg["base_lr"], cfg["momentum"], cfg["nesterov"], cfg["weight_decay"], cfg["step"],
                cfg["num_epoch"], cfg["batch_size"]) == ("finetune", 0.1, 0.9, True, 1e-4, [10, 30, 50], 80, 128)
    else:
        assert (cfg["knn_k"], cfg["knn_t"], cfg["knn_weighting"]) == ([1, 20], 0.1, "exp")


def copy_with_absolute_base(src: str, dst_dir) -> str:
    """Copy a config into dst_dir, its `base:` made absolute so the copy still resolves."""
    with open(os.path.join(ROOT, src)) as f:
        text = f.read()
    base = yaml.safe_load(text)["base"]
    text = text.replace(f"base: {base}", f"base: {os.path.normpath(os.path.join(ROOT, os.path.dirname(src), base))}")
    dst = os.path.join(dst_dir, os.path.basename(src))
    with open(dst, "w") as f:
        f.write(text)
    return dst


LINEAR = os.path.join("config", "ntu60", "linear_eval", "linear_eval_skeletonclr_xsub_joint.yaml")


def test_copied_config_resolves_like_the_original(tmp_path):
    copy = copy_with_absolute_base(LINEAR, tmp_path)
    assert load_yaml(copy) == load_yaml(os.path.join(ROOT, LINEAR))


def test_mistyped_key_names_key_and_closest(tmp_path):
    copy = copy_with_absolute_base(LINEAR, tmp_path)
    with open(copy, "a") as f:
        f.write("weight_decy: 0.0\n")
    cls, implied = get_processor("linear_evaluation")
    cfg = main.build_config(cls, implied, ["--config", copy])
    with pytest.raises(ConfigError, match=r"unknown config key `weight_decy` \(did you mean `weight_decay`\?\)"):
        validate(cfg, cls.defaults(), processor.base.ALIASES, source=copy)
    # the processor refuses it before opening any data
    with pytest.raises(ConfigError, match="weight_decay"):
        cls(cfg, name="linear_evaluation")


def test_mistyped_model_arg_and_override_name_closest(tmp_path):
    copy = copy_with_absolute_base(os.path.join("config", "ntu60", "pretext", "pretext_skeletonclr_xsub_joint.yaml"),
                                   tmp_path)
    with open(copy) as f:
        text = f.read()
    with open(copy, "w") as f:
        f.write(text.replace("  num_class: 60\n", "  num_class: 60\n  Temprature: 0.2\n"))
    cls, implied = get_processor("pretrain_skeletonclr")
    cfg = validate(main.build_config(cls, implied, ["--config", copy]), cls.defaults(), processor.base.ALIASES)
    with pytest.raises(ConfigError, match=r"`model_args` has unknown key `Temprature` \(did you mean `Temperature`\?\)"):
        check_kwargs(import_class(cfg["model"]).__init__, cfg["model_args"], "model_args")
    with pytest.raises(ConfigError, match=r"unknown config key `base_lrr` \(did you mean `base_lr`\?\)"):
        main.build_config(cls, implied, ["--config", copy, "--base_lrr", "0.2"])


def test_view_alias_is_accepted():
    """Lineage SkeletonCLR YAMLs say `view:` (spec 8.1); it means `stream`."""
    cls, implied = get_processor("pretrain_skeletonclr")
    cfg = load_yaml(os.path.join(ROOT, "config", "ntu60", "pretext", "pretext_skeletonclr_xsub_motion.yaml"))
    cfg["view"] = cfg.pop("stream")
    assert validate(cfg, cls.defaults(), processor.base.ALIASES)["stream"] == "motion"


RUN_SH = os.path.join(ROOT, "run.sh")


def test_run_sh_syntax_sections_and_paths():
    subprocess.run(["bash", "-n", RUN_SH], check=True)
    bad = subprocess.run(["bash", RUN_SH, "no_such_section"], capture_output=True, text=True)
    assert bad.returncode == 1
    for section in ("demo", "nwucla_full", "ntu60", "ntu120"):
        assert section in bad.stderr
    with open(RUN_SH) as f:
        text = f.read()
    for name in re.findall(r"main\.py (\w+)", text):
        assert name in PROCESSORS, name
    for cfg in re.findall(r"--config (config/\S+\.yaml)", text):
        assert os.path.isfile(os.path.join(ROOT, cfg)), cfg
    for ds in ("ntu60", "ntu120"):  # the NTU sections build their paths from these names
        for fam in ("pretext/pretext", "linear_eval/linear_eval", "knn/knn"):
            assert os.path.isfile(os.path.join(ROOT, "config", ds, f"{fam}_skeletonclr_xsub_joint.yaml"))
