"""The VAE: encoder, decoder, the reparameterization trick, its loss (-ELBO) and training objectives.

The default is the notebook's model: an MLP (784-512-512-latent, ReLU) and BCE + KL
on grey pixels. Options: the MLP's depth and activation (``tanh`` for the IWAE
paper's 784-200-200-50), a small ``conv`` encoder and decoder, and the likelihood
p(x|z): ``bernoulli`` (the notebook's, on grey levels), ``binarized`` (the same on
pixels drawn as 0/1, the papers' dynamically binarized MNIST), ``continuous_bernoulli``
(a normalized density on [0, 1]) or ``discretized_logistic`` (a probability of 8-bit values,
with a learned log-scale per subpixel that only its decoders have).

``batch_objective`` is the one loss of a training step for every objective (the ELBO, or
Burda et al.'s IWAE bound) and number of samples k. The likelihoods are objects of
``vae.likelihoods``. A model file (``save_model``,
``load_model``) holds the architecture beside the weights. Module names match the
notebook's, so its ``state_dict`` files load here and ours there.
Sampling takes an optional ``torch.Generator`` so that every random draw of the
pipeline comes from a generator whose state is saved in the checkpoints.
"""

import math
from dataclasses import asdict, dataclass, fields
from pathlib import Path
from typing import Any, BinaryIO, NamedTuple

import torch
from torch import nn

from vae.errors import DamagedFile
from vae.io import load_torch, write_torch
from vae.likelihoods import LIKELIHOODS, Likelihood
from vae.loops import EVAL_BATCH
from vae.params import ACTIVATION_NAMES, Params, conv_depth, default
from vae.priors import diagonal_normal_log_prob, make_prior

IMAGE_SHAPE = (1, 28, 28)  # channels, height, width: the IDX datasets', and a model file's without its own
INPUT_DIM = math.prod(IMAGE_SHAPE)  # 784 pixels, flattened


_LOG_2PI = math.log(2 * math.pi)
ACTIVATIONS = {"relu": nn.ReLU, "tanh": nn.Tanh}
assert (*ACTIVATIONS, "gated") == ACTIVATION_NAMES
# The conv encoder's feature maps after each stride-2 layer (at 28: 14 x 14 and 7 x 7); the decoder mirrors it
CONV_CHANNELS = (16, 32, 64, 128, 256)


class GatedDense(nn.Module):
    """h = (W1 x + b1) * sigmoid(W2 x + b2): the gated dense layer of the VampPrior paper's models.

    Dauphin et al.'s gated linear unit on a dense layer; the gate lets each unit switch itself off.
    """

    def __init__(self, n_in: int, n_out: int) -> None:
        super().__init__()
        self.h = nn.Linear(n_in, n_out)
        self.g = nn.Linear(n_in, n_out)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.h(x) * torch.sigmoid(self.g(x))


def _mlp(sizes: list[int], activation: str) -> list[nn.Module]:
    """Linear layers between consecutive ``sizes``, each followed by the activation, or gated dense layers."""
    layers: list[nn.Module] = []
    for n_in, n_out in zip(sizes, sizes[1:]):
        layers += [GatedDense(n_in, n_out)] if activation == "gated" else [nn.Linear(n_in, n_out),
                                                                          ACTIVATIONS[activation]()]
    return layers


