"""sample: images the decoder makes, in reports/sample/.

prior_samples.png (n_samples draws from the prior, as the notebook),
interpolations.png (straight lines in latent space between test images of
different classes), and manifold.png (latent_dim == 2, Kingma & Welling's
figure 4) or traversals.png (latent_dim > 2, one row per dimension, the most
informative, by KL, first).
"""

import logging
import math
from pathlib import Path

import torch

from vae.checkpoint import load_model
from vae.cli import run_stage
from vae.data.split import load_split, to_tensor
from vae.figures import save_grid
from vae.generate import interpolations, manifold, pick_pairs, prior_samples, traversals
from vae.io import fresh_dir
from vae.metrics import encode, kl_per_dimension
from vae.params import load_params
from vae.training import EVAL_BATCH, resolve_device

OUT = Path("reports/sample")
STEPS = 10  # decoded points per interpolation row


def main() -> None:
    params = load_params()
    device = resolve_device(params.device)
    model = load_model("models/model.pt", device)
    images, labels = load_split("data/processed", "test")
    x = to_tensor(images, device)

    fresh_dir(OUT)
    nrow = math.ceil(math.sqrt(params.n_samples))
    save_grid(OUT / "prior_samples.png", prior_samples(model, params.n_samples, params.seed), nrow=nrow)
    save_grid(OUT / "interpolations.png", interpolations(model, x, pick_pairs(torch.from_numpy(labels), 10),
                                                         STEPS), nrow=STEPS + 2)
    if model.latent_dim == 2:
        save_grid(OUT / "manifold.png", manifold(model, 20), nrow=20)
    else:
        kl = kl_per_dimension(*encode(model, x, EVAL_BATCH))
        dims = torch.argsort(kl, descending=True).tolist()
        save_grid(OUT / "traversals.png", traversals(model, x[0], dims), nrow=11)
    logging.getLogger("vae").info("wrote %s", ", ".join(sorted(p.name for p in OUT.glob("*.png"))))


if __name__ == "__main__":
    run_stage("sample", main)
