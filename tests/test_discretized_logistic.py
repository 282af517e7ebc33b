"""The discretized logistic likelihood of 8-bit pixels and the bits per dimension evaluate reports.

Its log-probabilities against a float64 reference at the edge bins and at tiny scales, a
distribution over the 256 values that sums to 1, finite gradients, a bf16-mixed training step,
the default model's weights untouched by its parameter, and which likelihoods get bits per dimension.
"""

import json
import math

import numpy as np
import pytest
import torch

from vae.io import write_json
from vae.likelihoods import (
    BITS_METRICS,
    HALF_BIN,
    LEVELS,
    LIKELIHOODS,
    MIN_LOG_SCALE,
    bits_per_dim,
    discretized_logistic_log_prob,
)
from vae.metrics import evaluate
from vae.model import VAE, VAEConfig, load_model, negative_elbo, save_model
from vae.training import TrainingSettings, TrainState, train_epoch

CPU = torch.device("cpu")
CONFIG = {"hidden_dim": 32, "latent_dim": 3, "likelihood": "discretized_logistic"}
VALUES = torch.arange(LEVELS + 1, dtype=torch.float64) / LEVELS  # the 256 values of an 8-bit subpixel


def eight_bit_images(n: int, seed: int) -> torch.Tensor:
    """uint8 / 255 as the pipeline makes them (vae.data.split.to_tensor), mostly 0 like MNIST's, some 255."""
    gen = torch.Generator().manual_seed(seed)
    raw = (torch.rand(n, 784, generator=gen).pow(3) * 300).clamp(max=255).round().to(torch.uint8)
    return raw.to(torch.float32).div_(255)


def reference_log_prob(mean: float, log_scale: float, k: int) -> float:
    """log P(k) in float64 from the logistic's CDF, each difference taken in the tail where it is small.

    Independent of the implementation's log-sigmoid identity: F(b) - F(a) directly when the bin lies below
    the mean, (1 - F(a)) - (1 - F(b)) when above (both exact in float64 down to ~1e-300), the edge bins open.
    """
    s = math.exp(max(log_scale, MIN_LOG_SCALE))
    a = -math.inf if k == 0 else (k / LEVELS - HALF_BIN - mean) / s
    b = math.inf if k == LEVELS else (k / LEVELS + HALF_BIN - mean) / s

    def cdf(t: float) -> float:
        if abs(t) == math.inf:
            return float(t > 0)
        return 1 / (1 + math.exp(-t)) if t >= 0 else math.exp(t) / (1 + math.exp(t))

    p = cdf(-a) - cdf(-b) if a > 0 else cdf(b) - cdf(a)  # 1 - F(t) = F(-t)
    return math.log(p) if p > 0 else -math.inf


# The edge bins and their neighbours, the middle; means at, near and between them; scales from 1/30 of a bin
# (the floor) to wider than the whole range, and one below the floor (clamped).
CASES = [(mean, log_scale, k) for mean in (0.0, 1e-4, 0.5 / LEVELS, 0.3, 0.5, 1 - 1e-4, 1.0)
         for log_scale in (-12.0, MIN_LOG_SCALE, -7.0, -5.5, -3.0, 0.0, 3.0)
         for k in (0, 1, 2, 76, 128, 253, 254, 255)]


def test_log_probabilities_match_the_float64_reference_at_the_edge_bins_and_tiny_scales() -> None:
    mean, log_scale, k = (torch.tensor(column, dtype=torch.float64) for column in zip(*CASES))
    want = torch.tensor([reference_log_prob(*case) for case in CASES], dtype=torch.float64)
    keep = want > -700  # beyond, the float64 reference's exp underflows (far bins at the tiniest scales)
    assert keep.sum() > 0.7 * len(CASES)
    x = k / LEVELS
    ours64 = discretized_logistic_log_prob(mean, log_scale, x)
    assert torch.allclose(ours64[keep], want[keep], rtol=1e-9, atol=1e-9)
    assert torch.isfinite(ours64).all() and (ours64 <= 0).all()
    # float32, as the losses are computed (also under bf16 autocast): float32's precision, never -inf
    ours32 = discretized_logistic_log_prob(mean.float(), log_scale.float(), x.float())
    assert torch.isfinite(ours32).all()
    assert torch.allclose(ours32.double()[keep], want[keep], rtol=1e-4, atol=1e-4)
    # the naive log of a difference of float32 sigmoids rounds to log 0 here; ours gives the value
    assert (want[keep] < -20).any()


