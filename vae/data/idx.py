"""Reading and writing the IDX format of MNIST and Fashion-MNIST.

An IDX file is two zero bytes, a type byte (0x08: unsigned byte), the number of
dimensions, each dimension as a big-endian uint32, then the values row-major.
"""

import math
import struct
from pathlib import Path

import numpy as np

from vae.errors import UserError

_UBYTE = 0x08


def parse_idx(data: bytes, name: str = "IDX data") -> np.ndarray:
    """Decode IDX bytes of unsigned bytes into an array; ``name`` labels any error."""
    if len(data) < 4 or data[0:2] != b"\0\0" or data[2] != _UBYTE:
        raise UserError(f"{name}: not an unsigned-byte IDX file (bad magic number "
                        f"{data[:4].hex() or 'empty'}); delete it and rerun the download stage")
    ndim = data[3]
    header = 4 + 4 * ndim
    if ndim == 0 or len(data) < header:
        raise UserError(f"{name}: truncated IDX header; delete it and rerun the download stage")
    shape = struct.unpack(f">{ndim}I", data[4:header])
    expected = math.prod(shape)  # exact: np.prod would overflow int64 on a corrupt header
    if len(data) - header != expected:
        raise UserError(f"{name}: IDX payload has {len(data) - header} bytes, its header {shape} "
                        f"says {expected}; the file is truncated or corrupt, rerun the download stage")
    return np.frombuffer(data, dtype=np.uint8, offset=header).reshape(shape)


def format_idx(array: np.ndarray) -> bytes:
    """Encode an array of unsigned bytes as IDX (the inverse of ``parse_idx``)."""
    if array.dtype != np.uint8 or array.ndim == 0 or array.ndim > 255:
        raise ValueError(f"IDX holds 1-255 dimensional uint8 arrays, got {array.dtype} {array.shape}")
    header = bytes([0, 0, _UBYTE, array.ndim]) + struct.pack(f">{array.ndim}I", *array.shape)
    return header + np.ascontiguousarray(array).tobytes()


def read_idx(path: str | Path, shape: tuple[int | None, ...]) -> np.ndarray:
    """Read an IDX file and check its shape (``None`` matches any size)."""
    path = Path(path)
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        raise UserError(f"{path} is missing; run `dvc repro download` first") from None
    array = parse_idx(data, str(path))
    if len(array.shape) != len(shape) or any(s is not None and s != a for s, a in zip(shape, array.shape)):
        want = "x".join("N" if s is None else str(s) for s in shape)
        raise UserError(f"{path}: IDX dimensions {array.shape} are not {want}; "
                        "delete it and rerun the download stage")
    return array