class Encoder(nn.Module):
    """x -> (mu, logvar) of the Gaussian posterior q(z|x).

    ``mlp``: ``hidden_layers`` layers of ``hidden_dim`` units. ``conv``: stride-2 4x4
    convolutions with ``CONV_CHANNELS`` feature maps, halving the side until it is at most 8
    (``conv_depth``: 28 -> 14 -> 7, 32 -> 16 -> 8, 64 -> 32 -> 16 -> 8), then linear maps.
    ``shape`` is the images' (channels, height, width).
    """

    def __init__(self, input_dim: int, hidden_dim: int, latent_dim: int, hidden_layers: int = 2,
                 activation: str = "relu", architecture: str = "mlp",
                 shape: tuple[int, int, int] = IMAGE_SHAPE) -> None:
        super().__init__()
        if architecture == "conv":
            depth = conv_depth(shape[-1])
            maps = (shape[0], *CONV_CHANNELS[:depth])
            layers: list[nn.Module] = []
            for n_in, n_out in zip(maps, maps[1:]):
                layers += [nn.Conv2d(n_in, n_out, 4, stride=2, padding=1), ACTIVATIONS[activation]()]
            self.net = nn.Sequential(nn.Unflatten(1, shape), *layers, nn.Flatten())
            features = maps[-1] * (shape[1] >> depth) * (shape[2] >> depth)
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
    """z -> the logits of p(x|z), flat (N, C * H * W); ``forward`` gives the pixels' means.

    The mirror image of the encoder: ``mlp`` layers, or a linear map to the encoder's last
    feature maps and stride-2 transposed convolutions back to ``shape`` (7 -> 14 -> 28).
    """

    def __init__(self, latent_dim: int, hidden_dim: int, output_dim: int, hidden_layers: int = 2,
                 activation: str = "relu", architecture: str = "mlp",
                 likelihood: Likelihood = LIKELIHOODS["bernoulli"], shape: tuple[int, int, int] = IMAGE_SHAPE) -> None:
        super().__init__()
        self.likelihood_kind = likelihood
        if architecture == "conv":
            depth = conv_depth(shape[-1])
            maps = (shape[0], *CONV_CHANNELS[:depth])[::-1]
            side = shape[1] >> depth, shape[2] >> depth
            layers: list[nn.Module] = []
            for n_in, n_out in zip(maps, maps[1:]):
                layers += [nn.ConvTranspose2d(n_in, n_out, 4, stride=2, padding=1), ACTIVATIONS[activation]()]
            self.net = nn.Sequential(
                nn.Linear(latent_dim, maps[0] * side[0] * side[1]), ACTIVATIONS[activation](),
                nn.Unflatten(1, (maps[0], *side)),
                *layers[:-1],  # no activation after the last: its outputs are the logits
                nn.Flatten(),
                nn.Sigmoid(),
            )
        else:
            self.net = nn.Sequential(*_mlp([latent_dim] + [hidden_dim] * hidden_layers, activation),
                                     nn.Linear(hidden_dim, output_dim), nn.Sigmoid())
        for name, parameter in likelihood.new_parameters(output_dim).items():  # none but the likelihood's own
            self.register_parameter(name, parameter)

    @property
    def likelihood(self) -> Likelihood:
        """p(x|z) with this decoder's parameters of it (the discretized logistic's ``log_scale``)."""
        return self.likelihood_kind.bound_to(self)

    @property
    def output_layer(self) -> nn.Linear | nn.ConvTranspose2d:
        """The layer whose outputs are the logits (its bias is the output bias)."""
        return next(m for m in reversed(self.net) if isinstance(m, nn.Linear | nn.ConvTranspose2d))

    def logits(self, z: torch.Tensor) -> torch.Tensor:
        """The outputs a the likelihood reads: logits (sigmoid(a) the Bernoulli means), or the discretized
        logistic's locations; losses are computed from these."""
        *layers, _sigmoid = self.net  # not self.net[:-1], which builds a new Sequential per call
        for layer in layers:
            z = layer(z)
        return z.float()  # float32 also under bf16 autocast: losses are computed in float32

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        """The mean of p(x|z) of each pixel: what sample and reconstruction images show."""
        return self.likelihood.mean(self.logits(z))


def posterior_noise(mu: torch.Tensor, generator: torch.Generator | None = None,
                    samples: int | None = None, dim: int | None = None) -> torch.Tensor:
    """Standard normal eps for ``posterior_sample``: shaped like ``mu`` (N, d), or (N, samples, D).

    D is ``dim`` (default d): a two-layer model draws the noise of both layers at once (``VAE.noise_dim``).
    """
    shape = mu.shape if samples is None else (len(mu), samples, dim or mu.shape[1])
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


