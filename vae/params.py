"""params.yaml: one declaration per hyperparameter, validation of every key before any stage does work, and the device.

Every hyperparameter is a top-level key so that ``dvc exp run -S latent_dim=8``
works as written (DVC maps ``-S`` keys to dotted paths from the file's root).

Each param is one field of ``Params``, declared with ``param``: its type (the annotation), its
default (params.yaml's value), a constraint object that is both its check and the words of its
error line (scikit-learn's ``_param_validation``), its one-line meaning (params.yaml's comment on
its line: a test holds them equal) and, where it means something only beside another param's
value, an ``OnlyWith``. Validation, the "did you mean" of an unknown key and every error line of
check-params derive from these declarations.
"""

import difflib
import math
from abc import ABC, abstractmethod
from dataclasses import Field, dataclass, field, fields
from pathlib import Path
from typing import TYPE_CHECKING, Any

import yaml

from vae.data.datasets import DATASETS, FOLDER, UNDECODABLE
from vae.errors import UserError
from vae.numerics import MODES

if TYPE_CHECKING:  # imported where used: check-params validates params.yaml without PyTorch
    import torch

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
OUTPUT_BIAS_INITS = ("default", "train_mean")
PRECISIONS = ("32-true", "bf16-mixed")  # PyTorch Lightning's names for the training arithmetic
DEVICES = ("auto", "cpu", "cuda", "mps")  # and cuda:N
IWAE_STAGES = 8  # Burda et al. (2016): stage i = 0..7 lasts 3^i epochs at lr * 10^(-i/7)
IWAE_EPOCHS = (3**IWAE_STAGES - 1) // 2  # 3280
CONV_TARGET = 8  # the conv architecture halves the image side with stride-2 layers until it is at most this


def conv_depth(image_size: int) -> int:
    """Stride-2 layers of the conv encoder (and decoder) for images of this side: 2 (28 -> 7, 32 -> 8), 3 for 64."""
    depth = 2
    while image_size / 2**depth > CONV_TARGET:
        depth += 1
    return depth


# Constraints: each one is the check of a value and the words that say what it allows.

class Constraint(ABC):
    """What values of its ``kind`` (int, float or str) a param allows; ``str()`` says it in an error line."""

    kind: type

    @abstractmethod
    def allows(self, value: Any) -> bool:
        """Whether ``value`` (already of ``kind``) is allowed."""

    @abstractmethod
    def __str__(self) -> str:
        """What is allowed, as the error line says it: "an integer > 0", "one of mlp, conv"."""


def _number(value: float) -> str:
    """A bound as the error line writes it: 2**32 as a power of two, others as Python prints them."""
    if isinstance(value, int) and value >= 2**16 and value & (value - 1) == 0:
        return f"2**{value.bit_length() - 1}"
    return f"{value:g}" if isinstance(value, float) else str(value)


@dataclass(frozen=True)
class Interval(Constraint):
    """Numbers of ``kind`` between ``low`` and ``high`` (None: unbounded); ``closed``: the ends that belong
    (``left``, ``right``, ``both`` or ``neither``, as scikit-learn's ``Interval``). Floats must be finite."""

    kind: type
    low: float | None
    high: float | None = None
    closed: str = "neither"
    note: str = ""  # said after the range, in parentheses

    def allows(self, value: Any) -> bool:
        if self.kind is float and not math.isfinite(value):
            return False
        above = self.low is None or (value >= self.low if self.closed in ("left", "both") else value > self.low)
        below = self.high is None or (value <= self.high if self.closed in ("right", "both") else value < self.high)
        return above and below

    def __str__(self) -> str:
        noun = "an integer" if self.kind is int else "a number"
        if self.high is None:
            assert self.low is not None
            op = ">=" if self.closed in ("left", "both") else ">"
            text = f"{noun if self.kind is int else 'a finite number'} {op} {_number(self.low)}"
        elif self.kind is float and self.closed == "neither":
            text = f"{noun} strictly between {_number(self.low)} and {_number(self.high)}"
        else:
            left = "[" if self.closed in ("left", "both") else "("
            right = "]" if self.closed in ("right", "both") else ")"
            text = f"{noun} in {left}{_number(self.low)}, {_number(self.high)}{right}"
        return f"{text} ({self.note})" if self.note else text


