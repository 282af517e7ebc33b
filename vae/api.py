"""The Python API for notebooks: load any experiment's model and metrics, encode, decode, sample.

    import vae
    model = vae.load_model()                      # the workspace's models/model.pt
    other = vae.load_model(rev="latent8")         # an experiment, branch, tag or commit
    z, _ = vae.encode(model, images)              # posterior means and log-variances
    pixels = vae.decode(model, z)                 # decoder means, (N, 784) in [0, 1]
    grid = vae.sample(model, 64, seed=0)          # decoded draws from the prior
    density = vae.load_latent_density()           # the ex-post density fit to the train codes
    better = vae.sample(model, 64, seed=0, density=density)  # decoded draws from it
    vae.load_metrics(rev="latent8")               # that experiment's metrics files

Revisions are read through ``dvc.api`` (git for the small files, the DVC cache or remote
for the model) without checking anything out. Files load pickle-free.
"""

import io
import json
from pathlib import Path
from typing import Any

import torch

from vae.errors import UserError
from vae.generate import latent_density_samples, prior_samples
from vae.latent_density import LatentDensity
from vae.latent_density import load_latent_density as _load_density_file
from vae.model import VAE, encode
from vae.model import load_model as _load_model_file
from vae.runtime.dvc_yaml import metrics_files, named_paths

__all__ = ["load_model", "load_latent_density", "load_metrics", "encode", "decode", "sample"]


def _revision_error(rev: str, repo: str | None) -> UserError:
    return UserError(f"{repo or 'this repository'} has no experiment, branch, tag or commit named {rev!r}; "
                     "`dvc exp list --all-commits` lists the experiments")


def load_model(path: str | Path | None = None, rev: str | None = None, repo: str | None = None,
               device: torch.device | str = "cpu") -> VAE:
    """The VAE stored at ``path``: in the working tree, or in revision ``rev`` of ``repo`` (default: here).

    ``path`` defaults to the model file dvc.yaml names (``paths.model``).
    """
    if path is None:
        path = named_paths()["model"]
    if rev is None and repo is None:
        return _load_model_file(path, device)
    return _load_model_file(io.BytesIO(_read_bytes(str(path), rev, repo)), device)


def _read_bytes(path: str, rev: str | None, repo: str | None) -> bytes:
    """A file of revision ``rev`` through ``dvc.api`` (git, or the DVC cache or remote), not checked out."""
    import dvc.api
    from dvc.scm import RevError

    try:
        return dvc.api.read(path, repo=repo, rev=rev, mode="rb")
    except RevError:
        raise _revision_error(str(rev), repo) from None


def load_metrics(rev: str | None = None, repo: str | None = None) -> dict[str, Any]:
    """Every metric of ``rev`` (default: the working tree), flattened: ``{"val_loss": ..., "fd_samples": ...}``.

    The files are those that revision's dvc.yaml lists; one it has not written yet is skipped.
    """
    import dvc.api
    from dvc.exceptions import PathMissingError
    from dvc.scm import RevError

    metrics: dict[str, Any] = {}
    try:
        for path in metrics_files(text=dvc.api.read("dvc.yaml", repo=repo, rev=rev)):
            try:
                metrics |= json.loads(dvc.api.read(path, repo=repo, rev=rev))
            except PathMissingError:
                continue
    except RevError:
        raise _revision_error(str(rev), repo) from None
    return metrics


@torch.no_grad()
def decode(model: VAE, z: torch.Tensor) -> torch.Tensor:
    """Decoder means of latent points ``z`` (N, latent_dim): pixels (N, 784) in [0, 1]."""
    model.eval()
    return model.decoder(z.to(next(model.parameters()).device))


def load_latent_density(path: str | Path | None = None, rev: str | None = None, repo: str | None = None
                        ) -> LatentDensity:
    """The ex-post latent density at ``path``, in the working tree or in revision ``rev`` of ``repo``.

    ``path`` defaults to the one dvc.yaml names (``paths.latent_density``).
    """
    if path is None:
        path = named_paths()["latent_density"]
    if rev is None and repo is None:
        return _load_density_file(path)
    import tempfile

    with tempfile.TemporaryDirectory() as tmp:
        local = Path(tmp) / Path(path).name
        local.write_bytes(_read_bytes(str(path), rev, repo))
        return _load_density_file(local)


def sample(model: VAE, n: int, seed: int = 0, density: LatentDensity | None = None) -> torch.Tensor:
    """Decoder means of ``n`` seeded draws: pixels (N, 784).

    From the prior N(0, I), or with ``density`` (``load_latent_density()``) from the ex-post
    density of the training codes, whose samples look more like the data.
    """
    return prior_samples(model, n, seed) if density is None else latent_density_samples(model, density, n, seed)
