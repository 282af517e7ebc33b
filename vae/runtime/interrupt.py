"""Ctrl-C and SIGTERM that cannot get lost.

Python raises ``KeyboardInterrupt`` wherever the main thread happens to be when a
signal arrives; if that is inside a finalizer or a callback from C, the exception
is printed and dropped, and the run goes on. So the handler also sets a flag, and
long loops call ``check`` (their ``on_batch`` callback) at points where stopping is safe.
"""

import signal
from types import FrameType

_requested = False


def _handle(signum: int, frame: FrameType | None) -> None:
    global _requested
    _requested = True
    raise KeyboardInterrupt


def install() -> None:
    """Route SIGINT and SIGTERM here, even where the parent started us with SIGINT ignored."""
    global _requested
    _requested = False
    signal.signal(signal.SIGINT, _handle)
    signal.signal(signal.SIGTERM, _handle)


def ignore() -> None:
    """Ignore SIGINT and SIGTERM from now on: the stage's work is done, and a late stop would only
    turn a finished run into a failure (or a traceback while it logs that it is done)."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_IGN)


def check(epoch: int, batch: int) -> None:
    """Raise ``KeyboardInterrupt`` if a stop was asked for and its first exception was lost.

    Training loops call it after each batch (``epoch`` and ``batch`` count from 1), through
    their ``on_batch`` callback.
    """
    if _requested:
        raise KeyboardInterrupt
