"""What the machine can do, for logs, benchmarks and the bf16 advice: speed figures mean little without the
CPU flags next to them (an AVX2 host and an AVX-512 / bf16 host differ about 2x, and bf16 autocast is the
largest lever on the second while it slows the first down)."""
from __future__ import annotations

import os
import platform

import torch

# the flags that change which kernels torch's CPU backend runs
SPEED_FLAGS = ("avx2", "fma", "avx512f", "avx512_vnni", "avx512_bf16", "amx_bf16", "amx_tile")
BF16_FLAGS = ("avx512_bf16", "amx_bf16")


def cpuinfo_field(name: str, cpuinfo: str = "/proc/cpuinfo") -> str | None:
    """The value of the first `name : value` line of /proc/cpuinfo (the first processor's), or None."""
    try:
        with open(cpuinfo) as f:
            for line in f:
                if line.startswith(name):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return None


def cpu_flags(cpuinfo: str = "/proc/cpuinfo") -> set:
    """The CPU feature flags of the first processor in /proc/cpuinfo (an empty set where there is none)."""
    return set((cpuinfo_field("flags", cpuinfo) or "").split())


def cpu_model(cpuinfo: str = "/proc/cpuinfo") -> str:
    return cpuinfo_field("model name", cpuinfo) or platform.processor() or platform.machine()


def cpu_has_native_bf16(flags: set | None = None) -> bool:
    """True where bf16 matrix products run in hardware (AVX512-BF16 or AMX): there `amp: bf16` speeds a CPU
    step up (2.3x measured on an avx512_bf16 host); elsewhere oneDNN emulates bf16 and it is slower than fp32."""
    flags = cpu_flags() if flags is None else flags
    return any(f in flags for f in BF16_FLAGS)


def host_summary(device: torch.device | str = "cpu") -> str:
    """One line naming what produced a figure: CPU model and speed flags (or the GPU), threads, torch build."""
    device = torch.device(device)
    if device.type == "cuda":
        props = torch.cuda.get_device_properties(device)
        where = f"{props.name} ({props.total_memory / 2 ** 30:.0f} GiB, CUDA {torch.version.cuda})"
    else:
        flags = cpu_flags()
        have = [f for f in SPEED_FLAGS if f in flags]
        where = (f"{cpu_model()}, {os.cpu_count()} cores, flags {' '.join(have) or 'unknown'}, "
                 f"bf16 {'native' if cpu_has_native_bf16(flags) else 'emulated'}")
    return f"{where}; torch {torch.__version__}, {torch.get_num_threads()} threads"


def bf16_advice(device: torch.device, amp: str) -> str | None:
    """A warning when the config's AMP choice fights the CPU: bf16 without bf16 hardware. None otherwise."""
    if device.type == "cpu" and amp == "bf16" and not cpu_has_native_bf16():
        return ("amp: bf16 on a CPU without avx512_bf16 / AMX: bf16 is emulated here and slower than fp32; "
                "`amp: off` is faster on this host")
    if device.type == "cpu" and amp == "fp16":
        return "amp: fp16 on a CPU: autocast runs few CPU kernels in fp16; `amp: bf16` (with bf16 hardware) or off"
    return None