@dataclass(frozen=True, kw_only=True)
class VAEConfig:
    """The model's options: everything that rebuilds a ``VAE`` but its weights (nanoGPT's ``GPTConfig``).

    Built from the params (``from_params``), written into every model file beside the weights
    (``to_dict``) and read back by ``load_model`` (``from_dict``). The defaults are the params'
    declared defaults (``vae.params``).
    """

    hidden_dim: int = default("hidden_dim")
    latent_dim: int = default("latent_dim")
    hidden_layers: int = default("hidden_layers")
    activation: str = default("activation")
    architecture: str = default("architecture")
    likelihood: str = default("likelihood")
    prior: str = default("prior")
    pseudo_inputs: int = default("pseudo_inputs")
    stochastic_layers: int = default("stochastic_layers")
    lower_latent_dim: int = default("lower_latent_dim")
    channels: int = default("channels")
    image_size: int = default("image_size")

    STORED_ALWAYS = ("input_dim", "hidden_dim", "latent_dim")  # the notebook's model files hold these three

    @property
    def image_shape(self) -> tuple[int, int, int]:
        """(channels, height, width) of the images."""
        return self.channels, self.image_size, self.image_size

    @property
    def input_dim(self) -> int:
        """Values per image, C * H * W (784 for MNIST)."""
        return math.prod(self.image_shape)

    @classmethod
    def from_params(cls, params: Params) -> "VAEConfig":
        """The options that validated params choose: their keys of the same names."""
        return cls(**{spec.name: getattr(params, spec.name) for spec in fields(cls)})

    def to_dict(self) -> dict[str, Any]:
        """The form a model file stores: ``STORED_ALWAYS``, then each option that differs from its default.

        Options at their defaults are left out, so that the notebook's model files (and ours from
        before each option) load, and a default model is written byte for byte as before.
        """
        defaults = VAEConfig()
        return {"input_dim": self.input_dim, **{key: value for key, value in asdict(self).items()
                                                if key in self.STORED_ALWAYS or value != getattr(defaults, key)}}

    @classmethod
    def from_dict(cls, stored: dict[str, Any], source: str | Path = "the model file") -> "VAEConfig":
        """The config a model file stored (``to_dict``); an option this code does not know is a ``DamagedFile``."""
        options = {key: value for key, value in stored.items() if key != "input_dim"}
        unknown = sorted(set(options) - {spec.name for spec in fields(cls)})
        if unknown:
            raise DamagedFile(source, f"stores model options this code does not know ({', '.join(unknown)}): it was "
                                      "written by a newer version of the pipeline")
        config = cls(**options)
        if stored.get("input_dim", config.input_dim) != config.input_dim:
            raise DamagedFile(source, f"stores input_dim = {stored['input_dim']}, but {config.channels} x "
                                      f"{config.image_size} x {config.image_size} images have {config.input_dim} "
                                      "values")
        return config


