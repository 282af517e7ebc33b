"""``numerics: portable``: the same bytes on every x86-64 CPU with AVX2, the thread count in the DVC key.

The golden test's constant was computed on an AMD EPYC and must hold on every x86-64 CPU with AVX2:
the products run on OpenBLAS's Haswell kernels, chosen by the pinned core type and not by the vendor
(docs/performance.md, "Same bytes on every machine", says what was checked on which CPUs).
tests/conftest.py pins portable mode before torch loads, as ``stages/__init__.py`` does.
"""

import functools
import hashlib
import os
import platform
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F
from threadpoolctl import threadpool_info
from torch.utils._python_dispatch import TorchDispatchMode

from vae import numerics, openblas
from vae.classifier import Classifier
from vae.errors import UserError
from vae.model import VAE, VAEConfig, negative_elbo
from vae.params import Params, validate
from vae.runtime.dvc_yaml import read_stage, stage_names
from vae.runtime.machine import environment
from vae.training import TrainingSettings, TrainState, fit

REPO = Path(__file__).resolve().parent.parent
# md5 of the weights after one epoch of the default model on GOLDEN_IMAGES synthetic images, 1 thread.
GOLDEN_MD5 = "bcd1d06c777d287a84a9f75cf3b44e45"  # torch 2.14.1 (requirements.txt)
GOLDEN_IMAGES = 2_000


def default_params(**changes: object) -> Params:
    import yaml

    return validate({**yaml.safe_load((REPO / "params.yaml").read_text()), **changes})


def weights_md5(model: torch.nn.Module) -> str:
    digest = hashlib.md5()
    for name, tensor in model.state_dict().items():
        digest.update(name.encode() + tensor.detach().contiguous().numpy().tobytes())
    return digest.hexdigest()


def golden_images() -> torch.Tensor:
    """GOLDEN_IMAGES synthetic flat images, products of uniforms: exact IEEE arithmetic, the same bytes on every CPU."""
    images = torch.Generator().manual_seed(0)
    return torch.rand(GOLDEN_IMAGES, 784, generator=images) * torch.rand(GOLDEN_IMAGES, 784, generator=images)


@functools.cache
def train_golden_model(threads: int) -> str:
    """md5 of one epoch of the default model (params.yaml's sizes and seed) on ``golden_images``, portable mode."""
    params, x = default_params(), golden_images()
    settings = TrainingSettings(num_epochs=1, batch_size=params.batch_size, lr=params.lr, seed=params.seed)
    with numerics.torch_settings_kept():
        numerics.configure_torch("portable", threads)
        state = TrainState.new(VAEConfig.from_params(params), settings, torch.device("cpu"))
        fit(state, x, x[:500], settings, progress=False)
    return weights_md5(state.model)


@pytest.mark.skipif(platform.machine() not in ("x86_64", "AMD64")
                    or f"torch=={torch.__version__.split('+')[0]}" not in (REPO / "requirements.txt").read_text(),
                    reason="the golden bytes are those of requirements.txt's torch on an x86-64 CPU")
def test_portable_mode_trains_the_golden_bytes() -> None:
    """The same weights on every x86-64 CPU with AVX2. If this fails on yours, compare
    `python -c "import vae.numerics as n; import torch; print(n.report('portable'))"` with the
    environment.json of docs/results (MKL must say 'compatible', ATen 'AVX2', OpenBLAS 'Haswell'), and the torch
    and numpy versions with requirements.txt: another torch, MKL or OpenBLAS release changes the bytes too."""
    report = numerics.report("portable")
    assert (report["mkl"], report["aten"]) == ("compatible", "AVX2"), report
    assert {core.split()[-1] for core in report["openblas"]} == {"Haswell"}, report
    assert train_golden_model(1) == GOLDEN_MD5


def test_pin_sets_the_libraries_paths_and_refuses_to_come_too_late(monkeypatch: pytest.MonkeyPatch) -> None:
    for key, value in numerics.PORTABLE_ENVIRONMENT.items():
        assert os.environ[key] == value  # conftest pinned portable before torch loaded
    numerics.pin("portable")  # already in force: nothing to change, so not too late
    with pytest.raises(RuntimeError, match="numerics: native must be pinned before torch is imported"):
        numerics.pin("native")
    monkeypatch.setenv("MKL_CBWR", "AUTO")
    with pytest.raises(RuntimeError, match="numerics: portable must be pinned before torch is imported"):
        numerics.pin("portable")


