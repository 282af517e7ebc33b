"""params.yaml validation: every bad value is one line naming the key, the value and what is allowed."""

import dataclasses
import math
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
import torch
import yaml

from vae.errors import UserError
from vae.model import VAEConfig
from vae.params import DECLARATIONS, Device, Interval, Options, Params, load_params, resolve_device, validate

REPO_ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture
def raw() -> dict:
    """The committed params.yaml, parsed (a fresh copy per test)."""
    return yaml.safe_load((REPO_ROOT / "params.yaml").read_text())


def test_committed_params_are_valid():
    params = load_params(REPO_ROOT / "params.yaml")
    # the notebook's settings, as the default run reproduces them
    assert (params.dataset_name, params.batch_size, params.lr, params.num_epochs, params.latent_dim,
            params.hidden_dim, params.seed, params.val_fraction) == ("MNIST", 128, 0.001, 20, 2, 512, 42, 0.1)
    assert type(params.tsne_perplexity) is float  # written 30 in the file: an int, stored as the float it means


def test_ints_are_accepted_for_floats(raw):
    raw["lr"] = 1
    raw["tsne_perplexity"] = 30
    params = validate(raw)
    assert (params.lr, params.tsne_perplexity) == (1.0, 30.0)
    assert type(params.lr) is float and type(params.tsne_perplexity) is float


@pytest.mark.parametrize("key, value, allowed", [
    ("dataset_name", "CIFAR10", "one of MNIST, FashionMNIST"),
    ("dataset_name", "mnist", "one of MNIST, FashionMNIST"),
    ("dataset_name", 3, "one of MNIST, FashionMNIST"),
    ("batch_size", 0, "an integer > 0"),
    ("batch_size", -128, "an integer > 0"),
    ("batch_size", 12.5, "an integer > 0"),
    ("batch_size", "128", "an integer > 0"),
    ("num_epochs", 0, "an integer > 0"),
    ("num_epochs", -1, "an integer > 0"),
    ("latent_dim", 0, "an integer > 0"),
    ("latent_dim", -2, "an integer > 0"),
    ("hidden_dim", 0, "an integer > 0"),
    ("n_samples", 0, "an integer > 0"),
    ("n_samples", -64, "an integer > 0"),
    ("iwae_k", 0, "an integer > 0"),
    ("iwae_k", -1, "an integer > 0"),
    ("fd_images", 99, "an integer in [100, 10000] (images on each side of a Frechet distance)"),
    ("fd_images", 10001, "an integer in [100, 10000]"),
    ("lr", 0, "a finite number > 0"),
    ("lr", -0.001, "a finite number > 0"),
    ("lr", float("inf"), "a finite number > 0"),
    ("lr", float("nan"), "a finite number > 0"),
    ("lr", 10**400, "a finite number > 0"),  # too large for a float
    ("lr", "1e-3", "a finite number > 0 (YAML reads 1e-3 as text"),
    ("val_fraction", 0, "a number strictly between 0 and 1"),
    ("val_fraction", 0.0, "a number strictly between 0 and 1"),
    ("val_fraction", 1, "a number strictly between 0 and 1"),
    ("val_fraction", 1.5, "a number strictly between 0 and 1"),
    ("val_fraction", -0.1, "a number strictly between 0 and 1"),
    ("seed", -1, "an integer in [0, 2**32)"),
    ("seed", 2**32, "an integer in [0, 2**32)"),  # PyTorch would draw seed 0's numbers
    ("data_seed", 2**32 + 42, "an integer in [0, 2**32)"),
    ("train_subset", -1, "an integer >= 0"),
    ("tsne_subset", 10_001, "an integer in [2, 10000]"),
    ("tsne_subset", 1, "an integer in [2, 10000]"),
    ("tsne_perplexity", 0, "a finite number > 0"),
    ("tsne_perplexity", 10**400, "a finite number > 0"),
    ("device", "tpu", "auto, cpu, cuda, cuda:N or mps"),
    ("device", "cuda:", "auto, cpu, cuda, cuda:N or mps"),
    ("device", "cuda:x", "auto, cpu, cuda, cuda:N or mps"),
    ("device", "CPU", "auto, cpu, cuda, cuda:N or mps"),
    ("device", 0, "auto, cpu, cuda, cuda:N or mps"),
    # bools are ints in Python, but `batch_size: true` is a mistake, not 1
    ("batch_size", True, "an integer > 0"),
    ("num_epochs", False, "an integer > 0"),
    ("latent_dim", True, "an integer > 0"),
    ("seed", True, "an integer in [0, 2**32)"),
    ("train_subset", False, "an integer >= 0"),
    ("lr", True, "a finite number > 0"),
    ("val_fraction", False, "a number strictly between 0 and 1"),
    ("batch_size", None, "an integer > 0"),
    ("batch_size", [128], "an integer > 0"),
    ("likelihood", "gaussian", "one of bernoulli, binarized, continuous_bernoulli"),
    ("beta", -1, "a finite number >= 0"),
    ("kl_warmup_epochs", -1, "an integer >= 0"),
    ("architecture", "resnet", "one of mlp, conv"),
    ("hidden_layers", 0, "an integer > 0"),
    ("activation", "gelu", "one of relu, tanh"),
    ("adam_eps", 0, "a finite number > 0"),
    ("lr_schedule", "cosine", "one of constant, iwae"),
    ("output_bias_init", "zeros", "one of default, train_mean"),
    ("save_every", 0, "an integer > 0"),
    ("dataset_name", "CIFAR10", "one of MNIST, FashionMNIST, folder"),
    ("image_folder", "/home/me/photos", "a folder inside the repository, as a relative path"),
    ("image_folder", "../photos", "a folder inside the repository, as a relative path"),
    ("image_size", 4, "an integer in [8, 256]"),
    ("channels", 2, "1 or 3 (grey or RGB)"),
    ("test_fraction", 1.0, "a number strictly between 0 and 1"),
    ("undecodable", "ignore", "one of refuse, skip"),
])
def test_bad_value(raw, key, value, allowed):
    raw[key] = value
    with pytest.raises(UserError) as info:
        validate(raw)
    msg = str(info.value)
    assert "\n" not in msg
    assert msg.startswith(f"params.yaml: {key} = {value!r} is not {allowed}"), msg


