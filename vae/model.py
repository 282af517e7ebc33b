"""The notebook's VAE: an MLP encoder and decoder, the reparameterization trick, BCE + KL.

Module names match the notebook's, so its ``state_dict`` files load here and ours there.
Sampling takes an optional ``torch.Generator`` so that every random draw of the
pipeline comes from a generator whose state is saved in the checkpoints.
"""

import math

import torch
import torch.nn.functional as F
from torch import nn

from vae.data.datasets import IMAGE_SHAPE

INPUT_DIM = math.prod(IMAGE_SHAPE)  # 784 pixels, flattened
EVAL_BATCH = 1000  # images per batch when nothing is learned; fixed so metrics never depend on a knob


class Encoder(nn.Module):
    """x -> (mu, logvar) of the Gaussian posterior q(z|x)."""

    def __init__(self, input_dim: int, hidden_dim: int, latent_dim: int) -> None:
        super().__init__()
        self.net = nn.Sequential(
            nn.Flatten(),
            nn.Linear(input_dim, hidden_dim),
            nn.ReLU(),
            nn.Linear(hidden_dim, hidden_dim),
            nn.ReLU(),
        )
        self.fc_mu = nn.Linear(hidden_dim, latent_dim)
        self.fc_logvar = nn.Linear(hidden_dim, latent_dim)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        h = self.net(x)
        return self.fc_mu(h), self.fc_logvar(h)


class Decoder(nn.Module):
    """z -> Bernoulli means of the 784 pixels, flat (N, 784); ``images`` reshapes them."""

    def __init__(self, latent_dim: int, hidden_dim: int, output_dim: int) -> None:
        super().__init__()
        self.net = nn.Sequential(
            nn.Linear(latent_dim, hidden_dim),
            nn.ReLU(),
            nn.Linear(hidden_dim, hidden_dim),
            nn.ReLU(),
            nn.Linear(hidden_dim, output_dim),
            nn.Sigmoid(),
        )

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        return self.net(z)

    def logits(self, z: torch.Tensor) -> torch.Tensor:
        """The pre-sigmoid outputs a, with x_hat = sigmoid(a); losses are computed from these."""
        *layers, _sigmoid = self.net  # not self.net[:-1], which builds a new Sequential per call
        for layer in layers:
            z = layer(z)
        return z


def reparameterize(mu: torch.Tensor, logvar: torch.Tensor,
                   generator: torch.Generator | None = None) -> torch.Tensor:
    """Sample z ~ N(mu, sigma^2) as mu + eps * sigma."""
    eps = torch.randn(mu.shape, generator=generator, device=mu.device, dtype=mu.dtype)
    return mu + eps * (0.5 * logvar).exp()


class VAE(nn.Module):
    def __init__(self, input_dim: int = INPUT_DIM, hidden_dim: int = 512, latent_dim: int = 2) -> None:
        super().__init__()
        self.config = {"input_dim": input_dim, "hidden_dim": hidden_dim, "latent_dim": latent_dim}
        self.encoder = Encoder(input_dim, hidden_dim, latent_dim)
        self.decoder = Decoder(latent_dim, hidden_dim, input_dim)

    @property
    def latent_dim(self) -> int:
        return self.config["latent_dim"]

    def forward(self, x: torch.Tensor, generator: torch.Generator | None = None
                ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
        """Return (x_hat, mu, logvar, z) with x_hat flat, shape (N, 784)."""
        mu, logvar = self.encoder(x)
        z = reparameterize(mu, logvar, generator)
        return self.decoder(z), mu, logvar, z


def images(x: torch.Tensor) -> torch.Tensor:
    """Flat pixels (N, 784) -> image batch (N, 1, 28, 28) for torchvision's grids."""
    return x.reshape(-1, 1, *IMAGE_SHAPE)


@torch.no_grad()
def encode(model: VAE, x: torch.Tensor, batch_size: int = EVAL_BATCH) -> tuple[torch.Tensor, torch.Tensor]:
    """Posterior means and log-variances (N, d) of flat images ``x``, in eval mode, in batches."""
    model.eval()
    parts = [model.encoder(x[start:start + batch_size]) for start in range(0, len(x), batch_size)]
    return torch.cat([p[0] for p in parts]), torch.cat([p[1] for p in parts])


def gaussian_kl(mu: torch.Tensor, logvar: torch.Tensor) -> torch.Tensor:
    """KL(N(mu, sigma^2) || N(0, 1)) for each image and latent dimension, shape (N, latent_dim)."""
    return -0.5 * (1 + logvar - mu.pow(2) - logvar.exp())


def vae_loss(x: torch.Tensor, logits: torch.Tensor, mu: torch.Tensor, logvar: torch.Tensor
             ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """The notebook's loss, summed over pixels and the batch: (recon + KL, recon, KL).

    recon is the notebook's ``BCELoss(reduction="sum")`` of x_hat = sigmoid(logits),
    computed from the logits (``binary_cross_entropy_with_logits``): the same
    value wherever x_hat is representable, exact where sigmoid rounds to 0 or 1
    in float32 (the notebook's loss is clamped there and its gradient vanishes),
    and 3-4x cheaper on the CPU than BCE after a sigmoid. KL is the analytic
    -0.5 * sum(1 + log sigma^2 - mu^2 - sigma^2). Divide by the batch size for
    per-image values.
    """
    recon = F.binary_cross_entropy_with_logits(logits, x.reshape(logits.shape), reduction="sum")
    kld = gaussian_kl(mu, logvar).sum()
    return recon + kld, recon, kld


def negative_elbo(model: VAE, x: torch.Tensor, generator: torch.Generator | None = None
                  ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """``vae_loss`` of a batch of flat images with one latent sample per image from ``generator``."""
    mu, logvar = model.encoder(x)
    z = reparameterize(mu, logvar, generator)
    return vae_loss(x, model.decoder.logits(z), mu, logvar)
