"""Upstream YAML -> a SkelSSL config, with a report of everything that could not be mapped.

    python tools/convert_config.py upstream.yaml [--out ours.yaml] [--processor NAME] [--gpus N]

Two upstream styles are read:
- the torchlight lineage (SkeletonCLR / CrosSCLR / AimCLR / ActCLR / 3s-CACA / SkeleMixCLR / ASAR /
  STARS stage 2): the same top-level keys as here; class paths are mapped, method settings the
  lineage kept at the top level (`topk`, `mining_epoch`, `third_stage`, ...) move into `model_args`
  when the model takes them, STARS' memory feeders become the kNN monitor's;
- MAMP's argparse YAMLs (`feeder`, `epochs`, `lr`, `warmup_epochs`, `smoothing`, ...): the settings
  its scripts hard-code (AdamW betas, cosine schedule, the probe's BatchNorm) come from this project's
  MAMP base config, which the output names with `base:`.
- HYSP's Lightning YAMLs (`model: hysp`, `precision`, `hyper`, `curriculum`, `protocol`, `encoder_lr`,
  RiemannianSGD): precision 16 -> amp fp16, protocol linear / semi / supervised -> linear_evaluation /
  semi_evaluation (label_fraction 0.1) / finetune_evaluation, top-level HYSP settings into `model_args`.
Batch sizes here are global: with `--gpus N` a per-GPU batch (MAMP, STARS: torchrun) is multiplied by N;
the lineage's DataParallel batch already is global. YAML 1.1 quirks are fixed on the way (`1e-4` read
as a string, `None` as the string "None"). The output is validated like `main.py` validates a config;
keys without a counterpart are listed in its header and on the console, never silently dropped.
"""
from __future__ import annotations

import argparse
import os
import re
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

import yaml  # noqa: E402

# upstream class path -> ours (identical paths need no entry)
CLASS_MAP = {
    "net.nnclr.SkeletonNNCLR": "net.stars.STARS",
    "model_mamp.transformer.Transformer": "net.mamp.MAMP",
    "model.transformer.Transformer": "net.transformer.Transformer",
    "feeder.feeder_ntu.Feeder": "feeder.npz_feeder.Feeder",
    "feeder.feeder_ntu_semi.Feeder": "feeder.npz_feeder.Feeder",
    "net.crossclr_3views.CrosSCLR": "net.crossclr.CrosSCLR3Views",
    "net.caca_three_modal.CACA_3views": "net.caca.CACA3Views",
    "net.caca_single_modal.CACA": "net.caca.CACA",
    "net.skeletonclr_multi_swapv2.SkeletonCLR": "net.skelemixclr.SkeleMixCLR",
    "net.skeletonclr_multi_swap.SkeletonCLR": "net.skelemixclr.SkeleMixCLRv1",
    "net.st_gcn_swap.Model": "net.st_gcn.Model",
    "feeder.ntu_feeder.Feeder_multi": "feeder.multi_feeder.Feeder_multi",
    "hysp": "net.hysp.HYSP",  # HYSP names its models (`model: hysp`, `encoder: stgcn`)
}
HYSP_ENCODERS = {"stgcn": "net.st_gcn.Model"}
# SkeleMixCLR's encoders (net/st_gcn_swap.py, and its net/st_gcn.py that evaluation builds) take their
# adjacency from the 2s-AGCN graph whatever graph_args say: such configs get `strategy: agcn`. Its evaluation
# configs name the lineage's classes, so they are told apart by what only SkeleMixCLR writes.
SKELEMIX_CLASSES = {"net.skeletonclr_multi_swapv2.SkeletonCLR", "net.skeletonclr_multi_swap.SkeletonCLR",
                    "net.st_gcn_swap.Model"}
