"""Atomic file output: every file a stage writes appears whole or not at all.

Each writer renders its file in memory, writes it to a temporary file in the destination
folder, flushes it to disk, then renames it over the destination (an atomic step on POSIX),
so a crash or a kill never leaves a half-written file behind. ``staged`` does the same for a
stage's set of outputs (files and folders): they are written beside the final paths and
moved into place together once the last is written (split, classifier, evaluate, sample,
embed-latents, plot; train keeps one file per epoch and commits with its training state).
"""

import contextlib
import functools
import io
import json
import os
import shutil
import signal
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any, BinaryIO

import numpy as np
import torch

from vae.errors import UserError


@functools.cache
def _umask() -> int:
    """The process's umask (read once, on the first write: reading it means setting it)."""
    mask = os.umask(0)
    os.umask(mask)
    return mask


@contextlib.contextmanager
def atomic_path(path: str | Path) -> Iterator[Path]:
    """Yield a temporary path next to ``path``; rename it to ``path`` if the block succeeds."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    os.close(fd)
    tmp_path = Path(tmp)
    os.chmod(tmp_path, 0o666 & ~_umask())  # mkstemp makes 0600; give the usual permissions
    try:
        yield tmp_path
        with open(tmp_path, "rb+") as f:
            os.fsync(f.fileno())
        os.replace(tmp_path, path)
    finally:
        tmp_path.unlink(missing_ok=True)


def _staging_path(final: Path) -> Path:
    return final.parent / f".{final.name}.staged"


def _move_into_place(staging: Path, final: Path) -> None:
    """Replace ``final`` (a file, a folder or nothing) with ``staging``."""
    if final.is_dir() and not final.is_symlink():
        old = final.parent / f".{final.name}.old"
        shutil.rmtree(old, ignore_errors=True)
        final.rename(old)
        try:
            staging.rename(final)
        except OSError:
            old.rename(final)  # the last outputs, back in place
            raise
        shutil.rmtree(old)
    else:
        os.replace(staging, final)


def _remove(path: Path) -> None:
    if path.is_dir() and not path.is_symlink():
        shutil.rmtree(path)
    else:
        path.unlink(missing_ok=True)


@contextlib.contextmanager
def _signals_deferred() -> Iterator[None]:
    """Ctrl-C and SIGTERM wait until the block ends (where the OS can hold signals: POSIX)."""
    if not hasattr(signal, "pthread_sigmask"):
        yield
        return
    held = signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGINT, signal.SIGTERM})
    try:
        yield
    finally:
        signal.pthread_sigmask(signal.SIG_SETMASK, held)


def _named(err: OSError, path: str | Path, needed_bytes: int | None) -> OSError:
    """``err`` for ``path``, carrying the bytes its write needed (for ``vae.errors.environment_problem``)."""
    named = OSError(err.errno, err.strerror, str(path))
    named.needed_bytes = needed_bytes
    return named


def _as_output_error(err: OSError, staging: list[Path], finals: list[Path]) -> OSError:
    """``err`` with its file named by the output it was written for, not by its temporary path."""
    if err.filename is None:
        return err
    name = Path(err.filename)
    for path, final in zip(staging, finals):
        if name == path or path in name.parents:
            output = final if name == path else final / name.relative_to(path)
            return _named(err, output, getattr(err, "needed_bytes", None))
    return err


@contextlib.contextmanager
def staged(*outputs: str | Path) -> Iterator[list[Path]]:
    """Temporary paths beside a stage's ``outputs``, moved into place together once the block succeeds.

    The stage writes each output at its temporary path (a file, or a folder it fills). If the
    block fails, every temporary path is removed and the final paths hold what they held
    before: the last complete outputs where DVC keeps them (``persist: true``), or nothing
    where DVC deleted them before the stage ran; never a mixture. Leftovers of a killed
    earlier run are removed first.
    """
    finals = [Path(out) for out in outputs]
    staging = [_staging_path(final) for final in finals]
    for path, final in zip(staging, finals):
        final.parent.mkdir(parents=True, exist_ok=True)
        _remove(path)
    try:
        yield staging
        missing = [str(final) for path, final in zip(staging, finals) if not path.exists()]
        if missing:
            raise RuntimeError(f"the stage did not write {', '.join(missing)}")  # a bug in the stage, not the user's
        with _signals_deferred():  # never some outputs new and some old
            for path, final in zip(staging, finals):
                _move_into_place(path, final)
    except OSError as err:
        raise _as_output_error(err, staging, finals) from err
    finally:
        for path in staging:
            _remove(path)


def write_bytes(path: str | Path, data: bytes) -> None:
    """Write ``data`` to ``path`` atomically; a failed write names the path and how much it needed."""
    try:
        with atomic_path(path) as tmp:
            tmp.write_bytes(data)
    except OSError as err:
        raise _named(err, path, len(data)) from err


def write_text(path: str | Path, text: str) -> None:
    write_bytes(path, text.encode())


def write_json(path: str | Path, obj: Any) -> None:
    write_text(path, json.dumps(obj, indent=2, sort_keys=True) + "\n")


def write_npz(path: str | Path, **arrays: np.ndarray) -> None:
    """Save plain numeric arrays (no object arrays, so loading never needs pickle)."""
    arrays = {name: np.asarray(a) for name, a in arrays.items()}
    if any(a.dtype.hasobject for a in arrays.values()):
        raise TypeError("write_npz stores numeric arrays only; object arrays would need pickle to load")
    buffer = io.BytesIO()
    np.savez(buffer, **arrays)
    write_bytes(path, buffer.getvalue())


def load_npz(path: str | Path) -> dict[str, np.ndarray]:
    """Load every array of an ``.npz``; object arrays (which need pickle) are refused."""
    try:
        with np.load(path, allow_pickle=False) as data:
            return {key: data[key] for key in data.files}
    except ValueError as err:  # numpy's "Object arrays cannot be loaded when allow_pickle=False"
        raise UserError(f"{path} holds pickled objects ({err}); delete it and rerun `dvc repro`") from None


def write_torch(path: str | Path, obj: Any) -> None:
    """``torch.save`` of tensors and plain containers, loadable with ``weights_only=True``.

    Saved through a buffer: ``torch.save`` to a file names the archive's records
    after that file, and the temporary name would make identical runs differ in bytes.
    """
    buffer = io.BytesIO()
    torch.save(obj, buffer)
    write_bytes(path, buffer.getvalue())


def load_torch(path: str | Path | BinaryIO, device: torch.device | str = "cpu") -> Any:
    """``torch.load`` of a file that may come from anywhere: only tensors and plain containers load.

    ``weights_only=True`` refuses pickled objects, so loading cannot run code. A missing
    file or one that is not a plain tensor file is a ``UserError`` that says what to do.
    """
    try:
        return torch.load(path, map_location=device, weights_only=True)
    except FileNotFoundError:
        raise UserError(f"{path} is missing; run the stage that makes it (`dvc repro`)") from None
    except Exception as err:  # weights_only raises UnpicklingError, or RuntimeError for a bad zip
        first = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
        raise UserError(f"{path} is not a plain tensor file this pipeline wrote ({first}); "
                        "delete it and rerun `dvc repro`") from None


def write_csv(path: str | Path, frame: Any) -> None:
    """Write a pandas DataFrame as CSV without its index."""
    write_text(path, frame.to_csv(index=False))


def write_figure(path: str | Path, fig: Any, **kwargs: Any) -> None:
    """Save a matplotlib ``Figure`` as PNG."""
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", **kwargs)
    write_bytes(path, buffer.getvalue())
