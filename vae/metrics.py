"""Test-set metrics of a trained VAE: bounds on log p(x), latent usage, reconstructions, probes.

The training loss is a one-sample ELBO; its gap to log p(x) is unknown. The
importance-weighted bound of Burda et al. (2016) tightens as K grows, so it is
the better number to compare models with. Active units and the KL of each
latent dimension show how many dimensions the encoder really uses (posterior
collapse); the linear and k-NN probes show how much class information the
latent means carry, though the VAE never saw a label.

Every random draw comes from a seeded ``torch.Generator`` on the data's device,
and the batch and chunk sizes are fixed, so the numbers are reproducible on a
given kind of machine.
"""

import math

import numpy as np
import pandas as pd
import torch
from threadpoolctl import threadpool_limits
from tqdm import tqdm

from vae.classifier import FD_IMAGES, Classifier, accuracy, features_and_logits, frechet_distance
from vae.generate import latent_density_samples, prior_samples
from vae.latent_density import LatentDensity
from vae.likelihoods import BITS_METRICS, bits_per_dim
from vae.loops import EVAL_BATCH
from vae.model import VAE, encode, encode_lower, gaussian_kl, log_weights, posterior_noise
from vae.params import KNN_NEIGHBORS
from vae.training import evaluate_elbo

# The IWAE bound's time is linear in K (params.yaml's iwae_k): on the 10,000 test images
# and an idle 2-core CPU (latent_dim 2, hidden_dim 512), about 10 s at K = 50 and 25 s at
# K = 100. Its gap to log p(x) shrinks roughly like 1/K. Papers use K = 5000.
IWAE_BATCH = 100  # images per IWAE batch
IWAE_CHUNK = 100  # importance samples per image drawn and decoded at once
# IWAE_BATCH * IWAE_CHUNK rows go through the decoder at a time (about 100 MB of
# activations at hidden_dim 512), whatever K is. Both sizes fix the order in
# which noise is drawn, so they are constants, like ``EVAL_BATCH``, not knobs.

ACTIVE_THRESHOLD = 0.01  # Burda et al.: a unit is active if Var_x(E_q[u]) > 0.01
PROBE_MAX_ITER = 1000


@torch.no_grad()
def iwae_bound(model: VAE, x: torch.Tensor, k: int, generator: torch.Generator,
               batch_size: int = IWAE_BATCH, chunk_size: int = IWAE_CHUNK,
               progress: bool = True) -> torch.Tensor:
    """Importance-weighted lower bound on log p(x) of each image, shape (N,), in nats.

    log p(x) >= log (1/K) sum_k p(x|z_k) p(z_k) / q(z_k|x) with z_k ~ q(z|x)
    (Burda et al. 2016), computed as logsumexp of the log weights minus log K.
    K = 1 is the one-sample ELBO in expectation; the bound never decreases in
    expectation as K grows and tends to log p(x).

    Images go in batches of ``batch_size`` and the K samples in chunks of
    ``chunk_size``, combined with a running logsumexp, so memory is bounded by
    ``batch_size * chunk_size`` decoded images whatever K is. All noise comes
    from ``generator`` (on ``x.device``), in the order batch then chunk: the
    same generator state, K and sizes give the same result, while other sizes
    give another, equally valid, draw.
    """
    if k < 1 or batch_size < 1 or chunk_size < 1:
        raise ValueError(f"k, batch_size and chunk_size must be >= 1, got {k}, {batch_size}, {chunk_size}")
    model.eval()
    out = torch.empty(len(x), device=x.device)
    starts = range(0, len(x), batch_size)
    for start in tqdm(starts, desc=f"IWAE bound (K={k})", unit="batch", leave=False,
                      disable=None if progress else True, mininterval=1.0):
        xb = x[start:start + batch_size].flatten(1)
        mu, logvar = model.encoder(xb)
        total = torch.full((len(xb),), -math.inf, device=x.device)
        for done in range(0, k, chunk_size):
            c = min(chunk_size, k - done)
            eps = posterior_noise(mu, generator, c, model.noise_dim)
            chunk = torch.logsumexp(log_weights(model, xb, mu, logvar, eps), dim=1)
            total = torch.logaddexp(total, chunk)
        out[start:start + len(xb)] = total - math.log(k)
    return out