@pytest.mark.parametrize("dtype", [torch.float64, torch.float32])
def test_the_256_probabilities_sum_to_one(dtype: torch.dtype) -> None:
    means = torch.tensor([0.0, 1e-3, 0.2, 0.5, 0.77, 1.0], dtype=dtype)[:, None, None]
    log_scales = torch.tensor([MIN_LOG_SCALE, -7.0, -5.0, -2.0, 0.0, 4.0], dtype=dtype)[None, :, None]
    probs = discretized_logistic_log_prob(means, log_scales, VALUES.to(dtype)[None, None, :]).exp().sum(-1)
    # float32: a mean on a bin edge at the floor scale puts ~1/2 on each side, and the edge's position
    # relative to the mean rounds by ~6e-8, 5e-4 of that scale
    tolerance = 1e-12 if dtype == torch.float64 else 1e-4
    assert torch.allclose(probs, torch.ones_like(probs), atol=tolerance)


def test_pixels_map_to_their_bins_exactly() -> None:
    """uint8 / 255 in float32 (the pipeline's pixels) scores the same bin as the exact value k / 255."""
    k = torch.arange(LEVELS + 1)
    pixels = k.to(torch.uint8).to(torch.float32).div_(255)
    mean, log_scale = torch.full((256,), 0.4, dtype=torch.float64), torch.full((256,), -6.0, dtype=torch.float64)
    assert torch.allclose(discretized_logistic_log_prob(mean, log_scale, pixels.double()),
                          discretized_logistic_log_prob(mean, log_scale, VALUES), rtol=0, atol=1e-12)


def test_gradients_are_finite_at_the_extremes() -> None:
    logits = torch.tensor([-40.0, -12.0, 0.0, 12.0, 40.0] * 3, requires_grad=True)
    log_scale = torch.tensor([-30.0, MIN_LOG_SCALE, -6.0, 0.0, 8.0] * 3, requires_grad=True)
    x = torch.tensor([0.0] * 5 + [128 / 255] * 5 + [1.0] * 5)
    LIKELIHOODS["discretized_logistic"].bound_to(_Holder(log_scale)).nll(logits, x).backward()
    assert torch.isfinite(logits.grad).all() and torch.isfinite(log_scale.grad).all()
    assert log_scale.grad[0] == 0  # below the floor the scale is clamped: no pull further down


class _Holder(torch.nn.Module):
    """A stand-in decoder holding only the likelihood's parameter."""

    def __init__(self, log_scale: torch.Tensor) -> None:
        super().__init__()
        self.log_scale = log_scale


def test_the_log_scale_is_a_parameter_of_this_likelihood_only(tmp_path) -> None:
    """The default model's weights are what they were (the golden md5 test holds them); a discretized logistic
    model has one log-scale per subpixel, saved and loaded with it, and images show its location in [0, 1]."""
    torch.manual_seed(0)
    default_keys = list(VAE(VAEConfig(hidden_dim=16, latent_dim=2)).state_dict())
    torch.manual_seed(0)
    model = VAE(VAEConfig(hidden_dim=16, latent_dim=2, likelihood="discretized_logistic"))
    assert "decoder.log_scale" not in default_keys
    assert [key for key in model.state_dict() if key not in default_keys] == ["decoder.log_scale"]
    assert model.decoder.log_scale.shape == (784,)
    with torch.no_grad():
        model.decoder.log_scale.uniform_(-8, -2)
    save_model(tmp_path / "model.pt", model)
    loaded = load_model(tmp_path / "model.pt")
    assert torch.equal(loaded.decoder.log_scale, model.decoder.log_scale)
    x, z = eight_bit_images(4, seed=0), torch.randn(4, 2)
    logits = loaded.decoder.logits(z)
    assert torch.equal(loaded.likelihood.nll(logits, x), model.likelihood.nll(model.decoder.logits(z), x))
    assert torch.equal(loaded.decoder(z), loaded.decoder.logits(z).clamp(0, 1))


