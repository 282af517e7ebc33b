"""embed-latents: the test set's latent means and log-variances, and their 2-D projections.

Writes reports/latents/latents.csv and reports/latents/projections/<method>.csv
(latent_2d, or latent_pca and latent_tsne when latent_dim > 2).
"""

import logging
from pathlib import Path

from vae.checkpoint import load_model
from vae.cli import run_stage
from vae.data.datasets import DATASETS
from vae.data.split import load_split, to_tensor
from vae.io import fresh_dir, write_csv
from vae.latents import latent_table, projections
from vae.metrics import encode
from vae.params import load_params
from vae.training import resolve_device

OUT = Path("reports/latents")


def main() -> None:
    params = load_params()
    device = resolve_device(params.device)
    model = load_model("models/model.pt", device)
    images, labels = load_split("data/processed", "test")
    mu, logvar = encode(model, to_tensor(images, device))
    table = latent_table(mu.cpu().numpy(), logvar.cpu().numpy(), labels, DATASETS[params.dataset_name].classes)
    write_csv(OUT / "latents.csv", table)
    fresh_dir(OUT / "projections")
    for name, points in projections(table, params.tsne_subset, params.tsne_perplexity, params.seed).items():
        write_csv(OUT / "projections" / f"{name}.csv", points)
        logging.getLogger("vae").info("wrote %s (%d points)", OUT / "projections" / f"{name}.csv", len(points))


if __name__ == "__main__":
    run_stage("embed-latents", main)
