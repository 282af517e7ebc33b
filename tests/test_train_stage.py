"""The train stage end to end on small synthetic data: determinism, kill-and-resume, Ctrl-C, NaN,
what the saved state is keyed on, and what a run keeps on disk.

Every test that runs the stage's command is marked ``e2e`` (a subprocess); the NaN, pickle and
lost-interrupt tests run in this process and stay in ``make check``.

Each run is the real command of dvc.yaml's train stage, in a temporary working folder
holding a copy of dvc.yaml, the code it lists, params.yaml and data/processed. Kills
and interrupts are injected at an exact batch (``signal_env``: tests/faults/sitecustomize.py), never
raced with a timer.
"""

import hashlib
import json
import os
import shlex
import shutil
import signal
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml

from tests.conftest import signal_env
from vae.errors import UserError
from vae.io import load_torch, write_npz
from vae.model import VAEConfig
from vae.runtime import interrupt
from vae.runtime.dvc_yaml import read_stage
from vae.runtime.record import TrainingRecord
from vae.training import TrainingSettings, TrainState, fit

REPO = Path(__file__).resolve().parent.parent
EPOCHS = 4


def make_workdir(path: Path, **overrides: object) -> Path:
    """A train stage's folder: dvc.yaml, the code, params.yaml with ``overrides``, and synthetic split arrays.

    This file's tests of what a run saves, resumes and keeps need no default model: 1,500 images (12 batches
    an epoch: every signal injected here, at batch 5 at most, falls inside one) and a 128-unit model train
    about 5x faster through the same code, and their files stay large enough beside their fixed overhead
    (about 12 kB a run) for the disk test's 1% margin."""
    path.mkdir(parents=True, exist_ok=True)
    shutil.copy2(REPO / "dvc.yaml", path / "dvc.yaml")
    for package in ("stages", "vae"):
        shutil.copytree(REPO / package, path / package, ignore=shutil.ignore_patterns("__pycache__"))
    params = yaml.safe_load((REPO / "params.yaml").read_text())
    params.update({"num_epochs": EPOCHS, "device": "cpu", "latent_dim": 2, "hidden_dim": 128, **overrides})
    (path / "params.yaml").write_text(yaml.safe_dump(params))
    rng = np.random.default_rng(0)
    for name, n in (("train", 1_500), ("val", 500)):
        # Strokes rather than noise: images with structure give a loss that keeps moving.
        images = (rng.random((n, 28, 28)) < 0.15).astype(np.uint8) * 255
        write_npz(path / "data/processed" / f"{name}.npz", images=images,
                  labels=rng.integers(0, 10, n, dtype=np.uint8), index=np.arange(n))
    return path


def make_float32_twin(tmp_path: Path, workdir: Path) -> Path:
    """A trained copy of ``workdir``'s run (its code, params and data, not its results) with ``precision: 32-true``."""
    twin = tmp_path / "float32"
    shutil.copytree(workdir, twin, ignore=lambda folder, _: ["models", "reports"] if Path(folder) == workdir else [])
    set_params(twin, precision="32-true")
    train(twin)
    return twin


def set_params(workdir: Path, **changes: object) -> None:
    params = yaml.safe_load((workdir / "params.yaml").read_text())
    (workdir / "params.yaml").write_text(yaml.safe_dump({**params, **changes}))


def train(workdir: Path, signal_at: str = "", returncode: int = 0) -> str:
    """Run dvc.yaml's train command in ``workdir``; return its stderr (the log)."""
    env = {**os.environ, **signal_env(signal_at)} if signal_at else dict(os.environ)
    cmd = shlex.split(read_stage("train", workdir / "dvc.yaml").cmd)
    proc = subprocess.run([sys.executable, *cmd[1:]], cwd=workdir, env=env, capture_output=True, text=True,
                          timeout=600)
    assert proc.returncode == returncode, proc.stderr
    return proc.stderr


