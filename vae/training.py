"""Training and evaluation loops over data held as tensors and batched by index.

The notebook feeds a ``DataLoader`` with a per-image ``ToTensor`` transform and
two worker processes; here the whole split is one float tensor on the device
and each batch is an index into it, which removes the data pipeline's cost.
Every random draw comes from generators (batch order, latent noise, and with the
``binarized`` likelihood the training pixels) whose states are saved in each
checkpoint, so a resumed run is bit-identical to an uninterrupted one.
"""

import contextlib
import logging
import math
from collections.abc import Callable
from dataclasses import dataclass, fields
from typing import Any

import torch
from tqdm import tqdm

from vae.errors import UserError
from vae.likelihoods import LIKELIHOODS, Likelihood
from vae.loops import EVAL_BATCH, BatchCallback
from vae.model import VAE, VAEConfig, batch_objective, negative_elbo, uses_log_weights
from vae.params import IWAE_EPOCHS, IWAE_STAGES, Params

log = logging.getLogger("vae")

TERMS = ("loss", "recon", "kl")
HISTORY_COLUMNS = ("epoch", *(f"{split}_{term}" for split in ("train", "val") for term in TERMS))
OBJECTIVE_COLUMN = "train_objective"  # the loss a log-weight objective minimized, per image




def forward_precision(precision: str, device: torch.device) -> contextlib.AbstractContextManager:
    """Where a training step's forward pass runs: float32, or ``bf16-mixed``'s autocast to bfloat16.

    Under autocast the networks' matrix products run in bfloat16 (CPUs with AVX512-BF16 or AMX,
    GPUs since Ampere, do them natively); the networks return float32 (``vae.model``), so the
    noise, the losses, the KL, the IWAE log-weights and the optimizer stay float32.
    """
    if precision == "bf16-mixed":
        return torch.autocast(device.type, dtype=torch.bfloat16)
    return contextlib.nullcontext()


def make_optimizer(model: VAE, lr: float, eps: float = 1e-8) -> torch.optim.Adam:
    """The notebook's Adam, with the fused kernel (same update, far fewer kernel calls)."""
    return torch.optim.Adam(model.parameters(), lr=lr, eps=eps, fused=True)


def logit_of_mean(x: torch.Tensor, likelihood: Likelihood = LIKELIHOODS["bernoulli"]) -> torch.Tensor:
    """The decoder output whose pixel means are the images' mean (Burda et al.'s output bias): per pixel, the
    logit of the mean clipped to [0.001, 0.999]; with the discretized logistic the mean itself (its location)."""
    return likelihood.output_of_mean(x.mean(0))


