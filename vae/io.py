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
import pickle
import shutil
import signal
import tempfile
import warnings
import zipfile
import zlib
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, BinaryIO

import numpy as np

from vae.errors import DamagedFile, UserError

if TYPE_CHECKING:  # imported where used: check-params reads params through this module and needs no PyTorch
    import torch


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


def check_outputs(outputs: Iterable[str | Path], rerun: str = "`dvc repro`") -> None:
    """Raise a ``UserError`` if any of ``outputs`` cannot be created, before a stage costs anything.

    A stage that finds out only when it writes has computed for nothing, and the train stage
    would have deleted its saved state first. An output is a file if its name has a suffix
    (``model.pt``), else a folder (``models/epochs``). Blocked: a file where one of its folders
    should be, a folder where the file goes, a file where the folder goes, or a folder it
    writes in (the output's own, if it is a folder, or the nearest existing one above it) that
    this process may not write: read-only, or another user's.
    """
    for output in map(Path, outputs):
        problem = _blocked(output)
        if problem:
            raise UserError(f"{output} cannot be written: {problem}, then rerun {rerun}")


def _blocked(output: Path) -> str | None:
    """What stops ``output`` from being written, with the fix, or None."""
    for folder in reversed(output.parents):
        if folder.exists() and not folder.is_dir():
            return f"{folder} is a file where a folder is needed; move it away (or delete it)"
    if output.suffix and output.is_dir():
        return "a folder is in the way of the file; move it away (or delete it)"
    if not output.suffix and output.exists() and not output.is_dir():
        return "a file is in the way of the folder; move it away (or delete it)"
    written_in = [output] if output.is_dir() else []
    written_in += [next(folder for folder in output.parents if folder.exists())]
    for folder in written_in:
        if not os.access(folder, os.W_OK):
            return (f"{folder} is read-only to this user (a read-only file system, or another user's folder: "
                    f"`ls -ld {folder}` shows the owner); remount it read-write or give this user write access")
    return None


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


@dataclass(frozen=True)
class ArraySpec:
    """What an array of an ``.npz`` must be: of ``dtype`` (a numpy type or an abstract one such as
    ``np.integer``) and of ``shape``, whose entries are sizes, or names for sizes that must agree
    across the file's arrays (``("n", 28, 28)`` and ``("n",)``: as many labels as images)."""

    dtype: type
    shape: tuple[int | str, ...]


ZIP_MAGIC = b"PK"  # .npz and torch files are zip archives
PICKLE_PROTOCOLS = tuple(bytes([0x80, n]) for n in range(2, 6))  # how a pickle of protocol 2 to 5 starts


def _head(path: Path, stage: str | None) -> bytes:
    """The first bytes of ``path``; a missing or empty file is a ``DamagedFile``."""
    try:
        with open(path, "rb") as f:
            head = f.read(8)
    except FileNotFoundError:
        raise DamagedFile(path, "is missing", stage) from None
    except IsADirectoryError:
        raise DamagedFile(path, "is a folder, not a file", stage) from None
    if not head:
        raise DamagedFile(path, "is empty (0 bytes)", stage)
    return head


def _not_an_archive(head: bytes, kind: str) -> str | None:
    """Why a file that starts with ``head`` is no ``kind`` archive, or None if it may be one."""
    if head.startswith(ZIP_MAGIC):
        return None
    if head.startswith(PICKLE_PROTOCOLS):
        return "holds pickled objects, not a zip archive of arrays (refused: unpickling can run code)"
    return f"is not {kind} (its first bytes are not a zip archive's: another kind of file, or overwritten)"


def _first_line(err: BaseException) -> str:
    """The first sentence of ``err``'s message (torch appends a paragraph of advice), or its type's name."""
    text = str(err).strip()
    return text.splitlines()[0].split(". ")[0] if text else type(err).__name__


def load_npz(path: str | Path, arrays: dict[str, ArraySpec] | None = None,
             stage: str | None = None) -> dict[str, np.ndarray]:
    """Every array of an ``.npz``, checked against ``arrays`` (name -> spec) where given.

    The one reader of ``.npz`` files: anything but a readable archive of plain arrays as
    specified (missing, empty, truncated, another kind of file, pickled objects, an array
    missing or of the wrong shape or type) is a ``DamagedFile`` that names the path, the
    problem and the command that restores it (``stage``: the stage that writes it).
    """
    path = Path(path)
    problem = _not_an_archive(_head(path, stage), "an .npz archive")
    if problem:
        raise DamagedFile(path, problem, stage)
    try:
        with np.load(path, allow_pickle=False) as data:
            loaded = {key: data[key] for key in data.files}
    except ValueError as err:  # numpy's "Object arrays cannot be loaded when allow_pickle=False", or a bad header
        pickled = "allow_pickle" in str(err)
        raise DamagedFile(path, "holds pickled objects (refused: unpickling can run code)" if pickled
                          else f"is damaged ({_first_line(err)})", stage) from None
    except (zipfile.BadZipFile, EOFError, zlib.error) as err:
        raise DamagedFile(path, f"is truncated or damaged, not a readable .npz archive ({_first_line(err)})",
                          stage) from None
    if not all(isinstance(value, np.ndarray) for value in loaded.values()):  # a zip of other files
        raise DamagedFile(path, "is a zip archive but not an .npz of arrays", stage)
    problem = array_problem(loaded, arrays or {})
    if problem:
        raise DamagedFile(path, problem, stage)
    return loaded


