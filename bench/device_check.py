"""Every method's training step and the evaluation steps on an accelerator, in every precision: does it run
there, is it finite, does it agree with the CPU, how fast, how much memory.

    python bench/device_check.py [--device cuda] [--steps 4] [--batch 32] [--out device_check.json]
                                 [--configs config/demo/skeletonclr_pretrain.yaml ...] [--ddp 2]

Each config (default: every method's demo pretraining on the bundled NW-UCLA data, then the SkeletonCLR
linear and fine-tune probes and STARS' semi-supervised fine-tuning; prepare the data first with
`python tools/nw_ucla_gendata.py frames --src data/nw_ucla/nw_ucla_skeletons.npz --out_folder data/nw_ucla/frame50`
and `python tools/nw_ucla_gendata.py raw --out_folder data/nw_ucla/raw`; configs whose data is absent are
skipped and listed) is built by its processor as `main.py` builds it, once
per variant: fp32, bf16 and fp16 autocast, the encoder without channels-last (`nchw`), and `compile`; on a
CPU only fp32, bf16 and nchw (`--variants` picks). Per variant it checks
  - placement: after the steps every parameter, buffer and optimiser state and the loss live on the device
    (nothing fell back to the CPU);
  - agreement: the eval-mode features (`monitor_features` / `forward_features`) of one fixed batch, from the
    same weights, against fp32 on the CPU (relative max error under 1e-3 in fp32, under 5e-2 in bf16 / fp16;
    TF32 stays off as in the configs);
  - finiteness: every step's loss;
and it times the steps after a warm-up (samples/s) and reads the peak memory (CUDA allocator, or RSS).
`--ddp N` also runs the first config's pretraining steps under torchrun with N processes (nccl on CUDA, gloo
on the CPU). The table goes to stdout, the rows to `--out` as JSON; the exit status is 1 when a row fails.
TF32, pinned memory and host syncs: the loop syncs once per step (the finiteness check, `.item()` of the
loss for the log), which this check times as part of the step.
"""
from __future__ import annotations

import argparse
import contextlib
import io
import glob
import json
import math
import os
import resource
import subprocess
import sys
import tempfile
import time

import torch

from torchlight.hardware import host_summary

REPO_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
TOLERANCE = {"fp32": 1e-3, "nchw": 1e-3, "compile": 1e-3, "bf16": 5e-2, "fp16": 5e-2}
VARIANTS = {"cuda": ("fp32", "bf16", "fp16", "nchw", "compile"), "cpu": ("fp32", "bf16", "nchw")}
# the evaluation steps: a config, or config@processor where one config serves two protocols
EVALUATIONS = ("config/demo/skeletonclr_linear.yaml", "config/demo/skeletonclr_linear.yaml@finetune_evaluation",
               "config/demo/stars_semi.yaml@finetune_evaluation")


def data_present(config: str) -> bool:
    """Whether the config's training data exists (Penn Action's, for one, is not bundled)."""
    from torchlight.config import load_yaml

    path = os.path.join(REPO_ROOT, config.split("@")[0])
    data = (load_yaml(path).get("train_feeder_args") or {}).get("data_path")
    return not data or os.path.exists(os.path.join(REPO_ROOT, data))


def default_configs() -> list:
    pretrain = sorted(glob.glob(os.path.join(REPO_ROOT, "config", "demo", "*pretrain*.yaml"))
                      + glob.glob(os.path.join(REPO_ROOT, "config", "demo", "*clrtuning*.yaml")))
    found = [os.path.relpath(p, REPO_ROOT) for p in pretrain] + list(EVALUATIONS)
    missing = [c for c in found if not data_present(c)]
    if missing:
        print(f"skipped (training data not prepared; `bash run.sh demo` prepares NW-UCLA's): {', '.join(missing)}")
    return [c for c in found if c not in missing]


