"""The notebook's model and loss: shapes, parameter names, and the loss against a hand computation."""

import math

import pytest
import torch
from torch import nn

from vae.errors import DamagedFile
from vae.model import (
    VAE,
    VAEConfig,
    gaussian_kl,
    images,
    load_model,
    negative_elbo,
    reparameterize,
    save_model,
    vae_loss,
)


def test_shapes_and_notebook_parameter_names() -> None:
    model = VAE(VAEConfig(hidden_dim=512, latent_dim=2))
    x = torch.rand(5, 1, 28, 28)  # the notebook feeds image batches; flat rows work too
    x_hat, mu, logvar, z = model(x)
    assert x_hat.shape == (5, 784) and images(x_hat).shape == (5, 1, 28, 28)
    assert mu.shape == logvar.shape == z.shape == (5, 2)
    assert torch.equal(x_hat, torch.sigmoid(model.decoder.logits(z)))  # the Bernoulli means, not the logits
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
    loss, recon, kld = vae_loss(x, torch.logit(x_hat), mu, logvar)
    assert recon.item() == pytest.approx(bce, rel=1e-6)
    assert kld.item() == pytest.approx(kl, rel=1e-6)
    assert loss.item() == pytest.approx(bce + kl, rel=1e-6)
    assert gaussian_kl(mu, logvar).sum().item() == pytest.approx(kl, rel=1e-6)


def test_loss_sums_over_the_batch() -> None:
    torch.manual_seed(0)
    x, logits = torch.rand(4, 784), torch.randn(4, 784) * 3
    mu, logvar = torch.randn(4, 3), torch.randn(4, 3)
    whole = vae_loss(x, logits, mu, logvar)
    parts = [vae_loss(x[i:i + 1], logits[i:i + 1], mu[i:i + 1], logvar[i:i + 1]) for i in range(4)]
    for term, by_image in zip(whole, zip(*parts, strict=True), strict=True):
        assert term.item() == pytest.approx(sum(t.item() for t in by_image), rel=1e-5)


def test_recon_is_the_notebooks_bce_of_the_decoder_output_and_exact_where_sigmoid_saturates() -> None:
    torch.manual_seed(0)
    model, x = VAE(VAEConfig(hidden_dim=32, latent_dim=2)), torch.rand(8, 784).pow(3)
    z = torch.randn(8, 2)
    notebook = nn.BCELoss(reduction="sum")(model.decoder(z), x)
    _, recon, _ = vae_loss(x, model.decoder.logits(z), torch.zeros(8, 2), torch.zeros(8, 2))
    assert recon.item() == pytest.approx(notebook.item(), rel=1e-5)
    # sigmoid(40) rounds to 1 in float32, so BCELoss's -log(1 - p) is clamped to 100 instead of 40;
    # sigmoid(-40) = 4e-18 is still representable, and both give -log(p) = 40
    logits, x = torch.tensor([[40.0, -40.0]]), torch.tensor([[0.0, 1.0]])
    _, recon, _ = vae_loss(x, logits, torch.zeros(1, 1), torch.zeros(1, 1))
    assert recon.item() == pytest.approx(80.0, rel=1e-6)
    assert nn.BCELoss(reduction="sum")(torch.sigmoid(logits), x).item() == pytest.approx(140.0)


def test_negative_elbo_is_the_loss_of_the_models_own_forward_pass() -> None:
    torch.manual_seed(0)
    model, x = VAE(VAEConfig(hidden_dim=32, latent_dim=3)), torch.rand(5, 784)
    x_hat, mu, logvar, _ = model(x, torch.Generator().manual_seed(7))
    want = vae_loss(x, torch.logit(x_hat.double()), mu.double(), logvar.double())
    got = negative_elbo(model, x, torch.Generator().manual_seed(7))
    for g, w in zip(got, want, strict=True):
        assert g.item() == pytest.approx(w.item(), rel=1e-5)


