"""Faults injected into the processes a test starts, at an exact point: a test seam, not the product's.

A test puts this folder on the PYTHONPATH of what it starts (``tests.conftest.signal_env``) and sets:

- ``VAE_TEST_SIGNAL_AT=SIGKILL@2.5`` (signal name @ epoch.batch): once ``vae.runtime.interrupt`` is
  imported, its ``check(epoch, batch)`` (the training loops' ``on_batch``) sends that signal to its own
  process at that batch. Instead of a batch, ``@start`` signals as a stage starts (when it installs its
  handlers), ``@write`` as it writes its first file (mid-work: through ``vae.io.atomic_path``), ``@done``
  once its work is done (when it stops listening for signals). Optional: ``VAE_TEST_SIGNAL_IN=NAME``
  fires only in a process whose current folder is named NAME, and ``VAE_TEST_SIGNAL_ONCE=PATH`` only
  where PATH does not exist yet (it is made just before firing), so a rerun of the killed process resumes.
- ``VAE_TEST_ENOSPC_AT=GLOB#N``: the Nth write (default 1) through ``vae.io.atomic_path`` of a file whose
  path matches GLOB fails with ENOSPC once its bytes are written, as on a full disk.

Nothing of vae is imported at interpreter start: each module is patched right after it first runs.
"""

import contextlib
import errno
import fnmatch
import importlib.machinery
import os
import re
import signal
import sys
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from types import ModuleType

POINTS = ("start", "write", "done")


def _signal_at(value: str) -> tuple[signal.Signals, str]:
    """The signal and where to send it: ``"2.5"`` (epoch 2, batch 5) or one of ``POINTS``."""
    match = re.fullmatch(rf"(SIG[A-Z0-9]+)@(\d+\.\d+|{'|'.join(POINTS)})", value)
    if not match or match.group(1) not in signal.Signals.__members__:
        raise ValueError(f"VAE_TEST_SIGNAL_AT={value!r} is not SIGNAME@EPOCH.BATCH (e.g. SIGKILL@2.5) "
                         f"or SIGNAME@POINT with a point of {POINTS}")
    return signal.Signals[match.group(1)], match.group(2)


def _armed() -> bool:
    """Whether this process is the one to signal (its folder), and it has not been signalled before (once)."""
    where, once = os.environ.get("VAE_TEST_SIGNAL_IN"), os.environ.get("VAE_TEST_SIGNAL_ONCE")
    if where and Path.cwd().name != where:
        return False
    if once:
        try:
            Path(once).touch(exist_ok=False)  # before the signal: SIGKILL leaves no time after it
        except FileExistsError:
            return False
    return True


def _send_at(point: str) -> None:
    """Send this process the signal of ``VAE_TEST_SIGNAL_AT`` if it names ``point`` and this process is armed."""
    signum, at = _signal_at(os.environ["VAE_TEST_SIGNAL_AT"])
    if point == at and _armed():
        os.kill(os.getpid(), signum)


def _patch_interrupt(module: ModuleType) -> None:
    check, install, ignore = module.check, module.install, module.ignore

    def checked(epoch: int, batch: int) -> None:
        _send_at(f"{epoch}.{batch}")
        check(epoch, batch)

    def installed() -> None:
        install()
        _send_at("start")  # the stage's own handler turns it into its interrupt

    def ignored() -> None:
        _send_at("done")  # still listening: the race between finishing and being stopped
        ignore()

    module.check, module.install, module.ignore = checked, installed, ignored


def _patch_first_write(module: ModuleType) -> None:
    original = module.atomic_path

    @contextlib.contextmanager
    def atomic_path(path: str | Path) -> Iterator[Path]:
        _send_at("write")
        with original(path) as tmp:
            yield tmp

    module.atomic_path = atomic_path


def _patch_enospc(module: ModuleType) -> None:
    pattern, _, nth = os.environ["VAE_TEST_ENOSPC_AT"].partition("#")
    remaining = [int(nth or 1)]
    original = module.atomic_path

    @contextlib.contextmanager
    def atomic_path(path: str | Path) -> Iterator[Path]:
        with original(path) as tmp:
            yield tmp
            if fnmatch.fnmatch(str(path), pattern):
                remaining[0] -= 1
                if remaining[0] == 0:
                    raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    module.atomic_path = atomic_path


class _Finder:
    """Finds the patched modules as Python would, and patches each right after it runs."""

    def __init__(self, patches: dict[str, list[Callable[[ModuleType], None]]]) -> None:
        self.patches = patches

    def find_spec(self, name: str, path: Sequence[str] | None, target: ModuleType | None = None):
        if name not in self.patches:
            return None
        spec = importlib.machinery.PathFinder.find_spec(name, path)
        if spec is None or spec.loader is None:
            return spec
        run_module = spec.loader.exec_module

        def exec_module(module: ModuleType) -> None:
            run_module(module)
            for patch in self.patches[name]:
                patch(module)

        spec.loader.exec_module = exec_module
        return spec


_PATCHES: dict[str, list[Callable[[ModuleType], None]]] = {}
for _name, _patch, _variable in (("vae.runtime.interrupt", _patch_interrupt, "VAE_TEST_SIGNAL_AT"),
                                 ("vae.io", _patch_first_write, "VAE_TEST_SIGNAL_AT"),
                                 ("vae.io", _patch_enospc, "VAE_TEST_ENOSPC_AT")):
    if os.environ.get(_variable):
        _PATCHES.setdefault(_name, []).append(_patch)
if _PATCHES:
    sys.meta_path.insert(0, _Finder(_PATCHES))
