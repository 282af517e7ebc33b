"""Shared entry point for the stage scripts: one error line, no traceback."""

import logging
import resource
import sys
import time
from collections.abc import Callable

from vae import interrupt
from vae.errors import UserError

log = logging.getLogger("vae")


def run_stage(name: str, main: Callable[[], None]) -> None:
    """Run a stage's ``main``, turning user errors and Ctrl-C into one line and an exit code."""
    logging.basicConfig(level=logging.INFO, format=f"[{name}] %(message)s", stream=sys.stderr)
    interrupt.install()  # Ctrl-C and SIGTERM (a CI timeout, `kill`) both stop cleanly
    start = time.perf_counter()
    try:
        main()
    except UserError as err:
        print(f"error: {err}", file=sys.stderr)
        sys.exit(1)
    except KeyboardInterrupt:
        print(f"error: {name} interrupted; completed work is saved, rerun `dvc repro` to continue",
              file=sys.stderr)
        sys.exit(130)
    peak_mib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # Linux reports KiB
    log.info("done in %.1f s, peak memory %.0f MiB", time.perf_counter() - start, peak_mib)
