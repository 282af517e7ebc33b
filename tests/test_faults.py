"""The fault matrix: each kind of fault a user causes, in the stages it reaches, on the small pipeline.

Each case injects one fault (a damaged input: truncated, random bytes, empty, or another file
of the right kind; an output path blocked by a file or a folder, or read-only; SIGINT or
SIGTERM as a stage starts, mid-work, or once its work is done), runs the stage as a user
would (`dvc repro -s STAGE`), and checks what docs/reliability.md promises: the stage's exit
code, exactly one `error:` line and no traceback, every output the run did not own
byte-identical to before, and that the restore commands the line prints, run as printed,
give back a pipeline that `dvc status` calls up to date.

One copy of the small pipeline serves every case (``repo``): each case ends by restoring it,
which is what it tests, and a case that fails is reset for the next.
"""

import hashlib
import os
import re
import shlex
import shutil
import subprocess
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from tests.commands import run
from tests.conftest import signal_env
from vae.runtime.dvc_yaml import read_stage, stage_names

pytestmark = [pytest.mark.e2e, pytest.mark.usefixtures("data_source")]

UP_TO_DATE = "Data and pipelines are up to date"
RESTORE = re.compile(r"`((?:dvc|git) checkout [^`]+)`")  # `dvc repro -f -s ...` is the fallback, not run


@pytest.fixture(scope="module")
def faults_project(pipeline: dict, tmp_path_factory: pytest.TempPathFactory) -> Path:
    copy = tmp_path_factory.mktemp("faults") / "project"
    shutil.copytree(pipeline["repo"], copy, symlinks=True)
    return copy


@pytest.fixture
def repo(faults_project: Path) -> Iterator[Path]:
    """The shared copy, up to date; reset after a case that did not leave it so."""
    yield faults_project
    if UP_TO_DATE not in run(faults_project, "dvc", "status"):
        run(faults_project, "git", "checkout", "--", ".")
        run(faults_project, "bash", "-c", "git show HEAD:params.yaml > params.yaml")  # what checkout may leave
        run(faults_project, "dvc", "checkout", "--force")


def outputs(repo: Path) -> dict[str, bytes]:
    """Every file of every declared output, with its digest (DVC's .gitignore files aside)."""
    files: dict[str, bytes] = {}
    for stage in stage_names(repo / "dvc.yaml"):
        for out in read_stage(stage, repo / "dvc.yaml").outs:
            path = repo / out
            for file in ([path] if path.is_file() else sorted(path.rglob("*")) if path.is_dir() else []):
                if file.is_file():
                    files[str(file.relative_to(repo))] = hashlib.sha256(file.read_bytes()).digest()
    return files


def stage(repo: Path, name: str, *options: str, env: dict[str, str] | None = None) -> tuple[int, str]:
    """``dvc repro -s [options] name``: the stage's exit code (0 where DVC ran it to the end) and the output."""
    out = run(repo, "dvc", "repro", "-s", *options, name, fails=None, env=env)
    code = re.search(r"exited with (\d+)", out)
    return (int(code.group(1)) if code else 0), out


def error_line(out: str) -> str:
    """The one `error:` line of ``out``; asserts there is exactly one and no traceback."""
    assert "Traceback" not in out, out
    lines = [line for line in out.splitlines() if line.startswith("error:")]
    assert len(lines) == 1, out
    return lines[0]


def restore_as_printed(repo: Path, line: str) -> None:
    """Run the restore commands ``line`` prints (or `dvc repro`, where it only says to rerun); check the result."""
    commands = RESTORE.findall(line) or (["dvc repro"] if "`dvc repro`" in line else [])
    assert commands, f"no restore command in: {line}"
    for command in commands:
        run(repo, *shlex.split(command))
    assert UP_TO_DATE in run(repo, "dvc", "status"), f"not up to date after {commands}"


def unchanged(before: dict[str, bytes], after: dict[str, bytes], owned: list[str]) -> list[str]:
    """Files of ``before`` that changed or went, outside ``owned`` (paths the case itself damaged or DVC removed)."""
    return [name for name, digest in before.items()
            if after.get(name) != digest and not any(name == o or name.startswith(f"{o}/") for o in owned)]


def removed_on_run(repo: Path, name: str) -> list[str]:
    return list(read_stage(name, repo / "dvc.yaml").removed_on_run)


# -- damaged inputs -----------------------------------------------------------------------------

