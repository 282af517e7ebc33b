"""What a training run keeps on disk, and when a saved state is still valid.

Per epoch, as the notebook: the model's weights (``epoch_001.pt``, ... in the epochs
folder) and a reconstruction grid drawn when the epoch ends; for long runs, of every
``save_every``-th epoch and the last only. Once: the full training state of the last
completed epoch (weights, Adam moments, the random generators, the loss history), from
which a killed run continues bit-identically, if its run key (``vae.runtime.run_key``)
still matches. ``model.pt`` is the weights file of epoch ``num_epochs``, byte for byte
(DVC stores it once).

Everything is written with ``torch.save`` of tensors and plain containers and read
with ``vae.io.load_torch`` (``weights_only=True``), so a file from elsewhere cannot run code.
"""

import logging
import os
import re
from pathlib import Path
from typing import Any

import pandas as pd
import torch

from vae.errors import DamagedFile, ordinal
from vae.figures import reconstruction_grid
from vae.io import load_torch, write_bytes, write_csv, write_json, write_torch
from vae.model import load_model, save_model
from vae.training import TrainState

log = logging.getLogger("vae")

EPOCH_FILE = re.compile(r"epoch_(\d+)\.pt")
STATE_KEYS = ("run_key", "epoch", "config", "model", "optimizer", "rng", "history")  # TrainState.to_dict's
CORRUPT_SUFFIX = ".corrupt"  # a damaged training state, set aside beside itself for a look, never read again


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

        Otherwise everything a run writes per epoch is deleted and None returned (start over), with
        one line saying why. That includes the reports, so a queued experiment never shows another
        run's losses. A damaged state is set aside (``train_state.pt.corrupt``), never fatal: the
        per-epoch weights files lack Adam's moments and the random generators, so no run resumed
        from them would be the uninterrupted one, and training starts over.
        """
        for folder in (self.epochs, self.reconstructions, self.state.parent):
            for stale in folder.glob(".*.tmp") if folder.is_dir() else []:  # left by a kill during a write
                stale.unlink()
        saved, why = self._read_state()
        if saved is not None and saved["run_key"] == key:
            missing = self._needed(saved["epoch"], num_epochs) - set(self.saved_epochs())
            if not missing:
                log.info("resuming from %s (epoch %d; num_epochs %d)", self.state, saved["epoch"], num_epochs)
                return saved
            why = (f"the weights of epoch {min(missing)} are not in {self.epochs} "
                   f"(save_every keeps every {ordinal(self.save_every)} epoch)")
        elif saved is not None:
            why = f"the training state in {self.state} was made with other params, data or code"
        elif why is None and self.saved_epochs():
            why = (f"{self.state} is missing, and the weights in {self.epochs} alone (no optimizer or random "
                   "state) cannot continue the run exactly")
        if why is not None:
            log.info("%s: starting over", why)
        for stale in (self.state, self.history, self.metrics):  # `dvc exp show` must not show them as this run's
            stale.unlink(missing_ok=True)
        self._prune(0, 0)
        return None

    def _read_state(self) -> tuple[dict[str, Any] | None, str | None]:
        """The saved state (None if there is none), or None and why, having set a damaged one aside."""
        if not self.state.exists():
            return None, None
        try:
            return load_torch(self.state, keys=STATE_KEYS, stage="train"), None
        except DamagedFile as err:
            aside = self.state.with_name(self.state.name + CORRUPT_SUFFIX)
            os.replace(self.state, aside)
            return None, (f"{self.state} {err.problem}; set it aside as {aside}, and since the weights files in "
                          f"{self.epochs} lack Adam's moments and the random generators, no resumed run would "
                          "equal an uninterrupted one")

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
