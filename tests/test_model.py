"""The notebook's model and loss: shapes, parameter names, and the loss against a hand computation."""

import math

import pytest
import torch

from vae.model import VAE, images, kl_per_dim, reparameterize, vae_loss


def test_shapes_and_notebook_parameter_names() -> None:
    model = VAE(784, 512, 2)
    x = torch.rand(5, 1, 28, 28)  # the notebook feeds image batches; flat rows work too
    x_hat, mu, logvar, z = model(x)
    assert x_hat.shape == (5, 784) and images(x_hat).shape == (5, 1, 28, 28)
    assert mu.shape == logvar.shape == z.shape == (5, 2)
    assert ((x_hat > 0) & (x_hat < 1)).all()
    assert list(model.state_dict()) == [
        "encoder.net.1.weight", "encoder.net.1.bias", "encoder.net.3.weight", "encoder.net.3.bias",
        "encoder.fc_mu.weight", "encoder.fc_mu.bias", "encoder.fc_logvar.weight", "encoder.fc_logvar.bias",
        "decoder.net.0.weight", "decoder.net.0.bias", "decoder.net.2.weight", "decoder.net.2.bias",
        "decoder.net.4.weight", "decoder.net.4.bias"]
    assert sum(p.numel() for p in model.parameters()) == (
        784 * 512 + 512 + 512 * 512 + 512 + 2 * (512 * 2 + 2)  # encoder
        + 2 * 512 + 512 + 512 * 512 + 512 + 512 * 784 + 784)  # decoder


def test_loss_matches_hand_computation() -> None:
    x = torch.tensor([[0.0, 1.0, 0.25]])
    x_hat = torch.tensor([[0.1, 0.8, 0.5]])
    mu = torch.tensor([[0.5, -1.0]])
    logvar = torch.tensor([[0.0, math.log(4.0)]])
    bce = -(math.log(0.9) + math.log(0.8) + 0.25 * math.log(0.5) + 0.75 * math.log(0.5))
    # KL(N(mu, s^2) || N(0, 1)) = 0.5 * (mu^2 + s^2 - 1 - log s^2), per dimension
    kl = 0.5 * (0.25 + 1 - 1 - 0) + 0.5 * (1 + 4 - 1 - math.log(4.0))
    loss, recon, kld = vae_loss(x, x_hat, mu, logvar)
    assert recon.item() == pytest.approx(bce, rel=1e-6)
    assert kld.item() == pytest.approx(kl, rel=1e-6)
    assert loss.item() == pytest.approx(bce + kl, rel=1e-6)
    assert kl_per_dim(mu, logvar).sum().item() == pytest.approx(kl, rel=1e-6)


def test_loss_sums_over_the_batch() -> None:
    torch.manual_seed(0)
    x, x_hat = torch.rand(4, 784), torch.rand(4, 784).clamp(0.01, 0.99)
    mu, logvar = torch.randn(4, 3), torch.randn(4, 3)
    whole = vae_loss(x, x_hat, mu, logvar)
    parts = [vae_loss(x[i:i + 1], x_hat[i:i + 1], mu[i:i + 1], logvar[i:i + 1]) for i in range(4)]
    for term, by_image in zip(whole, zip(*parts, strict=True), strict=True):
        assert term.item() == pytest.approx(sum(t.item() for t in by_image), rel=1e-5)


def test_reparameterize_draws_from_the_posterior_and_follows_the_generator() -> None:
    mu, logvar = torch.full((20000, 1), 2.0), torch.full((20000, 1), math.log(0.25))
    z = reparameterize(mu, logvar, torch.Generator().manual_seed(1))
    assert z.mean().item() == pytest.approx(2.0, abs=0.02)
    assert z.std().item() == pytest.approx(0.5, abs=0.02)
    assert torch.equal(z, reparameterize(mu, logvar, torch.Generator().manual_seed(1)))
