"""Atomic writes and pickle-free loading."""

from pathlib import Path

import numpy as np
import pytest

from vae.errors import UserError
from vae.io import atomic_path, load_npz, write_npz, write_text


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


def test_write_replaces_whole_files(tmp_path: Path) -> None:
    write_text(tmp_path / "f.txt", "first version, longer")
    write_text(tmp_path / "f.txt", "second")
    assert (tmp_path / "f.txt").read_text() == "second"


def test_npz_with_pickled_objects_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "evil.npz"
    np.savez(path, images=np.array([{"not": "an array"}], dtype=object))
    with pytest.raises(UserError, match="holds pickled objects"):
        load_npz(path)
