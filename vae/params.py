"""params.yaml: its schema, validation of every key before any stage does work, and the device.

Every hyperparameter is a top-level key so that ``dvc exp run -S latent_dim=8``
works as written (DVC maps ``-S`` keys to dotted paths from the file's root).
"""

import difflib
import math
from collections.abc import Callable
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any

import torch
import yaml

from vae.data.datasets import DATASETS
from vae.errors import UserError
from vae.numerics import MODES

TRAIN_SET_SIZE, TEST_SET_SIZE = 60_000, 10_000  # both datasets: 60,000 training and 10,000 test images
KNN_NEIGHBORS = 5  # neighbours of evaluate's kNN probe of the latent codes: it needs as many training images

# The vocabulary of the params that choose between implementations. It lives here, and the
# modules that implement the choices (vae.model, vae.likelihoods, vae.training) import it, so
# validating params.yaml never loads the model's code.
OBJECTIVES = ("elbo", "iwae")  # the VAE's one-sample-per-term ELBO, or Burda et al.'s k-sample bound
ARCHITECTURES = ("mlp", "conv")
ACTIVATION_NAMES = ("relu", "tanh", "gated")  # gated: the VampPrior paper's gated dense layers (MLP only)
PRIORS = ("standard", "vampprior")  # N(0, I), or Tomczak & Welling's mixture of posteriors at pseudo-inputs
PSEUDO_INPUT_INITS = ("random", "data")  # the pseudo-inputs start near 0.05, or at the first training images
LIKELIHOOD_NAMES = ("bernoulli", "binarized", "continuous_bernoulli", "discretized_logistic")
LR_SCHEDULES = ("constant", "iwae")
PRECISIONS = ("32-true", "bf16-mixed")  # PyTorch Lightning's names for the training arithmetic
IWAE_STAGES = 8  # Burda et al. (2016): stage i = 0..7 lasts 3^i epochs at lr * 10^(-i/7)
IWAE_EPOCHS = (3**IWAE_STAGES - 1) // 2  # 3280
# The model options' defaults. Options at these values are left out of a model file's config, so
# that the notebook's model files (and ours from before these options) load, and are written byte
# for byte as before.
MODEL_DEFAULTS = {"hidden_layers": 2, "activation": "relu", "architecture": "mlp", "likelihood": "bernoulli",
                  "prior": "standard", "pseudo_inputs": 500, "stochastic_layers": 1, "lower_latent_dim": 40}


@dataclass(frozen=True)
class Params:
    """The validated contents of params.yaml (see that file for what each key means)."""

    dataset_name: str
    batch_size: int
    lr: float
    num_epochs: int
    latent_dim: int
    hidden_dim: int
    seed: int
    data_seed: int
    val_fraction: float
    train_subset: int
    device: str
    n_samples: int
    latent_density_components: int
    iwae_k: int
    fd_images: int
    tsne_subset: int
    tsne_perplexity: float
    classifier_epochs: int
    classifier_batch_size: int
    classifier_lr: float
    likelihood: str
    beta: float
    kl_warmup_epochs: int
    architecture: str
    hidden_layers: int
    activation: str
    adam_eps: float
    lr_schedule: str
    lr_schedule_epochs: int
    output_bias_init: str
    save_every: int
    objective: str
    train_samples: int
    precision: str
    numerics: str
    threads: int
    prior: str
    pseudo_inputs: int
    pseudo_inputs_init: str
    stochastic_layers: int
    lower_latent_dim: int

    def model_config(self) -> dict[str, Any]:
        """The keyword arguments of ``vae.model.VAE`` that these params choose."""
        return {"hidden_dim": self.hidden_dim, "latent_dim": self.latent_dim,
                **{key: getattr(self, key) for key in MODEL_DEFAULTS}}


def _positive(value: float) -> bool:
    return value > 0


def _one_of(*allowed: str) -> tuple[type, Callable[[Any], bool], str]:
    return str, lambda v: v in allowed, f"one of {', '.join(allowed)}"


def _device(value: str) -> bool:
    if value in ("auto", "cpu", "cuda", "mps"):
        return True
    prefix, _, index = value.partition(":")
    return prefix == "cuda" and index.isdigit()


