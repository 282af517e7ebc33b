"""sample: every image the decoder makes, in one folder.

prior_samples.png (n_samples draws from the prior, as the notebook),
latent_density_samples.png (as many draws from the ex-post latent density, same seed),
reconstructions.png (16 test images above their reconstructions),
interpolations.png (straight lines in latent space between test images of
different classes), and manifold.png (latent_dim == 2, Kingma & Welling's
figure 4) or traversals.png (latent_dim > 2, one row per dimension, the most
informative, by KL, first).
"""

import argparse
import logging
import math
from functools import partial
from pathlib import Path

import numpy as np
import torch

from vae.data.split import load_images
from vae.figures import reconstruction_grid, save_grid
from vae.generate import interpolations, latent_density_samples, manifold, pick_pairs, prior_samples, traversals
from vae.io import staged
from vae.latent_density import LatentDensity, load_latent_density
from vae.metrics import mean_kl_per_dimension
from vae.model import VAE, encode, load_model
from vae.params import Params, resolve_device
from vae.runtime.cli import run_stage, stage_params

STEPS = 10  # decoded points per interpolation row
MANIFOLD_SIZE = 20  # the 2-D manifold is a 20 x 20 grid
RECONSTRUCTED = 16  # test images shown in reconstructions.png


def main(args: argparse.Namespace) -> None:
    params = stage_params()
    device = resolve_device(params.device)
    model = load_model(args.model, device)
    x, labels = load_images(args.test, device)
    with staged(args.out) as (out,):
        draw_images(out, params, model, x, labels, load_latent_density(args.latent_density))
    logging.getLogger("vae").info("wrote %s", ", ".join(sorted(p.name for p in args.out.glob("*.png"))))


def draw_images(out: Path, params: Params, model: VAE, x: torch.Tensor, labels: np.ndarray,
                density: LatentDensity) -> None:
    nrow = math.ceil(math.sqrt(params.n_samples))
    grid = partial(save_grid, shape=model.image_shape)  # in colour where the model's images are RGB
    grid(out / "prior_samples.png", prior_samples(model, params.n_samples, params.seed), nrow=nrow)
    grid(out / "latent_density_samples.png", latent_density_samples(model, density, params.n_samples, params.seed),
              nrow=nrow)
    reconstruction_grid(out / "reconstructions.png", model, x[:RECONSTRUCTED], params.seed)
    grid(out / "interpolations.png", interpolations(model, x, pick_pairs(torch.from_numpy(labels), 10),
                                                         STEPS), nrow=STEPS + 2)
    if model.latent_dim == 2:
        grid(out / "manifold.png", manifold(model, MANIFOLD_SIZE), nrow=MANIFOLD_SIZE)
    else:
        dims = torch.argsort(mean_kl_per_dimension(*encode(model, x)), descending=True).tolist()
        grid(out / "traversals.png", traversals(model, x[0], dims), nrow=11)


if __name__ == "__main__":
    run_stage("sample", main, "model", "latent_density", "test", "out")
