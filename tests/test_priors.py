"""The VampPrior, the two-layer model and gated layers against their definitions, written with torch.distributions."""

import math

import pytest
import torch
from torch.distributions import Independent, Normal

from vae.metrics import iwae_bound
from vae.model import VAE, GatedDense, VAEConfig, batch_objective, log_weight_terms, negative_elbo, posterior_noise
from vae.priors import diagonal_normal_log_prob, mixture_log_prob
from vae.training import TrainingSettings, TrainState, train_epoch

SMALL = {"hidden_dim": 16, "latent_dim": 3}


def normal(mu: torch.Tensor, logvar: torch.Tensor) -> Independent:
    return Independent(Normal(mu, (0.5 * logvar).exp()), 1)


def images(n: int, seed: int = 0) -> torch.Tensor:
    return (torch.rand(n, 784, generator=torch.Generator().manual_seed(seed)) > 0.7).float()


def test_the_mixture_density_is_the_mean_of_its_components_densities() -> None:
    g = torch.Generator().manual_seed(0)
    mu, logvar = torch.randn(7, 4, generator=g), torch.randn(7, 4, generator=g) - 1
    z = torch.randn(5, 3, 4, generator=g)
    want = torch.logsumexp(normal(mu, logvar).log_prob(z.unsqueeze(-2)), dim=-1) - math.log(7)
    torch.testing.assert_close(mixture_log_prob(z, mu, logvar), want, rtol=1e-5, atol=1e-4)
    torch.testing.assert_close(diagonal_normal_log_prob(z, mu[0], logvar[0]), normal(mu[0], logvar[0]).log_prob(z))


def test_the_vampprior_is_the_encoders_posterior_mixture_at_its_pseudo_inputs() -> None:
    torch.manual_seed(0)
    model = VAE(VAEConfig(**SMALL, prior="vampprior", pseudo_inputs=4))
    u = model.prior.images()
    assert u.shape == (4, 784) and u.min() >= 0 and u.max() <= 1  # images, through the hard tanh
    mu, logvar = model.encoder(u)
    z = torch.randn(6, 3)
    want = torch.logsumexp(normal(mu, logvar).log_prob(z.unsqueeze(1)), dim=1) - math.log(4)
    torch.testing.assert_close(model.log_prior(z), want, rtol=1e-5, atol=1e-4)


def test_a_vampprior_sample_is_a_draw_from_one_pseudo_inputs_posterior() -> None:
    torch.manual_seed(0)
    model = VAE(VAEConfig(**SMALL, prior="vampprior", pseudo_inputs=1))
    z = model.sample_prior(20_000, torch.Generator().manual_seed(1))
    mu, logvar = model.encoder(model.prior.images())
    torch.testing.assert_close(z.mean(0), mu[0], atol=0.05, rtol=0)
    torch.testing.assert_close(z.var(0), logvar[0].exp(), atol=0.05, rtol=0.05)


def test_pseudo_inputs_start_at_training_images_when_asked() -> None:
    x = images(4)
    settings = TrainingSettings(seed=1)
    state = TrainState.new(VAEConfig(**SMALL, prior="vampprior", pseudo_inputs=4), settings, torch.device("cpu"),
                           pseudo_inputs=x)
    assert (state.model.prior.pseudo_inputs - x).abs().max() < 0.1  # the images plus N(0, 0.01) noise
    random = TrainState.new(VAEConfig(**SMALL, prior="vampprior", pseudo_inputs=4), settings, torch.device("cpu"))
    assert abs(float(random.model.prior.pseudo_inputs.detach().mean()) - 0.05) < 0.01