# key -> (type, check, what is allowed)
# PyTorch's CPU generator keeps a seed's low 32 bits: 2**32 would repeat seed 0's draws.
_SEED: tuple[type, Callable[[Any], bool], str] = (int, lambda v: 0 <= v < 2**32, "an integer in [0, 2**32)")
_RULES: dict[str, tuple[type, Callable[[Any], bool], str]] = {
    "dataset_name": (str, lambda v: v in DATASETS, f"one of {', '.join(DATASETS)}"),
    "batch_size": (int, _positive, "an integer > 0"),
    "lr": (float, lambda v: v > 0 and math.isfinite(v), "a finite number > 0"),
    "num_epochs": (int, _positive, "an integer > 0"),
    "latent_dim": (int, _positive, "an integer > 0"),
    "hidden_dim": (int, _positive, "an integer > 0"),
    "seed": _SEED,
    "data_seed": _SEED,
    "val_fraction": (float, lambda v: 0 < v < 1, "a number strictly between 0 and 1"),
    "train_subset": (int, lambda v: v >= 0, "an integer >= 0 (0 keeps the whole training split)"),
    "device": (str, _device, "auto, cpu, cuda, cuda:N or mps"),
    "n_samples": (int, _positive, "an integer > 0"),
    "latent_density_components": (int, _positive, "an integer > 0"),
    "iwae_k": (int, _positive, "an integer > 0"),
    "fd_images": (int, lambda v: 100 <= v <= TEST_SET_SIZE,
                  f"an integer in [100, {TEST_SET_SIZE}] (images on each side of a Frechet distance)"),
    "tsne_subset": (int, lambda v: 2 <= v <= TEST_SET_SIZE,
                    f"an integer in [2, {TEST_SET_SIZE}] (t-SNE places at least 2 points; the test set has "
                    f"{TEST_SET_SIZE})"),
    "tsne_perplexity": (float, lambda v: v > 0 and math.isfinite(v), "a finite number > 0"),
    "classifier_epochs": (int, _positive, "an integer > 0"),
    "classifier_batch_size": (int, _positive, "an integer > 0"),
    "classifier_lr": (float, lambda v: v > 0 and math.isfinite(v), "a finite number > 0"),
    "likelihood": _one_of(*LIKELIHOOD_NAMES),
    "beta": (float, lambda v: v >= 0 and math.isfinite(v), "a finite number >= 0"),
    "kl_warmup_epochs": (int, lambda v: v >= 0, "an integer >= 0 (0: no warm-up)"),
    "architecture": _one_of(*ARCHITECTURES),
    "hidden_layers": (int, _positive, "an integer > 0"),
    "activation": _one_of(*ACTIVATION_NAMES),
    "adam_eps": (float, lambda v: v > 0 and math.isfinite(v), "a finite number > 0"),
    "lr_schedule": _one_of(*LR_SCHEDULES),
    "lr_schedule_epochs": (int, _positive, "an integer > 0"),
    "output_bias_init": _one_of("default", "train_mean"),
    "save_every": (int, _positive, "an integer > 0"),
    "objective": _one_of(*OBJECTIVES),
    "train_samples": (int, _positive, "an integer > 0 (latent samples per image in each training step)"),
    "precision": _one_of(*PRECISIONS),
    "numerics": _one_of(*MODES),
    "threads": (int, _positive, "an integer > 0 (the threads of every stage that computes)"),
    "prior": _one_of(*PRIORS),
    "pseudo_inputs": (int, _positive, "an integer > 0 (the VampPrior's components)"),
    "pseudo_inputs_init": _one_of(*PSEUDO_INPUT_INITS),
    "stochastic_layers": (int, lambda v: v in (1, 2), "1 or 2"),
    "lower_latent_dim": (int, _positive, "an integer > 0 (the lower stochastic layer's size)"),
}
# Combinations that mean nothing: (key, its value is not this default, unless ..., why)
_ONLY_WITH: list[tuple[str, Any, Callable[[dict[str, Any]], bool], str]] = [
    ("hidden_layers", MODEL_DEFAULTS["hidden_layers"], lambda v: v["architecture"] == "mlp",
     f"applies to architecture: mlp only; leave it at {MODEL_DEFAULTS['hidden_layers']} or use architecture: mlp"),
    ("output_bias_init", "default", lambda v: v["architecture"] == "mlp",
     "train_mean sets the MLP decoder's per-pixel output bias; use it with architecture: mlp"),
    ("lr_schedule_epochs", IWAE_EPOCHS, lambda v: v["lr_schedule"] != "constant",
     "sets the span of a learning-rate schedule; with lr_schedule: constant leave it at "
     f"{IWAE_EPOCHS}"),
    ("kl_warmup_epochs", 0, lambda v: v["kl_warmup_epochs"] <= v["num_epochs"],
     "is longer than num_epochs, so the KL weight would never reach beta; lower it"),
    ("beta", 1.0, lambda v: v["objective"] == "elbo",
     "weights the ELBO's KL term, and objective: iwae has none (the bound weighs whole samples); use beta: 1.0"),
    ("kl_warmup_epochs", 0, lambda v: v["objective"] == "elbo",
     "warms up the ELBO's KL term, and objective: iwae has none; use kl_warmup_epochs: 0"),
    ("precision", "32-true", lambda v: v["numerics"] == "native",
     "multiplies on each CPU's own bfloat16 units, whose bytes are per machine; set numerics: native"),
    ("activation", "relu", lambda v: v["activation"] != "gated" or v["architecture"] == "mlp",
     "makes gated dense layers, which only the MLP has; use architecture: mlp"),
    ("pseudo_inputs", MODEL_DEFAULTS["pseudo_inputs"], lambda v: v["prior"] == "vampprior",
     f"counts the VampPrior's components; set prior: vampprior or leave it at {MODEL_DEFAULTS['pseudo_inputs']}"),
    ("pseudo_inputs_init", "random", lambda v: v["prior"] == "vampprior",
     "starts the VampPrior's pseudo-inputs; set prior: vampprior or leave it at random"),
    ("stochastic_layers", 1, lambda v: v["architecture"] == "mlp",
     "builds MLP networks between the layers; use architecture: mlp"),
    ("lower_latent_dim", MODEL_DEFAULTS["lower_latent_dim"], lambda v: v["stochastic_layers"] == 2,
     "sizes the lower stochastic layer, which only stochastic_layers: 2 has; set stochastic_layers: 2 or "
     "leave it at "
     f"{MODEL_DEFAULTS['lower_latent_dim']}"),
]
assert set(_RULES) == {f.name for f in fields(Params)}


