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
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

import torch

from vae.errors import DamagedFile, UserError
from vae.generate import latent_density_samples, prior_samples
from vae.latent_density import LatentDensity
from vae.latent_density import load_latent_density as _load_density_file
from vae.model import VAE, encode
from vae.model import load_model as _load_model_file
from vae.runtime.dvc_yaml import metrics_files, named_paths, stage_writing

__all__ = ["load_model", "load_latent_density", "load_metrics", "encode", "decode", "sample", "NotFound",
           "BadFile"]
T = TypeVar("T")


class NotFound(UserError, FileNotFoundError):
    """A file, revision or repository the API was asked for is not there; the message names the argument to pass."""


class BadFile(UserError, ValueError):
    """A file the API read is damaged or is not what the pipeline writes; the message says how to restore it."""


def _where(rev: str | None, repo: str | None, here: str = "this repository") -> str:
    """Where a read looks, in words: ``here`` when neither ``rev`` nor ``repo`` is given."""
    if rev is None and repo is None:
        return here
    return f"revision {rev!r} of {repo or 'this repository'}" if rev is not None else f"the repository {repo}"


def _read(path: str, rev: str | None, repo: str | None, mode: str = "rb") -> Any:
    """A file of revision ``rev`` through ``dvc.api`` (git, or the DVC cache or remote), not checked out.

    DVC's own exceptions never escape: each is a ``NotFound`` or ``BadFile`` naming the argument to change.
    """
    import dvc.api
    from dvc.exceptions import DvcException, NotDvcRepoError, PathMissingError
    from dvc.scm import RevError

    try:
        return dvc.api.read(path, repo=repo, rev=rev, mode=mode)
    except RevError:
        raise NotFound(f"{repo or 'this repository'} has no experiment, branch, tag or commit named {rev!r}; pass "
                       "rev= one that exists (`dvc exp list --all-commits` lists the experiments)") from None
    except (NotDvcRepoError, PathMissingError) as err:
        if path == "dvc.yaml" or isinstance(err, NotDvcRepoError):
            here = repo or f"{Path.cwd()} (the current folder)"
            raise NotFound(f"{here} is not a DVC repository of this pipeline (no dvc.yaml); pass repo= the folder "
                           "or URL of one, or run from its root") from None
        raise NotFound(f"{path} is not in {_where(rev, repo)} (neither in "
                       "git nor as a DVC output); pass path= a file it holds") from None
    except DvcException as err:  # no remote, a failed clone, ...: DVC's first line says which
        first = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
        raise NotFound(f"cannot read {path} from {_where(rev, repo)}: {first}; check repo= and rev=") from None


def _default_path(name: str, rev: str | None, repo: str | None) -> str:
    """The path dvc.yaml names ``paths.<name>``: the working tree's, or that of revision ``rev`` of ``repo``."""
    if rev is None and repo is None and not Path("dvc.yaml").exists():
        raise NotFound(f"no dvc.yaml in {Path.cwd()}, so no default {name.replace('_', ' ')} file; pass path= the "
                       "file to load, or repo= the folder or URL of this pipeline's repository")
    text = None if rev is None and repo is None else _read("dvc.yaml", rev, repo, mode="r")
    paths = named_paths(text=text)
    if name not in paths:  # a revision from before that file existed
        raise NotFound(f"the dvc.yaml of {_where(rev, repo)} names no {name.replace('_', ' ')} file; pass path=")
    return paths[name]


def _from_file(load: Callable[[Any], T], path: str, rev: str | None, repo: str | None, source: Any) -> T:
    """``load(source)``, with a damaged or missing file told as ``path`` (in ``rev`` of ``repo``) and what to pass."""
    try:
        return load(source)
    except DamagedFile as err:
        kind = NotFound if err.problem == "is missing" else BadFile
        stage = err.stage or stage_writing(path)
        if rev is None and repo is None and stage is not None:  # a pipeline's output: DVC restores it
            raise kind(f"{DamagedFile(path, err.problem, stage)}; or pass path= another file") from None
        if rev is None and repo is None:
            raise kind(f"{path} {err.problem}; pass path= a file the pipeline wrote") from None
        raise kind(f"{path} in {_where(rev, repo)} {err.problem}; pass another rev= or path=") from None


def load_model(path: str | Path | None = None, rev: str | None = None, repo: str | None = None,
               device: torch.device | str = "cpu") -> VAE:
    """The VAE stored at ``path``: in the working tree, or in revision ``rev`` of ``repo`` (default: here).

    ``path`` defaults to the model file dvc.yaml names (``paths.model``). A missing file, revision or
    repository raises ``NotFound`` (a ``FileNotFoundError``), a damaged file ``BadFile`` (a ``ValueError``).
    """
    path = str(path) if path is not None else _default_path("model", rev, repo)
    if rev is None and repo is None:
        return _from_file(lambda p: _load_model_file(p, device), path, rev, repo, path)
    data = io.BytesIO(_read(path, rev, repo))
    return _from_file(lambda p: _load_model_file(p, device), path, rev, repo, data)


def load_metrics(rev: str | None = None, repo: str | None = None) -> dict[str, Any]:
    """Every metric of ``rev`` (default: the working tree), flattened: ``{"val_loss": ..., "fd_samples": ...}``.

    The files are those that revision's dvc.yaml lists; one it has not written yet is skipped.
    Outside a repository (and no ``repo``), or for an unknown ``rev``, raises ``NotFound``.
    """
    metrics: dict[str, Any] = {}
    for path in metrics_files(text=_read("dvc.yaml", rev, repo, mode="r")):
        try:
            metrics |= json.loads(_read(path, rev, repo, mode="r"))
        except NotFound:
            continue
        except json.JSONDecodeError as err:
            raise BadFile(f"{path} in {_where(rev, repo, here='the working tree')} is not JSON "
                          f"({err.msg}, line {err.lineno}); restore it with `git checkout -- {path}`") from None
    return metrics


@torch.no_grad()
def decode(model: VAE, z: torch.Tensor) -> torch.Tensor:
    """Decoder means of latent points ``z`` (N, latent_dim): pixels (N, 784) in [0, 1].

    ``z`` are top-layer codes; a two-layer model puts its lower layer at its mean given them.
    """
    model.eval()
    return model.decode(z.to(next(model.parameters()).device))


def load_latent_density(path: str | Path | None = None, rev: str | None = None, repo: str | None = None
                        ) -> LatentDensity:
    """The ex-post latent density at ``path``, in the working tree or in revision ``rev`` of ``repo``.

    ``path`` defaults to the one dvc.yaml names (``paths.latent_density``); errors as ``load_model``'s.
    """
    path = str(path) if path is not None else _default_path("latent_density", rev, repo)
    if rev is None and repo is None:
        return _from_file(_load_density_file, path, rev, repo, path)
    import tempfile

    with tempfile.TemporaryDirectory() as tmp:
        local = Path(tmp) / Path(path).name
        local.write_bytes(_read(path, rev, repo))
        return _from_file(_load_density_file, path, rev, repo, local)


def sample(model: VAE, n: int, seed: int = 0, density: LatentDensity | None = None) -> torch.Tensor:
    """Decoder means of ``n`` seeded draws: pixels (N, 784).

    From the prior N(0, I), or with ``density`` (``load_latent_density()``) from the ex-post
    density of the training codes, whose samples look more like the data.
    """
    return prior_samples(model, n, seed) if density is None else latent_density_samples(model, density, n, seed)
