"""latent-density: a Gaussian mixture fit to the train split's latent codes, to sample from instead of the prior."""

import argparse
import logging

from vae.data.split import load_images
from vae.latent_density import fit_latent_density, save_latent_density
from vae.model import encode, load_model
from vae.params import resolve_device
from vae.runtime.cli import run_stage, stage_params


def main(args: argparse.Namespace) -> None:
    params = stage_params()
    device = resolve_device(params.device)
    model = load_model(args.model, device)
    train_x, _ = load_images(args.train, device)
    density = fit_latent_density(encode(model, train_x)[0], params.latent_density_components, params.seed)
    save_latent_density(args.out, density)
    logging.getLogger("vae").info("fit %d Gaussians to %d codes of %d dimensions; wrote %s",
                                  params.latent_density_components, len(train_x), model.latent_dim, args.out)


if __name__ == "__main__":
    run_stage("latent-density", main, "model", "train", "out")
