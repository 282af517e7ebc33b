"""Tests of vae.metrics: the IWAE bound against its definition and the ELBO, latent usage, probes.

Small random models and batches keep the file fast on a CPU; only the probe
test reads real data (the MNIST test set) and trains a small VAE for a few seconds.
"""

import math

import numpy as np
import pandas as pd
import pytest
import torch
import torch.nn.functional as F
from torch.distributions import Normal

from vae.data.split import to_tensor
from vae.likelihoods import fixed_binarization
from vae.metrics import (
    active_unit_mask,
    evaluate,
    iwae_bound,
    mean_kl_per_dimension,
    probe_accuracies,
    reconstruction_mse,
    variance_of_means,
)
from vae.model import VAE, VAEConfig, encode, gaussian_kl, reparameterize
from vae.training import TrainingSettings, TrainState, evaluate_elbo, train_epoch


def small_model(latent_dim: int = 4, hidden_dim: int = 32, seed: int = 0) -> VAE:
    torch.manual_seed(seed)
    return VAE(VAEConfig(hidden_dim=hidden_dim, latent_dim=latent_dim)).eval()


def images(n: int, seed: int = 1) -> torch.Tensor:
    """Continuous pixels in [0, 1], mostly near 0 or 1 like MNIST's."""
    gen = torch.Generator().manual_seed(seed)
    return torch.rand(n, 784, generator=gen).pow(3)


def reference_log_weights(model: VAE, x: torch.Tensor, eps: torch.Tensor) -> torch.Tensor:
    """log p(x|z) + log p(z) - log q(z|x) for eps (B, C, d), written independently of vae.metrics."""
    with torch.no_grad():
        mu, logvar = model.encoder(x)
        q = Normal(mu.unsqueeze(1), (0.5 * logvar).exp().unsqueeze(1))
        z = q.loc + q.scale * eps
        x_hat = model.decoder(z.flatten(0, 1)).reshape(*z.shape[:2], -1)
        log_px_z = -torch.stack([F.binary_cross_entropy(x_hat[:, j], x, reduction="none").sum(-1)
                                 for j in range(z.shape[1])], dim=1)
        return log_px_z + Normal(0.0, 1.0).log_prob(z).sum(-1) - q.log_prob(z).sum(-1)


