"""One script per DVC stage: parse params, call the ``vae`` package, write declared outputs.

Run them as ``python -m stages.<name>`` from the repository root (dvc.yaml does). Python
imports this package before the stage's module, so the numerical libraries' code paths are
pinned here, before any stage loads torch or numpy (``vae.numerics``).
"""

from vae.numerics import pin_from_params

pin_from_params()