SKELEMIX_MARKS = ("agcn_graph", "skelemixclr", "skeclr_multi_swap", "encoder_q.Ap")
# per model: upstream model_args renamed here, and ones this class implies (dropped without a report)
ARG_RENAMES = {"net.stars.STARS": {"predictor_hidden_dim": "hidden_dim"}}
IMPLIED_ARGS = {"net.stars.STARS": {"base_encoder", "pretrain"}}
# lineage-style models whose upstream processor hard-coded settings: they come from our base config
LINEAGE_BASE = {"net.stars.STARS": "_stars_clrtuning.yaml"}
# model class -> processor of a pretraining config
PRETRAIN_PROCESSOR = {"net.stars.STARS": "pretrain_clrtuning", "net.mamp.MAMP": "pretrain_mamp",
                      "net.skeletonclr.SkeletonCLR": "pretrain_skeletonclr", "net.aimclr.AimCLR": "pretrain_aimclr",
                      "net.crossclr.CrosSCLR": "pretrain_crossclr", "net.crossclr.CrosSCLR3Views":
                      "pretrain_crossclr_3views", "net.asar.ASAR": "pretrain_asar", "net.hysp.HYSP": "pretrain_hysp",
                      "net.caca.CACA": "pretrain_skeleton", "net.caca.CACA3Views": "pretrain_skeleton_3views",
                      "net.skelemixclr.SkeleMixCLR": "pretrain_skeletonclr_multi_swapv2",
                      "net.skelemixclr.SkeleMixCLRv1": "pretrain_skeletonclr_multi_swap"}
# The upstream behaviours a converted config keeps (README "Paper configs and upstream quirks"): model_args of a
# pretraining model and top-level keys, so a converted run computes what the upstream code computed.
_LINEAGE = {"target_init": "independent"}
UPSTREAM_MODEL_ARGS = {
    "net.skeletonclr.SkeletonCLR": _LINEAGE, "net.aimclr.AimCLR": _LINEAGE, "net.skelemixclr.SkeleMixCLR": _LINEAGE,
    "net.skelemixclr.SkeleMixCLRv1": _LINEAGE, "net.caca.CACA": _LINEAGE, "net.caca.CACA3Views": _LINEAGE,
    "net.crossclr.CrosSCLR": {**_LINEAGE, "legacy_crossclr_momentum": True, "legacy_shared_projector": True},
    "net.crossclr.CrosSCLR3Views": {**_LINEAGE, "legacy_crossclr_momentum": True, "legacy_shared_projector": True},
    "net.asar.ASAR": {**_LINEAGE, "legacy_queue_candidates": True, "legacy_enqueue_all_candidates": True},
    "net.hysp.HYSP": {"ema_update": "before_backward"},
    "net.stars.STARS": {"legacy_view1_no_grad": True, "second_pass": True},
}
UPSTREAM_KEYS = {"net.stars.STARS": {"save_best_by": "knn_top1"}}
UPSTREAM_LINEAGE_KEYS = {"replay_augmentation": True, "sync_bn": True}  # the lineage's pretraining processors
# keys with no effect here: (upstream key, why)
DROPPED = {"KNN_show": "upstream printed the kNN monitor at these epochs; here it is logged every knn_interval",
           "knn_classes": "the class count comes from the data",
           "knn_monitor": "the monitor runs when knn_interval > 0", "loss": "unused by the upstream processor",
           "phase": None, "print_log": None, "save_log": None, "pavi_log": None, "debug": None}
# per model: upstream top-level keys its processor parsed but never read (reported with the reason), and
# upstream feeders replaced by ours with the reason
UNUSED_KEYS = {"net.asar.ASAR": {"topk": "parsed by upstream's pretrain_asar, never used",
                                 "mining_epoch": "parsed by upstream's pretrain_asar, never used"}}
FEEDER_SWAPS = {"net.asar.ASAR": {"feeder.ntu_feeder.Feeder_triple": (
    "feeder.ntu_feeder.Feeder_dual", "upstream's pretrain_asar discarded Feeder_triple's extreme view")}}
# MAMP feeder flags that must be off (they select code paths MAMP's published configs never use)
MAMP_OFF_FLAGS = ("debug", "random_choose", "random_shift", "random_move", "normalization", "vel", "bone")
MAMP_MODEL_ZEROS = ("drop_rate", "attn_drop_rate")
NUMBER = re.compile(r"^[-+]?(\d+\.?\d*|\.\d+)([eE][-+]?\d+)?$")


def fix_yaml11(value):
    """'1e-4' -> 1e-4, 'None' -> None, recursively (PyYAML reads both as strings)."""
    if isinstance(value, dict):
        return {k: fix_yaml11(v) for k, v in value.items()}
    if isinstance(value, list):
        return [fix_yaml11(v) for v in value]
    if isinstance(value, str):
        if value == "None":
            return None
        if NUMBER.match(value):
            return float(value) if any(c in value for c in ".eE") else int(value)
    return value


