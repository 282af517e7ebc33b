"""The variants: each likelihood's loss against a hand computation, the conv and deeper MLP
models, the KL warm-up and the IWAE paper's learning-rate schedule, binarization that is
seeded and saved, and what the grey-level numbers bound."""

import io
import math

import pytest
import torch
from torch import nn

from vae.likelihoods import (
    LIKELIHOODS,
    Bernoulli,
    Likelihood,
    binarize,
    continuous_bernoulli_log_norm,
    fixed_binarization,
)
from vae.metrics import iwae_bound
from vae.model import VAE, VAEConfig, load_model, negative_elbo, save_model
from vae.params import IWAE_EPOCHS
from vae.training import TrainingSettings, TrainState, fit, logit_of_mean, train_epoch

CPU = torch.device("cpu")
BERNOULLI, CONTINUOUS = LIKELIHOODS["bernoulli"], LIKELIHOODS["continuous_bernoulli"]


def test_every_likelihood_is_a_likelihood_and_only_the_binarized_one_a_bernoulli() -> None:
    """``Likelihood`` is the base class; ``binarized`` is the Bernoulli of drawn pixels, the continuous one is not."""
    assert all(isinstance(likelihood, Likelihood) for likelihood in LIKELIHOODS.values())
    assert [name for name, likelihood in LIKELIHOODS.items() if isinstance(likelihood, Bernoulli)] == \
        ["bernoulli", "binarized"]
    with pytest.raises(TypeError):
        Likelihood("abstract")  # type: ignore[abstract]


def test_bernoulli_loss_is_the_hand_computed_cross_entropy() -> None:
    logits, x = torch.randn(4, 784, dtype=torch.float64) * 3, torch.rand(4, 784, dtype=torch.float64)
    p = torch.sigmoid(logits)
    hand = -(x * p.log() + (1 - x) * (1 - p).log())
    for name in ("bernoulli", "binarized"):
        assert torch.allclose(LIKELIHOODS[name].nll(logits, x, reduction="none"), hand)
        assert LIKELIHOODS[name].nll(logits, x).item() == pytest.approx(hand.sum().item())


def test_continuous_bernoulli_loss_is_minus_torch_distributions_log_prob() -> None:
    gen = torch.Generator().manual_seed(0)
    # |a| <= 15: beyond, torch's float64 reference itself loses digits (it works from 1 - sigmoid(a))
    logits = torch.cat([(torch.randn(2000, dtype=torch.float64, generator=gen) * 5).clamp(-15, 15),
                        torch.tensor([0.0, 1e-3, -5e-3, 0.0099, 0.0101, 15.0, -15.0], dtype=torch.float64)])
    x = torch.rand(logits.shape, dtype=torch.float64, generator=gen)
    reference = -torch.distributions.ContinuousBernoulli(logits=logits).log_prob(x)
    assert torch.allclose(CONTINUOUS.nll(logits, x, reduction="none"), reference, atol=1e-9)
    assert continuous_bernoulli_log_norm(torch.zeros(1)).item() == pytest.approx(math.log(2))
    # float32 stays at float32 precision (torch's own float32 log_prob is off by ~0.1 nats at |a| > 15)
    ours32 = CONTINUOUS.nll(logits.float(), x.float(), reduction="none")
    assert torch.allclose(ours32.double(), reference, rtol=1e-5, atol=1e-5)


def test_continuous_bernoulli_gradient_is_finite_at_logit_zero() -> None:
    logits = torch.zeros(3, requires_grad=True)
    CONTINUOUS.nll(logits, torch.full((3,), 0.7)).backward()
    assert torch.isfinite(logits.grad).all()


def test_continuous_bernoulli_images_show_its_mean_not_its_parameter() -> None:
    torch.manual_seed(0)
    model = VAE(VAEConfig(hidden_dim=16, latent_dim=2, likelihood="continuous_bernoulli")).eval()
    z = torch.randn(5, 2)
    logits = model.decoder.logits(z)
    shown = model.decoder(z)
    assert torch.allclose(shown, torch.distributions.ContinuousBernoulli(logits=logits).mean)
    assert not torch.allclose(shown, torch.sigmoid(logits), atol=1e-3)


def test_conv_model_shapes_and_round_trip(tmp_path) -> None:
    torch.manual_seed(0)
    model = VAE(VAEConfig(latent_dim=16, architecture="conv")).eval()
    assert not any(isinstance(m, nn.Linear) and m.in_features == 512 for m in model.modules())  # no MLP inside
    for x in (torch.rand(3, 784), torch.rand(3, 1, 28, 28)):
        mu, logvar = model.encoder(x)
        assert mu.shape == logvar.shape == (3, 16)
    z = torch.randn(3, 16)
    assert model.decoder.logits(z).shape == model.decoder(z).shape == (3, 784)
    assert torch.equal(model.decoder(z), torch.sigmoid(model.decoder.logits(z)))  # pixel means, from the logits
    save_model(tmp_path / "conv.pt", model)
    loaded = load_model(tmp_path / "conv.pt")
    assert loaded.config.architecture == "conv"
    assert torch.equal(loaded.decoder(z), model.decoder(z))