@dataclass(frozen=True)
class Options(Constraint):
    """One of ``values``: names ("one of mlp, conv") or numbers ("1 or 2")."""

    kind: type
    values: tuple
    note: str = ""  # said after the values, in parentheses

    def allows(self, value: Any) -> bool:
        return value in self.values

    def __str__(self) -> str:
        if self.kind is str:
            text = f"one of {', '.join(self.values)}"
        else:
            *rest, last = map(str, self.values)
            text = f"{', '.join(rest)} or {last}"
        return f"{text} ({self.note})" if self.note else text


@dataclass(frozen=True)
class RelativeFolder(Constraint):
    """A folder inside the repository, as a relative path (DVC tracks it as a stage's dep)."""

    kind: type = str

    def allows(self, value: Any) -> bool:
        return bool(value) and not Path(value).is_absolute() and ".." not in Path(value).parts

    def __str__(self) -> str:
        return "a folder inside the repository, as a relative path (DVC tracks it as the split stage's dep)"


@dataclass(frozen=True)
class Device(Constraint):
    """A torch device name this pipeline runs on: ``DEVICES`` or ``cuda:N``."""

    kind: type = str

    def allows(self, value: Any) -> bool:
        prefix, colon, index = value.partition(":")
        return value in DEVICES or (prefix == "cuda" and bool(colon) and index.isdigit())

    def __str__(self) -> str:
        return "auto, cpu, cuda, cuda:N or mps"


@dataclass(frozen=True)
class OnlyWith:
    """A param's value means something only where param ``key`` is one of ``allowed``.

    The rule covers every value but the param's default, or only ``values`` where given. ``why`` ends
    the error line after "key = value": what the value does and the fix ({default}: the param's default).
    """

    key: str
    allowed: tuple
    why: str
    values: tuple = ()


def param(default: Any, constraint: Constraint, meaning: str, *only_with: OnlyWith) -> Any:
    """Declare a param: a ``Params`` field with its default, constraint, one-line meaning and ``OnlyWith`` rules."""
    return field(default=default, metadata={"constraint": constraint, "meaning": meaning, "only_with": only_with})


def _positive(note: str = "") -> Interval:
    return Interval(int, 0, note=note)


def _positive_float() -> Interval:
    return Interval(float, 0)


# PyTorch's CPU generator keeps a seed's low 32 bits: 2**32 would repeat seed 0's draws.
_SEED = Interval(int, 0, 2**32, closed="left")
_MLP_ONLY = ("architecture", ("mlp",))
_ELBO_ONLY = ("objective", ("elbo",))
_VAMPPRIOR_ONLY = ("prior", ("vampprior",))
_FOLDER_ONLY = OnlyWith("dataset_name", (FOLDER,), f"applies to dataset_name: {FOLDER} only; set dataset_name: "
                        f"{FOLDER} or leave it at {{default}}")


