"""The VAE: encoder, decoder, the reparameterization trick, and its loss (-ELBO).

The default is the notebook's model: an MLP (784-512-512-latent, ReLU) and BCE + KL
on grey pixels. Options: the MLP's depth and activation (``tanh`` for the IWAE
paper's 784-200-200-50), a small ``conv`` encoder and decoder, and the likelihood
p(x|z): ``bernoulli`` (the notebook's, on grey levels), ``binarized`` (the same on
pixels drawn as 0/1, the papers' dynamically binarized MNIST) or
``continuous_bernoulli`` (a normalized density on [0, 1]).

The likelihoods are objects of ``vae.likelihoods``. A model file (``save_model``,
``load_model``) holds the architecture beside the weights. Module names match the
notebook's, so its ``state_dict`` files load here and ours there.
Sampling takes an optional ``torch.Generator`` so that every random draw of the
pipeline comes from a generator whose state is saved in the checkpoints.
"""

import math
from pathlib import Path
from typing import BinaryIO

import torch
from torch import nn

from vae.data.datasets import IMAGE_SHAPE
from vae.io import load_torch, write_torch
from vae.likelihoods import LIKELIHOODS, Bernoulli

INPUT_DIM = math.prod(IMAGE_SHAPE)  # 784 pixels, flattened
EVAL_BATCH = 1000  # images per batch when nothing is learned; fixed so metrics never depend on a knob


OBJECTIVES = ("elbo", "iwae")
_LOG_2PI = math.log(2 * math.pi)
ARCHITECTURES = ("mlp", "conv")
ACTIVATIONS = {"relu": nn.ReLU, "tanh": nn.Tanh}
# Options at these values are left out of a model's ``config``, so that the notebook's
# model files (and ours from before these options) load, and are written byte for byte as before.
DEFAULTS = {"hidden_layers": 2, "activation": "relu", "architecture": "mlp", "likelihood": "bernoulli"}
CONV_CHANNELS = (16, 32)  # the conv encoder's feature maps at 14 x 14 and 7 x 7; the decoder mirrors it


def _mlp(sizes: list[int], activation: str) -> list[nn.Module]:
    """Linear layers between consecutive ``sizes``, each followed by the activation."""
    layers: list[nn.Module] = []
    for n_in, n_out in zip(sizes, sizes[1:]):
        layers += [nn.Linear(n_in, n_out), ACTIVATIONS[activation]()]
    return layers