def test_the_iwae_papers_mlp_is_expressible() -> None:
    model = VAE(VAEConfig(hidden_dim=200, latent_dim=50, activation="tanh"))
    widths = [(m.in_features, m.out_features) for m in model.modules() if isinstance(m, nn.Linear)]
    assert widths == [(784, 200), (200, 200), (200, 50), (200, 50), (50, 200), (200, 200), (200, 784)]
    assert any(isinstance(m, nn.Tanh) for m in model.modules()) and not any(isinstance(m, nn.ReLU)
                                                                          for m in model.modules())
    deeper = VAE(VAEConfig(hidden_dim=64, latent_dim=2, hidden_layers=3))
    assert sum(isinstance(m, nn.Linear) for m in deeper.encoder.net) == 3


def test_default_options_stay_out_of_the_model_file_config() -> None:
    assert VAE(VAEConfig(hidden_dim=8)).config.to_dict() == {"input_dim": 784, "hidden_dim": 8, "latent_dim": 2}
    binarized = VAE(VAEConfig(hidden_dim=8, likelihood="binarized"))
    assert binarized.config.likelihood == "binarized" and binarized.likelihood is LIKELIHOODS["binarized"]


def test_kl_warmup_rises_linearly_from_zero_to_beta() -> None:
    settings = TrainingSettings(beta=4.0, kl_warmup_epochs=10)
    assert [settings.kl_weight_at(e) for e in (0, 2.5, 5, 10, 15)] == [0.0, 1.0, 2.0, 4.0, 4.0]
    assert TrainingSettings(beta=0.5).kl_weight_at(0) == 0.5  # no warm-up: beta from the first batch


def test_iwae_schedule_is_the_papers_eight_stages() -> None:
    settings = TrainingSettings(lr=1e-3, lr_schedule="iwae")
    lrs = [settings.lr_at(epoch) for epoch in range(1, IWAE_EPOCHS + 1)]
    stages = [lrs.count(1e-3 * 10 ** (-i / 7)) for i in range(8)]
    assert stages == [1, 3, 9, 27, 81, 243, 729, 2187]
    assert lrs[-1] == pytest.approx(1e-4)
    compressed = [TrainingSettings(lr_schedule="iwae", lr_schedule_epochs=1200).lr_at(e) for e in range(1, 1201)]
    assert compressed == sorted(compressed, reverse=True) and compressed[-1] == pytest.approx(1e-4)
    assert TrainingSettings(lr=0.01).lr_at(500) == 0.01  # constant


def test_the_step_uses_the_kl_weight_but_reports_the_unweighted_elbo() -> None:
    x = (torch.rand(512, 784) < 0.2).float()
    results = {}
    for beta in (0.0, 1.0):
        settings = TrainingSettings(batch_size=64, seed=0, beta=beta)
        state = TrainState.new(VAEConfig(hidden_dim=32, latent_dim=4), settings, CPU)
        results[beta] = train_epoch(state, x, 1, settings, progress=False)
    beta_0 = results[0.0]
    assert beta_0["loss"] == pytest.approx(beta_0["recon"] + beta_0["kl"])  # the ELBO, not the minimized recon + 0 * KL
    assert beta_0["kl"] > results[1.0]["kl"]  # nothing pulls q towards the prior at beta = 0


def test_train_mean_output_bias() -> None:
    x = torch.rand(100, 784)
    x[:, 0] = 0  # a pixel that is always black is clipped at logit(0.001), not -inf
    state = TrainState.new(VAEConfig(hidden_dim=8, latent_dim=2), TrainingSettings(), CPU, output_bias=logit_of_mean(x))
    bias = state.model.decoder.output_layer.bias
    assert bias is state.model.decoder.net[-2].bias  # the MLP's last linear layer, before the sigmoid
    assert bias[0].item() == pytest.approx(math.log(0.001 / 0.999), rel=1e-5)
    assert torch.allclose(torch.sigmoid(bias[1:]), x.mean(0)[1:], atol=1e-6)


