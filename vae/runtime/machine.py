"""The machine a stage runs on: what its numbers depend on, its peak memory, and two CPU settings."""

import platform
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any

from vae.numerics import report as numerics_report

if TYPE_CHECKING:  # imported where used: check-params reads this module and needs no PyTorch
    import torch

PORTABLE_CPU = "any x86-64 with AVX2 (numerics: portable)"


def peak_memory_mib() -> float | None:
    """This process's peak resident memory, or None where the OS does not say (Windows)."""
    try:
        import resource
    except ImportError:
        return None
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return peak / 2**20 if sys.platform == "darwin" else peak / 2**10  # bytes on macOS, KiB on Linux


def cpu_model() -> str:
    """The CPU's model name (Linux's /proc/cpuinfo), or what ``platform`` knows elsewhere."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def environment(device: "torch.device", numerics: str, threads: int) -> dict[str, Any]:
    """What a run's numbers depend on besides its params and code, and the code paths that ran.

    In ``numerics: portable`` a CPU run gives the same bytes on every x86-64 CPU with AVX2 for
    the same params (``threads`` included) and torch version, so the record names no CPU model
    (it is a committed output: another teammate's CPU must not rewrite it); in ``native``, and on
    a GPU, the CPU or GPU model matters too (docs/results keeps these). ``threads``: the param
    (OpenBLAS's threads in portable mode, PyTorch's in native).
    """
    import torch

    if device.type == "cuda":
        name = torch.cuda.get_device_name(device)
    elif numerics == "portable" and platform.machine() in ("x86_64", "AMD64"):
        name = PORTABLE_CPU
    else:
        name = cpu_model()
    return {"cpu": name, "device": device.type, "threads": threads, "torch": torch.__version__,
            **numerics_report(numerics)}


def missing_bf16_feature() -> str | None:
    """The CPU feature whose absence makes bfloat16 matrix products emulated (slow), or None.

    x86 CPUs multiply bfloat16 natively with AVX512-BF16 (AMD Zen 4 and later, Intel Cooper
    Lake) or AMX (Intel Sapphire Rapids and later); Arm CPUs with the BF16 extension. None
    also where PyTorch cannot tell.
    """
    import torch

    capability = getattr(torch._C._cpu, "_get_cpu_capability", dict)()
    if capability.get("architecture") == "x86_64":
        return None if capability.get("avx512_bf16") or capability.get("amx_bf16") else "AVX512-BF16 or AMX"
    try:
        flags = Path("/proc/cpuinfo").read_text().split()
    except OSError:
        return None
    return None if platform.machine() not in ("aarch64", "arm64") or "bf16" in flags else "the Arm BF16 extension"


def flush_subnormals(enabled: bool = True) -> None:
    """Make the CPU treat subnormal floats (|x| < 1.2e-38 in float32) as zero.

    Adam's first moments of weights whose gradient is almost always zero decay by 0.9 a
    step into the subnormal range, and Intel cores take a slow path on every operation
    with a subnormal operand: the default train stage ran at half speed there (124.7 s
    against 75.4 s). Numbers that small never change a float32 result that matters
    (docs/performance.md, "Subnormal floats"); the default model stays byte-identical.
    """
    import torch

    torch.set_flush_denormal(enabled)