def _split_sizes(values: dict[str, Any]) -> tuple[int, int]:
    """Images in the validation split and in the (possibly subset) training split, as the split stage cuts them."""
    val = int(values["val_fraction"] * TRAIN_SET_SIZE)
    return val, values["train_subset"] or TRAIN_SET_SIZE - val


def _empty_validation(values: dict[str, Any]) -> str:
    if _split_sizes(values)[0] == 0:
        return (f"val_fraction = {values['val_fraction']} holds out no image of the {TRAIN_SET_SIZE:,}; "
                f"raise it to at least {1 / TRAIN_SET_SIZE:.1e}")
    return ""


def _subset_too_large(values: dict[str, Any]) -> str:
    available = TRAIN_SET_SIZE - _split_sizes(values)[0]
    if values["train_subset"] > available:
        return (f"train_subset = {values['train_subset']} but the training split has {available} images; "
                f"set it to at most {available}, or 0 for all")
    return ""


def _too_few_training_images(values: dict[str, Any]) -> str:
    images = _split_sizes(values)[1]
    subset = values["train_subset"]
    cause = f"train_subset = {subset}" if subset else f"val_fraction = {values['val_fraction']:g}"

    def fix(at_least: int) -> str:
        return f"raise train_subset to at least {at_least} (0: all)" if subset else "lower val_fraction"

    if images < KNN_NEIGHBORS:
        return (f"{cause} leaves fewer training images than the {KNN_NEIGHBORS} neighbours of evaluate's kNN "
                f"probe; {fix(KNN_NEIGHBORS)}")
    components = values["latent_density_components"]
    if images < components:
        return (f"latent_density_components = {components} is more than the {images} training images the "
                f"mixture is fit to; lower it, or {fix(components)}")
    return ""