def test_binarization_is_seeded_saved_in_the_state_and_resumed() -> None:
    config = VAEConfig(hidden_dim=16, latent_dim=2, likelihood="binarized")
    x = torch.rand(256, 784)
    settings = TrainingSettings(batch_size=64, seed=0)
    state = TrainState.new(config, settings, CPU)
    assert TrainState.new(VAEConfig(hidden_dim=16, latent_dim=2), settings, CPU).binarize_gen is None
    train_epoch(state, x, 1, settings, progress=False)
    buffer = io.BytesIO()
    torch.save(state.to_dict("key"), buffer)  # a copy, as on disk: the state's own tensors keep training
    saved = torch.load(io.BytesIO(buffer.getvalue()), weights_only=True)
    assert set(saved["rng"]) == {"shuffle", "noise", "binarize"}
    after = train_epoch(state, x, 2, settings, progress=False)
    resumed = TrainState.new(config, settings, CPU)
    resumed.load_dict(saved)
    assert train_epoch(resumed, x, 2, settings, progress=False) == after
    first = binarize(x, torch.Generator().manual_seed(1))
    assert set(first.unique().tolist()) == {0.0, 1.0}
    assert torch.equal(fixed_binarization(x), fixed_binarization(x))  # every model is scored on the same bits


def test_each_likelihood_prepares_its_training_and_held_out_pixels() -> None:
    x = torch.rand(8, 784)
    binarized = LIKELIHOODS["binarized"]
    for grey in (BERNOULLI, CONTINUOUS, LIKELIHOODS["discretized_logistic"]):
        assert grey.training_batch(x, None) is x and grey.held_out(x) is x and not grey.draws_pixels
    drawn = binarized.training_batch(x, torch.Generator().manual_seed(3))
    assert torch.equal(drawn, binarize(x, torch.Generator().manual_seed(3))) and binarized.draws_pixels
    assert torch.equal(binarized.held_out(x), fixed_binarization(x))
    assert {name: lik.test_nll_metric for name, lik in LIKELIHOODS.items()} == {
        "bernoulli": None, "binarized": "binarized_test_nll", "continuous_bernoulli": None,
        "discretized_logistic": None}
    assert [name for name, lik in LIKELIHOODS.items() if lik.discrete] == ["binarized", "discretized_logistic"]


def test_grey_level_numbers_bound_the_expected_binarized_ones() -> None:
    """BCE is linear in its target: the grey negative ELBO is the mean over binarizations of the
    binarized one (same q, same z), and the grey IWAE bound lies below the binarized bounds' mean (Jensen)."""
    torch.manual_seed(0)
    model = VAE(VAEConfig(hidden_dim=32, latent_dim=4)).eval()
    grey = torch.rand(8, 784) * (torch.rand(8, 784) < 0.3)
    draws = 2000
    with torch.no_grad():
        grey_loss, *_ = negative_elbo(model, grey, torch.Generator().manual_seed(5))
        mu, logvar = model.encoder(grey)
        z = mu + torch.randn(mu.shape, generator=torch.Generator().manual_seed(5)) * (0.5 * logvar).exp()
        logits = model.decoder.logits(z)
        gen = torch.Generator().manual_seed(6)
        binary = torch.stack([BERNOULLI.nll(logits, binarize(grey, gen)) for _ in range(draws)])
        kl = grey_loss - BERNOULLI.nll(logits, grey)
        spread = binary.std() / math.sqrt(draws)
        assert (binary.mean() + kl).item() == pytest.approx(grey_loss.item(), abs=4 * spread.item())

        def bound(x: torch.Tensor) -> torch.Tensor:  # q from the grey images, the same noise for every x
            class SameQ(nn.Module):
                def forward(self, _: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
                    return mu, logvar
            scored = VAE(VAEConfig(hidden_dim=32, latent_dim=4)).eval()
            scored.load_state_dict(model.state_dict())
            scored.encoder = SameQ()
            return iwae_bound(scored, x, 20, torch.Generator().manual_seed(7), batch_size=8, progress=False)

        grey_bound = bound(grey)
        binarized_bounds = torch.stack([bound(binarize(grey, gen)) for _ in range(200)]).mean(0)
        assert (grey_bound <= binarized_bounds).all()


def test_fit_applies_the_lr_schedule_and_adam_eps() -> None:
    settings = TrainingSettings(batch_size=32, num_epochs=3, seed=0, lr=1e-3, adam_eps=1e-4, lr_schedule="iwae",
                                lr_schedule_epochs=4)  # epoch 3 is in a later stage
    state = TrainState.new(VAEConfig(hidden_dim=8, latent_dim=2), settings, CPU)
    x = torch.rand(64, 784)
    fit(state, x, x[:8], settings, progress=False)
    group = state.optimizer.param_groups[0]
    assert group["eps"] == 1e-4
    assert group["lr"] == settings.lr_at(3) < 1e-3 and state.epoch == 3
