"""evaluate: how good the VAE is on the test set, into reports/evaluate/.

metrics.json: the ELBO terms (loss, recon, kl per image), the importance-weighted
log-likelihood bound, active units, squared error per image and the linear and
k-NN probe accuracies; kl_per_dim.csv: the KL of each latent dimension.
"""

import logging
from pathlib import Path

from vae.checkpoint import load_model
from vae.cli import run_stage
from vae.data.split import load_split, to_tensor
from vae.io import write_csv, write_json
from vae.metrics import evaluate
from vae.params import load_params
from vae.training import resolve_device

OUT = Path("reports/evaluate")


def main() -> None:
    params = load_params()
    device = resolve_device(params.device)
    model = load_model("models/model.pt", device)
    train_images, train_labels = load_split("data/processed", "train")
    test_images, test_labels = load_split("data/processed", "test")
    metrics, per_dim = evaluate(model, to_tensor(train_images, device), train_labels,
                                to_tensor(test_images, device), test_labels, params.iwae_k, params.seed)
    write_json(OUT / "metrics.json", metrics)
    write_csv(OUT / "kl_per_dim.csv", per_dim)
    logging.getLogger("vae").info(
        "test loss %.2f, IWAE bound (K=%d) %.2f, %d active units; wrote %s and %s", metrics["loss"],
        params.iwae_k, metrics["iwae_log_likelihood_bound"], metrics["active_units"], OUT / "metrics.json",
        OUT / "kl_per_dim.csv")


if __name__ == "__main__":
    run_stage("evaluate", main)