@dataclass(frozen=True)
class Params:
    """The validated contents of params.yaml: one declared field per key, in the order keys are checked."""

    dataset_name: str = param("MNIST", Options(str, (*DATASETS, FOLDER)),
                              'MNIST, FashionMNIST, or folder: the images of image_folder (see "Your own images" in '
                              'the README)')
    batch_size: int = param(128, _positive(), "images per training step")
    lr: float = param(0.001, _positive_float(), "Adam learning rate")
    num_epochs: int = param(20, _positive(), "passes over the training split")
    latent_dim: int = param(2, _positive(), "2 gives a plottable latent space; try 8, 16, 32")
    hidden_dim: int = param(512, _positive(), "units of each hidden layer (mlp)")
    seed: int = param(42, _SEED, "training: initialization, batch order, noise; and what is computed from the run")
    likelihood: str = param("bernoulli", Options(str, LIKELIHOOD_NAMES),
                            "bernoulli (BCE on grey pixels), binarized (pixels drawn as 0/1), continuous_bernoulli, "
                            "discretized_logistic (8-bit)")
    beta: float = param(1.0, Interval(float, 0, closed="left"),
                        "weight of the KL term (beta-VAE); metrics always report the unweighted ELBO",
                        OnlyWith(*_ELBO_ONLY, "weights the ELBO's KL term, and objective: iwae has none (the bound "
                                              "weighs whole samples); use beta: {default}"))
    kl_warmup_epochs: int = param(0, Interval(int, 0, closed="left", note="0: no warm-up"),
                                  "the KL weight rises linearly from 0 to beta over this many epochs",
                                  OnlyWith(*_ELBO_ONLY, "warms up the ELBO's KL term, and objective: iwae has none; "
                                                        "use kl_warmup_epochs: {default}"))
    architecture: str = param("mlp", Options(str, ARCHITECTURES),
                              "mlp or conv (two stride-2 convolutions each way; hidden_dim is unused)")
    hidden_layers: int = param(2, _positive(), "mlp: hidden layers of hidden_dim units in the encoder and in the "
                                               "decoder",
                               OnlyWith(*_MLP_ONLY, "applies to architecture: mlp only; leave it at {default} or use "
                                                    "architecture: mlp"))
    activation: str = param("relu", Options(str, ACTIVATION_NAMES),
                            "relu, tanh or gated (h = (W1 x + b1) * sigmoid(W2 x + b2), the VampPrior paper's layers)",
                            OnlyWith(*_MLP_ONLY, "makes gated dense layers, which only the MLP has; use "
                                                 "architecture: mlp", values=("gated",)))
    prior: str = param("standard", Options(str, PRIORS),
                       "standard (N(0, I)) or vampprior (a mixture of the posteriors at learned pseudo-inputs)")
    pseudo_inputs: int = param(500, _positive("the VampPrior's components"),
                               "vampprior: its components K (pseudo-inputs, learned images)",
                               OnlyWith(*_VAMPPRIOR_ONLY, "counts the VampPrior's components; set prior: vampprior "
                                                          "or leave it at {default}"))
    pseudo_inputs_init: str = param("random", Options(str, PSEUDO_INPUT_INITS),
                                    "vampprior: pseudo-inputs start near 0.05 (random) or at the first K training "
                                    "images (data)",
                                    OnlyWith(*_VAMPPRIOR_ONLY, "starts the VampPrior's pseudo-inputs; set prior: "
                                                               "vampprior or leave it at {default}"))
    stochastic_layers: int = param(1, Options(int, (1, 2)),
                                   "1, or 2: a lower layer z1 between the images and latent_dim's layer (an HVAE)",
                                   OnlyWith(*_MLP_ONLY, "builds MLP networks between the layers; use architecture: "
                                                        "mlp"))
    lower_latent_dim: int = param(40, _positive("the lower stochastic layer's size"),
                                  "stochastic_layers 2: the size of the lower layer z1",
                                  OnlyWith("stochastic_layers", (2,), "sizes the lower stochastic layer, which only "
                                           "stochastic_layers: 2 has; set stochastic_layers: 2 or leave it at "
                                           "{default}"))

    adam_eps: float = param(1e-8, _positive_float(), "Adam's epsilon (the IWAE paper's is 1e-4)")
    lr_schedule: str = param("constant", Options(str, LR_SCHEDULES),
                             "constant, or iwae: Burda et al.'s 8 stages of 3^i epochs at lr * 10^(-i/7)")
    lr_schedule_epochs: int = param(IWAE_EPOCHS, _positive(),
                                    "iwae: the epochs its stages span (3280 in the paper; fewer compresses them)",
                                    OnlyWith("lr_schedule", LR_SCHEDULES[1:], "sets the span of a learning-rate "
                                             "schedule; with lr_schedule: constant leave it at {default}"))
    output_bias_init: str = param("default", Options(str, OUTPUT_BIAS_INITS),
                                  "default (PyTorch's init) or train_mean: decoder output bias = logit of the train "
                                  "mean",
                                  OnlyWith(*_MLP_ONLY, "train_mean sets the MLP decoder's per-pixel output bias; use "
                                                       "it with architecture: mlp"))
    save_every: int = param(1, _positive(), "keep the weights and reconstruction grid of every Nth epoch (and the "
                                            "last)")
    objective: str = param("elbo", Options(str, OBJECTIVES),
                           "elbo (the VAE's) or iwae (Burda et al.'s importance-weighted bound)")
    train_samples: int = param(1, _positive("latent samples per image in each training step"),
                               "latent samples per image in each step (k); elbo averages them, iwae log-mean-exps "
                               "their weights")
    precision: str = param("32-true", Options(str, PRECISIONS),
                           "32-true, or bf16-mixed: the training forward pass in bfloat16 (metrics stay float32)",
                           OnlyWith("numerics", ("native",), "multiplies on each CPU's own bfloat16 units, whose "
                                                             "bytes are per machine; set numerics: native"))
    numerics: str = param("portable", Options(str, MODES),
                          "portable: the same bytes on every x86-64 CPU with AVX2; native: each CPU's fastest paths")
    threads: int = param(2, _positive("the threads of every stage that computes"),
                         "CPU threads of every stage that computes (the thread count changes the last bits)")
    image_folder: str = param("data/images", RelativeFolder(),
                              "a folder in the repository: one subfolder per class, or all images in it; train/ and "
                              "test/ split it", _FOLDER_ONLY)
    image_size: int = param(28, Interval(int, 8, 256, closed="both", note="pixels on each side"),
                            "the images are resized (shorter side) and centre-cropped to image_size x image_size",
                            _FOLDER_ONLY)
    channels: int = param(1, Options(int, (1, 3), note="grey or RGB"), "1 (grey) or 3 (RGB)", _FOLDER_ONLY)
    test_fraction: float = param(0.1, Interval(float, 0, 1), "of the folder's images, held out as the test split, "
                                                             "unless it holds train/ and test/", _FOLDER_ONLY)
    undecodable: str = param("refuse", Options(str, UNDECODABLE),
                             "refuse (stop at a file that cannot be decoded) or skip (leave it out; manifest.csv "
                             "lists it)", _FOLDER_ONLY)
    val_fraction: float = param(0.1, Interval(float, 0, 1), "held out of the 60,000 training images (split)")
    data_seed: int = param(42, _SEED, "the split and the classifier: `seed` varies a run, never its data or "
                                      "yardstick")
    train_subset: int = param(0, Interval(int, 0, closed="left", note="0 keeps the whole training split"),
                              "train on only the first N images of the train split; 0 = all")
    device: str = param("auto", Device(), "auto (CUDA when available), cpu, cuda, cuda:N or mps (Apple GPUs)")
    n_samples: int = param(64, _positive(), "prior samples drawn by the sample stage")
    latent_density_components: int = param(10, _positive(), "Gaussians of the ex-post latent density (a mixture "
                                                            "fit to the train codes)")
    iwae_k: int = param(100, _positive(), "importance samples per test image for the IWAE bound (papers use 5000)")
    fd_images: int = param(10_000, Interval(int, 100, TEST_SET_SIZE, closed="both",
                                            note="images on each side of a Frechet distance"),
                           "images on each side of a sample-quality Frechet distance (10000: the test set)")
    tsne_subset: int = param(5000, Interval(int, 2, TEST_SET_SIZE, closed="both",
                                            note=f"t-SNE places at least 2 points; the test set has {TEST_SET_SIZE}"),
                             "test images embedded by t-SNE when latent_dim > 2")
    tsne_perplexity: float = param(30.0, _positive_float(), "t-SNE's perplexity, smaller than tsne_subset")
    classifier_epochs: int = param(5, _positive(), "passes of the sample-quality classifier over the train split")
    classifier_batch_size: int = param(128, _positive(), "images per step of the classifier")
    classifier_lr: float = param(0.002, _positive_float(), "the classifier's Adam learning rate")