@pytest.mark.parametrize("precision", ["32-true", "bf16-mixed"])
def test_a_training_epoch_lowers_the_loss_and_learns_the_scale(precision: str) -> None:
    """Under bf16 autocast the loss is computed in float32 from float32 logits: finite, and it learns."""
    settings = TrainingSettings(batch_size=32, seed=0, precision=precision, lr=3e-3)
    state = TrainState.new(VAEConfig(**CONFIG), settings, CPU)
    x = eight_bit_images(256, seed=1)
    before = state.model.decoder.log_scale.detach().clone()
    first = train_epoch(state, x, 1, settings, progress=False)
    second = train_epoch(state, x, 2, settings, progress=False)
    assert math.isfinite(first["loss"]) and second["loss"] < first["loss"]
    assert state.model.decoder.log_scale.dtype == torch.float32
    assert not torch.equal(state.model.decoder.log_scale.detach(), before)


def test_bits_per_dim_are_nats_over_d_ln_2() -> None:
    assert bits_per_dim(784 * math.log(2), 784) == pytest.approx(1.0)
    assert bits_per_dim(1000.0, 3072) == pytest.approx(1000 / (3072 * math.log(2)))


def small_run(likelihood: str) -> dict[str, float | int]:
    """Train a tiny model of ``likelihood`` for one epoch on 8-bit images and evaluate it in this process."""
    settings = TrainingSettings(batch_size=32, seed=0)
    state = TrainState.new(VAEConfig(**{**CONFIG, "likelihood": likelihood}), settings, CPU)
    x, labels = eight_bit_images(320, seed=2), np.arange(320) % 10
    train_epoch(state, x[:256], 1, settings, progress=False)
    metrics, _ = evaluate(state.model, x[:256], labels[:256], x[256:], labels[256:], k=20, progress=False)
    return metrics


@pytest.mark.parametrize("likelihood", ["discretized_logistic", "binarized"])
def test_a_probability_of_discrete_pixels_reports_bits_per_dimension(likelihood: str) -> None:
    metrics = small_run(likelihood)
    assert metrics["bits_per_dim"] == pytest.approx(metrics["loss"] / (784 * math.log(2)), rel=1e-12)
    assert metrics["iwae_bits_per_dim"] == pytest.approx(-metrics["iwae_log_likelihood_bound"] / (784 * math.log(2)),
                                                         rel=1e-12)
    assert 0 < metrics["iwae_bits_per_dim"] < metrics["bits_per_dim"]  # the bound is tighter than the ELBO


@pytest.mark.parametrize("likelihood", ["bernoulli", "continuous_bernoulli"])
def test_grey_value_likelihoods_leave_bits_per_dimension_out(likelihood: str, tmp_path) -> None:
    """Not defined: the keys are absent (``dvc metrics show`` and ``diff`` print ``-``), not a marker string,
    which ``dvc metrics diff`` could not subtract and the study reports would read as a param."""
    metrics = small_run(likelihood)
    assert not set(BITS_METRICS) & set(metrics)
    write_json(tmp_path / "metrics.json", metrics)
    written = json.loads((tmp_path / "metrics.json").read_text())
    assert all(isinstance(value, int | float) for value in written.values())


def test_a_discretized_logistic_elbo_is_finite_on_extreme_images() -> None:
    """All-black and all-white images (the open edge bins only), from a fresh model."""
    torch.manual_seed(0)
    model = VAE(VAEConfig(**CONFIG))
    x = torch.stack([torch.zeros(784), torch.ones(784)])
    loss, recon, _ = negative_elbo(model, x, torch.Generator().manual_seed(0))
    assert math.isfinite(loss.item()) and recon.item() > 0