class Encoder(nn.Module):
    """x -> (mu, logvar) of the Gaussian posterior q(z|x).

    ``mlp``: ``hidden_layers`` layers of ``hidden_dim`` units. ``conv``: two stride-2
    4x4 convolutions (28 -> 14 -> 7) with ``CONV_CHANNELS`` feature maps, then linear maps.
    """

    def __init__(self, input_dim: int, hidden_dim: int, latent_dim: int, hidden_layers: int = 2,
                 activation: str = "relu", architecture: str = "mlp") -> None:
        super().__init__()
        if architecture == "conv":
            c1, c2 = CONV_CHANNELS
            self.net = nn.Sequential(
                nn.Unflatten(1, (1, *IMAGE_SHAPE)),
                nn.Conv2d(1, c1, 4, stride=2, padding=1), ACTIVATIONS[activation](),
                nn.Conv2d(c1, c2, 4, stride=2, padding=1), ACTIVATIONS[activation](),
                nn.Flatten(),
            )
            features = c2 * (IMAGE_SHAPE[0] // 4) * (IMAGE_SHAPE[1] // 4)
        else:
            self.net = nn.Sequential(nn.Flatten(), *_mlp([input_dim] + [hidden_dim] * hidden_layers, activation))
            features = hidden_dim
        self.fc_mu = nn.Linear(features, latent_dim)
        self.fc_logvar = nn.Linear(features, latent_dim)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        h = self.net(x.flatten(1))  # the MLP's nn.Flatten stays: it keeps the notebook's layer numbers
        # float32 out, also under bf16 autocast (a no-op in float32): what follows stays float32
        return self.fc_mu(h).float(), self.fc_logvar(h).float()


class Decoder(nn.Module):
    """z -> the logits of p(x|z), flat (N, 784); ``forward`` gives the pixels' means.

    The mirror image of the encoder: ``mlp`` layers, or a linear map to 7 x 7 feature
    maps and two stride-2 transposed convolutions (7 -> 14 -> 28).
    """

    def __init__(self, latent_dim: int, hidden_dim: int, output_dim: int, hidden_layers: int = 2,
                 activation: str = "relu", architecture: str = "mlp",
                 likelihood: Bernoulli = LIKELIHOODS["bernoulli"]) -> None:
        super().__init__()
        self.likelihood = likelihood
        if architecture == "conv":
            c1, c2 = CONV_CHANNELS
            side = IMAGE_SHAPE[0] // 4, IMAGE_SHAPE[1] // 4
            self.net = nn.Sequential(
                nn.Linear(latent_dim, c2 * side[0] * side[1]), ACTIVATIONS[activation](),
                nn.Unflatten(1, (c2, *side)),
                nn.ConvTranspose2d(c2, c1, 4, stride=2, padding=1), ACTIVATIONS[activation](),
                nn.ConvTranspose2d(c1, 1, 4, stride=2, padding=1),
                nn.Flatten(),
                nn.Sigmoid(),
            )
        else:
            self.net = nn.Sequential(*_mlp([latent_dim] + [hidden_dim] * hidden_layers, activation),
                                     nn.Linear(hidden_dim, output_dim), nn.Sigmoid())

    @property
    def output_layer(self) -> nn.Linear | nn.ConvTranspose2d:
        """The layer whose outputs are the logits (its bias is the output bias)."""
        return next(m for m in reversed(self.net) if isinstance(m, nn.Linear | nn.ConvTranspose2d))

    def logits(self, z: torch.Tensor) -> torch.Tensor:
        """The pre-sigmoid outputs a, with sigmoid(a) the Bernoulli means; losses are computed from these."""
        *layers, _sigmoid = self.net  # not self.net[:-1], which builds a new Sequential per call
        for layer in layers:
            z = layer(z)
        return z.float()  # float32 also under bf16 autocast: losses are computed in float32

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        """The mean of p(x|z) of each pixel: what sample and reconstruction images show."""
        return self.likelihood.mean(self.logits(z))


def reparameterize(mu: torch.Tensor, logvar: torch.Tensor,
                   generator: torch.Generator | None = None) -> torch.Tensor:
    """Sample z ~ N(mu, sigma^2) as mu + eps * sigma."""
    eps = torch.randn(mu.shape, generator=generator, device=mu.device, dtype=mu.dtype)
    return mu + eps * (0.5 * logvar).exp()


class VAE(nn.Module):
    """The encoder, the decoder, and ``config``: the keyword arguments that rebuild it."""

    def __init__(self, input_dim: int = INPUT_DIM, hidden_dim: int = 512, latent_dim: int = 2,
                 hidden_layers: int = 2, activation: str = "relu", architecture: str = "mlp",
                 likelihood: str = "bernoulli") -> None:
        super().__init__()
        options = {"hidden_layers": hidden_layers, "activation": activation,
                   "architecture": architecture, "likelihood": likelihood}
        self.config = {"input_dim": input_dim, "hidden_dim": hidden_dim, "latent_dim": latent_dim,
                       **{key: value for key, value in options.items() if value != DEFAULTS[key]}}
        shape = {key: options[key] for key in ("hidden_layers", "activation", "architecture")}
        self.encoder = Encoder(input_dim, hidden_dim, latent_dim, **shape)
        self.decoder = Decoder(latent_dim, hidden_dim, input_dim, **shape, likelihood=LIKELIHOODS[likelihood])

    @property
    def latent_dim(self) -> int:
        return self.config["latent_dim"]

    @property
    def likelihood(self) -> Bernoulli:
        return self.decoder.likelihood

    def forward(self, x: torch.Tensor, generator: torch.Generator | None = None
                ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
        """Return (x_hat, mu, logvar, z) with x_hat the decoder's means, flat, shape (N, 784)."""
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


def vae_loss(x: torch.Tensor, logits: torch.Tensor, mu: torch.Tensor, logvar: torch.Tensor,
             likelihood: Bernoulli = LIKELIHOODS["bernoulli"]) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """The negative ELBO summed over pixels and the batch: (recon + KL, recon, KL).

    recon is the likelihood's ``nll``; KL the analytic -0.5 * sum(1 + log sigma^2 - mu^2 -
    sigma^2). With the default likelihood, the notebook's loss. Divide by the batch size for
    per-image values.
    """
    recon = likelihood.nll(logits, x)
    kld = gaussian_kl(mu, logvar).sum()
    return recon + kld, recon, kld


def negative_elbo(model: VAE, x: torch.Tensor, generator: torch.Generator | None = None
                  ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """``vae_loss`` of a batch of flat images with one latent sample per image from ``generator``."""
    mu, logvar = model.encoder(x)
    z = reparameterize(mu, logvar, generator)
    return vae_loss(x, model.decoder.logits(z), mu, logvar, model.likelihood)


def log_weight_terms(model: VAE, x: torch.Tensor, mu: torch.Tensor, logvar: torch.Tensor,
                     eps: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """log p(x|z), log p(z) and log q(z|x) for z = mu + eps * sigma; eps (B, C, d) -> three (B, C).

    log p(x|z) + log p(z) - log q(z|x) is the log importance weight of each sample. log p(x|z)
    is minus the training loss's reconstruction term summed over the 784 pixels, so one
    sample's weight is exactly the one-sample ELBO estimate with a Monte Carlo KL in place of
    the analytic one. The encoder's outputs are given once per image; the decoder runs on all
    B * C samples at once.
    """
    b, c, d = eps.shape
    z = mu.unsqueeze(1) + eps * (0.5 * logvar).exp().unsqueeze(1)
    logits = model.decoder.logits(z.reshape(b * c, d)).reshape(b, c, -1)
    log_px_z = -model.likelihood.nll(logits, x.unsqueeze(1).expand_as(logits), reduction="none").sum(-1)
    log_pz = -0.5 * (z.pow(2) + _LOG_2PI).sum(-1)
    log_qz_x = -0.5 * (eps.pow(2) + logvar.unsqueeze(1) + _LOG_2PI).sum(-1)
    return log_px_z, log_pz, log_qz_x


def log_weights(model: VAE, x: torch.Tensor, mu: torch.Tensor, logvar: torch.Tensor,
                eps: torch.Tensor) -> torch.Tensor:
    """log p(x|z) + log p(z) - log q(z|x) of each sample, (B, C): what the IWAE bound and objective average."""
    log_px_z, log_pz, log_qz_x = log_weight_terms(model, x, mu, logvar, eps)
    return log_px_z + log_pz - log_qz_x  # in this order: the metrics' float sums stay bit for bit


def multi_sample_objective(model: VAE, x: torch.Tensor, objective: str, samples: int,
                           generator: torch.Generator | None = None, kl_weight: float = 1.0
                           ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """A k-sample training loss of a batch, summed over images, and the one-sample ELBO terms.

    ``elbo``: minus the mean over the k samples of the one-sample ELBO estimate log w_i (the
    VAE column of Burda et al. 2016), with the KL part log p(z) - log q(z|x) weighted by
    ``kl_weight``. ``iwae``: minus the importance-weighted bound log (1/k) sum_i w_i, its
    gradient taken through the log-sum-exp (Burda et al.'s estimator; no separate KL term).
    Returns (loss to minimize, -ELBO, recon, KL): the last three as ``negative_elbo`` reports
    them, from the first of the k samples and the analytic KL, so that runs of any k compare.
    """
    mu, logvar = model.encoder(x)
    eps = torch.randn((len(x), samples, mu.shape[1]), generator=generator, device=mu.device, dtype=mu.dtype)
    log_px_z, log_pz, log_qz_x = log_weight_terms(model, x, mu, logvar, eps)
    log_w = log_px_z + log_pz - log_qz_x
    if objective == "iwae":
        bound = torch.logsumexp(log_w, dim=1) - math.log(samples)
    else:
        bound = (log_w if kl_weight == 1.0 else log_px_z + kl_weight * (log_pz - log_qz_x)).mean(1)
    recon = -log_px_z[:, 0].sum()
    kld = gaussian_kl(mu, logvar).sum()
    return -bound.sum(), recon + kld, recon, kld


def save_model(path: str | Path, model: VAE) -> None:
    """The model file: the architecture (``config``) beside the weights, pickle-free."""
    write_torch(path, {"config": model.config, "model": model.state_dict()})


def load_model(path: str | Path | BinaryIO, device: torch.device | str = "cpu") -> VAE:
    """Rebuild the VAE of a model file, a per-epoch weights file or a training state, in eval mode.

    All three store the architecture (``config``) beside the weights (``model``).
    """
    saved = load_torch(path, device)
    model = VAE(**saved["config"]).to(device)
    model.load_state_dict(saved["model"])
    return model.eval()