def truncated(repo: Path, path: Path) -> bytes:
    return path.read_bytes()[: path.stat().st_size // 2]


def random_bytes(repo: Path, path: Path) -> bytes:
    return bytes(os.urandom(path.stat().st_size))


def empty(repo: Path, path: Path) -> bytes:
    return b""


def another(name: str) -> Callable[[Path, Path], bytes]:
    """A readable file of the same kind that is not this one (a bad copy, a wrong name)."""
    def bytes_of(repo: Path, path: Path) -> bytes:
        return (repo / name).read_bytes()
    bytes_of.__name__ = f"another file ({name})"
    return bytes_of


@pytest.mark.parametrize("path, damage, reader, problem", [
    ("data/processed/train.npz", truncated, "train", "is truncated or damaged"),
    ("data/processed/val.npz", another("models/latent_density.npz"), "train", "lacks the array"),
    ("data/raw/train-labels-idx1-ubyte", truncated, "split", "is truncated or corrupt"),
    ("models/model.pt", random_bytes, "evaluate", "is not a torch file"),
    ("models/model.pt", another("models/classifier.pt"), "embed-latents", "is not a file this pipeline wrote"),
    ("models/classifier.pt", empty, "evaluate", "is empty (0 bytes)"),
    ("models/latent_density.npz", another("data/processed/test.npz"), "sample", "lacks the array"),
], ids=lambda v: getattr(v, "__name__", v) if callable(v) else v)
def test_a_damaged_input_is_one_line_whose_restore_command_works(repo: Path, path: str, damage, reader: str,
                                                                 problem: str) -> None:
    before = outputs(repo)
    (repo / path).write_bytes(damage(repo, repo / path))
    code, out = stage(repo, reader)
    line = error_line(out)
    assert code == 1 and line.startswith(f"error: {path} {problem}") and "weights_only" not in line, out
    assert unchanged(before, outputs(repo), [path, *removed_on_run(repo, reader)]) == []
    restore_as_printed(repo, line)
    assert outputs(repo) == before


def test_a_damaged_training_state_is_set_aside_and_the_run_is_the_same(repo: Path) -> None:
    before = outputs(repo)
    state = repo / "models/train_state.pt"
    state.write_bytes(random_bytes(repo, state))
    code, out = stage(repo, "train")
    assert code == 0 and "Traceback" not in out and "error:" not in out, out
    assert "models/train_state.pt is not a torch file" in out and "set it aside as models/train_state.pt.corrupt" in out
    assert (repo / "models/train_state.pt.corrupt").exists()
    assert outputs(repo) == before  # retrained from scratch: the same bytes
    assert UP_TO_DATE in run(repo, "dvc", "status")
    (repo / "models/train_state.pt.corrupt").unlink()


# -- a folder of images with a fault (dataset_name: folder) -------------------------------------

def _png(path: Path) -> None:
    from PIL import Image

    path.parent.mkdir(parents=True, exist_ok=True)
    Image.new("L", (28, 28), 128).save(path)


def _classes(folder: Path, counts: dict[str, int]) -> None:
    for name, n in counts.items():
        for i in range(n):
            _png(folder / name / f"{i}.png")


def undecodable(folder: Path) -> None:
    _classes(folder, {"a": 20})
    (folder / "a/broken.jpg").write_bytes(b"\xff\xd8\xff not a jpeg")


def empty_class(folder: Path) -> None:
    _classes(folder, {"a": 20})
    (folder / "b").mkdir()
    (folder / "b/Thumbs.db").write_text("x")


def class_missing_from_test(folder: Path) -> None:
    _classes(folder / "train", {"a": 20, "b": 20})
    _classes(folder / "test", {"a": 5})


def only_non_images(folder: Path) -> None:
    folder.mkdir(parents=True)
    for name in (".DS_Store", "Thumbs.db", "notes.txt"):
        (folder / name).write_text("x")


def too_few(folder: Path) -> None:
    _classes(folder, {"a": 12})


@pytest.mark.parametrize("fault, problem", [
    (undecodable, "data/bad/a/broken.jpg cannot be decoded as a JPEG, PNG, GIF or WebP image"),
    (empty_class, "data/bad/b: the class folder 'b' holds no JPEG, PNG, GIF or WebP image; add images to it"),
    (class_missing_from_test, "data/bad/train/b: the class 'b' is in train/ but not in test/; add test images"),
    (only_non_images, "image_folder = data/bad holds no JPEG, PNG, GIF or WebP image (ignored 3 other files"),
    (too_few, "image_folder = data/bad gives 1 test images, fewer than the 2"),
], ids=lambda v: getattr(v, "__name__", None) if callable(v) else None)
def test_a_folder_of_images_with_a_fault_is_one_line_naming_the_file(repo: Path, fault, problem: str) -> None:
    before = outputs(repo)
    fault(repo / "data/bad")
    committed = (repo / "params.yaml").read_text()
    (repo / "params.yaml").write_text(committed.replace("dataset_name: MNIST", "dataset_name: folder", 1)
                                      .replace("image_folder: data/images", "image_folder: data/bad", 1))
    code, out = stage(repo, "split")
    line = error_line(out)
    assert code == 1 and line.startswith(f"error: {problem}"), out
    assert unchanged(before, outputs(repo), removed_on_run(repo, "split")) == []
    (repo / "params.yaml").write_text(committed)  # the user goes back to the dataset that ran
    shutil.rmtree(repo / "data/bad")
    restore_as_printed(repo, line)
    assert outputs(repo) == before


# -- blocked and read-only output paths ---------------------------------------------------------

# Outputs that persist: DVC removes whatever stands where an output that does not persist goes before the
# stage runs (and stops with its own line where a file stands for the folder of one: docs/reliability.md).
@pytest.mark.parametrize("path, blocker, writer", [
    ("models/epochs", "file", "train"),
    ("models/model.pt", "folder", "train"),
    ("reports/train/reconstructions", "file", "train"),
])
def test_a_blocked_output_is_one_line_before_any_work(repo: Path, tmp_path: Path, path: str, blocker: str,
                                                      writer: str) -> None:
    before = outputs(repo)
    kept = tmp_path / "kept"
    (repo / path).rename(kept)  # what the user had moved away before putting something in its place
    (repo / path).mkdir() if blocker == "folder" else (repo / path).write_text("in the way\n")
    code, out = stage(repo, writer, "-f")
    line = error_line(out)
    assert code == 1 and line.startswith(f"error: {path} cannot be written: "), out
    assert unchanged(before, outputs(repo), [path, *removed_on_run(repo, writer)]) == []
    assert "move it away" in line
    shutil.rmtree(repo / path) if blocker == "folder" else (repo / path).unlink()  # as the line says
    kept.rename(repo / path)
    restore_as_printed(repo, line)
    assert outputs(repo) == before


def mount_read_only(folder: Path) -> str | None:
    """Make ``folder`` a read-only bind mount of itself; why not, or None."""
    if os.geteuid() != 0 or not shutil.which("mount"):
        return "needs root and mount(8) for a read-only bind mount (root ignores a folder's permission bits)"
    for args in (["mount", "--bind", str(folder), str(folder)], ["mount", "-o", "remount,bind,ro", str(folder)]):
        proc = subprocess.run(args, capture_output=True, text=True)
        if proc.returncode != 0:
            subprocess.run(["umount", str(folder)], capture_output=True)
            return f"`{' '.join(args)}` failed: {proc.stderr.strip()}"
    return None


def test_a_read_only_output_folder_is_one_line_before_any_work(repo: Path) -> None:
    """Under `dvc repro`, DVC meets the read-only folder first (it makes a persisted output's files writable)
    and stops in its own one line; the stage run by hand (a script, a cluster job) stops in ours."""
    before = outputs(repo)
    folder = repo / "models/epochs"
    reason = mount_read_only(folder)
    if reason:
        pytest.skip(reason)
    try:
        _, under_dvc = stage(repo, "train", "-f")
        by_hand = run(repo, *shlex.split(read_stage("train", repo / "dvc.yaml").cmd), fails=True)
    finally:
        subprocess.run(["umount", str(folder)], check=True)
    assert "Traceback" not in under_dvc and "ERROR: failed to reproduce 'train': [Errno 30] Read-only file system: " \
        f"'{folder}/" in under_dvc, under_dvc
    line = error_line(by_hand)
    assert line.startswith("error: models/epochs cannot be written: models/epochs is read-only to this user"), line
    assert outputs(repo) == before
    restore_as_printed(repo, line)


# -- SIGINT and SIGTERM -------------------------------------------------------------------------

@pytest.mark.parametrize("name, signal_at", [
    ("train", "SIGINT@start"),
    ("train", "SIGINT@write"),
    ("train", "SIGTERM@done"),
    ("split", "SIGINT@write"),
    ("evaluate", "SIGTERM@start"),
    ("evaluate", "SIGINT@write"),
    ("evaluate", "SIGINT@done"),
    ("sample", "SIGTERM@write"),
])
def test_an_interrupt_keeps_what_it_says_and_its_line_restores_the_rest(repo: Path, tmp_path: Path, name: str,
                                                                        signal_at: str) -> None:
    before = outputs(repo)
    code, out = stage(repo, name, "-f", env=signal_env(signal_at, once=tmp_path / "signalled"))
    assert (tmp_path / "signalled").exists(), f"the {signal_at} seam never fired in {name}"
    if signal_at.endswith("@done"):  # the work is done: not a failure
        assert code == 0 and "error:" not in out and "Traceback" not in out, out
        assert outputs(repo) == before and UP_TO_DATE in run(repo, "dvc", "status")
        return
    line = error_line(out)
    assert code == 130 and line.startswith(f"error: {name} interrupted"), out
    assert unchanged(before, outputs(repo), removed_on_run(repo, name)) == []
    restore_as_printed(repo, line)
    assert outputs(repo) == before


# -- DVC's own sharp edges ----------------------------------------------------------------------

def test_a_value_dvc_exp_run_refused_is_named_with_the_command_that_restores_params_yaml(repo: Path) -> None:
    """DVC writes `-S` values into params.yaml and leaves them when a stage fails (as wide as the old value,
    `git status` may not even show it, and `git checkout -- params.yaml` keeps it): the line says what does."""
    committed = (repo / "params.yaml").read_text()
    out = run(repo, "dvc", "exp", "run", "-S", "lr=-0.01", fails=True)  # as wide as 0.001
    line = error_line(out)
    assert line.startswith("error: params.yaml: lr = -0.01 is not a finite number > 0; "), out
    assert (repo / "params.yaml").read_text() != committed  # what DVC left
    restore = re.search(r"`(git show HEAD:params.yaml > params.yaml)`", line)
    assert restore, line
    run(repo, "bash", "-c", restore.group(1))
    assert (repo / "params.yaml").read_text() == committed
    assert UP_TO_DATE in run(repo, "dvc", "status")