def build(config: str, device: str, variant: str, batch: int):
    """The config's processor as main.py builds it (its header names the processor), on `device`."""
    from processor import get_processor
    from torchlight.config import load_yaml

    config, _, name = config.partition("@")
    path = config if os.path.isabs(config) else os.path.join(REPO_ROOT, config)
    with open(path) as f:
        header = f.read(600)
    name = name or (header.split("python main.py ", 1)[1].split()[0] if "python main.py " in header else (
        "linear_evaluation" if "linear" in os.path.basename(path) else "pretrain"))
    cls, implied = get_processor(name)
    cfg = {**implied, **load_yaml(path)}
    cfg.update(config=path, work_dir=tempfile.mkdtemp(prefix="device_check_"), progress=False, tensorboard=False,
               batch_size=batch, num_epoch=1, save_interval=-1, weights=None, resume="none", num_worker=0,
               use_gpu=device != "cpu", amp={"bf16": "bf16", "fp16": "fp16"}.get(variant, "off"),
               compile=variant == "compile", seed=0, allow_tf32=False)
    defaults = cls.defaults()
    quiet = {"knn_interval": 0, "eval_interval": -1,
             "cache_features": "false"}  # the probe's own step, not one feature pass over the data
    cfg.update({k: v for k, v in quiet.items() if k in defaults})
    proc = cls(cfg, name=name)
    if variant == "nchw":
        for m in proc.module.modules():
            if hasattr(m, "channels_last"):
                m.channels_last = False
    return proc


def features(proc, x) -> torch.Tensor:
    """Eval-mode features of one batch: what kNN, extract and the linear probe read."""
    from feeder.streams import to_stream

    model = proc.module
    was = model.training
    model.eval()
    with torch.no_grad(), proc.autocast():
        if getattr(model, "pretrain", False):
            out = model.monitor_features(to_stream(x, proc.cfg["stream"], proc.train_set.layout))
        else:
            out = model.forward_features(to_stream(x, proc.cfg["stream"], proc.train_set.layout))
    model.train(was)
    return out.float().cpu()


def step(proc, x, y, index) -> torch.Tensor:
    """One optimisation step of the processor's own loop (`train_step`); the loss tensor (on the device)."""
    return proc.train_step(x, y, index, epoch=0, step=0)["loss"]


def placement_errors(proc, loss) -> list:
    want = proc.device.type
    bad = [f"parameter {n}" for n, p in proc.module.named_parameters() if p.device.type != want]
    bad += [f"buffer {n}" for n, b in proc.module.named_buffers() if b.device.type != want]
    for state in proc.optimizer.state.values():
        bad += [f"optimizer state {k}" for k, v in state.items() if torch.is_tensor(v) and v.dim()
                and v.device.type != want]
    if loss.device.type != want:
        bad.append(f"loss on {loss.device}")
    return bad[:5]


