"""The stage command line and the machine it runs on: peak memory on every platform, required paths."""

import subprocess
import sys
import types
from pathlib import Path

import pytest
import torch

from vae import numerics
from vae.errors import UserError
from vae.runtime import machine

REPO = Path(__file__).resolve().parent.parent


@pytest.mark.parametrize("platform, maxrss, mib", [("linux", 2048 * 1024, 2048.0), ("darwin", 2048 * 2**20, 2048.0)])
def test_peak_memory_is_read_in_the_units_of_each_os(monkeypatch, platform, maxrss, mib):
    fake = types.SimpleNamespace(RUSAGE_SELF=0, getrusage=lambda who: types.SimpleNamespace(ru_maxrss=maxrss))
    monkeypatch.setitem(sys.modules, "resource", fake)
    monkeypatch.setattr(sys, "platform", platform)
    assert machine.peak_memory_mib() == mib


def test_no_resource_module_means_no_peak_memory(monkeypatch):
    monkeypatch.setitem(sys.modules, "resource", None)  # as on Windows: importing it fails
    assert machine.peak_memory_mib() is None


@pytest.mark.e2e
def test_a_stage_run_without_its_paths_says_which_are_missing(tmp_path):
    result = subprocess.run([sys.executable, "-m", "stages.split", "--raw", "data/raw"], cwd=REPO,
                            capture_output=True, text=True, timeout=120)
    assert result.returncode == 2
    assert result.stderr.strip().splitlines()[-1].endswith("the following arguments are required: --out")


def test_check_params_validates_params_yaml_without_loading_pytorch():
    """DVC runs check-params before every experiment that changes a param: it skips PyTorch's import."""
    code = ("import runpy, sys; runpy.run_module('stages.check_params', run_name='__main__'); "
            "print('torch' in sys.modules)")
    result = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    assert "[check-params] done" in result.stderr
    assert result.stdout.strip() == "False"


def run_in_process(monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture, name: str, main, *paths: str,
                   argv: tuple[str, ...] = (), cwd: Path = REPO, dvc_stage: str = "") -> tuple[int, str]:
    """``run_stage(name, main, *paths)`` in this process, in ``cwd``: its exit code and stderr.

    ``dvc_stage``: run as `dvc repro` runs that stage (it sets DVC_STAGE)."""
    import signal

    from vae.runtime.cli import run_stage

    monkeypatch.chdir(cwd)
    monkeypatch.setattr(sys, "argv", [name, *argv])
    monkeypatch.delenv("DVC_STAGE", raising=False)
    if dvc_stage:
        monkeypatch.setenv("DVC_STAGE", dvc_stage)
    handlers = signal.getsignal(signal.SIGINT), signal.getsignal(signal.SIGTERM)
    try:
        with numerics.torch_settings_kept():  # run_stage configures torch from params
            run_stage(name, main, *paths)
        code = 0
    except SystemExit as exit_:
        code = exit_.code
    finally:
        signal.signal(signal.SIGINT, handlers[0])
        signal.signal(signal.SIGTERM, handlers[1])
        torch.set_flush_denormal(False)  # run_stage flushed subnormals for the process
    return code, capsys.readouterr().err


def test_the_stage_that_remakes_a_damaged_file_is_read_from_dvc_yaml() -> None:
    from vae.runtime.dvc_yaml import stage_writing

    assert stage_writing("models/epochs/epoch_003.pt", REPO / "dvc.yaml") == "train"
    assert stage_writing("data/processed/test.npz", REPO / "dvc.yaml") == "split"
    assert stage_writing("models/classifier.pt", REPO / "dvc.yaml") == "classifier"
    assert stage_writing("nowhere.pt", REPO / "dvc.yaml") is None