def _too_few_images_for_pseudo_inputs(values: dict[str, Any]) -> str:
    images = _split_sizes(values)[1]
    if values["prior"] == "vampprior" and values["pseudo_inputs_init"] == "data" and images < values["pseudo_inputs"]:
        return (f"pseudo_inputs = {values['pseudo_inputs']} start at training images but the training split has "
                f"{images}; lower pseudo_inputs or set pseudo_inputs_init: random")
    return ""


def _perplexity_too_large(values: dict[str, Any]) -> str:
    if values["tsne_perplexity"] >= values["tsne_subset"]:
        return (f"tsne_perplexity = {values['tsne_perplexity']:g} must be smaller than tsne_subset = "
                f"{values['tsne_subset']}; lower the perplexity or raise the subset")
    return ""


# Rules that relate several params, each giving what is wrong and the fix, or "" when they agree.
_RELATED: list[Callable[[dict[str, Any]], str]] = [_empty_validation, _subset_too_large, _too_few_training_images,
                                                   _too_few_images_for_pseudo_inputs, _perplexity_too_large]


def suggest(key: str, known: list[str]) -> str:
    """"did you mean ...?" for a mistyped key: a key it begins (``dataset`` for ``dataset_name``), else the closest."""
    close = [k for k in known if k.startswith(key)][:1] or difflib.get_close_matches(key, known, n=1)
    return f"did you mean {close[0]}?" if close else f"known keys: {', '.join(known)}"


def _check_type(key: str, value: Any, kind: type, allowed: str, source: str) -> Any:
    if isinstance(value, bool) or not isinstance(value, (int, float) if kind is float else kind):
        hint = ""
        if kind is float and isinstance(value, str):
            hint = " (YAML reads 1e-3 as text: write 0.001 or 1.0e-3)"
        raise UserError(f"{source}: {key} = {value!r} is not {allowed}{hint}; fix it in {source}")
    if kind is float:
        try:
            return float(value)
        except OverflowError:  # an integer too large for a float
            raise UserError(f"{source}: {key} = {value!r} is not {allowed}; fix it in {source}") from None
    return value


def validate(raw: Any, source: str = "params.yaml") -> Params:
    """Check every key of a parsed params file and return them as ``Params``.

    Raises ``UserError`` naming the first bad key, its value and what is allowed.
    """
    if not isinstance(raw, dict):
        raise UserError(f"{source}: expected a mapping of key: value, got {type(raw).__name__}")
    for key in raw:
        if key not in _RULES:
            raise UserError(f"{source}: unknown key {key!r}; {suggest(str(key), list(_RULES))}")
    values = {}
    for key, (kind, check, allowed) in _RULES.items():
        if key not in raw:
            raise UserError(f"{source}: missing key {key!r}; add it ({allowed})")
        value = _check_type(key, raw[key], kind, allowed, source)
        if not check(value):
            raise UserError(f"{source}: {key} = {raw[key]!r} is not {allowed}; fix it in {source}")
        values[key] = value
    for key, default, holds, why in _ONLY_WITH:
        if values[key] != default and not holds(values):
            raise UserError(f"{source}: {key} = {raw[key]!r} {why}")  # each why ends with its fix
    for problem in (rule(values) for rule in _RELATED):
        if problem:
            raise UserError(f"{source}: {problem}")
    return Params(**values)


def load_params(path: str | Path) -> Params:
    """Read and validate a params file (the stages' is params.yaml) before any work is done."""
    path = Path(path)
    try:
        raw = yaml.safe_load(path.read_text())
    except FileNotFoundError:
        raise UserError(f"{path} not found; run the stage from the repository root") from None
    except yaml.YAMLError as err:
        raise UserError(f"{path} is not valid YAML ({str(err).splitlines()[0]}); fix its syntax") from None
    return validate(raw, str(path))


def resolve_device(name: str) -> torch.device:
    """The ``device`` param as a torch device.

    ``auto`` is CUDA when available, else the CPU (never ``mps``: Apple GPUs are asked for
    by name). An explicit CUDA or MPS device must exist.
    """
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    device = torch.device(name)
    if device.type == "cuda" and not torch.cuda.is_available():
        raise UserError(f"device = {name!r} but PyTorch sees no CUDA GPU; set device: auto or cpu")
    if device.type == "mps" and not torch.backends.mps.is_available():
        raise UserError(f"device = {name!r} but PyTorch sees no Apple GPU (MPS); set device: auto or cpu")
    return device
