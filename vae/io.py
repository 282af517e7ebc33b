"""Atomic file output: every file a stage writes appears whole or not at all.

Each writer goes to a temporary file in the destination folder, flushes it to
disk, then renames it over the destination (an atomic step on POSIX), so a
crash or a kill never leaves a half-written artifact behind.
"""

import contextlib
import io
import json
import os
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any, BinaryIO

import numpy as np
import torch

from vae.errors import UserError

_UMASK = os.umask(0)
os.umask(_UMASK)


@contextlib.contextmanager
def atomic_path(path: str | Path) -> Iterator[Path]:
    """Yield a temporary path next to ``path``; rename it to ``path`` if the block succeeds."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    os.close(fd)
    tmp_path = Path(tmp)
    os.chmod(tmp_path, 0o666 & ~_UMASK)  # mkstemp makes 0600; give the usual permissions
    try:
        yield tmp_path
        with open(tmp_path, "rb+") as f:
            os.fsync(f.fileno())
        os.replace(tmp_path, path)
    finally:
        tmp_path.unlink(missing_ok=True)


def fresh_dir(path: str | Path) -> Path:
    """Empty the output folder ``path`` (a stage writes all of it, so nothing stale stays)."""
    path = Path(path)
    shutil.rmtree(path, ignore_errors=True)
    path.mkdir(parents=True)
    return path


def write_bytes(path: str | Path, data: bytes) -> None:
    with atomic_path(path) as tmp:
        tmp.write_bytes(data)


def write_text(path: str | Path, text: str) -> None:
    write_bytes(path, text.encode())


def write_json(path: str | Path, obj: Any) -> None:
    write_text(path, json.dumps(obj, indent=2, sort_keys=True) + "\n")


def write_npz(path: str | Path, **arrays: np.ndarray) -> None:
    """Save plain numeric arrays (no object arrays, so loading never needs pickle)."""
    arrays = {name: np.asarray(a) for name, a in arrays.items()}
    if any(a.dtype.hasobject for a in arrays.values()):
        raise TypeError("write_npz stores numeric arrays only; object arrays would need pickle to load")
    with atomic_path(path) as tmp, open(tmp, "wb") as f:
        np.savez(f, **arrays)


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
    with atomic_path(path) as tmp:
        frame.to_csv(tmp, index=False)


def write_figure(path: str | Path, fig: Any, **kwargs: Any) -> None:
    """Save a matplotlib ``Figure`` as PNG."""
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png", **kwargs)
