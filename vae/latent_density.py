"""An ex-post density on the latent space: a Gaussian mixture fit to the training set's codes.

A VAE's prior N(0, I) and its aggregate posterior (the codes of the training images) differ:
decoding a prior draw that falls where no image's posterior put any mass gives an image
unlike the data, while reconstructions are fine. Fitting a density to the codes after
training and sampling from it instead closes much of that gap at no training cost (Ghosh
et al., ICLR 2020, "From Variational to Deterministic Autoencoders": ex-post density
estimation with a Gaussian mixture). The codes are the posterior means of the train split.

The mixture is stored as three arrays (weights, means, covariances) in a pickle-free ``.npz``.
"""

import logging
import warnings
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from vae.errors import DamagedFile, UserError
from vae.io import ArraySpec, load_npz, write_npz

log = logging.getLogger("vae")

FIELDS = ("weights", "means", "covariances")


@dataclass(frozen=True)
class LatentDensity:
    """A mixture of K full-covariance Gaussians on R^d: weights (K,), means (K, d), covariances (K, d, d)."""

    weights: np.ndarray
    means: np.ndarray
    covariances: np.ndarray

    @property
    def latent_dim(self) -> int:
        return self.means.shape[1]

    def sample(self, n: int, seed: int) -> torch.Tensor:
        """``n`` seeded draws, float32 (n, d): a component by its weight, then its Gaussian."""
        rng = np.random.default_rng(seed)
        component = rng.choice(len(self.weights), size=n, p=self.weights)
        eps = rng.standard_normal((n, self.latent_dim))
        chol = np.linalg.cholesky(self.covariances)
        z = self.means[component] + np.einsum("nij,nj->ni", chol[component], eps)
        return torch.from_numpy(z.astype(np.float32))


def fit_latent_density(codes: torch.Tensor | np.ndarray, components: int, seed: int) -> LatentDensity:
    """A ``components``-Gaussian mixture with full covariances fit to ``codes`` (N, d) by EM, seeded."""
    # scikit-learn only here: loading and sampling (all the notebook API does) need neither it nor the pandas it loads
    from sklearn.exceptions import ConvergenceWarning
    from sklearn.mixture import GaussianMixture

    x = codes.detach().cpu().double().numpy() if isinstance(codes, torch.Tensor) else np.asarray(codes, np.float64)
    if len(x) < components:
        raise UserError(f"latent_density_components = {components} but only {len(x)} codes to fit; lower it")
    gmm = GaussianMixture(n_components=components, covariance_type="full", random_state=seed)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", ConvergenceWarning)
        gmm.fit(x)
    if any(issubclass(w.category, ConvergenceWarning) for w in caught):
        log.warning("the latent density's EM did not converge in %d iterations; it is used as it is", gmm.max_iter)
    return LatentDensity(gmm.weights_, gmm.means_, gmm.covariances_)


def save_latent_density(path: str | Path, density: LatentDensity) -> None:
    write_npz(path, **{name: getattr(density, name) for name in FIELDS})


# The arrays of the file: K weights, K means and K covariances on a d-dimensional latent space.
ARRAYS = {"weights": ArraySpec(np.floating, ("K",)), "means": ArraySpec(np.floating, ("K", "d")),
          "covariances": ArraySpec(np.floating, ("K", "d", "d"))}
STAGE = "latent-density"


def _check(path: Path, arrays: dict[str, np.ndarray]) -> LatentDensity:
    """The density of well-formed ``arrays`` (names, types and shapes checked on reading) if it is a valid one."""
    w, mu, cov = (arrays[name] for name in FIELDS)
    problem = ""
    if not all(np.isfinite(a).all() for a in (w, mu, cov)):
        problem = "holds values that are not finite"
    elif (w < 0).any() or not np.isclose(w.sum(), 1.0):
        problem = "has mixture weights that are not a probability vector"
    elif not np.allclose(cov, cov.transpose(0, 2, 1)) or (np.linalg.eigvalsh(cov) <= 0).any():
        problem = "has covariances that are not symmetric positive definite"
    if problem:
        raise DamagedFile(path, f"{problem}: it is not a latent density this pipeline wrote", STAGE)
    return LatentDensity(*(arrays[name].astype(np.float64) for name in FIELDS))


def load_latent_density(path: str | Path) -> LatentDensity:
    """Read and check a saved density (pickle-free); a missing or malformed file is a one-line ``DamagedFile``."""
    return _check(Path(path), load_npz(path, ARRAYS, stage=STAGE))
