"""The ``precision`` param: bf16-mixed trains the forward pass under autocast to bfloat16, evaluation stays float32.

Nothing here needs a CPU with native bfloat16 (AVX512-BF16, AMX): without it autocast emulates
bfloat16, slower but with the same rounding, so every test runs on any machine.
"""

import contextlib
import copy
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F
import yaml

import vae.training
from vae.errors import UserError
from vae.metrics import evaluate, iwae_bound
from vae.model import VAE, VAEConfig, batch_objective, gaussian_kl, negative_elbo
from vae.params import PRECISIONS, validate
from vae.runtime import machine
from vae.training import TrainingSettings, TrainState, evaluate_elbo, forward_precision, train_epoch

CPU = torch.device("cpu")
CONFIG = {"hidden_dim": 32, "latent_dim": 3}
PARAMS_YAML = Path(__file__).resolve().parent.parent / "params.yaml"


def images(n: int, seed: int) -> torch.Tensor:
    """Random grey pixels, mostly near 0 like MNIST's."""
    return torch.rand(n, 784, generator=torch.Generator().manual_seed(seed)).pow(3)


def trained(precision: str) -> tuple[TrainState, dict[str, float]]:
    """A small model after one epoch of 4 batches in ``precision``, and the epoch's losses."""
    settings = TrainingSettings(batch_size=32, seed=0, precision=precision)
    state = TrainState.new(VAEConfig(**CONFIG), settings, CPU)
    return state, train_epoch(state, images(128, seed=1), 1, settings, progress=False)


@pytest.mark.parametrize("value", ["bf16", "16-mixed", "bf16-true"])
def test_a_bad_precision_is_refused_in_one_line_naming_the_allowed_values(value: str) -> None:
    raw = yaml.safe_load(PARAMS_YAML.read_text()) | {"precision": value}
    with pytest.raises(UserError) as info:
        validate(raw)
    assert str(info.value) == (f"params.yaml: precision = {value!r} is not one of 32-true, bf16-mixed; "
                               "fix it in params.yaml")


def test_the_settings_carry_the_precision() -> None:
    raw = yaml.safe_load(PARAMS_YAML.read_text())
    assert TrainingSettings.from_params(validate(raw)).precision == "32-true" == TrainingSettings().precision
    for precision in PRECISIONS:
        numerics = "native" if precision == "bf16-mixed" else "portable"  # bfloat16 bytes are per machine
        assert TrainingSettings.from_params(validate(raw | {"precision": precision, "numerics": numerics})
                                            ).precision == precision


def test_32_true_runs_without_autocast_and_bf16_mixed_trains_in_float32_state(monkeypatch) -> None:
    """32-true is bit for bit a run without any autocast context, and so is bf16-mixed without its autocast;
    with it, bf16-mixed differs, its losses are finite and near float32's, and the weights and Adam's moments
    it updates stay float32."""
    fp32, fp32_losses = trained("32-true")
    bf16, bf16_losses = trained("bf16-mixed")
    monkeypatch.setattr(vae.training, "forward_precision", lambda precision, device: contextlib.nullcontext())
    fp32_weights, bf16_weights = fp32.model.state_dict(), bf16.model.state_dict()
    for precision in PRECISIONS:
        plain, plain_losses = trained(precision)
        assert plain_losses == fp32_losses, precision
        assert all(torch.equal(w, fp32_weights[k]) for k, w in plain.model.state_dict().items()), precision
    assert bf16_losses != fp32_losses and not torch.equal(bf16_weights["decoder.net.0.weight"],
                                                          fp32_weights["decoder.net.0.weight"])
    assert bf16_losses == pytest.approx(fp32_losses, rel=1e-2)  # finite, and the same model learning
    assert {p.dtype for p in bf16.model.parameters()} == {torch.float32}
    moments = [t for s in bf16.optimizer.state.values() for name, t in s.items() if name.startswith("exp_avg")]
    assert len(moments) == 2 * len(list(bf16.model.parameters())) and {t.dtype for t in moments} == {torch.float32}


@pytest.mark.parametrize("architecture", ["mlp", "conv"])
def test_the_networks_return_float32_under_autocast(architecture: str) -> None:
    torch.manual_seed(0)
    model, x = VAE(VAEConfig(**CONFIG, architecture=architecture)), images(4, seed=1)
    with forward_precision("bf16-mixed", CPU):
        assert model.encoder.net(x).dtype == torch.bfloat16  # the layers inside do run in bfloat16
        mu, logvar = model.encoder(x)
        outputs = (mu, logvar, model.decoder.logits(mu), model.decoder(mu), *negative_elbo(model, x),
                   *batch_objective(model, x, "iwae", 3).reported())
    assert [t.dtype for t in outputs] == [torch.float32] * len(outputs)


def float64_elbo(model: VAE, x: torch.Tensor, seed: int) -> dict[str, float]:
    """``evaluate_elbo``'s numbers (one batch, the same float32 noise) computed in float64, written out by hand."""
    exact = copy.deepcopy(model).double()
    eps = torch.randn((len(x), model.latent_dim), generator=torch.Generator().manual_seed(seed)).double()
    with torch.no_grad():
        mu, logvar = exact.encoder(x.double())
        logits = exact.decoder.logits(mu + eps * (0.5 * logvar).exp())
        recon = -(x.double() * F.logsigmoid(logits) + (1 - x.double()) * F.logsigmoid(-logits)).sum()
        kl = gaussian_kl(mu, logvar).sum()
    return {"loss": float(recon + kl) / len(x), "recon": float(recon) / len(x), "kl": float(kl) / len(x)}


def test_evaluation_is_float32_whatever_the_training_precision() -> None:
    """A model trained in bf16-mixed is evaluated in float32: its ELBO agrees with a float64 computation to float32
    precision (under autocast it would not), and every metric equals that of the same weights in a new model."""
    model = trained("bf16-mixed")[0].model
    x, y = images(50, seed=2), torch.arange(50) % 10
    want = float64_elbo(model, x, seed=5)
    assert evaluate_elbo(model, x, seed=5) == pytest.approx(want, rel=1e-5)
    with forward_precision("bf16-mixed", CPU):  # the check can fail: the same numbers under autocast miss
        assert evaluate_elbo(model, x, seed=5) != pytest.approx(want, rel=1e-5)
    assert iwae_bound(model, x, 3, torch.Generator().manual_seed(0), progress=False).dtype == torch.float32
    fresh = VAE(model.config)
    fresh.load_state_dict(model.state_dict())
    metrics, table = evaluate(model, x, y, x, y, k=3, seed=5, progress=False)
    fresh_metrics, fresh_table = evaluate(fresh, x, y, x, y, k=3, seed=5, progress=False)
    assert metrics == fresh_metrics and table.equals(fresh_table)


def test_missing_bf16_feature_names_what_a_cpu_lacks(monkeypatch) -> None:
    assert machine.missing_bf16_feature() in (None, "AVX512-BF16 or AMX", "the Arm BF16 extension")
    for capability, missing in [({"architecture": "x86_64"}, "AVX512-BF16 or AMX"),
                                ({"architecture": "x86_64", "avx512_bf16": True}, None),
                                ({"architecture": "x86_64", "amx_bf16": True}, None)]:
        monkeypatch.setattr(torch._C._cpu, "_get_cpu_capability", lambda capability=capability: capability)
        assert machine.missing_bf16_feature() == missing
