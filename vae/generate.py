"""Images made by the decoder: prior samples, the 2-D manifold, interpolations, traversals.

All but prior samples decode codes of the top layer (``VAE.decode``): with two stochastic layers
the lower layer is at its mean given the code.

Each function returns flat pixel rows (N, 784) laid out row by row for
``torchvision.utils.save_image(..., nrow=...)``. All randomness comes from a seeded
generator, so the figures are the same on every run.
"""

import torch

from vae.latent_density import LatentDensity
from vae.model import VAE


@torch.no_grad()
def prior_samples(model: VAE, n: int, seed: int) -> torch.Tensor:
    """Decode ``n`` draws from the prior, as the notebook's samples_prior.png (there z ~ N(0, I)).

    Under a VampPrior a draw picks a pseudo-input, then z from its posterior; with two layers z1 is
    then drawn from p(z1|z2), and the images are the means of p(x|z1, z2).
    """
    generator = torch.Generator(next(model.parameters()).device).manual_seed(seed)
    return model.decode(model.sample_prior(n, generator), generator=generator)


@torch.no_grad()
def latent_density_samples(model: VAE, density: LatentDensity, n: int, seed: int) -> torch.Tensor:
    """Decode ``n`` seeded draws from an ex-post latent density (``vae.latent_density``) instead of the prior."""
    if density.latent_dim != model.latent_dim:
        raise ValueError(f"the density is on {density.latent_dim} dimensions, the model's latent space on "
                         f"{model.latent_dim}")
    return model.decode(density.sample(n, seed).to(next(model.parameters()).device))


@torch.no_grad()
def manifold(model: VAE, n: int = 20) -> torch.Tensor:
    """Decoder means over an n x n grid of z spaced through the Gaussian inverse CDF.

    Kingma & Welling (2014), figure 4: equal steps of probability mass, so the
    grid covers the prior evenly. Only for a 2-D latent space; rows go from high
    z2 (top) to low z2, columns from low z1 to high z1.
    """
    if model.latent_dim != 2:
        raise ValueError("the manifold grid needs latent_dim == 2")
    device = next(model.parameters()).device
    q = torch.linspace(0.05, 0.95, n, device=device)
    ticks = torch.distributions.Normal(0.0, 1.0).icdf(q)
    z1, z2 = torch.meshgrid(ticks, ticks.flip(0), indexing="xy")
    return model.decode(torch.stack((z1.reshape(-1), z2.reshape(-1)), dim=1))


def pick_pairs(labels: torch.Tensor, n_pairs: int) -> list[tuple[int, int]]:
    """Pairs (i, j) of test images of different classes: the first of class c and of class c + 1.

    Images without labels (-1, a folder without classes): the first images, two by two.
    """
    if (labels < 0).all():
        return [(i, i + 1) for i in range(0, min(2 * n_pairs, len(labels) - 1), 2)]
    classes = sorted(set(labels.tolist()))
    first = {c: int((labels == c).nonzero()[0]) for c in classes}
    pairs = [(first[a], first[b]) for a, b in zip(classes, classes[1:] + classes[:1])]
    return pairs[:n_pairs]


@torch.no_grad()
def interpolations(model: VAE, x: torch.Tensor, pairs: list[tuple[int, int]], steps: int = 10) -> torch.Tensor:
    """One row per pair: image i, decodes along the line from mu_i to mu_j, image j."""
    mu, _ = model.encoder(x[[i for pair in pairs for i in pair]])
    start, end = mu[0::2], mu[1::2]
    t = torch.linspace(0, 1, steps, device=mu.device).view(1, -1, 1)
    line = start.unsqueeze(1) * (1 - t) + end.unsqueeze(1) * t  # (pairs, steps, d)
    decoded = model.decode(line.reshape(-1, mu.shape[1])).view(len(pairs), steps, -1)
    originals = x[[i for pair in pairs for i in pair]].view(len(pairs), 2, -1)
    return torch.cat((originals[:, :1], decoded, originals[:, 1:]), dim=1).reshape(-1, x.shape[1])


@torch.no_grad()
def traversals(model: VAE, x: torch.Tensor, dims: list[int], steps: int = 11, span: float = 3.0
               ) -> torch.Tensor:
    """One row per latent dimension in ``dims``: that coordinate of x's mean moved by -span..span."""
    mu, _ = model.encoder(x.unsqueeze(0))
    offsets = torch.linspace(-span, span, steps, device=mu.device)
    z = mu.repeat(len(dims), steps, 1)  # (dims, steps, d)
    for row, d in enumerate(dims):
        z[row, :, d] += offsets
    return model.decode(z.reshape(-1, mu.shape[1]))
