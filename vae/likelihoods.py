"""The likelihood p(x|z): what the decoder's logits mean, and what data each one is scored on.

One object per ``likelihood`` param, chosen once (``LIKELIHOODS[name]``): its negative
log-likelihood, the pixel means the images show, how a training batch is prepared and how
held-out images (validation, test) are prepared.

- ``bernoulli`` (the notebook's): BCE on grey pixels. Not a density of grey levels, but linear
  in the pixels, so it is the expected NLL of Bernoulli-binarized images.
- ``binarized``: the same loss on pixels drawn as 0/1, a new draw every training batch
  (dynamic binarization) and one fixed draw of held-out images, so every model is scored on
  the same bits; its IWAE bound at K = 5000 is the papers' binarized test NLL.
- ``continuous_bernoulli`` (Loaiza-Ganem & Cunningham 2019): a normalized density on [0, 1].
- ``discretized_logistic`` (Kingma et al. 2016, Salimans et al. 2017): a probability of each of the
  256 values of an 8-bit subpixel, a logistic located at the decoder's output (unbounded, so that the
  open edge bins can take all the mass) with a learned log-scale per subpixel, integrated over the
  value's bin.

``discretized_logistic`` and ``binarized`` are probabilities of discrete data, so their NLLs have a
size in bits per dimension (``bits_per_dim``); BCE on grey values and the continuous Bernoulli's
density have none.
"""

import math
from abc import ABC, abstractmethod
from dataclasses import dataclass, field, replace

import torch
import torch.nn.functional as F
from torch import nn

from vae.params import LIKELIHOOD_NAMES

EVAL_BINARIZATION_SEED = 0  # not the seed param: every model is scored on the same bits