def mc_elbo(model: VAE, x: torch.Tensor, samples: int, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    """ELBO per image with analytic KL and a Monte Carlo reconstruction term: (mean, standard error)."""
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        mu, logvar = model.encoder(x)
        z = reparameterize(mu.repeat(samples, 1), logvar.repeat(samples, 1), gen)  # one call: fast
        recon = F.binary_cross_entropy(model.decoder(z), x.repeat(samples, 1),
                                       reduction="none").sum(-1).reshape(samples, len(x))
        kl = gaussian_kl(mu, logvar).sum(-1)
    return -(recon.mean(0) + kl), recon.std(0) / math.sqrt(samples)


def test_iwae_matches_its_definition_for_any_batch_and_chunk_sizes():
    """Chunked running logsumexp == one logsumexp over all K log weights with the same noise."""
    model, x, k = small_model(), images(7), 23
    for batch_size, chunk_size in [(3, 5), (7, 23), (2, 100), (1, 1)]:
        got = iwae_bound(model, x, k, torch.Generator().manual_seed(3),
                         batch_size=batch_size, chunk_size=chunk_size, progress=False)
        gen = torch.Generator().manual_seed(3)  # replay the noise in the documented order
        want = []
        for start in range(0, len(x), batch_size):
            xb = x[start:start + batch_size]
            eps = torch.cat([torch.randn((len(xb), min(chunk_size, k - done), model.latent_dim),
                                         generator=gen) for done in range(0, k, chunk_size)], dim=1)
            want.append(torch.logsumexp(reference_log_weights(model, xb, eps), dim=1) - math.log(k))
        torch.testing.assert_close(got, torch.cat(want), rtol=1e-5, atol=1e-3)


def test_iwae_is_deterministic_given_the_generator_and_bounded_in_shape():
    model, x = small_model(), images(10)
    first = iwae_bound(model, x, 15, torch.Generator().manual_seed(5), progress=False)
    second = iwae_bound(model, x, 15, torch.Generator().manual_seed(5), progress=False)
    other = iwae_bound(model, x, 15, torch.Generator().manual_seed(6), progress=False)
    assert first.shape == (10,) and first.dtype == torch.float32
    assert torch.equal(first, second)
    assert not torch.equal(first, other)
    assert torch.isfinite(first).all() and (first < 0).all()


def test_iwae_rejects_k_below_one():
    with pytest.raises(ValueError, match="k, batch_size and chunk_size"):
        iwae_bound(small_model(), images(2), 0, torch.Generator(), progress=False)


def test_iwae_with_one_sample_is_the_elbo_in_expectation():
    """E[log p(x|z) + log p(z) - log q(z|x)] = E[log p(x|z)] - KL, z ~ q(z|x)."""
    model, x, draws = small_model(), images(6), 2000
    bound = iwae_bound(model, x.repeat(draws, 1), 1, torch.Generator().manual_seed(7),
                       batch_size=1000, progress=False).reshape(draws, len(x))
    elbo, elbo_se = mc_elbo(model, x, draws, seed=8)
    se = (bound.var(0) / draws + elbo_se.pow(2)).sqrt()
    assert ((bound.mean(0) - elbo).abs() < 4 * se + 1e-3).all(), (bound.mean(0), elbo, se)


def test_iwae_bound_grows_with_k_and_stays_above_the_elbo():
    model, x, copies = small_model(), images(8), 50
    xs = x.repeat(copies, 1)
    means, ses = [], []
    for k in (1, 10, 100):
        bound = iwae_bound(model, xs, k, torch.Generator().manual_seed(k), batch_size=400,
                           progress=False).reshape(copies, len(x)).mean(1)
        means.append(bound.mean())
        ses.append(bound.std() / math.sqrt(copies))
    elbo, elbo_se = mc_elbo(model, x, 400, seed=9)
    elbo_mean, elbo_se = elbo.mean(), elbo_se.pow(2).mean().sqrt() / math.sqrt(len(x))
    for lo, hi, se_lo, se_hi in zip(means, means[1:], ses, ses[1:]):
        assert hi > lo - 3 * math.hypot(se_lo, se_hi), (means, ses)
    assert means[2] > means[0]  # a random model's posterior is poor, so K = 100 gains clearly
    for mean, se in zip(means, ses):
        assert mean > elbo_mean - 3 * math.hypot(se, elbo_se) - 1e-3, (means, elbo_mean)


def test_active_units_counts_dimensions_whose_mean_varies():
    gen = torch.Generator().manual_seed(0)
    mu = torch.stack([torch.randn(5000, generator=gen),  # variance 1: active
                      torch.full((5000,), 3.0),  # constant: inactive
                      0.05 * torch.randn(5000, generator=gen),  # variance 0.0025: inactive
                      0.2 * torch.randn(5000, generator=gen)], dim=1)  # variance 0.04: active
    assert active_unit_mask(variance_of_means(mu)).tolist() == [True, False, False, True]
    assert int(active_unit_mask(variance_of_means(mu), threshold=0.001).sum()) == 3
    torch.testing.assert_close(variance_of_means(mu), torch.tensor([1.0, 0.0, 0.0025, 0.04]),
                               rtol=0.1, atol=1e-6)


def test_active_units_of_an_encoder_that_ignores_dimensions():
    model = small_model(latent_dim=6)
    with torch.no_grad():
        model.encoder.fc_mu.weight[2:] = 0
        model.encoder.fc_mu.bias[2:] = 0.5
        model.encoder.fc_mu.weight[:2] *= 50  # make the used dimensions vary clearly
    mu, logvar = encode(model, images(500), batch_size=128)
    assert mu.shape == logvar.shape == (500, 6)
    assert torch.all(mu[:, 2:] == 0.5)
    assert active_unit_mask(variance_of_means(mu)).tolist() == [True, True] + [False] * 4


def test_mean_kl_per_dimension_adds_up_to_the_elbo_kl():
    gen = torch.Generator().manual_seed(0)
    mu, logvar = torch.randn(100, 3, generator=gen), torch.randn(100, 3, generator=gen)
    mu[:, 2], logvar[:, 2] = 0.0, 0.0  # the prior itself: no KL
    per_dim = mean_kl_per_dimension(mu, logvar)
    assert per_dim.shape == (3,)
    assert per_dim[2] == 0
    torch.testing.assert_close(per_dim.sum(), gaussian_kl(mu, logvar).sum() / 100)


def test_encode_matches_one_batch_and_leaves_no_graph():
    model, x = small_model(), images(25)
    mu, logvar = encode(model, x, batch_size=4)
    with torch.no_grad():
        want_mu, want_logvar = model.encoder(x)
    torch.testing.assert_close(mu, want_mu)
    torch.testing.assert_close(logvar, want_logvar)
    assert not mu.requires_grad


def test_reconstruction_mse_is_the_summed_squared_error_per_image_at_the_mean():
    model, x = small_model(), images(30)
    with torch.no_grad():
        want = (model.decoder(model.encoder(x)[0]) - x).pow(2).sum(-1).mean().item()
    assert reconstruction_mse(model, x, batch_size=7) == pytest.approx(want, rel=1e-5)
    assert reconstruction_mse(model, x) == pytest.approx(want, rel=1e-5)
    assert reconstruction_mse(model, x.round()) != pytest.approx(want, rel=1e-3)  # it reads the images


def one_active_unit_model(likelihood: str) -> VAE:
    """A small model whose encoder uses its first latent dimension only (the others' means are constant)."""
    torch.manual_seed(0)
    model = VAE(VAEConfig(hidden_dim=32, latent_dim=3, likelihood=likelihood)).eval()
    with torch.no_grad():
        model.encoder.fc_mu.weight[1:] = 0
        model.encoder.fc_mu.bias[1:] = 0.5
        model.encoder.fc_mu.weight[:1] *= 50
    return model


@pytest.mark.parametrize("likelihood", ["bernoulli", "binarized"])
def test_evaluate_returns_every_metric_and_the_per_dimension_table(likelihood):
    """Each metric is its own function's value on the right images and seed; ``binarized`` scores one fixed
    binarization of the test set, and its test NLL is minus the bound."""
    model = one_active_unit_model(likelihood)
    gen = torch.Generator().manual_seed(0)
    train_y = torch.randint(10, (200,), generator=gen).numpy()
    test_y = torch.randint(10, (50,), generator=gen).numpy()
    train_x, test_x = images(200, seed=2), images(50, seed=3)
    metrics, per_dim = evaluate(model, train_x, train_y, test_x, test_y, k=5, seed=1, progress=False)
    scored = fixed_binarization(test_x) if likelihood == "binarized" else test_x
    bound = iwae_bound(model, scored, 5, torch.Generator().manual_seed(1), progress=False)
    want = {**evaluate_elbo(model, scored, seed=1), "iwae_log_likelihood_bound": float(bound.double().mean()),
            "iwae_k": 5, "active_units": 1, "mse_per_image": reconstruction_mse(model, test_x),
            **probe_accuracies(encode(model, train_x)[0], train_y, encode(model, test_x)[0], test_y, seed=1)}
    if likelihood == "binarized":  # a probability of 0/1 pixels: both bounds also in bits per dimension
        want["binarized_test_nll"] = -want["iwae_log_likelihood_bound"]
        want["bits_per_dim"] = want["loss"] / (784 * math.log(2))
        want["iwae_bits_per_dim"] = -want["iwae_log_likelihood_bound"] / (784 * math.log(2))
    assert metrics == want
    assert list(per_dim.columns) == ["dim", "kl", "variance_of_mean", "active"]
    assert per_dim["dim"].tolist() == [0, 1, 2] and per_dim["active"].tolist() == [True, False, False]
    assert per_dim["variance_of_mean"].tolist()[1:] == [0.0, 0.0]
    assert per_dim["kl"].tolist() == mean_kl_per_dimension(*encode(model, test_x)).double().tolist()  # grey images
    again, again_table = evaluate(model, train_x, train_y, test_x, test_y, k=5, seed=1, progress=False)
    assert again == metrics
    pd.testing.assert_frame_equal(again_table, per_dim)


def test_probes_on_separable_latents():
    gen = np.random.default_rng(0)
    centers = gen.normal(0, 5, size=(10, 4))
    train_y, test_y = gen.integers(10, size=1000), gen.integers(10, size=300)
    train_z = centers[train_y] + gen.normal(size=(1000, 4))
    test_z = torch.from_numpy(centers[test_y] + gen.normal(size=(300, 4))).float()
    acc = probe_accuracies(train_z, train_y, test_z, torch.from_numpy(test_y), seed=0)
    assert set(acc) == {"linear_probe_accuracy", "knn_accuracy"}
    assert acc["linear_probe_accuracy"] > 0.9 and acc["knn_accuracy"] > 0.9


def test_probes_beat_chance_on_a_briefly_trained_vae(mnist_test_set):
    raw, labels = mnist_test_set
    x = to_tensor(raw[:6000])
    settings = TrainingSettings(batch_size=100, seed=0)
    state = TrainState.new(VAEConfig(hidden_dim=256, latent_dim=8), settings, torch.device("cpu"))
    for epoch in range(1, 5):  # 4 epochs of 50 batches
        train_epoch(state, x[:5000], epoch, settings, progress=False)
    train_z, _ = encode(state.model, x[:5000])
    test_z, _ = encode(state.model, x[5000:])
    acc = probe_accuracies(train_z, labels[:5000], test_z, labels[5000:6000], seed=0)
    assert acc["linear_probe_accuracy"] > 0.5, acc  # chance is 0.1
    assert acc["knn_accuracy"] > 0.5, acc