def test_a_damaged_input_is_one_error_line_naming_the_stage_that_remakes_it(monkeypatch, capsys) -> None:
    from vae.errors import DamagedFile

    def main(args) -> None:
        raise DamagedFile("models/model.pt", "is empty (0 bytes)")  # as vae.model.load_model's reader raises it

    code, err = run_in_process(monkeypatch, capsys, "evaluate", main)
    assert code == 1
    assert err.strip().splitlines() == [
        "error: models/model.pt is empty (0 bytes); restore it with `dvc checkout --force models/model.pt`, or "
        "`dvc repro -f -s train` where DVC's cache does not hold it"]


EVALUATE_ARGS = ("--model", "models/model.pt", "--classifier", "models/classifier.pt", "--latent-density",
                 "models/latent_density.npz", "--train", "data/processed/train.npz", "--test",
                 "data/processed/test.npz", "--metrics", "reports/evaluate/metrics.json", "--kl-per-dim",
                 "reports/evaluate/kl_per_dim.csv")
TRAIN_ARGS = ("--train", "data/processed/train.npz", "--val", "data/processed/val.npz", "--model", "models/model.pt",
              "--epochs", "models/epochs", "--state", "models/train_state.pt", "--reconstructions",
              "reports/train/reconstructions", "--history", "reports/train/history.csv", "--metrics",
              "reports/train/metrics.json", "--environment", "reports/train/environment.json")


def never(args) -> None:
    raise AssertionError("the stage ran although an output path is blocked")


@pytest.mark.parametrize("stage, argv, block, expected", [
    ("train", TRAIN_ARGS, "models/epochs",
     "error: models/epochs cannot be written: a file is in the way of the folder; move it away (or delete it), "
     "then rerun `dvc repro`"),
    ("evaluate", EVALUATE_ARGS, "reports/evaluate",
     "error: reports/evaluate/metrics.json cannot be written: reports/evaluate is a file where a folder is needed; "
     "move it away (or delete it), then rerun `dvc repro`"),
    ("evaluate", EVALUATE_ARGS, "reports/evaluate/kl_per_dim.csv/",
     "error: reports/evaluate/kl_per_dim.csv cannot be written: a folder is in the way of the file; move it away "
     "(or delete it), then rerun `dvc repro`"),
])
def test_a_blocked_output_path_is_one_line_before_any_work_and_removes_nothing(
        monkeypatch, capsys, tmp_path: Path, stage: str, argv: tuple[str, ...], block: str, expected: str) -> None:
    (tmp_path / "dvc.yaml").write_text((REPO / "dvc.yaml").read_text())
    kept = {"models/train_state.pt": b"state", "reports/train/history.csv": b"h", "reports/train/metrics.json": b"m"}
    for name, data in kept.items():
        (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / name).write_bytes(data)
    blocked = tmp_path / block
    blocked.parent.mkdir(parents=True, exist_ok=True)
    blocked.mkdir() if block.endswith("/") else blocked.write_text("in the way")
    code, err = run_in_process(monkeypatch, capsys, stage, never, *[a[2:].replace("-", "_") for a in argv[::2]],
                               argv=argv, cwd=tmp_path)
    assert code == 1 and err.strip().splitlines() == [expected]
    assert {name: (tmp_path / name).read_bytes() for name in kept} == kept


def test_outputs_that_can_be_written_pass_the_check(tmp_path: Path) -> None:
    from vae.io import check_outputs

    (tmp_path / "models/epochs").mkdir(parents=True)
    (tmp_path / "models/model.pt").write_bytes(b"old model")  # replaced, not blocking
    check_outputs([tmp_path / "models/epochs", tmp_path / "models/model.pt", tmp_path / "new/folder/file.json"])


@pytest.mark.parametrize("read_only, output", [("models/epochs", "models/epochs"), ("models", "models/model.pt"),
                                               ("models", "models/new/weights.pt")])
