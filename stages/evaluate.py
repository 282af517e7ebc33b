"""evaluate: how good the VAE is on the test set.

metrics: the ELBO terms (loss, recon, kl per image), the importance-weighted
log-likelihood bound (both also in bits per dimension where the likelihood is a
probability of discrete pixels), active units, squared error per image, the linear and k-NN
probe accuracies, and sample quality through the classifier's features (Frechet
distances of prior samples, of samples from the ex-post latent density and of
reconstructions to the test set, the samples' class entropies, the reconstructions'
accuracy); kl-per-dim: the KL and activity of each latent dimension.
"""

import argparse
import logging

from vae.classifier import load_classifier
from vae.data.split import load_images
from vae.io import staged, write_csv, write_json
from vae.latent_density import load_latent_density
from vae.metrics import evaluate, sample_quality
from vae.model import load_model
from vae.params import resolve_device
from vae.runtime.cli import run_stage, stage_params


def main(args: argparse.Namespace) -> None:
    params = stage_params()
    device = resolve_device(params.device)
    model = load_model(args.model, device)
    test_x, test_y = load_images(args.test, device)
    train_x, train_y = load_images(args.train, device)
    metrics, per_dim = evaluate(model, train_x, train_y, test_x, test_y, params.iwae_k, params.seed)
    classifier = load_classifier(args.classifier, device)
    if classifier is not None:  # None: images without labels, whose classifier metrics are not defined
        metrics |= sample_quality(model, classifier, test_x, test_y, params.seed, params.fd_images,
                                  density=load_latent_density(args.latent_density))
    with staged(args.metrics, args.kl_per_dim) as (metrics_path, kl_path):
        write_json(metrics_path, metrics)
        write_csv(kl_path, per_dim)
    nll_metric = model.likelihood.test_nll_metric
    nll = f" ({nll_metric.replace('_', ' ')} {metrics[nll_metric]:.2f})" if nll_metric else ""
    if "iwae_bits_per_dim" in metrics:
        nll += f" ({metrics['iwae_bits_per_dim']:.4f} bits/dim)"
    fd = (f", FD of samples {metrics['fd_samples']:.2f} (prior) and {metrics['fd_samples_latent_density']:.2f} "
          "(latent density)" if classifier is not None else ", FD not defined (no labels)")
    logging.getLogger("vae").info(
        "test loss %.2f, IWAE bound (K=%d) %.2f%s, %d active units%s; wrote %s and %s", metrics["loss"], params.iwae_k,
        metrics["iwae_log_likelihood_bound"], nll, metrics["active_units"], fd, args.metrics, args.kl_per_dim)


if __name__ == "__main__":
    run_stage("evaluate", main, "model", "classifier", "latent_density", "train", "test", "metrics", "kl_per_dim")
