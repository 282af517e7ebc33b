"""Shared fixtures: small synthetic IDX datasets, the real MNIST test set, a data source for the
end-to-end tests, and faults injected into the processes a test starts."""

import json
import os
import shutil
import urllib.request
from pathlib import Path

from vae.numerics import pin

pin("portable")  # before numpy and torch load: in-process tests use the default stages' library code paths

import numpy as np  # noqa: E402
import pytest  # noqa: E402
import yaml  # noqa: E402
from filelock import FileLock  # noqa: E402

from tests.commands import git_files, run  # noqa: E402
from vae.data.datasets import FILES  # noqa: E402
from vae.data.idx import format_idx  # noqa: E402
from vae.io import write_json  # noqa: E402

REPO_ROOT = Path(__file__).resolve().parent.parent
FAULTS = REPO_ROOT / "tests/faults"  # a sitecustomize.py that injects faults where a test asks
# The end-to-end tests' pipeline: one epoch on 2,000 images, every stage in seconds; one thread, as `make study`
# runs, so that the smoke study's runs reuse its classifier from DVC's run-cache.
SMALL = {"num_epochs": 1, "train_subset": 2000, "iwae_k": 4, "fd_images": 1000, "tsne_subset": 300,
         "tsne_perplexity": 10, "n_samples": 16, "device": "cpu", "classifier_epochs": 1, "threads": 1}


def fault_env(**variables: str) -> dict[str, str]:
    """Environment that puts the fault seam (tests/faults/sitecustomize.py) first on PYTHONPATH, with ``variables``."""
    return {"PYTHONPATH": os.pathsep.join(filter(None, [str(FAULTS), os.environ.get("PYTHONPATH", "")])), **variables}


def signal_env(signal_at: str, only_in: str = "", once: Path | None = None) -> dict[str, str]:
    """Environment that makes a started process send itself ``signal_at``: ``SIGKILL@3.5`` at epoch 3,
    batch 5 of its training loop, ``SIGINT@start``, ``@write`` or ``@done`` as its stage starts, writes its
    first file, or finishes its work; ``only_in``: only in a process whose working folder has that name;
    ``once``: only where that file does not exist yet (the first attempt). See tests/faults/sitecustomize.py."""
    env = fault_env(VAE_TEST_SIGNAL_AT=signal_at)
    if only_in:
        env["VAE_TEST_SIGNAL_IN"] = only_in
    if once is not None:
        env["VAE_TEST_SIGNAL_ONCE"] = str(once)
    return env


def no_data_source_reason() -> str | None:
    """Why neither ``VAE_DATA_MIRROR`` nor the official MNIST mirror can serve the datasets, or None."""
    from vae.data.datasets import DATASETS
    from vae.data.download import MIRROR_ENV

    mirror = os.environ.get(MIRROR_ENV)
    if mirror:
        return None if mirror.startswith(("http://", "https://", "file://")) or Path(mirror).is_dir() \
            else f"{MIRROR_ENV}={mirror} is not a folder"
    try:
        urllib.request.urlopen(DATASETS["MNIST"].urls[0] + "t10k-labels-idx1-ubyte.gz", timeout=5).close()
    except OSError as err:
        return f"no {MIRROR_ENV} set and the official MNIST mirror is unreachable ({err})"
    return None


@pytest.fixture(scope="session")
def data_source() -> None:
    """Skip, saying why, where no dataset source is reachable (probed once, when a test first asks)."""
    reason = no_data_source_reason()
    if reason is not None:
        pytest.skip(reason)


@pytest.fixture(scope="session")
def pipeline(tmp_path_factory: pytest.TempPathFactory, data_source: None) -> dict[str, object]:
    """A copy of the project run once with ``SMALL`` params, committed: (repo, first and second repro outputs).

    Built once per pytest run: under pytest-xdist the first worker that asks builds it in the run's
    shared temporary folder, and the others wait for it on a lock. Never changed afterwards (tests of
    every worker read it at once): a test that changes anything, or runs code in it, works on its own
    copy (``project``).
    """
    shared = tmp_path_factory.getbasetemp()
    if os.environ.get("PYTEST_XDIST_WORKER"):
        shared = shared.parent  # the run's folder, above each worker's own
    with FileLock(shared / "pipeline.lock"):
        built = shared / "pipeline.json"
        if not built.exists():
            write_json(built, build_pipeline(shared / "pipeline"))  # whole or absent
        result = json.loads(built.read_text())
    return {**result, "repo": Path(result["repo"])}


