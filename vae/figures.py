"""The pipeline's figures as PNG files: image grids and matplotlib charts.

Charts are drawn on ``matplotlib.figure.Figure`` objects, not through pyplot, so no
display or backend is needed and a notebook that imports ``vae`` keeps its own. Image grids
are laid out as ``torchvision.utils.make_grid`` lays them out and written as its
``save_image`` writes them (the same PNG bytes), without importing torchvision: its import
(torchvision.ops, torch._dynamo) took longer than a small stage's work.
"""

import io
import math
from pathlib import Path

import matplotlib
import pandas as pd
import torch
from matplotlib.figure import Figure
from PIL import Image

from vae.io import write_bytes, write_figure
from vae.model import IMAGE_SHAPE, VAE, images


def image_grid(batch: torch.Tensor, nrow: int, padding: int = 2, pad_value: float = 0.0) -> torch.Tensor:
    """An image batch (N, C, H, W) -> one (3, H', W') image, ``nrow`` images per row, ``padding`` pixels apart.

    ``torchvision.utils.make_grid``'s layout: grey images become three equal channels, and one image is
    returned alone, without padding.
    """
    if batch.shape[1] == 1:
        batch = batch.expand(-1, 3, -1, -1)
    if len(batch) == 1:
        return batch[0]
    columns = min(nrow, len(batch))
    rows = math.ceil(len(batch) / columns)
    height, width = batch.shape[2] + padding, batch.shape[3] + padding
    grid = batch.new_full((batch.shape[1], height * rows + padding, width * columns + padding), pad_value)
    for k, image in enumerate(batch):
        top, left = (k // columns) * height + padding, (k % columns) * width + padding
        grid[:, top:top + height - padding, left:left + width - padding] = image
    return grid


def save_grid(path: str | Path, pixels: torch.Tensor, nrow: int, shape: tuple[int, int, int] = IMAGE_SHAPE) -> None:
    """Flat pixel rows (N, C * H * W) of images ``shape`` as one PNG grid (RGB), ``nrow`` images per row."""
    grid = image_grid(images(pixels.detach().cpu(), shape), nrow)
    rgb = grid.mul(255).add_(0.5).clamp_(0, 255).permute(1, 2, 0).to(torch.uint8).numpy()
    buffer = io.BytesIO()
    Image.fromarray(rgb).save(buffer, format="png")
    write_bytes(path, buffer.getvalue())


@torch.no_grad()
def reconstruction_grid(path: str | Path, model: VAE, x: torch.Tensor, seed: int, nrow: int = 8) -> None:
    """Images ``x`` above their reconstructions, one latent sample each from a generator seeded with ``seed``."""
    model.eval()
    x_hat, *_ = model(x, torch.Generator(x.device).manual_seed(seed))
    save_grid(path, torch.cat((x, x_hat)), nrow=nrow, shape=model.image_shape)


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
    """2-D points (columns ``x``, ``y``, ``label``, ``class``) coloured by class, with a legend naming them.

    Points without labels (-1: a folder without classes) are drawn in one colour, without a legend.
    """
    fig = Figure(figsize=(7, 6))
    ax = fig.subplots()
    cmap = matplotlib.colormaps["tab10"]
    labelled = bool((points["label"] >= 0).all())
    for label, group in points.groupby("label", sort=True):
        ax.scatter(group["x"], group["y"], s=4, color=cmap(int(label) % 10) if labelled else "tab:gray",
                   label=group["class"].iloc[0] if labelled else None, alpha=0.7)
    ax.set_xlabel(axis_names[0])
    ax.set_ylabel(axis_names[1])
    ax.set_title(title)
    if labelled:
        ax.legend(markerscale=3, fontsize=8, loc="center left", bbox_to_anchor=(1.0, 0.5))
    fig.tight_layout()
    write_figure(path, fig, dpi=120)


def side_by_side(path: str | Path, grids: dict[str, torch.Tensor], nrow: int = 8, title: str = "",
                 shape: tuple[int, int, int] = IMAGE_SHAPE) -> None:
    """Image grids of flat pixel rows (N, C * H * W) next to each other, each under its name; RGB in colour."""
    fig = Figure(figsize=(3.2 * len(grids), 3.6), layout="constrained")
    for ax, (name, pixels) in zip(fig.subplots(1, len(grids), squeeze=False)[0], grids.items()):
        grid = image_grid(images(pixels.detach().cpu(), shape), nrow, pad_value=1.0)
        ax.imshow(grid.permute(1, 2, 0) if shape[0] == 3 else grid[0], cmap="gray", vmin=0, vmax=1)
        ax.set_title(name, fontsize=10)
        ax.axis("off")
    if title:
        fig.suptitle(title, fontsize=10)
    write_figure(path, fig, dpi=110)
