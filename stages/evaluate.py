"""evaluate: how good the VAE is on the test set.

metrics: the ELBO terms (loss, recon, kl per image), the importance-weighted
log-likelihood bound, active units, squared error per image, the linear and k-NN
probe accuracies, and sample quality through the classifier's features (Frechet
distances of prior samples, of samples from the ex-post latent density and of
reconstructions to the test set, the samples' class entropies, the reconstructions'
accuracy); kl-per-dim: the KL and activity of each latent dimension.
"""

import argparse
import logging

from vae.classifier import load_classifier
from vae.cli import model_and_split, run_stage
from vae.data.split import load_split, to_tensor
from vae.io import write_csv, write_json
from vae.latent_density import load_latent_density
from vae.metrics import evaluate, sample_quality


def main(args: argparse.Namespace) -> None:
    params, device, model, test_x, test_y = model_and_split(args.model, args.test)
    train_images, train_labels = load_split(args.train)
    metrics, per_dim = evaluate(model, to_tensor(train_images, device), train_labels, test_x, test_y,
                                params.iwae_k, params.seed)
    metrics |= sample_quality(model, load_classifier(args.classifier, device), test_x, test_y, params.seed,
                              params.fd_images, density=load_latent_density(args.latent_density))
    write_json(args.metrics, metrics)
    write_csv(args.kl_per_dim, per_dim)
    nll = f" (binarized test NLL {metrics['binarized_test_nll']:.2f})" if "binarized_test_nll" in metrics else ""
    logging.getLogger("vae").info(
        "test loss %.2f, IWAE bound (K=%d) %.2f%s, %d active units, FD of samples %.2f (prior) and %.2f "
        "(latent density); wrote %s and %s", metrics["loss"], params.iwae_k, metrics["iwae_log_likelihood_bound"], nll,
        metrics["active_units"], metrics["fd_samples"], metrics["fd_samples_latent_density"], args.metrics,
        args.kl_per_dim)


if __name__ == "__main__":
    run_stage("evaluate", main, "model", "classifier", "latent_density", "train", "test", "metrics", "kl_per_dim")