def constructor_args(class_path: str):
    """The keyword arguments a class accepts (None if it takes **kwargs or cannot be imported)."""
    import inspect

    from torchlight.util import import_class
    try:
        params = inspect.signature(import_class(class_path).__init__).parameters
    except Exception:  # noqa: BLE001 - an unknown class is reported by the validation below
        return None
    if any(p.kind == p.VAR_KEYWORD for p in params.values()):
        return None
    return set(params) - {"self"}


class Conversion:
    def __init__(self, src: dict, gpus: int):
        self.src, self.gpus = fix_yaml11(src), gpus
        self.out, self.notes, self.unmapped = {}, [], []

    def note(self, text: str):
        self.notes.append(text)

    def lost(self, key: str, value, why: str | None = None):
        self.unmapped.append(f"{key}: {value!r}" + (f" ({why})" if why else ""))

    # --- model ------------------------------------------------------------------------------------
    def uses_agcn_graph(self, model: str, args: dict) -> bool:
        """Whether the upstream config comes from SkeleMixCLR, whose encoders build the 2s-AGCN graph."""
        if model in SKELEMIX_CLASSES or args.get("base_encoder") in SKELEMIX_CLASSES:
            return True
        text = " ".join(str(self.src.get(k, "")) for k in ("work_dir", "weights", "ignore_weights"))
        return any(mark in text for mark in SKELEMIX_MARKS)

    def map_model(self, model: str, args: dict) -> tuple:
        if self.uses_agcn_graph(model, args):
            graph = dict(args.get("graph_args") or {"layout": "ntu-rgb+d"})
            if graph.get("strategy") != "agcn":
                self.note(f"graph_args.strategy {graph.get('strategy')!r} -> 'agcn': SkeleMixCLR's encoders build "
                          f"the 2s-AGCN graph (its net/utils/ntu_rgb_d.py) whatever graph_args say")
            args["graph_args"] = {**graph, "strategy": "agcn"}
        model = CLASS_MAP.get(model, model)
        if model == "net.hysp.HYSP":  # `encoder` (pretext) / `base_encoder` (eval) name the encoder
            name = args.pop("encoder", None) or args.get("base_encoder") or "stgcn"
            if name not in HYSP_ENCODERS and "." not in name:
                self.lost("model_args.encoder", name, "HYSP ships only stgcn")
            args["base_encoder"] = HYSP_ENCODERS.get(name, name)
        if args.get("base_encoder"):
            args["base_encoder"] = CLASS_MAP.get(args["base_encoder"], args["base_encoder"])
        accepted = constructor_args(model)
        kept = {}
        for k, v in args.items():
            k = ARG_RENAMES.get(model, {}).get(k, k)
            if k in IMPLIED_ARGS.get(model, ()):
                continue
            if k == "weights" and v:  # STARS names the stage-1 weights inside model_args
                self.out["weights"] = v
                self.note(f"model_args.weights -> weights: {v}")
            elif k in ("qk_scale",) or (k in MAMP_MODEL_ZEROS and not v):
                continue  # upstream ignores qk_scale; zero dropout is the default here
            elif accepted is not None and k not in accepted:
                self.lost(f"model_args.{k}", v, f"{model} takes no such argument")
            else:
                kept[k] = v
        return model, kept, accepted

    # --- styles -----------------------------------------------------------------------------------
    def lineage(self, processor_defaults: dict, accepted):
        src = dict(self.src)
        src.pop("model", None)
        src.pop("model_args", None)
        stars = self.out["model"] == "net.stars.STARS"
        for part in ("train", "test"):
            fkey, akey = f"{part}_feeder", f"{part}_feeder_args"
            if fkey in src:
                self.out[fkey], self.out[akey] = self.map_feeder(src.pop(fkey), src.pop(akey, {}) or {}, akey)
        for part in ("train", "test"):
            fkey, akey = f"mem_{part}_feeder", f"mem_{part}_feeder_args"
            if fkey in src:
                feeder, args = self.map_feeder(src.pop(fkey), src.pop(akey, {}) or {}, f"knn_{part}_feeder_args")
                self.out["knn_feeder"], self.out[f"knn_{part}_feeder_args"] = feeder, args
        if "device" in src:
            devices = src.pop("device")
            if stars and isinstance(devices, list) and "batch_size" in src:
                self.gpus = self.gpus or len(devices)
        unused = UNUSED_KEYS.get(self.out["model"], {})
        for key, value in src.items():
            if key in unused:
                self.lost(key, value, unused[key])
            elif key in DROPPED:
                if DROPPED[key]:
                    self.lost(key, value, DROPPED[key])
            elif key == "clip_grad" and stars:
                self.out["clip_grad_per_tensor"] = value
                self.note("clip_grad -> clip_grad_per_tensor (STARS clips each gradient tensor separately)")
            elif key in processor_defaults or key == "view":
                self.out[key] = value
            elif accepted is not None and key in accepted:
                self.out.setdefault("model_args", {})[key] = value
                self.note(f"{key} -> model_args.{key}")
            else:
                self.lost(key, value, "no such setting here")
        if stars:
            if self.out.get("weight_decay") not in (None, 0.01):
                self.note(f"weight_decay {self.out['weight_decay']} -> 0.01: upstream's AdamW never received the "
                          f"config's value and ran with torch's default 0.01 (README, STARS deviations)")
            self.out["weight_decay"] = 0.01
            self.out.setdefault("betas", [0.9, 0.95])
        if stars:  # torchrun: a per-GPU batch (the lineage's DataParallel batch is global already)
            self.scale_batch()

    def scale_batch(self):
        if self.gpus and self.gpus > 1 and "batch_size" in self.out:
            self.note(f"batch_size {self.out['batch_size']} per GPU x {self.gpus} GPUs -> "
                      f"{self.out['batch_size'] * self.gpus}")
            self.out["batch_size"] *= self.gpus

    def map_feeder(self, feeder: str, args: dict, where: str) -> tuple:
        feeder = CLASS_MAP.get(feeder, feeder)
        swap = FEEDER_SWAPS.get(self.out.get("model"), {}).get(feeder)
        if swap:
            self.note(f"{feeder} -> {swap[0]}: {swap[1]}")
            feeder = swap[0]
        args = dict(args)
        if str(args.get("data_path", "")).endswith(".npz"):
            feeder = "feeder.npz_feeder.Feeder"  # the lineage feeders read .npz through this one here
            for k in ("aug_method", "label_path"):
                args.pop(k, None)
            if args.get("shear_amplitude", -1) in (-1, -1.0):
                args.pop("shear_amplitude", None)
        for flag in MAMP_OFF_FLAGS:
            if flag in args:
                value = args.pop(flag)
                if value:
                    self.lost(f"{where}.{flag}", value, "not supported (MAMP's published configs keep it off)")
        if "val_feeder_args" in where:
            where = where.replace("val_", "test_")
        accepted = constructor_args(feeder)
        for k in list(args):
            if accepted is not None and k not in accepted:
                self.lost(f"{where}.{k}", args.pop(k), f"{feeder} takes no such argument")
        return feeder, args

    def mamp(self):
        src = dict(self.src)
        feeder = src.pop("feeder", "feeder.feeder_ntu.Feeder")
        train_args = dict(src.pop("train_feeder_args", {}) or {})
        ratio = train_args.pop("data_ratio", None)
        self.out["train_feeder"], self.out["train_feeder_args"] = self.map_feeder(
            feeder, train_args, "train_feeder_args")
        if "val_feeder_args" in src:
            self.out["test_feeder"], self.out["test_feeder_args"] = self.map_feeder(
                feeder, src.pop("val_feeder_args"), "test_feeder_args")
        if ratio is not None:
            self.out["label_fraction"] = ratio
            self.note(f"data_ratio {ratio} -> label_fraction (a seeded, class-balanced subset here)")
        renames = {"epochs": "num_epoch", "warmup_epochs": "warm_up_epoch", "lr": "base_lr", "min_lr": "min_lr",
                   "weight_decay": "weight_decay", "smoothing": "label_smoothing", "batch_size": "batch_size"}
        model_keys = ("mask_ratio", "motion_aware_tau", "layer_decay")
        for key, value in src.items():
            if key in renames:
                self.out[renames[key]] = value
            elif key in model_keys:
                self.out.setdefault("model_args", {})[key] = value
            elif key == "blr":
                self.lost(key, value, "a base lr scaled by the global batch / 256 in MAMP's scripts: set base_lr")
            else:
                self.lost(key, value, "no such setting here")
        self.scale_batch()


    # --- HYSP (paolomandica/HYSP main_pretrain.py / main_eval.py YAMLs) -------------------------------
    def hysp(self, pretrain: bool) -> str:
        """Map a HYSP YAML; returns the processor. Upstream reads nested dicts as namespaces and only the
        keys its scripts name; those without a counterpart are reported."""
        src = dict(self.src)
        for key in ("model", "model_args"):
            src.pop(key, None)
        args = self.out.setdefault("model_args", {})
        for key in ("hyper", "curriculum", "initial_hyper_epoch", "final_hyper_epoch", "encoder_lr"):
            if key in src:
                args[key] = src.pop(key)
        protocol = src.pop("protocol", None)
        if pretrain:
            processor = "pretrain_hysp"
        elif protocol in ("linear", None):
            processor = "linear_evaluation"
        elif protocol == "semi":
            processor = "semi_evaluation"
            self.out["label_fraction"] = 0.1
            self.note("protocol semi -> semi_evaluation, label_fraction 0.1 (upstream's stratified sklearn resample, "
                      "subset_rule hysp, seed 123; saved to the work_dir)")
        elif protocol == "supervised":
            processor = "finetune_evaluation"
            self.note("protocol supervised -> finetune_evaluation (all labels, from the pretrained weights)")
        else:
            self.lost("protocol", protocol, "only linear, semi and supervised are evaluations here")
            processor = "linear_evaluation"
        devices = src.pop("device", None)
        n_dev = len(devices) if isinstance(devices, list) else int(devices or 1)
        if devices is not None:
            self.note(f"device {devices!r} dropped: launch with torchrun --nproc_per_node=N")
        precision = src.pop("precision", 32)
        self.out["amp"] = {16: "fp16", "16": "fp16", "16-mixed": "fp16", "bf16": "bf16", "bf16-mixed": "bf16"}.get(
            precision, "off")
        self.note(f"precision {precision} -> amp {self.out['amp']}")
        optimizer = src.pop("optimizer", "SGD")
        if optimizer in ("SGD", "RiemannianSGD"):
            self.out["optimizer"] = optimizer
            if optimizer == "RiemannianSGD":
                self.note("optimizer RiemannianSGD: torch SGD with geoopt's first momentum step (the buffer starts at "
                          "the raw gradient); the same update afterwards (no ManifoldParameter here)")
        elif optimizer in ("Adam", "AdamW"):
            self.out["optimizer"] = optimizer
        else:
            self.lost("optimizer", optimizer, "no such optimiser here (SGD, Adam, AdamW)")
        if not pretrain and optimizer != "SGD":
            self.note("upstream's evaluation always builds torch SGD (EvalLearner), whatever `optimizer` says")
            self.out["optimizer"] = "SGD"
        self.out.setdefault("momentum", 0.9)
        scheduler = src.pop("scheduler", "step")
        warmup, lr_min = src.pop("warmup_step", None), src.pop("lr_min", None)
        if scheduler == "cosine":
            self.out["scheduler"] = "cosine"
            if args.get("curriculum"):
                self.lost("scheduler", "cosine", "upstream holds the lr until final_hyper_epoch, then cosine: "
                          "no such schedule here")
            if warmup:
                self.out["warm_up_epoch"] = warmup
                self.note("warmup_step -> warm_up_epoch (upstream ramps from 0.1 x lr, here from 0)")
            if lr_min is not None:
                self.out["min_lr"] = lr_min
        else:
            self.out["scheduler"] = "step"
        for key, value in src.items():
            if key == "num_workers":
                self.out["num_worker"] = value if isinstance(value, int) else 2
            elif key == "resume_from":
                if value:
                    self.out["resume"] = value
            elif key == "weights":
                self.out["weights"] = value
                if value and str(value).endswith(".ckpt"):
                    self.out["rename_weights"] = {"model.": ""}
                    self.note("weights: a Lightning .ckpt; rename_weights {'model.': ''} strips its prefix "
                              "(or convert it once with tools/convert_checkpoint.py)")
            elif key == "val_batch_size":
                self.lost(key, value, "upstream validates the pretext loss on the test split; no such pass here")
            elif key == "eval_interval" and pretrain:
                self.lost(key, value, "upstream's pretext-loss validation interval; no such pass here")
            elif key == "wandb":
                value = dict(value or {})
                if "save_dir" in value:
                    self.lost("wandb.save_dir", value.pop("save_dir"), "wandb files go to work_dir here")
                self.out["wandb"] = {k: v for k, v in value.items() if k in ("enable", "project", "name", "group",
                                                                             "entity")}
            elif key in ("train_feeder_args", "val_feeder_args", "test_feeder_args"):
                part = "train" if key.startswith("train") else "test"
                if pretrain and part == "test":
                    self.lost(key, "...", "upstream validates the pretext loss on it; no such pass here")
                    continue
                feeder = "feeder.ntu_feeder.Feeder_double" if pretrain else "feeder.ntu_feeder.Feeder_single"
                fargs = dict(value or {})
                if "new_augs" in fargs:
                    self.lost(f"{key}.new_augs", fargs.pop("new_augs"), "upstream's scripts never read it")
                self.out[f"{part}_feeder"], self.out[f"{part}_feeder_args"] = self.map_feeder(
                    feeder, fargs, f"{part}_feeder_args")
            elif key == "batch_size" and not pretrain and n_dev > 1:
                self.out["batch_size"] = value * n_dev * n_dev
                self.note(f"batch_size {value} per GPU x {n_dev} GPUs x accumulate_grad_batches {n_dev} "
                          f"(upstream main_eval.py) -> {value * n_dev * n_dev} a step")
            elif key == "work_dir" and not pretrain and protocol:
                self.out[key] = f"{value}/{protocol}"
                self.note(f"work_dir -> {value}/{protocol} (main_eval.py appends the protocol)")
            elif key in ("work_dir", "batch_size", "test_batch_size", "num_epoch", "stream", "nesterov",
                         "weight_decay", "base_lr", "step", "log_interval", "save_interval", "eval_interval",
                         "ignore_weights", "start_epoch"):
                self.out[key] = value
            else:
                self.lost(key, value, "no such setting here")
        if self.out.get("stream") not in (None, "joint", "motion", "bone"):
            self.lost("stream", self.out.pop("stream"), "one stream per run here (joint, motion, bone); combine "
                      "runs with tools/ensemble.py")
        return processor