def variance_of_means(mu: torch.Tensor) -> torch.Tensor:
    """Var over images of each posterior-mean dimension, Cov_x(E_q[u]) of Burda et al.; shape (d,)."""
    return mu.var(dim=0, correction=0)


def active_unit_mask(variance: torch.Tensor, threshold: float = ACTIVE_THRESHOLD) -> torch.Tensor:
    """Which latent dimensions are active units, Var_x(E_q[u]) > ``threshold`` (Burda et al. 2016).

    ``variance`` is ``variance_of_means(mu)``. An inactive dimension's posterior mean
    hardly depends on x: the decoder cannot use it, and its posterior has usually
    collapsed onto the prior.
    """
    return variance > threshold


def mean_kl_per_dimension(mu: torch.Tensor, logvar: torch.Tensor) -> torch.Tensor:
    """Mean over images of KL(q(z_j|x) || N(0, 1)) for each latent dimension j, shape (d,).

    Under the standard normal prior with one layer the terms add up to the ELBO's KL, and a
    dimension with near-zero KL carries no information about x. A VampPrior is a mixture that
    does not factor over dimensions, so no per-dimension KL to it exists: the terms are then
    each dimension's distance from N(0, 1), which still ranks dimensions by use, but do not add
    up to the ELBO's KL. With two layers they are the top layer's (whose prior is p(z2)).
    """
    return gaussian_kl(mu, logvar).mean(0)


@torch.no_grad()
def reconstructions(model: VAE, x: torch.Tensor, batch_size: int = EVAL_BATCH) -> torch.Tensor:
    """Decoder means at the posterior means of flat images ``x``, (N, 784): deterministic reconstructions."""
    model.eval()
    return torch.cat([model.reconstruct(x[start:start + batch_size]) for start in range(0, len(x), batch_size)])


@torch.no_grad()
def reconstruction_mse(model: VAE, x: torch.Tensor, batch_size: int = EVAL_BATCH) -> float:
    """Squared error per image: the mean over images of sum over pixels (x - x_hat)^2.

    x_hat is the decoder's mean at z = mu, so the number is deterministic; it
    is on the [0, 1] pixel scale, a sum over the 784 pixels, not a mean.
    """
    x_hat = reconstructions(model, x, batch_size)
    total = torch.zeros((), device=x.device, dtype=torch.float64)
    flat = x.reshape(len(x), -1)
    for start in range(0, len(x), batch_size):  # batch sums in float32, as the metric has always been added
        total += (x_hat[start:start + batch_size] - flat[start:start + batch_size]).pow(2).sum()
    return float(total) / len(x)


def _numpy(a: torch.Tensor | np.ndarray) -> np.ndarray:
    return a.detach().cpu().numpy() if isinstance(a, torch.Tensor) else np.asarray(a)