class VAE(nn.Module):
    """The encoder, the decoder, the prior, and ``config``: the ``VAEConfig`` that rebuilds it.

    One stochastic layer (the default): q(z|x), p(z), p(x|z), with z of ``latent_dim``.
    Two (``stochastic_layers=2``, the VampPrior paper's HVAE): the top layer z2 of ``latent_dim``,
    inferred first, q(z2|x) (``encoder``), then the lower z1 of ``lower_latent_dim``, q(z1|x, z2)
    (``lower_encoder``); generated top-down, p(z2), p(z1|z2) (``lower_prior``), p(x|z1, z2)
    (``decoder``). Every MLP has ``hidden_layers`` layers of ``hidden_dim`` units. The prior
    (``prior``: ``standard`` or ``vampprior`` with ``pseudo_inputs`` components) is on the top
    layer, whose posterior means are the model's codes: what ``encode`` returns, what the
    latent plots, probes and latent density use, and what ``decode`` maps to images.
    """

    def __init__(self, config: VAEConfig = VAEConfig()) -> None:
        super().__init__()
        self.config = config
        shape = {"hidden_layers": config.hidden_layers, "activation": config.activation,
                 "architecture": config.architecture}
        lower = self.lower_latent_dim
        self.encoder = Encoder(config.input_dim, config.hidden_dim, config.latent_dim, **shape,
                               shape=config.image_shape)
        self.decoder = Decoder(lower + config.latent_dim, config.hidden_dim, config.input_dim, **shape,
                               likelihood=LIKELIHOODS[config.likelihood], shape=config.image_shape)
        if lower:
            self.lower_encoder = Encoder(config.input_dim + config.latent_dim, config.hidden_dim, lower, **shape)
            self.lower_prior = Encoder(config.latent_dim, config.hidden_dim, lower, **shape)
        self.prior = make_prior(config.prior, config.pseudo_inputs, config.input_dim)

    @property
    def image_shape(self) -> tuple[int, int, int]:
        """(channels, height, width) of the images: 1 x 28 x 28 unless the config says otherwise."""
        return self.config.image_shape

    @property
    def latent_dim(self) -> int:
        """The size of the top layer: the codes' dimension."""
        return self.config.latent_dim

    @property
    def lower_latent_dim(self) -> int:
        """The size of the lower stochastic layer z1; 0 with one layer."""
        return self.config.lower_latent_dim if self.hierarchical else 0

    @property
    def hierarchical(self) -> bool:
        return self.config.stochastic_layers == 2

    @property
    def noise_dim(self) -> int:
        """Standard normal numbers per posterior sample: the top layer's, then the lower layer's."""
        return self.latent_dim + self.lower_latent_dim

    @property
    def analytic_kl(self) -> bool:
        """Whether the ELBO's KL has a closed form: one layer and the standard normal prior."""
        return self.prior.analytic_kl and not self.hierarchical

    @property
    def likelihood(self) -> Likelihood:
        return self.decoder.likelihood

    def log_prior(self, z: torch.Tensor) -> torch.Tensor:
        """log p(z) of top-layer codes z (..., latent_dim)."""
        return self.prior.log_prob(z, self.encoder)

    def sample_prior(self, n: int, generator: torch.Generator | None = None) -> torch.Tensor:
        """``n`` top-layer codes drawn from the prior, (n, latent_dim)."""
        device = next(self.parameters()).device
        return self.prior.sample(n, self.latent_dim, self.encoder, generator, device)

    def lower_posterior(self, x: torch.Tensor, z: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(mu, logvar) of q(z1 | x, z2) for flat images x (N, 784) and top codes z (N, latent_dim)."""
        return self.lower_encoder(torch.cat((x.flatten(1), z), dim=1))

    def decode_logits(self, z: torch.Tensor, lower: torch.Tensor | None = None,
                      generator: torch.Generator | None = None) -> torch.Tensor:
        """Logits of p(x | codes z); with two layers, z1 is ``lower``, else a draw from p(z1|z) with ``generator``,
        else its mean."""
        if not self.hierarchical:
            return self.decoder.logits(z)
        if lower is None:
            mu, logvar = self.lower_prior(z)
            lower = mu if generator is None else reparameterize(mu, logvar, generator)
        return self.decoder.logits(torch.cat((lower, z), dim=1))

    def decode(self, z: torch.Tensor, lower: torch.Tensor | None = None,
               generator: torch.Generator | None = None) -> torch.Tensor:
        """The mean of p(x | codes z) of each pixel, (N, 784): what sample and reconstruction images show."""
        if not self.hierarchical:
            return self.decoder(z)
        return self.likelihood.mean(self.decode_logits(z, lower, generator))

    def reconstruct(self, x: torch.Tensor) -> torch.Tensor:
        """Decoder means at the posterior means of flat images x: z = mu (and z1 = its mean given x and mu)."""
        mu, _ = self.encoder(x)
        return self.decode(mu, self.lower_posterior(x, mu)[0] if self.hierarchical else None)

    def forward(self, x: torch.Tensor, generator: torch.Generator | None = None
                ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
        """Return (x_hat, mu, logvar, z) with x_hat the decoder's means, flat, shape (N, 784), of the top layer."""
        mu, logvar = self.encoder(x)
        z = reparameterize(mu, logvar, generator)
        lower = reparameterize(*self.lower_posterior(x, z), generator) if self.hierarchical else None
        return self.decode(z, lower), mu, logvar, z


def images(x: torch.Tensor, shape: tuple[int, int, int] = IMAGE_SHAPE) -> torch.Tensor:
    """Flat pixels (N, C * H * W) -> image batch (N, C, H, W) for torchvision's grids."""
    return x.reshape(-1, *shape)


@torch.no_grad()
def encode(model: VAE, x: torch.Tensor, batch_size: int = EVAL_BATCH) -> tuple[torch.Tensor, torch.Tensor]:
    """Posterior means and log-variances (N, d) of flat images ``x``, in eval mode, in batches."""
    model.eval()
    parts = [model.encoder(x[start:start + batch_size]) for start in range(0, len(x), batch_size)]
    return torch.cat([p[0] for p in parts]), torch.cat([p[1] for p in parts])


@torch.no_grad()
def encode_lower(model: VAE, x: torch.Tensor, mu: torch.Tensor, batch_size: int = EVAL_BATCH) -> torch.Tensor:
    """Means of q(z1 | x, z2 = mu) of a two-layer model, (N, lower_latent_dim), in eval mode, in batches."""
    model.eval()
    return torch.cat([model.lower_posterior(x[start:start + batch_size], mu[start:start + batch_size])[0]
                      for start in range(0, len(x), batch_size)])


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
    """The negative ELBO of a batch of flat images and its terms (loss, recon, KL), one latent sample per image.

    With the analytic KL (``VAE.analytic_kl``), ``vae_loss``; otherwise (a VampPrior, two layers)
    the one-sample estimate: recon = -log p(x|z), KL = log q(z|x) - log p(z) at the sample.
    """
    mu, logvar = model.encoder(x)
    if model.analytic_kl:
        z = reparameterize(mu, logvar, generator)
        return vae_loss(x, model.decoder.logits(z), mu, logvar, model.likelihood)
    terms = log_weight_terms(model, x, mu, logvar, posterior_noise(mu, generator, 1, model.noise_dim))
    recon, kld = -terms.log_px_z.sum(), terms.kl().sum()
    return recon + kld, recon, kld


class LogWeightTerms(NamedTuple):
    """log p(x|z), log p(z) and log q(z|x) of each of C samples per image, each (B, C).

    With two layers z = (z1, z2): log p(z) = log p(z1|z2) + log p(z2), log q = log q(z1|x, z2) + log q(z2|x).
    """

    log_px_z: torch.Tensor
    log_pz: torch.Tensor
    log_qz_x: torch.Tensor

    def total(self) -> torch.Tensor:
        """The log importance weights log p(x|z) + log p(z) - log q(z|x), (B, C)."""
        return self.log_px_z + self.log_pz - self.log_qz_x  # in this order: the metrics' float sums stay bit for bit

    def kl(self) -> torch.Tensor:
        """The one-sample KL estimates log q(z|x) - log p(z), (B, C)."""
        return self.log_qz_x - self.log_pz


def _log_normal_noise(eps: torch.Tensor, logvar: torch.Tensor) -> torch.Tensor:
    """log q(z|x) of z = mu + eps * sigma, from the noise: -0.5 * sum(eps^2 + log sigma^2 + log 2 pi)."""
    return -0.5 * (eps.pow(2) + logvar.unsqueeze(1) + _LOG_2PI).sum(-1)


def log_weight_terms(model: VAE, x: torch.Tensor, mu: torch.Tensor, logvar: torch.Tensor,
                     eps: torch.Tensor) -> LogWeightTerms:
    """The terms of the log importance weight of each z = mu + eps * sigma; eps (B, C, D) -> three (B, C).

    log p(x|z) is minus the training loss's reconstruction term summed over the 784 pixels, so
    one sample's weight is exactly the one-sample ELBO estimate with a Monte Carlo KL in place
    of the analytic one. The encoder's outputs (the top layer's) are given once per image; the
    rest runs on all B * C samples at once. With two layers, eps's first ``latent_dim`` numbers
    draw z2 and the rest z1 ~ q(z1 | x, z2).
    """
    b, c, _ = eps.shape
    d = mu.shape[1]
    top_eps = eps[..., :d]
    z = posterior_sample(mu, logvar, top_eps)
    log_pz = model.log_prior(z)
    log_qz_x = _log_normal_noise(top_eps, logvar)
    lower = None
    if model.hierarchical:
        flat_z = z.reshape(b * c, d)
        lower_mu, lower_logvar = model.lower_posterior(x.unsqueeze(1).expand(b, c, -1).reshape(b * c, -1), flat_z)
        lower_eps = eps[..., d:].reshape(b * c, 1, -1)
        lower = posterior_sample(lower_mu, lower_logvar, lower_eps).reshape(b * c, -1)
        log_qz_x = log_qz_x + _log_normal_noise(lower_eps, lower_logvar).reshape(b, c)
        log_pz = log_pz + diagonal_normal_log_prob(lower, *model.lower_prior(flat_z)).reshape(b, c)
    logits = model.decode_logits(z.reshape(b * c, d), lower).reshape(b, c, -1)
    log_px_z = -model.likelihood.nll(logits, x.unsqueeze(1).expand_as(logits), reduction="none").sum(-1)
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


def uses_log_weights(objective: str, samples: int, analytic_kl: bool = True) -> bool:
    """Whether a step's loss is estimated from k sampled log weights (Monte Carlo KL, k = 1 included).

    Every objective but the notebook's, the one-sample ELBO with the analytic KL (``elbo``, k = 1,
    a model whose KL has a closed form: ``VAE.analytic_kl``); such runs record the loss they
    minimized beside the ELBO terms.
    """
    return objective != "elbo" or samples > 1 or not analytic_kl


@dataclass(frozen=True)
class BatchObjective:
    """What a training step minimizes on a batch and what it reports of it, each summed over the images.

    ``loss``, ``recon`` and ``kl`` are the unweighted one-sample negative ELBO and its terms with
    the analytic KL where the model has one, else its one-sample estimate (for k samples: of the
    first), whatever the step minimizes, so that runs of
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
    if not uses_log_weights(objective, samples, model.analytic_kl):
        loss, recon, kld = negative_elbo(model, x, generator)
        return BatchObjective(kl_weighted(loss, recon, kld, kl_weight), loss, recon, kld, False)
    mu, logvar = model.encoder(x)
    terms = log_weight_terms(model, x, mu, logvar, posterior_noise(mu, generator, samples, model.noise_dim))
    log_w = terms.total()
    if objective == "iwae":
        bound = torch.logsumexp(log_w, dim=1) - math.log(samples)
    else:
        bound = kl_weighted(log_w, terms.log_px_z, terms.log_pz - terms.log_qz_x, kl_weight).mean(1)
    recon = -terms.log_px_z[:, 0].sum()
    kld = gaussian_kl(mu, logvar).sum() if model.analytic_kl else terms.kl()[:, 0].sum()
    return BatchObjective(-bound.sum(), recon + kld, recon, kld, True)


def save_model(path: str | Path, model: VAE) -> None:
    """The model file: the architecture (``config``, as ``VAEConfig.to_dict``) beside the weights, pickle-free."""
    write_torch(path, {"config": model.config.to_dict(), "model": model.state_dict()})


def load_model(path: str | Path | BinaryIO, device: torch.device | str = "cpu") -> VAE:
    """Rebuild the VAE of a model file, a per-epoch weights file or a training state, in eval mode.

    All three store the architecture (``config``) beside the weights (``model``).
    """
    saved = load_torch(path, device, keys=("config", "model"))
    source = path if isinstance(path, (str, Path)) else getattr(path, "name", "the model file")
    model = VAE(VAEConfig.from_dict(saved["config"], source)).to(device)
    model.load_state_dict(saved["model"])
    return model.eval()