def test_native_removes_the_portable_pins_a_parent_passed_on(monkeypatch: pytest.MonkeyPatch) -> None:
    """A native stage started from a portable process (a test run, a pinned shell) must not inherit
    the portable code paths; a variable the user set to another value is theirs and stays."""
    monkeypatch.setattr(numerics, "_LIBRARIES", ())  # as in a fresh process, before torch loads
    monkeypatch.setenv("MKL_CBWR", "AUTO,STRICT")
    numerics.pin("native")
    assert os.environ["MKL_CBWR"] == "AUTO,STRICT"
    assert not set(numerics.PORTABLE_ENVIRONMENT) - {"MKL_CBWR"} & set(os.environ)
    numerics.pin("portable")
    assert all(os.environ[key] == value for key, value in numerics.PORTABLE_ENVIRONMENT.items())


def test_environment_record_says_which_mode_ran_and_the_code_paths() -> None:
    with numerics.torch_settings_kept():
        numerics.configure_torch("portable", 2)
        env = environment(torch.device("cpu"), "portable", 2)
    assert env["numerics"] == "portable" and env["mkl"] == "compatible" and env["aten"] == "AVX2"
    assert env["threads"] == 2 and isinstance(env["openblas"], list)  # the param's, though PyTorch runs on one
    assert env["products"].startswith("numpy's OpenBLAS ") and "Haswell" in env["products"], env


class OpsCalled(TorchDispatchMode):
    """Records the operators that run below autograd (forward and backward)."""

    def __init__(self) -> None:
        super().__init__()
        self.ops: set[str] = set()

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):  # noqa: ANN001, ANN204 (PyTorch's protocol)
        self.ops.add(str(func.overloadpacket))
        return func(*args, **(kwargs or {}))


MKL_PRODUCTS = {"aten.mm", "aten.addmm", "aten.bmm", "aten.baddbmm", "aten.convolution",
                "aten.convolution_backward", "aten.mv", "aten.dot"}


def vae_loss(model: torch.nn.Module, x: torch.Tensor) -> torch.Tensor:
    return negative_elbo(model, x, torch.Generator().manual_seed(0))[0]


def classifier_loss(model: torch.nn.Module, x: torch.Tensor) -> torch.Tensor:
    return F.cross_entropy(model(x), torch.arange(len(x)) % 10)


@pytest.mark.parametrize(("make", "loss"), [
    (lambda: VAE(VAEConfig(hidden_dim=64)), vae_loss),
    (lambda: VAE(VAEConfig(architecture="conv", latent_dim=3)), vae_loss),
    (lambda: VAE(VAEConfig(architecture="conv", latent_dim=3, channels=3, image_size=64)), vae_loss),
    (lambda: VAE(VAEConfig(hidden_dim=32, prior="vampprior", pseudo_inputs=7, stochastic_layers=2,
                           activation="gated")), vae_loss),
    (Classifier, classifier_loss),
], ids=["mlp", "conv", "conv-rgb-64", "vampprior-hvae-gated", "classifier"])
def test_portable_mode_multiplies_on_openblas_what_native_multiplies_on_mkl(make, loss) -> None:  # noqa: ANN001
    """Every product of a step (forward and both gradients) runs on ``vae::linear`` in portable mode and on
    PyTorch's in native mode, with the same loss and gradients up to rounding, and the same layers."""
    torch.manual_seed(0)
    model = make()
    x = torch.rand(6, model.config.input_dim if isinstance(model, VAE) else 784)
    keys = list(model.state_dict())
    runs = {}
    with numerics.torch_settings_kept():
        for mode in numerics.MODES:
            numerics.configure_torch(mode, 1)
            model.zero_grad()
            with OpsCalled() as called:
                value = loss(model, x)
                value.backward()
            runs[mode] = called.ops, value.detach(), [p.grad.clone() for p in model.parameters()]
    (portable_ops, portable_loss, portable_grads), (native_ops, native_loss, native_grads) = runs.values()
    assert "vae.linear" in portable_ops and not portable_ops & MKL_PRODUCTS, portable_ops & MKL_PRODUCTS
    assert "vae.linear" not in native_ops and native_ops & MKL_PRODUCTS
    torch.testing.assert_close(portable_loss, native_loss, rtol=1e-5, atol=1e-3)
    torch.testing.assert_close(portable_grads, native_grads, rtol=1e-4, atol=1e-4)
    assert list(model.state_dict()) == keys