@pytest.mark.parametrize("key", ["lr", "batch_size", "dataset_name", "tsne_perplexity", "device"])
def test_missing_key(raw, key):
    del raw[key]
    with pytest.raises(UserError, match=f"^params.yaml: missing key '{key}'; add it \\(.+\\)$"):
        validate(raw)


@pytest.mark.parametrize("key, hint", [
    ("latent_dims", "did you mean latent_dim?"),
    ("learning_rate", "known keys: dataset_name, batch_size"),
    ("batchsize", "did you mean batch_size?"),
    ("dataset", "did you mean dataset_name?"),
])
def test_unknown_key(raw, key, hint):
    raw[key] = 8
    with pytest.raises(UserError) as info:
        validate(raw)
    msg = str(info.value)
    assert f"unknown key {key!r}" in msg and hint in msg and "\n" not in msg


def test_unknown_key_instead_of_known_one(raw):
    raw["latent_dims"] = raw.pop("latent_dim")
    with pytest.raises(UserError, match="unknown key 'latent_dims'; did you mean latent_dim"):
        validate(raw)


@pytest.mark.parametrize("changes, error", [
    ({"architecture": "conv", "hidden_layers": 3}, "hidden_layers = 3 applies to architecture: mlp only"),
    ({"architecture": "conv", "output_bias_init": "train_mean"},
     "output_bias_init = 'train_mean' train_mean sets the MLP decoder's per-pixel output bias"),
    ({"lr_schedule_epochs": 1000}, "lr_schedule_epochs = 1000 sets the span of a learning-rate schedule; "
                                   "with lr_schedule: constant leave it at 3280"),
    ({"kl_warmup_epochs": 30}, "kl_warmup_epochs = 30 is longer than num_epochs"),
    ({"image_size": 64}, "image_size = 64 applies to dataset_name: folder only; set dataset_name: folder or leave "
                         "it at 28"),
    ({"image_folder": "photos"}, "image_folder = 'photos' applies to dataset_name: folder only"),
    ({"dataset_name": "folder", "image_size": 30, "architecture": "conv"},
     "image_size = 30 is not a multiple of 4, which architecture: conv halves 2 times; use 28 or 32"),
])
def test_combinations_that_mean_nothing_are_one_error_line(raw, changes, error):
    raw.update(changes)
    with pytest.raises(UserError) as info:
        validate(raw)
    assert str(info.value).startswith(f"params.yaml: {error}") and "\n" not in str(info.value), str(info.value)
    assert "fix it" not in str(info.value)  # the line ends with its own fix, said once


