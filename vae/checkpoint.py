"""What a training run keeps, and who decides when it is still valid.

Per epoch, as the notebook: the model's weights (``epoch_001.pt``, ... in the epochs
folder) and a reconstruction grid drawn when the epoch ends; for long runs, of every
``save_every``-th epoch and the last only. Once: the full training
state of the last completed epoch (weights, Adam moments, the random generators, the loss
history), from which a killed run continues bit-identically. ``model.pt`` is the
weights file of epoch ``num_epochs``, byte for byte (DVC stores it once).

The saved state is reused only if its *run key* matches: a hash of everything DVC
keys the train stage on (command, dependencies, params), read from dvc.yaml itself.
The one exception is ``num_epochs``: the first N epochs of a longer run are a
shorter run, so lowering it reuses the saved weights and raising it continues.

Everything is written with ``torch.save`` of tensors and plain containers and read
with ``vae.io.load_torch`` (``weights_only=True``), so a file from elsewhere cannot run code.
"""

import hashlib
import json
import logging
import re
from dataclasses import asdict
from pathlib import Path
from typing import Any, BinaryIO

import pandas as pd
import torch

from vae.errors import UserError
from vae.figures import reconstruction_grid
from vae.io import load_torch, write_bytes, write_csv, write_json, write_torch
from vae.model import VAE
from vae.params import Params
from vae.pipeline import read_stage
from vae.training import TrainState

log = logging.getLogger("vae")

EPOCH_FILE = re.compile(r"epoch_(\d+)\.pt")
NOT_IN_RUN_KEY = ("num_epochs",)  # a shorter run is a prefix of a longer one


def save_model(path: str | Path, model: VAE) -> None:
    write_torch(path, {"config": model.config, "model": model.state_dict()})


def load_model(path: str | Path | BinaryIO, device: torch.device | str = "cpu") -> VAE:
    """Rebuild the VAE of a model file, a per-epoch weights file or a training state, in eval mode.

    All three store the architecture (``config``) beside the weights (``model``).
    """
    saved = load_torch(path, device)
    model = VAE(**saved["config"]).to(device)
    model.load_state_dict(saved["model"])
    return model.eval()


def _hash_path(h: "hashlib._Hash", path: Path) -> None:
    files = sorted(p for p in path.rglob("*") if p.is_file()) if path.is_dir() else [path]
    for file in files:
        h.update(str(file.relative_to(path) if path.is_dir() else file).encode())
        h.update(hashlib.sha256(file.read_bytes()).digest())


def run_key(stage: str, params: Params, device: torch.device, dvc_yaml: str | Path = "dvc.yaml") -> str:
    """A hash of the stage's command, every dependency and every param it lists in ``dvc_yaml``.

    ``device`` enters as the device type it resolved to (``auto`` and ``cpu`` train the
    same on a CPU machine); ``num_epochs`` does not enter (see the module docstring).
    """
    spec = read_stage(stage, dvc_yaml)
    values = asdict(params) | {"device": device.type}
    settings = {key: values[key] for key in spec.params if key not in NOT_IN_RUN_KEY}
    h = hashlib.sha256(json.dumps({"cmd": spec.cmd, "params": settings}, sort_keys=True).encode())
    for dep in spec.deps:
        if not Path(dep).exists():
            raise UserError(f"{dep}, a dependency of {stage} in {dvc_yaml}, is missing; run `dvc repro`")
        _hash_path(h, Path(dep))
    return h.hexdigest()