def digests(workdir: Path, leave_out: tuple[str, ...] = ()) -> dict[str, str]:
    """SHA-256 of every file the stage wrote (model, epochs, state, reports)."""
    files = [p for d in ("models", "reports") for p in sorted((workdir / d).rglob("*")) if p.is_file()]
    return {str(p.relative_to(workdir)): hashlib.sha256(p.read_bytes()).hexdigest() for p in files
            if str(p.relative_to(workdir)) not in leave_out}


def epochs_trained(log: str) -> list[int]:
    return [int(line.split()[2].split("/")[0]) for line in log.splitlines() if line.startswith("[train] epoch ")]


@pytest.fixture(scope="module")
def clean(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict[str, str]]:
    workdir = make_workdir(tmp_path_factory.mktemp("clean"))
    assert epochs_trained(train(workdir)) == [1, 2, 3, 4]
    return workdir, digests(workdir)


@pytest.mark.e2e
def test_a_run_keeps_weights_per_epoch_and_one_training_state(clean: tuple[Path, dict[str, str]]) -> None:
    workdir, files = clean
    assert set(files) == {"models/model.pt", "models/train_state.pt", "reports/train/history.csv",
                          "reports/train/metrics.json", "reports/train/environment.json",
                          *(f"models/epochs/epoch_{e:03d}.pt" for e in range(1, EPOCHS + 1)),
                          *(f"reports/train/reconstructions/recon_epoch_{e}.png" for e in range(1, EPOCHS + 1))}
    assert files["models/model.pt"] == files[f"models/epochs/epoch_{EPOCHS:03d}.pt"]  # DVC stores it once
    assert set(load_torch(workdir / "models/epochs/epoch_001.pt")) == {"config", "model"}  # weights only
    model_size = (workdir / "models/model.pt").stat().st_size
    cached = sum(p.stat().st_size for p in (workdir / "models").rglob("*") if p.is_file())
    # one model size per epoch, one for model.pt, three for the state (weights and Adam's two moments):
    # 24 for the default 20 epochs, against 61 when every epoch kept a full training state
    assert cached <= 1.01 * (EPOCHS + 4) * model_size, cached / model_size


@pytest.mark.e2e
def test_two_clean_runs_are_byte_identical(clean: tuple[Path, dict[str, str]], tmp_path: Path) -> None:
    workdir = make_workdir(tmp_path)
    train(workdir)
    assert digests(workdir) == clean[1]


@pytest.mark.e2e
def test_sigkill_in_epoch_3_then_rerun_is_bit_identical(clean: tuple[Path, dict[str, str]], tmp_path: Path) -> None:
    workdir = make_workdir(tmp_path)
    train(workdir, signal_at="SIGKILL@3.5", returncode=-signal.SIGKILL)
    record = TrainingRecord(*(workdir / p for p in ("models/model.pt", "models/epochs", "models/train_state.pt",
                                                    "reports/train/reconstructions", "reports/train/history.csv",
                                                    "reports/train/metrics.json")))
    assert record.saved_epochs() == [1, 2] and load_torch(record.state)["epoch"] == 2
    assert not record.model.exists()
    # metrics and history follow the run epoch by epoch, so `dvc exp show` shows its progress
    assert json.loads(record.metrics.read_text())["epoch"] == 2
    assert len(record.history.read_text().splitlines()) == 1 + 2

    log = train(workdir)
    assert "resuming from models/train_state.pt (epoch 2" in log and epochs_trained(log) == [3, 4]
    assert digests(workdir) == clean[1]


@pytest.mark.e2e
@pytest.mark.parametrize("overrides", [{"likelihood": "binarized"}, {"objective": "iwae", "train_samples": 3},
                                       {"precision": "bf16-mixed", "numerics": "native"},
                                       {"prior": "vampprior", "pseudo_inputs": 20, "pseudo_inputs_init": "data"},
                                       {"stochastic_layers": 2, "lower_latent_dim": 4, "activation": "gated",
                                        "prior": "vampprior", "pseudo_inputs": 10, "objective": "iwae",
                                        "train_samples": 2}],
                         ids=["binarized", "iwae", "bf16", "vampprior", "two-layers"])