def test_the_iwae_papers_settings_are_valid(raw):
    raw.update(likelihood="binarized", hidden_dim=200, activation="tanh", latent_dim=50, adam_eps=1e-4,
               lr_schedule="iwae", lr_schedule_epochs=3280, num_epochs=3280, batch_size=20,
               output_bias_init="train_mean", iwae_k=5000)
    params = validate(raw)
    assert VAEConfig.from_params(params) == VAEConfig(hidden_dim=200, latent_dim=50, activation="tanh",
                                                      likelihood="binarized")


def test_the_vampprior_papers_hvae_is_valid(raw):
    """The VampPrior paper's two-layer model with gated layers and its prior, from params alone."""
    raw.update(likelihood="binarized", hidden_dim=300, activation="gated", latent_dim=40, prior="vampprior",
               stochastic_layers=2, lower_latent_dim=40, lr=5e-4, batch_size=100, kl_warmup_epochs=20)
    assert VAEConfig.from_params(validate(raw)).prior == "vampprior"


@pytest.mark.parametrize(("changes", "words"), [
    ({"pseudo_inputs": 10}, "pseudo_inputs = 10 counts the VampPrior's components; set prior: vampprior"),
    ({"pseudo_inputs_init": "data"}, "pseudo_inputs_init = 'data' starts the VampPrior's pseudo-inputs; set prior"),
    ({"lower_latent_dim": 8}, "lower_latent_dim = 8 sizes the lower stochastic layer, which only stochastic_layers"),
    ({"stochastic_layers": 2, "architecture": "conv", "hidden_layers": 2},
     "stochastic_layers = 2 builds MLP networks between the layers; use architecture: mlp"),
    ({"activation": "gated", "architecture": "conv"}, "activation = 'gated' makes gated dense layers"),
    ({"stochastic_layers": 3}, "stochastic_layers = 3 is not 1 or 2"),
    ({"prior": "vamp"}, "prior = 'vamp' is not one of standard, vampprior"),
    ({"prior": "vampprior", "pseudo_inputs_init": "data", "train_subset": 100},
     "pseudo_inputs = 500 start at training images but the training split has 100; lower pseudo_inputs"),
])
def test_prior_and_layer_combinations_that_mean_nothing_are_refused(raw, changes, words):
    raw.update(changes)
    with pytest.raises(UserError, match=re.escape(words)):
        validate(raw)


def test_perplexity_must_be_below_subset(raw):
    raw["tsne_subset"] = 20
    raw["tsne_perplexity"] = 30
    with pytest.raises(UserError, match="tsne_perplexity = 30 must be smaller than tsne_subset = 20"):
        validate(raw)


@pytest.mark.parametrize("raw_value", [None, [], "MNIST", 3])
def test_not_a_mapping(raw_value):
    with pytest.raises(UserError, match="expected a mapping"):
        validate(raw_value)


@pytest.mark.parametrize("edit, what", [
    (lambda t: t.replace("lr: 0.001", "lr: 1e-3"), "lr = '1e-3' is not a finite number > 0 (YAML reads 1e-3"),
    (lambda t: t.replace("batch_size: 128", "batch_size: [128"), "is not valid YAML"),
    (lambda t: "", "expected a mapping of key: value, got NoneType"),
    (lambda t: t.replace("latent_dim: 2", "latent_dims: 2"), "did you mean latent_dim"),
])
def test_load_params_from_file(tmp_path, edit, what):
    path = tmp_path / "other.yaml"
    path.write_text(edit((REPO_ROOT / "params.yaml").read_text()))
    with pytest.raises(UserError) as info:
        load_params(path)
    msg = str(info.value)
    assert msg.startswith(str(path)) and what in msg and "\n" not in msg, msg


def test_load_params_missing_file(tmp_path):
    with pytest.raises(UserError, match="not found; run the stage from the repository root"):
        load_params(tmp_path / "params.yaml")


