"""plot: the notebook's charts, drawn from the tables other stages wrote (no model needed).

loss_curve.png (train and validation loss, log scale) and one latent scatter per
projection (latent_1d.png or latent_2d.png, or latent_pca.png and latent_tsne.png) coloured by class.
"""

import argparse
import logging

import pandas as pd

from vae.figures import latent_scatter, loss_curve
from vae.io import staged
from vae.runtime.cli import run_stage

TITLES = {
    "latent_1d": ("Latent space (mu) - 1D, by class", ("z1", "class")),
    "latent_2d": ("Latent space (mu) - 2D", ("z1", "z2")),
    "latent_pca": ("Latent space projected with PCA", ("PC 1", "PC 2")),
    "latent_tsne": ("Latent space projected with t-SNE (subset)", ("t-SNE 1", "t-SNE 2")),
}


def main(args: argparse.Namespace) -> None:
    with staged(args.out) as (out,):
        loss_curve(out / "loss_curve.png", pd.read_csv(args.history))
        for path in sorted(args.projections.glob("*.csv")):
            title, axes = TITLES[path.stem]
            latent_scatter(out / f"{path.stem}.png", pd.read_csv(path), title, axes)
    logging.getLogger("vae").info("wrote %s", ", ".join(sorted(p.name for p in args.out.glob("*.png"))))


if __name__ == "__main__":
    run_stage("plot", main, "history", "projections", "out")
