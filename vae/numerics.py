"""Which code paths the numerical libraries take: the same bytes on every x86-64 CPU, or each CPU's fastest.

A float32 sum rounds differently when its terms are added in another order, and the libraries
under PyTorch and numpy choose the order by CPU: MKL's matrix products run other kernels on an
Intel Xeon (AVX-512) than on an AMD EPYC, PyTorch's own kernels pick their vector width, and
numpy's OpenBLAS picks a kernel per CPU model. Twenty epochs amplify the last-bit differences
into a different model (2 nats of test loss apart).

``portable`` (the ``numerics`` param's default) pins each library to a path that every x86-64
CPU with AVX2 runs the same way, through the environment variables the libraries read when they
load, so ``pin`` must run before torch, numpy or scipy is imported (``stages/__init__.py`` does
it for every stage). Measured on an Intel Xeon (Sapphire Rapids) and an AMD EPYC (Zen 4):

- MKL honours ``MKL_CBWR`` branches on Intel CPUs only; on AMD every branch but ``COMPATIBLE``
  falls back to its own choice, and that differs from Intel's AVX2 branch. ``COMPATIBLE`` gives
  the same products on both.
- PyTorch's kernels: ``ATEN_CPU_CAPABILITY=avx2``; its oneDNN convolutions are switched off
  (``configure_torch``), so convolutions run as PyTorch's own im2col and MKL products.
- OpenBLAS: the Haswell (AVX2) kernels on one thread (with more threads it splits long sums).

The thread count still changes sums (PyTorch splits large reductions across its threads), so
it is a param too (``threads``), part of the DVC key of every stage that computes. ``native``
leaves every library to choose (faster, bytes per CPU model). bfloat16 products (``precision:
bf16-mixed``) run on oneDNN's native kernels (AMX, AVX512-BF16): per machine, so native only.
"""

import os
import sys
from pathlib import Path
from typing import Any

import yaml

MODES = ("portable", "native")
PORTABLE_ENVIRONMENT = {
    "MKL_CBWR": "COMPATIBLE",  # the one MKL branch that Intel and AMD CPUs run alike
    "ATEN_CPU_CAPABILITY": "avx2",  # PyTorch's own vectorized kernels
    "ONEDNN_MAX_CPU_ISA": "AVX2",  # oneDNN, where anything still calls it
    "OPENBLAS_CORETYPE": "Haswell",  # numpy's and scipy's OpenBLAS kernels
    "OPENBLAS_NUM_THREADS": "1",  # OpenBLAS splits long sums across threads
}
_LIBRARIES = ("torch", "numpy", "scipy")


def pin(mode: str) -> None:
    """Set the environment that chooses the numerical libraries' code paths for ``mode``.

    Call it before torch, numpy or scipy is imported: they read these variables when they load.
    ``native`` removes the portable pins a parent process may have passed on (a test run, a
    shell that pinned), so each library picks its fastest path for this CPU. Pinning too late is
    a programming error (a RuntimeError), not a user's.
    """
    wanted = dict(PORTABLE_ENVIRONMENT) if mode == "portable" else {}
    current = {key: os.environ[key] for key in PORTABLE_ENVIRONMENT
               if os.environ.get(key) == PORTABLE_ENVIRONMENT[key]}
    loaded = [name for name in _LIBRARIES if name in sys.modules]
    if loaded and current != wanted:
        raise RuntimeError(f"numerics: {mode} must be pinned before {loaded[0]} is imported; call "
                           f"vae.numerics.pin({mode!r}) first (or set its variables in the environment)")
    for key in current:
        del os.environ[key]
    os.environ.update(wanted)


def pin_from_params(path: str | Path = "params.yaml") -> None:
    """``pin`` the mode that the params file names; a missing or bad value is left to its validation."""
    try:
        mode = (yaml.safe_load(Path(path).read_text()) or {}).get("numerics")
    except (OSError, yaml.YAMLError, AttributeError):
        return
    if mode in MODES:
        pin(mode)


def configure_torch(mode: str, threads: int) -> None:
    """The settings PyTorch takes after it loads: its thread count, and oneDNN off in portable mode."""
    import torch

    torch.set_num_threads(threads)
    torch.backends.mkldnn.enabled = mode == "native"


def _mkl_branch() -> str:
    """The code path MKL reports it runs (its conditional numerical reproducibility branch)."""
    import ctypes

    import torch

    names = {1: "off", 2: "auto", 3: "compatible", 4: "sse2", 6: "ssse3", 7: "sse4_1", 8: "sse4_2", 9: "avx",
             10: "avx2", 12: "avx512", 14: "avx512_e1"}
    try:
        lib = ctypes.CDLL(str(Path(torch.__file__).parent / "lib" / "libtorch_cpu.so"))
        branch = lib.mkl_serv_cbwr_get(1)  # MKL_CBWR_BRANCH
    except (OSError, AttributeError):
        return "unknown (no MKL in this PyTorch build)"
    strict = " strict" if branch & 0x10000 else ""
    return names.get(branch & 0xFFFF, str(branch & 0xFFFF)) + strict


def _openblas_cores() -> list[str]:
    from threadpoolctl import threadpool_info

    return sorted({f"{pool.get('version')} {pool.get('architecture')}" for pool in threadpool_info()
                   if pool.get("internal_api") == "openblas"})


def report(mode: str) -> dict[str, Any]:
    """What ran: the mode, and the code path each library reports (for ``environment.json``)."""
    import torch

    return {"numerics": mode, "mkl": _mkl_branch(), "aten": torch.backends.cpu.get_cpu_capability(),
            "onednn": "on" if torch.backends.mkldnn.enabled else "off", "openblas": _openblas_cores()}
