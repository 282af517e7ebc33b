"""Checkpoints and model files: what they hold, how they are named, and safe loading.

Everything is saved with ``torch.save`` of tensors and plain containers and
loaded with ``weights_only=True``, so a file from elsewhere cannot run code.
"""

import hashlib
import json
import logging
import re
from pathlib import Path
from typing import Any

import torch

from vae.errors import UserError
from vae.io import write_torch
from vae.model import VAE

log = logging.getLogger("vae")

_NAME = re.compile(r"epoch_(\d+)\.pt")


def load_trusted(path: str | Path, device: torch.device | str = "cpu") -> Any:
    """``torch.load`` that refuses pickled objects (only tensors and plain containers load)."""
    try:
        return torch.load(path, map_location=device, weights_only=True)
    except FileNotFoundError:
        raise UserError(f"{path} is missing; run the stage that makes it (`dvc repro`)") from None
    except Exception as err:  # weights_only raises UnpicklingError, or RuntimeError for a bad zip
        first = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
        raise UserError(f"{path} is not a plain tensor file this pipeline wrote ({first}); "
                        "delete it and rerun `dvc repro`") from None


def save_model(path: str | Path, model: VAE) -> None:
    write_torch(path, {"config": model.config, "model": model.state_dict()})


def load_model(path: str | Path, device: torch.device | str = "cpu") -> VAE:
    """Rebuild the VAE of a model file or a training checkpoint, in eval mode.

    Both store the architecture (``config``) beside the weights (``model``).
    """
    saved = load_trusted(path, device)
    model = VAE(**saved["config"]).to(device)
    model.load_state_dict(saved["model"])
    return model.eval()


def fingerprint(settings: dict[str, Any], files: list[Path]) -> str:
    """A hash of what determines a training run: settings, data files and training code."""
    code = [Path(__file__).with_name(name) for name in ("model.py", "training.py")]
    h = hashlib.sha256(json.dumps(settings, sort_keys=True).encode())
    for path in [*files, *code]:
        h.update(hashlib.sha256(path.read_bytes()).digest())
    return h.hexdigest()


class CheckpointDir:
    """A folder of per-epoch training states ``epoch_001.pt``, ``epoch_002.pt``, ..."""

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)

    def path_for(self, epoch: int) -> Path:
        return self.path / f"epoch_{epoch:03d}.pt"

    def epochs(self) -> list[int]:
        if not self.path.is_dir():
            return []
        return sorted(int(m.group(1)) for p in self.path.iterdir() if (m := _NAME.fullmatch(p.name)))

    def save(self, epoch: int, state: dict[str, Any]) -> None:
        write_torch(self.path_for(epoch), state)

    def resume_state(self, fingerprint: str, num_epochs: int) -> dict[str, Any] | None:
        """The newest state up to ``num_epochs`` made with the same fingerprint, or None.

        Checkpoints made with other params, data or code are deleted (the run
        starts over); so are those beyond ``num_epochs``, so that the folder is
        the same as an uninterrupted run's.
        """
        self.path.mkdir(parents=True, exist_ok=True)
        for stale in self.path.glob(".*.tmp"):  # left by a kill during a write
            stale.unlink()
        epochs = self.epochs()
        if not epochs:
            return None
        usable = [e for e in epochs if e <= num_epochs]
        state = load_trusted(self.path_for(usable[-1])) if usable else None
        if state is None or state["fingerprint"] != fingerprint:
            log.info("checkpoints in %s were made with other params, data or code: starting over",
                     self.path)
            self.prune(0)
            return None
        self.prune(state["epoch"])
        log.info("resuming from %s (epoch %d of %d)", self.path_for(state["epoch"]), state["epoch"],
                 num_epochs)
        return state

    def prune(self, keep_through: int) -> None:
        """Delete the checkpoints of epochs after ``keep_through``."""
        for epoch in self.epochs():
            if epoch > keep_through:
                self.path_for(epoch).unlink()
