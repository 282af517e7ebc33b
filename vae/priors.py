"""The prior p(z) of the top latent layer: the standard normal, or Tomczak & Welling's VampPrior.

The VampPrior (Tomczak & Welling, AISTATS 2018, "VAE with a VampPrior") is the mixture of the
encoder's own posteriors at K learned pseudo-inputs u_k, p(z) = (1/K) sum_k q(z | u_k). It
is the prior that maximizes the ELBO for a given encoder when the u_k are the training images
(the aggregate posterior); K learned pseudo-inputs approximate it at a fraction of the cost.
A pseudo-input is an image: the learned parameters pass through a hard tanh onto [0, 1], as
in the paper's code (jmtomczak/vae_vampprior), and start either near 0.05 (N(0.05, 0.01), the
value that code's data loaders set for MNIST) or at training images.

Both priors take the encoder that maps images to (mu, logvar) of the top layer: the VampPrior
needs it to place its components, the standard normal ignores it. The KL of the ELBO has a
closed form only under the standard normal; under the VampPrior the training objective uses
the one-sample estimate log q(z|x) - log p(z).
"""

import math
from collections.abc import Callable

import torch
from torch import nn
from torch.nn import functional as F

from vae.params import PRIORS

_LOG_2PI = math.log(2 * math.pi)
PSEUDO_INPUT_MEAN, PSEUDO_INPUT_STD = 0.05, 0.01  # jmtomczak/vae_vampprior's start for MNIST's pseudo-inputs
Encoder = Callable[[torch.Tensor], tuple[torch.Tensor, torch.Tensor]]


def diagonal_normal_log_prob(z: torch.Tensor, mu: torch.Tensor, logvar: torch.Tensor) -> torch.Tensor:
    """log N(z; mu, diag(exp(logvar))) summed over the last dimension."""
    return -0.5 * ((z - mu).pow(2) * (-logvar).exp() + logvar + _LOG_2PI).sum(-1)


def mixture_log_prob(z: torch.Tensor, mu: torch.Tensor, logvar: torch.Tensor) -> torch.Tensor:
    """log (1/K) sum_k N(z; mu_k, diag(exp(logvar_k))) of each z (..., d), given K components (K, d).

    The squared distances to all K components come from three matrix products, so memory is
    (rows, K), not (rows, K, d): an IWAE bound at K = 5000 samples per image stays cheap.
    """
    flat = z.reshape(-1, z.shape[-1])
    precision = (-logvar).exp()  # (K, d)
    squared = flat.pow(2) @ precision.T - 2 * flat @ (mu * precision).T + (mu.pow(2) * precision).sum(1)
    log_components = -0.5 * (squared + logvar.sum(1) + mu.shape[1] * _LOG_2PI)  # (rows, K)
    log_p = torch.logsumexp(log_components, dim=1) - math.log(len(mu))
    return log_p.reshape(z.shape[:-1])


class StandardNormal:
    """p(z) = N(0, I): the VAE's prior. No parameters, and no module: a submodule, even an empty one, would
    add an entry to the model's state dict (its ``_metadata``), and the default model's file would change."""

    analytic_kl = True

    def log_prob(self, z: torch.Tensor, encoder: Encoder) -> torch.Tensor:
        """log p(z) of each z (..., d), summed over the dimensions."""
        return -0.5 * (z.pow(2) + _LOG_2PI).sum(-1)

    def sample(self, n: int, dim: int, encoder: Encoder, generator: torch.Generator | None = None,
               device: torch.device | str = "cpu") -> torch.Tensor:
        """``n`` draws z ~ N(0, I), (n, dim)."""
        return torch.randn(n, dim, generator=generator, device=device)


class VampPrior(nn.Module):
    """p(z) = (1/K) sum_k q(z | u_k), K learned pseudo-inputs u_k (images, flat, in [0, 1])."""

    analytic_kl = False

    def __init__(self, components: int, input_dim: int) -> None:
        super().__init__()
        self.pseudo_inputs = nn.Parameter(torch.empty(components, input_dim))
        with torch.no_grad():
            self.pseudo_inputs.normal_(PSEUDO_INPUT_MEAN, PSEUDO_INPUT_STD)

    def start_at(self, images: torch.Tensor, generator: torch.Generator | None = None) -> None:
        """Start the pseudo-inputs at ``images`` (K, input_dim) plus N(0, 0.01) noise, as the paper's code can."""
        with torch.no_grad():
            noise = torch.randn(self.pseudo_inputs.shape, generator=generator, device=self.pseudo_inputs.device)
            self.pseudo_inputs.copy_(images.reshape(self.pseudo_inputs.shape) + PSEUDO_INPUT_STD * noise)

    def images(self) -> torch.Tensor:
        """The pseudo-inputs as images: the parameters through a hard tanh onto [0, 1], (K, input_dim)."""
        return F.hardtanh(self.pseudo_inputs, 0.0, 1.0)

    def log_prob(self, z: torch.Tensor, encoder: Encoder) -> torch.Tensor:
        """log p(z) of each z (..., d): the log-mean of the K posteriors' densities at z."""
        mu, logvar = encoder(self.images())
        return mixture_log_prob(z, mu, logvar)

    def sample(self, n: int, dim: int, encoder: Encoder, generator: torch.Generator | None = None,
               device: torch.device | str = "cpu") -> torch.Tensor:
        """``n`` draws: a pseudo-input k uniformly, then z ~ q(z | u_k), (n, dim)."""
        k = torch.randint(len(self.pseudo_inputs), (n,), generator=generator, device=device)
        mu, logvar = encoder(self.images()[k])
        return mu + torch.randn(mu.shape, generator=generator, device=device) * (0.5 * logvar).exp()


def make_prior(name: str, components: int, input_dim: int) -> StandardNormal | VampPrior:
    """The prior that params.yaml's ``prior`` names (``pseudo_inputs`` = K for the VampPrior)."""
    return VampPrior(components, input_dim) if name == "vampprior" else StandardNormal()


assert PRIORS == ("standard", "vampprior")
