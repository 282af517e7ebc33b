"""Ctrl-C and SIGTERM that cannot get lost, and signals injected at a chosen batch for tests.

Python raises ``KeyboardInterrupt`` wherever the main thread happens to be when a
signal arrives; if that is inside a finalizer or a callback from C, the exception
is printed and dropped, and the run goes on. So the handler also sets a flag, and
long loops call ``check()`` at points where stopping is safe.

``VAE_SIGNAL_AT=SIGKILL@3.5`` (any signal name, epoch 3, batch 5) makes ``check``
send that signal to this process at that point: tests kill or interrupt a run at
an exact batch instead of racing it with a timer.
"""

import os
import re
import signal
from types import FrameType

from vae.errors import UserError

SIGNAL_AT_ENV = "VAE_SIGNAL_AT"

_requested = False
_signal_at: tuple[signal.Signals, int, int] | None = None


def _handle(signum: int, frame: FrameType | None) -> None:
    global _requested
    _requested = True
    raise KeyboardInterrupt


def _parse_signal_at(value: str) -> tuple[signal.Signals, int, int] | None:
    if not value:
        return None
    match = re.fullmatch(r"(SIG[A-Z]+)@(\d+)\.(\d+)", value)
    if not match or match.group(1) not in signal.Signals.__members__:
        raise UserError(f"{SIGNAL_AT_ENV} = {value!r} is not SIGNAME@EPOCH.BATCH (e.g. SIGKILL@3.5); "
                        f"unset it or fix it")
    return signal.Signals[match.group(1)], int(match.group(2)), int(match.group(3))


def install() -> None:
    """Route SIGINT and SIGTERM here, even where the parent started us with SIGINT ignored."""
    global _requested, _signal_at
    _requested = False
    _signal_at = _parse_signal_at(os.environ.get(SIGNAL_AT_ENV, ""))
    signal.signal(signal.SIGINT, _handle)
    signal.signal(signal.SIGTERM, _handle)


def check(epoch: int, batch: int) -> None:
    """Raise ``KeyboardInterrupt`` if a stop was asked for and its first exception was lost.

    Called after each training batch; sends the injected signal first when this is its batch.
    """
    if _signal_at is not None and _signal_at[1:] == (epoch, batch):
        os.kill(os.getpid(), _signal_at[0])
    if _requested:
        raise KeyboardInterrupt