def mamp_base(model: str, args: dict, src: dict) -> tuple:
    """(processor, base config) of a MAMP-style file."""
    if model == "net.mamp.MAMP":
        return "pretrain_mamp", "_mamp_pretext.yaml"
    if args.get("protocol") == "linprobe":
        return "linear_evaluation", "_mamp_linear.yaml"
    return "finetune_evaluation", "_mamp_finetune.yaml"


def convert(path: str, processor: str | None = None, gpus: int = 0, out_path: str | None = None) -> tuple:
    """(config dict, processor name, notes, unmapped) of an upstream YAML."""
    from processor import get_processor

    with open(path) as f:
        src = yaml.safe_load(f) or {}
    if not isinstance(src, dict) or "model" not in src:
        raise SystemExit(f"error: {path}: not an upstream training config (no `model:` key)")
    conv = Conversion(src, gpus)
    model, model_args, accepted = conv.map_model(src["model"], dict(conv.src.get("model_args") or {}))
    conv.out["model"] = model
    mamp_style = "feeder" in conv.src or "epochs" in conv.src
    out_dir = os.path.dirname(os.path.abspath(out_path)) if out_path else os.path.join(ROOT, "config")

    def use_base(base: str):
        conv.out = {"base": os.path.relpath(os.path.join(ROOT, "config", base), out_dir), **conv.out}

    if model == "net.hysp.HYSP":
        name = conv.hysp(bool(model_args.get("pretrain", True)))
        processor = processor or name
    elif mamp_style:
        name, base = mamp_base(model, model_args, conv.src)
        use_base(base)
        processor = processor or name
        conv.mamp()
    else:
        if model in LINEAGE_BASE:
            use_base(LINEAGE_BASE[model])
        if processor is None:
            pretrain = model_args.get("pretrain", True)
            stem = os.path.basename(path)
            processor = PRETRAIN_PROCESSOR.get(model, "pretrain") if pretrain else (
                "finetune_evaluation" if "finetune" in stem else "linear_evaluation")
        cls, implied = get_processor(processor)
        conv.lineage(cls.defaults(), accepted)
    conv.out["model_args"] = {**model_args, **conv.out.get("model_args", {})}
    keep_upstream_behaviour(conv, model, processor)
    return conv.out, processor, conv.notes, conv.unmapped