def array_problem(loaded: dict[str, np.ndarray], arrays: dict[str, ArraySpec]) -> str | None:
    """What is wrong with ``loaded`` against ``arrays`` (a missing array, a wrong type or shape), or None."""
    missing = [name for name in arrays if name not in loaded]
    if missing:
        held = ", ".join(repr(name) for name in sorted(loaded)) or "none"
        return f"lacks the array{'s' if len(missing) > 1 else ''} {', '.join(map(repr, missing))} (it holds {held})"
    sizes: dict[str, int] = {}  # a named size, as the first array that has it sets it
    for name, spec in arrays.items():
        array = loaded[name]
        if not np.issubdtype(array.dtype, spec.dtype):
            return f"holds {name!r} as {array.dtype}, not {_dtype_text(spec.dtype)}"
        if array.ndim == len(spec.shape):
            for dim, size in zip(spec.shape, array.shape):
                if isinstance(dim, str):
                    sizes.setdefault(dim, size)
        expected = tuple(sizes.get(dim, dim) if isinstance(dim, str) else dim for dim in spec.shape)
        if array.shape != expected:
            return f"holds {name!r} of shape {array.shape}, not {expected}"
    return None


def _dtype_text(dtype: type) -> str:
    """``uint8`` for a concrete type, ``integers`` or ``floats`` for an abstract one."""
    abstract = {np.integer: "integers", np.floating: "floats"}
    return abstract.get(dtype) or np.dtype(dtype).name


def write_torch(path: str | Path, obj: Any) -> None:
    """``torch.save`` of tensors and plain containers, loadable with ``weights_only=True``.

    Saved through a buffer: ``torch.save`` to a file names the archive's records
    after that file, and the temporary name would make identical runs differ in bytes.
    """
    import torch

    buffer = io.BytesIO()
    torch.save(obj, buffer)
    write_bytes(path, buffer.getvalue())


def load_torch(path: str | Path | BinaryIO, device: "torch.device | str" = "cpu", keys: tuple[str, ...] = (),
               stage: str | None = None) -> Any:
    """``torch.load`` of a file that may come from anywhere: only tensors and plain containers load.

    ``weights_only=True`` refuses pickled objects, so loading cannot run code. A file that is
    missing, empty, truncated, not a torch file, holds pickled objects or (given ``keys``) is not
    a dictionary holding those keys is a ``DamagedFile`` naming the problem and the restore
    command (``stage``: the stage that writes it), never torch's own advice to unpickle.
    """
    import torch

    name = path if isinstance(path, (str, Path)) else getattr(path, "name", "the file read")
    if isinstance(path, (str, Path)):
        problem = _not_an_archive(_head(Path(path), stage), "a torch file")
    else:
        problem = _not_an_archive(path.read(8), "a torch file")
        path.seek(0)
    if problem:
        raise DamagedFile(name, problem, stage)
    try:
        with warnings.catch_warnings():  # torch warns about pickle protocols before it refuses them
            warnings.simplefilter("ignore")
            saved = torch.load(path, map_location=device, weights_only=True)
    except pickle.UnpicklingError:
        raise DamagedFile(name, "holds pickled objects besides tensors (refused: unpickling can run code)",
                          stage) from None
    except (RuntimeError, EOFError) as err:  # torch's reader: "failed finding central directory" and the like
        raise DamagedFile(name, f"is truncated or damaged, not a readable torch file ({_first_line(err)})",
                          stage) from None
    lacking = [key for key in keys if not isinstance(saved, dict) or key not in saved]
    if lacking:
        raise DamagedFile(name, f"is not a file this pipeline wrote there (it lacks {', '.join(map(repr, lacking))})",
                          stage)
    return saved


def write_csv(path: str | Path, frame: Any) -> None:
    """Write a pandas DataFrame as CSV without its index."""
    write_text(path, frame.to_csv(index=False))


def write_figure(path: str | Path, fig: Any, **kwargs: Any) -> None:
    """Save a matplotlib ``Figure`` as PNG."""
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", **kwargs)
    write_bytes(path, buffer.getvalue())
