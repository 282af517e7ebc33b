"""``numerics: portable``: the same bytes on every x86-64 CPU with AVX2, the thread count in the DVC key.

The golden test's constant was computed on an AMD EPYC and must hold on every x86-64 CPU with AVX2
(an Intel Xeon gave the same bytes for the same method; docs/performance.md, "Same bytes on every
machine"). tests/conftest.py pins portable mode before torch loads, as ``stages/__init__.py`` does.
"""

import hashlib
import os
import platform
import shlex
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from tests.test_train_stage import digests, make_workdir, train
from vae import numerics
from vae.errors import UserError
from vae.model import VAEConfig
from vae.params import Params, validate
from vae.runtime.dvc_yaml import read_stage, stage_names
from vae.runtime.machine import environment
from vae.training import TrainingSettings, TrainState, fit

REPO = Path(__file__).resolve().parent.parent
# md5 of the weights after one epoch of the default model on GOLDEN_IMAGES synthetic images, 1 thread.
GOLDEN_MD5 = "abb1e2346f7707c529b1820745bfd61a"  # torch 2.14.1 (requirements.txt)
GOLDEN_IMAGES = 2_000


def default_params(**changes: object) -> Params:
    import yaml

    return validate({**yaml.safe_load((REPO / "params.yaml").read_text()), **changes})


def weights_md5(model: torch.nn.Module) -> str:
    digest = hashlib.md5()
    for name, tensor in model.state_dict().items():
        digest.update(name.encode() + tensor.detach().contiguous().numpy().tobytes())
    return digest.hexdigest()


def train_golden_model() -> str:
    """One epoch of the default model (params.yaml's sizes and seed) on synthetic images, one thread."""
    params = default_params()
    images = torch.Generator().manual_seed(0)
    # products of uniforms: exact IEEE arithmetic, so the data are the same bytes on every CPU
    x = torch.rand(GOLDEN_IMAGES, 784, generator=images) * torch.rand(GOLDEN_IMAGES, 784, generator=images)
    settings = TrainingSettings(num_epochs=1, batch_size=params.batch_size, lr=params.lr, seed=params.seed)
    threads, onednn = torch.get_num_threads(), torch.backends.mkldnn.enabled
    numerics.configure_torch("portable", 1)
    try:
        state = TrainState.new(VAEConfig.from_params(params), settings, torch.device("cpu"))
        fit(state, x, x[:500], settings, progress=False)
    finally:
        torch.set_num_threads(threads)
        torch.backends.mkldnn.enabled = onednn
    return weights_md5(state.model)


@pytest.mark.skipif(platform.machine() not in ("x86_64", "AMD64")
                    or f"torch=={torch.__version__.split('+')[0]}" not in (REPO / "requirements.txt").read_text(),
                    reason="the golden bytes are those of requirements.txt's torch on an x86-64 CPU")
def test_portable_mode_trains_the_golden_bytes() -> None:
    """The same weights on every x86-64 CPU with AVX2. If this fails on yours, compare
    `python -c "import vae.numerics as n; import torch; print(n.report('portable'))"` with the
    environment.json of docs/results (MKL must say 'compatible', ATen 'AVX2'), and the torch version
    with requirements.txt: another torch or MKL release changes the bytes too."""
    report = numerics.report("portable")
    assert (report["mkl"], report["aten"]) == ("compatible", "AVX2"), report
    assert train_golden_model() == GOLDEN_MD5


def test_pin_sets_the_libraries_paths_and_refuses_to_come_too_late(monkeypatch: pytest.MonkeyPatch) -> None:
    for key, value in numerics.PORTABLE_ENVIRONMENT.items():
        assert os.environ[key] == value  # conftest pinned portable before torch loaded
    numerics.pin("portable")  # already in force: nothing to change, so not too late
    with pytest.raises(RuntimeError, match="numerics: native must be pinned before torch is imported"):
        numerics.pin("native")
    monkeypatch.setenv("MKL_CBWR", "AUTO")
    with pytest.raises(RuntimeError, match="numerics: portable must be pinned before torch is imported"):
        numerics.pin("portable")