def test_the_openblas_product_is_a_custom_operator_with_its_gradients() -> None:
    """torch.library.opcheck (schema, fake tensors, the registered autograd formula) on a transposed and a
    contiguous operand, which reach BLAS as a transpose flag; values and gradients against PyTorch's."""
    torch.manual_seed(0)
    torch.library.opcheck(openblas.linear, (torch.randn(7, 5).t().requires_grad_(), torch.randn(3, 7).requires_grad_()))
    for x, weight in ((torch.randn(5, 7), torch.randn(3, 7)), (torch.randn(7, 5).t(), torch.randn(7, 3).t())):
        x, weight = x.requires_grad_(), weight.requires_grad_()
        torch.testing.assert_close(openblas.linear(x, weight), x @ weight.T)
        grads = torch.autograd.grad(openblas.linear(x, weight).square().sum(), (x, weight))
        torch.testing.assert_close(grads, torch.autograd.grad((x @ weight.T).square().sum(), (x, weight)))


def openblas_threads() -> set[int]:
    return {pool["num_threads"] for pool in threadpool_info() if pool.get("internal_api") == "openblas"}


def test_configure_torch_enters_the_portable_products_once_and_native_leaves_them() -> None:
    """Portable: the products on OpenBLAS with ``threads`` threads, PyTorch's own kernels on one; native: PyTorch's."""
    x, weight = torch.rand(4, 3), torch.rand(2, 3)
    with numerics.torch_settings_kept():
        numerics.configure_torch("portable", 1)
        numerics.configure_torch("portable", 2)
        assert len(numerics._products) == 1 and numerics.report("portable")["onednn"] == "off"
        assert torch.get_num_threads() == 1 and openblas_threads() == {2}
        with OpsCalled() as called:
            F.linear(x, weight)
        assert "vae.linear" in called.ops and not called.ops & MKL_PRODUCTS
        numerics.configure_torch("native", 2)
        assert torch.get_num_threads() == 2
        with OpsCalled() as called:
            F.linear(x, weight)
        assert "vae.linear" not in called.ops and not numerics._products


@pytest.mark.parametrize(("changes", "message"), [
    ({"numerics": "fast"}, "params.yaml: numerics = 'fast' is not one of portable, native; fix it in params.yaml"),
    ({"threads": 0}, "params.yaml: threads = 0 is not an integer > 0 (the threads of every stage that computes); "
                     "fix it in params.yaml"),
    ({"precision": "bf16-mixed"}, "params.yaml: precision = 'bf16-mixed' multiplies on each CPU's own bfloat16 "
                                  "units, whose bytes are per machine; set numerics: native"),
])
def test_bad_numerics_are_refused_in_one_line(changes: dict[str, object], message: str) -> None:
    with pytest.raises(UserError) as info:
        default_params(**changes)
    assert str(info.value) == message


def test_bf16_runs_in_native_mode() -> None:
    assert default_params(precision="bf16-mixed", numerics="native").precision == "bf16-mixed"


def test_every_stage_that_computes_is_keyed_on_numerics_and_threads() -> None:
    for stage in stage_names(REPO / "dvc.yaml"):
        if stage != "check-params":  # it reads all of params.yaml, its dep
            assert {"numerics", "threads"} <= set(read_stage(stage, REPO / "dvc.yaml").params), stage


def train_golden_classifier(threads: int) -> str:
    """md5 of the classifier stage's CNN after one epoch on 1,280 of ``golden_images``, portable mode."""
    from vae.classifier import train_classifier

    params = default_params()
    with numerics.torch_settings_kept():
        numerics.configure_torch("portable", threads)
        cnn = train_classifier(golden_images()[:1280], torch.arange(1280) % 10, 1, params.classifier_batch_size,
                               params.classifier_lr, params.data_seed, progress=False)
    return weights_md5(cnn)


def test_the_thread_count_changes_the_train_and_classifier_stages_weights() -> None:
    """Which stages' bytes depend on the thread count: train's and classifier's weights differ between
    1 and 2 threads (OpenBLAS splits a product's work by its thread count),
    so `threads` stays a param of every stage that computes, and DVC and its run-cache never hand one
    count's outputs to another. The stages after train only evaluate, through the same products;
    they keep the key too. If this fails, a stage no longer depends on it: it may leave its keys."""
    assert train_golden_model(1) == GOLDEN_MD5
    assert train_golden_model(1) != train_golden_model(2), \
        "the train stage's weights no longer depend on the thread count"
    assert train_golden_classifier(1) != train_golden_classifier(2), \
        "the classifier stage's weights no longer depend on the thread count"
