"""Shared entry point for the stage scripts: one error line, no traceback."""

import logging
import resource
import signal
import sys
import time
from collections.abc import Callable

from vae.errors import UserError

log = logging.getLogger("vae")


def run_stage(name: str, main: Callable[[], None]) -> None:
    """Run a stage's ``main``, turning user errors and Ctrl-C into one line and an exit code."""
    logging.basicConfig(level=logging.INFO, format=f"[{name}] %(message)s", stream=sys.stderr)
    # Ctrl-C and SIGTERM (a CI timeout, `kill`) both stop cleanly between two Python steps, even
    # where the parent started us with SIGINT ignored (as shells do for background jobs).
    signal.signal(signal.SIGINT, signal.default_int_handler)
    signal.signal(signal.SIGTERM, signal.default_int_handler)
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