def probe_accuracies(train_z: torch.Tensor | np.ndarray, train_y: torch.Tensor | np.ndarray,
                     test_z: torch.Tensor | np.ndarray, test_y: torch.Tensor | np.ndarray,
                     seed: int) -> dict[str, float]:
    """Test accuracy of classifiers fit on the train split's latent means.

    ``linear_probe_accuracy``: multinomial logistic regression on standardized
    means (is the class linearly decodable?); ``knn_accuracy``: 5-nearest
    neighbours on the raw means (are classes local clusters?). Chance is 0.1.
    """
    # Imported here: scikit-learn's import takes a second, and the sample stage imports this module.
    from sklearn.linear_model import LogisticRegression
    from sklearn.neighbors import KNeighborsClassifier
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    train_z, test_z = _numpy(train_z), _numpy(test_z)
    train_y, test_y = _numpy(train_y).astype(np.int64), _numpy(test_y).astype(np.int64)
    linear = make_pipeline(StandardScaler(),
                           LogisticRegression(max_iter=PROBE_MAX_ITER, random_state=seed))
    # One BLAS thread: L-BFGS makes many small matrix products, and OpenBLAS's
    # spinning threads made the fit 20x slower (16 s instead of 0.7 s for
    # 54,000 x 32 on 2 cores) whenever another process shared the CPU.
    with threadpool_limits(limits=1, user_api="blas"):
        linear.fit(train_z, train_y)
        knn = KNeighborsClassifier(n_neighbors=KNN_NEIGHBORS).fit(train_z, train_y)
        return {"linear_probe_accuracy": float(linear.score(test_z, test_y)),
                "knn_accuracy": float(knn.score(test_z, test_y))}


def class_entropy(logits: torch.Tensor) -> float:
    """Entropy in nats of the predicted classes' histogram: log 10 when ten classes are equally often predicted."""
    counts = torch.bincount(logits.argmax(1), minlength=logits.shape[1]).double()
    p = counts[counts > 0] / counts.sum()
    return float(-(p * p.log()).sum())


@torch.no_grad()
def sample_quality(model: VAE, classifier: Classifier, test_x: torch.Tensor, test_y: torch.Tensor | np.ndarray,
                   seed: int, n_images: int = FD_IMAGES, density: LatentDensity | None = None) -> dict[str, float]:
    """Sample and reconstruction quality through the classifier's penultimate-layer features.

    ``fd_samples``: Frechet distance between ``n_samples`` prior samples (decoder means,
    as the sample grid shows them) and the test images; ``fd_reconstructions``: the same
    for the test images' reconstructions (decoder mean at z = mu); ``sample_class_entropy``:
    how evenly the prior's samples spread over the classes; ``reconstruction_accuracy``:
    the classifier's accuracy on the reconstructions (does the VAE keep the class?).
    With an ex-post ``density``, ``fd_samples_latent_density`` and
    ``sample_class_entropy_latent_density``: the same two numbers for as many samples drawn from it.

    ``n_images`` on each side of every distance: as many samples, and the first ``n_images`` test
    images and their reconstructions (the default is the whole test set; fewer make a quick run
    quicker, but a Frechet distance grows as n shrinks, so compare distances at equal n only).
    """
    n_images = min(n_images, len(test_x))  # a folder's test split may hold fewer: equal n on both sides
    test_x, test_y = test_x[:n_images], test_y[:n_images]
    real, _ = features_and_logits(classifier, test_x)
    samples, sample_logits = features_and_logits(classifier, prior_samples(model, n_images, seed))
    recon_features, recon_logits = features_and_logits(classifier, reconstructions(model, test_x))
    labels = torch.as_tensor(_numpy(test_y).astype(np.int64), device=recon_logits.device)
    metrics = {"fd_samples": frechet_distance(samples, real),
               "fd_reconstructions": frechet_distance(recon_features, real),
               "sample_class_entropy": class_entropy(sample_logits),
               "reconstruction_accuracy": accuracy(recon_logits, labels)}
    if density is not None:
        features, logits = features_and_logits(classifier, latent_density_samples(model, density, n_images, seed))
        metrics |= {"fd_samples_latent_density": frechet_distance(features, real),
                    "sample_class_entropy_latent_density": class_entropy(logits)}
    return metrics


def bits_per_dim_metrics(metrics: dict[str, float | int], dims: int) -> dict[str, float]:
    """``bits_per_dim`` (of ``loss``, the negative ELBO) and ``iwae_bits_per_dim`` (of minus the IWAE bound).

    Only for a likelihood that is a probability of discrete pixel values (``Likelihood.discrete``):
    nats per image / (D ln 2), D the subpixels of an image, the unit of the literature's 8-bit results.
    Others leave both keys out of metrics.json, so ``dvc metrics show`` prints ``-`` for them.
    """
    nats = metrics["loss"], -metrics["iwae_log_likelihood_bound"]
    return {name: bits_per_dim(value, dims) for name, value in zip(BITS_METRICS, nats)}