@pytest.mark.e2e
def test_stage_with_bad_params_fails_in_one_line(tmp_path):
    """A stage run with a bad params.yaml prints one error line, exits non-zero and touches nothing.

    (One stage only: each run imports torch, which takes seconds.)
    """
    raw = yaml.safe_load((REPO_ROOT / "params.yaml").read_text())
    raw["val_fraction"] = 1.5
    (tmp_path / "params.yaml").write_text(yaml.safe_dump(raw, sort_keys=False))
    sentinels = []
    for folder in ("data/raw", "data/processed"):
        (tmp_path / folder).mkdir(parents=True)
        sentinel = tmp_path / folder / "sentinel.txt"
        sentinel.write_text("keep me\n")
        sentinels.append((sentinel, sentinel.stat().st_mtime_ns))
    env = {**os.environ, "PYTHONPATH": str(REPO_ROOT), "VAE_DATA_MIRROR": str(tmp_path / "no-mirror")}
    result = subprocess.run([sys.executable, "-m", "stages.split", "--raw", "data/raw", "--out", "data/processed"],
                            cwd=tmp_path, env=env,
                            capture_output=True, text=True, timeout=120)
    assert result.returncode != 0
    assert "Traceback" not in result.stderr
    lines = result.stderr.splitlines()
    assert len(lines) == 1, result.stderr
    expected = "error: params.yaml: val_fraction = 1.5 is not a number strictly between 0 and 1"
    assert lines[0].startswith(expected), lines[0]
    assert result.stdout == ""
    for sentinel, mtime in sentinels:
        assert sentinel.read_text() == "keep me\n" and sentinel.stat().st_mtime_ns == mtime
        assert sorted(p.name for p in sentinel.parent.iterdir()) == ["sentinel.txt"]


@pytest.mark.parametrize("name, backend, message", [
    ("cuda", "cuda", "device = 'cuda' but PyTorch sees no CUDA GPU; set device: auto or cpu"),
    ("cuda:1", "cuda", "device = 'cuda:1' but PyTorch sees no CUDA GPU; set device: auto or cpu"),
    ("mps", "mps", "device = 'mps' but PyTorch sees no Apple GPU (MPS); set device: auto or cpu"),
])
def test_a_device_that_is_absent_is_one_clear_error(monkeypatch, name, backend, message):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    monkeypatch.setattr(torch.backends.mps, "is_available", lambda: False)
    with pytest.raises(UserError) as info:
        resolve_device(name)
    assert str(info.value) == message
    assert resolve_device("auto") == torch.device("cpu")