def test_native_removes_the_portable_pins_a_parent_passed_on(monkeypatch: pytest.MonkeyPatch) -> None:
    """A native stage started from a portable process (a test run, a pinned shell) must not inherit
    the portable code paths; a variable the user set to another value is theirs and stays."""
    monkeypatch.setattr(numerics, "_LIBRARIES", ())  # as in a fresh process, before torch loads
    monkeypatch.setenv("MKL_CBWR", "AUTO,STRICT")
    numerics.pin("native")
    assert os.environ["MKL_CBWR"] == "AUTO,STRICT"
    assert not set(numerics.PORTABLE_ENVIRONMENT) - {"MKL_CBWR"} & set(os.environ)
    numerics.pin("portable")
    assert all(os.environ[key] == value for key, value in numerics.PORTABLE_ENVIRONMENT.items())


def test_environment_record_says_which_mode_ran_and_the_code_paths() -> None:
    env = environment(torch.device("cpu"), "portable")
    assert env["numerics"] == "portable" and env["mkl"] == "compatible" and env["aten"] == "AVX2"
    assert env["threads"] == torch.get_num_threads() and isinstance(env["openblas"], list)


@pytest.mark.parametrize(("changes", "message"), [
    ({"numerics": "fast"}, "params.yaml: numerics = 'fast' is not one of portable, native; fix it in params.yaml"),
    ({"threads": 0}, "params.yaml: threads = 0 is not an integer > 0 (the threads of every stage that computes); "
                     "fix it in params.yaml"),
    ({"precision": "bf16-mixed"}, "params.yaml: precision = 'bf16-mixed' multiplies on each CPU's own bfloat16 "
                                  "units, whose bytes are per machine; set numerics: native"),
])
def test_bad_numerics_are_refused_in_one_line(changes: dict[str, object], message: str) -> None:
    with pytest.raises(UserError) as info:
        default_params(**changes)
    assert str(info.value) == message


def test_bf16_runs_in_native_mode() -> None:
    assert default_params(precision="bf16-mixed", numerics="native").precision == "bf16-mixed"


def test_every_stage_that_computes_is_keyed_on_numerics_and_threads() -> None:
    for stage in stage_names(REPO / "dvc.yaml"):
        if stage != "check-params":  # it reads all of params.yaml, its dep
            assert {"numerics", "threads"} <= set(read_stage(stage, REPO / "dvc.yaml").params), stage


def run_stage(workdir: Path, stage: str) -> None:
    cmd = shlex.split(read_stage(stage, workdir / "dvc.yaml").cmd)
    proc = subprocess.run([sys.executable, *cmd[1:]], cwd=workdir, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr


@pytest.mark.e2e
def test_the_train_stages_weights_at_one_and_two_threads_and_the_classifier_runs_at_both(tmp_path: Path) -> None:
    """The VAE's weights do not depend on the thread count at 1 and 2 threads. Its reported losses'
    last digits may (PyTorch splits long sums across its threads), and so may the classifier's
    convolutions, which is why `threads` is a param of every stage that computes: DVC and its
    run-cache key on it, and never hand one count's outputs to another."""
    runs = {}
    for threads in (1, 2):
        workdir = make_workdir(tmp_path / f"threads-{threads}", threads=threads, classifier_epochs=1, num_epochs=1)
        (workdir / "data/processed/test.npz").write_bytes((workdir / "data/processed/val.npz").read_bytes())
        train(workdir)
        run_stage(workdir, "classifier")
        runs[threads] = digests(workdir, leave_out=("reports/train/environment.json",))
    weights = ("models/model.pt", "models/epochs/epoch_001.pt")
    assert [runs[1][path] for path in weights] == [runs[2][path] for path in weights]