@dataclass(frozen=True)
class TrainingSettings:
    """How a model is trained: every param of the train stage but the model's architecture.

    ``objective`` and ``train_samples``: the notebook's one-sample ELBO (``elbo``, 1), the
    ELBO averaged over k samples, or the k-sample importance-weighted bound (``iwae``).

    ``lr_schedule``: ``constant``, or ``iwae``, Burda et al.'s: stage i = 0..7 lasts 3^i
    epochs at ``lr * 10^(-i/7)`` (3280 epochs), scaled to span ``lr_schedule_epochs``.
    The KL weight rises linearly, batch by batch, from 0 to ``beta`` over the first
    ``kl_warmup_epochs`` epochs (Bowman et al. 2016), and stays at ``beta`` without warm-up.

    ``precision``: ``32-true``, or ``bf16-mixed``, the forward pass under autocast to bfloat16.
    """

    batch_size: int = 128
    num_epochs: int = 20
    seed: int = 42  # initialization, batch order, noise
    lr: float = 1e-3
    adam_eps: float = 1e-8
    lr_schedule: str = "constant"
    lr_schedule_epochs: int = IWAE_EPOCHS
    beta: float = 1.0
    kl_warmup_epochs: int = 0
    objective: str = "elbo"  # or iwae: Burda et al.'s k-sample bound
    train_samples: int = 1  # latent samples per image and step (k)
    precision: str = "32-true"

    @classmethod
    def from_params(cls, params: Params) -> "TrainingSettings":
        """The settings that validated params choose: their keys of the same names."""
        return cls(**{field.name: getattr(params, field.name) for field in fields(cls)})

    def uses_log_weights(self, model: VAE) -> bool:
        """Whether steps minimize an estimate from sampled log weights, recorded as ``OBJECTIVE_COLUMN``.

        Everything but the notebook's one-sample ELBO with the analytic KL (``vae.model.uses_log_weights``).
        """
        return uses_log_weights(self.objective, self.train_samples, model.analytic_kl)

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
    def new(cls, model_config: VAEConfig, settings: TrainingSettings, device: torch.device,
            output_bias: torch.Tensor | None = None, pseudo_inputs: torch.Tensor | None = None) -> "TrainState":
        """A fresh model (``VAE(model_config)``, initialized from ``settings.seed``), its Adam and generators.

        ``output_bias`` replaces the decoder's output bias (MLP only), e.g. ``logit_of_mean``;
        ``pseudo_inputs``, images to start a VampPrior's pseudo-inputs at (``VampPrior.start_at``).
        """
        seed = settings.seed
        torch.manual_seed(seed)  # weight initialization
        model = VAE(model_config).to(device)
        if output_bias is not None:
            with torch.no_grad():
                model.decoder.output_layer.bias.copy_(output_bias)
        if pseudo_inputs is not None:
            model.prior.start_at(pseudo_inputs)
        binarize_gen = torch.Generator(device).manual_seed(seed + 2) if model.likelihood.draws_pixels else None
        return cls(model, make_optimizer(model, settings.lr, settings.adam_eps),
                   torch.Generator().manual_seed(seed),
                   torch.Generator(device=device).manual_seed(seed + 1), binarize_gen, 0, [])

    def history_columns(self) -> tuple[str, ...]:
        """The history's columns: a log-weight objective's value is added after the ELBO terms."""
        extra = (OBJECTIVE_COLUMN,) if self.history and OBJECTIVE_COLUMN in self.history[0] else ()
        return HISTORY_COLUMNS + extra

    def generators(self) -> dict[str, torch.Generator]:
        gens = {"shuffle": self.shuffle_gen, "noise": self.noise_gen}
        return gens if self.binarize_gen is None else gens | {"binarize": self.binarize_gen}

    def to_dict(self, run_key: str) -> dict[str, Any]:
        return {
            "run_key": run_key,  # what the run was trained from (vae.runtime.run_key)
            "epoch": self.epoch,
            "config": self.model.config.to_dict(),
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


def train_epoch(state: TrainState, x: torch.Tensor, epoch: int, settings: TrainingSettings, *,
                on_batch: BatchCallback | None = None, progress: bool = True) -> dict[str, float]:
    """One pass over ``x`` in shuffled batches; returns per-image loss, recon and KL.

    Each step minimizes ``vae.model.batch_objective`` with the KL weight w from ``settings``
    (recon + w * KL, or an objective of sampled log weights, whose value per image is returned
    too, as ``objective``); the loss returned is the unweighted one-sample negative ELBO,
    whatever the step minimized. ``on_batch(epoch, batch)`` runs after every step (batches
    count from 1).

    Batch losses are kept on the device and checked once per epoch (no per-batch
    synchronization); a non-finite one raises ``UserError`` naming the epoch and
    batch, before anything of this epoch is saved.
    """
    model, optimizer = state.model, state.optimizer
    model.train()
    n = len(x)
    order = torch.randperm(n, generator=state.shuffle_gen).to(x.device)
    starts = range(0, n, settings.batch_size)
    terms = TERMS + (("objective",) if settings.uses_log_weights(model) else ())
    sums = torch.zeros(len(starts), len(terms), device=x.device)
    for i, start in enumerate(tqdm(starts, desc=f"epoch {epoch}", unit="batch", leave=False,
                                   disable=None if progress else True, mininterval=1.0)):
        # index_select copies whole rows; x[idx] goes through the general indexing kernel, ~4x slower
        xb = model.likelihood.training_batch(x.index_select(0, order[start:start + settings.batch_size]),
                                             state.binarize_gen)
        weight = settings.kl_weight_at(epoch - 1 + i / len(starts))
        with forward_precision(settings.precision, x.device):
            step = batch_objective(model, xb, settings.objective, settings.train_samples, state.noise_gen, weight)
        optimizer.zero_grad(set_to_none=True)
        step.minimized.backward()
        optimizer.step()
        torch.stack(step.reported(), out=sums[i])  # no temporary
        if on_batch is not None:
            on_batch(epoch, i + 1)
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


def fit(state: TrainState, train_x: torch.Tensor, val_x: torch.Tensor, settings: TrainingSettings, *,
        on_epoch: Callable[[TrainState], None] | None = None, on_batch: BatchCallback | None = None,
        progress: bool = True) -> TrainState:
    """Train from ``state.epoch`` to ``settings.num_epochs``, calling ``on_epoch`` after each epoch.

    ``val_x`` is scored as given: prepare it once with the likelihood's ``held_out`` (the
    ``binarized`` likelihood validates every epoch on the same bits).

    ``on_epoch`` is where the caller saves a checkpoint; an interruption loses at most the
    epoch in progress. ``on_batch(epoch, batch)`` runs after every step (``train_epoch``).
    """
    num_epochs = settings.num_epochs
    epochs = tqdm(range(state.epoch + 1, num_epochs + 1), desc="training", unit="epoch",
                  initial=state.epoch, total=num_epochs, disable=None if progress else True)
    for epoch in epochs:
        for group in state.optimizer.param_groups:
            group["lr"] = settings.lr_at(epoch)
        train = train_epoch(state, train_x, epoch, settings, on_batch=on_batch, progress=progress)
        val = evaluate_elbo(state.model, val_x, settings.seed)
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