def keep_upstream_behaviour(conv: Conversion, model: str, processor: str):
    """Set the keys that select upstream's behaviour where ours differs (each noted in the output's header)."""
    args = conv.out["model_args"]
    pretrain = processor.startswith("pretrain")
    wanted = dict(UPSTREAM_MODEL_ARGS.get(model, {})) if pretrain else {}
    if model == "net.asar.ASAR" and conv.out.get("batch_size") != args.get("feature_dim", 128):
        wanted.pop("legacy_queue_candidates")  # upstream's slice only runs when the batch equals feature_dim
        conv.note("legacy_queue_candidates left off: upstream's untransposed queue slice cannot run at batch "
                  f"{conv.out.get('batch_size')} with feature_dim {args.get('feature_dim', 128)}")
    top = dict(UPSTREAM_KEYS.get(model, {})) if pretrain else {}
    if pretrain and UPSTREAM_MODEL_ARGS.get(model, {}).get("target_init"):
        top.update(UPSTREAM_LINEAGE_KEYS)
    if model == "net.hysp.HYSP" and processor == "linear_evaluation":
        top["frozen_encoder"] = "train"  # upstream's frozen encoder stays in Lightning's train() mode
    if model == "net.hysp.HYSP" and processor == "semi_evaluation":
        top.update(subset_rule="hysp", subset_seed=123)
    for key, v in wanted.items():
        if args.get(key) != v:
            args[key] = v
            conv.note(f"model_args.{key}: {v!r} (what upstream computed; README \"Paper configs and upstream quirks\")")
    for key, v in top.items():
        if conv.out.get(key) != v:
            conv.out[key] = v
            conv.note(f"{key}: {v!r} (what upstream computed; README \"Paper configs and upstream quirks\")")


