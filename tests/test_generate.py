"""What a user sees: the decoder's figures (samples, manifold, interpolations, traversals), the latent
tables and projections, and the PNG files themselves."""

import numpy as np
import pandas as pd
import pytest
import torch
from PIL import Image
from torch import nn
from torchvision.utils import make_grid, save_image

from vae.figures import image_grid, latent_scatter, loss_curve, reconstruction_grid, save_grid
from vae.generate import interpolations, manifold, pick_pairs, prior_samples, traversals
from vae.latents import latent_table, projections
from vae.model import VAE, VAEConfig


class Echo(nn.Module):
    """A decoder that returns its input, so a figure's latent points can be read back."""

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        return z


def small_model(latent_dim: int = 2) -> VAE:
    torch.manual_seed(0)
    return VAE(VAEConfig(hidden_dim=16, latent_dim=latent_dim)).eval()


def test_manifold_covers_the_prior_in_equal_steps_of_probability() -> None:
    model = small_model()
    model.decoder = Echo()
    z = manifold(model, n=5).reshape(5, 5, 2)
    ticks = torch.distributions.Normal(0.0, 1.0).icdf(torch.tensor([0.05, 0.275, 0.5, 0.725, 0.95]))
    torch.testing.assert_close(z[0, :, 0], ticks)  # z1 rises left to right
    torch.testing.assert_close(z[:, 0, 1], ticks.flip(0))  # z2 falls top to bottom
    assert torch.all(z[:, :, 0] == z[0, :, 0]) and torch.all(z[:, 0, 1] == z[:, :, 1].T)


def test_manifold_needs_two_latent_dimensions() -> None:
    with pytest.raises(ValueError, match="latent_dim == 2"):
        manifold(small_model(latent_dim=3))


def test_interpolation_rows_run_from_one_image_to_the_other() -> None:
    model = small_model()
    x = torch.rand(6, 784, generator=torch.Generator().manual_seed(1))
    rows = interpolations(model, x, [(0, 3), (4, 1)], steps=7).reshape(2, 9, 784)
    with torch.no_grad():
        mu, _ = model.encoder(x)
        for row, (i, j) in zip(rows, [(0, 3), (4, 1)]):
            assert torch.equal(row[0], x[i]) and torch.equal(row[-1], x[j])  # the two images at the ends
            torch.testing.assert_close(row[1], model.decoder(mu[i:i + 1])[0])  # then the decodes of their means
            torch.testing.assert_close(row[-2], model.decoder(mu[j:j + 1])[0])


def test_pairs_are_of_different_classes() -> None:
    labels = torch.tensor([3, 1, 1, 0, 2, 3, 0])
    pairs = pick_pairs(labels, 3)
    assert pairs == [(3, 1), (1, 4), (4, 0)]  # classes 0 -> 1, 1 -> 2, 2 -> 3


def test_traversals_move_one_coordinate_per_row() -> None:
    model = small_model(latent_dim=3)
    model.decoder = Echo()
    x = torch.rand(784, generator=torch.Generator().manual_seed(2))
    z = traversals(model, x, dims=[2, 0], steps=5, span=2.0).reshape(2, 5, 3)
    with torch.no_grad():
        mu = model.encoder(x.unsqueeze(0))[0][0]
    torch.testing.assert_close(z[0, :, 2] - mu[2], torch.linspace(-2, 2, 5))
    torch.testing.assert_close(z[1, :, 0] - mu[0], torch.linspace(-2, 2, 5))
    assert torch.all(z[0, :, :2] == mu[:2]) and torch.all(z[1, :, 1:] == mu[1:])


def test_prior_samples_are_seeded_images() -> None:
    model = small_model()
    a, b, c = (prior_samples(model, 9, seed) for seed in (0, 0, 1))
    with torch.no_grad():
        decoded = model.decoder(torch.randn(9, 2, generator=torch.Generator().manual_seed(0)))
    assert a.shape == (9, 784) and torch.equal(a, decoded)  # the decoder's means at the seed's prior draws
    assert torch.equal(a, b) and not torch.equal(a, c)