@dataclass(frozen=True)
class Declaration:
    """One param as ``param`` declared it: what validation, error lines and the docs' tests read."""

    name: str
    kind: type
    default: Any
    constraint: Constraint
    meaning: str
    only_with: tuple[OnlyWith, ...]

    @classmethod
    def of(cls, spec: Field) -> "Declaration":
        meta = spec.metadata
        return cls(spec.name, spec.type, spec.default, meta["constraint"], meta["meaning"], meta["only_with"])


DECLARATIONS = {spec.name: Declaration.of(spec) for spec in fields(Params)}
for _declared in DECLARATIONS.values():  # a constraint of another type than its field would never pass
    assert _declared.constraint.kind is _declared.kind and _declared.constraint.allows(_declared.default), _declared


def default(name: str) -> Any:
    """The declared default of param ``name`` (params.yaml's value as committed)."""
    return DECLARATIONS[name].default


def _split_sizes(values: dict[str, Any]) -> tuple[int, int]:
    """Images in the validation split and in the (possibly subset) training split, as the split stage cuts them."""
    val = int(values["val_fraction"] * TRAIN_SET_SIZE)
    return val, values["train_subset"] or TRAIN_SET_SIZE - val


def _empty_validation(values: dict[str, Any]) -> str:
    if values["dataset_name"] != FOLDER and _split_sizes(values)[0] == 0:
        return (f"val_fraction = {values['val_fraction']} holds out no image of the {TRAIN_SET_SIZE:,}; "
                f"raise it to at least {1 / TRAIN_SET_SIZE:.1e}")
    return ""


