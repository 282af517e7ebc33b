"""Errors that reach the user as a single line, not a traceback.

A ``UserError`` is a problem the user can fix (bad params, missing data, no network). An
``OSError`` of the environment (a full disk, a read-only or forbidden folder, a missing
input file) is one too: ``environment_problem`` words it. Every other exception is a bug
and stays loud, with its traceback.
"""

import errno
import shutil
from pathlib import Path

MB = 2**20


class UserError(Exception):
    """A problem the user can fix: the message names the problem and the fix.

    The stage runner (``vae.runtime.cli.run_stage``) prints it as one line and exits non-zero.
    """


def ordinal(n: int) -> str:
    """``1st``, ``2nd``, ``3rd``, ``4th``, ``11th``, ``21st``: English ordinals for counts in messages."""
    suffix = "th" if 10 <= n % 100 <= 20 else {1: "st", 2: "nd", 3: "rd"}.get(n % 10, "th")
    return f"{n}{suffix}"


def _free_bytes(path: Path) -> int | None:
    """Free space on the filesystem holding ``path`` (its nearest existing folder), or None if unreadable."""
    for folder in [path, *path.parents]:
        try:
            return shutil.disk_usage(folder).free
        except OSError:
            continue
    return None


def _size(n_bytes: float) -> str:
    if n_bytes >= MB / 10:
        return f"{n_bytes / MB:.1f} MB"
    return f"{n_bytes / 1024:.0f} kB" if n_bytes >= 1024 else f"{n_bytes:.0f} bytes"


def environment_problem(err: OSError, rerun: str = "`dvc repro`") -> str | None:
    """One line for an ``OSError`` the environment caused, naming the path and the fix; None for any other.

    ``rerun``: what the user reruns once it is fixed.
    """
    path = Path(err.filename) if err.filename else None
    where = f" {path}" if path else ""
    if err.errno in (errno.ENOSPC, errno.EDQUOT):
        needed = getattr(err, "needed_bytes", None)
        free = _free_bytes(path) if path else None
        size = f"{_size(needed)} to write, " if needed is not None else ""
        left = f"{_size(free)} free" if free is not None else "the disk is full"
        short = needed - (free or 0) if needed is not None else 0
        more = f"at least {_size(short)}" if short > 0 else "space"
        kind = "no space left" if err.errno == errno.ENOSPC else "disk quota exceeded"
        return (f"{kind} writing{where} ({size}{left}); free {more} on that disk (or move the repository to "
                f"a bigger one), then rerun {rerun}")
    if err.errno == errno.EROFS:
        return f"cannot write{where}: its file system is read-only; make it writable, then rerun {rerun}"
    if err.errno in (errno.EACCES, errno.EPERM):
        folder = path.parent if path else "the folder"
        return (f"permission denied for{where}; give this user read and write access to it and to {folder} "
                f"(`ls -ld` shows the owner), then rerun {rerun}")
    if err.errno == errno.ENOENT:
        return f"{path or 'a file'} does not exist; make it (`dvc repro`) or restore it, then rerun {rerun}"
    return None


def one_line(err: BaseException, rerun: str = "`dvc repro`") -> str | None:
    """The one-line message of an error the user can fix, or None for a bug (which keeps its traceback)."""
    if isinstance(err, UserError):
        return str(err)
    if isinstance(err, OSError):
        return environment_problem(err, rerun)
    return None


class DamagedFile(UserError):
    """An input file that is missing, empty, truncated, or not what the pipeline wrote; says how to restore it.

    ``stage`` is the stage that writes the file, where the reader knows it; the stage runner and
    the API fill it in from dvc.yaml otherwise (the ML core cannot read dvc.yaml), so the line
    always ends in a command that restores the file: from DVC's cache, or by remaking it.
    ``--force``: without it, DVC refuses to overwrite a file whose bytes its cache lacks (a
    damaged file is one), asking for a confirmation that a stage's log cannot give.
    """

    def __init__(self, path: str | Path, problem: str, stage: str | None = None) -> None:
        super().__init__(path, problem, stage)
        self.path, self.problem, self.stage = str(path), problem, stage

    def __str__(self) -> str:
        remake = f"`dvc repro -f -s {self.stage}`" if self.stage else "`dvc repro -f -s <the stage that writes it>`"
        return (f"{self.path} {self.problem}; restore it with `dvc checkout --force {self.path}`, "
                f"or {remake} where DVC's cache does not hold it")
