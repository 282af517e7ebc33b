"""Reading and writing the IDX format of MNIST and Fashion-MNIST.

An IDX file is two zero bytes, a type byte (0x08: unsigned byte), the number of
dimensions, each dimension as a big-endian uint32, then the values row-major.
"""

import math
import struct
from pathlib import Path

import numpy as np

from vae.errors import DamagedFile

_UBYTE = 0x08


class IdxFormatError(ValueError):
    """Bytes that are not an unsigned-byte IDX file; the message names them and what is wrong."""


def _problem(data: bytes) -> str | None:
    """What makes ``data`` no unsigned-byte IDX file (in plain words), or None."""
    if len(data) < 4 or data[0:2] != b"\0\0" or data[2] != _UBYTE:
        return f"is not an unsigned-byte IDX file (bad magic number {data[:4].hex() or 'empty'})"
    ndim = data[3]
    header = 4 + 4 * ndim
    if ndim == 0 or len(data) < header:
        return "has a truncated IDX header"
    shape = struct.unpack(f">{ndim}I", data[4:header])
    expected = math.prod(shape)  # exact: np.prod would overflow int64 on a corrupt header
    if len(data) - header != expected:
        return (f"is truncated or corrupt: its IDX payload has {len(data) - header} bytes, "
                f"its header {shape} says {expected}")
    return None


def _decode(data: bytes) -> np.ndarray:
    """The array of IDX bytes that ``_problem`` passed."""
    header = 4 + 4 * data[3]
    return np.frombuffer(data, dtype=np.uint8, offset=header).reshape(struct.unpack(f">{data[3]}I", data[4:header]))


def parse_idx(data: bytes, name: str = "IDX data") -> np.ndarray:
    """Decode IDX bytes of unsigned bytes into an array; ``name`` labels an ``IdxFormatError``."""
    problem = _problem(data)
    if problem:
        raise IdxFormatError(f"{name} {problem}")
    return _decode(data)


def format_idx(array: np.ndarray) -> bytes:
    """Encode an array of unsigned bytes as IDX (the inverse of ``parse_idx``)."""
    if array.dtype != np.uint8 or array.ndim == 0 or array.ndim > 255:
        raise ValueError(f"IDX holds 1-255 dimensional uint8 arrays, got {array.dtype} {array.shape}")
    header = bytes([0, 0, _UBYTE, array.ndim]) + struct.pack(f">{array.ndim}I", *array.shape)
    return header + np.ascontiguousarray(array).tobytes()


def read_idx(path: str | Path, shape: tuple[int | None, ...], stage: str | None = None) -> np.ndarray:
    """Read an IDX file and check its shape (``None`` matches any size).

    Anything else (missing, truncated, another kind of file, other dimensions) is a
    ``DamagedFile`` naming the path, the problem and how to restore it (``stage``: the stage
    that writes it, where the caller knows it).
    """
    path = Path(path)
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        raise DamagedFile(path, "is missing", stage) from None
    except IsADirectoryError:
        raise DamagedFile(path, "is a folder, not a file", stage) from None
    problem = _problem(data)
    if problem:
        raise DamagedFile(path, problem, stage)
    array = _decode(data)
    if len(array.shape) != len(shape) or any(s is not None and s != a for s, a in zip(shape, array.shape)):
        want = "x".join("N" if s is None else str(s) for s in shape)
        raise DamagedFile(path, f"has IDX dimensions {array.shape}, not {want}", stage)
    return array