def test_an_output_in_a_folder_this_user_cannot_write_is_refused(monkeypatch, tmp_path: Path, read_only: str,
                                                                 output: str) -> None:
    """The folder the output goes in (or the output's own, if a folder) must be writable: a read-only mount, or
    another user's folder. os.access stands in for the mount (root writes through a folder's permission bits)."""
    import os

    from vae.io import check_outputs

    (tmp_path / "models/epochs").mkdir(parents=True)
    locked = tmp_path / read_only
    monkeypatch.setattr(os, "access", lambda path, mode: Path(path) != locked)
    with pytest.raises(UserError) as info:
        check_outputs([tmp_path / output])
    assert str(info.value) == (f"{tmp_path / output} cannot be written: {locked} is read-only to this user (a "
                               f"read-only file system, or another user's folder: `ls -ld {locked}` shows the "
                               "owner); remount it read-write or give this user write access, then rerun `dvc repro`")


def ctrl_c(args) -> None:
    raise KeyboardInterrupt  # as interrupt's handler raises it on SIGINT


@pytest.mark.parametrize("stage, dvc_stage, expected", [
    ("evaluate", "evaluate", "error: evaluate interrupted before its outputs were complete, so it wrote none (it "
     "writes them together at the end); DVC removed its last outputs before it ran, to get them back: "
     "`git checkout -- reports/evaluate/kl_per_dim.csv reports/evaluate/metrics.json`; rerun `dvc repro` to write "
     "them"),
    ("evaluate", "", "error: evaluate interrupted before its outputs were complete, so it wrote none (it writes them "
     "together at the end); its earlier outputs are as they were; rerun `dvc repro` to write them"),
    ("train", "train", "error: train interrupted; the completed epochs are saved; rerun `dvc repro` to continue from "
     "the last one"),
    ("check-params", "check-params", "error: check-params interrupted; it writes nothing; rerun `dvc repro`"),
])
def test_ctrl_c_says_per_stage_what_is_kept_and_what_dvc_removed(monkeypatch, capsys, stage: str, dvc_stage: str,
                                                                  expected: str) -> None:
    code, err = run_in_process(monkeypatch, capsys, stage, ctrl_c, dvc_stage=dvc_stage)
    assert code == 130 and err.strip().splitlines() == [expected]
    assert "completed work is saved" not in err


def test_ctrl_c_after_the_work_is_done_is_no_failure(monkeypatch, capsys) -> None:
    import os
    import signal

    from vae.runtime import cli

    def ctrl_c_while_logging_done() -> float:
        os.kill(os.getpid(), signal.SIGINT)  # delivered while the stage logs "done"
        return 1.0

    monkeypatch.setattr(cli, "peak_memory_mib", ctrl_c_while_logging_done)
    try:
        code, err = run_in_process(monkeypatch, capsys, "evaluate", lambda args: None)
    except KeyboardInterrupt:
        pytest.fail("a Ctrl-C after the stage's work was done escaped run_stage (a traceback)")
    assert code == 0 and "Traceback" not in err and "interrupted" not in err


@pytest.mark.parametrize("exp_name, root_is_here, says", [("", True, False), ("bonny-yegg", True, True),
                                                          ("bonny-yegg", False, False)],
                         ids=["dvc repro", "dvc exp run", "dvc exp run --queue"])
def test_a_bad_value_set_by_exp_run_says_how_to_restore_params_yaml(monkeypatch, tmp_path: Path, exp_name: str,
                                                                    root_is_here: bool, says: bool) -> None:
    """Only an experiment run in the workspace leaves its -S value in params.yaml (a queued one runs in a copy)."""
    from vae.runtime.cli import stage_params

    (tmp_path / "params.yaml").write_text((REPO / "params.yaml").read_text().replace("lr: 0.001", "lr: -0.01"))
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("DVC_EXP_NAME", exp_name)
    monkeypatch.setenv("DVC_ROOT", str(tmp_path if root_is_here else REPO))
    with pytest.raises(UserError) as info:
        stage_params()
    restore = "; a value set with `dvc exp run -S` stays in params.yaml after this failure (`git status` may " \
              "not show it): `git show HEAD:params.yaml > params.yaml` restores the committed file"
    assert str(info.value).endswith(restore) == says and str(info.value).startswith("params.yaml: lr = -0.01 ")
