"""A small convolutional classifier of the dataset itself, whose features score sample quality.

Inception-based FID means little on 28 x 28 grey digits, and its weights cannot be
downloaded here; the MNIST literature instead trains a classifier on the dataset and
compares images through its penultimate-layer features (``frechet_distance``). It depends on
the data alone: nothing of the VAE's code is imported here, so no change to the VAE retrains it.
"""

import logging
from typing import Any

import numpy as np
import scipy.linalg
import torch
import torch.nn.functional as F
from torch import nn
from tqdm import tqdm

from vae.data.datasets import IMAGE_SHAPE
from vae.errors import DamagedFile
from vae.io import load_torch, write_torch
from vae.loops import EVAL_BATCH, BatchCallback

log = logging.getLogger("vae")

CHANNELS = (24, 48)  # of the two convolutions; 16 and 32 stayed under 99 % on MNIST
FEATURES = 128  # width of the penultimate layer
# Images on each side of a Frechet distance: prior samples and the test set (params.yaml's
# fd_images, fewer for quick runs), or the classifier stage's train-split images and the test set.
FD_IMAGES = 10_000
DEFAULT_CONFIG = {"num_classes": 10, "shape": (1, *IMAGE_SHAPE)}
KIND = "vae-pipeline classifier"  # stored in the file, so that another model's file is refused


class Classifier(nn.Module):
    """conv 3x3 (24) - pool - conv 3x3 (48) - pool - linear (128) - linear (10 classes).

    ``shape`` is the images' (channels, height, width); ``num_classes`` the labels' count.
    """

    def __init__(self, num_classes: int = 10, shape: tuple[int, int, int] = (1, *IMAGE_SHAPE)) -> None:
        super().__init__()
        self.config = {key: value for key, value in (("num_classes", num_classes), ("shape", shape))
                       if value != DEFAULT_CONFIG[key]}  # the default leaves the file as it was
        self.features = nn.Sequential(
            nn.Unflatten(1, shape),
            nn.Conv2d(shape[0], CHANNELS[0], 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
            nn.Conv2d(CHANNELS[0], CHANNELS[1], 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
            nn.Flatten(),
            nn.Linear(CHANNELS[1] * (shape[1] // 4) * (shape[2] // 4), FEATURES), nn.ReLU(),
        )
        self.head = nn.Linear(FEATURES, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Class logits of flat images (N, C * H * W) in [0, 1]."""
        return self.head(self.features(x))


def train_classifier(x: torch.Tensor, y: torch.Tensor, epochs: int, batch_size: int, lr: float, seed: int, *,
                     on_batch: BatchCallback | None = None, progress: bool = True,
                     shape: tuple[int, int, int] = (1, *IMAGE_SHAPE)) -> Classifier:
    """Adam on cross-entropy, batches in a seeded order: the same inputs give the same weights.

    Images of ``shape``; as many classes as the labels name (10 at least, MNIST's head).

    ``on_batch(epoch, batch)`` runs after every step, as in ``vae.training.train_epoch``.
    """
    torch.manual_seed(seed)
    model = Classifier(max(DEFAULT_CONFIG["num_classes"], int(y.max()) + 1), shape).to(x.device)
    # The fused kernel: the per-parameter Adam gave other bytes on an Intel Xeon than on an AMD EPYC
    # in numerics: portable, the fused one the same (vae.numerics).
    optimizer = torch.optim.Adam(model.parameters(), lr=lr, fused=True)
    order_gen = torch.Generator().manual_seed(seed)
    for epoch in tqdm(range(1, epochs + 1), desc="classifier", unit="epoch", disable=None if progress else True):
        model.train()
        order = torch.randperm(len(x), generator=order_gen).to(x.device)
        for i, start in enumerate(range(0, len(x), batch_size)):
            idx = order[start:start + batch_size]
            loss = F.cross_entropy(model(x.index_select(0, idx)), y.index_select(0, idx))
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            if on_batch is not None:
                on_batch(epoch, i + 1)
        log.info("epoch %d/%d | last batch loss %.4f", epoch, epochs, loss.item())
    return model.eval()


@torch.no_grad()
def features_and_logits(model: Classifier, x: torch.Tensor, batch_size: int = EVAL_BATCH
                        ) -> tuple[torch.Tensor, torch.Tensor]:
    """Penultimate-layer features (N, 128) and class logits (N, 10) of flat images, in batches."""
    model.eval()
    feats = torch.cat([model.features(x[start:start + batch_size]) for start in range(0, len(x), batch_size)])
    return feats, model.head(feats)


def accuracy(logits: torch.Tensor, y: torch.Tensor) -> float:
    """The fraction of images whose largest logit is their label's."""
    return float((logits.argmax(1) == y).double().mean())


def save_classifier(path: Any, model: Classifier | None) -> None:
    """The classifier's weights, or (None) the mark of images without labels: a classifier of no classes."""
    if model is None:
        write_torch(path, {"kind": KIND, "model": {}, "config": {"num_classes": 0}})
        return
    write_torch(path, {"kind": KIND, "model": model.state_dict(), **({"config": model.config} if model.config else {})})


def load_classifier(path: Any, device: torch.device | str = "cpu") -> Classifier | None:
    """The classifier of a file ``save_classifier`` wrote; None where the images had no labels."""
    saved = load_torch(path, device, keys=("model",), stage="classifier")
    if saved.get("kind") != KIND:
        raise DamagedFile(path, "is not a classifier this pipeline wrote", "classifier")
    config = saved.get("config", {})
    if config.get("num_classes") == 0:
        return None
    model = Classifier(config.get("num_classes", 10), tuple(config.get("shape", DEFAULT_CONFIG["shape"]))).to(device)
    model.load_state_dict(saved["model"])
    return model.eval()


def frechet_distance(a: torch.Tensor | np.ndarray, b: torch.Tensor | np.ndarray) -> float:
    """Frechet distance between Gaussians fit to two sets of feature rows, in float64.

    ||mu_a - mu_b||^2 + tr(S_a) + tr(S_b) - 2 tr((S_a S_b)^(1/2)). The last trace is the sum
    of the square roots of the eigenvalues of S_a^(1/2) S_b S_a^(1/2), which is similar to
    S_a S_b but symmetric positive semi-definite, so no complex parts or ``sqrtm`` failures
    appear where covariances are singular (features that a ReLU keeps at 0).
    """
    a, b = (np.asarray(t.detach().cpu() if isinstance(t, torch.Tensor) else t, dtype=np.float64) for t in (a, b))
    diff = a.mean(0) - b.mean(0)
    cov_a, cov_b = np.cov(a, rowvar=False), np.cov(b, rowvar=False)
    w, v = scipy.linalg.eigh(cov_a)
    root_a = (v * np.sqrt(np.clip(w, 0, None))) @ v.T
    middle = root_a @ cov_b @ root_a
    trace_root = np.sqrt(np.clip(scipy.linalg.eigvalsh((middle + middle.T) / 2), 0, None)).sum()
    return float(diff @ diff + np.trace(cov_a) + np.trace(cov_b) - 2 * trace_root)