def test_reparameterize_draws_from_the_posterior_and_follows_the_generator() -> None:
    mu, logvar = torch.full((20000, 1), 2.0), torch.full((20000, 1), math.log(0.25))
    z = reparameterize(mu, logvar, torch.Generator().manual_seed(1))
    assert z.mean().item() == pytest.approx(2.0, abs=0.02)
    assert z.std().item() == pytest.approx(0.5, abs=0.02)
    assert torch.equal(z, reparameterize(mu, logvar, torch.Generator().manual_seed(1)))


@pytest.mark.parametrize("config", [VAEConfig(), VAEConfig(hidden_dim=8, latent_dim=3, architecture="conv"),
                                    VAEConfig(hidden_dim=8, activation="gated", prior="vampprior", pseudo_inputs=3,
                                              stochastic_layers=2, lower_latent_dim=4, likelihood="binarized")])
def test_a_model_file_round_trips_its_config(tmp_path, config) -> None:
    model = VAE(config)
    save_model(tmp_path / "model.pt", model)
    loaded = load_model(tmp_path / "model.pt")
    assert loaded.config == config
    assert all(torch.equal(a, b) for a, b in zip(model.state_dict().values(), loaded.state_dict().values()))


def test_a_model_file_of_the_notebook_era_loads(tmp_path) -> None:
    """Files written before VAEConfig (and the notebook's) store a plain dict of the non-default options."""
    old = VAE(VAEConfig(hidden_dim=16, latent_dim=2, likelihood="binarized"))
    torch.save({"config": {"input_dim": 784, "hidden_dim": 16, "latent_dim": 2, "likelihood": "binarized"},
                "model": old.state_dict()}, tmp_path / "old.pt")
    assert load_model(tmp_path / "old.pt").config == old.config
    assert VAE().config.to_dict() == {"input_dim": 784, "hidden_dim": 512, "latent_dim": 2}  # the default file's


def test_a_model_file_with_an_unknown_option_is_one_line(tmp_path) -> None:
    torch.save({"config": {"input_dim": 784, "hidden_dim": 16, "latent_dim": 2, "flows": 4},
                "model": VAE(VAEConfig(hidden_dim=16)).state_dict()}, tmp_path / "new.pt")
    with pytest.raises(DamagedFile) as info:
        load_model(tmp_path / "new.pt")
    assert "stores model options this code does not know (flows)" in str(info.value)
    assert "\n" not in str(info.value)


@pytest.mark.parametrize("channels", [1, 3])
@pytest.mark.parametrize("size, depth", [(28, 2), (32, 2), (64, 3)])
def test_conv_handles_grey_and_rgb_at_28_32_and_64(channels, size, depth):
    """C x H x W in, the same out; the conv halves the side until it is at most 8 (docs/variants.md)."""
    model = VAE(VAEConfig(latent_dim=3, architecture="conv", channels=channels, image_size=size))
    x = torch.rand(2, channels * size * size)
    x_hat, mu, _, _ = model(x)
    assert x_hat.shape == x.shape and mu.shape == (2, 3) and model.image_shape == (channels, size, size)
    assert sum(isinstance(m, torch.nn.Conv2d) for m in model.encoder.net) == depth
    assert images(x_hat, model.image_shape).shape == (2, channels, size, size)


def test_the_image_shape_is_saved_and_old_files_load_as_28_by_28_grey(tmp_path):
    default = VAE(VAEConfig(latent_dim=2))
    assert set(default.config.to_dict()) == {"input_dim", "hidden_dim", "latent_dim"}  # default files keep their bytes
    rgb = VAE(VAEConfig(latent_dim=2, channels=3, image_size=32))
    save_model(tmp_path / "rgb.pt", rgb)
    assert load_model(tmp_path / "rgb.pt").image_shape == (3, 32, 32)
    save_model(tmp_path / "old.pt", default)
    assert load_model(tmp_path / "old.pt").image_shape == (1, 28, 28)
    torch.save({"config": {"input_dim": 784, "hidden_dim": 512, "latent_dim": 2, "channels": 3, "image_size": 32},
                "model": rgb.state_dict()}, tmp_path / "bad.pt")
    with pytest.raises(DamagedFile, match="stores input_dim = 784, but 3 x 32 x 32 images have 3072 values"):
        load_model(tmp_path / "bad.pt")
