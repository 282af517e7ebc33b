"""The VAE: encoder, decoder, the reparameterization trick, its loss (-ELBO) and training objectives.

The default is the notebook's model: an MLP (784-512-512-latent, ReLU) and BCE + KL
on grey pixels. Options: the MLP's depth and activation (``tanh`` for the IWAE
paper's 784-200-200-50), a small ``conv`` encoder and decoder, and the likelihood
p(x|z): ``bernoulli`` (the notebook's, on grey levels), ``binarized`` (the same on
pixels drawn as 0/1, the papers' dynamically binarized MNIST) or
``continuous_bernoulli`` (a normalized density on [0, 1]).

``batch_objective`` is the one loss of a training step for every objective (the ELBO, or
Burda et al.'s IWAE bound) and number of samples k. The likelihoods are objects of
``vae.likelihoods``. A model file (``save_model``,
``load_model``) holds the architecture beside the weights. Module names match the
notebook's, so its ``state_dict`` files load here and ours there.
Sampling takes an optional ``torch.Generator`` so that every random draw of the
pipeline comes from a generator whose state is saved in the checkpoints.
"""

import math
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO, NamedTuple

import torch
from torch import nn

from vae.data.datasets import IMAGE_SHAPE
from vae.io import load_torch, write_torch
from vae.likelihoods import LIKELIHOODS, Likelihood
from vae.loops import EVAL_BATCH
from vae.params import ACTIVATION_NAMES, MODEL_DEFAULTS

INPUT_DIM = math.prod(IMAGE_SHAPE)  # 784 pixels, flattened


_LOG_2PI = math.log(2 * math.pi)
ACTIVATIONS = {"relu": nn.ReLU, "tanh": nn.Tanh}
assert tuple(ACTIVATIONS) == ACTIVATION_NAMES
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
                 likelihood: Likelihood = LIKELIHOODS["bernoulli"]) -> None:
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


def posterior_noise(mu: torch.Tensor, generator: torch.Generator | None = None,
                    samples: int | None = None) -> torch.Tensor:
    """Standard normal eps for ``posterior_sample``: shaped like ``mu`` (N, d), or (N, samples, d)."""
    shape = mu.shape if samples is None else (len(mu), samples, mu.shape[1])
    return torch.randn(shape, generator=generator, device=mu.device, dtype=mu.dtype)


def posterior_sample(mu: torch.Tensor, logvar: torch.Tensor, eps: torch.Tensor) -> torch.Tensor:
    """The reparameterization trick, z = mu + eps * sigma, differentiable in mu and logvar.

    ``eps`` (N, d) gives one sample per image; (N, C, d) gives C, each image's mu and sigma
    broadcast over its C samples.
    """
    if eps.dim() > mu.dim():
        mu, logvar = mu.unsqueeze(1), logvar.unsqueeze(1)
    return mu + eps * (0.5 * logvar).exp()


def reparameterize(mu: torch.Tensor, logvar: torch.Tensor,
                   generator: torch.Generator | None = None) -> torch.Tensor:
    """Sample z ~ N(mu, sigma^2), one per image, with noise from ``generator``."""
    return posterior_sample(mu, logvar, posterior_noise(mu, generator))


class VAE(nn.Module):
    """The encoder, the decoder, and ``config``: the keyword arguments that rebuild it."""

    def __init__(self, input_dim: int = INPUT_DIM, hidden_dim: int = 512, latent_dim: int = 2,
                 hidden_layers: int = 2, activation: str = "relu", architecture: str = "mlp",
                 likelihood: str = "bernoulli") -> None:
        super().__init__()
        options = {"hidden_layers": hidden_layers, "activation": activation,
                   "architecture": architecture, "likelihood": likelihood}
        self.config = {"input_dim": input_dim, "hidden_dim": hidden_dim, "latent_dim": latent_dim,
                       **{key: value for key, value in options.items() if value != MODEL_DEFAULTS[key]}}
        shape = {key: options[key] for key in ("hidden_layers", "activation", "architecture")}
        self.encoder = Encoder(input_dim, hidden_dim, latent_dim, **shape)
        self.decoder = Decoder(latent_dim, hidden_dim, input_dim, **shape, likelihood=LIKELIHOODS[likelihood])

    @property
    def latent_dim(self) -> int:
        return self.config["latent_dim"]

    @property
    def likelihood(self) -> Likelihood:
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
             likelihood: Likelihood = LIKELIHOODS["bernoulli"]) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
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


class LogWeightTerms(NamedTuple):
    """log p(x|z), log p(z) and log q(z|x) of each of C samples per image, each (B, C)."""

    log_px_z: torch.Tensor
    log_pz: torch.Tensor
    log_qz_x: torch.Tensor

    def total(self) -> torch.Tensor:
        """The log importance weights log p(x|z) + log p(z) - log q(z|x), (B, C)."""
        return self.log_px_z + self.log_pz - self.log_qz_x  # in this order: the metrics' float sums stay bit for bit