def binarize(x: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
    """Pixels drawn as Bernoulli(x): dynamic binarization (a new draw every time an image is used)."""
    return torch.bernoulli(x, generator=generator)


def fixed_binarization(x: torch.Tensor) -> torch.Tensor:
    """The one binarization of held-out images (validation, test) that every model is scored on."""
    return binarize(x, torch.Generator(x.device).manual_seed(EVAL_BINARIZATION_SEED))


def continuous_bernoulli_log_norm(logits: torch.Tensor) -> torch.Tensor:
    """log C(lambda) of the continuous Bernoulli (Loaiza-Ganem & Cunningham 2019), lambda = sigmoid(a).

    C(lambda) = 2 artanh(1 - 2 lambda) / (1 - 2 lambda), which in terms of the logit is
    a / tanh(a / 2); near a = 0 (lambda = 1/2, where both vanish) its Taylor series 2 + a^2 / 6.
    """
    small = logits.abs() < 1e-2
    safe = torch.where(small, torch.ones_like(logits), logits)  # no 0/0, not even in the unused branch
    return torch.where(small, 2 + logits.square() / 6, safe / torch.tanh(safe / 2)).log()


def bernoulli_nll(logits: torch.Tensor, x: torch.Tensor, reduction: str = "sum") -> torch.Tensor:
    """BCE of sigmoid(logits) against ``x``, computed from the logits: summed (``"sum"``) or per pixel (``"none"``).

    The notebook's ``BCELoss(reduction="sum")`` of x_hat = sigmoid(logits), computed with
    ``binary_cross_entropy_with_logits``: the same value wherever x_hat is representable, exact
    where sigmoid rounds to 0 or 1 in float32 (the notebook's loss is clamped there and its
    gradient vanishes), and 3-4x cheaper on the CPU.
    """
    return F.binary_cross_entropy_with_logits(logits, x.reshape(logits.shape), reduction=reduction)


# What evaluate writes for a discrete likelihood: the test loss (the negative ELBO) and minus the IWAE bound,
# in bits per dimension. Other likelihoods leave both out of metrics.json.
BITS_METRICS = ("bits_per_dim", "iwae_bits_per_dim")


def bits_per_dim(nats: float, dims: int) -> float:
    """A negative log-likelihood of ``dims`` discrete values (nats per image) in bits per value: nats / (D ln 2)."""
    return nats / (dims * math.log(2))


LEVELS = 255  # an 8-bit subpixel k/255, k = 0..255 (what vae.data.split.to_tensor makes of a uint8)
HALF_BIN = 0.5 / LEVELS
# The log-scale's floor: a scale of 1/30 of a bin, where the centre bin holds all but about 1e-7 of the mass;
# below it a test value one bin from a training set's constant pixel would cost hundreds of nats.
MIN_LOG_SCALE = -9.0
# Its start, near where a few epochs of MNIST take it (Adam moves it about lr a step: a start far off would
# cost thousands of steps).
INITIAL_LOG_SCALE = -2.0


def log1mexp(d: torch.Tensor) -> torch.Tensor:
    """log(1 - exp(-d)) for d > 0, accurate at both ends (Maechler 2012: expm1 below ln 2, log1p above)."""
    return torch.where(d < math.log(2), torch.log(-torch.expm1(-d)), torch.log1p(-torch.exp(-d)))


def discretized_logistic_log_prob(mean: torch.Tensor, log_scale: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
    """log P(x) of 8-bit values x = k/255 under a logistic(mean, exp(log_scale)) integrated over k's bin.

    The bin of k is [x - h, x + h], h = 1/510, except that value 0's reaches down to -inf and 255's up to
    +inf (the edge bins are open), so the 256 probabilities sum to 1. With a = (x - h - mean)/s and
    b = (x + h - mean)/s, sigmoid(b) - sigmoid(a) = sigmoid(b) sigmoid(-a) (1 - exp(a - b)), so
    log P = logsigmoid(b) + logsigmoid(-a) + log1mexp((b - a)) with b - a = 2h/s: a sum of terms that
    are each accurate in float32 in both tails and at tiny scales, where the difference of two sigmoids
    would round to 0 (its log to -inf). ``x`` is mapped to its bin exactly: k = round(255 x).
    """
    k = torch.round(x * LEVELS)
    inv_scale = torch.exp(-log_scale.clamp(min=MIN_LOG_SCALE))
    centred = k / LEVELS - mean
    lowest, highest = k == 0, k == LEVELS
    zero = torch.zeros((), dtype=mean.dtype, device=mean.device)
    below = torch.where(highest, zero, F.logsigmoid((centred + HALF_BIN) * inv_scale))  # log P(X <= x + h)
    above = torch.where(lowest, zero, F.logsigmoid(-(centred - HALF_BIN) * inv_scale))  # log P(X >= x - h)
    width = torch.where(lowest | highest, zero, log1mexp(2 * HALF_BIN * inv_scale))
    return below + above + width


@dataclass(frozen=True)
class Likelihood(ABC):
    """What every likelihood p(x|z) provides: its NLL and pixel means, and the data it is scored on.

    By default training and held-out images are scored on their grey pixels as given; a
    likelihood of drawn pixels (``Binarized``) overrides ``training_batch``, ``held_out`` and
    ``draws_pixels``.
    """

    name: str
    # Set where the IWAE bound of held-out data is the papers' binarized test NLL.
    test_nll_metric: str | None = None
    # Whether nll is minus the log of a probability of discrete pixel values: then bits per dimension exist.
    discrete: bool = False

    @abstractmethod
    def nll(self, logits: torch.Tensor, x: torch.Tensor, reduction: str = "sum") -> torch.Tensor:
        """-log p(x|z) from the decoder's logits: summed (``"sum"``) or per pixel (``"none"``)."""

    @abstractmethod
    def mean(self, logits: torch.Tensor) -> torch.Tensor:
        """The mean of p(x|z) of each pixel: what sample and reconstruction images show."""

    def training_batch(self, x: torch.Tensor, generator: torch.Generator | None) -> torch.Tensor:
        """The pixels a training step fits (``generator``: the run's binarization draws, if it has any)."""
        return x

    def held_out(self, x: torch.Tensor) -> torch.Tensor:
        """The pixels validation and test images are scored on."""
        return x

    @property
    def draws_pixels(self) -> bool:
        """Whether training batches are random draws (the run then keeps a generator for them)."""
        return False

    def output_of_mean(self, mean: torch.Tensor) -> torch.Tensor:
        """The decoder output whose ``mean`` is ``mean``: the logit, ``mean`` clipped to [0.001, 0.999]."""
        return torch.logit(mean.clamp(0.001, 0.999))

    def new_parameters(self, dim: int) -> dict[str, nn.Parameter]:
        """The learned parameters this likelihood adds to a decoder of ``dim`` outputs (most add none)."""
        return {}

    def bound_to(self, decoder: nn.Module) -> "Likelihood":
        """This likelihood with the decoder's parameters of ``new_parameters`` in it (most have none)."""
        return self


@dataclass(frozen=True)
class Bernoulli(Likelihood):
    """The notebook's likelihood: BCE of sigmoid(logits) against grey pixels (``bernoulli_nll``)."""

    name: str = "bernoulli"

    def nll(self, logits: torch.Tensor, x: torch.Tensor, reduction: str = "sum") -> torch.Tensor:
        return bernoulli_nll(logits, x, reduction)

    def mean(self, logits: torch.Tensor) -> torch.Tensor:
        return torch.sigmoid(logits)


@dataclass(frozen=True)
class Binarized(Bernoulli):
    """The Bernoulli likelihood of binarized pixels: a new draw every batch, one fixed draw held out."""

    name: str = "binarized"
    test_nll_metric: str | None = "binarized_test_nll"
    discrete: bool = True

    def training_batch(self, x: torch.Tensor, generator: torch.Generator | None) -> torch.Tensor:
        assert generator is not None, "the binarized likelihood draws its training pixels from a generator"
        return binarize(x, generator)

    def held_out(self, x: torch.Tensor) -> torch.Tensor:
        return fixed_binarization(x)

    @property
    def draws_pixels(self) -> bool:
        return True


@dataclass(frozen=True)
class ContinuousBernoulli(Likelihood):
    """A normalized density on [0, 1]: the Bernoulli's BCE minus log C(lambda)."""

    name: str = "continuous_bernoulli"

    def nll(self, logits: torch.Tensor, x: torch.Tensor, reduction: str = "sum") -> torch.Tensor:
        log_norm = continuous_bernoulli_log_norm(logits)
        return bernoulli_nll(logits, x, reduction) - (log_norm.sum() if reduction == "sum" else log_norm)

    def mean(self, logits: torch.Tensor) -> torch.Tensor:
        """Not sigmoid(a): the continuous Bernoulli's mean (computed by ``torch.distributions``)."""
        return torch.distributions.ContinuousBernoulli(logits=logits).mean


@dataclass(frozen=True)
class DiscretizedLogistic(Likelihood):
    """8-bit values under a logistic per subpixel located at the decoder's output, its scale a learned parameter.

    The location is the decoder's output as it is, unbounded as in PixelCNN++: a location below 0 (above 1)
    puts nearly all the mass in the open bin of value 0 (255), which the background of MNIST needs; a
    location held inside [0, 1] (a sigmoid) leaves at most half of it there at a scale that fits the strokes.
    The decoder holds ``log_scale`` (D,), one per subpixel: a parameter that only models of this likelihood
    have. Images show the location clipped to [0, 1], the most probable value up to the bins (a draw adds
    independent noise to every pixel and shows the scale, not the digit).
    """

    name: str = "discretized_logistic"
    discrete: bool = True
    log_scale: torch.Tensor | None = field(default=None, compare=False, repr=False)

    def new_parameters(self, dim: int) -> dict[str, nn.Parameter]:
        return {"log_scale": nn.Parameter(torch.full((dim,), INITIAL_LOG_SCALE))}

    def bound_to(self, decoder: nn.Module) -> "DiscretizedLogistic":
        return replace(self, log_scale=decoder.log_scale)

    def nll(self, logits: torch.Tensor, x: torch.Tensor, reduction: str = "sum") -> torch.Tensor:
        assert self.log_scale is not None, "the discretized logistic scores with a decoder's log_scale (bound_to)"
        nll = -discretized_logistic_log_prob(logits, self.log_scale, x.reshape(logits.shape))
        return nll.sum() if reduction == "sum" else nll

    def output_of_mean(self, mean: torch.Tensor) -> torch.Tensor:
        return mean

    def mean(self, logits: torch.Tensor) -> torch.Tensor:
        """The logistic's location clipped to [0, 1], not the mean of the binned values: see the class."""
        return logits.clamp(0, 1)


LIKELIHOODS = {likelihood.name: likelihood
               for likelihood in (Bernoulli(), Binarized(), ContinuousBernoulli(), DiscretizedLogistic())}
assert tuple(LIKELIHOODS) == LIKELIHOOD_NAMES
