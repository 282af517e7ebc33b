"""train: fit the VAE, checkpointing every epoch so that a killed run resumes exactly.

Reads data/processed/{train,val}.npz. Writes models/model.pt, per-epoch states in
models/checkpoints/ (persisted between runs), the loss history and final losses
in reports/train/, and the notebook's per-epoch reconstruction grids.
"""

import logging
from dataclasses import asdict
from pathlib import Path

import pandas as pd
import torch

from vae.checkpoint import CheckpointDir, fingerprint, load_model, save_model
from vae.cli import run_stage
from vae.data.split import load_split, to_tensor
from vae.figures import save_grid
from vae.io import fresh_dir, write_csv, write_json
from vae.model import INPUT_DIM
from vae.params import load_params
from vae.training import TrainState, fit, resolve_device

PROCESSED = Path("data/processed")
MODEL = Path("models/model.pt")
CHECKPOINTS = Path("models/checkpoints")
REPORTS = Path("reports/train")
RECON_IMAGES = 64  # first validation images shown in each epoch's reconstruction grid

log = logging.getLogger("vae")


def write_history(state: TrainState) -> None:
    write_csv(REPORTS / "history.csv", pd.DataFrame(state.history))


def write_reconstructions(checkpoints: CheckpointDir, val_x: torch.Tensor, seed: int) -> None:
    """recon_epoch_N.png for every epoch, from that epoch's checkpoint (so resumed runs have all)."""
    x = val_x[:RECON_IMAGES]
    fresh_dir(REPORTS / "reconstructions")
    for epoch in checkpoints.epochs():
        model = load_model(checkpoints.path_for(epoch), val_x.device)
        with torch.no_grad():
            x_hat, *_ = model(x, torch.Generator(val_x.device).manual_seed(seed))
        save_grid(REPORTS / "reconstructions" / f"recon_epoch_{epoch}.png", torch.cat((x, x_hat)), nrow=8)


def main() -> None:
    params = load_params()
    device = resolve_device(params.device)
    train_x = to_tensor(load_split(PROCESSED, "train")[0], device)
    val_x = to_tensor(load_split(PROCESSED, "val")[0], device)
    log.info("read %d train and %d validation images; training on %s", len(train_x), len(val_x), device)

    settings = {k: v for k, v in asdict(params).items()
                if k in ("batch_size", "lr", "latent_dim", "hidden_dim", "seed")}
    run_id = fingerprint({**settings, "device": device.type},
                         [PROCESSED / "train.npz", PROCESSED / "val.npz"])
    checkpoints = CheckpointDir(CHECKPOINTS)
    state = TrainState.new(INPUT_DIM, params.hidden_dim, params.latent_dim, params.lr, params.seed, device)
    saved = checkpoints.resume_state(run_id, params.num_epochs)
    if saved is not None:
        state.load_dict(saved)
        write_history(state)

    def on_epoch(s: TrainState) -> None:
        checkpoints.save(s.epoch, s.to_dict(run_id))
        write_history(s)

    fit(state, train_x, val_x, params.batch_size, params.num_epochs, params.seed, on_epoch)
    write_reconstructions(checkpoints, val_x, params.seed)
    save_model(MODEL, state.model)
    final = state.history[-1]
    write_json(REPORTS / "metrics.json", {k: v for k, v in final.items() if k != "epoch"})
    log.info("wrote %s, %s and %s", MODEL, REPORTS / "history.csv", REPORTS / "metrics.json")


if __name__ == "__main__":
    run_stage("train", main)
