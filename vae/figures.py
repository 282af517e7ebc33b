"""The pipeline's figures as PNG files: image grids and matplotlib charts.

Charts are drawn on ``matplotlib.figure.Figure`` objects, not through pyplot, so no
display or backend is needed and a notebook that imports ``vae`` keeps its own.
"""

from pathlib import Path

import matplotlib
import pandas as pd
import torch
from matplotlib.figure import Figure
from torchvision.utils import save_image

from vae.io import atomic_path, write_figure
from vae.model import VAE, images


def save_grid(path: str | Path, pixels: torch.Tensor, nrow: int) -> None:
    """Flat pixel rows (N, 784) as one PNG grid, ``nrow`` images per row (as the notebook)."""
    with atomic_path(path) as tmp:
        save_image(images(pixels.detach().cpu()), tmp, nrow=nrow, format="png")


@torch.no_grad()
def reconstruction_grid(path: str | Path, model: VAE, x: torch.Tensor, seed: int, nrow: int = 8) -> None:
    """Images ``x`` above their reconstructions, one latent sample each from a generator seeded with ``seed``."""
    model.eval()
    x_hat, *_ = model(x, torch.Generator(x.device).manual_seed(seed))
    save_grid(path, torch.cat((x, x_hat)), nrow=nrow)


def loss_curve(path: str | Path, history: pd.DataFrame) -> None:
    """Train and validation loss per epoch, log scale, as the notebook's loss_curve.png."""
    fig = Figure(figsize=(6, 4))
    ax = fig.subplots()
    ax.plot(history["epoch"], history["train_loss"], label="train loss")
    ax.plot(history["epoch"], history["val_loss"], label="val loss")
    ax.set_yscale("log")
    ax.set_xlabel("Epoch")
    ax.set_ylabel("Loss (log scale, nats per image)")
    ax.set_title("VAE Loss")
    ax.legend()
    fig.tight_layout()
    write_figure(path, fig)


def latent_scatter(path: str | Path, points: pd.DataFrame, title: str,
                   axis_names: tuple[str, str] = ("z1", "z2")) -> None:
    """2-D points (columns ``x``, ``y``, ``label``, ``class``) coloured by class, with a legend naming them."""
    fig = Figure(figsize=(7, 6))
    ax = fig.subplots()
    cmap = matplotlib.colormaps["tab10"]
    for label, group in points.groupby("label", sort=True):
        ax.scatter(group["x"], group["y"], s=4, color=cmap(int(label) % 10), label=group["class"].iloc[0],
                   alpha=0.7)
    ax.set_xlabel(axis_names[0])
    ax.set_ylabel(axis_names[1])
    ax.set_title(title)
    ax.legend(markerscale=3, fontsize=8, loc="center left", bbox_to_anchor=(1.0, 0.5))
    fig.tight_layout()
    write_figure(path, fig, dpi=120)
