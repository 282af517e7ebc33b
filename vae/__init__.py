"""A reproducible Variational Autoencoder pipeline for MNIST and Fashion-MNIST.

The stage scripts in ``stages/`` are thin wrappers around this package: the data code
(``vae.data``), the model and loss (``vae.model``), training (``vae.training``), what a
run keeps (``vae.checkpoint``), evaluation (``vae.metrics``, ``vae.classifier``), latent
embeddings (``vae.latents``) and figures (``vae.generate``, ``vae.figures``), so that
tests call every piece directly.

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
