"""A reproducible Variational Autoencoder pipeline for MNIST and Fashion-MNIST.

Three layers, one folder each:

- the ML core, here: the data (``vae.data``), the model and its file (``vae.model``), the
  likelihoods (``vae.likelihoods``), training (``vae.training``), evaluation (``vae.metrics``,
  ``vae.classifier``), latent embeddings and densities (``vae.latents``, ``vae.latent_density``),
  images and charts (``vae.generate``, ``vae.figures``), params (``vae.params``) and atomic file
  output (``vae.io``). It knows nothing of DVC.
- the stage runtime (``vae.runtime``): the stage command line, dvc.yaml read as data, the train
  stage's run key and outputs. ``stages/`` are thin scripts over the core and the runtime.
- studies over seeds, their reports and SLURM (``vae.studies``), and the notebook API (``vae.api``).

For notebooks, ``import vae`` gives ``load_model``, ``load_latent_density``, ``load_metrics``, ``encode``,
``decode`` and ``sample`` (see ``vae.api``); they are imported on first use, so the
stage scripts do not pay for ``dvc.api``.
"""

from typing import Any

__all__ = ["load_model", "load_latent_density", "load_metrics", "encode", "decode", "sample"]


def __getattr__(name: str) -> Any:
    if name in __all__:
        from vae import api

        return getattr(api, name)
    raise AttributeError(f"module 'vae' has no attribute {name!r}")