def validate_output(cfg: dict, processor: str, out_path: str | None):
    """Resolve `base:` and validate as main.py would (raises ConfigError with the key)."""
    import tempfile

    from processor import get_processor
    from torchlight.config import load_yaml, validate
    from torchlight.util import check_kwargs, import_class

    cls, implied = get_processor(processor)
    folder = os.path.dirname(os.path.abspath(out_path)) if out_path else os.path.join(ROOT, "config")
    with tempfile.NamedTemporaryFile("w", suffix=".yaml", dir=folder, delete=False) as f:
        yaml.safe_dump(cfg, f, sort_keys=False)
    try:
        full = {**implied, **load_yaml(f.name)}
    finally:
        os.unlink(f.name)
    full = validate(full, cls.defaults(), {"view": "stream"}, source="converted config")
    check_kwargs(import_class(full["model"]).__init__, full["model_args"], "model_args")
    return full


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("src", help="an upstream YAML")
    p.add_argument("--out", help="where to write ours (default: print it)")
    p.add_argument("--processor", help="the processor it is for (default: inferred from the model)")
    p.add_argument("--gpus", type=int, default=0,
                   help="GPUs of the upstream run, to make a per-GPU batch global (STARS: from `device`)")
    args = p.parse_args(argv)
    from torchlight.config import ConfigError

    cfg, processor, notes, unmapped = convert(args.src, args.processor, args.gpus, args.out)
    try:
        validate_output(cfg, processor, args.out)
    except ConfigError as e:
        print(f"error: the converted config does not validate: {e}", file=sys.stderr)
        return 2
    header = [f"# python main.py {processor} --config {args.out or '<this file>'}",
              f"# Converted by tools/convert_config.py from {args.src}"]
    header += [f"#   {n}" for n in notes]
    if unmapped:
        header.append("# Not mapped (no counterpart here; check they do not matter for your run):")
        header += [f"#   {u}" for u in unmapped]
    text = "\n".join(header) + "\n" + yaml.safe_dump(cfg, sort_keys=False, default_flow_style=None)
    if args.out:
        from torchlight.io import atomic_write_text
        atomic_write_text(args.out, text)
        print(f"wrote {args.out} (processor {processor})")
    else:
        print(text, end="")
    for u in unmapped:
        print(f"not mapped: {u}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
