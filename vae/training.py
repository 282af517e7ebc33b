"""Training and evaluation loops over data held as tensors and batched by index.

The notebook feeds a ``DataLoader`` with a per-image ``ToTensor`` transform and
two worker processes; here the whole split is one float tensor on the device
and each batch is an index into it, which removes the data pipeline's cost.
Every random draw comes from generators (batch order, latent noise, and with the
``binarized`` likelihood the training pixels) whose states are saved in each
checkpoint, so a resumed run is bit-identical to an uninterrupted one.
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
from vae.model import EVAL_BATCH, VAE, binarize, multi_sample_objective, negative_elbo

log = logging.getLogger("vae")

TERMS = ("loss", "recon", "kl")
HISTORY_COLUMNS = ("epoch", *(f"{split}_{term}" for split in ("train", "val") for term in TERMS))
OBJECTIVE_COLUMN = "train_objective"  # the loss a multi-sample objective minimized, per image


IWAE_STAGES = 8  # Burda et al. (2016): stage i = 0..7 lasts 3^i epochs at lr * 10^(-i/7)
IWAE_EPOCHS = (3**IWAE_STAGES - 1) // 2  # 3280
LR_SCHEDULES = ("constant", "iwae")


def make_optimizer(model: VAE, lr: float, eps: float = 1e-8) -> torch.optim.Adam:
    """The notebook's Adam, with the fused kernel (same update, far fewer kernel calls)."""
    return torch.optim.Adam(model.parameters(), lr=lr, eps=eps, fused=True)


def logit_of_mean(x: torch.Tensor) -> torch.Tensor:
    """Per-pixel logit of the images' mean, clipped to [0.001, 0.999] (Burda et al.'s output bias)."""
    return torch.logit(x.mean(0).clamp(0.001, 0.999))