def test_variant_sigkill_then_rerun_is_bit_identical(tmp_path: Path, overrides: dict[str, object]) -> None:
    """The pixels' 0/1 draws and the k samples' noise come from generators saved in the state, so
    they resume too; so does the IWAE objective's column of the history, bf16 training, the VampPrior's
    pseudo-inputs (parameters in the state) and the two-layer model's second noise."""
    clean = make_workdir(tmp_path / "clean", num_epochs=3, **overrides)
    train(clean)
    killed = make_workdir(tmp_path / "killed", num_epochs=3, **overrides)
    train(killed, signal_at="SIGKILL@2.5", returncode=-signal.SIGKILL)
    log = train(killed)
    assert "resuming from models/train_state.pt (epoch 1" in log and epochs_trained(log) == [2, 3]
    assert digests(killed) == digests(clean)
    if "likelihood" in overrides:
        assert load_torch(killed / "models/model.pt")["config"]["likelihood"] == "binarized"
    elif "precision" in overrides:  # bf16 trained another model than float32 would have
        assert digests(clean)["models/model.pt"] != digests(make_float32_twin(tmp_path, clean))["models/model.pt"]
    else:
        assert "train_objective" in (killed / "reports/train/history.csv").read_text().splitlines()[0]


@pytest.mark.e2e
def test_save_every_keeps_every_nth_epoch_and_the_last(tmp_path: Path) -> None:
    workdir = make_workdir(tmp_path / "long", num_epochs=5, save_every=2)
    train(workdir)
    kept = sorted(p.name for p in (workdir / "models/epochs").iterdir())
    assert kept == ["epoch_002.pt", "epoch_004.pt", "epoch_005.pt"]
    assert sorted(p.name for p in (workdir / "reports/train/reconstructions").iterdir()) == \
        ["recon_epoch_2.png", "recon_epoch_4.png", "recon_epoch_5.png"]
    assert len((workdir / "reports/train/history.csv").read_text().splitlines()) == 1 + 5  # every epoch's losses
    set_params(workdir, num_epochs=4)  # a kept epoch: nothing to train
    assert epochs_trained(train(workdir)) == []
    set_params(workdir, num_epochs=3)  # not kept: its weights must be trained again
    log = train(workdir)
    assert "the weights of epoch 3 are not in models/epochs" in log and epochs_trained(log) == [1, 2, 3]


@pytest.mark.e2e
@pytest.mark.parametrize("signum", [signal.SIGINT, signal.SIGTERM])
def test_ctrl_c_or_sigterm_stops_cleanly_keeping_completed_epochs(tmp_path: Path, signum: signal.Signals) -> None:
    workdir = make_workdir(tmp_path)
    err = train(workdir, signal_at=f"{signum.name}@2.3", returncode=130)
    assert "Traceback" not in err and err.strip().splitlines()[-1].startswith("error: train interrupted")
    saved = load_torch(workdir / "models/train_state.pt")
    assert saved["epoch"] == 1 and saved["history"].shape == (1, 7)
    assert not (workdir / "models/model.pt").exists()


@pytest.mark.e2e
def test_an_unchanged_rerun_resumes_and_trains_nothing(clean: tuple[Path, dict[str, str]]) -> None:
    workdir, files = clean
    log = train(workdir)
    assert f"resuming from models/train_state.pt (epoch {EPOCHS}" in log and epochs_trained(log) == []
    assert digests(workdir) == files