def check(config: str, device: str, variant: str, batch: int, steps: int, data, probe, reference,
          reference_state) -> dict:
    """One variant of one config: placement, agreement with the CPU reference, finiteness, speed, memory."""
    row = {"config": config, "variant": variant, "device": device, "ok": False}
    try:
        proc = build(config, device, variant, batch)
        row["model"] = proc.cfg["model"]
        proc.module.load_state_dict(reference_state)
        x, y, index = data
        feats = features(proc, probe.to(proc.device))
        row["feature_rel_err"] = float((feats - reference).abs().max() / reference.abs().max().clamp_min(1e-12))
        sync = torch.cuda.synchronize if proc.device.type == "cuda" else (lambda: None)
        if proc.device.type == "cuda":
            torch.cuda.reset_peak_memory_stats(proc.device)
        proc.model.train()
        losses, times, loss = [], [], None
        for i in range(steps + 1):
            sync()
            t0 = time.perf_counter()
            loss = step(proc, x, y, index)
            sync()
            if i:  # the first step warms up (and compiles)
                times.append(time.perf_counter() - t0)
            losses.append(float(loss.detach().float()))
        row.update(losses=[round(v, 6) for v in losses],
                   samples_per_s=round(len(y) / sorted(times)[len(times) // 2], 1) if times else None,
                   peak_mb=round(torch.cuda.max_memory_allocated(proc.device) / 2 ** 20) if proc.device.type == "cuda"
                   else round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024))
        problems = placement_errors(proc, loss)
        if not all(math.isfinite(v) for v in losses):
            problems.append(f"non-finite loss {losses}")
        if not row["feature_rel_err"] <= TOLERANCE[variant]:
            problems.append(f"features differ from CPU fp32 by {row['feature_rel_err']:.2e} (> {TOLERANCE[variant]})")
        row["problems"] = problems
        row["ok"] = not problems
    except Exception as e:  # a variant that cannot run is a finding, not the end of the check
        row["problems"] = [f"{type(e).__name__}: {e}"[:500]]
    return row


def run_config(config: str, device: str, variants, batch: int, steps: int):
    """The CPU fp32 build gives the reference: its initial weights, one batch and that batch's features;
    every variant starts from those weights and steps on that batch."""
    with contextlib.redirect_stdout(io.StringIO()):  # the processors' config logs: only the table is printed
        try:
            ref = build(config, "cpu", "fp32", batch)
            data = next(iter(ref.train_loader))
            state = {k: v.clone() for k, v in ref.module.state_dict().items()}
            probe = data[0]
            if getattr(ref, "views", None) is not None and ref.views.augments:  # what the model sees (a crop)
                probe = ref.views(probe, torch.Generator().manual_seed(0))[ref.views.names[0]]
            reference = features(ref, probe)
            del ref
        except Exception as e:  # the config cannot even run on the CPU: every variant of it fails, the check goes on
            reference, failure = None, f"the CPU reference failed: {type(e).__name__}: {e}"[:500]
        for variant in variants:
            if reference is None:
                row = {"config": config, "variant": variant, "device": device, "ok": False, "problems": [failure]}
            else:
                row = check(config, device, variant, batch, steps, data, probe, reference, state)
            with contextlib.redirect_stdout(sys.__stdout__):
                show(row)
            yield row


def show(row: dict):
    err = row.get("feature_rel_err")
    print(f"{row['config']:<44} {row['variant']:<8} {'ok' if row['ok'] else 'FAIL':<4} "
          f"{row.get('samples_per_s') or '-':>8} samples/s {row.get('peak_mb', '-'):>7} MB peak  "
          f"features vs CPU fp32 {'-' if err is None else f'{err:.1e}'}  {'; '.join(row.get('problems', []))[:300]}",
          flush=True)


def ddp_rows(config: str, nproc: int, batch: int, steps: int) -> dict:
    """The pretraining steps under torchrun (nccl on CUDA, gloo on the CPU): finite losses on every rank."""
    out = subprocess.run([sys.executable, "-m", "torch.distributed.run", f"--nproc_per_node={nproc}",
                          f"--master_port={free_port()}", os.path.abspath(__file__),
                          "--ddp_child", config, "--batch", str(batch), "--steps", str(steps)],
                         capture_output=True, text=True, cwd=REPO_ROOT, timeout=900)
    row = {"config": config, "variant": f"ddp x{nproc}", "problems": []}
    lines = [ln for ln in out.stdout.splitlines() if ln.startswith("{")]
    if lines:
        row.update(json.loads(lines[-1]))
    if out.returncode:
        row["problems"].append(out.stderr[-1500:])
    row["ok"] = not row["problems"]
    return row


def free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def ddp_child(config: str, batch: int, steps: int):
    device = "cuda" if torch.cuda.is_available() else "cpu"
    proc = build(config, device, "fp32", batch)
    x, y, index = next(iter(proc.train_loader))
    losses = [float(step(proc, x, y, index).detach()) for _ in range(steps)]
    if proc.rank == 0:
        print(json.dumps({"device": str(proc.device), "world_size": proc.world_size, "losses": losses,
                          "problems": [] if all(map(math.isfinite, losses)) else [f"non-finite loss {losses}"]}))


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu", choices=("cuda", "cpu"))
    p.add_argument("--configs", nargs="*", default=None)
    p.add_argument("--variants", nargs="*", default=None, help="default: " + "; ".join(
        f"{k}: {' '.join(v)}" for k, v in VARIANTS.items()))
    p.add_argument("--batch", type=int, default=32)
    p.add_argument("--steps", type=int, default=4)
    p.add_argument("--ddp", type=int, default=torch.cuda.device_count() if torch.cuda.device_count() > 1 else 0)
    p.add_argument("--out", default="device_check.json")
    p.add_argument("--ddp_child", help=argparse.SUPPRESS)
    args = p.parse_args()
    if args.ddp_child:
        return ddp_child(args.ddp_child, args.batch, args.steps)
    configs = args.configs or default_configs()
    print(f"host: {host_summary(args.device)}")
    rows = []
    for config in configs:
        rows += run_config(config, args.device, args.variants or VARIANTS[args.device], args.batch, args.steps)
    if args.ddp > 1:
        rows.append(ddp_rows(configs[0], args.ddp, args.batch, args.steps))
        show(rows[-1])
    result = {"host": host_summary(args.device), "torch": torch.__version__, "batch": args.batch,
              "steps": args.steps, "rows": rows}
    with open(args.out + ".tmp", "w") as f:
        json.dump(result, f, indent=1)
    os.replace(args.out + ".tmp", args.out)
    failed = [r for r in rows if not r["ok"]]
    print(f"{len(rows) - len(failed)} of {len(rows)} rows ok; rows in {args.out}")
    sys.exit(1 if failed else 0)


if __name__ == "__main__":
    main()
