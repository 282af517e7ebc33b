"""plot: the notebook's figures as PNGs in reports/figures/.

loss_curve.png (train and validation loss, log scale), one latent scatter per
projection (latent_2d.png, or latent_pca.png and latent_tsne.png) coloured by
class, and reconstructions.png (16 test images above their reconstructions).
"""

import logging
from pathlib import Path

import pandas as pd
import torch

from vae.checkpoint import load_model
from vae.cli import run_stage
from vae.data.datasets import DATASETS
from vae.data.split import load_split, to_tensor
from vae.figures import latent_scatter, loss_curve, save_grid
from vae.io import fresh_dir
from vae.params import load_params
from vae.training import resolve_device

OUT = Path("reports/figures")
PROJECTIONS = Path("reports/latents/projections")
TITLES = {
    "latent_2d": ("Latent space (mu) - 2D", ("z1", "z2")),
    "latent_pca": ("Latent space projected with PCA", ("PC 1", "PC 2")),
    "latent_tsne": ("Latent space projected with t-SNE (subset)", ("t-SNE 1", "t-SNE 2")),
}


def main() -> None:
    params = load_params()
    device = resolve_device(params.device)
    fresh_dir(OUT)
    loss_curve(OUT / "loss_curve.png", pd.read_csv("reports/train/history.csv"))

    classes = DATASETS[params.dataset_name].classes
    for path in sorted(PROJECTIONS.glob("*.csv")):
        points = pd.read_csv(path)
        title, axes = TITLES[path.stem]
        latent_scatter(OUT / f"{path.stem}.png", points[["x", "y"]].to_numpy(), points["label"].to_numpy(),
                       classes, title, axes)

    model = load_model("models/model.pt", device)
    x = to_tensor(load_split("data/processed", "test")[0][:16], device)
    with torch.no_grad():
        x_hat, *_ = model(x, torch.Generator(device).manual_seed(params.seed))
    save_grid(OUT / "reconstructions.png", torch.cat((x, x_hat)), nrow=8)
    logging.getLogger("vae").info("wrote %s", ", ".join(sorted(p.name for p in OUT.glob("*.png"))))


if __name__ == "__main__":
    run_stage("plot", main)