class TrainingRecord:
    """The train stage's outputs: per-epoch weights and grids, the training state, model and reports."""

    def __init__(self, model: Path, epochs: Path, state: Path, reconstructions: Path, history: Path,
                 metrics: Path, save_every: int = 1) -> None:
        self.model, self.epochs, self.state = Path(model), Path(epochs), Path(state)
        self.reconstructions, self.history, self.metrics = Path(reconstructions), Path(history), Path(metrics)
        self.save_every = save_every

    def kept(self, epoch: int, num_epochs: int) -> bool:
        """Whether ``epoch``'s weights and grid are kept: every ``save_every``-th, and the last."""
        return epoch % self.save_every == 0 or epoch == num_epochs

    def weights(self, epoch: int) -> Path:
        return self.epochs / f"epoch_{epoch:03d}.pt"

    def grid(self, epoch: int) -> Path:
        return self.reconstructions / f"recon_epoch_{epoch}.png"

    def saved_epochs(self) -> list[int]:
        if not self.epochs.is_dir():
            return []
        return sorted(int(m.group(1)) for p in self.epochs.iterdir() if (m := EPOCH_FILE.fullmatch(p.name)))

    def resume(self, key: str, num_epochs: int) -> dict[str, Any] | None:
        """The saved training state if it was made with ``key`` and its weights files are all there.

        Otherwise everything a run writes per epoch is deleted and None returned (start over).
        That includes the reports, so a queued experiment never shows another run's losses.
        """
        for folder in (self.epochs, self.reconstructions, self.state.parent):
            for stale in folder.glob(".*.tmp") if folder.is_dir() else []:  # left by a kill during a write
                stale.unlink()
        saved = load_torch(self.state) if self.state.exists() else None
        if saved is not None and saved.get("run_key") == key:
            missing = self._needed(saved["epoch"], num_epochs) - set(self.saved_epochs())
            if not missing:
                log.info("resuming from %s (epoch %d; num_epochs %d)", self.state, saved["epoch"], num_epochs)
                return saved
            log.info("the weights of epoch %d are not in %s (save_every keeps every %dth): starting over",
                     min(missing), self.epochs, self.save_every)
        elif saved is not None or self.saved_epochs():
            log.info("the training state in %s was made with other params, data or code: starting over",
                     self.state)
        for stale in (self.state, self.history, self.metrics):  # `dvc exp show` must not show them as this run's
            stale.unlink(missing_ok=True)
        self._prune(0, 0)
        return None

    def _needed(self, saved_epoch: int, num_epochs: int) -> set[int]:
        """The weights files a state at ``saved_epoch`` needs to give a run of ``num_epochs``."""
        last = min(saved_epoch, num_epochs)
        return {e for e in range(1, last + 1) if e % self.save_every == 0} | ({last} if last == num_epochs else set())

    def save_epoch(self, state: TrainState, key: str, num_epochs: int, images: torch.Tensor, seed: int) -> None:
        """Everything of the epoch that just ended; the training state last, as the commit point."""
        if self.kept(state.epoch, num_epochs):
            save_model(self.weights(state.epoch), state.model)
            reconstruction_grid(self.grid(state.epoch), state.model, images, seed)
        self._write_reports(state.history)
        write_torch(self.state, state.to_dict(key))

    def finish(self, state: TrainState, num_epochs: int, images: torch.Tensor, seed: int) -> None:
        """Make the outputs those of epoch ``num_epochs`` (the state may be further along)."""
        self._prune(state.epoch, num_epochs)
        for epoch in range(1, num_epochs + 1):  # grids pruned by an earlier, shorter run
            if self.kept(epoch, num_epochs) and not self.grid(epoch).exists():
                reconstruction_grid(self.grid(epoch), load_model(self.weights(epoch), images.device), images, seed)
        write_bytes(self.model, self.weights(num_epochs).read_bytes())
        self._write_reports(state.history[:num_epochs])

    def _write_reports(self, history: list[dict[str, float]]) -> None:
        write_csv(self.history, pd.DataFrame(history))
        write_json(self.metrics, history[-1])

    def _prune(self, last_weights: int, last_grid: int) -> None:
        for epoch in self.saved_epochs():
            if epoch > last_weights:
                self.weights(epoch).unlink()
        for grid in self.reconstructions.glob("recon_epoch_*.png"):
            if int(grid.stem.rsplit("_", 1)[1]) > last_grid:
                grid.unlink()
