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
from collections import Counter
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
    """Counts the operators that run below autograd (forward and backward)."""

    def __init__(self) -> None:
        super().__init__()
        self.ops: Counter[str] = Counter()

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):  # noqa: ANN001, ANN204 (PyTorch's protocol)
        self.ops[str(func.overloadpacket)] += 1
        return func(*args, **(kwargs or {}))


PRODUCTS = ("aten.mm", "aten.addmm")  # the operators whose CPU kernels vae.openblas replaces
OTHER_PRODUCTS = {"aten.bmm", "aten.baddbmm", "aten.convolution", "aten.convolution_backward", "aten.mv", "aten.dot"}


@pytest.fixture
def sgemm_calls(monkeypatch: pytest.MonkeyPatch) -> list[tuple[int, ...]]:
    """The shapes (m, k, n) of each product that reaches numpy's OpenBLAS, while the test runs."""
    calls, sgemm = [], openblas.sgemm

    def recording(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
        calls.append((*a.shape, b.shape[1]))
        return sgemm(a, b)

    monkeypatch.setattr(openblas, "sgemm", recording)
    return calls


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
def test_portable_mode_multiplies_on_openblas_what_native_multiplies_on_mkl(make, loss, sgemm_calls) -> None:  # noqa: ANN001
    """Every product of a step (forward and both gradients) reaches OpenBLAS's sgemm in portable mode, and
    none natively, with the same loss and gradients up to rounding, and the same layers."""
    torch.manual_seed(0)
    model = make()
    x = torch.rand(6, model.config.input_dim if isinstance(model, VAE) else 784)
    keys = list(model.state_dict())
    runs = {}
    with numerics.torch_settings_kept():
        for mode in numerics.MODES:
            numerics.configure_torch(mode, 1)
            model.zero_grad()
            sgemm_calls.clear()
            with OpsCalled() as called:
                value = loss(model, x)
                value.backward()
            runs[mode] = called.ops, len(sgemm_calls), value.detach(), [p.grad.clone() for p in model.parameters()]
    (portable_ops, on_openblas, portable_loss, portable_grads), (native_ops, native_sgemm, native_loss,
                                                                  native_grads) = runs.values()
    assert on_openblas == sum(portable_ops[op] for op in PRODUCTS) > 0, portable_ops
    assert not portable_ops.keys() & OTHER_PRODUCTS, portable_ops.keys() & OTHER_PRODUCTS
    assert native_sgemm == 0 and native_ops.keys() & (OTHER_PRODUCTS | set(PRODUCTS))
    torch.testing.assert_close(portable_loss, native_loss, rtol=1e-5, atol=1e-3)
    torch.testing.assert_close(portable_grads, native_grads, rtol=1e-4, atol=1e-4)
    assert list(model.state_dict()) == keys


def test_the_portable_products_are_numpys_with_pytorchs_gradients() -> None:
    """Bit for bit numpy's OpenBLAS products, on a transposed and a contiguous operand (a BLAS flag);
    torch.library.opcheck (schema, fake tensors, autograd) on the replaced kernels; what sgemm does not
    take (float64, integers, alpha and beta) gives PyTorch's values, and mismatched sizes its error."""
    torch.manual_seed(0)
    x, weight, bias = torch.randn(5, 7), torch.randn(3, 7), torch.randn(3)
    with numerics.torch_settings_kept():
        numerics.configure_torch("portable", 1)
        assert torch.equal(F.linear(x, weight, bias), torch.from_numpy(x.numpy() @ weight.numpy().T + bias.numpy()))
        for a, b in ((x, weight.t()), (weight, x.t().contiguous())):
            assert torch.equal(a @ b, torch.from_numpy(a.numpy() @ b.numpy()))
            torch.library.opcheck(torch.ops.aten.mm.default, (a.clone().requires_grad_(), b.clone().requires_grad_()))
            torch.library.opcheck(torch.ops.aten.addmm.default, (torch.randn(b.shape[1]), a, b))
        a, b = x.double(), weight.t().double()
        torch.testing.assert_close(a @ b, torch.from_numpy(a.numpy() @ b.numpy()))
        torch.testing.assert_close(torch.addmm(bias, x, weight.t(), beta=0.5, alpha=2), 0.5 * bias + 2 * x @ weight.t())
        assert torch.equal(torch.ones(2, 3, dtype=torch.int64) @ torch.ones(3, 4, dtype=torch.int64),
                           torch.full((2, 4), 3))
        with pytest.raises(RuntimeError, match=r"mat1 and mat2 shapes cannot be multiplied \(5x7 and 6x3\)"):
            F.linear(x, torch.randn(3, 6), bias)


@pytest.mark.parametrize(("transposed", "images", "options"), [
    (False, (3, 4, 9, 8), {"stride": 2, "padding": 1}),
    (False, (3, 4, 9, 8), {"stride": (1, 2), "padding": (2, 0), "dilation": 2}),
    (False, (4, 9, 8), {"padding": 1}),
    (False, (3, 4, 9, 8), {"groups": 2}),
    (True, (3, 4, 9, 8), {"stride": 2, "padding": 1}),
    (True, (3, 4, 9, 8), {"stride": 2, "padding": 1, "output_padding": 1, "dilation": (1, 2)}),
    (True, (4, 9, 8), {"stride": 2}),
    (True, (3, 4, 9, 8), {"groups": 2}),
], ids=["conv", "conv-dilated", "conv-unbatched", "conv-grouped", "transposed", "transposed-output-padding",
        "transposed-unbatched", "transposed-grouped"])
def test_portable_convolutions_match_pytorchs_in_value_and_gradient(transposed: bool, images: tuple[int, ...],
                                                                    options: dict, sgemm_calls) -> None:  # noqa: ANN001
    """Convolutions as unfold (or fold) and a product on OpenBLAS, against PyTorch's in float64 (which
    sgemm leaves to PyTorch, like the grouped convolutions); a wrong channel count gets PyTorch's error."""
    torch.manual_seed(0)
    x = torch.randn(images)
    groups = options.get("groups", 1)
    weight = torch.randn(4, 6 // groups, 3, 3) if transposed else torch.randn(6, 4 // groups, 3, 3)
    bias = torch.randn(6)
    conv = F.conv_transpose2d if transposed else F.conv2d
    grads = []
    with numerics.torch_settings_kept():
        numerics.configure_torch("portable", 1)
        for dtype in (torch.float32, torch.float64):
            inputs = [t.to(dtype).requires_grad_() for t in (x, weight, bias)]
            out = conv(*inputs, **options)
            grads.append([out, *torch.autograd.grad(out.square().sum(), inputs)])
        with pytest.raises(RuntimeError, match="to have 4 channels, but got 5 channels"):
            conv(torch.randn(2, 5, 9, 8), weight, bias, **options)
    assert (len(sgemm_calls) > 0) == (groups == 1)
    torch.testing.assert_close(grads[0], [g.float() for g in grads[1]], rtol=1e-4, atol=1e-3)


def openblas_threads() -> set[int]:
    return {pool["num_threads"] for pool in threadpool_info() if pool.get("internal_api") == "openblas"}


def test_configure_torch_enters_the_portable_products_once_and_native_leaves_them(sgemm_calls) -> None:  # noqa: ANN001
    """Portable: the products on OpenBLAS with ``threads`` threads, PyTorch's own kernels on one; native: PyTorch's."""
    x, weight = torch.rand(4, 3), torch.rand(2, 3)
    with numerics.torch_settings_kept():
        numerics.configure_torch("portable", 1)
        numerics.configure_torch("portable", 2)
        assert len(numerics._products) == 1 and numerics.report("portable")["onednn"] == "off"
        assert torch.get_num_threads() == 1 and openblas_threads() == {2}
        F.linear(x, weight)
        assert sgemm_calls == [(4, 3, 2)]
        numerics.configure_torch("native", 2)
        assert torch.get_num_threads() == 2
        F.linear(x, weight)
        assert sgemm_calls == [(4, 3, 2)] and not numerics._products


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
