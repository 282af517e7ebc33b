"""Sample quality: the Frechet distance, the classifier's file, and the metrics built on them."""

import numpy as np
import pytest
import torch

from vae.classifier import (
    Classifier,
    features_and_logits,
    frechet_distance,
    load_classifier,
    save_classifier,
    train_classifier,
)
from vae.data.split import to_tensor
from vae.errors import UserError
from vae.generate import prior_samples
from vae.metrics import class_entropy, reconstructions, sample_quality
from vae.model import VAE, VAEConfig, save_model


def test_the_distance_of_a_set_to_itself_is_zero() -> None:
    a = np.random.default_rng(0).normal(size=(2000, 16)) @ np.random.default_rng(1).normal(size=(16, 16))
    assert abs(frechet_distance(a, a)) < 1e-6


def test_the_distance_matches_the_closed_form_for_two_gaussians() -> None:
    """For diagonal covariances: ||mu_a - mu_b||^2 + sum_i (sigma_a,i - sigma_b,i)^2."""
    rng = np.random.default_rng(0)
    mu_a, mu_b = np.array([0.0, 1.0, -2.0]), np.array([1.0, 1.0, 0.0])
    sd_a, sd_b = np.array([1.0, 2.0, 0.5]), np.array([3.0, 1.0, 0.5])
    a = mu_a + sd_a * rng.standard_normal((400_000, 3))
    b = mu_b + sd_b * rng.standard_normal((400_000, 3))
    assert frechet_distance(a, b) == pytest.approx(5.0 + 4.0 + 1.0, rel=0.01)
    # and with a correlated covariance, against the textbook formula through scipy's sqrtm
    import scipy.linalg
    cov_a, cov_b = np.array([[2.0, 0.8], [0.8, 1.0]]), np.array([[1.0, -0.3], [-0.3, 0.5]])
    a = rng.multivariate_normal([0, 0], cov_a, 400_000)
    b = rng.multivariate_normal([1, 0], cov_b, 400_000)
    want = 1.0 + np.trace(cov_a) + np.trace(cov_b) - 2 * np.trace(scipy.linalg.sqrtm(cov_a @ cov_b)).real
    assert frechet_distance(a, b) == pytest.approx(want, rel=0.01)


def test_the_distance_grows_as_noise_is_added_to_images(mnist_test_set) -> None:
    images, labels = mnist_test_set
    x, y = to_tensor(images[:9000]), torch.from_numpy(labels[:9000].astype(np.int64))
    classifier = train_classifier(x[:5000], y[:5000], epochs=1, batch_size=128, lr=1e-3, seed=0, progress=False)
    real, _ = features_and_logits(classifier, x[5000:7000])
    gen = torch.Generator().manual_seed(0)
    distances = []
    for noise in (0.0, 0.1, 0.3, 0.6):
        noisy = (x[7000:9000] + noise * torch.randn(2000, 784, generator=gen)).clamp(0, 1)
        distances.append(frechet_distance(features_and_logits(classifier, noisy)[0], real))
    assert distances == sorted(distances) and distances[-1] > 10 * distances[0], distances


def test_class_entropy_is_log_10_for_even_classes_and_0_for_one() -> None:
    even = torch.eye(10).repeat(50, 1)
    assert class_entropy(even) == pytest.approx(np.log(10))
    assert class_entropy(torch.eye(10)[[3] * 20]) == 0.0


def test_a_classifier_learns_and_round_trips_pickle_free(tmp_path) -> None:
    gen = torch.Generator().manual_seed(0)
    y = torch.randint(0, 2, (600,), generator=gen)
    x = torch.zeros(600, 784)
    x[y == 1, :392] = 1.0  # class 1: the top half lit
    model = train_classifier(x, y, epochs=2, batch_size=64, lr=1e-3, seed=0, progress=False)
    logits = features_and_logits(model, x)[1]
    assert (logits.argmax(1) == y).float().mean() == 1.0
    save_classifier(tmp_path / "c.pt", model)
    again = load_classifier(tmp_path / "c.pt")
    assert torch.equal(features_and_logits(again, x)[1], logits)
    second = train_classifier(x, y, epochs=2, batch_size=64, lr=1e-3, seed=0, progress=False)
    assert all(torch.equal(p, q) for p, q in zip(model.parameters(), second.parameters()))  # seeded


def test_a_file_that_is_not_our_classifier_is_refused_in_one_line(tmp_path) -> None:
    save_model(tmp_path / "model.pt", VAE(VAEConfig(hidden_dim=8)))
    with pytest.raises(UserError) as info:
        load_classifier(tmp_path / "model.pt")
    path = tmp_path / "model.pt"
    assert str(info.value) == (f"{path} is not a classifier this pipeline wrote; restore it with "
                               f"`dvc checkout --force {path}`, or `dvc repro -f -s classifier` where DVC's cache does "
                               "not hold it")


def test_sample_quality_reports_every_number() -> None:
    """The distances are those of the prior's samples and of the reconstructions to the test images; with a
    classifier that always says 3, the classes' entropy is 0 and the accuracy the share of 3s among the labels
    (about 0.1 here: the labels are random)."""
    torch.manual_seed(0)
    vae, classifier = VAE(VAEConfig(hidden_dim=16, latent_dim=2)).eval(), Classifier().eval()
    with torch.no_grad():
        classifier.head.weight.zero_()
        classifier.head.bias.copy_(torch.nn.functional.one_hot(torch.tensor(3), 10))
    x = torch.rand(300, 784, generator=torch.Generator().manual_seed(1))
    y = torch.randint(0, 10, (300,), generator=torch.Generator().manual_seed(2))
    metrics = sample_quality(vae, classifier, x, y.numpy(), seed=0, n_images=300)
    real = features_and_logits(classifier, x)[0]
    assert metrics == {
        "fd_samples": frechet_distance(features_and_logits(classifier, prior_samples(vae, 300, 0))[0], real),
        "fd_reconstructions": frechet_distance(features_and_logits(classifier, reconstructions(vae, x))[0], real),
        "sample_class_entropy": 0.0,
        "reconstruction_accuracy": float((y == 3).double().mean()),
    }


def test_sample_quality_uses_n_images_on_each_side() -> None:
    torch.manual_seed(0)
    vae, classifier = VAE(VAEConfig(hidden_dim=16, latent_dim=2)).eval(), Classifier().eval()
    x = torch.rand(300, 784, generator=torch.Generator().manual_seed(1))
    y = torch.randint(0, 10, (300,), generator=torch.Generator().manual_seed(2)).numpy()
    first = sample_quality(vae, classifier, x[:100], y[:100], seed=0, n_images=100)
    assert sample_quality(vae, classifier, x, y, seed=0, n_images=100) == first  # the first 100 test images
    assert sample_quality(vae, classifier, x, y, seed=0, n_images=300)["fd_reconstructions"] != \
        first["fd_reconstructions"]
