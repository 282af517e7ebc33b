"""Training and evaluation loops over data held as tensors and batched by index.

The notebook feeds a ``DataLoader`` with a per-image ``ToTensor`` transform and
two worker processes; here the whole split is one float tensor on the device
and each batch is an index into it, which removes the data pipeline's cost.
Every random draw comes from two generators (batch order, latent noise) whose
states are saved in each checkpoint, so a resumed run is bit-identical to an
uninterrupted one.
"""

import logging
import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import torch
from tqdm import tqdm

from vae import interrupt
from vae.errors import UserError
from vae.model import EVAL_BATCH, VAE, negative_elbo

log = logging.getLogger("vae")

TERMS = ("loss", "recon", "kl")
HISTORY_COLUMNS = ("epoch", *(f"{split}_{term}" for split in ("train", "val") for term in TERMS))


def make_optimizer(model: VAE, lr: float) -> torch.optim.Adam:
    """The notebook's Adam, with the fused kernel (same update, far fewer kernel calls)."""
    return torch.optim.Adam(model.parameters(), lr=lr, fused=True)


@dataclass
class TrainState:
    """Everything a run needs to continue exactly where it stopped."""

    model: VAE
    optimizer: torch.optim.Adam
    shuffle_gen: torch.Generator  # batch order, on the CPU
    noise_gen: torch.Generator  # reparameterization noise, on the model's device
    epoch: int = 0
    history: list[dict[str, float]] | None = None

    @classmethod
    def new(cls, input_dim: int, hidden_dim: int, latent_dim: int, lr: float, seed: int,
            device: torch.device) -> "TrainState":
        torch.manual_seed(seed)  # weight initialization
        model = VAE(input_dim, hidden_dim, latent_dim).to(device)
        return cls(model, make_optimizer(model, lr),
                   torch.Generator().manual_seed(seed),
                   torch.Generator(device=device).manual_seed(seed + 1), 0, [])

    def to_dict(self, run_key: str) -> dict[str, Any]:
        return {
            "run_key": run_key,  # what the run was trained from (vae.checkpoint.run_key)
            "epoch": self.epoch,
            "config": self.model.config,
            "model": self.model.state_dict(),
            "optimizer": self.optimizer.state_dict(),
            "rng": {"shuffle": self.shuffle_gen.get_state(), "noise": self.noise_gen.get_state()},
            # A float64 table, not a list of dicts: pickled dicts of strings can differ in
            # bytes between a fresh and a resumed run, and checkpoints must be identical.
            "history": torch.tensor([[row[c] for c in HISTORY_COLUMNS] for row in self.history],
                                    dtype=torch.float64).reshape(-1, len(HISTORY_COLUMNS)),
        }

    def load_dict(self, saved: dict[str, Any]) -> None:
        self.model.load_state_dict(saved["model"])
        self.optimizer.load_state_dict(saved["optimizer"])
        self.shuffle_gen.set_state(saved["rng"]["shuffle"])
        self.noise_gen.set_state(saved["rng"]["noise"].cpu())
        self.epoch = saved["epoch"]
        self.history = [dict(zip(HISTORY_COLUMNS, row)) for row in saved["history"].tolist()]
        for row in self.history:
            row["epoch"] = int(row["epoch"])


def train_epoch(state: TrainState, x: torch.Tensor, batch_size: int, epoch: int,
                progress: bool = True) -> dict[str, float]:
    """One pass over ``x`` in shuffled batches; returns per-image loss, recon and KL.

    Batch losses are kept on the device and checked once per epoch (no per-batch
    synchronization); a non-finite one raises ``UserError`` naming the epoch and
    batch, before anything of this epoch is saved.
    """
    model, optimizer = state.model, state.optimizer
    model.train()
    n = len(x)
    order = torch.randperm(n, generator=state.shuffle_gen).to(x.device)
    starts = range(0, n, batch_size)
    sums = torch.zeros(len(starts), 3, device=x.device)
    for i, start in enumerate(tqdm(starts, desc=f"epoch {epoch}", unit="batch", leave=False,
                                   disable=None if progress else True, mininterval=1.0)):
        # index_select copies whole rows; x[idx] goes through the general indexing kernel, ~4x slower
        xb = x.index_select(0, order[start:start + batch_size])
        loss, recon, kld = negative_elbo(model, xb, state.noise_gen)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        torch.stack((loss.detach(), recon.detach(), kld.detach()), out=sums[i])  # no temporary
        interrupt.check(epoch, i + 1)
    bad = (~torch.isfinite(sums[:, 0])).nonzero()
    if len(bad):
        raise UserError(f"non-finite loss at epoch {epoch}, batch {int(bad[0]) + 1}; the last good "
                        "checkpoint is kept; lower lr or check the data, then rerun")
    return dict(zip(TERMS, (sums.sum(0) / n).tolist()))


@torch.no_grad()
def evaluate_elbo(model: VAE, x: torch.Tensor, seed: int) -> dict[str, float]:
    """Per-image loss, recon and KL on ``x`` (one latent sample per image, seeded)."""
    model.eval()
    gen = torch.Generator(device=x.device).manual_seed(seed)
    sums = torch.zeros(3, device=x.device)
    for start in range(0, len(x), EVAL_BATCH):
        xb = x[start:start + EVAL_BATCH]
        sums += torch.stack(negative_elbo(model, xb, gen))
    return dict(zip(TERMS, (sums / len(x)).tolist()))


def fit(state: TrainState, train_x: torch.Tensor, val_x: torch.Tensor, batch_size: int,
        num_epochs: int, seed: int, on_epoch: Callable[[TrainState], None] | None = None,
        progress: bool = True) -> TrainState:
    """Train from ``state.epoch`` to ``num_epochs``, calling ``on_epoch`` after each epoch.

    ``on_epoch`` is where the caller saves a checkpoint; an interruption loses
    at most the epoch in progress.
    """
    epochs = tqdm(range(state.epoch + 1, num_epochs + 1), desc="training", unit="epoch",
                  initial=state.epoch, total=num_epochs, disable=None if progress else True)
    for epoch in epochs:
        train = train_epoch(state, train_x, batch_size, epoch, progress)
        val = evaluate_elbo(state.model, val_x, seed)
        if not all(math.isfinite(v) for v in val.values()):
            raise UserError(f"non-finite validation loss after epoch {epoch}; the last good "
                            "checkpoint is kept; lower lr or check the data, then rerun")
        state.epoch = epoch
        state.history.append({"epoch": epoch, **{f"train_{k}": v for k, v in train.items()},
                              **{f"val_{k}": v for k, v in val.items()}})
        log.info("epoch %d/%d | train loss %.4f (recon %.4f kl %.4f) | val loss %.4f",
                 epoch, num_epochs, train["loss"], train["recon"], train["kl"], val["loss"])
        if on_epoch is not None:
            on_epoch(state)
    return state
