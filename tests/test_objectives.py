"""Multi-sample training objectives: the k-sample ELBO and the IWAE bound (Burda et al. 2016)."""

import math
from dataclasses import asdict
from pathlib import Path

import pytest
import torch
from torch.distributions import Normal

from vae.errors import UserError
from vae.model import VAE, VAEConfig, batch_objective, gaussian_kl, log_weights, negative_elbo, posterior_noise
from vae.params import load_params, validate
from vae.training import HISTORY_COLUMNS, OBJECTIVE_COLUMN, TrainingSettings, TrainState, evaluate_elbo, fit

K = 7
CONFIG = {"hidden_dim": 32, "latent_dim": 3}
CPU = torch.device("cpu")
PARAMS_YAML = Path(__file__).resolve().parent.parent / "params.yaml"


def model_and_images(seed: int = 0) -> tuple[VAE, torch.Tensor]:
    torch.manual_seed(seed)
    model = VAE(VAEConfig(**CONFIG))
    return model, torch.rand(5, 784, generator=torch.Generator().manual_seed(seed + 1)).pow(3)


def reference_terms(model: VAE, x: torch.Tensor, k: int, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    """log p(x|z) and log w of the k samples the objective draws from ``seed``, in float64 with torch.distributions."""
    eps = torch.randn((len(x), k, model.latent_dim), generator=torch.Generator().manual_seed(seed)).double()
    m = VAE(VAEConfig(**CONFIG)).double()
    m.load_state_dict(model.state_dict())
    with torch.no_grad():
        mu, logvar = m.encoder(x.double())
        q = Normal(mu.unsqueeze(1), (0.5 * logvar).exp().unsqueeze(1))
        z = q.loc + q.scale * eps
        p = m.decoder(z.flatten(0, 1)).reshape(len(x), k, -1)
        xk = x.double().unsqueeze(1)
        log_px_z = (xk * p.log() + (1 - xk) * (1 - p).log()).sum(-1)
        return log_px_z, log_px_z + Normal(0.0, 1.0).log_prob(z).sum(-1) - q.log_prob(z).sum(-1)


def reference_log_weights(model: VAE, x: torch.Tensor, k: int, seed: int) -> torch.Tensor:
    return reference_terms(model, x, k, seed)[1]


def objective(model: VAE, x: torch.Tensor, name: str, k: int, seed: int = 3) -> torch.Tensor:
    with torch.no_grad():
        return batch_objective(model, x, name, k, torch.Generator().manual_seed(seed)).minimized


def test_iwae_with_one_sample_is_the_one_sample_elbo_estimate_on_the_same_noise() -> None:
    model, x = model_and_images()
    want = -reference_log_weights(model, x, 1, seed=3).sum()
    assert objective(model, x, "iwae", 1).double() == pytest.approx(float(want), rel=1e-5)
    with torch.no_grad():  # the same float32 log weight as the k-sample ELBO's (elbo at k = 1 is the analytic KL's)
        mu, logvar = model.encoder(x)
        log_w = log_weights(model, x, mu, logvar, posterior_noise(mu, torch.Generator().manual_seed(3), 1))
    assert objective(model, x, "iwae", 1) == -log_w.sum()


def test_elbo_at_one_sample_is_the_notebooks_negative_elbo_and_reports_no_objective() -> None:
    model, x = model_and_images()
    with torch.no_grad():
        step = batch_objective(model, x, "elbo", 1, torch.Generator().manual_seed(3))
        want = negative_elbo(model, x, torch.Generator().manual_seed(3))
    assert (step.minimized, step.loss, step.recon, step.kl) == (want[0], *want)
    assert len(step.reported()) == 3 and len(batch_objective(model, x, "iwae", 1).reported()) == 4


def test_iwae_with_k_samples_is_the_log_mean_exp_of_the_log_weights() -> None:
    model, x = model_and_images()
    log_w = reference_log_weights(model, x, K, seed=3)
    want = -(torch.logsumexp(log_w, 1) - math.log(K)).sum()
    assert float(objective(model, x, "iwae", K)) == pytest.approx(float(want), rel=1e-5)


def test_elbo_with_k_samples_is_the_mean_of_their_one_sample_estimates() -> None:
    model, x = model_and_images()
    want = -reference_log_weights(model, x, K, seed=3).mean(1).sum()
    assert float(objective(model, x, "elbo", K)) == pytest.approx(float(want), rel=1e-5)


def test_the_iwae_bound_is_never_below_the_elbo_estimate_of_the_same_samples() -> None:
    for seed in range(5):
        model, x = model_and_images(seed)
        assert objective(model, x, "iwae", K, seed) <= objective(model, x, "elbo", K, seed)  # losses: -bound


def test_the_reported_terms_are_the_one_sample_elbo_of_the_first_sample() -> None:
    model, x = model_and_images()
    with torch.no_grad():
        step = batch_objective(model, x, "iwae", K, torch.Generator().manual_seed(3))
        loss, recon, kl = step.loss, step.recon, step.kl
        mu, logvar = model.encoder(x)
    assert float(kl) == pytest.approx(float(gaussian_kl(mu, logvar).sum()))
    assert float(recon) == pytest.approx(float(-reference_terms(model, x, K, 3)[0][:, 0].sum()), rel=1e-5)
    assert float(loss) == pytest.approx(float(recon + kl))


@pytest.mark.parametrize("name", ["elbo", "iwae"])
def test_gradients_reach_the_encoder_and_the_decoder(name: str) -> None:
    model, x = model_and_images()
    batch_objective(model, x, name, K, torch.Generator().manual_seed(0)).minimized.backward()
    for part in (model.encoder, model.decoder):
        assert all(p.grad is not None and p.grad.abs().sum() > 0 for p in part.parameters())


def reference_fit(x: torch.Tensor, val_x: torch.Tensor, settings: TrainingSettings
                  ) -> tuple[VAE, list[dict[str, float]]]:
    """The notebook's training step written out, with the pipeline's generators: what ``fit`` must equal bit for bit.

    The global seed before the model is built (initialization), a CPU generator seeded with ``seed`` for the
    batch order and one seeded with ``seed + 1`` for the noise; Adam with the fused kernel; the one-sample
    negative ELBO (``negative_elbo``), or a log-weight objective whose per-image mean is recorded too.
    Constant learning rate, KL weight 1.
    """
    torch.manual_seed(settings.seed)
    model = VAE(VAEConfig(**CONFIG))
    optimizer = torch.optim.Adam(model.parameters(), lr=settings.lr, fused=True)
    order_gen = torch.Generator().manual_seed(settings.seed)
    noise_gen = torch.Generator().manual_seed(settings.seed + 1)
    history = []
    for epoch in range(1, settings.num_epochs + 1):
        model.train()
        order = torch.randperm(len(x), generator=order_gen)
        batches = []
        for start in range(0, len(x), settings.batch_size):
            xb = x[order[start:start + settings.batch_size]]
            if settings.uses_log_weights(model):
                step = batch_objective(model, xb, settings.objective, settings.train_samples, noise_gen)
                objective, terms = step.minimized, [step.loss, step.recon, step.kl, step.minimized]
            else:
                objective, *_ = terms = negative_elbo(model, xb, noise_gen)
            optimizer.zero_grad()
            objective.backward()
            optimizer.step()
            batches.append(torch.stack(terms).detach())
        train = (torch.stack(batches).sum(0) / len(x)).tolist()
        val = evaluate_elbo(model, val_x, settings.seed)
        history.append({"epoch": epoch, "train_loss": train[0], "train_recon": train[1], "train_kl": train[2],
                        **{f"val_{term}": value for term, value in val.items()},
                        **({OBJECTIVE_COLUMN: train[3]} if settings.uses_log_weights(model) else {})})
    return model, history


def test_the_default_objective_trains_exactly_as_the_notebooks_step() -> None:
    """elbo with one sample takes the notebook's path (analytic KL): the same weights and losses, bit for bit."""
    settings = TrainingSettings(batch_size=16, num_epochs=2, seed=3)  # 70 images: a last batch of 6
    notebook = VAE(VAEConfig(**CONFIG))
    assert not settings.uses_log_weights(notebook)
    assert TrainingSettings(train_samples=2).uses_log_weights(notebook)
    assert TrainingSettings(objective="iwae").uses_log_weights(notebook)
    assert settings.uses_log_weights(VAE(VAEConfig(**CONFIG, prior="vampprior", pseudo_inputs=3)))
    x, val_x = (torch.rand(n, 784, generator=torch.Generator().manual_seed(n)).pow(3) for n in (70, 20))
    state = fit(TrainState.new(VAEConfig(**CONFIG), settings, CPU), x, val_x, settings, progress=False)
    model, history = reference_fit(x, val_x, settings)
    assert state.history == history and tuple(history[0]) == HISTORY_COLUMNS
    weights, reference = state.model.state_dict(), model.state_dict()
    assert all(torch.equal(weights[name], reference[name]) for name in reference)


def test_a_log_weight_run_records_its_objective_and_resumes_from_the_table() -> None:
    """The objective column is the per-image mean of the loss the steps minimized, and it survives a resume."""
    settings = TrainingSettings(batch_size=2, num_epochs=2, seed=0, objective="iwae", train_samples=3)
    x = model_and_images()[1]
    state = fit(TrainState.new(VAEConfig(**CONFIG), settings, CPU), x, x, settings, progress=False)
    assert state.history == reference_fit(x, x, settings)[1]
    assert state.history_columns() == (*HISTORY_COLUMNS, OBJECTIVE_COLUMN)
    saved = state.to_dict("key")
    other = TrainState.new(VAEConfig(**CONFIG), TrainingSettings(seed=1), CPU)
    other.load_dict(saved)
    assert other.history == state.history


@pytest.mark.parametrize("changes, message", [
    ({"train_samples": 0}, "train_samples = 0 is not an integer > 0"),
    ({"objective": "iwae", "beta": 4.0}, "beta = 4.0 weights the ELBO's KL term, and objective: iwae has none"),
    ({"objective": "iwae", "kl_warmup_epochs": 5}, "kl_warmup_epochs = 5 warms up the ELBO's KL term"),
    ({"objective": "vimco"}, "objective = 'vimco' is not one of elbo, iwae"),
])
def test_bad_objective_params_fail_in_one_line(changes: dict, message: str) -> None:
    raw = asdict(load_params(PARAMS_YAML)) | changes
    with pytest.raises(UserError) as err:
        validate(raw)
    assert message in str(err.value) and "\n" not in str(err.value)
