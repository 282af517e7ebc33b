"""What every stage script shares: its command line of paths, the common preamble, one error line.

dvc.yaml names every path once and passes each stage its inputs and outputs as
``--name path`` options; ``run_stage`` parses them, runs the stage, and turns a
``UserError`` or Ctrl-C into one line and an exit code.
"""

import argparse
import logging
import os
import platform
import sys
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch

from vae import interrupt
from vae.checkpoint import load_model
from vae.data.split import load_split, to_tensor
from vae.errors import UserError
from vae.model import VAE
from vae.params import Params, load_params, resolve_device
from vae.pipeline import read_stage

log = logging.getLogger("vae")


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


def environment(device: torch.device) -> dict[str, str | int]:
    """What a run's numbers depend on besides its params and code: the same code gives other
    last digits on another CPU model, thread count or torch version (docs/results keeps these)."""
    name = torch.cuda.get_device_name(device) if device.type == "cuda" else cpu_model()
    return {"cpu": name, "device": device.type, "threads": torch.get_num_threads(), "torch": torch.__version__}


def flush_subnormals(enabled: bool = True) -> None:
    """Make the CPU treat subnormal floats (|x| < 1.2e-38 in float32) as zero.

    Adam's first moments of weights whose gradient is almost always zero decay by 0.9 a
    step into the subnormal range, and Intel cores take a slow path on every operation
    with a subnormal operand: the default train stage ran at half speed there (124.7 s
    against 75.4 s). Numbers that small never change a float32 result that matters
    (docs/performance.md, "Subnormal floats"); the default model stays byte-identical.
    """
    torch.set_flush_denormal(enabled)


def _restore_hint(stage: str) -> str:
    """Under `dvc repro` (which sets DVC_STAGE), how to get back the outputs DVC deleted before the stage ran."""
    if os.environ.get("DVC_STAGE") != stage:
        return ""
    try:
        return read_stage(stage).restore_hint()
    except UserError:
        return ""


def run_stage(name: str, main: Callable[[argparse.Namespace], None], *paths: str) -> None:
    """Parse ``--<path> PATH`` for each name in ``paths``, run ``main(args)``, report errors in one line."""
    parser = argparse.ArgumentParser(prog=f"python -m stages.{name.replace('-', '_')}",
                                     description=sys.modules["__main__"].__doc__)
    for path in paths:
        parser.add_argument(f"--{path.replace('_', '-')}", type=Path, required=True, metavar="PATH")
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format=f"[{name}] %(message)s", stream=sys.stderr)
    start = time.perf_counter()
    flush_subnormals()
    try:
        interrupt.install()  # Ctrl-C and SIGTERM (a CI timeout, `kill`) both stop cleanly
        main(args)
    except UserError as err:
        print(f"error: {err}{_restore_hint(name)}", file=sys.stderr)
        sys.exit(1)
    except KeyboardInterrupt:
        print(f"error: {name} interrupted; completed work is saved, rerun `dvc repro` to continue",
              file=sys.stderr)
        sys.exit(130)
    peak = peak_memory_mib()
    log.info("done in %.1f s%s", time.perf_counter() - start, "" if peak is None else f", peak memory {peak:.0f} MiB")


def model_and_split(model_path: Path, split_path: Path) -> tuple[Params, torch.device, VAE, torch.Tensor, np.ndarray]:
    """The preamble of the stages that study a trained model: params, device, model, one split's images and labels."""
    params = load_params()
    device = resolve_device(params.device)
    model = load_model(model_path, device)
    images, labels = load_split(split_path)
    return params, device, model, to_tensor(images, device), labels
