"""The ex-post latent density: fit, seeded samples, pickle-free file, and better samples than the prior."""

import pickle
from pathlib import Path

import numpy as np
import pytest
import torch

from vae.classifier import train_classifier
from vae.data.split import to_tensor
from vae.errors import UserError
from vae.latent_density import LatentDensity, fit_latent_density, load_latent_density, save_latent_density
from vae.metrics import sample_quality
from vae.model import VAEConfig, encode
from vae.training import TrainingSettings, TrainState, train_epoch

TRUE = LatentDensity(weights=np.array([0.5, 0.3, 0.2]),
                     means=np.array([[-4.0, 0.0], [3.0, 3.0], [2.0, -5.0]]),
                     covariances=np.array([np.eye(2) * 0.5, [[1.0, 0.6], [0.6, 1.0]], np.diag([0.2, 2.0])]))


def test_a_mixture_fit_to_codes_of_a_known_mixture_recovers_it() -> None:
    fitted = fit_latent_density(TRUE.sample(20_000, seed=0), components=3, seed=0)
    order = [int(np.argmin(np.linalg.norm(fitted.means - m, axis=1))) for m in TRUE.means]
    assert sorted(order) == [0, 1, 2]
    np.testing.assert_allclose(fitted.weights[order], TRUE.weights, atol=0.02)
    np.testing.assert_allclose(fitted.means[order], TRUE.means, atol=0.1)
    np.testing.assert_allclose(fitted.covariances[order], TRUE.covariances, atol=0.15)


def test_samples_are_seeded_and_follow_the_mixture() -> None:
    a, b, c = TRUE.sample(50_000, 1), TRUE.sample(50_000, 1), TRUE.sample(50_000, 2)
    assert torch.equal(a, b) and not torch.equal(a, c) and a.dtype == torch.float32
    np.testing.assert_allclose(a.mean(0).numpy(), TRUE.weights @ TRUE.means, atol=0.05)


def test_the_saved_density_round_trips(tmp_path: Path) -> None:
    save_latent_density(tmp_path / "d.npz", TRUE)
    loaded = load_latent_density(tmp_path / "d.npz")
    for name in ("weights", "means", "covariances"):
        np.testing.assert_array_equal(getattr(loaded, name), getattr(TRUE, name))


def bad_files(tmp_path: Path) -> dict[str, tuple[Path, str]]:
    files = {}
    path = tmp_path / "pickled.npz"
    path.write_bytes(pickle.dumps({"weights": TRUE.weights}))
    files["pickled"] = (path, "holds pickled objects")
    path = tmp_path / "object.npz"
    np.savez(path, weights=np.array([{"a": 1}], dtype=object), means=TRUE.means, covariances=TRUE.covariances)
    files["object array"] = (path, "holds pickled objects")
    path = tmp_path / "keys.npz"
    np.savez(path, weights=TRUE.weights, means=TRUE.means)
    files["missing array"] = (path, "lacks the array 'covariances' (it holds 'means', 'weights')")
    path = tmp_path / "shapes.npz"
    np.savez(path, weights=TRUE.weights, means=TRUE.means[:2], covariances=TRUE.covariances)
    files["shapes"] = (path, "holds 'means' of shape (2, 2), not (3, 2)")
    path = tmp_path / "weights.npz"
    np.savez(path, weights=np.array([0.5, 0.5, 0.5]), means=TRUE.means, covariances=TRUE.covariances)
    files["weights"] = (path, "not a probability vector")
    path = tmp_path / "covariance.npz"
    np.savez(path, weights=TRUE.weights, means=TRUE.means, covariances=-TRUE.covariances)
    files["covariance"] = (path, "not symmetric positive definite")
    path = tmp_path / "text.npz"
    path.write_text("not an npz")
    files["text"] = (path, "")
    return files


@pytest.mark.parametrize("case", ["pickled", "object array", "missing array", "shapes", "weights", "covariance",
                                  "text"])
def test_a_pickled_or_malformed_density_is_refused_in_one_line(tmp_path: Path, case: str) -> None:
    path, message = bad_files(tmp_path)[case]
    with pytest.raises(UserError) as err:
        load_latent_density(path)
    assert message in str(err.value) and str(path) in str(err.value) and "\n" not in str(err.value)
    assert str(err.value).endswith(f"restore it with `dvc checkout --force {path}`, or "
                                   "`dvc repro -f -s latent-density` where DVC's cache does not hold it")


def test_samples_from_the_density_score_better_than_the_prior_s(mnist_test_set) -> None:
    """A small VAE with a weak KL term (beta 0.02) spreads its codes far beyond N(0, I), so most
    prior draws decode to the few images near the origin, while draws from the fitted density
    decode to images like the data: evaluate's metrics must say so, by a margin (half the distance
    from the prior's samples to the reconstructions closed, more classes) that density samples no
    better than the prior's cannot reach."""
    images, labels = mnist_test_set
    x, y = to_tensor(images[:6000]), torch.as_tensor(labels[:6000], dtype=torch.int64)
    train, held_out = x[:5000], x[5000:]
    settings = TrainingSettings(batch_size=100, seed=0, beta=0.02)
    state = TrainState.new(VAEConfig(hidden_dim=128, latent_dim=2), settings, torch.device("cpu"))
    for epoch in range(1, 6):
        train_epoch(state, train, epoch, settings, progress=False)
    model = state.model.eval()
    codes = encode(model, train)[0]
    assert codes.var(0).sum() > 5 * codes.shape[1], codes.var(0)  # the aggregate posterior is clearly not N(0, I)
    classifier = train_classifier(train, y[:5000], epochs=1, batch_size=100, lr=2e-3, seed=0,
                                  progress=False)
    density = fit_latent_density(codes, components=10, seed=0)
    m = sample_quality(model, classifier, held_out, y[5000:], seed=0, n_images=1000, density=density)
    gap = m["fd_samples"] - m["fd_reconstructions"]  # what better samples could win at most
    assert gap > 50 and m["fd_samples_latent_density"] < m["fd_samples"] - 0.5 * gap, m
    assert m["sample_class_entropy_latent_density"] > m["sample_class_entropy"], m
