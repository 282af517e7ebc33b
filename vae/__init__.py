"""A reproducible Variational Autoencoder pipeline for MNIST and Fashion-MNIST.

The stage scripts in ``stages/`` are thin wrappers around this package: it holds
the data code (``vae.data``), the model and loss (``vae.model``), training
(``vae.training``), checkpoints (``vae.checkpoint``), evaluation metrics
(``vae.metrics``), latent embeddings (``vae.latents``) and figures
(``vae.figures``), so that tests can call every piece directly.
"""
