"""A study file: its format, its validation, and the runs it plans.

``studies/NAME.yaml``::

    description: what the study asks, in a sentence or two
    datasets: [MNIST, FashionMNIST]    # dataset_name of every run
    seeds: [1, 2, 3]                   # the training seed (`seed`); the split's `data_seed` stays fixed
    params: {latent_dim: 16}           # overrides shared by every run (optional)
    configurations:                    # name: the overrides that make it (`{}`: params.yaml as it is)
      notebook: {}
      beta-4: {beta: 4.0}
    baseline: notebook                 # differences to it get a 95% interval (optional); or a mapping
                                       # {configuration: its baseline} when configurations pair up
    exclude: [NAME-fashion-mnist-beta-4-*]  # run names (shell patterns) the study does not plan (optional)
    metrics: [loss, fd_samples]        # the report's headline metrics (optional)
    compare: [[fd_samples_latent_density, fd_samples]]  # paired differences within a run (optional)
    published:                         # numbers a paper reports, set beside the study's (optional)
      source: Burda, Grosse & Salakhutdinov (ICLR 2016), Table 1
      MNIST:                           # dataset: configuration: metric: value
        notebook: {loss: 86.76}

Every run is one configuration on one dataset with one seed, named
``STUDY-DATASET-CONFIGURATION-sSEED`` (``variants-mnist-beta-4-s2``). Each run's params
(params.yaml, then ``params``, the configuration, the dataset and the seed) are checked with
``vae.params.validate`` before anything is queued, so a bad study fails in one line.
"""

import fnmatch
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from vae.data.datasets import DATASETS
from vae.errors import UserError
from vae.io import write_text
from vae.params import suggest, validate

STUDIES_DIR = Path("studies")
# Names become part of git refs (refs/exps/...) and file names: lower case, digits and dashes.
CONFIGURATION_NAME = re.compile(r"[a-z0-9][a-z0-9-]*")
# Set by the study's datasets and seeds, never by a configuration.
PER_RUN_KEYS = ("dataset_name", "seed")
DEFAULT_METRICS = ("loss", "iwae_log_likelihood_bound", "active_units", "fd_samples", "fd_samples_latent_density")
# Every metric a run's metrics files hold, by the stage that writes it (tests/test_studies.py checks
# this list against the files): what a study's `metrics:`, `compare:` and `published:` may name.
KNOWN_METRICS = (
    # train: the last epoch's row of the history (train_objective with a multi-sample objective)
    "epoch", "train_loss", "train_recon", "train_kl", "train_objective", "val_loss", "val_recon", "val_kl",
    # classifier
    "classifier_test_accuracy", "fd_real_data_floor",
    # evaluate (binarized_test_nll with the binarized likelihood; the bits per dimension with a discrete one)
    "loss", "recon", "kl", "iwae_k", "iwae_log_likelihood_bound", "binarized_test_nll", "bits_per_dim",
    "iwae_bits_per_dim", "active_units",
    "active_units_lower",
    "mse_per_image", "linear_probe_accuracy", "knn_accuracy", "fd_samples", "fd_samples_latent_density",
    "fd_reconstructions", "sample_class_entropy", "sample_class_entropy_latent_density", "reconstruction_accuracy")
_KEYS: dict[str, type | tuple[type, ...]] = {
    "description": str, "datasets": list, "seeds": list, "params": dict, "configurations": dict,
    "baseline": (str, dict), "exclude": list, "metrics": list, "compare": list, "published": dict}
_REQUIRED = ("datasets", "seeds", "configurations")


@dataclass(frozen=True)
class Run:
    """One experiment of a study."""

    name: str  # the DVC experiment's name
    configuration: str
    dataset: str
    seed: int
    overrides: dict[str, Any]  # every param the run sets with `-S`, dataset_name and seed included

    def set_params(self) -> list[str]:
        """``dvc exp run`` arguments: ``-S key=value`` for each override."""
        return [arg for key, value in self.overrides.items() for arg in ("-S", f"{key}={format_value(value)}")]


@dataclass(frozen=True)
class Study:
    name: str
    path: Path
    description: str
    datasets: tuple[str, ...]
    seeds: tuple[int, ...]
    params: dict[str, Any]
    configurations: dict[str, dict[str, Any]]
    baseline: str | dict[str, str] | None  # one configuration, or each configuration's own
    metrics: tuple[str, ...]
    compare: tuple[tuple[str, str], ...]
    published: dict[str, dict[str, dict[str, float]]]  # dataset -> configuration -> metric -> the paper's value
    source: str  # where the published values come from
    exclude: tuple[str, ...] = ()  # shell patterns of run names the study does not plan

    def baseline_of(self, configuration: str) -> str | None:
        """The configuration that ``configuration``'s differences are to (None: it is a baseline, or none is set)."""
        base = self.baseline.get(configuration) if isinstance(self.baseline, dict) else self.baseline
        return None if base == configuration else base

    def varied(self) -> list[str]:
        """The params some configuration sets, in the order the file first names them."""
        return list(dict.fromkeys(key for overrides in self.configurations.values() for key in overrides))

    def runs(self) -> list[Run]:
        """Every planned run: datasets, then configurations, then seeds, in the file's order."""
        runs = [Run(run_name(self.name, dataset, configuration, seed), configuration, dataset, seed,
                    {**self.params, **overrides, "dataset_name": dataset, "seed": seed})
                for dataset in self.datasets for configuration, overrides in self.configurations.items()
                for seed in self.seeds]
        return [run for run in runs if not any(fnmatch.fnmatchcase(run.name, p) for p in self.exclude)]


