"""The train stage end to end on small synthetic data: determinism, kill-and-resume, Ctrl-C, NaN.

Each run is a real ``python -m stages.train`` subprocess in a temporary working
folder holding params.yaml and data/processed/{train,val}.npz.
"""

import hashlib
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml

from vae import interrupt
from vae.checkpoint import CheckpointDir, load_trusted
from vae.errors import UserError
from vae.io import write_npz
from vae.training import TrainState, fit

REPO = Path(__file__).resolve().parent.parent
EPOCHS = 4
N_TRAIN = 12_000  # ~1 s per epoch on 2 cores with the default model: long enough to kill mid-epoch


def make_workdir(path: Path, **overrides: object) -> Path:
    params = yaml.safe_load((REPO / "params.yaml").read_text())
    params.update({"num_epochs": EPOCHS, "device": "cpu", "latent_dim": 2, **overrides})
    path.mkdir(parents=True, exist_ok=True)
    (path / "params.yaml").write_text(yaml.safe_dump(params))
    rng = np.random.default_rng(0)
    for name, n in (("train", N_TRAIN), ("val", 500)):
        # Strokes rather than noise: images with structure give a loss that keeps moving.
        images = (rng.random((n, 28, 28)) < 0.15).astype(np.uint8) * 255
        write_npz(path / "data/processed" / f"{name}.npz", images=images,
                  labels=rng.integers(0, 10, n, dtype=np.uint8), index=np.arange(n))
    return path


