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
"""

from abc import ABC, abstractmethod
from dataclasses import dataclass

import torch
import torch.nn.functional as F

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


LIKELIHOODS = {likelihood.name: likelihood for likelihood in (Bernoulli(), Binarized(), ContinuousBernoulli())}
assert tuple(LIKELIHOODS) == LIKELIHOOD_NAMES
