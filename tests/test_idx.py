"""IDX parsing: malformed bytes are an IdxFormatError naming them; a malformed file is a DamagedFile naming
the file, the problem and the command that restores it; format/parse round-trips."""

import struct

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import array_shapes, arrays

from vae.data.idx import IdxFormatError, format_idx, parse_idx, read_idx
from vae.errors import DamagedFile

IMAGES = np.arange(3 * 28 * 28, dtype=np.uint64).astype(np.uint8).reshape(3, 28, 28)


def header(*dims: int, magic: bytes = b"\0\0\x08") -> bytes:
    return magic + bytes([len(dims)]) + struct.pack(f">{len(dims)}I", *dims)


def write(tmp_path, data: bytes, name: str = "train-images-idx3-ubyte"):
    path = tmp_path / name
    path.write_bytes(data)
    return path


def test_read_valid_file(tmp_path):
    path = write(tmp_path, format_idx(IMAGES))
    array = read_idx(path, (None, 28, 28))
    assert array.dtype == np.uint8
    np.testing.assert_array_equal(array, IMAGES)
    assert read_idx(path, (3, 28, 28)).shape == (3, 28, 28)


def test_header_layout():
    data = format_idx(np.zeros((2, 3), dtype=np.uint8))
    assert data == b"\0\0\x08\x02" + b"\0\0\0\x02" + b"\0\0\0\x03" + bytes(6)


@pytest.mark.parametrize("data, what", [
    (header(3, 28, 28, magic=b"\0\0\x09") + bytes(3 * 784), "bad magic number"),  # signed bytes
    (header(3, 28, 28, magic=b"\0\0\x0d") + bytes(4 * 3 * 784), "bad magic number"),  # float32
    (header(3, 28, 28, magic=b"\x1f\x8b\x08") + bytes(3 * 784), "bad magic number"),  # still gzipped
    (b"<html>404 Not Found</html>", "bad magic number"),
    (b"", "bad magic number"),
    (b"\0\0\x08", "bad magic number"),
    (b"\0\0\x08\x03" + b"\0\0\0\x03\0\0", "truncated IDX header"),
    (b"\0\0\x08\x03", "truncated IDX header"),
    (b"\0\0\x08\x00", "truncated IDX header"),  # zero dimensions
    (header(3, 28, 28) + bytes(3 * 784 - 1), "payload has 2351 bytes"),
    (header(3, 28, 28) + bytes(3 * 784 + 1), "payload has 2353 bytes"),
    (header(3, 28, 28), "payload has 0 bytes"),
    (header(2**32 - 1, 2**32 - 1, 2**32 - 1, 2**32 - 1) + bytes(8), "payload has 8 bytes"),
    (header(2**16, 2**16, 2**16, 2**16), "payload has 0 bytes"),  # 2**64 values: overflows int64
], ids=lambda v: v if isinstance(v, str) else "")
def test_malformed_file_names_path(tmp_path, data, what):
    path = write(tmp_path, data)
    with pytest.raises(DamagedFile) as info:
        read_idx(path, (None, 28, 28), stage="download")
    msg = str(info.value)
    assert msg.startswith(f"{path} ") and what in msg and "\n" not in msg
    assert msg.endswith(f"restore it with `dvc checkout --force {path}`, or `dvc repro -f -s download` where DVC's "
                        "cache does not hold it")
    with pytest.raises(IdxFormatError, match=f"^some name .*{what}"):
        parse_idx(data, "some name")


@pytest.mark.parametrize("data, shape", [
    (format_idx(np.zeros((3, 27, 28), np.uint8)), (None, 28, 28)),  # images 27x28
    (format_idx(np.zeros((3, 28, 27), np.uint8)), (None, 28, 28)),
    (format_idx(np.zeros((3, 784), np.uint8)), (None, 28, 28)),  # flattened images
    (format_idx(np.zeros((3, 28, 28, 1), np.uint8)), (None, 28, 28)),
    (format_idx(np.zeros((3, 2), np.uint8)), (None,)),  # labels with 2 dims
    (format_idx(np.zeros((3, 28, 28), np.uint8)), (None,)),  # images where labels belong
    (format_idx(np.zeros((5,), np.uint8)), (4,)),  # a fixed size that does not match
])
def test_wrong_dimensions_names_path(tmp_path, data, shape):
    path = write(tmp_path, data, "t10k-labels-idx1-ubyte")
    with pytest.raises(DamagedFile, match="has IDX dimensions") as info:
        read_idx(path, shape)
    assert str(info.value).startswith(f"{path} ") and "\n" not in str(info.value)


def test_missing_file(tmp_path):
    path = tmp_path / "train-labels-idx1-ubyte"
    with pytest.raises(DamagedFile, match="is missing; restore it with `dvc checkout --force ") as info:
        read_idx(path, (None,))
    assert str(info.value).startswith(f"{path} is missing")


@pytest.mark.parametrize("array", [np.zeros((), np.uint8), np.zeros((2, 2), np.int64),
                                   np.zeros(3, np.float32), np.zeros(3, np.int8)])
def test_format_rejects_non_idx_arrays(array):
    with pytest.raises(ValueError, match="uint8"):
        format_idx(array)


@settings(max_examples=60, deadline=None)
@given(arrays(np.uint8, array_shapes(min_dims=1, max_dims=3, min_side=0, max_side=6)))
def test_round_trip(array):
    data = format_idx(array)
    assert len(data) == 4 + 4 * array.ndim + array.size
    back = parse_idx(data)
    assert back.dtype == np.uint8 and back.shape == array.shape
    np.testing.assert_array_equal(back, array)
    assert format_idx(back) == data


@settings(max_examples=40, deadline=None)
@given(arrays(np.uint8, array_shapes(min_dims=1, max_dims=3, min_side=1, max_side=6)), st.data())
def test_any_truncation_is_refused_naming_the_bytes(array, data):
    blob = format_idx(array)
    cut = data.draw(st.integers(0, len(blob) - 1))
    with pytest.raises(IdxFormatError, match="^cut file "):
        parse_idx(blob[:cut], "cut file")


@settings(max_examples=40, deadline=None)
@given(arrays(np.uint8, array_shapes(min_dims=1, max_dims=3, min_side=1, max_side=6)), st.data())
def test_wrong_type_byte_is_refused(array, data):
    blob = bytearray(format_idx(array))
    blob[2] = data.draw(st.integers(0, 255).filter(lambda b: b != 0x08))
    with pytest.raises(IdxFormatError, match="bad magic number"):
        parse_idx(bytes(blob), "x")