def test_latent_table_and_projections() -> None:
    rng = np.random.default_rng(0)
    labels = rng.integers(0, 3, 60)
    mu2 = rng.normal(size=(60, 2)).astype(np.float32)
    table = latent_table(mu2, np.zeros_like(mu2), labels, ("a", "b", "c"))
    assert list(table.columns) == ["index", "label", "class", "mu_0", "mu_1", "logvar_0", "logvar_1"]
    assert table["class"].tolist() == [("a", "b", "c")[y] for y in labels]
    flat = projections(table, tsne_subset=40, perplexity=5, seed=0)
    assert list(flat) == ["latent_2d"] and np.array_equal(flat["latent_2d"][["x", "y"]].to_numpy(), mu2)
    mu5 = rng.normal(size=(60, 5)).astype(np.float32)
    both = projections(latent_table(mu5, mu5, labels, ("a", "b", "c")), tsne_subset=40, perplexity=5, seed=0)
    assert list(both) == ["latent_pca", "latent_tsne"]
    assert len(both["latent_pca"]) == 60 and len(both["latent_tsne"]) == 40
    assert list(both["latent_tsne"].columns) == ["index", "label", "class", "x", "y"]
    collapsed = projections(latent_table(np.ones_like(mu5), mu5, labels, ("a", "b", "c")), tsne_subset=40,
                            perplexity=5, seed=0)  # every code one point: t-SNE's PCA start would be NaN
    assert np.isfinite(collapsed["latent_tsne"][["x", "y"]].to_numpy()).all()
    mu1 = mu2[:, :1]  # one latent dimension: no plane to project onto; its code against its class
    strip = projections(latent_table(mu1, mu1, labels, ("a", "b", "c")), tsne_subset=40, perplexity=5, seed=0)
    assert list(strip) == ["latent_1d"]
    assert np.array_equal(strip["latent_1d"][["x", "y"]].to_numpy(), np.column_stack([mu1[:, 0], labels]))


def png_size(path) -> tuple[int, int]:
    with Image.open(path) as image:
        return image.size


@pytest.mark.parametrize(("count", "shape", "nrow"), [
    (16, (1, 28, 28), 8), (5, (1, 8, 8), 8), (10, (3, 64, 64), 4), (1, (1, 28, 28), 8), (1, (3, 8, 8), 4)])
def test_grids_are_torchvisions_to_the_png_byte(tmp_path, count, shape, nrow) -> None:
    """The grid code stands in for torchvision's make_grid and save_image (whose import is slow):
    the same layout (ragged last row, one image alone, grey as three channels) and the same PNG bytes."""
    batch = torch.rand(count, *shape, generator=torch.Generator().manual_seed(count))
    for pad_value in (0.0, 1.0):
        assert torch.equal(image_grid(batch, nrow, pad_value=pad_value),
                           make_grid(batch, nrow=nrow, pad_value=pad_value))
    save_image(batch, tmp_path / "torchvision.png", nrow=nrow)
    save_grid(tmp_path / "ours.png", batch.reshape(count, -1), nrow, shape)
    assert (tmp_path / "ours.png").read_bytes() == (tmp_path / "torchvision.png").read_bytes()


def test_figures_have_the_expected_size(tmp_path) -> None:
    save_grid(tmp_path / "grid.png", torch.rand(64, 784), nrow=8)
    assert png_size(tmp_path / "grid.png") == (8 * 30 + 2, 8 * 30 + 2)  # 28 pixels + 2 of padding per image
    reconstruction_grid(tmp_path / "recon.png", small_model(), torch.rand(16, 784), seed=0)
    assert png_size(tmp_path / "recon.png") == (8 * 30 + 2, 4 * 30 + 2)  # 16 images above 16 reconstructions
    history = pd.DataFrame({"epoch": [1, 2, 3], "train_loss": [190.0, 160.0, 150.0], "val_loss": [170, 158, 152]})
    loss_curve(tmp_path / "loss.png", history)
    assert png_size(tmp_path / "loss.png") == (600, 400)
    points = pd.DataFrame({"x": [0.0, 1.0, 2.0], "y": [1.0, 0.0, 2.0], "label": [0, 1, 1], "class": ["a", "b", "b"]})
    latent_scatter(tmp_path / "scatter.png", points, "title")
    assert png_size(tmp_path / "scatter.png") == (840, 720)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["grid.png", "loss.png", "recon.png", "scatter.png"]
