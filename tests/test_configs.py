"""Every shipped config loads, names only known keys and builds-compatible classes, without data.

Which configs: every `*.yaml` under config/ except files whose name starts with `_` (those are
`base:` files, only meaningful through the configs that include them).

Which processor checks a config (`processor_for`): the one its header command names, else its path
(`pretext` or `pretrain` -> `pretrain_skeletonclr`, `linear` -> `linear_evaluation`, `knn` -> `knn`,
`finetune` -> `finetune_evaluation`). Convention for the dataset configs (config/ntu60, config/ntu120): the
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
from conftest import assert_data_paths
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
NTU_CONFIGS = [p for p in CONFIGS if p.split(os.sep)[1] in ("ntu60", "ntu120") and "skeletonclr" in p]
STARS_CONFIGS = [p for p in CONFIGS if p.split(os.sep)[1] in ("ntu60", "ntu120")
                 and any(m in os.path.basename(p) for m in ("stars", "mamp", "clrtuning"))]
COMMAND = re.compile(r"python main\.py (\S+) --config (\S+)")

# name -> (path pattern, processor); the first match wins
RULES = [("skelemixclr_pretrain", "pretrain_skeletonclr_multi_swapv2"),
         ("clrtuning", "pretrain_clrtuning"), ("pretext_mamp", "pretrain_mamp"), ("mamp_pretrain", "pretrain_mamp"),
         ("pretext", "pretrain_skeletonclr"), ("pretrain", "pretrain_skeletonclr"), ("linear", "linear_evaluation"),
         ("knn", "knn"), ("finetune", "finetune_evaluation"), ("semi", "finetune_evaluation")]


def processor_for(path: str) -> str:
    """The processor of the header's command line when it names this file, else by the path's RULES."""
    command = COMMAND.search(header(path))
    if command and command.group(2) == path.replace(os.sep, "/"):
        return command.group(1)
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

    feeders = [(cfg["train_feeder"], "train_feeder_args"), (cfg["test_feeder"], "test_feeder_args")]
    if cfg.get("knn_interval", 0) > 0:
        feeders += [(cfg["knn_feeder"] or "feeder.ntu_feeder.Feeder_single", f"knn_{p}_feeder_args")
                    for p in ("train", "test")]
    for feeder_name, key in feeders:
        if feeder_name is None:
            continue
        feeder = import_class(feeder_name)
        check_kwargs(feeder.__init__, cfg[key], key)
        needed = {"data_path", "label_path"} & set(feeder.__init__.__code__.co_varnames)  # npz: data_path only
        assert needed <= set(cfg[key]), f"{path}: {key} needs {sorted(needed)}"
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
    assert_data_paths(cfg, f"{dataset}_frame50/{bench}", path)

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
    demos = re.findall(r"method_demo (\w+) (\w+) (\d+) (\w+) ;;", text)
    assert {m for m, *_ in demos} == {"aimclr", "crossclr", "caca", "skelemixclr", "asar", "hysp"}
    for method, pretrain, frames, evaluation in demos:  # the method demos build their config paths
        assert pretrain in PROCESSORS and evaluation in PROCESSORS, (pretrain, evaluation)
        for part in ("pretrain", "linear", "knn"):
            path = os.path.join(ROOT, "config", "demo", f"{method}_{part}.yaml")
            assert os.path.isfile(path), path
            assert f"frame{frames}/" in open(path).read() or part != "pretrain", (path, frames)
    for ds in ("ntu60", "ntu120"):  # the NTU sections build their paths from these names
        for fam in ("pretext/pretext", "linear_eval/linear_eval", "knn/knn"):
            assert os.path.isfile(os.path.join(ROOT, "config", ds, f"{fam}_skeletonclr_xsub_joint.yaml"))


@pytest.mark.parametrize("path", STARS_CONFIGS)
def test_stars_and_mamp_configs_hold_the_published_values(path):
    name = processor_for(path)
    command = COMMAND.search(header(path))
    assert command and command.groups() == (name, path.replace(os.sep, "/")), f"{path}: header command"
    _, cfg = resolved(path)
    dataset, family, filename = path.split(os.sep)[1:]
    bench = re.search(r"_(xsub|xview|xset)", filename).group(1)
    npz = {"ntu60": "./data/ntu/NTU60_", "ntu120": "./data/ntu120/NTU120_"}[dataset] + \
        {"xsub": "XSub", "xview": "XView", "xset": "XSet"}[bench] + ".npz"
    if filename.startswith("fewshot_"):  # NTU60's encoder on NTU120's novel classes
        npz = "./data/ntu120/NTU120_XSub.npz"
        assert cfg["train_feeder_args"]["class_range"] == cfg["test_feeder_args"]["class_range"] == [60, 120]
    args = cfg["model_args"]
    assert (args["dim_feat"], args["depth"], args["num_heads"], args["num_frames"], args["t_patch_size"]) == \
        (256, 8, 8, 120, 4)
    assert cfg["train_feeder_args"]["data_path"] == npz
    if name == "pretrain_mamp":
        assert (args["decoder_depth"], args["motion_aware_tau"], args["mask_ratio"]) == \
            ((3, 0.8) if dataset == "ntu60" else (5, 0.75)) + (0.9,)
        assert (cfg["optimizer"], cfg["betas"], cfg["weight_decay"], cfg["base_lr"], cfg["min_lr"], cfg["scheduler"],
                cfg["warm_up_epoch"], cfg["num_epoch"], cfg["batch_size"]) == \
            ("AdamW", [0.9, 0.95], 0.05, 1e-3, 5e-4, "cosine", 20, 400, 128)
        assert cfg["train_feeder_args"]["p_interval"] == [0.5, 1] and cfg["train_feeder_args"]["random_rot"]
    elif name == "pretrain_clrtuning":
        second = filename.endswith("_second.yaml")
        assert args["third_stage"] is not second
        assert (cfg["optimizer"], cfg["betas"], cfg["weight_decay"], cfg["base_lr"], cfg["scheduler"],
                cfg["clip_grad_per_tensor"], cfg["batch_size"], cfg["num_epoch"]) == \
            ("AdamW", [0.9, 0.95], 0.01, 1e-3, "constant", 3.0, 128, 20 if second else 10)
        if not second:
            assert args["layer_decay"] == (0.45 if dataset == "ntu60" else 0.40)
        assert (args["queue_size"], args["Temperature"], args["hidden_dim"], args["feature_dim"]) == \
            (32768, 0.07, 4096, 256)
        assert cfg["train_feeder_args"]["p_interval"] == [1.0] and cfg["knn_k"] == [10, 20, 40]
        for part in ("train", "test"):
            assert cfg[f"knn_{part}_feeder_args"]["data_path"] == npz
        if filename.endswith("_third.yaml"):  # continues the second-stage run of the same benchmark
            _, prev = resolved(path.replace("_third.yaml", "_second.yaml"))
            assert cfg["weights"] == prev["work_dir"] + "/best_epoch.pt" and not cfg["rename_weights"]
        else:
            assert cfg["weights"] == f"./work_dir/{dataset}_{bench}/mamp/pretext/latest.pt"
            assert cfg["rename_weights"] == {"": "encoder_student."}
    else:
        assert cfg["weights"] == f"./work_dir/{dataset}_{bench}/stars/third/best_epoch.pt"  # STARS' kNN-selected
        assert cfg["test_feeder_args"]["data_path"] == npz and cfg["test_feeder_args"]["p_interval"] == [0.95]
        assert args["num_classes"] == {"ntu60": 60, "ntu120": 120}[dataset]
        if name == "linear_evaluation":
            assert (cfg["head_norm"], cfg["base_lr"], cfg["weight_decay"], cfg["scheduler"], cfg["num_epoch"],
                    cfg["batch_size"], args["protocol"]) == (True, 0.1, 0.0, "cosine", 100, 256, "linprobe")
        elif name == "knn":
            assert cfg["knn_k"][0] == 1 and cfg["knn_weighting"] == "none"
        else:
            assert (args["protocol"], args["layer_decay"], args["drop_path_rate"], cfg["base_lr"], cfg["min_lr"],
                    cfg["weight_decay"], cfg["warm_up_epoch"], cfg["label_smoothing"], cfg["batch_size"]) == \
                ("finetune", 0.8, 0.3, 3e-4, 1e-5, 0.05, 5, 0.1, 48)
            if family == "semi":
                assert cfg["label_fraction"] == (0.01 if filename.startswith("semi1_") else 0.1)


def test_pku_part2_stars_configs():
    """PKU-MMD part II: STARS' lr 1e-4 in both steps, layer decay 0.35, 51 classes, MAMP decoder 5 blocks."""
    folder = os.path.join("config", "pku_part2")
    _, mamp = resolved(os.path.join(folder, "pretext", "pretext_mamp_xsub.yaml"))
    assert mamp["model_args"]["decoder_depth"] == 5 and mamp["model_args"]["motion_aware_tau"] == 0.8
    _, second = resolved(os.path.join(folder, "pretext", "clrtuning_xsub_second.yaml"))
    _, third = resolved(os.path.join(folder, "pretext", "clrtuning_xsub_third.yaml"))
    assert (second["base_lr"], second["num_epoch"], second["model_args"]["third_stage"]) == (1e-4, 20, False)
    assert (third["base_lr"], third["num_epoch"], third["model_args"]["layer_decay"]) == (1e-4, 10, 0.35)
    assert third["weights"] == second["work_dir"] + "/best_epoch.pt"
    for fam, name in (("linear_eval", "linear_eval"), ("knn", "knn"), ("finetune_eval", "finetune_eval")):
        _, cfg = resolved(os.path.join(folder, fam, f"{name}_stars_xsub.yaml"))
        assert cfg["model_args"]["num_classes"] == 51 and cfg["test_feeder_args"]["data_path"].endswith("PKUv2_XSub.npz")