@pytest.mark.e2e
def test_a_change_to_any_dependency_dvc_lists_retrains_from_scratch(clean: tuple[Path, dict[str, str]],
                                                                     tmp_path: Path) -> None:
    """vae/data/split.py is a dependency of train in dvc.yaml that no hand-kept list named before."""
    workdir = make_workdir(tmp_path)
    shutil.copytree(clean[0] / "models", workdir / "models")
    shutil.copytree(clean[0] / "reports", workdir / "reports")
    with open(workdir / "vae/data/split.py", "a") as f:
        f.write("# a change DVC sees\n")
    first = train(workdir, signal_at="SIGKILL@1.2", returncode=-signal.SIGKILL)
    assert "made with other params, data or code: starting over" in first
    # the old run's losses are gone before the first new epoch ends: no stale row in `dvc exp show`
    assert not (workdir / "reports/train/metrics.json").exists()
    log = train(workdir)
    assert "made with other params, data or code: starting over" not in log  # nothing left to discard
    assert epochs_trained(log) == [1, 2, 3, 4]
    # the same results (a comment changed nothing), under a new run key
    assert digests(workdir, ("models/train_state.pt",)) == digests(clean[0], ("models/train_state.pt",))


@pytest.mark.e2e
def test_changed_params_start_over(clean: tuple[Path, dict[str, str]], tmp_path: Path) -> None:
    workdir = make_workdir(tmp_path, num_epochs=1, lr=0.002)
    train(workdir)  # leaves a state trained with lr 0.002
    set_params(workdir, lr=0.001, num_epochs=EPOCHS)
    log = train(workdir)
    assert "made with other params, data or code: starting over" in log and epochs_trained(log) == [1, 2, 3, 4]
    assert digests(workdir) == clean[1]


@pytest.mark.e2e
@pytest.mark.parametrize("damage", ["truncated", "not a state"])
def test_a_damaged_training_state_is_set_aside_and_the_run_starts_over(clean: tuple[Path, dict[str, str]],
                                                                       tmp_path: Path, damage: str) -> None:
    workdir = make_workdir(tmp_path)
    shutil.copytree(clean[0] / "models", workdir / "models")
    shutil.copytree(clean[0] / "reports", workdir / "reports")
    state = workdir / "models/train_state.pt"
    damaged = {"truncated": state.read_bytes()[:1000], "empty": b"",
               "not a state": (workdir / "models/model.pt").read_bytes()}[damage]
    state.write_bytes(damaged)
    log = train(workdir)
    assert "models/train_state.pt " in log and "; set it aside as models/train_state.pt.corrupt" in log
    assert "starting over" in log and "made with other params" not in log and "Traceback" not in log
    assert epochs_trained(log) == [1, 2, 3, 4]
    assert (workdir / "models/train_state.pt.corrupt").read_bytes() == damaged  # kept for a look, never read again
    assert digests(workdir, ("models/train_state.pt.corrupt",)) == clean[1]  # as the uninterrupted run
    assert epochs_trained(train(workdir)) == []  # the next run resumes from the new state


@pytest.mark.e2e
def test_a_blocked_epochs_folder_fails_before_train_deletes_anything(tmp_path: Path) -> None:
    workdir = make_workdir(tmp_path)
    kept = {"models/train_state.pt": b"state", "reports/train/history.csv": b"h", "reports/train/metrics.json": b"m"}
    for name, data in kept.items():
        (workdir / name).parent.mkdir(parents=True, exist_ok=True)
        (workdir / name).write_bytes(data)
    (workdir / "models/epochs").write_text("a file where the epochs folder goes")
    err = train(workdir, returncode=1)
    assert err.strip().splitlines() == ["error: models/epochs cannot be written: a file is in the way of the folder; "
                                        "move it away (or delete it), then rerun `dvc repro`"]
    assert {name: (workdir / name).read_bytes() for name in kept} == kept


def record_in(folder: Path, save_every: int = 1) -> TrainingRecord:
    return TrainingRecord(*(folder / p for p in ("models/model.pt", "models/epochs", "models/train_state.pt",
                                                 "reports/train/reconstructions", "reports/train/history.csv",
                                                 "reports/train/metrics.json")), save_every=save_every)