def evaluate(model: VAE, train_x: torch.Tensor, train_y: torch.Tensor | np.ndarray,
             test_x: torch.Tensor, test_y: torch.Tensor | np.ndarray, k: int,
             seed: int = 0, progress: bool = True) -> tuple[dict[str, float | int], pd.DataFrame]:
    """All metrics on the test set, and a per-dimension table.

    Metrics: ``loss``, ``recon``, ``kl`` (per-image ELBO terms, one seeded
    sample); ``iwae_log_likelihood_bound`` (mean of the K-sample bound, nats per
    image) and ``iwae_k``; ``active_units``; ``mse_per_image``;
    ``linear_probe_accuracy`` and ``knn_accuracy`` (probes fit on the train
    split's latent means; left out where the images have no labels). Table: ``dim``, ``kl``, ``variance_of_mean``,
    ``active``, one row per latent dimension. Codes, probes and the table are the top layer's;
    with two stochastic layers ``active_units_lower`` counts the lower layer's active units, from
    the means of q(z1 | x, z2) at z2 = the top layer's mean.

    What the likelihood numbers bound depends on the model's likelihood.
    ``bernoulli``: BCE on grey pixels is not a density, but it is linear in the
    pixels, so the loss is the expected negative ELBO of Bernoulli-binarized test
    images, and both it and -bound are upper bounds on their expected NLL (README,
    "What the numbers bound"). ``binarized``: loss and bound are computed on one
    fixed binarization of the test set (the likelihood's ``held_out``), and
    ``binarized_test_nll`` = -bound is the papers' test NLL (at K = 5000).
    ``continuous_bernoulli``: a log-density of grey pixels, in nats, which can be
    positive and is comparable only between continuous models. ``discretized_logistic``:
    a probability of the 8-bit test images. For the two discrete ones (``binarized``,
    ``discretized_logistic``) both are also given in bits per dimension (``bits_per_dim_metrics``).
    """
    scored = model.likelihood.held_out(test_x)
    metrics: dict[str, float | int] = dict(evaluate_elbo(model, scored, seed))
    generator = torch.Generator(device=test_x.device).manual_seed(seed)
    bound = iwae_bound(model, scored, k, generator, progress=progress)
    metrics["iwae_log_likelihood_bound"] = float(bound.double().mean())
    metrics["iwae_k"] = int(k)
    if model.likelihood.test_nll_metric is not None:
        metrics[model.likelihood.test_nll_metric] = -metrics["iwae_log_likelihood_bound"]
    if model.likelihood.discrete:
        metrics |= bits_per_dim_metrics(metrics, scored[0].numel())
    mu, logvar = encode(model, test_x)
    variance = variance_of_means(mu)
    is_active = active_unit_mask(variance)
    metrics["active_units"] = int(is_active.sum())
    if model.hierarchical:
        metrics["active_units_lower"] = int(active_unit_mask(variance_of_means(encode_lower(model, test_x, mu))).sum())
    metrics["mse_per_image"] = reconstruction_mse(model, test_x)
    if (_numpy(train_y) >= 0).all():  # images without labels (-1): the probes are not defined, and left out
        train_mu, _ = encode(model, train_x)
        metrics.update(probe_accuracies(train_mu, train_y, mu, test_y, seed))
    per_dim = pd.DataFrame({
        "dim": np.arange(mu.shape[1]),
        "kl": _numpy(mean_kl_per_dimension(mu, logvar)).astype(np.float64),
        "variance_of_mean": _numpy(variance).astype(np.float64),
        "active": _numpy(is_active),
    })
    return metrics, per_dim
