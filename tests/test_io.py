"""Atomic writes, stages' outputs moved into place together, one-line write errors, and pickle-free loading."""

import errno
import os
import re
from pathlib import Path

import numpy as np
import pytest
import torch

from vae.errors import DamagedFile, UserError, environment_problem
from vae.io import (
    ArraySpec,
    atomic_path,
    load_npz,
    load_torch,
    staged,
    write_bytes,
    write_json,
    write_npz,
    write_text,
    write_torch,
)


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
        raise OSError(errno.EIO, "killed before the rename")

    monkeypatch.setattr(os, "replace", crash)
    with pytest.raises(OSError, match="killed before the rename") as info:
        write(target)
    assert info.value.filename == str(target)  # the file the user knows, not the temporary's name
    assert target.read_text() == "first version, complete"
    assert list(tmp_path.iterdir()) == [target]


def test_a_full_disk_is_one_line_naming_the_final_path_and_the_size(tmp_path: Path,
                                                                    monkeypatch: pytest.MonkeyPatch) -> None:
    target = tmp_path / "model.pt"

    def full(self: Path, data: bytes) -> int:
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), str(self))

    monkeypatch.setattr(Path, "write_bytes", full)
    with pytest.raises(OSError) as info:
        write_bytes(target, bytes(3 * 2**20))
    assert (info.value.errno, info.value.filename, info.value.needed_bytes) == (errno.ENOSPC, str(target), 3 * 2**20)
    assert list(tmp_path.iterdir()) == []
    line = environment_problem(info.value)
    assert re.fullmatch(rf"no space left writing {re.escape(str(target))} \(3\.0 MB to write, [\d.]+ [kM]B free\); "
                        r"free (space|at least [\d.]+ [kM]B) on that disk \(or move the repository to a bigger one\), "
                        r"then rerun `dvc repro`", line), line


def outputs(root: Path, version: str) -> tuple[Path, Path]:
    """A stage's two outputs, a file and a folder holding a file, written with ``version`` as content."""
    file, folder = root / "metrics.json", root / "epochs"
    folder.mkdir()
    file.write_text(version)
    (folder / "epoch_001.pt").write_text(version)
    return file, folder


def contents(file: Path, folder: Path) -> tuple[str, dict[str, str]]:
    return file.read_text(), {p.name: p.read_text() for p in folder.iterdir()}


def test_staged_outputs_replace_the_old_ones_together(tmp_path: Path) -> None:
    file, folder = outputs(tmp_path, "old")
    (folder / "epoch_002.pt").write_text("old")  # a file the new run does not write: gone with the old folder
    with staged(file, folder) as (tmp_file, tmp_folder):
        assert tmp_file.parent == file.parent and tmp_folder.parent == folder.parent  # same file system
        tmp_file.write_text("new")
        tmp_folder.mkdir()
        (tmp_folder / "epoch_001.pt").write_text("new")
        assert contents(file, folder) == ("old", {"epoch_001.pt": "old", "epoch_002.pt": "old"})
    assert contents(file, folder) == ("new", {"epoch_001.pt": "new"})
    assert sorted(p.name for p in tmp_path.iterdir()) == ["epochs", "metrics.json"]


@pytest.mark.parametrize("fail", ["raise", "leave one out"])
def test_a_failed_stage_leaves_the_last_outputs_and_no_temporaries(tmp_path: Path, fail: str) -> None:
    file, folder = outputs(tmp_path, "old")
    with pytest.raises(RuntimeError) as info, staged(file, folder) as (tmp_file, tmp_folder):
        tmp_file.write_text("new")
        if fail == "raise":
            raise RuntimeError("killed mid-stage")
    assert str(info.value) == ("killed mid-stage" if fail == "raise" else f"the stage did not write {folder}")
    assert contents(file, folder) == ("old", {"epoch_001.pt": "old"})
    assert sorted(p.name for p in tmp_path.iterdir()) == ["epochs", "metrics.json"]


def test_leftovers_of_a_killed_stage_are_removed_before_it_reruns(tmp_path: Path) -> None:
    folder = tmp_path / "epochs"
    (tmp_path / ".epochs.staged").mkdir()
    (tmp_path / ".epochs.staged" / "epoch_009.pt").write_text("from the killed run")
    with staged(folder) as (tmp_folder,):
        assert not tmp_folder.exists()
        tmp_folder.mkdir()
    assert list(folder.iterdir()) == []


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


SPLIT_LIKE = {"images": ArraySpec(np.uint8, ("n", 28, 28)), "labels": ArraySpec(np.integer, ("n",))}


