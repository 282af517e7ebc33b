"""Shared fixtures: small synthetic IDX datasets and the real MNIST test set."""

from pathlib import Path

import numpy as np
import pytest

from vae.data.datasets import FILES
from vae.data.idx import format_idx

REPO_ROOT = Path(__file__).resolve().parent.parent


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
