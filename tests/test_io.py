"""Atomic writes and pickle-free loading."""

import os
from pathlib import Path

import numpy as np
import pytest
import torch

from vae.errors import UserError
from vae.io import atomic_path, load_npz, load_torch, write_json, write_npz, write_text, write_torch


def test_a_failed_write_leaves_the_old_file_and_no_temporary(tmp_path: Path) -> None:
    target = tmp_path / "out.txt"
    write_text(target, "complete")
    with pytest.raises(RuntimeError), atomic_path(target) as tmp:
        tmp.write_text("half")
        raise RuntimeError("crash in the middle of a write")
    assert list(tmp_path.iterdir()) == [target]
    assert target.read_text() == "complete"


def test_object_arrays_are_not_written(tmp_path: Path) -> None:
    with pytest.raises(TypeError, match="numeric arrays only"):
        write_npz(tmp_path / "x.npz", a=np.array([object()]))
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize("write", [
    lambda path: write_text(path, "second"),
    lambda path: write_json(path, {"second": 2}),
    lambda path: write_npz(path, a=np.zeros(3)),
    lambda path: write_torch(path, {"w": torch.zeros(3)}),
])
def test_a_crash_before_the_rename_leaves_the_old_file_whole(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                             write) -> None:
    """Every writer fills a temporary file and renames it; a plain write would have clobbered the target."""
    target = tmp_path / "out"
    target.write_text("first version, complete")

    def crash(src: str, dst: str) -> None:
        assert Path(dst) == target and Path(src).stat().st_size > 0  # the new content is all in the temporary
        raise OSError("killed before the rename")

    monkeypatch.setattr(os, "replace", crash)
    with pytest.raises(OSError, match="killed before the rename"):
        write(target)
    assert target.read_text() == "first version, complete"
    assert list(tmp_path.iterdir()) == [target]


def test_torch_files_round_trip_and_are_byte_identical_for_equal_content(tmp_path: Path) -> None:
    write_torch(tmp_path / "a.pt", {"w": torch.arange(4.0)})
    write_torch(tmp_path / "b.pt", {"w": torch.arange(4.0)})
    assert (tmp_path / "a.pt").read_bytes() == (tmp_path / "b.pt").read_bytes()  # no temporary name inside
    assert torch.equal(load_torch(tmp_path / "a.pt")["w"], torch.arange(4.0))


def test_npz_with_pickled_objects_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "evil.npz"
    np.savez(path, images=np.array([{"not": "an array"}], dtype=object))
    with pytest.raises(UserError, match="holds pickled objects"):
        load_npz(path)