def test_the_two_layer_log_weight_is_its_five_terms() -> None:
    """log p(x|z1,z2) + log p(z1|z2) + log p(z2) - log q(z1|x,z2) - log q(z2|x), from the same noise."""
    torch.manual_seed(0)
    model = VAE(VAEConfig(**SMALL, stochastic_layers=2, lower_latent_dim=2, likelihood="binarized"))
    x = images(5)
    mu, logvar = model.encoder(x)
    eps = posterior_noise(mu, torch.Generator().manual_seed(3), 4, model.noise_dim)
    assert eps.shape == (5, 4, 5)
    got = log_weight_terms(model, x, mu, logvar, eps).total()
    z2 = mu.unsqueeze(1) + eps[..., :3] * (0.5 * logvar).exp().unsqueeze(1)
    want = torch.empty(5, 4)
    for i in range(5):
        for c in range(4):
            q1_mu, q1_logvar = model.lower_encoder(torch.cat((x[i], z2[i, c])).unsqueeze(0))
            z1 = q1_mu[0] + eps[i, c, 3:] * (0.5 * q1_logvar[0]).exp()
            p1_mu, p1_logvar = model.lower_prior(z2[i, c].unsqueeze(0))
            logits = model.decoder.logits(torch.cat((z1, z2[i, c])).unsqueeze(0))[0]
            log_px = torch.distributions.Bernoulli(logits=logits).log_prob(x[i]).sum()
            want[i, c] = (log_px + normal(p1_mu[0], p1_logvar[0]).log_prob(z1) + Normal(0, 1).log_prob(z2[i, c]).sum()
                          - normal(q1_mu[0], q1_logvar[0]).log_prob(z1) - normal(mu[i], logvar[i]).log_prob(z2[i, c]))
    torch.testing.assert_close(got, want, rtol=1e-5, atol=1e-3)


@pytest.mark.parametrize("config", [{"prior": "vampprior", "pseudo_inputs": 5}, {"stochastic_layers": 2},
                                    {"stochastic_layers": 2, "prior": "vampprior", "pseudo_inputs": 5}])
def test_without_a_closed_form_kl_the_elbo_is_the_one_sample_estimate_and_the_bound_tightens(config) -> None:
    torch.manual_seed(0)
    model = VAE(VAEConfig(**SMALL, **config, likelihood="binarized"))
    assert not model.analytic_kl
    x = images(50)
    loss, recon, kl = negative_elbo(model, x, torch.Generator().manual_seed(1))
    torch.testing.assert_close(loss, recon + kl)
    step = batch_objective(model, x, "elbo", 1, torch.Generator().manual_seed(1))
    assert step.from_log_weights  # recorded as train_objective beside the ELBO terms
    torch.testing.assert_close(step.minimized, loss)  # the same sample: the step minimizes the estimate it reports
    with torch.no_grad():
        bounds = [float(iwae_bound(model, x, k, torch.Generator().manual_seed(2), progress=False).mean())
                  for k in (1, 100)]
    assert bounds[1] > bounds[0]  # K = 1 is the one-sample ELBO on other noise: the same in expectation
    assert bounds[0] == pytest.approx(-float(loss.detach()) / 50, abs=2.0)


def test_the_vampprior_and_both_layers_learn() -> None:
    """One epoch moves every parameter, the pseudo-inputs included, and lowers the loss."""
    x = images(400)
    settings = TrainingSettings(batch_size=50, lr=3e-3, seed=2)
    config = VAEConfig(**SMALL, stochastic_layers=2, prior="vampprior", pseudo_inputs=8, activation="gated")
    state = TrainState.new(config, settings, torch.device("cpu"))
    before = {name: p.detach().clone() for name, p in state.model.named_parameters()}
    first = train_epoch(state, x, 1, settings, progress=False)
    second = train_epoch(state, x, 2, settings, progress=False)
    assert second["loss"] < first["loss"]
    assert all(not torch.equal(before[name], p) for name, p in state.model.named_parameters())


def test_a_gated_dense_layer_is_a_linear_map_gated_by_a_sigmoid() -> None:
    torch.manual_seed(0)
    layer, x = GatedDense(4, 3), torch.randn(2, 4)
    want = (x @ layer.h.weight.T + layer.h.bias) * torch.sigmoid(x @ layer.g.weight.T + layer.g.bias)
    torch.testing.assert_close(layer(x), want)
    assert sum(isinstance(m, GatedDense) for m in VAE(VAEConfig(**SMALL, activation="gated")).encoder.modules()) == 2


def test_a_standard_one_layer_model_file_does_not_name_the_new_options() -> None:
    """Options at their defaults stay out of the config: the notebook's model files keep their bytes."""
    assert VAE(VAEConfig(**SMALL)).config.to_dict() == {"input_dim": 784, **SMALL}
    stored = VAE(VAEConfig(**SMALL, prior="vampprior")).config.to_dict()
    assert stored == {"input_dim": 784, **SMALL, "prior": "vampprior"}
    # nor their modules: an empty prior module would still add its own entry to the state dict's _metadata
    assert {name.split(".")[0] for name in VAE(VAEConfig(**SMALL)).state_dict()._metadata} == {"", "encoder", "decoder"}
    assert "prior" in {name.split(".")[0] for name in VAE(VAEConfig(**SMALL, prior="vampprior")).state_dict()._metadata}