def select(study: Study, patterns: list[str]) -> set[str]:
    """The names of the study's runs that match any of the shell patterns (``variants-fashion-mnist-conv-*``):
    a study run in parts. No patterns: every run. A pattern that matches no run is one ``UserError`` line."""
    names = [run.name for run in study.runs()]
    if not patterns:
        return set(names)
    selected: set[str] = set()
    for pattern in patterns:
        matches = [name for name in names if fnmatch.fnmatchcase(name, pattern)]
        if not matches:
            raise UserError(f"no run of study {study.name} matches {pattern!r}; its runs are named like "
                            f"{names[0]} (STUDY-DATASET-CONFIGURATION-sSEED)")
        selected.update(matches)
    return selected


def format_value(value: Any) -> str:
    """A param value as YAML writes it, for ``-S`` and params.yaml alike (0.5, 1.0e-05, 16, binarized)."""
    return yaml.safe_dump(value).splitlines()[0]


def write_params(path: str | Path, overrides: dict[str, Any]) -> None:
    """Set top-level keys of a params file in place, keeping its comments and order (what ``-S`` does)."""
    path = Path(path)
    text = path.read_text()
    for key, value in overrides.items():
        line = re.compile(rf"^{re.escape(key)}:[ \t]*[^#\n]*?([ \t]+#[^\n]*)?$", re.MULTILINE)
        if not line.search(text):
            raise UserError(f"{path} has no top-level key {key!r} to set")
        text = line.sub(lambda m, k=key, v=value: f"{k}: {format_value(v)}{m.group(1) or ''}", text, count=1)
    write_text(path, text)


def run_name(study: str, dataset: str, configuration: str, seed: int) -> str:
    return f"{study}-{DATASETS[dataset].mirror_folder}-{configuration}-s{seed}"


def available(studies_dir: Path = STUDIES_DIR) -> list[str]:
    return sorted(p.stem for p in studies_dir.glob("*.yaml"))


def _fail(path: Path, problem: str) -> UserError:
    return UserError(f"{path}: {problem}")


def _read(name: str, studies_dir: Path) -> tuple[Path, dict[str, Any]]:
    path = studies_dir / f"{name}.yaml"
    if not path.is_file():
        known = ", ".join(available(studies_dir)) or "none"
        raise UserError(f"no study named {name!r} (no {path}); the studies are: {known}")
    try:
        raw = yaml.safe_load(path.read_text())
    except yaml.YAMLError as err:
        raise _fail(path, f"not valid YAML ({str(err).splitlines()[0]}); fix its syntax") from None
    if not isinstance(raw, dict):
        raise _fail(path, "expected a mapping with datasets, seeds and configurations")
    for key, value in raw.items():
        if key not in _KEYS:
            raise _fail(path, f"unknown key {key!r}; {suggest(str(key), list(_KEYS))}")
        kinds = _KEYS[key] if isinstance(_KEYS[key], tuple) else (_KEYS[key],)
        if not isinstance(value, kinds):
            raise _fail(path, f"{key} must be a {' or a '.join(k.__name__ for k in kinds)}, not {value!r}")
    for key in _REQUIRED:
        if not raw.get(key):
            raise _fail(path, f"{key} is missing or empty; add it (see vae/studies/spec.py for the format)")
    return path, raw


