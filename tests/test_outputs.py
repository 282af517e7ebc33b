"""An environment failure is one line that says what to do, and leaves no half output (tests/test_io.py: `staged`)."""

import errno
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import REPO_ROOT as REPO
from tests.conftest import synthetic_arrays
from vae.data.idx import format_idx
from vae.errors import UserError, environment_problem, one_line
from vae.io import staged, write_text


def test_a_failure_where_dvc_removed_the_outputs_leaves_nothing(tmp_path: Path) -> None:
    with pytest.raises(UserError), staged(tmp_path / "processed") as (folder,):
        write_text(folder / "train.npz", "half")
        raise UserError("bad")
    assert list(tmp_path.iterdir()) == []


def test_the_error_names_the_output_not_its_temporary_path(tmp_path: Path) -> None:
    with pytest.raises(OSError) as caught, staged(tmp_path / "processed") as (folder,):
        raise OSError(errno.ENOSPC, "No space left on device", str(folder / "test.npz"))
    assert caught.value.filename == str(tmp_path / "processed/test.npz")


@pytest.mark.parametrize("code, start", [
    (errno.EROFS, "cannot write {path}: its file system is read-only; make it writable, then rerun `dvc repro`"),
    (errno.EACCES, "permission denied for {path}; give this user read and write access to it and to {folder}"),
    (errno.EPERM, "permission denied for {path}; give this user read and write access to it and to {folder}"),
    (errno.ENOENT, "{path} does not exist; make it (`dvc repro`) or restore it, then rerun `dvc repro`"),
    (errno.EDQUOT, "disk quota exceeded writing {path} ("),
])
def test_each_environment_failure_is_one_line_naming_the_path_and_the_fix(tmp_path: Path, code: int,
                                                                          start: str) -> None:
    path = tmp_path / "reports/metrics.json"
    line = one_line(OSError(code, os.strerror(code), str(path)))
    assert line is not None and line.startswith(start.format(path=path, folder=path.parent)), line


def test_other_errors_stay_loud() -> None:
    assert one_line(OSError(errno.EBADF, "Bad file descriptor")) is None  # a bug, not the environment
    assert one_line(ValueError("a bug")) is None
    assert one_line(UserError("fix params.yaml")) == "fix params.yaml"
    assert environment_problem(OSError(errno.ENOSPC, "full"), rerun="the command").endswith("then rerun the command")


@pytest.fixture
def small_disk(tmp_path: Path):
    """A 1 MiB tmpfs: a disk that really fills up (root only; skipped, saying why, elsewhere)."""
    mount = tmp_path / "disk"
    mount.mkdir()
    proc = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=1m", "tmpfs", str(mount)], capture_output=True,
                          text=True)
    if proc.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs to fill ({proc.stderr.strip() or 'not root'})")
    try:
        yield mount
    finally:
        subprocess.run(["umount", str(mount)], check=True)


@pytest.mark.e2e
def test_split_on_a_really_full_disk_is_one_line_and_leaves_nothing(tmp_path: Path, small_disk: Path) -> None:
    raw = tmp_path / "raw"
    raw.mkdir()
    for name, array in synthetic_arrays(n_train=3000).items():  # 2.4 MB of images: more than the disk holds
        (raw / name).write_bytes(format_idx(array))
    shutil.copy(REPO / "params.yaml", tmp_path / "params.yaml")
    proc = subprocess.run([sys.executable, "-m", "stages.split", "--raw", str(raw), "--out",
                           str(small_disk / "processed")], cwd=tmp_path, capture_output=True, text=True,
                          env={**os.environ, "PYTHONPATH": str(REPO)}, timeout=120)
    assert proc.returncode == 1 and "Traceback" not in proc.stderr
    assert re.fullmatch(rf"error: no space left writing {small_disk}/processed/train\.npz \(\d\.\d MB to write, "
                        r"[\d.]+ [kM]B free\); free at least [\d.]+ [kM]B on that disk \(or move the repository to "
                        r"a bigger one\), then rerun `dvc repro`", proc.stderr.strip().splitlines()[-1]), proc.stderr
    assert list(small_disk.iterdir()) == []