@dataclass(frozen=True)
class Schedule:
    """What each step minimizes, and how the learning rate and the KL term's weight change during training.

    ``objective`` and ``train_samples``: the notebook's one-sample ELBO (``elbo``, 1), the
    ELBO averaged over k samples, or the k-sample importance-weighted bound (``iwae``).

    ``lr_schedule``: ``constant``, or ``iwae``, Burda et al.'s: stage i = 0..7 lasts 3^i
    epochs at ``lr * 10^(-i/7)`` (3280 epochs), scaled to span ``lr_schedule_epochs``.
    The KL weight rises linearly, batch by batch, from 0 to ``beta`` over the first
    ``kl_warmup_epochs`` epochs (Bowman et al. 2016), and stays at ``beta`` without warm-up.
    """

    lr: float = 1e-3
    lr_schedule: str = "constant"
    lr_schedule_epochs: int = IWAE_EPOCHS
    beta: float = 1.0
    kl_warmup_epochs: int = 0
    objective: str = "elbo"  # or iwae: Burda et al.'s k-sample bound
    train_samples: int = 1  # latent samples per image and step (k)

    @property
    def multi_sample(self) -> bool:
        """Whether steps use ``vae.model.multi_sample_objective`` (anything but the notebook's one-sample ELBO)."""
        return self.objective != "elbo" or self.train_samples > 1

    def lr_at(self, epoch: int) -> float:
        """The learning rate of ``epoch`` (1, 2, ...)."""
        if self.lr_schedule == "constant":
            return self.lr
        paper_epochs = (epoch - 1) * IWAE_EPOCHS / self.lr_schedule_epochs  # done, in the paper's epochs
        stage = max(i for i in range(IWAE_STAGES) if (3**i - 1) // 2 <= paper_epochs)
        return self.lr * 10 ** (-stage / 7)

    def kl_weight_at(self, epochs_done: float) -> float:
        """The KL weight after ``epochs_done`` epochs (fractional within an epoch)."""
        if self.kl_warmup_epochs == 0:
            return self.beta
        return self.beta * min(1.0, epochs_done / self.kl_warmup_epochs)


@dataclass
class TrainState:
    """Everything a run needs to continue exactly where it stopped."""

    model: VAE
    optimizer: torch.optim.Adam
    shuffle_gen: torch.Generator  # batch order, on the CPU
    noise_gen: torch.Generator  # reparameterization noise, on the model's device
    binarize_gen: torch.Generator | None = None  # training pixels' 0/1 draws (``binarized`` only)
    epoch: int = 0
    history: list[dict[str, float]] | None = None

    @classmethod
    def new(cls, model_config: dict[str, Any], lr: float, seed: int, device: torch.device,
            adam_eps: float = 1e-8, output_bias: torch.Tensor | None = None) -> "TrainState":
        """A fresh model (``VAE(**model_config)``, seeded init), its Adam and generators.

        ``output_bias`` replaces the decoder's last bias (MLP only), e.g. ``logit_of_mean``.
        """
        torch.manual_seed(seed)  # weight initialization
        model = VAE(**model_config).to(device)
        if output_bias is not None:
            with torch.no_grad():
                model.decoder.net[-2].bias.copy_(output_bias)
        binarize_gen = torch.Generator(device).manual_seed(seed + 2) if model.likelihood == "binarized" else None
        return cls(model, make_optimizer(model, lr, adam_eps),
                   torch.Generator().manual_seed(seed),
                   torch.Generator(device=device).manual_seed(seed + 1), binarize_gen, 0, [])

    def history_columns(self) -> tuple[str, ...]:
        """The history's columns: a multi-sample objective's value is added after the ELBO terms."""
        extra = (OBJECTIVE_COLUMN,) if self.history and OBJECTIVE_COLUMN in self.history[0] else ()
        return HISTORY_COLUMNS + extra

    def generators(self) -> dict[str, torch.Generator]:
        gens = {"shuffle": self.shuffle_gen, "noise": self.noise_gen}
        return gens if self.binarize_gen is None else gens | {"binarize": self.binarize_gen}

    def to_dict(self, run_key: str) -> dict[str, Any]:
        return {
            "run_key": run_key,  # what the run was trained from (vae.checkpoint.run_key)
            "epoch": self.epoch,
            "config": self.model.config,
            "model": self.model.state_dict(),
            "optimizer": self.optimizer.state_dict(),
            "rng": {name: gen.get_state() for name, gen in self.generators().items()},
            # A float64 table, not a list of dicts: pickled dicts of strings can differ in
            # bytes between a fresh and a resumed run, and checkpoints must be identical.
            "history": torch.tensor([[row[c] for c in self.history_columns()] for row in self.history],
                                    dtype=torch.float64).reshape(-1, len(self.history_columns())),
        }

    def load_dict(self, saved: dict[str, Any]) -> None:
        self.model.load_state_dict(saved["model"])
        self.optimizer.load_state_dict(saved["optimizer"])
        for name, gen in self.generators().items():
            gen.set_state(saved["rng"][name].cpu())
        self.epoch = saved["epoch"]
        columns = HISTORY_COLUMNS + ((OBJECTIVE_COLUMN,) if saved["history"].shape[1] > len(HISTORY_COLUMNS) else ())
        self.history = [dict(zip(columns, row)) for row in saved["history"].tolist()]
        for row in self.history:
            row["epoch"] = int(row["epoch"])


def train_epoch(state: TrainState, x: torch.Tensor, batch_size: int, epoch: int,
                progress: bool = True, schedule: Schedule = Schedule()) -> dict[str, float]:
    """One pass over ``x`` in shuffled batches; returns per-image loss, recon and KL.

    The step minimizes recon + w * KL with w from ``schedule`` (or ``schedule``'s multi-sample
    objective, whose value per image is returned too, as ``objective``); the loss returned is
    the unweighted one-sample negative ELBO, whatever the step minimized.

    Batch losses are kept on the device and checked once per epoch (no per-batch
    synchronization); a non-finite one raises ``UserError`` naming the epoch and
    batch, before anything of this epoch is saved.
    """
    model, optimizer = state.model, state.optimizer
    model.train()
    n = len(x)
    order = torch.randperm(n, generator=state.shuffle_gen).to(x.device)
    starts = range(0, n, batch_size)
    terms = TERMS + (("objective",) if schedule.multi_sample else ())
    sums = torch.zeros(len(starts), len(terms), device=x.device)
    for i, start in enumerate(tqdm(starts, desc=f"epoch {epoch}", unit="batch", leave=False,
                                   disable=None if progress else True, mininterval=1.0)):
        # index_select copies whole rows; x[idx] goes through the general indexing kernel, ~4x slower
        xb = x.index_select(0, order[start:start + batch_size])
        if state.binarize_gen is not None:
            xb = binarize(xb, state.binarize_gen)
        weight = schedule.kl_weight_at(epoch - 1 + i / len(starts))
        if schedule.multi_sample:
            objective, loss, recon, kld = multi_sample_objective(model, xb, schedule.objective, schedule.train_samples,
                                                                 state.noise_gen, weight)
            values = (loss.detach(), recon.detach(), kld.detach(), objective.detach())
        else:
            loss, recon, kld = negative_elbo(model, xb, state.noise_gen)
            objective = loss if weight == 1.0 else recon + weight * kld
            values = (loss.detach(), recon.detach(), kld.detach())
        optimizer.zero_grad(set_to_none=True)
        objective.backward()
        optimizer.step()
        torch.stack(values, out=sums[i])  # no temporary
        interrupt.check(epoch, i + 1)
    bad = (~torch.isfinite(sums[:, 0])).nonzero()
    if len(bad):
        raise UserError(f"non-finite loss at epoch {epoch}, batch {int(bad[0]) + 1}; the last good "
                        "checkpoint is kept; lower lr or check the data, then rerun")
    return dict(zip(terms, (sums.sum(0) / n).tolist()))


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
        progress: bool = True, schedule: Schedule = Schedule()) -> TrainState:
    """Train from ``state.epoch`` to ``num_epochs``, calling ``on_epoch`` after each epoch.

    With the ``binarized`` likelihood, ``val_x`` should be binarized once by the caller
    (``vae.model.fixed_binarization``), so that every epoch is validated on the same bits.

    ``on_epoch`` is where the caller saves a checkpoint; an interruption loses
    at most the epoch in progress.
    """
    epochs = tqdm(range(state.epoch + 1, num_epochs + 1), desc="training", unit="epoch",
                  initial=state.epoch, total=num_epochs, disable=None if progress else True)
    for epoch in epochs:
        if schedule.lr_schedule != "constant":
            for group in state.optimizer.param_groups:
                group["lr"] = schedule.lr_at(epoch)
        train = train_epoch(state, train_x, batch_size, epoch, progress, schedule)
        val = evaluate_elbo(state.model, val_x, seed)
        if not all(math.isfinite(v) for v in val.values()):
            raise UserError(f"non-finite validation loss after epoch {epoch}; the last good "
                            "checkpoint is kept; lower lr or check the data, then rerun")
        state.epoch = epoch
        objective = {OBJECTIVE_COLUMN: train.pop("objective")} if "objective" in train else {}
        state.history.append({"epoch": epoch, **{f"train_{k}": v for k, v in train.items()},
                              **{f"val_{k}": v for k, v in val.items()}, **objective})
        log.info("epoch %d/%d | train loss %.4f (recon %.4f kl %.4f) | val loss %.4f",
                 epoch, num_epochs, train["loss"], train["recon"], train["kl"], val["loss"])
        if on_epoch is not None:
            on_epoch(state)
    return state