def damaged_npz(path: Path, case: str) -> None:
    """Write at ``path`` an .npz damaged as ``case`` says (starting from a good one where it can)."""
    good = {"images": np.zeros((5, 28, 28), np.uint8), "labels": np.arange(5, dtype=np.uint8)}
    write_npz(path, **good)
    data = path.read_bytes()
    damage = {
        "truncated": lambda: path.write_bytes(data[: len(data) // 2]),
        "empty": lambda: path.write_bytes(b""),
        "random bytes": lambda: path.write_bytes(np.random.default_rng(0).bytes(500)),
        "a flipped byte": lambda: path.write_bytes(data[:100] + bytes([data[100] ^ 0xFF]) + data[101:]),
        "missing array": lambda: write_npz(path, images=good["images"]),
        "wrong dtype": lambda: write_npz(path, images=good["images"].astype(np.float32), labels=good["labels"]),
        "wrong shape": lambda: write_npz(path, images=good["images"][:, :27], labels=good["labels"]),
        "sizes disagree": lambda: write_npz(path, images=good["images"], labels=good["labels"][:4]),
        "missing": lambda: path.unlink(),
        "a folder": lambda: (path.unlink(), path.mkdir()),
    }
    damage[case]()


@pytest.mark.parametrize("case, problem", [
    ("a folder", "is a folder, not a file"),
    ("truncated", "is truncated or damaged, not a readable .npz archive (File is not a zip file)"),
    ("empty", "is empty (0 bytes)"),
    ("random bytes", "is not an .npz archive (its first bytes are not a zip archive's"),
    ("a flipped byte", "is truncated or damaged, not a readable .npz archive (Bad CRC-32 for file 'images.npy')"),
    ("missing array", "lacks the array 'labels' (it holds 'images')"),
    ("wrong dtype", "holds 'images' as float32, not uint8"),
    ("wrong shape", "holds 'images' of shape (5, 27, 28), not (5, 28, 28)"),
    ("sizes disagree", "holds 'labels' of shape (4,), not (5,)"),
    ("missing", "is missing"),
])
def test_a_damaged_npz_is_one_line_naming_the_path_the_problem_and_the_restore_command(
        tmp_path: Path, case: str, problem: str) -> None:
    path = tmp_path / "train.npz"
    damaged_npz(path, case)
    with pytest.raises(DamagedFile) as info:
        load_npz(path, SPLIT_LIKE, stage="split")
    assert str(info.value).startswith(f"{path} {problem}") and "\n" not in str(info.value)
    assert str(info.value).endswith(f"; restore it with `dvc checkout --force {path}`, or `dvc repro -f -s split` "
                                    "where DVC's cache does not hold it")
    assert "pickled" not in str(info.value)  # random bytes are not "pickled objects"


def torch_file(path: Path, case: str) -> None:
    """Write at ``path`` a torch file damaged as ``case`` says."""
    write_torch(path, {"config": {}, "model": {"w": torch.zeros(3)}})
    data = path.read_bytes()
    damage = {
        "truncated": lambda: path.write_bytes(data[: len(data) // 2]),
        "empty": lambda: path.write_bytes(b""),
        "random bytes": lambda: path.write_bytes(np.random.default_rng(0).bytes(500)),
        "pickled objects": lambda: torch.save({"model": {}, "payload": Path("/etc/passwd")}, path),
        "a bare pickle": lambda: path.write_bytes(__import__("pickle").dumps({"model": {}})),
        "missing key": lambda: write_torch(path, {"model": {}}),
        "missing": lambda: path.unlink(),
    }
    damage[case]()


@pytest.mark.parametrize("case, problem", [
    ("truncated", "is truncated or damaged, not a readable torch file (PytorchStreamReader failed reading zip "
                  "archive: failed finding central directory)"),
    ("empty", "is empty (0 bytes)"),
    ("random bytes", "is not a torch file (its first bytes are not a zip archive's"),
    ("pickled objects", "holds pickled objects besides tensors (refused: unpickling can run code)"),
    ("a bare pickle", "holds pickled objects, not a zip archive of arrays (refused: unpickling can run code)"),
    ("missing key", "is not a file this pipeline wrote there (it lacks 'config')"),
    ("missing", "is missing"),
])
def test_a_damaged_torch_file_is_one_line_without_torchs_advice(tmp_path: Path, case: str, problem: str,
                                                                recwarn: pytest.WarningsRecorder) -> None:
    path = tmp_path / "model.pt"
    torch_file(path, case)
    with pytest.raises(DamagedFile) as info:
        load_torch(path, keys=("config", "model"), stage="train")
    message = str(info.value)
    assert message.startswith(f"{path} {problem}") and "\n" not in message
    assert message.endswith(f"restore it with `dvc checkout --force {path}`, or `dvc repro -f -s train` where DVC's "
                            "cache does not hold it")
    assert "weights_only" not in message and not [w for w in recwarn if "pickle" in str(w.message)]


def test_a_damaged_file_without_a_known_stage_still_says_how_to_restore_it(tmp_path: Path) -> None:
    path = tmp_path / "model.pt"
    path.write_bytes(b"")
    with pytest.raises(DamagedFile) as info:
        load_torch(path)
    assert str(info.value).endswith("or `dvc repro -f -s <the stage that writes it>` where DVC's cache does not "
                                    "hold it") and info.value.stage is None


def test_a_folder_that_cannot_move_into_place_leaves_the_last_one(tmp_path: Path,
                                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    file, folder = outputs(tmp_path, "old")
    rename = Path.rename

    def refuse_the_new_folder(self: Path, target: Path) -> Path:
        if self.name == ".epochs.staged":
            raise OSError(errno.EXDEV, os.strerror(errno.EXDEV), str(self))
        return rename(self, target)

    monkeypatch.setattr(Path, "rename", refuse_the_new_folder)
    with pytest.raises(OSError), staged(folder) as (tmp_folder,):
        tmp_folder.mkdir()
        (tmp_folder / "epoch_001.pt").write_text("new")
    assert contents(file, folder) == ("old", {"epoch_001.pt": "old"})
    assert sorted(p.name for p in tmp_path.iterdir()) == ["epochs", "metrics.json"]