def _subset_too_large(values: dict[str, Any]) -> str:
    available = TRAIN_SET_SIZE - _split_sizes(values)[0]
    if values["dataset_name"] != FOLDER and values["train_subset"] > available:
        return (f"train_subset = {values['train_subset']} but the training split has {available} images; "
                f"set it to at most {available}, or 0 for all")
    return ""


def _too_few_training_images(values: dict[str, Any]) -> str:
    if values["dataset_name"] == FOLDER:
        return ""  # a folder's images are counted by the split stage (vae.data.folder.check_counts)
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
    if values["dataset_name"] == FOLDER:
        return ""  # a folder's training images are counted where the pseudo-inputs are taken from them
    images = _split_sizes(values)[1]
    if values["prior"] == "vampprior" and values["pseudo_inputs_init"] == "data" and images < values["pseudo_inputs"]:
        return (f"pseudo_inputs = {values['pseudo_inputs']} start at training images but the training split has "
                f"{images}; lower pseudo_inputs or set pseudo_inputs_init: random")
    return ""


def _warmup_too_long(values: dict[str, Any]) -> str:
    if values["kl_warmup_epochs"] > values["num_epochs"]:
        return (f"kl_warmup_epochs = {values['kl_warmup_epochs']} is longer than num_epochs, so the KL weight "
                "would never reach beta; lower it")
    return ""


def _conv_size(values: dict[str, Any]) -> str:
    size = values["image_size"]
    if values["architecture"] == "conv" and size % 2 ** conv_depth(size):
        step = 2 ** conv_depth(size)
        return (f"image_size = {size} is not a multiple of {step}, which architecture: conv halves "
                f"{conv_depth(size)} times; use {size - size % step} or {size - size % step + step}")
    return ""