def _check_lists(path: Path, raw: dict[str, Any]) -> None:
    for dataset in raw["datasets"]:
        if dataset not in DATASETS:
            raise _fail(path, f"dataset {dataset!r} is not one of {', '.join(DATASETS)}")
    seeds = raw["seeds"]
    if any(isinstance(s, bool) or not isinstance(s, int) or s < 0 for s in seeds) or len(set(seeds)) < len(seeds):
        raise _fail(path, f"seeds must be distinct integers >= 0, got {seeds}")
    if len(set(raw["datasets"])) < len(raw["datasets"]):
        raise _fail(path, f"datasets are listed twice: {raw['datasets']}")
    for name, overrides in raw["configurations"].items():
        if not isinstance(name, str) or not CONFIGURATION_NAME.fullmatch(name):
            raise _fail(path, f"configuration name {name!r} must be lower-case letters, digits and dashes")
        if overrides is not None and not isinstance(overrides, dict):
            raise _fail(path, f"configuration {name!r} must be a mapping of param: value, not {overrides!r}")
    for key in PER_RUN_KEYS:
        setters = [n for n, o in raw["configurations"].items() if o and key in o] + (
            ["params"] if key in raw.get("params", {}) else [])
        if setters:
            raise _fail(path, f"{key} is set by {', '.join(setters)}; list it under "
                              f"{'datasets' if key == 'dataset_name' else 'seeds'} instead")
    baseline = raw.get("baseline", {})
    for name in [*baseline, *baseline.values()] if isinstance(baseline, dict) else [baseline] if baseline else []:
        if name not in raw["configurations"]:
            raise _fail(path, f"baseline {name!r} is not one of the configurations "
                              f"({', '.join(raw['configurations'])})")
    if not all(isinstance(p, str) and p for p in raw.get("exclude", [])):
        raise _fail(path, f"exclude must be a list of run-name patterns, got {raw['exclude']}")
    if not all(isinstance(m, str) and m for m in raw.get("metrics", [])):
        raise _fail(path, f"metrics must be a list of metric names, got {raw['metrics']}")
    for pair in raw.get("compare", []):
        if not (isinstance(pair, list) and len(pair) == 2 and all(isinstance(m, str) for m in pair)):
            raise _fail(path, f"compare must list pairs of metric names like [a, b], got {pair!r}")
    _check_metric_names(path, raw)
    _check_published(path, raw)


def _check_metric_names(path: Path, raw: dict[str, Any]) -> None:
    """Every metric ``metrics:`` and ``compare:`` name is one a run writes, else one line with the closest."""
    named = [("metrics", m) for m in raw.get("metrics", [])] + [
        ("compare", m) for pair in raw.get("compare", []) for m in pair]
    for key, metric in named:
        if metric not in KNOWN_METRICS:
            close = suggest(metric, list(KNOWN_METRICS))
            hint = close if close.startswith("did you mean") else "see KNOWN_METRICS in vae/studies/spec.py"
            raise _fail(path, f"{key}: {metric!r} is not a metric any stage writes; {hint}")


def _published(raw: dict[str, Any]) -> tuple[Any, dict[str, Any]]:
    """A study file's ``published:`` split into its source and its dataset: configuration: metric: value."""
    published = dict(raw.get("published", {}))
    return published.pop("source", None), published


def _check_published(path: Path, raw: dict[str, Any]) -> None:
    source, published = _published(raw)
    if raw.get("published") and not isinstance(source, str):
        raise _fail(path, "published needs a source: the paper and table its numbers come from")
    metrics = raw.get("metrics", DEFAULT_METRICS)
    for dataset, configurations in published.items():
        if dataset not in raw["datasets"] or not isinstance(configurations, dict):
            raise _fail(path, f"published: {dataset!r} is not one of the study's datasets "
                              f"({', '.join(raw['datasets'])}) with configuration: {{metric: value}} under it")
        for name, values in configurations.items():
            if name not in raw["configurations"] or not isinstance(values, dict):
                raise _fail(path, f"published: {dataset}: {name!r} is not one of the configurations "
                                  f"({', '.join(raw['configurations'])}) with metric: value under it")
            for metric, value in values.items():
                if metric not in metrics or isinstance(value, bool) or not isinstance(value, int | float):
                    raise _fail(path, f"published: {dataset}: {name}: {metric}: {value!r} must be a number "
                                      f"for one of the study's metrics ({', '.join(metrics)})")


def load_study(name: str, studies_dir: str | Path = STUDIES_DIR, params_file: str | Path = "params.yaml") -> Study:
    """Read ``studies_dir/name.yaml`` and check it and every run it plans; ``UserError`` on the first problem."""
    path, raw = _read(name, Path(studies_dir))
    _check_lists(path, raw)
    base = yaml.safe_load(Path(params_file).read_text())
    source, published = _published(raw)
    study = Study(name=name, path=path, description=str(raw.get("description", "")).strip(),
                  datasets=tuple(raw["datasets"]), seeds=tuple(raw["seeds"]), params=dict(raw.get("params", {})),
                  configurations={n: dict(o or {}) for n, o in raw["configurations"].items()},
                  baseline=raw.get("baseline"), metrics=tuple(raw.get("metrics", DEFAULT_METRICS)),
                  compare=tuple(tuple(pair) for pair in raw.get("compare", [])),
                  published=published, source=source or "", exclude=tuple(raw.get("exclude", [])))
    for run in study.runs():
        validate({**base, **run.overrides},
                 source=f"{path} (configuration {run.configuration!r}, {run.dataset}, seed {run.seed})")
    return study