def test_auto_picks_cuda_when_there_is_one(monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    assert resolve_device("auto") == torch.device("cuda")


@pytest.mark.parametrize(("changes", "message"), [
    ({"train_subset": 3, "latent_density_components": 3},
     "train_subset = 3 leaves fewer training images than the 5 neighbours of evaluate's kNN probe; raise "
     "train_subset to at least 5 (0: all)"),
    ({"train_subset": 8}, "latent_density_components = 10 is more than the 8 training images the mixture is fit "
                          "to; lower it, or raise train_subset to at least 10 (0: all)"),
    ({"val_fraction": 0.99995}, "val_fraction = 0.99995 leaves fewer training images than the 5 neighbours of "
                                "evaluate's kNN probe; lower val_fraction"),
    ({"train_subset": 54_001}, "train_subset = 54001 but the training split has 54000 images; set it to at most "
                               "54000, or 0 for all"),
    ({"val_fraction": 1e-5}, "val_fraction = 1e-05 holds out no image of the 60,000; raise it to at least 1.7e-05"),
])
def test_params_that_only_fail_together_are_refused_in_one_line(changes: dict[str, object], message: str) -> None:
    """Each value alone is valid; together a stage would crash (scikit-learn's n_neighbors, a mixture of more
    Gaussians than points, an empty split), so check-params refuses them before any work."""
    raw = yaml.safe_load((REPO_ROOT / "params.yaml").read_text()) | changes
    with pytest.raises(UserError) as info:
        validate(raw)
    assert str(info.value) == f"params.yaml: {message}"


def params_yaml_lines() -> dict[str, tuple[str, str]]:
    """Each key of the committed params.yaml -> (its value as written, its comment), from the file's text."""
    found = {}
    for line in (REPO_ROOT / "params.yaml").read_text().splitlines():
        if line and not line.startswith("#"):
            entry, _, comment = line.partition("#")
            key, _, value = entry.partition(":")
            found[key.strip()] = (value.strip(), comment.strip())
    return found


def test_params_yaml_says_each_declared_meaning_and_default() -> None:
    """A param is one declaration (vae.params.param): params.yaml holds its key with the declared default as the
    value and the declared meaning as the comment on its line, so neither can drift from the code."""
    lines = params_yaml_lines()
    assert list(lines) == list(DECLARATIONS), "params.yaml's keys, in order, are the declared params"
    committed = yaml.safe_load((REPO_ROOT / "params.yaml").read_text())
    for name, declared in DECLARATIONS.items():
        assert committed[name] == declared.default, f"params.yaml's {name} is not its declared default"
        assert lines[name][1] == declared.meaning, f"params.yaml's comment on {name} is not its declared meaning"


@pytest.mark.parametrize(("constraint", "allowed", "refused", "words"), [
    (Interval(int, 0), [1, 10**9], [0, -1], "an integer > 0"),
    (Interval(int, 0, closed="left", note="0: none"), [0, 5], [-1], "an integer >= 0 (0: none)"),
    (Interval(int, 0, 2**32, closed="left"), [0, 2**32 - 1], [-1, 2**32], "an integer in [0, 2**32)"),
    (Interval(int, 2, 10, closed="both"), [2, 10], [1, 11], "an integer in [2, 10]"),
    (Interval(int, 2, 10, closed="right"), [3, 10], [2, 11], "an integer in (2, 10]"),
    (Interval(float, 0), [1e-300, 5.0], [0.0, -1.0, math.inf, math.nan], "a finite number > 0"),
    (Interval(float, 0, closed="left"), [0.0, 2.5], [-1e-9, math.inf], "a finite number >= 0"),
    (Interval(float, 0, 1), [0.5, 1e-9], [0.0, 1.0, math.nan], "a number strictly between 0 and 1"),
    (Interval(float, 0.5, 1, closed="both"), [0.5, 1.0], [0.4, 1.1], "a number in [0.5, 1]"),
    (Options(str, ("mlp", "conv")), ["mlp", "conv"], ["MLP", ""], "one of mlp, conv"),
    (Options(int, (1, 2, 4)), [1, 4], [3, 0], "1, 2 or 4"),
    (Device(), ["auto", "cpu", "cuda", "cuda:0", "cuda:12", "mps"], ["cuda:", "cuda:x", "CPU", "tpu", "mps:0"],
     "auto, cpu, cuda, cuda:N or mps"),
])
def test_a_constraint_is_its_check_and_its_words(constraint, allowed, refused, words) -> None:
    """The error line's words come from the same object as the check, at each end of a range."""
    assert [constraint.allows(v) for v in allowed] == [True] * len(allowed)
    assert [constraint.allows(v) for v in refused] == [False] * len(refused)
    assert str(constraint) == words


def test_every_declaration_allows_its_default_and_has_one_line_of_meaning() -> None:
    for name, declared in DECLARATIONS.items():
        assert declared.constraint.kind is declared.kind and declared.constraint.allows(declared.default), name
        assert declared.meaning and "\n" not in declared.meaning, name
    assert Params() == validate(yaml.safe_load((REPO_ROOT / "params.yaml").read_text()))


def test_a_missing_key_says_what_is_allowed_and_its_default(raw) -> None:
    del raw["lr"]
    with pytest.raises(UserError) as info:
        validate(raw)
    assert str(info.value) == "params.yaml: missing key 'lr'; add it (a finite number > 0; the default is 0.001)"


def test_the_model_config_holds_every_model_option_of_the_params() -> None:
    """VAEConfig's fields are declared params (but the input size, which the data gives), with their defaults."""
    config = VAEConfig()
    for spec in dataclasses.fields(VAEConfig):
        if spec.name != "input_dim":
            assert getattr(config, spec.name) == DECLARATIONS[spec.name].default, spec.name
    assert VAEConfig.from_params(Params()) == config


def test_a_folder_dataset_is_valid_with_its_params_and_counted_later(raw):
    """A folder's image count is unknown here: the split stage counts (tests/test_folder.py)."""
    raw.update(dataset_name="folder", image_folder="data/photos", image_size=64, channels=3, test_fraction=0.2,
               undecodable="skip", train_subset=100_000, latent_density_components=50_000)
    params = validate(raw)
    assert (params.image_folder, params.image_size, params.channels) == ("data/photos", 64, 3)