def start_train(workdir: Path) -> subprocess.Popen:
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    return subprocess.Popen([sys.executable, "-m", "stages.train"], cwd=workdir, env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def run_train(workdir: Path) -> subprocess.CompletedProcess:
    proc = start_train(workdir)
    out, err = proc.communicate(timeout=600)
    assert proc.returncode == 0, err
    return subprocess.CompletedProcess(proc.args, proc.returncode, out, err)


def wait_for(path: Path, proc: subprocess.Popen, timeout: float = 300) -> None:
    deadline = time.monotonic() + timeout
    while not path.exists():
        assert proc.poll() is None, proc.communicate()[1]
        assert time.monotonic() < deadline, f"{path} never appeared"
        time.sleep(0.02)


def digests(workdir: Path) -> dict[str, str]:
    """SHA-256 of every file the stage wrote (model, checkpoints, reports)."""
    files = [p for d in ("models", "reports") for p in sorted((workdir / d).rglob("*")) if p.is_file()]
    return {str(p.relative_to(workdir)): hashlib.sha256(p.read_bytes()).hexdigest() for p in files}


@pytest.fixture(scope="module")
def clean_run(tmp_path_factory: pytest.TempPathFactory) -> dict[str, str]:
    workdir = make_workdir(tmp_path_factory.mktemp("clean"))
    run_train(workdir)
    return digests(workdir)


def test_outputs_of_a_clean_run(clean_run: dict[str, str]) -> None:
    expected = {"models/model.pt", "reports/train/history.csv", "reports/train/metrics.json",
                *(f"models/checkpoints/epoch_{e:03d}.pt" for e in range(1, EPOCHS + 1)),
                *(f"reports/train/reconstructions/recon_epoch_{e}.png" for e in range(1, EPOCHS + 1))}
    assert set(clean_run) == expected


def test_two_clean_runs_are_byte_identical(clean_run: dict[str, str], tmp_path: Path) -> None:
    workdir = make_workdir(tmp_path)
    run_train(workdir)
    assert digests(workdir) == clean_run


def test_sigkill_mid_epoch_then_resume_is_bit_identical(clean_run: dict[str, str], tmp_path: Path) -> None:
    workdir = make_workdir(tmp_path)
    proc = start_train(workdir)
    wait_for(workdir / "models/checkpoints/epoch_002.pt", proc)
    time.sleep(0.2)  # inside epoch 3
    proc.kill()
    proc.wait()
    assert CheckpointDir(workdir / "models/checkpoints").epochs() == [1, 2]
    assert not (workdir / "models/model.pt").exists()

    resumed = run_train(workdir)
    assert "resuming from models/checkpoints/epoch_002.pt" in resumed.stderr
    assert digests(workdir) == clean_run


@pytest.mark.parametrize("signum", [signal.SIGINT, signal.SIGTERM])
def test_ctrl_c_or_sigterm_stops_cleanly_keeping_completed_epochs(tmp_path: Path, signum: int) -> None:
    workdir = make_workdir(tmp_path)
    proc = start_train(workdir)
    wait_for(workdir / "models/checkpoints/epoch_001.pt", proc)
    proc.send_signal(signum)
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == 130, err
    assert "Traceback" not in err and err.strip().splitlines()[-1].startswith("error: train interrupted")
    saved = load_trusted(workdir / "models/checkpoints/epoch_001.pt")
    assert saved["epoch"] == 1 and saved["history"].shape == (1, 7)
    assert not (workdir / "models/model.pt").exists()


def test_changed_params_start_over(clean_run: dict[str, str], tmp_path: Path) -> None:
    workdir = make_workdir(tmp_path, num_epochs=1, lr=0.002)
    run_train(workdir)  # leaves a checkpoint made with lr 0.002
    (workdir / "params.yaml").write_text((workdir / "params.yaml").read_text().replace("lr: 0.002", "lr: 0.001")
                                         .replace("num_epochs: 1", f"num_epochs: {EPOCHS}"))
    rerun = run_train(workdir)
    assert "made with other params, data or code: starting over" in rerun.stderr
    assert digests(workdir) == clean_run


def test_fewer_epochs_reuse_checkpoints_and_match_a_shorter_run(tmp_path: Path) -> None:
    short = make_workdir(tmp_path / "short", num_epochs=2)
    run_train(short)
    longer = make_workdir(tmp_path / "long", num_epochs=3)
    run_train(longer)
    (longer / "params.yaml").write_text((longer / "params.yaml").read_text().replace("num_epochs: 3",
                                                                                     "num_epochs: 2"))
    rerun = run_train(longer)
    assert "resuming from models/checkpoints/epoch_002.pt" in rerun.stderr
    assert digests(longer) == digests(short)


def test_non_finite_loss_names_epoch_and_batch_and_keeps_last_good_checkpoint(tmp_path: Path) -> None:
    state = TrainState.new(784, 32, 2, 1e-3, 0, torch.device("cpu"))
    x = torch.rand(300, 784)
    checkpoints = CheckpointDir(tmp_path)

    def save_then_break(s: TrainState) -> None:
        checkpoints.save(s.epoch, s.to_dict("run"))
        with torch.no_grad():  # poison the weights: epoch 2's first batch goes NaN
            s.model.decoder.net[4].bias.fill_(float("nan"))

    with pytest.raises(UserError, match=r"non-finite loss at epoch 2, batch 1; the last good checkpoint"):
        fit(state, x, x[:50], batch_size=128, num_epochs=3, seed=0, on_epoch=save_then_break, progress=False)
    assert checkpoints.epochs() == [1]


def test_pickled_objects_in_a_checkpoint_are_refused(tmp_path: Path) -> None:
    path = tmp_path / "evil.pt"
    torch.save({"model": {}, "payload": Path("/etc/passwd")}, path)  # any non-tensor object is pickled
    with pytest.raises(UserError, match="not a plain tensor file"):
        load_trusted(path)


def test_a_lost_interrupt_still_stops_the_training_loop(monkeypatch: pytest.MonkeyPatch) -> None:
    before = signal.getsignal(signal.SIGINT), signal.getsignal(signal.SIGTERM)
    try:
        interrupt.install()
        with pytest.raises(KeyboardInterrupt):
            os.kill(os.getpid(), signal.SIGTERM)
        # Had that KeyboardInterrupt been raised inside a finalizer, Python would have dropped it;
        # the training loop's next check stops all the same.
        state = TrainState.new(784, 16, 2, 1e-3, 0, torch.device("cpu"))
        with pytest.raises(KeyboardInterrupt):
            fit(state, torch.rand(256, 784), torch.rand(10, 784), 128, 1, 0, progress=False)
        assert state.epoch == 0
    finally:
        signal.signal(signal.SIGINT, before[0])
        signal.signal(signal.SIGTERM, before[1])
        monkeypatch.setattr(interrupt, "_requested", False)