def build_pipeline(repo: Path) -> dict[str, str]:
    """Copy the project's files to ``repo``, commit them, run ``dvc repro`` twice and commit the results."""
    shutil.rmtree(repo, ignore_errors=True)  # what a worker's failed build left
    for name in git_files(REPO_ROOT):
        if not name.startswith(("reports/", "models/")):  # results come from the run, not the copy
            (repo / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(REPO_ROOT / name, repo / name)
    params = yaml.safe_load((repo / "params.yaml").read_text())
    (repo / "params.yaml").write_text(yaml.safe_dump({**params, **SMALL}, sort_keys=False))
    run(repo, "git", "init", "-q")
    run(repo, "git", "add", "-A")
    run(repo, "git", "-c", "user.name=t", "-c", "user.email=t@t", "commit", "-qm", "project")
    first = run(repo, "dvc", "repro")
    second = run(repo, "dvc", "repro")
    run(repo, "git", "add", "-A")
    run(repo, "git", "-c", "user.name=t", "-c", "user.email=t@t", "commit", "-qm", "baseline")
    return {"repo": str(repo), "first": first, "second": second}


@pytest.fixture
def project(pipeline: dict, tmp_path: Path) -> Path:
    """A copy of the run project (git history, DVC cache and outputs) for a test to change."""
    copy = tmp_path / "project"
    shutil.copytree(pipeline["repo"], copy, symlinks=True)
    return copy


def synthetic_arrays(n_train: int = 50, n_test: int = 10, seed: int = 0) -> dict[str, np.ndarray]:
    """Random 28x28 uint8 images and labels 0-9 under the four official IDX file names."""
    rng = np.random.default_rng(seed)
    shapes = {FILES[0]: (n_train, 28, 28), FILES[1]: (n_train,),
              FILES[2]: (n_test, 28, 28), FILES[3]: (n_test,)}
    return {name: rng.integers(0, 256 if len(shape) == 3 else 10, size=shape, dtype=np.uint8)
            for name, shape in shapes.items()}


@pytest.fixture
def idx_arrays() -> dict[str, np.ndarray]:
    """A tiny fake dataset: 50 training and 10 test images, by official file name."""
    return synthetic_arrays()


@pytest.fixture
def idx_files(idx_arrays: dict[str, np.ndarray]) -> dict[str, bytes]:
    """The four files of the tiny fake dataset, as uncompressed IDX bytes."""
    return {name: format_idx(array) for name, array in idx_arrays.items()}


@pytest.fixture
def raw_dir(tmp_path: Path, idx_files: dict[str, bytes]) -> Path:
    """A data/raw-like folder holding the tiny fake dataset."""
    raw = tmp_path / "raw"
    raw.mkdir()
    for name, data in idx_files.items():
        (raw / name).write_bytes(data)
    return raw


@pytest.fixture(scope="session")
def mnist_test_set() -> tuple[np.ndarray, np.ndarray]:
    """Real MNIST test images (N, 28, 28) and labels, from data/processed or $VAE_DATA_MIRROR."""
    from vae.data.datasets import DATASETS
    from vae.data.download import fetch_verified, mirror_from_env, sources
    from vae.data.idx import parse_idx
    from vae.data.split import load_split

    if (REPO_ROOT / "data/processed/test.npz").exists():
        return load_split(REPO_ROOT / "data/processed/test.npz")
    spec = DATASETS["MNIST"]
    mirror = mirror_from_env()
    if not mirror:
        pytest.skip("needs real MNIST: run `dvc repro split` or set VAE_DATA_MIRROR")
    prefix = sources(spec, mirror)[0]
    images, labels = (parse_idx(fetch_verified(prefix, name, spec.md5[name], timeout=30), name)
                      for name in ("t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte"))
    return images, labels
