"""The host facts next to every figure, the bf16 advice, and bench/device_check.py run on the CPU (its CUDA
variants need a GPU; the CPU run exercises every check it makes: placement, agreement, finiteness, DDP)."""
import json
import os
import subprocess
import sys

import torch
import yaml

from conftest import REPO_ROOT, demo_config
from torchlight.hardware import bf16_advice, cpu_flags, cpu_has_native_bf16, cpu_model, host_summary

CPUINFO = """processor\t: 0
vendor_id\t: AuthenticAMD
model name\t: AMD EPYC 9R14 96-Core Processor
flags\t\t: fpu sse2 avx2 fma avx512f avx512_bf16 avx512_vnni
"""


def test_cpu_flags_are_read_from_cpuinfo(tmp_path):
    (tmp_path / "cpuinfo").write_text(CPUINFO)
    flags = cpu_flags(str(tmp_path / "cpuinfo"))
    assert {"avx2", "avx512f", "avx512_bf16"} <= flags and "amx_bf16" not in flags
    assert cpu_has_native_bf16(flags) and not cpu_has_native_bf16({"avx2", "fma", "avx512f"})
    assert cpu_has_native_bf16({"amx_bf16", "amx_tile"})
    assert cpu_flags(str(tmp_path / "absent")) == set()
    assert cpu_model(str(tmp_path / "cpuinfo")) == "AMD EPYC 9R14 96-Core Processor"


def test_bf16_advice_follows_this_host():
    advice = bf16_advice(torch.device("cpu"), "bf16")
    assert (advice is None) == cpu_has_native_bf16()
    assert bf16_advice(torch.device("cpu"), "off") is None
    assert "fp16" in bf16_advice(torch.device("cpu"), "fp16")
    line = host_summary("cpu")
    assert torch.__version__ in line and "threads" in line and ("bf16 native" in line or "bf16 emulated" in line)


def tiny_config(data, tmp_path, name="pre.yaml", **overrides):
    cfg = demo_config("skeletonclr_pretrain.yaml", data, tmp_path / "work",
                      model_args={"hidden_channels": 8, "hidden_dim": 32, "feature_dim": 16, "queue_size": 32},
                      **overrides)
    (tmp_path / name).write_text(yaml.safe_dump(cfg))
    return str(tmp_path / name)


def run_check(tmp_path, *args):
    out = tmp_path / "device_check.json"
    proc = subprocess.run([sys.executable, os.path.join(REPO_ROOT, "bench", "device_check.py"), "--device", "cpu",
                           "--batch", "4", "--steps", "1", "--out", str(out), *args],
                          capture_output=True, text=True, timeout=600, cwd=REPO_ROOT)
    return proc, (json.loads(out.read_text()) if out.exists() else None)


def test_device_check_on_the_cpu(nw_ucla_small, tmp_path):
    config = tiny_config(nw_ucla_small, tmp_path)
    proc, result = run_check(tmp_path, "--configs", config, "--variants", "fp32", "bf16", "nchw", "--ddp", "2")
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-2000:]
    rows = {r["variant"]: r for r in result["rows"]}
    assert set(rows) == {"fp32", "bf16", "nchw", "ddp x2"} and all(r["ok"] for r in rows.values())
    assert rows["fp32"]["feature_rel_err"] == 0.0  # the reference itself
    assert rows["nchw"]["feature_rel_err"] < 1e-5  # memory format only
    assert 0 < rows["bf16"]["feature_rel_err"] < 5e-2  # bf16 really ran, close to fp32
    assert all(len(rows[v]["losses"]) == 2 and rows[v]["samples_per_s"] > 0 for v in ("fp32", "bf16", "nchw"))
    assert rows["ddp x2"]["world_size"] == 2 and len(rows["ddp x2"]["losses"]) == 1
    assert result["host"] == host_summary("cpu") and "host: " in proc.stdout


def test_device_check_fails_a_variant_that_diverges(nw_ucla_small, tmp_path):
    config = tiny_config(nw_ucla_small, tmp_path, base_lr=1e30)  # the first step overflows every weight
    proc, result = run_check(tmp_path, "--configs", config, "--variants", "fp32")
    assert proc.returncode == 1
    (row,) = result["rows"]
    assert not row["ok"] and any("non-finite" in p for p in row["problems"]), row
    assert "FAIL" in proc.stdout


def test_device_check_reports_a_config_that_cannot_run_and_goes_on(nw_ucla_small, tmp_path):
    broken = tiny_config(nw_ucla_small, tmp_path, name="broken.yaml",
                         train_feeder_args={"data_path": str(tmp_path / "absent.npy")})
    good = tiny_config(nw_ucla_small, tmp_path)
    proc, result = run_check(tmp_path, "--configs", broken, good, "--variants", "fp32")
    assert proc.returncode == 1
    first, second = result["rows"]
    assert not first["ok"] and "the CPU reference failed" in first["problems"][0] and "absent.npy" in first["problems"][0]
    assert second["ok"] and second["config"] == good
