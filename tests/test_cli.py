"""The stage command line and the machine it runs on: peak memory on every platform, required paths."""

import subprocess
import sys
import types
from pathlib import Path

import pytest

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


def run_in_process(monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture, name: str, main, *paths: str,
                   argv: tuple[str, ...] = ()) -> tuple[int, str]:
    """``run_stage(name, main, *paths)`` in this process from the repository root: its exit code and stderr."""
    import signal

    from vae.runtime.cli import run_stage

    monkeypatch.chdir(REPO)
    monkeypatch.setattr(sys, "argv", [name, *argv])
    monkeypatch.delenv("DVC_STAGE", raising=False)
    handlers = signal.getsignal(signal.SIGINT), signal.getsignal(signal.SIGTERM)
    try:
        run_stage(name, main, *paths)
        code = 0
    except SystemExit as exit_:
        code = exit_.code
    finally:
        signal.signal(signal.SIGINT, handlers[0])
        signal.signal(signal.SIGTERM, handlers[1])
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
        "error: models/model.pt is empty (0 bytes); restore it with `dvc checkout models/model.pt`, or "
        "`dvc repro -f -s train` where DVC's cache does not hold it"]
