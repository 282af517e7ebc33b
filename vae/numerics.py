"""Which code paths the numerical libraries take: the same bytes on every x86-64 CPU, or each CPU's fastest.

A float32 sum rounds differently when its terms are added in another order, and the libraries
under PyTorch and numpy choose the order by CPU: MKL's matrix products run other kernels on an
Intel Xeon (AVX-512) than on an AMD EPYC, PyTorch's own kernels pick their vector width, and
numpy's OpenBLAS picks a kernel per CPU model. Twenty epochs amplify the last-bit differences
into a different model (2 nats of test loss apart).

``portable`` (the ``numerics`` param's default) pins each library to a path that every x86-64
CPU with AVX2 runs the same way: through the environment variables the libraries read when they
load (so ``pin`` must run before torch, numpy or scipy is imported; ``stages/__init__.py`` does
it for every stage), and through ``configure_torch`` once torch has loaded:

- Float32 matrix products (linear layers, their gradients, convolutions as unfold and a
  product): on numpy's OpenBLAS with the Haswell (AVX2) kernels (``vae.openblas``), which
  OpenBLAS chooses by the pinned core type, never by the vendor (docs/performance.md times
  them against MKL's).
- MKL, for any product left to PyTorch: ``MKL_CBWR=COMPATIBLE``, the one branch that Intel and
  AMD CPUs run alike (on AMD, MKL ignores every other branch), but twice as slow.
- PyTorch's kernels: ``ATEN_CPU_CAPABILITY=avx2``; its oneDNN convolutions are switched off.

The thread count still changes sums (OpenBLAS splits a product's work by it), so it is a param
too (``threads``), part of the DVC key of every stage that computes. In portable mode it is
OpenBLAS's: PyTorch's own kernels run on one thread, so that two thread pools never take turns
on the same cores. ``native`` leaves every library to choose (faster, bytes per CPU model) and
gives PyTorch the ``threads``. bfloat16 products (``precision: bf16-mixed``) run on oneDNN's
native kernels (AMX, AVX512-BF16): per machine, so native only.
"""

import os
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import yaml

MODES = ("portable", "native")
PORTABLE_ENVIRONMENT = {
    "MKL_CBWR": "COMPATIBLE",  # the one MKL branch that Intel and AMD CPUs run alike
    "ATEN_CPU_CAPABILITY": "avx2",  # PyTorch's own vectorized kernels
    "ONEDNN_MAX_CPU_ISA": "AVX2",  # oneDNN, where anything still calls it
    "OPENBLAS_CORETYPE": "Haswell",  # numpy's and scipy's OpenBLAS kernels
    "OPENBLAS_NUM_THREADS": "1",  # at load; configure_torch gives the products' OpenBLAS `threads`
    # OpenMP threads (any that run beside OpenBLAS's) sleep between parallel regions instead of spinning, so
    # that they leave the cores to OpenBLAS's threads, which run the products: spinning pools made a step 4x
    # slower on 2 cores. It changes when threads wait, never what they compute.
    "OMP_WAIT_POLICY": "PASSIVE",
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


_products: list[Any] = []  # the PortableProducts configure_torch entered (its kernels registered), while portable


def configure_torch(mode: str, threads: int) -> None:
    """The settings PyTorch takes after it loads: its thread count, oneDNN, and whose products run.

    ``portable`` turns oneDNN off, sends float32 matrix products to numpy's OpenBLAS
    (``vae.openblas``) with ``threads`` threads and runs PyTorch's own kernels on one: beside
    OpenBLAS's threads, PyTorch's pool paid a wake-up for each operation when it slept and took
    the cores from OpenBLAS when it spun (docs/performance.md has the cost). ``native`` gives
    PyTorch the ``threads`` and undoes the rest. Safe to call again.
    """
    import torch
    from threadpoolctl import threadpool_limits

    torch.set_num_threads(1 if mode == "portable" else threads)
    torch.backends.mkldnn.enabled = mode == "native"
    if mode == "portable":
        threadpool_limits(threads, user_api="blas")
        if not _products:
            from vae.openblas import PortableProducts

            _products.append(PortableProducts().__enter__())
    elif _products:
        _products.pop().__exit__(None, None, None)


@contextmanager
def torch_settings_kept() -> Iterator[None]:
    """Put back what ``configure_torch`` sets (threads, oneDNN, whose products run, OpenBLAS threads).

    For code that configures PyTorch inside a longer process, such as a test that runs a stage in-process.
    """
    import torch
    from threadpoolctl import threadpool_limits

    threads, onednn, portable = torch.get_num_threads(), torch.backends.mkldnn.enabled, bool(_products)
    with threadpool_limits(user_api="blas"):  # no new limit: puts OpenBLAS's thread count back on exit
        try:
            yield
        finally:
            configure_torch("portable" if portable else "native", threads)
            torch.set_num_threads(threads)
            torch.backends.mkldnn.enabled = onednn


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


def _openblas_cores(only_numpys: bool = False) -> list[str]:
    """Version and core type of each OpenBLAS loaded (numpy's and scipy's each bundle one), or of numpy's."""
    from threadpoolctl import threadpool_info

    return sorted({f"{pool.get('version')} {pool.get('architecture')}" for pool in threadpool_info()
                   if pool.get("internal_api") == "openblas"
                   and (not only_numpys or f"numpy{os.sep}" in pool["filepath"] or "numpy.libs" in pool["filepath"])})


def report(mode: str) -> dict[str, Any]:
    """What ran: the mode, and the code path each library reports (for ``environment.json``)."""
    import torch

    return {"numerics": mode, "mkl": _mkl_branch(), "aten": torch.backends.cpu.get_cpu_capability(),
            "onednn": "on" if torch.backends.mkldnn.enabled else "off", "openblas": _openblas_cores(),
            "products": f"numpy's OpenBLAS {', '.join(_openblas_cores(True))} (aten::mm, aten::addmm)" if _products
            else "PyTorch's (MKL)"}
