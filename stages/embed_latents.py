"""embed-latents: the test set's latent means and log-variances, and their 2-D projections.

table: one row per test image; projections: <method>.csv (latent_1d or latent_2d, or
latent_pca and latent_tsne when latent_dim > 2).
"""

import argparse
import logging

from vae.data.datasets import DATASETS
from vae.data.split import load_images
from vae.io import staged, write_csv
from vae.latents import latent_table, projections
from vae.model import encode, load_model
from vae.params import resolve_device
from vae.runtime.cli import run_stage, stage_params


def main(args: argparse.Namespace) -> None:
    params = stage_params()
    device = resolve_device(params.device)
    model = load_model(args.model, device)
    x, labels = load_images(args.test, device)
    mu, logvar = encode(model, x)
    # a folder's classes by their index (manifest.csv names each one's folder)
    classes = (DATASETS[params.dataset_name].classes if params.dataset_name in DATASETS
               else tuple(str(label) for label in range(int(labels.max()) + 1)))
    table = latent_table(mu.cpu().numpy(), logvar.cpu().numpy(), labels, classes)
    with staged(args.table, args.projections) as (table_path, out):
        write_csv(table_path, table)
        for name, points in projections(table, params.tsne_subset, params.tsne_perplexity, params.seed).items():
            write_csv(out / f"{name}.csv", points)
            logging.getLogger("vae").info("%s: %d points", f"{args.projections}/{name}.csv", len(points))


if __name__ == "__main__":
    run_stage("embed-latents", main, "model", "test", "table", "projections")
