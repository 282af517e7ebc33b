"""embed-latents: the test set's latent means and log-variances, and their 2-D projections.

table: one row per test image; projections: <method>.csv (latent_2d, or latent_pca
and latent_tsne when latent_dim > 2).
"""

import argparse
import logging

from vae.cli import model_and_split, run_stage
from vae.data.datasets import DATASETS
from vae.io import fresh_dir, write_csv
from vae.latents import latent_table, projections
from vae.model import encode


def main(args: argparse.Namespace) -> None:
    params, _, model, x, labels = model_and_split(args.model, args.test)
    mu, logvar = encode(model, x)
    table = latent_table(mu.cpu().numpy(), logvar.cpu().numpy(), labels, DATASETS[params.dataset_name].classes)
    write_csv(args.table, table)
    out = fresh_dir(args.projections)
    for name, points in projections(table, params.tsne_subset, params.tsne_perplexity, params.seed).items():
        write_csv(out / f"{name}.csv", points)
        logging.getLogger("vae").info("wrote %s (%d points)", out / f"{name}.csv", len(points))


if __name__ == "__main__":
    run_stage("embed-latents", main, "model", "test", "table", "projections")