def _perplexity_too_large(values: dict[str, Any]) -> str:
    if values["tsne_perplexity"] >= values["tsne_subset"]:
        return (f"tsne_perplexity = {values['tsne_perplexity']:g} must be smaller than tsne_subset = "
                f"{values['tsne_subset']}; lower the perplexity or raise the subset")
    return ""


# Rules that relate several params' values, each giving what is wrong and the fix, or "" when they agree.
_RELATED = (_empty_validation, _subset_too_large, _too_few_training_images, _too_few_images_for_pseudo_inputs,
            _warmup_too_long, _perplexity_too_large, _conv_size)


def suggest(key: str, known: list[str]) -> str:
    """"did you mean ...?" for a mistyped key: a key it begins (``dataset`` for ``dataset_name``), else the closest."""
    close = [k for k in known if k.startswith(key)][:1] or difflib.get_close_matches(key, known, n=1)
    return f"did you mean {close[0]}?" if close else f"known keys: {', '.join(known)}"


def _typed(declared: Declaration, value: Any, source: str) -> Any:
    """``value`` as its declared kind (an int where a float is declared becomes that float), or a ``UserError``."""
    kind, allowed = declared.kind, declared.constraint
    if isinstance(value, bool) or not isinstance(value, (int, float) if kind is float else kind):
        hint = " (YAML reads 1e-3 as text: write 0.001 or 1.0e-3)" if kind is float and isinstance(value, str) else ""
        raise UserError(f"{source}: {declared.name} = {value!r} is not {allowed}{hint}; fix it in {source}")
    if kind is float:
        try:
            return float(value)
        except OverflowError:  # an integer too large for a float
            raise UserError(f"{source}: {declared.name} = {value!r} is not {allowed}; fix it in {source}") from None
    return value


def _only_with_problem(declared: Declaration, values: dict[str, Any]) -> OnlyWith | None:
    """The first ``OnlyWith`` rule of a param that its value breaks, or None."""
    value = values[declared.name]
    for rule in declared.only_with:
        applies = value in rule.values if rule.values else value != declared.default
        if applies and values[rule.key] not in rule.allowed:
            return rule
    return None


def validate(raw: Any, source: str = "params.yaml") -> Params:
    """Check every key of a parsed params file against its declaration and return them as ``Params``.

    Raises ``UserError`` naming the first bad key, its value and what is allowed.
    """
    if not isinstance(raw, dict):
        raise UserError(f"{source}: expected a mapping of key: value, got {type(raw).__name__}")
    for key in raw:
        if key not in DECLARATIONS:
            raise UserError(f"{source}: unknown key {key!r}; {suggest(str(key), list(DECLARATIONS))}")
    values = {}
    for key, declared in DECLARATIONS.items():
        if key not in raw:
            raise UserError(f"{source}: missing key {key!r}; add it ({declared.constraint}; the default is "
                            f"{declared.default!r})")
        value = _typed(declared, raw[key], source)
        if not declared.constraint.allows(value):
            raise UserError(f"{source}: {key} = {raw[key]!r} is not {declared.constraint}; fix it in {source}")
        values[key] = value
    for key, declared in DECLARATIONS.items():
        if (rule := _only_with_problem(declared, values)) is not None:  # each why ends with its fix
            raise UserError(f"{source}: {key} = {raw[key]!r} {rule.why.format(default=declared.default)}")
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


def resolve_device(name: str) -> "torch.device":
    """The ``device`` param as a torch device.

    ``auto`` is CUDA when available, else the CPU (never ``mps``: Apple GPUs are asked for
    by name). An explicit CUDA or MPS device must exist.
    """
    import torch

    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    device = torch.device(name)
    if device.type == "cuda" and not torch.cuda.is_available():
        raise UserError(f"device = {name!r} but PyTorch sees no CUDA GPU; set device: auto or cpu")
    if device.type == "mps" and not torch.backends.mps.is_available():
        raise UserError(f"device = {name!r} but PyTorch sees no Apple GPU (MPS); set device: auto or cpu")
    return device
