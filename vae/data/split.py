"""The notebook's train/validation split, and the processed arrays the later stages read."""

from pathlib import Path

import numpy as np
import torch

from vae.data.datasets import IMAGE_SHAPE
from vae.data.idx import read_idx
from vae.errors import DamagedFile, UserError
from vae.io import ArraySpec, array_problem, load_npz, write_npz


def split_indices(n: int, val_fraction: float, seed: int, name: str = "val_fraction"
                  ) -> tuple[np.ndarray, np.ndarray]:
    """Shuffle ``range(n)`` and cut it into train and validation indices.

    The same permutation as the notebook's ``random_split(ds, [train, val])``
    right after ``torch.manual_seed(seed)``: ``torch.randperm(n)`` from a
    generator seeded with ``seed``, train first. ``name`` is the param that sets the fraction.
    """
    val_size = int(val_fraction * n)
    if val_size == 0 or val_size == n:
        raise UserError(f"{name} = {val_fraction} leaves an empty split of {n} images; "
                        "choose a value that keeps both non-empty, or add images")
    perm = torch.randperm(n, generator=torch.Generator().manual_seed(seed)).numpy()
    return perm[: n - val_size], perm[n - val_size:]


def read_raw(raw_dir: str | Path, prefix: str) -> tuple[np.ndarray, np.ndarray]:
    """Read ``{prefix}-images`` and ``{prefix}-labels`` (prefix ``train`` or ``t10k``) and check they pair up."""
    raw_dir = Path(raw_dir)
    images = read_idx(raw_dir / f"{prefix}-images-idx3-ubyte", (None, *IMAGE_SHAPE))
    labels = read_idx(raw_dir / f"{prefix}-labels-idx1-ubyte", (None,))
    if len(images) != len(labels):
        raise DamagedFile(raw_dir, f"holds {len(images)} {prefix} images but {len(labels)} labels")
    return images, labels


def make_splits(raw_dir: str | Path, out_dir: str | Path, val_fraction: float, seed: int,
                train_subset: int = 0) -> dict[str, int]:
    """Write ``train.npz``, ``val.npz`` and ``test.npz`` (images, labels, original index) of an IDX dataset.

    ``train_subset > 0`` keeps only that many training images (for quick runs); more
    than the training split holds is a ``UserError``. Returns the number of images in each split.
    """
    images, labels = read_raw(raw_dir, "train")
    test_images, test_labels = read_raw(raw_dir, "t10k")
    rows = write_splits(out_dir, (images, labels, np.arange(len(images))),
                        (test_images, test_labels, np.arange(len(test_images))), val_fraction, seed, train_subset)
    return {name: len(index) for name, index in rows.items()}


def write_splits(out_dir: str | Path, pool: tuple[np.ndarray, ...], test: tuple[np.ndarray, ...],
                 val_fraction: float, seed: int, train_subset: int = 0) -> dict[str, np.ndarray]:
    """Cut ``pool`` (images, labels, index) into train and validation, and write them beside ``test``.

    Returns each split's index (the rows of the source each of its images came from).
    """
    images, labels, index = pool
    train_idx, val_idx = split_indices(len(images), val_fraction, seed)
    if train_subset > len(train_idx):
        raise UserError(f"train_subset = {train_subset} but the training split has {len(train_idx)} "
                        f"images; set it to at most {len(train_idx)}, or 0 for all, in params.yaml")
    if train_subset:
        train_idx = train_idx[:train_subset]
    parts = {
        "train": (images[train_idx], labels[train_idx], index[train_idx]),
        "val": (images[val_idx], labels[val_idx], index[val_idx]),
        "test": test,
    }
    for name, (x, y, rows) in parts.items():
        write_npz(Path(out_dir) / f"{name}.npz", images=x, labels=y, index=rows.astype(np.int64))
    return {name: part[2] for name, part in parts.items()}


# What a split's .npz must hold for the stages that read it: as many labels as images, and square images,
# grey (N, H, W) or RGB (N, 3, H, W).
SPLIT_ARRAYS = {"images": ArraySpec(np.uint8, ("n", "side", "side")), "labels": ArraySpec(np.integer, ("n",))}
RGB_SPLIT_ARRAYS = {"images": ArraySpec(np.uint8, ("n", 3, "side", "side")), "labels": ArraySpec(np.integer, ("n",))}


def load_split(path: str | Path) -> tuple[np.ndarray, np.ndarray]:
    """Load one split's uint8 images (N, [3,] H, W) and labels (N,) from its ``.npz``, without unpickling.

    A missing or damaged file is one line saying how to restore it (``vae.io.load_npz``).
    """
    arrays = load_npz(path, stage="split")
    spec = RGB_SPLIT_ARRAYS if getattr(arrays.get("images"), "ndim", 0) == 4 else SPLIT_ARRAYS
    problem = array_problem(arrays, spec)
    if problem:
        raise DamagedFile(path, problem, "split")
    return arrays["images"], arrays["labels"]


def image_shape(images: np.ndarray) -> tuple[int, int]:
    """(channels, side) of a split's images: what the model's config records."""
    return (images.shape[1] if images.ndim == 4 else 1), images.shape[-1]


def to_tensor(images: np.ndarray, device: torch.device | str = "cpu") -> torch.Tensor:
    """uint8 images (N, [C,] H, W) -> float32 (N, C * H * W) in [0, 1], as ``ToTensor`` then flatten."""
    x = torch.as_tensor(np.array(images.reshape(len(images), -1)), device=device)  # a writable copy
    return x.to(torch.float32).div_(255)


def load_images(path: str | Path, device: torch.device | str = "cpu") -> tuple[torch.Tensor, np.ndarray]:
    """One split's images as float pixels (N, C * H * W) on ``device`` and its labels: what the stages read."""
    images, labels = load_split(path)
    return to_tensor(images, device), labels