def test_weights_without_a_state_start_over_saying_why_not_blaming_params(tmp_path: Path,
                                                                          caplog: pytest.LogCaptureFixture) -> None:
    record = record_in(tmp_path)
    record.epochs.mkdir(parents=True)
    (record.epochs / "epoch_001.pt").write_bytes(b"weights")
    with caplog.at_level("INFO", logger="vae"):
        assert record.resume("key", 4) is None
    assert caplog.messages == [f"{record.state} is missing, and the weights in {record.epochs} alone (no optimizer "
                               "or random state) cannot continue the run exactly: starting over"]
    assert record.saved_epochs() == []


def test_a_state_missing_weights_files_says_which_in_english(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    from vae.io import write_torch

    record = record_in(tmp_path, save_every=2)
    write_torch(record.state, {"run_key": "key", "epoch": 3, "config": {}, "model": {}, "optimizer": {}, "rng": {},
                               "history": torch.zeros(3, 7)})
    with caplog.at_level("INFO", logger="vae"):
        assert record.resume("key", 4) is None
    assert caplog.messages == [f"the weights of epoch 2 are not in {record.epochs} (save_every keeps every 2nd "
                               "epoch): starting over"]


@pytest.mark.e2e
def test_fewer_epochs_reuse_the_weights_and_match_a_shorter_run(tmp_path: Path) -> None:
    short = make_workdir(tmp_path / "short", num_epochs=2)
    train(short)
    longer = make_workdir(tmp_path / "long", num_epochs=3)
    train(longer)
    three = digests(longer)
    set_params(longer, num_epochs=2)
    assert epochs_trained(train(longer)) == []
    # the same model, reports and epochs as a 2-epoch run; the state stays at epoch 3 for a later raise
    assert digests(longer, ("models/epochs/epoch_003.pt", "models/train_state.pt")) == \
        digests(short, ("models/train_state.pt",))
    set_params(longer, num_epochs=3)
    assert epochs_trained(train(longer)) == []
    assert digests(longer) == three


def test_non_finite_loss_names_epoch_and_batch_and_keeps_the_last_good_state(tmp_path: Path) -> None:
    settings = TrainingSettings(num_epochs=3, seed=0)
    state = TrainState.new(VAEConfig(hidden_dim=32, latent_dim=2), settings, torch.device("cpu"))
    x = torch.rand(300, 784)
    saved = []

    def save_then_break(s: TrainState) -> None:
        saved.append(s.epoch)
        with torch.no_grad():  # poison the weights: epoch 2's first batch goes NaN
            s.model.decoder.output_layer.bias.fill_(float("nan"))

    with pytest.raises(UserError, match=r"non-finite loss at epoch 2, batch 1; the last good checkpoint"):
        fit(state, x, x[:50], settings, on_epoch=save_then_break, progress=False)
    assert saved == [1]


def test_pickled_objects_in_a_training_state_are_refused(tmp_path: Path) -> None:
    path = tmp_path / "evil.pt"
    torch.save({"model": {}, "payload": Path("/etc/passwd")}, path)  # any non-tensor object is pickled
    with pytest.raises(UserError, match="holds pickled objects besides tensors"):
        load_torch(path)


def test_a_lost_interrupt_still_stops_the_training_loop(monkeypatch: pytest.MonkeyPatch) -> None:
    before = signal.getsignal(signal.SIGINT), signal.getsignal(signal.SIGTERM)
    monkeypatch.setattr(interrupt, "_requested", False)  # undone after the test: the flag is clear again
    try:
        interrupt.install()
        with pytest.raises(KeyboardInterrupt):
            os.kill(os.getpid(), signal.SIGTERM)
        # Had that KeyboardInterrupt been raised inside a finalizer, Python would have dropped it;
        # the training loop's next check stops all the same.
        settings = TrainingSettings(num_epochs=1, seed=0)
        state = TrainState.new(VAEConfig(hidden_dim=16, latent_dim=2), settings, torch.device("cpu"))
        with pytest.raises(KeyboardInterrupt):
            fit(state, torch.rand(256, 784), torch.rand(10, 784), settings, on_batch=interrupt.check, progress=False)
        assert state.epoch == 0
    finally:
        signal.signal(signal.SIGINT, before[0])
        signal.signal(signal.SIGTERM, before[1])
