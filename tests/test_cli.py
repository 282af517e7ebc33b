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