def log_weight_terms(model: VAE, x: torch.Tensor, mu: torch.Tensor, logvar: torch.Tensor,
                     eps: torch.Tensor) -> LogWeightTerms:
    """The terms of the log importance weight of each z = mu + eps * sigma; eps (B, C, d) -> three (B, C).

    log p(x|z) is minus the training loss's reconstruction term summed over the 784 pixels, so
    one sample's weight is exactly the one-sample ELBO estimate with a Monte Carlo KL in place
    of the analytic one. The encoder's outputs are given once per image; the decoder runs on
    all B * C samples at once.
    """
    b, c, d = eps.shape
    z = posterior_sample(mu, logvar, eps)
    logits = model.decoder.logits(z.reshape(b * c, d)).reshape(b, c, -1)
    log_px_z = -model.likelihood.nll(logits, x.unsqueeze(1).expand_as(logits), reduction="none").sum(-1)
    log_pz = -0.5 * (z.pow(2) + _LOG_2PI).sum(-1)
    log_qz_x = -0.5 * (eps.pow(2) + logvar.unsqueeze(1) + _LOG_2PI).sum(-1)
    return LogWeightTerms(log_px_z, log_pz, log_qz_x)


def log_weights(model: VAE, x: torch.Tensor, mu: torch.Tensor, logvar: torch.Tensor,
                eps: torch.Tensor) -> torch.Tensor:
    """log p(x|z) + log p(z) - log q(z|x) of each sample, (B, C): what the IWAE bound and objective average."""
    return log_weight_terms(model, x, mu, logvar, eps).total()


def kl_weighted(unweighted: torch.Tensor, fit: torch.Tensor, kl: torch.Tensor, weight: float) -> torch.Tensor:
    """``fit + weight * kl``: an ELBO-type sum with its KL part scaled (beta, warm-up).

    At weight 1 it is ``unweighted``, the sum as already computed, so that a run without a KL
    weight does exactly the float operations of one that never had the option.
    """
    return unweighted if weight == 1.0 else fit + weight * kl


def uses_log_weights(objective: str, samples: int) -> bool:
    """Whether a step's loss is estimated from k sampled log weights (Monte Carlo KL, k = 1 included).

    Every objective but the notebook's, the one-sample ELBO with the analytic KL (``elbo``, k = 1);
    such runs record the loss they minimized beside the ELBO terms.
    """
    return objective != "elbo" or samples > 1


@dataclass(frozen=True)
class BatchObjective:
    """What a training step minimizes on a batch and what it reports of it, each summed over the images.

    ``loss``, ``recon`` and ``kl`` are the unweighted one-sample negative ELBO and its terms with
    the analytic KL (for k samples: of the first), whatever the step minimizes, so that runs of
    any objective and k compare. ``minimized`` is the loss whose gradient the step follows;
    ``from_log_weights`` says whether it is an estimate of its own (``uses_log_weights``).
    """

    minimized: torch.Tensor
    loss: torch.Tensor
    recon: torch.Tensor
    kl: torch.Tensor
    from_log_weights: bool

    def reported(self) -> tuple[torch.Tensor, ...]:
        """The detached values a step records: loss, recon and KL, then the minimized loss if it is an estimate."""
        terms = (self.loss, self.recon, self.kl) + ((self.minimized,) if self.from_log_weights else ())
        return tuple(term.detach() for term in terms)


def batch_objective(model: VAE, x: torch.Tensor, objective: str = "elbo", samples: int = 1,
                    generator: torch.Generator | None = None, kl_weight: float = 1.0) -> BatchObjective:
    """A batch's training loss for any objective and k (``samples``), and the terms a step reports.

    ``elbo`` at k = 1: the notebook's negative ELBO with the analytic KL, recon + w * KL.
    Otherwise the k log weights log w_i of each image: ``elbo``, minus their mean (the VAE
    column of Burda et al. 2016), the KL part log p(z) - log q(z|x) weighted by ``kl_weight``;
    ``iwae``, minus the importance-weighted bound log (1/k) sum_i w_i, its gradient taken through
    the log-sum-exp (Burda et al.'s estimator; no separate KL term).
    """
    if not uses_log_weights(objective, samples):
        loss, recon, kld = negative_elbo(model, x, generator)
        return BatchObjective(kl_weighted(loss, recon, kld, kl_weight), loss, recon, kld, False)
    mu, logvar = model.encoder(x)
    terms = log_weight_terms(model, x, mu, logvar, posterior_noise(mu, generator, samples))
    log_w = terms.total()
    if objective == "iwae":
        bound = torch.logsumexp(log_w, dim=1) - math.log(samples)
    else:
        bound = kl_weighted(log_w, terms.log_px_z, terms.log_pz - terms.log_qz_x, kl_weight).mean(1)
    recon = -terms.log_px_z[:, 0].sum()
    kld = gaussian_kl(mu, logvar).sum()
    return BatchObjective(-bound.sum(), recon + kld, recon, kld, True)


def save_model(path: str | Path, model: VAE) -> None:
    """The model file: the architecture (``config``) beside the weights, pickle-free."""
    write_torch(path, {"config": model.config, "model": model.state_dict()})


def load_model(path: str | Path | BinaryIO, device: torch.device | str = "cpu") -> VAE:
    """Rebuild the VAE of a model file, a per-epoch weights file or a training state, in eval mode.

    All three store the architecture (``config``) beside the weights (``model``).
    """
    saved = load_torch(path, device, keys=("config", "model"))
    model = VAE(**saved["config"]).to(device)
    model.load_state_dict(saved["model"])
    return model.eval()
